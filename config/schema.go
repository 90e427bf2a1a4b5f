package config

import (
	"fmt"
	"log/slog"
	"math"
	"net/netip"
	"os"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/tlsgate/tlsgate/internal/mtasts"
	"github.com/tlsgate/tlsgate/internal/sharedcache"
	"github.com/tlsgate/tlsgate/milter"
	"github.com/tlsgate/tlsgate/policy"
	"github.com/tlsgate/tlsgate/policymap"
	"github.com/tlsgate/tlsgate/verify"
	"github.com/tlsgate/tlsgate/web"
)

// key is one configuration key settable from the file, the environment and a flag:
// every key except the policies and customers lists. The table below is the only
// place a key's name, type, default, checks and documentation are written: the YAML
// keys, the TLSGATE_* variables, the flags, their defaults and usage, the checks at
// load and the README's configuration reference (TestReadmeReference) all come from
// it.
type key struct {
	name  string            // "milter.rcpt_timeout"; no dot for top-level keys
	def   any               // the default, of the field's type
	field func(*Config) any // the field: *string, *bool, *int, *time.Duration, *[]string or a parsed type
	// parse turns the text of a value (each item for a list) into the field's type,
	// or says what is wrong (msg, allowed); for the fields whose type is not one of
	// the plain ones above, and for text that only some values of a string are.
	parse func(s string) (v any, msg, allowed string)
	// text writes a value of a field with parse back as text; nil: the type's own.
	text func(v any) string
	// check tests the parsed value alone (validate also checks values together).
	check  checker
	help   string // markdown, one line: the README's meaning column and the flag usage
	secret bool   // a URL that may hold a password: Settings redacts it
}

