package main

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	gomilter "github.com/d--j/go-milter"
	"github.com/miekg/dns"

	"github.com/tlsgate/tlsgate/internal/fake"
	"github.com/tlsgate/tlsgate/socketmap"
)

// This file runs the real `tlsgate serve` binary, as an operator does, against fake DNS
// and SMTP servers on 127.0.0.0/8, and talks the milter protocol to it as Postfix does
// (go-milter's client). It checks what the operator sees from outside: /metrics, the
// log lines, the version.

// buildBinary builds cmd/tlsgate as a packager would, without VCS stamping and with
// the version and revision given by -ldflags -X.
func buildBinary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "tlsgate")
	cmd := exec.Command("go", "build", "-buildvcs=false", "-ldflags", "-X main.version=blackbox -X main.revision=0123abcd", "-o", bin, ".")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// daemon is a running `tlsgate serve`.
type daemon struct {
	t       *testing.T
	cmd     *exec.Cmd
	log     *fake.Buffer
	metrics string // http://HOST:PORT
	milter  string // HOST:PORT
}

func startDaemon(t *testing.T, bin, config string) *daemon {
	t.Helper()
	d := &daemon{t: t, log: &fake.Buffer{}}
	d.cmd = exec.Command(bin, "serve", "--config", config)
	d.cmd.Env = []string{} // no TLSGATE_* from the test's environment
	d.cmd.Stdout, d.cmd.Stderr = d.log, d.log
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- d.cmd.Wait() }()
	t.Cleanup(func() {
		_ = d.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-exited:
			if err != nil {
				t.Errorf("tlsgate serve exited with %v", err)
			}
		case <-time.After(15 * time.Second):
			_ = d.cmd.Process.Kill()
			<-exited
			t.Error("tlsgate serve did not stop on SIGTERM")
		}
	})
	d.waitLog(`"msg":"tlsgate started"`, 1, exited)
	return d
}

// waitLog waits until the log has want n times.
func (d *daemon) waitLog(want string, n int, exited ...chan error) {
	d.t.Helper()
	for deadline := time.Now().Add(20 * time.Second); strings.Count(d.log.String(), want) < n; time.Sleep(20 * time.Millisecond) {
		if len(exited) > 0 {
			select {
			case err := <-exited[0]:
				d.t.Fatalf("tlsgate serve exited: %v\n%s", err, d.log)
			default:
			}
		}
		if time.Now().After(deadline) {
			d.t.Fatalf("the log never had %q %d times:\n%s", want, n, d.log)
		}
	}
}

// scrape reads /metrics: every sample by its name and labels as written
// (`name{a="x",b="y"}`).
func (d *daemon) scrape() map[string]float64 {
	d.t.Helper()
	code, body := get(d.t, d.metrics+"/metrics")
	if code != 200 {
		d.t.Fatalf("/metrics: %d", code)
	}
	samples := map[string]float64{}
	for _, line := range strings.Split(body, "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			d.t.Fatalf("/metrics line %q: %v", line, err)
		}
		samples[line[:i]] = v
	}
	return samples
}

// waitMetric waits until the sample is want, up to a timeout; it reports whether it was.
func (d *daemon) waitMetric(sample string, want float64, timeout time.Duration) bool {
	d.t.Helper()
	for deadline := time.Now().Add(timeout); d.scrape()[sample] != want; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			d.t.Errorf("%s never was %v", sample, want)
			return false
		}
	}
	return true
}

// rcpt opens one SMTP session's milter connection, as Postfix's smtpd does, and
// returns the answer to RCPT TO:<addr> for a recipient of transport mailer:
// "accept" or the reply's code and text.
func (d *daemon) rcpt(addr, mailer string) string {
	d.t.Helper()
	c := gomilter.NewClient("tcp", d.milter, gomilter.WithReadTimeout(30*time.Second), gomilter.WithWriteTimeout(10*time.Second))
	macros := gomilter.NewMacroBag()
	macros.Set(gomilter.MacroQueueId, "4XyZ1")
	macros.Set(gomilter.MacroMailAddr, "sender@client.test")
	s, err := c.Session(macros)
	if err != nil {
		d.t.Fatalf("milter session: %v", err)
	}
	defer s.Close()
	if _, err := s.Conn("client.test", gomilter.FamilyInet, 40000, "192.0.2.10"); err != nil {
		d.t.Fatal(err)
	}
	if _, err := s.Helo("client.test"); err != nil {
		d.t.Fatal(err)
	}
	if _, err := s.Mail("<sender@client.test>", ""); err != nil {
		d.t.Fatal(err)
	}
	macros.Set(gomilter.MacroRcptMailer, mailer)
	macros.Set(gomilter.MacroRcptAddr, addr)
	_, domain, _ := strings.Cut(addr, "@")
	macros.Set(gomilter.MacroRcptHost, domain)
	act, err := s.Rcpt("<"+addr+">", "")
	if err != nil {
		d.t.Fatalf("RCPT TO:<%s>: %v", addr, err)
	}
	switch act.Type {
	case gomilter.ActionContinue:
		return "accept"
	case gomilter.ActionRejectWithCode:
		return act.SMTPReply // "451 4.7.0 ..."
	}
	return act.String()
}

