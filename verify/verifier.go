package verify

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/singleflight"

	"github.com/tlsgate/tlsgate/internal/cache"
	"github.com/tlsgate/tlsgate/internal/dnsx"
	"github.com/tlsgate/tlsgate/internal/mtasts"
	"github.com/tlsgate/tlsgate/internal/netguard"
	"github.com/tlsgate/tlsgate/internal/smtpprobe"
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
	// interface addresses, again every 30 seconds.
	OwnAddrs []netip.Addr
	// Guard, when set, is the outbound guard to use instead of one made from Allow and
	// OwnAddrs: the one the MTA-STS client uses too. The Verifier owns it: Close
	// closes it.
	Guard       *netguard.Guard
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
	wg          sync.WaitGroup
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
	def(&cfg.HostTimeout, DefaultHostTimeout)
	def(&cfg.DNSTimeout, 10*time.Second)
	def(&cfg.PassTTL, DefaultPassTTL)
	def(&cfg.FailTTL, DefaultFailTTL)
	def(&cfg.TempfailTTL, DefaultTempfailTTL)
	if cfg.MXAddressLimit <= 0 {
		cfg.MXAddressLimit = DefaultMXAddressLimit
	}
	if cfg.MaxConcurrent <= 0 {
		cfg.MaxConcurrent = DefaultMaxConcurrent
	}
	if cfg.MaxQueued <= 0 {
		cfg.MaxQueued = 16 * cfg.MaxConcurrent
	}
	def(&cfg.AddressTTL, time.Minute)
	if cfg.SMTPPort <= 0 {
		cfg.SMTPPort = DefaultSMTPPort
	}
	if cfg.CacheSize <= 0 {
		cfg.CacheSize = DefaultCacheSize
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
	c, err := cache.NewListed[*Facts](cfg.CacheSize) // listed for SaveCache and Domains
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
		gc := netguard.Config{Allow: cfg.Allow}
		if own := cfg.OwnAddrs; own != nil {
			gc.OwnAddrs = func() ([]netip.Addr, error) { return own, nil }
		}
		cfg.Guard = netguard.New(gc)
	}
	ctx, stop := context.WithCancel(context.Background())
	v := &Verifier{cfg: cfg, cache: c, sem: make(chan struct{}, cfg.MaxConcurrent), ctx: ctx, stop: stop,
		addrs: addrs, limiter: newAddrLimiter(cfg.RatePerAddress, time.Minute), postures: postures, maps: maps,
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
// waiting or probing: the RCPT hot path needs no deadline for a cache hit. With
// refresh-ahead, facts just past their expiry still answer while they are being
// refreshed, within a bounded grace (serveStale, refresh.go).
func (v *Verifier) Cached(domain string) (*Facts, bool) {
	f, ok := v.cache.Get(domain)
	if !ok {
		return nil, false
	}
	if now := v.cfg.Now(); !now.Before(f.Until) {
		if !v.serveStale(f, now) {
			return nil, false
		}
		v.cfg.Events.CacheLookup(true)
		return f, true
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
	// With refresh-ahead the entry outlives Until by the stale grace's bound, so that
	// serveStale finds it; every reader checks Until.
	v.cache.Set(f.Domain, f, ttl+v.staleKeep())
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
		if s := a.HostSNI; s != nil && !s.Result.Outcome.Definite() {
			return StatusTempfail // published's MTA-STS session (sni.go) is unknown
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

func (v *Verifier) allowed(ip netip.Addr) bool { return v.allow(ip) }
