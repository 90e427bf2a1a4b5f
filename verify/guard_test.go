package verify_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/tlsgate/tlsgate/internal/dnsx"
	"github.com/tlsgate/tlsgate/internal/fake"
	"github.com/tlsgate/tlsgate/internal/smtpprobe"
	"github.com/tlsgate/tlsgate/verify"
)

// TestAddressResultShared: domains sharing an MX address share one SMTP session.
func TestAddressResultShared(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	servers := w.serve(domain, host{name: "mx1", behaviour: "good"})
	w.dns.Add(t, "other.test. 300 IN MX 10 mx1.example.test.")
	v := w.verifier()
	for _, d := range []string{domain, "other.test"} {
		f, _, err := v.Facts(context.Background(), d)
		if err != nil {
			t.Fatal(err)
		}
		want("pass").check(t, "encrypt", verify.Judge(f, encrypt))
	}
	if n := servers["mx1"].Connections(); n != 1 {
		t.Errorf("%d connections for two domains on one MX address; want 1", n)
	}
}

// TestRateLimitPerAddress: past probe.rate_per_address sessions a minute, an address is
// not contacted and the verdict is a tempfail, never a pass.
func TestRateLimitPerAddress(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	servers := w.serve(domain, host{name: "mx1", behaviour: "good"})
	w.dns.Add(t, "other.test. 300 IN MX 10 mx1.example.test.")
	v := w.verifier(func(c *verify.Config) { c.RatePerAddress = 1; c.AddressTTL = time.Nanosecond })
	first := v.Probe(context.Background(), domain)
	want("pass").check(t, "encrypt", verify.Judge(first, encrypt))
	second := v.Probe(context.Background(), "other.test")
	want("tempfail/rate-limited").check(t, "encrypt", verify.Judge(second, encrypt))
	if n := servers["mx1"].Connections(); n != 1 {
		t.Errorf("%d connections; want 1", n)
	}
}

// TestOwnAddressNotProbed: an MX pointing at this host's own (public) address is not
// probed unless allow_networks lists it.
func TestOwnAddressNotProbed(t *testing.T) {
	t.Parallel()
	own := netip.MustParseAddr("198.51.200.7") // public, routed to a loopback server by the fake dialer
	for _, tc := range []struct {
		name  string
		allow []netip.Prefix
		want  want
	}{
		{"refused", nil, "tempfail/probe-not-allowed"},
		{"allowed explicitly", []netip.Prefix{netip.PrefixFrom(own, 32)}, "pass"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			w := newWorld(t)
			w.serve(domain, host{name: "mx1", behaviour: "good", ip: "127.0.0.10"})
			w.dns.Remove("mx1.example.test.", dns.TypeA)
			w.dns.Add(t, "mx1.example.test. 300 IN A "+own.String())
			w.dialer.Register(own, netip.MustParseAddrPort("127.0.0.10:25"))
			s := startSMTP(w, "127.0.0.10", "good", "mx1.example.test")
			w.dialer.Register(own, s.Addr())
			v := w.verifier(func(c *verify.Config) { c.Allow = tc.allow; c.OwnAddrs = []netip.Addr{own} })
			tc.want.check(t, "encrypt", verify.Judge(v.Probe(context.Background(), domain), encrypt))
		})
	}
}

// TestIPLiteralMX: an MX target that is an address is never probed (RFC 5321 §5.1).
func TestIPLiteralMX(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	w.dns.Add(t, "example.test. 300 IN MX 10 127.0.0.10.")
	s := startSMTP(w, "127.0.0.10", "good", "mx1.example.test")
	s.RegisterWith(w.dialer)
	f := w.verifier().Probe(context.Background(), domain)
	v := verify.Judge(f, encrypt)
	want("fail/no-mx").check(t, "encrypt", v)
	if !strings.Contains(v.Detail, "IP address") || len(w.dialer.Dials()) != 0 {
		t.Errorf("detail %q, dials %q", v.Detail, w.dialer.Dials())
	}
}

// anyResolver answers every name: MX mx.NAME, and a public A record derived from the
// name, instantly.
type anyResolver struct{ queries atomic.Int64 }

func (r *anyResolver) Lookup(_ context.Context, name string, qtype uint16) (dnsx.Answer, error) {
	r.queries.Add(1)
	fq := dns.Fqdn(name)
	ans := dnsx.Answer{Name: fq, Target: fq, TTL: time.Hour}
	h := uint32(0)
	for _, c := range name {
		h = h*31 + uint32(c)
	}
	switch qtype {
	case dns.TypeMX:
		ans.Records = []dns.RR{&dns.MX{Hdr: dns.RR_Header{Name: fq, Rrtype: dns.TypeMX, Class: dns.ClassINET, Ttl: 3600}, Preference: 10, Mx: "mx." + fq}}
	case dns.TypeA:
		ip := net.IPv4(8, byte(h>>16), byte(h>>8), byte(h))
		ans.Records = []dns.RR{&dns.A{Hdr: dns.RR_Header{Name: fq, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 3600}, A: ip}}
	default:
		ans.Status = dnsx.StatusNoData
	}
	return ans, nil
}

