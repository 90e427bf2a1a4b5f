package milter_test

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	gomilter "github.com/d--j/go-milter"

	"github.com/tlsgate/tlsgate/internal/dnsx"
	"github.com/tlsgate/tlsgate/internal/fake"
	"github.com/tlsgate/tlsgate/internal/smtpprobe"
	"github.com/tlsgate/tlsgate/milter"
	"github.com/tlsgate/tlsgate/policy"
	"github.com/tlsgate/tlsgate/verify"
)

// world is one test's Internet: a DNS server, SMTP servers on loopback addresses and a
// CA, reached through a port-rewriting dialer.
type world struct {
	t      *testing.T
	dns    *fake.DNSServer
	dialer *fake.Dialer
	ca     *fake.CA
	hosts  int
}

func newWorld(t *testing.T) *world {
	t.Helper()
	return &world{t: t, dns: fake.StartDNS(t), dialer: fake.NewDialer(), ca: fake.NewCA(t, "Test Root")}
}

// mx publishes domain with one MX host, mx.<domain>, at a loopback address of its own
// and starts its SMTP server with behaviour b (host name and a CA-issued certificate
// are filled in).
func (w *world) mx(domain string, b fake.Behavior) *fake.SMTPServer {
	w.t.Helper()
	w.hosts++
	ip := fmt.Sprintf("127.0.0.%d", 10+w.hosts)
	host := "mx." + domain
	w.dns.Add(w.t,
		fmt.Sprintf("%s. 300 IN MX 10 %s.", domain, host),
		fmt.Sprintf("%s. 300 IN A %s", host, ip))
	b.Hostname = host
	if b.Cert == nil {
		c := w.ca.Issue(w.t, fake.CertOptions{DNSNames: []string{host}})
		b.Cert = &c
	}
	s := fake.StartSMTP(w.t, ip, b)
	s.RegisterWith(w.dialer)
	return s
}

// verifier returns a real Verifier for this world; loopback may be probed.
func (w *world) verifier(log *slog.Logger, hostTimeout time.Duration) *verify.Verifier {
	w.t.Helper()
	res, err := dnsx.NewClient(w.dns.Addr(), time.Second, false)
	if err != nil {
		w.t.Fatal(err)
	}
	v, err := verify.New(verify.Config{
		Resolver:    res,
		Prober:      &smtpprobe.Prober{Dialer: w.dialer, HELO: "probe.tlsgate.test", Roots: w.ca.Pool},
		Allow:       []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")},
		HostTimeout: hostTimeout,
		Log:         log,
	})
	if err != nil {
		w.t.Fatal(err)
	}
	w.t.Cleanup(v.Close)
	return v
}

// mta is the MTA side of the milter protocol: go-milter's client against a Filter
// served on a loopback TCP listener.
type mta struct {
	t      *testing.T
	client *gomilter.Client
}

// serveMilter serves f.NewServer() on ln until the test ends.
func serveMilter(t *testing.T, f *milter.Filter, ln net.Listener) *mta {
	t.Helper()
	srv := f.NewServer()
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	t.Cleanup(func() {
		srv.Close()
		if err := <-done; !milter.IsClosed(err) {
			t.Errorf("Serve: %v", err)
		}
	})
	return &mta{t: t, client: gomilter.NewClient(ln.Addr().Network(), ln.Addr().String())}
}

func startMilter(t *testing.T, f *milter.Filter) *mta {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return serveMilter(t, f, ln)
}

// session is one SMTP session as the MTA reports it to the milter.
type session struct {
	t      *testing.T
	s      *gomilter.ClientSession
	macros *gomilter.MacroBag
}

