package learn

import (
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/tlsgate/tlsgate/internal/safetext"
	"github.com/tlsgate/tlsgate/policy"
	"github.com/tlsgate/tlsgate/verify"
)

// Status is what became of a domain in the proposal.
type Status string

// Statuses, the JSON "status" values.
const (
	StatusProposed  Status = "proposed"     // an active tls_policy line
	StatusFailsNow  Status = "fails-now"    // the history holds, but today even the weakest level fails
	StatusUncertain Status = "inconclusive" // the probe could not decide (tempfail): run again
	StatusPlaintext Status = "plaintext"    // some delivery in the window was plaintext
	StatusTooFew    Status = "too-few"      // fewer deliveries than --min-deliveries
	StatusNotMX     Status = "not-mx"       // delivered through a next hop that is not an MX host of the domain
)

// Proposal is the outcome for one domain.
type Proposal struct {
	Domain *Domain
	Status Status
	// Level is the proposed level (StatusProposed) or the one that would have been
	// proposed but fails now (StatusFailsNow).
	Level  policy.Level
	Reason string
	// Probe holds the verdict of each level tried, strictest first; empty when the
	// domain was not probed.
	Probe   []verify.Verdict
	MX      []string // the MX hosts the probe found
	Checked time.Time
}

// ladder is the levels a history allows, strictest first: the strictest that passes
// the probe now is proposed. A history where every delivery was "Verified" (DANE,
// fingerprint, or PKIX chain and name) allows dane-only; one where every delivery at
// least had a trusted chain allows secure and verify (the name the probe checks; at
// levels may and encrypt Postfix does not match names, so its log cannot say);
// encryption alone allows encrypt. Any plaintext delivery allows nothing.
func ladder(weakest Trust) []policy.Level {
	switch weakest {
	case Verified:
		return []policy.Level{policy.LevelDaneOnly, policy.LevelSecure, policy.LevelVerify, policy.LevelEncrypt}
	case Trusted:
		return []policy.Level{policy.LevelSecure, policy.LevelVerify, policy.LevelEncrypt}
	case Untrusted, Anonymous:
		return []policy.Level{policy.LevelEncrypt}
	}
	return nil
}

// Candidate reports whether d is worth a probe: enough deliveries, all with TLS.
func Candidate(d *Domain, minDeliveries int) bool {
	return d.Deliveries() >= minDeliveries && d.Weakest() > Plain
}

// Propose decides one domain from its history and, for a candidate, the facts of a
// probe made now (nil for a domain that is no candidate).
func Propose(d *Domain, minDeliveries int, facts *verify.Facts) *Proposal {
	p := &Proposal{Domain: d}
	switch {
	case d.Weakest() == Plain:
		p.Status = StatusPlaintext
		p.Reason = fmt.Sprintf("%d of %d deliveries in plaintext", d.ByTrust[Plain], d.Deliveries())
		return p
	case d.Deliveries() < minDeliveries:
		p.Status = StatusTooFew
		p.Reason = fmt.Sprintf("%d deliveries, fewer than --min-deliveries %d", d.Deliveries(), minDeliveries)
		return p
	case facts == nil:
		p.Status = StatusUncertain
		p.Reason = "not probed"
		return p
	}
	p.Checked = facts.Checked
	for _, h := range facts.Hosts {
		p.MX = append(p.MX, h.Name)
	}
	ladder := ladder(d.Weakest())
	p.Level = ladder[len(ladder)-1]
	if (facts.MX == verify.MXFound || facts.MX == verify.MXImplicit) && !anyRelayIsMX(d.Relays, p.MX) {
		// A tls_policy entry is looked up by the next-hop destination: for mail routed
		// by a transport map or relayhost the next hop is not the recipient domain, and
		// an entry for the domain would not apply to these deliveries.
		p.Status = StatusNotMX
		p.Reason = fmt.Sprintf("delivered via %s, not an MX host of %s (transport or relayhost?): key a policy by that next hop instead",
			strings.Join(d.Relays, ", "), d.Name)
		return p
	}
	for _, l := range ladder {
		v := verify.Judge(facts, policy.Policy{Level: l})
		p.Probe = append(p.Probe, v)
		if v.Status == verify.StatusPass {
			p.Status, p.Level = StatusProposed, l
			return p
		}
	}
	last := p.Probe[len(p.Probe)-1]
	p.Status = StatusFailsNow
	if last.Status == verify.StatusTempfail {
		p.Status = StatusUncertain
	}
	p.Reason = fmt.Sprintf("%s %s: %s", last.Level, last.Status, reasonText(last))
	return p
}

