package verify

import (
	"context"
	"fmt"
	"time"

	"github.com/tlsgate/tlsgate/internal/mtasts"
)

// MapFacts is what the delivery-time policy table (the socketmap, package policymap)
// needs of a domain: the DNS facts Postfix's SMTP client itself uses to choose a TLS
// policy (MX records with their DNSSEC status, addresses, TLSA records) and the
// MTA-STS result. Unlike Facts they come without an SMTP session: Postfix makes its
// own at delivery, the map only tells it which level to require. MapFacts are
// immutable once built.
type MapFacts struct {
	Domain   string
	MX       MXStatus
	MXSecure bool
	MXDetail string
	// Hosts are the MX hosts in the order Postfix tries them (at most maxMXHosts),
	// with addresses and TLSA data. The first Tried of them are those Postfix would
	// contact within smtp_mx_address_limit; the rest only matter for MTA-STS's
	// "is any MX host listed" (RFC 8461 §4.1).
	Hosts []Host
	Tried int
	// STS is the MTA-STS result, nil when MTA-STS lookups are disabled.
	STS *mtasts.Result
	// FromProbe: taken from the verdict cache's Facts rather than looked up.
	FromProbe bool
	Checked   time.Time
	// DNSTTL is the smallest TTL of the data used (the MTA-STS result's TTL, capped by
	// the policy's expiry, included); Until is when these facts expire.
	DNSTTL time.Duration
	Until  time.Time
}

// TriedHosts returns the hosts Postfix would contact within smtp_mx_address_limit.
func (m *MapFacts) TriedHosts() []Host { return m.Hosts[:m.Tried] }

// triedHosts counts the leading hosts Postfix contacts within limit addresses: it
// walks the MX list in order and stops when the addresses are used up; a host without
// an address is still tried (its lookup fails) but uses none (probeHosts counts alike).
func triedHosts(hosts []Host, limit int) int {
	left := limit
	for i, h := range hosts {
		if left <= 0 {
			return i
		}
		left -= len(h.Addrs)
	}
	return len(hosts)
}

// MapFactsOf derives MapFacts from probe facts: the same DNS answers, the same MTA-STS
// result, so the map answers from exactly what the RCPT verdict was judged on.
func (v *Verifier) MapFactsOf(f *Facts) *MapFacts {
	return &MapFacts{
		Domain: f.Domain, MX: f.MX, MXSecure: f.MXSecure, MXDetail: f.MXDetail,
		Hosts: f.Hosts, Tried: triedHosts(f.Hosts, v.cfg.MXAddressLimit),
		STS: f.STS, FromProbe: true, Checked: f.Checked, DNSTTL: f.DNSTTL, Until: f.Until,
	}
}

// CachedMapFacts returns fresh map facts for domain without any lookup: from the
// verdict cache's Facts when it has fresh ones, else from the map's own cache.
func (v *Verifier) CachedMapFacts(domain string) (*MapFacts, bool) {
	now := v.cfg.Now()
	if f, ok := v.cache.Get(domain); ok && now.Before(f.Until) {
		m := f.mapFacts.Load()
		if m == nil {
			m = v.MapFactsOf(f)
			f.mapFacts.Store(m)
		}
		return m, true
	}
	if m, ok := v.maps.Get(domain); ok && now.Before(m.Until) {
		return m, true
	}
	return nil, false
}

