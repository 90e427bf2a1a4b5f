package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tlsgate/tlsgate/internal/fake"
)

// checkWorld is one domain with one MX on loopback; the probe port points at the fake.
func checkWorld(t *testing.T, b fake.Behavior) (dnsAddr string, port int) {
	t.Helper()
	d := fake.StartDNS(t)
	d.Add(t, "example.test. 60 IN MX 10 mx.example.test.", "mx.example.test. 60 IN A 127.0.0.60")
	s := fake.StartSMTP(t, "127.0.0.60", b)
	return d.Addr(), int(s.Addr().Port())
}

func runCmd(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), args, nil, &stdout, &stderr)
	return code, stdout.String(), stderr.String()
}

func TestCheckJSON(t *testing.T) {
	t.Parallel()
	ca := fake.NewCA(t, "Root")
	cert := ca.Issue(t, fake.CertOptions{DNSNames: []string{"mx.example.test"}})
	dnsAddr, port := checkWorld(t, fake.Behavior{Hostname: "mx.example.test", Cert: &cert})
	caFile := ca.WritePEM(t, t.TempDir())
	base := []string{"check", "--dns.resolver", dnsAddr, "--probe.port", strconv.Itoa(port),
		"--probe.allow_networks", "127.0.0.0/8", "--probe.helo", "probe.test", "--probe.ca_file", caFile}

	tests := []struct {
		level  string
		code   int
		status string
	}{
		{"encrypt", exitPass, "pass"},
		{"verify", exitPass, "pass"},
		{"secure", exitPass, "pass"},
		{"fingerprint", exitFail, "fail"}, // no match= given: nothing can match
	}
	for _, tc := range tests {
		code, out, errOut := runCmd(t, append(base, "--json", "--level", tc.level, "example.test")...)
		if code != tc.code {
			t.Errorf("%s: exit %d; want %d\n%s%s", tc.level, code, tc.code, out, errOut)
		}
		var r struct {
			Socketmap                                        struct{ Status, Data, Why string }
			Domain, Level, Status, Reason, Mechanism, Detail string
			MX                                               []struct {
				Host      string
				Addresses []string
				Attempts  []struct {
					IP         string `json:"ip"`
					Outcome    string `json:"outcome"`
					TLSVersion string `json:"tls_version"`
				}
			}
		}
		if err := json.Unmarshal([]byte(out), &r); err != nil {
			t.Fatalf("%s: not JSON: %v\n%s", tc.level, err, out)
		}
		if r.Domain != "example.test" || r.Level != tc.level || r.Status != tc.status {
			t.Errorf("%s: domain=%s level=%s status=%s", tc.level, r.Domain, r.Level, r.Status)
		}
		// No policy, no socketmap.default_level: the socketmap answers NOTFOUND.
		if r.Socketmap.Status != "NOTFOUND" || r.Socketmap.Why == "" {
			t.Errorf("%s: socketmap = %+v; want NOTFOUND with a reason", tc.level, r.Socketmap)
		}
		if len(r.MX) != 1 || r.MX[0].Host != "mx.example.test" || len(r.MX[0].Attempts) != 1 || r.MX[0].Attempts[0].Outcome != "tls" ||
			r.MX[0].Attempts[0].IP != "127.0.0.60" || r.MX[0].Attempts[0].TLSVersion != "TLSv1.3" {
			t.Errorf("%s: mx = %+v", tc.level, r.MX)
		}
	}

	// Human report.
	code, out, _ := runCmd(t, append(base, "--level", "encrypt", "example.test")...)
	for _, want := range []string{"domain:", "example.test", "mx 10:", "tls:", "TLSv1.3", "verdict:", "pass", "\nsocketmap: NOTFOUND ("} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q:\n%s", want, out)
		}
	}
	if code != exitPass {
		t.Errorf("exit %d", code)
	}
}