func anyRelayIsMX(relays, mx []string) bool {
	for _, r := range relays {
		for _, m := range mx {
			if strings.EqualFold(r, m) {
				return true
			}
		}
	}
	return false
}

func reasonText(v verify.Verdict) string {
	s := string(v.Reason)
	if v.Detail != "" {
		if s != "" {
			s += ": "
		}
		s += v.Detail
	}
	return s
}

// Evidence is the one-line summary of a domain's history.
func (p *Proposal) Evidence() string {
	d := p.Domain
	var parts []string
	for t := Verified; ; t-- {
		if d.ByTrust[t] > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", d.ByTrust[t], t))
		}
		if t == Plain {
			break
		}
	}
	s := fmt.Sprintf("%d deliveries %s .. %s (%s)", d.Deliveries(), d.First.UTC().Format(time.RFC3339), d.Last.UTC().Format(time.RFC3339), strings.Join(parts, ", "))
	if len(d.Protocols) > 0 {
		s += " " + strings.Join(d.Protocols, "/")
	}
	if len(d.Relays) > 0 {
		s += " via " + strings.Join(d.Relays, ", ")
		if d.MoreRelays {
			s += ", ..."
		}
	}
	return s
}

// ProbeSummary says what the probe showed: each level tried and its outcome.
func (p *Proposal) ProbeSummary() string {
	if len(p.Probe) == 0 {
		return ""
	}
	var parts []string
	for _, v := range p.Probe {
		s := v.Level.String() + " " + v.Status.String()
		if v.Status == verify.StatusPass && v.Mechanism != "" {
			s += " (" + string(v.Mechanism)
			if v.TLSVersion != "" {
				s += " " + v.TLSVersion
			}
			s += ")"
		} else if v.Status != verify.StatusPass {
			s += " (" + reasonText(v) + ")"
		}
		parts = append(parts, s)
	}
	return "probe " + p.Checked.UTC().Format(time.RFC3339) + ": " + strings.Join(parts, "; ")
}

// maxComment bounds one comment line of the proposal.
const maxComment = 2 * safetext.MaxField

// comment writes text as one comment line: remote text (host names, verdict details
// quoting SMTP replies and certificates) is quoted with safetext.Terminal, so a line
// feed in it is written as `\n` and can never start a line of its own, let alone an
// active policy line.
func comment(w io.Writer, text string) {
	fmt.Fprintf(w, "# %s\n", safetext.Terminal(safetext.Bound(text, maxComment)))
}

// Header describes the run for the proposal's first lines.
type Header struct {
	Generated     time.Time
	Files         []string
	Since         time.Time
	MinDeliveries int
}

// WriteText writes the proposal as a Postfix tls_policy source file (postmap(1) input;
// postconf(5) smtp_tls_policy_maps), for tlsgate's policy_files as well: each proposed
// domain as "DOMAIN LEVEL" after a comment with its evidence; every other domain as
// comments only, with the reason, the line it would have had commented out.
func WriteText(w io.Writer, h Header, props []*Proposal) error {
	comment(w, "tls_policy proposed by tlsgate learn at "+h.Generated.UTC().Format(time.RFC3339))
	comment(w, "from "+strings.Join(h.Files, ", "))
	window := "every delivery in the log"
	if !h.Since.IsZero() {
		window = "deliveries since " + h.Since.UTC().Format(time.RFC3339)
	}
	comment(w, fmt.Sprintf("each domain: the strictest level that held for %s (at least %d) and passes a probe now", window, h.MinDeliveries))
	var active, inactive []*Proposal
	for _, p := range props {
		if p.Status == StatusProposed {
			active = append(active, p)
		} else {
			inactive = append(inactive, p)
		}
	}
	for _, p := range active {
		fmt.Fprintln(w)
		comment(w, p.Domain.Name+": "+p.Evidence())
		comment(w, p.ProbeSummary())
		fmt.Fprintf(w, "%s\t%s\n", p.Domain.Name, p.Level)
	}
	if len(inactive) > 0 {
		fmt.Fprintln(w)
		comment(w, "not proposed:")
	}
	for _, p := range inactive {
		fmt.Fprintln(w)
		comment(w, p.Domain.Name+": "+p.Evidence())
		if s := p.ProbeSummary(); s != "" {
			comment(w, s)
		}
		comment(w, string(p.Status)+": "+p.Reason)
		if p.Status == StatusFailsNow || p.Status == StatusUncertain || p.Status == StatusNotMX {
			comment(w, p.Domain.Name+" "+p.Level.String())
		}
	}
	_, err := fmt.Fprintln(w)
	return err
}
