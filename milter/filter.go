// Package milter is tlsgate's milter: on every RCPT TO it finds the TLS level the
// recipient's domain requires, asks package verify whether the domain can be reached at
// that level, and accepts, tempfails or rejects that one recipient with a reply a human
// sender understands. Accepted recipients get an audit header at end of message.
//
// The decision (Filter.Decide) is separate from the milter protocol adapter (Server), so
// it can be tested and reused directly.
package milter

import (
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"path"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tlsgate/tlsgate/policy"
	"github.com/tlsgate/tlsgate/verify"
)

// FactSource provides facts about a domain; *verify.Verifier implements it.
type FactSource interface {
	Facts(ctx context.Context, domain string) (*verify.Facts, bool, error)
}

var _ FactSource = (*verify.Verifier)(nil)

// Config configures a Filter.
type Config struct {
	Policies    *policy.Set
	Facts       FactSource
	RcptTimeout time.Duration // answer every RCPT within this; default DefaultRcptTimeout
	Header      string        // audit header name; "" disables it
	// CheckedTransports are the {rcpt_mailer} values that are checked, as shell
	// patterns (path.Match: "smtp-*" matches the smtp-encrypt service of a customer).
	CheckedTransports []string
	OnFail            policy.Action // default action for fail verdicts
	OnTempfail        policy.Action // default action for tempfail verdicts
	RejectMessage     string        // appended to every rejection
	Log               *slog.Logger
	// OnDecision, when set, is called with every decision (for metrics). It must be
	// cheap and safe for concurrent use.
	OnDecision func(Decision)

	warnedHops *sync.Map // unusable next hops warned about (warnNextHop); kept across Update
}

// Defaults of the Config fields Update fills in for a zero value; the configuration's
// schema uses the same constants for milter.rcpt_timeout, defaults.on_fail and
// defaults.on_tempfail.
const (
	DefaultRcptTimeout = 8 * time.Second
	DefaultOnFail      = policy.ActionReject
	DefaultOnTempfail  = policy.ActionTempfail
)

// Filter decides recipients. It is safe for concurrent use; Update swaps its
// configuration atomically while it runs.
type Filter struct {
	p atomic.Pointer[Config]
}

// NewFilter returns a Filter; zero values in cfg take their defaults.
func NewFilter(cfg Config) *Filter {
	f := &Filter{}
	f.Update(cfg)
	return f
}

// Update replaces the configuration (a reload): recipients decided from now on use
// cfg; a decision in progress finishes with the configuration it started with.
func (f *Filter) Update(cfg Config) {
	if cfg.RcptTimeout <= 0 {
		cfg.RcptTimeout = DefaultRcptTimeout
	}
	cfg.OnFail = cfg.OnFail.Or(DefaultOnFail)
	cfg.OnTempfail = cfg.OnTempfail.Or(DefaultOnTempfail)
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if old := f.p.Load(); old != nil {
		cfg.warnedHops = old.warnedHops
	} else {
		cfg.warnedHops = &sync.Map{}
	}
	f.p.Store(&cfg)
}

// config returns the current configuration.
func (f *Filter) config() *Config { return f.p.Load() }

// Request is one recipient with its envelope context, as the MTA reports it.
type Request struct {
	Rcpt string // RCPT TO address, with or without <>
	// RcptAddr is Postfix's {rcpt_addr}: the recipient after Postfix's own address
	// resolution (smtpd_milter.c: smtpd_resolve_addr), so after the percent hack,
	// bang paths and dequoting of a local domain's routed address. It is what Postfix
	// delivers to, so it wins over Rcpt when the MTA sends it.
	RcptAddr string
	// NextHop is Postfix's {rcpt_host}: where the recipient's mail goes next (the
	// recipient domain, or a relayhost / transport next hop such as [relay]:587).
	NextHop     string
	Mailer      string // {rcpt_mailer}
	MailerKnown bool   // whether the MTA sent {rcpt_mailer}
	Sender      string // MAIL FROM address
	SASLLogin   string // {auth_authen}
	Client      netip.Addr
	QueueID     string
}

// Outcome is what the MTA should do with one recipient.
type Outcome int

// Outcomes.
const (
	Accept Outcome = iota
	Tempfail
	Reject
)

func (o Outcome) String() string { return [...]string{"accept", "tempfail", "reject"}[o] }

// Decision is the answer for one recipient.
type Decision struct {
	Outcome Outcome
	Reply   Reply          // for Tempfail and Reject
	Checked bool           // a level above may was judged: record it in the audit header
	Verdict verify.Verdict // when Checked
	Rule    string         // which rule applied: "policy:.example.com", "customer:acme"
	Skip    string         // why the recipient was not checked at all
}

