package milter

import (
	"strings"
	"time"

	"github.com/tlsgate/tlsgate/policy"
	"github.com/tlsgate/tlsgate/verify"
)

// HeaderValue formats the audit header for one recipient domain:
//
//	example.com; level=encrypt; status=pass; mechanism=starttls; mx=mx1.example.com;
//	tls=TLSv1.3; checked=2026-11-21T10:00:00Z; cached=yes; rule=policy:example.com
//
// next_hop= names the destination judged when Postfix delivers the recipient through
// another next hop ({rcpt_host}: "[gw.example]:2525"); mx= is then its host.
//
// sts= names the mode of the MTA-STS policy applied (enforce, testing); with testing, a
// pass may carry the reason enforce would have failed for.
//
// Fields are "key=value" tokens separated by "; " (the style of RFC 8601
// Authentication-Results); empty values are left out. A value never contains '=', ';',
// white space or anything but printable ASCII (each becomes '_'), so no value can look
// like a field: an MX name "status=pass.x" from a hostile DNS zone is written
// "mx=status_pass.x", and a grep for "status=pass" finds only the status field. A domain
// that is not a valid, normalized domain name is written as InvalidDomain, never as
// the text it came as.
func HeaderValue(v verify.Verdict, rule string) string {
	var b strings.Builder
	if d, err := policy.NormalizeDomain(v.Domain); err == nil && d == v.Domain {
		b.WriteString(v.Domain) // letters, digits, '-', '_' and '.' only
	} else {
		b.WriteString(InvalidDomain)
	}
	add := func(k, val string) {
		if val == "" {
			return
		}
		b.WriteString("; ")
		b.WriteString(k)
		b.WriteByte('=')
		b.WriteString(token(val))
	}
	add("level", v.Level.String())
	add("status", v.Status.String())
	add("mechanism", string(v.Mechanism))
	add("reason", string(v.Reason))
	add("sts", v.STSMode)
	add("next_hop", v.NextHop)
	add("mx", v.MX)
	add("tls", v.TLSVersion)
	if !v.Checked.IsZero() {
		add("checked", v.Checked.UTC().Format(time.RFC3339))
	}
	if v.Cached {
		add("cached", "yes")
	} else {
		add("cached", "no")
	}
	add("rule", rule)
	return b.String()
}

// InvalidDomain stands for a recipient domain that is not a valid domain name in the
// audit header: what the sender wrote is not repeated there.
const InvalidDomain = "invalid-domain"

// token keeps a header value on one line, free of separators and of '=': a value
// cannot be mistaken for a field.
func token(s string) string {
	return strings.Map(func(r rune) rune {
		if r <= ' ' || r == ';' || r == '=' || r > '~' {
			return '_'
		}
		return r
	}, s)
}
