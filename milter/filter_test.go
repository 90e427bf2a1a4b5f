package milter_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tlsgate/tlsgate/internal/fake"
	"github.com/tlsgate/tlsgate/internal/fingerprint"
	"github.com/tlsgate/tlsgate/internal/smtpprobe"
	"github.com/tlsgate/tlsgate/milter"
	"github.com/tlsgate/tlsgate/policy"
	"github.com/tlsgate/tlsgate/verify"
)

// factSource is a plain-data milter.FactSource: facts and errors by domain, and an
// optional channel that holds every call until it is closed or the caller's context
// ends (a slow probe, answered with verify.ErrPending as the Verifier does). It records
// which domains it was asked for.
type factSource struct {
	facts map[string]*verify.Facts
	errs  map[string]error
	block chan struct{}
	// waiting, when set, receives each domain asked about before the call blocks: a
	// test knows a recipient is being decided without polling Asked.
	waiting chan string

	mu      sync.Mutex
	asked   []string
	budgets []time.Duration // time left until the caller's deadline, per call; -1 without one
}

var _ milter.FactSource = (*factSource)(nil)

func (s *factSource) Facts(ctx context.Context, domain string) (*verify.Facts, bool, error) {
	budget := time.Duration(-1)
	if dl, ok := ctx.Deadline(); ok {
		budget = time.Until(dl)
	}
	s.mu.Lock()
	s.asked = append(s.asked, domain)
	s.budgets = append(s.budgets, budget)
	s.mu.Unlock()
	if s.waiting != nil {
		s.waiting <- domain
	}
	if s.block != nil {
		select {
		case <-s.block:
		case <-ctx.Done():
			return nil, false, fmt.Errorf("%w: %w", verify.ErrPending, ctx.Err())
		}
	}
	if err := s.errs[domain]; err != nil {
		return nil, false, err
	}
	f, ok := s.facts[domain]
	if !ok {
		return nil, false, fmt.Errorf("fake: no facts for %q", domain)
	}
	return f, true, nil
}

func (s *factSource) Asked() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.asked)
}

// panicSource panics on every call, like a bug somewhere below the filter.
type panicSource struct{}

func (panicSource) Facts(context.Context, string) (*verify.Facts, bool, error) {
	panic("fake: facts exploded")
}

var mxAddr = netip.MustParseAddr("192.0.2.1")

// probed returns facts for domain with one MX host, mx1.<domain> at 192.0.2.1, whose
// probe ended with result r.
func probed(domain string, r smtpprobe.Result) *verify.Facts {
	host := "mx1." + domain
	r.IP = mxAddr
	return &verify.Facts{
		Domain: domain, MX: verify.MXFound, MXDetail: "1 MX host(s)",
		Hosts:    []verify.Host{{Name: host, Preference: 10, Addrs: []netip.Addr{mxAddr}}},
		Attempts: []verify.Attempt{{Host: host, Preference: 10, Result: r}},
		Checked:  checkedAt, Until: checkedAt.Add(time.Hour), DNSTTL: time.Hour,
	}
}

var greeting = smtpprobe.Reply{Code: 220, Text: "mx1 ESMTP"}

// tlsFacts: STARTTLS works; the certificate carries the MX host name and verifies.
func tlsFacts(domain string) *verify.Facts {
	leaf := &x509.Certificate{Raw: []byte("leaf of mx1." + domain), DNSNames: []string{"mx1." + domain}}
	return probed(domain, smtpprobe.Result{Stage: smtpprobe.StageDone, Outcome: smtpprobe.OutcomeTLS, Greeting: greeting,
		Offered: true, TLSVersion: tls.VersionTLS13, Chain: []*x509.Certificate{leaf}})
}

// noTLSFacts: the MX does not offer STARTTLS (a definite fail).
func noTLSFacts(domain string) *verify.Facts {
	return probed(domain, smtpprobe.Result{Stage: smtpprobe.StageEHLO, Outcome: smtpprobe.OutcomeNoStartTLS, Greeting: greeting,
		Detail: "STARTTLS not offered in the EHLO reply"})
}

// greylistFacts: the MX answered 450 (a tempfail).
func greylistFacts(domain string) *verify.Facts {
	return probed(domain, smtpprobe.Result{Stage: smtpprobe.StageConnected, Outcome: smtpprobe.OutcomeGreylisted,
		Greeting: smtpprobe.Reply{Code: 450, Text: "4.7.1 greylisted"}, Detail: "banner 450 4.7.1 greylisted"})
}

func mxFacts(domain string, s verify.MXStatus, detail string) *verify.Facts {
	return &verify.Facts{Domain: domain, MX: s, MXDetail: detail, Checked: checkedAt, Until: checkedAt.Add(time.Hour)}
}

// entry is one domain policy.
type entry struct {
	key string
	p   policy.Policy
}

// policySet builds a policy.Set as the config does: policy.NewTable, Add, NewCustomers.
func policySet(t *testing.T, entries []entry, customers []policy.Customer) *policy.Set {
	t.Helper()
	tab := policy.NewTable()
	for _, e := range entries {
		if w, err := tab.Add(e.key, e.p); err != nil || w != "" {
			t.Fatalf("Add(%q): warning %q, error %v", e.key, w, err)
		}
	}
	cs, err := policy.NewCustomers(customers)
	if err != nil {
		t.Fatal(err)
	}
	return &policy.Set{Table: tab, Customers: cs}
}

var (
	encrypt = policy.Policy{Level: policy.LevelEncrypt}
	acme    = policy.Customer{Name: "acme", Senders: []string{"acme.example", ".acme.example"}, SASLLogins: []string{"acme-user"},
		ClientNetworks: []netip.Prefix{netip.MustParsePrefix("198.51.100.0/24")}, Level: policy.LevelEncrypt}
)

func with(p policy.Policy, f func(*policy.Policy)) policy.Policy {
	f(&p)
	return p
}

