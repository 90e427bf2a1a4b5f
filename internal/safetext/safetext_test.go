package safetext

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestBound(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in   string
		max  int
		want string
	}{
		{"220 mx.example.test ESMTP", 512, "220 mx.example.test ESMTP"},
		{"abcdef", 6, "abcdef"},
		{"abcdefg", 6, "abc..."},
		{"\xff", 10, "\ufffd"},
		{"a\xffb", 10, "a\ufffdb"},
		{"\xff\xff\xff", 8, "\ufffd..."}, // 9 bytes valid: cut, and still within 8
		{"ééééé", 8, "éé..."},            // never half a rune
		{strings.Repeat("\xff", 2048), 512, strings.Repeat("\ufffd", 169) + "..."},
	} {
		got := Bound(tc.in, tc.max)
		if got != tc.want {
			t.Errorf("Bound(%q, %d) = %q; want %q", tc.in, tc.max, got, tc.want)
		}
		if len(got) > tc.max || !utf8.ValidString(got) {
			t.Errorf("Bound(%q, %d) = %q: %d bytes, valid UTF-8 %v", tc.in, tc.max, got, len(got), utf8.ValidString(got))
		}
	}
}

func FuzzBound(f *testing.F) {
	f.Add("\xff\xfe", 5)
	f.Add("ééé", 4)
	f.Fuzz(func(t *testing.T, s string, max int) {
		max = max%1024 + 1
		if max < 1 {
			max += 1024
		}
		got := Bound(s, max)
		if len(got) > max || !utf8.ValidString(got) {
			t.Fatalf("Bound(%q, %d) = %q", s, max, got)
		}
		if utf8.ValidString(s) && len(s) <= max && got != s {
			t.Fatalf("Bound(%q, %d) = %q; a text that fits is kept", s, max, got)
		}
	})
}

func TestTerminal(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ in, want string }{
		{"mx1.example.test", "mx1.example.test"},
		{"Grüße, 例え", "Grüße, 例え"},
		{"a\x1b[32mverdict: pass", `a\x1b[32mverdict: pass`},
		{"x\r\nverdict:\tpass", `x\r\nverdict:\tpass`},
		{"\x7f\x00", `\x7f\x00`},
		{"\u0085\u009b", `\u0085\u009b`},   // NEL, CSI (C1)
		{"\u202egnp.exe", `\u202egnp.exe`}, // RIGHT-TO-LEFT OVERRIDE
		{"\u202a\u202b\u202c\u202d", `\u202a\u202b\u202c\u202d`},
		{"\u2066\u2067\u2068\u2069", `\u2066\u2067\u2068\u2069`},
		{"a\u2028b\u2029c", `a\u2028b\u2029c`},
		{"\xff\xfe", `\xff\xfe`},
		{`C:\path`, `C:\\path`},
		{"\U000e0001", `\U000e0001`}, // LANGUAGE TAG (Cf)
	} {
		if got := Terminal(tc.in); got != tc.want {
			t.Errorf("Terminal(%q) = %s; want %s", tc.in, got, tc.want)
		}
	}
}

func FuzzTerminal(f *testing.F) {
	f.Add("\x1b]0;title\x07\u202e\n")
	f.Fuzz(func(t *testing.T, s string) {
		got := Terminal(s)
		if !utf8.ValidString(got) {
			t.Fatalf("Terminal(%q) = %q: not UTF-8", s, got)
		}
		for _, r := range got {
			if !printable(r) {
				t.Fatalf("Terminal(%q) = %q: holds %U", s, got, r)
			}
		}
	})
}
