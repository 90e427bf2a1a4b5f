package verify_test

import (
	"context"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/tlsgate/tlsgate/internal/dnsx"
	"github.com/tlsgate/tlsgate/internal/fake"
	"github.com/tlsgate/tlsgate/internal/mtasts"
	"github.com/tlsgate/tlsgate/internal/netguard"
	"github.com/tlsgate/tlsgate/verify"
)

// TestOwnAddressLearnedLater: a verifier refuses to probe an address that became this
// host's after it started, and probes it again once it is no longer.
func TestOwnAddressLearnedLater(t *testing.T) {
	t.Parallel()
	ip := netip.MustParseAddr("198.51.200.8") // public, routed to a loopback server by the fake dialer
	w := newWorld(t)
	w.serve(domain, host{name: "mx1", behaviour: "good", ip: "127.0.0.10"})
	w.dns.Remove("mx1.example.test.", dns.TypeA)
	w.dns.Add(t, "mx1.example.test. 300 IN A "+ip.String())
	s := startSMTP(w, "127.0.0.10", "good", "mx1.example.test")
	w.dialer.Register(ip, s.Addr())
	src := &fake.AddrSource{}
	src.Set(nil, "127.0.0.1")
	v := w.verifier(func(c *verify.Config) {
		c.Allow = nil
		c.AddressTTL = time.Nanosecond // every Probe opens a session
		c.Guard = netguard.New(netguard.Config{OwnAddrs: src.Read, Refresh: 5 * time.Millisecond})
	})
	want("pass").check(t, "encrypt", verify.Judge(v.Probe(context.Background(), domain), encrypt))
	src.Set(nil, "127.0.0.1", ip.String())
	fake.Eventually(t, "the probe refused", func() bool {
		return verify.Judge(v.Probe(context.Background(), domain), encrypt).Reason == verify.ReasonProbeNotAllowed
	})
	src.Set(nil, "127.0.0.1")
	fake.Eventually(t, "the probe allowed again", func() bool {
		return verify.Judge(v.Probe(context.Background(), domain), encrypt).Status == verify.StatusPass
	})
}

// TestSTSFetchUnderTheProbeGuard: the MTA-STS policy fetch is an outbound connection
// chosen by the recipient domain like a probe, under the same guard (cmd/tlsgate
// passes one Guard to both): a policy host at this host's own public address is not
// contacted (the fetch fails and no policy applies, RFC 8461 §5); once the address is
// no longer this host's, the policy is fetched.
func TestSTSFetchUnderTheProbeGuard(t *testing.T) {
	t.Parallel()
	policyIP := netip.MustParseAddr("198.51.200.80") // public, routed to a loopback server by the fake dialer
	w := newWorld(t)
	w.serve(domain, host{name: "mx1", behaviour: "good"})
	srv := fake.StartPolicyServer(t, w.ca.Issue(t, fake.CertOptions{DNSNames: []string{"mta-sts.example.test"}}))
	srv.RegisterWith(w.dialer, policyIP)
	srv.SetPolicy(stsPolicy("enforce", "mx1.example.test"))
	w.dns.Add(t, `_mta-sts.example.test. 300 IN TXT "v=STSv1; id=1"`, "mta-sts.example.test. 300 IN A "+policyIP.String())
	src := &fake.AddrSource{}
	src.Set(nil, policyIP.String())
	guard := netguard.New(netguard.Config{OwnAddrs: src.Read, Refresh: time.Hour,
		Allow: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}})
	res, err := dnsx.NewClient(w.dns.Addr(), time.Second, false)
	if err != nil {
		t.Fatal(err)
	}
	sts, err := mtasts.New(mtasts.Config{Resolver: res, Dial: w.dialer.DialContext, Roots: w.ca.Pool,
		Timeout: 2 * time.Second, Allowed: guard.Allowed})
	if err != nil {
		t.Fatal(err)
	}
	v := w.verifier(func(c *verify.Config) { c.Guard, c.STS = guard, sts })
	verdict := verify.Judge(v.Probe(context.Background(), domain), published)
	if verdict.Mechanism == verify.MechMTASTS || srv.Fetches() != 0 {
		t.Errorf("policy host at an own address: mechanism %s, %d fetches; want no fetch", verdict.Mechanism, srv.Fetches())
	}
	if d := w.dialer.Dials(); slices.Contains(d, netip.AddrPortFrom(policyIP, 443).String()) {
		t.Errorf("dialed the policy host at an own address: %q", d)
	}
	src.Set(nil)
	guard.Refresh()
	sts2, err := mtasts.New(mtasts.Config{Resolver: res, Dial: w.dialer.DialContext, Roots: w.ca.Pool,
		Timeout: 2 * time.Second, Allowed: guard.Allowed})
	if err != nil {
		t.Fatal(err)
	}
	defer sts2.Close()
	if r := sts2.Lookup(context.Background(), domain); r.Status != mtasts.StatusPolicy || srv.Fetches() != 1 {
		t.Errorf("policy host no longer own: status %s (%s), %d fetches; want the policy", r.Status, r.Detail, srv.Fetches())
	}
}
