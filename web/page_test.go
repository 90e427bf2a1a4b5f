package web_test

import (
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"
)

func body(t *testing.T, resp *http.Response) string {
	t.Helper()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestPagePass: the page states the verdict per level in words (not only colours),
// the sentences of the SMTP replies, the MX host, TLS version, certificate subject,
// issuer and expiry, MTA-STS, and when it was checked and until when it holds.
func TestPagePass(t *testing.T) {
	t.Parallel()
	s := newServer(t, 100, tokensFile, time.Second)
	resp := s.do(t, "GET", "/?domain=good.example&level=encrypt", "Basic portal:"+tokenA)
	page := body(t, resp)
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/html; charset=utf-8" {
		t.Fatalf("%d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	for _, want := range []string{
		`<meta name="viewport" content="width=device-width, initial-scale=1">`,
		`<span class="word">PASS</span> good.example at level encrypt`,
		"Mail to good.example can be delivered with encrypted delivery (TLS).",
		// verify: the made-up probe found the chain trusted and the name right.
		`<th scope="row">verify</th><td class="word">PASS</td>`,
		// dane-only needs DNSSEC-validated MX records: the same sentence as the RCPT reply.
		`<th scope="row">dane-only</th><td class="word">FAIL</td><td>Mail to good.example requires encrypted delivery authenticated by DANE (TLS dane-only), but its MX records are not DNSSEC-signed.`,
		"mx.good.example", "192.0.2.1", "TLSv1.3", "TLS_AES_128_GCM_SHA256",
		"<dt>Certificate subject</dt><dd>CN=mx.good.example</dd>",
		"<dt>Issuer</dt><dd>CN=Test Root \\&lt;CA\\&gt;,O=tlsgate fake</dd>",
		"to " + t0.Add(90*24*time.Hour).Format("2006-01-02"),
		"Checked 2026-05-04 12:00:00 UTC (from the cache)",
		"this answer holds until 2026-05-04 13:00:00 UTC",
		`<option value="encrypt" selected>`,
	} {
		if !strings.Contains(page, want) {
			t.Errorf("page has no %q", want)
		}
	}
	// No external resources: nothing loaded from another origin, no script.
	if m := regexp.MustCompile(`(?i)(src|href)="(https?:)?//|<script`).FindString(page); m != "" {
		t.Errorf("page loads something from elsewhere or runs a script: %q", m)
	}
	if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") {
		t.Errorf("CSP %q", csp)
	}
}

// TestPageFail: a failing domain is a 200 page (the check worked) saying FAIL and why.
func TestPageFail(t *testing.T) {
	t.Parallel()
	s := newServer(t, 100, "", time.Second)
	resp := s.do(t, "GET", "/?domain=notls.example", "")
	page := body(t, resp)
	for _, want := range []string{
		`<span class="word">FAIL</span> notls.example at level encrypt`,
		"Mail to notls.example requires encrypted delivery (TLS), but its mail servers do not offer it.",
		"<dt>STARTTLS</dt><dd>not offered</dd>",
	} {
		if !strings.Contains(page, want) {
			t.Errorf("page has no %q", want)
		}
	}
	if resp.StatusCode != 200 {
		t.Errorf("status %d", resp.StatusCode)
	}
}

// TestPageEscapes: HTML in the domain typed, in the server's greeting and in the
// certificate's names reaches the page as text, never as markup.
func TestPageEscapes(t *testing.T) {
	t.Parallel()
	s := newServer(t, 100, "", time.Second)
	resp := s.do(t, "GET", "/?domain=%3Cscript%3Ealert(1)%3C/script%3E.example", "")
	page := body(t, resp)
	if resp.StatusCode != 400 || !strings.Contains(page, "<code>&lt;script&gt;alert(1)&lt;/script&gt;.example</code>") || strings.Contains(page, "<script>") {
		t.Errorf("a domain with HTML: status %d; want 400 and the domain escaped:\n%s", resp.StatusCode, page)
	}
	resp = s.do(t, "GET", "/?domain=evil.example", "")
	page = body(t, resp)
	for _, bad := range []string{"<script>", "<img", `onerror=alert`} {
		if strings.Contains(page, bad) && !strings.Contains(page, "&lt;img src=x onerror=alert(1)&gt;") {
			t.Errorf("remote HTML %q reached the page as markup", bad)
		}
	}
	for _, want := range []string{
		"&lt;img src=x onerror=alert(1)&gt; ESMTP &#34;quoted&#34; &amp; more",
		// RFC 4514 escapes < > " in a DN string with a backslash.
		`CN=\&lt;script\&gt;alert(\&#34;cn\&#34;)\&lt;/script\&gt;`,
	} {
		if !strings.Contains(page, want) {
			t.Errorf("page has no %q", want)
		}
	}
	if strings.Contains(page, "<script") {
		t.Error("a <script> element on the page")
	}
}