// open starts a session from client 192.0.2.10 and sends MAIL FROM sender.
func (m *mta) open(t *testing.T, sender string) *session {
	t.Helper()
	macros := gomilter.NewMacroBag()
	macros.Set(gomilter.MacroQueueId, "4XyZ1")
	macros.Set(gomilter.MacroAuthAuthen, "")
	s, err := m.client.Session(macros)
	if err != nil {
		t.Fatalf("milter session: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	for _, step := range []struct {
		name string
		do   func() (*gomilter.Action, error)
	}{
		{"connect", func() (*gomilter.Action, error) {
			return s.Conn("client.example", gomilter.FamilyInet, 40000, "192.0.2.10")
		}},
		{"helo", func() (*gomilter.Action, error) { return s.Helo("client.example") }},
		{"mail", func() (*gomilter.Action, error) { return s.Mail(sender, "") }},
	} {
		act, err := step.do()
		if err != nil {
			t.Fatalf("%s: %v", step.name, err)
		}
		if act.Type != gomilter.ActionContinue {
			t.Fatalf("%s: %s; want continue", step.name, act)
		}
	}
	return &session{t: t, s: s, macros: macros}
}

// rcpt sends RCPT TO addr with {rcpt_mailer} set to mailer and returns the milter's
// answer and how long it took.
func (s *session) rcpt(addr, mailer string) (*gomilter.Action, time.Duration) {
	s.t.Helper()
	s.macros.Set(gomilter.MacroRcptMailer, mailer)
	start := time.Now()
	act, err := s.s.Rcpt(addr, "")
	took := time.Since(start)
	if err != nil {
		s.t.Fatalf("RCPT TO:<%s>: %v", addr, err)
	}
	s.t.Logf("RCPT TO:<%s> {rcpt_mailer}=%s: %s after %v", addr, mailer, act, took)
	return act, took
}

// end sends the (empty) message and returns the modifications at end of message.
func (s *session) end() []gomilter.ModifyAction {
	s.t.Helper()
	if act, err := s.s.DataStart(); err != nil || act.Type != gomilter.ActionContinue {
		s.t.Fatalf("DATA: %v %v", act, err)
	}
	if act, err := s.s.HeaderEnd(); err != nil || act.Type != gomilter.ActionContinue {
		s.t.Fatalf("end of headers: %v %v", act, err)
	}
	mods, act, err := s.s.BodyReadFrom(strings.NewReader("Subject: test\r\n\r\nbody\r\n"))
	if err != nil {
		s.t.Fatalf("end of message: %v", err)
	}
	if act.Type != gomilter.ActionAccept {
		s.t.Fatalf("end of message: %s; want accept", act)
	}
	return mods
}

// expectAccept checks that RCPT was let through.
func expectAccept(t *testing.T, rcpt string, act *gomilter.Action) {
	t.Helper()
	if act.Type != gomilter.ActionContinue {
		t.Errorf("RCPT TO:<%s>: %s; want continue", rcpt, act)
	}
}

// expectReply checks that RCPT got exactly the SMTP reply want.
func expectReply(t *testing.T, rcpt string, act *gomilter.Action, want string) {
	t.Helper()
	if act.Type != gomilter.ActionRejectWithCode || act.SMTPReply != want {
		t.Errorf("RCPT TO:<%s>: %s\nwant reply\n%q", rcpt, act, want)
	}
}

// headers returns the AddHeader modifications as "Name: value" and fails on any other.
func headers(t *testing.T, mods []gomilter.ModifyAction) []string {
	t.Helper()
	var hs []string
	for _, m := range mods {
		if m.Type != gomilter.ActionAddHeader {
			t.Errorf("unexpected modification %s", m)
			continue
		}
		hs = append(hs, m.HeaderName+": "+m.HeaderValue)
	}
	return hs
}

const (
	headerName = "TLSGate-Verdict"
	// The exact reply for notls.test as the sending client sees it: one line, the
	// enhanced code once (RFC 2034 §4).
	notlsReply = "550 5.7.5 Mail to notls.test requires encrypted delivery (TLS), but its mail servers do not offer it. " +
		"(mx.notls.test[127.0.0.11]: STARTTLS not offered in the EHLO reply)"
	tlsHeader = headerName + ": tls.test; level=encrypt; status=pass; mechanism=starttls; mx=mx.tls.test; tls=TLSv1.3; checked="
)

// e2e is a full setup: fake Internet, real Verifier, Filter served over TCP.
type e2e struct {
	w     *world
	notls *fake.SMTPServer // notls.test: no STARTTLS
	tls   *fake.SMTPServer // tls.test: STARTTLS with a CA-issued certificate
	mta   *mta
}

// newE2E builds the config "policies: [{domain: notls.test, level: encrypt},
// {domain: tls.test, level: encrypt}]"; mod may change the filter config.
func newE2E(t *testing.T, mod func(*milter.Config)) *e2e {
	t.Helper()
	log := newLogger(t)
	w := newWorld(t)
	e := &e2e{w: w}
	e.notls = w.mx("notls.test", fake.Behavior{NoStartTLS: true}) // 127.0.0.11
	e.tls = w.mx("tls.test", fake.Behavior{})                     // 127.0.0.12
	cfg := milter.Config{
		Policies:          policySet(t, []entry{{"notls.test", encrypt}, {"tls.test", encrypt}}, nil),
		Facts:             w.verifier(log, 5*time.Second),
		RcptTimeout:       5 * time.Second,
		Header:            headerName,
		CheckedTransports: []string{"smtp", "relay"},
		Log:               log,
	}
	if mod != nil {
		mod(&cfg)
	}
	e.mta = startMilter(t, milter.NewFilter(cfg))
	return e
}

func TestServerRejectsWithoutTLS(t *testing.T) {
	t.Parallel()
	e := newE2E(t, nil)
	s := e.mta.open(t, "alice@sender.example")
	act, _ := s.rcpt("user@notls.test", "smtp")
	expectReply(t, "user@notls.test", act, notlsReply)
	if act.SMTPCode != 550 {
		t.Errorf("SMTP code %d; want 550", act.SMTPCode)
	}
}

func TestServerAcceptsWithTLS(t *testing.T) {
	t.Parallel()
	e := newE2E(t, nil)
	s := e.mta.open(t, "alice@sender.example")
	act, _ := s.rcpt("user@tls.test", "smtp")
	expectAccept(t, "user@tls.test", act)
	hs := headers(t, s.end())
	if len(hs) != 1 || !strings.HasPrefix(hs[0], tlsHeader) {
		t.Errorf("headers %q; want one starting %q", hs, tlsHeader)
	}
}

// TestServerMessage: one message to three domains: per-recipient replies, and the
// audit header only once, for the checked and accepted domain.
func TestServerMessage(t *testing.T) {
	t.Parallel()
	e := newE2E(t, nil)
	s := e.mta.open(t, "alice@sender.example")
	act, _ := s.rcpt("user@tls.test", "smtp")
	expectAccept(t, "user@tls.test", act)
	act, _ = s.rcpt("user@notls.test", "smtp")
	expectReply(t, "user@notls.test", act, notlsReply)
	act, _ = s.rcpt("user@free.test", "smtp")
	expectAccept(t, "user@free.test", act)
	act, _ = s.rcpt("second@tls.test", "relay")
	expectAccept(t, "second@tls.test", act)

	hs := headers(t, s.end())
	if len(hs) != 1 {
		t.Fatalf("headers %q; want exactly one, for tls.test", hs)
	}
	h := hs[0]
	if !strings.HasPrefix(h, tlsHeader) {
		t.Errorf("header\n%q\nwant it to start\n%q", h, tlsHeader)
	}
	for _, want := range []string{"; cached=", "; rule=policy:tls.test"} {
		if !strings.Contains(h, want) {
			t.Errorf("header %q lacks %q", h, want)
		}
	}
	if e.notls.Connections() != 1 || e.tls.Connections() != 1 {
		t.Errorf("probes: notls.test %d, tls.test %d; want one each", e.notls.Connections(), e.tls.Connections())
	}

	// The next message in the same SMTP session starts with a clean audit list and
	// is answered from the cache.
	if act, err := s.s.Mail("bob@sender.example", ""); err != nil || act.Type != gomilter.ActionContinue {
		t.Fatalf("second MAIL: %v %v", act, err)
	}
	act, _ = s.rcpt("user@free.test", "smtp")
	expectAccept(t, "user@free.test", act)
	if hs := headers(t, s.end()); len(hs) != 0 {
		t.Errorf("second message got headers %q; want none", hs)
	}
	if e.notls.Connections() != 1 || e.tls.Connections() != 1 {
		t.Errorf("probes after the second message: notls.test %d, tls.test %d; want one each", e.notls.Connections(), e.tls.Connections())
	}
}

// TestServerSkips: recipients that are not checked pass without any probe.
func TestServerSkips(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, rcpt, mailer string
	}{
		{"local transport", "user@notls.test", "local"},
		{"virtual transport", "user@tls.test", "virtual"},
		{"address literal", "user@[127.0.0.11]", "smtp"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newE2E(t, nil)
			s := e.mta.open(t, "alice@sender.example")
			act, _ := s.rcpt(tc.rcpt, tc.mailer)
			expectAccept(t, tc.rcpt, act)
			if hs := headers(t, s.end()); len(hs) != 0 {
				t.Errorf("headers %q; want none", hs)
			}
			if n, m := e.notls.Connections(), e.tls.Connections(); n+m != 0 {
				t.Errorf("SMTP servers saw %d and %d connections; want no probe", n, m)
			}
			if q := e.w.dns.Queries(); len(q) != 0 {
				t.Errorf("DNS saw %v; want no lookup", q)
			}
		})
	}
}

