// Command load is tlsgate's load generator and cost model. It runs tlsgate in-process,
// built as cmd/tlsgate builds it (policy table, verify.Verifier, milter.Filter, milter
// server), against a fake Internet on loopback (package internal/fake: a DNS server and
// STARTTLS SMTP servers with certificates from a test CA, probing of 127.0.0.0/8
// allowed), and drives it over the real milter protocol with go-milter's client, as
// Postfix would: one milter connection per SMTP session, connect, HELO, MAIL, many RCPTs,
// then end of message or abort. It needs no setup and no network.
//
// Scenarios (-scenario, comma-separated; -smoke runs every one briefly):
//
//	cachehit     RCPT decisions for cached domains from -conns connections, against
//	             tlsgate and against a no-op go-milter server negotiating the same
//	             protocol; decisions/s, RCPT latency p50/p90/p99/max, and the ratio.
//	singleflight -burst concurrent RCPTs, one per connection, for one uncached domain;
//	             fails unless exactly one probe happened (one MX query at the DNS
//	             server, one connection at the MX).
//	cold         a stream of distinct uncached single-MX domains, with -rtt injected on
//	             every DNS answer and on the SMTP connection (a proxy delaying each byte
//	             by RTT/2 each way); the cold verdict in RTTs, split into DNS and SMTP.
//	memory       heap and RSS per cached verdict at -mem-domains verdicts.
//	socketmap    cached smtp_tls_policy_maps lookups over the socketmap protocol from
//	             -conns connections (one request at a time each, as Postfix), against
//	             tlsgate's socketmap server and a no-op netstring server; lookups/s,
//	             latency p50/p90/p99/max, and the ratio.
//	shared       the fleet's shared tier against a local redis-server/valkey-server the
//	             scenario starts (skipped when none is installed): the cache-hit ratio
//	             without and with the shared tier configured (same run), a shared hit's
//	             latency p50/p99 over -shared-domains domains another host probed, and the
//	             server's bytes per cached domain (target <= 2 KiB).
//	refresh      (only on request: about 8 minutes) an hour of simulated traffic to
//	             10,000 Zipf-distributed domains with 5-minute TTLs and -rtt, with and
//	             without refresh-ahead: share of RCPTs from the cache, "in progress"
//	             answers for domains asked for in the cache period that just ended,
//	             probes per hour (refresh.go).
//
// Usage:
//
//	go run ./test/load                      # cachehit, singleflight, cold, memory, socketmap
//	go run ./test/load -scenario cachehit -conns 8 -duration 10s -cpuprofile cpu.out
//	go run ./test/load -scenario memory -mem-certs unique -memprofile heap.out
//	go run ./test/load -smoke
//
// Numbers are for the machine it runs on; the MTA side shares the CPUs with tlsgate, so
// compare tlsgate with the no-op baseline of the same run, not with other machines.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

var scenarioNames = []string{"cachehit", "singleflight", "cold", "memory", "socketmap", "shared", "refresh"}

