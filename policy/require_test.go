package policy

import (
	"net/netip"
	"reflect"
	"strings"
	"testing"
)

func TestSetRequire(t *testing.T) {
	t.Parallel()
	tab := NewTable()
	for _, e := range []Entry{
		{"example.com", Policy{Level: LevelEncrypt, Source: "/etc/postfix/tls_policy:1"}},
		{".example.com", Policy{Level: LevelSecure, Match: []string{".example.com"}, OnFail: ActionTempfail, Source: "/etc/postfix/tls_policy:3"}},
		{"weak.example", Policy{Level: LevelMay, Source: "config policies[0]"}},
		{"verify.example", Policy{Level: LevelVerify, Attrs: map[string]string{"ciphers": "high"}, Source: "config policies[1]"}},
		{"nosource.example", Policy{Level: LevelDane}},
	} {
		if _, err := tab.Add(e.Key, e.Policy); err != nil {
			t.Fatal(err)
		}
	}
	cs := mustCustomers(t,
		Customer{Name: "acme", Senders: []string{"acme.example"}, Level: LevelVerify, OnFail: ActionHeader},
		Customer{Name: "low", SASLLogins: []string{"low"}, Level: LevelEncrypt, OnTempfail: ActionHeader},
		Customer{Name: "off", ClientNetworks: []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")}, Level: LevelNone},
	)
	full := &Set{Table: tab, Customers: cs}

	domainPolicy := func(domain string) Policy {
		p, ok := tab.Lookup(domain)
		if !ok {
			t.Fatalf("no table entry for %q", domain)
		}
		return p
	}
	none := Requirement{Policy: Policy{Level: LevelNone}}

	tests := []struct {
		name string
		set  *Set
		req  Request
		want Requirement
	}{
		{
			name: "nil set",
			set:  nil,
			req:  Request{RecipientDomain: "example.com", SenderDomain: "acme.example"},
			want: none,
		},
		{
			name: "empty set",
			set:  &Set{},
			req:  Request{RecipientDomain: "example.com", SenderDomain: "acme.example"},
			want: none,
		},
		{
			name: "nothing applies",
			set:  full,
			req:  Request{RecipientDomain: "example.org", SenderDomain: "other.example"},
			want: none,
		},
		{
			name: "domain policy only, exact",
			set:  full,
			req:  Request{RecipientDomain: "Example.COM.", SenderDomain: "other.example"},
			want: Requirement{Policy: domainPolicy("example.com"), Rule: Rule{Key: "example.com", Source: "/etc/postfix/tls_policy:1"}},
		},
		{
			name: "domain policy only, parent, with match and action",
			set:  full,
			req:  Request{RecipientDomain: "mx.example.com"},
			want: Requirement{Policy: domainPolicy("mx.example.com"), Rule: Rule{Key: ".example.com", Source: "/etc/postfix/tls_policy:3"}},
		},
		{
			name: "domain policy without source",
			set:  full,
			req:  Request{RecipientDomain: "nosource.example"},
			want: Requirement{Policy: domainPolicy("nosource.example"), Rule: Rule{Key: "nosource.example"}},
		},
		{
			name: "table only set",
			set:  &Set{Table: tab},
			req:  Request{RecipientDomain: "example.com", SenderDomain: "acme.example"},
			want: Requirement{Policy: domainPolicy("example.com"), Rule: Rule{Key: "example.com", Source: "/etc/postfix/tls_policy:1"}},
		},
		{
			name: "customer only",
			set:  full,
			req:  Request{RecipientDomain: "example.org", SenderDomain: "acme.example"},
			want: Requirement{
				Policy:   Policy{Level: LevelVerify, OnFail: ActionHeader, Source: "customer acme"},
				Rule:     Rule{Customer: "acme"},
				Customer: "acme",
			},
		},
		{
			name: "customers only set",
			set:  &Set{Customers: cs},
			req:  Request{RecipientDomain: "example.com", SASLLogin: "low"},
			want: Requirement{
				Policy:   Policy{Level: LevelEncrypt, OnTempfail: ActionHeader, Source: "customer low"},
				Rule:     Rule{Customer: "low"},
				Customer: "low",
			},
		},
		{
			name: "customer stricter than domain",
			set:  full,
			req:  Request{RecipientDomain: "example.com", SenderDomain: "acme.example"}, // encrypt vs verify
			want: Requirement{
				Policy:   Policy{Level: LevelVerify, OnFail: ActionHeader, Source: "customer acme"},
				Rule:     Rule{Customer: "acme"},
				Customer: "acme",
			},
		},
		{
			name: "customer stricter than a weak domain policy",
			set:  full,
			req:  Request{RecipientDomain: "weak.example", SASLLogin: "low"}, // may vs encrypt
			want: Requirement{
				Policy:   Policy{Level: LevelEncrypt, OnTempfail: ActionHeader, Source: "customer low"},
				Rule:     Rule{Customer: "low"},
				Customer: "low",
			},
		},
		{
			name: "domain stricter than customer",
			set:  full,
			req:  Request{RecipientDomain: "mx.example.com", SenderDomain: "acme.example"}, // secure vs verify
			want: Requirement{Policy: domainPolicy("mx.example.com"), Rule: Rule{Key: ".example.com", Source: "/etc/postfix/tls_policy:3"}, Customer: "acme"},
		},
		{
			name: "equal levels: domain policy wins",
			set:  full,
			req:  Request{RecipientDomain: "verify.example", SenderDomain: "acme.example"}, // verify vs verify
			want: Requirement{Policy: domainPolicy("verify.example"), Rule: Rule{Key: "verify.example", Source: "config policies[1]"}, Customer: "acme"},
		},
		{
			name: "equal levels encrypt: domain policy wins",
			set:  full,
			req:  Request{RecipientDomain: "example.com", SASLLogin: "low"},
			want: Requirement{Policy: domainPolicy("example.com"), Rule: Rule{Key: "example.com", Source: "/etc/postfix/tls_policy:1"}, Customer: "low"},
		},
		{
			name: "customer at level none does not lower a domain policy",
			set:  full,
			req:  Request{RecipientDomain: "weak.example", ClientIP: netip.MustParseAddr("192.0.2.9")},
			want: Requirement{Policy: domainPolicy("weak.example"), Rule: Rule{Key: "weak.example", Source: "config policies[0]"}, Customer: "off"},
		},
		{
			name: "customer at level none alone",
			set:  full,
			req:  Request{RecipientDomain: "example.org", ClientIP: netip.MustParseAddr("192.0.2.9")},
			want: Requirement{Policy: Policy{Level: LevelNone, Source: "customer off"}, Rule: Rule{Customer: "off"}, Customer: "off"},
		},
		{
			name: "invalid recipient domain, customer applies",
			set:  full,
			req:  Request{RecipientDomain: "[192.0.2.1]", SenderDomain: "acme.example"},
			want: Requirement{
				Policy:   Policy{Level: LevelVerify, OnFail: ActionHeader, Source: "customer acme"},
				Rule:     Rule{Customer: "acme"},
				Customer: "acme",
			},
		},
		{
			name: "invalid recipient domain, nothing applies",
			set:  full,
			req:  Request{RecipientDomain: "[192.0.2.1]"},
			want: none,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := tt.set.Require(tt.req)
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Require(%+v) =\n  %+v\nwant\n  %+v", tt.req, got, tt.want)
			}
		})
	}
}