func customer(c policy.Customer, f func(*policy.Customer)) policy.Customer {
	c.Senders = slices.Clone(c.Senders)
	f(&c)
	return c
}

// Exact replies used by several rows.
const (
	replyNoTLS = "550 5.7.5 Mail to example.test requires encrypted delivery (TLS), but its mail servers do not offer it. " +
		"(mx1.example.test[192.0.2.1]: STARTTLS not offered in the EHLO reply)"
	replyNoTLSTemp = "451 4.7.5 Mail to example.test requires encrypted delivery (TLS), but its mail servers do not offer it. " +
		"(mx1.example.test[192.0.2.1]: STARTTLS not offered in the EHLO reply)"
	replyGreylisted = "451 4.7.5 Mail to example.test requires encrypted delivery (TLS), but its mail servers asked us to try again later. Please try again later. " +
		"(mx1.example.test[192.0.2.1]: banner 450 4.7.1 greylisted)"
	replyInvalid = "550 5.1.2 Mail to exa mple..test cannot be delivered: the domain has no mail servers that can be reached. " +
		"(the domain name is not valid)"
	replyInvalidTemp = "451 4.1.2 Mail to exa mple..test cannot be delivered: the domain has no mail servers that can be reached. " +
		"(the domain name is not valid)"
)

// want is the expected Decision.
type want struct {
	outcome milter.Outcome
	reply   string // exact Reply.String(); "" for accept
	checked bool
	status  string // Verdict.Status when checked
	level   string // Verdict.Level when checked; "" = encrypt
	rule    string
	skip    string
	asked   []string // domains the FactSource was asked for, in order
}

