// Package web serves the check page and HTTP API of `tlsgate serve` (web.listen): the
// verdict tlsgate gives at RCPT time for a domain, per level, with the facts behind it,
// for customer portals and help desks (README "Check page and API").
//
// Every check may make this server open outbound connections (DNS, SMTP, HTTPS), so the
// server must not become an open probe relay: clients authenticate with a token (bearer,
// or HTTP basic for a browser) when a tokens file is configured, every client has a rate
// limit, checks go through the Verifier (cache, singleflight, outbound guard, per-address
// rate limit, queue bound) and never straight to a probe, and a browser's cross-site
// request is refused.
package web

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/tlsgate/tlsgate/policy"
	"github.com/tlsgate/tlsgate/verify"
)

// Backend answers checks and policy questions; cmd/tlsgate implements it with the
// Verifier and the running policy set, sharing the code of `tlsgate check --json` and
// `tlsgate config check`.
type Backend interface {
	// Check judges domain (an A-label) at level (a level name, "" for the level that
	// applies to the domain, for mail from sender when given, else encrypt), from the
	// Verifier's cache or a probe it shares. When ctx ends first it returns an error
	// wrapping verify.ErrPending; when too many probes wait, verify.ErrOverloaded.
	Check(ctx context.Context, domain, level, sender string) (*Result, error)
	// Policy is `tlsgate config check --rcpt`'s answer as a JSON object: rcpt is a
	// valid address or domain, client "" or an IP address.
	Policy(rcpt, sender, sasl, client string) (any, error)
}

// Result is one check.
type Result struct {
	JSON    any            // the API's answer: the object of `tlsgate check --json`
	Facts   *verify.Facts  // what the answer was judged from
	Verdict verify.Verdict // the verdict at the level judged
	Rule    string         // what chose the level
	Cached  bool           // the facts came from the cache
}

// Config configures a Server.
type Config struct {
	Backend Backend
	// Tokens are the clients; nil lets every client in (web.listen on loopback).
	Tokens *Tokens
	// RatePerMinute is the checks one client may ask for per minute (default
	// DefaultRatePerMinute; the configuration's web.rate_per_minute uses it too).
	RatePerMinute int
	// CheckTimeout is how long a request waits for a probe before answering
	// in_progress (default 25s, below common reverse-proxy timeouts).
	CheckTimeout time.Duration
	// Levels are the levels the page judges a domain at (default pageLevels).
	Levels []policy.Level
	Log    *slog.Logger
	Now    func() time.Time
	// OnRequest, when set, counts every request: the endpoint (check, policy, page,
	// static, other) and "ok" or the error code answered.
	OnRequest func(endpoint, result string)
}

// DefaultRatePerMinute is the checks one client may ask for per minute when
// Config.RatePerMinute is zero.
const DefaultRatePerMinute = 30

// Server is the check page and API; it is an http.Handler.
type Server struct {
	cfg     Config
	tokens  atomic.Pointer[Tokens]
	limiter *limiter
	mux     *http.ServeMux
}

// New returns a Server.
func New(cfg Config) *Server {
	if cfg.RatePerMinute <= 0 {
		cfg.RatePerMinute = DefaultRatePerMinute
	}
	if cfg.CheckTimeout <= 0 {
		cfg.CheckTimeout = 25 * time.Second
	}
	if cfg.Levels == nil {
		cfg.Levels = pageLevels
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.OnRequest == nil {
		cfg.OnRequest = func(string, string) {}
	}
	s := &Server{cfg: cfg, limiter: newLimiter(cfg.RatePerMinute), mux: http.NewServeMux()}
	s.tokens.Store(cfg.Tokens)
	s.mux.HandleFunc("/api/v1/check", s.apiCheck)
	s.mux.HandleFunc("/api/v1/policy", s.apiPolicy)
	s.mux.HandleFunc("/api/", func(w http.ResponseWriter, r *http.Request) {
		s.cfg.OnRequest("other", "not_found")
		writeError(w, http.StatusNotFound, "not_found", "no such endpoint; see /api/v1/check and /api/v1/policy")
	})
	s.mux.HandleFunc("/static/", s.static)
	s.mux.HandleFunc("/", s.page)
	return s
}

// Update applies a reloaded configuration: the clients and the rate; buckets are kept.
// nil tokens keep the running ones, and a Server started without tokens never gets
// any: a reload can neither turn authentication off nor on (web.listen was validated
// for the one it started with).
func (s *Server) Update(tokens *Tokens, ratePerMinute int) {
	if tokens != nil && s.tokens.Load() != nil {
		s.tokens.Store(tokens)
	}
	s.limiter.setRate(ratePerMinute)
}

// ServeHTTP answers GET and HEAD; everything else is 405.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		h.Set("Allow", "GET, HEAD")
		s.cfg.OnRequest("other", "method_not_allowed")
		writeError(w, http.StatusMethodNotAllowed, "method_not_allowed", "only GET and HEAD")
		return
	}
	s.mux.ServeHTTP(w, r)
}

