package web_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tlsgate/tlsgate/internal/fake"
	"github.com/tlsgate/tlsgate/internal/report"
	"github.com/tlsgate/tlsgate/internal/smtpprobe"
	"github.com/tlsgate/tlsgate/policy"
	"github.com/tlsgate/tlsgate/verify"
	"github.com/tlsgate/tlsgate/web"
)

// The tests run the Server against a backend of made-up facts: what the API and the
// page answer for each kind of domain and each way a request can go wrong.

var t0 = time.Date(2026, 5, 4, 12, 0, 0, 0, time.UTC)

const (
	tokenA = "0123456789abcdef0123456789abcdef" // client "portal"
	tokenB = "fedcba9876543210fedcba9876543210" // client "helpdesk"
)

type backend struct {
	mu     sync.Mutex
	facts  map[string]*verify.Facts
	calls  int
	sender string
}

// Check judges the made-up facts; a few domains stand for the Verifier's errors.
func (b *backend) Check(ctx context.Context, domain, level, sender string) (*web.Result, error) {
	b.mu.Lock()
	b.calls++
	b.sender = sender
	b.mu.Unlock()
	switch domain {
	case "overloaded.example":
		return nil, fmt.Errorf("verify: probing %s: %w", domain, verify.ErrOverloaded)
	case "slow.example":
		<-ctx.Done()
		return nil, fmt.Errorf("%w: %w", verify.ErrPending, ctx.Err())
	case "broken.example":
		return nil, errors.New("something internal")
	}
	f, ok := b.facts[domain]
	if !ok {
		f = &verify.Facts{Domain: domain, MX: verify.MXNone, MXDetail: "the domain " + domain + " does not exist", Checked: t0, Until: t0.Add(10 * time.Minute)}
	}
	p, rule := policy.Policy{Level: policy.LevelEncrypt}, "default"
	if level != "" {
		l, err := policy.ParseLevel(level)
		if err != nil {
			return nil, err
		}
		p, rule = policy.Policy{Level: l}, "--level"
	}
	v := f.JudgeCached(p)
	return &web.Result{JSON: report.New(f, v, rule), Facts: f, Verdict: v, Rule: rule, Cached: true}, nil
}

func (b *backend) Policy(rcpt, sender, sasl, client string) (any, error) {
	return map[string]string{"rcpt": rcpt, "level": "encrypt"}, nil
}

// world is the made-up Internet: a good domain, one without STARTTLS, one whose MX is
// on a private network, and one whose server puts HTML everywhere it can.
func world(t *testing.T) map[string]*verify.Facts {
	ca := fake.NewCA(t, "Test Root <CA>")
	good := ca.Issue(t, fake.CertOptions{DNSNames: []string{"mx.good.example"}, CommonName: "mx.good.example", NotAfter: t0.Add(90 * 24 * time.Hour)})
	evil := fake.SelfSigned(t, fake.CertOptions{DNSNames: []string{"mx.evil.example"}, CommonName: `<script>alert("cn")</script>`})
	facts := func(domain, host, ip string, r smtpprobe.Result) *verify.Facts {
		a := netip.MustParseAddr(ip)
		r.IP = a
		return &verify.Facts{Domain: domain, MX: verify.MXFound, MXDetail: "1 MX host(s)", Checked: t0, Until: t0.Add(time.Hour),
			Hosts:    []verify.Host{{Name: host, Preference: 10, Addrs: []netip.Addr{a}}},
			Attempts: []verify.Attempt{{Host: host, Preference: 10, Result: r}}}
	}
	return map[string]*verify.Facts{
		"good.example": facts("good.example", "mx.good.example", "192.0.2.1", smtpprobe.Result{Outcome: smtpprobe.OutcomeTLS, Offered: true,
			Greeting: smtpprobe.Reply{Code: 220, Text: "mx.good.example ESMTP"}, TLSVersion: tls.VersionTLS13, CipherSuite: tls.TLS_AES_128_GCM_SHA256,
			Chain: []*x509.Certificate{good.Leaf}}),
		"notls.example": facts("notls.example", "mx.notls.example", "192.0.2.2", smtpprobe.Result{Outcome: smtpprobe.OutcomeNoStartTLS,
			Greeting: smtpprobe.Reply{Code: 220, Text: "mx.notls.example ESMTP"}, Detail: "STARTTLS not offered in the EHLO reply"}),
		"private.example": facts("private.example", "mx.private.example", "10.1.2.3", smtpprobe.Result{Outcome: smtpprobe.OutcomeNotAllowed,
			Detail: "10.1.2.3 is not a public address or is this host's own; not probed (allow it with probe.allow_networks)"}),
		"evil.example": facts("evil.example", "mx.evil.example", "192.0.2.4", smtpprobe.Result{Outcome: smtpprobe.OutcomeTLS, Offered: true,
			Greeting: smtpprobe.Reply{Code: 220, Text: `<img src=x onerror=alert(1)> ESMTP "quoted" & more`}, TLSVersion: tls.VersionTLS12,
			Chain: []*x509.Certificate{evil.Leaf}, PKIX: x509.UnknownAuthorityError{}}),
	}
}

