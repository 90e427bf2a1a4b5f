package socketmap

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
)

func TestReadNetstring(t *testing.T) {
	tests := []struct {
		in   string
		want string // data, when err is nil
		err  error
	}{
		{"0:,", "", nil},
		{"7:QUERY x,", "QUERY x", nil},
		{"3:a b,rest", "a b", nil},
		{"5:a\x00b\r\n,", "a\x00b\r\n", nil}, // the framing carries any byte; the request check refuses them
		{"", "", io.EOF},
		{"7", "", io.ErrUnexpectedEOF},
		{"7:QUE", "", io.ErrUnexpectedEOF},
		{"7:QUERY x", "", io.ErrUnexpectedEOF},
		{":,", "", errFormat},          // no length
		{"07:QUERY x,", "", errFormat}, // a leading zero: prohibited by the netstring definition
		{"00:,", "", errFormat},        // ditto
		{"x:,", "", errFormat},         // not a digit
		{"-1:,", "", errFormat},        // not a digit
		{" 7:QUERY x,", "", errFormat}, // not a digit
		{"7 :QUERY x,", "", errFormat}, // not a digit
		{"7:QUERY x;", "", errFormat},  // no comma
		{"5:QUERY x,", "", errFormat},  // a length that does not match: no comma after 5 bytes
		{"8:QUERY x,", "", io.ErrUnexpectedEOF},
		{"101:", "", errSize},                 // the limit of this table is 100
		{"1000000000000000000:", "", errSize}, // 10^18: refused at its 4th digit, not read
		{"99999999999999999999999999999999:", "", errSize},
		{"100:" + strings.Repeat("a", 100) + ",", strings.Repeat("a", 100), nil},
	}
	for _, tt := range tests {
		for _, size := range []int{16, 4096} { // the copying path and the zero-copy path
			r := bufio.NewReaderSize(strings.NewReader(tt.in), size)
			got, _, err := readNetstring(r, 100, nil)
			if !errors.Is(err, tt.err) {
				t.Errorf("readNetstring(%q) size %d: err %v, want %v", tt.in, size, err, tt.err)
				continue
			}
			if err == nil && string(got) != tt.want {
				t.Errorf("readNetstring(%q) size %d = %q, want %q", tt.in, size, got, tt.want)
			}
		}
	}
}

func TestAppendNetstring(t *testing.T) {
	if got := string(appendNetstring([]byte("x"), "OK", " ", "secure match=nexthop")); got != "x23:OK secure match=nexthop," {
		t.Errorf("got %q", got)
	}
	if got := string(appendNetstring(nil)); got != "0:," {
		t.Errorf("got %q", got)
	}
}

// FuzzNetstring reads a stream of netstrings until the first error. Whatever the input,
// the parser must not panic, must not return more than the limit, and what it accepts
// must be exactly the input: re-encoding every netstring read gives the bytes consumed.
func FuzzNetstring(f *testing.F) {
	for _, s := range []string{
		"7:QUERY x,", "0:,", "17:QUERY example.com,19:QUERY [mx.test]:25,", ":,", "07:QUERY x,",
		"1000000000000000000:", "5:QUERY x,", "7:QUERY x;", "3:a\x00b,", "64:" + strings.Repeat("k", 64) + ",",
	} {
		f.Add([]byte(s), uint8(16))
	}
	f.Fuzz(func(t *testing.T, in []byte, size uint8) {
		const limit = 64
		r := bufio.NewReaderSize(bytes.NewReader(in), int(size)) // bufio enforces its minimum of 16
		var consumed, big []byte
		for {
			var got []byte
			var err error
			got, big, err = readNetstring(r, limit, big)
			if err != nil {
				if !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) && err != errFormat && err != errSize {
					t.Fatalf("unexpected error %v", err)
				}
				if errors.Is(err, io.EOF) && len(consumed) != len(in) {
					t.Fatalf("clean EOF after %d of %d bytes", len(consumed), len(in))
				}
				return
			}
			if len(got) > limit {
				t.Fatalf("returned %d bytes, limit %d", len(got), limit)
			}
			consumed = appendNetstring(consumed, string(got))
			if !bytes.HasPrefix(in, consumed) {
				t.Fatalf("accepted %q, which is not the input's prefix %q", consumed, in)
			}
		}
	})
}
