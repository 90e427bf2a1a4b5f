package verify

import (
	"context"
	"strings"

	"github.com/tlsgate/tlsgate/internal/dane"
	"github.com/tlsgate/tlsgate/internal/mtasts"
	"github.com/tlsgate/tlsgate/policy"
)

// Facts keys: a destination (a domain or a next hop, never containing a space),
// optionally followed by " sni=VALUE" (servername=, no space in it) and then by
// " tafile=FILES" (tafile=, the files joined by spaces; last, so it may contain them).
const (
	sniSep    = " sni="
	tafileSep = " tafile="
)

// FactsKey is the key of the facts a policy is judged on: the destination itself, or,
// for a policy with attributes that change what a probe must do, the destination with
// them:
//
//   - servername= (postconf(5) smtp_tls_servername; tls_client.c tls_auth_enable): a
//     server that picks its certificate by SNI may present another one when Postfix
//     sends a name, so those facts come from a probe that sends the same name.
//     Postfix ignores servername= in DANE sessions: "the SNI name sent is the one
//     required by RFC7672" (the TLSA base domain). So it counts at encrypt,
//     fingerprint, verify and secure; dane, dane-only and published (DANE or MTA-STS)
//     are judged on the destination's facts.
//   - tafile= at verify and secure (postconf(5) smtp_tls_trust_anchor_file): the chain
//     is checked against those trust anchors at probe time, while it is at hand.
//
// The default path, without these attributes, is unchanged. An invalid policy is
// never judged (Postfix defers), so it needs no facts of its own.
func FactsKey(dest string, p policy.Policy) string {
	if p.Invalid != "" {
		return dest
	}
	key := dest
	switch p.Level {
	case policy.LevelEncrypt, policy.LevelFingerprint, policy.LevelVerify, policy.LevelSecure:
		if sni := p.Attrs["servername"]; sni != "" && !strings.Contains(sni, " ") {
			key += sniSep + sni
		}
	}
	switch p.Level {
	case policy.LevelVerify, policy.LevelSecure:
		if ta := p.Attrs["tafile"]; ta != "" {
			key += tafileSep + ta
		}
	}
	return key
}

// splitFactsKey returns the destination, servername= and tafile= of a facts key.
func splitFactsKey(key string) (dest, servername, tafile string) {
	key, tafile, _ = strings.Cut(key, tafileSep)
	dest, servername, _ = strings.Cut(key, sniSep)
	return dest, servername, tafile
}

// Destination is the domain or next hop these facts are about (Domain without the
// attributes of FactsKey).
func (f *Facts) Destination() string {
	dest, _, _ := splitFactsKey(f.Domain)
	return dest
}

// Servername is the servername= value the probe of these facts sent, "" for none.
func (f *Facts) Servername() string {
	_, sni, _ := splitFactsKey(f.Domain)
	return sni
}

// TAFile is the tafile= value whose trust anchors the probe of these facts checked
// each chain against, "" for none.
func (f *Facts) TAFile() string {
	_, _, ta := splitFactsKey(f.Domain)
	return ta
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

// probeHostSNI gives every attempt to a host that pol (in mode enforce) lists a
// session with the MX host name as SNI, unless its session sent that name already (an
// address past Postfix's limit, reached by an MTA-STS sender only, was probed with it,
// probeHosts). For a domain with an MTA-STS policy in mode enforce, tlsgate's
// socketmap tells Postfix "secure match=... servername=hostname"
// (policymap.Published), so Postfix sends the MX host name (postconf(5)
// smtp_tls_servername; RFC 8461 §4.2 checks the certificate against that name), where
// the sessions Postfix has at the other levels send none (or, to a DANE host, the TLSA
// base domain: DANE, not MTA-STS, decides there at published, but an MTA-STS sender
// reaching it sends the host name). A server that picks its certificate by SNI may
// present another one then; published's MTA-STS judgement reads this session
// (withHostSNI), every other level the session Postfix has at that level.
func (v *Verifier) probeHostSNI(ctx context.Context, f *Facts, pol *mtasts.Policy) {
	port := v.cfg.SMTPPort
	if hop, _, _ := ParseNextHop(f.Destination()); hop.Port > 0 {
		port = hop.Port
	}
	for i := range f.Attempts {
		a := &f.Attempts[i]
		if a.BeyondLimit || a.DNSError != "" || !a.Result.IP.IsValid() || !pol.Allows(a.Host) || attemptSNI(a) == a.Host {
			continue
		}
		r, cert, limited := v.probeAddr(ctx, f, a.Host, a.Result.IP, port, a.Host, false)
		a.HostSNI = &Session{Result: r, Cert: cert, RateLimited: limited}
	}
}

// attemptSNI is the SNI the session of a (facts without servername=) sent: the TLSA
// base domain of a host with usable TLSA records (RFC 7672 §8.1), else none.
func attemptSNI(a *Attempt) string {
	if a.TLSA.Status == TLSAFound && len(dane.UsableRecords(a.TLSA.Records)) > 0 {
		return a.TLSA.Base
	}
	return ""
}

// withHostSNI returns f as an MTA-STS sender that sends the MX host name as SNI saw
// it: the attempts with a HostSNI session have it in place of theirs. f itself when
// there is none (facts probed before this session existed, or without a policy).
func withHostSNI(f *Facts) *Facts {
	if !hasHostSNI(f.Attempts) {
		return f
	}
	g := &Facts{Domain: f.Domain, MX: f.MX, MXSecure: f.MXSecure, MXDetail: f.MXDetail, Hosts: f.Hosts,
		STS: f.STS, Checked: f.Checked, Duration: f.Duration, DNSTTL: f.DNSTTL, Until: f.Until}
	g.Attempts = make([]Attempt, len(f.Attempts))
	for i, a := range f.Attempts {
		if s := a.HostSNI; s != nil {
			a.Result, a.Cert, a.RateLimited, a.HostSNI = s.Result, s.Cert, s.RateLimited, nil
		}
		g.Attempts[i] = a
	}
	return g
}

func hasHostSNI(attempts []Attempt) bool {
	for i := range attempts {
		if attempts[i].HostSNI != nil {
			return true
		}
	}
	return false
}
