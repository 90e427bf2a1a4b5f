package dnsx_test

import (
	"context"
	"errors"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/tlsgate/tlsgate/internal/dnsx"
	"github.com/tlsgate/tlsgate/internal/fake"
)

func client(t *testing.T, s *fake.DNSServer) *dnsx.Client {
	t.Helper()
	c, err := dnsx.NewClient(s.Addr(), 500*time.Millisecond, false)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestLookup(t *testing.T) {
	t.Parallel()
	s := fake.StartDNS(t)
	s.Add(t,
		"example.test. 300 IN MX 10 mx.example.test.",
		"mx.example.test. 120 IN A 192.0.2.1",
		"alias.example.test. 60 IN CNAME mx.example.test.",
		"loop1.example.test. 60 IN CNAME loop2.example.test.",
		"loop2.example.test. 60 IN CNAME loop1.example.test.",
		"dangling.example.test. 60 IN CNAME gone.example.test.",
		"signed.test. 300 IN A 192.0.2.2",
		"alias.signed.test. 300 IN CNAME signed.test.",
		"alias2.signed.test. 300 IN CNAME mx.example.test.",
	)
	s.SetAuthentic("signed.test.", true)
	s.SetAuthentic("alias.signed.test.", true)
	s.SetAuthentic("alias2.signed.test.", true)
	s.SetRcode("servfail.test.", dns.TypeA, dns.RcodeServerFailure)
	s.SetRcode("refused.test.", dns.TypeA, dns.RcodeRefused)
	s.SetDrop("drop.test.", dns.TypeA)
	s.Add(t, "big.test. 300 IN A 192.0.2.3")
	s.SetTruncate("big.test.", dns.TypeA)
	c := client(t, s)

	tests := []struct {
		name      string
		qtype     uint16
		status    dnsx.Status
		err       error
		records   int
		target    string
		authentic bool
	}{
		{"example.test", dns.TypeMX, dnsx.StatusOK, nil, 1, "example.test.", false},
		{"EXAMPLE.test.", dns.TypeMX, dnsx.StatusOK, nil, 1, "example.test.", false},
		{"example.test", dns.TypeTLSA, dnsx.StatusNoData, nil, 0, "example.test.", false},
		{"nope.example.test", dns.TypeA, dnsx.StatusNXDomain, nil, 0, "nope.example.test.", false},
		{"alias.example.test", dns.TypeA, dnsx.StatusOK, nil, 1, "mx.example.test.", false},
		{"dangling.example.test", dns.TypeA, dnsx.StatusNXDomain, nil, 0, "gone.example.test.", false},
		{"signed.test", dns.TypeA, dnsx.StatusOK, nil, 1, "signed.test.", true},
		{"alias.signed.test", dns.TypeA, dnsx.StatusOK, nil, 1, "signed.test.", true},
		// authenticity is the AND along the chain: the target zone is unsigned
		{"alias2.signed.test", dns.TypeA, dnsx.StatusOK, nil, 1, "mx.example.test.", false},
		{"big.test", dns.TypeA, dnsx.StatusOK, nil, 1, "big.test.", false},
		{"servfail.test", dns.TypeA, 0, dnsx.ErrServFail, 0, "", false},
		{"refused.test", dns.TypeA, 0, dnsx.ErrRefused, 0, "", false},
		{"drop.test", dns.TypeA, 0, dnsx.ErrTimeout, 0, "", false},
		{"loop1.example.test", dns.TypeA, 0, dnsx.ErrServFail, 0, "", false}, // the resolver reports loops as SERVFAIL
		{"bad..name", dns.TypeA, 0, dnsx.ErrBadName, 0, "", false},
		{"", dns.TypeA, 0, dnsx.ErrBadName, 0, "", false},
	}
	for _, tc := range tests {
		ans, err := c.Lookup(context.Background(), tc.name, tc.qtype)
		if tc.err != nil {
			if !errors.Is(err, tc.err) {
				t.Errorf("%s %s: err = %v; want %v", tc.name, dns.TypeToString[tc.qtype], err, tc.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s %s: %v", tc.name, dns.TypeToString[tc.qtype], err)
			continue
		}
		if ans.Status != tc.status || len(ans.Records) != tc.records || ans.Target != tc.target || ans.Authentic != tc.authentic {
			t.Errorf("%s %s: status=%s records=%d target=%s authentic=%v; want %s %d %s %v", tc.name, dns.TypeToString[tc.qtype],
				ans.Status, len(ans.Records), ans.Target, ans.Authentic, tc.status, tc.records, tc.target, tc.authentic)
		}
	}
	var sawTCP bool
	for _, q := range s.Queries() {
		if q.Name == "big.test." && q.Net == "tcp" {
			sawTCP = true
		}
	}
	if !sawTCP {
		t.Error("truncated UDP answer was not retried over TCP")
	}
}

func TestTTL(t *testing.T) {
	t.Parallel()
	s := fake.StartDNS(t)
	s.Add(t, "alias.example.test. 60 IN CNAME mx.example.test.", "mx.example.test. 120 IN A 192.0.2.1")
	ans, err := client(t, s).Lookup(context.Background(), "alias.example.test", dns.TypeA)
	if err != nil {
		t.Fatal(err)
	}
	if ans.TTL != 60*time.Second {
		t.Errorf("TTL %s; want the chain's minimum 60s", ans.TTL)
	}
}

// TestADTrust: the AD bit counts only from a loopback or explicitly trusted resolver
// (RFC 6698 §4, RFC 7672 §2.1.1).
func TestADTrust(t *testing.T) {
	t.Parallel()
	tests := []struct {
		server  string
		trusted bool
		want    bool
	}{
		{"127.0.0.1:53", false, true},
		{"[::1]:53", false, true},
		{"192.0.2.53:53", false, false},
		{"192.0.2.53", true, true},
	}
	for _, tc := range tests {
		c, err := dnsx.NewClient(tc.server, time.Second, tc.trusted)
		if err != nil {
			t.Fatalf("NewClient(%q): %v", tc.server, err)
		}
		if c.Trusted != tc.want {
			t.Errorf("NewClient(%q, trusted=%v).Trusted = %v; want %v", tc.server, tc.trusted, c.Trusted, tc.want)
		}
	}
	if _, err := dnsx.NewClient("resolver.example", time.Second, false); err == nil {
		t.Error("a host name as resolver must be refused")
	}
	// From an untrusted resolver, AD never reaches the caller.
	s := fake.StartDNS(t)
	s.Add(t, "signed.test. 300 IN A 192.0.2.2")
	s.SetAllAuthentic(true)
	c := client(t, s)
	c.Trusted = false
	ans, err := c.Lookup(context.Background(), "signed.test", dns.TypeA)
	if err != nil || ans.Authentic {
		t.Errorf("untrusted resolver: authentic=%v err=%v; want false", ans.Authentic, err)
	}
}

func TestUnreachable(t *testing.T) {
	t.Parallel()
	c, err := dnsx.NewClient("127.0.0.1:1", 300*time.Millisecond, false)
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Lookup(context.Background(), "example.test", dns.TypeA)
	if !errors.Is(err, dnsx.ErrUnreachable) && !errors.Is(err, dnsx.ErrTimeout) {
		t.Errorf("err = %v; want ErrUnreachable or ErrTimeout", err)
	}
}

func TestAnswerAddrs(t *testing.T) {
	t.Parallel()
	a4, _ := dns.NewRR("mx.example.test. 60 IN A 192.0.2.1")
	a6, _ := dns.NewRR("mx.example.test. 60 IN AAAA 2001:db8::1")
	mapped, _ := dns.NewRR("mx.example.test. 60 IN AAAA ::ffff:192.0.2.2")
	mx, _ := dns.NewRR("example.test. 60 IN MX 10 mx.example.test.")
	got := dnsx.Answer{Records: []dns.RR{a4, mx, a6, mapped}}.Addrs()
	want := []netip.Addr{netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("2001:db8::1"), netip.MustParseAddr("192.0.2.2")}
	if !slices.Equal(got, want) {
		t.Errorf("Addrs() = %v; want %v", got, want)
	}
}
