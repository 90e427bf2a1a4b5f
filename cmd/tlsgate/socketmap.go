package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tlsgate/tlsgate/config"
	"github.com/tlsgate/tlsgate/milter"
	"github.com/tlsgate/tlsgate/policy"
	"github.com/tlsgate/tlsgate/policymap"
	"github.com/tlsgate/tlsgate/socketmap"
	"github.com/tlsgate/tlsgate/verify"
)

// socketmapService is the delivery-time TLS policy table (socketmap.listen) of
// `tlsgate serve`. A nil *socketmapService is the socketmap turned off: every method
// does nothing.
type socketmapService struct {
	pm   *policymap.Map
	srv  *socketmap.Server
	done chan error
	v    *verify.Verifier
	log  *slog.Logger
}

// socketmapBackstop bounds a lookup in the protocol server, just below Postfix's
// socketmap timeout (dict_sockmap.c: 100s); the map itself answers at socketmap.timeout.
const socketmapBackstop = 99 * time.Second

// startSocketmap listens on socketmap.listen (milter.Listen: same notation,
// permissions and group handling as milter.listen) and serves the policy table; nil
// when socketmap.listen is empty.
func startSocketmap(cfg *config.Config, v *verify.Verifier, table *policy.Table, m *metrics, log *slog.Logger) (*socketmapService, error) {
	if cfg.Socketmap.Listen == (config.Listen{}) {
		return nil, nil
	}
	ln, err := milter.Listen(milter.ListenConfig{Network: cfg.Socketmap.Listen.Network, Address: cfg.Socketmap.Listen.Address,
		Mode: cfg.Socketmap.SocketMode, Group: cfg.Socketmap.SocketGroup})
	if err != nil {
		return nil, fmt.Errorf("socketmap.listen: %w", err)
	}
	s := &socketmapService{v: v, log: log, done: make(chan error, 1)}
	s.pm = policymap.New(s.mapConfig(cfg, table))
	s.srv = &socketmap.Server{
		Handler: s.pm,
		Log:     log,
		// A backstop only: the map answers TEMP with its reason at socketmap.timeout,
		// which a reload may change (up to Postfix's 100s, config validation).
		Timeout: socketmapBackstop,
	}
	if m != nil {
		obs, err := newSocketmapMetrics(m.reg)
		if err != nil {
			ln.Close()
			return nil, err
		}
		s.srv.Observe = obs
	}
	go func() { s.done <- s.srv.Serve(ln) }()
	def := ""
	if cfg.Socketmap.DefaultPublished {
		def = policy.LevelPublished.String()
	}
	log.Info("socketmap listening", "listen", cfg.Socketmap.Listen.String(), "default_level", def,
		"timeout", cfg.Socketmap.Timeout)
	return s, nil
}

func (s *socketmapService) mapConfig(cfg *config.Config, table *policy.Table) policymap.Config {
	return policymap.Config{
		Policies:         table,
		DefaultPublished: cfg.Socketmap.DefaultPublished,
		Facts:            s.v,
		Timeout:          cfg.Socketmap.Timeout,
		Log:              s.log,
	}
}

// reload applies a reloaded configuration: the policy table, default_level and
// timeout (the listener stays: restartOnly names it).
func (s *socketmapService) reload(cfg *config.Config, fc milter.Config) {
	if s == nil {
		return
	}
	s.pm.SetConfig(s.mapConfig(cfg, fc.Policies.Table))
}

// shutdown lets lookups in progress answer, then closes; it waits for Serve to end.
func (s *socketmapService) shutdown(ctx context.Context) {
	if s == nil {
		return
	}
	if err := s.srv.Shutdown(ctx); err != nil {
		s.srv.Close()
	}
	if err := <-s.done; err != nil && !errors.Is(err, socketmap.ErrServerClosed) {
		s.log.Error("socketmap server stopped", "err", err)
	}
}

// newSocketmapMetrics registers the socketmap's metrics and returns the server's
// Observer feeding them.
func newSocketmapMetrics(reg *prometheus.Registry) (socketmap.Observer, error) {
	requests := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tlsgate_socketmap_requests_total",
		Help: "Socketmap lookups by map name (QUERY, QUERYwithTLSRPT, other) and result (ok, notfound, temp, timeout, perm)."},
		[]string{"map", "result"})
	duration := prometheus.NewHistogram(prometheus.HistogramOpts{Name: "tlsgate_socketmap_request_duration_seconds",
		Help:    "Time from reading a socketmap request to sending its reply.",
		Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}})
	for _, c := range []prometheus.Collector{requests, duration} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	// The label values are fixed words: the client's map name is free text.
	for _, name := range policymap.Names {
		for _, st := range []socketmap.Status{socketmap.StatusOK, socketmap.StatusNotFound, socketmap.StatusTemp} {
			requests.WithLabelValues(name, strings.ToLower(string(st)))
		}
	}
	return func(name string, st socketmap.Status, took time.Duration) {
		if !slices.Contains(policymap.Names, name) {
			name = "other"
		}
		requests.WithLabelValues(name, strings.ToLower(string(st))).Inc()
		duration.Observe(took.Seconds())
	}, nil
}

// printSocketmapConfig shows the socketmap settings in `config check`.
func printSocketmapConfig(w io.Writer, cfg *config.Config) {
	if cfg.Socketmap.Listen == (config.Listen{}) {
		fmt.Fprintln(w, "socketmap: off (socketmap.listen is empty)")
		return
	}
	def := `"" (NOTFOUND: smtp_tls_security_level applies)`
	if cfg.Socketmap.DefaultPublished {
		def = "published"
	}
	fmt.Fprintf(w, "socketmap: %s, default_level %s, timeout %s\n", cfg.Socketmap.Listen, def, cfg.Socketmap.Timeout)
}

// socketmapStatic is what the socketmap answers for a domain as far as the
// configuration alone says; level published is looked up at delivery time.
func socketmapStatic(t *policy.Table, defaultPublished bool, domain string) string {
	k := policymap.Classify(domain)
	if _, published := policymap.Needs(t, defaultPublished, k); published {
		return "published: looked up at delivery (tlsgate check " + domain + " shows the answer)"
	}
	return policymap.Decide(t, defaultPublished, k, nil, nil, false).String()
}

// checkSocketmap is what the socketmap (map QUERY) would answer for domain, from the
// facts `tlsgate check` just gathered.
func checkSocketmap(t *policy.Table, defaultPublished bool, domain string, f *verify.MapFacts) policymap.Answer {
	return policymap.Decide(t, defaultPublished, policymap.Classify(domain), f, nil, false)
}
