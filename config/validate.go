package config

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"math"
	"net"
	"net/netip"
	"os"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/tlsgate/tlsgate/internal/fingerprint"
	"github.com/tlsgate/tlsgate/policy"
)

// Limits of validation.
const (
	// postfixMilterTimeout is Postfix's default milter_command_timeout; an answer
	// later than this makes Postfix apply milter_default_action to the session.
	postfixMilterTimeout = 30 * time.Second
	maxRcptTimeout       = 5 * time.Minute
	maxRejectMessage     = 200
	// maxHeaderName keeps "Name: value" folding sensibly within the 78-character
	// line of RFC 5322 section 2.1.1.
	maxHeaderName = 76
	maxName       = 64  // customer names, group names, transport names
	maxLogin      = 256 // SASL logins
)

// validate checks the parsed values, alone (each key's check in the schema) and
// together, and the policies and customers lists, turning those into rules and
// toggles. It returns all problems at once: nil, or the errors.Join of one
// *FieldError per problem (errors.Is(err, ErrInvalid) holds). It reads
// probe.ca_file; it does not read the policy files (PolicySet does).
func (c *Config) validate() error {
	v := validator{c: c, errs: c.checkKeys()}
	if f := c.Probe.CAFile; f != "" {
		roots, err := loadCAFile(f)
		if err != nil {
			v.fail("probe.ca_file", f, "is not a readable PEM file of CA certificates: "+err.Error(), "")
		}
		c.roots = roots
	}
	if c.Cache.Shared.URL != "" && c.Cache.Shared.SecretFile == "" {
		v.fail("cache.shared.secret_file", "", "is required with cache.shared.url (entries are authenticated with it)", "")
	}
	// The check page makes this server open outbound connections: never reachable
	// from other hosts without authentication.
	if host, _, err := net.SplitHostPort(c.Web.Listen); err == nil && c.Web.TokensFile == "" && !isLoopbackHost(host) {
		v.fail("web.listen", c.Web.Listen, "is not a loopback address and web.tokens_file is empty: the check page would be an open probe relay; set web.tokens_file", "")
	}
	v.policies()
	v.customers()
	return errors.Join(v.errs...)
}

// checkKeys runs the check of every key on its value.
func (c *Config) checkKeys() []error {
	var errs []error
	for _, k := range keys {
		if k.check == nil {
			continue
		}
		for _, p := range k.check(k.get(c)) {
			errs = append(errs, c.fieldError(k.name+p.suffix, p.value, p.msg, p.allowed))
		}
	}
	return errs
}

// checker is the test of one key's parsed value in the schema: what is wrong with it.
type checker func(v any) []problem

// positive checks a duration that must be > 0.
func positive(v any) []problem {
	if d := v.(time.Duration); d <= 0 {
		return []problem{{value: d.String(), msg: "must be a positive duration"}}
	}
	return nil
}

// below checks a positive duration below a limit of Postfix's (why).
func below(limit time.Duration, why string) checker {
	return func(v any) []problem {
		if d := v.(time.Duration); d >= limit {
			return []problem{{value: d.String(), msg: "must be below " + limit.String() + " (" + why + ")"}}
		}
		return positive(v)
	}
}

// between checks a number from lo to hi; msg says so.
func between(lo, hi int, msg string) checker {
	return func(v any) []problem {
		if n := v.(int); n < lo || n > hi {
			return []problem{{value: strconv.Itoa(n), msg: msg}}
		}
		return nil
	}
}

// optional checks a string unless it is empty; f says what is wrong.
func optional(f func(s string) string) checker {
	return func(v any) []problem {
		if s := v.(string); s != "" {
			if msg := f(s); msg != "" {
				return []problem{{value: s, msg: msg}}
			}
		}
		return nil
	}
}

// each checks every item of a list; f says what is wrong.
func each(f func(s string) string) checker {
	return func(v any) []problem {
		var out []problem
		for i, s := range v.([]string) {
			if msg := f(s); msg != "" {
				out = append(out, problem{suffix: fmt.Sprintf("[%d]", i), value: s, msg: msg})
			}
		}
		return out
	}
}

