package fake

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/netip"
	"os"
	"testing"
	"time"
)

// CA is a certificate authority made for one test. A root CA comes from
// NewCA, an intermediate from CA.Intermediate.
type CA struct {
	// Cert is this authority's own certificate: self-signed for a root,
	// signed by its parent for an intermediate.
	Cert *x509.Certificate
	// Key is the private key matching Cert.
	Key crypto.Signer
	// Pool is a certificate pool holding only Cert. For a root it is what
	// a verifier passes as x509.VerifyOptions.Roots.
	Pool *x509.CertPool

	parent *CA
}

// CertOptions describe a certificate to issue. The zero value gives an
// ECDSA P-256 certificate without names, valid from an hour ago for a day.
type CertOptions struct {
	// DNSNames are the subjectAltName dNSName entries.
	DNSNames []string
	// IPAddresses are the subjectAltName iPAddress entries.
	IPAddresses []netip.Addr
	// CommonName is the subject CN. Empty means the first DNS name, if any.
	CommonName string
	// MoreCommonNames are further subject CN attributes after CommonName (a
	// subject may hold several; OpenSSL matches each).
	MoreCommonNames []string
	// NotBefore and NotAfter bound the validity period. A zero NotBefore
	// means an hour ago, a zero NotAfter a day from now; if only one of
	// them is given and the default would invert the period (for an
	// expired or not-yet-valid certificate), the default is moved to
	// 25 hours away from the given one instead.
	NotBefore, NotAfter time.Time
	// RSA selects an RSA-2048 key instead of ECDSA P-256.
	RSA bool
}

