package milter

import (
	"github.com/tlsgate/tlsgate/policy"
	"github.com/tlsgate/tlsgate/verify"
)

// hopKey returns the next hop Postfix delivers the recipient to, from {rcpt_host},
// when it is not the recipient domain: "[gw.example]:2525", "[gw.example]",
// "relay.example:2525" (verbatim, normalised as Postfix folds table keys) or a
// next-hop domain "relay.example". "" means the recipient domain: no {rcpt_host}
// (another MTA), {rcpt_host} equal to the domain, or a value that is no SMTP
// destination (logged once; the recipient domain is judged as before).
//
// smtpd sends in {rcpt_host} the next hop trivial-rewrite resolved for the recipient
// (smtpd_milter.c: resolve_clnt's nexthop): the recipient domain for MX delivery, a
// transport_maps entry's nexthop ("smtp:[gw.example]:2525" -> "[gw.example]:2525"),
// relayhost, relay_transport's or default_transport's nexthop, or the
// sender_dependent_relayhost_maps result. That is the destination the SMTP client
// connects to and looks up in smtp_tls_policy_maps.
func (cfg *Config) hopKey(rcptHost, domain string) string {
	if rcptHost == "" {
		return ""
	}
	h, ok, err := verify.ParseNextHop(rcptHost)
	if !ok || err != nil {
		cfg.warnNextHop(rcptHost, domain)
		return ""
	}
	if k, explicit := policy.NormalizeNextHop(rcptHost); explicit {
		return k
	}
	if h.Name == domain {
		return ""
	}
	return h.Name
}

// warnNextHop logs, once per next hop, a {rcpt_host} that names no SMTP destination.
func (cfg *Config) warnNextHop(nextHop, domain string) {
	if _, seen := cfg.warnedHops.LoadOrStore(nextHop, true); seen {
		return
	}
	cfg.Log.Warn("next hop ({rcpt_host}) is not an SMTP destination tlsgate can judge; judging the recipient domain's MX hosts",
		"next_hop", sanitize(nextHop, 100), "example_domain", domain)
}

// atHop turns the verdict on a next hop's facts into the recipient's: the reply and
// the audit header name the recipient domain, and NextHop the destination judged.
func atHop(v verify.Verdict, domain, hop string) verify.Verdict {
	if hop == "" {
		return v
	}
	v.NextHop, v.Domain = hop, domain
	return v
}
