package policy

import (
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"
)

// Policy is one TLS requirement, as a Postfix tls_policy entry expresses it
// (postconf(5) smtp_tls_policy_maps; TLS_README "TLS policy table").
type Policy struct {
	// Level is the required TLS security level.
	Level Level
	// Invalid says why Postfix would refuse this policy at delivery
	// (smtp_tls_policy.c marks it TLS_LEV_INVALID and defers the mail), "" when
	// it is valid. tlsgate then tempfails: the mail could not leave either.
	Invalid string
	// Match holds the match= values in order. For verify and secure each
	// match= value is split on ':' ("hostname:nexthop:.example.com"); for
	// fingerprint it is split on '|', because a fingerprint itself contains
	// ':' ("AA:BB:...|CC:DD:..."). Several match= attributes are concatenated,
	// as Postfix does. Empty means the Postfix default for the level.
	Match []string
	// Attrs holds every other attribute, name in lower case, value verbatim:
	// protocols=, ciphers=, exclude=, tafile=, servername=,
	// connection_reuse=, enable_rpk=, and unknown ones.
	Attrs map[string]string
	// OnFail and OnTempfail override the configured default action
	// (ActionDefault: not set). Only tlsgate's own config sets them; Postfix
	// tls_policy files have no such attributes.
	OnFail     Action
	OnTempfail Action
	// Source says where the policy came from, for logs and the audit
	// header: "config policies[3]" or "/etc/postfix/tls_policy:12".
	Source string
	// Key is the normalized table key that matched ("example.com" or
	// ".example.com"); Table.Add and Table.Lookup fill it in.
	Key string
	// Raw is the entry's value as Postfix reads it from a tls_policy file: the
	// level and every attribute, verbatim ("secure match=.example.com
	// ciphers=high"); for a policy of tlsgate's configuration, the level and its
	// match list in Postfix notation. The socketmap serves it to Postfix as it
	// is, so that an entry Postfix refuses is refused there too (never a silent
	// downgrade).
	Raw string
}

// clone returns a deep copy of p, so that a caller modifying Match or Attrs
// cannot change a table shared with concurrent readers.
func (p Policy) clone() Policy {
	p.Match = slices.Clone(p.Match)
	p.Attrs = maps.Clone(p.Attrs)
	return p
}

// validate checks that p's level and actions are known values.
func (p Policy) validate() error {
	if !p.Level.Valid() {
		return fmt.Errorf("%w %s", ErrUnknownLevel, p.Level)
	}
	for _, a := range [...]Action{p.OnFail, p.OnTempfail} {
		if a < ActionDefault || a > ActionHeader {
			return fmt.Errorf("%w %s", ErrUnknownAction, a)
		}
	}
	return nil
}

// Table maps recipient domains to policies the way Postfix's
// smtp_tls_policy_maps does (see Lookup). Build it with Add and LoadFile, then
// share it: Lookup and Len (and so Set.Require) are safe for concurrent use as
// long as no Add or LoadFile runs at the same time. To change a table in service, build a
// new one and swap the pointer.
//
// The zero Table is empty and ready to use; a nil *Table is an empty table
// for Lookup and Len.
type Table struct {
	m map[string]Policy // normalized key -> policy with Key set
	// hops holds the next-hop entries of tls_policy files ("[host]",
	// "[host]:port", "host:port"), keyed by NormalizeNextHop. They never match a
	// recipient domain (Lookup) but are served by the socketmap (LookupNextHop).
	hops map[string]Policy
}

// NewTable returns an empty table.
func NewTable() *Table { return &Table{m: make(map[string]Policy)} }

// Len returns the number of keys in the table.
func (t *Table) Len() int {
	if t == nil {
		return 0
	}
	return len(t.m)
}

// Add adds key -> p. key is a domain ("example.com": that domain only) or a
// domain with a leading dot (".example.com": every subdomain, not
// example.com itself), normalized like NormalizeDomain, so IDN keys in either
// form, upper case and a trailing dot are fine. Add stores a copy of p with Key
// set to the normalized key.
//
// A key that is already present keeps its first policy, as postmap(1) does,
// and Add returns a non-empty warning ("duplicate entry ...") and a nil error.
//
// Errors: ErrNextHopKey (wrapped) for "[host]", "[host]:port" and "host:port"
// keys, which never match a recipient domain; ErrBadDomain (wrapped) for any
// other invalid key; ErrUnknownLevel or ErrUnknownAction (wrapped) when p
// holds a value outside the defined constants.
func (t *Table) Add(key string, p Policy) (warning string, err error) {
	k, err := NormalizeDomainKey(key)
	if err != nil {
		return "", err
	}
	if err := p.validate(); err != nil {
		return "", fmt.Errorf("policy for %q: %w", key, err)
	}
	if old, ok := t.m[k]; ok {
		w := fmt.Sprintf("duplicate entry %q", k)
		if old.Source != "" {
			w += " (first entry at " + old.Source + " is kept)"
		}
		return w, nil
	}
	if t.m == nil {
		t.m = make(map[string]Policy)
	}
	p = p.clone()
	p.Key = k
	t.m[k] = p
	return "", nil
}

