package fake_test

import (
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/smtp"
	"net/textproto"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tlsgate/tlsgate/internal/fake"
)

// dialText connects to s and returns a textproto conversation with a 5 s
// deadline.
func dialText(t *testing.T, s *fake.SMTPServer) (net.Conn, *textproto.Conn) {
	t.Helper()
	c, err := net.Dial("tcp", s.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(5 * time.Second))
	return c, textproto.NewConn(c)
}

// cmd sends line and returns the reply code and message.
func cmd(t *testing.T, tc *textproto.Conn, line string) (int, string) {
	t.Helper()
	if err := tc.PrintfLine("%s", line); err != nil {
		t.Fatalf("send %q: %v", line, err)
	}
	return readReply(t, tc)
}

func readReply(t *testing.T, tc *textproto.Conn) (int, string) {
	t.Helper()
	code, msg, err := tc.ReadResponse(0)
	if err != nil {
		var perr *textproto.Error
		if !errors.As(err, &perr) {
			t.Fatalf("read reply: %v", err)
		}
	}
	return code, msg
}

func TestSMTPStartTLS(t *testing.T) {
	t.Parallel()
	ca := fake.NewCA(t, "Test Root")
	cert := ca.Issue(t, fake.CertOptions{DNSNames: []string{"mx1.example.test"}})
	s := fake.StartSMTP(t, "127.0.0.7", fake.Behavior{Hostname: "mx1.example.test", Cert: &cert})
	if got := s.Addr().Addr().String(); got != "127.0.0.7" {
		t.Fatalf("Addr %v, want 127.0.0.7", s.Addr())
	}

	c, err := smtp.Dial(s.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Hello("probe.test"); err != nil {
		t.Fatal(err)
	}
	if ok, _ := c.Extension("STARTTLS"); !ok {
		t.Fatal("STARTTLS not advertised")
	}
	if ok, _ := c.Extension("PIPELINING"); !ok {
		t.Error("PIPELINING not advertised")
	}
	if err := c.StartTLS(&tls.Config{ServerName: "mx1.example.test", RootCAs: ca.Pool}); err != nil {
		t.Fatalf("StartTLS: %v", err)
	}
	state, ok := c.TLSConnectionState()
	if !ok || !state.HandshakeComplete {
		t.Fatal("no TLS after StartTLS")
	}
	if !state.PeerCertificates[0].Equal(cert.Leaf) {
		t.Errorf("peer presented %v, want the issued certificate", state.PeerCertificates[0].Subject)
	}
	if ok, _ := c.Extension("STARTTLS"); ok {
		t.Error("STARTTLS advertised again after TLS")
	}
	if err := c.Noop(); err != nil {
		t.Errorf("NOOP: %v", err)
	}
	if err := c.Quit(); err != nil {
		t.Errorf("QUIT: %v", err)
	}

	want := []string{"EHLO probe.test", "STARTTLS", "EHLO probe.test", "NOOP", "QUIT"}
	if got := s.Commands(); !slices.Equal(got, want) {
		t.Errorf("Commands %q, want %q", got, want)
	}
	if got := s.ServerNames(); !slices.Equal(got, []string{"mx1.example.test"}) {
		t.Errorf("ServerNames %q", got)
	}
	if got := s.Connections(); got != 1 {
		t.Errorf("Connections %d, want 1", got)
	}
}

func TestSMTPStartTLSWrongNameFailsVerification(t *testing.T) {
	t.Parallel()
	ca := fake.NewCA(t, "Test Root")
	cert := ca.Issue(t, fake.CertOptions{DNSNames: []string{"mx1.example.test"}})
	s := fake.StartSMTP(t, "127.0.0.1", fake.Behavior{Cert: &cert})

	c, err := smtp.Dial(s.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	err = c.StartTLS(&tls.Config{ServerName: "mx2.example.test", RootCAs: ca.Pool})
	var verr *tls.CertificateVerificationError
	if !errors.As(err, &verr) {
		t.Errorf("StartTLS with a foreign name: %v, want a verification error", err)
	}
}

func TestSMTPMaxTLSVersion(t *testing.T) {
	t.Parallel()
	cert := fake.SelfSigned(t, fake.CertOptions{DNSNames: []string{"mx.test"}})
	s := fake.StartSMTP(t, "127.0.0.1", fake.Behavior{Cert: &cert, MaxTLSVersion: tls.VersionTLS12})
	c, err := smtp.Dial(s.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.StartTLS(&tls.Config{InsecureSkipVerify: true}); err != nil {
		t.Fatal(err)
	}
	if state, _ := c.TLSConnectionState(); state.Version != tls.VersionTLS12 {
		t.Errorf("TLS version %x, want TLS 1.2", state.Version)
	}
}

func TestSMTPNoStartTLS(t *testing.T) {
	t.Parallel()
	s := fake.StartSMTP(t, "127.0.0.1", fake.Behavior{NoStartTLS: true})
	_, tc := dialText(t, s)
	if code, _ := readReply(t, tc); code != 220 {
		t.Fatalf("banner %d", code)
	}
	code, msg := cmd(t, tc, "EHLO probe.test")
	if code != 250 || strings.Contains(msg, "STARTTLS") {
		t.Errorf("EHLO: %d %q, want 250 without STARTTLS", code, msg)
	}
	if code, _ := cmd(t, tc, "STARTTLS"); code != 502 {
		t.Errorf("STARTTLS: %d, want 502", code)
	}
	if code, _ := cmd(t, tc, "QUIT"); code != 221 {
		t.Errorf("QUIT: %d, want 221", code)
	}
}

func TestSMTPReplies(t *testing.T) {
	t.Parallel()
	cert := fake.SelfSigned(t, fake.CertOptions{DNSNames: []string{"mx.test"}})
	type step struct {
		send     string // "" reads the greeting
		wantCode int
		wantMsg  string // substring; "" = anything
	}
	test := func(name string, b fake.Behavior, steps []step, wantEOF bool) {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			s := fake.StartSMTP(t, "127.0.0.1", b)
			_, tc := dialText(t, s)
			for _, st := range steps {
				var code int
				var msg string
				if st.send == "" {
					code, msg = readReply(t, tc)
				} else {
					code, msg = cmd(t, tc, st.send)
				}
				if code != st.wantCode || !strings.Contains(msg, st.wantMsg) {
					t.Errorf("%q: got %d %q, want %d %q", st.send, code, msg, st.wantCode, st.wantMsg)
				}
			}
			if wantEOF {
				if _, err := tc.ReadLine(); !errors.Is(err, io.EOF) {
					t.Errorf("after the last step: %v, want EOF", err)
				}
			}
		})
	}

	test("default banner", fake.Behavior{Cert: &cert}, []step{{"", 220, "mx.test ESMTP fake"}}, false)
	test("hostname", fake.Behavior{Hostname: "mx9.example.test", NoStartTLS: true},
		[]step{{"", 220, "mx9.example.test"}, {"EHLO probe.test", 250, "mx9.example.test\nPIPELINING"}, {"HELO probe.test", 250, "mx9.example.test"}}, false)
	test("421 banner closes", fake.Behavior{Banner: "421 4.3.2 Service not available", Cert: &cert},
		[]step{{"", 421, "4.3.2 Service not available"}}, true)
	test("554 banner waits for QUIT", fake.Behavior{Banner: "554 5.7.1 go away", Cert: &cert},
		[]step{{"", 554, "go away"}, {"EHLO probe.test", 503, ""}, {"STARTTLS", 503, ""}, {"QUIT", 221, ""}}, true)
	test("450 greylisting banner", fake.Behavior{Banner: "450 4.7.1 greylisted", Cert: &cert},
		[]step{{"", 450, "greylisted"}, {"EHLO probe.test", 503, ""}, {"QUIT", 221, ""}}, true)
	test("multi-line banner", fake.Behavior{Banner: "220-mx.test first\n220 mx.test second", Cert: &cert},
		[]step{{"", 220, "first\nmx.test second"}, {"EHLO probe.test", 250, "STARTTLS"}}, false)
	test("EHLO reply override", fake.Behavior{EHLOReply: "450 4.7.1 try later", Cert: &cert},
		[]step{{"", 220, ""}, {"EHLO probe.test", 450, "try later"}, {"HELO probe.test", 250, ""}}, false)
	test("STARTTLS refused", fake.Behavior{StartTLSReply: "454 4.7.0 TLS not available"},
		[]step{{"", 220, ""}, {"EHLO probe.test", 250, "STARTTLS"}, {"STARTTLS", 454, "TLS not available"}, {"NOOP", 250, ""}, {"QUIT", 221, ""}}, true)
	test("no mail transactions", fake.Behavior{Cert: &cert},
		[]step{{"", 220, ""}, {"EHLO probe.test", 250, ""}, {"MAIL FROM:<a@example.test>", 503, "not in this fake"},
			{"RCPT TO:<b@example.test>", 503, ""}, {"DATA", 503, ""}, {"RSET", 250, ""}, {"VRFY x", 502, ""}, {"EHLO", 501, ""}}, false)
	test("line too long", fake.Behavior{Cert: &cert},
		[]step{{"", 220, ""}, {"NOOP " + strings.Repeat("x", 5000), 500, "too long"}, {"NOOP", 250, ""}}, false)
}

func TestSMTPCommandsRecorded(t *testing.T) {
	t.Parallel()
	s := fake.StartSMTP(t, "127.0.0.1", fake.Behavior{NoStartTLS: true})
	for _, lines := range [][]string{
		{"ehlo probe.test", "mail FROM:<a@example.test>", "QUIT"},
		{"HELO other.test", "rcpt TO:<b@example.test>", "data", "quit"},
	} {
		_, tc := dialText(t, s)
		readReply(t, tc)
		for _, l := range lines {
			cmd(t, tc, l)
		}
	}
	want := []string{"EHLO probe.test", "MAIL FROM:<a@example.test>", "QUIT",
		"HELO other.test", "RCPT TO:<b@example.test>", "DATA", "QUIT"}
	if got := s.Commands(); !slices.Equal(got, want) {
		t.Errorf("Commands %q, want %q", got, want)
	}
	if got := s.Connections(); got != 2 {
		t.Errorf("Connections %d, want 2", got)
	}
}

func TestSMTPTarpit(t *testing.T) {
	t.Parallel()
	s := fake.StartSMTP(t, "127.0.0.1", fake.Behavior{Tarpit: true})
	c, _ := dialText(t, s)
	c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	n, err := c.Read(make([]byte, 64))
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Errorf("read from tarpit: %d bytes, %v; want a timeout", n, err)
	}
	if got := s.Connections(); got != 1 {
		t.Errorf("Connections %d, want 1", got)
	}
}

