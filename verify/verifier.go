package verify

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"
	"golang.org/x/sync/singleflight"

	"github.com/tlsgate/tlsgate/internal/problem"
	"github.com/tlsgate/tlsgate/verify/cache"
	"github.com/tlsgate/tlsgate/verify/dane"
	"github.com/tlsgate/tlsgate/verify/dnsx"
	"github.com/tlsgate/tlsgate/verify/mtasts"
	"github.com/tlsgate/tlsgate/verify/smtpprobe"
)

// ErrPending is returned by Verifier.Facts when the caller's context ended before the
// probe finished. The probe goes on in the background and its facts land in the cache.
var ErrPending = errors.New("verify: verification still in progress")

// ErrOverloaded is returned by Verifier.Facts when more probes are waiting than
// Config.MaxQueued: a burst of distinct domains is answered with a tempfail rather than
// queued without bound.
var ErrOverloaded = errors.New("verify: too many probes waiting")

// ErrClosed is returned by Verifier.Facts after Close.
var ErrClosed = errors.New("verify: verifier closed")

// Prober probes one address with an optional TLS server name; *smtpprobe.Prober
// implements it.
type Prober interface {
	Probe(ctx context.Context, ip netip.Addr, sni string) smtpprobe.Result
}

var _ Prober = (*smtpprobe.Prober)(nil)

// STSLookup finds a domain's MTA-STS policy; *mtasts.Client implements it.
type STSLookup interface {
	Lookup(ctx context.Context, domain string) mtasts.Result
}

var _ STSLookup = (*mtasts.Client)(nil)

// DefaultMXAddressLimit is Postfix's default for how many addresses one delivery may
// try (postconf(5) smtp_mx_address_limit).
const DefaultMXAddressLimit = 5

// Config configures a Verifier. Zero durations and limits take the documented defaults.
type Config struct {
	Resolver       dnsx.Resolver
	Prober         Prober
	Allow          []netip.Prefix // networks that may be probed although not globally routable
	HostTimeout    time.Duration  // one SMTP session; default 10s
	DNSTimeout     time.Duration  // the DNS part of a probe; default 10s
	MXAddressLimit int
	MaxConcurrent  int // probes of distinct domains at once; default 64
	// MaxQueued bounds the probes waiting for one of the MaxConcurrent slots;
	// default 16 x MaxConcurrent. Past it Facts returns ErrOverloaded.
	MaxQueued int
	// RatePerAddress bounds the SMTP sessions opened to one address per minute
	// (0: no limit). Results are shared between domains with the same MX address for
	// AddressTTL, so the limit bites only when one address is probed for many
	// distinct reasons.
	RatePerAddress int
	// AddressTTL is how long the result of probing one address (with one SNI) is
	// reused for other domains; default 1 minute.
	AddressTTL time.Duration
	// OwnAddrs are this host's addresses, never probed unless in Allow; nil reads the
	// interface addresses, again every DefaultOwnAddrsRefresh.
	OwnAddrs []netip.Addr
	// Guard, when set, is the outbound guard to use instead of one made from Allow and
	// OwnAddrs: the one the MTA-STS client uses too. The Verifier owns it: Close
	// closes it.
	Guard       *Guard
	CacheSize   int // default 100000
	PassTTL     time.Duration
	FailTTL     time.Duration
	TempfailTTL time.Duration
	Now         func() time.Time
	Log         *slog.Logger
	// SMTPPort names the TLSA records looked up (_PORT._tcp.host); default 25.
	SMTPPort int
	// Events receives counts for metrics; nil is NopEvents.
	Events Events
	// STS looks up MTA-STS policies beside the MX records; nil disables MTA-STS.
	// The Verifier owns it: Close closes it when it has a Close method.
	STS STSLookup
	// Shared is the fleet's shared tier (cache.shared.url); nil: this host alone.
	Shared SharedTier
	// RefreshAhead re-probes the facts of a destination asked for during their cache
	// period shortly before they expire (refresh.go); RefreshTick is how often due
	// refreshes are started, default 1s.
	RefreshAhead bool
	RefreshTick  time.Duration
}

