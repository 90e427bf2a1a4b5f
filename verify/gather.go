package verify

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"

	"github.com/miekg/dns"

	"github.com/tlsgate/tlsgate/internal/dnsx"
	"github.com/tlsgate/tlsgate/internal/problem"
)

// maxMXHosts bounds the MX hosts whose addresses are looked up, in preference order:
// enough for the address limit even when many hosts have no address.
const maxMXHosts = 32

// lookupMX fills f.MX and returns the hosts in Postfix's order with their addresses.
//
// For a next hop "host:port" the MX hosts are host's (Postfix looks up MX records for
// a next hop without brackets) and TLSA records are at that port.
func (v *Verifier) lookupMX(ctx context.Context, f *Facts, hop NextHop) ([]Host, error) {
	name, port := hop.Name, v.port(hop)
	ans, err := v.cfg.Resolver.Lookup(ctx, name, dns.TypeMX)
	if err != nil {
		f.MX, f.MXDetail = MXError, fmt.Sprintf("MX lookup for %s failed: %s", name, problem.Describe(err))
		v.cfg.Log.Debug("dns lookup failed", "domain", f.Domain, "err", err)
		return nil, err
	}
	f.DNSTTL = min(f.DNSTTL, ans.TTL)
	switch ans.Status {
	case dnsx.StatusNXDomain:
		f.MX, f.MXDetail = MXNone, fmt.Sprintf("the domain %s does not exist", name)
		return nil, nil
	case dnsx.StatusNoData:
		// RFC 5321 §5.1: no MX records: the domain itself is the implicit MX.
		h := Host{Name: name}
		v.lookupAddrs(ctx, f, &h)
		if h.AddrError != "" && !h.AddrTemporary {
			f.MX, f.MXDetail = MXNone, fmt.Sprintf("%s has neither MX nor address records", name)
			return nil, nil
		}
		if h.AddrError != "" {
			f.MX, f.MXDetail = MXError, h.AddrError
			return nil, errors.New(h.AddrError)
		}
		f.MX, f.MXDetail = MXImplicit, "no MX records; using the domain's own address"
		f.MXSecure = h.AddrSecure
		if f.MXSecure {
			v.lookupTLSA(ctx, f, &h, port)
		}
		return []Host{h}, nil
	}
	var hosts []Host
	null := false
	for _, rr := range ans.Records {
		mx, ok := rr.(*dns.MX)
		if !ok {
			continue
		}
		name := strings.TrimSuffix(strings.ToLower(mx.Mx), ".")
		if name == "" {
			null = true // RFC 7505 §3: "0 ." (any preference is treated alike)
			continue
		}
		if slices.ContainsFunc(hosts, func(h Host) bool { return h.Name == name }) {
			continue
		}
		h := Host{Name: name, Preference: mx.Preference}
		if _, err := netip.ParseAddr(name); err == nil {
			// RFC 5321 §5.1: an MX names a host, never an address; Postfix rejects
			// a numeric MX name ("malformed domain name"). Never probed.
			h.AddrError = name + ": MX target is an IP address, not a host name"
		}
		hosts = append(hosts, h)
	}
	if null {
		// RFC 7505 §3 forbids other MX records beside a null MX; Postfix treats any
		// MX with an empty target as a null MX for the whole domain (dns_get_rr).
		f.MX, f.MXDetail = MXNull, "null MX (RFC 7505)"
		return nil, nil
	}
	// Postfix tries the lowest preference first; equal preferences are shuffled by Postfix
	// (smtp_randomize_addresses), sorted by name here so probes are reproducible.
	slices.SortStableFunc(hosts, func(a, b Host) int {
		return cmp.Or(cmp.Compare(a.Preference, b.Preference), strings.Compare(a.Name, b.Name))
	})
	f.MXSecure = ans.Authentic
	if len(hosts) > maxMXHosts {
		// A hostile domain can publish hundreds of MX records; a delivery reaches only
		// the first smtp_mx_address_limit addresses anyway.
		v.cfg.Log.Debug("MX list truncated", "domain", f.Domain, "hosts", len(hosts), "kept", maxMXHosts)
		hosts = hosts[:maxMXHosts]
	}
	for i := range hosts {
		if hosts[i].AddrError != "" {
			continue
		}
		v.lookupAddrs(ctx, f, &hosts[i])
		// TLSA for every host with secure addresses, also below an insecure MX
		// RRset (Postfix smtp_tls_dane_insecure_mx_policy = dane; RFC 7672 §2.2.2).
		if hosts[i].AddrSecure {
			v.lookupTLSA(ctx, f, &hosts[i], port)
		}
	}
	f.MX, f.MXDetail = MXFound, fmt.Sprintf("%d MX host(s)", len(hosts))
	return hosts, nil
}

