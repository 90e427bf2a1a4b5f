package verify

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/md5"
	"crypto/rand"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/tlsgate/tlsgate/internal/fingerprint"
	"github.com/tlsgate/tlsgate/internal/smtpprobe"
	"github.com/tlsgate/tlsgate/policy"
)

func testCert(t *testing.T, cn string, names ...string) *x509.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: cn}, DNSNames: names,
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func hexColon(b []byte, sep string, lower bool) string {
	s := strings.ReplaceAll(fingerprint.Format(b), ":", sep)
	if lower {
		s = strings.ToLower(s)
	}
	return s
}

// TestFingerprintForms: Postfix's "AA:BB" notation, lower case, no separators, every
// digest length, certificate and public key (TLS_README "fingerprint").
func TestFingerprintForms(t *testing.T) {
	t.Parallel()
	leaf := testCert(t, "mx.example.test", "mx.example.test")
	s256 := sha256.Sum256(leaf.Raw)
	spki := sha256.Sum256(leaf.RawSubjectPublicKeyInfo)
	s1 := sha1.Sum(leaf.Raw)
	m5 := md5.Sum(leaf.Raw)
	s512 := sha512.Sum512(leaf.Raw)
	other := sha256.Sum256([]byte("x"))
	tests := []struct {
		name  string
		match []string
		want  bool
	}{
		{"sha256 cert", []string{hexColon(s256[:], ":", false)}, true},
		{"sha256 lower case", []string{hexColon(s256[:], ":", true)}, true},
		{"sha256 without colons", []string{hexColon(s256[:], "", false)}, true},
		{"sha256 public key", []string{hexColon(spki[:], ":", false)}, true},
		// Postfix 3.7 compares smtp_tls_fingerprint_digest = sha256 only.
		{"sha1 never matches", []string{hexColon(s1[:], ":", false)}, false},
		{"md5 never matches", []string{hexColon(m5[:], ":", false)}, false},
		{"sha512 never matches", []string{hexColon(s512[:], ":", false)}, false},
		{"second of two", []string{hexColon(other[:], ":", false), hexColon(s256[:], ":", false)}, true},
		{"other digest", []string{hexColon(other[:], ":", false)}, false},
		{"garbage", []string{"zz:yy", "", ":::"}, false},
		{"truncated", []string{hexColon(s256[:16], ":", false) + ":00"}, false},
		{"none", nil, false},
	}
	for _, tc := range tests {
		if got := fingerprintMatches(summarize(leaf), tc.match); got != tc.want {
			t.Errorf("%s: fingerprintMatches = %v; want %v", tc.name, got, tc.want)
		}
	}
}

// TestReferenceNames: postconf(5) smtp_tls_verify_cert_match / smtp_tls_secure_cert_match.
func TestReferenceNames(t *testing.T) {
	t.Parallel()
	tests := []struct {
		p    policy.Policy
		want string
	}{
		{policy.Policy{Level: policy.LevelVerify}, "mx.example.test"},
		{policy.Policy{Level: policy.LevelSecure}, "example.test .example.test"},
		{policy.Policy{Level: policy.LevelSecure, Match: []string{"hostname", "nexthop"}}, "mx.example.test example.test"},
		{policy.Policy{Level: policy.LevelVerify, Match: []string{"Mail.Example.Test", ".other.test"}}, "mail.example.test .other.test"},
	}
	for _, tc := range tests {
		if got := strings.Join(referenceNames(tc.p, "mx.example.test", "example.test"), " "); got != tc.want {
			t.Errorf("%s match=%v: %q; want %q", tc.p.Level, tc.p.Match, got, tc.want)
		}
	}
}

// TestCertNamesCNFallback: the CN counts only when there is no DNS subjectAltName.
func TestCertNamesCNFallback(t *testing.T) {
	t.Parallel()
	if got := certNames(testCert(t, "mx.example.test")); len(got) != 1 || got[0] != "mx.example.test" {
		t.Errorf("CN only: %v", got)
	}
	if got := certNames(testCert(t, "cn.example.test", "san.example.test")); len(got) != 1 || got[0] != "san.example.test" {
		t.Errorf("CN and SAN: %v", got)
	}
}

