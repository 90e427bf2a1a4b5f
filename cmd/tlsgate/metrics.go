package main

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"runtime"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/tlsgate/tlsgate/internal/cache"
	"github.com/tlsgate/tlsgate/internal/dnsx"
	"github.com/tlsgate/tlsgate/internal/sharedcache"
	"github.com/tlsgate/tlsgate/internal/smtpprobe"
	"github.com/tlsgate/tlsgate/milter"
	"github.com/tlsgate/tlsgate/verify"
)

// metrics are tlsgate's Prometheus metrics (naming: prometheus.io/docs/practices/naming).
// It implements verify.Events and records milter decisions.
type metrics struct {
	reg            *prometheus.Registry
	decisions      *prometheus.CounterVec
	sessions       *prometheus.HistogramVec
	cacheLookups   *prometheus.CounterVec
	probesRunning  prometheus.Gauge
	rateLimited    prometheus.Counter
	overloaded     prometheus.Counter
	postureChanges *prometheus.CounterVec
	verdictChanges *prometheus.CounterVec
	reloads        *prometheus.CounterVec
	webRequests    *prometheus.CounterVec
	refreshes      *prometheus.CounterVec
	// last remembers each (domain, level)'s last status to count verdict changes.
	last *cache.Cache[string]
	// The shared tier's, registered only when cache.shared.url is set (registerShared).
	sharedRequests      *prometheus.CounterVec
	sharedRefused       *prometheus.CounterVec
	sharedUp            prometheus.Gauge
	sharedInvalidations prometheus.Counter
}

func newMetrics() (*metrics, error) {
	last, err := cache.New[string](100000)
	if err != nil {
		return nil, err
	}
	m := &metrics{
		reg: prometheus.NewRegistry(),
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tlsgate_decisions_total",
			Help: "RCPT decisions by action (accept, tempfail, reject), required level and reason (none for a pass, skipped when the recipient was not checked)."},
			[]string{"action", "level", "reason"}),
		sessions: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "tlsgate_probe_duration_seconds",
			Help:    "Duration of one SMTP probe session with one MX address, by outcome.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}},
			[]string{"outcome"}),
		cacheLookups: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tlsgate_cache_lookups_total",
			Help: "Verdict cache lookups by result (hit, miss)."}, []string{"result"}),
		probesRunning: prometheus.NewGauge(prometheus.GaugeOpts{Name: "tlsgate_probes_in_flight",
			Help: "Domain probes running now."}),
		rateLimited: prometheus.NewCounter(prometheus.CounterOpts{Name: "tlsgate_probes_rate_limited_total",
			Help: "SMTP sessions not opened because the MX address was probed probe.rate_per_address times in the last minute."}),
		overloaded: prometheus.NewCounter(prometheus.CounterOpts{Name: "tlsgate_probes_overloaded_total",
			Help: "Probes refused because probe.max_queued probes were waiting."}),
		postureChanges: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tlsgate_posture_changes_total",
			Help: "Domains whose TLS posture changed between two probes, by what changed (starttls, certificate, tlsa, mta-sts)."},
			[]string{"what"}),
		verdictChanges: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tlsgate_verdict_changes_total",
			Help: "Verdicts for a (domain, level) that differ from the previous one, by previous and new status."},
			[]string{"from", "to"}),
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tlsgate_config_reloads_total",
			Help: "Configuration reloads by result (success, failure)."}, []string{"result"}),
		webRequests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tlsgate_web_requests_total",
			Help: "Requests to the check page and API by endpoint (check, policy, page, static, other) and result (ok or the error code answered)."},
			[]string{"endpoint", "result"}),
		refreshes: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tlsgate_refresh_total",
			Help: "Refresh-ahead probes of cached destinations by result (refreshed, busy, rate-limited, error)."}, []string{"result"}),
		last: last,
	}
	build := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "tlsgate_build_info",
		Help: "Build information; always 1."}, []string{"version", "goversion"})
	build.WithLabelValues(version, runtime.Version()).Set(1)
	for _, c := range []prometheus.Collector{m.decisions, m.sessions, m.cacheLookups, m.probesRunning,
		m.rateLimited, m.overloaded, m.postureChanges, m.verdictChanges, m.reloads, m.webRequests, m.refreshes, build,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{})} {
		if err := m.reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

var _ verify.Events = (*metrics)(nil)

var _ sharedcache.Events = (*metrics)(nil)

// registerShared adds the shared tier's metrics: only a fleet member exports them.
func (m *metrics) registerShared() error {
	m.sharedRequests = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tlsgate_shared_cache_requests_total",
		Help: "Shared cache tier operations by op (get, put, lease, ratelimit, posture, policy_get, policy_put, purge, list) and result (hit, miss, ok, busy, denied, refused, error, timeout, unavailable)."},
		[]string{"op", "result"})
	m.sharedRefused = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tlsgate_shared_cache_auth_failures_total",
		Help: "Shared cache entries refused, never trusted, by reason (bad-mac, version, oversize, malformed)."},
		[]string{"reason"})
	m.sharedUp = prometheus.NewGauge(prometheus.GaugeOpts{Name: "tlsgate_shared_cache_up",
		Help: "1 while the shared cache server answers, 0 during an outage (the host then uses its local cache and own probes)."})
	m.sharedInvalidations = prometheus.NewCounter(prometheus.CounterOpts{Name: "tlsgate_shared_cache_invalidations_total",
		Help: "Purges received from the fleet and applied to the local cache (and resubscriptions, which empty it)."})
	for _, c := range []prometheus.Collector{m.sharedRequests, m.sharedRefused, m.sharedUp, m.sharedInvalidations} {
		if err := m.reg.Register(c); err != nil {
			return err
		}
	}
	return nil
}

