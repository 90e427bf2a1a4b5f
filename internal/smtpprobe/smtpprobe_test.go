package smtpprobe_test

import (
	"bufio"
	"context"
	"crypto/x509"
	"errors"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/tlsgate/tlsgate/internal/fake"
	"github.com/tlsgate/tlsgate/internal/smtpprobe"
)

// scripted serves one connection: for each step it reads a line if want != "" and
// writes reply verbatim (an empty reply hangs up). It is a hostile peer: replies may be anything.
type step struct{ want, reply string }

func scripted(t *testing.T, steps ...step) netip.AddrPort {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		r := bufio.NewReader(c)
		for _, s := range steps {
			if s.want != "" {
				line, err := r.ReadString('\n')
				if err != nil || !strings.HasPrefix(strings.ToUpper(line), s.want) {
					return
				}
			}
			if s.reply == "" {
				return // hang up
			}
			if _, err := c.Write([]byte(s.reply)); err != nil {
				return
			}
		}
		// Drain until the client hangs up.
		for {
			if _, err := r.ReadString('\n'); err != nil {
				return
			}
		}
	}()
	return netip.MustParseAddrPort(ln.Addr().String())
}

func probe(t *testing.T, ap netip.AddrPort) smtpprobe.Result {
	t.Helper()
	d := fake.NewDialer()
	d.Register(ap.Addr(), ap)
	p := &smtpprobe.Prober{Dialer: d, HELO: "probe.test"}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	return p.Probe(ctx, ap.Addr(), "")
}

// TestHostilePeers: malformed or malicious replies never crash the probe and never
// count as TLS.
func TestHostilePeers(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("A", 5000)
	tests := []struct {
		name    string
		steps   []step
		outcome smtpprobe.Outcome
	}{
		{"garbage greeting", []step{{"", "HELLO THERE\r\n"}}, smtpprobe.OutcomeProtocolError},
		{"greeting code out of range", []step{{"", "999 hi\r\n"}}, smtpprobe.OutcomeProtocolError},
		{"overlong line", []step{{"", "220 " + long + "\r\n"}}, smtpprobe.OutcomeProtocolError},
		{"multi-line codes differ", []step{{"", "220-a\r\n250 b\r\n"}}, smtpprobe.OutcomeProtocolError},
		{"endless continuation", []step{{"", strings.Repeat("220-x\r\n", 200)}}, smtpprobe.OutcomeProtocolError},
		{"bad separator", []step{{"", "220xhello\r\n"}}, smtpprobe.OutcomeProtocolError},
		{"STARTTLS only in the greeting line", []step{{"", "220 mx ESMTP\r\n"}, {"EHLO", "250 STARTTLS\r\n"}}, smtpprobe.OutcomeNoStartTLS},
		{"STARTTLS refused with 5xx", []step{{"", "220 mx\r\n"}, {"EHLO", "250-mx\r\n250 STARTTLS\r\n"}, {"STARTTLS", "502 5.5.1 no\r\n"}}, smtpprobe.OutcomeNoStartTLS},
		// CVE-2011-0411 class: bytes after the 220 must not be taken as TLS or as replies.
		// Bytes after the 220 are discarded, never taken as TLS or as replies; the
		// server then says nothing more and the handshake times out, as Postfix's would.
		{"data after STARTTLS reply", []step{{"", "220 mx\r\n"}, {"EHLO", "250-mx\r\n250 STARTTLS\r\n"}, {"STARTTLS", "220 go ahead\r\n250 injected\r\n"}}, smtpprobe.OutcomeTimeout},
		// Plaintext sent in answer to the ClientHello, rather than with the 220, is in
		// TestHostileServers: here its timing against the 220 would decide the outcome.
		{"STARTTLS answered 250", []step{{"", "220 mx\r\n"}, {"EHLO", "250-mx\r\n250 STARTTLS\r\n"}, {"STARTTLS", "250 sure\r\n"}}, smtpprobe.OutcomeTimeout},
		{"closes after EHLO", []step{{"", "220 mx\r\n"}, {"EHLO", ""}}, smtpprobe.OutcomeProtocolError},
		{"421 greeting", []step{{"", "421 4.3.2 busy\r\n"}}, smtpprobe.OutcomeGreylisted},
		{"554 greeting", []step{{"", "554 5.7.1 go away\r\n"}}, smtpprobe.OutcomeRejected},
		{"EHLO 550", []step{{"", "220 mx\r\n"}, {"EHLO", "550 5.7.1 no\r\n"}}, smtpprobe.OutcomeRejected},
		{"bare code line", []step{{"", "220\r\n"}, {"EHLO", "250-mx\r\n250 SIZE\r\n"}}, smtpprobe.OutcomeNoStartTLS},
		{"NUL bytes", []step{{"", "220 m\x00x\r\n"}, {"EHLO", "250 x\x00\r\n"}}, smtpprobe.OutcomeNoStartTLS},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := probe(t, scripted(t, tc.steps...))
			if r.Outcome != tc.outcome {
				t.Errorf("outcome %s (%s); want %s", r.Outcome, r.Detail, tc.outcome)
			}
			if r.Outcome == smtpprobe.OutcomeTLS || len(r.Chain) > 0 {
				t.Error("hostile peer produced TLS facts")
			}
		})
	}
}

