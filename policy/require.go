package policy

import "net/netip"

// Request is what the milter knows about one recipient when it asks which TLS
// level applies.
type Request struct {
	RecipientDomain string     // domain part of RCPT TO
	SenderDomain    string     // domain part of MAIL FROM; "" for the null sender
	SASLLogin       string     // {auth_authen}; "" when not authenticated
	ClientIP        netip.Addr // SMTP client address; zero when unknown
	// NextHop is where Postfix delivers the recipient when that is not the recipient
	// domain: a next-hop domain ("relay.example") or an explicit next hop
	// ("[gw.example]:2525") from transport_maps, relayhost, relay_transport or a
	// sender-dependent relayhost ({rcpt_host}). When set, the domain policy is the
	// next hop's (Table.LookupDestination), not RecipientDomain's.
	NextHop string
}

// Requirement is the TLS requirement for one recipient and the rule it came
// from.
type Requirement struct {
	// Policy is the winning policy. Level is LevelNone when nothing applies.
	Policy Policy
	// Rule names the winning rule; the zero Rule when nothing applies.
	Rule Rule
	// Customer names the customer recognized on the sending side, if any,
	// also when the domain policy was stricter and won.
	Customer string
	// Also is the other requirement when both a domain policy and a customer apply
	// and the losing one is not implied by the winner: it must be met too. The levels
	// are distinct mechanisms, not a strict order: a customer's secure does not
	// imply a domain's dane-only, fingerprint pin or published, and Postfix enforces
	// the domain's tls_policy entry at delivery whatever the customer's
	// sender-dependent transport says. AlsoRule names it.
	Also     *Policy
	AlsoRule Rule
	// Invalid is set when the recipient domain's policy is one Postfix refuses
	// (Policy.Invalid), whichever requirement won: Postfix defers such mail at
	// delivery, so it cannot be accepted as deliverable. InvalidRule names it.
	Invalid     string
	InvalidRule Rule
}

// Rule names the rule a requirement came from: a customer's toggle, or an entry of
// the domain policy table.
type Rule struct {
	Customer string // the customer's name, for a customer's requirement
	Key      string // else the table key of the policy: a domain, ".domain" or next hop
	Source   string // where that entry was written: "/etc/postfix/tls_policy:3", "config policies[1]"
}

// String names the rule for logs and tlsgate config check: "customer acme",
// "policy .example.com (/etc/postfix/tls_policy:3)", or "none" for the zero Rule.
func (r Rule) String() string {
	switch {
	case r.Customer != "":
		return "customer " + r.Customer
	case r.Key == "":
		return "none"
	case r.Source != "":
		return "policy " + r.Key + " (" + r.Source + ")"
	}
	return "policy " + r.Key
}

// Tag is the rule's compact name, for the audit header, reports and the socketmap's
// log: "customer:acme", "policy:.example.com", or "" for the zero Rule.
func (r Rule) Tag() string {
	switch {
	case r.Customer != "":
		return "customer:" + r.Customer
	case r.Key != "":
		return "policy:" + r.Key
	}
	return ""
}

// Set is every source of TLS requirements: the domain policy table and the
// customer toggles. Either may be nil; a nil *Set applies nothing. A Set is
// safe for concurrent use when its parts are.
type Set struct {
	Table     *Table
	Customers *Customers
}

// Require returns the requirement for one recipient. The domain policy comes
// from Table.Lookup of the recipient domain; the customer requirement is a
// Policy with the level and actions of the customer Customers.Match finds
// for the sender. The stricter level (Level.Stricter) wins; on equal levels the
// domain policy wins, because it may carry match= names or fingerprints and
// other attributes. When nothing applies the requirement has level none and
// the zero Rule.
func (s *Set) Require(r Request) Requirement {
	if s == nil {
		return Requirement{Policy: Policy{Level: LevelNone}}
	}
	dest := r.RecipientDomain
	if r.NextHop != "" {
		dest = r.NextHop
	}
	dom, haveDom := s.Table.LookupDestination(dest)
	cust, haveCust := s.Customers.Match(r.SenderDomain, r.SASLLogin, r.ClientIP)
	var req Requirement
	if haveCust {
		req.Customer = cust.Name
	}
	custRule := Rule{Customer: cust.Name}
	custPolicy := Policy{
		Level:      cust.Level,
		OnFail:     cust.OnFail,
		OnTempfail: cust.OnTempfail,
		Source:     custRule.String(),
	}
	domRule := Rule{Key: dom.Key, Source: dom.Source}
	if haveDom && dom.Invalid != "" {
		req.Invalid, req.InvalidRule = dom.Invalid, domRule
	}
	switch {
	case haveCust && (!haveDom || cust.Level.Stricter(dom.Level)):
		req.Policy, req.Rule = custPolicy, custRule
		if haveDom && independent(dom.Level) {
			req.Also, req.AlsoRule = &dom, domRule
		}
	case haveDom:
		req.Policy, req.Rule = dom, domRule
		if haveCust && independent(cust.Level) && cust.Level != dom.Level {
			req.Also, req.AlsoRule = &custPolicy, custRule
		}
	default:
		req.Policy = Policy{Level: LevelNone}
	}
	return req
}

// independent reports whether meeting a stricter level can leave l unmet: l checks
// something the stricter levels do not (TLSA records, a pinned fingerprint, what the
// domain publishes). encrypt is implied by every stricter level, and verify by secure
// and the other way round (both demand a verified certificate).
func independent(l Level) bool {
	switch l {
	case LevelDane, LevelDaneOnly, LevelFingerprint, LevelPublished:
		return true
	}
	return false
}
