package mtasts

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/miekg/dns"

	"github.com/tlsgate/tlsgate/internal/cache"
	"github.com/tlsgate/tlsgate/internal/dnsx"
	"github.com/tlsgate/tlsgate/internal/problem"
	"github.com/tlsgate/tlsgate/internal/tlsrpt"
)

// Status says whether a domain has an MTA-STS policy a sender must apply.
type Status int

// Lookup outcomes.
const (
	StatusNone   Status = iota // no usable policy: deliver as if the domain had no MTA-STS
	StatusPolicy               // a policy (fresh or cached) applies; see Result.Policy.Mode
	StatusError                // the TXT lookup failed (SERVFAIL, timeout) and no policy is cached
)

func (s Status) String() string {
	return [...]string{"none", "policy", "error"}[s]
}

// Result is what Client.Lookup found for a domain. Results are immutable.
type Result struct {
	Status Status
	ID     string  // the id of the TXT record ("" when there was none)
	Policy *Policy // set when Status is StatusPolicy
	Cached bool    // Policy came from the policy cache rather than a fetch made now
	// Fetched and Expires bound the policy's life (Fetched + max_age, RFC 8461 §3.2).
	Fetched time.Time
	Expires time.Time
	// Problem is the RFC 8460 result type of the latest failure ("" when none); Detail
	// explains it or, without a failure, what was found. A failure may come with a
	// cached Policy that still applies (RFC 8461 §5.1).
	Problem tlsrpt.ResultType
	Detail  string
	// TTL is how long this result may be reused: the TXT record's TTL, capped by the
	// policy's expiry. The id must be re-checked after it (RFC 8461 §5.1).
	TTL time.Duration
}

// Config configures a Client. Zero values take the documented defaults.
type Config struct {
	// Resolver resolves the TXT record and the policy host; it must be the configured
	// resolver, never the system one.
	Resolver dnsx.Resolver
	// Dial connects to one address ("ip:port"); default a net.Dialer.
	Dial func(ctx context.Context, network, address string) (net.Conn, error)
	// Allowed says whether an address may be contacted (the outbound abuse guard).
	// nil allows every address.
	Allowed func(netip.Addr) bool
	Roots   *x509.CertPool // trust anchors for the policy host; nil: system roots
	Timeout time.Duration  // the whole fetch; default DefaultTimeout
	Port    int            // HTTPS port; default 443 (tests use another)
	// CacheSize bounds the number of cached policies; default DefaultCacheSize.
	CacheSize int
	// Backoff is how long a failed fetch is not retried (doubling per failure up to
	// MaxBackoff); defaults 1m and 1h.
	Backoff    time.Duration
	MaxBackoff time.Duration
	Now        func() time.Time
	Log        *slog.Logger
	// Store, when set, keeps policies beyond this process: the fleet's shared tier.
	// A policy one host fetched protects the domain at every host (RFC 8461 §5.1,
	// "policy persistence").
	Store PolicyStore
}

// PolicyStore persists policies outside the process. Both methods are bounded by the
// store's own deadline; a failure is a miss.
type PolicyStore interface {
	LoadPolicy(ctx context.Context, domain string) (Saved, bool)
	SavePolicy(ctx context.Context, s Saved)
}

// Client looks up MTA-STS policies (RFC 8461 §3, §5) and keeps them for max_age.
type Client struct {
	cfg    Config
	http   *http.Client
	policy *cache.Cache[*entry]
}

// entry is the cached state of one domain: the last good policy, and the latest fetch
// failure with its back-off.
type entry struct {
	id      string // the id of policy
	policy  *Policy
	fetched time.Time
	expires time.Time
	// The latest failed fetch: for which id, how many times in a row, not again
	// before retry, and why.
	failedID string
	failures int
	retry    time.Time
	problem  tlsrpt.ResultType
	detail   string
}

// usable reports whether e holds a policy that has not expired at now.
func (e *entry) usable(now time.Time) bool {
	return e != nil && e.policy != nil && now.Before(e.expires)
}

