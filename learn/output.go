package learn

import (
	"fmt"
	"io"
	"sort"
	"time"

	"github.com/tlsgate/tlsgate/internal/safetext"
	"github.com/tlsgate/tlsgate/policy"
)

// JSON is what `tlsgate learn --json` writes (README.md, "Learning policies from the
// mail log"): version 1.
type JSON struct {
	Version       int          `json:"version"`
	Generated     time.Time    `json:"generated"`
	Files         []string     `json:"files"`
	Since         *time.Time   `json:"since,omitempty"`
	MinDeliveries int          `json:"min_deliveries"`
	Stats         StatsJSON    `json:"stats"`
	Domains       []DomainJSON `json:"domains"`
	Diff          []Change     `json:"diff,omitempty"`
}

// StatsJSON is Stats as numbers.
type StatsJSON struct {
	Lines          int64 `json:"lines"`
	Bytes          int64 `json:"bytes"`
	Garbage        int64 `json:"garbage"`
	TooLong        int64 `json:"too_long"`
	TLS            int64 `json:"tls_lines"`
	Deliveries     int64 `json:"deliveries"`
	Local          int64 `json:"local_relay"`
	BadDomain      int64 `json:"bad_domain"`
	Old            int64 `json:"before_since"`
	DomainsDropped int64 `json:"domains_dropped"`
}

// Snapshot returns the counters.
func (s *Stats) Snapshot() StatsJSON {
	return StatsJSON{s.Lines.Load(), s.Bytes.Load(), s.Garbage.Load(), s.TooLong.Load(), s.TLS.Load(),
		s.Deliveries.Load(), s.Local.Load(), s.BadDomain.Load(), s.Old.Load(), s.DomainsDropped.Load()}
}

// DomainJSON is one domain of the JSON output.
type DomainJSON struct {
	Domain     string         `json:"domain"`
	Status     Status         `json:"status"`
	Level      string         `json:"level,omitempty"` // proposed, or the one that fails now
	Reason     string         `json:"reason,omitempty"`
	Deliveries int            `json:"deliveries"`
	ByTLS      map[string]int `json:"by_tls"` // "verified", "trusted", "untrusted", "anonymous", "plaintext"
	FirstSeen  time.Time      `json:"first_seen"`
	LastSeen   time.Time      `json:"last_seen"`
	Relays     []string       `json:"relays"`
	Protocols  []string       `json:"protocols,omitempty"`
	MX         []string       `json:"mx,omitempty"`
	Checked    *time.Time     `json:"checked,omitempty"`
	Probe      []LevelJSON    `json:"probe,omitempty"`
}

// LevelJSON is the probe's verdict at one level.
type LevelJSON struct {
	Level     string `json:"level"`
	Status    string `json:"status"` // pass, fail, tempfail
	Mechanism string `json:"mechanism,omitempty"`
	Reason    string `json:"reason,omitempty"`
	Detail    string `json:"detail,omitempty"`
}

// ToJSON converts proposals for the JSON output. Remote text is bounded, not quoted:
// JSON escapes control characters itself.
func ToJSON(props []*Proposal) []DomainJSON {
	out := make([]DomainJSON, 0, len(props))
	for _, p := range props {
		d := p.Domain
		j := DomainJSON{
			Domain: d.Name, Status: p.Status, Reason: safetext.Bound(p.Reason, maxComment),
			Deliveries: d.Deliveries(), ByTLS: map[string]int{},
			FirstSeen: d.First.UTC(), LastSeen: d.Last.UTC(),
			Relays: boundAll(d.Relays), Protocols: boundAll(d.Protocols), MX: p.MX,
		}
		if j.Relays == nil {
			j.Relays = []string{}
		}
		for t, c := range d.ByTrust {
			j.ByTLS[Trust(t).String()] = c
		}
		if len(p.Probe) > 0 || p.Status == StatusNotMX {
			j.Level = p.Level.String()
		}
		if !p.Checked.IsZero() {
			c := p.Checked.UTC()
			j.Checked = &c
		}
		for _, v := range p.Probe {
			j.Probe = append(j.Probe, LevelJSON{Level: v.Level.String(), Status: v.Status.String(),
				Mechanism: string(v.Mechanism), Reason: string(v.Reason), Detail: safetext.Bound(v.Detail, safetext.MaxField)})
		}
		out = append(out, j)
	}
	return out
}

func boundAll(s []string) []string {
	var out []string
	for _, v := range s {
		out = append(out, safetext.Bound(v, 255))
	}
	return out
}

