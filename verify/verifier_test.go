package verify_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/tlsgate/tlsgate/policy"
	"github.com/tlsgate/tlsgate/verify"
)

var encrypt = policy.Policy{Level: policy.LevelEncrypt}

// TestMXLookup covers what the MX lookup alone decides (RFC 5321 §5.1, RFC 7505).
func TestMXLookup(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		setup func(w *world)
		mx    verify.MXStatus
		want  want
	}{
		{"null MX", func(w *world) { w.dns.Add(t, "example.test. 300 IN MX 0 .") }, verify.MXNull, "fail/null-mx"},
		{"null MX beside a real MX (Postfix: null MX wins)", func(w *world) {
			w.dns.Add(t, "example.test. 300 IN MX 0 .")
			w.serve(domain, host{name: "mx1", behaviour: "good"})
		}, verify.MXNull, "fail/null-mx"},
		{"NXDOMAIN", func(w *world) { w.dns.Add(t, "other.test. 300 IN A 192.0.2.1") }, verify.MXNone, "fail/no-mx"},
		{"no MX and no address", func(w *world) { w.dns.Add(t, "example.test. 300 IN TXT \"v=spf1 -all\"") }, verify.MXNone, "fail/no-mx"},
		{"SERVFAIL", func(w *world) { w.dns.SetRcode("example.test.", dns.TypeMX, dns.RcodeServerFailure) }, verify.MXError, "tempfail/dns-error"},
		{"REFUSED", func(w *world) { w.dns.SetRcode("example.test.", dns.TypeMX, dns.RcodeRefused) }, verify.MXError, "tempfail/dns-error"},
		{"timeout", func(w *world) { w.dns.SetDrop("example.test.", dns.TypeMX) }, verify.MXError, "tempfail/dns-error"},
		{"implicit MX", func(w *world) {
			w.dns.Add(t, "example.test. 300 IN A 127.0.0.20")
			w.serveAt("127.0.0.20", "good", "example.test")
		}, verify.MXImplicit, "pass"},
		{"implicit MX lookup fails", func(w *world) {
			w.dns.Add(t, "example.test. 300 IN TXT \"x\"")
			w.dns.SetRcode("example.test.", dns.TypeA, dns.RcodeServerFailure)
		}, verify.MXError, "tempfail/dns-error"},
		{"MX through truncated UDP answer", func(w *world) {
			w.serve(domain, host{name: "mx1", behaviour: "good"})
			w.dns.SetTruncate("example.test.", dns.TypeMX)
		}, verify.MXFound, "pass"},
		{"MX host is a CNAME", func(w *world) {
			w.dns.Add(t, "example.test. 300 IN MX 10 alias.example.test.",
				"alias.example.test. 300 IN CNAME real.example.test.",
				"real.example.test. 300 IN A 127.0.0.21")
			w.serveAt("127.0.0.21", "good", "alias.example.test")
		}, verify.MXFound, "pass"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			w := newWorld(t)
			tc.setup(w)
			f := w.verifier(func(c *verify.Config) { c.DNSTimeout = 2 * time.Second }).Probe(context.Background(), domain)
			if f.MX != tc.mx {
				t.Errorf("MX status %s (%s); want %s", f.MX, f.MXDetail, tc.mx)
			}
			tc.want.check(t, "encrypt", verify.Judge(f, encrypt))
		})
	}
}

// serveAt starts a server with behaviour at ip for host name.
func (w *world) serveAt(ip, behaviour, hostname string) {
	s := startSMTP(w, ip, behaviour, hostname)
	s.RegisterWith(w.dialer)
}

func TestProbeRefusesNonPublicAddresses(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	servers := w.serve(domain, host{name: "mx1", behaviour: "good"})
	v := w.verifier(func(c *verify.Config) { c.Allow = nil })
	f := v.Probe(context.Background(), domain)
	want("tempfail/probe-not-allowed").check(t, "encrypt", verify.Judge(f, encrypt))
	if n := servers["mx1"].Connections(); n != 0 {
		t.Errorf("server saw %d connections; a refused address must not be contacted", n)
	}
}