// TestSetRequireStricterBothWays checks every pair of levels: the customer
// wins exactly when its level is stricter.
func TestSetRequireStricterBothWays(t *testing.T) {
	t.Parallel()
	// In order of strictness: published requires nothing of a domain that publishes
	// nothing, so it ranks below encrypt.
	levels := []Level{LevelNone, LevelMay, LevelPublished, LevelEncrypt, LevelDane, LevelDaneOnly, LevelFingerprint, LevelVerify, LevelSecure}
	for di, dom := range levels {
		for ci, cust := range levels {
			tab := NewTable()
			if _, err := tab.Add("example.com", Policy{Level: dom, Source: "t:1"}); err != nil {
				t.Fatal(err)
			}
			cs := mustCustomers(t, Customer{Name: "c", SASLLogins: []string{"c"}, Level: cust})
			got := (&Set{Table: tab, Customers: cs}).Require(Request{RecipientDomain: "example.com", SASLLogin: "c"})
			wantLevel, wantRule := dom, "policy example.com (t:1)"
			if ci > di {
				wantLevel, wantRule = cust, "customer c"
			}
			if got.Policy.Level != wantLevel || got.Rule.String() != wantRule || got.Customer != "c" {
				t.Errorf("domain %s, customer %s: got level %s rule %q customer %q; want %s %q",
					dom, cust, got.Policy.Level, got.Rule, got.Customer, wantLevel, wantRule)
			}
		}
	}
}