// TestJudgeZeroValues: facts and results that were never filled in never pass.
func TestJudgeZeroValues(t *testing.T) {
	t.Parallel()
	levels := []policy.Level{policy.LevelEncrypt, policy.LevelFingerprint, policy.LevelVerify, policy.LevelSecure}
	for _, l := range levels {
		if v := Judge(&Facts{}, policy.Policy{Level: l}); v.Status == StatusPass {
			t.Errorf("%s: zero Facts pass", l)
		}
		f := &Facts{MX: MXFound, Attempts: []Attempt{{Host: "mx.example.test"}}}
		if v := Judge(f, policy.Policy{Level: l}); v.Status != StatusTempfail {
			t.Errorf("%s: unprobed attempt gives %s; want tempfail", l, v.Status)
		}
		f = &Facts{MX: MXFound, Attempts: []Attempt{{Host: "mx.example.test", Result: smtpprobe.Result{Outcome: smtpprobe.OutcomeTLS}}}}
		if v := Judge(f, policy.Policy{Level: l}); v.Status == StatusPass {
			t.Errorf("%s: TLS without a certificate passes", l)
		}
	}
	var v Verdict
	if v.Status != StatusTempfail {
		t.Errorf("zero Verdict status is %s; want tempfail", v.Status)
	}
}

// TestJudgeDANEInsecureMX: without a validated MX RRset "dane-only" fails (RFC 7672
// §2.2.1); "dane" is opportunistic TLS for a host without TLSA.
func TestJudgeDANEInsecureMX(t *testing.T) {
	t.Parallel()
	f := &Facts{MX: MXFound, MXSecure: false, Attempts: []Attempt{{Host: "mx.example.test", Result: smtpprobe.Result{Outcome: smtpprobe.OutcomeNoStartTLS}}}}
	if v := Judge(f, policy.Policy{Level: policy.LevelDane}); v.Status != StatusPass || v.Mechanism != MechNone {
		t.Errorf("dane: %s/%s; want pass with mechanism none", v.Status, v.Mechanism)
	}
	if v := Judge(f, policy.Policy{Level: policy.LevelDaneOnly}); v.Status != StatusFail || v.Reason != ReasonDNSSECInvalid {
		t.Errorf("dane-only: %s/%s; want fail/%s", v.Status, v.Reason, ReasonDNSSECInvalid)
	}
}

// TestJudgeCached: the memo gives exactly Judge's verdict for every policy, and keeps
// policies that differ only in match= apart.
func TestJudgeCached(t *testing.T) {
	t.Parallel()
	leaf := testCert(t, "mx1.example.test", "mx1.example.test")
	f := &Facts{Domain: "example.test", MX: MXFound,
		Hosts: []Host{{Name: "mx1.example.test"}},
		Attempts: []Attempt{{Host: "mx1.example.test", Result: smtpprobe.Result{
			Outcome: smtpprobe.OutcomeTLS, TLSVersion: 0x0304, Chain: []*x509.Certificate{leaf}}}}}
	policies := []policy.Policy{
		{Level: policy.LevelEncrypt},
		{Level: policy.LevelVerify},
		{Level: policy.LevelVerify, Match: []string{"other.test"}},
		{Level: policy.LevelSecure},
		{Level: policy.LevelFingerprint, Match: []string{fingerprint.Of(leaf.Raw)}},
		{Level: policy.LevelFingerprint, Match: []string{"00:11"}},
	}
	for round := range 2 {
		for _, p := range policies {
			got, want := f.JudgeCached(p), Judge(f, p)
			if got.Status != want.Status || got.Reason != want.Reason || got.Detail != want.Detail {
				t.Errorf("round %d, %s %q: memo %s/%s, Judge %s/%s", round, p.Level, p.Match, got.Status, got.Reason, want.Status, want.Reason)
			}
		}
	}
}
