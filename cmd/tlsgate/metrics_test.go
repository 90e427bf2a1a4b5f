package main

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"os"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/tlsgate/tlsgate/internal/dnsx"
	"github.com/tlsgate/tlsgate/internal/fake"
	"github.com/tlsgate/tlsgate/internal/smtpprobe"
	"github.com/tlsgate/tlsgate/milter"
	"github.com/tlsgate/tlsgate/policy"
	"github.com/tlsgate/tlsgate/verify"
)

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestMetricsEndpoints scrapes /metrics after recording events and decisions, and
// checks /healthz and /readyz.
func TestMetricsEndpoints(t *testing.T) {
	t.Parallel()
	m, err := newMetrics()
	if err != nil {
		t.Fatal(err)
	}
	d := fake.StartDNS(t)
	resolver, err := dnsx.NewClient(d.Addr(), time.Second, false)
	if err != nil {
		t.Fatal(err)
	}
	addr := freeAddr(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var listening atomic.Bool
	if err := serveMetrics(ctx, addr, m, resolver, &listening, slog.New(slog.DiscardHandler)); err != nil {
		t.Fatal(err)
	}

	pass := verify.Verdict{Domain: "example.test", Level: policy.LevelEncrypt, Status: verify.StatusPass}
	fail := verify.Verdict{Domain: "example.test", Level: policy.LevelEncrypt, Status: verify.StatusFail, Reason: verify.ReasonSTARTTLSNotSupported}
	m.decision(milter.Decision{Outcome: milter.Accept, Checked: true, Verdict: pass})
	m.decision(milter.Decision{Outcome: milter.Reject, Checked: true, Verdict: fail})
	m.decision(milter.Decision{Outcome: milter.Accept, Skip: "address literal"})
	// Passes with a note: MTA-STS testing (the reason enforce would have failed for),
	// and a policy that could not be fetched.
	stsTesting := verify.Verdict{Domain: "sts.test", Level: policy.LevelPublished, Status: verify.StatusPass, Mechanism: verify.MechMTASTS,
		Reason: verify.ReasonSTARTTLSNotSupported}
	fetchErr := verify.Verdict{Domain: "sts2.test", Level: policy.LevelPublished, Status: verify.StatusPass, Reason: verify.ReasonSTSFetchError}
	m.decision(milter.Decision{Outcome: milter.Accept, Checked: true, Verdict: stsTesting})
	m.decision(milter.Decision{Outcome: milter.Accept, Checked: true, Verdict: fetchErr})
	m.CacheLookup(true)
	m.CacheLookup(false)
	m.ProbeRunning(1)
	m.Session(smtpprobe.OutcomeTLS, 30*time.Millisecond)
	m.RateLimited()
	m.Overloaded()
	m.PostureChanged("example.test", "certificate")
	m.countReload(false)

	code, body := get(t, "http://"+addr+"/metrics")
	if code != http.StatusOK {
		t.Fatalf("/metrics: %d", code)
	}
	if strings.Contains(body, `action="accept",level="published",reason="s`) {
		t.Errorf("a pass counted under a failure reason:\n%s", body)
	}
	for _, want := range []string{
		`tlsgate_decisions_total{action="accept",level="encrypt",reason="none"} 1`,
		`tlsgate_decisions_total{action="reject",level="encrypt",reason="starttls-not-supported"} 1`,
		`tlsgate_decisions_total{action="accept",level="skipped",reason="skipped"} 1`,
		`tlsgate_decisions_total{action="accept",level="published",reason="none"} 2`,
		`tlsgate_verdict_changes_total{from="pass",to="fail"} 1`,
		`tlsgate_cache_lookups_total{result="hit"} 1`,
		`tlsgate_cache_lookups_total{result="miss"} 1`,
		`tlsgate_probes_in_flight 1`,
		`tlsgate_probe_duration_seconds_count{outcome="tls"} 1`,
		`tlsgate_probes_rate_limited_total 1`,
		`tlsgate_probes_overloaded_total 1`,
		`tlsgate_posture_changes_total{what="certificate"} 1`,
		`tlsgate_config_reloads_total{result="failure"} 1`,
		`tlsgate_build_info{goversion="go`,
		`go_goroutines `,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}

	if code, _ := get(t, "http://"+addr+"/healthz"); code != http.StatusOK {
		t.Errorf("/healthz: %d", code)
	}
	if code, body := get(t, "http://"+addr+"/readyz"); code != http.StatusServiceUnavailable || !strings.Contains(body, "not listening") {
		t.Errorf("/readyz before listening: %d %q", code, body)
	}
	listening.Store(true)
	if code, body := get(t, "http://"+addr+"/readyz"); code != http.StatusOK {
		t.Errorf("/readyz: %d %q", code, body)
	}
	d.SetRcode("invalid.", dns.TypeSOA, dns.RcodeServerFailure)
	if code, body := get(t, "http://"+addr+"/readyz"); code != http.StatusServiceUnavailable || !strings.Contains(body, "resolver") {
		t.Errorf("/readyz with a failing resolver: %d %q", code, body)
	}
}

// TestGrafanaDashboard: the sample dashboard is valid JSON and uses only metrics tlsgate
// exports.
func TestGrafanaDashboard(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile("../../contrib/grafana/tlsgate-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Panels []struct {
			Title   string
			Targets []struct{ Expr string }
		}
	}
	if err := json.Unmarshal(b, &dash); err != nil {
		t.Fatal(err)
	}
	m, err := newMetrics()
	if err != nil {
		t.Fatal(err)
	}
	families, err := m.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	known := map[string]bool{}
	for _, f := range families {
		known[f.GetName()] = true
	}
	// Metrics with labels appear in Gather only once they have a value.
	for _, name := range []string{"tlsgate_decisions_total", "tlsgate_probe_duration_seconds", "tlsgate_cache_lookups_total",
		"tlsgate_posture_changes_total", "tlsgate_verdict_changes_total", "tlsgate_config_reloads_total"} {
		known[name] = true
	}
	re := regexp.MustCompile(`tlsgate_[a-z_]+`)
	if len(dash.Panels) == 0 {
		t.Fatal("no panels")
	}
	for _, p := range dash.Panels {
		for _, tg := range p.Targets {
			for _, name := range re.FindAllString(tg.Expr, -1) {
				base := strings.TrimSuffix(strings.TrimSuffix(name, "_bucket"), "_count")
				if !known[base] {
					t.Errorf("panel %q uses %s, which tlsgate does not export", p.Title, name)
				}
			}
		}
	}
}
