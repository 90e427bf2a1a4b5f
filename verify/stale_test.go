package verify_test

import (
	"context"
	"errors"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/tlsgate/tlsgate/internal/smtpprobe"
	"github.com/tlsgate/tlsgate/verify"
)

// gatedProber passes probes on to the real prober, except while held: then each probe
// announces its address on started and waits for the release, so that a test decides
// when a refresh is in flight and when it ends, without sleeping.
type gatedProber struct {
	inner   verify.Prober
	started chan netip.Addr
	mu      sync.Mutex
	gate    chan struct{} // nil: open
	noTLS   bool          // answer as a server that stopped offering STARTTLS
}

// hold makes the probes that start from now on wait until release is called; probes
// held by an earlier hold wait for their own release.
func (g *gatedProber) hold() (release func()) {
	gate := make(chan struct{})
	g.mu.Lock()
	g.gate = gate
	g.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			g.mu.Lock()
			if g.gate == gate {
				g.gate = nil
			}
			g.mu.Unlock()
			close(gate)
		})
	}
}

func (g *gatedProber) stopTLS() {
	g.mu.Lock()
	g.noTLS = true
	g.mu.Unlock()
}

func (g *gatedProber) Probe(ctx context.Context, ip netip.Addr, sni string) smtpprobe.Result {
	g.mu.Lock()
	gate := g.gate
	g.mu.Unlock()
	if gate != nil {
		g.started <- ip
		select {
		case <-gate:
		case <-ctx.Done():
			return smtpprobe.Result{IP: ip, Outcome: smtpprobe.OutcomeTimeout, Detail: "held past the probe timeout"}
		}
	}
	g.mu.Lock()
	noTLS := g.noTLS
	g.mu.Unlock()
	if noTLS {
		return smtpprobe.Result{IP: ip, Stage: smtpprobe.StageEHLO, Outcome: smtpprobe.OutcomeNoStartTLS, Detail: "STARTTLS not offered"}
	}
	return g.inner.Probe(ctx, ip, sni)
}

// waitStarted waits for the next held probe to start.
func (g *gatedProber) waitStarted(t *testing.T, what string) {
	t.Helper()
	select {
	case <-g.started:
	case <-time.After(10 * time.Second):
		t.Fatalf("no probe started: %s", what)
	}
}

// staleEvents hands on refresh results in the order they happen.
type staleEvents struct {
	verify.NopEvents
	results chan string
}

func (e *staleEvents) Refresh(result string) { e.results <- result }

func (e *staleEvents) next(t *testing.T) string {
	t.Helper()
	select {
	case r := <-e.results:
		return r
	case <-time.After(10 * time.Second):
		t.Fatal("no refresh event")
		return ""
	}
}

// none checks that nothing was counted since the last next.
func (e *staleEvents) none(t *testing.T) {
	t.Helper()
	select {
	case r := <-e.results:
		t.Fatalf("unexpected refresh event %q", r)
	default:
	}
}

// staleGrace in staleWorld: the longest a probe may take, DNS timeout (1 s) + 5
// addresses (smtp_mx_address_limit) x probe timeout (5 s); less than half the TTL.
const staleGrace = 26 * time.Second

// staleWorld is refreshWorld with a gated prober and no refresh ticker: a refresh
// starts only when the hit that schedules it finds it due (the last 15 s of the 100 s
// TTL), so every refresh in these tests starts where the test says.
func staleWorld(t *testing.T, mod ...func(*verify.Config)) (*gatedProber, *verify.Verifier, *clock, *staleEvents) {
	w := newWorld(t)
	w.serve(domain, host{name: "mx1", behaviour: "good"})
	w.serve("other.test", host{name: "mx1", behaviour: "good", ip: "127.0.0.41"})
	c := newClock()
	ev := &staleEvents{results: make(chan string, 64)}
	p := &gatedProber{started: make(chan netip.Addr, 16)}
	v := w.verifier(append([]func(*verify.Config){func(cfg *verify.Config) {
		p.inner, cfg.Prober = cfg.Prober, p
		cfg.Now = c.Now
		cfg.PassTTL = 100 * time.Second
		cfg.HostTimeout, cfg.DNSTimeout = 5*time.Second, time.Second
		cfg.RefreshAhead = true
		cfg.RefreshTick = time.Hour
		cfg.AddressTTL = time.Nanosecond // every refresh really probes
		cfg.Events = ev
	}}, mod...)...)
	return p, v, c, ev
}