type setup struct {
	srv     *web.Server
	backend *backend
	now     *time.Time
}

// newServer is a Server; tokens, when given, are written to a tokens file.
func newServer(t *testing.T, rate int, tokens string, timeout time.Duration) *setup {
	t.Helper()
	s := &setup{backend: &backend{facts: world(t)}, now: new(time.Time)}
	*s.now = t0
	var mu sync.Mutex
	cfg := web.Config{Backend: s.backend, RatePerMinute: rate, CheckTimeout: timeout,
		Now: func() time.Time { mu.Lock(); defer mu.Unlock(); return *s.now }}
	if tokens != "" {
		cfg.Tokens = loadTokens(t, tokens, 0o600)
	}
	s.srv = web.New(cfg)
	return s
}

func loadTokens(t *testing.T, content string, mode os.FileMode) *web.Tokens {
	t.Helper()
	p := filepath.Join(t.TempDir(), "tokens")
	if err := os.WriteFile(p, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil {
		t.Fatal(err)
	}
	tok, err := web.LoadTokens(p)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

const tokensFile = "# clients of the check API\nportal " + tokenA + "\n\nhelpdesk " + tokenB + "\n"

// do sends one request; auth is "Bearer X", "Basic user:pass" (encoded here) or "".
func (s *setup) do(t *testing.T, method, target, auth string, hdr ...string) *http.Response {
	t.Helper()
	r := httptest.NewRequest(method, target, nil)
	r.RemoteAddr = "192.0.2.200:40000"
	if user, ok := strings.CutPrefix(auth, "Basic "); ok {
		auth = "Basic " + base64.StdEncoding.EncodeToString([]byte(user))
	}
	if auth != "" {
		r.Header.Set("Authorization", auth)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		r.Header.Set(hdr[i], hdr[i+1])
	}
	w := httptest.NewRecorder()
	s.srv.ServeHTTP(w, r)
	return w.Result()
}

// apiError decodes an error body, failing unless it is JSON with a stable code.
func apiError(t *testing.T, resp *http.Response) (code string, body map[string]any) {
	t.Helper()
	if ct := resp.Header.Get("Content-Type"); ct != "application/json; charset=utf-8" {
		t.Errorf("Content-Type %q; want JSON", ct)
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatalf("error body is not JSON: %v", err)
	}
	code, _ = body["error"].(string)
	if msg, _ := body["message"].(string); msg == "" {
		t.Errorf("error %q has no message", code)
	}
	return code, body
}

// TestAPIErrors: every way a request can fail has its HTTP status, a JSON body with a
// stable error code, and Retry-After where trying again helps.
func TestAPIErrors(t *testing.T) {
	t.Parallel()
	bearer := "Bearer " + tokenA
	for _, tc := range []struct {
		name, method, target, auth string
		hdr                        []string
		status                     int
		code                       string
		retryAfter                 string
	}{
		{"bad domain", "GET", "/api/v1/check?domain=exa%3Cb%3Emple.com", bearer, nil, 400, "bad_domain", ""},
		{"address literal", "GET", "/api/v1/check?domain=%5B192.0.2.1%5D", bearer, nil, 400, "bad_domain", ""},
		{"no domain", "GET", "/api/v1/check", bearer, nil, 400, "bad_domain", ""},
		{"unknown level", "GET", "/api/v1/check?domain=good.example&level=encrpyt", bearer, nil, 400, "unknown_level", ""},
		{"bad sender", "GET", "/api/v1/check?domain=good.example&sender=a@-bad-", bearer, nil, 400, "bad_sender", ""},
		{"no token", "GET", "/api/v1/check?domain=good.example", "", nil, 401, "unauthorized", ""},
		{"wrong token", "GET", "/api/v1/check?domain=good.example", "Bearer " + strings.Repeat("x", 32), nil, 401, "unauthorized", ""},
		{"basic, wrong name for the token", "GET", "/api/v1/check?domain=good.example", "Basic helpdesk:" + tokenA, nil, 401, "unauthorized", ""},
		{"no token, policy", "GET", "/api/v1/policy?rcpt=a@good.example", "", nil, 401, "unauthorized", ""},
		{"probe not allowed", "GET", "/api/v1/check?domain=private.example", bearer, nil, 403, "probe_not_allowed", ""},
		{"overloaded", "GET", "/api/v1/check?domain=overloaded.example", bearer, nil, 503, "overloaded", "60"},
		{"in progress", "GET", "/api/v1/check?domain=slow.example", bearer, nil, 503, "in_progress", "10"},
		{"internal", "GET", "/api/v1/check?domain=broken.example", bearer, nil, 500, "internal", ""},
		{"cross-site", "GET", "/api/v1/check?domain=good.example", bearer, []string{"Sec-Fetch-Site", "cross-site"}, 403, "cross_site", ""},
		{"POST", "POST", "/api/v1/check?domain=good.example", bearer, nil, 405, "method_not_allowed", ""},
		{"unknown endpoint", "GET", "/api/v2/check?domain=good.example", bearer, nil, 404, "not_found", ""},
		{"policy, bad recipient", "GET", "/api/v1/policy?rcpt=a@b@", bearer, nil, 400, "bad_domain", ""},
		{"policy, no recipient", "GET", "/api/v1/policy", bearer, nil, 400, "bad_domain", ""},
		{"policy, bad client", "GET", "/api/v1/policy?rcpt=a@good.example&client=300.1.1.1", bearer, nil, 400, "bad_client", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := newServer(t, 100, tokensFile, 50*time.Millisecond)
			resp := s.do(t, tc.method, tc.target, tc.auth, tc.hdr...)
			if resp.StatusCode != tc.status {
				t.Errorf("status %d; want %d", resp.StatusCode, tc.status)
			}
			code, body := apiError(t, resp)
			if code != tc.code {
				t.Errorf("error %q; want %q (%v)", code, tc.code, body)
			}
			if got := resp.Header.Get("Retry-After"); got != tc.retryAfter {
				t.Errorf("Retry-After %q; want %q", got, tc.retryAfter)
			}
			if tc.retryAfter != "" && fmt.Sprint(body["retry_after"]) != tc.retryAfter {
				t.Errorf("retry_after in the body %v; want %s", body["retry_after"], tc.retryAfter)
			}
			if tc.status == 401 && len(resp.Header.Values("WWW-Authenticate")) != 2 {
				t.Errorf("WWW-Authenticate %q; want Bearer and Basic challenges", resp.Header.Values("WWW-Authenticate"))
			}
			if tc.status == 405 && resp.Header.Get("Allow") != "GET, HEAD" {
				t.Errorf("Allow %q", resp.Header.Get("Allow"))
			}
			if tc.code == "probe_not_allowed" && strings.Contains(fmt.Sprint(body), "10.1.2.3") {
				t.Errorf("the refusal reveals the private address: %v", body)
			}
		})
	}
}

// TestAPIUnauthenticatedLearnsNothing: without a token even a malformed request is
// answered 401, and no check reaches the backend.
func TestAPIUnauthenticatedLearnsNothing(t *testing.T) {
	t.Parallel()
	s := newServer(t, 100, tokensFile, time.Second)
	for _, target := range []string{"/api/v1/check?domain=%3Cx%3E", "/api/v1/check?domain=good.example&level=bogus", "/?domain=good.example"} {
		if resp := s.do(t, "GET", target, ""); resp.StatusCode != 401 {
			t.Errorf("%s: %d; want 401", target, resp.StatusCode)
		}
	}
	if s.backend.calls != 0 {
		t.Errorf("%d checks ran for unauthenticated requests", s.backend.calls)
	}
}

// TestAPICheck: the answer is the backend's object (`tlsgate check --json`), with
// headers that say until when it holds.
func TestAPICheck(t *testing.T) {
	t.Parallel()
	s := newServer(t, 100, tokensFile, time.Second)
	*s.now = t0.Add(10 * time.Minute)
	for _, auth := range []string{"Bearer " + tokenA, "Basic portal:" + tokenA, "Basic helpdesk:" + tokenB} {
		resp := s.do(t, "GET", "/api/v1/check?domain=GOOD.example.&level=verify&sender=someone@customer.example", auth)
		if resp.StatusCode != 200 {
			t.Fatalf("%s: status %d", auth, resp.StatusCode)
		}
		var r report.Report
		if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
			t.Fatal(err)
		}
		// The probe found the chain trusted (PKIX nil) and the name is the MX host's.
		if r.Domain != "good.example" || r.Level != "verify" || r.Status != "pass" || r.Rule != "--level" {
			t.Errorf("%s: %+v", auth, r)
		}
		if got := resp.Header.Get("Cache-Control"); got != "private, max-age=3000" {
			t.Errorf("Cache-Control %q; want the 50 minutes the facts still hold", got)
		}
		if got := resp.Header.Get("Expires"); got != t0.Add(time.Hour).Format(http.TimeFormat) {
			t.Errorf("Expires %q", got)
		}
	}
	if s.backend.sender != "someone@customer.example" {
		t.Errorf("sender %q did not reach the backend", s.backend.sender)
	}
	resp := s.do(t, "GET", "/api/v1/check?domain=notls.example", "Bearer "+tokenA)
	var r report.Report
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil || resp.StatusCode != 200 || r.Status != "fail" || r.Reason != string(verify.ReasonSTARTTLSNotSupported) {
		t.Errorf("notls.example: %d %+v %v; a failing domain is a 200 with the verdict", resp.StatusCode, r, err)
	}
	resp = s.do(t, "GET", "/api/v1/policy?rcpt=%3Cuser@good.example%3E&sender=s@customer.example&client=192.0.2.9", "Bearer "+tokenA)
	if b, _ := io.ReadAll(resp.Body); resp.StatusCode != 200 || !strings.Contains(string(b), `"level": "encrypt"`) {
		t.Errorf("policy: %d %s", resp.StatusCode, b)
	}
}