// TestBlackBoxMetrics drives a real `tlsgate serve` through a probe, a cache hit, a rate
// limit, an overload, a posture change, a verdict change, a skipped recipient and a
// reload, and checks that every metric the README lists moved with the right labels,
// that the Grafana dashboard uses only metrics that moved, and that every log line is
// JSON with each key once (the library's own warnings included).
func TestBlackBoxMetrics(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	t.Parallel()
	bin := buildBinary(t)

	// Packagers stamp the revision with -ldflags -X; -buildvcs=false records none.
	if out, err := exec.Command(bin, "version").Output(); err != nil || !strings.HasPrefix(string(out), "tlsgate blackbox go") || !strings.Contains(string(out), " revision 0123abcd") {
		t.Errorf("tlsgate version: %q, %v; want the stamped version and revision", out, err)
	}

	// The world. Every MX listens on the same port (probe.port) at its own address.
	ca := fake.NewCA(t, "Root")
	dnsSrv := fake.StartDNS(t)
	dnsSrv.SetAllAuthentic(true) // a validating resolver on loopback: DANE applies
	goodCert := ca.Issue(t, fake.CertOptions{DNSNames: []string{"mx.good.test"}})
	good := fake.StartSMTP(t, "127.0.0.81", fake.Behavior{Hostname: "mx.good.test", Cert: &goodCert})
	port := good.Addr().Port()
	daneCert := fake.SelfSigned(t, fake.CertOptions{DNSNames: []string{"mx.dane.test"}})
	fake.StartSMTPPort(t, "127.0.0.82", port, fake.Behavior{Hostname: "mx.dane.test", Cert: &daneCert})
	key1 := fake.SelfSigned(t, fake.CertOptions{DNSNames: []string{"mx.posture.test"}})
	key2 := fake.SelfSigned(t, fake.CertOptions{DNSNames: []string{"mx.posture.test"}})
	fake.StartSMTPPort(t, "127.0.0.83", port, fake.Behavior{Hostname: "mx.posture.test", Cert: &key1})
	fake.StartSMTPPort(t, "127.0.0.84", port, fake.Behavior{Hostname: "mx.posture.test", Cert: &key2})
	fake.StartSMTPPort(t, "127.0.0.85", port, fake.Behavior{Hostname: "mx.posture.test", NoStartTLS: true})
	fake.StartSMTPPort(t, "127.0.0.86", port, fake.Behavior{Tarpit: true})
	// A slow MX: a probe (2 s) outlasts the cache.fail_ttl (1 s) of its self-signed
	// pass, so its refresh is still running when the facts expire. Two addresses: the
	// refresh probes the second (a result for the first would be reused).
	slowCert := fake.SelfSigned(t, fake.CertOptions{DNSNames: []string{"mx.slow.test"}})
	for _, ip := range []string{"127.0.0.87", "127.0.0.88"} {
		fake.StartSMTPPort(t, ip, port, fake.Behavior{Hostname: "mx.slow.test", Cert: &slowCert, BannerDelay: 2 * time.Second})
	}
	tlsa := func(host string) string {
		return fake.TLSA("_"+strconv.Itoa(int(port))+"._tcp."+host+".", 3, 1, 1, daneCert.Leaf)
	}
	dnsSrv.Add(t,
		"good.test. 60 IN MX 10 mx.good.test.", "mx.good.test. 60 IN A 127.0.0.81",
		// Two MX hosts on one address, each with TLSA: two sessions (SNI differs), and
		// probe.rate_per_address is 1.
		"dane1.test. 60 IN MX 10 mx.dane1.test.", "mx.dane1.test. 60 IN A 127.0.0.82", tlsa("mx.dane1.test"),
		"dane2.test. 60 IN MX 10 mx.dane2.test.", "mx.dane2.test. 60 IN A 127.0.0.82", tlsa("mx.dane2.test"),
		"posture.test. 60 IN MX 10 mx.posture.test.", "mx.posture.test. 60 IN A 127.0.0.83",
		"tarpit1.test. 60 IN MX 10 mx.tarpit.test.", "tarpit2.test. 60 IN MX 10 mx.tarpit.test.",
		"tarpit3.test. 60 IN MX 10 mx.tarpit.test.", "mx.tarpit.test. 60 IN A 127.0.0.86",
		"slow.test. 60 IN MX 10 mx.slow.test.", "mx.slow.test. 60 IN A 127.0.0.87")

	dir := t.TempDir()
	milterAddr, metricsAddr, mapAddr, webAddr := freeAddr(t), freeAddr(t), freeAddr(t), freeAddr(t)
	tokens := filepath.Join(dir, "web-tokens")
	if err := os.WriteFile(tokens, []byte("portal "+webTestToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var policies strings.Builder
	for _, domain := range []string{"good.test", "dane1.test", "dane2.test", "posture.test", "tarpit1.test", "tarpit2.test", "tarpit3.test", "slow.test"} {
		fmt.Fprintf(&policies, "  - domain: %s\n    level: encrypt\n", domain)
	}
	config := filepath.Join(dir, "tlsgate.yaml")
	yaml := fmt.Sprintf(`milter:
  listen: inet:%s
  rcpt_timeout: 1s
dns:
  resolver: %s
probe:
  port: %d
  helo: probe.test
  timeout: 4s
  ca_file: %s
  allow_networks: [127.0.0.0/8]
  max_concurrent: 1
  max_queued: 1
  rate_per_address: 1
cache:
  fail_ttl: 1s   # self-signed passes are cached for fail_ttl: posture.test is probed again
  pass_ttl: 4s   # good.test, asked for twice, is refreshed 2s after its probe (refresh_ahead)
metrics:
  listen: %s
socketmap:
  listen: inet:%s
  default_level: published
web:
  listen: %s
  tokens_file: %s
log:
  level: debug
  format: json
policies:
%s`, milterAddr, dnsSrv.Addr(), port, ca.WritePEM(t, dir), metricsAddr, mapAddr, webAddr, tokens, policies.String())
	if err := os.WriteFile(config, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	d := startDaemon(t, bin, config)
	d.metrics, d.milter = "http://"+metricsAddr, milterAddr

	// expect sends RCPT TO:<addr> and checks the answer; like a sender it tries again
	// after "in progress" (a probe slower than rcpt_timeout on a busy machine).
	expect := func(addr, want string) {
		t.Helper()
		got := d.rcpt(addr, "smtp")
		for try := 0; try < 20 && strings.Contains(got, "is in progress") && !strings.Contains(want, "in progress"); try++ {
			time.Sleep(250 * time.Millisecond)
			got = d.rcpt(addr, "smtp")
		}
		if !strings.HasPrefix(got, want) {
			t.Errorf("RCPT TO:<%s>: %q; want %q", addr, got, want)
		}
	}
	// A probe, then a cache hit, which schedules a refresh-ahead probe.
	expect("user@good.test", "accept")
	expect("user@good.test", "accept")
	d.waitMetric(`tlsgate_refresh_total{result="refreshed"}`, 1, 10*time.Second)
	// A recipient that is not checked.
	if got := d.rcpt("root@local.test", "local"); got != "accept" {
		t.Errorf("local recipient: %q", got)
	}
	// The rate limit: the second MX host's session to the same address is refused.
	expect("user@dane1.test", "accept")
	expect("user@dane2.test", "451 4.7.5")

	// A posture change: the MX host's certificate (and address) changes between two
	// probes; then it stops offering STARTTLS, and the verdict changes too.
	expect("user@posture.test", "accept")
	for _, next := range []string{"127.0.0.84", "127.0.0.85"} {
		dnsSrv.Remove("mx.posture.test.", dns.TypeA)
		dnsSrv.Add(t, "mx.posture.test. 60 IN A "+next)
		time.Sleep(1100 * time.Millisecond) // cache.fail_ttl
		want := "accept"
		if next == "127.0.0.85" {
			want = "550 5.7.5"
		}
		expect("user@posture.test", want)
	}

	// An overload: one probe runs (the tarpit holds it for probe.timeout), one waits,
	// the next is refused at once.
	var wg sync.WaitGroup
	inFlight := false
	for _, domain := range []string{"tarpit1.test", "tarpit2.test"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if got := d.rcpt("user@"+domain, "smtp"); !strings.HasPrefix(got, "451 4.7.0") || !strings.Contains(got, "is in progress") {
				t.Errorf("RCPT TO:<user@%s>: %q; want 451 4.7.0 in progress", domain, got)
			}
		}()
		if domain == "tarpit1.test" {
			inFlight = d.waitMetric("tlsgate_probes_in_flight", 1, 3*time.Second)
		} else {
			time.Sleep(300 * time.Millisecond)
		}
	}
	if got := d.rcpt("user@tarpit3.test", "smtp"); !strings.HasPrefix(got, "451 4.7.0") || !strings.Contains(got, "too many checks are waiting") {
		t.Errorf("RCPT TO:<user@tarpit3.test>: %q; want 451 4.7.0 overloaded", got)
	}
	wg.Wait()
	d.waitMetric(`tlsgate_probe_duration_seconds_count{outcome="timeout"}`, 1, 20*time.Second)

	// The socketmap, as Postfix's SMTP client asks it: a configured entry, a domain at
	// published (dane1.test has usable TLSA: dane), and a map it does not serve.
	sm, err := socketmap.Dial("tcp", mapAddr)
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []struct{ name, key, want string }{
		{"QUERY", "good.test", "OK encrypt"},
		{"QUERYwithTLSRPT", "unconfigured.test", "NOTFOUND "},
		{"TLSPOL", "good.test", "PERM "},
	} {
		if r, err := sm.Lookup(q.name, q.key); err != nil || !strings.HasPrefix(r.String(), q.want) {
			t.Errorf("socketmap %s %s: %v, %v; want %q", q.name, q.key, r, err, q.want)
		}
	}
	sm.Close()

	// The check API: good.test from the cache, and a request without a token.
	if code, body, _ := webGet(t, "http://"+webAddr+"/api/v1/check?domain=good.test", webTestToken); code != 200 || !strings.Contains(body, `"status": "pass"`) {
		t.Errorf("check API: %d %s", code, body)
	}
	if code, _, _ := webGet(t, "http://"+webAddr+"/?domain=good.test", ""); code != 401 {
		t.Errorf("check page without a token: %d; want 401", code)
	}

	// Stale while revalidate: slow.test is asked for right after its probe (a hit,
	// which starts its refresh at once: the facts' TTL is 1 s, the probe of its new
	// address takes 2 s), so RCPTs after the expiry are answered from the expired
	// facts while the refresh runs (tlsgate_refresh_total{result="stale"}) rather than
	// "in progress".
	expect("user@slow.test", "accept")
	dnsSrv.Remove("mx.slow.test.", dns.TypeA)
	dnsSrv.Add(t, "mx.slow.test. 60 IN A 127.0.0.88")
	for end := time.Now().Add(3 * time.Second); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
		if got := d.rcpt("user@slow.test", "smtp"); got != "accept" && !strings.Contains(got, "is in progress") {
			t.Errorf("RCPT TO:<user@slow.test> while refreshing: %q", got)
		}
	}

	// A reload, and a client that never negotiates (a go-milter warning).
	if err := d.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	c, err := net.Dial("tcp", milterAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	d.waitLog(`"msg":"configuration reloaded"`, 1)
	d.waitLog(`"msg":"milter library"`, 1)

	// Every metric of the README moved, with these labels.
	moved := map[string][]string{
		"tlsgate_decisions_total": {
			`{action="accept",level="encrypt",reason="none"}`,
			`{action="reject",level="encrypt",reason="starttls-not-supported"}`,
			`{action="tempfail",level="encrypt",reason="rate-limited"}`,
			`{action="tempfail",level="encrypt",reason="in-progress"}`,
			`{action="tempfail",level="encrypt",reason="overloaded"}`,
			`{action="accept",level="skipped",reason="skipped"}`,
		},
		"tlsgate_probe_duration_seconds_count": {`{outcome="tls"}`, `{outcome="no-starttls"}`, `{outcome="timeout"}`},
		"tlsgate_cache_lookups_total":          {`{result="hit"}`, `{result="miss"}`},
		"tlsgate_probes_rate_limited_total":    {""},
		"tlsgate_probes_overloaded_total":      {""},
		"tlsgate_verdict_changes_total":        {`{from="pass",to="fail"}`},
		"tlsgate_posture_changes_total":        {`{what="certificate"}`, `{what="starttls"}`},
		"tlsgate_config_reloads_total":         {`{result="success"}`},
		"tlsgate_refresh_total":                {`{result="refreshed"}`, `{result="stale"}`},
		"tlsgate_socketmap_requests_total": {`{map="QUERY",result="ok"}`, `{map="QUERYwithTLSRPT",result="notfound"}`,
			`{map="other",result="perm"}`},
		"tlsgate_socketmap_request_duration_seconds_count": {""},
		"tlsgate_web_requests_total":                       {`{endpoint="check",result="ok"}`, `{endpoint="page",result="unauthorized"}`},
		"tlsgate_build_info":                               {`{goversion="` + goVersion(t, bin) + `",version="blackbox"}`},
	}
	samples := d.scrape()
	seen := map[string]bool{"tlsgate_probes_in_flight": inFlight} // 1 during the overload
	for name, labels := range moved {
		for _, l := range labels {
			if v := samples[name+l]; v <= 0 {
				t.Errorf("%s%s = %v; want it to have moved", name, l, v)
			} else {
				seen[strings.TrimSuffix(name, "_count")] = true
			}
		}
	}
	for _, name := range readmeMetrics(t) {
		if !seen[name] && sharedMetrics[name] == "" { // those are TestBlackBoxSharedMetrics'
			t.Errorf("the README lists %s, which did not move", name)
		}
	}
	for _, name := range dashboardMetrics(t) {
		if !seen[name] {
			t.Errorf("contrib/grafana uses %s, which did not move", name)
		}
	}

	// Every log line is JSON with each key once; the skipped recipient has its domain.
	lines := strings.Split(strings.TrimSpace(d.log.String()), "\n")
	skipped := false
	for _, line := range lines {
		m, err := fake.DecodeUniqueKeys(line)
		if err != nil {
			t.Errorf("log line %q: %v", line, err)
			continue
		}
		if m["msg"] == "rcpt" && m["skip"] != "" {
			skipped = m["domain"] == "local.test"
		}
	}
	if !skipped {
		t.Errorf("no rcpt line for the skipped recipient with domain=local.test:\n%s", d.log)
	}
}

// goVersion is the Go version the binary was built with.
func goVersion(t *testing.T, bin string) string {
	t.Helper()
	out, err := exec.Command("go", "version", bin).Output()
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(string(out)) // "bin: go1.26.8"
	return f[len(f)-1]
}

// readmeMetrics lists the metrics of the README's metrics table.
func readmeMetrics(t *testing.T) []string {
	t.Helper()
	var out []string
	row := regexp.MustCompile("^\\| (`tlsgate_[a-z_]+`(?:, `tlsgate_[a-z_]+`)*) \\|")
	for _, line := range strings.Split(readmeSection(t, "### Metrics and posture warnings"), "\n") {
		if m := row.FindStringSubmatch(line); m != nil {
			for _, name := range strings.Split(m[1], ", ") {
				out = append(out, strings.Trim(name, "`"))
			}
		}
	}
	if len(out) < 10 {
		t.Fatalf("only %d metrics in the README: %q", len(out), out)
	}
	return out
}

// dashboardMetrics lists the tlsgate metrics the Grafana dashboard's queries use.
func dashboardMetrics(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile("../../contrib/grafana/tlsgate-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Panels []struct {
			Targets []struct{ Expr string }
		}
	}
	if err := json.Unmarshal(b, &dash); err != nil {
		t.Fatal(err)
	}
	var out []string
	re := regexp.MustCompile(`tlsgate_[a-z_]+`)
	for _, p := range dash.Panels {
		for _, tg := range p.Targets {
			for _, name := range re.FindAllString(tg.Expr, -1) {
				for _, suffix := range []string{"_bucket", "_count", "_sum"} {
					name = strings.TrimSuffix(name, suffix)
				}
				if !slices.Contains(out, name) {
					out = append(out, name)
				}
			}
		}
	}
	if len(out) == 0 {
		t.Fatal("the dashboard uses no tlsgate metric")
	}
	return out
}
