package policy

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
)

// ErrBadCustomer is returned (wrapped, naming the customer and the problem) by
// NewCustomers for an invalid customer definition.
var ErrBadCustomer = errors.New("policy: invalid customer")

// Customer is a per-customer toggle: a TLS level required for every recipient
// of mail that this customer sends, whatever the recipient domain. Customers
// are recognized on the sending side, by any one of their selectors.
type Customer struct {
	Name string
	// Senders are envelope sender domains: "acme.example" matches that
	// domain, ".acme.example" every subdomain of it (not acme.example
	// itself), the same rule as Table keys.
	Senders []string
	// SASLLogins are SMTP AUTH user names as Postfix passes them in the milter
	// macro {auth_authen}; compared exactly, case-sensitively.
	SASLLogins []string
	// ClientNetworks are the networks of the SMTP client's IP address.
	ClientNetworks []netip.Prefix
	Level          Level
	OnFail         Action
	OnTempfail     Action
}

// Customers is an ordered, validated list of customers. It is immutable and
// safe for concurrent use; a nil *Customers matches nothing.
type Customers struct {
	list []customer
	// Indexes of the selectors, each to the first customer that has it, so that Match
	// costs a few map lookups whatever the number of customers.
	exact, parents, logins map[string]int
	nets                   map[netip.Prefix]int // masked
	bits                   []int                // the prefix lengths in nets
}

// customer is a Customer with its selectors prepared for matching.
type customer struct {
	Customer
	exact   map[string]bool // normalized sender domains
	parents map[string]bool // normalized ".parent" sender keys
	logins  map[string]bool
	nets    []netip.Prefix // masked
}

// NewCustomers validates cs and returns them ready for Match, in the given
// order. Every customer needs a non-empty name unique among cs, at least one
// selector (sender domain, SASL login or client network), sender domains that
// NormalizeDomain accepts (optionally with a leading '.'), non-empty logins,
// valid network prefixes, and a level and actions from the defined constants.
//
// Errors wrap ErrBadCustomer, and also ErrBadDomain, ErrUnknownLevel or
// ErrUnknownAction where one of those is the cause.
func NewCustomers(cs []Customer) (*Customers, error) {
	out := &Customers{list: make([]customer, 0, len(cs))}
	seen := make(map[string]bool, len(cs))
	for i, c := range cs {
		bad := func(format string, args ...any) error {
			return fmt.Errorf("%w customers[%d] %q: %s", ErrBadCustomer, i, c.Name, fmt.Sprintf(format, args...))
		}
		badWrap := func(what string, err error) error {
			return fmt.Errorf("%w customers[%d] %q: %s: %w", ErrBadCustomer, i, c.Name, what, err)
		}
		switch {
		case strings.TrimSpace(c.Name) == "":
			return nil, bad("empty name")
		case seen[c.Name]:
			return nil, bad("duplicate name")
		case len(c.Senders) == 0 && len(c.SASLLogins) == 0 && len(c.ClientNetworks) == 0:
			return nil, bad("no sender domain, SASL login or client network to recognize it by")
		}
		seen[c.Name] = true
		if err := (Policy{Level: c.Level, OnFail: c.OnFail, OnTempfail: c.OnTempfail}).validate(); err != nil {
			return nil, badWrap("level or action", err)
		}
		m := customer{
			Customer: Customer{
				Name:           c.Name,
				Senders:        slices.Clone(c.Senders),
				SASLLogins:     slices.Clone(c.SASLLogins),
				ClientNetworks: slices.Clone(c.ClientNetworks),
				Level:          c.Level,
				OnFail:         c.OnFail,
				OnTempfail:     c.OnTempfail,
			},
			exact:   make(map[string]bool),
			parents: make(map[string]bool),
			logins:  make(map[string]bool),
		}
		for _, s := range c.Senders {
			k, err := NormalizeDomainKey(s)
			if err != nil {
				return nil, badWrap("sender", err)
			}
			if strings.HasPrefix(k, ".") {
				m.parents[k] = true
			} else {
				m.exact[k] = true
			}
		}
		for _, l := range c.SASLLogins {
			if l == "" {
				return nil, bad("empty SASL login")
			}
			m.logins[l] = true
		}
		for _, p := range c.ClientNetworks {
			if !p.IsValid() {
				return nil, bad("invalid client network %q", p)
			}
			m.nets = append(m.nets, p.Masked())
		}
		out.list = append(out.list, m)
	}
	out.exact, out.parents, out.logins = map[string]int{}, map[string]int{}, map[string]int{}
	first := func(m map[string]int, k string, i int) {
		if _, ok := m[k]; !ok {
			m[k] = i
		}
	}
	for i := range out.list {
		m := &out.list[i]
		for k := range m.exact {
			first(out.exact, k, i)
		}
		for k := range m.parents {
			first(out.parents, k, i)
		}
		for k := range m.logins {
			first(out.logins, k, i)
		}
		for _, p := range m.nets {
			if out.nets == nil {
				out.nets = map[netip.Prefix]int{}
			}
			if _, ok := out.nets[p]; !ok {
				out.nets[p] = i
			}
			if !slices.Contains(out.bits, p.Bits()) {
				out.bits = append(out.bits, p.Bits())
			}
		}
	}
	return out, nil
}

// Len returns the number of customers.
func (c *Customers) Len() int {
	if c == nil {
		return 0
	}
	return len(c.list)
}

// Match returns the first customer, in the order given to NewCustomers, that
// any one selector recognizes: the envelope sender domain (exact or by a
// ".parent" entry, normalized like Table.Lookup), the SASL login, or the
// client IP address. senderDomain may be "" (the null sender, as in bounces),
// and then only a login or network can match; an empty login and the zero
// netip.Addr match nothing. An IPv4-mapped IPv6 client address also matches
// IPv4 networks; an IPv6 zone is ignored. The returned Customer is a copy.
func (c *Customers) Match(senderDomain, saslLogin string, client netip.Addr) (Customer, bool) {
	if c.Len() == 0 {
		return Customer{}, false
	}
	var sender string
	if senderDomain != "" {
		sender, _ = normalize(senderDomain) // "" when invalid: no domain match
	}
	best := len(c.list)
	take := func(i int, ok bool) {
		if ok && i < best {
			best = i
		}
	}
	if sender != "" {
		i, ok := c.exact[sender]
		take(i, ok)
		for j := range len(sender) {
			if sender[j] == '.' {
				i, ok := c.parents[sender[j:]]
				take(i, ok)
			}
		}
	}
	if saslLogin != "" {
		i, ok := c.logins[saslLogin]
		take(i, ok)
	}
	if client.IsValid() {
		a := client.WithZone("")
		u := a.Unmap()
		for _, bits := range c.bits {
			for _, x := range []netip.Addr{a, u} {
				if p, err := x.Prefix(bits); err == nil {
					i, ok := c.nets[p]
					take(i, ok)
				}
			}
		}
	}
	if best == len(c.list) {
		return Customer{}, false
	}
	cp := c.list[best].Customer
	cp.Senders = slices.Clone(cp.Senders)
	cp.SASLLogins = slices.Clone(cp.SASLLogins)
	cp.ClientNetworks = slices.Clone(cp.ClientNetworks)
	return cp, true
}
