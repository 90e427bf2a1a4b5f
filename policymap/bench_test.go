package policymap_test

import (
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/tlsgate/tlsgate/internal/mtasts"
	"github.com/tlsgate/tlsgate/policy"
	"github.com/tlsgate/tlsgate/policymap"
	"github.com/tlsgate/tlsgate/verify"
)

// cachedOnly is a facts source whose facts are all cached, as after a first delivery.
type cachedOnly map[string]*verify.MapFacts

func (c cachedOnly) MapFacts(context.Context, string) (*verify.MapFacts, error) {
	return nil, verify.ErrPending
}

func (c cachedOnly) CachedMapFacts(d string) (*verify.MapFacts, bool) {
	f, ok := c[d]
	return f, ok
}

// BenchmarkLookupCached: what one cached socketmap lookup costs the handler (the
// protocol server's share is in socketmap's benchmarks): a configured entry, and a
// domain at level published from cached MTA-STS facts.
func BenchmarkLookupCached(b *testing.B) {
	path := filepath.Join(b.TempDir(), "tls_policy")
	if err := os.WriteFile(path, []byte("secure.example secure match=mx.secure.example\n"), 0o644); err != nil {
		b.Fatal(err)
	}
	tab := policy.NewTable()
	if _, err := tab.LoadFile(path); err != nil {
		b.Fatal(err)
	}
	now := time.Now()
	facts := cachedOnly{"sts.example": {Domain: "sts.example", MX: verify.MXFound,
		Hosts: []verify.Host{{Name: "mx.sts.example", Preference: 10, Addrs: []netip.Addr{netip.MustParseAddr("192.0.2.1")}}},
		Tried: 1, Checked: now, DNSTTL: time.Hour, Until: now.Add(time.Hour),
		STS: &mtasts.Result{Status: mtasts.StatusPolicy, ID: "1", TTL: time.Hour,
			Policy: &mtasts.Policy{Mode: mtasts.ModeEnforce, MaxAge: 24 * time.Hour, MX: []string{"mx.sts.example"}}}}}
	m := policymap.New(policymap.Config{Policies: tab, DefaultPublished: true, Facts: facts})
	for _, tc := range []struct{ name, key, want string }{
		{"configured", "secure.example", "secure match=mx.secure.example"},
		{"published", "sts.example", "secure match=mx.sts.example servername=hostname"},
	} {
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if r, ok := m.LookupCached("QUERY", tc.key); !ok || r.Data != tc.want {
					b.Fatalf("%v %v", r, ok)
				}
			}
		})
	}
}
