package fake

import (
	"bufio"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Limits of the fake SMTP server.
const (
	// SMTPMaxLine is the longest command line the fake SMTP server
	// accepts, CRLF included (RFC 5321 §4.5.3.1.6 text line). A longer
	// line is discarded and answered with "500 5.5.2".
	SMTPMaxLine = 1000
	// SMTPTimeout is how long the fake SMTP server waits for a command,
	// for a TLS handshake, or for a reply to be written before it says
	// "421 4.4.2" and closes the connection.
	SMTPTimeout = 30 * time.Second
)

// Behavior scripts a fake SMTP server. The zero value (plus a Cert) is a
// well-behaved server that greets, offers STARTTLS and completes the
// handshake. Reply texts are given without the final CRLF; a "\n" inside
// separates the lines of a multi-line reply, each of which must carry its
// own code ("250-a\n250 b").
type Behavior struct {
	// Banner is the whole greeting, e.g. "421 4.3.2 Service not
	// available", "450 4.7.1 greylisted" or "554 5.7.1 go away". Empty
	// means "220 <Hostname> ESMTP fake". After a 421 greeting the server
	// closes the connection; after any other non-2xx greeting it answers
	// QUIT with 221 and every other command with "503 5.5.1" (RFC 5321
	// §3.1).
	Banner string
	// Hostname is the server's name in the greeting and the EHLO reply.
	// Empty means "mx.test".
	Hostname string
	// EHLOReply replaces the whole reply to every EHLO, before and after
	// STARTTLS (e.g. "450 4.7.1 try later"). Empty means "250-<Hostname>",
	// "250-PIPELINING", "250-SIZE 10240000", "250-STARTTLS" (unless
	// NoStartTLS or TLS is already active) and "250 8BITMIME".
	EHLOReply string
	// NoStartTLS stops the server advertising STARTTLS; a STARTTLS command
	// is answered with "502 5.5.1".
	NoStartTLS bool
	// StartTLSReply replaces the reply to STARTTLS (e.g. "454 4.7.0 TLS not
	// available"). The handshake follows only if it is a 2xx reply. Empty
	// means "220 2.0.0 Ready to start TLS".
	StartTLSReply string
	// Cert is the certificate presented after STARTTLS. It is required
	// unless the server can never reach a handshake (NoStartTLS,
	// BrokenTLS, Tarpit, Close, or a non-2xx StartTLSReply); StartSMTP
	// fails the test otherwise.
	Cert *tls.Certificate
	// SNICerts, when set, are certificates by TLS server name: a ClientHello whose
	// SNI names one gets that one instead of Cert, as a server that picks its
	// certificate by SNI (Postfix's tls_server_sni_maps) does.
	SNICerts map[string]*tls.Certificate
	// MinTLSVersion and MaxTLSVersion, when not zero, bound the TLS
	// versions the server accepts (tls.VersionTLS12, ...).
	MinTLSVersion, MaxTLSVersion uint16
	// CipherSuites, when set, are the TLS 1.0-1.2 suites the server accepts.
	CipherSuites []uint16
	// BrokenTLS makes the server advertise STARTTLS, answer it with
	// "220 2.0.0 Ready to start TLS", then write bytes that are not TLS
	// and close the connection, so the client's handshake fails.
	BrokenTLS bool
	// Tarpit makes the server accept connections and never send anything;
	// it reads and discards input until the client or cleanup closes the
	// connection.
	Tarpit bool
	// BannerDelay is how long the server waits after accepting a
	// connection before it sends the greeting.
	BannerDelay time.Duration
	// Close makes the server close every connection right after accepting
	// it.
	Close bool
}

// SMTPServer is a scripted ESMTP server listening on a loopback address. It
// serves any number of concurrent connections according to its Behavior and
// records what clients say. Create one with StartSMTP.
//
// The server understands EHLO, HELO, STARTTLS (RFC 3207), NOOP, RSET and
// QUIT. MAIL, RCPT, DATA and BDAT are recorded and answered "503 5.5.1 not
// in this fake"; anything else gets "502 5.5.2".
type SMTPServer struct {
	b    Behavior
	ln   net.Listener
	addr netip.AddrPort
	tls  *tls.Config
	done chan struct{}
	wg   sync.WaitGroup

	mu          sync.Mutex
	closed      bool
	conns       map[net.Conn]struct{}
	connections int
	commands    []string
	serverNames []string
}

// StartSMTP starts a fake SMTP server on ip (for example "127.0.0.7"; every
// 127.0.0.0/8 address is usable on Linux) at a random port. The server runs
// until the test's cleanup, which closes the listener and every open
// connection and waits for all of the server's goroutines to end. It fails
// the test if it cannot listen or Behavior lacks a required Cert.
func StartSMTP(t testing.TB, ip string, b Behavior) *SMTPServer {
	t.Helper()
	return StartSMTPPort(t, ip, 0, b)
}

// StartSMTPPort is StartSMTP at a given port (0: a random one), for a client that
// connects to one port on every address, as a real binary under test does with
// its probe.port.
func StartSMTPPort(t testing.TB, ip string, port uint16, b Behavior) *SMTPServer {
	t.Helper()
	if b.Hostname == "" {
		b.Hostname = "mx.test"
	}
	if b.Banner == "" {
		b.Banner = "220 " + b.Hostname + " ESMTP fake"
	}
	handshakes := !b.NoStartTLS && !b.BrokenTLS && !b.Tarpit && !b.Close &&
		(b.StartTLSReply == "" || replyCode(b.StartTLSReply)[0] == '2')
	if handshakes && b.Cert == nil {
		t.Fatalf("fake: StartSMTP %s: Behavior.Cert is required when STARTTLS can succeed", ip)
	}

	ln, err := net.Listen("tcp", net.JoinHostPort(ip, strconv.Itoa(int(port))))
	if err != nil {
		t.Fatalf("fake: StartSMTP: %v", err)
	}
	bound := ln.Addr().(*net.TCPAddr).AddrPort()
	s := &SMTPServer{
		b:     b,
		ln:    ln,
		addr:  netip.AddrPortFrom(bound.Addr().Unmap(), bound.Port()),
		done:  make(chan struct{}),
		conns: make(map[net.Conn]struct{}),
	}
	if b.Cert != nil {
		s.tls = &tls.Config{
			Certificates: []tls.Certificate{*b.Cert},
			MinVersion:   b.MinTLSVersion,
			MaxVersion:   b.MaxTLSVersion,
			CipherSuites: b.CipherSuites,
			GetCertificate: func(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
				if c, ok := b.SNICerts[hello.ServerName]; ok {
					return c, nil
				}
				return b.Cert, nil
			},
			GetConfigForClient: func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
				s.mu.Lock()
				s.serverNames = append(s.serverNames, hello.ServerName)
				s.mu.Unlock()
				return nil, nil
			},
		}
	}
	s.wg.Add(1)
	go s.acceptLoop()
	t.Cleanup(s.shutdown)
	return s
}

