package verify_test

import (
	"context"
	"io"
	"log/slog"
	"testing"

	"github.com/tlsgate/tlsgate/policy"
	"github.com/tlsgate/tlsgate/verify"
)

// BenchmarkProbeLoopback is the cost of one uncached verdict: MX, A and AAAA lookups
// against the fake resolver, then greeting, EHLO, STARTTLS, TLS 1.3 handshake (ECDSA
// P-256), chain verification, EHLO, QUIT with one MX on loopback.
func BenchmarkProbeLoopback(b *testing.B) {
	w := newWorld(b)
	w.serve(domain, host{name: "mx1", behaviour: "good"})
	v := w.verifier(func(c *verify.Config) { c.Log = slog.New(slog.NewTextHandler(io.Discard, nil)) })
	ctx := context.Background()
	b.ResetTimer()
	for b.Loop() {
		f := v.Probe(ctx, domain)
		if verify.Judge(f, policy.Policy{Level: policy.LevelVerify}).Status != verify.StatusPass {
			b.Fatal("probe did not pass")
		}
	}
}

// BenchmarkFactsCached is the RCPT hot path for a cached domain: cache hit and judge.
func BenchmarkFactsCached(b *testing.B) {
	w := newWorld(b)
	w.serve(domain, host{name: "mx1", behaviour: "good"})
	v := w.verifier(func(c *verify.Config) { c.Log = slog.New(slog.NewTextHandler(io.Discard, nil)) })
	ctx := context.Background()
	if _, _, err := v.Facts(ctx, domain); err != nil {
		b.Fatal(err)
	}
	p := policy.Policy{Level: policy.LevelSecure}
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			f, cached, err := v.Facts(ctx, domain)
			if err != nil || !cached {
				b.Fatal("not a cache hit")
			}
			if verify.Judge(f, p).Status != verify.StatusPass {
				b.Fatal("not pass")
			}
		}
	})
}
