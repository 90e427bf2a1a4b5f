package sharedcache

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tlsgate/tlsgate/internal/fake"
	"github.com/tlsgate/tlsgate/internal/mtasts"
)

var secret = []byte("0123456789abcdef0123456789abcdef-test")

func TestSealOpen(t *testing.T) {
	payload := []byte(`{"v":3,"facts":{"Domain":"example.com"}}`)
	v := seal(secret, KindFacts, "example.com", payload)
	got, err := open(secret, KindFacts, "example.com", v)
	if err != nil || !bytes.Equal(got, payload) {
		t.Fatalf("open(seal) = %q, %v", got, err)
	}
	flip := func(i int) []byte {
		b := bytes.Clone(v)
		b[i] ^= 1
		return b
	}
	for _, tc := range []struct {
		name   string
		secret []byte
		kind   byte
		key    string
		value  []byte
		reason string
	}{
		{"another key's entry (replayed)", secret, KindFacts, "other.example", v, ReasonMAC},
		{"another fleet's secret (forged)", []byte("another-secret-another-secret-xxxxx"), KindFacts, "example.com", v, ReasonMAC},
		{"payload changed", secret, KindFacts, "example.com", flip(len(v) - 2), ReasonMAC},
		{"MAC changed", secret, KindFacts, "example.com", flip(10), ReasonMAC},
		{"unknown version", secret, KindFacts, "example.com", flip(2), ReasonVersion},
		{"another kind", secret, KindPosture, "example.com", v, ReasonMalformed},
		{"not ours", secret, KindFacts, "example.com", []byte("pass"), ReasonMalformed},
		{"empty", secret, KindFacts, "example.com", nil, ReasonMalformed},
		{"too large", secret, KindFacts, "example.com", make([]byte, MaxEntry+1), ReasonOversize},
	} {
		_, err := open(tc.secret, tc.kind, tc.key, tc.value)
		var r *RefusedError
		if !errors.As(err, &r) || r.Reason != tc.reason || !errors.Is(err, ErrRefused) {
			t.Errorf("%s: %v, want refused (%s)", tc.name, err, tc.reason)
		}
	}
}

func TestReadSecret(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), mode); err != nil {
			t.Fatal(err)
		}
		os.Chmod(p, mode)
		return p
	}
	if s, err := ReadSecret(write("ok", " "+string(secret)+"\n", 0o600)); err != nil || !bytes.Equal(s, secret) {
		t.Errorf("ReadSecret = %q, %v", s, err)
	}
	for name, p := range map[string]string{
		"world-readable": write("world", string(secret), 0o604),
		"group-writable": write("group", string(secret), 0o620),
		"too short":      write("short", "tiny", 0o600),
		"missing":        filepath.Join(dir, "none"),
	} {
		if _, err := ReadSecret(p); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// startServer starts this machine's redis-server or valkey-server for one test (see
// fake.RequireRedis for when a missing one skips).
func startServer(t *testing.T) *fake.Redis { return fake.RequireRedis(t) }

// events records what a Tier reports.
type events struct {
	mu       sync.Mutex
	requests map[string]int
	refused  map[string]int
	up       []bool
	inval    int
}

func newEvents() *events { return &events{requests: map[string]int{}, refused: map[string]int{}} }

func (e *events) SharedRequest(op, result string) {
	e.mu.Lock()
	e.requests[op+"/"+result]++
	e.mu.Unlock()
}
func (e *events) SharedRefused(reason string) { e.mu.Lock(); e.refused[reason]++; e.mu.Unlock() }
func (e *events) SharedUp(up bool)            { e.mu.Lock(); e.up = append(e.up, up); e.mu.Unlock() }
func (e *events) SharedInvalidation()         { e.mu.Lock(); e.inval++; e.mu.Unlock() }
func (e *events) count(k string) int          { e.mu.Lock(); defer e.mu.Unlock(); return e.requests[k] }

// logBuffer is a concurrency-safe log sink.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}
func (l *logBuffer) String() string { l.mu.Lock(); defer l.mu.Unlock(); return l.b.String() }

func openTier(t *testing.T, s *fake.Redis, ev Events, log *logBuffer) *Tier {
	t.Helper()
	cfg := Config{URL: "redis://" + s.Addr + "/0", Secret: secret, Events: ev, RetryInterval: 100 * time.Millisecond}
	if log != nil {
		cfg.Log = slog.New(slog.NewTextHandler(log, nil))
	}
	tier, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tier.Close() })
	return tier
}

