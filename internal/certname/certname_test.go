package certname_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tlsgate/tlsgate/internal/certname"
	"github.com/tlsgate/tlsgate/internal/fake"
)

// matchCases follow OpenSSL X509_check_host with Postfix's
// X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS (tls_client.c add_namechecks). flagDependent
// marks the rows where that flag matters: the openssl command line cannot set it, so
// TestMatchAgreesWithOpenSSL skips them.
var matchCases = []struct {
	cert, ref     string
	want          bool
	flagDependent bool
}{
	{cert: "mx.example.com", ref: "mx.example.com", want: true},
	{cert: "MX.Example.COM", ref: "mx.example.com", want: true},
	{cert: "mx.example.com", ref: "MX.EXAMPLE.COM", want: true},
	{cert: "mx.example.com", ref: "mx2.example.com"},
	// Nothing is trimmed: a certificate name with a trailing dot matches only a
	// reference with one (tlsgate used to trim it: a false pass).
	{cert: "mx.example.com.", ref: "mx.example.com"},
	{cert: "mx.example.com", ref: "mx.example.com."},
	{cert: "*.example.com.", ref: "mx.example.com"},
	{cert: "*.example.com", ref: "mx.example.com", want: true},
	{cert: "*.EXAMPLE.com", ref: "mx.example.COM", want: true},
	{cert: "*.example.com", ref: "example.com"},
	{cert: "*.example.com", ref: "a.mx.example.com"},
	{cert: "*.com", ref: "example.com"}, // a wildcard needs two labels after it
	{cert: "*.example.com", ref: "*.example.com", want: true},
	{cert: "*.example.com", ref: "m_x.example.com"},  // the wildcard stands for letters, digits, '-'
	{cert: "*.exa_mple.com", ref: "mx.exa_mple.com"}, // not a valid wildcard name: compared literally
	{cert: "*.exa_mple.com", ref: "*.exa_mple.com", want: true},
	{cert: "*.-example.com", ref: "mx.-example.com"}, // a label starting with '-'
	{cert: "*.example-.com", ref: "mx.example-.com"}, // a label ending with '-'
	{cert: "*.example.com", ref: "xn--bcher-kva.example.com", want: true},
	{cert: "*.xn--bcher-kva.com", ref: "mx.xn--bcher-kva.com", want: true},
	{cert: "*..example.com", ref: "mx..example.com"},
	{cert: "mx*.example.com", ref: "mx1.example.com", flagDependent: true}, // partial wildcards are off
	{cert: "*mx.example.com", ref: "amx.example.com", flagDependent: true},
	{cert: "*.*.example.com", ref: "a.b.example.com"},
	{cert: "mx.*.example.com", ref: "mx.a.example.com"},
	// A reference starting with "." (dot-nexthop, ".domain" match entries): any name
	// that ends with it, compared literally.
	{cert: "mx.example.com", ref: ".example.com", want: true},
	{cert: "a.b.example.com", ref: ".example.com", want: true},
	{cert: "example.com", ref: ".example.com"},
	{cert: ".example.com", ref: ".example.com", want: true},
	{cert: "*.example.com", ref: ".example.com", want: true},
	{cert: "badexample.com", ref: ".example.com"},
	{cert: "mx.example.com.", ref: ".example.com"},
	{cert: "mx.EXAMPLE.com", ref: ".example.COM", want: true},
	{cert: "", ref: "example.com"},
	{cert: "example.com", ref: ""},
	{cert: "mx.example.com\x00", ref: "mx.example.com"},
	{cert: "mx\x00.example.com", ref: ".example.com"},
	{cert: "mx.example.com", ref: "mx.example.com\x00"},
}

func TestMatch(t *testing.T) {
	t.Parallel()
	for _, tc := range matchCases {
		if got := certname.Match(tc.cert, tc.ref); got != tc.want {
			t.Errorf("Match(%q, %q) = %v; want %v", tc.cert, tc.ref, got, tc.want)
		}
	}
}

