package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tlsgate/tlsgate/internal/mtasts"
	"github.com/tlsgate/tlsgate/policy"
	"github.com/tlsgate/tlsgate/policymap"
	"github.com/tlsgate/tlsgate/socketmap"
	"github.com/tlsgate/tlsgate/verify"
)

// socketmapResult is what the socketmap scenario measured.
type socketmapResult struct {
	noop, gate *stats
	ratio      float64 // tlsgate/no-op lookups per second, median over rounds
	// budgeted: tlsgate with a handler that is not a socketmap.CachedHandler, so every
	// lookup runs with its budget, a context and a watchdog timer (what a cache miss
	// costs the server, less the lookup itself).
	budgeted      *stats
	budgetedRatio float64
	// serverOnly: tlsgate's socketmap.Server with a handler that returns the same replies
	// from a precomputed map (the analogue of the cachehit scenario's no-op milter: the
	// same protocol implementation, no decision, same bytes on the wire);
	// handlerRatio is tlsgate / serverOnly, what computing the answer costs.
	serverOnly   *stats
	handlerRatio float64
}

// precomputed is a socketmap handler that returns replies computed beforehand.
type precomputed map[string]string

func (p precomputed) Lookup(_ context.Context, name, key string) socketmap.Reply {
	r, _ := p.LookupCached(name, key)
	return r
}

func (p precomputed) LookupCached(_, key string) (socketmap.Reply, bool) {
	return socketmap.Reply{Status: socketmap.StatusOK, Data: p[key]}, true
}

// budgetedOnly hides a handler's LookupCached.
type budgetedOnly struct{ socketmap.Handler }

// cachedMapFacts stands in for the Verifier's cache of socketmap facts: every domain's
// DNS and MTA-STS facts are cached (policymap.CachedFactsSource), as after the first
// delivery to it.
type cachedMapFacts map[string]*verify.MapFacts

func (c cachedMapFacts) MapFacts(_ context.Context, domain string) (*verify.MapFacts, error) {
	if f, ok := c[domain]; ok {
		return f, nil
	}
	return nil, verify.ErrPending
}

func (c cachedMapFacts) CachedMapFacts(domain string) (*verify.MapFacts, bool) {
	f, ok := c[domain]
	return f, ok
}

// socketmapHandler is tlsgate's real socketmap handler (policymap.Map) for the
// scenario's domains: even ones have a configured tls_policy entry, odd ones are at
// socketmap.default_level published with cached facts of an MTA-STS policy in mode
// enforce. It returns the handler and the answer expected for each key.
func socketmapHandler(keys []string) (*policymap.Map, map[string]string, error) {
	var file strings.Builder
	facts := cachedMapFacts{}
	want := map[string]string{}
	now := time.Now()
	for i, k := range keys {
		mx := fmt.Sprintf("mx%d.hot.load.test", i)
		if i%2 == 0 {
			fmt.Fprintf(&file, "%s secure match=%s\n", k, mx)
			want[k] = "secure match=" + mx
			continue
		}
		facts[k] = &verify.MapFacts{Domain: k, MX: verify.MXFound, MXDetail: "MX records found",
			Hosts: []verify.Host{{Name: mx, Preference: 10, Addrs: []netip.Addr{netip.MustParseAddr("192.0.2.1")}}},
			Tried: 1, Checked: now, DNSTTL: time.Hour, Until: now.Add(time.Hour),
			STS: &mtasts.Result{Status: mtasts.StatusPolicy, ID: "1", Fetched: now, Expires: now.Add(24 * time.Hour), TTL: time.Hour,
				Policy: &mtasts.Policy{Mode: mtasts.ModeEnforce, MaxAge: 24 * time.Hour, MX: []string{mx}}}}
		want[k] = "secure match=" + mx + " servername=hostname"
	}
	// Loaded as tlsgate loads policy_files, so the answers are the entries verbatim.
	f, err := os.CreateTemp("", "tlsgate-load-policy-*")
	if err != nil {
		return nil, nil, err
	}
	defer os.Remove(f.Name())
	if _, err := f.WriteString(file.String()); err != nil {
		f.Close()
		return nil, nil, err
	}
	f.Close()
	table := policy.NewTable()
	if warnings, err := table.LoadFile(f.Name()); err != nil || len(warnings) > 0 {
		return nil, nil, fmt.Errorf("policy file: %v %v", err, warnings)
	}
	return policymap.New(policymap.Config{Policies: table, DefaultPublished: true, Facts: facts}), want, nil
}

