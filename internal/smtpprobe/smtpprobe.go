// Package smtpprobe talks to one SMTP server the way a delivering MTA starts a session,
// and stops before any mail is sent: greeting, EHLO, STARTTLS (RFC 3207), TLS handshake,
// EHLO again, QUIT. It never sends MAIL, RCPT or DATA, so a probe cannot deliver, bounce
// or confirm an address.
//
// The result records how far the session got and what the server presented (reply codes,
// TLS version and cipher, certificate chain and its PKIX result against the configured
// roots). Whether that is good enough for some TLS level is not decided here: that is the
// job of the pure judge in package verify.
//
// Like Postfix's SMTP client (smtp_tls_servername empty by default, postconf(5)), the
// probe sends no SNI unless asked to, accepts any certificate during the handshake and
// verifies the chain afterwards, so that one probe can be judged for every level.
package smtpprobe

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/tlsgate/tlsgate/internal/certname"
	"github.com/tlsgate/tlsgate/internal/problem"
	"github.com/tlsgate/tlsgate/internal/safetext"
)

// Stage is how far a probe got.
type Stage int

// Stages in session order. A Result's Stage is the last one that completed. The
// verdict cache file stores the numbers (verify/persist.go): add at the end only.
const (
	StageNone      Stage = iota // nothing: could not connect
	StageConnected              // TCP connected
	StageGreeting               // read a 2xx greeting
	StageEHLO                   // EHLO accepted
	StageTLS                    // TLS handshake completed
	StageDone                   // EHLO after TLS accepted
)

var stageNames = [...]string{"none", "connected", "greeting", "ehlo", "tls", "done"}

func (s Stage) String() string { return stageNames[s] }

// Valid reports whether s is one of the stages above (String panics on any other).
func (s Stage) Valid() bool { return s >= 0 && int(s) < len(stageNames) }

// Outcome classifies a probe for the judge.
type Outcome int

// Outcomes. Definite outcomes are properties of the server that will be the same on the
// next try; transient ones say nothing about TLS. The verdict cache file stores the
// numbers (verify/persist.go): add at the end only.
const (
	OutcomeNotProbed      Outcome = iota // zero value: nothing is known (never a pass)
	OutcomeTLS                           // handshake completed (certificate not judged here)
	OutcomeNoStartTLS                    // definite: STARTTLS not offered, or refused with 5xx
	OutcomeHandshakeError                // definite: STARTTLS offered, but the TLS handshake failed
	OutcomeGreylisted                    // transient: 4xx greeting, EHLO or STARTTLS reply
	OutcomeRejected                      // transient for TLS purposes: 5xx greeting or EHLO
	OutcomeRefused                       // transient: TCP connection refused / unreachable
	OutcomeTimeout                       // transient: no answer in time (tarpit, filtered)
	OutcomeProtocolError                 // transient: garbage, connection dropped mid-session
	OutcomeNotAllowed                    // not probed: the address is in a network the operator did not allow
)

var outcomeNames = [...]string{"not-probed", "tls", "no-starttls", "handshake-error", "greylisted", "rejected", "refused", "timeout", "protocol-error", "not-allowed"}

func (o Outcome) String() string { return outcomeNames[o] }

// Valid reports whether o is one of the outcomes above (String panics on any other).
func (o Outcome) Valid() bool { return o >= 0 && int(o) < len(outcomeNames) }

// Definite reports whether the outcome is a reproducible property of the server.
func (o Outcome) Definite() bool {
	return o == OutcomeTLS || o == OutcomeNoStartTLS || o == OutcomeHandshakeError
}

// Reply is one SMTP reply.
type Reply struct {
	Code int
	Text string // all lines joined with "\n", without codes
}

// bounded returns r with at most safetext.MaxField bytes of valid UTF-8 text: a reply
// may be 100 lines of 2 KiB of anything, and what is kept of it (in memory, in the
// cache file, in reports) is the remote host's to choose.
func (r Reply) bounded() Reply {
	r.Text = safetext.Bound(r.Text, safetext.MaxField)
	return r
}

func (r Reply) String() string {
	if r.Code == 0 {
		return ""
	}
	return strconv.Itoa(r.Code) + " " + strings.ReplaceAll(r.Text, "\n", " / ")
}