// TestAddressLimit: Postfix tries at most smtp_mx_address_limit (5) addresses.
func TestAddressLimit(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	var hosts []host
	for _, n := range []string{"mx1", "mx2", "mx3", "mx4", "mx5"} {
		hosts = append(hosts, host{name: n, behaviour: "refused"})
	}
	hosts = append(hosts, host{name: "mx6", behaviour: "good"})
	servers := w.serve(domain, hosts...)
	f := w.verifier().Probe(context.Background(), domain)
	if len(f.Attempts) != 5 {
		t.Errorf("%d attempts; want 5 (smtp_mx_address_limit)", len(f.Attempts))
	}
	want("tempfail/connection-refused").check(t, "encrypt", verify.Judge(f, encrypt))
	if n := servers["mx6"].Connections(); n != 0 {
		t.Errorf("sixth address contacted %d times", n)
	}
}

func TestFactsCachedAndShared(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	servers := w.serve(domain, host{name: "mx1", behaviour: "good"})
	v := w.verifier()
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			f, _, err := v.Facts(context.Background(), domain)
			if err != nil {
				t.Error(err)
				return
			}
			want("pass").check(t, "encrypt", verify.Judge(f, encrypt))
		}()
	}
	wg.Wait()
	if n := servers["mx1"].Connections(); n != 1 {
		t.Errorf("%d connections for 8 concurrent requests; want 1", n)
	}
	f, cached, err := v.Facts(context.Background(), domain)
	if err != nil || !cached {
		t.Fatalf("second lookup: cached=%v err=%v; want a cache hit", cached, err)
	}
	// The cache never outlives the DNS data (TTL 300 in the fake zone), counted from
	// when the probe finished.
	if ttl := f.Until.Sub(f.Checked.Add(f.Duration)); ttl <= 0 || ttl > 300*time.Second+time.Second {
		t.Errorf("cached for %s; want (0, 300s]", ttl)
	}
}

// TestPendingProbeLandsInCache: a caller that gives up gets ErrPending; the probe
// finishes in the background and the next caller gets its result at once.
func TestPendingProbeLandsInCache(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	s := startSMTP(w, "127.0.0.30", "good", "mx1.example.test", func(b *behaviorMod) { b.BannerDelay = 300 * time.Millisecond })
	s.RegisterWith(w.dialer)
	w.dns.Add(t, "example.test. 300 IN MX 10 mx1.example.test.", "mx1.example.test. 300 IN A 127.0.0.30")
	v := w.verifier(func(c *verify.Config) { c.HostTimeout = 5 * time.Second })

	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	_, _, err := v.Facts(ctx, domain)
	cancel()
	if !errors.Is(err, verify.ErrPending) {
		t.Fatalf("err = %v; want ErrPending", err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
		f, cached, err := v.Facts(ctx, domain)
		cancel()
		if err == nil {
			// A poll may join the probe still in flight (cached=false); from then on
			// every answer comes from the cache.
			if !cached {
				if f, cached, err = v.Facts(context.Background(), domain); err != nil || !cached {
					t.Fatalf("after the probe finished: cached=%v err=%v; want a cache hit", cached, err)
				}
			}
			want("pass").check(t, "encrypt", verify.Judge(f, encrypt))
			if n := s.Connections(); n != 1 {
				t.Errorf("%d connections; want 1", n)
			}
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatal("background probe never landed in the cache")
}

func TestTTLByOutcome(t *testing.T) {
	t.Parallel()
	tests := []struct {
		behaviour string
		want      time.Duration
	}{
		{"good", time.Hour},
		{"selfsigned", 10 * time.Minute},
		{"nostarttls", 10 * time.Minute},
		{"banner450", time.Minute},
	}
	for _, tc := range tests {
		t.Run(tc.behaviour, func(t *testing.T) {
			t.Parallel()
			w := newWorld(t)
			w.dns.Add(t, "example.test. 86400 IN MX 10 mx1.example.test.", "mx1.example.test. 86400 IN A 127.0.0.31")
			w.serveAt("127.0.0.31", tc.behaviour, "mx1.example.test")
			f, _, err := w.verifier().Facts(context.Background(), domain)
			if err != nil {
				t.Fatal(err)
			}
			// Until counts from when the facts were stored, just after the probe.
			if got := f.Until.Sub(f.Checked); got < tc.want || got > tc.want+5*time.Second {
				t.Errorf("TTL %s; want %s", got, tc.want)
			}
		})
	}
}