// TestServerDryRun: with on_fail=header nothing is rejected and the header records the
// failure.
func TestServerDryRun(t *testing.T) {
	t.Parallel()
	e := newE2E(t, func(c *milter.Config) { c.OnFail = policy.ActionHeader })
	s := e.mta.open(t, "alice@sender.example")
	act, _ := s.rcpt("user@notls.test", "smtp")
	expectAccept(t, "user@notls.test", act)
	act, _ = s.rcpt("user@tls.test", "smtp")
	expectAccept(t, "user@tls.test", act)
	hs := headers(t, s.end())
	want := headerName + ": notls.test; level=encrypt; status=fail; mechanism=starttls; reason=starttls-not-supported; mx=mx.notls.test; checked="
	if len(hs) != 2 || !strings.HasPrefix(hs[0], want) || !strings.HasPrefix(hs[1], tlsHeader) {
		t.Errorf("headers\n%q\nwant two, starting\n%q\n%q", hs, want, tlsHeader)
	}
}

// TestServerNoHeader: header "" disables the audit header.
func TestServerNoHeader(t *testing.T) {
	t.Parallel()
	e := newE2E(t, func(c *milter.Config) { c.Header = "" })
	s := e.mta.open(t, "alice@sender.example")
	act, _ := s.rcpt("user@tls.test", "smtp")
	expectAccept(t, "user@tls.test", act)
	if mods := s.end(); len(mods) != 0 {
		t.Errorf("modifications %v; want none with the header disabled", mods)
	}
}