// Result is what one probe of one address found.
type Result struct {
	IP       netip.Addr
	Stage    Stage
	Outcome  Outcome
	Detail   string // human detail of a failure ("connection refused", "banner 450 ...")
	Greeting Reply
	EHLO     Reply
	StartTLS Reply // zero when STARTTLS was not sent
	Offered  bool  // EHLO advertised STARTTLS
	// TLS facts, set when Outcome == OutcomeTLS.
	TLSVersion  uint16
	CipherSuite uint16
	Chain       []*x509.Certificate // as presented, leaf first
	PKIX        error               // nil when Chain verifies to the roots at probe time (names not checked)
	// Opportunistic and Authenticated are the server's answers to the two
	// ClientHellos of Postfix's SMTP client (hello.go), asked for only when Go's
	// handshake negotiated less than TLS 1.2 (Authenticated) or failed (both): there
	// Go's result does not say what OpenSSL gets. nil: not asked, Go's result stands.
	// When Go's handshake failed, Chain and PKIX are from the answer's Certificate.
	Opportunistic *Hello
	Authenticated *Hello
	Duration      time.Duration
	// Err is the error behind a failed session, unfiltered (local addresses and all),
	// for the debug log. Detail says what it means without them; Err is never stored
	// nor shown to a sender.
	Err error
}

// Leaf returns the server certificate, or nil.
func (r *Result) Leaf() *x509.Certificate {
	if len(r.Chain) == 0 {
		return nil
	}
	return r.Chain[0]
}

// TLSVersionName is "TLSv1.3"-style (Postfix's log notation), or "".
func (r *Result) TLSVersionName() string {
	switch r.TLSVersion {
	case 0:
		return ""
	case tls.VersionTLS13:
		return "TLSv1.3"
	case tls.VersionTLS12:
		return "TLSv1.2"
	case tls.VersionTLS11:
		return "TLSv1.1"
	case tls.VersionTLS10:
		return "TLSv1.0"
	}
	return strings.Replace(tls.VersionName(r.TLSVersion), "TLS 1", "TLSv1", 1)
}

// Dialer opens TCP connections; *net.Dialer satisfies it, tests inject fakes.
type Dialer interface {
	DialContext(ctx context.Context, network, address string) (net.Conn, error)
}

// Prober probes SMTP servers. The zero value is not usable; set HELO and Dialer.
type Prober struct {
	Dialer     Dialer
	Port       int              // default 25
	HELO       string           // EHLO name
	Roots      *x509.CertPool   // nil = system roots
	Now        func() time.Time // for PKIX; nil = time.Now
	ServerName string           // SNI to send; "" sends none (Postfix default)
}

const (
	maxLineLen   = 2048 // RFC 5321 §4.5.3.1.5 allows 512; be generous, but bounded
	bufSize      = 4096 // reader buffer; must hold maxLineLen plus CRLF
	maxReplyLine = 100  // lines in one multi-line reply
	// maxSession bounds a session whose context has no deadline. RFC 5321 §4.5.3.2.1
	// gives a client 5 minutes to wait for the greeting; we allow that much for the
	// whole session, as one deadline and not per read, so that a peer trickling one
	// byte at a time cannot hold a probe forever.
	maxSession = 5 * time.Minute
	// quitWait is how long we wait for the reply to QUIT. RFC 5321 §4.1.1.10: the
	// client SHOULD wait for the reply, but the verdict is known by then and Postfix
	// does not wait at all (smtp_skip_quit_response = yes), so a server that never
	// answers, or answers and keeps the connection open, costs at most this much.
	quitWait = 500 * time.Millisecond
	// maxQuoted is how much of a malformed line an error quotes.
	maxQuoted = 64
)

// Probe runs one session against ip, sending sni as TLS server name ("" for
// p.ServerName; DANE needs the TLSA base domain, RFC 7672 §8.1). It never returns an
// error: every failure is a Result with a transient or definite Outcome. The context
// bounds the whole session, as one deadline for all reads and writes (a context without
// a deadline gets maxSession): no amount of slow but steady input extends it.
func (p *Prober) Probe(ctx context.Context, ip netip.Addr, sni string) Result {
	start := time.Now()
	if sni == "" {
		sni = p.ServerName
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, maxSession)
		defer cancel()
	}
	res := p.probe(ctx, ip, sni)
	res.IP = ip
	res.Detail = safetext.Bound(res.Detail, safetext.MaxField)
	for _, h := range []*Hello{res.Opportunistic, res.Authenticated} {
		if h != nil {
			h.Failed, h.Garbled = safetext.Bound(h.Failed, safetext.MaxField), safetext.Bound(h.Garbled, safetext.MaxField)
		}
	}
	res.Duration = time.Since(start)
	return res
}

