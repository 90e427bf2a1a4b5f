package config

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/tlsgate/tlsgate/policy"
)

// PolicySet builds the policy table and the customer toggles of a validated
// configuration.
//
// The table holds first the policies list (Source "config policies[i]"), then the
// entries of each of policy_files in order. A domain present twice keeps its first
// entry, as postmap(1) does, with a warning: policies in the configuration file win
// over the Postfix tables.
//
// The warnings are those of the policy files (policy.ParseFile) and the
// duplicates. Errors: the errors.Join of a *FieldError (wrapping ErrInvalid) per
// invalid level, invalid domain or customer, and per policy file that
// cannot be read or parsed (also wrapping the policy package or fs error).
func (c *Config) PolicySet() (*policy.Set, []policy.Warning, error) {
	var (
		errs  []error
		warns []policy.Warning
		t     = policy.NewTable()
	)
	levels := strings.Join(policy.LevelNames(), ", ")
	parseLevel := func(key, s string) (policy.Level, bool) {
		l, err := policy.ParseLevel(s)
		if err != nil {
			errs = append(errs, c.fieldError(key, s, "is not a TLS level", levels))
			return 0, false
		}
		return l, true
	}

	for i, pc := range c.Policies {
		at := fmt.Sprintf("policies[%d]", i)
		level, ok := parseLevel(at+".level", pc.Level)
		if !ok {
			continue
		}
		p := policy.Policy{
			Level:      level,
			Match:      matchList(level, pc.Match),
			OnFail:     parseAction(pc.OnFail),
			OnTempfail: parseAction(pc.OnTempfail),
			Source:     "config " + at,
		}
		p.Raw = rawPolicy(p.Level, p.Match)
		w, err := t.Add(pc.Domain, p)
		if errors.Is(err, policy.ErrNextHopKey) {
			w, err = t.AddNextHop(pc.Domain, p)
		}
		if err != nil {
			errs = append(errs, c.fieldError(at+".domain", pc.Domain, "is not usable: "+err.Error(), ""))
			continue
		}
		if w != "" {
			warns = append(warns, policy.Warning{Source: p.Source, Msg: w})
		}
	}

	for i, path := range c.PolicyFiles {
		ws, err := t.LoadFile(path)
		if err != nil {
			errs = append(errs, fmt.Errorf("%w: %w", c.fieldError(fmt.Sprintf("policy_files[%d]", i), path, "cannot be loaded", ""), err))
			continue
		}
		warns = append(warns, ws...)
	}

	cs := make([]policy.Customer, 0, len(c.Customers))
	for i, cc := range c.Customers {
		at := fmt.Sprintf("customers[%d]", i)
		level, ok := parseLevel(at+".level", cc.Level)
		if !ok {
			continue
		}
		pc := policy.Customer{
			Name:       cc.Name,
			Senders:    slices.Clone(cc.Senders),
			SASLLogins: slices.Clone(cc.SASLLogins),
			Level:      level,
			OnFail:     parseAction(cc.OnFail),
			OnTempfail: parseAction(cc.OnTempfail),
		}
		for j, n := range cc.ClientNetworks {
			p, err := parsePrefix(n)
			if err != nil {
				errs = append(errs, c.fieldError(fmt.Sprintf("%s.client_networks[%d]", at, j), n, "is not a CIDR or IP address", ""))
				continue
			}
			pc.ClientNetworks = append(pc.ClientNetworks, p.Masked())
		}
		cs = append(cs, pc)
	}
	if len(errs) > 0 {
		return nil, warns, errors.Join(errs...)
	}
	customers, err := policy.NewCustomers(cs)
	if err != nil {
		return nil, warns, fmt.Errorf("%w: %w", c.fieldError("customers", "", "are invalid", ""), err)
	}
	return &policy.Set{Table: t, Customers: customers}, warns, nil
}

// parseAction parses a validated action; "" is policy.ActionDefault.
func parseAction(s string) policy.Action {
	a, _ := policy.ParseAction(s)
	return a
}

// matchList returns the match values of a policy: for verify and secure each item
// may hold several names separated by ':' as in Postfix's match= ("hostname:nexthop");
// fingerprints are kept as written.
func matchList(level policy.Level, match []string) []string {
	if level != policy.LevelVerify && level != policy.LevelSecure {
		return slices.Clone(match)
	}
	var out []string
	for _, m := range match {
		for name := range strings.SplitSeq(m, ":") {
			if name = strings.TrimSpace(name); name != "" {
				out = append(out, name)
			}
		}
	}
	return out
}

// rawPolicy writes a policy of the configuration as a Postfix tls_policy value, the
// form the socketmap serves: the level and its match list (names joined by ':' for
// verify and secure, fingerprints by '|', as Postfix's match= reads them).
func rawPolicy(level policy.Level, match []string) string {
	if len(match) == 0 {
		return level.String()
	}
	sep := ":"
	if level == policy.LevelFingerprint {
		sep = "|"
	}
	return level.String() + " match=" + strings.Join(match, sep)
}