// keys lists the keys in the order of the README's configuration reference.
var keys = []key{
	{name: "milter.listen", def: Listen{"tcp", "127.0.0.1:10025"}, field: func(c *Config) any { return &c.Milter.Listen },
		parse: parseMilterListen, help: "where Postfix connects (`smtpd_milters`): `inet:HOST:PORT`, `inet:PORT`, `unix:/PATH`"},
	{name: "milter.rcpt_timeout", def: milter.DefaultRcptTimeout, field: func(c *Config) any { return &c.Milter.RcptTimeout },
		check: below(maxRcptTimeout, "Postfix milter_command_timeout is 30s by default"),
		help:  "answer each RCPT within this; keep below Postfix's `milter_command_timeout`"},
	{name: "milter.header", def: "TLSGate-Verdict", field: func(c *Config) any { return &c.Milter.Header },
		check: optional(checkHeaderName),
		help:  "name of the audit header added to each checked message; `\"\"` disables it"},
	{name: "milter.checked_transports", def: []string{"smtp", "smtp-*", "relay"}, field: func(c *Config) any { return &c.Milter.CheckedTransports },
		check: each(checkTransport),
		help:  "`{rcpt_mailer}` values that are checked; shell patterns (`smtp-*` covers per-customer services such as `smtp-encrypt`)"},
	{name: "milter.socket_mode", def: os.FileMode(0o660), field: func(c *Config) any { return &c.Milter.SocketMode },
		parse: parseSocketMode, help: "unix socket permissions"},
	{name: "milter.socket_group", def: "", field: func(c *Config) any { return &c.Milter.SocketGroup },
		check: optional(checkGroup),
		help:  "unix socket group (name or gid)"},
	{name: "socketmap.listen", def: Listen{}, field: func(c *Config) any { return &c.Socketmap.Listen },
		parse: parseSocketmapListen,
		help:  "the delivery-time policy table for `smtp_tls_policy_maps` ([socketmap](#delivery-time-policy-socketmap)): `inet:HOST:PORT`, `unix:/PATH`; `\"\"` = off"},
	{name: "socketmap.socket_mode", def: os.FileMode(0o660), field: func(c *Config) any { return &c.Socketmap.SocketMode },
		parse: parseSocketMode, help: "its unix socket permissions"},
	{name: "socketmap.socket_group", def: "", field: func(c *Config) any { return &c.Socketmap.SocketGroup },
		check: optional(checkGroup),
		help:  "its unix socket group (name or gid)"},
	{name: "socketmap.default_level", def: false, field: func(c *Config) any { return &c.Socketmap.DefaultPublished },
		parse: parseDefaultLevel, text: textDefaultLevel,
		help: "domains without a policy: `\"\"` answers `NOTFOUND` (Postfix's `smtp_tls_security_level` applies), `published` answers what the domain publishes (drop-in for postfix-tlspol); a Postfix level is refused (that is `smtp_tls_security_level`'s job)"},
	{name: "socketmap.timeout", def: policymap.DefaultTimeout, field: func(c *Config) any { return &c.Socketmap.Timeout },
		check: below(postfixSocketmapTimeout, "Postfix's socketmap timeout"),
		help:  "budget of one lookup; facts still pending then answer `TEMP` and finish into the cache; below Postfix's socketmap timeout (100s)"},
	{name: "dns.resolver", def: "", field: func(c *Config) any { return &c.DNS.Resolver },
		parse: parseResolver, help: "resolver IP or IP:PORT; `\"\"` = first nameserver of `/etc/resolv.conf`"},
	{name: "dns.timeout", def: 3 * time.Second, field: func(c *Config) any { return &c.DNS.Timeout },
		check: positive,
		help:  "time limit of one DNS query"},
	{name: "dns.trusted", def: []netip.Prefix{}, field: func(c *Config) any { return &c.DNS.Trusted },
		parse: parseNetwork, help: "resolver addresses/CIDRs whose AD bit is trusted although not on loopback"},
	{name: "probe.port", def: verify.DefaultSMTPPort, field: func(c *Config) any { return &c.Probe.Port },
		check: between(1, 65535, "is not a port number (1-65535)"),
		help:  "SMTP port probed on each MX host"},
	{name: "probe.helo", def: "", field: func(c *Config) any { return &c.Probe.HELO },
		check: optional(checkHELO),
		help:  "EHLO name; `\"\"` = host name"},
	{name: "probe.timeout", def: verify.DefaultHostTimeout, field: func(c *Config) any { return &c.Probe.Timeout },
		check: positive,
		help:  "time limit of one SMTP session with one MX address (connect to `QUIT`)"},
	{name: "probe.ca_file", def: "", field: func(c *Config) any { return &c.Probe.CAFile },
		help: "PEM trust anchors for `verify`/`secure` and MTA-STS; `\"\"` = system roots"},
	{name: "probe.allow_networks", def: []netip.Prefix{}, field: func(c *Config) any { return &c.Probe.AllowNetworks },
		parse: parseNetwork, help: "non-public networks that may be probed (e.g. `[127.0.0.0/8]`)"},
	{name: "probe.max_concurrent", def: verify.DefaultMaxConcurrent, field: func(c *Config) any { return &c.Probe.MaxConcurrent },
		check: atLeastOne,
		help:  "domains probed at once"},
	{name: "probe.max_queued", def: 1024, field: func(c *Config) any { return &c.Probe.MaxQueued },
		check: atLeastOne,
		help:  "probes waiting for a slot; past it: `451 4.7.0` (`overloaded`)"},
	{name: "probe.rate_per_address", def: 10, field: func(c *Config) any { return &c.Probe.RatePerAddress },
		check: between(0, math.MaxInt, "must be 0 (no limit) or more"),
		help:  "probes per MX address per minute (a probe is one SMTP session, up to three for a TLS 1.0/1.1 server; `0`: no limit); past it: `451 4.7.5` (`rate-limited`)"},
	{name: "mta_sts.enabled", def: true, field: func(c *Config) any { return &c.MTASTS.Enabled },
		help: "look up MTA-STS policies (for `published` and `check`)"},
	{name: "mta_sts.timeout", def: mtasts.DefaultTimeout, field: func(c *Config) any { return &c.MTASTS.Timeout },
		check: positive,
		help:  "time limit of fetching one MTA-STS policy (runs while the MX hosts are probed; keep below `milter.rcpt_timeout`)"},
	{name: "mta_sts.cache_size", def: mtasts.DefaultCacheSize, field: func(c *Config) any { return &c.MTASTS.CacheSize },
		check: atLeastOne,
		help:  "MTA-STS policies kept, each for its `max_age`"},
	{name: "cache.size", def: verify.DefaultCacheSize, field: func(c *Config) any { return &c.Cache.Size },
		check: atLeastOne,
		help:  "domains kept in the verdict cache"},
	{name: "cache.pass_ttl", def: verify.DefaultPassTTL, field: func(c *Config) any { return &c.Cache.PassTTL },
		check: positive,
		help:  "how long a pass is kept; capped by DNS TTLs and the MTA-STS policy's expiry"},
	{name: "cache.fail_ttl", def: verify.DefaultFailTTL, field: func(c *Config) any { return &c.Cache.FailTTL },
		check: positive,
		help:  "how long a fail is kept (something definite is wrong: no STARTTLS, a bad certificate)"},
	{name: "cache.tempfail_ttl", def: verify.DefaultTempfailTTL, field: func(c *Config) any { return &c.Cache.TempfailTTL },
		check: positive,
		help:  "how long a tempfail is kept (something is unknown: a timeout, a DNS failure, a 4xx)"},
	{name: "cache.file", def: "", field: func(c *Config) any { return &c.Cache.File },
		help: "verdict cache and MTA-STS policies saved here (every `save_interval`, at shutdown: a temporary file in the same directory, renamed over it) and loaded at start; must be a regular file owned by tlsgate's user, not group/world-writable; expired entries dropped; a bad file is ignored with a warning, a bad line skipped"},
	{name: "cache.save_interval", def: 5 * time.Minute, field: func(c *Config) any { return &c.Cache.SaveInterval },
		check: positive,
		help:  "how often the cache is saved to `cache.file` while running"},
	{name: "cache.admin_socket", def: "", field: func(c *Config) any { return &c.Cache.AdminSocket },
		check: optional(checkAbsolute),
		help:  "unix socket of the [cache admin](#a-fleet-the-shared-cache-tier) (`tlsgate cache ...`), created mode 0600; `\"\"` = off"},
	{name: "cache.shared.url", def: "", field: func(c *Config) any { return &c.Cache.Shared.URL }, secret: true,
		check: checkSharedURL,
		help:  "the fleet's [shared cache tier](#a-fleet-the-shared-cache-tier), a Valkey or Redis server: `redis://[USER:PASSWORD@]HOST:PORT/DB`, `rediss://...` (TLS), `unix://[USER:PASSWORD@]/PATH?db=N`; `\"\"` = this host's cache only"},
	{name: "cache.shared.key_prefix", def: sharedcache.DefaultKeyPrefix, field: func(c *Config) any { return &c.Cache.Shared.KeyPrefix },
		check: checkKeyPrefix,
		help:  "prefix of every key and of the purge channel (several fleets can share one server)"},
	{name: "cache.shared.secret_file", def: "", field: func(c *Config) any { return &c.Cache.Shared.SecretFile },
		help: "key (≥ 32 bytes, the same on every host) that authenticates shared entries; required with `url`; owned by tlsgate's user, mode 0600 or 0640"},
	{name: "cache.shared.timeout", def: sharedcache.DefaultTimeout, field: func(c *Config) any { return &c.Cache.Shared.Timeout },
		check: positive,
		help:  "one shared operation; past it the host goes on with its local cache and its own probes"},
	{name: "cache.refresh_ahead", def: true, field: func(c *Config) any { return &c.Cache.RefreshAhead },
		help: "a destination (domain or next hop) asked for during its cache period is probed again shortly before its facts expire (the last tenth of the TTL, at least 15s, at most half), using at most a quarter of `probe.max_concurrent` and only free slots, never the `probe.max_queued` queue; one nobody asked for expires as before. While such a refresh is still running (or waiting for a slot) when the facts expire, RCPTs are answered from them for at most the longest a probe may take (3 × `dns.timeout` + 5 × `probe.timeout`, 59s by default; at most half the TTL), never after the refresh brought new facts (RFC 8767's serve-stale, bounded) ([Performance](#performance))"},
	{name: "defaults.on_fail", def: milter.DefaultOnFail, field: func(c *Config) any { return &c.Defaults.OnFail },
		parse: parseOnFail, help: "action when a recipient fails its policy: `reject`, `tempfail`, `header`"},
	{name: "defaults.on_tempfail", def: milter.DefaultOnTempfail, field: func(c *Config) any { return &c.Defaults.OnTempfail },
		parse: parseOnTempfail, help: "action when the check could not be completed: `tempfail`, `header` (never `reject`)"},
	{name: "defaults.reject_message", def: "", field: func(c *Config) any { return &c.Defaults.RejectMessage },
		check: checkRejectMessage,
		help:  "extra line on every rejection (printable ASCII, ≤ 200 chars)"},
	{name: "metrics.listen", def: "", field: func(c *Config) any { return &c.Metrics.Listen },
		check: optional(checkHostPort),
		help:  "`HOST:PORT` for Prometheus `/metrics`, `/healthz`, `/readyz` (e.g. `127.0.0.1:9425`); `\"\"` = off"},
	{name: "web.listen", def: "", field: func(c *Config) any { return &c.Web.Listen },
		check: optional(checkHostPort),
		help:  "`HOST:PORT` of the [check page and API](#check-page-and-api) (e.g. `127.0.0.1:8425`); `\"\"` = off; an address other than loopback needs `web.tokens_file` (tlsgate refuses to start otherwise)"},
	{name: "web.tokens_file", def: "", field: func(c *Config) any { return &c.Web.TokensFile },
		help: "the clients of the page and API, `NAME TOKEN` per line; not readable by others nor group-writable; re-read on reload; `\"\"` = no authentication (loopback only)"},
	{name: "web.rate_per_minute", def: web.DefaultRatePerMinute, field: func(c *Config) any { return &c.Web.RatePerMinute },
		check: between(1, 1_000_000, "must be between 1 and 1000000"),
		help:  "checks one client (its token, else its address) may ask for per minute; past it `429`"},
	{name: "log.level", def: slog.LevelInfo, field: func(c *Config) any { return &c.Log.Level },
		parse: parseLogLevel, help: "log level: `debug`, `info`, `warn`, `error`"},
	{name: "log.format", def: "text", field: func(c *Config) any { return &c.Log.Format },
		parse: parseLogFormat, help: "log format: `text`, `json`"},
	{name: "policy_files", def: []string{}, field: func(c *Config) any { return &c.PolicyFiles },
		check: each(checkNotEmpty),
		help:  "Postfix `tls_policy` source files"},
}

