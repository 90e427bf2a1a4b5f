package verify_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tlsgate/tlsgate/verify"
)

// clock is a settable time source for a Verifier.
type clock struct{ ns atomic.Int64 }

func newClock() *clock {
	c := &clock{}
	c.ns.Store(time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC).UnixNano())
	return c
}
func (c *clock) Now() time.Time          { return time.Unix(0, c.ns.Load()).UTC() }
func (c *clock) Advance(d time.Duration) { c.ns.Add(int64(d)) }

// refreshCounts records RefreshEvents and how many probes hold a slot.
type refreshCounts struct {
	verify.NopEvents
	mu      sync.Mutex
	n       map[string]int
	running atomic.Int64
}

func (r *refreshCounts) ProbeRunning(delta int) { r.running.Add(int64(delta)) }

func (r *refreshCounts) Refresh(result string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.n == nil {
		r.n = map[string]int{}
	}
	r.n[result]++
}

func (r *refreshCounts) get(result string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.n[result]
}

// waitFor polls cond for up to 5 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("timed out waiting for %s", what)
}

func refreshWorld(t *testing.T, mod ...func(*verify.Config)) (*world, *verify.Verifier, *clock, *refreshCounts) {
	w := newWorld(t)
	w.serve(domain, host{name: "mx1", behaviour: "good"})
	c := newClock()
	ev := &refreshCounts{}
	v := w.verifier(append([]func(*verify.Config){func(cfg *verify.Config) {
		cfg.Now = c.Now
		cfg.PassTTL = 100 * time.Second // DNS TTLs are 300 s: the TTL is 100 s
		cfg.RefreshAhead = true
		cfg.RefreshTick = 5 * time.Millisecond
		cfg.AddressTTL = time.Nanosecond // every refresh really probes
		cfg.Events = ev
	}}, mod...)...)
	return w, v, c, ev
}

// TestRefreshAhead: facts asked for during their cache period (a cache hit) are
// probed again in the last 15 s (a tenth of the TTL, at least 15 s) before they
// expire, so the destination never leaves the cache; facts nobody asked for since they
// were stored expire as before.
func TestRefreshAhead(t *testing.T) {
	t.Parallel()
	_, v, c, ev := refreshWorld(t)
	ctx := context.Background()
	f1, cached, err := v.Facts(ctx, domain)
	if err != nil || cached {
		t.Fatalf("first contact: cached=%v err=%v", cached, err)
	}
	if got := f1.Until.Sub(c.Now()); got != 100*time.Second {
		t.Fatalf("TTL %s", got)
	}
	// Nobody asked since the probe: no refresh, even past the refresh point.
	c.Advance(90 * time.Second)
	time.Sleep(50 * time.Millisecond)
	if ev.get("refreshed") != 0 {
		t.Fatal("refreshed facts nobody asked for")
	}
	// A hit schedules the refresh; it is due already (10 s left < 15 s).
	if _, ok := v.Cached(domain); !ok {
		t.Fatal("no cache hit")
	}
	waitFor(t, "the refresh", func() bool { return ev.get("refreshed") == 1 })
	f2, ok := v.Cached(domain)
	if !ok || f2 == f1 || !f2.Checked.Equal(c.Now()) {
		t.Fatalf("after the refresh: ok=%v, same facts=%v", ok, f2 == f1)
	}
	// Past the old expiry the refreshed facts answer: no miss, no probe to wait for.
	c.Advance(20 * time.Second)
	if _, cached, err := v.Facts(ctx, domain); !cached || err != nil {
		t.Fatalf("after the old expiry: cached=%v err=%v", cached, err)
	}
	// That hit scheduled the next refresh (at 85 s of the new period); without
	// another hit after it, the domain expires.
	c.Advance(70 * time.Second)
	waitFor(t, "the second refresh", func() bool { return ev.get("refreshed") == 2 })
	c.Advance(101 * time.Second)
	time.Sleep(50 * time.Millisecond)
	if _, ok := v.Cached(domain); ok || ev.get("refreshed") != 2 {
		t.Fatalf("a domain nobody asked for: cached=%v, refreshes=%d", ok, ev.get("refreshed"))
	}
}