func TestTier(t *testing.T) {
	s := startServer(t)
	ev := newEvents()
	a := openTier(t, s, ev, nil)
	b := openTier(t, s, newEvents(), nil)
	ctx := context.Background()

	t.Run("facts are shared until they expire", func(t *testing.T) {
		if _, found, err := a.GetFacts(ctx, "example.com"); found || err != nil {
			t.Fatalf("empty server: found=%v err=%v", found, err)
		}
		if err := a.PutFacts(ctx, "example.com", []byte("facts"), 300*time.Millisecond); err != nil {
			t.Fatal(err)
		}
		if p, found, err := b.GetFacts(ctx, "example.com"); !found || err != nil || string(p) != "facts" {
			t.Fatalf("other host: %q found=%v err=%v", p, found, err)
		}
		time.Sleep(400 * time.Millisecond)
		if _, found, _ := b.GetFacts(ctx, "example.com"); found {
			t.Error("facts outlived their TTL in the server")
		}
	})

	t.Run("a forged entry is refused and counted", func(t *testing.T) {
		rdb := redis.NewClient(&redis.Options{Addr: s.Addr})
		defer rdb.Close()
		rdb.Set(ctx, "tlsgate:f:forged.example", seal([]byte("attacker-attacker-attacker-attacker"), KindFacts, "forged.example", []byte("pass")), time.Minute)
		_, found, err := a.GetFacts(ctx, "forged.example")
		if found || !errors.Is(err, ErrRefused) {
			t.Fatalf("forged entry: found=%v err=%v", found, err)
		}
		if ev.refused[ReasonMAC] != 1 || ev.count("get/refused") != 1 {
			t.Errorf("refusal not counted: %v %v", ev.refused, ev.requests)
		}
		// A value planted to be huge is not read whole: refused as oversize.
		rdb.Set(ctx, "tlsgate:f:huge.example", make([]byte, 4*MaxEntry), time.Minute)
		if _, found, err := a.GetFacts(ctx, "huge.example"); found || !errors.Is(err, ErrRefused) || ev.refused[ReasonOversize] != 1 {
			t.Errorf("huge entry: found=%v err=%v refused=%v", found, err, ev.refused)
		}
		rdb.Del(ctx, "tlsgate:f:huge.example")
	})

	t.Run("one lease per key; released by its holder only", func(t *testing.T) {
		ok, err := a.Acquire(ctx, "lease.example")
		if !ok || err != nil {
			t.Fatalf("first Acquire: %v %v", ok, err)
		}
		release := a.Hold("lease.example")
		if ok, _ := b.Acquire(ctx, "lease.example"); ok {
			t.Fatal("a second host took a held lease")
		}
		release()
		if ok, _ := b.Acquire(ctx, "lease.example"); !ok {
			t.Fatal("the lease was not released")
		}
	})

	t.Run("the rate limit is fleet-wide", func(t *testing.T) {
		allowed := 0
		for i := range 10 {
			tier := a
			if i%2 == 1 {
				tier = b
			}
			if ok, err := tier.Allow(ctx, "192.0.2.1", 4, time.Minute); err != nil {
				t.Fatal(err)
			} else if ok {
				allowed++
			}
		}
		if allowed != 4 {
			t.Errorf("two hosts were allowed %d probes of one address, want 4 in all", allowed)
		}
	})

	t.Run("a posture change is seen by one host", func(t *testing.T) {
		if _, found, _ := a.SwapPosture(ctx, "p.example", []byte("one"), time.Hour); found {
			t.Fatal("posture found in an empty server")
		}
		old, found, _ := b.SwapPosture(ctx, "p.example", []byte("two"), time.Hour)
		if !found || string(old) != "one" {
			t.Fatalf("b's swap: %q %v", old, found)
		}
		old, _, _ = a.SwapPosture(ctx, "p.example", []byte("two"), time.Hour)
		if string(old) != "two" {
			t.Fatalf("a's swap: %q, want two (no second report of the change)", old)
		}
	})

	t.Run("MTA-STS policies are the fleet's", func(t *testing.T) {
		exp := time.Now().Add(time.Hour).Truncate(time.Second)
		a.Policies().SavePolicy(ctx, mtasts.Saved{Domain: "sts.example", ID: "1", Mode: mtasts.ModeEnforce, MaxAge: 3600, MX: []string{"mx.sts.example"}, Expires: exp})
		s, ok := b.Policies().LoadPolicy(ctx, "sts.example")
		if !ok || s.ID != "1" || !s.Expires.Equal(exp) || s.MX[0] != "mx.sts.example" {
			t.Errorf("policy at the other host: %+v %v", s, ok)
		}
		if _, ok := b.Policies().LoadPolicy(ctx, "other.example"); ok {
			t.Error("a policy for a domain never stored")
		}
	})

	t.Run("a purge reaches every host", func(t *testing.T) {
		var mu sync.Mutex
		var forgot []string
		all := 0
		b.Subscribe(func(k string) { mu.Lock(); forgot = append(forgot, k); mu.Unlock() }, func() { mu.Lock(); all++; mu.Unlock() })
		time.Sleep(100 * time.Millisecond) // the subscription is established
		a.PutFacts(ctx, "purge.example", []byte("x"), time.Minute)
		n, err := a.Purge(ctx, "purge.example", "absent.example")
		if n != 1 || err != nil {
			t.Fatalf("Purge = %d, %v", n, err)
		}
		if _, found, _ := b.GetFacts(ctx, "purge.example"); found {
			t.Error("the purged entry is still in the server")
		}
		a.PutFacts(ctx, "x.example", []byte("x"), time.Minute)
		var listed []string
		a.List(ctx, func(e Entry) { listed = append(listed, e.Key) })
		if fmt.Sprint(listed) != "[x.example]" { // the forged entry is not listed
			t.Errorf("List = %v", listed)
		}
		if n, err := a.PurgeAll(ctx); n != 2 || err != nil { // x.example and the forged entry
			t.Errorf("PurgeAll = %d, %v", n, err)
		}
		for end := time.Now().Add(2 * time.Second); ; time.Sleep(10 * time.Millisecond) {
			mu.Lock()
			got, gotAll := strings.Join(forgot, ","), all
			mu.Unlock()
			if got == "purge.example,absent.example" && gotAll == 1 {
				break
			}
			if time.Now().After(end) {
				t.Fatalf("b forgot %q and everything %d times", got, gotAll)
			}
		}
	})
}

