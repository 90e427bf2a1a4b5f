package config

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/tlsgate/tlsgate/policy"
)

// PolicySet builds the policy table and the customer toggles of the configuration.
//
// The table holds first the policies list (Source "config policies[i]"), then the
// entries of each of policy_files in order. A domain present twice keeps its first
// entry, as postmap(1) does, with a warning: policies in the configuration file win
// over the Postfix tables.
//
// The warnings are those of the policy files (policy.ParseFile) and the
// duplicates. Errors: the errors.Join of a *FieldError (wrapping ErrInvalid) per
// policy the table refuses, and per policy file that cannot be read or parsed (also
// wrapping the policy package or fs error).
func (c *Config) PolicySet() (*policy.Set, []policy.Warning, error) {
	var (
		errs  []error
		warns []policy.Warning
		t     = policy.NewTable()
	)
	for i, r := range c.rules {
		w, err := t.Add(r.domain, r.Policy)
		if errors.Is(err, policy.ErrNextHopKey) {
			w, err = t.AddNextHop(r.domain, r.Policy)
		}
		if err != nil {
			errs = append(errs, c.fieldError(fmt.Sprintf("policies[%d].domain", i), r.domain, "is not usable: "+err.Error(), ""))
			continue
		}
		if w != "" {
			warns = append(warns, policy.Warning{Source: r.Source, Msg: w})
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
	if len(errs) > 0 {
		return nil, warns, errors.Join(errs...)
	}
	customers, err := policy.NewCustomers(c.toggles)
	if err != nil {
		return nil, warns, fmt.Errorf("%w: %w", c.fieldError("customers", "", "are invalid", ""), err)
	}
	return &policy.Set{Table: t, Customers: customers}, warns, nil
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
