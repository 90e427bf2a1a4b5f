package verify_test

import (
	"context"
	"crypto/x509"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/tlsgate/tlsgate/internal/fake"
	"github.com/tlsgate/tlsgate/policy"
	"github.com/tlsgate/tlsgate/verify"
)

// TestDANE is the DANE acceptance list of RFC 7672 / RFC 7671 through the fake resolver
// (AD bit per name) and real TLS servers on loopback.
func TestDANE(t *testing.T) {
	t.Parallel()
	const tlsa = "_25._tcp.mx1.example.test."
	tests := []struct {
		name     string
		leaf     fake.CertOptions // server certificate
		selfSign bool
		viaInter bool                                        // issue the leaf from an intermediate CA
		nc       *fake.NameConstraints                       // with viaInter: the intermediate's name constraints
		noTLS    bool                                        // server offers no STARTTLS
		records  func(w *world, leaf, inter string) []string // TLSA RRs, given the leaf and intermediate PEM-less certs' owners
		dns      func(w *world)                              // extra DNS setup (AD toggles, faults)
		dane     want
		daneOnly want
		mech     verify.Mechanism // expected mechanism of the dane pass, when pass
	}{
		{
			name: "DANE-EE matches an expired, self-signed, wrong-name certificate",
			leaf: fake.CertOptions{DNSNames: []string{"wrong.other.test"}, NotBefore: time.Now().Add(-96 * time.Hour), NotAfter: time.Now().Add(-48 * time.Hour)}, selfSign: true,
			records: func(w *world, leaf, _ string) []string { return []string{leaf + " 3 1 1"} },
			dane:    "pass", daneOnly: "pass", mech: verify.MechDANE,
		},
		{
			name:    "DANE-EE full certificate, SHA-512",
			leaf:    fake.CertOptions{DNSNames: []string{"mx1.example.test"}},
			records: func(w *world, leaf, _ string) []string { return []string{leaf + " 3 0 2"} },
			dane:    "pass", daneOnly: "pass", mech: verify.MechDANE,
		},
		{
			name:    "only PKIX-EE (1 1 1): unusable, encrypt semantics",
			leaf:    fake.CertOptions{DNSNames: []string{"mx1.example.test"}},
			records: func(w *world, leaf, _ string) []string { return []string{leaf + " 1 1 1"} },
			dane:    "pass", daneOnly: "fail/tlsa-invalid", mech: verify.MechSTARTTLS,
		},
		{
			name:    "TLSA in an unsigned zone is ignored",
			leaf:    fake.CertOptions{DNSNames: []string{"mx1.example.test"}},
			records: func(w *world, _, _ string) []string { return []string{"x 3 1 1"} }, // would not match
			dns:     func(w *world) { w.dns.SetAllAuthentic(false) },
			dane:    "pass", daneOnly: "fail/dnssec-invalid", mech: verify.MechNone,
		},
		{
			name:    "TLSA unsigned although the MX is signed",
			leaf:    fake.CertOptions{DNSNames: []string{"mx1.example.test"}},
			records: func(w *world, _, _ string) []string { return []string{"x 3 1 1"} },
			dns:     func(w *world) { w.dns.SetAuthentic(tlsa, false) },
			dane:    "pass", daneOnly: "fail/tlsa-invalid", mech: verify.MechNone,
		},
		{
			name: "DANE-TA with a chain: intermediate is the trust anchor",
			leaf: fake.CertOptions{DNSNames: []string{"mx1.example.test"}}, viaInter: true,
			records: func(w *world, _, inter string) []string { return []string{inter + " 2 0 1"} },
			dane:    "pass", daneOnly: "pass", mech: verify.MechDANE,
		},
		{
			name: "DANE-TA: name may be the next-hop domain",
			leaf: fake.CertOptions{DNSNames: []string{"example.test"}}, viaInter: true,
			records: func(w *world, _, inter string) []string { return []string{inter + " 2 1 1"} },
			dane:    "pass", daneOnly: "pass", mech: verify.MechDANE,
		},
		{
			name: "DANE-TA: wrong name fails",
			leaf: fake.CertOptions{DNSNames: []string{"wrong.other.test"}}, viaInter: true,
			records: func(w *world, _, inter string) []string { return []string{inter + " 2 0 1"} },
			dane:    "fail/tlsa-invalid", daneOnly: "fail/tlsa-invalid",
		},
		// Names as OpenSSL checks them for Postfix's DANE-TA (X509_check_host via
		// SSL_add1_host, CN when there is no DNS SAN), and the TA's name constraints
		// applied to a CN-only leaf (issue 17).
		{
			name: "DANE-TA: CN-only leaf, the CN is the name",
			leaf: fake.CertOptions{CommonName: "mx1.example.test"}, viaInter: true,
			records: func(w *world, _, inter string) []string { return []string{inter + " 2 0 1"} },
			dane:    "pass", daneOnly: "pass", mech: verify.MechDANE,
		},
		{
			name: "DANE-TA: SAN with a trailing dot matches no name",
			leaf: fake.CertOptions{DNSNames: []string{"mx1.example.test."}}, viaInter: true,
			records: func(w *world, _, inter string) []string { return []string{inter + " 2 0 1"} },
			dane:    "fail/tlsa-invalid", daneOnly: "fail/tlsa-invalid",
		},
		{
			name: "DANE-TA: CN-only leaf outside the trust anchor's permitted subtree",
			leaf: fake.CertOptions{CommonName: "mx1.example.test"}, viaInter: true, nc: &fake.NameConstraints{Permitted: []string{"attacker.test"}},
			records: func(w *world, _, inter string) []string { return []string{inter + " 2 0 1"} },
			dane:    "fail/tlsa-invalid", daneOnly: "fail/tlsa-invalid",
		},
		{
			name: "DANE-TA: CN-only leaf in the trust anchor's excluded subtree",
			leaf: fake.CertOptions{CommonName: "mx1.example.test"}, viaInter: true, nc: &fake.NameConstraints{Excluded: []string{"example.test"}},
			records: func(w *world, _, inter string) []string { return []string{inter + " 2 0 1"} },
			dane:    "fail/tlsa-invalid", daneOnly: "fail/tlsa-invalid",
		},
		{
			name: "DANE-TA: CN-only leaf inside the trust anchor's permitted subtree",
			leaf: fake.CertOptions{CommonName: "mx1.example.test"}, viaInter: true, nc: &fake.NameConstraints{Permitted: []string{"example.test"}},
			records: func(w *world, _, inter string) []string { return []string{inter + " 2 0 1"} },
			dane:    "pass", daneOnly: "pass", mech: verify.MechDANE,
		},
		{
			name: "DANE-TA: SAN outside the trust anchor's permitted subtree",
			leaf: fake.CertOptions{DNSNames: []string{"mx1.example.test"}}, viaInter: true, nc: &fake.NameConstraints{Permitted: []string{"attacker.test"}},
			records: func(w *world, _, inter string) []string { return []string{inter + " 2 0 1"} },
			dane:    "fail/tlsa-invalid", daneOnly: "fail/tlsa-invalid",
		},
		{
			name: "DANE-EE: name constraints do not matter",
			leaf: fake.CertOptions{CommonName: "mx1.example.test"}, viaInter: true, nc: &fake.NameConstraints{Permitted: []string{"attacker.test"}},
			records: func(w *world, leaf, _ string) []string { return []string{leaf + " 3 1 1"} },
			dane:    "pass", daneOnly: "pass", mech: verify.MechDANE,
		},
		{
			name: "DANE-TA: expired leaf fails",
			leaf: fake.CertOptions{DNSNames: []string{"mx1.example.test"}, NotBefore: time.Now().Add(-96 * time.Hour), NotAfter: time.Now().Add(-48 * time.Hour)}, viaInter: true,
			records: func(w *world, _, inter string) []string { return []string{inter + " 2 0 1"} },
			dane:    "fail/tlsa-invalid", daneOnly: "fail/tlsa-invalid",
		},
		{
			name:    "digest mismatch",
			leaf:    fake.CertOptions{DNSNames: []string{"mx1.example.test"}},
			records: func(w *world, _, _ string) []string { return []string{"x 3 1 1"} },
			dane:    "fail/tlsa-invalid", daneOnly: "fail/tlsa-invalid",
		},
		{
			name:    "digest agility: the stronger SHA-512 record rules",
			leaf:    fake.CertOptions{DNSNames: []string{"mx1.example.test"}},
			records: func(w *world, leaf, _ string) []string { return []string{leaf + " 3 1 1", "x 3 1 2"} },
			dane:    "fail/tlsa-invalid", daneOnly: "fail/tlsa-invalid",
		},
		{
			name: "usable TLSA but no STARTTLS",
			leaf: fake.CertOptions{DNSNames: []string{"mx1.example.test"}}, noTLS: true,
			records: func(w *world, leaf, _ string) []string { return []string{leaf + " 3 1 1"} },
			dane:    "fail/starttls-not-supported", daneOnly: "fail/starttls-not-supported",
		},
		{
			name: "TLSA SERVFAIL on a secure host is never a downgrade",
			leaf: fake.CertOptions{DNSNames: []string{"mx1.example.test"}},
			dns:  func(w *world) { w.dns.SetRcode(tlsa, dns.TypeTLSA, dns.RcodeServerFailure) },
			dane: "tempfail/dns-error", daneOnly: "tempfail/dns-error",
		},
		{
			name: "secure NXDOMAIN for TLSA: no DANE for that host",
			leaf: fake.CertOptions{DNSNames: []string{"mx1.example.test"}}, noTLS: true,
			dane: "pass", daneOnly: "fail/tlsa-invalid", mech: verify.MechNone,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			w := newWorld(t)
			w.dns.SetAllAuthentic(true)
			w.dns.Add(t, "example.test. 300 IN MX 10 mx1.example.test.", "mx1.example.test. 300 IN A 127.0.0.10")
			ca := w.ca
			switch {
			case tc.viaInter && tc.nc != nil:
				ca = w.ca.ConstrainedIntermediate(t, "Test Constrained Intermediate", *tc.nc)
			case tc.viaInter:
				ca = w.ca.Intermediate(t, "Test Intermediate")
			}
			var c = ca.Issue(t, tc.leaf)
			if tc.selfSign {
				c = fake.SelfSigned(t, tc.leaf)
			}
			b := fake.Behavior{Hostname: "mx1.example.test", Cert: &c, NoStartTLS: tc.noTLS}
			s := fake.StartSMTP(t, "127.0.0.10", b)
			s.RegisterWith(w.dialer)
			if tc.records != nil {
				for _, r := range tc.records(w, "LEAF", "INTER") {
					w.dns.Add(t, tlsaRR(t, tlsa, r, c.Leaf, ca))
				}
			}
			if tc.dns != nil {
				tc.dns(w)
			}
			f := w.verifier().Probe(context.Background(), domain)
			v := verify.Judge(f, policy.Policy{Level: policy.LevelDane})
			tc.dane.check(t, "dane", v)
			if v.Status == verify.StatusPass && v.Mechanism != tc.mech {
				t.Errorf("dane: mechanism %s; want %s", v.Mechanism, tc.mech)
			}
			tc.daneOnly.check(t, "dane-only", verify.Judge(f, policy.Policy{Level: policy.LevelDaneOnly}))
			// Other levels are unaffected by TLSA: encrypt passes whenever TLS works.
			if !tc.noTLS && f.MX == verify.MXFound {
				if v := verify.Judge(f, policy.Policy{Level: policy.LevelEncrypt}); v.Status != verify.StatusPass {
					t.Errorf("encrypt: %s/%s", v.Status, v.Reason)
				}
			}
			if tc.mech == verify.MechDANE {
				if names := s.ServerNames(); len(names) == 0 || names[0] != "mx1.example.test" {
					t.Errorf("SNI %q; want the TLSA base domain (RFC 7672 §8.1)", names)
				}
			}
		})
	}
}