// TestRateLimit: a client gets RatePerMinute checks a minute, then 429 with
// Retry-After; other clients are not affected; the bucket refills with time; failed
// authentications cost the remote address, so tokens cannot be guessed quickly.
func TestRateLimit(t *testing.T) {
	t.Parallel()
	s := newServer(t, 2, tokensFile, time.Second)
	get := func(auth string) *http.Response { return s.do(t, "GET", "/api/v1/check?domain=good.example", auth) }
	for i := range 2 {
		if resp := get("Bearer " + tokenA); resp.StatusCode != 200 {
			t.Fatalf("check %d: %d", i+1, resp.StatusCode)
		}
	}
	resp := get("Bearer " + tokenA)
	if resp.StatusCode != 429 {
		t.Fatalf("third check in a minute at 2 per minute: %d; want 429", resp.StatusCode)
	}
	if code, _ := apiError(t, resp); code != "rate_limited" || resp.Header.Get("Retry-After") != "30" {
		t.Errorf("error %q, Retry-After %q; want rate_limited, 30", code, resp.Header.Get("Retry-After"))
	}
	// The same client by HTTP basic is the same bucket.
	if resp := get("Basic portal:" + tokenA); resp.StatusCode != 429 {
		t.Errorf("same token by basic: %d; want 429", resp.StatusCode)
	}
	if resp := get("Bearer " + tokenB); resp.StatusCode != 200 {
		t.Errorf("another client: %d; want 200", resp.StatusCode)
	}
	// The policy endpoint opens no connection and costs nothing.
	if resp := s.do(t, "GET", "/api/v1/policy?rcpt=good.example", "Bearer "+tokenA); resp.StatusCode != 200 {
		t.Errorf("policy while rate limited: %d", resp.StatusCode)
	}
	*s.now = t0.Add(31 * time.Second)
	if resp := get("Bearer " + tokenA); resp.StatusCode != 200 {
		t.Errorf("after 31 s: %d; want 200 (one check refilled)", resp.StatusCode)
	}
	for range 2 {
		if resp := get("Bearer wrong-wrong-wrong-wrong"); resp.StatusCode != 401 {
			t.Errorf("wrong token: %d; want 401", resp.StatusCode)
		}
	}
	if resp := get("Bearer wrong-wrong-wrong-wrong"); resp.StatusCode != 429 {
		t.Errorf("third wrong token in a minute from one address: %d; want 429", resp.StatusCode)
	}
}

