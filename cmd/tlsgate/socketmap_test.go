package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tlsgate/tlsgate/internal/fake"
	"github.com/tlsgate/tlsgate/socketmap"
)

// TestServeSocketmap runs `tlsgate serve` with the socketmap on a unix socket and asks
// it what Postfix's SMTP client would ask: configured entries come back verbatim, a
// DNSSEC-signed domain with TLSA records is dane, an unknown map name PERM; the metric
// counts each answer, a reload changes the answers, and no SMTP session is opened.
func TestServeSocketmap(t *testing.T) {
	t.Parallel()
	d := fake.StartDNS(t)
	d.SetAllAuthentic(true)
	ca := fake.NewCA(t, "Root")
	cert := ca.Issue(t, fake.CertOptions{DNSNames: []string{"mx.dane.test"}})
	smtp := fake.StartSMTP(t, "127.0.0.61", fake.Behavior{Hostname: "mx.dane.test", Cert: &cert})
	d.Add(t, "dane.test. 60 IN MX 10 mx.dane.test.", "mx.dane.test. 60 IN A 127.0.0.61",
		// TLSA at the probed port (_PORT._tcp), as Postfix looks it up for its smtp port.
		fake.TLSA("_"+strconv.Itoa(int(smtp.Addr().Port()))+"._tcp.mx.dane.test.", 3, 1, 1, cert.Leaf),
		"plain.test. 60 IN MX 10 mx.plain.test.", "mx.plain.test. 60 IN A 127.0.0.61")

	dir := t.TempDir()
	policyFile := filepath.Join(dir, "tls_policy")
	write := func(name, text string) {
		t.Helper()
		if err := os.WriteFile(name, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(policyFile, "secure.test secure match=.secure.test ciphers=high\n[relay.test]:587 encrypt\n")
	sock := filepath.Join(dir, "socketmap")
	metricsAddr := freeAddr(t)
	cfgFile := filepath.Join(dir, "tlsgate.yaml")
	cfg := "milter:\n  listen: inet:" + freeAddr(t) + "\n" +
		"socketmap:\n  listen: unix:" + sock + "\n  socket_mode: \"0600\"\n  default_level: published\n" +
		"dns:\n  resolver: " + d.Addr() + "\n" +
		"probe:\n  helo: probe.test\n  port: " + strconv.Itoa(int(smtp.Addr().Port())) + "\n  allow_networks: [127.0.0.0/8]\n" +
		"mta_sts:\n  enabled: false\n" +
		"metrics:\n  listen: " + metricsAddr + "\n" +
		"policy_files: [" + policyFile + "]\n"
	write(cfgFile, cfg)

	log, stop := startServe(t, cfgFile)
	if st, err := os.Stat(sock); err != nil || st.Mode().Perm() != 0o600 || st.Mode()&os.ModeSocket == 0 {
		t.Fatalf("socketmap socket: %v, %v; want a socket with mode 0600", st, err)
	}

	c, err := socketmap.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Timeout = 10 * time.Second
	ask := func(name, key, want string) {
		t.Helper()
		r, err := c.Lookup(name, key)
		if err != nil {
			t.Fatalf("%s %s: %v", name, key, err)
		}
		if got := r.String(); got != want && !(strings.HasSuffix(want, "*") && strings.HasPrefix(got, strings.TrimSuffix(want, "*"))) {
			t.Errorf("%s %s = %q; want %q", name, key, got, want)
		}
	}
	ask("QUERY", "secure.test", "OK secure match=.secure.test ciphers=high")
	ask("QUERY", "[relay.test]:587", "OK encrypt")
	ask("QUERY", "dane.test", "OK dane")
	ask("QUERYwithTLSRPT", "dane.test", "OK dane")
	ask("QUERY", "plain.test", "NOTFOUND ")
	ask("QUERY", ".test", "NOTFOUND ")
	ask("QUERY", "nonexistent.test", "NOTFOUND ")
	ask("TLSPOL", "dane.test", "PERM *")

	_, body := get(t, "http://"+metricsAddr+"/metrics")
	for _, want := range []string{
		`tlsgate_socketmap_requests_total{map="QUERY",result="ok"} 3`,
		`tlsgate_socketmap_requests_total{map="QUERY",result="notfound"} 3`,
		`tlsgate_socketmap_requests_total{map="QUERYwithTLSRPT",result="ok"} 1`,
		`tlsgate_socketmap_requests_total{map="other",result="perm"} 1`,
		`tlsgate_socketmap_request_duration_seconds_count 8`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q\n%s", want, strings.Join(regexp.MustCompile(`(?m)^tlsgate_socketmap.*$`).FindAllString(body, -1), "\n"))
		}
	}

	// A reload: a new policy line and no default level.
	write(policyFile, "secure.test dane-only\n")
	write(cfgFile, strings.Replace(cfg, "default_level: published", `default_level: ""`, 1))
	waitLog(t, log, "configuration reloaded", 1)
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		r, err := c.Lookup("QUERY", "dane.test")
		if err != nil {
			t.Fatal(err)
		}
		if r.Status == socketmap.StatusNotFound {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("dane.test still %v after the reload", r)
		}
	}
	ask("QUERY", "secure.test", "OK dane-only")
	ask("QUERY", "[relay.test]:587", "NOTFOUND ")

	if n := smtp.Connections(); n != 0 {
		t.Errorf("the socketmap opened %d SMTP sessions; want none", n)
	}
	stop()
	if _, err := os.Stat(sock); err == nil {
		t.Logf("socket file %s left after shutdown", sock)
	}
}

