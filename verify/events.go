package verify

import (
	"encoding/hex"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/tlsgate/tlsgate/internal/smtpprobe"
)

// Events receives what the Verifier does, for metrics. Implementations must be cheap and
// safe for concurrent use; NopEvents ignores everything.
type Events interface {
	CacheLookup(hit bool)
	// ProbeRunning is called with +1 when a domain probe gets a slot, -1 when it ends.
	ProbeRunning(delta int)
	// Session reports one SMTP session with an MX address.
	Session(outcome smtpprobe.Outcome, d time.Duration)
	RateLimited()
	Overloaded()
	// PostureChanged reports that a domain's published TLS posture changed between
	// two probes: what is "starttls", "certificate", "tlsa" or "mta-sts".
	PostureChanged(domain, what string)
}

// NopEvents is an Events that does nothing.
type NopEvents struct{}

func (NopEvents) CacheLookup(bool)                         {}
func (NopEvents) ProbeRunning(int)                         {}
func (NopEvents) Session(smtpprobe.Outcome, time.Duration) {}
func (NopEvents) RateLimited()                             {}
func (NopEvents) Overloaded()                              {}
func (NopEvents) PostureChanged(string, string)            {}

// posture is what a domain publishes about its TLS, compared between probes to warn
// early when it changes: the early warning cron + swaks setups try to build.
type posture struct {
	starttls string // per probed address: offered or not, in order
	certs    string // SPKI digests of the leaf certificates seen, sorted
	tlsa     string // TLSA records of the hosts, in order
	sts      string // MTA-STS policy id
}

// postureOf summarises f; ok is false when the facts are too incomplete to compare
// (DNS failure, no session made): a transient failure is not a posture change.
func postureOf(f *Facts) (p posture, ok bool) {
	if f.MX != MXFound && f.MX != MXImplicit {
		return p, false
	}
	var starttls, certs, tlsa []string
	sessions := 0
	for i := range f.Attempts {
		a := &f.Attempts[i]
		r := &a.Result
		switch r.Outcome {
		case smtpprobe.OutcomeTLS, smtpprobe.OutcomeNoStartTLS, smtpprobe.OutcomeHandshakeError:
			sessions++
			starttls = append(starttls, fmt.Sprintf("%s=%v", r.IP, r.Offered))
		default:
			continue
		}
		if leaf := a.cert(); leaf != nil {
			certs = append(certs, hex.EncodeToString(leaf.SPKISHA256[:8]))
		}
	}
	if sessions == 0 {
		return p, false
	}
	for _, h := range f.Hosts {
		for _, r := range h.TLSA.Records {
			tlsa = append(tlsa, fmt.Sprintf("%s:%d %d %d %s", h.Name, r.Usage, r.Selector, r.MatchingType, r.Certificate))
		}
	}
	slices.Sort(certs)
	p = posture{starttls: strings.Join(starttls, ","), certs: strings.Join(slices.Compact(certs), ","), tlsa: strings.Join(tlsa, ",")}
	if f.STS != nil {
		p.sts = f.STS.ID
	}
	return p, true
}

// changes names what differs between two postures.
func (p posture) changes(q posture) []string {
	var out []string
	if p.starttls != q.starttls {
		out = append(out, "starttls")
	}
	if p.certs != q.certs {
		out = append(out, "certificate")
	}
	if p.tlsa != q.tlsa {
		out = append(out, "tlsa")
	}
	if p.sts != q.sts {
		out = append(out, "mta-sts")
	}
	return out
}

// postureTTL is how long a domain's last posture is remembered for comparison.
const postureTTL = 7 * 24 * time.Hour

// notePosture compares f with the domain's previous posture, logs one Warn line per
// change and reports it.
func (v *Verifier) notePosture(f *Facts) {
	p, ok := postureOf(f)
	if !ok {
		return
	}
	if old, seen := v.previousPosture(f.Domain, p); seen {
		if what := old.changes(p); len(what) > 0 {
			v.cfg.Log.Warn("TLS posture changed", "domain", f.Domain, "changed", strings.Join(what, ","),
				"starttls_before", old.starttls, "starttls_now", p.starttls,
				"certificates_before", old.certs, "certificates_now", p.certs,
				"mta_sts_id_before", old.sts, "mta_sts_id_now", p.sts)
			for _, w := range what {
				v.cfg.Events.PostureChanged(f.Domain, w)
			}
		}
	}
	v.postures.Set(f.Domain, p, postureTTL)
}