// Addr returns the address the server listens on.
func (s *SMTPServer) Addr() netip.AddrPort { return s.addr }

// RegisterWith makes d send connections for the server's IP address, at any
// port, to the server.
func (s *SMTPServer) RegisterWith(d *Dialer) { d.Register(s.addr.Addr(), s.addr) }

// Commands returns every command line received so far, across all
// connections and in arrival order, with the verb upper-cased and the
// arguments as sent, e.g. "EHLO probe.test", "STARTTLS", "QUIT".
func (s *SMTPServer) Commands() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.commands...)
}

// Connections returns how many connections the server has accepted.
func (s *SMTPServer) Connections() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.connections
}

// ServerNames returns the SNI server name of every TLS ClientHello received
// so far ("" when the client sent none), in arrival order, whether or not
// the handshake then succeeded.
func (s *SMTPServer) ServerNames() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.serverNames...)
}

func (s *SMTPServer) shutdown() {
	s.mu.Lock()
	s.closed = true
	close(s.done)
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.ln.Close()
	s.wg.Wait()
}

func (s *SMTPServer) acceptLoop() {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			select {
			case <-s.done:
				return
			case <-time.After(10 * time.Millisecond): // e.g. EMFILE: try again
				continue
			}
		}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			c.Close()
			return
		}
		s.conns[c] = struct{}{}
		s.connections++
		s.wg.Add(1)
		s.mu.Unlock()
		go s.serve(c)
	}
}