func TestDecide(t *testing.T) {
	t.Parallel()
	facts := map[string]*verify.Facts{
		"example.test":          noTLSFacts("example.test"),
		"tls.test":              tlsFacts("tls.test"),
		"grey.test":             greylistFacts("grey.test"),
		"other.test":            tlsFacts("other.test"),
		"sub.example.test":      tlsFacts("sub.example.test"),
		"xn--bcher-kva.example": tlsFacts("xn--bcher-kva.example"),
		"nullmx.test":           mxFacts("nullmx.test", verify.MXNull, "null MX (RFC 7505)"),
		"nomx.test":             mxFacts("nomx.test", verify.MXNone, "the domain nomx.test does not exist"),
		"servfail.test":         mxFacts("servfail.test", verify.MXError, "MX lookup for servfail.test failed: SERVFAIL"),
	}
	errs := map[string]error{
		"pending.test": fmt.Errorf("%w: %w", verify.ErrPending, context.DeadlineExceeded),
		"broken.test":  errors.New("fake: cache exploded"),
	}
	onlyExample := []entry{{"example.test", encrypt}}
	allEncrypt := []entry{{"example.test", encrypt}, {"tls.test", encrypt}, {"grey.test", encrypt}, {"nullmx.test", encrypt},
		{"nomx.test", encrypt}, {"servfail.test", encrypt}, {"pending.test", encrypt}, {"broken.test", encrypt}}
	tests := []struct {
		name      string
		entries   []entry
		customers []policy.Customer
		cfg       func(*milter.Config)
		req       milter.Request
		want      want
	}{
		// Policy and verdict -> action.
		{name: "no policy: accept without a probe",
			req:  milter.Request{Rcpt: "user@example.test"},
			want: want{outcome: milter.Accept}},
		{name: "encrypt and pass: accept, checked",
			entries: allEncrypt, req: milter.Request{Rcpt: "user@tls.test"},
			want: want{outcome: milter.Accept, checked: true, status: "pass", rule: "policy:tls.test", asked: []string{"tls.test"}}},
		{name: "encrypt and fail: reject",
			entries: onlyExample, req: milter.Request{Rcpt: "user@example.test"},
			want: want{outcome: milter.Reject, reply: replyNoTLS, checked: true, status: "fail", rule: "policy:example.test", asked: []string{"example.test"}}},
		{name: "fail, policy on_fail=tempfail: 451",
			entries: []entry{{"example.test", with(encrypt, func(p *policy.Policy) { p.OnFail = policy.ActionTempfail })}},
			req:     milter.Request{Rcpt: "user@example.test"},
			want:    want{outcome: milter.Tempfail, reply: replyNoTLSTemp, checked: true, status: "fail", rule: "policy:example.test", asked: []string{"example.test"}}},
		{name: "fail, policy on_fail=header: accept and record",
			entries: []entry{{"example.test", with(encrypt, func(p *policy.Policy) { p.OnFail = policy.ActionHeader })}},
			req:     milter.Request{Rcpt: "user@example.test"},
			want:    want{outcome: milter.Accept, checked: true, status: "fail", rule: "policy:example.test", asked: []string{"example.test"}}},
		{name: "fail, default on_fail=tempfail",
			entries: onlyExample, cfg: func(c *milter.Config) { c.OnFail = policy.ActionTempfail },
			req:  milter.Request{Rcpt: "user@example.test"},
			want: want{outcome: milter.Tempfail, reply: replyNoTLSTemp, checked: true, status: "fail", rule: "policy:example.test", asked: []string{"example.test"}}},
		{name: "fail, policy on_fail=reject beats default header",
			entries: []entry{{"example.test", with(encrypt, func(p *policy.Policy) { p.OnFail = policy.ActionReject })}},
			cfg:     func(c *milter.Config) { c.OnFail = policy.ActionHeader },
			req:     milter.Request{Rcpt: "user@example.test"},
			want:    want{outcome: milter.Reject, reply: replyNoTLS, checked: true, status: "fail", rule: "policy:example.test", asked: []string{"example.test"}}},
		{name: "fail, reject_message appended",
			entries: onlyExample, cfg: func(c *milter.Config) { c.RejectMessage = "See https://tls.example/help" },
			req: milter.Request{Rcpt: "user@example.test"},
			want: want{outcome: milter.Reject, checked: true, status: "fail", rule: "policy:example.test", asked: []string{"example.test"},
				reply: replyNoTLS + " See https://tls.example/help"}},
		{name: "tempfail: 451",
			entries: allEncrypt, req: milter.Request{Rcpt: "user@grey.test"},
			want: want{outcome: milter.Tempfail, checked: true, status: "tempfail", rule: "policy:grey.test", asked: []string{"grey.test"},
				reply: strings.ReplaceAll(replyGreylisted, "example.test", "grey.test")}},
		{name: "tempfail, policy on_tempfail=header: accept (fail open)",
			entries: []entry{{"grey.test", with(encrypt, func(p *policy.Policy) { p.OnTempfail = policy.ActionHeader })}},
			req:     milter.Request{Rcpt: "user@grey.test"},
			want:    want{outcome: milter.Accept, checked: true, status: "tempfail", rule: "policy:grey.test", asked: []string{"grey.test"}}},
		{name: "tempfail, policy on_tempfail=reject: still 4xx",
			entries: []entry{{"grey.test", with(encrypt, func(p *policy.Policy) { p.OnTempfail = policy.ActionReject })}},
			req:     milter.Request{Rcpt: "user@grey.test"},
			want: want{outcome: milter.Tempfail, checked: true, status: "tempfail", rule: "policy:grey.test", asked: []string{"grey.test"},
				reply: strings.ReplaceAll(replyGreylisted, "example.test", "grey.test")}},
		{name: "tempfail, default on_tempfail=reject: still 4xx",
			entries: allEncrypt, cfg: func(c *milter.Config) { c.OnTempfail = policy.ActionReject },
			req: milter.Request{Rcpt: "user@grey.test"},
			want: want{outcome: milter.Tempfail, checked: true, status: "tempfail", rule: "policy:grey.test", asked: []string{"grey.test"},
				reply: strings.ReplaceAll(replyGreylisted, "example.test", "grey.test")}},
		{name: "null MX: 556 5.1.10",
			entries: allEncrypt, req: milter.Request{Rcpt: "user@nullmx.test"},
			want: want{outcome: milter.Reject, checked: true, status: "fail", rule: "policy:nullmx.test", asked: []string{"nullmx.test"},
				reply: "556 5.1.10 Mail to nullmx.test cannot be delivered: the domain publishes a null MX, it accepts no mail. " +
					"(the domain publishes a null MX: it accepts no mail)"}},
		{name: "no MX: 550 5.1.2",
			entries: allEncrypt, req: milter.Request{Rcpt: "user@nomx.test"},
			want: want{outcome: milter.Reject, checked: true, status: "fail", rule: "policy:nomx.test", asked: []string{"nomx.test"},
				reply: "550 5.1.2 Mail to nomx.test cannot be delivered: the domain has no mail servers that can be reached. " +
					"(the domain nomx.test does not exist)"}},
		{name: "DNS error: 451 4.4.3",
			entries: allEncrypt, req: milter.Request{Rcpt: "user@servfail.test"},
			want: want{outcome: milter.Tempfail, checked: true, status: "tempfail", rule: "policy:servfail.test", asked: []string{"servfail.test"},
				reply: "451 4.4.3 Mail to servfail.test requires encrypted delivery (TLS), but its mail servers could not be looked up in the DNS. Please try again later. " +
					"(MX lookup for servfail.test failed: SERVFAIL)"}},
		{name: "verification pending: 451 4.7.0",
			entries: allEncrypt, req: milter.Request{Rcpt: "user@pending.test"},
			want: want{outcome: milter.Tempfail, checked: true, status: "tempfail", rule: "policy:pending.test", asked: []string{"pending.test"},
				reply: "451 4.7.0 Mail to pending.test requires encrypted delivery (TLS); checking its mail servers is in progress. Please try again in a minute."}},
		{name: "FactSource error: 451 4.3.0",
			entries: allEncrypt, req: milter.Request{Rcpt: "user@broken.test"},
			want: want{outcome: milter.Tempfail, checked: true, status: "tempfail", rule: "policy:broken.test", asked: []string{"broken.test"},
				reply: "451 4.3.0 Mail to broken.test requires encrypted delivery (TLS), but it could not be checked because of a temporary local problem. Please try again later."}},
		{name: "level may: accept without a probe",
			entries: []entry{{"example.test", policy.Policy{Level: policy.LevelMay}}},
			req:     milter.Request{Rcpt: "user@example.test"},
			want:    want{outcome: milter.Accept, rule: "policy:example.test"}},

		// Which recipients are checked at all.
		{name: "rcpt_mailer local is not checked",
			entries: onlyExample, req: milter.Request{Rcpt: "user@example.test", Mailer: "local", MailerKnown: true},
			want: want{outcome: milter.Accept, skip: "transport local is not checked"}},
		{name: "rcpt_mailer smtp is checked",
			entries: onlyExample, req: milter.Request{Rcpt: "user@example.test", Mailer: "smtp", MailerKnown: true},
			want: want{outcome: milter.Reject, reply: replyNoTLS, checked: true, status: "fail", rule: "policy:example.test", asked: []string{"example.test"}}},
		{name: "rcpt_mailer relay is checked",
			entries: onlyExample, req: milter.Request{Rcpt: "user@example.test", Mailer: "relay", MailerKnown: true},
			want: want{outcome: milter.Reject, reply: replyNoTLS, checked: true, status: "fail", rule: "policy:example.test", asked: []string{"example.test"}}},
		{name: "rcpt_mailer unknown is checked",
			entries: onlyExample, req: milter.Request{Rcpt: "user@example.test"},
			want: want{outcome: milter.Reject, reply: replyNoTLS, checked: true, status: "fail", rule: "policy:example.test", asked: []string{"example.test"}}},
		{name: "address literal is never checked",
			entries: onlyExample, customers: []policy.Customer{acme},
			req:  milter.Request{Rcpt: "user@[192.0.2.1]", SASLLogin: "acme-user"},
			want: want{outcome: milter.Accept, skip: "address literal"}},
		{name: "IPv6 address literal is never checked",
			entries: onlyExample, customers: []policy.Customer{acme},
			req:  milter.Request{Rcpt: "<user@[IPv6:2001:db8::1]>", SASLLogin: "acme-user"},
			want: want{outcome: milter.Accept, skip: "address literal"}},
		{name: "null recipient <>",
			entries: onlyExample, customers: []policy.Customer{acme},
			req:  milter.Request{Rcpt: "<>", SASLLogin: "acme-user"},
			want: want{outcome: milter.Accept, skip: "null recipient"}},
		{name: "empty recipient",
			entries: onlyExample, customers: []policy.Customer{acme},
			req:  milter.Request{Rcpt: "", SASLLogin: "acme-user"},
			want: want{outcome: milter.Accept, skip: "null recipient"}},
		{name: "recipient without @",
			entries: onlyExample, customers: []policy.Customer{acme},
			req:  milter.Request{Rcpt: "postmaster", SASLLogin: "acme-user"},
			want: want{outcome: milter.Accept, skip: "recipient without domain"}},
		{name: "recipient with empty domain",
			entries: onlyExample, customers: []policy.Customer{acme},
			req:  milter.Request{Rcpt: "user@", SASLLogin: "acme-user"},
			want: want{outcome: milter.Accept, skip: "recipient without domain"}},

		// Address forms: the facts are asked for the right domain.
		{name: "angle brackets",
			entries: onlyExample, req: milter.Request{Rcpt: "<user@example.test>"},
			want: want{outcome: milter.Reject, reply: replyNoTLS, checked: true, status: "fail", rule: "policy:example.test", asked: []string{"example.test"}}},
		{name: "quoted local part with @",
			entries: onlyExample, req: milter.Request{Rcpt: `"a@tls.test"@example.test`},
			want: want{outcome: milter.Reject, reply: replyNoTLS, checked: true, status: "fail", rule: "policy:example.test", asked: []string{"example.test"}}},
		{name: "quoted local part with escaped quote and @",
			entries: onlyExample, req: milter.Request{Rcpt: `"a\"@tls.test"@example.test`},
			want: want{outcome: milter.Reject, reply: replyNoTLS, checked: true, status: "fail", rule: "policy:example.test", asked: []string{"example.test"}}},
		{name: "source route",
			entries: onlyExample, req: milter.Request{Rcpt: "<@relay1.invalid,@relay2.invalid:user@example.test>"},
			want: want{outcome: milter.Reject, reply: replyNoTLS, checked: true, status: "fail", rule: "policy:example.test", asked: []string{"example.test"}}},
		{name: "IDN recipient, A-label policy",
			entries: []entry{{"xn--bcher-kva.example", encrypt}}, req: milter.Request{Rcpt: "user@bücher.example"},
			want: want{outcome: milter.Accept, checked: true, status: "pass", rule: "policy:xn--bcher-kva.example", asked: []string{"xn--bcher-kva.example"}}},
		{name: "A-label recipient, U-label policy",
			entries: []entry{{"bücher.example", encrypt}}, req: milter.Request{Rcpt: "user@xn--bcher-kva.example"},
			want: want{outcome: milter.Accept, checked: true, status: "pass", rule: "policy:xn--bcher-kva.example", asked: []string{"xn--bcher-kva.example"}}},
		{name: "upper case and trailing dot",
			entries: onlyExample, req: milter.Request{Rcpt: "User@EXAMPLE.Test."},
			want: want{outcome: milter.Reject, reply: replyNoTLS, checked: true, status: "fail", rule: "policy:example.test", asked: []string{"example.test"}}},
		{name: "parent-domain policy",
			entries: []entry{{".example.test", encrypt}}, req: milter.Request{Rcpt: "user@sub.example.test"},
			want: want{outcome: milter.Accept, checked: true, status: "pass", rule: "policy:.example.test", asked: []string{"sub.example.test"}}},
		// An invalid name with a TLS requirement is a fail verdict ("no mail servers")
		// and takes the configured action like any other.
		{name: "invalid domain, customer requires encrypt: 550 5.1.2",
			entries: onlyExample, customers: []policy.Customer{acme},
			req:  milter.Request{Rcpt: "user@exa mple..test", Sender: "alice@acme.example"},
			want: want{outcome: milter.Reject, reply: replyInvalid, checked: true, status: "fail", rule: "customer:acme"}},
		{name: "invalid domain, nothing required: accept",
			entries: onlyExample, customers: []policy.Customer{acme},
			req:  milter.Request{Rcpt: "user@exa mple..test", Sender: "bob@other.example"},
			want: want{outcome: milter.Accept, skip: "invalid recipient domain"}},
		// on_fail=header is the documented dry-run mode: it must never reject.
		{name: "invalid domain, customer on_fail=header: accept and record",
			entries: onlyExample, customers: []policy.Customer{customer(acme, func(c *policy.Customer) { c.OnFail = policy.ActionHeader })},
			req:  milter.Request{Rcpt: "user@exa mple..test", Sender: "alice@acme.example"},
			want: want{outcome: milter.Accept, checked: true, status: "fail", rule: "customer:acme"}},
		{name: "invalid domain, customer on_fail=tempfail: 451 4.1.2",
			entries: onlyExample, customers: []policy.Customer{customer(acme, func(c *policy.Customer) { c.OnFail = policy.ActionTempfail })},
			req:  milter.Request{Rcpt: "user@exa mple..test", Sender: "alice@acme.example"},
			want: want{outcome: milter.Tempfail, reply: replyInvalidTemp, checked: true, status: "fail", rule: "customer:acme"}},
		{name: "invalid domain, default on_fail=tempfail: 451 4.1.2",
			entries: onlyExample, customers: []policy.Customer{acme}, cfg: func(c *milter.Config) { c.OnFail = policy.ActionTempfail },
			req:  milter.Request{Rcpt: "user@exa mple..test", Sender: "alice@acme.example"},
			want: want{outcome: milter.Tempfail, reply: replyInvalidTemp, checked: true, status: "fail", rule: "customer:acme"}},

		// Customer toggles raise the level for every recipient domain.
		{name: "customer by sender domain",
			customers: []policy.Customer{acme}, req: milter.Request{Rcpt: "user@other.test", Sender: "alice@acme.example"},
			want: want{outcome: milter.Accept, checked: true, status: "pass", rule: "customer:acme", asked: []string{"other.test"}}},
		{name: "customer by sender subdomain",
			customers: []policy.Customer{acme}, req: milter.Request{Rcpt: "user@other.test", Sender: "<alice@Mail.ACME.example>"},
			want: want{outcome: milter.Accept, checked: true, status: "pass", rule: "customer:acme", asked: []string{"other.test"}}},
		{name: "customer by SASL login",
			customers: []policy.Customer{acme}, req: milter.Request{Rcpt: "user@other.test", Sender: "alice@elsewhere.example", SASLLogin: "acme-user"},
			want: want{outcome: milter.Accept, checked: true, status: "pass", rule: "customer:acme", asked: []string{"other.test"}}},
		{name: "customer by client address",
			customers: []policy.Customer{acme}, req: milter.Request{Rcpt: "user@other.test", Client: netip.MustParseAddr("198.51.100.7")},
			want: want{outcome: milter.Accept, checked: true, status: "pass", rule: "customer:acme", asked: []string{"other.test"}}},
		{name: "customer raises none to encrypt and rejects",
			entries: []entry{{"example.test", policy.Policy{Level: policy.LevelNone}}}, customers: []policy.Customer{acme},
			req:  milter.Request{Rcpt: "user@example.test", Sender: "alice@acme.example"},
			want: want{outcome: milter.Reject, reply: replyNoTLS, checked: true, status: "fail", rule: "customer:acme", asked: []string{"example.test"}}},
		{name: "not a customer: no check",
			customers: []policy.Customer{acme},
			req:       milter.Request{Rcpt: "user@other.test", Sender: "alice@acme.example.org", SASLLogin: "other-user", Client: netip.MustParseAddr("198.51.101.7")},
			want:      want{outcome: milter.Accept}},
		{name: "customer stricter than domain policy",
			entries: []entry{{"tls.test", encrypt}}, customers: []policy.Customer{customer(acme, func(c *policy.Customer) { c.Level = policy.LevelVerify })},
			req:  milter.Request{Rcpt: "user@tls.test", Sender: "alice@acme.example"},
			want: want{outcome: milter.Accept, checked: true, status: "pass", level: "verify", rule: "customer:acme", asked: []string{"tls.test"}}},
		// The header must say which rule applied: here the domain policy won.
		{name: "domain policy stricter than customer",
			entries: []entry{{"tls.test", policy.Policy{Level: policy.LevelVerify}}}, customers: []policy.Customer{acme},
			req:  milter.Request{Rcpt: "user@tls.test", Sender: "alice@acme.example"},
			want: want{outcome: milter.Accept, checked: true, status: "pass", level: "verify", rule: "policy:tls.test", asked: []string{"tls.test"}}},
		{name: "domain policy and customer equal: domain policy applies",
			entries: []entry{{"example.test", with(encrypt, func(p *policy.Policy) { p.OnFail = policy.ActionHeader })}}, customers: []policy.Customer{acme},
			req:  milter.Request{Rcpt: "user@example.test", Sender: "alice@acme.example"},
			want: want{outcome: milter.Accept, checked: true, status: "fail", rule: "policy:example.test", asked: []string{"example.test"}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			src := &factSource{facts: facts, errs: errs}
			cfg := milter.Config{
				Policies:          policySet(t, tc.entries, tc.customers),
				Facts:             src,
				CheckedTransports: []string{"smtp", "relay"},
				Header:            "TLSGate-Verdict",
				Log:               newLogger(t),
			}
			if tc.cfg != nil {
				tc.cfg(&cfg)
			}
			tc.req.QueueID = "4XyZ1"
			d := milter.NewFilter(cfg).Decide(context.Background(), tc.req)
			checkDecision(t, d, tc.want)
			if got := src.Asked(); !slices.Equal(got, tc.want.asked) {
				t.Errorf("facts asked for %q; want %q", got, tc.want.asked)
			}
		})
	}
}

