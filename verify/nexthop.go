package verify

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"

	"github.com/tlsgate/tlsgate/internal/smtpprobe"
	"github.com/tlsgate/tlsgate/policy"
)

// A next hop is where Postfix's SMTP client delivers a recipient: the recipient
// domain, or the verbatim destination of a transport_maps entry, relayhost,
// relay_transport or default_transport (postconf(5) smtp_tls_policy_maps). Facts are
// cached per next hop: the key is a domain ("example.com") or a next-hop key in
// policy.NormalizeNextHop's form ("[gw.example]", "[gw.example]:2525",
// "relay.example:2525"). Facts.Domain is that key.

// NextHop is a parsed next-hop key.
type NextHop struct {
	// Name is the host ("[gw.example]") or the domain whose MX hosts are used
	// ("example.com", "relay.example:2525"): lower case, A-labels; for an address
	// literal the address.
	Name string
	// Port is the TCP port; 0 is the default (probe.port).
	Port int
	// MX: Postfix looks up the MX hosts of Name; false for "[host]" (smtp(8): "With
	// [host], no MX lookup is done").
	MX bool
	// IP is set for an address literal ("[192.0.2.1]", "[ipv6:2001:db8::1]"): no DNS at all.
	IP netip.Addr
}

// ParseNextHop parses a cache key or a Postfix next hop ({rcpt_host}). ok is false
// for something that is neither a domain nor a next-hop key; a bad port is an error.
func ParseNextHop(key string) (h NextHop, ok bool, err error) {
	k, explicit := policy.NormalizeNextHop(key)
	if !explicit {
		d, err := policy.NormalizeDomain(key)
		if err != nil {
			return NextHop{}, false, nil
		}
		return NextHop{Name: d, MX: true}, true, nil
	}
	var host, port string
	if rest, br := strings.CutPrefix(k, "["); br {
		var after string
		host, after, _ = strings.Cut(rest, "]")
		port = strings.TrimPrefix(after, ":")
	} else {
		i := strings.LastIndexByte(k, ':')
		host, port = k[:i], k[i+1:]
		h.MX = true
	}
	h.Name = host
	if ip, err := netip.ParseAddr(strings.TrimPrefix(host, "ipv6:")); err == nil && !h.MX {
		h.IP = ip.Unmap()
	} else if _, err := policy.NormalizeDomain(host); err != nil {
		return NextHop{}, false, nil
	}
	if port != "" {
		n, err := strconv.Atoi(port)
		if err != nil {
			// Postfix resolves a service name with getservbyname(3): "smtp",
			// "submission".
			if n, err = net.DefaultResolver.LookupPort(context.Background(), "tcp", port); err != nil {
				return h, true, fmt.Errorf("next hop %s: unknown port %q", k, port)
			}
		}
		if n <= 0 || n > 65535 {
			return h, true, fmt.Errorf("next hop %s: port %q out of range", k, port)
		}
		h.Port = n
	}
	return h, true, nil
}

// isNextHopKey reports whether key is an explicit next-hop key ("[host]",
// "[host]:port", "host:port") rather than a domain.
func isNextHopKey(key string) bool {
	return strings.HasPrefix(key, "[") || strings.IndexByte(key, ':') >= 0
}

// NextHopName is the next-hop domain of these facts as Postfix names it for
// certificate matching (postconf(5) smtp_tls_secure_cert_match "nexthop": "the
// recipient domain or the transport next-hop configured for the destination stripped
// of any optional socket type prefix, enclosing square brackets and trailing port"),
// and as the DANE-TA reference identifier beside the TLSA base domain (RFC 7672
// §3.2.2).
func (f *Facts) NextHopName() string {
	dest := f.Destination()
	if !isNextHopKey(dest) {
		return dest
	}
	if h, ok, _ := ParseNextHop(dest); ok {
		return h.Name
	}
	return dest
}

// portProber is a Prober that can probe another port than its default: explicit next
// hops ("[gw.example]:2525") are probed at their port. *smtpprobe.Prober implements it.
type portProber interface {
	ProbeAt(ctx context.Context, ip netip.Addr, port int, sni string) smtpprobe.Result
}

var _ portProber = (*smtpprobe.Prober)(nil)

// port is the TCP port of facts: the next hop's, else probe.port.
func (v *Verifier) port(h NextHop) int {
	if h.Port > 0 {
		return h.Port
	}
	return v.cfg.SMTPPort
}

// probeNextHop gathers the facts of an explicit next hop "[host]" or "[host]:port":
// the host's addresses, no MX lookup, TLSA at _port._tcp.host when the address
// records are DNSSEC-validated (Postfix: a non-MX destination is DANE-eligible when
// its address lookup is secure; RFC 7672 §2.2.2 for the host), and no MTA-STS, which
// applies only to delivery to a domain's MX hosts (RFC 8461 §4). The host stands in
// for the MX RRset: MXSecure is its address records' validation.
func (v *Verifier) probeNextHop(ctx context.Context, f *Facts, hop NextHop) {
	h := Host{Name: hop.Name}
	if hop.IP.IsValid() {
		h.Addrs = []netip.Addr{hop.IP}
	} else {
		dctx, cancel := context.WithTimeout(ctx, v.cfg.DNSTimeout)
		v.lookupAddrs(dctx, f, &h)
		if h.AddrSecure {
			v.lookupTLSA(dctx, f, &h, v.port(hop))
		}
		cancel()
		if h.AddrError != "" && h.AddrTemporary {
			f.MX, f.MXDetail = MXError, h.AddrError
			return
		}
		if h.AddrError != "" {
			f.MX, f.MXDetail = MXNone, fmt.Sprintf("next hop %s: %s", f.Destination(), h.AddrError)
			return
		}
	}
	f.MX, f.MXDetail = MXImplicit, fmt.Sprintf("explicit next hop %s: no MX lookup", f.Destination())
	f.MXSecure = h.AddrSecure
	f.Hosts = []Host{h}
	v.probeHosts(ctx, f, nil, false)
}

// probeAt probes ip at port, the default port through Prober.Probe.
func (v *Verifier) probeAt(ctx context.Context, ip netip.Addr, port int, sni string) smtpprobe.Result {
	if port == v.cfg.SMTPPort {
		return v.cfg.Prober.Probe(ctx, ip, sni)
	}
	if pp, ok := v.cfg.Prober.(portProber); ok {
		return pp.ProbeAt(ctx, ip, port, sni)
	}
	return smtpprobe.Result{IP: ip, Outcome: smtpprobe.OutcomeRefused,
		Detail: fmt.Sprintf("this prober cannot probe port %d", port)}
}
