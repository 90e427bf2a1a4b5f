package verify_test

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"net/netip"

	"github.com/miekg/dns"

	"github.com/tlsgate/tlsgate/verify"
)

// recorder is a verify.Events that keeps what it is told.
type recorder struct {
	verify.NopEvents
	mu       sync.Mutex
	postures []string
}

func (r *recorder) PostureChanged(domain, what string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.postures = append(r.postures, domain+":"+what)
}

// TestPostureChange: a changed certificate or a vanished STARTTLS between two probes is
// reported once per change; a transient failure is not a change.
func TestPostureChange(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	w.serve(domain, host{name: "mx1", behaviour: "good"})
	rec := &recorder{}
	var mu sync.Mutex
	now := time.Now()
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	v := w.verifier(func(c *verify.Config) { c.Events = rec; c.AddressTTL = time.Nanosecond; c.Now = clock })
	reprobe := func(t *testing.T) {
		t.Helper()
		mu.Lock()
		now = now.Add(2 * time.Hour) // past every cache TTL
		mu.Unlock()
		if _, cached, err := v.Facts(context.Background(), domain); err != nil || cached {
			t.Fatalf("Facts: cached=%v err=%v; want a fresh probe", cached, err)
		}
	}
	changes := func() []string {
		rec.mu.Lock()
		defer rec.mu.Unlock()
		out := slices.Clone(rec.postures)
		rec.postures = nil
		return out
	}
	ip := netip.MustParseAddr("127.0.0.10")

	reprobe(t)
	reprobe(t)
	if got := changes(); len(got) != 0 {
		t.Errorf("changes %q with nothing changed", got)
	}
	// A new key pair under the same name.
	startSMTP(w, "127.0.0.10", "good", "mx1.example.test").RegisterWith(w.dialer)
	reprobe(t)
	if got := changes(); !slices.Equal(got, []string{domain + ":certificate"}) {
		t.Errorf("changes %q; want the certificate", got)
	}
	// The server is unreachable for a while: not a posture change.
	w.dialer.Refuse(ip)
	reprobe(t)
	if got := changes(); len(got) != 0 {
		t.Errorf("changes %q for an unreachable server", got)
	}
	// It comes back without STARTTLS.
	startSMTP(w, "127.0.0.11", "nostarttls", "mx1.example.test").RegisterWith(w.dialer)
	w.dns.Remove("mx1.example.test.", dns.TypeA)
	w.dns.Add(t, "mx1.example.test. 300 IN A 127.0.0.11")
	reprobe(t)
	if got := changes(); !slices.Equal(got, []string{domain + ":starttls", domain + ":certificate"}) {
		t.Errorf("changes %q; want starttls and certificate", got)
	}
}