func checkTransport(t string) string {
	if _, err := path.Match(t, ""); !isToken(t, maxName) || err != nil {
		return "is not a Postfix transport name or pattern (smtp, smtp-*)"
	}
	return ""
}

func checkGroup(g string) string {
	if !isToken(g, maxName) {
		return "is not a group name or gid"
	}
	return ""
}

func checkHostPort(s string) string {
	if _, _, err := net.SplitHostPort(s); err != nil {
		return "is not HOST:PORT"
	}
	return ""
}

func checkAbsolute(s string) string {
	if !strings.HasPrefix(s, "/") {
		return "must be an absolute path"
	}
	return ""
}

// checkSharedURL checks the scheme only, and never shows the URL: it may hold a
// password.
func checkSharedURL(v any) []problem {
	u := v.(string)
	if u != "" && !strings.HasPrefix(u, "redis://") && !strings.HasPrefix(u, "rediss://") && !strings.HasPrefix(u, "unix://") {
		return []problem{{msg: "is not a redis://, rediss:// or unix:// URL"}}
	}
	return nil
}

func checkKeyPrefix(v any) []problem {
	if v.(string) == "" {
		return []problem{{msg: "must not be empty"}}
	}
	return nil
}

// checkRejectMessage: the message becomes part of an SMTP reply line.
func checkRejectMessage(v any) []problem {
	m := v.(string)
	var out []problem
	if len(m) > maxRejectMessage {
		out = append(out, problem{msg: fmt.Sprintf("is longer than %d characters", maxRejectMessage)})
	}
	if strings.ContainsFunc(m, func(r rune) bool { return r < ' ' || r > '~' }) {
		out = append(out, problem{value: m, msg: "may only contain printable ASCII (it becomes part of an SMTP reply)"})
	}
	return out
}

type validator struct {
	c    *Config
	errs []error
}

func (v *validator) fail(key, value, msg, allowed string) {
	v.errs = append(v.errs, v.c.fieldError(key, value, msg, allowed))
}

// postfixSocketmapTimeout is Postfix's socketmap timeout (dict_sockmap.c
// DICT_SOCKMAP_DEF_TIMEOUT: connect, read and write); an answer later than this
// makes Postfix give up on the lookup.
const postfixSocketmapTimeout = 100 * time.Second

// checkHeaderName checks a header field name: printable US-ASCII except ':'
// (RFC 5322 section 3.6.8, ftext).
func checkHeaderName(s string) string {
	if len(s) > maxHeaderName {
		return fmt.Sprintf("is longer than %d characters", maxHeaderName)
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 33 || c > 126 || c == ':' {
			return "is not a header field name (printable ASCII without space or ':', RFC 5322 section 3.6.8)"
		}
	}
	return ""
}

// isToken reports whether s is 1 to max printable ASCII characters without space,
// ',' or ':' (transport names, group names, SASL logins).
func isToken(s string, max int) bool {
	if s == "" || len(s) > max {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c >= 0x7f || c == ',' || c == ':' {
			return false
		}
	}
	return true
}

// checkHELO accepts a host name or an address literal ("[192.0.2.1]",
// "[IPv6:2001:db8::1]", RFC 5321 section 4.1.3).
func checkHELO(s string) string {
	if lit, ok := strings.CutPrefix(s, "["); ok {
		lit, ok = strings.CutSuffix(lit, "]")
		v6, isV6 := strings.CutPrefix(lit, "IPv6:")
		a, err := netip.ParseAddr(v6)
		if !ok || err != nil || a.Zone() != "" || a.Is4() == isV6 {
			return "is not an address literal ([192.0.2.1] or [IPv6:2001:db8::1])"
		}
		return ""
	}
	if _, err := policy.NormalizeDomain(s); err != nil {
		return "is not a host name"
	}
	return ""
}

