package verify_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tlsgate/tlsgate/internal/fake"
	"github.com/tlsgate/tlsgate/internal/smtpprobe"
	"github.com/tlsgate/tlsgate/policy"
	"github.com/tlsgate/tlsgate/verify"
)

func chainOf(t *testing.T, c tls.Certificate) []*x509.Certificate {
	t.Helper()
	var out []*x509.Certificate
	for _, der := range c.Certificate {
		x, err := x509.ParseCertificate(der)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, x)
	}
	return out
}

func certPEM(c *x509.Certificate) string {
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw}))
}

func keyPEM(c *x509.Certificate) string {
	return string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: c.RawSubjectPublicKeyInfo}))
}

func writeTA(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestTrustAnchorsVerify: postconf(5) smtp_tls_trust_anchor_file: trust anchors "need
// not be (self-signed) root CAs ... may be intermediate certificates ... found 'in the
// middle' of the trust chain", and may be public keys; Postfix also lets them match
// the leaf itself (tls_dane.c: "We also allow the trust-anchors to directly match the
// leaf certificate or public key").
func TestTrustAnchorsVerify(t *testing.T) {
	root := fake.NewCA(t, "TA Root")
	inter := root.Intermediate(t, "TA Intermediate")
	other := fake.NewCA(t, "Unrelated Root")
	now := time.Now()
	viaInter := chainOf(t, inter.Issue(t, fake.CertOptions{DNSNames: []string{"mx.example.test"}}))
	direct := chainOf(t, root.Issue(t, fake.CertOptions{DNSNames: []string{"mx.example.test"}}))
	selfSigned := chainOf(t, fake.SelfSigned(t, fake.CertOptions{DNSNames: []string{"mx.example.test"}}))
	expired := chainOf(t, root.Issue(t, fake.CertOptions{DNSNames: []string{"mx.example.test"},
		NotBefore: now.Add(-72 * time.Hour), NotAfter: now.Add(-48 * time.Hour)}))
	if len(viaInter) < 2 {
		t.Fatalf("the intermediate's chain has %d certificates; the test needs the intermediate presented", len(viaInter))
	}
	for _, tc := range []struct {
		name   string
		file   string
		chain  []*x509.Certificate
		reason verify.Reason
	}{
		{"root certificate, not presented", certPEM(root.Cert), viaInter, ""},
		{"intermediate certificate in the middle", certPEM(inter.Cert), viaInter, ""},
		{"root public key signs the top of the chain", keyPEM(root.Cert), viaInter, ""},
		{"intermediate public key, presented", keyPEM(inter.Cert), viaInter, ""},
		{"root public key signs the leaf", keyPEM(root.Cert), direct, ""},
		{"the leaf itself", certPEM(selfSigned[0]), selfSigned, ""},
		{"the leaf's public key", keyPEM(selfSigned[0]), selfSigned, ""},
		{"unrelated root", certPEM(other.Cert), viaInter, verify.ReasonCertNotTrusted},
		{"unrelated key", keyPEM(other.Cert), viaInter, verify.ReasonCertNotTrusted},
		{"self-signed leaf, root anchor", certPEM(root.Cert), selfSigned, verify.ReasonCertNotTrusted},
		{"expired leaf below the anchor", certPEM(root.Cert), expired, verify.ReasonCertExpired},
		{"two files' worth: unrelated, then the root", certPEM(other.Cert) + certPEM(root.Cert), viaInter, ""},
		{"other PEM objects are skipped", "-----BEGIN X509 CRL-----\nAAAA\n-----END X509 CRL-----\n" + certPEM(root.Cert), viaInter, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ta, err := verify.LoadTrustAnchors(writeTA(t, "ta.pem", tc.file))
			if err != nil {
				t.Fatal(err)
			}
			r := ta.Verify(tc.chain, now)
			if !r.Done || r.Reason != tc.reason {
				t.Errorf("Verify: %+v, want reason %q", r, tc.reason)
			}
		})
	}
}