func checkDecision(t *testing.T, d milter.Decision, w want) {
	t.Helper()
	if d.Outcome != w.outcome {
		t.Errorf("outcome %s (%q); want %s", d.Outcome, d.Reply.String(), w.outcome)
	}
	if w.outcome == milter.Accept {
		if d.Reply.Code != 0 || d.Reply.Enhanced != "" || len(d.Reply.Parts) != 0 {
			t.Errorf("accepted with a reply %q", d.Reply.String())
		}
	} else if got := d.Reply.String(); got != w.reply {
		t.Errorf("reply\n%q\nwant\n%q", got, w.reply)
	}
	switch d.Outcome {
	case milter.Tempfail:
		if d.Reply.Code/100 != 4 {
			t.Errorf("tempfail with a %d reply", d.Reply.Code)
		}
	case milter.Reject:
		if d.Reply.Code/100 != 5 {
			t.Errorf("reject with a %d reply", d.Reply.Code)
		}
	}
	if d.Rule != w.rule {
		t.Errorf("rule %q; want %q", d.Rule, w.rule)
	}
	if d.Checked != w.checked {
		t.Errorf("Checked %v; want %v", d.Checked, w.checked)
	}
	if w.checked {
		if got := d.Verdict.Status.String(); got != w.status {
			t.Errorf("verdict status %s (%s: %s); want %s", got, d.Verdict.Reason, d.Verdict.Detail, w.status)
		}
		level := w.level
		if level == "" {
			level = "encrypt"
		}
		if got := d.Verdict.Level.String(); got != level {
			t.Errorf("verdict level %s; want %s", got, level)
		}
	}
	if d.Skip != w.skip {
		t.Errorf("skip %q; want %q", d.Skip, w.skip)
	}
}