// tlsaRR builds a TLSA record from "WHO U S M": WHO is LEAF (the server certificate),
// INTER (the issuing CA) or x (random data that matches nothing).
func tlsaRR(t *testing.T, owner, spec string, leaf *x509.Certificate, ca *fake.CA) string {
	t.Helper()
	var who string
	var u, s, m uint8
	if _, err := fmt.Sscanf(spec, "%s %d %d %d", &who, &u, &s, &m); err != nil {
		t.Fatal(err)
	}
	switch who {
	case "LEAF":
		return fake.TLSA(owner, u, s, m, leaf)
	case "INTER":
		return fake.TLSA(owner, u, s, m, ca.Cert)
	}
	size := map[uint8]int{0: 40, 1: 32, 2: 64}[m]
	data := ""
	for range size {
		data += "ab"
	}
	return fmt.Sprintf("%s 300 IN TLSA %d %d %d %s", owner, u, s, m, data)
}

// TestDANEInsecureMXSecureHost: Postfix's smtp_tls_dane_insecure_mx_policy = dane (default
// since 3.6): a secure MX host's TLSA records apply even when the MX RRset is insecure.
// An unsigned NXDOMAIN for another MX host does not tempfail the domain.
func TestDANEInsecureMXSecureHost(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	w.dns.SetAllAuthentic(true)
	w.dns.Add(t, "example.test. 300 IN MX 10 mx0.unsigned.test.", "example.test. 300 IN MX 20 mx1.example.test.",
		"mx1.example.test. 300 IN A 127.0.0.10", "unsigned.test. 300 IN NS ns.unsigned.test.")
	w.dns.SetAuthentic("example.test.", false)
	w.dns.SetAuthentic("mx0.unsigned.test.", false)
	c := w.ca.Issue(t, fake.CertOptions{DNSNames: []string{"mx1.example.test"}})
	s := fake.StartSMTP(t, "127.0.0.10", fake.Behavior{Hostname: "mx1.example.test", Cert: &c})
	s.RegisterWith(w.dialer)
	w.dns.Add(t, "_25._tcp.mx1.example.test. 300 IN TLSA 3 1 1 "+strings.Repeat("00", 32)) // does not match
	f := w.verifier().Probe(context.Background(), domain)
	if f.MXSecure {
		t.Fatal("MX RRset reported secure")
	}
	want("fail/tlsa-invalid").check(t, "dane", verify.Judge(f, policy.Policy{Level: policy.LevelDane}))
	want("fail/dnssec-invalid").check(t, "dane-only", verify.Judge(f, policy.Policy{Level: policy.LevelDaneOnly}))
	want("pass").check(t, "encrypt", verify.Judge(f, policy.Policy{Level: policy.LevelEncrypt}))
}