// socketmapLoad measures cached socketmap lookups, as Postfix's SMTP client makes them
// for smtp_tls_policy_maps, against tlsgate's socketmap server and against a no-op
// netstring server speaking the same protocol, with the same closed-loop load: c.conns
// connections, each sending one request and waiting for its reply (Postfix's
// dict_sockmap does not pipeline), in alternating rounds.
func socketmapLoad(tb testing.TB, c config, out io.Writer) (*socketmapResult, error) {
	keys := make([]string, c.domains)
	for i := range keys {
		keys[i] = fmt.Sprintf("hot%d.load.test", i)
	}
	answers, want, err := socketmapHandler(keys)
	if err != nil {
		return nil, err
	}
	gate, err := serveSocketmap(tb, &socketmap.Server{Handler: answers, Log: c.log})
	if err != nil {
		return nil, err
	}
	budgeted, err := serveSocketmap(tb, &socketmap.Server{Handler: budgetedOnly{answers}, Log: c.log})
	if err != nil {
		return nil, err
	}
	noop, err := startNoopSocketmap(tb)
	if err != nil {
		return nil, err
	}
	serverOnly, err := serveSocketmap(tb, &socketmap.Server{Handler: precomputed(want), Log: c.log})
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(out, "== socketmap: %d connections, one request at a time each, %d cached domains (map lookup answers),\n"+
		"   tlsgate's socketmap.Server with its handler (policymap: half configured entries, half published from\n"+
		"   cached MTA-STS facts; socketmap.CachedHandler) against a no-op\n"+
		"   netstring server answering \"OK x\", %v per target in %d rounds (order rotating)\n",
		c.conns, c.domains, c.duration, c.rounds)
	check := func(key string, r socketmap.Reply) error {
		if w := want[key]; r.Status != socketmap.StatusOK || r.Data != w {
			return fmt.Errorf("%s: reply %q, want %q", key, r, "OK "+w)
		}
		return nil
	}
	checkNoop := func(_ string, r socketmap.Reply) error {
		if r.Status != socketmap.StatusOK || r.Data != "x" {
			return fmt.Errorf("no-op reply %q", r)
		}
		return nil
	}
	mk := func(addr string, d time.Duration, check func(string, socketmap.Reply) error) lookupLoad {
		return lookupLoad{addr: addr, conns: c.conns, duration: d, keys: keys, check: check}
	}
	warmup := min(c.duration/5, time.Second)
	if _, err := mk(noop, warmup, checkNoop).run(); err != nil {
		return nil, fmt.Errorf("warm-up no-op: %w", err)
	}
	if _, err := mk(gate, warmup, check).run(); err != nil {
		return nil, fmt.Errorf("warm-up tlsgate: %w", err)
	}
	if _, err := mk(budgeted, warmup, check).run(); err != nil {
		return nil, fmt.Errorf("warm-up tlsgate: %w", err)
	}
	if _, err := mk(serverOnly, warmup, check).run(); err != nil {
		return nil, fmt.Errorf("warm-up tlsgate server, precomputed answers: %w", err)
	}
	res := &socketmapResult{noop: &stats{}, gate: &stats{}, budgeted: &stats{}, serverOnly: &stats{}}
	var ratios, budgetedRatios, handlerRatios []float64
	perRound := c.duration / time.Duration(c.rounds)
	// The order of the three rotates from round to round, so that whatever favours a
	// position in a round favours no target: measured with two no-op servers, the
	// middle of three fixed positions ran 5-10% slower than the others (the garbage of
	// the run before it, a neighbour's load...).
	for i := range c.rounds {
		var b, t, u, o *stats
		targets := []func() error{
			func() (err error) { b, err = mk(noop, perRound, checkNoop).run(); return wrap("no-op", err) },
			func() (err error) {
				stop := func() {}
				if c.profile != nil {
					stop = c.profile()
				}
				defer stop()
				t, err = mk(gate, perRound, check).run()
				return wrap("tlsgate", err)
			},
			func() (err error) { u, err = mk(budgeted, perRound, check).run(); return wrap("tlsgate budgeted", err) },
			func() (err error) {
				o, err = mk(serverOnly, perRound, check).run()
				return wrap("tlsgate server, precomputed answers", err)
			},
		}
		targets = append(targets[i%len(targets):], targets[:i%len(targets)]...)
		for _, run := range targets {
			if err := run(); err != nil {
				return nil, err
			}
		}
		ratios = append(ratios, t.rate()/b.rate())
		budgetedRatios = append(budgetedRatios, u.rate()/b.rate())
		handlerRatios = append(handlerRatios, t.rate()/o.rate())
		res.serverOnly.merge(o)
		res.noop.merge(b)
		res.gate.merge(t)
		res.budgeted.merge(u)
	}
	res.noop.finish(0)
	res.gate.finish(0)
	res.budgeted.finish(0)
	res.serverOnly.finish(0)
	slices.Sort(handlerRatios)
	res.handlerRatio = handlerRatios[len(handlerRatios)/2]
	slices.Sort(ratios)
	slices.Sort(budgetedRatios)
	res.ratio = ratios[len(ratios)/2]
	res.budgetedRatio = budgetedRatios[len(budgetedRatios)/2]
	printLookups(out, "no-op", res.noop)
	printLookups(out, "tlsgate", res.gate)
	printLookups(out, "budgeted", res.budgeted)
	printLookups(out, "server", res.serverOnly)
	verdict := "met"
	if res.ratio < 0.9 {
		verdict = "missed"
	}
	fmt.Fprintf(out, "tlsgate/no-op: throughput %.3f (median of %d rounds; overall %.3f), latency p50 %.2fx, p99 %.2fx;\n"+
		"   target >= 0.90: %s\n",
		res.ratio, c.rounds, res.gate.rate()/res.noop.rate(), ratio(res.gate.pct(.5), res.noop.pct(.5)),
		ratio(res.gate.pct(.99), res.noop.pct(.99)), verdict)
	fmt.Fprintf(out, "tlsgate/server (the same socketmap.Server returning the same replies from a precomputed map, as\n"+
		"   the cachehit scenario's no-op milter is the same go-milter deciding nothing): throughput %.3f\n"+
		"   (median of %d rounds)\n",
		res.handlerRatio, c.rounds)
	fmt.Fprintf(out, "process CPU per lookup (client, server and kernel): tlsgate %+v, budgeted %+v against the no-op\n",
		round(res.gate.cpuPer()-res.noop.cpuPer()), round(res.budgeted.cpuPer()-res.noop.cpuPer()))
	fmt.Fprintf(out, "(budgeted: the same answers from a handler without LookupCached, each lookup with its budget's\n"+
		"   context and watchdog, as a cache miss is served: throughput %.3f of the no-op)\n\n", res.budgetedRatio)
	return res, nil
}

