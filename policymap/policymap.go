// Package policymap is the TLS policy table tlsgate serves to Postfix's SMTP client
// (postconf(5) smtp_tls_policy_maps) over the socketmap protocol: for each next hop
// Postfix delivers to, the same answer tlsgate's RCPT verdict was based on, so that
// what was promised at RCPT time is what delivery enforces.
//
// Map answers one lookup (socketmap.Handler); Decide and Published are the pure
// functions behind it.
package policymap

import (
	"context"
	"errors"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tlsgate/tlsgate/internal/dane"
	"github.com/tlsgate/tlsgate/internal/mtasts"
	"github.com/tlsgate/tlsgate/policy"
	"github.com/tlsgate/tlsgate/socketmap"
	"github.com/tlsgate/tlsgate/verify"
)

// The map names Postfix may ask for (socketmap:...:NAME), those of postfix-tlspol, so
// that a site switches by changing an address.
const (
	// NameQuery answers a TLS level and its attributes, readable by every Postfix.
	NameQuery = "QUERY"
	// NameQueryTLSRPT adds to MTA-STS answers the TLSRPT attributes Postfix 3.10 and
	// later read (TLSRPT_README "MTA-STS Support via smtp_tls_policy_maps"). Postfix
	// 3.9 and earlier refuse them ("invalid attribute name") and defer the mail.
	NameQueryTLSRPT = "QUERYwithTLSRPT"
	// NamePublished answers as NameQuery, with every domain that has no configured
	// policy at level published whatever socketmap.default_level says: the table of a
	// per-customer smtp service whose customer has the published toggle (the milter's
	// customer level, enforced at delivery; contrib/postfix master.cf.snippet).
	NamePublished = "PUBLISHED"
	// NamePublishedTLSRPT is NamePublished with the TLSRPT attributes (Postfix 3.10+).
	NamePublishedTLSRPT = "PUBLISHEDwithTLSRPT"
)

// Names lists the map names served, for metrics labels and messages.
var Names = []string{NameQuery, NameQueryTLSRPT, NamePublished, NamePublishedTLSRPT}

// DefaultTimeout is the default budget of one lookup: time for a cold DNS lookup and an
// MTA-STS policy fetch, and far below Postfix's socketmap timeout (dict_sockmap.c:
// 100 s for connect, read and write).
const DefaultTimeout = 10 * time.Second

// FactsSource gives the DNS and MTA-STS facts of a domain; *verify.Verifier
// implements it. It returns verify.ErrPending when ctx ends first.
type FactsSource interface {
	MapFacts(ctx context.Context, domain string) (*verify.MapFacts, error)
}

var _ FactsSource = (*verify.Verifier)(nil)

// Config is what the map answers from. It is replaced as a whole on reload.
type Config struct {
	// Policies is the configured policy table (policies, policy_files); nil is empty.
	Policies *policy.Table
	// DefaultPublished: a domain without a configured policy is answered as level
	// published (socketmap.default_level: published); otherwise it is NOTFOUND and
	// Postfix's smtp_tls_security_level applies.
	DefaultPublished bool
	// Facts looks up the facts of level published.
	Facts FactsSource
	// Timeout bounds one lookup (default DefaultTimeout); a lookup still pending
	// then is answered TEMP and goes on into the cache.
	Timeout time.Duration
	Log     *slog.Logger
}

// Map is the socketmap.Handler of the TLS policy table. Its configuration can be
// replaced while it serves (SetConfig).
type Map struct {
	cfg atomic.Pointer[Config]
	// memo keeps the answers LookupCached computed, each with what it was computed from
	// (the configuration, and for level published the facts' identity), so that a
	// repeated lookup from a warm cache costs a map read instead of the policy lookups
	// and the answer's formatting. Bounded by maxMemo (emptied when full).
	memoMu sync.RWMutex
	memo   map[memoKey]*memoEntry
}

// maxMemo bounds the memoized answers: about 200 bytes each.
const maxMemo = 1 << 16

