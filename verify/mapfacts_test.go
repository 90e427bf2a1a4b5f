package verify_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/tlsgate/tlsgate/internal/fake"
	"github.com/tlsgate/tlsgate/internal/mtasts"
	"github.com/tlsgate/tlsgate/verify"
)

// mxQueries counts the MX questions for domain the resolver received.
func mxQueries(w *world, domain string) int {
	n := 0
	for _, q := range w.dns.Queries() {
		if q.Type == dns.TypeMX && strings.EqualFold(strings.TrimSuffix(q.Name, "."), domain) {
			n++
		}
	}
	return n
}

// connections sums the SMTP sessions the servers saw.
func connections(servers map[string]*fake.SMTPServer) int {
	n := 0
	for _, s := range servers {
		n += s.Connections()
	}
	return n
}

// TestMapFacts: the socketmap's facts are the probe's DNS facts (MX with DNSSEC
// status, addresses, TLSA per host) and the MTA-STS result, gathered without a single
// SMTP session.
func TestMapFacts(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	w.dns.SetAllAuthentic(true)
	servers := w.serve(domain, host{name: "mx1", behaviour: "good"}, host{name: "mx2", behaviour: "good"})
	w.dns.Add(t, "_25._tcp.mx1.example.test. 300 IN TLSA 3 1 1 "+strings.Repeat("ab", 32))
	w.dns.SetRcode("_25._tcp.mx2.example.test.", dns.TypeTLSA, dns.RcodeServerFailure)
	w.publishSTS(stsPolicy("enforce", "mx1.example.test"))
	v := w.verifier(w.withSTS)

	m, err := v.MapFacts(context.Background(), domain)
	if err != nil {
		t.Fatal(err)
	}
	if m.MX != verify.MXFound || !m.MXSecure || len(m.Hosts) != 2 || m.Tried != 2 || m.FromProbe {
		t.Fatalf("facts %+v", m)
	}
	if h := m.Hosts[0]; h.Name != "mx1.example.test" || len(h.Addrs) != 1 || !h.AddrSecure || h.TLSA.Status != verify.TLSAFound || len(h.TLSA.Records) != 1 {
		t.Errorf("mx1: %+v", h)
	}
	if h := m.Hosts[1]; h.TLSA.Status != verify.TLSAError {
		t.Errorf("mx2: TLSA %v; want error (SERVFAIL is never 'no TLSA')", h.TLSA.Status)
	}
	if m.STS == nil || m.STS.Policy == nil || m.STS.Policy.Mode != mtasts.ModeEnforce {
		t.Errorf("MTA-STS: %+v", m.STS)
	}
	// The TLSA failure bounds the cache life to tempfail_ttl (default 1 minute).
	if life := m.Until.Sub(m.Checked); life <= 0 || life > time.Minute+5*time.Second {
		t.Errorf("cached for %v; want at most tempfail_ttl", life)
	}
	if n := connections(servers); n != 0 {
		t.Errorf("%d SMTP sessions; want none", n)
	}
}

// TestMapFactsCache: fresh facts are reused, from the map's own cache or from the
// verdict cache; concurrent requests share one lookup.
func TestMapFactsCache(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	servers := w.serve(domain, host{name: "mx1", behaviour: "good"})
	w.dns.SetDelay(domain+".", dns.TypeMX, 200*time.Millisecond)
	v := w.verifier()

	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() {
			if m, err := v.MapFacts(context.Background(), domain); err != nil || m.MX != verify.MXFound {
				t.Errorf("MapFacts: %v, %v", m, err)
			}
		})
	}
	wg.Wait()
	if n := mxQueries(w, domain); n != 1 {
		t.Errorf("20 concurrent requests made %d MX queries; want 1", n)
	}
	if _, ok := v.CachedMapFacts(domain); !ok {
		t.Error("no cached map facts after a lookup")
	}
	if _, err := v.MapFacts(context.Background(), domain); err != nil || mxQueries(w, domain) != 1 {
		t.Errorf("cached facts not reused: %v, %d MX queries", err, mxQueries(w, domain))
	}
	if n := connections(servers); n != 0 {
		t.Errorf("%d SMTP sessions; want none", n)
	}

	// A domain probed for a RCPT: the map takes the verdict cache's facts as they are.
	const other = "other.test"
	w.serve(other, host{name: "mx1", behaviour: "good", ip: "127.0.0.30"})
	if _, _, err := v.Facts(context.Background(), other); err != nil {
		t.Fatal(err)
	}
	before := mxQueries(w, other)
	m, err := v.MapFacts(context.Background(), other)
	if err != nil || !m.FromProbe || m.MX != verify.MXFound || len(m.Hosts) != 1 || m.Tried != 1 {
		t.Errorf("map facts after a probe: %+v, %v; want the probe's facts", m, err)
	}
	if n := mxQueries(w, other); n != before {
		t.Errorf("%d more MX queries; want none", n-before)
	}
}