// TestNames: the DNS subjectAltNames hide the CN; without them every CN counts.
func TestNames(t *testing.T) {
	t.Parallel()
	ca := fake.NewCA(t, "root")
	tests := []struct {
		o    fake.CertOptions
		want []string
	}{
		{fake.CertOptions{CommonName: "mx.example.test"}, []string{"mx.example.test"}},
		{fake.CertOptions{CommonName: "cn.example.test", DNSNames: []string{"san.example.test", "san2.example.test"}}, []string{"san.example.test", "san2.example.test"}},
		{fake.CertOptions{CommonName: "a.example.test", MoreCommonNames: []string{"b.example.test"}}, []string{"a.example.test", "b.example.test"}},
		{fake.CertOptions{}, nil},
	}
	for _, tc := range tests {
		leaf := ca.Issue(t, tc.o).Leaf
		if got := certname.Names(leaf); !slices.Equal(got, tc.want) {
			t.Errorf("Names(CN %q, SAN %q) = %q; want %q", tc.o.CommonName, tc.o.DNSNames, got, tc.want)
		}
	}
	// OpenSSL tries every CN, Go's Subject.CommonName holds only one of them.
	leaf := ca.Issue(t, fake.CertOptions{CommonName: "other.example.test", MoreCommonNames: []string{"mx.example.test"}}).Leaf
	if !certname.MatchAny(leaf, []string{"mx.example.test"}) || !certname.MatchAny(leaf, []string{"other.example.test"}) {
		t.Errorf("MatchAny of a subject with two CNs does not match both")
	}
}

// chainCase is one hostile or ordinary chain: a leaf issued by a (possibly
// name-constrained) CA, and what OpenSSL (so Postfix) says of it.
type chainCase struct {
	name   string
	ca     string // key into the CAs of newCAs
	leaf   fake.CertOptions
	host   string // reference identifier; "" checks the chain only
	goOK   bool   // Go's Verify alone accepts the chain (before CheckNameConstraints)
	want   bool   // OpenSSL accepts it
	reason string // a word of the expected error, when !want
}

func chainCases() []chainCase {
	cn := func(names ...string) fake.CertOptions {
		return fake.CertOptions{CommonName: names[0], MoreCommonNames: names[1:]}
	}
	san := func(cn string, names ...string) fake.CertOptions {
		return fake.CertOptions{CommonName: cn, DNSNames: names}
	}
	return []chainCase{
		// The finding: a CA constrained to attacker.test issues CN=mx1.example.test
		// without SAN. Go accepts it, OpenSSL does not.
		{name: "CN-only outside permitted", ca: "permit-attacker", leaf: cn("mx1.example.test"), host: "mx1.example.test", goOK: true, reason: "permitted subtree violation"},
		{name: "CN-only outside permitted, no host name", ca: "permit-attacker", leaf: cn("mx1.example.test"), goOK: true, reason: "permitted subtree violation"},
		{name: "CN-only inside permitted", ca: "permit-attacker", leaf: cn("mx1.attacker.test"), host: "mx1.attacker.test", goOK: true, want: true},
		{name: "CN-only equal to a permitted base", ca: "permit-attacker", leaf: cn("attacker.test"), host: "attacker.test", goOK: true, want: true},
		{name: "CN-only below a .base", ca: "permit-dot-attacker", leaf: cn("mx1.attacker.test"), host: "mx1.attacker.test", goOK: true, want: true},
		{name: "CN-only equal to a .base", ca: "permit-dot-attacker", leaf: cn("attacker.test"), goOK: true, reason: "permitted subtree violation"},
		{name: "CN-only lookalike suffix", ca: "permit-attacker", leaf: cn("mx1.notattacker.test"), goOK: true, reason: "permitted subtree violation"},
		{name: "CN-only, case differs", ca: "permit-attacker", leaf: cn("MX1.ATTACKER.TEST"), host: "mx1.attacker.test", goOK: true, want: true},
		{name: "CN-only in an excluded subtree", ca: "exclude-example", leaf: cn("mx1.example.test"), host: "mx1.example.test", goOK: true, reason: "excluded subtree violation"},
		{name: "CN-only outside the excluded subtree", ca: "exclude-example", leaf: cn("mx1.other.test"), host: "mx1.other.test", goOK: true, want: true},
		{name: "CN-only permitted but excluded below", ca: "permit-example-exclude-secret", leaf: cn("mx.secret.example.test"), goOK: true, reason: "excluded subtree violation"},
		{name: "CN-only permitted, not excluded", ca: "permit-example-exclude-secret", leaf: cn("mx.example.test"), host: "mx.example.test", goOK: true, want: true},
		{name: "second CN outside permitted", ca: "permit-attacker", leaf: cn("mx1.attacker.test", "mx1.example.test"), host: "mx1.attacker.test", goOK: true, reason: "permitted subtree violation"},
		{name: "CN-only under a constrained trust anchor", ca: "anchor-attacker", leaf: cn("mx1.example.test"), host: "mx1.example.test", goOK: true, reason: "permitted subtree violation"},
		{name: "CN-only under an unconstrained CA", ca: "plain", leaf: cn("mx1.example.test"), host: "mx1.example.test", goOK: true, want: true},
		// cn2dnsid: what does not look like a DNS name of two labels is not checked.
		{name: "wildcard CN escapes the constraints", ca: "permit-attacker", leaf: cn("*.example.test"), host: "mx1.example.test", goOK: true, want: true},
		{name: "one-label CN escapes the constraints", ca: "permit-attacker", leaf: cn("localhost"), goOK: true, want: true},
		{name: "trailing-dot CN escapes the constraints", ca: "permit-attacker", leaf: cn("mx1.example.test."), goOK: true, want: true},
		{name: "trailing-dot CN matches no host name", ca: "plain", leaf: cn("mx1.example.test."), host: "mx1.example.test", goOK: true},
		// With a DNS SAN the CN is not a name: neither matched nor constrained.
		{name: "SAN inside, CN outside", ca: "permit-attacker", leaf: san("mx1.example.test", "mx1.attacker.test"), host: "mx1.attacker.test", goOK: true, want: true},
		{name: "SAN inside, host only in the CN", ca: "permit-attacker", leaf: san("mx1.example.test", "mx1.attacker.test"), host: "mx1.example.test", goOK: true},
		// Go checks subjectAltNames against the constraints itself.
		{name: "SAN outside permitted", ca: "permit-attacker", leaf: san("", "mx1.example.test"), host: "mx1.example.test", reason: "not authorized"},
		{name: "SAN in an excluded subtree", ca: "exclude-example", leaf: san("", "mx1.example.test"), host: "mx1.example.test", reason: "not authorized"},
		{name: "one SAN inside, one outside", ca: "permit-attacker", leaf: san("", "mx1.attacker.test", "mx1.example.test"), host: "mx1.attacker.test", reason: "not authorized"},
	}
}

