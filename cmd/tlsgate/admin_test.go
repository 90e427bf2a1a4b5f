package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tlsgate/tlsgate/internal/fake"
)

// TestCacheAdmin runs `tlsgate serve` on its own (no shared tier) with
// cache.admin_socket and drives `tlsgate cache show|list|purge` against it: the socket
// is the owner's only, a purged domain is probed again on its next RCPT, and the
// command's exit codes say what happened.
func TestCacheAdmin(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	t.Parallel()
	bin := buildBinary(t)
	ca := fake.NewCA(t, "Root")
	dnsSrv := fake.StartDNS(t)
	goodCert := ca.Issue(t, fake.CertOptions{DNSNames: []string{"mx.good.test"}})
	good := fake.StartSMTP(t, "127.0.0.95", fake.Behavior{Hostname: "mx.good.test", Cert: &goodCert})
	notls := fake.StartSMTPPort(t, "127.0.0.96", good.Addr().Port(), fake.Behavior{Hostname: "mx.notls.test", NoStartTLS: true})
	dnsSrv.Add(t, "good.test. 60 IN MX 10 mx.good.test.", "mx.good.test. 60 IN A 127.0.0.95",
		"notls.test. 60 IN MX 10 mx.notls.test.", "mx.notls.test. 60 IN A 127.0.0.96")
	dir := t.TempDir()
	sock := filepath.Join(dir, "admin.sock")
	milterAddr, metricsAddr := freeAddr(t), freeAddr(t)
	config := filepath.Join(dir, "tlsgate.yaml")
	yaml := fmt.Sprintf(`milter:
  listen: inet:%s
dns:
  resolver: %s
probe:
  port: %d
  helo: probe.test
  ca_file: %s
  allow_networks: [127.0.0.0/8]
mta_sts:
  enabled: false
cache:
  admin_socket: %s
metrics:
  listen: %s
log:
  format: json
policies:
  - domain: .test
    level: encrypt
`, milterAddr, dnsSrv.Addr(), good.Addr().Port(), ca.WritePEM(t, dir), sock, metricsAddr)
	if err := os.WriteFile(config, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	d := startDaemon(t, bin, config)
	d.metrics, d.milter = "http://"+metricsAddr, milterAddr
	if st, err := os.Stat(sock); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("admin socket: %v, mode %v; want 0600", err, st.Mode().Perm())
	}
	cache := func(wantCode int, args ...string) string {
		t.Helper()
		out, err := exec.Command(bin, append([]string{"cache", args[0], "--config", config}, args[1:]...)...).CombinedOutput()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		if code != wantCode {
			t.Errorf("tlsgate cache %s: exit %d, want %d\n%s", strings.Join(args, " "), code, wantCode, out)
		}
		return string(out)
	}
	cache(exitFail, "show", "good.test")
	if got := d.rcpt("u@good.test", "smtp"); got != "accept" {
		t.Fatalf("good.test: %s", got)
	}
	if got := d.rcpt("u@notls.test", "smtp"); !strings.HasPrefix(got, "5") {
		t.Fatalf("notls.test: %s", got)
	}
	if out := cache(0, "show", "good.test"); !strings.Contains(out, "good.test: pass (from the local tier)") || !strings.Contains(out, "encrypt") {
		t.Errorf("cache show good.test:\n%s", out)
	}
	if out := cache(0, "list", "--status", "fail"); !strings.HasPrefix(out, "notls.test\tfail\tlocal\t") || strings.Contains(out, "good.test") {
		t.Errorf("cache list --status fail:\n%s", out)
	}
	if out := cache(0, "list"); strings.Count(out, "\n") != 2 {
		t.Errorf("cache list:\n%s", out)
	}
	if out := cache(0, "purge", "notls.test"); !strings.Contains(out, "purged from this host: 1 local entries") {
		t.Errorf("cache purge:\n%s", out)
	}
	if got := d.rcpt("v@notls.test", "smtp"); !strings.HasPrefix(got, "5") {
		t.Fatalf("notls.test after the purge: %s", got)
	}
	if n := notls.Connections(); n != 2 {
		t.Errorf("notls.test: %d SMTP sessions, want 2 (probed again after the purge)", n)
	}
	cache(0, "purge", "--all")
	cache(exitFail, "show", "good.test")
	cache(exitUsage, "purge")
	cache(exitUsage, "list", "--status", "maybe")
}
