package policy

import "fmt"

// LookupDestination returns the policy for a next-hop destination exactly as Postfix
// looks it up in smtp_tls_policy_maps (postconf(5): the table "is indexed by the full
// next-hop destination, which is either the recipient domain, or the verbatim next-hop
// specified in the transport table, $relay_transport or $default_transport"):
//
//   - an explicit next hop "[host]", "[host]:port" or "host:port" is looked up once,
//     verbatim (smtp_tls_policy.c tls_policy_lookup: "Only one lookup with
//     [nexthop]:port, [nexthop] or nexthop:port ... Parent domain matching applies
//     only to sub-domains of the recipient domain");
//   - a next-hop domain (the recipient domain, or a transport's "smtp:relay.example")
//     as Lookup: the exact key, then ".parent" keys.
//
// The recipient domain's own entry does not apply when the next hop is elsewhere:
// Postfix never looks it up.
func (t *Table) LookupDestination(nextHop string) (Policy, bool) {
	if _, ok := NormalizeNextHop(nextHop); ok {
		return t.LookupNextHop(nextHop)
	}
	return t.Lookup(nextHop)
}

// AddNextHop adds an entry for an explicit next hop ("[host]", "[host]:port",
// "host:port"), looked up by LookupNextHop and LookupDestination. A key that is
// already present keeps its first policy and AddNextHop returns a warning.
func (t *Table) AddNextHop(key string, p Policy) (warning string, err error) {
	k, ok := NormalizeNextHop(key)
	if !ok {
		return "", fmt.Errorf("%w %q: not a next hop", ErrBadDomain, key)
	}
	if err := p.validate(); err != nil {
		return "", fmt.Errorf("policy for %q: %w", key, err)
	}
	return t.addNextHop(k, p), nil
}
