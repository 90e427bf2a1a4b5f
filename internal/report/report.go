// Package report is the answer of tlsgate check, its web page and API: a verdict with
// the facts behind it (Report), as JSON and as text for a terminal (WriteText).
package report

import (
	"crypto/tls"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/tlsgate/tlsgate/internal/dane"
	"github.com/tlsgate/tlsgate/internal/fingerprint"
	"github.com/tlsgate/tlsgate/internal/safetext"
	"github.com/tlsgate/tlsgate/internal/smtpprobe"
	"github.com/tlsgate/tlsgate/verify"
)

// Report is a verdict with the facts behind it, for `tlsgate check` (human text and
// JSON). Field names are part of the JSON contract documented in the README
// ("Command line", the keys of tlsgate check --json); a test checks them.
type Report struct {
	Domain     string    `json:"domain"`
	Level      string    `json:"level"`
	Rule       string    `json:"rule,omitempty"`
	Status     string    `json:"status"`
	Reason     string    `json:"reason"`
	Mechanism  string    `json:"mechanism"`
	Detail     string    `json:"detail"`
	MXStatus   string    `json:"mx_status"`
	MXSecure   bool      `json:"mx_dnssec"`
	MXDetail   string    `json:"mx_detail,omitempty"`
	MX         []Host    `json:"mx"`
	MTASTS     *STS      `json:"mta_sts,omitempty"`
	Checked    time.Time `json:"checked"`
	DurationMS int64     `json:"duration_ms"`
}

// Host is one MX host in a Report.
type Host struct {
	Host       string   `json:"host"`
	Preference uint16   `json:"preference"`
	Addresses  []string `json:"addresses"`
	Error      string   `json:"error,omitempty"`
	AddrSecure bool     `json:"addresses_dnssec"`
	TLSA       TLSA     `json:"tlsa"`
	// STSListed: the MTA-STS policy lists this host (absent without a policy).
	STSListed *bool     `json:"mta_sts_listed,omitempty"`
	Attempts  []Attempt `json:"attempts,omitempty"`
}

// STS is the domain's MTA-STS state (RFC 8461).
type STS struct {
	Status  string    `json:"status"` // none, policy, error
	ID      string    `json:"id,omitempty"`
	Mode    string    `json:"mode,omitempty"`
	MaxAge  int64     `json:"max_age,omitempty"` // seconds
	MX      []string  `json:"mx,omitempty"`
	Cached  bool      `json:"cached"`
	Fetched time.Time `json:"fetched,omitzero"`
	Expires time.Time `json:"expires,omitzero"`
	Problem string    `json:"problem,omitempty"` // RFC 8460 result type of the last failure
	Detail  string    `json:"detail,omitempty"`
}

// TLSA is a host's DANE data.
type TLSA struct {
	Status  string       `json:"status"` // not-looked-up, none, found, error, insecure
	Base    string       `json:"base,omitempty"`
	Error   string       `json:"error,omitempty"`
	Records []TLSARecord `json:"records,omitempty"`
}

// TLSARecord is one TLSA record with its usability for SMTP (RFC 7672 §3.1.3).
type TLSARecord struct {
	Record string `json:"record"` // "3 1 1 <hex>"
	Usable bool   `json:"usable"`
}

// Attempt is one probed address.
type Attempt struct {
	IP         string `json:"ip"`
	Outcome    string `json:"outcome"`
	Detail     string `json:"detail,omitempty"`
	Greeting   string `json:"greeting,omitempty"`
	STARTTLS   bool   `json:"starttls"`
	TLSVersion string `json:"tls_version,omitempty"`
	Cipher     string `json:"cipher,omitempty"`
	// PostfixOpportunistic and PostfixAuthenticated: the server's answers to
	// Postfix's ClientHellos, when the probe asked (legacy TLS, or a handshake Go
	// could not complete): "TLSv1.1 AECDH-AES256-SHA", "alert handshake failure".
	PostfixOpportunistic string       `json:"postfix_hello_opportunistic,omitempty"`
	PostfixAuthenticated string       `json:"postfix_hello_authenticated,omitempty"`
	Certificate          *Certificate `json:"certificate,omitempty"`
	PKIX                 string       `json:"pkix,omitempty"`                 // "ok" or the error
	BeyondLimit          bool         `json:"beyond_address_limit,omitempty"` // probed for MTA-STS only
	Verdict              string       `json:"verdict"`                        // "pass" or the reason it did not meet the level
	DurationMS           int64        `json:"duration_ms"`
}

// Certificate describes a leaf certificate.
type Certificate struct {
	Subject    string    `json:"subject"`
	Issuer     string    `json:"issuer"`
	DNSNames   []string  `json:"dns_names"`
	NotBefore  time.Time `json:"not_before"`
	NotAfter   time.Time `json:"not_after"`
	SHA256     string    `json:"sha256"`
	SPKISHA256 string    `json:"spki_sha256"`
}