// newCAs makes the authorities of chainCases: name -> (issuing CA, trust anchor pool).
func newCAs(t *testing.T) (map[string]*fake.CA, map[string]*x509.CertPool) {
	root := fake.NewCA(t, "tlsgate test root")
	cas := map[string]*fake.CA{
		"plain":               root.Intermediate(t, "plain sub-CA"),
		"permit-attacker":     root.ConstrainedIntermediate(t, "attacker sub-CA", fake.NameConstraints{Permitted: []string{"attacker.test"}}),
		"permit-dot-attacker": root.ConstrainedIntermediate(t, "dot-attacker sub-CA", fake.NameConstraints{Permitted: []string{".attacker.test"}}),
		"exclude-example":     root.ConstrainedIntermediate(t, "no-example sub-CA", fake.NameConstraints{Excluded: []string{"example.test"}}),
		"permit-example-exclude-secret": root.ConstrainedIntermediate(t, "example-but-secret sub-CA",
			fake.NameConstraints{Permitted: []string{"example.test"}, Excluded: []string{"secret.example.test"}}),
		"anchor-attacker": root.ConstrainedIntermediate(t, "attacker anchor", fake.NameConstraints{Permitted: []string{"attacker.test"}}),
	}
	roots := map[string]*x509.CertPool{}
	for name := range cas {
		roots[name] = root.Pool
	}
	roots["anchor-attacker"] = cas["anchor-attacker"].Pool // trusted itself, not via the root
	return cas, roots
}

var errHostname = errors.New("hostname mismatch")

// verifyLikePostfix is what tlsgate does with a chain at verify/secure: Go's Verify,
// then CheckNameConstraints, then the names.
func verifyLikePostfix(leaf *x509.Certificate, inter []*x509.Certificate, roots *x509.CertPool, host string) (goErr, err error) {
	pool := x509.NewCertPool()
	for _, c := range inter {
		pool.AddCert(c)
	}
	chains, goErr := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
	if goErr != nil {
		return goErr, goErr
	}
	if err := certname.CheckNameConstraints(chains); err != nil {
		return nil, err
	}
	if host != "" && !certname.MatchAny(leaf, []string{host}) {
		return nil, errHostname
	}
	return nil, nil
}