func TestSMTPBannerDelay(t *testing.T) {
	t.Parallel()
	const delay = 300 * time.Millisecond
	s := fake.StartSMTP(t, "127.0.0.1", fake.Behavior{BannerDelay: delay, NoStartTLS: true})
	start := time.Now()
	_, tc := dialText(t, s)
	if code, _ := readReply(t, tc); code != 220 {
		t.Fatalf("banner %d", code)
	}
	if d := time.Since(start); d < delay {
		t.Errorf("banner after %v, want at least %v", d, delay)
	}
}

func TestSMTPClose(t *testing.T) {
	t.Parallel()
	s := fake.StartSMTP(t, "127.0.0.1", fake.Behavior{Close: true})
	c, _ := dialText(t, s)
	if n, err := c.Read(make([]byte, 64)); err == nil {
		t.Errorf("read %d bytes, want the connection closed", n)
	}
}

func TestSMTPBrokenTLS(t *testing.T) {
	t.Parallel()
	s := fake.StartSMTP(t, "127.0.0.1", fake.Behavior{BrokenTLS: true})
	c, tc := dialText(t, s)
	readReply(t, tc)
	if code, msg := cmd(t, tc, "EHLO probe.test"); code != 250 || !strings.Contains(msg, "STARTTLS") {
		t.Fatalf("EHLO: %d %q, want STARTTLS advertised", code, msg)
	}
	if code, _ := cmd(t, tc, "STARTTLS"); code != 220 {
		t.Fatalf("STARTTLS: %d, want 220", code)
	}
	err := tls.Client(c, &tls.Config{ServerName: "mx.test", InsecureSkipVerify: true}).Handshake()
	if err == nil {
		t.Fatal("handshake succeeded against BrokenTLS")
	}
	t.Logf("handshake error (expected): %v", err)
	if got := s.ServerNames(); !slices.Equal(got, nil) {
		t.Errorf("ServerNames %q: BrokenTLS has no TLS server", got)
	}
}