// apiError is the body of every API error: a stable code and a sentence.
type apiError struct {
	Error      string `json:"error"`
	Message    string `json:"message"`
	RetryAfter int    `json:"retry_after,omitempty"` // seconds, as the Retry-After header
	Domain     string `json:"domain,omitempty"`
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

func writeError(w http.ResponseWriter, status int, code, msg string) {
	writeJSON(w, status, apiError{Error: code, Message: msg})
}

// failure is a request that ends in an error: the HTTP status, the API error code and
// a sentence for a person, with Retry-After seconds for 429 and 503.
type failure struct {
	status     int
	code, msg  string
	retryAfter int
	domain     string
}

func (f *failure) write(w http.ResponseWriter) {
	if f.retryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(f.retryAfter))
	}
	if f.status == http.StatusUnauthorized {
		challenge(w)
	}
	writeJSON(w, f.status, apiError{Error: f.code, Message: f.msg, RetryAfter: f.retryAfter, Domain: f.domain})
}

// challenge asks for a token: the API's clients send a bearer token, a browser asks
// its user for HTTP basic credentials (name and token).
func challenge(w http.ResponseWriter) {
	w.Header().Add("WWW-Authenticate", `Bearer realm="tlsgate"`)
	w.Header().Add("WWW-Authenticate", `Basic realm="tlsgate", charset="UTF-8"`)
}

// Retry-After of the errors that have one, in seconds.
const (
	retryInProgress = 10
	retryOverloaded = 60
)

// admit authenticates the client and takes one request from its rate limit. The client
// is its token's name, or without tokens its remote address. A failed authentication
// also costs its address a request, so guessing tokens is rate limited too.
func (s *Server) admit(r *http.Request, costs bool) (client string, f *failure) {
	now := s.cfg.Now()
	if tokens := s.tokens.Load(); tokens != nil {
		user, token, ok := credentials(r)
		name := ""
		if ok {
			name, ok = tokens.match(user, token)
		}
		if !ok {
			if allowed, wait := s.limiter.allow("addr "+remoteAddr(r), now); !allowed {
				return "", rateLimited(wait)
			}
			msg := "a token is required: Authorization: Bearer TOKEN, or HTTP basic with the token's name and the token"
			if user != "" || token != "" {
				msg = "the token is not valid"
			}
			return "", &failure{status: http.StatusUnauthorized, code: "unauthorized", msg: msg}
		}
		client = "token " + name
	} else {
		client = "addr " + remoteAddr(r)
	}
	// A browser sends a site's cookies and basic credentials along with requests other
	// sites make it send (an <img> or a form): a request another site started is
	// refused (Fetch Metadata; browsers without it send no Sec-Fetch-Site).
	if site := r.Header.Get("Sec-Fetch-Site"); site != "" && site != "same-origin" && site != "none" {
		return "", &failure{status: http.StatusForbidden, code: "cross_site", msg: "requests started by another site are refused"}
	}
	if costs {
		if allowed, wait := s.limiter.allow(client, now); !allowed {
			return "", rateLimited(wait)
		}
	}
	return client, nil
}

