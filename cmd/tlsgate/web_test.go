package main

import (
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/tlsgate/tlsgate/internal/fake"
)

const (
	webTestToken  = "portal-0123456789abcdef0123456789"
	webTestToken2 = "helpdesk-0123456789abcdef01234567"
)

// webGet sends GET url with a bearer token ("" none) and returns the status and body.
func webGet(t *testing.T, url, token string) (int, string, http.Header) {
	t.Helper()
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header
}

// TestServeWeb runs `tlsgate serve` with the check page and API and asks them what a
// portal asks: the check API answers the object of `tlsgate check --json` for the
// configured level, from the Verifier's cache the second time (one SMTP session for
// both); the policy API answers config check's policy; the page states the verdict;
// a request without a token is refused; a reload reads the tokens file again.
func TestServeWeb(t *testing.T) {
	t.Parallel()
	d := fake.StartDNS(t)
	ca := fake.NewCA(t, "Root")
	cert := ca.Issue(t, fake.CertOptions{DNSNames: []string{"mx.good.test"}})
	smtp := fake.StartSMTP(t, "127.0.0.72", fake.Behavior{Hostname: "mx.good.test", Cert: &cert})
	d.Add(t, "good.test. 60 IN MX 10 mx.good.test.", "mx.good.test. 60 IN A 127.0.0.72")

	dir := t.TempDir()
	tokens := filepath.Join(dir, "web-tokens")
	if err := os.WriteFile(tokens, []byte("portal "+webTestToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	webAddr := freeAddr(t)
	cfgFile := filepath.Join(dir, "tlsgate.yaml")
	cfg := "milter:\n  listen: inet:" + freeAddr(t) + "\n" +
		"dns:\n  resolver: " + d.Addr() + "\n" +
		"probe:\n  helo: probe.test\n  port: " + strconv.Itoa(int(smtp.Addr().Port())) + "\n  allow_networks: [127.0.0.0/8]\n  ca_file: " + ca.WritePEM(t, dir) + "\n" +
		"mta_sts:\n  enabled: false\n" +
		"web:\n  listen: " + webAddr + "\n  tokens_file: " + tokens + "\n  rate_per_minute: 4\n" +
		"policies:\n  - domain: good.test\n    level: secure\n"
	if err := os.WriteFile(cfgFile, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	log, stop := startServe(t, cfgFile)
	base := "http://" + webAddr

	if code, body, h := webGet(t, base+"/api/v1/check?domain=good.test", ""); code != 401 || !strings.Contains(body, `"error": "unauthorized"`) || h.Get("WWW-Authenticate") == "" {
		t.Errorf("without a token: %d %s", code, body)
	}
	for i := range 2 {
		code, body, h := webGet(t, base+"/api/v1/check?domain=GOOD.test", webTestToken)
		var got checkJSON
		if err := json.Unmarshal([]byte(body), &got); err != nil || code != 200 {
			t.Fatalf("check %d: %d %s (%v)", i+1, code, body, err)
		}
		if got.Domain != "good.test" || got.Level != "secure" || got.Rule != "policy:good.test" || got.Status != "pass" || got.Socketmap.Why == "" {
			t.Errorf("check %d: %s", i+1, body)
		}
		if !strings.HasPrefix(h.Get("Cache-Control"), "private, max-age=") {
			t.Errorf("Cache-Control %q", h.Get("Cache-Control"))
		}
	}
	if n := smtp.Connections(); n != 1 {
		t.Errorf("%d SMTP sessions for two checks; want 1 (the second from the cache)", n)
	}
	if code, body, _ := webGet(t, base+"/api/v1/policy?rcpt=user@good.test&sender=someone@example.org", webTestToken); code != 200 ||
		!strings.Contains(body, `"level": "secure"`) || !strings.Contains(body, `"rule": "policy good.test`) || !strings.Contains(body, `"on_fail": "reject"`) {
		t.Errorf("policy: %d %s", code, body)
	}
	req, _ := http.NewRequest("GET", base+"/?domain=good.test", nil)
	req.Header.Set("Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte("portal:"+webTestToken)))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(page), `<span class="word">PASS</span> good.test at level secure`) {
		t.Errorf("page: %d\n%s", resp.StatusCode, page)
	}

	// web.rate_per_minute: 4 checks a minute for this client (two API checks and the
	// page so far), then 429 with Retry-After (15 s for the next one at 4 a minute).
	if code, _, _ := webGet(t, base+"/api/v1/check?domain=good.test", webTestToken); code != 200 {
		t.Errorf("fourth check: %d; want 200", code)
	}
	if code, body, h := webGet(t, base+"/api/v1/check?domain=good.test", webTestToken); code != 429 || h.Get("Retry-After") != "15" || !strings.Contains(body, `"error": "rate_limited"`) {
		t.Errorf("fifth check in a minute at web.rate_per_minute 4: %d, Retry-After %q, %s", code, h.Get("Retry-After"), body)
	}

	// New tokens, then a reload (the configuration file changed): the old token is out.
	if err := os.WriteFile(tokens, []byte("helpdesk "+webTestToken2+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cfgFile, []byte(cfg+"# touched\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	waitLog(t, log, "configuration reloaded", 1)
	if code, _, _ := webGet(t, base+"/api/v1/check?domain=good.test", webTestToken); code != 401 {
		t.Errorf("the removed token after the reload: %d; want 401", code)
	}
	if code, _, _ := webGet(t, base+"/api/v1/check?domain=good.test", webTestToken2); code != 200 {
		t.Errorf("the new token after the reload: %d; want 200", code)
	}
	// A tokens file that no longer loads (readable by others) keeps the running tokens.
	if err := os.Chmod(tokens, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cfgFile, []byte(cfg+"# touched again\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	waitLog(t, log, "web tokens not reloaded; the running tokens stay", 1)
	if code, _, _ := webGet(t, base+"/api/v1/check?domain=good.test", webTestToken2); code != 200 {
		t.Errorf("the running token after a failed tokens reload: %d; want 200", code)
	}

	stop()
}

// TestServeWebRefuses: tlsgate does not start a check page other hosts can reach
// without authentication, nor one whose tokens file others can read; config check
// says the same and shows the page's settings.
func TestServeWebRefuses(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	tokens := filepath.Join(dir, "web-tokens")
	if err := os.WriteFile(tokens, []byte("portal "+webTestToken+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(tokens, 0o644); err != nil {
		t.Fatal(err)
	}
	base := []string{"serve", "--milter.listen", "inet:" + freeAddr(t), "--dns.resolver", "127.0.0.1:53", "--probe.helo", "probe.test"}
	code, _, errOut := runCmd(t, append(base, "--web.listen", "0.0.0.0:8425")...)
	if code != exitUsage || !strings.Contains(errOut, "web.listen: \"0.0.0.0:8425\" is not a loopback address and web.tokens_file is empty") {
		t.Errorf("all addresses without tokens: exit %d, %q", code, errOut)
	}
	code, _, errOut = runCmd(t, append(base, "--web.listen", freeAddr(t), "--web.tokens_file", tokens)...)
	if code != 1 || !strings.Contains(errOut, "web.tokens_file: "+tokens+": mode 0644 lets others read it") {
		t.Errorf("tokens file readable by others: exit %d, %q", code, errOut)
	}

	cfgFile := filepath.Join(dir, "tlsgate.yaml")
	if err := os.WriteFile(cfgFile, []byte("web:\n  listen: 192.0.2.1:8425\n  tokens_file: "+tokens+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if code, _, errOut := runCmd(t, "config", "check", cfgFile); code != exitUsage || !strings.Contains(errOut, "mode 0644") {
		t.Errorf("config check with an unsafe tokens file: exit %d, %q", code, errOut)
	}
	if err := os.Chmod(tokens, 0o600); err != nil {
		t.Fatal(err)
	}
	if code, out, errOut := runCmd(t, "config", "check", cfgFile); code != 0 || !strings.Contains(out, "web: 192.0.2.1:8425, 1 tokens from "+tokens+", 30 checks per client per minute") {
		t.Errorf("config check: exit %d, %q %q", code, out, errOut)
	}
}
