package main

import (
	"context"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tlsgate/tlsgate/internal/dnsx"
	"github.com/tlsgate/tlsgate/internal/smtpprobe"
	"github.com/tlsgate/tlsgate/milter"
	"github.com/tlsgate/tlsgate/policy"
	"github.com/tlsgate/tlsgate/verify"
)

// The refresh scenario: a realistic workload over simulated time, with and without
// refresh-ahead (cache.refresh_ahead).
//
// -refresh-domains recipient domains (10,000) with Zipf-distributed popularity
// (s = -refresh-zipf), each with one MX host at its own address (no probe result is
// shared), DNS TTL -refresh-ttl (5 minutes: the facts' TTL), and -rtt (20 ms) on every
// DNS answer and SMTP exchange. RCPTs arrive at -refresh-rate per simulated second for
// -refresh-hour of simulated traffic after -refresh-warmup, compressed -refresh-speedup
// times: tlsgate's clock (verify.Config.Now) runs that much faster than the wall
// clock, while network round trips and probes take real time. Because a probe is then
// relatively that much longer, probe.max_concurrent is scaled by the speedup too, and
// the address-result sharing (1 simulated minute) and the refresh scheduler's tick are
// scaled down. milter.rcpt_timeout is 100 ms, shorter than a cold probe (about 8 RTT),
// so that an RCPT that has to wait for a probe is answered "in progress", as with a
// slow MX and the default 8 s.
//
// Reported after warm-up: the share of checked RCPTs answered from the cache, the
// "in progress" answers, the misses and "in progress" answers for domains that had a
// cache hit during the cache period that just ended (a hit less than a TTL before the
// miss; refresh-ahead's promise: 0), and SMTP probe sessions per simulated hour, and
// the refresh results (cache.refresh_ahead: "stale" counts RCPTs answered from
// expired facts while their refresh ran).

type refreshConfig struct {
	domains int
	zipf    float64
	rate    float64       // RCPTs per simulated second
	ttl     time.Duration // DNS TTL of every record: the facts' TTL
	warmup  time.Duration // simulated, not counted
	hour    time.Duration // simulated, counted
	speedup float64
}

func defaultRefreshConfig() refreshConfig {
	return refreshConfig{domains: 10000, zipf: 1.1, rate: 100, ttl: 5 * time.Minute, warmup: 10 * time.Minute,
		hour: time.Hour, speedup: 20}
}

// refreshRun is one run's figures, counted after warm-up.
type refreshRun struct {
	refreshAhead bool
	rcpts        int64 // checked RCPT decisions
	cached       int64
	inProgress   int64
	// warm counts cache misses for a domain that had a cache hit less than a TTL
	// before: asked for during the cache period that just ended.
	warmMisses, warmInProgress int64
	// recent counts RCPTs for a domain asked for (hit or not) less than a TTL before,
	// recentCached those of them answered from the cache: what any cache could serve.
	recent, recentCached int64
	probes               int64 // SMTP sessions
	refreshes            map[string]int64
	simulated            time.Duration
	lag                  time.Duration // how far the driver fell behind its schedule at most, after warm-up
}

func (r *refreshRun) hitShare() float64 { return float64(r.cached) / float64(max(r.rcpts, 1)) }
func (r *refreshRun) perHour(n int64) float64 {
	return float64(n) / r.simulated.Hours()
}

// simClock is tlsgate's clock: the wall clock since start, speedup times faster.
type simClock struct {
	start   time.Time
	base    time.Time
	speedup float64
}

func (c simClock) Now() time.Time {
	return c.base.Add(time.Duration(float64(time.Since(c.start)) * c.speedup))
}

// refreshEvents counts refresh results.
type refreshEvents struct {
	verify.NopEvents
	mu sync.Mutex
	n  map[string]int64
}

func (e *refreshEvents) Refresh(result string) {
	e.mu.Lock()
	e.n[result]++
	e.mu.Unlock()
}