// Keys of the lists of maps, settable only in the file.
const (
	keyPolicies  = "policies"
	keyCustomers = "customers"
)

var (
	policyKeys   = []string{"domain", "level", "match", "on_fail", "on_tempfail"}
	policyLists  = []string{"match"}
	customerKeys = []string{"name", "senders", "sasl_logins", "client_networks", "level", "on_fail", "on_tempfail"}
	customerList = []string{"senders", "sasl_logins", "client_networks"}
)

// Allowed values, as shown in errors.
const (
	allowedOnFail     = "reject, tempfail, header"
	allowedOnTempfail = "tempfail, header"
	allowedLogLevel   = "debug, info, warn, error"
	allowedLogFormat  = "text, json"
	allowedMatchKinds = "fingerprint, verify, secure"
)

func parseMilterListen(s string) (any, string, string) {
	l, msg := parseListen(s)
	if msg != "" {
		return nil, msg, listenForms
	}
	return l, "", ""
}

func parseSocketmapListen(s string) (any, string, string) {
	if s == "" {
		return Listen{}, "", ""
	}
	l, msg := parseListen(s)
	if msg != "" {
		return nil, strings.Replace(msg, "milter socket", "socket", 1), `"" (off), ` + listenForms
	}
	return l, "", ""
}

func parseSocketMode(s string) (any, string, string) {
	m, err := parseMode(s)
	if err != nil {
		msg := "is not an octal file mode like 0660"
		if n, err := strconv.ParseUint(s, 8, 32); err == nil && n > 0o777 {
			msg += ` (an unquoted 660 in YAML is decimal; write "0660")`
		}
		return nil, msg, ""
	}
	return m, "", ""
}

