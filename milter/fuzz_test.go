package milter_test

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tlsgate/tlsgate/milter"
	"github.com/tlsgate/tlsgate/policy"
	"github.com/tlsgate/tlsgate/verify"
)

// headerToken is the sanitising HeaderValue documents, written out independently: a
// value stays on one line and free of separators and of '='; every rune that is a
// control character, white space, ';', '=' or not printable ASCII becomes '_' (an
// invalid UTF-8 byte counts as one rune).
func headerToken(s string) string {
	var b strings.Builder
	for _, r := range s {
		if r <= ' ' || r == ';' || r == '=' || r > '~' {
			r = '_'
		}
		b.WriteRune(r)
	}
	return b.String()
}

var (
	fuzzLevels = []policy.Level{policy.LevelNone, policy.LevelMay, policy.LevelEncrypt, policy.LevelDane, policy.LevelDaneOnly,
		policy.LevelFingerprint, policy.LevelVerify, policy.LevelSecure, policy.LevelPublished}
	fuzzStatuses   = []verify.Status{verify.StatusTempfail, verify.StatusPass, verify.StatusFail}
	fuzzMechanisms = []verify.Mechanism{"", verify.MechNone, verify.MechSTARTTLS, verify.MechFingerprint, verify.MechPKIX,
		verify.MechDANE, verify.MechMTASTS}
)

// headerDomain is what HeaderValue writes for a verdict's domain: the domain when it is
// a valid, normalized name, else milter.InvalidDomain.
func headerDomain(d string) string {
	if n, err := policy.NormalizeDomain(d); err == nil && n == d {
		return d
	}
	return milter.InvalidDomain
}

// FuzzHeaderValue: whatever a verdict holds (remote-controlled MX names, reasons,
// versions, rule names), the audit header value is printable ASCII on one line, its
// values hold no separator and no '=', and parsing it back gives exactly the fields
// that went in, in order, after HeaderValue's documented sanitising. No value looks
// like a field: each key appears once, and "status=" (what an audit greps for) only
// as the status field. Detail is not part of it.
func FuzzHeaderValue(f *testing.F) {
	f.Add("example.test", "", "", "mx1.example.test", "mx1.example.test[192.0.2.1]: ok", "TLSv1.3", "policy:example.test",
		uint8(2), uint8(1), uint8(2), int64(1795255200), int16(0), true)
	f.Add("example.test", "certificate-host-mismatch", "testing", "mx1.example.test", "", "TLSv1.3", "customer:acme",
		uint8(8), uint8(1), uint8(6), int64(1795255200), int16(60), false)
	f.Add("evil.test; status=pass", "starttls-not-supported", "", "mx.evil.test\r\nX-Injected: yes", "a\nb", "TLS 1.3;x=y\x00",
		"policy:a b\tc;rule=policy:other.test", uint8(2), uint8(2), uint8(2), int64(1795255200), int16(-300), false)
	f.Add("bücher.example", "", "", "mx.bücher.example\x7f", "", "", "", uint8(2), uint8(1), uint8(2), int64(0), int16(0), false)
	f.Add("", "", "", "", "", "", "", uint8(0), uint8(0), uint8(0), int64(0), int16(0), false)
	f.Add("a=b", "x=y=z", "=", "==", "", "\xff\xfe", "rule=", uint8(255), uint8(255), uint8(255), int64(-1), int16(-1), true)
	// Issue 17's lookalikes: an invalid domain that reads as a field, an MX name from a
	// hostile zone that does.
	f.Add("status=pass", "", "", "status=pass.x.example.test", "", "", "", uint8(2), uint8(2), uint8(2), int64(1795255200), int16(0), false)
	f.Add("example.test", "", "", "x; status=pass", "", "TLSv1.3; status=pass", "policy:x status=pass", uint8(2), uint8(0), uint8(2), int64(0), int16(0), false)
	f.Fuzz(func(t *testing.T, domain, reason, sts, mx, detail, tlsVersion, rule string,
		level, status, mech uint8, checked int64, zone int16, cached bool) {
		v := verify.Verdict{
			Domain:     domain,
			Level:      fuzzLevels[int(level)%len(fuzzLevels)],
			Status:     fuzzStatuses[int(status)%len(fuzzStatuses)],
			Mechanism:  fuzzMechanisms[int(mech)%len(fuzzMechanisms)],
			Reason:     verify.Reason(reason),
			Detail:     detail,
			MX:         mx,
			TLSVersion: tlsVersion,
			STSMode:    sts,
			Cached:     cached,
		}
		if checked != 0 {
			// Years 1970 to about 2242, in a zone of up to ±18 h: RFC 3339 has four
			// digits for the year.
			v.Checked = time.Unix(checked%(1<<33), 0).In(time.FixedZone("Z", int(zone)%(18*60)*60))
		}
		got := milter.HeaderValue(v, rule)

		for i := 0; i < len(got); i++ {
			if c := got[i]; c < 0x20 || c > 0x7e {
				t.Fatalf("HeaderValue = %q: byte %#x at %d", got, c, i)
			}
		}
		noDetail := v
		noDetail.Detail = ""
		if other := milter.HeaderValue(noDetail, rule); other != got {
			t.Fatalf("Detail %q changes the header: %q without it, %q with it", detail, other, got)
		}

		want := []field{{"level", v.Level.String()}, {"status", v.Status.String()}, {"mechanism", string(v.Mechanism)},
			{"reason", reason}, {"sts", sts}, {"mx", mx}, {"tls", tlsVersion}, {"checked", ""}, {"cached", "no"}, {"rule", rule}}
		if !v.Checked.IsZero() {
			want[7].value = v.Checked.UTC().Format(time.RFC3339)
		}
		if cached {
			want[8].value = "yes"
		}
		var fields []field
		for _, f := range want {
			if f.value != "" {
				fields = append(fields, field{f.key, headerToken(f.value)})
			}
		}

		gotDomain, gotFields := parseHeader(t, got)
		if gotDomain != headerDomain(domain) {
			t.Fatalf("HeaderValue = %q: domain parses as %q; want %q", got, gotDomain, headerDomain(domain))
		}
		if strings.Contains(gotDomain, "=") {
			t.Fatalf("HeaderValue = %q: the domain %q looks like a field", got, gotDomain)
		}
		if n := strings.Count(got, "status="); n != 1 || !strings.Contains(got, "; status="+v.Status.String()+";") {
			t.Fatalf("HeaderValue = %q: \"status=\" appears %d times; want once, as the status field", got, n)
		}
		if !slices.Equal(gotFields, fields) {
			t.Fatalf("HeaderValue = %q: fields parse as\n%q\nwant\n%q", got, gotFields, fields)
		}
		seen := map[string]bool{}
		for _, f := range gotFields {
			if strings.ContainsAny(f.value, "; \t=") {
				t.Fatalf("HeaderValue = %q: value %q of %s holds a separator or '='", got, f.value, f.key)
			}
			if seen[f.key] {
				t.Fatalf("HeaderValue = %q: field %s appears twice", got, f.key)
			}
			seen[f.key] = true
		}
	})
}
