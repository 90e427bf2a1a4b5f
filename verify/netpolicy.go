package verify

import "net/netip"

// nonPublic lists special-purpose ranges that are not destinations on the public
// Internet (IANA IPv4/IPv6 Special-Purpose Address Registries, RFC 6890): probing them
// could reach the operator's own network, so they are refused unless allowed.
var nonPublic = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),       // "this network", RFC 791
	netip.MustParsePrefix("10.0.0.0/8"),      // private, RFC 1918
	netip.MustParsePrefix("100.64.0.0/10"),   // shared address space (CGN), RFC 6598
	netip.MustParsePrefix("127.0.0.0/8"),     // loopback, RFC 1122
	netip.MustParsePrefix("169.254.0.0/16"),  // link local, RFC 3927
	netip.MustParsePrefix("172.16.0.0/12"),   // private, RFC 1918
	netip.MustParsePrefix("192.0.0.0/24"),    // IETF protocol assignments, RFC 6890
	netip.MustParsePrefix("192.0.2.0/24"),    // TEST-NET-1, RFC 5737
	netip.MustParsePrefix("192.88.99.0/24"),  // deprecated 6to4 relay anycast, RFC 7526
	netip.MustParsePrefix("192.168.0.0/16"),  // private, RFC 1918
	netip.MustParsePrefix("198.18.0.0/15"),   // benchmarking, RFC 2544
	netip.MustParsePrefix("198.51.100.0/24"), // TEST-NET-2, RFC 5737
	netip.MustParsePrefix("203.0.113.0/24"),  // TEST-NET-3, RFC 5737
	netip.MustParsePrefix("224.0.0.0/4"),     // multicast, RFC 5771
	netip.MustParsePrefix("240.0.0.0/4"),     // reserved, RFC 1112 (includes broadcast)
	netip.MustParsePrefix("::/128"),          // unspecified
	netip.MustParsePrefix("::1/128"),         // loopback
	netip.MustParsePrefix("::ffff:0:0/96"),   // IPv4-mapped: judged by the IPv4 address instead
	netip.MustParsePrefix("64:ff9b::/96"),    // NAT64, RFC 6052: may embed a private IPv4 address
	netip.MustParsePrefix("64:ff9b:1::/48"),  // local-use NAT64, RFC 8215
	netip.MustParsePrefix("100::/64"),        // discard-only, RFC 6666
	netip.MustParsePrefix("2001::/23"),       // IETF protocol assignments, RFC 2928
	netip.MustParsePrefix("2001:db8::/32"),   // documentation, RFC 3849
	netip.MustParsePrefix("2002::/16"),       // 6to4, RFC 3056: may embed private IPv4
	netip.MustParsePrefix("fc00::/7"),        // unique local, RFC 4193
	netip.MustParsePrefix("fe80::/10"),       // link local, RFC 4291
	netip.MustParsePrefix("ff00::/8"),        // multicast, RFC 4291
}

// Public reports whether ip is a globally routable unicast address.
func Public(ip netip.Addr) bool {
	if !ip.IsValid() {
		return false
	}
	ip = ip.Unmap()
	for _, p := range nonPublic {
		if p.Contains(ip) {
			return false
		}
	}
	return true
}

// AllowFunc returns the outbound abuse guard: an address may be contacted when it is
// public or inside one of the operator's allow networks (probe.allow_networks).
func AllowFunc(allow []netip.Prefix) func(netip.Addr) bool {
	return func(ip netip.Addr) bool {
		ip = ip.Unmap()
		for _, p := range allow {
			if p.Contains(ip) {
				return true
			}
		}
		return Public(ip)
	}
}