func TestCheckExitCodes(t *testing.T) {
	t.Parallel()
	dnsAddr, port := checkWorld(t, fake.Behavior{NoStartTLS: true})
	base := []string{"check", "--dns.resolver", dnsAddr, "--probe.port", strconv.Itoa(port), "--probe.allow_networks", "127.0.0.0/8", "--probe.helo", "probe.test"}
	if code, out, _ := runCmd(t, append(base, "example.test")...); code != exitFail || !strings.Contains(out, "starttls-not-supported") {
		t.Errorf("no STARTTLS: exit %d; want %d\n%s", code, exitFail, out)
	}
	// Not allowed to probe loopback: tempfail, never pass.
	noAllow := []string{"check", "--dns.resolver", dnsAddr, "--probe.port", strconv.Itoa(port), "--probe.helo", "probe.test", "example.test"}
	if code, out, _ := runCmd(t, noAllow...); code != exitTempfail || !strings.Contains(out, "probe-not-allowed") {
		t.Errorf("loopback not allowed: exit %d; want %d\n%s", code, exitTempfail, out)
	}
	for _, args := range [][]string{
		{"check"},
		{"check", "a.test", "b.test"},
		{"check", "--level", "bogus", "example.test"},
		{"check", "exa mple..test"},
		{"check", "--config", "/nonexistent/tlsgate.yaml", "example.test"},
		{"check", "--milter.listn", "x", "example.test"},
		{"frobnicate"},
		{},
	} {
		if code, _, _ := runCmd(t, args...); code != exitUsage {
			t.Errorf("%q: exit %d; want %d", args, code, exitUsage)
		}
	}
}

func TestVersion(t *testing.T) {
	t.Parallel()
	if code, out, _ := runCmd(t, "version"); code != 0 || !strings.HasPrefix(out, "tlsgate ") {
		t.Errorf("version: %d %q", code, out)
	}
}

// TestServeDefaults: serve starts on built-in defaults (only the listen address moved off
// the default port so the test cannot collide) and stops cleanly on cancellation.
func TestServeDefaults(t *testing.T) {
	t.Parallel()
	if out := runServe(t); !strings.Contains(out, "tlsgate started") {
		t.Errorf("no start log line:\n%s", out)
	}
}

// freeAddr returns a loopback TCP address nothing listens on (a moment ago).
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// runServe starts serve with args, waits until it listens, stops it and returns its log.
func runServe(t *testing.T, args ...string) string {
	t.Helper()
	addr := freeAddr(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	var stderr bytes.Buffer
	go func() {
		done <- run(ctx, append([]string{"serve", "--milter.listen", "inet:" + addr, "--dns.resolver", "127.0.0.1:53", "--probe.helo", "probe.test"}, args...), nil, &bytes.Buffer{}, &stderr)
	}()
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			cancel()
			<-done
			t.Fatalf("serve did not listen on %s\n%s", addr, stderr.String())
		}
	}
	cancel()
	select {
	case code := <-done:
		if code != 0 {
			t.Errorf("serve exit %d\n%s", code, stderr.String())
		}
	case <-time.After(15 * time.Second):
		t.Fatal("serve did not stop")
	}
	return stderr.String()
}

// TestServeCacheFile: the verdict cache is saved at shutdown with owner-only
// permissions and loaded at start; an unsafe file is ignored with a warning, and the
// daemon still starts.
func TestServeCacheFile(t *testing.T) {
	t.Parallel()
	file := filepath.Join(t.TempDir(), "cache.json")
	out := runServe(t, "--cache.file", file)
	if !strings.Contains(out, "verdict cache saved") {
		t.Errorf("no save at shutdown:\n%s", out)
	}
	st, err := os.Stat(file)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("cache file: %v, %v; want mode 0600", st, err)
	}
	if out := runServe(t, "--cache.file", file); !strings.Contains(out, "verdict cache loaded") {
		t.Errorf("no load at start:\n%s", out)
	}
	if err := os.Chmod(file, 0o666); err != nil {
		t.Fatal(err)
	}
	if out := runServe(t, "--cache.file", file); !strings.Contains(out, "verdict cache file ignored") || !strings.Contains(out, "writable by group or others") {
		t.Errorf("unsafe file not refused:\n%s", out)
	}
}