func (m *metrics) SharedRequest(op, result string) {
	m.sharedRequests.WithLabelValues(op, result).Inc()
}
func (m *metrics) SharedRefused(reason string) { m.sharedRefused.WithLabelValues(reason).Inc() }
func (m *metrics) SharedInvalidation()         { m.sharedInvalidations.Inc() }
func (m *metrics) SharedUp(up bool) {
	if up {
		m.sharedUp.Set(1)
	} else {
		m.sharedUp.Set(0)
	}
}

func (m *metrics) CacheLookup(hit bool) {
	if hit {
		m.cacheLookups.WithLabelValues("hit").Inc()
	} else {
		m.cacheLookups.WithLabelValues("miss").Inc()
	}
}
func (m *metrics) ProbeRunning(delta int) { m.probesRunning.Add(float64(delta)) }
func (m *metrics) Session(o smtpprobe.Outcome, d time.Duration) {
	m.sessions.WithLabelValues(o.String()).Observe(d.Seconds())
}
func (m *metrics) RateLimited()                  { m.rateLimited.Inc() }
func (m *metrics) Overloaded()                   { m.overloaded.Inc() }
func (m *metrics) PostureChanged(_, what string) { m.postureChanges.WithLabelValues(what).Inc() }

var _ verify.RefreshEvents = (*metrics)(nil)

// Refresh counts one refresh-ahead probe (verify.RefreshEvents).
func (m *metrics) Refresh(result string) { m.refreshes.WithLabelValues(result).Inc() }

// countReload counts a configuration reload; m may be nil.
func (m *metrics) countReload(ok bool) {
	if m == nil {
		return
	}
	if ok {
		m.reloads.WithLabelValues("success").Inc()
	} else {
		m.reloads.WithLabelValues("failure").Inc()
	}
}

// decision records one RCPT decision (milter.Config.OnDecision).
func (m *metrics) decision(d milter.Decision) {
	level, reason := "skipped", "skipped"
	if d.Skip == "" {
		level, reason = d.Verdict.Level.String(), string(d.Verdict.Reason)
		if d.Verdict.Status == verify.StatusPass {
			// A pass may carry a note (MTA-STS testing: what enforce would have failed
			// for; sts-policy-fetch-error): the header and the log keep it, the label
			// says the recipient passed.
			reason = "none"
		}
	}
	m.decisions.WithLabelValues(d.Outcome.String(), level, reason).Inc()
	if !d.Checked || d.Verdict.Reason == verify.ReasonVerificationInProgress || d.Verdict.Reason == verify.ReasonOverloaded {
		return // no new finding about the domain
	}
	key := d.Verdict.Domain + "|" + level
	now := d.Verdict.Status.String()
	if before, ok := m.last.Get(key); ok && before != now {
		m.verdictChanges.WithLabelValues(before, now).Inc()
	}
	m.last.Set(key, now, 7*24*time.Hour)
}

// serveMetrics serves /metrics, /healthz (the process is up) and /readyz (the milter
// listens and the resolver answers) on addr until ctx ends.
func serveMetrics(ctx context.Context, addr string, m *metrics, resolver dnsx.Resolver, listening *atomic.Bool, log *slog.Logger) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, r *http.Request) {
		if !listening.Load() {
			http.Error(w, "milter not listening", http.StatusServiceUnavailable)
			return
		}
		qctx, cancel := context.WithTimeout(r.Context(), 3*time.Second)
		defer cancel()
		// "invalid." (RFC 6761 §6.4): any working resolver answers it, NXDOMAIN, at
		// once; SERVFAIL or silence means lookups fail.
		if _, err := resolver.Lookup(qctx, "invalid.", dns.TypeSOA); err != nil {
			http.Error(w, "resolver not answering: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ready\n"))
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("metrics listener stopped", "err", err)
		}
	}()
	return nil
}

// webRequest counts one request to the check page or API; m may be nil.
func (m *metrics) webRequest(endpoint, result string) {
	if m == nil {
		return
	}
	m.webRequests.WithLabelValues(endpoint, result).Inc()
}
