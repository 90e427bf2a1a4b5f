package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/tlsgate/tlsgate/internal/fake"
)

// TestCheckNextHop: `tlsgate check '[host]:port'` probes that host at that port, with
// no MX lookup, under the next hop's own policy entry.
func TestCheckNextHop(t *testing.T) {
	t.Parallel()
	ca := fake.NewCA(t, "Root")
	cert := ca.Issue(t, fake.CertOptions{DNSNames: []string{"gw.example.test"}})
	d := fake.StartDNS(t)
	d.Add(t, "gw.example.test. 60 IN A 127.0.0.61")
	s := fake.StartSMTP(t, "127.0.0.61", fake.Behavior{Hostname: "gw.example.test", Cert: &cert})
	port := strconv.Itoa(int(s.Addr().Port()))
	hop := "[gw.example.test]:" + port
	dir := t.TempDir()
	file := filepath.Join(dir, "tlsgate.yaml")
	yaml := "policies:\n  - domain: \"[GW.example.test]:" + port + "\"\n    level: verify\n  - domain: gw.example.test\n    level: fingerprint\n    match: [\"AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB\"]\n"
	if err := os.WriteFile(file, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := runCmd(t, "check", "--config", file, "--dns.resolver", d.Addr(), "--probe.allow_networks", "127.0.0.0/8",
		"--probe.helo", "probe.test", "--probe.ca_file", ca.WritePEM(t, dir), "--json", hop)
	var r struct{ Domain, Level, Rule, Status, MXStatus string }
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("exit %d: %v\n%s%s", code, err, out, errOut)
	}
	// The entry of the host name itself (fingerprint) is not the next hop's.
	if code != exitPass || r.Domain != hop || r.Level != "verify" || r.Rule != "policy:"+hop || r.Status != "pass" {
		t.Errorf("exit %d: %+v\n%s%s", code, r, out, errOut)
	}
	if code, _, _ := runCmd(t, "check", "[gw.example.test]:99999"); code != exitUsage {
		t.Errorf("bad port: exit %d; want %d", code, exitUsage)
	}

	for _, tc := range []struct {
		args []string
		want []string
	}{
		{[]string{"--rcpt", "u@partner.test", "--next-hop", "[gw.example.test]:" + port}, []string{"next hop: " + hop, "level: verify", "rule: policy " + hop}},
		{[]string{"--rcpt", "[gw.example.test]:" + port}, []string{"level: verify"}},
		{[]string{"--rcpt", "u@partner.test", "--next-hop", "gw.example.test"}, []string{"next hop: gw.example.test", "level: fingerprint"}},
		{[]string{"--rcpt", "u@gw.example.test", "--next-hop", "GW.example.test"}, []string{"level: fingerprint"}},
		{[]string{"--rcpt", "u@partner.test", "--next-hop", "[gw.example.test]:2526"}, []string{"level: none"}},
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
}