func wrap(what string, err error) error {
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	return nil
}

func printLookups(out io.Writer, name string, s *stats) {
	fmt.Fprintf(out, "%-9s %9d lookups %9.0f lookups/s   p50 %8v  p90 %8v  p99 %8v  max %8v   CPU %6v/lookup\n",
		name, s.decisions, s.rate(), round(s.pct(.5)), round(s.pct(.9)), round(s.pct(.99)), round(s.max()), round(s.cpuPer()))
}

// lookupLoad is a closed-loop socketmap load: conns clients, each looking keys up one at
// a time, in turn, for duration.
type lookupLoad struct {
	addr     string
	conns    int
	duration time.Duration
	keys     []string
	check    func(key string, r socketmap.Reply) error
}

func (l lookupLoad) run() (*stats, error) {
	deadline := time.Now().Add(l.duration)
	results := make([]*stats, l.conns)
	errs := make([]error, l.conns)
	var wg sync.WaitGroup
	start, cpu0 := time.Now(), processCPU()
	for w := range l.conns {
		wg.Go(func() {
			st := &stats{lat: make([]time.Duration, 0, 1<<16)}
			results[w] = st
			cl, err := socketmap.Dial("tcp", l.addr)
			if err != nil {
				errs[w] = err
				return
			}
			defer cl.Close()
			cl.Timeout = 10 * time.Second
			st.sessions++
			for i := w * 17; time.Now().Before(deadline); i++ {
				key := l.keys[i%len(l.keys)]
				t0 := time.Now()
				r, err := cl.Lookup("QUERY", key)
				d := time.Since(t0)
				if err == nil {
					err = l.check(key, r)
				}
				if err != nil {
					errs[w] = fmt.Errorf("connection %d: %w", w, err)
					return
				}
				st.add(accepted, d)
			}
		})
	}
	wg.Wait()
	cpu := processCPU() - cpu0
	total := &stats{}
	for _, st := range results {
		total.merge(st)
	}
	total.elapsed, total.cpu = 0, cpu
	total.finish(time.Since(start))
	return total, errors.Join(errs...)
}