// lookupAddrs resolves A and AAAA for h. Addresses of one family are enough; the host
// is an error only when neither family gives one.
func (v *Verifier) lookupAddrs(ctx context.Context, f *Facts, h *Host) {
	var errs []string
	temporary := false
	secure := true
	h.cname = ""
	// A and AAAA at once: one round trip to the resolver, not two.
	qtypes := []uint16{dns.TypeA, dns.TypeAAAA}
	type result struct {
		ans dnsx.Answer
		err error
	}
	results := make([]result, len(qtypes))
	var wg sync.WaitGroup
	for i, qt := range qtypes {
		wg.Go(func() {
			ans, err := v.cfg.Resolver.Lookup(ctx, h.Name, qt)
			results[i] = result{ans, err}
		})
	}
	wg.Wait()
	for i, qt := range qtypes {
		ans, err := results[i].ans, results[i].err
		if err != nil {
			errs = append(errs, fmt.Sprintf("%s lookup failed: %s", dns.TypeToString[qt], problem.Describe(err)))
			v.cfg.Log.Debug("dns lookup failed", "domain", f.Domain, "mx", h.Name, "err", err)
			temporary = true
			continue
		}
		secure = secure && ans.Authentic
		if ans.Target != "" && strings.TrimSuffix(ans.Target, ".") != h.Name {
			h.cname = strings.TrimSuffix(ans.Target, ".")
		}
		switch ans.Status {
		case dnsx.StatusOK:
			f.DNSTTL = min(f.DNSTTL, ans.TTL)
			for _, ip := range ans.Addrs() {
				if !slices.Contains(h.Addrs, ip) {
					h.Addrs = append(h.Addrs, ip)
				}
			}
		case dnsx.StatusNXDomain:
			errs = append(errs, "host not found")
		default:
			errs = append(errs, "no "+dns.TypeToString[qt]+" record")
		}
	}
	if len(h.Addrs) == 0 {
		h.AddrError = fmt.Sprintf("%s: %s", h.Name, strings.Join(slices.Compact(errs), "; "))
		h.AddrTemporary = temporary
	}
	h.AddrSecure = secure && !temporary && len(h.Addrs) > 0
}

// lookupTLSA finds the host's TLSA records (RFC 7672 §2.2.2): for a host whose name is a
// CNAME, at the expanded name first, then at the original name. An error is kept as
// such: a secure host whose TLSA lookup fails must not be treated as having none.
func (v *Verifier) lookupTLSA(ctx context.Context, f *Facts, h *Host, port int) {
	bases := []string{h.Name}
	if h.cname != "" {
		bases = []string{h.cname, h.Name}
	}
	for _, base := range bases {
		name := fmt.Sprintf("_%d._tcp.%s", port, base)
		ans, err := v.cfg.Resolver.Lookup(ctx, name, dns.TypeTLSA)
		switch {
		case err != nil:
			h.TLSA = TLSA{Status: TLSAError, Base: base, Error: fmt.Sprintf("TLSA lookup for %s failed: %s", name, problem.Describe(err))}
			v.cfg.Log.Debug("dns lookup failed", "domain", f.Domain, "mx", h.Name, "err", err)
			return
		case !ans.Authentic:
			h.TLSA = TLSA{Status: TLSAInsecure, Base: base}
			return
		case ans.Status != dnsx.StatusOK:
			h.TLSA = TLSA{Status: TLSANone, Base: base}
			f.DNSTTL = min(f.DNSTTL, ans.TTL)
			continue // try the original name
		}
		f.DNSTTL = min(f.DNSTTL, ans.TTL)
		t := TLSA{Status: TLSAFound, Base: base}
		for _, rr := range ans.Records {
			if r, ok := rr.(*dns.TLSA); ok {
				t.Records = append(t.Records, r)
			}
		}
		h.TLSA = t
		return
	}
}

// allowed reports whether ip may be probed: globally routable unicast and not this
// host's own, or inside one of the operator's allow_networks.