func (s *SMTPServer) serve(c net.Conn) {
	defer s.wg.Done()
	defer func() {
		c.Close()
		s.mu.Lock()
		delete(s.conns, c)
		s.mu.Unlock()
	}()
	switch {
	case s.b.Close:
		return
	case s.b.Tarpit:
		io.Copy(io.Discard, c) // until the client or shutdown closes c
		return
	}
	if s.b.BannerDelay > 0 {
		timer := time.NewTimer(s.b.BannerDelay)
		defer timer.Stop()
		select {
		case <-timer.C:
		case <-s.done:
			return
		}
	}
	sess := &session{srv: s, raw: c, conn: c, r: bufio.NewReaderSize(c, SMTPMaxLine+2)}
	sess.run()
}

func (s *SMTPServer) record(cmd string) {
	s.mu.Lock()
	s.commands = append(s.commands, cmd)
	s.mu.Unlock()
}

// session is one SMTP conversation.
type session struct {
	srv  *SMTPServer
	raw  net.Conn // the TCP connection
	conn net.Conn // raw, or the TLS connection on top of it
	r    *bufio.Reader
	tls  bool
}

var errLineTooLong = errors.New("line too long")

func (ss *session) run() {
	b := &ss.srv.b
	if !ss.reply(b.Banner) {
		return
	}
	bannerCode := replyCode(b.Banner)
	if bannerCode == "421" {
		return
	}
	rejecting := bannerCode[0] != '2'
	for {
		line, err := ss.readLine()
		if errors.Is(err, errLineTooLong) {
			if !ss.reply("500 5.5.2 Error: line too long") {
				return
			}
			continue
		}
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				ss.reply("421 4.4.2 " + b.Hostname + " Error: timeout exceeded")
			}
			return
		}
		verb, arg, _ := strings.Cut(strings.TrimSpace(line), " ")
		verb = strings.ToUpper(verb)
		arg = strings.TrimSpace(arg)
		if arg == "" {
			ss.srv.record(verb)
		} else {
			ss.srv.record(verb + " " + arg)
		}

		if rejecting && verb != "QUIT" {
			if !ss.reply("503 5.5.1 Error: no valid session") {
				return
			}
			continue
		}
		var ok bool
		switch verb {
		case "":
			ok = ss.reply("500 5.5.2 Error: bad syntax")
		case "EHLO":
			ok = ss.ehlo(arg)
		case "HELO":
			if arg == "" {
				ok = ss.reply("501 5.5.4 Syntax: HELO hostname")
			} else {
				ok = ss.reply("250 " + b.Hostname)
			}
		case "STARTTLS":
			if !ss.startTLS() {
				return
			}
			ok = true
		case "NOOP", "RSET":
			ok = ss.reply("250 2.0.0 Ok")
		case "QUIT":
			ss.reply("221 2.0.0 Bye")
			return
		case "MAIL", "RCPT", "DATA", "BDAT":
			ok = ss.reply("503 5.5.1 not in this fake")
		default:
			ok = ss.reply("502 5.5.2 Error: command not recognized")
		}
		if !ok {
			return
		}
	}
}