// Lookup returns the policy for a recipient domain, searching keys as Postfix
// searches smtp_tls_policy_maps for a recipient's next-hop domain
// (postconf(5) smtp_tls_policy_maps: "When the lookup key is a domain name
// without enclosing [] and without :port suffix ..., and the full domain is not
// found in the table, just as with the transport(5) table, the parent domain
// starting with a leading "." is matched recursively"):
//
//  1. the domain is normalized with NormalizeDomain (case, trailing dot and
//     IDN form do not matter);
//  2. the exact key is tried first;
//  3. then ".parent" keys from the closest parent up to the top-level
//     domain: "a.b.example.com" tries "a.b.example.com", ".b.example.com",
//     ".example.com" and ".com", in that order.
//
// A ".example.com" key never matches "example.com" itself. The returned Policy
// is a copy with Key set to the key that matched. An invalid domain, such as
// an address literal, matches nothing.
func (t *Table) Lookup(domain string) (Policy, bool) {
	if t.Len() == 0 {
		return Policy{}, false
	}
	d, why := normalize(domain)
	if why != "" {
		return Policy{}, false
	}
	if p, ok := t.m[d]; ok {
		return p.clone(), true
	}
	for i := strings.IndexByte(d, '.'); i >= 0; {
		if p, ok := t.m[d[i:]]; ok {
			return p.clone(), true
		}
		j := strings.IndexByte(d[i+1:], '.')
		if j < 0 {
			break
		}
		i += 1 + j
	}
	return Policy{}, false
}

// LookupNextHop returns the policy of a next-hop key ("[host]", "[host]:port",
// "host:port") exactly as Postfix looks such a key up: one lookup, no parent
// domains (smtp_tls_policy.c tls_policy_lookup). key is normalized with
// NormalizeNextHop.
func (t *Table) LookupNextHop(key string) (Policy, bool) {
	if t == nil || len(t.hops) == 0 {
		return Policy{}, false
	}
	k, ok := NormalizeNextHop(key)
	if !ok {
		return Policy{}, false
	}
	p, ok := t.hops[k]
	if !ok {
		return Policy{}, false
	}
	return p.clone(), true
}

// LookupKey returns the entry stored under exactly key, a domain or a
// ".parent" key, without searching parents.
func (t *Table) LookupKey(key string) (Policy, bool) {
	if t.Len() == 0 {
		return Policy{}, false
	}
	k, err := NormalizeDomainKey(key)
	if err != nil {
		return Policy{}, false
	}
	p, ok := t.m[k]
	if !ok {
		return Policy{}, false
	}
	return p.clone(), true
}

// addNextHop adds a next-hop entry; the first entry of a key is kept.
func (t *Table) addNextHop(key string, p Policy) (warning string) {
	if old, ok := t.hops[key]; ok {
		w := fmt.Sprintf("duplicate entry %q", key)
		if old.Source != "" {
			w += " (first entry at " + old.Source + " is kept)"
		}
		return w
	}
	if t.hops == nil {
		t.hops = make(map[string]Policy)
	}
	p = p.clone()
	p.Key = key
	t.hops[key] = p
	return ""
}

// Entry is one record of a Postfix tls_policy source file.
type Entry struct {
	// Key is the normalized table key: "example.com" or ".example.com",
	// lower case, IDN labels as A-labels.
	Key    string
	Policy Policy
}

// LoadFile reads the Postfix tls_policy source file at path with ParseFile and
// adds its entries to t. A key that is already in t, from this file or from an
// earlier source, keeps its first policy and gives a Warning (postmap(1)
// "duplicate entry").
//
// If the file cannot be read or ParseFile fails, LoadFile returns the error
// and t is unchanged. Warnings come in line order.
func (t *Table) LoadFile(path string) ([]Warning, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err // a *fs.PathError: it names the operation and the file
	}
	defer f.Close()
	fp, err := parseFile(f, path)
	if err != nil {
		return nil, err
	}
	entries, warnings := fp.entries, fp.warnings
	// tafile=: Postfix loads the trust anchors when it looks the policy up, and an
	// unreadable or malformed file makes the policy invalid (smtp_tls_policy.c,
	// tls_dane_load_trustfile): mail is deferred, never delivered without them.
	for _, list := range [][]Entry{fp.nextHops, entries} {
		for i := range list {
			p := &list[i].Policy
			files := p.Attrs[attrTAFile]
			if files == "" || p.Invalid != "" || p.Level != LevelVerify && p.Level != LevelSecure {
				continue
			}
			if _, err := LoadTrustAnchors(files); err != nil {
				p.Invalid = err.Error()
				warnings = append(warnings, Warning{Source: p.Source, Msg: fmt.Sprintf("key %q: %v%s", list[i].Key, err, invalidInPostfix)})
			}
		}
	}
	var dups []Warning
	for _, e := range fp.nextHops {
		if w := t.addNextHop(e.Key, e.Policy); w != "" {
			dups = append(dups, Warning{Source: e.Policy.Source, Msg: w})
		}
	}
	for _, e := range entries {
		w, err := t.Add(e.Key, e.Policy)
		if err != nil {
			// ParseFile only returns valid keys and levels.
			return nil, fmt.Errorf("%s: %w", e.Policy.Source, err)
		}
		if w != "" {
			dups = append(dups, Warning{Source: e.Policy.Source, Msg: w})
		}
	}
	warnings = append(warnings, dups...)
	slices.SortStableFunc(warnings, func(a, b Warning) int { return a.line() - b.line() })
	return warnings, nil
}