// TestDecidePanic: a panic below Decide tempfails the recipient and never passes it.
func TestDecidePanic(t *testing.T) {
	t.Parallel()
	f := milter.NewFilter(milter.Config{
		Policies: policySet(t, []entry{{"example.test", encrypt}}, nil),
		Facts:    panicSource{},
		Log:      newLogger(t),
	})
	d := f.Decide(context.Background(), milter.Request{Rcpt: "user@example.test"})
	if d.Outcome != milter.Tempfail {
		t.Errorf("outcome %s; want tempfail", d.Outcome)
	}
	// The domain requires encrypt: the reply says so (never "level none").
	const reply = "451 4.3.0 Mail to example.test requires encrypted delivery (TLS), but it could not be checked " +
		"because of a temporary local problem. Please try again later."
	if got := d.Reply.String(); got != reply {
		t.Errorf("reply\n%q\nwant\n%q", got, reply)
	}
	// The decision carries the verdict it replies for.
	v := d.Verdict
	if v.Status != verify.StatusTempfail || v.Reason != verify.ReasonInternal || v.Level != policy.LevelEncrypt {
		t.Errorf("verdict %s/%s at level %s; want tempfail/%s at level encrypt", v.Status, v.Reason, v.Level, verify.ReasonInternal)
	}
	if v.Domain == "" {
		t.Error("verdict without a domain")
	}
}

