package mtasts

import (
	"errors"
	"strings"
	"testing"
	"time"
)

// FuzzParsePolicy: ParsePolicy never panics, fails only with ErrInvalidPolicy, and what
// it accepts is a sane policy that survives String and ParsePolicy unchanged.
func FuzzParsePolicy(f *testing.F) {
	f.Add([]byte(rfcPolicy))
	f.Add([]byte(strings.ReplaceAll(rfcPolicy, "\n", "\r\n")))
	f.Add([]byte("version: STSv1\nmode: none\nmax_age: 0\n"))
	f.Add([]byte("version : STSv1\nmode: testing\nmx: MX.Example.COM.\nmx: mx.example.com\nmax_age: 31557600"))
	f.Add([]byte("version: STSv1\nmode: enforce\nmx: 192.0.2.1\nmax_age: 86400\n"))
	f.Add([]byte("version: STSv1\nmode: enforce\nmode: none\nmx: *.example.com\next: é\nmax_age: 0000086400\n\n"))
	f.Fuzz(func(t *testing.T, body []byte) {
		p, err := ParsePolicy(body)
		if err != nil {
			if p != nil || !errors.Is(err, ErrInvalidPolicy) {
				t.Fatalf("ParsePolicy = %+v, %v; want nil and ErrInvalidPolicy", p, err)
			}
			return
		}
		checkPolicy(t, p)

		text := p.String()
		back, err := ParsePolicy([]byte(text))
		if err != nil {
			t.Fatalf("ParsePolicy(%q) after String: %v", text, err)
		}
		if !samePolicy(back, p) {
			t.Fatalf("round trip: %+v became %+v", p, back)
		}
		if again := back.String(); again != text {
			t.Fatalf("String not stable: %q then %q", text, again)
		}
	})
}

// checkPolicy checks what every policy from ParsePolicy must satisfy.
func checkPolicy(t *testing.T, p *Policy) {
	t.Helper()
	switch p.Mode {
	case ModeNone, ModeTesting, ModeEnforce:
	default:
		t.Fatalf("mode %v", p.Mode)
	}
	if p.MaxAge < 0 || p.MaxAge > MaxMaxAge*time.Second || p.MaxAge%time.Second != 0 {
		t.Fatalf("max age %v", p.MaxAge)
	}
	if len(p.MX) == 0 && p.Mode != ModeNone {
		t.Fatalf("mode %v without mx", p.Mode)
	}
	seen := make(map[string]bool)
	for _, pat := range p.MX {
		if seen[pat] {
			t.Fatalf("mx %q twice", pat)
		}
		seen[pat] = true
		if pat != strings.ToLower(pat) || strings.HasSuffix(pat, ".") || len(pat) > 253 {
			t.Fatalf("mx %q not normalized", pat)
		}
		// A host name never contains "*", so only a literal pattern allows itself.
		if p.Allows(pat) == strings.HasPrefix(pat, "*.") {
			t.Fatalf("Allows(%q) = %v for pattern %q", pat, p.Allows(pat), pat)
		}
		if rest, ok := strings.CutPrefix(pat, "*."); ok {
			checkWildcard(t, pat, rest)
			continue
		}
		if strings.Contains(pat, "*") {
			t.Fatalf("mx %q has a wildcard that is not left-most", pat)
		}
		for _, host := range []string{pat, pat + ".", strings.ToUpper(pat)} {
			if !MatchPattern(pat, host) {
				t.Fatalf("MatchPattern(%q, %q) = false", pat, host)
			}
		}
		if MatchPattern(pat, "x."+pat) {
			t.Fatalf("MatchPattern(%q, %q) = true", pat, "x."+pat)
		}
	}
}

// checkWildcard: "*.rest" matches exactly one more label before rest (RFC 8461 §4.1).
func checkWildcard(t *testing.T, pat, rest string) {
	t.Helper()
	if rest == "" || strings.Contains(rest, "*") {
		t.Fatalf("mx %q: bad wildcard", pat)
	}
	for host, want := range map[string]bool{
		"x." + rest:           true,
		"X." + rest + ".":     true,
		rest:                  false,
		"a.x." + rest:         false,
		"." + rest:            false,
		"x." + rest + "extra": false,
	} {
		if got := MatchPattern(pat, host); got != want {
			t.Fatalf("MatchPattern(%q, %q) = %v; want %v", pat, host, got, want)
		}
	}
}

// FuzzParseTXT: ParseTXT never panics, fails only with its sentinels, returns a
// well-formed id, and discards records that are not v=STSv1 whatever they hold.
func FuzzParseTXT(f *testing.F) {
	f.Add("v=STSv1; id=20160831085700Z;", "v=spf1 -all")
	f.Add("v=STSv1 ; id=abc ; ext=1", "")
	f.Add("v=STSv1; id=abc", "v=STSv1; id=def")
	f.Add("v = STSv1;id=a;id=b;", "v=STSv10; id=c")
	f.Add("v=STSv1; id=abc!", "V=STSv1; id=abc")
	f.Add("v=STSv1;", "v=STSv1\t;\tid=x\t;\t")
	f.Fuzz(func(t *testing.T, a, b string) {
		idA, errA := ParseTXT([]string{a})
		checkTXT(t, []string{a}, idA, errA)
		idB, errB := ParseTXT([]string{b})
		checkTXT(t, []string{b}, idB, errB)
		id, err := ParseTXT([]string{a, b})
		checkTXT(t, []string{a, b}, id, err)

		noA, noB := errors.Is(errA, ErrNoRecord), errors.Is(errB, ErrNoRecord)
		switch {
		case noA && noB:
			if !errors.Is(err, ErrNoRecord) {
				t.Fatalf("ParseTXT(%q, %q) = %q, %v; want ErrNoRecord", a, b, id, err)
			}
		case noA: // a is discarded: the result is b's
			if id != idB || (err == nil) != (errB == nil) {
				t.Fatalf("ParseTXT(%q, %q) = %q, %v; want %q, %v", a, b, id, err, idB, errB)
			}
		case noB:
			if id != idA || (err == nil) != (errA == nil) {
				t.Fatalf("ParseTXT(%q, %q) = %q, %v; want %q, %v", a, b, id, err, idA, errA)
			}
		default:
			if !errors.Is(err, ErrMultipleRecords) {
				t.Fatalf("ParseTXT(%q, %q) = %q, %v; want ErrMultipleRecords", a, b, id, err)
			}
		}
	})
}

// checkTXT checks one ParseTXT result.
func checkTXT(t *testing.T, records []string, id string, err error) {
	t.Helper()
	if err != nil {
		if id != "" || !(errors.Is(err, ErrNoRecord) || errors.Is(err, ErrMultipleRecords) || errors.Is(err, ErrInvalidRecord)) {
			t.Fatalf("ParseTXT(%q) = %q, %v", records, id, err)
		}
		return
	}
	if len(id) == 0 || len(id) > 32 || !isAlnum(id) {
		t.Fatalf("ParseTXT(%q) = bad id %q", records, id)
	}
	found := false
	for _, r := range records {
		found = found || (strings.HasPrefix(r, "v") && strings.Contains(r, "id") && strings.Contains(r, id))
	}
	if !found {
		t.Fatalf("ParseTXT(%q) = id %q found in no v=STSv1 record", records, id)
	}
}