type memoKey struct{ name, key string }

// memoEntry is one memoized answer. It holds while the configuration is cfg and, when
// domain is set, while the cached facts of domain are those checked at checked (a
// refresh, a purge or an expiry changes them).
type memoEntry struct {
	cfg     *Config
	domain  string
	checked time.Time
	answer  Answer
	reply   socketmap.Reply
}

var _ socketmap.CachedHandler = (*Map)(nil)

// New returns a Map serving cfg.
func New(cfg Config) *Map {
	m := &Map{}
	m.SetConfig(cfg)
	return m
}

// SetConfig replaces the configuration; lookups in progress finish with the old one.
func (m *Map) SetConfig(cfg Config) {
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	m.cfg.Store(&cfg)
}

// Answer is the map's answer to one key, with why, for logs and tlsgate check.
type Answer struct {
	Status socketmap.Status `json:"status"`
	// Data is the policy for OK ("dane", "secure match=... servername=hostname"),
	// the reason for TEMP and PERM, empty for NOTFOUND.
	Data string `json:"data,omitempty"`
	// Why explains the answer in words.
	Why string `json:"why"`
	// Rule names what decided: "policy:KEY" (a configured entry), "default"
	// (socketmap.default_level), "" when nothing applies.
	Rule string `json:"rule,omitempty"`
}

// Reply is the answer as the protocol sends it.
func (a Answer) Reply() socketmap.Reply { return socketmap.Reply{Status: a.Status, Data: a.Data} }

// String renders the answer as one line: "dane", "NOTFOUND", "TEMP reason".
func (a Answer) String() string {
	switch a.Status {
	case socketmap.StatusOK:
		return a.Data
	case socketmap.StatusNotFound:
		return string(a.Status)
	}
	return string(a.Status) + " " + a.Data
}

func notFound(why string) Answer { return Answer{Status: socketmap.StatusNotFound, Why: why} }

func temp(reason string) Answer {
	return Answer{Status: socketmap.StatusTemp, Data: clean(reason), Why: reason}
}

func ok(data, why string) Answer { return Answer{Status: socketmap.StatusOK, Data: data, Why: why} }

// Lookup answers one socketmap request (socketmap.Handler).
func (m *Map) Lookup(ctx context.Context, name, key string) socketmap.Reply {
	cfg := m.cfg.Load()
	a := m.answer(ctx, cfg, name, key)
	logAnswer(ctx, cfg, name, key, a)
	return a.Reply()
}

// CachedFactsSource is a FactsSource that can also say, without waiting, whether it
// holds fresh facts; *verify.Verifier implements it.
type CachedFactsSource interface {
	FactsSource
	CachedMapFacts(domain string) (*verify.MapFacts, bool)
}

var _ CachedFactsSource = (*verify.Verifier)(nil)

// LookupCached answers at once when no lookup is needed: a configured entry, a key the
// map does not serve, or level published with fresh cached facts
// (socketmap.CachedHandler). It never blocks; false sends the request to Lookup.
func (m *Map) LookupCached(name, key string) (socketmap.Reply, bool) {
	cfg := m.cfg.Load()
	cf, _ := cfg.Facts.(CachedFactsSource)
	mk := memoKey{name, key}
	m.memoMu.RLock()
	e := m.memo[mk]
	m.memoMu.RUnlock()
	if e != nil && e.cfg == cfg {
		if e.domain == "" {
			logAnswer(context.Background(), cfg, name, key, e.answer)
			return e.reply, true
		}
		if f, ok := cf.CachedMapFacts(e.domain); ok && f.Checked.Equal(e.checked) {
			logAnswer(context.Background(), cfg, name, key, e.answer)
			return e.reply, true
		}
	}
	tlsrpt, allPublished, known := mapName(name)
	if !known {
		return m.Lookup(context.Background(), name, key), true
	}
	defaultPublished := cfg.DefaultPublished || allPublished
	k := Classify(key)
	var facts *verify.MapFacts
	d, published := Needs(cfg.Policies, defaultPublished, k)
	if published {
		if cf == nil {
			return socketmap.Reply{}, false
		}
		var ok bool
		if facts, ok = cf.CachedMapFacts(d); !ok {
			return socketmap.Reply{}, false
		}
	}
	a := Decide(cfg.Policies, defaultPublished, k, facts, nil, tlsrpt)
	logAnswer(context.Background(), cfg, name, key, a)
	if a.Status == socketmap.StatusOK || a.Status == socketmap.StatusNotFound {
		e := &memoEntry{cfg: cfg, answer: a, reply: a.Reply()}
		if published {
			e.domain, e.checked = d, facts.Checked
		}
		m.memoMu.Lock()
		if m.memo == nil || len(m.memo) >= maxMemo {
			m.memo = make(map[memoKey]*memoEntry)
		}
		m.memo[mk] = e
		m.memoMu.Unlock()
	}
	return a.Reply(), true
}