// parseDefaultLevel accepts only published: any Postfix level for every domain is
// what Postfix's own smtp_tls_security_level already says, and NOTFOUND leaves it in
// charge.
func parseDefaultLevel(s string) (any, string, string) {
	switch s {
	case "":
		return false, "", ""
	case policy.LevelPublished.String():
		return true, "", ""
	}
	return nil, "is not a socketmap default level (for a Postfix level, set smtp_tls_security_level in main.cf)", `"", published`
}

func textDefaultLevel(v any) string {
	if v.(bool) {
		return policy.LevelPublished.String()
	}
	return ""
}

func parseResolver(s string) (any, string, string) {
	addr, err := resolverAddr(s)
	if err != nil {
		return nil, `is not an IP address with optional port ("127.0.0.1", "127.0.0.1:53", "[::1]:53"; "" for /etc/resolv.conf)`, ""
	}
	return addr, "", ""
}

func parseNetwork(s string) (any, string, string) {
	p, err := parsePrefix(s)
	if err != nil {
		return nil, "is not a CIDR or IP address", ""
	}
	return p, "", ""
}

func parseOnFail(s string) (any, string, string) {
	if a, err := policy.ParseAction(s); err == nil && a != policy.ActionDefault {
		return a, "", ""
	}
	return nil, "is not an action", allowedOnFail
}