// TestDecideDeadline: a probe slower than rcpt_timeout gives "in progress" within the
// budget, and the FactSource gets a context bounded by it.
func TestDecideDeadline(t *testing.T) {
	t.Parallel()
	const budget = 100 * time.Millisecond
	src := &factSource{facts: map[string]*verify.Facts{"tls.test": tlsFacts("tls.test")}, block: make(chan struct{})}
	f := milter.NewFilter(milter.Config{
		Policies:    policySet(t, []entry{{"tls.test", encrypt}}, nil),
		Facts:       src,
		RcptTimeout: budget,
		Log:         newLogger(t),
	})
	start := time.Now()
	d := f.Decide(context.Background(), milter.Request{Rcpt: "user@tls.test"})
	took := time.Since(start)
	checkDecision(t, d, want{outcome: milter.Tempfail, checked: true, status: "tempfail", rule: "policy:tls.test",
		reply: "451 4.7.0 Mail to tls.test requires encrypted delivery (TLS); checking its mail servers is in progress. Please try again in a minute."})
	if took < budget || took > budget+2*time.Second {
		t.Errorf("Decide took %v; want about the RCPT budget %v", took, budget)
	}
	src.mu.Lock()
	budgets := slices.Clone(src.budgets)
	src.mu.Unlock()
	if len(budgets) != 1 || budgets[0] < 0 || budgets[0] > budget {
		t.Errorf("FactSource saw deadlines %v; want one within %v", budgets, budget)
	}

	// The probe finishes: the next recipient gets the verdict at once.
	close(src.block)
	d = f.Decide(context.Background(), milter.Request{Rcpt: "user@tls.test"})
	checkDecision(t, d, want{outcome: milter.Accept, checked: true, status: "pass", rule: "policy:tls.test"})
}

// TestDecideConcurrent runs many decisions at once on one Filter (run with -race).
func TestDecideConcurrent(t *testing.T) {
	t.Parallel()
	src := &factSource{facts: map[string]*verify.Facts{"example.test": noTLSFacts("example.test"), "tls.test": tlsFacts("tls.test")}}
	f := milter.NewFilter(milter.Config{
		Policies: policySet(t, []entry{{"example.test", encrypt}, {"tls.test", encrypt}}, []policy.Customer{acme}),
		Facts:    src,
		Log:      newLogger(t),
	})
	var wg sync.WaitGroup
	outcomes := make([]milter.Outcome, 64)
	for i := range outcomes {
		wg.Go(func() {
			rcpt := "user@tls.test"
			if i%2 == 1 {
				rcpt = "user@example.test"
			}
			outcomes[i] = f.Decide(context.Background(), milter.Request{Rcpt: rcpt, Sender: "alice@acme.example"}).Outcome
		})
	}
	wg.Wait()
	for i, o := range outcomes {
		want := milter.Accept
		if i%2 == 1 {
			want = milter.Reject
		}
		if o != want {
			t.Errorf("decision %d: %s; want %s", i, o, want)
		}
	}
}

// TestFilterUpdate: after Update (a reload) recipients are decided with the new
// policies; the facts source, and so the cache, stays.
func TestFilterUpdate(t *testing.T) {
	t.Parallel()
	src := &factSource{facts: map[string]*verify.Facts{"example.test": noTLSFacts("example.test")}}
	cfg := milter.Config{Policies: policySet(t, nil, nil), Facts: src, CheckedTransports: []string{"smtp"}, Log: newLogger(t)}
	f := milter.NewFilter(cfg)
	req := milter.Request{Rcpt: "<user@example.test>", Mailer: "smtp", MailerKnown: true}
	if d := f.Decide(context.Background(), req); d.Outcome != milter.Accept {
		t.Fatalf("without a policy: %s", d.Outcome)
	}
	cfg.Policies = policySet(t, []entry{{"example.test", encrypt}}, nil)
	f.Update(cfg)
	if d := f.Decide(context.Background(), req); d.Outcome != milter.Reject || d.Verdict.Reason != verify.ReasonSTARTTLSNotSupported {
		t.Errorf("after Update: %s %s; want a reject for starttls-not-supported", d.Outcome, d.Verdict.Reason)
	}
}

