package verify

import (
	"bytes"
	"compress/flate"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/netip"
	"time"
)

// SharedTier is the fleet's second cache tier (internal/sharedcache on Valkey or
// Redis): facts every host reuses, one probe lease per domain, fleet-wide rate-limit
// counters and postures. Every method is bounded by the tier's own short timeout and
// returns an error when the tier is down, slow or refuses an entry: the Verifier then
// goes on with its local cache and its own probes. A payload handed out is one the
// tier authenticated (a fleet member wrote it).
type SharedTier interface {
	GetFacts(ctx context.Context, key string) ([]byte, bool, error)
	PutFacts(ctx context.Context, key string, payload []byte, ttl time.Duration) error
	// Acquire takes the probe lease of key; false: another host holds it.
	Acquire(ctx context.Context, key string) (bool, error)
	// Hold keeps the lease of key until release is called, which drops it.
	Hold(key string) (release func())
	// Allow counts one probe of addr and reports whether it is within limit per window.
	Allow(ctx context.Context, addr string, limit int, window time.Duration) (bool, error)
	// SwapPosture stores a posture and returns the one it replaced.
	SwapPosture(ctx context.Context, key string, payload []byte, ttl time.Duration) ([]byte, bool, error)
}

// sharedRecord is the payload of a facts entry in the shared tier: the cache file's
// serialisation of Facts (persist.go) with the cache file's version, so that hosts of
// different versions never read each other's facts.
type sharedRecord struct {
	Version int    `json:"v"`
	Facts   *Facts `json:"facts"`
}

// leasePoll is how often a host waiting for another host's probe looks for its facts.
const leasePoll = 50 * time.Millisecond

// leaseWaitMax bounds how long a host waits for another's probe before probing itself
// although the lease is still held (renewed): the longest a probe can take.
func (v *Verifier) leaseWaitMax() time.Duration {
	return v.cfg.DNSTimeout + 2*time.Duration(v.cfg.MXAddressLimit)*v.cfg.HostTimeout
}

// fromFleet runs before a probe of domain: facts another host stored are taken (and
// kept locally until they expire); else this host takes the domain's probe lease and
// probes (release drops the lease after the facts are stored), or waits for the host
// that holds it, and takes over when that host's lease expires (it died). Any tier
// failure ends the wait: this host probes itself.
func (v *Verifier) fromFleet(domain string) (f *Facts, release func()) {
	release = func() {}
	s := v.cfg.Shared
	if s == nil {
		return nil, release
	}
	deadline := v.cfg.Now().Add(v.leaseWaitMax())
	for {
		if f, err := v.sharedFacts(domain); f != nil || err != nil {
			return f, release
		}
		ok, err := s.Acquire(v.ctx, domain)
		if err != nil {
			return nil, release
		}
		if ok {
			rel := s.Hold(domain)
			// The previous holder stores its facts before it drops its lease: they
			// may have landed between the first look and the lease.
			if f, _ := v.sharedFacts(domain); f != nil {
				rel()
				return f, release
			}
			return nil, rel
		}
		if !v.cfg.Now().Before(deadline) {
			v.cfg.Log.Warn("another host's probe of this domain takes too long; probing here", "domain", domain)
			return nil, release
		}
		select {
		case <-v.ctx.Done():
			return nil, release
		case <-time.After(leasePoll):
		}
	}
}

// sharedFacts returns the fleet's facts for domain, stored in the local tier until
// their own expiry, never longer, nor longer than the longest local TTL. err is set
// when the tier failed (down, refused entry): the caller then stops asking it.
func (v *Verifier) sharedFacts(domain string) (*Facts, error) {
	payload, found, err := v.cfg.Shared.GetFacts(v.ctx, domain)
	if err != nil || !found {
		return nil, err
	}
	f, err := DecodeShared(domain, payload)
	if err != nil {
		// Authenticated, but from a host of another version (or a bug): not used.
		v.cfg.Log.Warn("shared cache facts ignored", "domain", domain, "err", err)
		return nil, err
	}
	now := v.cfg.Now()
	ttl := min(f.Until.Sub(now), max(v.cfg.PassTTL, v.cfg.FailTTL, v.cfg.TempfailTTL))
	if ttl <= 0 {
		return nil, nil
	}
	boundFacts(f)
	v.cache.Set(domain, f, ttl)
	return f, nil
}