// TestServerSlowProbe: a probe slower than rcpt_timeout tempfails the first RCPT, goes
// on in the background, and a later RCPT gets the answer at once from the cache.
func TestServerSlowProbe(t *testing.T) {
	t.Parallel()
	const rcptTimeout = 200 * time.Millisecond
	log := newLogger(t)
	w := newWorld(t)
	slow := w.mx("slow.test", fake.Behavior{BannerDelay: 600 * time.Millisecond})
	m := startMilter(t, milter.NewFilter(milter.Config{
		Policies:          policySet(t, []entry{{"slow.test", encrypt}}, nil),
		Facts:             w.verifier(log, 5*time.Second),
		RcptTimeout:       rcptTimeout,
		Header:            headerName,
		CheckedTransports: []string{"smtp"},
		Log:               log,
	}))

	inProgress := "451 4.7.0 Mail to slow.test requires encrypted delivery (TLS); checking its mail servers is in progress. Please try again in a minute."
	act, took := m.open(t, "alice@sender.example").rcpt("user@slow.test", "smtp")
	expectReply(t, "user@slow.test", act, inProgress)
	if took > rcptTimeout+time.Second {
		t.Errorf("first RCPT took %v; rcpt_timeout is %v", took, rcptTimeout)
	}

	// The sender retries (bounded polling, a new SMTP session each time).
	deadline := time.Now().Add(5 * time.Second)
	for {
		act, _ = m.open(t, "alice@sender.example").rcpt("user@slow.test", "smtp")
		if act.Type != gomilter.ActionRejectWithCode || act.SMTPReply != inProgress {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("still %q after 5s", act.SMTPReply)
		}
		time.Sleep(50 * time.Millisecond)
	}
	expectAccept(t, "user@slow.test", act)

	// Now the verdict is cached: the answer is immediate.
	s := m.open(t, "alice@sender.example")
	act, took = s.rcpt("user@slow.test", "smtp")
	expectAccept(t, "user@slow.test", act)
	if took >= rcptTimeout {
		t.Errorf("cached RCPT took %v; want less than rcpt_timeout %v", took, rcptTimeout)
	}
	hs := headers(t, s.end())
	if len(hs) != 1 || !strings.Contains(hs[0], "; cached=yes") {
		t.Errorf("headers %q; want one with cached=yes", hs)
	}
	if n := slow.Connections(); n != 1 {
		t.Errorf("slow.test's MX saw %d connections; want 1 (one probe, deduplicated and cached)", n)
	}
}