func (p *Prober) probe(ctx context.Context, ip netip.Addr, sni string) (res Result) {
	port := p.Port
	if port == 0 {
		port = 25
	}
	conn, err := p.Dialer.DialContext(ctx, "tcp", netip.AddrPortFrom(ip, uint16(port)).String())
	if err != nil {
		return netFailure(res, "connect", err)
	}
	defer conn.Close()
	// One deadline for the whole session, never renewed by the bytes that arrive; the
	// AfterFunc also unblocks I/O when the context is cancelled before it: a tarpit
	// must not outlive the budget.
	dl, _ := ctx.Deadline()
	conn.SetDeadline(dl)
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	res.Stage = StageConnected

	s := &session{ctx: ctx, conn: conn, r: bufio.NewReaderSize(conn, bufSize)}
	if res.Greeting, err = s.read(); err != nil {
		return netFailure(res, "greeting", err)
	}
	res.Greeting = res.Greeting.bounded()
	if !ok2xx(res.Greeting, &res, "greeting") {
		return res
	}
	res.Stage = StageGreeting

	ehlo, err := s.cmd("EHLO " + p.HELO)
	if err != nil {
		return netFailure(res, "EHLO", err)
	}
	// The extensions are read from the whole reply; only a bounded text of it is kept.
	res.EHLO, res.Offered = ehlo.bounded(), ehlo.Code/100 == 2 && hasExtension(ehlo, "STARTTLS")
	if !ok2xx(res.EHLO, &res, "EHLO") {
		s.quit()
		return res
	}
	res.Stage = StageEHLO
	if !res.Offered {
		res.Outcome, res.Detail = OutcomeNoStartTLS, "STARTTLS not offered in the EHLO reply"
		s.quit()
		return res
	}

	if res.StartTLS, err = s.cmd("STARTTLS"); err != nil {
		return netFailure(res, "STARTTLS", err)
	}
	res.StartTLS = res.StartTLS.bounded()
	switch c := res.StartTLS.Code; {
	case c >= 400 && c < 500:
		res.Outcome, res.Detail = OutcomeGreylisted, "STARTTLS answered "+res.StartTLS.String()
		s.quit()
		return res
	case c/100 != 2: // Postfix accepts any 2xx (smtp_proto.c)
		res.Outcome, res.Detail = OutcomeNoStartTLS, "STARTTLS refused: "+res.StartTLS.String()
		s.quit()
		return res
	}
	// Bytes the server sent after its reply are discarded, never read as TLS nor as
	// replies after it (RFC 3207 §4.2 / CVE-2011-0411); the handshake starts on the
	// socket, as Postfix's does.

	tc := tls.Client(conn, p.tlsConfig(sni))
	if err := tc.HandshakeContext(ctx); err != nil {
		// A peer that stalls or goes away (FIN or RST) mid-handshake has not answered
		// our ClientHello: that is a broken session, transient like a drop anywhere
		// else. Only an answer (an alert, a record that is not TLS, a certificate or
		// parameters we cannot accept) is a definite handshake failure.
		if ctx.Err() != nil || isTimeout(err) || dropped(err) {
			return netFailure(res, "TLS handshake", err)
		}
		res.Outcome, res.Detail, res.Err = OutcomeHandshakeError, "TLS handshake failed: "+problem.Describe(err), err
		// Bytes that are not TLS are no answer to any ClientHello; anything else (an
		// alert, a choice Go cannot take) may be Go's offer, not the server.
		var notTLS tls.RecordHeaderError
		if !errors.As(err, &notTLS) {
			conn.Close()
			p.askLikePostfix(ctx, ip, sni, &res, OfferOpportunistic, OfferAuthenticated)
		}
		return res
	}
	st := tc.ConnectionState()
	res.Stage = StageTLS
	res.TLSVersion, res.CipherSuite = st.Version, st.CipherSuite
	res.Chain = st.PeerCertificates
	res.PKIX = p.verifyChain(st.PeerCertificates)

	// Postfix's handshake ends with EHLO over TLS (smtp_start_tls returns smtp_helo):
	// a server that fails it does not get mail, whatever its certificate.
	s = &session{ctx: ctx, conn: tc, r: bufio.NewReaderSize(tc, bufSize)}
	r, err := s.cmd("EHLO " + p.HELO)
	if err != nil {
		return netFailure(res, "EHLO after STARTTLS", err)
	}
	if !ok2xx(r, &res, "EHLO after STARTTLS") {
		s.quit()
		return res
	}
	res.Stage, res.Outcome = StageDone, OutcomeTLS
	s.quit()
	if st.Version < tls.VersionTLS12 {
		// Go verified a SHA-1 signature, or used RSA key exchange, or got a suite
		// OpenSSL would not offer: what Postfix's authenticating client gets is asked.
		conn.Close()
		p.askLikePostfix(ctx, ip, sni, &res, OfferAuthenticated)
	}
	return res
}