// logAnswer logs one answer: at Info when Postfix defers because of it (TEMP, PERM),
// at Debug otherwise.
func logAnswer(ctx context.Context, cfg *Config, name, key string, a Answer) {
	level := slog.LevelDebug
	if a.Status != socketmap.StatusOK && a.Status != socketmap.StatusNotFound {
		level = slog.LevelInfo
	}
	if !cfg.Log.Enabled(ctx, level) {
		return
	}
	cfg.Log.Log(ctx, level, "socketmap lookup", "map", clean(name), "key", clean(key), "status", string(a.Status),
		"data", a.Data, "why", a.Why, "rule", a.Rule)
}

// mapName reports whether name is a map this table serves, whether it adds the TLSRPT
// attributes, and whether it answers published for every unconfigured domain.
func mapName(name string) (tlsrpt, published, known bool) {
	switch name {
	case NameQuery:
		return false, false, true
	case NameQueryTLSRPT:
		return true, false, true
	case NamePublished:
		return false, true, true
	case NamePublishedTLSRPT:
		return true, true, true
	}
	return false, false, false
}

// Answer is Lookup with the reasons: it parses the key, finds the configured policy
// and, for level published, the facts, and decides.
func (m *Map) Answer(ctx context.Context, name, key string) Answer {
	return m.answer(ctx, m.cfg.Load(), name, key)
}

func (m *Map) answer(ctx context.Context, cfg *Config, name, key string) Answer {
	tlsrpt, allPublished, known := mapName(name)
	if !known {
		return Answer{Status: socketmap.StatusPerm, Data: "unknown map name " + strconv.Quote(clean(name)) +
			" (want one of " + strings.Join(Names, ", ") + ")", Why: "unknown map name"}
	}
	defaultPublished := cfg.DefaultPublished || allPublished
	k := Classify(key)
	var facts *verify.MapFacts
	var factsErr error
	if d, published := Needs(cfg.Policies, defaultPublished, k); published && cfg.Facts == nil {
		factsErr = errors.New("no facts source")
	} else if published {
		lctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
		facts, factsErr = cfg.Facts.MapFacts(lctx, d)
		cancel()
	}
	return Decide(cfg.Policies, defaultPublished, k, facts, factsErr, tlsrpt)
}

// KeyKind is what a lookup key names.
type KeyKind int

// Key kinds, as Postfix's SMTP client forms them (smtp_tls_policy.c
// tls_policy_lookup).
const (
	KeyInvalid KeyKind = iota // nothing Postfix forms for a TCP next hop: NOTFOUND
	KeyDomain                 // "example.com": the next-hop domain (asked first)
	KeyParent                 // ".example.com": asked only after "sub.example.com" was NOTFOUND
	KeyNextHop                // "[host]", "[host]:port", "host:port": asked alone, no parents
)

// Key is a classified lookup key.
type Key struct {
	Kind KeyKind
	// Name is the normalized key: the A-label domain (KeyDomain), ".domain"
	// (KeyParent), policy.NormalizeNextHop's form (KeyNextHop), the input otherwise.
	Name string
}

