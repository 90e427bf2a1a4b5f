package policy

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
)

func mustCustomers(t *testing.T, cs ...Customer) *Customers {
	t.Helper()
	c, err := NewCustomers(cs)
	if err != nil {
		t.Fatalf("NewCustomers: %v", err)
	}
	return c
}

func testCustomers(t *testing.T) *Customers {
	t.Helper()
	return mustCustomers(t,
		Customer{Name: "acme", Senders: []string{"acme.example", ".acme.example"}, Level: LevelEncrypt, OnFail: ActionHeader},
		Customer{Name: "exact", Senders: []string{"Exact.Example."}, Level: LevelVerify},
		Customer{Name: "beta", SASLLogins: []string{"beta", "Beta2"}, Level: LevelVerify, OnTempfail: ActionHeader},
		Customer{Name: "gamma", ClientNetworks: []netip.Prefix{
			netip.MustParsePrefix("192.0.2.0/24"),
			netip.MustParsePrefix("2001:db8:1::/48"),
		}, Level: LevelSecure},
		Customer{Name: "idn", Senders: []string{"bücher.example", ".xn--caf-dma.example"}, Level: LevelDane},
		// "shared.example" is claimed by two customers: the first wins.
		Customer{Name: "first", Senders: []string{"shared.example"}, Level: LevelMay},
		Customer{Name: "second", Senders: []string{"shared.example"}, SASLLogins: []string{"second"}, Level: LevelSecure},
		// Unmasked prefix: host bits are ignored.
		Customer{Name: "unmasked", ClientNetworks: []netip.Prefix{netip.MustParsePrefix("198.51.100.77/25")}, Level: LevelEncrypt},
	)
}

func TestCustomersMatch(t *testing.T) {
	t.Parallel()
	cs := testCustomers(t)
	ip := netip.MustParseAddr
	tests := []struct {
		name   string
		sender string
		login  string
		client netip.Addr
		want   string // customer name, "" for no match
	}{
		{"sender exact", "acme.example", "", netip.Addr{}, "acme"},
		{"sender subdomain", "mail.acme.example", "", netip.Addr{}, "acme"},
		{"sender deep subdomain", "a.b.acme.example", "", netip.Addr{}, "acme"},
		{"sender case and trailing dot", "ACME.Example.", "", netip.Addr{}, "acme"},
		{"sender label boundary", "notacme.example", "", netip.Addr{}, ""},
		{"sender under another TLD", "acme.example.org", "", netip.Addr{}, ""},
		{"exact-only sender", "exact.example", "", netip.Addr{}, "exact"},
		{"exact-only sender does not match subdomains", "mx.exact.example", "", netip.Addr{}, ""},
		{"IDN sender written as U-label, given as A-label", "xn--bcher-kva.example", "", netip.Addr{}, "idn"},
		{"IDN sender written as U-label, given as U-label", "Bücher.example", "", netip.Addr{}, "idn"},
		{"IDN parent written as A-label, given as U-label", "mail.café.example", "", netip.Addr{}, "idn"},
		{"SASL login", "", "beta", netip.Addr{}, "beta"},
		{"second SASL login", "", "Beta2", netip.Addr{}, "beta"},
		{"SASL login is case-sensitive", "", "BETA", netip.Addr{}, ""},
		{"SASL login is exact", "", "beta ", netip.Addr{}, ""},
		{"client IPv4", "", "", ip("192.0.2.77"), "gamma"},
		{"client IPv4 outside", "", "", ip("192.0.3.1"), ""},
		{"client IPv6", "", "", ip("2001:db8:1:ff::1"), "gamma"},
		{"client IPv6 outside", "", "", ip("2001:db8:2::1"), ""},
		{"client IPv4-mapped IPv6", "", "", ip("::ffff:192.0.2.5"), "gamma"},
		{"client IPv6 with zone", "", "", ip("2001:db8:1::1%eth0"), "gamma"},
		{"client in unmasked prefix", "", "", ip("198.51.100.1"), "unmasked"},
		{"client outside unmasked prefix", "", "", ip("198.51.100.200"), ""},
		{"null sender, nothing else", "", "", netip.Addr{}, ""},
		{"null sender, login", "", "beta", netip.Addr{}, "beta"},
		{"null sender, network", "", "", ip("192.0.2.1"), "gamma"},
		{"invalid sender domain, network", "[192.0.2.1]", "", ip("192.0.2.1"), "gamma"},
		{"invalid sender domain alone", "exa mple.com", "", netip.Addr{}, ""},
		{"unknown sender, login and network", "other.example", "nobody", ip("203.0.113.1"), ""},
		{"config order: sender acme before login beta", "acme.example", "beta", netip.Addr{}, "acme"},
		{"config order: login beta before network gamma", "", "beta", ip("192.0.2.1"), "beta"},
		{"config order: network gamma before sender of a later customer", "shared.example", "", ip("192.0.2.1"), "gamma"},
		{"config order: first of two customers with the same sender", "shared.example", "", netip.Addr{}, "first"},
		{"any selector suffices: login of the second", "other.example", "second", netip.Addr{}, "second"},
	}
	for _, tt := range tests {
		c, ok := cs.Match(tt.sender, tt.login, tt.client)
		switch {
		case tt.want == "" && ok:
			t.Errorf("%s: Match(%q, %q, %v) = %q, want no match", tt.name, tt.sender, tt.login, tt.client, c.Name)
		case tt.want != "" && (!ok || c.Name != tt.want):
			t.Errorf("%s: Match(%q, %q, %v) = %q, %v; want %q", tt.name, tt.sender, tt.login, tt.client, c.Name, ok, tt.want)
		}
	}
}