// slowProber takes a while per session and records the most sessions open at once.
type slowProber struct {
	open, peak, total atomic.Int64
}

func (p *slowProber) Probe(ctx context.Context, ip netip.Addr, _ string) smtpprobe.Result {
	n := p.open.Add(1)
	defer p.open.Add(-1)
	p.total.Add(1)
	for {
		old := p.peak.Load()
		if n <= old || p.peak.CompareAndSwap(old, n) {
			break
		}
	}
	select {
	case <-time.After(2 * time.Millisecond):
	case <-ctx.Done():
	}
	return smtpprobe.Result{IP: ip, Outcome: smtpprobe.OutcomeNoStartTLS, Detail: "no STARTTLS"}
}

// TestBurstOfDistinctDomains: 10,000 RCPTs for 10,000 distinct uncached domains open at
// most max_concurrent sessions at once, queue at most max_queued probes (the rest are
// told "overloaded" at once), and leave no goroutines behind.
func TestBurstOfDistinctDomains(t *testing.T) {
	// Not parallel: it checks every goroutine of the process.
	noLeak := fake.CheckGoroutines(t)
	prober := &slowProber{}
	v, err := verify.New(verify.Config{Resolver: &anyResolver{}, Prober: prober, MaxConcurrent: 8, MaxQueued: 200, OwnAddrs: []netip.Addr{}})
	if err != nil {
		t.Fatal(err)
	}
	const n = 10000
	var wg sync.WaitGroup
	var overloaded, pending, done atomic.Int64
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
			defer cancel()
			_, _, err := v.Facts(ctx, fmt.Sprintf("d%05d.example", i))
			switch {
			case err == nil:
				done.Add(1)
			case errors.Is(err, verify.ErrOverloaded):
				overloaded.Add(1)
			case errors.Is(err, verify.ErrPending):
				pending.Add(1)
			default:
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	v.Close()
	t.Logf("done %d, pending %d, overloaded %d; probes %d, peak sessions %d", done.Load(), pending.Load(), overloaded.Load(), prober.total.Load(), prober.peak.Load())
	if p := prober.peak.Load(); p > 8 {
		t.Errorf("%d sessions open at once; the cap is 8", p)
	}
	if overloaded.Load() == 0 {
		t.Error("no request was refused as overloaded; the queue is unbounded")
	}
	if done.Load()+pending.Load()+overloaded.Load() != n {
		t.Errorf("answers do not add up to %d", n)
	}
	noLeak()
}

// manyMXResolver publishes hundreds of MX hosts for every domain, none with an address.
type manyMXResolver struct{ anyResolver }

func (r *manyMXResolver) Lookup(ctx context.Context, name string, qtype uint16) (dnsx.Answer, error) {
	if qtype != dns.TypeMX {
		r.queries.Add(1)
		return dnsx.Answer{Name: dns.Fqdn(name), Target: dns.Fqdn(name), Status: dnsx.StatusNXDomain, TTL: time.Hour}, nil
	}
	fq := dns.Fqdn(name)
	ans := dnsx.Answer{Name: fq, Target: fq, TTL: time.Hour}
	for i := range 500 {
		ans.Records = append(ans.Records, &dns.MX{Hdr: dns.RR_Header{Name: fq, Rrtype: dns.TypeMX, Class: dns.ClassINET, Ttl: 3600},
			Preference: uint16(i), Mx: fmt.Sprintf("mx%03d.%s", i, fq)})
	}
	return ans, nil
}

// TestHundredsOfMXHosts: a domain with 500 MX hosts costs a bounded number of lookups.
func TestHundredsOfMXHosts(t *testing.T) {
	t.Parallel()
	r := &manyMXResolver{}
	v, err := verify.New(verify.Config{Resolver: r, Prober: &slowProber{}, OwnAddrs: []netip.Addr{}})
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	f := v.Probe(context.Background(), "many.example")
	if q := r.queries.Load(); q > 2*32 {
		t.Errorf("%d address lookups for 500 MX hosts; want at most 64", q)
	}
	if len(f.Hosts) != 32 {
		t.Errorf("%d hosts kept; want 32", len(f.Hosts))
	}
	want("fail/no-mx").check(t, "encrypt", verify.Judge(f, encrypt))
}

// TestCloseWhileProbing: Close while requests keep arriving neither panics nor hangs;
// late requests get ErrClosed or ErrPending, never a verdict from nowhere.
func TestCloseWhileProbing(t *testing.T) {
	t.Parallel()
	v, err := verify.New(verify.Config{Resolver: &anyResolver{}, Prober: &slowProber{}, MaxConcurrent: 4, OwnAddrs: []netip.Addr{}})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for i := range 200 {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			_, _, err := v.Facts(ctx, fmt.Sprintf("c%03d.example", i))
			if err != nil && !errors.Is(err, verify.ErrClosed) && !errors.Is(err, verify.ErrPending) &&
				!errors.Is(err, verify.ErrOverloaded) && !errors.Is(err, context.Canceled) {
				t.Error(err)
			}
		})
		if i == 100 {
			v.Close()
		}
	}
	wg.Wait()
}