// caTemplate is the certificate of a CA named name, valid from an hour ago for a day.
func caTemplate(t testing.TB, name string) *x509.Certificate {
	now := time.Now()
	return &x509.Certificate{
		SerialNumber:          serial(t),
		Subject:               pkix.Name{CommonName: name, Organization: []string{"tlsgate fake"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
}

// NewCA creates a self-signed root CA with an ECDSA P-256 key, valid from an
// hour ago for a day. It fails the test on error.
func NewCA(t testing.TB, name string) *CA {
	t.Helper()
	key := newKey(t, false)
	tmpl := caTemplate(t, name)
	return newCA(t, tmpl, tmpl, key, key, nil)
}

// Intermediate creates an intermediate CA signed by ca. Certificates it
// issues carry the chain of intermediates up to, but not including, the
// root. It fails the test on error.
func (ca *CA) Intermediate(t testing.TB, name string) *CA {
	t.Helper()
	key := newKey(t, false)
	tmpl := caTemplate(t, name)
	return newCA(t, tmpl, ca.Cert, key, ca.Key, ca)
}

// NameConstraints are the DNS name constraints of a constrained intermediate CA
// (RFC 5280 §4.2.1.10): names it may issue (Permitted, none meaning any) and names it
// may not (Excluded). A leading "." means subdomains only.
type NameConstraints struct {
	Permitted, Excluded []string
}

// ConstrainedIntermediate creates an intermediate CA signed by ca whose certificate
// carries the DNS name constraints nc (critical, as RFC 5280 requires). It fails the
// test on error.
func (ca *CA) ConstrainedIntermediate(t testing.TB, name string, nc NameConstraints) *CA {
	t.Helper()
	key := newKey(t, false)
	tmpl := caTemplate(t, name)
	tmpl.PermittedDNSDomainsCritical = true
	tmpl.PermittedDNSDomains = nc.Permitted
	tmpl.ExcludedDNSDomains = nc.Excluded
	return newCA(t, tmpl, ca.Cert, key, ca.Key, ca)
}

func newCA(t testing.TB, tmpl, parent *x509.Certificate, key, parentKey crypto.Signer, parentCA *CA) *CA {
	t.Helper()
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, key.Public(), parentKey)
	if err != nil {
		t.Fatalf("fake: create CA certificate %q: %v", tmpl.Subject.CommonName, err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatalf("fake: parse CA certificate %q: %v", tmpl.Subject.CommonName, err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &CA{Cert: cert, Key: key, Pool: pool, parent: parentCA}
}

// Root returns the root CA at the top of ca's chain (ca itself for a root).
func (ca *CA) Root() *CA {
	for ca.parent != nil {
		ca = ca.parent
	}
	return ca
}

// Intermediates returns the intermediate CA certificates from ca up to, but
// not including, the root, leaf side first. It is empty for a root. The
// result suits x509.VerifyOptions.Intermediates via IntermediatePool.
func (ca *CA) Intermediates() []*x509.Certificate {
	var out []*x509.Certificate
	for c := ca; c.parent != nil; c = c.parent {
		out = append(out, c.Cert)
	}
	return out
}

// IntermediatePool returns a pool holding ca.Intermediates().
func (ca *CA) IntermediatePool() *x509.CertPool {
	pool := x509.NewCertPool()
	for _, c := range ca.Intermediates() {
		pool.AddCert(c)
	}
	return pool
}

// Issue creates a server certificate signed by ca (ExtKeyUsage serverAuth).
// The returned chain is the leaf followed by the intermediates up to, but
// not including, the root; Leaf is set. It fails the test on error.
func (ca *CA) Issue(t testing.TB, o CertOptions) tls.Certificate {
	t.Helper()
	key := newKey(t, o.RSA)
	tmpl := leafTemplate(t, o, key)
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, key.Public(), ca.Key)
	if err != nil {
		t.Fatalf("fake: issue certificate for %v: %v", o.DNSNames, err)
	}
	chain := [][]byte{der}
	for _, c := range ca.Intermediates() {
		chain = append(chain, c.Raw)
	}
	return finish(t, chain, key)
}

// SelfSigned creates a self-signed server certificate (not a CA). It fails
// the test on error.
func SelfSigned(t testing.TB, o CertOptions) tls.Certificate {
	t.Helper()
	key := newKey(t, o.RSA)
	tmpl := leafTemplate(t, o, key)
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatalf("fake: self-signed certificate for %v: %v", o.DNSNames, err)
	}
	return finish(t, [][]byte{der}, key)
}

// WritePEM writes the root certificate of ca's chain (ca.Root().Cert) as PEM
// to a new file in dir and returns its path, for tests of a configured CA
// file (probe.ca_file). It fails the test on error.
func (ca *CA) WritePEM(t testing.TB, dir string) string {
	t.Helper()
	f, err := os.CreateTemp(dir, "ca-*.pem")
	if err != nil {
		t.Fatalf("fake: write CA PEM: %v", err)
	}
	err = pem.Encode(f, &pem.Block{Type: "CERTIFICATE", Bytes: ca.Root().Cert.Raw})
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatalf("fake: write CA PEM %s: %v", f.Name(), err)
	}
	return f.Name()
}

// TLSA returns a zone-file line for a TLSA record at owner (for example
// "_25._tcp.mx1.example.test.") with a TTL of 300, matching cert with the
// given usage, selector and matching type (RFC 6698 §2.1), ready for
// DNSServer.Add. Selector 0 is the whole certificate, 1 the
// SubjectPublicKeyInfo; matching type 0 is the full data, 1 SHA-256, 2
// SHA-512. It panics on an unknown selector or matching type, which is a bug
// in the test.
func TLSA(owner string, usage, selector, matchingType uint8, cert *x509.Certificate) string {
	var data []byte
	switch selector {
	case 0:
		data = cert.Raw
	case 1:
		data = cert.RawSubjectPublicKeyInfo
	default:
		panic(fmt.Sprintf("fake: TLSA selector %d", selector))
	}
	switch matchingType {
	case 0:
	case 1:
		sum := sha256.Sum256(data)
		data = sum[:]
	case 2:
		sum := sha512.Sum512(data)
		data = sum[:]
	default:
		panic(fmt.Sprintf("fake: TLSA matching type %d", matchingType))
	}
	return fmt.Sprintf("%s 300 IN TLSA %d %d %d %s", owner, usage, selector, matchingType, hex.EncodeToString(data))
}

func leafTemplate(t testing.TB, o CertOptions, key crypto.Signer) *x509.Certificate {
	t.Helper()
	cn := o.CommonName
	if cn == "" && len(o.DNSNames) > 0 {
		cn = o.DNSNames[0]
	}
	notBefore, notAfter := validity(o.NotBefore, o.NotAfter)
	usage := x509.KeyUsageDigitalSignature
	if _, ok := key.(*rsa.PrivateKey); ok {
		usage |= x509.KeyUsageKeyEncipherment
	}
	ips := make([]net.IP, 0, len(o.IPAddresses))
	for _, a := range o.IPAddresses {
		ips = append(ips, net.IP(a.Unmap().AsSlice()))
	}
	return &x509.Certificate{
		SerialNumber:          serial(t),
		Subject:               leafSubject(cn, o.MoreCommonNames),
		DNSNames:              o.DNSNames,
		IPAddresses:           ips,
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		KeyUsage:              usage,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
	}
}

// leafSubject is a subject with the CN attributes cn and then more.
func leafSubject(cn string, more []string) pkix.Name {
	if len(more) == 0 {
		return pkix.Name{CommonName: cn}
	}
	var n pkix.Name
	for _, v := range append([]string{cn}, more...) {
		n.ExtraNames = append(n.ExtraNames, pkix.AttributeTypeAndValue{Type: asn1.ObjectIdentifier{2, 5, 4, 3}, Value: v})
	}
	return n
}

// validity applies the CertOptions defaults for NotBefore and NotAfter.
func validity(notBefore, notAfter time.Time) (time.Time, time.Time) {
	now := time.Now()
	switch {
	case notBefore.IsZero() && notAfter.IsZero():
		return now.Add(-time.Hour), now.Add(24 * time.Hour)
	case notBefore.IsZero():
		notBefore = now.Add(-time.Hour)
		if !notBefore.Before(notAfter) {
			notBefore = notAfter.Add(-25 * time.Hour)
		}
	case notAfter.IsZero():
		notAfter = now.Add(24 * time.Hour)
		if !notBefore.Before(notAfter) {
			notAfter = notBefore.Add(25 * time.Hour)
		}
	}
	return notBefore, notAfter
}

func finish(t testing.TB, chain [][]byte, key crypto.Signer) tls.Certificate {
	t.Helper()
	leaf, err := x509.ParseCertificate(chain[0])
	if err != nil {
		t.Fatalf("fake: parse certificate: %v", err)
	}
	return tls.Certificate{Certificate: chain, PrivateKey: key, Leaf: leaf}
}

func newKey(t testing.TB, useRSA bool) crypto.Signer {
	t.Helper()
	var (
		key crypto.Signer
		err error
	)
	if useRSA {
		key, err = rsa.GenerateKey(rand.Reader, 2048)
	} else {
		key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	}
	if err != nil {
		t.Fatalf("fake: generate key: %v", err)
	}
	return key
}

func serial(t testing.TB) *big.Int {
	t.Helper()
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		t.Fatalf("fake: serial number: %v", err)
	}
	return n.Add(n, big.NewInt(1)) // never zero
}