func (ss *session) ehlo(arg string) bool {
	b := &ss.srv.b
	if arg == "" {
		return ss.reply("501 5.5.4 Syntax: EHLO hostname")
	}
	if b.EHLOReply != "" {
		return ss.reply(b.EHLOReply)
	}
	lines := []string{"250-" + b.Hostname, "250-PIPELINING", "250-SIZE 10240000"}
	if !b.NoStartTLS && !ss.tls {
		lines = append(lines, "250-STARTTLS")
	}
	lines = append(lines, "250 8BITMIME")
	return ss.reply(strings.Join(lines, "\n"))
}

// startTLS handles the STARTTLS command and reports whether the session
// goes on.
func (ss *session) startTLS() bool {
	b := &ss.srv.b
	switch {
	case ss.tls:
		return ss.reply("503 5.5.1 Error: TLS already active")
	case b.NoStartTLS:
		return ss.reply("502 5.5.1 Error: command not implemented")
	}
	answer := "220 2.0.0 Ready to start TLS"
	if b.StartTLSReply != "" {
		answer = b.StartTLSReply
	}
	if !ss.reply(answer) {
		return false
	}
	if replyCode(answer)[0] != '2' {
		return true
	}
	if b.BrokenTLS {
		// Let the ClientHello arrive, so the client reads our garbage
		// rather than a connection reset, then answer with non-TLS bytes.
		ss.raw.SetReadDeadline(time.Now().Add(2 * time.Second))
		ss.r.Read(make([]byte, 4096))
		garbage := make([]byte, 64)
		rand.Read(garbage)
		ss.raw.SetWriteDeadline(time.Now().Add(SMTPTimeout))
		ss.raw.Write(append([]byte("this is not TLS\r\n"), garbage...))
		return false
	}
	// RFC 3207 §4.2: discard anything the client sent before the handshake
	// by reading the TLS stream from the raw connection, not from ss.r.
	tc := tls.Server(ss.raw, ss.srv.tls)
	tc.SetDeadline(time.Now().Add(SMTPTimeout))
	if err := tc.Handshake(); err != nil {
		return false
	}
	tc.SetDeadline(time.Time{})
	ss.conn = tc
	ss.r = bufio.NewReaderSize(tc, SMTPMaxLine+2)
	ss.tls = true
	return true
}

// reply writes one possibly multi-line reply and reports whether that
// worked.
func (ss *session) reply(text string) bool {
	text = strings.ReplaceAll(text, "\r\n", "\n")
	text = strings.ReplaceAll(text, "\n", "\r\n") + "\r\n"
	ss.conn.SetWriteDeadline(time.Now().Add(SMTPTimeout))
	_, err := io.WriteString(ss.conn, text)
	return err == nil
}

// readLine reads one CRLF- (or LF-) terminated line and returns it without
// the line ending. A line longer than SMTPMaxLine octets is read to its end
// and discarded, and errLineTooLong is returned.
func (ss *session) readLine() (string, error) {
	ss.conn.SetReadDeadline(time.Now().Add(SMTPTimeout))
	var line []byte
	tooLong := false
	for {
		frag, err := ss.r.ReadSlice('\n')
		if !tooLong {
			line = append(line, frag...)
			if len(line) > SMTPMaxLine {
				tooLong, line = true, nil
			}
		}
		if err == nil {
			break
		}
		if !errors.Is(err, bufio.ErrBufferFull) {
			return "", err
		}
	}
	if tooLong {
		return "", errLineTooLong
	}
	return strings.TrimRight(string(line), "\r\n"), nil
}

// replyCode returns the three-character code of the last line of a reply,
// or "???" if the reply is too short to have one.
func replyCode(reply string) string {
	reply = strings.TrimRight(reply, "\r\n")
	if i := strings.LastIndexByte(reply, '\n'); i >= 0 {
		reply = reply[i+1:]
	}
	if len(reply) < 3 {
		return "???"
	}
	return reply[:3]
}