// askLikePostfix records the server's answers to Postfix's ClientHellos, each in a
// session of its own, and the chain of an answer when Go's handshake got none.
func (p *Prober) askLikePostfix(ctx context.Context, ip netip.Addr, sni string, res *Result, offers ...Offer) {
	for _, o := range offers {
		h, chain := p.hello(ctx, ip, sni, o)
		if o == OfferOpportunistic {
			res.Opportunistic = &h
		} else {
			res.Authenticated = &h
		}
		if len(res.Chain) == 0 && len(chain) > 0 {
			res.Chain, res.PKIX = chain, p.verifyChain(chain)
		}
	}
}

func (p *Prober) tlsConfig(sni string) *tls.Config {
	suites := []uint16{}
	for _, cs := range tls.CipherSuites() {
		suites = append(suites, cs.ID)
	}
	// Postfix's default client accepts "medium" ciphers (postconf(5)
	// smtp_tls_mandatory_ciphers); include Go's legacy CBC suites so a server Postfix can
	// talk to is not reported as broken. RC4 stays out (RFC 7465).
	for _, cs := range tls.InsecureCipherSuites() {
		if !strings.Contains(cs.Name, "RC4") {
			suites = append(suites, cs.ID)
		}
	}
	return &tls.Config{
		ServerName:         sni,
		InsecureSkipVerify: true, // verified after the handshake, for every level at once
		// Postfix offers TLS 1.0 and up (smtp_tls_protocols = >=TLSv1, postconf(5)),
		// and Debian 12's OpenSSL sets no MinProtocol. Whether OpenSSL completes a
		// TLS 1.0/1.1 session is asked separately (askLikePostfix).
		MinVersion:   tls.VersionTLS10,
		CipherSuites: suites,
	}
}

// verifyChain checks the presented chain against the roots at Now, without names: the
// name rules differ per level (verify: MX host name, secure: next-hop) and are applied by
// the judge. It applies what OpenSSL's chain verification checks and Go's does not: the
// DNS name constraints of every CA to the subject CN of a leaf without DNS
// subjectAltName (certname.CheckNameConstraints), so that a sub-CA constrained to
// other domains cannot vouch for a CN-only certificate Postfix would refuse.
func (p *Prober) verifyChain(chain []*x509.Certificate) error {
	if len(chain) == 0 {
		return errors.New("smtpprobe: no certificate presented")
	}
	now := time.Now
	if p.Now != nil {
		now = p.Now
	}
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	chains, err := chain[0].Verify(x509.VerifyOptions{
		Roots:         p.Roots,
		Intermediates: inter,
		CurrentTime:   now(),
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	})
	if err != nil {
		return err
	}
	return certname.CheckNameConstraints(chains)
}

func ok2xx(r Reply, res *Result, what string) bool {
	switch r.Code / 100 {
	case 2:
		return true
	case 4:
		res.Outcome = OutcomeGreylisted
	default:
		res.Outcome = OutcomeRejected
	}
	res.Detail = what + " " + r.String()
	return false
}

// netFailure records a failed network step. The detail names the step and the finding
// (problem.Describe), never this host's address and port, which the error's own text
// carries ("read tcp 127.0.0.1:44500->192.0.2.1:25: ..."): it may reach a sender's
// reply.
func netFailure(res Result, what string, err error) Result {
	res.Err = err
	switch {
	case isTimeout(err):
		res.Outcome = OutcomeTimeout
		res.Detail = what + ": timed out"
	case errors.Is(err, syscall.ECONNREFUSED):
		res.Outcome = OutcomeRefused
		res.Detail = what + ": connection refused"
	case res.Stage == StageNone:
		res.Outcome = OutcomeRefused
		res.Detail = what + ": " + problem.Describe(err)
	default:
		res.Outcome = OutcomeProtocolError
		res.Detail = what + ": " + problem.Describe(err)
	}
	return res
}