func (e *refreshEvents) snapshot() map[string]int64 {
	e.mu.Lock()
	defer e.mu.Unlock()
	return maps.Clone(e.n)
}

func refreshScenario(tb testing.TB, c config, out io.Writer) ([2]*refreshRun, error) {
	rc := c.refresh
	fmt.Fprintf(out, "== refresh: %d domains, Zipf s=%.2f, %.0f RCPT/s, TTL %v, RTT %v; %v simulated after %v of warm-up, %.0fx faster than real time\n",
		rc.domains, rc.zipf, rc.rate, rc.ttl, c.rtt, rc.hour, rc.warmup, rc.speedup)
	var runs [2]*refreshRun
	for i, on := range []bool{false, true} {
		r, err := refreshOnce(tb, c, rc, on)
		if err != nil {
			return runs, err
		}
		runs[i] = r
		fmt.Fprintf(out, "refresh-ahead %-5v %8d RCPTs  from cache %.3f%% (%.3f%% of the %d for a domain asked for within a TTL)  in-progress %6d  warm-domain misses %6d (in-progress %6d)  probes %7.0f/h  refreshes %v  (driver lag max %v)\n",
			on, r.rcpts, 100*r.hitShare(), 100*float64(r.recentCached)/float64(max(r.recent, 1)), r.recent, r.inProgress, r.warmMisses, r.warmInProgress, r.perHour(r.probes), r.refreshes, round(r.lag))
	}
	off, on := runs[0], runs[1]
	fmt.Fprintf(out, "refresh-ahead costs %.0f probes/h (%+.0f%%); warm-domain in-progress answers %d -> %d (target 0); from cache %.3f%% -> %.3f%% (target >= 99.9%%)\n\n",
		on.perHour(on.probes)-off.perHour(off.probes), 100*(on.perHour(on.probes)/max(off.perHour(off.probes), 1)-1),
		off.warmInProgress, on.warmInProgress, 100*off.hitShare(), 100*on.hitShare())
	return runs, nil
}

