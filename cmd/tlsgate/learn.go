package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"sync"
	"time"

	"github.com/spf13/pflag"

	"github.com/tlsgate/tlsgate/config"
	"github.com/tlsgate/tlsgate/learn"
	"github.com/tlsgate/tlsgate/policy"
	"github.com/tlsgate/tlsgate/verify"
)

// learnCmd is `tlsgate learn`: read Postfix logs, probe the domains that were always
// reached with TLS, print a tls_policy proposal (README.md, "Learning policies from
// the mail log"). Exit codes: 0 done; with --diff 1 when an entry got weaker, 2 when a
// probe could not decide for an existing entry; 3 usage or unreadable input.
func learnCmd(ctx context.Context, args, env []string, stdout, stderr io.Writer) int {
	var (
		since   time.Duration
		minDel  int
		asJSON  bool
		diff    string
		workers int
		noProbe bool
		retries int
	)
	cfg, fs, err := loadConfig("learn", args, env, stderr, func(fs *pflag.FlagSet) {
		fs.DurationVar(&since, "since", 0, "count only deliveries in this window before now (e.g. 720h); 0: the whole log")
		fs.IntVar(&minDel, "min-deliveries", 3, "least deliveries to a domain for a proposal")
		fs.BoolVar(&asJSON, "json", false, "print one JSON object")
		fs.StringVar(&diff, "diff", "", "compare the proposal with this tls_policy file (exit 1 when an entry got weaker)")
		fs.IntVar(&workers, "probes", 4, "probes at a time (at most probe.max_concurrent)")
		fs.BoolVar(&noProbe, "no-probe", false, "only read the log: report the history, propose nothing")
		fs.IntVar(&retries, "rate-limit-retries", 30, "times to probe again, a minute apart, domains whose MX addresses hit probe.rate_per_address")
	})
	if err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return 0
		}
		fmt.Fprintln(stderr, "tlsgate:", err)
		return exitUsage
	}
	if minDel < 1 || since < 0 || workers < 1 || retries < 0 {
		fmt.Fprintln(stderr, "tlsgate learn: --min-deliveries and --probes must be at least 1, --since and --rate-limit-retries not negative")
		return exitUsage
	}
	var existing []policy.Entry
	if diff != "" {
		f, err := os.Open(diff)
		if err != nil {
			fmt.Fprintln(stderr, "tlsgate learn:", err)
			return exitUsage
		}
		existing, _, err = policy.ParseFile(f, diff)
		f.Close()
		if err != nil {
			fmt.Fprintln(stderr, "tlsgate learn:", err)
			return exitUsage
		}
	}
	files := fs.Args()
	if len(files) == 0 {
		files = []string{"-"}
	}
	files = learn.SortFiles(files)

	now := time.Now()
	lr := learn.NewLearner(now, time.Local)
	if since > 0 {
		lr.Since = now.Add(-since)
	}
	// A loopback relay is a content filter, unless probe.allow_networks lets probes
	// reach it: then it is a destination (a test bed such as the e2e suite's).
	allowed := cfg.Probe.AllowNetworks
	lr.Local = func(a netip.Addr) bool {
		if !a.IsLoopback() {
			return false
		}
		for _, p := range allowed {
			if p.Contains(a) {
				return false
			}
		}
		return true
	}
	stop := startProgress(stderr, &lr.Stats)
	for _, name := range files {
		r, err := learn.Open(name)
		if err == nil {
			err = lr.Read(r)
			r.Close()
		}
		if err != nil {
			stop()
			fmt.Fprintf(stderr, "tlsgate learn: %s: %v\n", name, err)
			return exitUsage
		}
	}
	stop()
	st := lr.Stats.Snapshot()
	fmt.Fprintf(stderr, "tlsgate learn: %d lines, %d TLS sessions, %d deliveries counted; ignored: %d garbage, %d too long, %d invalid domains, %d to loopback relays (content filters), %d before --since, %d beyond %d domains\n",
		st.Lines, st.TLS, st.Deliveries, st.Garbage, st.TooLong, st.BadDomain, st.Local, st.Old, st.DomainsDropped, learn.MaxDomains)
	if st.Lines > 0 && st.Garbage == st.Lines {
		fmt.Fprintln(stderr, "tlsgate learn: no line had a syslog timestamp and program[pid]; journalctl -o cat has neither: use -o short-iso")
	}

	domains := lr.Domains()
	facts, errs := make([]*verify.Facts, len(domains)), make([]error, len(domains))
	if !noProbe {
		facts, errs, err = probeCandidates(ctx, cfg, stderr, domains, minDel, workers, retries)
	}
	if err != nil {
		fmt.Fprintln(stderr, "tlsgate:", err)
		return exitUsage
	}
	props := make([]*learn.Proposal, 0, len(domains))
	for i, d := range domains {
		p := learn.Propose(d, minDel, facts[i])
		if facts[i] == nil && errs[i] != nil && p.Status == learn.StatusUncertain {
			p.Reason = "not probed: " + errs[i].Error()
		} else if noProbe && p.Status == learn.StatusUncertain {
			p.Reason = "not probed (--no-probe)"
		}
		props = append(props, p)
	}
	var changes []learn.Change
	if diff != "" {
		changes = learn.Diff(existing, props)
	}
	if asJSON {
		out := learn.JSON{Version: 1, Generated: now.UTC(), Files: files, MinDeliveries: minDel,
			Stats: st, Domains: learn.ToJSON(props), Diff: changes}
		if !lr.Since.IsZero() {
			s := lr.Since.UTC()
			out.Since = &s
		}
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		err = enc.Encode(out)
	} else if diff != "" {
		err = learn.WriteDiff(stdout, changes)
	} else {
		err = learn.WriteText(stdout, learn.Header{Generated: now, Files: files, Since: lr.Since, MinDeliveries: minDel}, props)
	}
	if err != nil {
		fmt.Fprintln(stderr, "tlsgate learn:", err)
		return exitUsage
	}
	if diff != "" {
		return learn.DiffExit(changes)
	}
	return 0
}