// TestRefreshAheadBudget: refreshes take a probe slot only when one is free and never
// queue: with the only slot held by a first contact's probe, the due refresh waits and
// gives up when its facts have expired and their stale grace is over ("busy"); the
// first contact is never delayed.
func TestRefreshAheadBudget(t *testing.T) {
	t.Parallel()
	w, v, c, ev := refreshWorld(t, func(cfg *verify.Config) { cfg.MaxConcurrent = 1; cfg.HostTimeout = 2 * time.Second })
	ctx := context.Background()
	if _, _, err := v.Facts(ctx, domain); err != nil {
		t.Fatal(err)
	}
	c.Advance(10 * time.Second)
	v.Cached(domain) // asked: refresh due at 85 s
	// A slow first contact holds the only slot.
	w.serve("slow.test", host{name: "mx1", behaviour: "tarpit", ip: "127.0.0.40"})
	done := make(chan struct{})
	go func() {
		defer close(done)
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		v.Facts(pctx, "slow.test")
	}()
	waitFor(t, "the tarpit probe to hold the slot", func() bool { return ev.running.Load() == 1 })
	c.Advance(80 * time.Second) // refresh due, no slot
	time.Sleep(50 * time.Millisecond)
	c.Advance(35 * time.Second) // expired while waiting, and the stale grace (10 s + 5 x 2 s) is over
	waitFor(t, "busy", func() bool { return ev.get("busy") == 1 })
	<-done
	if ev.get("refreshed") != 0 {
		t.Errorf("refreshed %d times with no free slot", ev.get("refreshed"))
	}
}

// TestRefreshAheadRateLimited: a refresh that meets the per-address rate limit keeps
// the facts it would have replaced (they stay valid until they expire).
func TestRefreshAheadRateLimited(t *testing.T) {
	t.Parallel()
	_, v, c, ev := refreshWorld(t, func(cfg *verify.Config) { cfg.RatePerAddress = 1; cfg.PassTTL = 40 * time.Second })
	f1, _, err := v.Facts(context.Background(), domain)
	if err != nil {
		t.Fatal(err)
	}
	c.Advance(10 * time.Second)
	v.Cached(domain) // refresh due at 25 s, within the rate limit's minute
	c.Advance(16 * time.Second)
	waitFor(t, "rate-limited", func() bool { return ev.get("rate-limited") == 1 })
	if f, ok := v.Cached(domain); !ok || f != f1 {
		t.Error("a rate-limited refresh replaced the facts")
	}
}

// TestRefreshesRunBackToBack: a refresh that ends hands its slot to the next due
// refresh at once. Four destinations come due together with one refresh slot (a
// quarter of probe.max_concurrent) and a scheduler tick that never fires: the first
// refresh (started by an RCPT answered stale) is followed by the other three.
func TestRefreshesRunBackToBack(t *testing.T) {
	t.Parallel()
	w, v, c, ev := refreshWorld(t, func(cfg *verify.Config) { cfg.MaxConcurrent = 4; cfg.RefreshTick = time.Hour })
	domains := []string{domain, "b.test", "c.test", "d.test"}
	for i, d := range domains[1:] {
		w.serve(d, host{name: "mx1", behaviour: "good", ip: fmt.Sprintf("127.0.0.%d", 51+i)})
	}
	ctx := context.Background()
	for _, d := range domains {
		if _, _, err := v.Facts(ctx, d); err != nil {
			t.Fatal(err)
		}
	}
	c.Advance(10 * time.Second)
	for _, d := range domains {
		v.Cached(d) // asked for: each refresh is due at 85 s
	}
	c.Advance(95 * time.Second) // all due, all expired, within the stale grace
	if _, ok := v.Cached(domain); !ok {
		t.Fatal("expired facts being refreshed did not answer")
	}
	waitFor(t, "four refreshes", func() bool { return ev.get("refreshed") == len(domains) })
	if n := ev.get("busy"); n != 0 {
		t.Errorf("%d refreshes busy", n)
	}
}
