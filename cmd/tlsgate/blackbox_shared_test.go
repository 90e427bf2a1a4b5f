package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tlsgate/tlsgate/internal/fake"
)

// sharedMetrics are the README's metrics of the shared cache tier. They exist only with
// cache.shared.url, which needs a Valkey or Redis server: TestBlackBoxSharedMetrics
// drives them through the binary against the machine's redis-server (installed by
// test/e2e/install.sh), so TestBlackBoxMetrics leaves them to it.
var sharedMetrics = map[string]string{
	"tlsgate_shared_cache_requests_total":      "TestBlackBoxSharedMetrics",
	"tlsgate_shared_cache_auth_failures_total": "TestBlackBoxSharedMetrics",
	"tlsgate_shared_cache_up":                  "TestBlackBoxSharedMetrics",
	"tlsgate_shared_cache_invalidations_total": "TestBlackBoxSharedMetrics",
}

// TestBlackBoxSharedMetrics runs two `tlsgate serve` sharing a redis-server and checks
// that every metric of the shared tier moves: a miss, a lease, a put and a rate-limit
// count at the first, a hit at the second, a forged entry refused, a purge applied by
// the other host, and the up gauge through an outage.
func TestBlackBoxSharedMetrics(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	t.Parallel()
	rs := fake.RequireRedis(t)
	raddr, kill := rs.Addr, rs.Kill
	restart := func() {
		if err := rs.Restart(); err != nil {
			t.Fatal(err)
		}
	}
	bin := buildBinary(t)
	ca := fake.NewCA(t, "Root")
	dnsSrv := fake.StartDNS(t)
	goodCert := ca.Issue(t, fake.CertOptions{DNSNames: []string{"mx.good.test"}})
	good := fake.StartSMTP(t, "127.0.0.91", fake.Behavior{Hostname: "mx.good.test", Cert: &goodCert})
	dnsSrv.Add(t, "good.test. 60 IN MX 10 mx.good.test.", "forged.test. 60 IN MX 10 mx.good.test.",
		"later.test. 60 IN MX 10 mx.good.test.", "mx.good.test. 60 IN A 127.0.0.91")
	dir := t.TempDir()
	secret := filepath.Join(dir, "secret")
	if err := os.WriteFile(secret, []byte("blackbox-secret-blackbox-secret-blackbox"), 0o600); err != nil {
		t.Fatal(err)
	}
	var ds []*daemon
	var sockets []string
	for i := range 2 {
		milterAddr, metricsAddr := freeAddr(t), freeAddr(t)
		sock := filepath.Join(dir, fmt.Sprintf("admin%d.sock", i))
		config := filepath.Join(dir, fmt.Sprintf("tlsgate%d.yaml", i))
		yaml := fmt.Sprintf(`milter:
  listen: inet:%s
  rcpt_timeout: 3s
dns:
  resolver: %s
probe:
  port: %d
  helo: probe.test
  timeout: 4s
  ca_file: %s
  allow_networks: [127.0.0.0/8]
mta_sts:
  enabled: false
cache:
  admin_socket: %s
  shared:
    url: redis://%s/0
    secret_file: %s
metrics:
  listen: %s
log:
  level: debug
  format: json
policies:
  - domain: .test
    level: encrypt
`, milterAddr, dnsSrv.Addr(), good.Addr().Port(), ca.WritePEM(t, dir), sock, raddr, secret, metricsAddr)
		if err := os.WriteFile(config, []byte(yaml), 0o644); err != nil {
			t.Fatal(err)
		}
		d := startDaemon(t, bin, config)
		d.metrics, d.milter = "http://"+metricsAddr, milterAddr
		ds = append(ds, d)
		sockets = append(sockets, sock)
	}
	a, b := ds[0], ds[1]
	if got := a.rcpt("u@good.test", "smtp"); got != "accept" {
		t.Fatalf("good.test at a: %s", got)
	}
	if got := b.rcpt("u@good.test", "smtp"); got != "accept" {
		t.Fatalf("good.test at b: %s", got)
	}
	if n := good.Connections(); n != 1 {
		t.Errorf("good.test at two hosts: %d SMTP sessions, want 1", n)
	}

	// A forged entry: the right framing, a MAC made without the fleet's secret.
	rdb := redis.NewClient(&redis.Options{Addr: raddr})
	defer rdb.Close()
	forged := append(append([]byte("TG\x01f"), make([]byte, 32)...), `{"v":3,"facts":{"Domain":"forged.test"}}`...)
	if err := rdb.Set(context.Background(), "tlsgate:f:forged.test", forged, time.Minute).Err(); err != nil {
		t.Fatal(err)
	}
	if got := b.rcpt("u@forged.test", "smtp"); got != "accept" {
		t.Errorf("forged.test at b: %s (judged from its own probe: accept)", got)
	}

	// A purge at a reaches b.
	out, err := exec.Command(bin, "cache", "purge", "good.test", "--socket", sockets[0]).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "purged from the fleet") {
		t.Errorf("tlsgate cache purge: %v %s", err, out)
	}
	b.waitMetric("tlsgate_shared_cache_invalidations_total", 1, 10*time.Second)

	// An outage and the recovery.
	kill()
	if got := a.rcpt("u@later.test", "smtp"); got != "accept" {
		t.Errorf("later.test at a with the server down: %s", got)
	}
	a.waitMetric("tlsgate_shared_cache_up", 0, 10*time.Second)
	restart()
	a.waitMetric("tlsgate_shared_cache_up", 1, 10*time.Second)

	moved := map[string][]string{
		"tlsgate_shared_cache_requests_total": {`{op="get",result="miss"}`, `{op="get",result="hit"}`,
			`{op="get",result="refused"}`, `{op="lease",result="ok"}`, `{op="put",result="ok"}`,
			`{op="ratelimit",result="ok"}`, `{op="posture",result="miss"}`, `{op="purge",result="ok"}`},
		"tlsgate_shared_cache_auth_failures_total": {`{reason="bad-mac"}`},
		"tlsgate_shared_cache_invalidations_total": {""},
	}
	samples := map[string]float64{}
	for _, d := range ds {
		for k, v := range d.scrape() {
			samples[k] += v
		}
	}
	for name, labels := range moved {
		for _, l := range labels {
			if samples[name+l] <= 0 {
				t.Errorf("%s%s = %v; want it to have moved", name, l, samples[name+l])
			}
		}
	}
	if samples[`tlsgate_shared_cache_requests_total{op="get",result="error"}`]+
		samples[`tlsgate_shared_cache_requests_total{op="get",result="timeout"}`]+
		samples[`tlsgate_shared_cache_requests_total{op="get",result="unavailable"}`] <= 0 {
		t.Error("no failed get counted during the outage")
	}
	if !strings.Contains(a.log.String(), "shared cache unreachable") || !strings.Contains(a.log.String(), "shared cache reachable again") {
		t.Errorf("no outage and recovery lines in the log:\n%s", a.log)
	}
}
