package policy

import "testing"

// FuzzNormalizeFastPath: the ASCII fast path of normalize gives exactly what the
// general IDNA path gives, for every input it takes.
func FuzzNormalizeFastPath(f *testing.F) {
	for _, s := range []string{"example.com", "EXAMPLE.com", "a_b.example", "-a.example", "a..b", "1.2.3.4",
		"1.2.3.4.5", "xn--bcher-kva.example", "Xn--a.b", "a-.b", "0x1.example", "123", "_dmarc.example"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		fast, ok := asciiLDH(s)
		if !ok || s == "" || s[0] == '.' || s[len(s)-1] == '.' || len(s) > maxDomainInput {
			return // not a fast-path input (normalize handles these before)
		}
		got, gotWhy := normalize(s)
		want, wantWhy := normalizeIDNA(s)
		if (gotWhy == "") != (wantWhy == "") || got != want {
			t.Errorf("normalize(%q) = %q (%q); the IDNA path gives %q (%q); fast %q", s, got, gotWhy, want, wantWhy, fast)
		}
	})
}