func TestCustomersMatchReturnsCustomer(t *testing.T) {
	t.Parallel()
	cs := testCustomers(t)
	c, ok := cs.Match("acme.example", "", netip.Addr{})
	if !ok {
		t.Fatal("no match")
	}
	if c.Level != LevelEncrypt || c.OnFail != ActionHeader || c.OnTempfail != ActionDefault {
		t.Errorf("Match = %+v, want acme's level and actions", c)
	}
	// The result is a copy: changing it does not change later matches.
	c.Senders[0] = "changed.example"
	c2, ok := cs.Match("acme.example", "", netip.Addr{})
	if !ok || c2.Senders[0] != "acme.example" {
		t.Errorf("Match after modifying a result = %+v, %v", c2, ok)
	}
}

func TestCustomersInputCopied(t *testing.T) {
	t.Parallel()
	in := []Customer{{Name: "acme", Senders: []string{"acme.example"}, SASLLogins: []string{"acme"}, Level: LevelEncrypt}}
	cs := mustCustomers(t, in...)
	in[0].Senders[0] = "other.example"
	in[0].SASLLogins[0] = "other"
	in[0].Name = "changed"
	c, ok := cs.Match("acme.example", "", netip.Addr{})
	if !ok || c.Name != "acme" || c.Senders[0] != "acme.example" {
		t.Errorf("Match = %+v, %v; want the customer as given to NewCustomers", c, ok)
	}
	if _, ok := cs.Match("", "acme", netip.Addr{}); !ok {
		t.Error("login no longer matches after the caller changed its slice")
	}
}

func TestCustomersNil(t *testing.T) {
	t.Parallel()
	var cs *Customers
	if _, ok := cs.Match("acme.example", "acme", netip.MustParseAddr("192.0.2.1")); ok || cs.Len() != 0 {
		t.Error("nil Customers matched")
	}
	empty := mustCustomers(t)
	if _, ok := empty.Match("acme.example", "acme", netip.MustParseAddr("192.0.2.1")); ok || empty.Len() != 0 {
		t.Error("empty Customers matched")
	}
	if n := testCustomers(t).Len(); n != 8 {
		t.Errorf("Len = %d, want 8", n)
	}
}

func TestNewCustomersErrors(t *testing.T) {
	t.Parallel()
	ok := Customer{Name: "ok", SASLLogins: []string{"ok"}, Level: LevelEncrypt}
	tests := []struct {
		name    string
		cs      []Customer
		wantIs  []error
		wantMsg string
	}{
		{"empty name", []Customer{{SASLLogins: []string{"x"}}}, nil, "empty name"},
		{"blank name", []Customer{{Name: "  ", SASLLogins: []string{"x"}}}, nil, "empty name"},
		{"duplicate name", []Customer{ok, ok}, nil, `customers[1] "ok": duplicate name`},
		{"no selector", []Customer{ok, {Name: "lonely", Level: LevelEncrypt}}, nil, `customers[1] "lonely": no sender domain`},
		{"empty selector lists", []Customer{{Name: "x", Senders: []string{}, SASLLogins: []string{}}}, nil, "no sender domain"},
		{"invalid sender", []Customer{{Name: "x", Senders: []string{"exa mple.com"}}}, []error{ErrBadDomain}, `"exa mple.com"`},
		{"empty sender", []Customer{{Name: "x", Senders: []string{""}}}, []error{ErrBadDomain}, "sender"},
		{"address literal sender", []Customer{{Name: "x", Senders: []string{"[192.0.2.1]"}}}, []error{ErrNextHopKey}, "sender"},
		{"empty login", []Customer{{Name: "x", SASLLogins: []string{"a", ""}}}, nil, "empty SASL login"},
		{"invalid network", []Customer{{Name: "x", ClientNetworks: []netip.Prefix{{}}}}, nil, "invalid client network"},
		{"invalid level", []Customer{{Name: "x", SASLLogins: []string{"x"}, Level: Level(99)}}, []error{ErrUnknownLevel}, "level"},
		{"invalid action", []Customer{{Name: "x", SASLLogins: []string{"x"}, OnFail: Action(7)}}, []error{ErrUnknownAction}, "action"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cs, err := NewCustomers(tt.cs)
			if err == nil {
				t.Fatalf("NewCustomers succeeded: %+v", cs)
			}
			if cs != nil {
				t.Errorf("NewCustomers returned %+v with an error", cs)
			}
			for _, target := range append([]error{ErrBadCustomer}, tt.wantIs...) {
				if !errors.Is(err, target) {
					t.Errorf("error %q does not wrap %q", err, target)
				}
			}
			if !strings.Contains(err.Error(), tt.wantMsg) {
				t.Errorf("error %q does not contain %q", err, tt.wantMsg)
			}
		})
	}
}
