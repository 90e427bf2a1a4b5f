package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/tlsgate/tlsgate/policy"
	"github.com/tlsgate/tlsgate/verify"
)

// config selects the size of every scenario.
type config struct {
	// cache-hit
	conns     int           // milter connections at once
	duration  time.Duration // per target
	rounds    int           // alternating no-op/tlsgate rounds the duration is split into
	rcpts     int           // RCPTs per SMTP session
	domains   int           // cached recipient domains
	policies  int           // generated entries in the policy table
	customers int           // customer toggles
	// single-flight
	burst int // concurrent RCPTs for one uncached domain
	// cold
	rtt         time.Duration // injected round-trip time (cold, single-flight)
	coldDomains int
	coldConns   int
	// memory
	memDomains int
	memCerts   []string // "shared", "unique"
	memMX      int      // MX hosts per domain
	memprofile string   // heap profile path prefix

	// shared
	sharedDomains int
	shared        verify.SharedTier // cache-hit: tlsgate has this shared tier (local hits must not notice)
	// refresh
	refresh refreshConfig

	log     *slog.Logger
	profile func() (stop func()) // brackets tlsgate's cache-hit run, when set
}

// policySet builds a policy table as a large Postfix tls_policy file would give it: n
// generated entries (7 in 10 exact domains, 3 in 10 ".parent" keys, levels mixed, each
// with its source line), plus extra, plus customers toggles recognized by sender domain,
// SASL login or client network (none matches the load's sender: every RCPT pays for
// looking at all of them).
func policySet(n, customers int, extra map[string]policy.Level) (*policy.Set, error) {
	tab := policy.NewTable()
	levels := []policy.Level{policy.LevelEncrypt, policy.LevelVerify, policy.LevelSecure, policy.LevelDane, policy.LevelMay}
	for i := range n {
		key := fmt.Sprintf("dom%d.policy.test", i)
		if i%10 >= 7 {
			key = fmt.Sprintf(".zone%d.policy.test", i)
		}
		p := policy.Policy{Level: levels[i%len(levels)], Source: fmt.Sprintf("/etc/postfix/tls_policy:%d", i+1)}
		if _, err := tab.Add(key, p); err != nil {
			return nil, err
		}
	}
	for d, l := range extra {
		if _, err := tab.Add(d, policy.Policy{Level: l, Source: "config policies"}); err != nil {
			return nil, err
		}
	}
	cs := make([]policy.Customer, customers)
	for i := range cs {
		cs[i] = policy.Customer{
			Name:           fmt.Sprintf("cust%d", i),
			Senders:        []string{fmt.Sprintf("cust%d.example", i), fmt.Sprintf(".cust%d.example", i)},
			SASLLogins:     []string{fmt.Sprintf("cust%d", i)},
			ClientNetworks: []netip.Prefix{netip.PrefixFrom(netip.AddrFrom4([4]byte{198, 51, 100, byte(i)}), 32)},
			Level:          policy.LevelEncrypt,
		}
	}
	c, err := policy.NewCustomers(cs)
	if err != nil {
		return nil, err
	}
	return &policy.Set{Table: tab, Customers: c}, nil
}

// warm probes every domain and checks that it passes at its level.
func warm(v *verify.Verifier, domains map[string]policy.Level) error {
	for d, l := range domains {
		f, _, err := v.Facts(context.Background(), d)
		if err != nil {
			return fmt.Errorf("warming %s: %w", d, err)
		}
		if vd := verify.Judge(f, policy.Policy{Level: l}); vd.Status != verify.StatusPass {
			return fmt.Errorf("warming %s: %s/%s at %s: %s", d, vd.Status, vd.Reason, l, vd.Detail)
		}
	}
	return nil
}

// cacheHitResult is what the cache-hit scenario measured.
type cacheHitResult struct {
	noop, gate *stats
	ratio      float64 // tlsgate/no-op throughput, median over rounds
}

