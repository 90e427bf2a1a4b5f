package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tlsgate/tlsgate/internal/fake"
	"github.com/tlsgate/tlsgate/policy"
)

// learnWorld: four destinations on loopback, one probe port.
//
//	secure.test    MX mx.secure.test, CA-signed certificate for it     (log: Trusted)
//	enc.test       MX mx.enc.test, certificate of an unknown CA        (log: Untrusted)
//	gone.test      MX mx.gone.test, STARTTLS no longer offered         (log: Untrusted)
//	plain.test     delivered in plaintext once                          (log: mixed)
func learnWorld(t *testing.T) (base []string) {
	t.Helper()
	ca := fake.NewCA(t, "Root")
	other := fake.NewCA(t, "Other")
	good := ca.Issue(t, fake.CertOptions{DNSNames: []string{"mx.secure.test"}})
	unknown := other.Issue(t, fake.CertOptions{DNSNames: []string{"mx.enc.test"}})
	d := fake.StartDNS(t)
	d.Add(t,
		"secure.test. 60 IN MX 10 mx.secure.test.", "mx.secure.test. 60 IN A 127.0.0.161",
		"enc.test. 60 IN MX 10 mx.enc.test.", "mx.enc.test. 60 IN A 127.0.0.162",
		"gone.test. 60 IN MX 10 mx.gone.test.", "mx.gone.test. 60 IN A 127.0.0.163",
		"plain.test. 60 IN MX 10 mx.plain.test.", "mx.plain.test. 60 IN A 127.0.0.164",
	)
	s := fake.StartSMTP(t, "127.0.0.161", fake.Behavior{Hostname: "mx.secure.test", Cert: &good})
	port := s.Addr().Port()
	fake.StartSMTPPort(t, "127.0.0.162", port, fake.Behavior{Hostname: "mx.enc.test", Cert: &unknown})
	fake.StartSMTPPort(t, "127.0.0.163", port, fake.Behavior{Hostname: "mx.gone.test", NoStartTLS: true})
	fake.StartSMTPPort(t, "127.0.0.164", port, fake.Behavior{Hostname: "mx.plain.test", Cert: &good})
	return []string{"--dns.resolver", d.Addr(), "--probe.port", strconv.Itoa(int(port)),
		"--probe.allow_networks", "127.0.0.0/8", "--probe.helo", "probe.test", "--probe.ca_file", ca.WritePEM(t, t.TempDir())}
}