// onTempfail checks the on_tempfail of a policy or customer; "" is the default.
func (v *validator) onTempfail(key, s string) policy.Action {
	a, msg := checkOnTempfail(s, true)
	if msg != "" {
		v.fail(key, s, msg, allowedOnTempfail)
	}
	return a
}

// onFail checks the on_fail of a policy or customer; "" is the default.
func (v *validator) onFail(key, s string) policy.Action {
	a, err := policy.ParseAction(s)
	if err != nil {
		v.fail(key, s, "is not an action", allowedOnFail)
	}
	return a
}

// isLoopbackHost reports whether host (the host part of HOST:PORT) names only
// loopback addresses: a loopback IP or "localhost". "" (every address) is not.
func isLoopbackHost(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.Unmap().IsLoopback()
}

// level parses a level name, reporting a bad one at key.
func (v *validator) level(key, s string) (policy.Level, bool) {
	if strings.TrimSpace(s) == "" {
		v.fail(key, "", "must be set", strings.Join(policy.LevelNames(), ", "))
		return 0, false
	}
	l, err := policy.ParseLevel(s)
	if err != nil {
		v.fail(key, s, "is not a TLS level", strings.Join(policy.LevelNames(), ", "))
		return 0, false
	}
	return l, true
}

func (v *validator) policies() {
	seen := map[string]int{}
	v.c.rules = nil
	for i, p := range v.c.policies {
		errs := len(v.errs)
		at := func(k string) string { return fmt.Sprintf("policies[%d].%s", i, k) }
		if strings.TrimSpace(p.Domain) == "" {
			v.fail(at("domain"), "", "must be set", "")
		} else if key, err := policy.NormalizeKey(p.Domain); err != nil {
			v.fail(at("domain"), p.Domain, `is not a domain, ".domain" (every subdomain) or next hop ("[host]", "[host]:port", "host:port")`, "")
		} else if j, dup := seen[key]; dup {
			v.fail(at("domain"), p.Domain, fmt.Sprintf("is also the domain of policies[%d]", j), "")
		} else {
			seen[key] = i
		}
		level, ok := v.level(at("level"), p.Level)
		if ok {
			v.match(at("match"), level, p.Match)
		}
		r := rule{domain: p.Domain, Policy: policy.Policy{
			Level:      level,
			Match:      matchList(level, p.Match),
			OnFail:     v.onFail(at("on_fail"), p.OnFail),
			OnTempfail: v.onTempfail(at("on_tempfail"), p.OnTempfail),
			Source:     fmt.Sprintf("config policies[%d]", i),
		}}
		r.Raw = rawPolicy(r.Level, r.Match)
		if len(v.errs) == errs {
			v.c.rules = append(v.c.rules, r)
		}
	}
}

// digestLens are the digest lengths in bytes a pin may have: MD5, SHA-1, SHA-256, SHA-512.
var digestLens = []int{16, 20, 32, 64}

// match checks the match list of a policy as Postfix's match= attribute
// (TLS_README "Certificate fingerprint verification", "Mandatory server
// certificate verification").
func (v *validator) match(key string, level policy.Level, match []string) {
	switch level {
	case policy.LevelFingerprint:
		if len(match) == 0 {
			v.fail(key, "", "must list at least one certificate or public-key fingerprint for level fingerprint", "")
		}
		usable, malformed := 0, 0
		for i, m := range match {
			b, ok := fingerprint.Parse(strings.TrimSpace(m))
			if !ok || !slices.Contains(digestLens, len(b)) {
				malformed++
				v.fail(fmt.Sprintf("%s[%d]", key, i), m, "is not a hex fingerprint (MD5, SHA-1, SHA-256 or SHA-512 digest, bytes optionally separated by ':')", "")
			} else if len(b) == sha256.Size {
				usable++
			}
		}
		// postconf(5) smtp_tls_fingerprint_digest: Postfix (3.6 and later) computes
		// SHA-256 digests and compares them with the pins, so a pin in another digest
		// never matches; with no SHA-256 pin the policy can never pass. Warnings names
		// the other pins when a SHA-256 one is there too.
		if len(match) > 0 && usable == 0 && malformed == 0 {
			v.fail(key, "", "has no SHA-256 fingerprint: Postfix compares SHA-256 digests (smtp_tls_fingerprint_digest = sha256), so MD5, SHA-1 or SHA-512 pins never match", "")
		}
	case policy.LevelVerify, policy.LevelSecure:
		for i, m := range match {
			for _, name := range matchList(level, []string{m}) {
				switch name {
				case "hostname", "nexthop", "dot-nexthop":
					continue
				}
				if _, err := policy.NormalizeDomainKey(name); err != nil {
					v.fail(fmt.Sprintf("%s[%d]", key, i), m, `is not a match strategy or name ("hostname", "nexthop", "dot-nexthop", a domain or ".domain"; several separated by ':')`, "")
					break
				}
			}
		}
	default:
		if len(match) > 0 {
			v.fail(key, "", "is only allowed for levels "+allowedMatchKinds+", not "+level.String(), "")
		}
	}
}