// Verifier gathers and caches Facts. Concurrent requests for one domain share one probe.
type Verifier struct {
	cfg   Config
	cache *cache.Cache[*Facts]
	group singleflight.Group
	sem   chan struct{}
	// queued counts probes started and not yet holding a sem slot.
	queued atomic.Int64
	// addrs caches probe results per address and SNI, shared between domains;
	// addrGroup collapses concurrent probes of one address.
	addrs     *cache.Cache[addrResult]
	addrGroup singleflight.Group
	limiter   *addrLimiter
	allow     func(netip.Addr) bool
	postures  *cache.Cache[posture]
	// maps caches MapFacts (the socketmap's DNS-only facts); mapGroup collapses
	// concurrent lookups of one domain.
	maps        *cache.Cache[*MapFacts]
	mapGroup    singleflight.Group
	mapsRunning atomic.Int64
	// keys indexes the cached domains for SaveCache.
	keysMu sync.Mutex
	keys   map[string]struct{}
	wg     sync.WaitGroup
	// closeMu orders wg.Add (enter) before Close's wg.Wait.
	closeMu sync.RWMutex
	closed  bool
	ctx     context.Context // parent of background probes; cancelled by Close
	stop    context.CancelFunc
	refresh *refresher // nil without Config.RefreshAhead
}

