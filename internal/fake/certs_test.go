package fake_test

import (
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/tlsgate/tlsgate/internal/fake"
)

func TestIssueVerifiesForItsNames(t *testing.T) {
	t.Parallel()
	ca := fake.NewCA(t, "Test Root")
	cert := ca.Issue(t, fake.CertOptions{DNSNames: []string{"mx1.example.test", "mx2.example.test"}})

	if cert.Leaf == nil {
		t.Fatal("Leaf not set")
	}
	if len(cert.Certificate) != 1 {
		t.Fatalf("chain length %d, want 1 (leaf only, root left out)", len(cert.Certificate))
	}
	if _, ok := cert.PrivateKey.(*ecdsa.PrivateKey); !ok {
		t.Errorf("private key %T, want *ecdsa.PrivateKey", cert.PrivateKey)
	}
	if got := cert.Leaf.Subject.CommonName; got != "mx1.example.test" {
		t.Errorf("CommonName %q, want the first DNS name", got)
	}
	if len(cert.Leaf.ExtKeyUsage) != 1 || cert.Leaf.ExtKeyUsage[0] != x509.ExtKeyUsageServerAuth {
		t.Errorf("ExtKeyUsage %v, want serverAuth", cert.Leaf.ExtKeyUsage)
	}
	for _, name := range []string{"mx1.example.test", "mx2.example.test"} {
		if _, err := cert.Leaf.Verify(x509.VerifyOptions{Roots: ca.Pool, DNSName: name}); err != nil {
			t.Errorf("verify for %s: %v", name, err)
		}
	}
	_, err := cert.Leaf.Verify(x509.VerifyOptions{Roots: ca.Pool, DNSName: "other.example.test"})
	var hostErr x509.HostnameError
	if !errors.As(err, &hostErr) {
		t.Errorf("verify for a foreign name: %v, want x509.HostnameError", err)
	}
	_, err = cert.Leaf.Verify(x509.VerifyOptions{Roots: fake.NewCA(t, "Other Root").Pool, DNSName: "mx1.example.test"})
	var authErr x509.UnknownAuthorityError
	if !errors.As(err, &authErr) {
		t.Errorf("verify against another root: %v, want x509.UnknownAuthorityError", err)
	}
}

func TestIssueRSAAndIP(t *testing.T) {
	t.Parallel()
	ca := fake.NewCA(t, "Test Root")
	cert := ca.Issue(t, fake.CertOptions{
		CommonName:  "rsa.example.test",
		RSA:         true,
		IPAddresses: []netip.Addr{netip.MustParseAddr("127.0.0.5")},
	})
	if _, ok := cert.PrivateKey.(*rsa.PrivateKey); !ok {
		t.Errorf("private key %T, want *rsa.PrivateKey", cert.PrivateKey)
	}
	if cert.Leaf.PublicKeyAlgorithm != x509.RSA {
		t.Errorf("public key algorithm %v, want RSA", cert.Leaf.PublicKeyAlgorithm)
	}
	if cert.Leaf.Subject.CommonName != "rsa.example.test" {
		t.Errorf("CommonName %q", cert.Leaf.Subject.CommonName)
	}
	if _, err := cert.Leaf.Verify(x509.VerifyOptions{Roots: ca.Pool, DNSName: "127.0.0.5"}); err != nil {
		t.Errorf("verify for IP: %v", err)
	}
}