func parseOnTempfail(s string) (any, string, string) {
	a, msg := checkOnTempfail(s, false)
	if msg != "" {
		return nil, msg, allowedOnTempfail
	}
	return a, "", ""
}

// checkOnTempfail checks an on_tempfail value; "" means the default where optional.
func checkOnTempfail(s string, optional bool) (policy.Action, string) {
	a, err := policy.ParseAction(s)
	switch {
	case err != nil, a == policy.ActionDefault && !optional:
		return 0, "is not an action for a tempfail"
	case a == policy.ActionReject:
		return 0, "is not allowed: a tempfail means the check could not be done and is never answered with a 5xx"
	}
	return a, ""
}

func parseLogLevel(s string) (any, string, string) {
	switch strings.ToLower(s) {
	case "debug":
		return slog.LevelDebug, "", ""
	case "info":
		return slog.LevelInfo, "", ""
	case "warn":
		return slog.LevelWarn, "", ""
	case "error":
		return slog.LevelError, "", ""
	}
	return nil, "is not a log level", allowedLogLevel
}

func parseLogFormat(s string) (any, string, string) {
	if f := strings.ToLower(s); slices.Contains(strings.Split(allowedLogFormat, ", "), f) {
		return f, "", ""
	}
	return nil, "is not a log format", allowedLogFormat
}

// defaultConfig returns the built-in configuration: every key at its default, no
// policies (every recipient passes).
func defaultConfig() *Config {
	c := &Config{}
	for _, k := range keys {
		k.set(c, k.def)
	}
	return c
}

// set stores v, of the field's type, into the field of k (a copy for a list).
func (k key) set(c *Config, v any) {
	rv := reflect.ValueOf(v)
	if rv.Kind() == reflect.Slice {
		cp := reflect.MakeSlice(rv.Type(), rv.Len(), rv.Len())
		reflect.Copy(cp, rv)
		rv = cp
	}
	reflect.ValueOf(k.field(c)).Elem().Set(rv)
}

// get returns the value of the field of k.
func (k key) get(c *Config) any { return reflect.ValueOf(k.field(c)).Elem().Interface() }

// isList reports whether the field of k is a list: comma-separated in the environment
// and a flag.
func (k key) isList() bool { return reflect.TypeOf(k.def).Kind() == reflect.Slice }

// format writes a value of k as text: what a flag, the environment or the file
// would say. A list gives its items.
func (k key) format(v any) []string {
	one := func(v any) string {
		switch v := v.(type) {
		case string:
			return v
		case time.Duration:
			return shortDuration(v)
		case os.FileMode:
			return fmt.Sprintf("%04o", uint32(v))
		case slog.Level:
			return strings.ToLower(v.String())
		}
		if k.text != nil {
			return k.text(v)
		}
		return fmt.Sprint(v)
	}
	rv := reflect.ValueOf(v)
	if rv.Kind() != reflect.Slice {
		return []string{one(v)}
	}
	out := make([]string, rv.Len())
	for i := range out {
		out[i] = one(rv.Index(i).Interface())
	}
	return out
}

// shortDuration writes d without zero units: 1h, 10m, 1m30s, 75ms.
func shortDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// usage is the help of k as plain text, for a flag: no backquotes (pflag would take
// the first quoted word for the value's name) and link texts without their target.
func (k key) usage() string {
	s := regexp.MustCompile(`\[([^]]+)\]\(#[^)]*\)`).ReplaceAllString(k.help, "$1")
	return strings.ReplaceAll(s, "`", "")
}

// envConfig is the variable holding the configuration file path. cmd reads it; Load
// only tolerates it.
const envConfig = "TLSGATE_CONFIG"

const envPrefix = "TLSGATE_"

func lookupKey(name string) (key, bool) {
	i := slices.IndexFunc(keys, func(k key) bool { return k.name == name })
	if i < 0 {
		return key{}, false
	}
	return keys[i], true
}