// Classify parses a key as Postfix sends it. Postfix folds keys to lower case
// (smtp_tls_list_init: DICT_FLAG_FOLD_FIX) and may send a UTF-8 domain
// (DICT_FLAG_UTF8_REQUEST); both forms of an IDN are the same key here.
func Classify(key string) Key {
	if strings.ContainsFunc(key, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
		return Key{Kind: KeyInvalid, Name: key}
	}
	if hop, ok := policy.NormalizeNextHop(key); ok {
		return Key{Kind: KeyNextHop, Name: hop}
	}
	if rest, ok := strings.CutPrefix(key, "."); ok {
		d, err := policy.NormalizeDomain(rest)
		if err != nil || strings.HasPrefix(rest, ".") {
			return Key{Kind: KeyInvalid, Name: key}
		}
		return Key{Kind: KeyParent, Name: "." + d}
	}
	d, err := policy.NormalizeDomain(key)
	if err != nil {
		return Key{Kind: KeyInvalid, Name: key}
	}
	return Key{Kind: KeyDomain, Name: d}
}

// Needs reports whether answering k needs the facts of a domain (level published),
// and which domain.
func Needs(t *policy.Table, defaultPublished bool, k Key) (domain string, ok bool) {
	if k.Kind != KeyDomain {
		return "", false
	}
	if p, found := t.Lookup(k.Name); found {
		return k.Name, p.Level == policy.LevelPublished
	}
	return k.Name, defaultPublished
}

// Decide is the map's answer to k: a pure function of the configured table, the
// default, and for level published the facts (or the error getting them).
//
//   - A configured entry wins over the default. It is found as tlsgate finds a
//     recipient domain's policy (policy.Table.Lookup: exact key, then the closest
//     ".parent"), which is the walk Postfix's own lookup of a table file makes
//     (tls_policy_lookup), so a domain key answers what the file would have
//     answered at the first key Postfix finds. The entry is served verbatim (Raw),
//     attributes included, also when Postfix refuses it (Policy.Invalid): Postfix
//     then defers the mail exactly as with the file, never a silent downgrade.
//   - A ".parent" key is asked only after the domain key was NOTFOUND, that is,
//     after tlsgate found no entry at all, or a published one that requires nothing.
//     Its own configured entry is served verbatim, except a published one, which
//     already answered through the domain key: NOTFOUND.
//   - A next-hop key ("[host]:port") is answered from the next-hop entries of
//     policy_files; level published and the default never apply to it (they are
//     about a recipient domain's MX hosts, not an explicit relay).
//   - Level published: Published.
func Decide(t *policy.Table, defaultPublished bool, k Key, f *verify.MapFacts, err error, tlsrpt bool) Answer {
	switch k.Kind {
	case KeyNextHop:
		if p, found := t.LookupNextHop(k.Name); found {
			return verbatim(p)
		}
		return notFound("no policy for the next hop " + k.Name)
	case KeyParent:
		p, found := t.LookupKey(k.Name)
		switch {
		case !found:
			return notFound("no policy for " + k.Name)
		case p.Level == policy.LevelPublished:
			return notFound("the published policy of " + k.Name + " is answered through the domain key")
		}
		return verbatim(p)
	case KeyDomain:
		if p, found := t.Lookup(k.Name); found {
			if p.Level != policy.LevelPublished {
				return verbatim(p)
			}
			a := publishedOrErr(f, err, tlsrpt)
			a.Rule = policy.Rule{Key: p.Key}.Tag()
			return a
		}
		if defaultPublished {
			a := publishedOrErr(f, err, tlsrpt)
			a.Rule = "default"
			return a
		}
		return notFound("no policy for " + k.Name + " and no socketmap.default_level")
	}
	return notFound("not a domain or next-hop key")
}