// defaultScenarios run without -scenario: refresh takes 7 minutes and runs on request.
var defaultScenarios = []string{"cachehit", "singleflight", "cold", "memory", "socketmap", "shared"}

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("load", flag.ContinueOnError)
	fs.SetOutput(stderr)
	c := defaultConfig()
	scenarios := fs.String("scenario", strings.Join(defaultScenarios, ","), "scenarios to run: "+strings.Join(scenarioNames, ", "))
	smoke := fs.Bool("smoke", false, "run every scenario briefly (a check that the tool works, not a measurement)")
	fs.IntVar(&c.conns, "conns", c.conns, "cachehit, socketmap: connections at once")
	fs.DurationVar(&c.duration, "duration", c.duration, "cachehit, socketmap: measurement per target")
	fs.IntVar(&c.rounds, "rounds", c.rounds, "cachehit, socketmap: alternating no-op/tlsgate rounds the duration is split into")
	fs.IntVar(&c.rcpts, "rcpts", c.rcpts, "cachehit: RCPTs per SMTP session")
	fs.IntVar(&c.domains, "domains", c.domains, "cachehit, socketmap: cached recipient domains")
	fs.IntVar(&c.policies, "policies", c.policies, "cachehit: generated policy table entries")
	fs.IntVar(&c.customers, "customers", c.customers, "cachehit: customer toggles")
	fs.IntVar(&c.burst, "burst", c.burst, "singleflight: concurrent RCPTs for the uncached domain")
	fs.DurationVar(&c.rtt, "rtt", c.rtt, "singleflight, cold: injected network round-trip time")
	fs.IntVar(&c.coldDomains, "cold-domains", c.coldDomains, "cold: uncached domains per pass")
	fs.IntVar(&c.coldConns, "cold-conns", c.coldConns, "cold: milter connections at once")
	fs.IntVar(&c.sharedDomains, "shared-domains", c.sharedDomains, "shared: domains probed by one host and read by another")
	fs.IntVar(&c.memDomains, "mem-domains", c.memDomains, "memory: cached verdicts")
	memCerts := fs.String("mem-certs", strings.Join(c.memCerts, ","), "memory: certificate modes (shared, unique)")
	fs.IntVar(&c.memMX, "mem-mx", c.memMX, "memory: MX hosts per domain")
	fs.IntVar(&c.refresh.domains, "refresh-domains", c.refresh.domains, "refresh: recipient domains")
	fs.Float64Var(&c.refresh.zipf, "refresh-zipf", c.refresh.zipf, "refresh: Zipf exponent of domain popularity (> 1)")
	fs.Float64Var(&c.refresh.rate, "refresh-rate", c.refresh.rate, "refresh: RCPTs per simulated second")
	fs.DurationVar(&c.refresh.ttl, "refresh-ttl", c.refresh.ttl, "refresh: DNS TTL, so the facts' TTL (at least 30s)")
	fs.DurationVar(&c.refresh.warmup, "refresh-warmup", c.refresh.warmup, "refresh: simulated warm-up, not counted")
	fs.DurationVar(&c.refresh.hour, "refresh-hour", c.refresh.hour, "refresh: simulated traffic counted after warm-up")
	fs.Float64Var(&c.refresh.speedup, "refresh-speedup", c.refresh.speedup, "refresh: simulated seconds per real second")
	logMode := fs.String("log", "text", "tlsgate's log: text (Info lines formatted, then discarded: the CPU cost of production logging), none, stderr")
	cpuprofile := fs.String("cpuprofile", "", "write a CPU profile of tlsgate's cachehit rounds to this file")
	fs.StringVar(&c.memprofile, "memprofile", "", "memory: write a heap profile of each filled cache to this file plus .MODE")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	c.memCerts = strings.Split(*memCerts, ",")
	if c.rounds < 1 || c.conns < 1 || c.coldConns < 1 || c.burst < 1 || c.domains < 1 || c.memMX < 1 {
		fmt.Fprintln(stderr, "load: -rounds, -conns, -cold-conns, -burst, -domains and -mem-mx must be at least 1")
		return 2
	}
	switch *logMode {
	case "text":
		c.log = slog.New(slog.NewTextHandler(io.Discard, nil))
	case "none":
		c.log = discardLogger
	case "stderr":
		c.log = slog.New(slog.NewTextHandler(stderr, nil))
	default:
		fmt.Fprintf(stderr, "load: unknown -log %q\n", *logMode)
		return 2
	}
	names := strings.Split(*scenarios, ",")
	if *smoke {
		c = smokeConfig(c.log)
		names = scenarioNames
	}
	for _, n := range names {
		if !slices.Contains(scenarioNames, n) {
			fmt.Fprintf(stderr, "load: unknown scenario %q (%s)\n", n, strings.Join(scenarioNames, ", "))
			return 2
		}
	}
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err != nil {
			fmt.Fprintln(stderr, "load:", err)
			return 1
		}
		defer f.Close()
		// One profile over every tlsgate round; StartCPUProfile cannot append, so it
		// runs across the no-op rounds too, which then show as the load's own work.
		started := false
		c.profile = func() func() {
			if !started {
				if err := pprof.StartCPUProfile(f); err != nil {
					fmt.Fprintln(stderr, "load:", err)
				}
				started = true
			}
			return func() {}
		}
		defer func() {
			if started {
				pprof.StopCPUProfile()
			}
		}()
	}
	fmt.Fprintf(stdout, "tlsgate load: %s, GOMAXPROCS %d, %s/%s\n\n", runtime.Version(), runtime.GOMAXPROCS(0), runtime.GOOS, runtime.GOARCH)
	failed := false
	for _, n := range names {
		if p := cpuPressure(); p >= 10 {
			fmt.Fprintf(stdout, "(CPU pressure %.0f%% (/proc/pressure/cpu avg10): other processes compete for the CPUs; expect noise)\n", p)
		}
		if err := runOne(n, c, stdout); err != nil {
			fmt.Fprintf(stderr, "load: %s: %v\n", n, err)
			failed = true
		}
	}
	if failed {
		return 1
	}
	return 0
}