// TestDecisionLogKeys: every decision line has the same keys, whatever the outcome, and
// each key once: the required TLS level is tls_level, since slog's own severity is
// level (a JSON decoder keeps only the last of two equal keys). A recipient that is
// not checked is logged with its domain.
func TestDecisionLogKeys(t *testing.T) {
	t.Parallel()
	var jsonLog, textLog bytes.Buffer
	src := &factSource{facts: map[string]*verify.Facts{"example.test": noTLSFacts("example.test")}}
	for _, h := range []slog.Handler{slog.NewJSONHandler(&jsonLog, nil), slog.NewTextHandler(&textLog, nil)} {
		f := milter.NewFilter(milter.Config{Policies: policySet(t, []entry{{"example.test", encrypt}}, nil), Facts: src,
			CheckedTransports: []string{"smtp"}, Log: slog.New(h)})
		for _, r := range []milter.Request{
			{Rcpt: "<user@example.test>", Mailer: "smtp", MailerKnown: true},
			{Rcpt: "<>", Mailer: "smtp", MailerKnown: true},
			{Rcpt: "<user@[192.0.2.1]>", Mailer: "smtp", MailerKnown: true},
			{Rcpt: "<user@other.test>", Mailer: "smtp", MailerKnown: true},
			{Rcpt: "<user@Example.TEST>", Mailer: "local", MailerKnown: true},
		} {
			f.Decide(context.Background(), r)
		}
	}
	lines := strings.Split(strings.TrimSpace(jsonLog.String()), "\n")
	var want []string
	var records []map[string]any
	for i, line := range lines {
		m, err := fake.DecodeUniqueKeys(line)
		if err != nil {
			t.Fatalf("line %d: %v\n%s", i, err, line)
		}
		records = append(records, m)
		keys := slices.Sorted(maps.Keys(m))
		if i == 0 {
			want = keys
		} else if !slices.Equal(keys, want) {
			t.Errorf("line %d keys %q; line 0 has %q", i, keys, want)
		}
	}
	if len(want) < 15 || len(records) != 5 {
		t.Fatalf("%d lines, keys %q", len(records), want)
	}
	for i, w := range []struct{ level, tlsLevel, domain, skip string }{
		{"INFO", "encrypt", "example.test", ""},
		{"INFO", "", "", "null recipient"},
		{"INFO", "", "[192.0.2.1]", "address literal"},
		{"INFO", "none", "other.test", ""},
		{"INFO", "", "example.test", "transport local is not checked"},
	} {
		m := records[i]
		if m["level"] != w.level || m["tls_level"] != w.tlsLevel || m["domain"] != w.domain || m["skip"] != w.skip {
			t.Errorf("line %d: level=%v tls_level=%v domain=%v skip=%v; want %+v", i, m["level"], m["tls_level"], m["domain"], m["skip"], w)
		}
	}
	for i, line := range strings.Split(strings.TrimSpace(textLog.String()), "\n") {
		if strings.Count(line, " level=") != 1 || !strings.HasPrefix(line, "time=") || !strings.Contains(line, " tls_level=") {
			t.Errorf("text line %d: want one level (the severity) and a tls_level:\n%s", i, line)
		}
	}
}

// TestCheckedTransportPatterns: a customer's sender-dependent transport (smtp-encrypt)
// is checked with the default patterns; local transports are not.
func TestCheckedTransportPatterns(t *testing.T) {
	t.Parallel()
	src := &factSource{facts: map[string]*verify.Facts{"example.test": noTLSFacts("example.test")}}
	f := milter.NewFilter(milter.Config{Policies: policySet(t, []entry{{"example.test", encrypt}}, nil), Facts: src,
		CheckedTransports: []string{"smtp", "smtp-*", "relay"}, Log: newLogger(t)})
	for mailer, want := range map[string]milter.Outcome{"smtp": milter.Reject, "smtp-encrypt": milter.Reject, "relay": milter.Reject, "local": milter.Accept, "lmtp": milter.Accept, "smtpx": milter.Accept} {
		d := f.Decide(context.Background(), milter.Request{Rcpt: "<user@example.test>", Mailer: mailer, MailerKnown: true})
		if d.Outcome != want {
			t.Errorf("{rcpt_mailer}=%s: %s; want %s", mailer, d.Outcome, want)
		}
	}
}

// TestDecideAlsoRequirement: a customer's verify does not override a domain's
// fingerprint pin: both must pass, and the one that fails decides, with its rule.
func TestDecideAlsoRequirement(t *testing.T) {
	t.Parallel()
	facts := tlsFacts("example.test") // verifies, names mx1.example.test
	pin := policy.Policy{Level: policy.LevelFingerprint, Match: []string{"00:11:22"}}
	src := &factSource{facts: map[string]*verify.Facts{"example.test": facts}}
	secureCustomer := policy.Customer{Name: "strict", SASLLogins: []string{"strict"}, Level: policy.LevelVerify}
	f := milter.NewFilter(milter.Config{Policies: policySet(t, []entry{{"example.test", pin}}, []policy.Customer{secureCustomer}),
		Facts: src, CheckedTransports: []string{"smtp"}, Log: newLogger(t)})
	d := f.Decide(context.Background(), milter.Request{Rcpt: "<user@example.test>", SASLLogin: "strict"})
	if d.Outcome != milter.Reject || d.Verdict.Level != policy.LevelFingerprint || d.Verdict.Reason != verify.ReasonFingerprintMismatch || d.Rule != "policy:example.test" {
		t.Errorf("got %s %s/%s rule %q; want a reject for the domain's pin", d.Outcome, d.Verdict.Level, d.Verdict.Reason, d.Rule)
	}
	// Without the customer, the pin alone decides the same way; with a matching pin
	// both pass and the customer's (winning) rule is recorded.
	pin.Match = []string{fingerprint.Of(facts.Attempts[0].Result.Chain[0].Raw)}
	f.Update(milter.Config{Policies: policySet(t, []entry{{"example.test", pin}}, []policy.Customer{secureCustomer}),
		Facts: src, CheckedTransports: []string{"smtp"}, Log: newLogger(t)})
	d = f.Decide(context.Background(), milter.Request{Rcpt: "<user@example.test>", SASLLogin: "strict"})
	if d.Outcome != milter.Accept || d.Rule != "customer:strict" {
		t.Errorf("got %s rule %q (%s); want accept under the customer's rule", d.Outcome, d.Rule, d.Verdict.Detail)
	}
}

