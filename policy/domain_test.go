package policy

import (
	"errors"
	"strconv"
	"strings"
	"testing"
)

func TestNormalizeDomain(t *testing.T) {
	t.Parallel()
	label63 := strings.Repeat("a", 63)
	// 4 labels of 63 plus 3 dots = 255; trim to exactly 253.
	name253 := strings.Join([]string{label63, label63, label63, label63[:61]}, ".")
	tests := []struct {
		in   string
		want string
	}{
		{"example.com", "example.com"},
		{"Example.COM", "example.com"},
		{"  example.com.  ", "example.com"},
		{"\texample.com\r\n", "example.com"},
		{"localhost", "localhost"},
		{"bücher.example", "xn--bcher-kva.example"},
		{"BÜCHER.Example.", "xn--bcher-kva.example"},
		{"xn--bcher-kva.example", "xn--bcher-kva.example"},
		{"XN--BCHER-KVA.EXAMPLE", "xn--bcher-kva.example"},
		{"Straße.example", "xn--strae-oqa.example"}, // non-transitional: ß is kept
		{"ｅｘａｍｐｌｅ．com", "example.com"},              // full-width, mapped as for lookup
		{"مثال.example", "xn--mgbh0fb.example"},
		{"mail_1.example", "mail_1.example"},
		{"_dmarc.example.com", "_dmarc.example.com"},
		{"r3---sn-abc.example", "r3---sn-abc.example"},
		{"123.example", "123.example"},
		{label63 + ".example", label63 + ".example"},
		{name253, name253},
	}
	for _, tt := range tests {
		got, err := NormalizeDomain(tt.in)
		if err != nil || got != tt.want {
			t.Errorf("NormalizeDomain(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
}

func TestNormalizeDomainErrors(t *testing.T) {
	t.Parallel()
	label63 := strings.Repeat("a", 63)
	tests := []struct {
		in  string
		why string // substring of the error
	}{
		{"", "empty"},
		{"   ", "empty"},
		{".", "empty"},
		{"example.com..", "empty label"},
		{".example.com", "leading dot"},
		{"example..com", "empty label"},
		{"[192.0.2.1]", "address literal"},
		{"[IPv6:2001:db8::1]", "address literal"},
		{"192.0.2.1", "IP address"},
		{"2001:db8::1", "invalid character"},
		{"exa mple.com", "invalid character"},
		{"user@example.com", "invalid character"},
		{"example.com:25", "invalid character"},
		{"*.example.com", "invalid character"},
		{"ex\x00ample.com", "invalid character"},
		{"\xff.example", "invalid UTF-8"},
		{"-example.com", "starts or ends with '-'"},
		{"example-.com", "starts or ends with '-'"},
		{"xn--a.example", "idna"},
		{"a\u200db.example", "idna"}, // ZERO WIDTH JOINER outside its context
		// Maps to Hebrew + Hangul, which breaks the Bidi rule only once
		// mapped; found by FuzzParseFile.
		{"ℶ븇.example", "not a valid A-label"},
		{label63 + "a.example", "label longer than 63"},
		{strings.Repeat(label63+".", 4) + "com", "longer than 253"},
		{strings.Repeat("a", 2000) + ".example", "too long"},
	}
	for _, tt := range tests {
		got, err := NormalizeDomain(tt.in)
		if err == nil {
			t.Errorf("NormalizeDomain(%q) = %q, want error", tt.in, got)
			continue
		}
		if !errors.Is(err, ErrBadDomain) {
			t.Errorf("NormalizeDomain(%q) error %v does not wrap ErrBadDomain", tt.in, err)
		}
		if !strings.Contains(err.Error(), tt.why) {
			t.Errorf("NormalizeDomain(%q) error %q does not contain %q", tt.in, err, tt.why)
		}
		if !strings.Contains(err.Error(), strconv.Quote(tt.in)) {
			t.Errorf("NormalizeDomain(%q) error %q does not quote the input", tt.in, err)
		}
	}
}

func TestDomainKey(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in      string
		want    string
		wantErr error
	}{
		{"example.com", "example.com", nil},
		{".example.com", ".example.com", nil},
		{".Example.COM.", ".example.com", nil},
		{".bücher.example", ".xn--bcher-kva.example", nil},
		{".com", ".com", nil},
		{"[mx.example.com]", "", ErrNextHopKey},
		{"[mx.example.com]:587", "", ErrNextHopKey},
		{"[192.0.2.1]:25", "", ErrNextHopKey},
		{"[2001:db8::1]:25", "", ErrNextHopKey},
		{"mx.example.com:25", "", ErrNextHopKey},
		{"mx.example.com:submission", "", ErrNextHopKey},
		{"[mx.example.com", "", ErrBadDomain},
		{"[mx.example.com]x", "", ErrBadDomain},
		{"[]", "", ErrBadDomain},
		{"example.com:", "", ErrBadDomain},
		{":25", "", ErrBadDomain},
		{".", "", ErrBadDomain},
		{"..example.com", "", ErrBadDomain},
		{"", "", ErrBadDomain},
	}
	for _, tt := range tests {
		got, err := NormalizeDomainKey(tt.in)
		if got != tt.want || !errors.Is(err, tt.wantErr) || (tt.wantErr == nil) != (err == nil) {
			t.Errorf("NormalizeDomainKey(%q) = %q, %v; want %q, %v", tt.in, got, err, tt.want, tt.wantErr)
		}
		if err != nil && !strings.Contains(err.Error(), strconv.Quote(tt.in)) {
			t.Errorf("NormalizeDomainKey(%q) error %q does not quote the key", tt.in, err)
		}
	}
}

// TestNormalizeKey: the exported form takes every key a policy table may hold,
// next hops included, and refuses the rest.
func TestNormalizeKey(t *testing.T) {
	t.Parallel()
	tests := []struct{ in, want string }{
		{".Example.COM.", ".example.com"},
		{"bücher.example", "xn--bcher-kva.example"},
		{"[MX.Example.com]:587", "[mx.example.com]:587"},
		{"[192.0.2.1]", "[192.0.2.1]"},
		{"Relay.Example:25", "relay.example:25"},
		{"[mx.example.com", ""},
		{"example.com:", ""},
		{"", ""},
	}
	for _, tt := range tests {
		got, err := NormalizeKey(tt.in)
		if got != tt.want || (err == nil) != (tt.want != "") {
			t.Errorf("NormalizeKey(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
}

// FuzzNormalizeDomain checks that NormalizeDomain is idempotent, so that a key
// and a domain meet in the same form whichever way each was written.
func FuzzNormalizeDomain(f *testing.F) {
	for _, s := range []string{"example.com", "Bücher.Example.", "xn--bcher-kva.example", "ℶ븇.example", "مثال.example", "_dmarc.example", "[192.0.2.1]"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, err := NormalizeDomain(s)
		if err != nil {
			if !errors.Is(err, ErrBadDomain) {
				t.Errorf("NormalizeDomain(%q) error %v does not wrap ErrBadDomain", s, err)
			}
			return
		}
		if d2, err := NormalizeDomain(d); err != nil || d2 != d {
			t.Errorf("NormalizeDomain(%q) = %q, but NormalizeDomain(%q) = %q, %v", s, d, d, d2, err)
		}
		if checkLDH(d) != "" {
			t.Errorf("NormalizeDomain(%q) = %q, not LDH: %s", s, d, checkLDH(d))
		}
	})
}