// New returns a Verifier. It returns an error only for an unusable configuration.
func New(cfg Config) (*Verifier, error) {
	if cfg.Resolver == nil || cfg.Prober == nil {
		return nil, errors.New("verify: Resolver and Prober are required")
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&cfg.HostTimeout, 10*time.Second)
	def(&cfg.DNSTimeout, 10*time.Second)
	def(&cfg.PassTTL, time.Hour)
	def(&cfg.FailTTL, 10*time.Minute)
	def(&cfg.TempfailTTL, time.Minute)
	if cfg.MXAddressLimit <= 0 {
		cfg.MXAddressLimit = DefaultMXAddressLimit
	}
	if cfg.MaxConcurrent <= 0 {
		cfg.MaxConcurrent = 64
	}
	if cfg.MaxQueued <= 0 {
		cfg.MaxQueued = 16 * cfg.MaxConcurrent
	}
	def(&cfg.AddressTTL, time.Minute)
	if cfg.SMTPPort <= 0 {
		cfg.SMTPPort = 25
	}
	if cfg.CacheSize <= 0 {
		cfg.CacheSize = 100000
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Events == nil {
		cfg.Events = NopEvents{}
	}
	c, err := cache.New[*Facts](cfg.CacheSize)
	if err != nil {
		return nil, fmt.Errorf("verify: %w", err)
	}
	addrs, err := cache.New[addrResult](max(cfg.CacheSize/4, 1000))
	if err != nil {
		return nil, fmt.Errorf("verify: %w", err)
	}
	postures, err := cache.New[posture](cfg.CacheSize)
	if err != nil {
		return nil, fmt.Errorf("verify: %w", err)
	}
	maps, err := cache.New[*MapFacts](max(cfg.CacheSize/4, 1000))
	if err != nil {
		return nil, fmt.Errorf("verify: %w", err)
	}
	if cfg.Guard == nil {
		gc := GuardConfig{Allow: cfg.Allow}
		if own := cfg.OwnAddrs; own != nil {
			gc.OwnAddrs = func() ([]netip.Addr, error) { return own, nil }
		}
		cfg.Guard = NewGuard(gc)
	}
	ctx, stop := context.WithCancel(context.Background())
	v := &Verifier{cfg: cfg, cache: c, sem: make(chan struct{}, cfg.MaxConcurrent), ctx: ctx, stop: stop,
		addrs: addrs, limiter: newAddrLimiter(cfg.RatePerAddress, time.Minute), keys: map[string]struct{}{}, postures: postures, maps: maps,
		allow: cfg.Guard.Allowed}
	v.startRefresher()
	return v, nil
}

// Close cancels background probes, waits for them and releases the cache.
func (v *Verifier) Close() {
	v.closeMu.Lock()
	v.closed = true
	v.closeMu.Unlock()
	v.stop()
	v.wg.Wait()
	v.cache.Close()
	v.addrs.Close()
	v.postures.Close()
	v.maps.Close()
	if c, ok := v.cfg.STS.(interface{ Close() }); ok {
		c.Close()
	}
	v.cfg.Guard.Close()
}

// enter registers a background probe unless the Verifier is closing: WaitGroup.Add
// must not run concurrently with the Wait in Close.
func (v *Verifier) enter() bool {
	v.closeMu.RLock()
	defer v.closeMu.RUnlock()
	if v.closed {
		return false
	}
	v.wg.Add(1)
	return true
}

// Cached returns the facts for domain when the cache holds fresh ones, without
// waiting or probing: the RCPT hot path needs no deadline for a cache hit.
func (v *Verifier) Cached(domain string) (*Facts, bool) {
	f, ok := v.cache.Get(domain)
	if !ok || !v.cfg.Now().Before(f.Until) {
		return nil, false
	}
	v.cfg.Events.CacheLookup(true)
	v.noteHit(f)
	return f, true
}

// Facts returns the facts for domain (an A-label, lower case), from the cache or from a
// probe shared with every concurrent caller. cached reports a cache hit. When ctx ends
// first, it returns ErrPending (wrapping the context error) and the probe continues in the
// background into the cache.
func (v *Verifier) Facts(ctx context.Context, domain string) (f *Facts, cached bool, err error) {
	if f, ok := v.Cached(domain); ok {
		return f, true, nil
	}
	v.cfg.Events.CacheLookup(false)
	ch := v.group.DoChan(domain, func() (res any, err error) {
		var f *Facts
		// Detached from ctx: the probe must outlive the RCPT that started it.
		if !v.enter() {
			return nil, ErrClosed
		}
		defer v.wg.Done()
		// Another host of the fleet may have the facts, or be probing (shared.go).
		fleet, release := v.fromFleet(domain)
		defer release()
		if fleet != nil {
			return fleet, nil
		}
		if v.queued.Add(1) > int64(v.cfg.MaxQueued) {
			v.queued.Add(-1)
			v.cfg.Events.Overloaded()
			v.cfg.Log.Warn("probe queue full; answering tempfail", "domain", domain, "max_queued", v.cfg.MaxQueued)
			return nil, ErrOverloaded
		}
		select {
		case v.sem <- struct{}{}:
			v.queued.Add(-1)
		case <-v.ctx.Done():
			v.queued.Add(-1)
			return nil, v.ctx.Err()
		}
		defer func() { <-v.sem }()
		v.cfg.Events.ProbeRunning(1)
		defer v.cfg.Events.ProbeRunning(-1)
		defer func() {
			// singleflight re-panics in a goroutine nobody can recover: a bug in a
			// probe must cost one domain's verdict, not the daemon.
			if p := recover(); p != nil {
				v.cfg.Log.Error("panic probing domain", "domain", domain, "panic", p)
				f, err = nil, fmt.Errorf("verify: panic probing %s: %v", domain, p)
			}
		}()
		f = v.Probe(v.ctx, domain)
		v.store(f)
		return f, nil
	})
	select {
	case r := <-ch:
		if r.Err != nil {
			return nil, false, fmt.Errorf("verify: probing %s: %w", domain, r.Err)
		}
		return r.Val.(*Facts), false, nil
	case <-ctx.Done():
		return nil, false, fmt.Errorf("%w: %w", ErrPending, ctx.Err())
	}
}

// minDNSTTL is the least time facts are cached for however small the DNS TTLs were:
// a recursive resolver reports remaining TTLs, which can be 0, and a sender's retry
// after "verification in progress" must find the result.
const minDNSTTL = 30 * time.Second

// store caches f for a TTL that depends on how good the facts are, capped by the DNS
// TTLs seen (but not below minDNSTTL), counted from now, not from the probe's start.
func (v *Verifier) store(f *Facts) {
	ttl := min(v.ttlFor(f), max(f.DNSTTL, minDNSTTL))
	f.Until = v.cfg.Now().Add(ttl)
	if f.Servername() == "" {
		v.notePosture(f) // the destination's posture, once: not again per servername=
	}
	f.compact()
	boundFacts(f) // what stays in memory and goes to the cache file is bounded text
	v.cache.Set(f.Domain, f, ttl)
	v.track(f.Domain)
	v.toFleet(f, ttl)
}

// ttlFor picks pass_ttl when the facts are as good as facts get (a verified session on
// the first attempt), fail_ttl when something definite is wrong, and tempfail_ttl when
// anything is still unknown, so a fixed or recovered destination is re-probed soon.
func (v *Verifier) ttlFor(f *Facts) time.Duration {
	switch ClassOf(f) {
	case StatusTempfail:
		return v.cfg.TempfailTTL
	case StatusPass:
		return v.cfg.PassTTL
	}
	return v.cfg.FailTTL
}

// ClassOf says how good facts are, which decides how long they are cached: pass (a
// verified TLS session at the first address), fail (something definite is wrong) or
// tempfail (something is unknown). tlsgate cache list --status filters on it.
func ClassOf(f *Facts) Status {
	switch f.MX {
	case MXError:
		return StatusTempfail
	case MXNull, MXNone:
		return StatusFail
	}
	if len(f.Attempts) == 0 {
		return StatusFail
	}
	for _, a := range f.Attempts {
		if a.DNSError != "" && a.DNSTemporary || a.DNSError == "" && !a.Result.Outcome.Definite() {
			return StatusTempfail
		}
	}
	first := f.Attempts[0].Result
	verified := first.PKIX == nil
	if ta := f.Attempts[0].TA; f.TAFile() != "" {
		// tafile=: the entry's trust anchors, not the CAs, verify the chain.
		verified = ta != nil && ta.Done && ta.Error == ""
	}
	if first.Outcome == smtpprobe.OutcomeTLS && verified {
		return StatusPass
	}
	return StatusFail
}

// Probe gathers fresh facts for domain without the cache. It always returns facts;
// failures are recorded in them.
func (v *Verifier) Probe(ctx context.Context, domain string) *Facts {
	start := v.cfg.Now()
	f := &Facts{Domain: domain, Checked: start, DNSTTL: v.cfg.PassTTL}
	v.probe(ctx, f)
	f.Duration = v.cfg.Now().Sub(start)
	v.cfg.Log.Debug("probe finished", "domain", domain, "mx", f.MX.String(), "attempts", len(f.Attempts), "duration", f.Duration)
	return f
}

func (v *Verifier) probe(ctx context.Context, f *Facts) {
	dest := f.Destination()
	hop, ok, err := ParseNextHop(dest)
	if !ok || err != nil {
		f.MX, f.MXDetail = MXNone, fmt.Sprintf("%q is neither a domain nor a next hop", dest)
		if err != nil {
			f.MXDetail = err.Error()
		}
		return
	}
	if !hop.MX {
		v.probeNextHop(ctx, f, hop)
		return
	}
	var sts chan mtasts.Result
	// MTA-STS is the recipient domain's (RFC 8461 §4): never for "host:port". Facts
	// probed with a servername= (FactsKey) are never judged at published.
	if v.cfg.STS != nil && hop.Port == 0 && f.Servername() == "" {
		// The policy is looked up while the MX records are: it decides which hosts an
		// MTA-STS sender contacts.
		ch := make(chan mtasts.Result, 1)
		go func() { ch <- v.cfg.STS.Lookup(ctx, dest) }()
		sts = ch
	}
	waitSTS := func() *mtasts.Policy {
		if sts == nil {
			return nil
		}
		r := <-sts
		sts = nil
		f.STS = &r
		f.DNSTTL = min(f.DNSTTL, r.TTL)
		if r.Policy != nil && r.Policy.Mode != mtasts.ModeNone {
			return r.Policy
		}
		return nil
	}
	defer waitSTS()
	dctx, cancel := context.WithTimeout(ctx, v.cfg.DNSTimeout)
	hosts, err := v.lookupMX(dctx, f, hop)
	cancel()
	if err != nil || f.MX != MXFound && f.MX != MXImplicit {
		return
	}
	f.Hosts = hosts
	// The hosts Postfix would try are probed while the policy is still being fetched:
	// a slow policy host must not hold up levels that never use MTA-STS.
	v.probeHosts(ctx, f, nil, false)
	if pol := waitSTS(); pol != nil {
		v.probeHosts(ctx, f, pol, true)
	}
}

// probeHosts probes the addresses Postfix would contact and, with an MTA-STS policy
// pol, those an MTA-STS sender would contact; with beyondOnly, only those past
// Postfix's limit (the others were probed by a first call without pol).
//
// Postfix counts a session towards smtp_mx_session_limit only when its SMTP handshake,
// STARTTLS included, succeeded (smtp_connect.c: "Don't count handshake errors towards
// the session limit"); with mandatory TLS a successful handshake delivers. So for every
// level judged here only smtp_mx_address_limit bounds the addresses Postfix tries.
// An MTA-STS sender skips the hosts its policy does not list (RFC 8461 §4.1), so its
// limit counts only listed hosts, and may reach hosts past Postfix's limit.
func (v *Verifier) probeHosts(ctx context.Context, f *Facts, pol *mtasts.Policy, beyondOnly bool) {
	port := v.cfg.SMTPPort
	if hop, _, _ := ParseNextHop(f.Destination()); hop.Port > 0 {
		port = hop.Port
	}
	servername := f.Servername()
	// tafile=: the trust anchors are read at every probe, as Postfix reads them at
	// delivery; a file that cannot be read is recorded in every attempt (the policy
	// is invalid then: Postfix defers).
	var anchors *TrustAnchors
	var taErr error
	if files := f.TAFile(); files != "" {
		anchors, taErr = LoadTrustAnchors(files)
	}
	postfixLeft, stsLeft := v.cfg.MXAddressLimit, 0
	if pol != nil {
		stsLeft = v.cfg.MXAddressLimit
	}
	for i := range f.Hosts {
		h := &f.Hosts[i]
		listed := pol != nil && pol.Allows(h.Name)
		if postfixLeft <= 0 && (!listed || stsLeft <= 0) {
			continue
		}
		if h.AddrError != "" {
			if beyond := postfixLeft <= 0; beyond || !beyondOnly {
				f.Attempts = append(f.Attempts, Attempt{Host: h.Name, Preference: h.Preference, TLSA: h.TLSA,
					DNSError: h.AddrError, DNSTemporary: h.AddrTemporary, BeyondLimit: beyond})
			}
			continue
		}
		// DANE: the server is asked for the TLSA base domain as SNI (RFC 7672 §8.1).
		sni := ""
		switch {
		case servername != "":
			// A policy's servername= at a level that is not DANE (FactsKey): the name
			// Postfix sends (tls_client.c tls_auth_enable), TLSA records or not.
			sni = f.serverName(servername, h.Name)
		case h.TLSA.Status == TLSAFound && len(dane.UsableRecords(h.TLSA.Records)) > 0:
			sni = h.TLSA.Base
		}
		for _, ip := range h.Addrs {
			byPostfix, bySTS := postfixLeft > 0, listed && stsLeft > 0
			if !byPostfix && !bySTS {
				break
			}
			if byPostfix {
				postfixLeft--
			}
			if bySTS {
				stsLeft--
			}
			if byPostfix && beyondOnly {
				continue
			}
			a := Attempt{Host: h.Name, Preference: h.Preference, TLSA: h.TLSA, BeyondLimit: !byPostfix}
			a.Result, a.Cert, a.RateLimited = v.probeAddr(ctx, f, h.Name, ip, port, sni, anchors != nil || taErr != nil)
			a.recordDANE(f)
			a.recordTA(anchors, taErr, v.cfg.Now())
			f.Attempts = append(f.Attempts, a)
		}
	}
}

// addrResult is a probe result shared between domains, with its leaf summary. Without
// SNI the chain is dropped (nothing domain-specific needs it); with SNI (a DANE host)
// it is kept for the DANE check of each domain.
type addrResult struct {
	r    smtpprobe.Result
	cert *CertInfo
}

// probeAddr probes one address, unless the abuse guard forbids it, and returns the
// result with its leaf summary. A result for the same address and SNI is shared
// between domains (many domains share their provider's MX hosts; the probe does not
// depend on the domain).
//
// needChain: the caller checks the chain itself (tafile=), so a result shared without
// its chain will not do; such results are shared under their own key, chain kept.
func (v *Verifier) probeAddr(ctx context.Context, f *Facts, host string, ip netip.Addr, port int, sni string, needChain bool) (r smtpprobe.Result, cert *CertInfo, limited bool) {
	if !v.allowed(ip) {
		v.cfg.Log.Warn("probe refused by configuration", "domain", f.Domain, "mx", host, "ip", ip.String())
		return smtpprobe.Result{IP: ip, Outcome: smtpprobe.OutcomeNotAllowed,
			Detail: fmt.Sprintf("%s is not a public address or is this host's own; not probed (allow it with probe.allow_networks)", ip)}, nil, false
	}
	key := ip.String() + "|" + sni
	if port != v.cfg.SMTPPort {
		key = netip.AddrPortFrom(ip, uint16(port)).String() + "|" + sni
	}
	if needChain {
		key += "|chain"
	}
	if ar, ok := v.addrs.Get(key); ok {
		return ar.r, ar.cert, false
	}
	res, _, _ := v.addrGroup.Do(key, func() (any, error) {
		if !v.allowProbe(ctx, ip) {
			return nil, nil
		}
		pctx, cancel := context.WithTimeout(ctx, v.cfg.HostTimeout)
		defer cancel()
		r := v.probeAt(pctx, ip, port, sni)
		v.cfg.Events.Session(r.Outcome, r.Duration)
		ar := addrResult{r: r}
		if leaf := r.Leaf(); leaf != nil {
			ar.cert = summarize(leaf)
		}
		if ctx.Err() == nil {
			shared := ar
			if sni == "" && !needChain {
				shared.r.Chain = nil
			}
			v.addrs.Set(key, shared, v.cfg.AddressTTL)
		}
		return ar, nil
	})
	if res == nil {
		v.cfg.Events.RateLimited()
		v.cfg.Log.Warn("probe rate limit reached", "domain", f.Domain, "mx", host, "ip", ip.String(), "per_minute", v.cfg.RatePerAddress)
		return smtpprobe.Result{IP: ip}, nil, true
	}
	ar := res.(addrResult)
	v.cfg.Log.Debug("probed", "domain", f.Domain, "mx", host, "ip", ip.String(),
		"outcome", ar.r.Outcome.String(), "detail", ar.r.Detail, "err", ar.r.Err, "duration", ar.r.Duration)
	return ar.r, ar.cert, false
}

// maxMXHosts bounds the MX hosts whose addresses are looked up, in preference order:
// enough for the address limit even when many hosts have no address.
const maxMXHosts = 32

// lookupMX fills f.MX and returns the hosts in Postfix's order with their addresses.
//
// For a next hop "host:port" the MX hosts are host's (Postfix looks up MX records for
// a next hop without brackets) and TLSA records are at that port.
func (v *Verifier) lookupMX(ctx context.Context, f *Facts, hop NextHop) ([]Host, error) {
	name, port := hop.Name, v.port(hop)
	ans, err := v.cfg.Resolver.Lookup(ctx, name, dns.TypeMX)
	if err != nil {
		f.MX, f.MXDetail = MXError, fmt.Sprintf("MX lookup for %s failed: %s", name, problem.Describe(err))
		v.cfg.Log.Debug("dns lookup failed", "domain", f.Domain, "err", err)
		return nil, err
	}
	f.DNSTTL = min(f.DNSTTL, ans.TTL)
	switch ans.Status {
	case dnsx.StatusNXDomain:
		f.MX, f.MXDetail = MXNone, fmt.Sprintf("the domain %s does not exist", name)
		return nil, nil
	case dnsx.StatusNoData:
		// RFC 5321 §5.1: no MX records: the domain itself is the implicit MX.
		h := Host{Name: name}
		v.lookupAddrs(ctx, f, &h)
		if h.AddrError != "" && !h.AddrTemporary {
			f.MX, f.MXDetail = MXNone, fmt.Sprintf("%s has neither MX nor address records", name)
			return nil, nil
		}
		if h.AddrError != "" {
			f.MX, f.MXDetail = MXError, h.AddrError
			return nil, errors.New(h.AddrError)
		}
		f.MX, f.MXDetail = MXImplicit, "no MX records; using the domain's own address"
		f.MXSecure = h.AddrSecure
		if f.MXSecure {
			v.lookupTLSA(ctx, f, &h, port)
		}
		return []Host{h}, nil
	}
	var hosts []Host
	null := false
	for _, rr := range ans.Records {
		mx, ok := rr.(*dns.MX)
		if !ok {
			continue
		}
		name := strings.TrimSuffix(strings.ToLower(mx.Mx), ".")
		if name == "" {
			null = true // RFC 7505 §3: "0 ." (any preference is treated alike)
			continue
		}
		if slices.ContainsFunc(hosts, func(h Host) bool { return h.Name == name }) {
			continue
		}
		h := Host{Name: name, Preference: mx.Preference}
		if _, err := netip.ParseAddr(name); err == nil {
			// RFC 5321 §5.1: an MX names a host, never an address; Postfix rejects
			// a numeric MX name ("malformed domain name"). Never probed.
			h.AddrError = name + ": MX target is an IP address, not a host name"
		}
		hosts = append(hosts, h)
	}
	if null {
		// RFC 7505 §3 forbids other MX records beside a null MX; Postfix treats any
		// MX with an empty target as a null MX for the whole domain (dns_get_rr).
		f.MX, f.MXDetail = MXNull, "null MX (RFC 7505)"
		return nil, nil
	}
	// Postfix tries the lowest preference first; equal preferences are shuffled by Postfix
	// (smtp_randomize_addresses), sorted by name here so probes are reproducible.
	slices.SortStableFunc(hosts, func(a, b Host) int {
		return cmp.Or(cmp.Compare(a.Preference, b.Preference), strings.Compare(a.Name, b.Name))
	})
	f.MXSecure = ans.Authentic
	if len(hosts) > maxMXHosts {
		// A hostile domain can publish hundreds of MX records; a delivery reaches only
		// the first smtp_mx_address_limit addresses anyway.
		v.cfg.Log.Debug("MX list truncated", "domain", f.Domain, "hosts", len(hosts), "kept", maxMXHosts)
		hosts = hosts[:maxMXHosts]
	}
	for i := range hosts {
		if hosts[i].AddrError != "" {
			continue
		}
		v.lookupAddrs(ctx, f, &hosts[i])
		// TLSA for every host with secure addresses, also below an insecure MX
		// RRset (Postfix smtp_tls_dane_insecure_mx_policy = dane; RFC 7672 §2.2.2).
		if hosts[i].AddrSecure {
			v.lookupTLSA(ctx, f, &hosts[i], port)
		}
	}
	f.MX, f.MXDetail = MXFound, fmt.Sprintf("%d MX host(s)", len(hosts))
	return hosts, nil
}

// lookupAddrs resolves A and AAAA for h. Addresses of one family are enough; the host
// is an error only when neither family gives one.
func (v *Verifier) lookupAddrs(ctx context.Context, f *Facts, h *Host) {
	var errs []string
	temporary := false
	secure := true
	h.cname = ""
	// A and AAAA at once: one round trip to the resolver, not two.
	qtypes := []uint16{dns.TypeA, dns.TypeAAAA}
	type result struct {
		ans dnsx.Answer
		err error
	}
	results := make([]result, len(qtypes))
	var wg sync.WaitGroup
	for i, qt := range qtypes {
		wg.Go(func() {
			ans, err := v.cfg.Resolver.Lookup(ctx, h.Name, qt)
			results[i] = result{ans, err}
		})
	}
	wg.Wait()
	for i, qt := range qtypes {
		ans, err := results[i].ans, results[i].err
		if err != nil {
			errs = append(errs, fmt.Sprintf("%s lookup failed: %s", dns.TypeToString[qt], problem.Describe(err)))
			v.cfg.Log.Debug("dns lookup failed", "domain", f.Domain, "mx", h.Name, "err", err)
			temporary = true
			continue
		}
		secure = secure && ans.Authentic
		if ans.Target != "" && strings.TrimSuffix(ans.Target, ".") != h.Name {
			h.cname = strings.TrimSuffix(ans.Target, ".")
		}
		switch ans.Status {
		case dnsx.StatusOK:
			f.DNSTTL = min(f.DNSTTL, ans.TTL)
			for _, ip := range ans.Addrs() {
				if !slices.Contains(h.Addrs, ip) {
					h.Addrs = append(h.Addrs, ip)
				}
			}
		case dnsx.StatusNXDomain:
			errs = append(errs, "host not found")
		default:
			errs = append(errs, "no "+dns.TypeToString[qt]+" record")
		}
	}
	if len(h.Addrs) == 0 {
		h.AddrError = fmt.Sprintf("%s: %s", h.Name, strings.Join(slices.Compact(errs), "; "))
		h.AddrTemporary = temporary
	}
	h.AddrSecure = secure && !temporary && len(h.Addrs) > 0
}

// lookupTLSA finds the host's TLSA records (RFC 7672 §2.2.2): for a host whose name is a
// CNAME, at the expanded name first, then at the original name. An error is kept as
// such: a secure host whose TLSA lookup fails must not be treated as having none.
func (v *Verifier) lookupTLSA(ctx context.Context, f *Facts, h *Host, port int) {
	bases := []string{h.Name}
	if h.cname != "" {
		bases = []string{h.cname, h.Name}
	}
	for _, base := range bases {
		name := fmt.Sprintf("_%d._tcp.%s", port, base)
		ans, err := v.cfg.Resolver.Lookup(ctx, name, dns.TypeTLSA)
		switch {
		case err != nil:
			h.TLSA = TLSA{Status: TLSAError, Base: base, Error: fmt.Sprintf("TLSA lookup for %s failed: %s", name, problem.Describe(err))}
			v.cfg.Log.Debug("dns lookup failed", "domain", f.Domain, "mx", h.Name, "err", err)
			return
		case !ans.Authentic:
			h.TLSA = TLSA{Status: TLSAInsecure, Base: base}
			return
		case ans.Status != dnsx.StatusOK:
			h.TLSA = TLSA{Status: TLSANone, Base: base}
			f.DNSTTL = min(f.DNSTTL, ans.TTL)
			continue // try the original name
		}
		f.DNSTTL = min(f.DNSTTL, ans.TTL)
		t := TLSA{Status: TLSAFound, Base: base}
		for _, rr := range ans.Records {
			if r, ok := rr.(*dns.TLSA); ok {
				t.Records = append(t.Records, r)
			}
		}
		h.TLSA = t
		return
	}
}

// allowed reports whether ip may be probed: globally routable unicast and not this
// host's own, or inside one of the operator's allow_networks.
func (v *Verifier) allowed(ip netip.Addr) bool { return v.allow(ip) }