func TestCheckNameConstraints(t *testing.T) {
	t.Parallel()
	cas, roots := newCAs(t)
	for _, tc := range chainCases() {
		ca := cas[tc.ca]
		leaf := ca.Issue(t, tc.leaf).Leaf
		inter := ca.Intermediates()
		if tc.ca == "anchor-attacker" {
			inter = nil
		}
		goErr, err := verifyLikePostfix(leaf, inter, roots[tc.ca], tc.host)
		if (goErr == nil) != tc.goOK {
			t.Errorf("%s: Go's Verify error %v; want ok=%v", tc.name, goErr, tc.goOK)
		}
		if (err == nil) != tc.want {
			t.Errorf("%s: error %v; want ok=%v", tc.name, err, tc.want)
			continue
		}
		if err != nil && !strings.Contains(err.Error(), tc.reason) {
			t.Errorf("%s: error %q does not say %q", tc.name, err, tc.reason)
		}
		var inv x509.CertificateInvalidError
		if err != nil && err != errHostname && (!errors.As(err, &inv) || inv.Reason != x509.CANotAuthorizedForThisName) {
			t.Errorf("%s: error %#v is not a CertificateInvalidError CANotAuthorizedForThisName", tc.name, err)
		}
	}
}

// TestCNWithNULUnderConstraints: OpenSSL cn2dnsid refuses a CN with an inner NUL as
// soon as a CA in the chain has name constraints.
func TestCNWithNULUnderConstraints(t *testing.T) {
	t.Parallel()
	cas, roots := newCAs(t)
	for _, ca := range []string{"permit-attacker", "exclude-example"} {
		leaf := cas[ca].Issue(t, fake.CertOptions{CommonName: "mx1.attacker.test\x00.example.test"}).Leaf
		if _, err := verifyLikePostfix(leaf, cas[ca].Intermediates(), roots[ca], ""); err == nil {
			t.Errorf("%s: a CN with a NUL under name constraints verified", ca)
		}
	}
	leaf := cas["plain"].Issue(t, fake.CertOptions{CommonName: "mx1.example.test\x00"}).Leaf
	if _, err := verifyLikePostfix(leaf, cas["plain"].Intermediates(), roots["plain"], ""); err != nil {
		t.Errorf("a CN with a trailing NUL and no constraints: %v", err)
	}
}

// openssl returns the path of the openssl command. Without it the test is skipped, or
// fails where CI is set: test/all.sh installs it first, and a skip there would leave
// the comparison with OpenSSL undone and the run green.
func openssl(t *testing.T) string {
	t.Helper()
	path, err := exec.LookPath("openssl")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("openssl not installed: cannot compare with it (test/e2e/install.sh installs it)")
		}
		t.Skip("openssl not installed: cannot compare with it")
	}
	return path
}