// Defaults of the Config fields New fills in for a zero value; the configuration's
// schema uses the same constants for mta_sts.timeout and mta_sts.cache_size.
const (
	DefaultTimeout   = 5 * time.Second
	DefaultCacheSize = 10000
)

// New returns a Client.
func New(cfg Config) (*Client, error) {
	if cfg.Resolver == nil {
		return nil, errors.New("mtasts: Resolver is required")
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.Port <= 0 {
		cfg.Port = 443
	}
	if cfg.CacheSize <= 0 {
		cfg.CacheSize = DefaultCacheSize
	}
	if cfg.Backoff <= 0 {
		cfg.Backoff = time.Minute
	}
	if cfg.MaxBackoff <= 0 {
		cfg.MaxBackoff = time.Hour
	}
	if cfg.Dial == nil {
		cfg.Dial = (&net.Dialer{}).DialContext
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	pc, err := cache.NewListed[*entry](cfg.CacheSize) // listed for Export
	if err != nil {
		return nil, fmt.Errorf("mtasts: %w", err)
	}
	c := &Client{cfg: cfg, policy: pc}
	c.http = &http.Client{
		Transport: &http.Transport{
			Proxy:                  nil, // never an environment proxy: the fetch is ours
			DialContext:            c.dial,
			TLSClientConfig:        &tls.Config{RootCAs: cfg.Roots, MinVersion: tls.VersionTLS12},
			DisableKeepAlives:      true,
			MaxResponseHeaderBytes: 16 << 10,
			TLSHandshakeTimeout:    cfg.Timeout,
			ResponseHeaderTimeout:  cfg.Timeout,
		},
		// RFC 8461 §3.3: "HTTP 3xx redirects MUST NOT be followed".
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		Timeout:       cfg.Timeout,
	}
	return c, nil
}

// Close releases the policy cache.
func (c *Client) Close() { c.policy.Close() }

// Lookup finds the policy that applies to domain (an A-label, lower case) now, from the
// cache when its id is unchanged, else fetched (RFC 8461 §5.1 "Policy Application
// Control Flow"):
//   - the TXT record is looked up on every call (the resolver caches it for its TTL);
//   - a cached, unexpired policy is used when the id is unchanged, when the TXT record
//     is missing or invalid, or when a refetch fails;
//   - a fetch is attempted when the id is new, and not again within the back-off after a
//     failure;
//   - without a usable policy the domain is treated as having none (§5), except when
//     the TXT lookup itself failed: that is StatusError, never a silent downgrade.
func (c *Client) Lookup(ctx context.Context, domain string) Result {
	now := c.cfg.Now()
	old, _ := c.policy.Get(domain)
	if old == nil && c.cfg.Store != nil {
		if s, ok := c.cfg.Store.LoadPolicy(ctx, domain); ok && s.Domain == domain && now.Before(s.Expires) && validSaved(s) {
			old = &entry{id: s.ID, policy: &Policy{Mode: s.Mode, MaxAge: time.Duration(s.MaxAge) * time.Second, MX: s.MX},
				fetched: s.Fetched, expires: s.Expires}
			c.store(domain, old, now)
		}
	}
	id, ttl, txtErr := c.lookupTXT(ctx, domain)
	switch {
	case errors.Is(txtErr, errTXTTemporary):
		// The detail may reach a sender's reply (a tempfail): it names the finding,
		// not the resolver's address (problem.Describe); the log has the whole error.
		c.cfg.Log.Debug("MTA-STS TXT lookup failed", "domain", domain, "err", txtErr)
		detail := "TXT lookup for _mta-sts." + domain + " failed: " + problem.Describe(txtErr)
		if old.usable(now) {
			return c.cached(old, now, ttl, tlsrpt.STSPolicyFetchError, detail+"; using the cached policy")
		}
		return Result{Status: StatusError, Problem: tlsrpt.STSPolicyFetchError, Detail: detail, TTL: ttl}
	case txtErr != nil:
		// No (valid) record. §5.1: a missing record does not invalidate a cached policy.
		if old.usable(now) {
			return c.cached(old, now, ttl, "", "no valid TXT record ("+problem.Describe(txtErr)+"); the cached policy still applies")
		}
		return Result{Status: StatusNone, Detail: problem.Describe(txtErr), TTL: ttl}
	}
	if old.usable(now) && old.id == id {
		return c.cached(old, now, ttl, "", "")
	}
	if old != nil && old.failedID == id && now.Before(old.retry) {
		// The last fetch for this id failed: wait out the back-off.
		return c.failed(old, now, id, ttl)
	}
	p, prob, err := c.fetch(ctx, domain)
	if err != nil {
		e := &entry{failedID: id, problem: prob, detail: "policy fetch failed: " + problem.Describe(err), failures: 1}
		if old != nil {
			if old.failedID == id {
				e.failures = old.failures + 1
			}
			if old.usable(now) {
				e.id, e.policy, e.fetched, e.expires = old.id, old.policy, old.fetched, old.expires
			}
		}
		e.retry = now.Add(min(c.cfg.Backoff<<min(e.failures-1, 16), c.cfg.MaxBackoff))
		c.cfg.Log.Info("MTA-STS policy fetch failed", "domain", domain, "url", policyURL(domain), "id", id, "problem", prob, "err", err, "retry", e.retry)
		c.store(domain, e, now)
		return c.failed(e, now, id, ttl)
	}
	e := &entry{id: id, policy: p, fetched: now, expires: now.Add(p.MaxAge)}
	c.store(domain, e, now)
	if c.cfg.Store != nil {
		c.cfg.Store.SavePolicy(ctx, Saved{Domain: domain, ID: id, Mode: p.Mode, MaxAge: int64(p.MaxAge / time.Second),
			MX: p.MX, Fetched: now, Expires: e.expires})
	}
	return Result{Status: StatusPolicy, ID: id, Policy: p, Fetched: now, Expires: e.expires,
		Detail: "policy fetched", TTL: capTTL(ttl, e.expires.Sub(now))}
}

// cached returns e's policy as the result.
func (c *Client) cached(e *entry, now time.Time, ttl time.Duration, problem tlsrpt.ResultType, detail string) Result {
	if detail == "" {
		detail = "cached policy, id unchanged"
	}
	return Result{Status: StatusPolicy, ID: e.id, Policy: e.policy, Cached: true, Fetched: e.fetched,
		Expires: e.expires, Problem: problem, Detail: detail, TTL: capTTL(ttl, e.expires.Sub(now))}
}

// failed is the result after a failed fetch: the old policy while it lasts (§5.1),
// else no policy (§5: "continue with delivery as though the domain has not implemented
// MTA-STS"), and reusable until the next retry.
func (c *Client) failed(e *entry, now time.Time, id string, ttl time.Duration) Result {
	ttl = capTTL(ttl, e.retry.Sub(now))
	if e.usable(now) {
		r := c.cached(e, now, ttl, e.problem, "policy fetch for id "+id+" failed, using the cached policy: "+e.detail)
		r.ID = id
		return r
	}
	return Result{Status: StatusNone, ID: id, Problem: e.problem, Detail: e.detail, TTL: ttl}
}

// store caches e until the later of its policy's expiry and its retry time.
func (c *Client) store(domain string, e *entry, now time.Time) {
	until := e.retry
	if e.policy != nil && e.expires.After(until) {
		until = e.expires
	}
	if ttl := until.Sub(now); ttl > 0 {
		c.policy.Set(domain, e, ttl)
	} else {
		c.policy.Delete(domain)
	}
}

// capTTL returns the smaller of ttl and limit, never below zero.
func capTTL(ttl, limit time.Duration) time.Duration {
	return max(min(ttl, limit), 0)
}

var errTXTTemporary = errors.New("TXT lookup failed")

// lookupTXT returns the id of the _mta-sts TXT record (RFC 8461 §3.1). A temporary DNS
// failure wraps errTXTTemporary; any other error means "no valid record".
func (c *Client) lookupTXT(ctx context.Context, domain string) (id string, ttl time.Duration, err error) {
	name := "_mta-sts." + domain
	ans, err := c.cfg.Resolver.Lookup(ctx, name, dns.TypeTXT)
	if err != nil {
		return "", 0, fmt.Errorf("%w: %s: %w", errTXTTemporary, name, err)
	}
	if ans.Status != dnsx.StatusOK {
		return "", ans.TTL, fmt.Errorf("%s: %s", name, ans.Status)
	}
	var records []string
	for _, rr := range ans.Records {
		if t, ok := rr.(*dns.TXT); ok {
			records = append(records, strings.Join(t.Txt, ""))
		}
	}
	id, err = ParseTXT(records)
	if err != nil {
		return "", ans.TTL, fmt.Errorf("%s: %w", name, err)
	}
	return id, ans.TTL, nil
}

// fetch gets and parses the policy (RFC 8461 §3.3) from policyURL(domain). kind
// classifies an error, whose text does not repeat the URL.
func (c *Client) fetch(ctx context.Context, domain string) (p *Policy, kind tlsrpt.ResultType, err error) {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	url := policyURL(domain)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, tlsrpt.STSPolicyFetchError, err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		var cv *tls.CertificateVerificationError
		if errors.As(err, &cv) {
			// §3.3: the policy host must present a certificate valid for its name.
			return nil, tlsrpt.STSWebPKIInvalid, fmt.Errorf("certificate not valid: %w", cv.Err)
		}
		return nil, tlsrpt.STSPolicyFetchError, err
	}
	defer resp.Body.Close()
	// §3.3: "only be considered valid ... if the HTTP response code is 200 (OK)";
	// redirects are not followed, so a 3xx lands here too.
	if resp.StatusCode != http.StatusOK {
		return nil, tlsrpt.STSPolicyFetchError, fmt.Errorf("HTTP status %s", resp.Status)
	}
	// §3.3: the policy is served as "text/plain".
	if mt, _, err := mime.ParseMediaType(resp.Header.Get("Content-Type")); err != nil || mt != "text/plain" {
		return nil, tlsrpt.STSPolicyInvalid, fmt.Errorf("media type %q, not text/plain", resp.Header.Get("Content-Type"))
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, MaxPolicySize+1))
	if err != nil {
		return nil, tlsrpt.STSPolicyFetchError, fmt.Errorf("reading the body: %w", err)
	}
	if len(body) > MaxPolicySize {
		return nil, tlsrpt.STSPolicyInvalid, fmt.Errorf("policy larger than %d bytes", MaxPolicySize)
	}
	p, err = ParsePolicy(body)
	if err != nil {
		return nil, tlsrpt.STSPolicyInvalid, err
	}
	return p, "", nil
}