// TestPageBidi: a greeting with a right-to-left override shows the override as an
// escape, so it cannot reverse the text after it.
func TestPageBidi(t *testing.T) {
	t.Parallel()
	s := newServer(t, 100, "", time.Second)
	f := s.backend.facts["notls.example"]
	f.Attempts[0].Result.Greeting.Text = "mx \u202egnp.exe ESMTP"
	page := body(t, s.do(t, "GET", "/?domain=notls.example", ""))
	if strings.Contains(page, "\u202e") || !strings.Contains(page, `mx \u202egnp.exe ESMTP`) {
		t.Errorf("greeting with U+202E: the override reached the page")
	}
}

// TestPageIDN: a domain typed in Unicode is checked as its A-label and shown both ways.
func TestPageIDN(t *testing.T) {
	t.Parallel()
	s := newServer(t, 100, "", time.Second)
	page := body(t, s.do(t, "GET", "/?domain=b%C3%BCcher.example", ""))
	if !strings.Contains(page, "xn--bcher-kva.example (bücher.example)") {
		t.Errorf("page does not show the A-label and the U-label:\n%s", page)
	}
}

// TestPageAuth: without credentials the page is refused with a Basic challenge (a
// browser then asks for the name and token), and so is a request another site makes.
func TestPageAuth(t *testing.T) {
	t.Parallel()
	s := newServer(t, 100, tokensFile, time.Second)
	resp := s.do(t, "GET", "/?domain=good.example", "")
	page := body(t, resp)
	if resp.StatusCode != 401 || !strings.Contains(strings.Join(resp.Header.Values("WWW-Authenticate"), "|"), `Basic realm="tlsgate"`) {
		t.Errorf("unauthenticated: %d %q", resp.StatusCode, resp.Header.Values("WWW-Authenticate"))
	}
	if strings.Contains(page, `id="verdict"`) || !strings.Contains(page, "a token is required") {
		t.Errorf("unauthenticated page:\n%s", page)
	}
	if resp := s.do(t, "GET", "/", ""); resp.StatusCode != 401 {
		t.Errorf("the empty form without credentials: %d; want 401", resp.StatusCode)
	}
	resp = s.do(t, "GET", "/?domain=good.example", "Basic portal:"+tokenA, "Sec-Fetch-Site", "cross-site")
	if resp.StatusCode != 403 {
		t.Errorf("cross-site: %d; want 403", resp.StatusCode)
	}
	if s.backend.calls != 0 {
		t.Errorf("%d checks ran", s.backend.calls)
	}
	resp = s.do(t, "GET", "/?domain=good.example", "Basic portal:"+tokenA, "Sec-Fetch-Site", "same-origin")
	if resp.StatusCode != 200 {
		t.Errorf("same-origin form submission: %d; want 200", resp.StatusCode)
	}
}

// TestPageErrors: the page shows the API's errors with the same status.
func TestPageErrors(t *testing.T) {
	t.Parallel()
	s := newServer(t, 100, "", 50*time.Millisecond)
	for _, tc := range []struct {
		query  string
		status int
		want   string
	}{
		{"domain=private.example", 403, "not allowed to check"},
		{"domain=good.example&level=bogus", 400, "is not a TLS level"},
		{"domain=slow.example", 503, "in progress"},
		{"domain=overloaded.example", 503, "too many checks"},
	} {
		resp := s.do(t, "GET", "/?"+tc.query, "")
		page := body(t, resp)
		if resp.StatusCode != tc.status || !strings.Contains(page, tc.want) {
			t.Errorf("%s: %d; want %d with %q", tc.query, resp.StatusCode, tc.status, tc.want)
		}
		// A check in progress reloads itself when the answer may be there.
		if refresh := strings.Contains(page, `<meta http-equiv="refresh" content="10">`); refresh != (tc.query == "domain=slow.example") {
			t.Errorf("%s: refresh %v", tc.query, refresh)
		}
	}
}

// TestStatic: the style sheet is embedded; nothing else is served from /static/.
func TestStatic(t *testing.T) {
	t.Parallel()
	s := newServer(t, 100, "", time.Second)
	resp := s.do(t, "GET", "/static/style.css", "")
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/css; charset=utf-8" || !strings.Contains(body(t, resp), ".verdict") {
		t.Errorf("style.css: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	for _, p := range []string{"/static/page.html", "/assets/page.html", "/static/", "/nothing"} {
		if resp := s.do(t, "GET", p, ""); resp.StatusCode != 404 {
			t.Errorf("%s: %d; want 404", p, resp.StatusCode)
		}
	}
}
