package verify_test

import (
	"context"
	"crypto/tls"
	"slices"
	"testing"

	"github.com/tlsgate/tlsgate/internal/fake"
	"github.com/tlsgate/tlsgate/policy"
	"github.com/tlsgate/tlsgate/verify"
)

// TestFactsKey: servername= changes the facts a policy is judged on only where Postfix
// sends it (postconf(5) smtp_tls_servername: "The SNI extension is always on when DANE
// is used ... and in that case ... this parameter is ignored").
func TestFactsKey(t *testing.T) {
	sni := map[string]string{"servername": "hostname"}
	for _, tc := range []struct {
		p    policy.Policy
		want string
	}{
		{policy.Policy{Level: policy.LevelVerify}, "example.test"},
		{policy.Policy{Level: policy.LevelVerify, Attrs: sni}, "example.test sni=hostname"},
		{policy.Policy{Level: policy.LevelSecure, Attrs: map[string]string{"servername": "mx.other.test"}}, "example.test sni=mx.other.test"},
		{policy.Policy{Level: policy.LevelEncrypt, Attrs: sni}, "example.test sni=hostname"},
		{policy.Policy{Level: policy.LevelFingerprint, Attrs: sni}, "example.test sni=hostname"},
		{policy.Policy{Level: policy.LevelDane, Attrs: sni}, "example.test"},
		{policy.Policy{Level: policy.LevelDaneOnly, Attrs: sni}, "example.test"},
		{policy.Policy{Level: policy.LevelMay, Attrs: sni}, "example.test"},
		{policy.Policy{Level: policy.LevelVerify, Attrs: sni, Invalid: "x"}, "example.test"},
	} {
		if got := verify.FactsKey("example.test", tc.p); got != tc.want {
			t.Errorf("FactsKey(%v %v) = %q, want %q", tc.p.Level, tc.p.Attrs, got, tc.want)
		}
	}
}

// TestServername: a server that picks its certificate by SNI (Postfix's
// tls_server_sni_maps) presents a certificate for a wrong name without SNI, its own
// with SNI mx1.example.test, and a self-signed one for mx.other.test. Postfix sends the
// MX host name with servername=hostname, a literal name as given (tls_client.c
// tls_auth_enable); the verdict is the certificate that name picks.
func TestServername(t *testing.T) {
	w := newWorld(t)
	own := w.behaviour("good", "mx1.example.test")
	other := w.behaviour("selfsigned", "mx.other.test")
	b := w.behaviour("wrongname", "mx1.example.test")
	b.SNICerts = map[string]*tls.Certificate{"mx1.example.test": own.Cert, "mx.other.test": other.Cert}
	w.dns.Add(t, "example.test. 300 IN MX 10 mx1.example.test.")
	w.dns.Add(t, "mx1.example.test. 300 IN A 127.0.0.10")
	s := fake.StartSMTP(t, "127.0.0.10", b)
	s.RegisterWith(w.dialer)
	v := w.verifier()
	ctx := context.Background()

	verifyAt := func(servername string) policy.Policy {
		p := policy.Policy{Level: policy.LevelVerify}
		if servername != "" {
			p.Attrs = map[string]string{"servername": servername}
		}
		return p
	}
	for _, tc := range []struct {
		servername string
		want       want
		sni        string
	}{
		{"", "fail/certificate-host-mismatch", ""},
		{"hostname", "pass", "mx1.example.test"},
		{"nexthop", "fail/certificate-host-mismatch", "example.test"}, // no certificate for that name: the default
		{"mx.other.test", "fail/certificate-not-trusted", "mx.other.test"},
	} {
		p := verifyAt(tc.servername)
		before := len(s.ServerNames())
		f, _, err := v.Facts(ctx, verify.FactsKey(domain, p))
		if err != nil {
			t.Fatal(err)
		}
		vd := f.JudgeCached(p)
		tc.want.check(t, "verify servername="+tc.servername, vd)
		if vd.Domain != domain {
			t.Errorf("servername=%s: verdict for %q, want %q", tc.servername, vd.Domain, domain)
		}
		if got := s.ServerNames()[before:]; !slices.Equal(got, []string{tc.sni}) {
			t.Errorf("servername=%s: the server saw SNI %q, want %q", tc.servername, got, tc.sni)
		}
	}
	// Each servername has its own facts: judging again probes nothing.
	n := len(s.ServerNames())
	for _, sn := range []string{"", "hostname", "mx.other.test"} {
		if _, cached, err := v.Facts(ctx, verify.FactsKey(domain, verifyAt(sn))); err != nil || !cached {
			t.Errorf("servername=%s: cached %v, err %v", sn, cached, err)
		}
	}
	if len(s.ServerNames()) != n {
		t.Errorf("cached facts probed again")
	}
}

// TestPublishedMTASTSHostSNI: for a domain with an MTA-STS policy in mode enforce,
// tlsgate's socketmap tells Postfix "secure match=... servername=hostname", so Postfix
// sends the MX host name as SNI; published is judged on the certificate that name
// picks on a server that picks its certificate by SNI, every other level on the one
// Postfix gets there without SNI (postconf(5) smtp_tls_servername; RFC 8461 §4.2).
func TestPublishedMTASTSHostSNI(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name                   string
		noSNI, hostSNI         string // behaviours whose certificates the server presents
		wantPublished, wantVer want
	}{
		// Without the host name the server presents another name's certificate: an
		// MTA-STS sender that sends it gets its own (no false 5xx).
		{"own certificate only with SNI", "wrongname", "good", "pass", "fail/certificate-host-mismatch"},
		// The other way round: never a pass on a certificate Postfix does not get.
		{"self-signed with SNI", "good", "selfsigned", "fail/certificate-not-trusted", "pass"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			w := newWorld(t)
			withSNI := w.behaviour(tc.hostSNI, "mx1.example.test")
			b := w.behaviour(tc.noSNI, "mx1.example.test")
			b.SNICerts = map[string]*tls.Certificate{"mx1.example.test": withSNI.Cert}
			w.dns.Add(t, "example.test. 300 IN MX 10 mx1.example.test.", "mx1.example.test. 300 IN A 127.0.0.10")
			s := fake.StartSMTP(t, "127.0.0.10", b)
			s.RegisterWith(w.dialer)
			w.publishSTS(stsPolicy("enforce", "mx1.example.test"))
			v := w.verifier(w.withSTS)
			f, _, err := v.Facts(context.Background(), domain)
			if err != nil {
				t.Fatal(err)
			}
			tc.wantPublished.check(t, "published", f.JudgeCached(published))
			tc.wantVer.check(t, "verify", f.JudgeCached(policy.Policy{Level: policy.LevelVerify}))
			if got := s.ServerNames(); !slices.Equal(got, []string{"", "mx1.example.test"}) {
				t.Errorf("the server saw SNI %q; want none, then the MX host name", got)
			}
		})
	}
}
