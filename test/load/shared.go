package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tlsgate/tlsgate/internal/fake"
	"github.com/tlsgate/tlsgate/internal/sharedcache"
	"github.com/tlsgate/tlsgate/policy"
	"github.com/tlsgate/tlsgate/verify"
)

// The shared scenario measures the fleet's shared tier (cache.shared.url) against a
// local redis-server or valkey-server it starts (and kills) itself:
//   - the local-hit path is unchanged: the cache-hit measurement, once without and once
//     with the shared tier configured, each against the no-op milter of its own rounds;
//   - a shared hit (a domain another host probed, not yet in this host's local tier) is
//     one round trip: its latency p50/p99 through Verifier.Facts, and the GETs counted;
//   - the server's memory per cached domain (MEMORY USAGE of the facts and posture
//     entries, and used_memory growth), the target being <= 2 KiB.

// errNoServer skips the scenario where no server is installed.
var errNoServer = errors.New("no redis-server or valkey-server installed (test/e2e/install.sh installs redis-server); skipped")

// startSharedServer starts this machine's redis-server or valkey-server
// (fake.StartRedis); errNoServer when none is installed.
func startSharedServer(tb testing.TB) (*fake.Redis, error) {
	r, err := fake.StartRedis(tb)
	if errors.Is(err, fake.ErrNoRedis) {
		return nil, errNoServer
	}
	return r, err
}

// getCounter counts the tier's GETs.
type getCounter struct {
	sharedcache.NopEvents
	gets, hits atomic.Int64
}

func (g *getCounter) SharedRequest(op, result string) {
	if op == "get" {
		g.gets.Add(1)
		if result == "hit" {
			g.hits.Add(1)
		}
	}
}

func openTier(tb testing.TB, addr string, ev sharedcache.Events) (*sharedcache.Tier, error) {
	t, err := sharedcache.Open(sharedcache.Config{URL: "redis://" + addr + "/0", Secret: []byte("load-secret-load-secret-load-secret-load"), Events: ev})
	if err != nil {
		return nil, err
	}
	tb.Cleanup(func() { t.Close() })
	return t, nil
}

type sharedResult struct {
	plain, withShared *cacheHitResult
	hit               []time.Duration // Verifier.Facts for shared hits
	getsPerHit        float64
	factsBytes        float64 // MEMORY USAGE per facts entry
	postureBytes      float64
	usedPerDomain     float64 // used_memory growth per domain
}

