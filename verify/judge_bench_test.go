package verify_test

import (
	"crypto/tls"
	"crypto/x509"
	"net/netip"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/tlsgate/tlsgate/internal/fake"
	"github.com/tlsgate/tlsgate/internal/fingerprint"
	"github.com/tlsgate/tlsgate/internal/smtpprobe"
	"github.com/tlsgate/tlsgate/policy"
	"github.com/tlsgate/tlsgate/verify"
)

// benchFacts are the facts of one domain with one MX host that completed STARTTLS and
// presented leaf (issued by an intermediate, chain of two), PKIX-valid, with DNSSEC and
// the given TLSA records.
func benchFacts(b *testing.B, leaf, inter *x509.Certificate, tlsa ...string) *verify.Facts {
	b.Helper()
	const domain, host = "bench.example.test", "mx1.bench.example.test"
	ip := netip.MustParseAddr("192.0.2.25")
	t := verify.TLSA{Status: verify.TLSANone, Base: host}
	for _, s := range tlsa {
		rr, err := dns.NewRR(s)
		if err != nil {
			b.Fatal(err)
		}
		t.Status = verify.TLSAFound
		t.Records = append(t.Records, rr.(*dns.TLSA))
	}
	now := time.Now()
	return &verify.Facts{
		Domain: domain, MX: verify.MXFound, MXSecure: true, MXDetail: "1 MX host(s)",
		Hosts: []verify.Host{{Name: host, Preference: 10, Addrs: []netip.Addr{ip}, AddrSecure: true, TLSA: t}},
		Attempts: []verify.Attempt{{Host: host, Preference: 10, TLSA: t, Result: smtpprobe.Result{
			IP: ip, Stage: smtpprobe.StageDone, Outcome: smtpprobe.OutcomeTLS, Offered: true,
			Greeting: smtpprobe.Reply{Code: 220, Text: host + " ESMTP"}, EHLO: smtpprobe.Reply{Code: 250, Text: host + "\nPIPELINING\nSTARTTLS"},
			StartTLS:   smtpprobe.Reply{Code: 220, Text: "2.0.0 Ready to start TLS"},
			TLSVersion: tls.VersionTLS13, CipherSuite: tls.TLS_AES_128_GCM_SHA256,
			Chain: []*x509.Certificate{leaf, inter},
		}}},
		Checked: now, Until: now.Add(time.Hour), DNSTTL: time.Hour,
	}
}

// BenchmarkJudge is step 4 of every RCPT: the pure verdict from cached facts, per level.
func BenchmarkJudge(b *testing.B) {
	root := fake.NewCA(b, "Bench Root")
	inter := root.Intermediate(b, "Bench Intermediate")
	cert := inter.Issue(b, fake.CertOptions{DNSNames: []string{"mx1.bench.example.test", "bench.example.test"}})
	const owner = "_25._tcp.mx1.bench.example.test."
	plain := benchFacts(b, cert.Leaf, inter.Cert)
	daneEE := benchFacts(b, cert.Leaf, inter.Cert, fake.TLSA(owner, 3, 1, 1, cert.Leaf))
	daneTA := benchFacts(b, cert.Leaf, inter.Cert, fake.TLSA(owner, 2, 1, 1, inter.Cert))
	fp := fingerprint.Of(cert.Leaf.Raw)
	cases := []struct {
		name string
		f    *verify.Facts
		p    policy.Policy
	}{
		{"encrypt", plain, policy.Policy{Level: policy.LevelEncrypt}},
		{"verify", plain, policy.Policy{Level: policy.LevelVerify}},
		{"secure", plain, policy.Policy{Level: policy.LevelSecure}},
		{"fingerprint", plain, policy.Policy{Level: policy.LevelFingerprint, Match: []string{fp}}},
		{"dane/no-tlsa", plain, policy.Policy{Level: policy.LevelDane}},
		{"dane/ee-3-1-1", daneEE, policy.Policy{Level: policy.LevelDane}},
		{"dane/ta-2-1-1", daneTA, policy.Policy{Level: policy.LevelDane}},
	}
	for _, tc := range cases {
		b.Run(tc.name, func(b *testing.B) {
			if v := verify.Judge(tc.f, tc.p); v.Status != verify.StatusPass {
				b.Fatalf("%s: %s/%s: %s", tc.name, v.Status, v.Reason, v.Detail)
			}
			b.ReportAllocs()
			for b.Loop() {
				verify.Judge(tc.f, tc.p)
			}
		})
	}
}
