package main

import (
	"context"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	gomilter "github.com/d--j/go-milter"
	"github.com/miekg/dns"

	"github.com/tlsgate/tlsgate/internal/dnsx"
	"github.com/tlsgate/tlsgate/internal/fake"
	"github.com/tlsgate/tlsgate/internal/smtpprobe"
	"github.com/tlsgate/tlsgate/milter"
	"github.com/tlsgate/tlsgate/policy"
	"github.com/tlsgate/tlsgate/verify"
)

// world is the fake Internet of one scenario: a DNS server, SMTP servers on loopback
// addresses reached through a port-rewriting dialer, and a CA with an intermediate, so
// that servers present a two-certificate chain as public MX hosts do.
type world struct {
	tb     testing.TB
	dns    *fake.DNSServer
	dialer *fake.Dialer
	root   *fake.CA
	ca     *fake.CA // the intermediate that issues server certificates
}

func newWorld(tb testing.TB) *world {
	root := fake.NewCA(tb, "Load Root")
	return &world{tb: tb, dns: fake.StartDNS(tb), dialer: fake.NewDialer(), root: root, ca: root.Intermediate(tb, "Load Intermediate")}
}

// smtp starts a well-behaved STARTTLS server on ip whose certificate names names.
func (w *world) smtp(ip string, names ...string) *fake.SMTPServer {
	cert := w.ca.Issue(w.tb, fake.CertOptions{DNSNames: names})
	return fake.StartSMTP(w.tb, ip, fake.Behavior{Hostname: names[0], Cert: &cert})
}

// delayDNS makes every answer about name take rtt (one query, one round trip).
func (w *world) delayDNS(rtt time.Duration, names ...string) {
	if rtt <= 0 {
		return
	}
	for _, n := range names {
		w.dns.SetDelay(n, dns.TypeANY, rtt)
	}
}

// proxy starts a latency proxy in front of s, stopped at cleanup.
func (w *world) proxy(s *fake.SMTPServer, rtt time.Duration) (*latencyProxy, error) {
	p, err := startLatencyProxy(s.Addr().String(), rtt)
	if err != nil {
		return nil, err
	}
	w.tb.Cleanup(p.Close)
	return p, nil
}

// countingResolver counts lookups and the wall time during which at least one was in
// flight (lookups made at once count once).
type countingResolver struct {
	r dnsx.Resolver
	n atomic.Int64

	mu       sync.Mutex
	inflight int
	since    time.Time
	busy     time.Duration
}

func (c *countingResolver) Lookup(ctx context.Context, name string, qtype uint16) (dnsx.Answer, error) {
	c.mu.Lock()
	if c.inflight == 0 {
		c.since = time.Now()
	}
	c.inflight++
	c.mu.Unlock()
	a, err := c.r.Lookup(ctx, name, qtype)
	c.n.Add(1)
	c.mu.Lock()
	c.inflight--
	if c.inflight == 0 {
		c.busy += time.Since(c.since)
	}
	c.mu.Unlock()
	return a, err
}

// busyTime is the wall time with lookups in flight so far.
func (c *countingResolver) busyTime() time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.busy
}

// timingProber counts SMTP probes and the time spent in them.
type timingProber struct {
	p       verify.Prober
	n, nsec atomic.Int64
}

func (t *timingProber) Probe(ctx context.Context, ip netip.Addr, sni string) smtpprobe.Result {
	start := time.Now()
	r := t.p.Probe(ctx, ip, sni)
	t.n.Add(1)
	t.nsec.Add(int64(time.Since(start)))
	return r
}

// countingFacts counts how the filter's fact requests were answered.
type countingFacts struct {
	src                   milter.FactSource
	cached, fresh, failed atomic.Int64
}

func (c *countingFacts) Facts(ctx context.Context, domain string) (*verify.Facts, bool, error) {
	f, cached, err := c.src.Facts(ctx, domain)
	switch {
	case err != nil:
		c.failed.Add(1)
	case cached:
		c.cached.Add(1)
	default:
		c.fresh.Add(1)
	}
	return f, cached, err
}

var (
	_ dnsx.Resolver     = (*countingResolver)(nil)
	_ verify.Prober     = (*timingProber)(nil)
	_ milter.FactSource = (*countingFacts)(nil)
)

// The configuration tlsgate runs with here: cmd/tlsgate's defaults, loopback allowed.
var (
	loopback           = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
	headerName         = "TLSGate-Verdict"
	defaultRcptTimeout = 8 * time.Second
	defaultHostTimeout = 10 * time.Second
	defaultDNSTimeout  = 3 * time.Second
	checkedTransports  = []string{"smtp", "relay"}
	discardLogger      = slog.New(slog.DiscardHandler)
)