// TestCheckSocketmap: `tlsgate check` says what the socketmap would answer for the
// domain, from the facts it just gathered, in text and JSON.
func TestCheckSocketmap(t *testing.T) {
	t.Parallel()
	d := fake.StartDNS(t)
	d.SetAllAuthentic(true)
	ca := fake.NewCA(t, "Root")
	cert := ca.Issue(t, fake.CertOptions{DNSNames: []string{"mx.dane.test"}})
	smtp := fake.StartSMTP(t, "127.0.0.62", fake.Behavior{Hostname: "mx.dane.test", Cert: &cert})
	d.Add(t, "dane.test. 60 IN MX 10 mx.dane.test.", "mx.dane.test. 60 IN A 127.0.0.62",
		fake.TLSA("_"+strconv.Itoa(int(smtp.Addr().Port()))+"._tcp.mx.dane.test.", 3, 1, 1, cert.Leaf))
	policyFile := filepath.Join(t.TempDir(), "tls_policy")
	if err := os.WriteFile(policyFile, []byte("pinned.test fingerprint match=AA:BB\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	base := []string{"check", "--dns.resolver", d.Addr(), "--probe.port", strconv.Itoa(int(smtp.Addr().Port())),
		"--probe.allow_networks", "127.0.0.0/8", "--probe.helo", "probe.test", "--mta_sts.enabled=false",
		"--policy_files", policyFile}
	_, out, _ := runCmd(t, append(base, "--socketmap.default_level", "published", "dane.test")...)
	if !strings.Contains(out, "\nsocketmap: dane (DNSSEC-validated TLSA records for mx.dane.test)\n") {
		t.Errorf("text report lacks the socketmap answer:\n%s", out)
	}
	_, out, _ = runCmd(t, append(base, "--json", "--socketmap.default_level", "published", "dane.test")...)
	if !strings.Contains(out, `"socketmap": {`) || !strings.Contains(out, `"status": "OK"`) || !strings.Contains(out, `"data": "dane"`) || !strings.Contains(out, `"rule": "default"`) {
		t.Errorf("JSON lacks the socketmap answer:\n%s", out)
	}
	_, out, _ = runCmd(t, append(base, "dane.test")...)
	if !strings.Contains(out, "\nsocketmap: NOTFOUND (") {
		t.Errorf("without default_level: %s", out)
	}
	_, out, _ = runCmd(t, append(base, "pinned.test")...)
	if !strings.Contains(out, "\nsocketmap: fingerprint match=AA:BB (configured policy pinned.test") {
		t.Errorf("configured entry: %s", out)
	}
}

// TestConfigCheckSocketmap: `config check` shows the socketmap settings and, for a
// recipient, what the configuration alone makes it answer.
func TestConfigCheckSocketmap(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cfgFile := filepath.Join(dir, "tlsgate.yaml")
	yaml := "socketmap:\n  listen: inet:127.0.0.1:8642\n  default_level: published\n" +
		"policies:\n  - domain: secure.example\n    level: secure\n    match: [nexthop, dot-nexthop]\n"
	if err := os.WriteFile(cfgFile, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ rcpt, want string }{
		{"", "socketmap: inet:127.0.0.1:8642, default_level published, timeout 10s\n"},
		{"a@secure.example", "socketmap: secure match=nexthop:dot-nexthop\n"},
		{"a@other.example", "socketmap: published: looked up at delivery (tlsgate check other.example shows the answer)\n"},
	} {
		args := []string{"config", "check", cfgFile}
		if tc.rcpt != "" {
			args = append(args, "--rcpt", tc.rcpt)
		}
		code, out, errOut := runCmd(t, args...)
		if code != 0 || !strings.Contains(out, tc.want) {
			t.Errorf("%q: exit %d\n%s%s\nwant %q", tc.rcpt, code, out, errOut, tc.want)
		}
	}
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("socketmap:\n  default_level: dane-only\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if code, _, errOut := runCmd(t, "config", "check", bad); code != exitUsage || !strings.Contains(errOut, `socketmap.default_level: "dane-only" is not a socketmap default level`) {
		t.Errorf("bad default_level: exit %d %s", code, errOut)
	}
}