// EncodeShared is the payload of a facts entry: the cache file's record, deflated (the
// JSON of a two-MX domain shrinks from about 2.6 KiB to well under 1 KiB; a server
// holds a hundred thousand of them).
func EncodeShared(f *Facts) ([]byte, error) {
	var b bytes.Buffer
	b.WriteByte(deflated)
	zw, err := flate.NewWriter(&b, flate.BestSpeed)
	if err != nil {
		return nil, err
	}
	if err := json.NewEncoder(zw).Encode(sharedRecord{Version: cacheFileVersion, Facts: f}); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// deflated marks a deflated payload; a payload starting with '{' is plain JSON.
const deflated = 'z'

// DecodeShared decodes the payload of an authenticated facts entry for key. The
// payload is only inflated after its MAC was checked, and never past maxCacheLine.
func DecodeShared(key string, payload []byte) (*Facts, error) {
	if len(payload) > 0 && payload[0] == deflated {
		zr := flate.NewReader(bytes.NewReader(payload[1:]))
		plain, err := io.ReadAll(io.LimitReader(zr, maxCacheLine+1))
		zr.Close()
		if err != nil || len(plain) > maxCacheLine {
			return nil, fmt.Errorf("verify: shared facts of %s: bad or oversized deflated payload (%v)", key, err)
		}
		payload = plain
	}
	var rec sharedRecord
	if err := json.Unmarshal(payload, &rec); err != nil {
		return nil, fmt.Errorf("verify: shared facts of %s: %w", key, err)
	}
	if rec.Version != cacheFileVersion || rec.Facts == nil {
		return nil, fmt.Errorf("verify: shared facts of %s: format version %d, not %d", key, rec.Version, cacheFileVersion)
	}
	if err := checkFacts(rec.Facts, key); err != nil {
		return nil, err
	}
	boundFacts(rec.Facts)
	return rec.Facts, nil
}

// Peek returns the facts cached for key and the tier that had them ("local" or
// "shared"), without probing.
func (v *Verifier) Peek(key string) (*Facts, string) {
	if f, ok := v.cache.Get(key); ok && v.cfg.Now().Before(f.Until) {
		return f, "local"
	}
	if v.cfg.Shared != nil {
		if f, _ := v.sharedFacts(key); f != nil {
			return f, "shared"
		}
	}
	return nil, ""
}

// toFleet stores facts just probed in the shared tier for ttl (the local TTL).
func (v *Verifier) toFleet(f *Facts, ttl time.Duration) {
	if v.cfg.Shared == nil {
		return
	}
	payload, err := EncodeShared(f)
	if err != nil {
		v.cfg.Log.Error("encoding facts for the shared cache", "domain", f.Domain, "err", err)
		return
	}
	v.cfg.Shared.PutFacts(v.ctx, f.Domain, payload, ttl)
}

// allowProbe applies probe.rate_per_address: fleet-wide with the shared tier, else
// (or while it fails) per host.
func (v *Verifier) allowProbe(ctx context.Context, ip netip.Addr) bool {
	if v.cfg.Shared != nil && v.cfg.RatePerAddress > 0 {
		if ok, err := v.cfg.Shared.Allow(ctx, ip.String(), v.cfg.RatePerAddress, time.Minute); err == nil {
			return ok
		}
	}
	return v.limiter.allow(ip, v.cfg.Now())
}

// postureRecord is a posture as stored in the shared tier.
type postureRecord struct {
	StartTLS string `json:"starttls"`
	Certs    string `json:"certs"`
	TLSA     string `json:"tlsa"`
	STS      string `json:"sts"`
}

// previousPosture returns the domain's posture before p and records p: the fleet's
// (an atomic swap, so one change is reported by one host) when the shared tier
// answers, else this host's.
func (v *Verifier) previousPosture(domain string, p posture) (posture, bool) {
	if v.cfg.Shared != nil {
		payload, _ := json.Marshal(postureRecord{p.starttls, p.certs, p.tlsa, p.sts})
		old, found, err := v.cfg.Shared.SwapPosture(v.ctx, domain, payload, postureTTL)
		if err == nil {
			var r postureRecord
			if !found || json.Unmarshal(old, &r) != nil {
				return posture{}, false
			}
			return posture{starttls: r.StartTLS, certs: r.Certs, tlsa: r.TLSA, sts: r.STS}, true
		}
	}
	return v.postures.Get(domain)
}

// Forget drops keys (domains) from this host's tiers: facts, socketmap facts and the
// per-address probe results they were built from, so the next RCPT probes afresh.
// A purge (tlsgate cache purge) calls it on every host of the fleet.
func (v *Verifier) Forget(keys ...string) {
	for _, k := range keys {
		if f, ok := v.cache.Get(k); ok {
			for _, a := range f.Attempts {
				if a.Result.IP.IsValid() {
					v.addrs.Delete(a.Result.IP.String() + "|")
					v.addrs.Delete(a.Result.IP.String() + "|" + a.TLSA.Base)
				}
			}
		}
		v.cache.Delete(k)
		v.maps.Delete(k)
	}
}

// ForgetAll empties this host's tiers.
func (v *Verifier) ForgetAll() {
	v.cache.Clear()
	v.maps.Clear()
	v.addrs.Clear()
}

// Domains lists the keys (domains) cached on this host with their facts, unexpired.
func (v *Verifier) Domains() []*Facts {
	now := v.cfg.Now()
	var out []*Facts
	for _, k := range v.cache.Keys() {
		if f, ok := v.cache.Get(k); ok && now.Before(f.Until) {
			out = append(out, f)
		}
	}
	return out
}