// What milter.Filter.NewServer negotiates (milter/server.go), for the no-op baseline.
var (
	protocolOptions = gomilter.OptNoHelo | gomilter.OptNoHeaders | gomilter.OptNoEOH | gomilter.OptNoBody |
		gomilter.OptNoUnknown | gomilter.OptNoData
	mailMacros = []gomilter.MacroName{gomilter.MacroQueueId, gomilter.MacroAuthAuthen, gomilter.MacroMailAddr}
	rcptMacros = []gomilter.MacroName{gomilter.MacroQueueId, gomilter.MacroRcptMailer, gomilter.MacroRcptAddr}
	eomMacros  = []gomilter.MacroName{gomilter.MacroQueueId}
)

// gateOptions configure a tlsgate instance.
type gateOptions struct {
	policies  *policy.Set
	cacheSize int // 0: the default
	log       *slog.Logger
	count     bool              // count fact requests (countingFacts)
	shared    verify.SharedTier // the fleet's shared tier; nil: none
}

// gate is tlsgate running in-process, wired as cmd/tlsgate's serve wires it, except that
// its resolver and prober talk to the world and that loopback may be probed.
type gate struct {
	addr     string
	verifier *verify.Verifier
	resolver *countingResolver
	prober   *timingProber
	facts    *countingFacts // nil unless gateOptions.count
}

func (w *world) startGate(o gateOptions) (*gate, error) {
	res, err := dnsx.NewClient(w.dns.Addr(), defaultDNSTimeout, false)
	if err != nil {
		return nil, err
	}
	g := &gate{
		resolver: &countingResolver{r: res},
		prober:   &timingProber{p: &smtpprobe.Prober{Dialer: w.dialer, Port: 25, HELO: "load.tlsgate.test", Roots: w.root.Pool}},
	}
	if o.log == nil {
		o.log = discardLogger
	}
	g.verifier, err = verify.New(verify.Config{
		Resolver:    g.resolver,
		Prober:      g.prober,
		Allow:       loopback,
		HostTimeout: defaultHostTimeout,
		DNSTimeout:  3 * defaultDNSTimeout,
		CacheSize:   o.cacheSize,
		Log:         o.log,
		Shared:      o.shared,
	})
	if err != nil {
		return nil, err
	}
	w.tb.Cleanup(g.verifier.Close)
	var facts milter.FactSource = g.verifier
	if o.count {
		g.facts = &countingFacts{src: g.verifier}
		facts = g.facts
	}
	f := milter.NewFilter(milter.Config{
		Policies:          o.policies,
		Facts:             facts,
		RcptTimeout:       defaultRcptTimeout,
		Header:            headerName,
		CheckedTransports: checkedTransports,
		Log:               o.log,
	})
	g.addr, err = serve(w.tb, f.NewServer())
	return g, err
}

// server is what both milter servers offer.
type server interface {
	Serve(net.Listener) error
	Close() error
}

// serve serves s on a loopback TCP port until cleanup and returns the address.
func serve(tb testing.TB, s server) (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	done := make(chan error, 1)
	go func() { done <- s.Serve(ln) }()
	tb.Cleanup(func() {
		s.Close()
		<-done
	})
	return ln.Addr().String(), nil
}

// noopMilter accepts everything and, unlike gomilter.NoOpMilter, never asks the MTA to
// skip the remaining recipients, so that it gets every RCPT as tlsgate does.
type noopMilter struct{ gomilter.NoOpMilter }

func (noopMilter) RcptTo(string, string, gomilter.Modifier) (*gomilter.Response, error) {
	return gomilter.RespContinue, nil
}

// startNoop starts the baseline: a go-milter server negotiating what tlsgate's does
// (same protocol steps, same macros, header action) and deciding nothing.
func startNoop(tb testing.TB) (string, error) {
	return serve(tb, gomilter.NewServer(
		gomilter.WithMilter(func() gomilter.Milter { return noopMilter{} }),
		gomilter.WithAction(gomilter.OptAddHeader),
		gomilter.WithProtocol(protocolOptions),
		gomilter.WithMacroRequest(gomilter.StageMail, mailMacros),
		gomilter.WithMacroRequest(gomilter.StageRcpt, rcptMacros),
		gomilter.WithMacroRequest(gomilter.StageEOM, eomMacros),
		gomilter.WithReadTimeout(10*time.Minute),
		gomilter.WithWriteTimeout(10*time.Second),
	))
}