// runOne runs the named scenario with its own fakes.
func runOne(name string, c config, out io.Writer) error {
	if name == "memory" {
		_, err := memory(c, out)
		return err
	}
	return runScenario(func(tb testing.TB) error {
		var err error
		switch name {
		case "cachehit":
			_, err = cacheHit(tb, c, out)
		case "singleflight":
			_, err = singleFlight(tb, c, out)
		case "cold":
			_, err = cold(tb, c, out)
		case "socketmap":
			_, err = socketmapLoad(tb, c, out)
		case "shared":
			if _, err = sharedLoad(tb, c, out); errors.Is(err, errNoServer) {
				fmt.Fprintf(out, "== shared tier: %v\n\n", err)
				err = nil
			}
		case "refresh":
			_, err = refreshScenario(tb, c, out)
		}
		return err
	})
}

func defaultConfig() config {
	return config{
		conns: 8, duration: 10 * time.Second, rounds: 10, rcpts: 50, domains: 100, policies: 10000, customers: 20,
		burst: 1000, rtt: 20 * time.Millisecond, coldDomains: 50, coldConns: 1,
		memDomains: 100000, memCerts: []string{"shared", "unique"}, memMX: 1, sharedDomains: 1000,
		refresh: defaultRefreshConfig(),
		log:     discardLogger,
	}
}

// smokeConfig is every scenario at its smallest useful size: seconds, also under -race.
func smokeConfig(log *slog.Logger) config {
	return config{
		conns: 2, duration: 400 * time.Millisecond, rounds: 2, rcpts: 10, domains: 4, policies: 100, customers: 3,
		burst: 50, rtt: 10 * time.Millisecond, coldDomains: 3, coldConns: 1,
		memDomains: 2000, memCerts: []string{"shared", "unique"}, memMX: 1, sharedDomains: 20,
		refresh: refreshConfig{domains: 200, zipf: 1.1, rate: 20, ttl: 30 * time.Second, warmup: time.Minute,
			hour: 2 * time.Minute, speedup: 30},
		log: log,
	}
}

// cpuPressure is the share of time some task waited for a CPU over the last 10 s
// (Linux PSI), or 0 where it is not available.
func cpuPressure() float64 {
	b, err := os.ReadFile("/proc/pressure/cpu")
	if err != nil {
		return 0
	}
	for _, f := range strings.Fields(string(b)) {
		if v, ok := strings.CutPrefix(f, "avg10="); ok {
			p, _ := strconv.ParseFloat(v, 64)
			return p
		}
	}
	return 0
}