func (v *validator) customers() {
	seen := map[string]int{}
	v.c.toggles = nil
	for i, cu := range v.c.customers {
		errs := len(v.errs)
		t := policy.Customer{Name: cu.Name, Senders: slices.Clone(cu.Senders), SASLLogins: slices.Clone(cu.SASLLogins)}
		at := func(k string) string { return fmt.Sprintf("customers[%d].%s", i, k) }
		switch name := strings.ToLower(cu.Name); {
		case cu.Name == "":
			v.fail(at("name"), "", "must be set", "")
		case !isName(cu.Name):
			v.fail(at("name"), cu.Name, fmt.Sprintf("must be 1 to %d letters, digits, '.', '_' or '-' (it appears in the audit header)", maxName), "")
		default:
			if j, dup := seen[name]; dup {
				v.fail(at("name"), cu.Name, fmt.Sprintf("is also the name of customers[%d]", j), "")
			} else {
				seen[name] = i
			}
		}
		if len(cu.Senders)+len(cu.SASLLogins)+len(cu.ClientNetworks) == 0 {
			v.fail(fmt.Sprintf("customers[%d]", i), "", "needs at least one of senders, sasl_logins, client_networks", "")
		}
		for j, s := range cu.Senders {
			if strings.Contains(s, "@") {
				v.fail(fmt.Sprintf("%s[%d]", at("senders"), j), s, "must be a sender domain, not an address", "")
			} else if _, err := policy.NormalizeDomainKey(s); err != nil {
				v.fail(fmt.Sprintf("%s[%d]", at("senders"), j), s, `is not a domain or ".domain" (every subdomain)`, "")
			}
		}
		for j, l := range cu.SASLLogins {
			if !isToken(l, maxLogin) {
				v.fail(fmt.Sprintf("%s[%d]", at("sasl_logins"), j), l, fmt.Sprintf("is not a SASL login (1 to %d printable characters, no space)", maxLogin), "")
			}
		}
		for j, n := range cu.ClientNetworks {
			p, err := parsePrefix(n)
			if err != nil {
				v.fail(fmt.Sprintf("%s[%d]", at("client_networks"), j), n, "is not a CIDR or IP address", "")
			}
			t.ClientNetworks = append(t.ClientNetworks, p.Masked())
		}
		var ok bool
		if t.Level, ok = v.level(at("level"), cu.Level); ok && t.Level == policy.LevelFingerprint {
			v.fail(at("level"), cu.Level, "needs per-domain fingerprints; use it in policies, not for a customer", "")
		}
		t.OnFail = v.onFail(at("on_fail"), cu.OnFail)
		t.OnTempfail = v.onTempfail(at("on_tempfail"), cu.OnTempfail)
		if len(v.errs) == errs {
			v.c.toggles = append(v.c.toggles, t)
		}
	}
}