// cacheHit measures RCPT decisions for cached domains over the milter protocol against
// tlsgate and against a no-op milter, with the same closed-loop load.
func cacheHit(tb testing.TB, c config, out io.Writer) (*cacheHitResult, error) {
	w := newWorld(tb)
	const ip = "127.0.0.21"
	srv := w.smtp(ip, "mx.hot.load.test", "*.hot.load.test")
	srv.RegisterWith(w.dialer)
	levels := []policy.Level{policy.LevelEncrypt, policy.LevelVerify}
	hot := map[string]policy.Level{}
	domains := make([]string, c.domains)
	for i := range domains {
		d, mx := fmt.Sprintf("hot%d.load.test", i), fmt.Sprintf("mx%d.hot.load.test", i)
		w.dns.Add(tb, fmt.Sprintf("%s. 300 IN MX 10 %s.", d, mx), fmt.Sprintf("%s. 300 IN A %s", mx, ip))
		domains[i], hot[d] = d, levels[i%len(levels)]
	}
	set, err := policySet(c.policies, c.customers, hot)
	if err != nil {
		return nil, err
	}
	g, err := w.startGate(gateOptions{policies: set, log: c.log, shared: c.shared})
	if err != nil {
		return nil, err
	}
	if err := warm(g.verifier, hot); err != nil {
		return nil, err
	}
	noop, err := startNoop(tb)
	if err != nil {
		return nil, err
	}
	// A message's recipients come ten to a domain (a 50-RCPT message names 5 domains
	// and gets 5 audit headers), the domains cycling over the cached ones.
	const perDomain = 10
	addrs := make([][perDomain]string, len(domains))
	for d := range addrs {
		for u := range perDomain {
			addrs[d][u] = fmt.Sprintf("user%d@%s", u, domains[d])
		}
	}
	mk := func(addr string, d time.Duration) load {
		return load{addr: addr, conns: c.conns, duration: d, rcpts: c.rcpts, sender: "alice@sender.load.test",
			rcpt: func(w, n, i int) string { return addrs[(w*31+n*7+i/perDomain)%len(addrs)][i%perDomain] }}
	}
	fmt.Fprintf(out, "== cache-hit: %d connections, %d cached domains (encrypt, verify), policy table of %d entries and %d customers,\n"+
		"   %d RCPTs per session (10 per domain), sessions alternate end of message and abort, %v per target in %d rounds\n",
		c.conns, c.domains, set.Table.Len(), set.Customers.Len(), c.rcpts, c.duration, c.rounds)
	warmup := min(c.duration/5, time.Second)
	for _, a := range []string{noop, g.addr} {
		if _, err := mk(a, warmup).run(); err != nil {
			return nil, fmt.Errorf("warm-up: %w", err)
		}
	}
	// Alternate short rounds, so that whatever else the machine does hits both alike.
	res := &cacheHitResult{noop: &stats{}, gate: &stats{}}
	var ratios []float64
	round := c.duration / time.Duration(c.rounds)
	for range c.rounds {
		b, err := mk(noop, round).run()
		if err != nil {
			return nil, fmt.Errorf("no-op: %w", err)
		}
		stop := func() {}
		if c.profile != nil {
			stop = c.profile()
		}
		t, err := mk(g.addr, round).run()
		stop()
		if err != nil {
			return nil, fmt.Errorf("tlsgate: %w", err)
		}
		ratios = append(ratios, t.rate()/b.rate())
		res.noop.merge(b)
		res.gate.merge(t)
	}
	res.noop.finish(0)
	res.gate.finish(0)
	slices.Sort(ratios)
	res.ratio = ratios[len(ratios)/2]
	printStats(out, "no-op", res.noop)
	printStats(out, "tlsgate", res.gate)
	fmt.Fprintf(out, "tlsgate/no-op: throughput %.2f (median of %d alternating rounds; overall %.2f), latency p50 %.2fx, p90 %.2fx, p99 %.2fx\n",
		res.ratio, c.rounds, res.gate.rate()/res.noop.rate(), ratio(res.gate.pct(.5), res.noop.pct(.5)),
		ratio(res.gate.pct(.9), res.noop.pct(.9)), ratio(res.gate.pct(.99), res.noop.pct(.99)))
	if res.gate.ended > 0 {
		fmt.Fprintf(out, "tlsgate added %.1f audit headers per message (one per recipient domain)\n", float64(res.gate.headers)/float64(res.gate.ended))
	}
	if n := res.noop.retries + res.gate.retries; n > 0 {
		fmt.Fprintf(out, "note: %d milter sessions had to be reopened (go-milter's 1 s negotiation timeout: the machine is short of CPU)\n", n)
	}
	fmt.Fprintln(out)
	if res.gate.accepted != res.gate.decisions {
		return res, fmt.Errorf("tlsgate accepted %d of %d RCPTs; every cached domain passes", res.gate.accepted, res.gate.decisions)
	}
	if res.gate.sessions > 1 && res.gate.headers == 0 {
		return res, fmt.Errorf("tlsgate added no audit header in %d sessions", res.gate.sessions)
	}
	return res, nil
}

