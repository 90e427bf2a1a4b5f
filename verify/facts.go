// Package verify answers one question for the milter: can mail to this domain be
// delivered right now at the TLS level its policy requires?
//
// A Verifier probes a domain once the way Postfix's SMTP client would reach it (MX
// hosts in Postfix's order, never past smtp_mx_address_limit) and caches the Facts;
// Judge, a pure function, decides every level from them as Postfix would at delivery.
// A remote failure (no STARTTLS, bad certificate, null MX) is a Verdict, never a Go
// error. docs/design.md explains the design ("One set of facts, many answers").
package verify

import (
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"

	"github.com/tlsgate/tlsgate/internal/mtasts"
	"github.com/tlsgate/tlsgate/internal/smtpprobe"
	"github.com/tlsgate/tlsgate/policy"
)

// MXStatus says what the MX lookup of a domain found.
type MXStatus int

// MX lookup outcomes.
const (
	MXError    MXStatus = iota // zero value: the lookup failed (SERVFAIL, timeout): nothing is known
	MXFound                    // MX records
	MXImplicit                 // no MX, but the domain has an address: it is its own MX (RFC 5321 §5.1)
	MXNull                     // null MX "0 ." (RFC 7505): the domain accepts no mail
	MXNone                     // NXDOMAIN, or neither MX nor address records
)

func (s MXStatus) String() string {
	return [...]string{"error", "found", "implicit", "null", "none"}[s]
}

// Facts is what a probe learned about one domain. Facts are immutable once built and
// shared between goroutines through the cache.
type Facts struct {
	Domain string // A-label, lower case, no trailing dot
	MX     MXStatus
	// MXSecure: the MX RRset (or, for an implicit MX, the domain's address records) was
	// DNSSEC-validated. DANE applies only then (RFC 7672 §2.2.1).
	MXSecure bool
	MXDetail string // why the lookup failed, or what was found
	Hosts    []Host
	// Attempts are the addresses Postfix would contact, in its order and within its
	// limits, each with what the session showed (or why there was none), followed by
	// the addresses an MTA-STS policy makes a sender contact beyond those
	// (Attempt.BeyondLimit).
	Attempts []Attempt
	// STS is the domain's MTA-STS state (RFC 8461), nil when MTA-STS is not looked up.
	STS      *mtasts.Result
	Checked  time.Time
	Duration time.Duration
	// DNSTTL is the smallest TTL of the DNS data used; cached facts never outlive it.
	DNSTTL time.Duration
	// Until is when these facts expire (set by the Verifier when caching).
	Until time.Time

	// verdicts memoizes Judge per policy (JudgeCached): a cached domain is judged once
	// per level, not once per recipient.
	verdicts sync.Map // verdictKey(policy) -> Verdict
	// refresh is where the refresh-ahead of these facts is (refresh.go): none,
	// scheduled by a cache hit, running, or over.
	refresh atomic.Int32
	// mapFacts memoizes the socketmap's view of these facts (Verifier.CachedMapFacts):
	// derived once per cached Facts, not once per delivery-time lookup.
	mapFacts atomic.Pointer[MapFacts]
}

// JudgeCached is Judge(f, p), computed once per distinct policy for these facts. Facts
// never change once built, and Judge is pure, so the memo is always right.
func (f *Facts) JudgeCached(p policy.Policy) Verdict {
	key := verdictKey(p)
	if v, ok := f.verdicts.Load(key); ok {
		return v.(Verdict)
	}
	v := Judge(f, p)
	f.verdicts.Store(key, v)
	return v
}

// verdictKey is what Judge reads of a policy: the level, the match list and the
// protocols= attribute.
func verdictKey(p policy.Policy) string {
	protocols, hasProtocols := p.Attrs["protocols"]
	tafile, hasTAFile := p.Attrs["tafile"]
	if len(p.Match) == 0 && !hasProtocols && !hasTAFile {
		return p.Level.String() // the common case, on every cached RCPT: no allocation
	}
	key := p.Level.String() + "\x00" + strings.Join(p.Match, "\x00")
	if hasProtocols {
		key += "\x01" + protocols
	}
	if hasTAFile {
		key += "\x02" + tafile
	}
	return key
}

// Host is one MX host.
type Host struct {
	Name       string // MX target, lower case, no trailing dot
	Preference uint16
	Addrs      []netip.Addr
	// AddrError is set when the host's addresses could not be found; AddrTemporary says
	// whether that may change on retry (SERVFAIL, timeout) or not (NXDOMAIN, NODATA).
	AddrError     string
	AddrTemporary bool
	// AddrSecure: the address records were DNSSEC-validated, so TLSA is looked up
	// (RFC 7672 §2.2.2).
	AddrSecure bool
	TLSA       TLSA
	cname      string // the name the address records were found at, when h.Name is a CNAME
}

// TLSAStatus is what the TLSA lookup of a host found.
type TLSAStatus int

// TLSA lookup outcomes.
const (
	TLSANotLooked TLSAStatus = iota // MX or address records insecure: DANE does not apply
	TLSANone                        // secure denial (NXDOMAIN/NODATA): no DANE for this host
	TLSAFound                       // secure TLSA RRset (Records)
	TLSAError                       // lookup failed or was bogus: never downgrade (RFC 7672 §2.2)
	TLSAInsecure                    // TLSA answer not validated: ignored (RFC 7672 §2.2.2)
)

func (s TLSAStatus) String() string {
	return [...]string{"not-looked-up", "none", "found", "error", "insecure"}[s]
}

// TLSA is the DANE data of one MX host.
type TLSA struct {
	Status  TLSAStatus
	Base    string      // TLSA base domain: the name the records were found at (minus _25._tcp.)
	Records []*dns.TLSA // as published, usable or not
	Error   string
}

// Attempt is one step of the delivery Postfix would try: an address of a host, probed,
// or a host whose addresses could not be found.
type Attempt struct {
	Host       string
	Preference uint16
	TLSA       TLSA // the host's DANE data
	// When the host had no usable address, DNSError is set, Result is zero.
	DNSError     string
	DNSTemporary bool
	Result       smtpprobe.Result
	// BeyondLimit: Postfix would not contact this address (it is past
	// smtp_mx_address_limit); it was probed because the MTA-STS policy skips MX hosts
	// it does not list (RFC 8461 §4.1), so an MTA-STS sender reaches it.
	BeyondLimit bool
	// Cert summarises the server's leaf certificate and DANE the chain's DANE
	// verification, recorded at probe time; cached facts keep these, not the chain.
	Cert *CertInfo  `json:",omitempty"`
	DANE DANEResult `json:",omitzero"`
	// TA is the chain's check against the trust anchors of the facts' tafile=
	// (FactsKey), recorded at probe time; nil for facts without tafile=.
	TA *TAResult `json:",omitempty"`
	// RateLimited: not probed because the address was probed too often
	// (Config.RatePerAddress); a transient condition.
	RateLimited bool
	// HostSNI is this address's session with the MX host name as SNI, for a host an
	// MTA-STS policy lists whose session above sent another name or none: published
	// judges it instead (sni.go).
	HostSNI *Session `json:",omitempty"`
}

// Session is one SMTP session's outcome apart from the Attempt it belongs to.
type Session struct {
	Result      smtpprobe.Result
	Cert        *CertInfo `json:",omitempty"`
	RateLimited bool      `json:",omitempty"`
}