func TestCertificateDates(t *testing.T) {
	t.Parallel()
	ca := fake.NewCA(t, "Test Root")
	now := time.Now()
	test := func(name string, o fake.CertOptions, wantErr bool) {
		t.Helper()
		cert := ca.Issue(t, o)
		if !cert.Leaf.NotBefore.Before(cert.Leaf.NotAfter) {
			t.Errorf("%s: NotBefore %v not before NotAfter %v", name, cert.Leaf.NotBefore, cert.Leaf.NotAfter)
		}
		_, err := cert.Leaf.Verify(x509.VerifyOptions{Roots: ca.Pool, DNSName: "mx.example.test", CurrentTime: now})
		var invalid x509.CertificateInvalidError
		switch {
		case !wantErr && err != nil:
			t.Errorf("%s: %v", name, err)
		case wantErr && !(errors.As(err, &invalid) && invalid.Reason == x509.Expired):
			t.Errorf("%s: error %v, want x509.Expired", name, err)
		}
	}
	names := []string{"mx.example.test"}
	test("default", fake.CertOptions{DNSNames: names}, false)
	test("expired", fake.CertOptions{DNSNames: names, NotBefore: now.Add(-48 * time.Hour), NotAfter: now.Add(-24 * time.Hour)}, true)
	test("expired, NotAfter only", fake.CertOptions{DNSNames: names, NotAfter: now.Add(-2 * time.Hour)}, true)
	test("not yet valid, NotBefore only", fake.CertOptions{DNSNames: names, NotBefore: now.Add(48 * time.Hour)}, true)

	cert := ca.Issue(t, fake.CertOptions{DNSNames: names})
	if d := cert.Leaf.NotAfter.Sub(now); d < 23*time.Hour || d > 25*time.Hour {
		t.Errorf("default NotAfter %v from now, want about a day", d)
	}
}

func TestIntermediateChainVerifiesToRoot(t *testing.T) {
	t.Parallel()
	root := fake.NewCA(t, "Test Root")
	inter := root.Intermediate(t, "Test Intermediate")
	inter2 := inter.Intermediate(t, "Test Intermediate 2")
	if inter.Root() != root || inter2.Root() != root {
		t.Fatal("Root() does not lead to the root")
	}

	cert := inter2.Issue(t, fake.CertOptions{DNSNames: []string{"mx.example.test"}})
	if len(cert.Certificate) != 3 {
		t.Fatalf("chain length %d, want 3 (leaf, inter2, inter)", len(cert.Certificate))
	}
	intermediates := x509.NewCertPool()
	for i, der := range cert.Certificate[1:] {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			t.Fatal(err)
		}
		if want := []*fake.CA{inter2, inter}[i]; !c.Equal(want.Cert) {
			t.Errorf("chain[%d] is %q, want %q", i+1, c.Subject.CommonName, want.Cert.Subject.CommonName)
		}
		intermediates.AddCert(c)
	}

	chains, err := cert.Leaf.Verify(x509.VerifyOptions{Roots: root.Pool, Intermediates: intermediates, DNSName: "mx.example.test"})
	if err != nil {
		t.Fatalf("verify with intermediates: %v", err)
	}
	if got := len(chains[0]); got != 4 {
		t.Errorf("verified chain length %d, want 4", got)
	}
	if !chains[0][3].Equal(root.Cert) {
		t.Errorf("chain ends at %q, want the root", chains[0][3].Subject.CommonName)
	}
	if _, err := cert.Leaf.Verify(x509.VerifyOptions{Roots: root.Pool, Intermediates: inter2.IntermediatePool(), DNSName: "mx.example.test"}); err != nil {
		t.Errorf("verify with IntermediatePool: %v", err)
	}
	_, err = cert.Leaf.Verify(x509.VerifyOptions{Roots: root.Pool, DNSName: "mx.example.test"})
	var authErr x509.UnknownAuthorityError
	if !errors.As(err, &authErr) {
		t.Errorf("verify without intermediates: %v, want x509.UnknownAuthorityError", err)
	}
	// An intermediate as trust anchor (as DANE-TA uses it) also works.
	if _, err := cert.Leaf.Verify(x509.VerifyOptions{Roots: inter.Pool, Intermediates: intermediates, DNSName: "mx.example.test"}); err != nil {
		t.Errorf("verify against the intermediate as anchor: %v", err)
	}
}

func TestSelfSigned(t *testing.T) {
	t.Parallel()
	cert := fake.SelfSigned(t, fake.CertOptions{DNSNames: []string{"self.example.test"}})
	if len(cert.Certificate) != 1 || cert.Leaf == nil {
		t.Fatalf("chain length %d, Leaf %v", len(cert.Certificate), cert.Leaf)
	}
	if err := cert.Leaf.CheckSignatureFrom(cert.Leaf); err == nil {
		t.Error("a non-CA self-signed leaf should not be a valid issuer for itself")
	}
	if err := cert.Leaf.CheckSignature(cert.Leaf.SignatureAlgorithm, cert.Leaf.RawTBSCertificate, cert.Leaf.Signature); err != nil {
		t.Errorf("self signature: %v", err)
	}
	_, err := cert.Leaf.Verify(x509.VerifyOptions{Roots: fake.NewCA(t, "Test Root").Pool, DNSName: "self.example.test"})
	var authErr x509.UnknownAuthorityError
	if !errors.As(err, &authErr) {
		t.Errorf("verify: %v, want x509.UnknownAuthorityError", err)
	}
}