// TestConfigCheck: `tlsgate config check` validates a file and shows which rule sets
// the level of a recipient.
func TestConfigCheck(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	policyFile := filepath.Join(dir, "tls_policy")
	if err := os.WriteFile(policyFile, []byte(".example.com secure match=.example.com\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "tlsgate.yaml")
	yaml := "policy_files: [" + policyFile + "]\ncustomers:\n  - name: acme\n    senders: [acme.example]\n    level: published\n"
	if err := os.WriteFile(file, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		want []string
	}{
		{nil, []string{"valid (1 domain policies, 1 customers)", "set: policy_files = " + policyFile + "\n"}},
		{[]string{"--rcpt", "user@mx.example.com"}, []string{"level: secure", "rule: policy .example.com", "match: .example.com", "on_fail: reject"}},
		{[]string{"--rcpt", "user@other.test", "--sender", "boss@acme.example"}, []string{"level: published", "rule: customer acme"}},
		{[]string{"--rcpt", "user@other.test"}, []string{"level: none", "passes unchecked"}},
	} {
		code, out, errOut := runCmd(t, append([]string{"config", "check", file}, tc.args...)...)
		if code != 0 {
			t.Errorf("%q: exit %d\n%s%s", tc.args, code, out, errOut)
		}
		for _, w := range tc.want {
			if !strings.Contains(out, w) {
				t.Errorf("%q: output lacks %q:\n%s", tc.args, w, out)
			}
		}
	}
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("policies:\n  - domain: example.com\n    level: encrpyt\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if code, _, errOut := runCmd(t, "config", "check", bad); code != exitUsage || !strings.Contains(errOut, `policies[0].level: "encrpyt" is not a TLS level`) {
		t.Errorf("bad file: exit %d, %q", code, errOut)
	}
}

func TestColorize(t *testing.T) {
	t.Parallel()
	in := "domain:  example.test\nverdict: fail\nmechanism: none\n"
	if got := colorize(in); got != "domain:  example.test\n\x1b[1;31mverdict: fail\x1b[0m\nmechanism: none\n" {
		t.Errorf("colorize = %q", got)
	}
	if got := colorize("verdict: tempfail\n"); !strings.Contains(got, "\x1b[1;33m") {
		t.Errorf("tempfail = %q", got)
	}
	// Not a terminal: plain.
	var b bytes.Buffer
	if colorTerminal(&b) {
		t.Error("a buffer is not a terminal")
	}
}

func TestConfigCheckAlso(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	file := filepath.Join(dir, "tlsgate.yaml")
	yaml := "policies:\n  - domain: pinned.example\n    level: fingerprint\n    match: [\"AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB\"]\ncustomers:\n  - name: acme\n    senders: [acme.example]\n    level: secure\n"
	if err := os.WriteFile(file, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := runCmd(t, "config", "check", file, "--rcpt", "u@pinned.example", "--sender", "b@acme.example")
	if code != 0 || !strings.Contains(out, "level: secure") || !strings.Contains(out, "also required: fingerprint (policy pinned.example") {
		t.Errorf("exit %d:\n%s%s", code, out, errOut)
	}
}

// TestConfigCheckTAFile: a tafile= that cannot be loaded makes the entry invalid, as
// Postfix treats it (it defers the mail): config check says so, names the file, and
// shows the recipient's mail deferred, not judged without the anchors.
func TestConfigCheckTAFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	policyFile := filepath.Join(dir, "tls_policy")
	missing := filepath.Join(dir, "bank-ca.pem")
	if err := os.WriteFile(policyFile, []byte("bank.example verify tafile="+missing+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "tlsgate.yaml")
	if err := os.WriteFile(file, []byte("policy_files: ["+policyFile+"]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, out, errOut := runCmd(t, "config", "check", file, "--rcpt", "user@bank.example")
	for _, w := range []string{missing, "Postfix treats this policy as invalid and defers mail", "invalid: tafile " + missing} {
		if !strings.Contains(out+errOut, w) {
			t.Errorf("config check lacks %q:\n%s%s", w, out, errOut)
		}
	}
}
