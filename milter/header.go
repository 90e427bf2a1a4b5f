package milter

import (
	"strings"
	"time"

	"github.com/tlsgate/tlsgate/verify"
)

// HeaderValue formats the audit header for one recipient domain:
//
//	example.com; level=encrypt; status=pass; mechanism=starttls; mx=mx1.example.com;
//	tls=TLSv1.3; checked=2026-11-21T10:00:00Z; cached=yes; rule=policy:example.com
//
// sts= names the mode of the MTA-STS policy applied (enforce, testing); with testing, a
// pass may carry the reason enforce would have failed for.
//
// Fields are "key=value" tokens separated by "; " (the style of RFC 8601
// Authentication-Results), values never contain ';' or whitespace, empty values are left out.
func HeaderValue(v verify.Verdict, rule string) string {
	var b strings.Builder
	b.WriteString(token(v.Domain))
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

// token keeps a header value on one line and free of separators.
func token(s string) string {
	return strings.Map(func(r rune) rune {
		if r <= ' ' || r == ';' || r > '~' {
			return '_'
		}
		return r
	}, s)
}