// MapFacts returns the DNS and MTA-STS facts of domain (an A-label, lower case) for
// the delivery-time policy table. It never opens an SMTP session. Fresh Facts of the
// verdict cache are used as they are; otherwise the facts come from the map's own
// cache or from a lookup shared by every concurrent caller (singleflight). When ctx
// ends first, it returns ErrPending (wrapping the context error): the lookup goes on in
// the background and fills the cache for the next request.
func (v *Verifier) MapFacts(ctx context.Context, domain string) (*MapFacts, error) {
	if m, ok := v.CachedMapFacts(domain); ok {
		return m, nil
	}
	ch := v.mapGroup.DoChan(domain, func() (res any, err error) {
		// Detached from ctx: the lookup outlives a request that gave up waiting.
		if !v.enter() {
			return nil, ErrClosed
		}
		defer v.wg.Done()
		// Lookups run on after their request's budget; bound how many, as probes are
		// (Config.MaxQueued): a burst of distinct domains is answered TEMP.
		if v.mapsRunning.Add(1) > int64(v.cfg.MaxQueued) {
			v.mapsRunning.Add(-1)
			v.cfg.Events.Overloaded()
			v.cfg.Log.Warn("too many map lookups running; answering TEMP", "domain", domain, "max_queued", v.cfg.MaxQueued)
			return nil, ErrOverloaded
		}
		defer v.mapsRunning.Add(-1)
		defer func() {
			if p := recover(); p != nil {
				v.cfg.Log.Error("panic looking up map facts", "domain", domain, "panic", p)
				res, err = nil, fmt.Errorf("verify: panic looking up %s: %v", domain, p)
			}
		}()
		m := v.LookupMapFacts(v.ctx, domain)
		if v.ctx.Err() == nil {
			v.storeMap(m)
		}
		return m, nil
	})
	select {
	case r := <-ch:
		if r.Err != nil {
			return nil, fmt.Errorf("verify: looking up %s: %w", domain, r.Err)
		}
		return r.Val.(*MapFacts), nil
	case <-ctx.Done():
		return nil, fmt.Errorf("%w: %w", ErrPending, ctx.Err())
	}
}

// LookupMapFacts looks the facts up without any cache: MX, addresses and TLSA exactly
// as a probe does (lookupMX), and the MTA-STS policy beside them.
func (v *Verifier) LookupMapFacts(ctx context.Context, domain string) *MapFacts {
	start := v.cfg.Now()
	f := &Facts{Domain: domain, Checked: start, DNSTTL: v.cfg.PassTTL}
	var sts chan mtasts.Result
	if v.cfg.STS != nil {
		sts = make(chan mtasts.Result, 1)
		go func() { sts <- v.cfg.STS.Lookup(ctx, domain) }()
	}
	dctx, cancel := context.WithTimeout(ctx, v.cfg.DNSTimeout)
	hosts, err := v.lookupMX(dctx, f, NextHop{Name: domain, MX: true})
	cancel()
	if err == nil && (f.MX == MXFound || f.MX == MXImplicit) {
		f.Hosts = hosts
	}
	m := &MapFacts{Domain: domain, MX: f.MX, MXSecure: f.MXSecure, MXDetail: f.MXDetail,
		Hosts: f.Hosts, Tried: triedHosts(f.Hosts, v.cfg.MXAddressLimit), Checked: start}
	if sts != nil {
		r := <-sts
		m.STS = &r
		f.DNSTTL = min(f.DNSTTL, r.TTL)
	}
	m.DNSTTL = f.DNSTTL
	v.cfg.Log.Debug("map facts looked up", "domain", domain, "mx", m.MX.String(), "hosts", len(m.Hosts),
		"duration", v.cfg.Now().Sub(start))
	return m
}

// storeMap caches m as store caches Facts: tempfail_ttl while anything is unknown
// (a DNS failure, a failed TLSA or MTA-STS record lookup), fail_ttl for a domain
// without mail service, pass_ttl otherwise; always capped by the DNS TTLs and the
// MTA-STS result's TTL (itself capped by the policy's expiry), but not below
// minDNSTTL; counted from now.
func (v *Verifier) storeMap(m *MapFacts) {
	ttl := v.cfg.PassTTL
	switch {
	case m.MX == MXError, m.STS != nil && m.STS.Status == mtasts.StatusError:
		ttl = v.cfg.TempfailTTL
	case m.MX == MXNull, m.MX == MXNone:
		ttl = v.cfg.FailTTL
	}
	for _, h := range m.TriedHosts() {
		if h.TLSA.Status == TLSAError || h.AddrError != "" && h.AddrTemporary {
			ttl = min(ttl, v.cfg.TempfailTTL)
		}
	}
	ttl = min(ttl, max(m.DNSTTL, minDNSTTL))
	m.Until = v.cfg.Now().Add(ttl)
	v.maps.Set(m.Domain, m, ttl)
}