func isName(s string) bool {
	if s == "" || len(s) > maxName {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// Warnings returns observations about a valid configuration that do not stop
// tlsgate but that the operator should see, one sentence each, prefixed like a
// FieldError.
func (c *Config) Warnings() []string {
	var out []string
	warn := func(key, value, msg string) {
		e := c.fieldError(key, value, msg, "")
		out = append(out, e.Error())
	}
	if c.File != "" {
		// Whoever can write the configuration decides which mail is checked.
		if st, err := os.Stat(c.File); err == nil && st.Mode().Perm()&0o002 != 0 {
			out = append(out, fmt.Sprintf("%s: the configuration file is writable by every user (mode %04o); make it 0644 or stricter", c.File, st.Mode().Perm()))
		}
	}
	for i, p := range c.policies {
		if !strings.EqualFold(strings.TrimSpace(p.Level), policy.LevelFingerprint.String()) {
			continue
		}
		for j, m := range p.Match {
			if b, ok := fingerprint.Parse(strings.TrimSpace(m)); ok && len(b) != sha256.Size {
				warn(fmt.Sprintf("policies[%d].match[%d]", i, j), m, "is not a SHA-256 digest: Postfix compares SHA-256 digests (smtp_tls_fingerprint_digest = sha256), so this pin never matches")
			}
		}
	}
	if !c.MTASTS.Enabled && (c.usesLevel(policy.LevelPublished) || c.Socketmap.DefaultPublished) {
		warn("mta_sts.enabled", "false", "while the level published is used: it will require DANE only, never a domain's MTA-STS policy")
	}
	if c.MTASTS.Enabled && c.MTASTS.Timeout >= c.Milter.RcptTimeout {
		warn("mta_sts.timeout", c.MTASTS.Timeout.String(), "is not below milter.rcpt_timeout: a slow MTA-STS policy host turns first contacts into \"in progress\" tempfails")
	}
	if c.Milter.RcptTimeout >= postfixMilterTimeout {
		warn("milter.rcpt_timeout", c.Milter.RcptTimeout.String(),
			"is not below Postfix's default milter_command_timeout (30s); raise milter_command_timeout in main.cf or Postfix gives up on the milter first")
	}
	socket := func(sec string, l Listen, mode os.FileMode, group, open string) {
		def, _ := lookupKey(sec + ".socket_mode")
		switch {
		case l.Network != "unix":
			if mode != def.def {
				warn(sec+".socket_mode", def.format(mode)[0], "is ignored: "+sec+".listen is not a unix socket")
			}
			if group != "" {
				warn(sec+".socket_group", group, "is ignored: "+sec+".listen is not a unix socket")
			}
		case mode&0o002 != 0:
			warn(sec+".socket_mode", def.format(mode)[0], open)
		}
	}
	socket("milter", c.Milter.Listen, c.Milter.SocketMode, c.Milter.SocketGroup, "lets every local user talk to the milter")
	socket("socketmap", c.Socketmap.Listen, c.Socketmap.SocketMode, c.Socketmap.SocketGroup, "lets every local user query the socketmap")
	if c.Socketmap.Listen == (Listen{}) && c.Socketmap.DefaultPublished {
		warn("socketmap.default_level", "published", "has no effect: socketmap.listen is off")
	}
	if len(c.Milter.CheckedTransports) == 0 {
		warn("milter.checked_transports", "", "is empty: no recipient is checked, every recipient passes")
	}
	for _, k := range keys {
		out = append(out, c.notes[k.name]...)
	}
	return out
}

// usesLevel reports whether a policy or customer asks for level l.
func (c *Config) usesLevel(l policy.Level) bool {
	return slices.ContainsFunc(c.rules, func(r rule) bool { return r.Level == l }) ||
		slices.ContainsFunc(c.toggles, func(t policy.Customer) bool { return t.Level == l })
}

var atLeastOne = between(1, math.MaxInt, "must be at least 1")

func checkNotEmpty(s string) string {
	if strings.TrimSpace(s) == "" {
		return "must not be empty"
	}
	return ""
}