func TestSMTPConcurrentSessions(t *testing.T) {
	t.Parallel()
	cert := fake.SelfSigned(t, fake.CertOptions{DNSNames: []string{"mx.test"}})
	s := fake.StartSMTP(t, "127.0.0.1", fake.Behavior{Cert: &cert})
	const n = 8
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for range n {
		wg.Go(func() {
			c, err := smtp.Dial(s.Addr().String())
			if err != nil {
				errs <- err
				return
			}
			defer c.Close()
			if err := c.StartTLS(&tls.Config{InsecureSkipVerify: true}); err != nil {
				errs <- err
				return
			}
			errs <- c.Quit()
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	if got := s.Connections(); got != n {
		t.Errorf("Connections %d, want %d", got, n)
	}
}

func TestSMTPCleanupClosesConnections(t *testing.T) {
	t.Parallel()
	var conn net.Conn
	t.Run("server", func(t *testing.T) {
		s := fake.StartSMTP(t, "127.0.0.1", fake.Behavior{Tarpit: true})
		c, err := net.Dial("tcp", s.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		conn = c
		for s.Connections() == 0 { // wait for the accept
			time.Sleep(time.Millisecond)
		}
	})
	// The subtest's cleanup has run: the server must have closed our
	// connection rather than leaving its goroutine blocked on it.
	defer conn.Close()
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := conn.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
		t.Errorf("read after cleanup: %v, want EOF", err)
	}
}