// TestLoadTrustAnchorsErrors: Postfix's tls_dane_load_trustfile fails, and the policy
// is invalid (mail deferred), for a file it cannot open, a malformed object, or a file
// without any PEM object.
func TestLoadTrustAnchorsErrors(t *testing.T) {
	ca := fake.NewCA(t, "TA Root")
	good := writeTA(t, "good.pem", certPEM(ca.Cert))
	for name, files := range map[string]string{
		"missing file":          filepath.Join(t.TempDir(), "missing.pem"),
		"no PEM object":         writeTA(t, "empty.pem", "just text\n"),
		"malformed certificate": writeTA(t, "bad.pem", "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"),
		"malformed key":         writeTA(t, "badkey.pem", "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n"),
		"one of two missing":    good + " " + filepath.Join(t.TempDir(), "missing.pem"),
		"nothing named":         "",
	} {
		if _, err := verify.LoadTrustAnchors(files); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	if ta, err := verify.LoadTrustAnchors(good + " " + good); err != nil || len(ta.Certs) != 2 {
		t.Errorf("two files: %v, %v", ta, err)
	}
}

// TestTAFile: a verify/secure policy with tafile= is judged against those anchors
// instead of the CAs (probe.ca_file), names still checked; an unreadable file is a
// tempfail (Postfix defers on an invalid policy), never a pass.
func TestTAFile(t *testing.T) {
	w := newWorld(t)
	w.serve(domain, host{name: "mx1", behaviour: "good"})
	v := w.verifier()
	other := fake.NewCA(t, "Unrelated Root")
	rootFile := writeTA(t, "root.pem", certPEM(w.ca.Cert))
	otherFile := writeTA(t, "other.pem", certPEM(other.Cert))
	ctx := context.Background()
	for _, tc := range []struct {
		level  policy.Level
		tafile string
		match  []string
		want   want
	}{
		{policy.LevelVerify, rootFile, nil, "pass"},
		{policy.LevelSecure, rootFile, []string{"hostname"}, "pass"},
		{policy.LevelVerify, otherFile, nil, "fail/certificate-not-trusted"},
		{policy.LevelVerify, rootFile, []string{"mail.elsewhere.test"}, "fail/certificate-host-mismatch"},
		{policy.LevelVerify, filepath.Join(t.TempDir(), "gone.pem"), nil, "tempfail/policy-invalid"},
	} {
		p := policy.Policy{Level: tc.level, Match: tc.match, Attrs: map[string]string{"tafile": tc.tafile}}
		key := verify.FactsKey(domain, p)
		if !strings.Contains(key, " tafile=") {
			t.Fatalf("FactsKey %q has no tafile", key)
		}
		f, _, err := v.Facts(ctx, key)
		if err != nil {
			t.Fatal(err)
		}
		tc.want.check(t, tc.level.String()+" tafile="+filepath.Base(tc.tafile), f.JudgeCached(p))
	}
	// Facts without the anchors never pass a tafile= policy.
	f, _, err := v.Facts(ctx, domain)
	if err != nil {
		t.Fatal(err)
	}
	p := policy.Policy{Level: policy.LevelVerify, Attrs: map[string]string{"tafile": rootFile}}
	want("tempfail/internal-error").check(t, "verify tafile= on plain facts", f.JudgeCached(p))
}

// TestTAFileCacheClass: facts verified by an entry's trust anchors are cached as long
// as facts verified by the CAs (pass_ttl), though probe.ca_file does not hold the
// anchor; those the anchors reject are a failure.
func TestTAFileCacheClass(t *testing.T) {
	w := newWorld(t)
	w.serve(domain, host{name: "mx1", behaviour: "good"})
	other := fake.NewCA(t, "Unrelated Root")
	v := w.verifier(func(c *verify.Config) {
		c.Prober.(*smtpprobe.Prober).Roots = other.Pool // the CAs do not verify mx1
	})
	ctx := context.Background()
	for _, tc := range []struct {
		file string
		want verify.Status
	}{
		{writeTA(t, "ca.pem", certPEM(w.ca.Cert)), verify.StatusPass},
		{writeTA(t, "other.pem", certPEM(other.Cert)), verify.StatusFail},
	} {
		p := policy.Policy{Level: policy.LevelVerify, Attrs: map[string]string{"tafile": tc.file}}
		f, _, err := v.Facts(ctx, verify.FactsKey(domain, p))
		if err != nil {
			t.Fatal(err)
		}
		if got := verify.ClassOf(f); got != tc.want {
			t.Errorf("%s: class %s, want %s", filepath.Base(tc.file), got, tc.want)
		}
	}
}