// TestRateLimitWithoutTokens: without tokens (loopback) the client is the remote address.
func TestRateLimitWithoutTokens(t *testing.T) {
	t.Parallel()
	s := newServer(t, 1, "", time.Second)
	if resp := s.do(t, "GET", "/api/v1/check?domain=good.example", ""); resp.StatusCode != 200 {
		t.Fatalf("%d", resp.StatusCode)
	}
	if resp := s.do(t, "GET", "/?domain=good.example", ""); resp.StatusCode != 429 || resp.Header.Get("Retry-After") != "60" {
		t.Errorf("the page, second check from the address: %d, Retry-After %q; want 429, 60", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
}

// TestTokensFile: the file's permissions, syntax, token length and uniqueness.
func TestTokensFile(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, content string
		mode          os.FileMode
		want          string
	}{
		{"readable by others", tokensFile, 0o644, "mode 0644 lets others read it"},
		{"writable by the group", tokensFile, 0o660, "mode 0660"},
		{"one field", "portal\n", 0o600, ":1: want NAME TOKEN"},
		{"short token", "portal short\n", 0o600, ":1: the token of portal must be 16 to 256"},
		{"bad name", "por<tal " + tokenA + "\n", 0o600, "name \"por<tal\""},
		{"duplicate name", "portal " + tokenA + "\nportal " + tokenB + "\n", 0o600, ":2: name portal appears twice"},
		{"duplicate token", "portal " + tokenA + "\nother " + tokenA + "\n", 0o600, ":2: the token of other is also another client's"},
		{"empty", "# nobody\n", 0o600, "no tokens"},
	} {
		p := filepath.Join(t.TempDir(), "tokens")
		if err := os.WriteFile(p, []byte(tc.content), tc.mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, tc.mode); err != nil {
			t.Fatal(err)
		}
		_, err := web.LoadTokens(p)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v; want %q", tc.name, err, tc.want)
		}
		if err != nil && (strings.Contains(err.Error(), tokenA) || strings.Contains(err.Error(), tokenB)) {
			t.Errorf("%s: the error quotes a token: %v", tc.name, err)
		}
	}
	if tok := loadTokens(t, tokensFile, 0o640); tok.Len() != 2 {
		t.Errorf("%d tokens; want 2", tok.Len())
	}
}