// expiredCtx is an RCPT with no time left to wait for a probe: any answer it gets is
// from the cache, else "in progress".
func expiredCtx() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx
}

// TestServeStaleWhileRefreshing: a domain asked for during its cache period whose
// refresh is still running when its facts expire (the hit came 5 s before the expiry,
// the probe takes longer) is answered from those facts, counted "stale", for at most
// the stale grace past the expiry; after it, an RCPT waits for the probe ("in
// progress") as before; the refreshed facts answer as soon as they are stored.
func TestServeStaleWhileRefreshing(t *testing.T) {
	t.Parallel()
	p, v, c, ev := staleWorld(t)
	f1, _, err := v.Facts(context.Background(), domain) // expires at 100 s
	if err != nil {
		t.Fatal(err)
	}
	release := p.hold()
	defer release()
	c.Advance(95 * time.Second)
	if f, ok := v.Cached(domain); !ok || f != f1 {
		t.Fatal("no cache hit before the expiry")
	}
	p.waitStarted(t, "the refresh the hit found due")

	c.Advance(6 * time.Second) // expired 1 s ago; the refresh still runs
	f, cached, err := v.Facts(expiredCtx(), domain)
	if err != nil || !cached || f != f1 {
		t.Fatalf("during the refresh: cached=%v err=%v, old facts=%v; want the old facts", cached, err, f == f1)
	}
	if got := ev.next(t); got != "stale" {
		t.Errorf("counted %q; want stale", got)
	}
	if v := f.JudgeCached(encrypt); v.Status != verify.StatusPass {
		t.Errorf("stale verdict %s/%s", v.Status, v.Reason)
	}

	c.Advance(staleGrace - time.Second - time.Nanosecond) // the grace's last instant
	if f, ok := v.Cached(domain); !ok || f != f1 {
		t.Fatal("not served stale within the grace")
	}
	ev.next(t)
	c.Advance(time.Nanosecond) // the grace is over
	if _, _, err := v.Facts(expiredCtx(), domain); !errors.Is(err, verify.ErrPending) {
		t.Fatalf("after the grace: err=%v; want ErrPending (in progress)", err)
	}
	ev.none(t)

	release()
	if got := ev.next(t); got != "refreshed" {
		t.Fatalf("refresh result %q", got)
	}
	f2, cached, err := v.Facts(expiredCtx(), domain)
	if err != nil || !cached || f2 == f1 || !c.Now().Before(f2.Until) {
		t.Fatalf("after the refresh: cached=%v err=%v, new facts=%v", cached, err, f2 != f1)
	}
}

// TestStaleNeverForUnaskedDomain: facts nobody asked for during their cache period
// expire as before refresh-ahead and its stale grace: the first RCPT after the expiry
// waits for a probe.
func TestStaleNeverForUnaskedDomain(t *testing.T) {
	t.Parallel()
	p, v, c, ev := staleWorld(t)
	if _, _, err := v.Facts(context.Background(), domain); err != nil {
		t.Fatal(err)
	}
	release := p.hold()
	defer release()
	c.Advance(100*time.Second + time.Second)
	if _, ok := v.Cached(domain); ok {
		t.Fatal("expired facts nobody asked for answered")
	}
	if _, _, err := v.Facts(expiredCtx(), domain); !errors.Is(err, verify.ErrPending) {
		t.Fatalf("err=%v; want ErrPending (in progress)", err)
	}
	p.waitStarted(t, "the probe of the RCPT after the expiry")
	ev.none(t)
}