// TestMapFactsBudget: a lookup still pending when the caller's budget ends answers
// ErrPending, goes on, and fills the cache for the next request.
func TestMapFactsBudget(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	w.serve(domain, host{name: "mx1"})
	w.dns.SetDelay(domain+".", dns.TypeMX, 300*time.Millisecond)
	v := w.verifier()
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := v.MapFacts(ctx, domain); !errors.Is(err, verify.ErrPending) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("MapFacts past its budget: %v; want ErrPending", err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		if m, ok := v.CachedMapFacts(domain); ok {
			if m.MX != verify.MXFound {
				t.Errorf("cached %+v", m)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the pending lookup never filled the cache")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if n := mxQueries(w, domain); n != 1 {
		t.Errorf("%d MX queries; want 1", n)
	}
}

// TestMapFactsTTL: cached map facts never outlive the DNS TTLs (nor fall below 30s)
// and follow the verdict cache's TTL rules.
func TestMapFactsTTL(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	w := newWorld(t)
	w.dns.Add(t, "ttl.test. 120 IN MX 10 mx.ttl.test.", "mx.ttl.test. 3600 IN A 127.0.0.40",
		"short.test. 5 IN MX 10 mx.ttl.test.", "null.test. 3600 IN MX 0 .")
	w.dns.SetRcode("fail.test.", dns.TypeMX, dns.RcodeServerFailure)
	v := w.verifier(func(c *verify.Config) { c.Now = clock })
	for _, tc := range []struct {
		domain string
		life   time.Duration
	}{
		{"ttl.test", 120 * time.Second},    // the MX TTL, below pass_ttl
		{"short.test", 30 * time.Second},   // never below 30s
		{"null.test", 10 * time.Minute},    // fail_ttl
		{"fail.test", time.Minute},         // tempfail_ttl
		{"nxdomain.test", 5 * time.Minute}, // fail_ttl, bounded by the negative TTL (SOA minimum 300s)
	} {
		m, err := v.MapFacts(context.Background(), tc.domain)
		if err != nil {
			t.Fatal(err)
		}
		if life := m.Until.Sub(now); life > tc.life || life < 30*time.Second {
			t.Errorf("%s cached for %v; want at most %v", tc.domain, life, tc.life)
		}
	}
	advance(121 * time.Second)
	if _, ok := v.CachedMapFacts("ttl.test"); ok {
		t.Error("ttl.test still cached after its MX TTL")
	}
}

// TestMapFactsAddressLimit: only the hosts within smtp_mx_address_limit are the ones
// Postfix tries.
func TestMapFactsAddressLimit(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	var hs []host
	for i := range 7 {
		hs = append(hs, host{name: fmt.Sprintf("mx%d", i)})
	}
	hs[1].noAddr = true // tried, uses no address
	w.serve(domain, hs...)
	m, err := w.verifier().MapFacts(context.Background(), domain)
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Hosts) != 7 || m.Tried != 6 || len(m.TriedHosts()) != 6 {
		t.Errorf("%d hosts, %d tried; want 7, 6", len(m.Hosts), m.Tried)
	}
}

// TestMapFactsOverload: lookups running past their requests are bounded by
// Config.MaxQueued; past it a request gets ErrOverloaded at once.
func TestMapFactsOverload(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	w.dns.SetDelay("slow1.test.", dns.TypeMX, 500*time.Millisecond)
	w.dns.SetDelay("slow2.test.", dns.TypeMX, 500*time.Millisecond)
	v := w.verifier(func(c *verify.Config) { c.MaxQueued = 1 })
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := v.MapFacts(ctx, "slow1.test"); !errors.Is(err, verify.ErrPending) {
		t.Fatalf("first lookup: %v; want ErrPending", err)
	}
	if _, err := v.MapFacts(context.Background(), "slow2.test"); !errors.Is(err, verify.ErrOverloaded) {
		t.Errorf("second lookup while the first runs: %v; want ErrOverloaded", err)
	}
}