// policyURL is where domain's policy is served (RFC 8461 §3.3).
func policyURL(domain string) string {
	return "https://mta-sts." + domain + "/.well-known/mta-sts.txt"
}

// dial resolves the policy host through the configured resolver (never the system
// one) and connects to its first reachable allowed address.
func (c *Client) dial(ctx context.Context, network, address string) (net.Conn, error) {
	host, _, err := net.SplitHostPort(address)
	if err != nil {
		return nil, err
	}
	var addrs []netip.Addr
	var errs []error
	for _, qt := range []uint16{dns.TypeA, dns.TypeAAAA} {
		ans, err := c.cfg.Resolver.Lookup(ctx, host, qt)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s %s: %w", host, dns.TypeToString[qt], err))
			continue
		}
		addrs = append(addrs, ans.Addrs()...)
	}
	if len(addrs) == 0 {
		if len(errs) > 0 {
			return nil, errors.Join(errs...)
		}
		return nil, fmt.Errorf("%s has no address", host)
	}
	for _, ip := range addrs {
		if c.cfg.Allowed != nil && !c.cfg.Allowed(ip) {
			errs = append(errs, fmt.Errorf("%s[%s] is not a public address; not contacted (allow it with probe.allow_networks)", host, ip))
			continue
		}
		conn, err := c.cfg.Dial(ctx, network, net.JoinHostPort(ip.String(), strconv.Itoa(c.cfg.Port)))
		if err == nil {
			return conn, nil
		}
		errs = append(errs, err)
	}
	return nil, errors.Join(errs...)
}