func refreshOnce(tb testing.TB, c config, rc refreshConfig, refreshAhead bool) (*refreshRun, error) {
	w := newWorld(tb)
	srv := w.smtp("127.0.0.24", "mx.refresh.load.test")
	p, err := w.proxy(srv, c.rtt)
	if err != nil {
		return nil, err
	}
	ttl := int(rc.ttl.Seconds())
	names := make([]string, rc.domains)
	for i := range names {
		d := fmt.Sprintf("d%d.refresh.load.test", i)
		mx := "mx." + d
		ip := netip.AddrFrom4([4]byte{127, byte(100 + i/62500), byte(i / 250 % 250), byte(i%250 + 1)})
		w.dns.Add(tb, fmt.Sprintf("%s. %d IN MX 10 %s.", d, ttl, mx), fmt.Sprintf("%s. %d IN A %s", mx, ttl, ip))
		w.delayDNS(c.rtt, d, mx)
		w.dialer.Register(ip, p.Addr())
		names[i] = d
	}
	set, err := policySet(0, 0, map[string]policy.Level{".refresh.load.test": policy.LevelEncrypt})
	if err != nil {
		return nil, err
	}
	clock := simClock{start: time.Now(), base: time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC), speedup: rc.speedup}
	measureFrom := clock.base.Add(rc.warmup)
	res, err := dnsx.NewClient(w.dns.Addr(), defaultDNSTimeout, false)
	if err != nil {
		return nil, err
	}
	prober := &timingProber{p: &smtpprobe.Prober{Dialer: w.dialer, Port: 25, HELO: "load.tlsgate.test", Roots: w.root.Pool}}
	events := &refreshEvents{n: map[string]int64{}}
	scale := func(d time.Duration) time.Duration { return time.Duration(float64(d) / rc.speedup) }
	v, err := verify.New(verify.Config{
		Resolver: res, Prober: prober, Allow: loopback,
		HostTimeout: defaultHostTimeout, DNSTimeout: 3 * defaultDNSTimeout,
		MaxConcurrent: int(64 * rc.speedup), AddressTTL: scale(time.Minute),
		Now: clock.Now, Log: c.log, Events: events,
		RefreshAhead: refreshAhead, RefreshTick: scale(time.Second),
	})
	if err != nil {
		return nil, err
	}
	tb.Cleanup(v.Close)

	r := &refreshRun{refreshAhead: refreshAhead}
	var mu sync.Mutex
	lastHit := make(map[string]time.Time, rc.domains)
	lastAsk := make(map[string]time.Time, rc.domains)
	var probesAtStart atomic.Int64
	probesAtStart.Store(-1)
	var refreshesAtStart map[string]int64 // the refresh results counted during warm-up
	f := milter.NewFilter(milter.Config{
		Policies: set, Facts: v, RcptTimeout: 100 * time.Millisecond, Header: headerName,
		CheckedTransports: checkedTransports, Log: c.log,
		OnDecision: func(d milter.Decision) {
			if !d.Checked {
				return
			}
			now := clock.Now()
			vd := d.Verdict
			mu.Lock()
			defer mu.Unlock()
			// Warm: a cache hit less than a TTL ago. The facts that just expired (a
			// miss) were valid at that hit, so the domain was asked for during their
			// cache period: refresh-ahead's promise is that it never misses then.
			last, lastAny := lastHit[vd.Domain], lastAsk[vd.Domain]
			warm := !vd.Cached && !last.IsZero() && now.Sub(last) < rc.ttl
			recent := !lastAny.IsZero() && now.Sub(lastAny) < rc.ttl
			lastAsk[vd.Domain] = now
			if vd.Cached {
				lastHit[vd.Domain] = now
			}
			if now.Before(measureFrom) {
				return
			}
			if probesAtStart.Load() < 0 {
				probesAtStart.Store(prober.n.Load())
				refreshesAtStart = events.snapshot()
			}
			r.rcpts++
			inProgress := vd.Reason == verify.ReasonVerificationInProgress
			switch {
			case vd.Cached:
				r.cached++
			case inProgress:
				r.inProgress++
			}
			if recent {
				r.recent++
				if vd.Cached {
					r.recentCached++
				}
			}
			if warm {
				r.warmMisses++
				if inProgress {
					r.warmInProgress++
				}
			}
		},
	})
	// The driver: RCPT n is due at n / rate simulated seconds, each decided in its own
	// goroutine as concurrent smtpd processes would ask (an RCPT that waits for a probe
	// holds up nothing else). Filter.Decide is called directly: the milter protocol's
	// cost is the cachehit scenario's subject, not this one's.
	total := int64((rc.warmup + rc.hour).Seconds() * rc.rate)
	warm := int64(rc.warmup.Seconds() * rc.rate)
	realPer := time.Duration(float64(time.Second) / rc.rate / rc.speedup)
	rng := rand.New(rand.NewPCG(1, 13)) // the same RCPT sequence for both runs
	zipf := rand.NewZipf(rng, rc.zipf, 1, uint64(rc.domains-1))
	var wg sync.WaitGroup
	for n := range total {
		due := clock.start.Add(time.Duration(n) * realPer)
		if d := time.Until(due); d > 0 {
			time.Sleep(d)
		} else if n >= warm {
			r.lag = max(r.lag, -d)
		}
		rcpt := "user@" + names[zipf.Uint64()]
		wg.Go(func() {
			f.Decide(context.Background(), milter.Request{Rcpt: rcpt, Mailer: "smtp", MailerKnown: true, Sender: "alice@sender.load.test"})
		})
	}
	wg.Wait()
	r.simulated = clock.Now().Sub(measureFrom)
	r.probes = prober.n.Load() - max(probesAtStart.Load(), 0)
	mu.Lock()
	r.refreshes = events.snapshot()
	for k, n := range refreshesAtStart {
		r.refreshes[k] -= n
	}
	mu.Unlock()
	return r, nil
}