// New combines facts and the verdict judged from them. rule names what chose the
// level (policy.Rule.Tag, or the command's own word).
func New(f *verify.Facts, v verify.Verdict, rule string) Report {
	r := Report{
		Domain: f.Destination(), Level: v.Level.String(), Rule: rule, Status: v.Status.String(),
		Reason: string(v.Reason), Mechanism: string(v.Mechanism), Detail: v.Detail,
		MXStatus: f.MX.String(), MXSecure: f.MXSecure, MXDetail: f.MXDetail, MX: []Host{},
		Checked: f.Checked.UTC(), DurationMS: f.Duration.Milliseconds(),
	}
	if sts := f.STS; sts != nil {
		r.MTASTS = &STS{Status: sts.Status.String(), ID: sts.ID, Cached: sts.Cached,
			Fetched: sts.Fetched.UTC(), Expires: sts.Expires.UTC(), Problem: string(sts.Problem), Detail: sts.Detail}
		if p := sts.Policy; p != nil {
			r.MTASTS.Mode, r.MTASTS.MaxAge, r.MTASTS.MX = p.Mode.String(), int64(p.MaxAge/time.Second), p.MX
		}
	}
	for _, h := range f.Hosts {
		rh := Host{Host: h.Name, Preference: h.Preference, Addresses: []string{}, Error: h.AddrError, AddrSecure: h.AddrSecure,
			TLSA: TLSA{Status: h.TLSA.Status.String(), Base: h.TLSA.Base, Error: h.TLSA.Error}}
		for _, rec := range h.TLSA.Records {
			rh.TLSA.Records = append(rh.TLSA.Records, TLSARecord{
				Record: fmt.Sprintf("%d %d %d %s", rec.Usage, rec.Selector, rec.MatchingType, rec.Certificate),
				Usable: dane.Usable(rec),
			})
		}
		for _, ip := range h.Addrs {
			rh.Addresses = append(rh.Addresses, ip.String())
		}
		if f.STS != nil && f.STS.Policy != nil {
			listed := f.STS.Policy.Allows(h.Name)
			rh.STSListed = &listed
		}
		for _, a := range f.Attempts {
			if a.Host != h.Name || a.DNSError != "" {
				continue
			}
			ra := newAttempt(&a.Result, a.Cert, attemptVerdict(v, &a))
			ra.BeyondLimit = a.BeyondLimit
			rh.Attempts = append(rh.Attempts, ra)
		}
		r.MX = append(r.MX, rh)
	}
	return r
}

// attemptVerdict finds how the verdict judged a; a level judges only some attempts
// (an MTA-STS policy skips unlisted hosts, Postfix levels skip those past its limit)
// and stops at the first that passes.
func attemptVerdict(v verify.Verdict, a *verify.Attempt) string {
	for _, av := range v.Attempts {
		if av.Host == a.Host && av.IP == a.Result.IP {
			if av.Pass {
				return "pass"
			}
			return string(av.Reason)
		}
	}
	return "not judged"
}

// newAttempt describes one probed address; the certificate comes from the chain,
// or, for facts from the cache (whose chains are dropped), from its summary cert.
func newAttempt(res *smtpprobe.Result, cert *verify.CertInfo, verdict string) Attempt {
	ra := Attempt{
		IP: res.IP.String(), Outcome: res.Outcome.String(), Detail: res.Detail,
		Greeting: res.Greeting.String(), STARTTLS: res.Offered, TLSVersion: res.TLSVersionName(),
		Verdict: verdict, DurationMS: res.Duration.Milliseconds(),
	}
	if res.CipherSuite != 0 {
		ra.Cipher = tls.CipherSuiteName(res.CipherSuite)
	}
	if h := res.Opportunistic; h != nil {
		ra.PostfixOpportunistic = h.String()
	}
	if h := res.Authenticated; h != nil {
		ra.PostfixAuthenticated = h.String()
	}
	if leaf := res.Leaf(); leaf != nil {
		ra.Certificate = &Certificate{
			Subject: leaf.Subject.String(), Issuer: leaf.Issuer.String(), DNSNames: leaf.DNSNames,
			NotBefore: leaf.NotBefore.UTC(), NotAfter: leaf.NotAfter.UTC(),
			SHA256: fingerprint.Of(leaf.Raw), SPKISHA256: fingerprint.Of(leaf.RawSubjectPublicKeyInfo),
		}
	} else if cert != nil && cert.Subject != "" {
		ra.Certificate = &Certificate{
			Subject: cert.Subject, Issuer: cert.Issuer, DNSNames: cert.DNSNames,
			NotBefore: cert.NotBefore, NotAfter: cert.NotAfter,
			SHA256: cert.Fingerprint(), SPKISHA256: fingerprint.Format(cert.SPKISHA256[:]),
		}
	}
	if ra.Certificate != nil {
		ra.PKIX = "ok"
		if res.PKIX != nil {
			ra.PKIX = res.PKIX.Error()
		}
	}
	return ra
}

