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
