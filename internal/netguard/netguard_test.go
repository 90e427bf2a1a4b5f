package netguard_test

import (
	"errors"
	"net/netip"
	"runtime"
	"testing"
	"time"

	"github.com/tlsgate/tlsgate/internal/fake"
	"github.com/tlsgate/tlsgate/internal/netguard"
)

// lastAddr is the highest address of p.
func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Masked().Addr().AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

// TestPublicIANARegistries walks the IANA IPv4 and IPv6 Special-Purpose Address
// Registries (RFC 6890; entries as of 2025) by their first and last addresses: every
// block not globally reachable is refused. Globally reachable blocks are contacted,
// unless they sit inside a block refused as a whole or embed an IPv4 address.
func TestPublicIANARegistries(t *testing.T) {
	t.Parallel()
	tests := []struct {
		block  string
		public bool
		why    string
	}{
		// IPv4 Special-Purpose Address Registry.
		{"0.0.0.0/8", false, "this network, RFC 791"},
		{"0.0.0.0/32", false, "this host on this network, RFC 1122"},
		{"10.0.0.0/8", false, "private use, RFC 1918"},
		{"100.64.0.0/10", false, "shared address space, RFC 6598"},
		{"127.0.0.0/8", false, "loopback, RFC 1122"},
		{"169.254.0.0/16", false, "link local, RFC 3927"},
		{"172.16.0.0/12", false, "private use, RFC 1918"},
		{"192.0.0.0/24", false, "IETF protocol assignments, RFC 6890"},
		{"192.0.0.0/29", false, "IPv4 service continuity prefix, RFC 7335"},
		{"192.0.0.8/32", false, "IPv4 dummy address, RFC 7600"},
		{"192.0.0.9/32", false, "PCP anycast, RFC 7723: globally reachable, but inside 192.0.0.0/24"},
		{"192.0.0.10/32", false, "TURN anycast, RFC 8155: globally reachable, but inside 192.0.0.0/24"},
		{"192.0.0.170/31", false, "NAT64/DNS64 discovery, RFC 8880"},
		{"192.0.2.0/24", false, "documentation, RFC 5737"},
		{"192.31.196.0/24", true, "AS112-v4, RFC 7535: globally reachable"},
		{"192.52.193.0/24", true, "AMT, RFC 7450: globally reachable"},
		{"192.88.99.0/24", false, "deprecated 6to4 relay anycast, RFC 7526"},
		{"192.168.0.0/16", false, "private use, RFC 1918"},
		{"192.175.48.0/24", true, "direct delegation AS112 service, RFC 7534: globally reachable"},
		{"198.18.0.0/15", false, "benchmarking, RFC 2544"},
		{"198.51.100.0/24", false, "documentation, RFC 5737"},
		{"203.0.113.0/24", false, "documentation, RFC 5737"},
		{"240.0.0.0/4", false, "reserved, RFC 1112"},
		{"255.255.255.255/32", false, "limited broadcast, RFC 919"},
		{"224.0.0.0/4", false, "multicast, RFC 5771"},
		// IPv6 Special-Purpose Address Registry.
		{"::1/128", false, "loopback, RFC 4291"},
		{"::/128", false, "unspecified, RFC 4291"},
		{"::ffff:0.0.0.0/104", false, "IPv4-mapped, RFC 4291: judged as 0.0.0.0/8"},
		{"::ffff:10.0.0.0/104", false, "IPv4-mapped, RFC 4291: judged as 10.0.0.0/8"},
		{"::ffff:8.8.8.0/120", true, "IPv4-mapped, RFC 4291: judged as 8.8.8.0/24"},
		{"64:ff9b::/96", false, "IPv4/IPv6 translation, RFC 6052: globally reachable, but may embed a private IPv4 address"},
		{"64:ff9b:1::/48", false, "local-use IPv4/IPv6 translation, RFC 8215"},
		{"100::/64", false, "discard-only, RFC 6666"},
		{"100:0:0:1::/64", false, "dummy IPv6 prefix, RFC 9780"},
		{"2001::/23", false, "IETF protocol assignments, RFC 2928"},
		{"2001::/32", false, "Teredo, RFC 4380: embeds IPv4"},
		{"2001:1::1/128", false, "PCP anycast, RFC 7723: globally reachable, but inside 2001::/23"},
		{"2001:1::2/128", false, "TURN anycast, RFC 8155: globally reachable, but inside 2001::/23"},
		{"2001:1::3/128", false, "DNS-SD SRP anycast, RFC 9665: globally reachable, but inside 2001::/23"},
		{"2001:2::/48", false, "benchmarking, RFC 5180"},
		{"2001:3::/32", false, "AMT, RFC 7450: globally reachable, but inside 2001::/23"},
		{"2001:4:112::/48", false, "AS112-v6, RFC 7535: globally reachable, but inside 2001::/23"},
		{"2001:10::/28", false, "deprecated ORCHID, RFC 4843"},
		{"2001:20::/28", false, "ORCHIDv2, RFC 7343: globally reachable, but inside 2001::/23"},
		{"2001:30::/28", false, "DRIP DETs, RFC 9374: globally reachable, but inside 2001::/23"},
		{"2001:db8::/32", false, "documentation, RFC 3849"},
		{"2002::/16", false, "6to4, RFC 3056: embeds IPv4"},
		{"2620:4f:8000::/48", true, "direct delegation AS112 service, RFC 7534: globally reachable"},
		{"3fff::/20", false, "documentation, RFC 9637"},
		{"5f00::/16", false, "segment routing SIDs, RFC 9602"},
		{"fc00::/7", false, "unique local, RFC 4193"},
		{"fe80::/10", false, "link-local unicast, RFC 4291"},
		// Deprecated forms (issue 17) and the rest of the IPv6 space.
		{"::/96", false, "IPv4-compatible, deprecated by RFC 4291 §2.5.5.1"},
		{"::ffff:0:0:0/96", false, "IPv4-translated, RFC 2765"},
		{"fec0::/10", false, "site-local, deprecated by RFC 3879"},
		{"ff00::/8", false, "multicast, RFC 4291"},
		{"4000::/2", false, "outside global unicast 2000::/3 (IANA IPv6 Address Space)"},
		{"::/3", false, "outside global unicast 2000::/3 (IANA IPv6 Address Space)"},
		{"2a00:1450::/32", true, "global unicast"},
		{"8.8.8.0/24", true, "public IPv4"},
		{"193.0.0.0/21", true, "public IPv4"},
	}
	for _, tc := range tests {
		p := netip.MustParsePrefix(tc.block)
		for _, ip := range []netip.Addr{p.Masked().Addr(), lastAddr(p)} {
			if got := netguard.Public(ip); got != tc.public {
				t.Errorf("Public(%s) = %v; want %v (%s: %s)", ip, got, tc.public, tc.block, tc.why)
			}
		}
	}
	// The forms of issue 17: each embeds or reaches something internal.
	for _, s := range []string{"::127.0.0.1", "::10.0.0.1", "::8.8.8.8", "::ffff:0:127.0.0.1", "::ffff:0:8.8.8.8", "fec0::1", "fec0::127.0.0.1", "fe80::1%lo", "2a00:1450::1%eth0"} {
		if netguard.Public(netip.MustParseAddr(s)) {
			t.Errorf("Public(%s) = true", s)
		}
	}
}

