package smtpprobe_test

import (
	"context"
	"crypto/tls"
	"strings"
	"testing"

	"github.com/tlsgate/tlsgate/internal/fake"
	"github.com/tlsgate/tlsgate/internal/smtpprobe"
)

// A server that speaks only TLS 1.0/1.1 is probed like any other (Postfix offers TLS
// 1.0 and up: smtp_tls_protocols = >=TLSv1), and then asked once more with the
// ClientHello Postfix sends when it authenticates the server, because Go's handshake
// does not say what OpenSSL gets there. A TLS 1.2 server costs one session, as before.
func TestLegacyServerAskedLikePostfix(t *testing.T) {
	t.Parallel()
	ca := fake.NewCA(t, "Root")
	cert := ca.Issue(t, fake.CertOptions{DNSNames: []string{"mx.example.test"}, RSA: true})
	tests := []struct {
		name     string
		max      uint16
		suites   []uint16
		version  string
		sessions int
		authOK   bool   // Postfix's authenticating handshake completes
		why      string // why not
	}{
		{"TLS 1.1, ECDHE-RSA", tls.VersionTLS11, []uint16{tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA, tls.TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA},
			"TLSv1.1", 2, false, "TLS 1.1 with legacy signature algorithm"},
		{"TLS 1.0, RSA key exchange", tls.VersionTLS10, []uint16{tls.TLS_RSA_WITH_AES_128_CBC_SHA, tls.TLS_RSA_WITH_AES_256_CBC_SHA},
			"TLSv1.0", 2, true, ""},
		{"TLS 1.2", tls.VersionTLS12, nil, "TLSv1.2", 1, true, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := fake.StartSMTP(t, "127.0.0.41", fake.Behavior{Hostname: "mx.example.test", Cert: &cert,
				MinTLSVersion: tls.VersionTLS10, MaxTLSVersion: tc.max, CipherSuites: tc.suites})
			d := fake.NewDialer()
			s.RegisterWith(d)
			p := &smtpprobe.Prober{Dialer: d, HELO: "probe.test", Roots: ca.Pool}
			r := p.Probe(context.Background(), s.Addr().Addr(), "")
			if r.Outcome != smtpprobe.OutcomeTLS || r.TLSVersionName() != tc.version {
				t.Fatalf("outcome %s %s (%s); want tls %s", r.Outcome, r.TLSVersionName(), r.Detail, tc.version)
			}
			if n := s.Connections(); n != tc.sessions {
				t.Errorf("%d sessions; want %d", n, tc.sessions)
			}
			if r.Opportunistic != nil {
				t.Errorf("opportunistic ClientHello sent for a server Go completed a handshake with: %s", r.Opportunistic)
			}
			if tc.sessions == 1 {
				if r.Authenticated != nil {
					t.Errorf("asked again at TLS 1.2: %s", r.Authenticated)
				}
				return
			}
			if r.Authenticated == nil {
				t.Fatal("not asked with Postfix's ClientHello")
			}
			ok, known, why := r.Authenticated.Completes(smtpprobe.OfferAuthenticated)
			if ok != tc.authOK || !known || !strings.Contains(why, tc.why) {
				t.Errorf("answer %s: completes %v known %v %q; want %v %q", r.Authenticated, ok, known, why, tc.authOK, tc.why)
			}
		})
	}
}
