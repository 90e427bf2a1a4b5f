package verify

import (
	"crypto/tls"
	"crypto/x509"
	"net/netip"
	"testing"
	"time"

	"github.com/tlsgate/tlsgate/internal/fake"
	"github.com/tlsgate/tlsgate/internal/smtpprobe"
	"github.com/tlsgate/tlsgate/policy"
)

// TestReportFromCachedFacts: cached facts keep no chain (compact), yet a report made
// from them (the check page and API answer from the cache) still shows the
// certificate's subject, issuer, names and validity, as one made from a fresh probe does.
func TestReportFromCachedFacts(t *testing.T) {
	t.Parallel()
	cert := fake.SelfSigned(t, fake.CertOptions{DNSNames: []string{"mx.example.com"}, CommonName: "mx.example.com"})
	leaf := cert.Leaf
	f := &Facts{Domain: "example.com", MX: MXFound, Hosts: []Host{{Name: "mx.example.com", Addrs: []netip.Addr{netip.MustParseAddr("192.0.2.1")}}}}
	f.Attempts = []Attempt{{Host: "mx.example.com", Cert: summarize(leaf), Result: smtpprobe.Result{
		IP: netip.MustParseAddr("192.0.2.1"), Outcome: smtpprobe.OutcomeTLS, Offered: true, TLSVersion: tls.VersionTLS13,
		Chain: []*x509.Certificate{leaf}, PKIX: x509.UnknownAuthorityError{}}}}
	v := Judge(f, policy.Policy{Level: policy.LevelEncrypt})
	fresh := NewReport(f, v, "")
	f.compact()
	if f.Attempts[0].Result.Chain != nil {
		t.Fatal("compact kept the chain")
	}
	cached := NewReport(f, v, "")
	a, b := fresh.MX[0].Attempts[0], cached.MX[0].Attempts[0]
	if b.Certificate == nil {
		t.Fatal("no certificate in the report from cached facts")
	}
	if a.Certificate.Subject != b.Certificate.Subject || a.Certificate.Issuer != b.Certificate.Issuer ||
		!a.Certificate.NotAfter.Equal(b.Certificate.NotAfter) || !a.Certificate.NotBefore.Equal(b.Certificate.NotBefore) ||
		a.Certificate.SHA256 != b.Certificate.SHA256 || a.Certificate.SPKISHA256 != b.Certificate.SPKISHA256 ||
		len(b.Certificate.DNSNames) != 1 || b.Certificate.DNSNames[0] != "mx.example.com" || a.PKIX != b.PKIX {
		t.Errorf("from the cache %+v (pkix %q); fresh %+v (pkix %q)", b.Certificate, b.PKIX, a.Certificate, a.PKIX)
	}
	if b.Certificate.Subject != "CN=mx.example.com" || b.Certificate.NotAfter.Before(time.Now()) {
		t.Errorf("subject %q, not after %s", b.Certificate.Subject, b.Certificate.NotAfter)
	}
}