// envName is the environment variable of a key: TLSGATE_MILTER_RCPT_TIMEOUT for
// milter.rcpt_timeout, TLSGATE_POLICY_FILES for policy_files.
func envName(key string) string {
	return envPrefix + strings.ToUpper(strings.ReplaceAll(key, ".", "_"))
}

// section returns the part of key before the dot, "" for a top-level key.
func section(key string) string {
	s, _, ok := strings.Cut(key, ".")
	if !ok {
		return ""
	}
	return s
}

// sections lists the section names in order.
func sections() []string {
	var out []string
	for _, k := range keys {
		if sec := section(k.name); sec != "" && !slices.Contains(out, sec) {
			out = append(out, sec)
		}
	}
	return out
}

// topLevelKeys lists what may appear at the top of the file.
func topLevelKeys() []string {
	out := sections()
	for _, k := range keys {
		if section(k.name) == "" {
			out = append(out, k.name)
		}
	}
	return append(out, keyPolicies, keyCustomers)
}

// sectionKeys lists the keys of a section without the section prefix.
func sectionKeys(sec string) []string {
	var out []string
	for _, k := range keys {
		if section(k.name) == sec {
			out = append(out, strings.TrimPrefix(k.name, sec+"."))
		}
	}
	return out
}

// problem is what is wrong with a value (or, with warn, worth a warning), for a
// FieldError; suffix is "[i]" for an item of a list.
type problem struct {
	suffix, value, msg, allowed string
	warn                        bool
}

// convert turns a value from YAML, the environment (always a string) or a flag into
// the type of the key's field; problems say why it cannot, and note doubts.
func (k key) convert(v any) (any, []problem) {
	fail := func(shown, msg string) (any, []problem) { return nil, []problem{{value: shown, msg: msg}} }
	if k.parse == nil {
		var (
			out       any
			shown, ms string
		)
		switch k.field(&Config{}).(type) {
		case *string:
			out, shown, ms = convertString(v)
		case *bool:
			out, shown, ms = convertBool(v)
		case *time.Duration:
			out, shown, ms = convertDuration(v)
		case *int:
			out, shown, ms = convertInt(v)
		case *[]string:
			out, shown, ms = convertList(v)
		default:
			panic("config: key " + k.name + " has an unsupported type")
		}
		if ms != "" {
			return fail(shown, ms)
		}
		return out, nil
	}
	if !k.isList() {
		// YAML reads an unquoted 0660 as the integer 432: written back in octal, it
		// round-trips; an unquoted 660, read as decimal, becomes 01224 and fails with a
		// hint to quote it.
		if _, mode := k.def.(os.FileMode); mode {
			switch n := v.(type) {
			case int:
				v = fmt.Sprintf("0%o", n)
			case uint64:
				v = fmt.Sprintf("0%o", n)
			}
		}
		s, shown, ms := convertString(v)
		if ms != "" {
			return fail(shown, ms)
		}
		out, ms, allowed := k.parse(s.(string))
		if ms != "" {
			return nil, []problem{{value: s.(string), msg: ms, allowed: allowed}}
		}
		return out, nil
	}
	items, shown, ms := convertList(v)
	if ms != "" {
		return fail(shown, ms)
	}
	out := reflect.MakeSlice(reflect.TypeOf(k.def), 0, len(items.([]string)))
	var probs []problem
	for i, s := range items.([]string) {
		p, ms, allowed := k.parse(s)
		if ms != "" {
			probs = append(probs, problem{suffix: fmt.Sprintf("[%d]", i), value: s, msg: ms, allowed: allowed})
			continue
		}
		if n, ok := p.(netip.Prefix); ok && n != n.Masked() {
			probs = append(probs, problem{suffix: fmt.Sprintf("[%d]", i), value: s, msg: "has host bits set; using " + n.Masked().String(), warn: true})
			p = n.Masked()
		}
		out = reflect.Append(out, reflect.ValueOf(p))
	}
	return out.Interface(), probs
}

func convertString(v any) (any, string, string) {
	switch v := v.(type) {
	case nil:
		return "", "", ""
	case string:
		return v, "", ""
	case bool, int, int64, uint64, float64:
		return fmt.Sprint(v), "", ""
	}
	return nil, "", "must be a single value, not " + kindOf(v)
}