// dropped reports whether err is the peer closing or resetting the connection.
func dropped(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) ||
		errors.Is(err, syscall.ECONNABORTED)
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) ||
		(errors.As(err, &ne) && ne.Timeout())
}

func hasExtension(r Reply, ext string) bool {
	for i, line := range strings.Split(r.Text, "\n") {
		if i == 0 {
			continue // the first line is the server's name
		}
		f := strings.Fields(line)
		if len(f) > 0 && strings.EqualFold(f[0], ext) {
			return true
		}
	}
	return false
}

type session struct {
	ctx  context.Context // its deadline is already the connection's
	conn net.Conn
	r    *bufio.Reader
}

func (s *session) cmd(line string) (Reply, error) {
	if _, err := io.WriteString(s.conn, line+"\r\n"); err != nil {
		return Reply{}, err
	}
	return s.read()
}

// quit sends QUIT and waits for the reply at most quitWait, and never past the session
// deadline; it does not wait for the server to close the connection (RFC 5321
// §4.1.1.10 has the server close after its 221, but nothing makes it). The reply is
// not looked at: the probe's result is already decided.
func (s *session) quit() {
	dl := time.Now().Add(quitWait)
	if d, ok := s.ctx.Deadline(); ok && d.Before(dl) {
		dl = d
	}
	s.conn.SetDeadline(dl)
	if s.ctx.Err() != nil {
		return // cancelled: the AfterFunc's deadline may just have been overwritten
	}
	// Postfix does not wait for the reply either (smtp_skip_quit_response = yes): the
	// verdict is known, and waiting would add a round trip to every cold RCPT.
	io.WriteString(s.conn, "QUIT\r\n")
}

// ErrSyntax is wrapped by read for replies that are not RFC 5321 §4.2 replies.
var ErrSyntax = errors.New("smtpprobe: malformed reply")

// read reads one (possibly multi-line) reply, bounded in line length and line count:
// it stops at the first line over maxLineLen or after maxReplyLine lines, so a peer
// sending megabytes makes it hold at most maxLineLen*maxReplyLine bytes.
func (s *session) read() (Reply, error) {
	var r Reply
	var lines []string
	for i := 0; i < maxReplyLine; i++ {
		line, err := s.readLine()
		if err != nil {
			return Reply{}, err
		}
		if len(line) < 3 {
			return Reply{}, fmt.Errorf("%w: %s", ErrSyntax, quote(line))
		}
		code, err := strconv.Atoi(line[:3])
		if err != nil || code < 200 || code > 599 || (r.Code != 0 && code != r.Code) {
			return Reply{}, fmt.Errorf("%w: %s", ErrSyntax, quote(line))
		}
		r.Code = code
		if len(line) == 3 {
			lines = append(lines, "")
			r.Text = strings.Join(lines, "\n")
			return r, nil
		}
		lines = append(lines, line[4:])
		switch line[3] {
		case ' ':
			r.Text = strings.Join(lines, "\n")
			return r, nil
		case '-':
		default:
			return Reply{}, fmt.Errorf("%w: %s", ErrSyntax, quote(line))
		}
	}
	return Reply{}, fmt.Errorf("%w: more than %d lines", ErrSyntax, maxReplyLine)
}

// readLine reads one line without its CRLF (RFC 5321 §2.3.8; a bare LF is tolerated),
// failing once the line outgrows the reader's buffer rather than buffering the rest of
// an endless line. A line cut short by a timeout or a hang-up is an error, not a line:
// a reply is only complete with its line end.
func (s *session) readLine() (string, error) {
	line, err := s.r.ReadSlice('\n')
	switch {
	case errors.Is(err, bufio.ErrBufferFull):
		return "", fmt.Errorf("%w: line longer than %d bytes", ErrSyntax, maxLineLen)
	case err == io.EOF && len(line) > 0:
		return "", io.ErrUnexpectedEOF
	case err != nil:
		return "", err
	}
	line = line[:len(line)-1]
	if n := len(line); n > 0 && line[n-1] == '\r' {
		line = line[:n-1]
	}
	if len(line) > maxLineLen {
		return "", fmt.Errorf("%w: line longer than %d bytes", ErrSyntax, maxLineLen)
	}
	return string(line), nil
}

// quote quotes at most maxQuoted bytes of a malformed line for an error message: the
// line is the peer's and may be long or binary.
func quote(line string) string {
	if len(line) <= maxQuoted {
		return strconv.Quote(line)
	}
	return strconv.Quote(line[:maxQuoted]) + "..."
}
