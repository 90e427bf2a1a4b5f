package report_test

import (
	"context"
	"testing"
	"time"

	"github.com/tlsgate/tlsgate/internal/fake"
	"github.com/tlsgate/tlsgate/internal/report"
	"github.com/tlsgate/tlsgate/policy"
	"github.com/tlsgate/tlsgate/verify"
)

// TestReportFromCachedFacts: cached facts keep no chain (compact), yet a report made
// from them (the check page and API answer from the cache) still shows the
// certificate's subject, issuer, names and validity, as one made from a fresh probe does.
func TestReportFromCachedFacts(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	cert := fake.SelfSigned(t, fake.CertOptions{DNSNames: []string{"mx1.example.test"}, CommonName: "mx1.example.test"})
	fake.StartSMTP(t, "127.0.0.10", fake.Behavior{Hostname: "mx1.example.test", Cert: &cert}).RegisterWith(w.dialer)
	ver := w.verifier()
	full := ver.Probe(context.Background(), "example.test")
	f, _, err := ver.Facts(context.Background(), "example.test") // as cached: compact
	if err != nil {
		t.Fatal(err)
	}
	if len(full.Attempts) != 1 || full.Attempts[0].Result.Chain == nil || len(f.Attempts) != 1 || f.Attempts[0].Result.Chain != nil {
		t.Fatalf("want one attempt, with its chain when fresh and without it from the cache: %+v, %+v", full.Attempts, f.Attempts)
	}
	p := policy.Policy{Level: policy.LevelEncrypt}
	fresh, fromCache := report.New(full, verify.Judge(full, p), ""), report.New(f, verify.Judge(f, p), "")
	a, b := fresh.MX[0].Attempts[0], fromCache.MX[0].Attempts[0]
	if a.Certificate == nil || b.Certificate == nil {
		t.Fatalf("certificate fresh %+v, from the cache %+v", a.Certificate, b.Certificate)
	}
	if a.Certificate.Subject != b.Certificate.Subject || a.Certificate.Issuer != b.Certificate.Issuer ||
		!a.Certificate.NotAfter.Equal(b.Certificate.NotAfter) || !a.Certificate.NotBefore.Equal(b.Certificate.NotBefore) ||
		a.Certificate.SHA256 != b.Certificate.SHA256 || a.Certificate.SPKISHA256 != b.Certificate.SPKISHA256 ||
		len(b.Certificate.DNSNames) != 1 || b.Certificate.DNSNames[0] != "mx1.example.test" || a.PKIX != b.PKIX {
		t.Errorf("from the cache %+v (pkix %q); fresh %+v (pkix %q)", b.Certificate, b.PKIX, a.Certificate, a.PKIX)
	}
	if b.Certificate.Subject != "CN=mx1.example.test" || b.Certificate.NotAfter.Before(time.Now()) || b.PKIX == "ok" {
		t.Errorf("subject %q, not after %s, pkix %q", b.Certificate.Subject, b.Certificate.NotAfter, b.PKIX)
	}
}