// processCPU is the CPU time (user and system) the process has used.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// cpuPer is the process CPU time per lookup (client, server and kernel alike).
func (s *stats) cpuPer() time.Duration {
	if s.decisions == 0 {
		return 0
	}
	return s.cpu / time.Duration(s.decisions)
}

// serveSocketmap serves s on a loopback port until cleanup.
func serveSocketmap(tb testing.TB, s *socketmap.Server) (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	go s.Serve(ln) //nolint:errcheck // ends with ErrServerClosed at cleanup
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		s.Shutdown(ctx) //nolint:errcheck
	})
	return ln.Addr().String(), nil
}

// startNoopSocketmap starts the baseline: the smallest correct socketmap server, written
// by hand as anyone would for a benchmark. It reads each request netstring through a
// buffered reader (length, data, comma; no copy, no allocation) and answers the constant
// netstring "OK x" with one write. No handler, no validation, no timeouts, no limits
// beyond the reader's buffer: only the protocol's I/O.
func startNoopSocketmap(tb testing.TB) (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	conns := map[net.Conn]struct{}{}
	tb.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns[c] = struct{}{}
			mu.Unlock()
			wg.Go(func() {
				defer func() {
					mu.Lock()
					delete(conns, c)
					mu.Unlock()
					c.Close()
				}()
				noopSocketmapConn(c)
			})
		}
	})
	return ln.Addr().String(), nil
}

var noopReply = []byte("4:OK x,")

func noopSocketmapConn(c net.Conn) {
	br := bufio.NewReaderSize(c, 4096)
	for {
		n := 0
		for {
			b, err := br.ReadByte()
			if err != nil {
				return
			}
			if b == ':' {
				break
			}
			if b < '0' || b > '9' || n > 4000 {
				return
			}
			n = n*10 + int(b-'0')
		}
		if _, err := br.Discard(n); err != nil {
			return
		}
		if b, err := br.ReadByte(); err != nil || b != ',' {
			return
		}
		if _, err := c.Write(noopReply); err != nil {
			return
		}
	}
}