// convertBool accepts YAML booleans and, from the environment, true/false, yes/no,
// on/off and 1/0.
func convertBool(v any) (any, string, string) {
	switch v := v.(type) {
	case bool:
		return v, "", ""
	case string:
		switch strings.ToLower(strings.TrimSpace(v)) {
		case "true", "yes", "on", "1":
			return true, "", ""
		case "false", "no", "off", "0":
			return false, "", ""
		}
		return nil, v, "is not a boolean (true or false)"
	}
	return nil, fmt.Sprint(v), "is not a boolean (true or false)"
}

func convertDuration(v any) (any, string, string) {
	switch v := v.(type) {
	case time.Duration:
		return v, "", ""
	case string:
		d, err := time.ParseDuration(strings.TrimSpace(v))
		if err != nil {
			return nil, v, "is not a duration (Go syntax, like 10s or 1m30s)"
		}
		return d, "", ""
	case int, int64, uint64, float64:
		return nil, fmt.Sprint(v), "has no unit (write a duration like 10s or 1m30s)"
	case nil:
		return nil, "", "needs a duration (like 10s or 1m30s)"
	}
	return nil, "", "must be a duration (like 10s or 1m30s), not " + kindOf(v)
}

func convertInt(v any) (any, string, string) {
	const msg = "is not a whole number"
	switch v := v.(type) {
	case int:
		return v, "", ""
	case int64:
		if v >= math.MinInt && v <= math.MaxInt {
			return int(v), "", ""
		}
	case uint64:
		if v <= math.MaxInt {
			return int(v), "", ""
		}
	case float64:
		if v == math.Trunc(v) && v >= math.MinInt32 && v <= math.MaxInt32 {
			return int(v), "", ""
		}
		return nil, fmt.Sprint(v), msg
	case string:
		n, err := strconv.Atoi(strings.TrimSpace(v))
		if err != nil {
			return nil, v, msg
		}
		return n, "", ""
	case nil:
		return nil, "", "needs a number"
	default:
		return nil, "", "must be a number, not " + kindOf(v)
	}
	return nil, fmt.Sprint(v), "is out of range"
}

// convertList accepts a YAML list of scalars, or a string of comma-separated items
// (the environment, or a single value in YAML). Empty items are dropped.
func convertList(v any) (any, string, string) {
	switch v := v.(type) {
	case nil:
		return []string{}, "", ""
	case []string:
		return slices.Clone(v), "", ""
	case string:
		return splitList(v), "", ""
	case []any:
		out := make([]string, 0, len(v))
		for _, e := range v {
			switch e.(type) {
			case string, bool, int, int64, uint64, float64:
				out = append(out, strings.TrimSpace(fmt.Sprint(e)))
			default:
				return nil, "", "must be a list of single values, not of " + kindOf(e)
			}
		}
		return out, "", ""
	}
	return nil, "", "must be a list, not " + kindOf(v)
}

// splitList splits a comma-separated value, trimming space and dropping empty items.
func splitList(s string) []string {
	out := []string{}
	for f := range strings.SplitSeq(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

func kindOf(v any) string {
	switch v.(type) {
	case nil:
		return "an empty value"
	case map[string]any, map[any]any:
		return "a map"
	case []any:
		return "a list"
	}
	return fmt.Sprintf("a %T", v)
}

// readAtStart are the sections and keys tlsgate reads only when it starts: the
// listeners and their sockets, the resolver, the prober, the caches, MTA-STS, metrics
// and logging. A reload applies every other key (policies, customers, levels,
// actions, the milter's and the socketmap's answers).
var readAtStart = []string{
	"milter.listen", "milter.socket_mode", "milter.socket_group",
	"socketmap.listen", "socketmap.socket_mode", "socketmap.socket_group",
	"dns", "probe", "mta_sts", "cache", "metrics", "web.listen", "log",
}

// RestartNeeded lists the keys whose values differ between c and running but that a
// reload cannot apply: tlsgate must be restarted for them to take effect.
func (c *Config) RestartNeeded(running *Config) []string {
	var out []string
	for _, k := range keys {
		if !slices.Contains(readAtStart, k.name) && !slices.Contains(readAtStart, section(k.name)) {
			continue
		}
		if !reflect.DeepEqual(k.get(c), k.get(running)) {
			out = append(out, k.name)
		}
	}
	return out
}
