// Package netguard decides which addresses tlsgate may connect to on behalf of a
// recipient domain: public addresses that are not this host's own, or addresses inside
// the networks the operator allows (probe.allow_networks).
package netguard

import (
	"context"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// nonPublic is the one list of address ranges tlsgate never contacts unless the
// operator allows them (probe.allow_networks): SMTP probes and MTA-STS fetches are
// outbound connections chosen by whoever controls a recipient domain's DNS, and must
// not reach the operator's own or internal networks.
//
// Checked against the IANA IPv4 and IPv6 Special-Purpose Address Registries (RFC 6890,
// registries of 2025): every block whose "Globally Reachable" is False or N/A is here.
// Blocks the registries mark globally reachable are contacted like any other public
// address (IPv4: 192.0.0.9/32, 192.0.0.10/32, 192.31.196.0/24, 192.52.193.0/24,
// 192.175.48.0/24; IPv6: 2620:4f:8000::/48, and inside 2001::/23 the anycast /128s,
// 2001:3::/32, 2001:4:112::/48, 2001:20::/28, 2001:30::/28), except where they embed
// an IPv4 address that could be internal (NAT64 64:ff9b::/96) or lie in a larger
// refused block (2001::/23). Besides the registries: IPv4 multicast and IPv6 outside
// global unicast (see Public), and deprecated IPv6 forms that embed an IPv4 address
// or reach a site's own network.
var nonPublic = []netip.Prefix{
	// IPv4 Special-Purpose Address Registry.
	netip.MustParsePrefix("0.0.0.0/8"),       // "this network", RFC 791 §3.2 (and 0.0.0.0/32, RFC 1122)
	netip.MustParsePrefix("10.0.0.0/8"),      // private use, RFC 1918
	netip.MustParsePrefix("100.64.0.0/10"),   // shared address space (CGN), RFC 6598
	netip.MustParsePrefix("127.0.0.0/8"),     // loopback, RFC 1122 §3.2.1.3
	netip.MustParsePrefix("169.254.0.0/16"),  // link local, RFC 3927
	netip.MustParsePrefix("172.16.0.0/12"),   // private use, RFC 1918
	netip.MustParsePrefix("192.0.0.0/24"),    // IETF protocol assignments, RFC 6890 §2.1 (incl. RFC 7335, 7600, 8880)
	netip.MustParsePrefix("192.0.2.0/24"),    // documentation TEST-NET-1, RFC 5737
	netip.MustParsePrefix("192.88.99.0/24"),  // deprecated 6to4 relay anycast, RFC 7526
	netip.MustParsePrefix("192.168.0.0/16"),  // private use, RFC 1918
	netip.MustParsePrefix("198.18.0.0/15"),   // benchmarking, RFC 2544
	netip.MustParsePrefix("198.51.100.0/24"), // documentation TEST-NET-2, RFC 5737
	netip.MustParsePrefix("203.0.113.0/24"),  // documentation TEST-NET-3, RFC 5737
	netip.MustParsePrefix("240.0.0.0/4"),     // reserved, RFC 1112 §4 (incl. limited broadcast 255.255.255.255/32, RFC 919 §7)
	// IPv4 Multicast Address Space Registry.
	netip.MustParsePrefix("224.0.0.0/4"), // multicast, RFC 5771
	// IPv6 Special-Purpose Address Registry.
	netip.MustParsePrefix("::/128"),         // unspecified, RFC 4291 §2.5.2
	netip.MustParsePrefix("::1/128"),        // loopback, RFC 4291 §2.5.3
	netip.MustParsePrefix("::ffff:0:0/96"),  // IPv4-mapped, RFC 4291 §2.5.5.2 (Public judges the IPv4 address instead)
	netip.MustParsePrefix("64:ff9b::/96"),   // IPv4/IPv6 translation (NAT64), RFC 6052: may embed a private IPv4 address
	netip.MustParsePrefix("64:ff9b:1::/48"), // local-use IPv4/IPv6 translation, RFC 8215
	netip.MustParsePrefix("100::/64"),       // discard-only, RFC 6666
	netip.MustParsePrefix("100:0:0:1::/64"), // dummy IPv6 prefix, RFC 9780
	netip.MustParsePrefix("2001::/23"),      // IETF protocol assignments, RFC 2928 (incl. Teredo 2001::/32, RFC 4380: embeds IPv4)
	netip.MustParsePrefix("2001:db8::/32"),  // documentation, RFC 3849
	netip.MustParsePrefix("2002::/16"),      // 6to4, RFC 3056: embeds an IPv4 address, possibly private
	netip.MustParsePrefix("3fff::/20"),      // documentation, RFC 9637
	netip.MustParsePrefix("5f00::/16"),      // segment routing (SRv6) SIDs, RFC 9602
	netip.MustParsePrefix("fc00::/7"),       // unique local, RFC 4193
	netip.MustParsePrefix("fe80::/10"),      // link-local unicast, RFC 4291 §2.5.6
	// Deprecated IPv6 forms (IANA IPv6 Address Space: reserved by the IETF).
	netip.MustParsePrefix("::/96"),           // IPv4-compatible, deprecated by RFC 4291 §2.5.5.1: may be tunnelled to the IPv4 address
	netip.MustParsePrefix("::ffff:0:0:0/96"), // IPv4-translated (SIIT), RFC 2765
	netip.MustParsePrefix("fec0::/10"),       // site-local, deprecated by RFC 3879
	// IPv6 Multicast Address Space Registry.
	netip.MustParsePrefix("ff00::/8"), // multicast, RFC 4291 §2.7
}

// globalUnicast6 is the only IPv6 space IANA allocates for global unicast (IANA IPv6
// Address Space registry, RFC 4291 §2.4); the rest is reserved, local or multicast.
var globalUnicast6 = netip.MustParsePrefix("2000::/3")

// Public reports whether ip is a globally routable unicast address: an IPv4 address
// (an IPv4-mapped IPv6 address is judged by its IPv4 address: dialing it reaches that
// address) outside nonPublic, or an IPv6 global unicast address outside nonPublic.
func Public(ip netip.Addr) bool {
	if !ip.IsValid() || ip.Zone() != "" {
		return false // DNS yields no scoped addresses; a prefix never contains one
	}
	ip = ip.Unmap()
	if ip.Is6() && !globalUnicast6.Contains(ip) {
		return false
	}
	for _, p := range nonPublic {
		if p.Contains(ip) {
			return false
		}
	}
	return true
}

func inAny(prefixes []netip.Prefix, ip netip.Addr) bool {
	ip = ip.Unmap()
	for _, p := range prefixes {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// ownAddrsRefresh is how often a Guard reads this host's addresses again.
const ownAddrsRefresh = 30 * time.Second

// Config configures a Guard.
type Config struct {
	// Allow are the networks that may be contacted although not public
	// (probe.allow_networks); they also admit this host's own addresses in them.
	Allow []netip.Prefix
	// OwnAddrs reads this host's addresses; nil reads the interface addresses.
	OwnAddrs func() ([]netip.Addr, error)
	// Refresh is how often OwnAddrs is read again; default 30 seconds (ownAddrsRefresh).
	Refresh time.Duration
}

// Guard is the outbound abuse guard of every connection tlsgate makes on behalf of a
// recipient domain (SMTP probes, MTA-STS policy fetches): an address may be contacted
// when it is public (Public) and not this host's own (a domain whose MX or policy
// host points at us would make us talk to ourselves), or inside an allow network.
// This host's addresses are read again in the background every Refresh, so that an
// address added to an interface is refused within that time; a failed read keeps the
// previous addresses. Allowed never blocks on it.
type Guard struct {
	allow   []netip.Prefix
	source  func() ([]netip.Addr, error)
	own     atomic.Pointer[map[netip.Addr]bool]
	refresh sync.Mutex // one read at a time
	stop    context.CancelFunc
	done    chan struct{}
}

// New returns a Guard that has read this host's addresses once and refreshes them
// until Close.
func New(cfg Config) *Guard {
	if cfg.OwnAddrs == nil {
		cfg.OwnAddrs = interfaceAddrs
	}
	if cfg.Refresh <= 0 {
		cfg.Refresh = ownAddrsRefresh
	}
	g := &Guard{allow: cfg.Allow, source: cfg.OwnAddrs, done: make(chan struct{})}
	g.own.Store(&map[netip.Addr]bool{})
	g.Refresh()
	ctx, stop := context.WithCancel(context.Background())
	g.stop = stop
	go func() {
		defer close(g.done)
		t := time.NewTicker(cfg.Refresh)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				g.Refresh()
			}
		}
	}()
	return g
}

// Allowed reports whether ip may be contacted.
func (g *Guard) Allowed(ip netip.Addr) bool {
	if inAny(g.allow, ip) {
		return true // an allow network admits even this host's own addresses in it
	}
	return Public(ip) && !(*g.own.Load())[ip.Unmap()]
}

// Refresh reads this host's addresses now; a failed read keeps the previous ones.
func (g *Guard) Refresh() {
	g.refresh.Lock()
	defer g.refresh.Unlock()
	addrs, err := g.source()
	if err != nil {
		return
	}
	own := make(map[netip.Addr]bool, len(addrs))
	for _, ip := range addrs {
		own[ip.Unmap()] = true
	}
	g.own.Store(&own)
}

// Close stops the background refresh; Allowed keeps answering with the last addresses.
func (g *Guard) Close() {
	g.stop()
	<-g.done
}

// interfaceAddrs lists this host's addresses.
func interfaceAddrs() ([]netip.Addr, error) {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil, err
	}
	out := make([]netip.Addr, 0, len(addrs))
	for _, a := range addrs {
		if p, err := netip.ParsePrefix(a.String()); err == nil {
			out = append(out, p.Addr().Unmap())
		}
	}
	return out, nil
}