// TestDecideInvalidPolicy: a tls_policy entry Postfix refuses makes Postfix defer the
// mail, whatever the level; tlsgate tempfails without probing, and the sender is not
// told the local file and line.
func TestDecideInvalidPolicy(t *testing.T) {
	t.Parallel()
	for _, level := range []policy.Level{policy.LevelMay, policy.LevelEncrypt} {
		src := &factSource{facts: map[string]*verify.Facts{"example.test": tlsFacts("example.test")}}
		bad := policy.Policy{Level: level, Invalid: `unknown attribute "foo" kept`, Source: "/etc/postfix/tls_policy:7"}
		f := milter.NewFilter(milter.Config{Policies: policySet(t, []entry{{"example.test", bad}}, nil), Facts: src,
			CheckedTransports: []string{"smtp"}, Log: newLogger(t)})
		d := f.Decide(context.Background(), milter.Request{Rcpt: "<user@example.test>"})
		if d.Outcome != milter.Tempfail || d.Reply.Code != 451 || d.Reply.Enhanced != "4.7.5" || d.Verdict.Reason != verify.ReasonPolicyInvalid {
			t.Errorf("%s: %s %s; want 451 4.7.5 policy-invalid", level, d.Outcome, d.Reply)
		}
		if strings.Contains(d.Reply.String(), "tls_policy:7") || strings.Contains(d.Reply.String(), "unknown attribute") || len(src.Asked()) != 0 {
			t.Errorf("%s: reply %q, asked %q; want no local detail and no probe", level, d.Reply, src.Asked())
		}
	}
}

// TestNextHopJudged: Postfix delivers to {rcpt_host} and looks the TLS policy up by it
// (postconf(5) smtp_tls_policy_maps: "the full next-hop destination"), so tlsgate
// judges the next hop's facts under the next hop's entry: the recipient domain's entry
// does not apply when mail goes elsewhere, and a customer's level applies to the next
// hop. The reply and header name the recipient domain; the header adds next_hop=.
func TestNextHopJudged(t *testing.T) {
	t.Parallel()
	const gw = "[gw.example.test]:2525"
	src := &factSource{facts: map[string]*verify.Facts{
		"example.test":   tlsFacts("example.test"),
		"nomx.test":      noTLSFacts("nomx.test"),
		gw:               noTLSFacts(gw),
		"[ok.gw.test]":   tlsFacts("[ok.gw.test]"),
		"relay.test":     noTLSFacts("relay.test"),
		"relay.test:587": tlsFacts("relay.test:587"),
	}}
	set := policySet(t, []entry{{"example.test", encrypt}, {"nomx.test", encrypt}, {".test", encrypt}}, []policy.Customer{acme})
	if _, err := set.Table.AddNextHop("[GW.example.test]:2525", encrypt); err != nil {
		t.Fatal(err)
	}
	f := milter.NewFilter(milter.Config{Policies: set, Facts: src, CheckedTransports: []string{"smtp"}, Log: newLogger(t)})
	tests := []struct {
		name, rcpt, hop, sender string
		outcome                 milter.Outcome
		asked, nextHop, rule    string
	}{
		{"own MX passes, next hop fails", "u@example.test", "[gw.example.test]:2525", "", milter.Reject, gw, gw, "policy:" + gw},
		{"own MX fails, next hop passes (no entry: nothing required)", "u@nomx.test", "[ok.gw.test]", "", milter.Accept, "", "", ""},
		{"own MX fails, next hop passes at a customer's level", "u@nomx.test", "[ok.gw.test]", "x@acme.example", milter.Accept, "[ok.gw.test]", "[ok.gw.test]", "customer:acme"},
		{"next hop is the recipient domain", "u@example.test", "Example.TEST.", "", milter.Accept, "example.test", "", "policy:example.test"},
		{"no {rcpt_host}", "u@nomx.test", "", "", milter.Reject, "nomx.test", "", "policy:nomx.test"},
		{"next-hop domain: its MX, parent entry", "u@example.test", "relay.test", "", milter.Reject, "relay.test", "relay.test", "policy:.test"},
		{"host:port: no entry (looked up once, verbatim)", "u@nomx.test", "relay.test:587", "x@acme.example", milter.Accept, "relay.test:587", "relay.test:587", "customer:acme"},
		{"unusable {rcpt_host}: the recipient domain", "u@nomx.test", "[bad host]", "", milter.Reject, "nomx.test", "", "policy:nomx.test"},
	}
	for _, tc := range tests {
		before := len(src.Asked())
		d := f.Decide(context.Background(), milter.Request{Rcpt: tc.rcpt, NextHop: tc.hop, Sender: tc.sender, Mailer: "smtp", MailerKnown: true})
		asked := ""
		if a := src.Asked(); len(a) > before {
			asked = a[before]
		}
		if d.Outcome != tc.outcome || asked != tc.asked || d.Verdict.NextHop != tc.nextHop || d.Rule != tc.rule {
			t.Errorf("%s: %s, asked %q, next hop %q, rule %q; want %s, %q, %q, %q (%s)", tc.name, d.Outcome, asked,
				d.Verdict.NextHop, d.Rule, tc.outcome, tc.asked, tc.nextHop, tc.rule, d.Reply)
		}
		_, dom, _ := strings.Cut(tc.rcpt, "@")
		if d.Checked && d.Verdict.Domain != dom {
			t.Errorf("%s: verdict domain %q; want the recipient domain", tc.name, d.Verdict.Domain)
		}
		if d.Outcome == milter.Reject && !strings.Contains(d.Reply.String(), "Mail to "+dom+" ") {
			t.Errorf("%s: reply %q", tc.name, d.Reply)
		}
		if tc.nextHop != "" && d.Checked {
			if h := milter.HeaderValue(d.Verdict, d.Rule); !strings.Contains(h, "; next_hop="+tc.nextHop+";") {
				t.Errorf("%s: header %q", tc.name, h)
			}
		}
	}
}
