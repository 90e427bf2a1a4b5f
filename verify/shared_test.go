package verify_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/tlsgate/tlsgate/verify"
)

// memServer is an in-memory stand-in for the shared server, with the semantics the
// Verifier relies on (internal/sharedcache tests them against a real redis-server):
// expiring entries, SET NX leases, per-window counters, an atomic posture swap.
type memServer struct {
	mu       sync.Mutex
	down     bool
	facts    map[string]memEntry
	leases   map[string]memEntry // payload = holder
	counters map[string]int
	postures map[string][]byte
	gets     int
}

type memEntry struct {
	payload []byte
	until   time.Time
}

func newMemServer() *memServer {
	return &memServer{facts: map[string]memEntry{}, leases: map[string]memEntry{}, counters: map[string]int{}, postures: map[string][]byte{}}
}

var errDown = errors.New("shared tier down")

// client is one host's connection.
func (s *memServer) client(id string) *memClient { return &memClient{s: s, id: id} }

func (s *memServer) setDown(down bool) { s.mu.Lock(); s.down = down; s.mu.Unlock() }

// holdLease makes holder hold the lease of key for ttl (another host, probing or dead).
func (s *memServer) holdLease(key, holder string, ttl time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.leases[key] = memEntry{[]byte(holder), time.Now().Add(ttl)}
}

type memClient struct {
	s  *memServer
	id string
}

func (c *memClient) lock() error {
	c.s.mu.Lock()
	if c.s.down {
		c.s.mu.Unlock()
		return errDown
	}
	return nil
}

func (c *memClient) GetFacts(_ context.Context, key string) ([]byte, bool, error) {
	if err := c.lock(); err != nil {
		return nil, false, err
	}
	defer c.s.mu.Unlock()
	c.s.gets++
	e, ok := c.s.facts[key]
	if !ok || time.Now().After(e.until) {
		return nil, false, nil
	}
	return e.payload, true, nil
}

func (c *memClient) PutFacts(_ context.Context, key string, payload []byte, ttl time.Duration) error {
	if err := c.lock(); err != nil {
		return err
	}
	defer c.s.mu.Unlock()
	c.s.facts[key] = memEntry{payload, time.Now().Add(ttl)}
	return nil
}

func (c *memClient) Acquire(_ context.Context, key string) (bool, error) {
	if err := c.lock(); err != nil {
		return false, err
	}
	defer c.s.mu.Unlock()
	if e, ok := c.s.leases[key]; ok && time.Now().Before(e.until) {
		return false, nil
	}
	c.s.leases[key] = memEntry{[]byte(c.id), time.Now().Add(5 * time.Second)}
	return true, nil
}

func (c *memClient) Hold(key string) func() {
	return func() {
		c.s.mu.Lock()
		defer c.s.mu.Unlock()
		if e, ok := c.s.leases[key]; ok && string(e.payload) == c.id {
			delete(c.s.leases, key)
		}
	}
}

func (c *memClient) Allow(_ context.Context, addr string, limit int, _ time.Duration) (bool, error) {
	if err := c.lock(); err != nil {
		return false, err
	}
	defer c.s.mu.Unlock()
	c.s.counters[addr]++
	return c.s.counters[addr] <= limit, nil
}

func (c *memClient) SwapPosture(_ context.Context, key string, payload []byte, _ time.Duration) ([]byte, bool, error) {
	if err := c.lock(); err != nil {
		return nil, false, err
	}
	defer c.s.mu.Unlock()
	old, ok := c.s.postures[key]
	c.s.postures[key] = payload
	return old, ok, nil
}

var _ verify.SharedTier = (*memClient)(nil)

func shared(c verify.SharedTier) func(*verify.Config) {
	return func(cfg *verify.Config) { cfg.Shared = c }
}