// TestStaleEndsWhenRefreshFails: a stale pass never outlives a refresh that found the
// destination failing: the refreshed facts answer the next RCPT, within the grace.
func TestStaleEndsWhenRefreshFails(t *testing.T) {
	t.Parallel()
	p, v, c, ev := staleWorld(t)
	if _, _, err := v.Facts(context.Background(), domain); err != nil {
		t.Fatal(err)
	}
	release := p.hold()
	defer release()
	c.Advance(95 * time.Second)
	v.Cached(domain)
	p.waitStarted(t, "the refresh")
	c.Advance(6 * time.Second)
	f, ok := v.Cached(domain)
	if !ok || f.JudgeCached(encrypt).Status != verify.StatusPass {
		t.Fatal("no stale pass during the refresh")
	}
	ev.next(t)

	p.stopTLS() // the MX stopped offering STARTTLS; the refresh finds out
	release()
	if got := ev.next(t); got != "refreshed" {
		t.Fatalf("refresh result %q", got)
	}
	f2, cached, err := v.Facts(expiredCtx(), domain)
	if err != nil || !cached || f2 == f {
		t.Fatalf("after the refresh: cached=%v err=%v, new facts=%v", cached, err, f2 != f)
	}
	if v := f2.JudgeCached(encrypt); v.Status != verify.StatusFail {
		t.Errorf("after a failing refresh: %s/%s; want fail", v.Status, v.Reason)
	}
	ev.none(t)
}

// TestStaleStartsRefreshThatCouldNotStart: when every probe slot was taken until the
// facts of an asked-for domain expired (the refresh could not start), RCPTs after the
// expiry are answered from the old facts, and the first one that finds a free slot
// starts the refresh.
func TestStaleStartsRefreshThatCouldNotStart(t *testing.T) {
	t.Parallel()
	p, v, c, ev := staleWorld(t, func(cfg *verify.Config) { cfg.MaxConcurrent = 1 })
	f1, _, err := v.Facts(context.Background(), domain)
	if err != nil {
		t.Fatal(err)
	}
	releaseOther := p.hold()
	defer releaseOther()
	other := make(chan error, 1)
	go func() { _, _, err := v.Facts(context.Background(), "other.test"); other <- err }()
	p.waitStarted(t, "a first contact holding the only probe slot")

	c.Advance(95 * time.Second)
	v.Cached(domain) // the refresh is due but finds no free slot
	c.Advance(6 * time.Second)
	if f, ok := v.Cached(domain); !ok || f != f1 {
		t.Fatal("not served stale while the refresh waits for a slot")
	}
	if got := ev.next(t); got != "stale" {
		t.Errorf("counted %q; want stale", got)
	}
	release := p.hold() // the refresh, once it has a slot
	defer release()
	releaseOther()
	if err := <-other; err != nil {
		t.Fatal(err)
	}
	if f, ok := v.Cached(domain); !ok || f != f1 {
		t.Fatal("not served stale")
	}
	p.waitStarted(t, "the refresh started by an RCPT served stale")
	ev.next(t)
	release()
	if got := ev.next(t); got != "refreshed" {
		t.Fatalf("refresh result %q", got)
	}
	f2, cached, err := v.Facts(expiredCtx(), domain)
	if err != nil || !cached || f2 == f1 || f2.JudgeCached(encrypt).Status != verify.StatusPass {
		t.Fatalf("after the refresh: cached=%v err=%v, new facts=%v", cached, err, f2 != f1)
	}
}

// TestStaleNotAfterRefreshWithoutNewFacts: a refresh that ended without new facts
// (the address rate limit) leaves the old ones to expire as before: no stale answers
// after the expiry.
func TestStaleNotAfterRefreshWithoutNewFacts(t *testing.T) {
	t.Parallel()
	_, v, c, ev := staleWorld(t, func(cfg *verify.Config) { cfg.RatePerAddress = 1; cfg.PassTTL = 40 * time.Second })
	if _, _, err := v.Facts(context.Background(), domain); err != nil {
		t.Fatal(err)
	}
	c.Advance(30 * time.Second) // the refresh is due (15 s before the expiry), within the rate limit's minute
	v.Cached(domain)
	if got := ev.next(t); got != "rate-limited" {
		t.Fatalf("refresh result %q", got)
	}
	c.Advance(11 * time.Second) // expired 1 s ago
	if _, ok := v.Cached(domain); ok {
		t.Fatal("served stale after a refresh that brought no new facts")
	}
	ev.none(t)
}