// TestSessionAndSNI: a full session says EHLO, STARTTLS, EHLO, QUIT; SNI only on request
// (Postfix's smtp_tls_servername is empty by default).
func TestSessionAndSNI(t *testing.T) {
	t.Parallel()
	ca := fake.NewCA(t, "Root")
	cert := ca.Issue(t, fake.CertOptions{DNSNames: []string{"mx.example.test"}})
	for _, sni := range []string{"", "mx.example.test"} {
		s := fake.StartSMTP(t, "127.0.0.40", fake.Behavior{Hostname: "mx.example.test", Cert: &cert})
		d := fake.NewDialer()
		s.RegisterWith(d)
		p := &smtpprobe.Prober{Dialer: d, HELO: "probe.test", Roots: ca.Pool, ServerName: sni}
		r := p.Probe(context.Background(), s.Addr().Addr(), "")
		if r.Outcome != smtpprobe.OutcomeTLS || r.Stage != smtpprobe.StageDone || r.PKIX != nil {
			t.Fatalf("outcome %s stage %s pkix %v (%s)", r.Outcome, r.Stage, r.PKIX, r.Detail)
		}
		if r.TLSVersionName() != "TLSv1.3" {
			t.Errorf("TLS version %q", r.TLSVersionName())
		}
		// QUIT is sent without waiting for its reply: the server may record it after
		// Probe returned.
		want := "EHLO probe.test,STARTTLS,EHLO probe.test,QUIT"
		for deadline := time.Now().Add(2 * time.Second); strings.Join(s.Commands(), ",") != want && time.Now().Before(deadline); {
			time.Sleep(5 * time.Millisecond)
		}
		if got := strings.Join(s.Commands(), ","); got != want {
			t.Errorf("commands %q; want %q", got, want)
		}
		if names := s.ServerNames(); len(names) != 1 || names[0] != sni {
			t.Errorf("SNI %q; want %q", names, sni)
		}
	}
}

func TestTarpitBoundedByContext(t *testing.T) {
	t.Parallel()
	s := fake.StartSMTP(t, "127.0.0.41", fake.Behavior{Tarpit: true})
	d := fake.NewDialer()
	s.RegisterWith(d)
	p := &smtpprobe.Prober{Dialer: d, HELO: "probe.test"}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	r := p.Probe(ctx, s.Addr().Addr(), "")
	if r.Outcome != smtpprobe.OutcomeTimeout {
		t.Errorf("outcome %s; want timeout", r.Outcome)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("probe took %s after a 200ms budget", took)
	}
}

// TestConstrainedCNOnlyChain: the PKIX result includes what OpenSSL's verification
// adds to Go's: a CN-only leaf outside its sub-CA's DNS name constraints is not
// verified (issue 17). (That the failure survives the verdict cache file is
// verify's TestStoredAttemptFormat.)
func TestConstrainedCNOnlyChain(t *testing.T) {
	t.Parallel()
	ca := fake.NewCA(t, "Root")
	sub := ca.ConstrainedIntermediate(t, "attacker.test sub-CA", fake.NameConstraints{Permitted: []string{"attacker.test"}})
	for _, tc := range []struct {
		cn string
		ok bool
	}{{"mx.example.test", false}, {"mx.attacker.test", true}} {
		cert := sub.Issue(t, fake.CertOptions{CommonName: tc.cn})
		s := fake.StartSMTP(t, "127.0.0.42", fake.Behavior{Hostname: tc.cn, Cert: &cert})
		d := fake.NewDialer()
		s.RegisterWith(d)
		p := &smtpprobe.Prober{Dialer: d, HELO: "probe.test", Roots: ca.Pool}
		r := p.Probe(context.Background(), s.Addr().Addr(), "")
		if r.Outcome != smtpprobe.OutcomeTLS {
			t.Fatalf("CN %s: outcome %s (%s)", tc.cn, r.Outcome, r.Detail)
		}
		if (r.PKIX == nil) != tc.ok {
			t.Errorf("CN %s: PKIX %v; want ok=%v", tc.cn, r.PKIX, tc.ok)
		}
		var inv x509.CertificateInvalidError
		if !tc.ok && (!errors.As(r.PKIX, &inv) || inv.Reason != x509.CANotAuthorizedForThisName ||
			!strings.Contains(r.PKIX.Error(), "permitted subtree violation")) {
			t.Errorf("CN %s: PKIX %#v; want CANotAuthorizedForThisName, permitted subtree violation", tc.cn, r.PKIX)
		}
	}
}

// TestReplyTextBounded: a server sending the most lines of the longest length the probe
// reads, all 0xff, leaves a bounded, valid UTF-8 text of each reply in the result (what
// the cache and the file keep), and STARTTLS on the last of 100 EHLO lines is still seen.
func TestReplyTextBounded(t *testing.T) {
	t.Parallel()
	junk := strings.Repeat("\xff", 2044)
	var greeting, ehlo strings.Builder
	for range 99 {
		greeting.WriteString("220-" + junk + "\r\n")
		ehlo.WriteString("250-" + junk + "\r\n")
	}
	greeting.WriteString("220 " + junk + "\r\n")
	ehlo.WriteString("250 STARTTLS\r\n")
	r := probe(t, scripted(t, step{"", greeting.String()}, step{"EHLO", ehlo.String()}, step{"STARTTLS", "454 4.7.0 not now\r\n"}))
	if !r.Offered || r.Outcome != smtpprobe.OutcomeGreylisted {
		t.Errorf("offered %v, outcome %s (%s); want STARTTLS seen and the 454 answer", r.Offered, r.Outcome, r.Detail)
	}
	for what, text := range map[string]string{"greeting": r.Greeting.Text, "EHLO": r.EHLO.Text, "STARTTLS": r.StartTLS.Text, "detail": r.Detail} {
		if len(text) > 512 || !utf8.ValidString(text) {
			t.Errorf("%s text kept: %d bytes, valid UTF-8 %v", what, len(text), utf8.ValidString(text))
		}
	}
}