func TestWritePEM(t *testing.T) {
	t.Parallel()
	root := fake.NewCA(t, "Test Root")
	dir := t.TempDir()
	for _, ca := range []*fake.CA{root, root.Intermediate(t, "Test Intermediate")} {
		path := ca.WritePEM(t, dir)
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		block, rest := pem.Decode(data)
		if block == nil || block.Type != "CERTIFICATE" || len(rest) != 0 {
			t.Fatalf("%s: not one PEM certificate: %q", path, data)
		}
		if c, err := x509.ParseCertificate(block.Bytes); err != nil || !c.Equal(root.Cert) {
			t.Errorf("%s: holds %v (err %v), want the root", path, c.Subject, err)
		}
	}
}

func TestTLSARecord(t *testing.T) {
	t.Parallel()
	cert := fake.SelfSigned(t, fake.CertOptions{DNSNames: []string{"mx.example.test"}})
	line := fake.TLSA("_25._tcp.mx.example.test.", 3, 1, 1, cert.Leaf)
	rr, err := dns.NewRR(line)
	if err != nil {
		t.Fatalf("%q: %v", line, err)
	}
	tlsa := rr.(*dns.TLSA)
	sum := sha256.Sum256(cert.Leaf.RawSubjectPublicKeyInfo)
	if tlsa.Usage != 3 || tlsa.Selector != 1 || tlsa.MatchingType != 1 || tlsa.Certificate != hex.EncodeToString(sum[:]) {
		t.Errorf("TLSA %v does not match the certificate", tlsa)
	}
	if err := tlsa.Verify(cert.Leaf); err != nil {
		t.Errorf("miekg/dns TLSA.Verify: %v", err)
	}
}

// TestConstrainedIntermediate: the sub-CA carries critical DNS name constraints, its
// certificates chain to the root, and Go enforces the constraints on subjectAltNames.
func TestConstrainedIntermediate(t *testing.T) {
	t.Parallel()
	root := fake.NewCA(t, "Test Root")
	sub := root.ConstrainedIntermediate(t, "Constrained", fake.NameConstraints{Permitted: []string{"example.test"}, Excluded: []string{"secret.example.test"}})
	if !sub.Cert.PermittedDNSDomainsCritical || len(sub.Cert.PermittedDNSDomains) != 1 || len(sub.Cert.ExcludedDNSDomains) != 1 {
		t.Fatalf("constraints: critical %v, permitted %q, excluded %q", sub.Cert.PermittedDNSDomainsCritical, sub.Cert.PermittedDNSDomains, sub.Cert.ExcludedDNSDomains)
	}
	for name, ok := range map[string]bool{"mx.example.test": true, "mx.other.test": false, "mx.secret.example.test": false} {
		c := sub.Issue(t, fake.CertOptions{DNSNames: []string{name}})
		if len(c.Certificate) != 2 {
			t.Fatalf("chain length %d; want leaf and sub-CA", len(c.Certificate))
		}
		_, err := c.Leaf.Verify(x509.VerifyOptions{Roots: root.Pool, Intermediates: sub.IntermediatePool()})
		if (err == nil) != ok {
			t.Errorf("%s: Verify error %v; want ok=%v", name, err, ok)
		}
	}
	// A subject with several CNs.
	c := sub.Issue(t, fake.CertOptions{CommonName: "a.example.test", MoreCommonNames: []string{"b.example.test"}})
	var cns []string
	for _, atv := range c.Leaf.Subject.Names {
		if atv.Type.String() == "2.5.4.3" {
			cns = append(cns, atv.Value.(string))
		}
	}
	if len(cns) != 2 || cns[0] != "a.example.test" || cns[1] != "b.example.test" || len(c.Leaf.DNSNames) != 0 {
		t.Errorf("CNs %q, SANs %q; want two CNs and no SAN", cns, c.Leaf.DNSNames)
	}
}