// Decide decides one recipient. It returns within the RCPT timeout (plus scheduling
// noise) whatever the network does, and never panics on malformed input.
func (f *Filter) Decide(ctx context.Context, r Request) (d Decision) {
	start := time.Now()
	cfg := f.config()
	var level policy.Level
	domainSeen := "this domain"
	defer func() {
		if p := recover(); p != nil {
			// Fail safe: an internal bug tempfails this recipient, it never passes it.
			cfg.Log.Error("panic deciding recipient", "queue_id", r.QueueID, "panic", p)
			v := verify.Verdict{Domain: domainSeen, Level: level, Status: verify.StatusTempfail, Reason: verify.ReasonInternal}
			d = Decision{Outcome: Tempfail, Verdict: v, Reply: ReplyFor(v, true, "")}
		}
		cfg.log(r, d, time.Since(start))
		if cfg.OnDecision != nil {
			cfg.OnDecision(d)
		}
	}()
	if r.MailerKnown && !transportChecked(cfg.CheckedTransports, r.Mailer) {
		return Decision{Outcome: Accept, Skip: "transport " + r.Mailer + " is not checked"}
	}
	addr := r.Rcpt
	if r.RcptAddr != "" {
		// "user%strict.example@ourhost.example" is delivered to strict.example.
		addr = r.RcptAddr
	}
	local, domain, ok := splitAddress(addr)
	switch {
	case !ok && local == "":
		return Decision{Outcome: Accept, Skip: "null recipient"}
	case !ok:
		return Decision{Outcome: Accept, Skip: "recipient without domain"}
	case strings.HasPrefix(domain, "["):
		// RFC 5321 §4.1.3 address literal: there is no MX and no policy to look up.
		return Decision{Outcome: Accept, Skip: "address literal"}
	}
	_, senderDomain, _ := splitAddress(r.Sender)
	norm, err := policy.NormalizeDomain(domain)
	if err == nil {
		domainSeen = norm
	}
	// Postfix delivers to the next hop and looks its TLS policy up by it: the next
	// hop is judged, under its own policy entry.
	hop := ""
	if err == nil {
		hop = cfg.hopKey(r.NextHop, norm)
	}
	req := cfg.Policies.Require(policy.Request{
		RecipientDomain: norm,
		NextHop:         hop,
		SenderDomain:    senderDomain,
		SASLLogin:       r.SASLLogin,
		ClientIP:        r.Client,
	})
	rule := req.Rule.Tag()
	level = req.Policy.Level
	var v verify.Verdict
	switch {
	case req.Invalid != "":
		// smtp_tls_policy.c marks such a policy TLS_LEV_INVALID and defers the mail:
		// it would sit in the queue. The problem names a local file and line: it goes
		// to the log, not into the verdict the sender's reply is made from.
		cfg.Log.Error("invalid TLS policy for recipient domain; Postfix defers its mail", "domain", norm,
			"rule", req.InvalidRule.String(), "problem", req.Invalid)
		v = verify.Verdict{Domain: norm, Level: level, Status: verify.StatusTempfail, Reason: verify.ReasonPolicyInvalid,
			Checked: time.Now()}
	case err != nil && !level.Probed():
		return Decision{Outcome: Accept, Skip: "invalid recipient domain", Rule: rule}
	case err != nil:
		// A name no resolver can look up: Postfix could not deliver it either.
		v = verify.Verdict{Domain: sanitize(domain, 100), Level: level, Status: verify.StatusFail, Reason: verify.ReasonNoMX,
			Detail: "the domain name is not valid", Checked: time.Now()}
	case !level.Probed():
		v = verify.Verdict{Domain: norm, Level: level, Status: verify.StatusPass, Mechanism: verify.MechNone}
		return Decision{Outcome: Accept, Verdict: v, Rule: rule}
	default:
		key := norm
		if hop != "" {
			key = hop
		}
		v = atHop(cfg.verdict(ctx, key, req.Policy), norm, hop)
		if also := req.Also; also != nil && v.Status == verify.StatusPass {
			// The other requirement must be met too (policy.Requirement.Also); the
			// facts are shared, so this costs a judgement, not a probe.
			if va := atHop(cfg.verdict(ctx, key, *also), norm, hop); va.Status != verify.StatusPass {
				v, level = va, also.Level
				req.Policy, rule = *also, req.AlsoRule.Tag()
			}
		}
	}
	d = Decision{Checked: true, Verdict: v, Rule: rule}
	var action policy.Action
	switch v.Status {
	case verify.StatusPass:
		return d // Accept
	case verify.StatusFail:
		action = req.Policy.OnFail.Or(cfg.OnFail)
	default:
		action = req.Policy.OnTempfail.Or(cfg.OnTempfail)
		if action == policy.ActionReject {
			action = policy.ActionTempfail // never a 5xx for "could not find out"
		}
	}
	switch action {
	case policy.ActionHeader:
		d.Outcome = Accept
	case policy.ActionTempfail:
		d.Outcome, d.Reply = Tempfail, ReplyFor(v, true, cfg.RejectMessage)
	default:
		d.Outcome, d.Reply = Reject, ReplyFor(v, false, cfg.RejectMessage)
		if d.Reply.Code < 500 {
			d.Outcome = Tempfail
		}
	}
	return d
}