func writePEM(t *testing.T, path string, certs ...*x509.Certificate) {
	t.Helper()
	var b []byte
	for _, c := range certs {
		b = append(b, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// opensslVerify runs "openssl verify", the oracle: X509_verify_cert with
// X509_check_host for host (flags 0).
func opensslVerify(t *testing.T, bin, dir string, leaf *x509.Certificate, inter []*x509.Certificate, anchor *x509.Certificate, host string) (bool, string) {
	t.Helper()
	writePEM(t, filepath.Join(dir, "leaf.pem"), leaf)
	writePEM(t, filepath.Join(dir, "anchor.pem"), anchor)
	args := []string{"verify", "-CAfile", filepath.Join(dir, "anchor.pem")}
	if len(inter) > 0 {
		writePEM(t, filepath.Join(dir, "inter.pem"), inter...)
		args = append(args, "-untrusted", filepath.Join(dir, "inter.pem"))
	}
	if anchor.CheckSignatureFrom(anchor) != nil {
		args = append(args, "-partial_chain") // a trust anchor that is not self-signed
	}
	if host != "" {
		args = append(args, "-verify_hostname", host)
	}
	out, err := exec.Command(bin, append(args, filepath.Join(dir, "leaf.pem"))...).CombinedOutput()
	return err == nil, string(out)
}

// TestChainsAgreeWithOpenSSL runs every chain case through openssl verify: the table
// is OpenSSL's behaviour, not a guess at it.
func TestChainsAgreeWithOpenSSL(t *testing.T) {
	t.Parallel()
	bin := openssl(t)
	cas, _ := newCAs(t)
	dir := t.TempDir()
	for _, tc := range chainCases() {
		ca := cas[tc.ca]
		leaf := ca.Issue(t, tc.leaf).Leaf
		inter, anchor := ca.Intermediates(), ca.Root().Cert
		if tc.ca == "anchor-attacker" {
			inter, anchor = nil, ca.Cert
		}
		ok, out := opensslVerify(t, bin, dir, leaf, inter, anchor, tc.host)
		if ok != tc.want {
			t.Errorf("%s: openssl verify ok=%v, the table says %v:\n%s", tc.name, ok, tc.want, out)
		}
	}
	leaf := cas["permit-attacker"].Issue(t, fake.CertOptions{CommonName: "mx1.attacker.test\x00.example.test"}).Leaf
	if ok, out := opensslVerify(t, bin, dir, leaf, cas["permit-attacker"].Intermediates(), cas["permit-attacker"].Root().Cert, ""); ok {
		t.Errorf("openssl verify accepts a CN with a NUL under constraints:\n%s", out)
	}
}

// TestMatchAgreesWithOpenSSL checks each Match case against openssl verify with the
// certificate name as the only DNS subjectAltName (cases the command line can
// express: no NUL, no flag-dependent wildcard).
func TestMatchAgreesWithOpenSSL(t *testing.T) {
	t.Parallel()
	bin := openssl(t)
	ca := fake.NewCA(t, "root")
	dir := t.TempDir()
	for _, tc := range matchCases {
		if tc.flagDependent || tc.cert == "" || tc.ref == "" || strings.ContainsRune(tc.cert+tc.ref, 0) {
			continue
		}
		leaf := ca.Issue(t, fake.CertOptions{DNSNames: []string{tc.cert}, CommonName: "cn.invalid"}).Leaf
		if ok, out := opensslVerify(t, bin, dir, leaf, nil, ca.Cert, tc.ref); ok != tc.want {
			t.Errorf("SAN %q, host %q: openssl verify ok=%v, Match says %v:\n%s", tc.cert, tc.ref, ok, tc.want, out)
		}
		leaf = ca.Issue(t, fake.CertOptions{CommonName: tc.cert}).Leaf
		if ok, out := opensslVerify(t, bin, dir, leaf, nil, ca.Cert, tc.ref); ok != tc.want {
			t.Errorf("CN %q, host %q: openssl verify ok=%v, Match says %v:\n%s", tc.cert, tc.ref, ok, tc.want, out)
		}
	}
}

// ncWithMinMax is a NameConstraints extension permitting example.test with the
// given extra GeneralSubtree fields (DER of minimum [0] / maximum [1]).
func ncWithMinMax(fields []byte) []byte {
	base := append([]byte{0x82, 12}, "example.test"...)
	subtree := append([]byte{0x30, byte(len(base) + len(fields))}, append(base, fields...)...)
	permitted := append([]byte{0xa0, byte(len(subtree))}, subtree...)
	return append([]byte{0x30, byte(len(permitted))}, permitted...)
}

// TestMinMaxConstraints: OpenSSL refuses a DNS subtree with a minimum other than 0 or
// with a maximum (nc_minmax_valid, "name constraints minimum and maximum not
// supported") for every DNS name checked against it; Go ignores both fields.
func TestMinMaxConstraints(t *testing.T) {
	t.Parallel()
	root := fake.NewCA(t, "root")
	dir := t.TempDir()
	for _, tc := range []struct {
		name   string
		fields []byte
		ok     bool
	}{
		{"no minimum, no maximum", nil, true},
		{"minimum 0", []byte{0x80, 1, 0}, true},
		{"minimum 1", []byte{0x80, 1, 1}, false},
		{"maximum 5", []byte{0x81, 1, 5}, false},
	} {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "sub " + tc.name},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
			KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true, IsCA: true,
			ExtraExtensions: []pkix.Extension{{Id: asn1.ObjectIdentifier{2, 5, 29, 30}, Critical: true, Value: ncWithMinMax(tc.fields)}},
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, root.Cert, key.Public(), root.Key)
		if err != nil {
			t.Fatal(err)
		}
		sub, err := x509.ParseCertificate(der)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		subCA := &fake.CA{Cert: sub, Key: key}
		for _, leafOpts := range []fake.CertOptions{{DNSNames: []string{"mx.example.test"}}, {CommonName: "mx.example.test"}} {
			leaf := subCA.Issue(t, leafOpts).Leaf
			goErr, err := verifyLikePostfix(leaf, []*x509.Certificate{sub}, root.Pool, "mx.example.test")
			if goErr != nil {
				t.Errorf("%s, %+v: Go's Verify: %v", tc.name, leafOpts, goErr)
			}
			if (err == nil) != tc.ok || (err != nil && !strings.Contains(err.Error(), "minimum and maximum")) {
				t.Errorf("%s, %+v: error %v; want ok=%v", tc.name, leafOpts, err, tc.ok)
			}
			if bin, lookErr := exec.LookPath("openssl"); lookErr == nil {
				if ok, out := opensslVerify(t, bin, dir, leaf, []*x509.Certificate{sub}, root.Cert, "mx.example.test"); ok != tc.ok {
					t.Errorf("%s, %+v: openssl verify ok=%v; want %v:\n%s", tc.name, leafOpts, ok, tc.ok, out)
				}
			}
		}
	}
}