// Change is one difference between an existing policy file and the proposal.
type Change struct {
	Domain string `json:"domain"`
	// Kind: "added", "removed", "stronger", "weaker", "changed" (a different mechanism
	// of the same strength), "unseen" (in the file, no deliveries in the window: kept,
	// no alarm).
	Kind   string `json:"kind"`
	Old    string `json:"old,omitempty"`
	New    string `json:"new,omitempty"`
	Reason string `json:"reason,omitempty"`
	// Alarm: the evidence says the destination got weaker: a lower level, or an entry
	// whose domain now fails, was delivered in plaintext or no longer passes (a
	// probe that could not decide is no alarm, but makes the exit code 2).
	Alarm bool `json:"alarm"`
	// Uncertain: removed because the probe could not decide.
	Uncertain bool `json:"uncertain,omitempty"`
}

// strength orders levels for the diff by what they guarantee against an active
// attacker: none and may nothing; dane only where TLSA records exist; encrypt
// confidentiality against a passive one; verify and secure authenticate by WebPKI
// (secure without trusting the MX lookup); dane-only and fingerprint always
// authenticate. Levels of equal strength are "changed", not weaker or stronger.
func strength(l policy.Level) int {
	switch l {
	case policy.LevelNone, policy.LevelMay:
		return 0
	case policy.LevelDane, policy.LevelPublished:
		return 1
	case policy.LevelEncrypt:
		return 2
	case policy.LevelVerify:
		return 3
	case policy.LevelSecure:
		return 4
	}
	return 5 // dane-only, fingerprint
}

// Diff compares the entries of an existing policy file (ParseFile) with the proposal.
// Only domain keys are compared (".example" keys are a different scope: skipped).
func Diff(existing []policy.Entry, props []*Proposal) []Change {
	by := make(map[string]*Proposal, len(props))
	for _, p := range props {
		by[p.Domain.Name] = p
	}
	seen := make(map[string]bool)
	var out []Change
	for _, e := range existing {
		if e.Key == "" || e.Key[0] == '.' || seen[e.Key] {
			continue
		}
		seen[e.Key] = true
		old := e.Policy.Level
		p, ok := by[e.Key]
		switch {
		case !ok:
			out = append(out, Change{Domain: e.Key, Kind: "unseen", Old: old.String(), Reason: "no deliveries in the window"})
		case p.Status == StatusProposed:
			c := Change{Domain: e.Key, Old: old.String(), New: p.Level.String()}
			switch so, sn := strength(old), strength(p.Level); {
			case p.Level == old:
				continue
			case sn > so:
				c.Kind = "stronger"
			case sn < so:
				c.Kind, c.Alarm = "weaker", true
				c.Reason = "weakest delivery in the log: " + p.Domain.Weakest().String() + "; " + p.ProbeSummary()
			default:
				c.Kind = "changed"
			}
			out = append(out, c)
		default:
			c := Change{Domain: e.Key, Kind: "removed", Old: old.String(), Reason: string(p.Status) + ": " + p.Reason}
			switch p.Status {
			case StatusFailsNow, StatusPlaintext:
				c.Alarm = strength(old) > 0
			case StatusUncertain:
				c.Uncertain = true
			}
			out = append(out, c)
		}
	}
	for _, p := range props {
		if p.Status == StatusProposed && !seen[p.Domain.Name] {
			out = append(out, Change{Domain: p.Domain.Name, Kind: "added", New: p.Level.String()})
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Domain < out[j].Domain })
	return out
}

// WriteDiff writes the changes one per line: "+" added, "-" removed, ">" stronger,
// "<" weaker, "~" changed, "?" unseen; "!" marks an alarm.
func WriteDiff(w io.Writer, changes []Change) error {
	for _, c := range changes {
		mark := map[string]string{"added": "+", "removed": "-", "stronger": ">", "weaker": "<", "changed": "~", "unseen": "?"}[c.Kind]
		if c.Alarm {
			mark += "!"
		}
		line := fmt.Sprintf("%-2s %-8s %s", mark, c.Kind, c.Domain)
		switch {
		case c.Old != "" && c.New != "":
			line += " " + c.Old + " -> " + c.New
		case c.Old != "":
			line += " " + c.Old
		default:
			line += " " + c.New
		}
		if c.Reason != "" {
			line += " (" + c.Reason + ")"
		}
		if _, err := fmt.Fprintln(w, safetext.Terminal(safetext.Bound(line, maxComment))); err != nil {
			return err
		}
	}
	return nil
}

// DiffExit is the exit code of --diff: 1 when something got weaker (an alarm), else 2
// when an entry could not be confirmed because a probe could not decide, else 0.
func DiffExit(changes []Change) int {
	code := 0
	for _, c := range changes {
		if c.Alarm {
			return 1
		}
		if c.Uncertain {
			code = 2
		}
	}
	return code
}