// verdict judges domain within the RCPT budget; running out of it, or any internal
// error, gives a tempfail verdict.
func (cfg *Config) verdict(ctx context.Context, domain string, p policy.Policy) verify.Verdict {
	// A policy with servername= is judged on facts probed with that SNI.
	key := verify.FactsKey(domain, p)
	// A cache hit needs no deadline: skip the timer of WithTimeout.
	if c, ok := cfg.Facts.(interface {
		Cached(string) (*verify.Facts, bool)
	}); ok {
		if facts, ok := c.Cached(key); ok {
			v := facts.JudgeCached(p)
			v.Cached = true
			return v
		}
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.RcptTimeout)
	defer cancel()
	facts, cached, err := cfg.Facts.Facts(ctx, key)
	if err != nil {
		reason := verify.ReasonInternal
		switch {
		case errors.Is(err, verify.ErrPending):
			reason = verify.ReasonVerificationInProgress
		case errors.Is(err, verify.ErrOverloaded):
			reason = verify.ReasonOverloaded
		default:
			cfg.Log.Error("verification failed", "domain", domain, "err", err)
		}
		return verify.Verdict{Domain: domain, Level: p.Level, Status: verify.StatusTempfail, Reason: reason, Checked: time.Now()}
	}
	v := facts.JudgeCached(p)
	v.Cached = cached
	return v
}

// log writes one Info line per decision. Every line has the same keys, empty when they
// do not apply, so that log pipelines can rely on them.
func (cfg *Config) log(r Request, d Decision, took time.Duration) {
	v := d.Verdict
	if !cfg.Log.Enabled(context.Background(), slog.LevelInfo) {
		return
	}
	domain, level, status, mechanism := v.Domain, "", "", ""
	if v.Domain != "" {
		level, status, mechanism = v.Level.String(), v.Status.String(), string(v.Mechanism)
	} else if d.Skip != "" {
		domain = skippedDomain(r)
	}
	reply := ""
	if d.Outcome != Accept {
		reply = d.Reply.String()
	}
	// Typed attributes: no boxing of every value into an interface. The required TLS
	// level is tls_level: "level" is the record's own severity in slog's output.
	cfg.Log.LogAttrs(context.Background(), slog.LevelInfo, "rcpt",
		slog.String("queue_id", r.QueueID), slog.String("outcome", d.Outcome.String()), slog.Duration("duration", took),
		slog.String("domain", domain), slog.String("tls_level", level), slog.String("status", status),
		slog.String("reason", string(v.Reason)), slog.String("mechanism", mechanism), slog.Bool("cached", v.Cached),
		slog.String("mx", v.MX), slog.String("rule", d.Rule), slog.String("skip", d.Skip), slog.String("reply", reply),
		slog.String("next_hop", r.NextHop))
}

// skippedDomain is the recipient's domain for the log line of a recipient that was not
// checked (normalised when it can be), "" when the address has none.
func skippedDomain(r Request) string {
	addr := r.Rcpt
	if r.RcptAddr != "" {
		addr = r.RcptAddr
	}
	_, domain, ok := splitAddress(addr)
	if !ok {
		return ""
	}
	if norm, err := policy.NormalizeDomain(domain); err == nil {
		return norm
	}
	return sanitize(domain, 100)
}

// splitAddress splits an envelope address into local part and domain at the last '@'
// that is not inside a quoted local part. It accepts "<...>" and strips an RFC 5321
// source route ("@a,@b:user@example.com"). ok is false when there is no domain.
func splitAddress(addr string) (local, domain string, ok bool) {
	addr = strings.TrimSpace(addr)
	addr = strings.TrimSuffix(strings.TrimPrefix(addr, "<"), ">")
	if strings.HasPrefix(addr, "@") {
		if i := strings.IndexByte(addr, ':'); i >= 0 {
			addr = addr[i+1:]
		}
	}
	at := -1
	quoted := false
	for i := 0; i < len(addr); i++ {
		switch addr[i] {
		case '\\':
			i++
		case '"':
			quoted = !quoted
		case '@':
			if !quoted {
				at = i
			}
		}
	}
	if at < 0 {
		return addr, "", false
	}
	domain = addr[at+1:]
	return addr[:at], domain, domain != ""
}

// transportChecked reports whether mailer matches one of the patterns.
func transportChecked(patterns []string, mailer string) bool {
	for _, p := range patterns {
		if ok, err := path.Match(p, mailer); ok && err == nil {
			return true
		}
	}
	return false
}