func ratio(a, b time.Duration) float64 {
	if b == 0 {
		return 0
	}
	return float64(a) / float64(b)
}

func printStats(out io.Writer, name string, s *stats) {
	fmt.Fprintf(out, "%-9s %9d RCPTs %9.0f decisions/s   p50 %8v  p90 %8v  p99 %8v  max %8v\n",
		name, s.decisions, s.rate(), round(s.pct(.5)), round(s.pct(.9)), round(s.pct(.99)), round(s.max()))
}

// round keeps three significant digits or so.
func round(d time.Duration) time.Duration {
	switch {
	case d >= 100*time.Millisecond:
		return d.Round(time.Millisecond)
	case d >= time.Millisecond:
		return d.Round(10 * time.Microsecond)
	case d >= 10*time.Microsecond:
		return d.Round(100 * time.Nanosecond)
	}
	return d
}

// burstResult is what the single-flight scenario measured.
type burstResult struct {
	rcpts                          *stats
	smtpConns, mxQueries, probes   int64
	fresh, cached, failed, proxied int64
}

// singleFlight sends burst RCPTs for one uncached domain at once, each on its own milter
// connection, while the probe is slowed down by the RTT, and checks that exactly one
// probe happened: one MX query at the DNS server, one SMTP connection at the MX.
func singleFlight(tb testing.TB, c config, out io.Writer) (*burstResult, error) {
	w := newWorld(tb)
	const domain, mx, ip = "burst.load.test", "mx.burst.load.test", "127.0.0.22"
	srv := w.smtp(ip, mx)
	p, err := w.proxy(srv, c.rtt)
	if err != nil {
		return nil, err
	}
	w.dialer.Register(netip.MustParseAddr(ip), p.Addr())
	w.dns.Add(tb, fmt.Sprintf("%s. 300 IN MX 10 %s.", domain, mx), fmt.Sprintf("%s. 300 IN A %s", mx, ip))
	w.delayDNS(c.rtt, domain, mx)
	set, err := policySet(0, 0, map[string]policy.Level{domain: policy.LevelEncrypt})
	if err != nil {
		return nil, err
	}
	g, err := w.startGate(gateOptions{policies: set, log: c.log, count: true})
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(out, "== single-flight: %d concurrent RCPTs (one per milter connection) for one uncached domain, RTT %v\n", c.burst, c.rtt)

	m := newMTA(g.addr)
	sessions := make([]*smtpSession, c.burst)
	defer func() {
		for _, s := range sessions {
			if s != nil {
				s.close()
			}
		}
	}()
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
	)
	fail := func(err error) {
		mu.Lock()
		errs = append(errs, err)
		mu.Unlock()
	}
	sem := make(chan struct{}, 16)
	for i := range sessions {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			s, _, err := m.open(fmt.Sprintf("B%d", i), "alice@sender.load.test")
			if err != nil {
				fail(err)
				return
			}
			sessions[i] = s
		})
	}
	wg.Wait()
	if len(errs) > 0 {
		return nil, fmt.Errorf("opening sessions: %w (and %d more)", errs[0], len(errs)-1)
	}
	start := make(chan struct{})
	per := make([]*stats, len(sessions))
	began := time.Now()
	for i, s := range sessions {
		wg.Go(func() {
			st := &stats{}
			per[i] = st
			<-start
			o, d, err := s.rcpt(fmt.Sprintf("user%d@%s", i, domain))
			if err != nil {
				fail(err)
				return
			}
			st.add(o, d)
		})
	}
	close(start)
	wg.Wait()
	total := &stats{}
	for _, st := range per {
		total.merge(st)
	}
	total.finish(time.Since(began))
	if len(errs) > 0 {
		return nil, fmt.Errorf("RCPT: %w (and %d more)", errs[0], len(errs)-1)
	}
	r := &burstResult{rcpts: total, smtpConns: int64(srv.Connections()), probes: g.prober.n.Load(), proxied: p.Accepted(),
		fresh: g.facts.fresh.Load(), cached: g.facts.cached.Load(), failed: g.facts.failed.Load()}
	for _, q := range w.dns.Queries() {
		if q.Name == domain+"." && q.Type == dns.TypeMX {
			r.mxQueries++
		}
	}
	printStats(out, "tlsgate", total)
	fmt.Fprintf(out, "probes: %d SMTP connection(s) at the MX, %d MX quer(y/ies) at the DNS server, %d Prober.Probe call(s)\n",
		r.smtpConns, r.mxQueries, r.probes)
	fmt.Fprintf(out, "answers: %d joined the probe in flight, %d cache hits, %d errors; %d accepted of %d\n\n",
		r.fresh, r.cached, r.failed, total.accepted, total.decisions)
	if r.smtpConns != 1 || r.mxQueries != 1 || r.probes != 1 {
		return r, fmt.Errorf("%d SMTP connections, %d MX queries, %d probes; want exactly one probe", r.smtpConns, r.mxQueries, r.probes)
	}
	if total.accepted != int64(c.burst) {
		return r, fmt.Errorf("%d of %d RCPTs accepted; the domain passes", total.accepted, c.burst)
	}
	return r, nil
}

