package policy_test

import (
	"fmt"
	"net/netip"
	"testing"

	"github.com/tlsgate/tlsgate/policy"
)

// benchSet is a policy set like a large site's: n tls_policy entries (7 in 10 exact
// domains, 3 in 10 ".parent" keys, levels mixed, every entry with its source line, one
// in 20 with match= names) and customers toggles with a sender domain and its
// subdomains, a SASL login and a client network each.
func benchSet(b *testing.B, n, customers int) *policy.Set {
	b.Helper()
	tab := policy.NewTable()
	levels := []policy.Level{policy.LevelEncrypt, policy.LevelVerify, policy.LevelSecure, policy.LevelDane, policy.LevelMay}
	for i := range n {
		key := fmt.Sprintf("dom%d.policy.test", i)
		if i%10 >= 7 {
			key = fmt.Sprintf(".zone%d.policy.test", i)
		}
		p := policy.Policy{Level: levels[i%len(levels)], Source: fmt.Sprintf("/etc/postfix/tls_policy:%d", i+1)}
		if i%20 == 0 {
			p.Match = []string{"hostname", "nexthop"}
		}
		if _, err := tab.Add(key, p); err != nil {
			b.Fatal(err)
		}
	}
	cs := make([]policy.Customer, customers)
	for i := range cs {
		cs[i] = policy.Customer{
			Name:           fmt.Sprintf("cust%d", i),
			Senders:        []string{fmt.Sprintf("cust%d.example", i), fmt.Sprintf(".cust%d.example", i)},
			SASLLogins:     []string{fmt.Sprintf("cust%d", i)},
			ClientNetworks: []netip.Prefix{netip.PrefixFrom(netip.AddrFrom4([4]byte{198, 51, 100, byte(i)}), 32)},
			Level:          policy.LevelEncrypt,
		}
	}
	c, err := policy.NewCustomers(cs)
	if err != nil {
		b.Fatal(err)
	}
	return &policy.Set{Table: tab, Customers: c}
}

// BenchmarkSetRequire is step 2 of every RCPT: the required level for a recipient,
// from a 10,000-entry table and the customer toggles.
func BenchmarkSetRequire(b *testing.B) {
	client := netip.MustParseAddr("192.0.2.10")
	cases := []struct {
		name      string
		customers int
		r         policy.Request
		want      string // Rule prefix
	}{
		{"exact/customers=20", 20, policy.Request{RecipientDomain: "dom4242.policy.test", SenderDomain: "sender.example", ClientIP: client}, "policy dom4242"},
		{"parent/customers=20", 20, policy.Request{RecipientDomain: "mx.a.zone4247.policy.test", SenderDomain: "sender.example", ClientIP: client}, "policy .zone4247"},
		{"miss/customers=20", 20, policy.Request{RecipientDomain: "mail.user.gmail.example", SenderDomain: "sender.example", ClientIP: client}, "none"},
		{"customer/customers=20", 20, policy.Request{RecipientDomain: "gmail.example", SenderDomain: "shop.cust17.example", ClientIP: client}, "customer cust17"},
		{"exact/customers=0", 0, policy.Request{RecipientDomain: "dom4242.policy.test", SenderDomain: "sender.example", ClientIP: client}, "policy dom4242"},
		{"exact/customers=200", 200, policy.Request{RecipientDomain: "dom4242.policy.test", SenderDomain: "sender.example", ClientIP: client}, "policy dom4242"},
	}
	sets := map[int]*policy.Set{}
	for _, tc := range cases {
		if sets[tc.customers] == nil {
			sets[tc.customers] = benchSet(b, 10000, tc.customers)
		}
		set := sets[tc.customers]
		b.Run(tc.name, func(b *testing.B) {
			if got := set.Require(tc.r).Rule.String(); len(got) < len(tc.want) || got[:len(tc.want)] != tc.want {
				b.Fatalf("Rule %q, want %q...", got, tc.want)
			}
			b.ReportAllocs()
			for b.Loop() {
				set.Require(tc.r)
			}
		})
	}
}

// BenchmarkTableLookup is the table part of Require alone.
func BenchmarkTableLookup(b *testing.B) {
	tab := benchSet(b, 10000, 0).Table
	for _, d := range []string{"dom4242.policy.test", "mx.a.zone4247.policy.test", "DOM4242.Policy.Test.", "mail.user.gmail.example"} {
		b.Run(d, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				tab.Lookup(d)
			}
		})
	}
}
