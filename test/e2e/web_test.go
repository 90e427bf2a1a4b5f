//go:build e2e

package e2e

// The check page in a real browser: Debian's chromium, headless, driven by its own
// flags (--dump-dom prints the DOM after the page loaded, --screenshot draws it), against
// the tlsgate of the e2e world with web.listen set and a tokens file. The page's form
// is a GET form to the page itself, so the DOM of the URL a submission produces is what
// a user sees after pressing "Check".

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const (
	webAddr      = milterAddr + ":8425"
	webTokenName = "e2e-portal"
	webToken     = "e2e0123456789abcdef0123456789abcd"
)

// webTokensFile writes the tokens file of the world's tlsgate (mode 0600).
func (w *world) webTokensFile() string {
	return w.write("web-tokens", "# the e2e suite's client\n"+webTokenName+" "+webToken+"\n", 0o600)
}

// chromium runs headless Chromium with a fresh profile and returns its stdout.
func (w *world) chromium(t *testing.T, args ...string) string {
	t.Helper()
	bin, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatalf("chromium not found: run test/e2e/install.sh (%v)", err)
	}
	profile, err := os.MkdirTemp(w.dir, "chromium-")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, append([]string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
		"--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--disable-dev-shm-usage", "--hide-scrollbars", "--user-data-dir=" + profile}, args...)...)
	cmd.Env = append(os.Environ(), "HOME="+profile)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("chromium %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return string(out)
}

// dumpDOM loads target (a path and query) in the browser, with the token as HTTP basic
// credentials in the URL when auth is set, and returns the DOM.
func (w *world) dumpDOM(t *testing.T, target string, auth bool) string {
	t.Helper()
	return w.chromium(t, "--dump-dom", pageURL(target, auth))
}

func pageURL(target string, auth bool) string {
	u := "http://" + webAddr + target
	if auth {
		u = "http://" + url.UserPassword(webTokenName, webToken).String() + "@" + webAddr + target
	}
	return u
}

// formQuery is the query string the page's form submits for these inputs, after
// checking that the DOM has that form: GET to the page itself, a domain input and a
// level select offering level.
func formQuery(t *testing.T, dom, domain, level string) string {
	t.Helper()
	for _, want := range []string{`<form method="get" action="/"`, `name="domain"`, `<select id="level" name="level">`, `<option value="` + level + `"`} {
		if !strings.Contains(dom, want) {
			t.Fatalf("the page's form has no %q:\n%s", want, dom)
		}
	}
	return "/?" + url.Values{"domain": {domain}, "level": {level}}.Encode()
}

func (w *world) checkPage(t *testing.T) {
	// Unauthenticated: the API says 401 in JSON, the page shows no verdict.
	resp, err := http.Get("http://" + webAddr + "/api/v1/check?domain=tls.test")
	if err != nil {
		t.Fatal(err)
	}
	var apiErr struct{ Error string }
	_ = json.NewDecoder(resp.Body).Decode(&apiErr)
	resp.Body.Close()
	if resp.StatusCode != 401 || apiErr.Error != "unauthorized" {
		t.Errorf("API without a token: %d %q; want 401 unauthorized", resp.StatusCode, apiErr.Error)
	}
	// Headless, the browser has nobody to ask for credentials: it shows nothing of the
	// 401 page, and certainly no verdict.
	dom := w.dumpDOM(t, "/?domain=tls.test", false)
	if strings.Contains(dom, `id="verdict"`) || strings.Contains(dom, "PASS") {
		t.Errorf("the page without credentials shows a verdict:\n%s", dom)
	}
	resp, err = http.Get("http://" + webAddr + "/?domain=tls.test")
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 401 || !strings.Contains(resp.Header.Get("WWW-Authenticate"), "realm") || strings.Contains(string(page), `id="verdict"`) {
		t.Errorf("the page without credentials: %d %q", resp.StatusCode, resp.Header.Values("WWW-Authenticate"))
	}

	// The empty page's form, submitted for a passing and a failing domain.
	form := w.dumpDOM(t, "/", true)
	for _, tc := range []struct{ domain, level, word, sentence string }{
		{"tls.test", "dane-only", "PASS", "Mail to tls.test can be delivered with encrypted delivery authenticated by DANE (TLS dane-only)."},
		{"notls.test", "encrypt", "FAIL", "Mail to notls.test requires encrypted delivery (TLS), but its mail servers do not offer it."},
	} {
		target := formQuery(t, form, tc.domain, tc.level)
		dom := w.dumpDOM(t, target, true)
		for _, want := range []string{
			`<span class="word">` + tc.word + `</span> ` + tc.domain + ` at level ` + tc.level,
			tc.sentence,
			"mx." + tc.domain, // the MX host
			"this answer holds until",
		} {
			if !strings.Contains(dom, want) {
				t.Errorf("%s: the page has no %q:\n%s", target, want, dom)
			}
		}
		if tc.word == "PASS" {
			for _, want := range []string{"TLSv1.3", "<dt>Certificate subject</dt>", "<dt>Issuer</dt><dd>CN=tlsgate e2e root", "<dt>DANE (TLSA)</dt><dd>found"} {
				if !strings.Contains(dom, want) {
					t.Errorf("%s: the page has no %q", target, want)
				}
			}
		}
	}

	// A domain with HTML in it is shown as text: no element made of it.
	dom = w.dumpDOM(t, "/?"+url.Values{"domain": {`<b id="injected">x</b>.test`}}.Encode(), true)
	if strings.Contains(dom, `<b id="injected"`) || !strings.Contains(dom, `<code>&lt;b id="injected"&gt;x&lt;/b&gt;.test</code>`) {
		t.Errorf("a domain with HTML is not shown escaped:\n%s", dom)
	}

	// The API answers the same verdict as `tlsgate check --json`, with the token.
	req, _ := http.NewRequest("GET", "http://"+webAddr+"/api/v1/check?domain=notls.test&level=encrypt", nil)
	req.Header.Set("Authorization", "Bearer "+webToken)
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var report struct{ Domain, Status, Reason string }
	if err := json.Unmarshal(body, &report); err != nil || resp.StatusCode != 200 || report.Status != "fail" || report.Reason != "starttls-not-supported" {
		t.Errorf("API with a token: %d %s", resp.StatusCode, body)
	}

	// The screenshots, test artefacts kept after the run (the world's directory is
	// removed when the suite passes): desktop and phone widths, in
	// $TLSGATE_E2E_ARTIFACTS, else <tmp>/tlsgate-e2e-artifacts, replaced by each run.
	artifacts := os.Getenv("TLSGATE_E2E_ARTIFACTS")
	if artifacts == "" {
		artifacts = filepath.Join(os.TempDir(), "tlsgate-e2e-artifacts")
	}
	if err := os.MkdirAll(artifacts, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, size := range []struct{ name, window string }{{"check-page.png", "1000,1500"}, {"check-page-phone.png", "390,1400"}} {
		shot := filepath.Join(artifacts, size.name)
		w.chromium(t, "--screenshot="+shot, "--window-size="+size.window, pageURL("/?domain=tls.test&level=dane-only", true))
		st, err := os.Stat(shot)
		if err != nil || st.Size() < 10000 {
			t.Errorf("screenshot %s: %v", shot, err)
			continue
		}
		if b, _ := os.ReadFile(shot); !bytes.HasPrefix(b, []byte("\x89PNG\r\n\x1a\n")) {
			t.Errorf("screenshot %s is not a PNG", shot)
		}
		t.Logf("screenshot of the check page: %s", shot)
	}
}