func sharedLoad(tb testing.TB, c config, out io.Writer) (*sharedResult, error) {
	srv, err := startSharedServer(tb)
	if err != nil {
		return nil, err
	}
	res := &sharedResult{}

	// 1. Local hits, without and with the shared tier, in the same run.
	fmt.Fprintln(out, "== shared tier: local cache hits, without the shared tier")
	if res.plain, err = cacheHit(tb, c, out); err != nil {
		return nil, err
	}
	tierA, err := openTier(tb, srv.Addr, nil)
	if err != nil {
		return nil, err
	}
	ch := c
	ch.shared = tierA
	fmt.Fprintln(out, "== shared tier: local cache hits, with the shared tier configured")
	if res.withShared, err = cacheHit(tb, ch, out); err != nil {
		return nil, err
	}
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr})
	defer rdb.Close()
	ctx := context.Background()
	if err := rdb.FlushAll(ctx).Err(); err != nil {
		return nil, err
	}

	// 2. Host A probes n domains; host B answers them from the shared tier.
	w := newWorld(tb)
	const ip = "127.0.0.22"
	w.smtp(ip, "*.fleet.load.test").RegisterWith(w.dialer)
	domains := make([]string, c.sharedDomains)
	for i := range domains {
		domains[i] = fmt.Sprintf("d%d.fleet.load.test", i)
		w.dns.Add(tb, fmt.Sprintf("%s. 300 IN MX 10 mx1.%s.", domains[i], domains[i]),
			fmt.Sprintf("%s. 300 IN MX 20 mx2.%s.", domains[i], domains[i]),
			fmt.Sprintf("mx1.%s. 300 IN A %s", domains[i], ip), fmt.Sprintf("mx2.%s. 300 IN A %s", domains[i], ip))
	}
	before, err := usedMemory(ctx, rdb)
	if err != nil {
		return nil, err
	}
	a, err := w.startGate(gateOptions{policies: &policy.Set{}, log: c.log, shared: tierA})
	if err != nil {
		return nil, err
	}
	for _, d := range domains {
		if _, _, err := a.verifier.Facts(ctx, d); err != nil {
			return nil, fmt.Errorf("host A probing %s: %w", d, err)
		}
	}
	after, err := usedMemory(ctx, rdb)
	if err != nil {
		return nil, err
	}
	res.usedPerDomain = float64(after-before) / float64(len(domains))
	var fb, pb int64
	for _, d := range domains {
		f, err := rdb.MemoryUsage(ctx, "tlsgate:f:"+d).Result()
		if err != nil {
			return nil, fmt.Errorf("MEMORY USAGE of %s: %w", d, err)
		}
		p, _ := rdb.MemoryUsage(ctx, "tlsgate:p:"+d).Result()
		fb, pb = fb+f, pb+p
	}
	res.factsBytes, res.postureBytes = float64(fb)/float64(len(domains)), float64(pb)/float64(len(domains))

	ev := &getCounter{}
	tierB, err := openTier(tb, srv.Addr, ev)
	if err != nil {
		return nil, err
	}
	b, err := w.startGate(gateOptions{policies: &policy.Set{}, log: c.log, shared: tierB})
	if err != nil {
		return nil, err
	}
	probes := b.prober.n.Load()
	for _, d := range domains {
		start := time.Now()
		f, _, err := b.verifier.Facts(ctx, d)
		res.hit = append(res.hit, time.Since(start))
		if err != nil {
			return nil, fmt.Errorf("host B: %s: %w", d, err)
		}
		if vd := verify.Judge(f, policy.Policy{Level: policy.LevelEncrypt}); vd.Status != verify.StatusPass {
			return nil, fmt.Errorf("host B: %s: %s", d, vd.Reason)
		}
	}
	if n := b.prober.n.Load() - probes; n != 0 {
		return nil, fmt.Errorf("host B probed %d times; every domain was in the shared tier", n)
	}
	res.getsPerHit = float64(ev.gets.Load()) / float64(len(domains))
	slices.Sort(res.hit)
	pct := func(p float64) time.Duration { return res.hit[min(len(res.hit)-1, int(p*float64(len(res.hit))))] }

	fmt.Fprintf(out, "== shared tier: %d domains (2 MX hosts each, STARTTLS, a two-certificate chain) probed by host A, answered by host B\n", len(domains))
	fmt.Fprintf(out, "local hit, tlsgate/no-op throughput: %.2f without the shared tier, %.2f with it (same run)\n", res.plain.ratio, res.withShared.ratio)
	fmt.Fprintf(out, "shared hit (Verifier.Facts, local miss): p50 %v  p99 %v  max %v; %.2f GET per hit, no probe\n",
		round(pct(.5)), round(pct(.99)), round(res.hit[len(res.hit)-1]), res.getsPerHit)
	fmt.Fprintf(out, "server memory per domain: facts entry %.0f B + posture entry %.0f B (MEMORY USAGE; target <= 2048 B);\n"+
		"   used_memory growth %.0f B per domain (with the server's own allocations, amortised over more domains)\n\n",
		res.factsBytes, res.postureBytes, res.usedPerDomain)
	if per := res.factsBytes + res.postureBytes; per > 2048 {
		return res, fmt.Errorf("%.0f bytes per domain in the server, over 2 KiB", per)
	}
	return res, nil
}

func usedMemory(ctx context.Context, rdb *redis.Client) (int64, error) {
	info, err := rdb.Info(ctx, "memory").Result()
	if err != nil {
		return 0, err
	}
	for line := range strings.SplitSeq(info, "\r\n") {
		if v, ok := strings.CutPrefix(line, "used_memory:"); ok {
			return strconv.ParseInt(v, 10, 64)
		}
	}
	return 0, errors.New("no used_memory in INFO memory")
}