// TestSharedOneProbe: the second host of a fleet takes the first host's facts from the
// shared tier, keeps them locally until their own expiry, and opens no SMTP session.
func TestSharedOneProbe(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	mx := w.serve(domain, host{name: "mx1", behaviour: "good"})["mx1"]
	srv := newMemServer()
	a := w.verifier(shared(srv.client("a")))
	b := w.verifier(shared(srv.client("b")))
	fa, _, err := a.Facts(context.Background(), domain)
	if err != nil {
		t.Fatal(err)
	}
	fb, cached, err := b.Facts(context.Background(), domain)
	if err != nil || cached {
		t.Fatalf("b: cached=%v err=%v", cached, err)
	}
	if n := mx.Connections(); n != 1 {
		t.Errorf("two hosts: %d SMTP sessions, want 1", n)
	}
	if !fb.Until.Equal(fa.Until) {
		t.Errorf("b keeps the facts until %v, a until %v: never longer than the entry's own expiry", fb.Until, fa.Until)
	}
	want("pass").check(t, "encrypt", verify.Judge(fb, encrypt))
	if _, ok := b.Cached(domain); !ok {
		t.Error("the shared hit is not in b's local tier")
	}
}

// TestSharedLeaseWait: a host whose probe lease is held by another waits for that
// host's facts instead of probing.
func TestSharedLeaseWait(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	mx := w.serve(domain, host{name: "mx1", behaviour: "good"})["mx1"]
	srv := newMemServer()
	a := w.verifier(shared(srv.client("a")))
	srv.holdLease(domain, "b", 5*time.Second)
	done := make(chan *verify.Facts, 1)
	go func() {
		f, _, err := a.Facts(context.Background(), domain)
		if err != nil {
			t.Error(err)
		}
		done <- f
	}()
	time.Sleep(200 * time.Millisecond)
	// b finishes: it stores its facts, then drops its lease. Its facts are a's.
	other := w.verifier(shared(srv.client("b")))
	probed := other.Probe(context.Background(), domain)
	probed.Until = time.Now().Add(time.Minute)
	srv.client("b").PutFacts(context.Background(), domain, mustShared(t, probed), time.Minute)
	srv.client("b").Hold(domain)()
	select {
	case f := <-done:
		if !f.Checked.Equal(probed.Checked) {
			t.Errorf("a's facts were checked at %v, b's at %v: a did not take b's", f.Checked, probed.Checked)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a never answered")
	}
	if n := mx.Connections(); n != 1 {
		t.Errorf("%d SMTP sessions, want 1 (b's)", n)
	}
}

// mustShared encodes facts as a host stores them in the shared tier.
func mustShared(t *testing.T, f *verify.Facts) []byte {
	t.Helper()
	b, err := verify.EncodeShared(f)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestSharedTakeover: the lease holder died (its lease expires without facts): the
// waiting host probes itself.
func TestSharedTakeover(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	mx := w.serve(domain, host{name: "mx1", behaviour: "good"})["mx1"]
	srv := newMemServer()
	a := w.verifier(shared(srv.client("a")))
	srv.holdLease(domain, "dead", 300*time.Millisecond)
	start := time.Now()
	f, _, err := a.Facts(context.Background(), domain)
	if err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took < 300*time.Millisecond {
		t.Errorf("a probed after %v, before the holder's lease expired", took)
	}
	want("pass").check(t, "encrypt", verify.Judge(f, encrypt))
	if n := mx.Connections(); n != 1 {
		t.Errorf("%d SMTP sessions, want 1", n)
	}
}

// TestSharedDown: with the shared tier down every host probes for itself, within its
// deadlines, and gives the same verdict as alone.
func TestSharedDown(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	w.serve(domain, host{name: "mx1", behaviour: "nostarttls"})
	srv := newMemServer()
	srv.setDown(true)
	a := w.verifier(shared(srv.client("a")))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	f, _, err := a.Facts(ctx, domain)
	if err != nil {
		t.Fatal(err)
	}
	want("fail/starttls-not-supported").check(t, "encrypt", verify.Judge(f, encrypt))
}

// TestSharedRateLimit: probe.rate_per_address counts the sessions of every host.
func TestSharedRateLimit(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	w.serve(domain, host{name: "mx1", behaviour: "good", ip: "127.0.0.30"})
	w.serve("other.test", host{name: "mx1", behaviour: "", ip: "127.0.0.30"})
	srv := newMemServer()
	limit := func(c *verify.Config) { c.RatePerAddress = 1 }
	a := w.verifier(shared(srv.client("a")), limit)
	b := w.verifier(shared(srv.client("b")), limit)
	if f, _, _ := a.Facts(context.Background(), domain); verify.Judge(f, encrypt).Status != verify.StatusPass {
		t.Fatalf("a: %+v", verify.Judge(f, encrypt))
	}
	f, _, _ := b.Facts(context.Background(), "other.test")
	want("tempfail/rate-limited").check(t, "encrypt", verify.Judge(f, encrypt))
}

// TestForget: a purge drops the facts, so the next request probes again.
func TestForget(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	mx := w.serve(domain, host{name: "mx1", behaviour: "good"})["mx1"]
	v := w.verifier()
	v.Facts(context.Background(), domain)
	v.Forget(domain)
	if _, ok := v.Cached(domain); ok {
		t.Fatal("still cached after Forget")
	}
	v.Facts(context.Background(), domain)
	if n := mx.Connections(); n != 2 {
		t.Errorf("%d SMTP sessions, want 2 (the address result was forgotten too)", n)
	}
	v.ForgetAll()
	if len(v.Domains()) != 0 {
		t.Error("ForgetAll left domains")
	}
}

// FuzzDecodeShared: a payload from a fleet member of another version (or a bug) never
// panics the decoder nor yields facts about another domain or with out-of-range
// enumerations.
func FuzzDecodeShared(f *testing.F) {
	f.Add([]byte(`{"v":3,"facts":{"Domain":"example.test","MX":1,"Attempts":[{"Result":{"outcome":1}}]}}`))
	f.Add([]byte(`{"v":3,"facts":{"Domain":"example.test","MX":9}}`))
	f.Add([]byte("z\x00\x00\xff\xff"))
	f.Fuzz(func(t *testing.T, payload []byte) {
		fc, err := verify.DecodeShared("example.test", payload)
		if err != nil {
			return
		}
		if fc.Domain != "example.test" {
			t.Fatalf("facts for %q", fc.Domain)
		}
		_ = fc.MX.String()
		for _, a := range fc.Attempts {
			_ = a.Result.Outcome.String()
			_ = a.TLSA.Status.String()
		}
		verify.Judge(fc, encrypt)
		verify.ClassOf(fc)
	})
}

// TestSharedPostureOncePerFleet: a posture change seen by every host of the fleet is
// reported once, by the first host that saw it (alone, each host would report it).
func TestSharedPostureOncePerFleet(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	w.serve(domain, host{name: "mx1", behaviour: "good"})
	srv := newMemServer()
	var mu sync.Mutex
	now := time.Now()
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	recA, recB := &recorder{}, &recorder{}
	mk := func(name string, rec *recorder) *verify.Verifier {
		return w.verifier(shared(srv.client(name)), func(c *verify.Config) { c.Events = rec; c.AddressTTL = time.Nanosecond; c.Now = clock })
	}
	a, b := mk("a", recA), mk("b", recB)
	probeBoth := func() {
		t.Helper()
		mu.Lock()
		now = now.Add(2 * time.Hour) // past every cache TTL, local and shared
		mu.Unlock()
		srv.mu.Lock()
		clear(srv.facts) // the memory server's entries expire by the wall clock
		srv.mu.Unlock()
		if _, _, err := a.Facts(context.Background(), domain); err != nil {
			t.Fatal(err)
		}
		srv.mu.Lock()
		clear(srv.facts) // b probes too (as after a purge): it sees the same posture
		srv.mu.Unlock()
		if _, _, err := b.Facts(context.Background(), domain); err != nil {
			t.Fatal(err)
		}
	}
	probeBoth()
	startSMTP(w, "127.0.0.10", "good", "mx1.example.test").RegisterWith(w.dialer) // a new key
	probeBoth()
	recA.mu.Lock()
	recB.mu.Lock()
	defer recA.mu.Unlock()
	defer recB.mu.Unlock()
	if len(recA.postures) != 1 || len(recB.postures) != 0 {
		t.Errorf("posture changes reported: a %q, b %q; want one, by a", recA.postures, recB.postures)
	}
}