// probeCandidates probes every candidate domain with the Verifier `tlsgate check` and
// the milter use (the same guard, rate limits, singleflight and cache), at most
// workers at a time and never more than probe.max_concurrent or probe.max_queued;
// facts[i] is nil for a domain that is no candidate or whose probe did not run
// (errs[i] says why).
func probeCandidates(ctx context.Context, cfg *config.Config, stderr io.Writer, domains []*learn.Domain, minDel, workers, retries int) (facts []*verify.Facts, errs []error, err error) {
	facts = make([]*verify.Facts, len(domains))
	errs = make([]error, len(domains))
	var todo []int
	for i, d := range domains {
		if learn.Candidate(d, minDel) {
			todo = append(todo, i)
		}
	}
	if len(todo) == 0 {
		return facts, errs, nil
	}
	v, err := newVerifier(cfg, newLogger(cfg, stderr), nil, nil)
	if err != nil {
		return nil, nil, err
	}
	defer v.Close()
	workers = min(workers, cfg.Probe.MaxConcurrent, cfg.Probe.MaxQueued, len(todo))
	fmt.Fprintf(stderr, "tlsgate learn: probing %d candidate domains, %d at a time\n", len(todo), workers)
	for round := 0; ; round++ {
		probeAll(ctx, todo, workers, func(i int) {
			if round == 0 {
				facts[i], _, errs[i] = v.Facts(ctx, domains[i].Name)
			} else {
				// The cache holds the rate-limited facts: probe afresh.
				facts[i], errs[i] = v.Probe(ctx, domains[i].Name), nil
			}
		})
		// Many domains share MX addresses (hosted mail): past probe.rate_per_address
		// a minute, probes of an address are refused, and those domains would come
		// out inconclusive. Probe them again a minute later, within the limit.
		var limited []int
		for _, i := range todo {
			if rateLimited(facts[i]) {
				limited = append(limited, i)
			}
		}
		if len(limited) == 0 || round >= retries || ctx.Err() != nil {
			if len(limited) > 0 {
				fmt.Fprintf(stderr, "tlsgate learn: %d domains still rate-limited (probe.rate_per_address %d a minute per MX address): inconclusive\n", len(limited), cfg.Probe.RatePerAddress)
			}
			return facts, errs, nil
		}
		fmt.Fprintf(stderr, "tlsgate learn: %d domains share MX addresses past probe.rate_per_address (%d a minute); probing them again in %s\n", len(limited), cfg.Probe.RatePerAddress, learnRetryAfter)
		select {
		case <-time.After(learnRetryAfter):
		case <-ctx.Done():
		}
		todo = limited
	}
}

// learnRetryAfter is the pause before rate-limited domains are probed again: the
// window of probe.rate_per_address.
const learnRetryAfter = time.Minute

// probeAll calls probe(i) for each of todo, workers at a time.
func probeAll(ctx context.Context, todo []int, workers int, probe func(int)) {
	next := make(chan int)
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				probe(i)
			}
		}()
	}
	for _, i := range todo {
		if ctx.Err() != nil {
			break
		}
		next <- i
	}
	close(next)
	wg.Wait()
}

func rateLimited(f *verify.Facts) bool {
	if f == nil {
		return false
	}
	for _, a := range f.Attempts {
		if a.RateLimited {
			return true
		}
	}
	return false
}

// startProgress prints a progress line every second while logs are read, when stderr
// is a terminal; the returned function stops it and clears the line.
func startProgress(stderr io.Writer, st *learn.Stats) func() {
	f, ok := stderr.(*os.File)
	if !ok {
		return func() {}
	}
	if fi, err := f.Stat(); err != nil || fi.Mode()&os.ModeCharDevice == 0 {
		return func() {}
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(time.Second)
		defer t.Stop()
		start := time.Now()
		for {
			select {
			case <-done:
				fmt.Fprint(f, "\r\x1b[K")
				return
			case now := <-t.C:
				lines := st.Lines.Load()
				secs := now.Sub(start).Seconds()
				fmt.Fprintf(f, "\r\x1b[Ktlsgate learn: %d lines, %d MB, %.0f lines/s, %d deliveries",
					lines, st.Bytes.Load()>>20, float64(lines)/secs, st.Deliveries.Load())
			}
		}
	}()
	return func() {
		close(done)
		wg.Wait()
	}
}