// TestOutage: the server killed: operations fail fast (within the timeout, then at
// once while it is known down), one log line for the outage and one for the recovery,
// and everything works again after a restart.
func TestOutage(t *testing.T) {
	s := startServer(t)
	ev := newEvents()
	var log logBuffer
	a := openTier(t, s, ev, &log)
	ctx := context.Background()
	if err := a.PutFacts(ctx, "example.com", []byte("x"), time.Minute); err != nil {
		t.Fatal(err)
	}
	s.Kill()
	for i := range 50 {
		start := time.Now()
		_, found, err := a.GetFacts(ctx, "example.com")
		if found || err == nil {
			t.Fatalf("get %d during the outage: found=%v err=%v", i, found, err)
		}
		if took := time.Since(start); took > 500*time.Millisecond {
			t.Errorf("get %d during the outage took %v", i, took)
		}
	}
	if a.Up() {
		t.Error("Up during the outage")
	}
	if ev.count("get/unavailable") == 0 {
		t.Errorf("no get answered at once while down: %v", ev.requests)
	}
	if err := s.Restart(); err != nil {
		t.Fatal(err)
	}
	var err error
	for end := time.Now().Add(5 * time.Second); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
		if _, _, err = a.GetFacts(ctx, "example.com"); err == nil {
			break
		}
	}
	if err != nil || !a.Up() {
		t.Fatalf("not back after the restart: %v", err)
	}
	out := log.String()
	if strings.Count(out, "shared cache unreachable") != 1 || strings.Count(out, "shared cache reachable again") != 1 {
		t.Errorf("want one line for the outage and one for the recovery:\n%s", out)
	}
	if fmt.Sprint(ev.up) != "[true false true]" {
		t.Errorf("up gauge went %v", ev.up)
	}
}

// FuzzOpen: whatever the server holds, open never panics, and accepts only what seal
// made with the secret for that key.
func FuzzOpen(f *testing.F) {
	f.Add(seal(secret, KindFacts, "example.com", []byte(`{"v":3}`)), "example.com")
	f.Add([]byte("TG\x01f"), "x")
	f.Add([]byte{}, "")
	f.Fuzz(func(t *testing.T, value []byte, key string) {
		payload, err := open(secret, KindFacts, key, value)
		if err == nil && !bytes.Equal(seal(secret, KindFacts, key, payload), value) {
			t.Fatalf("accepted %q for %q, which seal did not make", value, key)
		}
	})
}
