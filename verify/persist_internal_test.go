package verify

import (
	"bufio"
	"errors"
	"io"
	"strings"
	"testing"
)

// TestLineReader: lines up to max bytes come back whole, with or without a final
// newline; a longer line is reported once and skipped, and reading goes on after it.
func TestLineReader(t *testing.T) {
	t.Parallel()
	in := "12345\n123456\n\n1234\n" + strings.Repeat("x", 100) + "\n12345"
	lr := lineReader{r: bufio.NewReaderSize(strings.NewReader(in), 16), max: 5}
	var got []string
	for {
		line, err := lr.next()
		if errors.Is(err, io.EOF) {
			break
		}
		if errors.Is(err, errLineTooLong) {
			got = append(got, "<too long>")
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, string(line))
	}
	want := []string{"12345", "<too long>", "", "1234", "<too long>", "12345"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("lines %q; want %q", got, want)
	}
	lr = lineReader{r: bufio.NewReaderSize(strings.NewReader("123456"), 16), max: 5}
	if _, err := lr.next(); !errors.Is(err, errLineTooLong) {
		t.Errorf("a last line over the limit without a newline: %v; want errLineTooLong", err)
	}
}