// learnLog writes a log of n deliveries per destination, in the last days.
func learnLog(t *testing.T, dir string) string {
	t.Helper()
	var b strings.Builder
	at := time.Now().Add(-48 * time.Hour).UTC()
	pid := 100
	deliver := func(trust, domain, mx, ip string) {
		pid++
		ts := at.Format("2006-01-02T15:04:05.000000+00:00")
		at = at.Add(time.Minute)
		peer := fmt.Sprintf("%s[%s]:25", mx, ip)
		if trust != "" {
			fmt.Fprintf(&b, "%s host postfix/smtp[%d]: %s TLS connection established to %s: TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits)\n", ts, pid, trust, peer)
		}
		fmt.Fprintf(&b, "%s host postfix/smtp[%d]: 4Q%08X: to=<user@%s>, relay=%s, delay=1, delays=0/0/0.5/0.5, dsn=2.0.0, status=sent (250 Ok)\n", ts, pid, pid, domain, peer)
	}
	for range 3 {
		deliver("Trusted", "secure.test", "mx.secure.test", "127.0.0.161")
		deliver("Untrusted", "enc.test", "mx.enc.test", "127.0.0.162")
		deliver("Untrusted", "gone.test", "mx.gone.test", "127.0.0.163")
		deliver("Untrusted", "plain.test", "mx.plain.test", "127.0.0.164")
	}
	deliver("", "plain.test", "mx.plain.test", "127.0.0.164")
	b.WriteString("garbage\n")
	path := filepath.Join(dir, "mail.log")
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestLearnProposal runs `tlsgate learn` on a log against probed destinations: each
// domain gets the strictest level its history allows and the probe passes now; the
// output is a policy file that ParseFile reads without a warning.
func TestLearnProposal(t *testing.T) {
	t.Parallel()
	base := learnWorld(t)
	log := learnLog(t, t.TempDir())
	code, out, errOut := runCmd(t, append(append([]string{"learn"}, base...), log)...)
	if code != 0 {
		t.Fatalf("exit %d\n%s\n%s", code, out, errOut)
	}
	entries, warnings, err := policy.ParseFile(strings.NewReader(out), "proposal")
	if err != nil || len(warnings) != 0 {
		t.Fatalf("ParseFile: %v %v\n%s", err, warnings, out)
	}
	got := map[string]string{}
	for _, e := range entries {
		got[e.Key] = e.Policy.Level.String()
	}
	want := map[string]string{"secure.test": "secure", "enc.test": "encrypt"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("entries %v, want %v\n%s", got, want, out)
	}
	for _, s := range []string{"# gone.test encrypt\n", "fails-now: encrypt fail: starttls-not-supported", "# plaintext: 1 of 4 deliveries in plaintext"} {
		if !strings.Contains(out, s) {
			t.Errorf("proposal lacks %q:\n%s", s, out)
		}
	}
	if !strings.Contains(errOut, "26 lines") || !strings.Contains(errOut, "1 garbage") {
		t.Errorf("stderr does not report the lines and the garbage:\n%s", errOut)
	}

	// --json for tools.
	code, out, errOut = runCmd(t, append(append([]string{"learn", "--json"}, base...), log)...)
	var j struct {
		Version int
		Stats   struct{ Lines, Garbage int }
		Domains []struct {
			Domain, Status, Level string
			Deliveries            int
			ByTLS                 map[string]int `json:"by_tls"`
			Probe                 []struct{ Level, Status string }
		}
	}
	if err := json.Unmarshal([]byte(out), &j); err != nil || code != 0 {
		t.Fatalf("exit %d, %v\n%s\n%s", code, err, out, errOut)
	}
	if j.Version != 1 || j.Stats.Lines != 26 || j.Stats.Garbage != 1 || len(j.Domains) != 4 {
		t.Errorf("json %+v", j)
	}
	for _, d := range j.Domains {
		if d.Domain == "plain.test" && (d.Status != "plaintext" || d.ByTLS["plaintext"] != 1 || d.Deliveries != 4) {
			t.Errorf("plain.test %+v", d)
		}
		if d.Domain == "secure.test" && (d.Status != "proposed" || d.Level != "secure" || len(d.Probe) != 1 || d.Probe[0].Status != "pass") {
			t.Errorf("secure.test %+v", d)
		}
	}
}

// TestLearnDiff: --diff reports what changed against an existing file and exits 1 when
// an entry got weaker (the alarm), 0 when nothing did.
func TestLearnDiff(t *testing.T) {
	t.Parallel()
	base := learnWorld(t)
	dir := t.TempDir()
	log := learnLog(t, dir)
	old := filepath.Join(dir, "tls_policy")
	os.WriteFile(old, []byte("secure.test secure\nenc.test verify\ngone.test encrypt\nquiet.test secure\n"), 0o644)
	code, out, errOut := runCmd(t, append(append([]string{"learn", "--diff", old}, base...), log)...)
	if code != 1 {
		t.Errorf("exit %d, want 1 (weaker)\n%s\n%s", code, out, errOut)
	}
	for _, s := range []string{"<! weaker   enc.test verify -> encrypt", "-! removed  gone.test encrypt (fails-now:", "?  unseen   quiet.test secure"} {
		if !strings.Contains(out, s) {
			t.Errorf("diff lacks %q:\n%s", s, out)
		}
	}
	if strings.Contains(out, "secure.test") {
		t.Errorf("an unchanged entry is listed:\n%s", out)
	}
	os.WriteFile(old, []byte("secure.test encrypt\n"), 0o644)
	code, out, _ = runCmd(t, append(append([]string{"learn", "--diff", old}, base...), log)...)
	if code != 0 || !strings.Contains(out, ">  stronger secure.test encrypt -> secure") || !strings.Contains(out, "+  added    enc.test encrypt") {
		t.Errorf("exit %d, want 0\n%s", code, out)
	}
	if code, _, _ := runCmd(t, "learn", "--diff", filepath.Join(dir, "missing"), log); code != exitUsage {
		t.Errorf("missing --diff file: exit %d", code)
	}
	if code, _, _ := runCmd(t, "learn", filepath.Join(dir, "missing.log")); code != exitUsage {
		t.Errorf("missing log: exit %d", code)
	}
}

// TestLearnRateLimited: domains hosted on one MX address share its
// probe.rate_per_address (probes are shared per address and SNI, so here each domain's
// MX host name has its own TLSA records, hence its own SNI); those refused are
// inconclusive, not failing, and stderr says why (with --rate-limit-retries they are
// probed again a minute later).
func TestLearnRateLimited(t *testing.T) {
	t.Parallel()
	ca := fake.NewCA(t, "Root")
	cert := ca.Issue(t, fake.CertOptions{DNSNames: []string{"mx.hoster.test"}})
	s := fake.StartSMTP(t, "127.0.0.165", fake.Behavior{Hostname: "mx.hoster.test", Cert: &cert})
	port := strconv.Itoa(int(s.Addr().Port()))
	d := fake.StartDNS(t)
	d.SetAllAuthentic(true)
	var b strings.Builder
	ts := time.Now().Add(-time.Hour).UTC().Format(time.RFC3339)
	for i := range 3 {
		dom := fmt.Sprintf("hosted%d.test", i)
		mx := fmt.Sprintf("mx%d.hoster.test", i)
		d.Add(t, dom+". 60 IN MX 10 "+mx+".", mx+". 60 IN A 127.0.0.165",
			"_"+port+"._tcp."+mx+". 60 IN TLSA 3 1 1 "+strings.Repeat("ab", 32))
		fmt.Fprintf(&b, "%s h postfix/smtp[%d]: Untrusted TLS connection established to %s[127.0.0.165]:25: TLSv1.3 with cipher X (1/1 bits)\n", ts, 10+i, mx)
		fmt.Fprintf(&b, "%s h postfix/smtp[%d]: 4QA%07d: to=<u@%s>, relay=%s[127.0.0.165]:25, status=sent (250 Ok)\n", ts, 10+i, i, dom, mx)
	}
	log := filepath.Join(t.TempDir(), "mail.log")
	os.WriteFile(log, []byte(b.String()), 0o644)
	code, out, errOut := runCmd(t, "learn", "--dns.resolver", d.Addr(), "--probe.port", port,
		"--probe.allow_networks", "127.0.0.0/8", "--probe.helo", "probe.test", "--probe.rate_per_address", "1",
		"--rate-limit-retries", "0", "--min-deliveries", "1", "--json", log)
	var j struct {
		Domains []struct{ Domain, Status, Reason string }
	}
	if err := json.Unmarshal([]byte(out), &j); err != nil || code != 0 {
		t.Fatalf("exit %d %v\n%s\n%s", code, err, out, errOut)
	}
	n := map[string]int{}
	for _, d := range j.Domains {
		n[d.Status]++
		if d.Status == "inconclusive" && !strings.Contains(d.Reason, "rate-limited") {
			t.Errorf("%+v", d)
		}
	}
	if n["inconclusive"] != 2 || !strings.Contains(errOut, "2 domains still rate-limited") {
		t.Errorf("statuses %v\n%s\n%s", n, out, errOut)
	}
}