// WriteText writes the report for a human at a terminal. Much of it is remote text
// (greeting, certificate subject, issuer and names, details, MX names, the MTA-STS
// policy and record): every string printed is quoted with safetext.Terminal, so no
// byte of it can reach the terminal as a control sequence, reorder the text around it
// or start a line. Each line starts with a label of WriteText's own: remote text
// cannot paint a line such as "verdict: pass".
func (r Report) WriteText(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 4, 1, ' ', 0)
	p := func(format string, args ...any) {
		for i, a := range args {
			if s, ok := a.(string); ok {
				args[i] = safetext.Terminal(s)
			}
		}
		fmt.Fprintf(tw, format+"\n", args...)
	}
	p("domain:\t%s", r.Domain)
	level := r.Level
	if r.Rule != "" {
		level += " (" + r.Rule + ")"
	}
	p("level:\t%s", level)
	p("mx lookup:\t%s: %s (dnssec: %s)", r.MXStatus, r.MXDetail, secureWord(r.MXSecure))
	for _, h := range r.MX {
		p("mx %d:\t%s [%s]", h.Preference, h.Host, strings.Join(h.Addresses, " "))
		if h.Error != "" {
			p("  error:\t%s", h.Error)
		}
		if h.STSListed != nil {
			p("  mta-sts:\t%s", map[bool]string{true: "listed in the policy", false: "not listed in the policy"}[*h.STSListed])
		}
		p("  tlsa:\t%s %s", h.TLSA.Status, h.TLSA.Error)
		for _, rec := range h.TLSA.Records {
			usable := "usable"
			if !rec.Usable {
				usable = "unusable"
			}
			p("    record:\t%s (%s)", rec.Record, usable)
		}
		for _, a := range h.Attempts {
			if a.BeyondLimit {
				p("  %s:\t%s (past Postfix's address limit; probed for MTA-STS)", a.IP, a.Outcome)
			} else {
				p("  %s:\t%s", a.IP, a.Outcome)
			}
			if a.Greeting != "" {
				p("    greeting:\t%s", a.Greeting)
			}
			p("    starttls:\t%v", yesNo(a.STARTTLS))
			if a.TLSVersion != "" {
				p("    tls:\t%s %s", a.TLSVersion, a.Cipher)
			}
			if a.PostfixOpportunistic != "" {
				p("    postfix hello (may, encrypt):\t%s", a.PostfixOpportunistic)
			}
			if a.PostfixAuthenticated != "" {
				p("    postfix hello (authenticating):\t%s", a.PostfixAuthenticated)
			}
			if c := a.Certificate; c != nil {
				p("    subject:\t%s", c.Subject)
				p("    names:\t%s", strings.Join(c.DNSNames, ", "))
				p("    issuer:\t%s", c.Issuer)
				p("    valid:\t%s to %s", c.NotBefore.Format(time.RFC3339), c.NotAfter.Format(time.RFC3339))
				p("    sha256:\t%s", c.SHA256)
				p("    spki sha256:\t%s", c.SPKISHA256)
				p("    pkix:\t%s", a.PKIX)
			}
			if a.Detail != "" && a.Outcome != "tls" {
				p("    detail:\t%s", a.Detail)
			}
			p("    verdict:\t%s", a.Verdict)
		}
	}
	if m := r.MTASTS; m != nil {
		switch {
		case m.Mode != "":
			cached := "fetched now"
			if m.Cached {
				cached = "cached"
			}
			p("mta-sts:\tid %s, mode %s, max_age %d, %s, expires %s", m.ID, m.Mode, m.MaxAge, cached, m.Expires.Format(time.RFC3339))
			p("  mx:\t%s", strings.Join(m.MX, ", "))
		case m.ID != "":
			p("mta-sts:\tid %s, no policy", m.ID)
		default:
			p("mta-sts:\t%s", m.Status)
		}
		if m.Problem != "" {
			p("  problem:\t%s", m.Problem)
		}
		if m.Detail != "" {
			p("  detail:\t%s", m.Detail)
		}
	}
	p("verdict:\t%s", r.Status)
	p("mechanism:\t%s", r.Mechanism)
	if r.Reason != "" {
		p("reason:\t%s", r.Reason)
	}
	if r.Detail != "" {
		p("detail:\t%s", r.Detail)
	}
	p("checked:\t%s (%d ms)", r.Checked.Format(time.RFC3339), r.DurationMS)
	return tw.Flush()
}

func secureWord(b bool) string {
	if b {
		return "secure"
	}
	return "insecure"
}

func yesNo(b bool) string {
	if b {
		return "offered"
	}
	return "not offered"
}
