package verify

import (
	"strings"

	"github.com/tlsgate/tlsgate/config/policy"
)

// sniSep joins a destination and a tls_policy servername= value in a facts key. A
// destination (a domain or a next hop) never contains a space.
const sniSep = " sni="

// FactsKey is the key of the facts a policy is judged on: the destination itself, or,
// for a policy whose servername= attribute makes Postfix send a server name (postconf(5)
// smtp_tls_servername; tls_client.c tls_auth_enable), the destination with that value:
// a server that picks its certificate by SNI may present another one then, so those
// facts come from a probe that sends the same name. The default path, without
// servername=, is unchanged.
//
// Postfix ignores servername= in DANE sessions: "the SNI name sent is the one required
// by RFC7672" (the TLSA base domain). So dane and dane-only (and published, which is
// DANE or MTA-STS) are judged on the destination's facts; so are none and may, which
// need no probe.
func FactsKey(dest string, p policy.Policy) string {
	switch p.Level {
	case policy.LevelEncrypt, policy.LevelFingerprint, policy.LevelVerify, policy.LevelSecure:
	default:
		return dest
	}
	sni := p.Attrs["servername"]
	if sni == "" || p.Invalid != "" {
		return dest
	}
	return dest + sniSep + sni
}

// splitFactsKey returns the destination and the servername= value of a facts key.
func splitFactsKey(key string) (dest, servername string) {
	dest, servername, _ = strings.Cut(key, sniSep)
	return dest, servername
}

// Destination is the domain or next hop these facts are about (Domain without the
// servername= part of FactsKey).
func (f *Facts) Destination() string {
	dest, _ := splitFactsKey(f.Domain)
	return dest
}

// Servername is the servername= value the probe of these facts sent, "" for none.
func (f *Facts) Servername() string {
	_, sni := splitFactsKey(f.Domain)
	return sni
}

// serverName is the SNI Postfix sends to host with servername=spec (tls_client.c
// tls_auth_enable, Postfix 3.4+): "hostname" is the MX host name, not CNAME-expanded
// (or the host of an explicit next hop), "nexthop" the next-hop domain, anything else
// that name verbatim. The special values are case-sensitive there (strcmp).
func (f *Facts) serverName(spec, host string) string {
	switch spec {
	case "hostname":
		return host
	case "nexthop":
		return f.NextHopName()
	}
	return spec
}