// TestGuardRefreshesOwnAddresses: the host's own addresses are read again
// periodically, so an address added later is refused and one removed is contacted
// again; a failed read keeps the last addresses; allow networks admit own addresses.
func TestGuardRefreshesOwnAddresses(t *testing.T) {
	t.Parallel()
	a, b := netip.MustParseAddr("198.51.200.7"), netip.MustParseAddr("2a00:1450::7")
	src := &fake.AddrSource{}
	src.Set(nil, "198.51.200.7")
	g := netguard.New(netguard.Config{OwnAddrs: src.Read, Refresh: 5 * time.Millisecond,
		Allow: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}})
	defer g.Close()
	if g.Allowed(a) || g.Allowed(netip.MustParseAddr("::ffff:198.51.200.7")) || !g.Allowed(b) {
		t.Fatalf("at start: %s allowed %v, %s allowed %v", a, g.Allowed(a), b, g.Allowed(b))
	}
	if !g.Allowed(netip.MustParseAddr("127.0.0.5")) || g.Allowed(netip.MustParseAddr("10.0.0.1")) {
		t.Error("allow networks: 127.0.0.5 must be allowed, 10.0.0.1 not")
	}
	src.Set(nil, "2a00:1450::7") // an interface gained b and lost a
	fake.Eventually(t, "the new own address refused", func() bool { return !g.Allowed(b) && g.Allowed(a) })
	src.Set(errors.New("netlink: no buffer space"))
	reads := src.Reads
	n := reads()
	fake.Eventually(t, "two more reads", func() bool { return reads() >= n+2 })
	if g.Allowed(b) || !g.Allowed(a) {
		t.Error("a failed read dropped the own addresses")
	}
}

// TestGuardNeverBlocks: a slow read of the interfaces does not hold up Allowed.
func TestGuardNeverBlocks(t *testing.T) {
	t.Parallel()
	src := &fake.AddrSource{}
	src.Set(nil, "198.51.200.7")
	g := netguard.New(netguard.Config{OwnAddrs: src.Read, Refresh: time.Millisecond})
	waiting, release := src.Hold()
	<-waiting // the refresher is now stuck in a read
	done := make(chan bool)
	go func() { done <- g.Allowed(netip.MustParseAddr("198.51.200.7")) }()
	select {
	case allowed := <-done:
		if allowed {
			t.Error("own address allowed while a refresh is pending")
		}
	case <-time.After(2 * time.Second):
		t.Fatal("Allowed blocked on a pending refresh")
	}
	release()
	g.Close()
}

// TestGuardCloseStopsRefresh: Close ends the refresher goroutine. Not parallel: it
// counts the process's goroutines.
func TestGuardCloseStopsRefresh(t *testing.T) {
	before := runtime.NumGoroutine()
	for range 20 {
		netguard.New(netguard.Config{Refresh: time.Millisecond}).Close()
	}
	fake.WaitGoroutines(t, before, 0)
}

func TestPublic(t *testing.T) {
	t.Parallel()
	for ip, public := range map[string]bool{
		"127.0.0.1": false, "10.1.2.3": false, "172.16.0.1": false, "192.168.1.1": false,
		"169.254.1.1": false, "100.64.0.1": false, "0.0.0.0": false, "224.0.0.1": false,
		"255.255.255.255": false, "192.0.2.1": false, "::1": false, "fe80::1": false,
		"fd00::1": false, "::ffff:127.0.0.1": false, "::ffff:10.0.0.1": false, "2001:db8::1": false,
		"8.8.8.8": true, "2a00:1450::1": true, "::ffff:8.8.8.8": true, "193.0.0.1": true,
	} {
		if got := netguard.Public(netip.MustParseAddr(ip)); got != public {
			t.Errorf("Public(%s) = %v; want %v", ip, got, public)
		}
	}
}