// coldPass is one pass of the cold scenario.
type coldPass struct {
	rtt                    time.Duration
	rcpts                  *stats
	dnsQueries, smtpProbes float64 // per verdict
	// Per verdict, the median (one connection) or the mean: the time with a DNS lookup
	// in flight and the time in SMTP probes.
	dnsTime, smtpTime      float64
	domains, proxied, miss int
}

// coldResult is what the cold scenario measured.
type coldResult struct {
	zero, slow coldPass
	// roundTrips is the RTT count of a cold verdict: the growth of its median with the
	// RTT, (p50 at RTT - p50 at 0) / RTT, so CPU time does not count.
	roundTrips, dnsTrips, smtpTrips float64
}

// cold sends RCPTs for a stream of distinct uncached domains, each with one MX host that
// offers STARTTLS at an address of its own (so no probe result is shared), first with
// no injected latency and then with c.rtt on every DNS answer and SMTP exchange. The
// DNS/SMTP split is exact with one connection (-cold-conns 1), where verdicts do not
// overlap.
func cold(tb testing.TB, c config, out io.Writer) (*coldResult, error) {
	w := newWorld(tb)
	srv := w.smtp("127.0.0.23", "mx.cold.load.test")
	set, err := policySet(0, 0, map[string]policy.Level{".cold.load.test": policy.LevelEncrypt})
	if err != nil {
		return nil, err
	}
	g, err := w.startGate(gateOptions{policies: set, log: c.log})
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(out, "== cold: %d distinct uncached domains per pass, one MX each (STARTTLS, own address), %d connection(s);\n"+
		"   injected RTT on every DNS answer and on the SMTP connection\n", c.coldDomains, c.coldConns)
	pass := func(label string, net byte, rtt time.Duration) (coldPass, error) {
		per := max(1, c.coldDomains/c.coldConns)
		cp := coldPass{rtt: rtt, domains: per * c.coldConns}
		p, err := w.proxy(srv, rtt)
		if err != nil {
			return cp, err
		}
		domains := make([]string, cp.domains)
		for i := range domains {
			d := fmt.Sprintf("d%d.%s.cold.load.test", i, label)
			mx := "mx." + d
			ip := netip.AddrFrom4([4]byte{127, net, byte(i / 250), byte(i%250 + 1)})
			w.dns.Add(tb, fmt.Sprintf("%s. 300 IN MX 10 %s.", d, mx), fmt.Sprintf("%s. 300 IN A %s", mx, ip))
			w.delayDNS(rtt, d, mx)
			w.dialer.Register(ip, p.Addr())
			domains[i] = d
		}
		q0, qt0, p0, pt0 := g.resolver.n.Load(), g.resolver.busyTime(), g.prober.n.Load(), g.prober.nsec.Load()
		// With one connection verdicts do not overlap: the DNS and SMTP time between two
		// RCPTs belongs to the first one's verdict, and medians are taken per verdict.
		var dnsPer, smtpPer []time.Duration
		lastDNS, lastSMTP, started := qt0, time.Duration(pt0), false
		snap := func() {
			d, sm := g.resolver.busyTime(), time.Duration(g.prober.nsec.Load())
			if started {
				dnsPer, smtpPer = append(dnsPer, d-lastDNS), append(smtpPer, sm-lastSMTP)
			}
			lastDNS, lastSMTP, started = d, sm, true
		}
		l := load{addr: g.addr, conns: c.coldConns, sessions: 1, rcpts: per, sender: "alice@sender.load.test",
			rcpt: func(wk, _, i int) string {
				if c.coldConns == 1 {
					snap()
				}
				return "user@" + domains[wk*per+i]
			}}
		st, err := l.run()
		if err != nil {
			return cp, err
		}
		if c.coldConns == 1 {
			snap()
		}
		cp.rcpts = st
		n := float64(st.decisions)
		cp.dnsQueries = float64(g.resolver.n.Load()-q0) / n
		cp.dnsTime = float64(g.resolver.busyTime()-qt0) / n
		cp.smtpProbes = float64(g.prober.n.Load()-p0) / n
		cp.smtpTime = float64(g.prober.nsec.Load()-pt0) / n
		if len(dnsPer) > 0 {
			cp.dnsTime, cp.smtpTime = float64(median(dnsPer)), float64(median(smtpPer))
		}
		cp.proxied = int(p.Accepted())
		cp.miss = int(st.decisions - st.accepted)
		return cp, nil
	}
	r := &coldResult{}
	if r.zero, err = pass("zero", 1, 0); err != nil {
		return nil, err
	}
	if r.slow, err = pass("rtt", 2, c.rtt); err != nil {
		return nil, err
	}
	rtt := float64(c.rtt)
	r.roundTrips = float64(r.slow.rcpts.pct(.5)-r.zero.rcpts.pct(.5)) / rtt
	r.dnsTrips = (r.slow.dnsTime - r.zero.dnsTime) / rtt
	r.smtpTrips = (r.slow.smtpTime - r.zero.smtpTime) / rtt
	for _, cp := range []coldPass{r.zero, r.slow} {
		s := cp.rcpts
		fmt.Fprintf(out, "RTT %-6v %4d verdicts  p50 %8v  p90 %8v  max %8v   per verdict: %.1f DNS queries %8v, %.1f SMTP sessions %8v (medians)\n",
			cp.rtt, s.decisions, round(s.pct(.5)), round(s.pct(.9)), round(s.max()),
			cp.dnsQueries, round(time.Duration(cp.dnsTime)), cp.smtpProbes, round(time.Duration(cp.smtpTime)))
	}
	verdict := "met"
	if r.roundTrips > 8.5 {
		verdict = fmt.Sprintf("missed by %.1f RTT", r.roundTrips-8)
	}
	fmt.Fprintf(out, "cold verdict = %.1f RTT (p50 growth / RTT: about %.0f round trips) + %v of CPU and loopback (p50 at RTT 0);\n"+
		"   DNS %.1f RTT (%.1f queries), SMTP session %.1f RTT, rest %.1f RTT\n",
		r.roundTrips, math.Round(r.roundTrips), round(r.zero.rcpts.pct(.5)), r.dnsTrips, r.slow.dnsQueries, r.smtpTrips,
		r.roundTrips-r.dnsTrips-r.smtpTrips)
	fmt.Fprintf(out, "target <= 8 RTT for a single-MX domain with STARTTLS: %s\n\n", verdict)
	for _, cp := range []coldPass{r.zero, r.slow} {
		if cp.miss > 0 {
			return r, fmt.Errorf("RTT %v: %d of %d cold verdicts did not pass", cp.rtt, cp.miss, cp.rcpts.decisions)
		}
		if cp.proxied != cp.domains {
			return r, fmt.Errorf("RTT %v: %d SMTP connections for %d domains; want one each", cp.rtt, cp.proxied, cp.domains)
		}
	}
	return r, nil
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}