func rateLimited(wait time.Duration) *failure {
	secs := max(1, int(math.Ceil(wait.Seconds())))
	return &failure{status: http.StatusTooManyRequests, code: "rate_limited", retryAfter: secs,
		msg: fmt.Sprintf("too many checks from this client; try again in %d s", secs)}
}

// credentials finds a bearer token or HTTP basic credentials (user = the token's name).
func credentials(r *http.Request) (user, token string, ok bool) {
	h := r.Header.Get("Authorization")
	scheme, rest, _ := strings.Cut(h, " ")
	switch {
	case strings.EqualFold(scheme, "Bearer"):
		token = strings.TrimSpace(rest)
		return "", token, token != ""
	case strings.EqualFold(scheme, "Basic"):
		b, err := base64.StdEncoding.DecodeString(strings.TrimSpace(rest))
		if err != nil {
			return "", "", false
		}
		user, token, ok = strings.Cut(string(b), ":")
		return user, token, ok && user != "" && token != ""
	}
	return "", "", false
}

func remoteAddr(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// checkQuery is a validated check request.
type checkQuery struct {
	domain, level, sender string
}

// parseCheck validates domain (IDN accepted: turned into its A-label), level and sender.
func parseCheck(domainIn, levelIn, senderIn string) (checkQuery, *failure) {
	if strings.TrimSpace(domainIn) == "" {
		return checkQuery{}, &failure{status: http.StatusBadRequest, code: "bad_domain", msg: "domain is required"}
	}
	if i := strings.LastIndexByte(domainIn, '@'); i >= 0 {
		domainIn = domainIn[i+1:] // an address: its domain
	}
	d, err := policy.NormalizeDomain(domainIn)
	if err != nil {
		return checkQuery{}, &failure{status: http.StatusBadRequest, code: "bad_domain", msg: err.Error()}
	}
	q := checkQuery{domain: d, sender: strings.TrimSpace(senderIn)}
	if l := strings.TrimSpace(levelIn); l != "" {
		lv, err := policy.ParseLevel(l)
		if err != nil {
			return checkQuery{}, &failure{status: http.StatusBadRequest, code: "unknown_level",
				msg: fmt.Sprintf("%q is not a TLS level (allowed: %s)", l, strings.Join(policy.LevelNames(), ", "))}
		}
		q.level = lv.String()
	}
	if q.sender != "" {
		if _, err := policy.NormalizeDomain(senderDomain(q.sender)); err != nil {
			return checkQuery{}, &failure{status: http.StatusBadRequest, code: "bad_sender", msg: "sender: " + err.Error()}
		}
	}
	return q, nil
}

func senderDomain(s string) string {
	if i := strings.LastIndexByte(s, '@'); i >= 0 {
		s = s[i+1:]
	}
	return strings.Trim(s, "<> ")
}

// check runs a validated check under the request's deadline and maps what went wrong
// to a failure: in progress and overloaded are 503 with Retry-After (try again; not a
// verdict), a domain whose servers this server may not contact is 403.
func (s *Server) check(r *http.Request, q checkQuery) (*Result, *failure) {
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.CheckTimeout)
	defer cancel()
	res, err := s.cfg.Backend.Check(ctx, q.domain, q.level, q.sender)
	switch {
	case err == nil:
	case errors.Is(err, verify.ErrPending):
		return nil, &failure{status: http.StatusServiceUnavailable, code: "in_progress", retryAfter: retryInProgress, domain: q.domain,
			msg: "checking the mail servers of " + q.domain + " is in progress; ask again in a few seconds"}
	case errors.Is(err, verify.ErrOverloaded):
		return nil, &failure{status: http.StatusServiceUnavailable, code: "overloaded", retryAfter: retryOverloaded, domain: q.domain,
			msg: "too many checks are waiting; ask again in a minute"}
	case errors.Is(err, verify.ErrClosed):
		return nil, &failure{status: http.StatusServiceUnavailable, code: "shutting_down", retryAfter: retryOverloaded, msg: "tlsgate is shutting down"}
	default:
		s.cfg.Log.Error("web check failed", "domain", q.domain, "err", err)
		return nil, &failure{status: http.StatusInternalServerError, code: "internal", domain: q.domain, msg: "the check failed on this server"}
	}
	if res.Verdict.Reason == verify.ReasonProbeNotAllowed {
		// The destination is on a network tlsgate may not contact (not public, or
		// this host's own): an answer would map internal networks for the client.
		return nil, &failure{status: http.StatusForbidden, code: "probe_not_allowed", domain: q.domain,
			msg: "the mail servers of " + q.domain + " are on a network this server is not allowed to check"}
	}
	return res, nil
}