// verbatim serves a configured entry as Postfix would have read it from the file.
func verbatim(p policy.Policy) Answer {
	data := p.Raw
	if data == "" {
		data = p.Level.String()
		if len(p.Match) > 0 {
			sep := ":"
			if p.Level == policy.LevelFingerprint {
				sep = "|"
			}
			data += " match=" + strings.Join(p.Match, sep)
		}
	}
	why := "configured " + policy.Rule{Key: p.Key, Source: p.Source}.String()
	if p.Invalid != "" {
		why += "; Postfix refuses it and defers the mail: " + p.Invalid
	}
	a := ok(data, why)
	a.Rule = policy.Rule{Key: p.Key}.Tag()
	return a
}

func publishedOrErr(f *verify.MapFacts, err error, tlsrpt bool) Answer {
	switch {
	case errors.Is(err, verify.ErrPending):
		return temp("the DNS and MTA-STS lookup for this domain is still in progress; try again later")
	case errors.Is(err, verify.ErrOverloaded):
		return temp("too many DNS and MTA-STS lookups are running; try again later")
	case err != nil:
		return temp("the DNS and MTA-STS lookup failed: " + err.Error())
	case f == nil:
		return temp("no facts for this domain")
	}
	return Published(f, tlsrpt)
}

// Published answers level published from the facts, consistently with
// verify.Judge's judgement of published at RCPT time (judgePublished), so that a
// recipient accepted at RCPT time is delivered at the same requirement, and one
// refused is not delivered:
//
//  1. MX lookup failed: TEMP. Null MX or no such domain: NOTFOUND (Postfix bounces
//     on its own, as the RCPT verdict fails).
//  2. Some MX host Postfix would contact (within smtp_mx_address_limit) has usable
//     DNSSEC-validated TLSA records: "dane". Not "dane-only": the RCPT verdict judges
//     this case as Postfix's dane, where a host without TLSA records below a secure
//     MX RRset is a non-DANE host (RFC 7672 §2.2), so "dane-only" would refuse
//     deliveries the verdict accepted. The delivering Postfix needs
//     smtp_dns_support_level = dnssec, or "dane" means "may".
//  3. A TLSA lookup failed (SERVFAIL, bogus) for a host that matters: with another
//     such host left, "dane" (Postfix skips the failed host and tries the others,
//     RFC 7672 §2.2, as the verdict does); when it failed for every one, TEMP.
//     Never a fall-back to MTA-STS or to nothing.
//  4. The _mta-sts TXT lookup failed and no policy is cached: TEMP (RFC 8461 §5.1
//     does not allow treating that as "no policy").
//  5. MTA-STS mode enforce: "secure" with match= the policy's mx patterns and
//     servername=hostname (RFC 8461 §4.1, §4.2); when no MX host is listed
//     (sts-mx-mismatch), TEMP: RFC 8461 §5 makes a sender treat "no valid MX" as a
//     temporary failure and not deliver. With tlsrpt, the TLSRPT attributes.
//  6. MTA-STS mode testing: NOTFOUND (delivery goes ahead, RFC 8461 §5).
//  7. TLSA records present but none usable: "dane" (TLS mandatory for those hosts,
//     unauthenticated; RFC 7672 §2.2).
//  8. Otherwise NOTFOUND: nothing is published, smtp_tls_security_level applies.
func Published(f *verify.MapFacts, tlsrpt bool) Answer {
	switch f.MX {
	case verify.MXError:
		return temp(f.MXDetail)
	case verify.MXNull:
		return notFound(f.Domain + " publishes a null MX: it accepts no mail (Postfix bounces)")
	case verify.MXNone:
		return notFound(f.MXDetail)
	}
	tried := f.TriedHosts()
	var usable, unusable, failed []string
	for _, h := range tried {
		switch h.TLSA.Status {
		case verify.TLSAFound:
			if len(dane.UsableRecords(h.TLSA.Records)) > 0 {
				usable = append(usable, h.Name)
			} else {
				unusable = append(unusable, h.Name)
			}
		case verify.TLSAError:
			failed = append(failed, h.Name)
		}
	}
	switch {
	case len(usable) > 0:
		return ok("dane", "DNSSEC-validated TLSA records for "+strings.Join(usable, ", "))
	case len(failed) > 0 && len(failed) == len(tried):
		return temp("the TLSA lookup failed for every MX host (" + strings.Join(failed, ", ") + "); DANE cannot be ruled out")
	case len(failed) > 0:
		return ok("dane", "the TLSA lookup failed for "+strings.Join(failed, ", ")+"; Postfix's dane skips those hosts and uses the others")
	}
	if sts := f.STS; sts != nil {
		switch {
		case sts.Status == mtasts.StatusError:
			return temp("the MTA-STS record of " + f.Domain + " could not be looked up: " + sts.Detail)
		case sts.Policy != nil && sts.Policy.Mode == mtasts.ModeEnforce:
			return enforce(f, sts.Policy, tlsrpt)
		case sts.Policy != nil && sts.Policy.Mode == mtasts.ModeTesting:
			// Also over TLSA records that are all unusable, as in the RCPT verdict.
			return notFound("MTA-STS policy in testing mode: delivery goes ahead (RFC 8461 section 5)")
		}
	}
	if len(unusable) > 0 {
		return ok("dane", "TLSA records for "+strings.Join(unusable, ", ")+", none usable: TLS is mandatory (RFC 7672 section 2.2)")
	}
	return notFound(f.Domain + " publishes neither usable TLSA records nor an MTA-STS policy in mode enforce")
}

