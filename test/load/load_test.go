package main

import (
	"bytes"
	"errors"
	"io"
	"os"
	"strings"
	"testing"
	"time"
)

// TestSmoke runs every scenario at its smallest size and checks that the tool works:
// decisions are counted on both milters, exactly one probe serves a burst, cold verdicts
// show the injected latency, and the cache holds what was filled. It asserts nothing
// about speed.
func TestSmoke(t *testing.T) {
	c := smokeConfig(discardLogger)
	c.memDomains = 100
	var out bytes.Buffer
	defer func() {
		if t.Failed() || testing.Verbose() {
			t.Logf("output:\n%s", out.String())
		}
	}()

	t.Run("cachehit", func(t *testing.T) {
		r, err := cacheHit(t, c, &out)
		if err != nil {
			t.Fatal(err)
		}
		for name, s := range map[string]*stats{"no-op": r.noop, "tlsgate": r.gate} {
			if s.decisions == 0 || s.sessions == 0 || len(s.lat) != int(s.decisions) || s.rate() <= 0 {
				t.Errorf("%s: %d decisions in %d sessions, %d latencies, rate %v", name, s.decisions, s.sessions, len(s.lat), s.rate())
			}
		}
		if r.gate.headers == 0 || r.noop.headers != 0 {
			t.Errorf("audit headers: tlsgate %d, no-op %d; want some and none", r.gate.headers, r.noop.headers)
		}
		if r.ratio <= 0 {
			t.Errorf("ratio %v", r.ratio)
		}
	})

	t.Run("singleflight", func(t *testing.T) {
		r, err := singleFlight(t, c, &out)
		if err != nil {
			t.Fatal(err)
		}
		if r.smtpConns != 1 || r.mxQueries != 1 || r.probes != 1 || r.proxied != 1 {
			t.Errorf("%d SMTP connections, %d MX queries, %d probes, %d proxied; want one of each", r.smtpConns, r.mxQueries, r.probes, r.proxied)
		}
		if r.rcpts.decisions != int64(c.burst) || r.fresh+r.cached != int64(c.burst) || r.failed != 0 {
			t.Errorf("%d decisions, %d fresh + %d cached, %d failed; want %d answered", r.rcpts.decisions, r.fresh, r.cached, r.failed, c.burst)
		}
	})

	t.Run("cold", func(t *testing.T) {
		r, err := cold(t, c, &out)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range []coldPass{r.zero, r.slow} {
			if p.rcpts.decisions != int64(c.coldDomains) || p.smtpProbes != 1 || p.dnsQueries < 2 {
				t.Errorf("RTT %v: %d verdicts, %.1f probes and %.1f DNS queries per verdict", p.rtt, p.rcpts.decisions, p.smtpProbes, p.dnsQueries)
			}
		}
		// A lower bound only: DNS and an SMTP session with STARTTLS cannot take fewer
		// than a handful of round trips, so the injected latency must show.
		if min := 5 * c.rtt; r.slow.rcpts.pct(.5) < min {
			t.Errorf("cold verdict p50 %v at RTT %v; the injected latency does not show", r.slow.rcpts.pct(.5), c.rtt)
		}
	})

	t.Run("socketmap", func(t *testing.T) {
		r, err := socketmapLoad(t, c, &out)
		if err != nil {
			t.Fatal(err)
		}
		for name, s := range map[string]*stats{"no-op": r.noop, "tlsgate": r.gate, "budgeted": r.budgeted} {
			if s.decisions == 0 || len(s.lat) != int(s.decisions) || s.rate() <= 0 || s.sessions != int64(c.conns*c.rounds) {
				t.Errorf("%s: %d lookups on %d connections, %d latencies, rate %v", name, s.decisions, s.sessions, len(s.lat), s.rate())
			}
		}
		if r.ratio <= 0 || r.budgetedRatio <= 0 {
			t.Errorf("ratios %v, %v", r.ratio, r.budgetedRatio)
		}
	})

	t.Run("shared", func(t *testing.T) {
		r, err := sharedLoad(t, c, &out)
		if errors.Is(err, errNoServer) && os.Getenv("CI") == "" {
			t.Skip(err) // CI installs redis-server first (test/all.sh): there this fails
		}
		if err != nil {
			t.Fatal(err)
		}
		if r.getsPerHit != 1 || len(r.hit) != c.sharedDomains || r.factsBytes <= 0 || r.plain.ratio <= 0 || r.withShared.ratio <= 0 {
			t.Errorf("%.2f GETs per shared hit (want 1), %d hits, %.0f B per entry, ratios %v %v",
				r.getsPerHit, len(r.hit), r.factsBytes, r.plain.ratio, r.withShared.ratio)
		}
	})

	t.Run("refresh", func(t *testing.T) {
		runs, err := refreshScenario(t, c, &out)
		if err != nil {
			t.Fatal(err)
		}
		off, on := runs[0], runs[1]
		if off.rcpts == 0 || on.rcpts == 0 || off.probes == 0 || off.refreshes["refreshed"] != 0 || on.refreshes["refreshed"] == 0 {
			t.Errorf("without: %d RCPTs, %d probes, refreshes %v; with: %d RCPTs, refreshes %v", off.rcpts, off.probes, off.refreshes, on.rcpts, on.refreshes)
		}
	})

	t.Run("memory", func(t *testing.T) {
		rs, err := memory(c, &out)
		if err != nil {
			t.Fatal(err)
		}
		if len(rs) != len(c.memCerts) {
			t.Fatalf("%d results for %d modes", len(rs), len(c.memCerts))
		}
		for _, r := range rs {
			if r.resident == 0 || r.resident > r.domains {
				t.Errorf("certs %s: %d of %d resident", r.certs, r.resident, r.domains)
			}
		}
	})
}

// TestRunFlags checks the command line: bad flags and scenarios are usage errors.
func TestRunFlags(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{{"-scenario", "nope"}, {"-rounds", "0"}, {"-log", "loud"}, {"-no-such-flag"}} {
		var stderr bytes.Buffer
		if code := run(args, io.Discard, &stderr); code != 2 {
			t.Errorf("%v: exit %d, want 2 (stderr %q)", args, code, stderr.String())
		}
	}
}

func TestStatsPercentiles(t *testing.T) {
	t.Parallel()
	s := &stats{}
	for i := 100; i >= 1; i-- {
		s.add(accepted, time.Duration(i)*time.Millisecond)
	}
	s.finish(time.Second)
	test := func(p float64, want time.Duration) {
		t.Helper()
		if got := s.pct(p); got != want {
			t.Errorf("pct(%v) = %v, want %v", p, got, want)
		}
	}
	test(.5, 50*time.Millisecond)
	test(.9, 90*time.Millisecond)
	test(.99, 99*time.Millisecond)
	test(1, 100*time.Millisecond)
	if s.max() != 100*time.Millisecond || s.rate() != 100 {
		t.Errorf("max %v, rate %v", s.max(), s.rate())
	}
	if (&stats{}).pct(.5) != 0 {
		t.Error("pct of no samples")
	}
}

// TestHarnessFatal checks that a fake's Fatalf becomes an error and cleanups run.
func TestHarnessFatal(t *testing.T) {
	t.Parallel()
	cleaned := false
	err := runScenario(func(tb testing.TB) error {
		tb.Cleanup(func() { cleaned = true })
		tb.Fatalf("broken %d", 42)
		return nil
	})
	if err == nil || !strings.Contains(err.Error(), "broken 42") || !cleaned {
		t.Errorf("error %v, cleaned %v", err, cleaned)
	}
}
