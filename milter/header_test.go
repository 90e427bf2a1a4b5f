package milter_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/tlsgate/tlsgate/milter"
	"github.com/tlsgate/tlsgate/policy"
	"github.com/tlsgate/tlsgate/verify"
)

var checkedAt = time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC)

// field is one "key=value" token of the audit header.
type field struct{ key, value string }

// parseHeader splits an audit header value into the domain and its fields, the way a
// reader of RFC 8601-style "; "-separated tokens would.
func parseHeader(t *testing.T, h string) (string, []field) {
	t.Helper()
	parts := strings.Split(h, "; ")
	var fs []field
	for _, p := range parts[1:] {
		k, v, ok := strings.Cut(p, "=")
		if !ok || k == "" || v == "" {
			t.Errorf("header %q: token %q is not key=value", h, p)
			continue
		}
		fs = append(fs, field{k, v})
	}
	return parts[0], fs
}

// TestHeaderValue drives both the format (exact value, golden file) and the parse
// (the value splits back into the fields that went in).
func TestHeaderValue(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		v      verify.Verdict
		rule   string
		want   string
		domain string  // what parsing gives back
		fields []field // what parsing gives back, in order
	}{
		{
			name: "pass",
			v: verify.Verdict{Domain: "example.test", Level: policy.LevelEncrypt, Status: verify.StatusPass, Mechanism: verify.MechSTARTTLS,
				MX: "mx1.example.test", TLSVersion: "TLSv1.3", Checked: checkedAt, Cached: true},
			rule:   "policy:example.test",
			want:   "example.test; level=encrypt; status=pass; mechanism=starttls; mx=mx1.example.test; tls=TLSv1.3; checked=2026-11-21T10:00:00Z; cached=yes; rule=policy:example.test",
			domain: "example.test",
			fields: []field{{"level", "encrypt"}, {"status", "pass"}, {"mechanism", "starttls"}, {"mx", "mx1.example.test"}, {"tls", "TLSv1.3"}, {"checked", "2026-11-21T10:00:00Z"}, {"cached", "yes"}, {"rule", "policy:example.test"}},
		},
		{
			name: "MTA-STS testing: a pass that records what enforce would say",
			v: verify.Verdict{Domain: "example.test", Level: policy.LevelPublished, Status: verify.StatusPass, Mechanism: verify.MechMTASTS,
				Reason: verify.ReasonCertHostMismatch, STSMode: "testing", MX: "mx1.example.test", TLSVersion: "TLSv1.3", Checked: checkedAt},
			rule:   "customer:acme",
			want:   "example.test; level=published; status=pass; mechanism=mta-sts; reason=certificate-host-mismatch; sts=testing; mx=mx1.example.test; tls=TLSv1.3; checked=2026-11-21T10:00:00Z; cached=no; rule=customer:acme",
			domain: "example.test",
			fields: []field{{"level", "published"}, {"status", "pass"}, {"mechanism", "mta-sts"}, {"reason", "certificate-host-mismatch"}, {"sts", "testing"}, {"mx", "mx1.example.test"}, {"tls", "TLSv1.3"}, {"checked", "2026-11-21T10:00:00Z"}, {"cached", "no"}, {"rule", "customer:acme"}},
		},
		{
			name: "fail with reason (header action)",
			v: verify.Verdict{Domain: "example.test", Level: policy.LevelVerify, Status: verify.StatusFail, Mechanism: verify.MechPKIX,
				Reason: verify.ReasonCertExpired, MX: "mx1.example.test", TLSVersion: "TLSv1.2", Checked: checkedAt},
			rule:   "customer:acme",
			want:   "example.test; level=verify; status=fail; mechanism=pkix; reason=certificate-expired; mx=mx1.example.test; tls=TLSv1.2; checked=2026-11-21T10:00:00Z; cached=no; rule=customer:acme",
			domain: "example.test",
			fields: []field{{"level", "verify"}, {"status", "fail"}, {"mechanism", "pkix"}, {"reason", "certificate-expired"}, {"mx", "mx1.example.test"}, {"tls", "TLSv1.2"}, {"checked", "2026-11-21T10:00:00Z"}, {"cached", "no"}, {"rule", "customer:acme"}},
		},
		{
			name: "tempfail without MX, TLS, check time or rule",
			v: verify.Verdict{Domain: "example.test", Level: policy.LevelEncrypt, Status: verify.StatusTempfail, Mechanism: verify.MechSTARTTLS,
				Reason: verify.ReasonVerificationInProgress},
			want:   "example.test; level=encrypt; status=tempfail; mechanism=starttls; reason=in-progress; cached=no",
			domain: "example.test",
			fields: []field{{"level", "encrypt"}, {"status", "tempfail"}, {"mechanism", "starttls"}, {"reason", "in-progress"}, {"cached", "no"}},
		},
		{
			name: "check time in another zone is written in UTC",
			v: verify.Verdict{Domain: "example.test", Level: policy.LevelSecure, Status: verify.StatusPass, Mechanism: verify.MechPKIX,
				MX: "mx1.example.test", TLSVersion: "TLSv1.3", Checked: checkedAt.In(time.FixedZone("CET", 3600)), Cached: true},
			rule:   "policy:.example.test",
			want:   "example.test; level=secure; status=pass; mechanism=pkix; mx=mx1.example.test; tls=TLSv1.3; checked=2026-11-21T10:00:00Z; cached=yes; rule=policy:.example.test",
			domain: "example.test",
			fields: []field{{"level", "secure"}, {"status", "pass"}, {"mechanism", "pkix"}, {"mx", "mx1.example.test"}, {"tls", "TLSv1.3"}, {"checked", "2026-11-21T10:00:00Z"}, {"cached", "yes"}, {"rule", "policy:.example.test"}},
		},
		{
			name: "hostile values cannot add fields or lines",
			v: verify.Verdict{Domain: "evil.test; status=pass", Level: policy.LevelEncrypt, Status: verify.StatusFail, Mechanism: verify.MechSTARTTLS,
				Reason: verify.ReasonSTARTTLSNotSupported, MX: "mx.evil.test\r\nX-Injected: yes", TLSVersion: "TLS 1.3;x=y\x00", Checked: checkedAt},
			rule:   "policy:a b\tc;rule=policy:other.test",
			want:   "invalid-domain; level=encrypt; status=fail; mechanism=starttls; reason=starttls-not-supported; mx=mx.evil.test__X-Injected:_yes; tls=TLS_1.3_x_y_; checked=2026-11-21T10:00:00Z; cached=no; rule=policy:a_b_c_rule_policy:other.test",
			domain: "invalid-domain",
			fields: []field{{"level", "encrypt"}, {"status", "fail"}, {"mechanism", "starttls"}, {"reason", "starttls-not-supported"}, {"mx", "mx.evil.test__X-Injected:_yes"}, {"tls", "TLS_1.3_x_y_"}, {"checked", "2026-11-21T10:00:00Z"}, {"cached", "no"}, {"rule", "policy:a_b_c_rule_policy:other.test"}},
		},
		{
			// Issue 17: "TLSGate-Verdict: status=pass; level=encrypt; status=fail" for an
			// invalid recipient domain under on_fail: header, and "mx=status=pass.x" for
			// an MX name from a hostile zone, fooled a grep for status=pass.
			name: "lookalike fields: an invalid domain and an MX name with '='",
			v: verify.Verdict{Domain: "status=pass", Level: policy.LevelEncrypt, Status: verify.StatusFail, Mechanism: verify.MechSTARTTLS,
				Reason: verify.ReasonNoMX, MX: "status=pass.x.example.test", Checked: checkedAt},
			rule:   "customer:a=b",
			want:   "invalid-domain; level=encrypt; status=fail; mechanism=starttls; reason=no-mx; mx=status_pass.x.example.test; checked=2026-11-21T10:00:00Z; cached=no; rule=customer:a_b",
			domain: "invalid-domain",
			fields: []field{{"level", "encrypt"}, {"status", "fail"}, {"mechanism", "starttls"}, {"reason", "no-mx"}, {"mx", "status_pass.x.example.test"}, {"checked", "2026-11-21T10:00:00Z"}, {"cached", "no"}, {"rule", "customer:a_b"}},
		},
		{
			name: "non-ASCII and DEL",
			v: verify.Verdict{Domain: "bücher.example", Level: policy.LevelEncrypt, Status: verify.StatusPass, Mechanism: verify.MechSTARTTLS,
				MX: "mx.bücher.example\x7f", Checked: checkedAt},
			want:   "invalid-domain; level=encrypt; status=pass; mechanism=starttls; mx=mx.b_cher.example_; checked=2026-11-21T10:00:00Z; cached=no",
			domain: "invalid-domain",
			fields: []field{{"level", "encrypt"}, {"status", "pass"}, {"mechanism", "starttls"}, {"mx", "mx.b_cher.example_"}, {"checked", "2026-11-21T10:00:00Z"}, {"cached", "no"}},
		},
	}
	var b strings.Builder
	for _, tc := range tests {
		got := milter.HeaderValue(tc.v, tc.rule)
		fmt.Fprintf(&b, "# %s\nTLSGate-Verdict: %s\n\n", tc.name, got)
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got != tc.want {
				t.Errorf("HeaderValue =\n%q\nwant\n%q", got, tc.want)
			}
			for _, c := range []byte(got) {
				if c < 0x20 || c > 0x7e {
					t.Fatalf("header value %q has the byte %#x", got, c)
				}
			}
			domain, fields := parseHeader(t, got)
			if domain != tc.domain {
				t.Errorf("parsed domain %q; want %q", domain, tc.domain)
			}
			if fmt.Sprint(fields) != fmt.Sprint(tc.fields) {
				t.Errorf("parsed fields\n%v\nwant\n%v", fields, tc.fields)
			}
			if n := strings.Count(got, "status="); n != 1 {
				t.Errorf("%q holds \"status=\" %d times", got, n)
			}
			seen := map[string]bool{}
			for _, f := range fields {
				if seen[f.key] {
					t.Errorf("field %q appears twice in %q", f.key, got)
				}
				seen[f.key] = true
				if strings.ContainsAny(f.value, "; \t=") {
					t.Errorf("value %q of %s contains a separator", f.value, f.key)
				}
			}
		})
	}
	golden(t, "headers.golden", []byte(b.String()))
}