// TestUpdate: a reload replaces the tokens; a server without tokens never gets any.
func TestUpdate(t *testing.T) {
	t.Parallel()
	s := newServer(t, 100, tokensFile, time.Second)
	s.srv.Update(loadTokens(t, "new "+tokenB+"\n", 0o600), 100)
	if resp := s.do(t, "GET", "/api/v1/check?domain=good.example", "Bearer "+tokenA); resp.StatusCode != 401 {
		t.Errorf("removed token: %d; want 401", resp.StatusCode)
	}
	if resp := s.do(t, "GET", "/api/v1/check?domain=good.example", "Basic new:"+tokenB); resp.StatusCode != 200 {
		t.Errorf("added token: %d; want 200", resp.StatusCode)
	}
	s.srv.Update(nil, 100)
	if resp := s.do(t, "GET", "/api/v1/check?domain=good.example", ""); resp.StatusCode != 401 {
		t.Errorf("after an update without tokens: %d; authentication must stay on", resp.StatusCode)
	}
}

// TestOnRequest: every request is counted by endpoint and result, the error code when
// there was one.
func TestOnRequest(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	got := map[string]int{}
	s := &setup{backend: &backend{facts: world(t)}}
	s.srv = web.New(web.Config{Backend: s.backend, Tokens: loadTokens(t, tokensFile, 0o600), Now: func() time.Time { return t0 },
		OnRequest: func(endpoint, result string) { mu.Lock(); got[endpoint+" "+result]++; mu.Unlock() }})
	s.do(t, "GET", "/api/v1/check?domain=good.example", "Bearer "+tokenA)
	s.do(t, "GET", "/api/v1/check?domain=good.example", "")
	s.do(t, "GET", "/api/v1/policy?rcpt=good.example", "Bearer "+tokenA)
	s.do(t, "GET", "/?domain=%3Cx%3E", "Bearer "+tokenA)
	s.do(t, "GET", "/static/style.css", "")
	s.do(t, "DELETE", "/api/v1/check", "")
	want := map[string]int{"check ok": 1, "check unauthorized": 1, "policy ok": 1, "page bad_domain": 1, "static ok": 1, "other method_not_allowed": 1}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("counted %v; want %v", got, want)
	}
}