// TestServerConcurrentSessions: sessions asking for one slow domain at once share one probe.
func TestServerConcurrentSessions(t *testing.T) {
	t.Parallel()
	log := newLogger(t)
	w := newWorld(t)
	slow := w.mx("slow.test", fake.Behavior{BannerDelay: 500 * time.Millisecond})
	m := startMilter(t, milter.NewFilter(milter.Config{
		Policies:          policySet(t, []entry{{"slow.test", encrypt}}, nil),
		Facts:             w.verifier(log, 5*time.Second),
		RcptTimeout:       5 * time.Second,
		Header:            headerName,
		CheckedTransports: []string{"smtp"},
		Log:               log,
	}))
	// Open every session first, then send all RCPTs at once.
	const n = 4
	sessions := make([]*session, n)
	for i := range sessions {
		sessions[i] = m.open(t, fmt.Sprintf("sender%d@sender.example", i))
	}
	acts := make([]*gomilter.Action, n)
	errs := make([]error, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i, s := range sessions {
		wg.Go(func() {
			<-start
			s.macros.Set(gomilter.MacroRcptMailer, "smtp")
			acts[i], errs[i] = s.s.Rcpt("user@slow.test", "")
		})
	}
	close(start)
	wg.Wait()
	for i := range sessions {
		if errs[i] != nil {
			t.Errorf("session %d: RCPT: %v", i, errs[i])
			continue
		}
		expectAccept(t, "user@slow.test", acts[i])
	}
	if n := slow.Connections(); n != 1 {
		t.Errorf("slow.test's MX saw %d connections; want 1 probe for all sessions", n)
	}
}

// TestServerInvalidDomain: a recipient domain no resolver can look up, for a customer
// that requires TLS, is a fail verdict: rejected by default, recorded in the audit
// header with on_fail=header, and never probed.
func TestServerInvalidDomain(t *testing.T) {
	t.Parallel()
	const rcpt = "user@exa mple..test"
	tests := []struct {
		name   string
		onFail policy.Action
		reply  string // "" for accept
		header string // prefix of the audit header when accepted
	}{
		{"reject", policy.ActionReject,
			"550 5.1.2 Mail to exa mple..test cannot be delivered: the domain has no mail servers that can be reached. (the domain name is not valid)", ""},
		{"tempfail", policy.ActionTempfail,
			"451 4.1.2 Mail to exa mple..test cannot be delivered: the domain has no mail servers that can be reached. (the domain name is not valid)", ""},
		{"header", policy.ActionHeader, "",
			headerName + ": invalid-domain; level=encrypt; status=fail; reason=no-mx; checked="},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			src := &factSource{}
			m := startMilter(t, milter.NewFilter(milter.Config{
				Policies:          policySet(t, nil, []policy.Customer{customer(acme, func(c *policy.Customer) { c.OnFail = tc.onFail })}),
				Facts:             src,
				Header:            headerName,
				CheckedTransports: []string{"smtp"},
				Log:               newLogger(t),
			}))
			s := m.open(t, "alice@acme.example")
			act, _ := s.rcpt(rcpt, "smtp")
			if tc.reply != "" {
				expectReply(t, rcpt, act, tc.reply)
				return
			}
			expectAccept(t, rcpt, act)
			hs := headers(t, s.end())
			if len(hs) != 1 || !strings.HasPrefix(hs[0], tc.header) || !strings.HasSuffix(hs[0], "; cached=no; rule=customer:acme") {
				t.Errorf("headers %q; want one starting %q, for rule customer:acme", hs, tc.header)
			}
			if asked := src.Asked(); len(asked) != 0 {
				t.Errorf("facts asked for %q; want no lookup for an invalid name", asked)
			}
		})
	}
}

// TestLibraryWarningsLogged: go-milter's own warnings (here: a client that connects and
// never negotiates, which the library gives one second) reach the configured slog
// logger, so a JSON log stays JSON. Not parallel: the library's hook is process-wide.
func TestLibraryWarningsLogged(t *testing.T) {
	var buf fake.Buffer
	milter.LogLibraryWarnings(slog.New(slog.NewJSONHandler(&buf, nil)))
	t.Cleanup(func() { milter.LogLibraryWarnings(slog.New(slog.DiscardHandler)) })
	f := milter.NewFilter(milter.Config{Log: slog.New(slog.DiscardHandler)})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	serveMilter(t, f, ln)
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(buf.String(), "milter library"); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no library warning logged: %q", buf.String())
		}
	}
	var rec struct{ Level, Msg, Warning string }
	line, _, _ := strings.Cut(buf.String(), "\n")
	if err := json.Unmarshal([]byte(line), &rec); err != nil || rec.Level != "WARN" || !strings.Contains(rec.Warning, "Error reading milter command") {
		t.Errorf("library warning %q (%v); want a JSON Warn line about the unread command", line, err)
	}
}