// GET /api/v1/check?domain=D[&level=L][&sender=S]
func (s *Server) apiCheck(w http.ResponseWriter, r *http.Request) {
	res, f := s.apiCheckResult(r)
	if f != nil {
		s.cfg.OnRequest("check", f.code)
		f.write(w)
		return
	}
	s.cfg.OnRequest("check", "ok")
	s.cacheHeaders(w, res)
	writeJSON(w, http.StatusOK, res.JSON)
}

func (s *Server) apiCheckResult(r *http.Request) (*Result, *failure) {
	if _, f := s.admit(r, true); f != nil {
		return nil, f
	}
	qv := r.URL.Query()
	q, f := parseCheck(qv.Get("domain"), qv.Get("level"), qv.Get("sender"))
	if f != nil {
		return nil, f
	}
	return s.check(r, q)
}

// cacheHeaders say until when the answer holds: the facts' cache lifetime.
func (s *Server) cacheHeaders(w http.ResponseWriter, res *Result) {
	if until := res.Facts.Until; !until.IsZero() {
		age := max(0, int(until.Sub(s.cfg.Now()).Seconds()))
		w.Header().Set("Cache-Control", "private, max-age="+strconv.Itoa(age))
		w.Header().Set("Expires", until.UTC().Format(http.TimeFormat))
	}
	w.Header().Set("Last-Modified", res.Facts.Checked.UTC().Format(http.TimeFormat))
}

// GET /api/v1/policy?rcpt=ADDR[&sender=S][&sasl=LOGIN][&client=IP]
func (s *Server) apiPolicy(w http.ResponseWriter, r *http.Request) {
	a, f := s.apiPolicyResult(r)
	if f != nil {
		s.cfg.OnRequest("policy", f.code)
		f.write(w)
		return
	}
	s.cfg.OnRequest("policy", "ok")
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, a)
}

func (s *Server) apiPolicyResult(r *http.Request) (any, *failure) {
	if _, f := s.admit(r, false); f != nil {
		return nil, f
	}
	qv := r.URL.Query()
	rcpt := strings.Trim(strings.TrimSpace(qv.Get("rcpt")), "<>")
	d := rcpt
	if i := strings.LastIndexByte(d, '@'); i >= 0 {
		d = d[i+1:]
	}
	if _, err := policy.NormalizeDomain(d); err != nil {
		if rcpt == "" {
			err = errors.New("rcpt is required")
		}
		return nil, &failure{status: http.StatusBadRequest, code: "bad_domain", msg: "rcpt: " + err.Error()}
	}
	sender := strings.TrimSpace(qv.Get("sender"))
	if sender != "" {
		if _, err := policy.NormalizeDomain(senderDomain(sender)); err != nil {
			return nil, &failure{status: http.StatusBadRequest, code: "bad_sender", msg: "sender: " + err.Error()}
		}
	}
	client := strings.TrimSpace(qv.Get("client"))
	if client != "" {
		if _, err := netip.ParseAddr(client); err != nil {
			return nil, &failure{status: http.StatusBadRequest, code: "bad_client", msg: "client: not an IP address"}
		}
	}
	a, err := s.cfg.Backend.Policy(rcpt, sender, qv.Get("sasl"), client)
	if err != nil {
		s.cfg.Log.Error("web policy failed", "rcpt", rcpt, "err", err)
		return nil, &failure{status: http.StatusInternalServerError, code: "internal", msg: "the policy lookup failed on this server"}
	}
	return a, nil
}