// enforce answers an MTA-STS policy in mode enforce.
func enforce(f *verify.MapFacts, pol *mtasts.Policy, tlsrpt bool) Answer {
	listed := false
	names := make([]string, len(f.Hosts))
	for i, h := range f.Hosts {
		names[i] = h.Name
		listed = listed || pol.Allows(h.Name)
	}
	if !listed {
		return temp("sts-mx-mismatch: none of the MX hosts of " + f.Domain + " (" + strings.Join(names, ", ") +
			") is listed in its MTA-STS policy (mx: " + strings.Join(pol.MX, ", ") + "); RFC 8461 section 5: not delivered")
	}
	// Postfix's match= syntax: a leading "." matches subdomains; "*.example.com"
	// (RFC 8461 §3.2: one label) becomes ".example.com".
	match := make([]string, len(pol.MX))
	for i, p := range pol.MX {
		match[i] = strings.TrimPrefix(p, "*")
	}
	var b strings.Builder
	b.WriteString("secure match=")
	b.WriteString(strings.Join(match, ":"))
	b.WriteString(" servername=hostname")
	if tlsrpt {
		// TLSRPT_README "MTA-STS Support via smtp_tls_policy_maps": Postfix 3.10+
		// reads these; smtp_tls_enforce_sts_mx_patterns (3.10.5+) then connects only
		// to MX hosts matching an mx_host_pattern and matches the certificate
		// against the MX host name, exactly RFC 8461 §4.1/§4.2.
		b.WriteString(" policy_type=sts policy_domain=")
		b.WriteString(f.Domain)
		for _, p := range pol.MX {
			b.WriteString(" mx_host_pattern=")
			b.WriteString(p)
		}
		for line := range strings.SplitSeq(strings.TrimSuffix(pol.String(), "\n"), "\n") {
			b.WriteString(" { policy_string = ")
			b.WriteString(line)
			b.WriteString(" }")
		}
	}
	return ok(b.String(), "MTA-STS policy in mode enforce")
}

// clean makes text safe for one reply line and a log field: bounded, printable ASCII
// only (anything else becomes '?').
func clean(s string) string {
	const maxLen = 512
	if len(s) > maxLen {
		s = s[:maxLen] + "..."
	}
	// Postfix logs the reason of a TEMP or PERM reply; keep it printable ASCII, so a
	// cut multibyte character or remote text cannot garble the log line.
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r >= 0x7f {
			return '?'
		}
		return r
	}, s)
}