// TestSetRequireAlso: when the losing requirement checks something the winner does not
// (TLSA, a pin, what the domain publishes), it is returned as Also, to be met too.
func TestSetRequireAlso(t *testing.T) {
	t.Parallel()
	tests := []struct {
		dom, cust  Level
		winner     Level
		also       Level // -1: none
		alsoSource string
	}{
		{LevelFingerprint, LevelSecure, LevelSecure, LevelFingerprint, "t:1"},
		{LevelDaneOnly, LevelVerify, LevelVerify, LevelDaneOnly, "t:1"},
		{LevelDane, LevelSecure, LevelSecure, LevelDane, "t:1"},
		{LevelSecure, LevelPublished, LevelSecure, LevelPublished, "customer c"},
		{LevelEncrypt, LevelVerify, LevelVerify, -1, ""},
		{LevelSecure, LevelVerify, LevelSecure, -1, ""},
		{LevelVerify, LevelSecure, LevelSecure, -1, ""},
		{LevelDane, LevelDane, LevelDane, -1, ""},
		{LevelMay, LevelFingerprint, LevelFingerprint, -1, ""},
	}
	for _, tc := range tests {
		tab := NewTable()
		if _, err := tab.Add("example.com", Policy{Level: tc.dom, Source: "t:1"}); err != nil {
			t.Fatal(err)
		}
		cs := mustCustomers(t, Customer{Name: "c", SASLLogins: []string{"c"}, Level: tc.cust})
		got := (&Set{Table: tab, Customers: cs}).Require(Request{RecipientDomain: "example.com", SASLLogin: "c"})
		if got.Policy.Level != tc.winner {
			t.Errorf("domain %s, customer %s: winner %s; want %s", tc.dom, tc.cust, got.Policy.Level, tc.winner)
		}
		switch {
		case tc.also < 0 && got.Also != nil:
			t.Errorf("domain %s, customer %s: also %s (%s); want none", tc.dom, tc.cust, got.Also.Level, got.AlsoRule)
		case tc.also >= 0 && (got.Also == nil || got.Also.Level != tc.also || got.Also.Source != tc.alsoSource):
			t.Errorf("domain %s, customer %s: also %+v; want %s from %s", tc.dom, tc.cust, got.Also, tc.also, tc.alsoSource)
		}
	}
}

// TestSetRequireInvalid: an invalid domain policy is reported whichever requirement wins.
func TestSetRequireInvalid(t *testing.T) {
	t.Parallel()
	tab := NewTable()
	if _, err := tab.Add("example.com", Policy{Level: LevelEncrypt, Invalid: "bad", Source: "t:1"}); err != nil {
		t.Fatal(err)
	}
	cs := mustCustomers(t, Customer{Name: "c", SASLLogins: []string{"c"}, Level: LevelSecure})
	s := &Set{Table: tab, Customers: cs}
	for _, login := range []string{"", "c"} {
		got := s.Require(Request{RecipientDomain: "example.com", SASLLogin: login})
		if got.Invalid != "bad" || !strings.HasPrefix(got.InvalidRule.String(), "policy example.com") {
			t.Errorf("login %q: Invalid %q rule %q", login, got.Invalid, got.InvalidRule)
		}
	}
	if got := s.Require(Request{RecipientDomain: "other.com", SASLLogin: "c"}); got.Invalid != "" {
		t.Errorf("other domain: Invalid %q", got.Invalid)
	}
}

// TestRuleNames: a rule has one name in words (logs, tlsgate config check) and one
// compact (the audit header, reports, the socketmap's log).
func TestRuleNames(t *testing.T) {
	t.Parallel()
	tests := []struct {
		r         Rule
		text, tag string
	}{
		{Rule{}, "none", ""},
		{Rule{Customer: "acme"}, "customer acme", "customer:acme"},
		{Rule{Key: ".example.com", Source: "/etc/postfix/tls_policy:3"}, "policy .example.com (/etc/postfix/tls_policy:3)", "policy:.example.com"},
		{Rule{Key: "[gw.example]:2525"}, "policy [gw.example]:2525", "policy:[gw.example]:2525"},
	}
	for _, tc := range tests {
		if got := tc.r.String(); got != tc.text {
			t.Errorf("%+v.String() = %q; want %q", tc.r, got, tc.text)
		}
		if got := tc.r.Tag(); got != tc.tag {
			t.Errorf("%+v.Tag() = %q; want %q", tc.r, got, tc.tag)
		}
	}
}
