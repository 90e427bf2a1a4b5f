package policy_test

import (
	"fmt"
	"net/netip"
	"strings"

	"github.com/tlsgate/tlsgate/policy"
)

func ExampleTable_Lookup() {
	tab := policy.NewTable()
	tab.Add("example.com", policy.Policy{Level: policy.LevelEncrypt})
	tab.Add(".example.com", policy.Policy{Level: policy.LevelSecure, Match: []string{".example.com"}})
	tab.Add("bücher.example", policy.Policy{Level: policy.LevelVerify})

	for _, d := range []string{"example.com", "mx.a.example.com", "XN--BCHER-KVA.example.", "example.org"} {
		p, ok := tab.Lookup(d)
		fmt.Printf("%-24s %-5v %-22s %s\n", d, ok, p.Key, p.Level)
	}
	// Output:
	// example.com              true  example.com            encrypt
	// mx.a.example.com         true  .example.com           secure
	// XN--BCHER-KVA.example.   true  xn--bcher-kva.example  verify
	// example.org              false                        none
}

func ExampleParseFile() {
	const src = `# /etc/postfix/tls_policy
example.com     encrypt
.example.net    secure match=nexthop:dot-nexthop
thumb.example   fingerprint
        match=D7:58:57:2D:7E:61:57:ED:2A:0A:57:4C:D9:6D:F7:B9:2E:9F:5D:12:02:49:2C:07:51:9A:01:90:DF:54:9B:C9
[mx.example.org]:587  verify
`
	// The next-hop entry is not among the domain entries (it never matches a
	// recipient domain); Table.LookupNextHop serves it to the socketmap.
	entries, warnings, err := policy.ParseFile(strings.NewReader(src), "tls_policy")
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, e := range entries {
		fmt.Println(e.Key, e.Policy.Level, e.Policy.Match, e.Policy.Source)
	}
	for _, w := range warnings {
		fmt.Println(w)
	}
	// Output:
	// example.com encrypt [] tls_policy:2
	// .example.net secure [nexthop dot-nexthop] tls_policy:3
	// thumb.example fingerprint [D7:58:57:2D:7E:61:57:ED:2A:0A:57:4C:D9:6D:F7:B9:2E:9F:5D:12:02:49:2C:07:51:9A:01:90:DF:54:9B:C9] tls_policy:4
}

func ExampleSet_Require() {
	tab := policy.NewTable()
	tab.Add("example.com", policy.Policy{Level: policy.LevelEncrypt, Source: "/etc/postfix/tls_policy:2"})
	customers, err := policy.NewCustomers([]policy.Customer{{
		Name:           "acme",
		Senders:        []string{"acme.example", ".acme.example"},
		ClientNetworks: []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")},
		Level:          policy.LevelVerify,
	}})
	if err != nil {
		fmt.Println(err)
		return
	}
	set := &policy.Set{Table: tab, Customers: customers}

	for _, r := range []policy.Request{
		{RecipientDomain: "example.com", SenderDomain: "other.example"},
		{RecipientDomain: "example.com", SenderDomain: "mail.acme.example"},
		{RecipientDomain: "example.org", ClientIP: netip.MustParseAddr("192.0.2.10")},
		{RecipientDomain: "example.org"},
	} {
		req := set.Require(r)
		fmt.Printf("%s: %s\n", req.Policy.Level, req.Rule)
	}
	// Output:
	// encrypt: policy example.com (/etc/postfix/tls_policy:2)
	// verify: customer acme
	// verify: customer acme
	// none: none
}
