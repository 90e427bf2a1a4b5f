package config

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
)

// scalar describes one key that is settable from the file, the environment and a
// flag: every key except the policies and customers lists.
type scalar struct {
	key   string            // "milter.rcpt_timeout"; no dot for top-level keys
	ptr   func(*Config) any // *string, *bool, *time.Duration, *int or *[]string
	usage string            // flag usage, also the documentation of the key
	mode  bool              // an octal file mode; YAML turns 0660 into the integer 432
}

// scalars lists the keys in the order of the example configuration.
var scalars = []scalar{
	{key: "milter.listen", ptr: func(c *Config) any { return &c.Milter.Listen },
		usage: "milter socket in Postfix notation: inet:HOST:PORT, inet:PORT, unix:/PATH"},
	{key: "milter.rcpt_timeout", ptr: func(c *Config) any { return &c.Milter.RcptTimeout },
		usage: "answer each RCPT within this time; tempfail after it (below Postfix milter_command_timeout, 30s)"},
	{key: "milter.header", ptr: func(c *Config) any { return &c.Milter.Header },
		usage: `name of the audit header added at end of message; "" disables it`},
	{key: "milter.checked_transports", ptr: func(c *Config) any { return &c.Milter.CheckedTransports },
		usage: "{rcpt_mailer} transports whose recipients are checked, shell patterns allowed (smtp-*); others pass (comma-separated)"},
	{key: "milter.socket_mode", ptr: func(c *Config) any { return &c.Milter.SocketMode }, mode: true,
		usage: "octal permissions of the unix socket"},
	{key: "milter.socket_group", ptr: func(c *Config) any { return &c.Milter.SocketGroup },
		usage: `group name or gid of the unix socket; "" leaves it unchanged`},
	{key: "socketmap.listen", ptr: func(c *Config) any { return &c.Socketmap.Listen },
		usage: `socketmap for Postfix's smtp_tls_policy_maps in Postfix notation (inet:HOST:PORT, unix:/PATH); "" (default) is off`},
	{key: "socketmap.socket_mode", ptr: func(c *Config) any { return &c.Socketmap.SocketMode }, mode: true,
		usage: "octal permissions of the socketmap's unix socket"},
	{key: "socketmap.socket_group", ptr: func(c *Config) any { return &c.Socketmap.SocketGroup },
		usage: `group name or gid of the socketmap's unix socket; "" leaves it unchanged`},
	{key: "socketmap.default_level", ptr: func(c *Config) any { return &c.Socketmap.DefaultLevel },
		usage: `level the socketmap answers for domains without a policy: "" (NOTFOUND: smtp_tls_security_level applies) or published`},
	{key: "socketmap.timeout", ptr: func(c *Config) any { return &c.Socketmap.Timeout },
		usage: "budget of one socketmap lookup; a lookup still pending then is answered TEMP (below Postfix's socketmap timeout, 100s)"},
	{key: "dns.resolver", ptr: func(c *Config) any { return &c.DNS.Resolver },
		usage: `DNS resolver IP[:PORT] ([IPv6]:PORT); "" is the first nameserver in /etc/resolv.conf`},
	{key: "dns.timeout", ptr: func(c *Config) any { return &c.DNS.Timeout },
		usage: "timeout of one DNS query"},
	{key: "dns.trusted", ptr: func(c *Config) any { return &c.DNS.Trusted },
		usage: "resolver addresses (or CIDRs) whose DNSSEC AD bit is trusted although not on loopback; only for a validating resolver reached over a trusted path (comma-separated)"},
	{key: "probe.port", ptr: func(c *Config) any { return &c.Probe.Port },
		usage: "SMTP port probed on each MX host"},
	{key: "probe.helo", ptr: func(c *Config) any { return &c.Probe.HELO },
		usage: `name sent in EHLO; "" is the host name`},
	{key: "probe.timeout", ptr: func(c *Config) any { return &c.Probe.Timeout },
		usage: "time limit for one SMTP session with one MX address (connect to QUIT)"},
	{key: "probe.ca_file", ptr: func(c *Config) any { return &c.Probe.CAFile },
		usage: `PEM file of trusted CA certificates for verify, secure and MTA-STS; "" is the system roots`},
	{key: "probe.allow_networks", ptr: func(c *Config) any { return &c.Probe.AllowNetworks },
		usage: "CIDRs or addresses that may be probed although loopback, private or reserved (comma-separated)"},
	{key: "probe.max_concurrent", ptr: func(c *Config) any { return &c.Probe.MaxConcurrent },
		usage: "maximum number of probes running at once"},
	{key: "probe.max_queued", ptr: func(c *Config) any { return &c.Probe.MaxQueued },
		usage: "maximum number of probes waiting for a slot; past it recipients are tempfailed (overloaded)"},
	{key: "probe.rate_per_address", ptr: func(c *Config) any { return &c.Probe.RatePerAddress },
		usage: "maximum SMTP sessions opened to one MX address per minute; 0 disables the limit"},
	{key: "mta_sts.enabled", ptr: func(c *Config) any { return &c.MTASTS.Enabled },
		usage: "look up MTA-STS policies (RFC 8461) for the published level and check reports"},
	{key: "mta_sts.timeout", ptr: func(c *Config) any { return &c.MTASTS.Timeout },
		usage: "time limit for fetching one MTA-STS policy over HTTPS"},
	{key: "mta_sts.cache_size", ptr: func(c *Config) any { return &c.MTASTS.CacheSize },
		usage: "maximum number of MTA-STS policies kept (each for its max_age)"},
	{key: "cache.size", ptr: func(c *Config) any { return &c.Cache.Size },
		usage: "maximum number of domains in the verdict cache"},
	{key: "cache.pass_ttl", ptr: func(c *Config) any { return &c.Cache.PassTTL },
		usage: "how long a pass is cached (capped by DNS TTLs and MTA-STS max_age)"},
	{key: "cache.fail_ttl", ptr: func(c *Config) any { return &c.Cache.FailTTL },
		usage: "how long a fail is cached"},
	{key: "cache.tempfail_ttl", ptr: func(c *Config) any { return &c.Cache.TempfailTTL },
		usage: "how long a tempfail is cached"},
	{key: "cache.file", ptr: func(c *Config) any { return &c.Cache.File },
		usage: `file the verdict cache is saved to (periodically and at shutdown) and loaded from at start; "" keeps it in memory only`},
	{key: "cache.save_interval", ptr: func(c *Config) any { return &c.Cache.SaveInterval },
		usage: "how often the verdict cache is saved to cache.file"},
	{key: "cache.refresh_ahead", ptr: func(c *Config) any { return &c.Cache.RefreshAhead },
		usage: "probe a destination asked for during its cache period again shortly before its facts expire"},
	{key: "cache.shared.url", ptr: func(c *Config) any { return &c.Cache.Shared.URL },
		usage: `the fleet's shared cache tier, a Valkey or Redis server: redis://[USER:PASSWORD@]HOST:PORT/DB, rediss://... (TLS), unix://[USER:PASSWORD@]/PATH?db=N; "" = this host's cache only`},
	{key: "cache.shared.key_prefix", ptr: func(c *Config) any { return &c.Cache.Shared.KeyPrefix },
		usage: "prefix of every key and channel tlsgate uses in the shared server"},
	{key: "cache.shared.secret_file", ptr: func(c *Config) any { return &c.Cache.Shared.SecretFile },
		usage: "file with the key (at least 32 bytes) that authenticates shared entries; the same on every host; required with cache.shared.url"},
	{key: "cache.shared.timeout", ptr: func(c *Config) any { return &c.Cache.Shared.Timeout },
		usage: "time limit of one shared cache operation; past it the host uses its local cache and its own probes"},
	{key: "cache.admin_socket", ptr: func(c *Config) any { return &c.Cache.AdminSocket },
		usage: `unix socket of the cache admin endpoint used by "tlsgate cache" (mode 0600: only tlsgate's user and root); "" = off`},
	{key: "defaults.on_fail", ptr: func(c *Config) any { return &c.Defaults.OnFail },
		usage: "action when a recipient fails its policy: reject, tempfail or header"},
	{key: "defaults.on_tempfail", ptr: func(c *Config) any { return &c.Defaults.OnTempfail },
		usage: "action when the check could not be completed: tempfail or header"},
	{key: "defaults.reject_message", ptr: func(c *Config) any { return &c.Defaults.RejectMessage },
		usage: "sentence or URL appended to every rejection (printable ASCII, at most 200 characters)"},
	{key: "metrics.listen", ptr: func(c *Config) any { return &c.Metrics.Listen },
		usage: `HOST:PORT for Prometheus /metrics, /healthz and /readyz (e.g. 127.0.0.1:9425); "" disables it`},
	{key: "web.listen", ptr: func(c *Config) any { return &c.Web.Listen },
		usage: `HOST:PORT of the check page and HTTP API (e.g. 127.0.0.1:8425); "" (default) is off; not loopback only with web.tokens_file`},
	{key: "web.tokens_file", ptr: func(c *Config) any { return &c.Web.TokensFile },
		usage: `file of "NAME TOKEN" lines: the clients of the check page and API (bearer or HTTP basic); "" lets anyone who reaches web.listen in`},
	{key: "web.rate_per_minute", ptr: func(c *Config) any { return &c.Web.RatePerMinute },
		usage: "checks one client (token, else remote address) may ask for per minute; past it the API answers 429"},
	{key: "log.level", ptr: func(c *Config) any { return &c.Log.Level },
		usage: "log level: debug, info, warn or error"},
	{key: "log.format", ptr: func(c *Config) any { return &c.Log.Format },
		usage: "log format: text or json"},
	{key: "policy_files", ptr: func(c *Config) any { return &c.PolicyFiles },
		usage: "Postfix tls_policy source files (comma-separated)"},
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

// envConfig is the variable holding the configuration file path. cmd reads it; Load
// only tolerates it.
const envConfig = "TLSGATE_CONFIG"

const envPrefix = "TLSGATE_"

func lookupScalar(key string) (scalar, bool) {
	i := slices.IndexFunc(scalars, func(s scalar) bool { return s.key == key })
	if i < 0 {
		return scalar{}, false
	}
	return scalars[i], true
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
	for _, s := range scalars {
		if sec := section(s.key); sec != "" && !slices.Contains(out, sec) {
			out = append(out, sec)
		}
	}
	return out
}

// topLevelKeys lists what may appear at the top of the file.
func topLevelKeys() []string {
	out := sections()
	for _, s := range scalars {
		if section(s.key) == "" {
			out = append(out, s.key)
		}
	}
	return append(out, keyPolicies, keyCustomers)
}

// sectionKeys lists the keys of a section without the section prefix.
func sectionKeys(sec string) []string {
	var out []string
	for _, s := range scalars {
		if section(s.key) == sec {
			out = append(out, strings.TrimPrefix(s.key, sec+"."))
		}
	}
	return out
}

// convert turns a value from YAML, the environment (always a string) or a flag into
// the Go type of the key, or returns a message for a FieldError (value shown, msg).
func (s scalar) convert(v any) (out any, shown, msg string) {
	switch s.ptr(&Config{}).(type) {
	case *string:
		if s.mode {
			return convertMode(v)
		}
		return convertString(v)
	case *bool:
		return convertBool(v)
	case *time.Duration:
		return convertDuration(v)
	case *int:
		return convertInt(v)
	case *[]string:
		return convertList(v)
	}
	panic("config: scalar " + s.key + " has an unsupported type")
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

// convertMode accepts "0660" and also the integer YAML makes of an unquoted 0660
// (432): formatted back in octal, 0660 round-trips; an unquoted 660, read as decimal,
// becomes 01224 and fails validation with a hint to quote it.
func convertMode(v any) (any, string, string) {
	switch n := v.(type) {
	case int:
		return fmt.Sprintf("0%o", n), "", ""
	case uint64:
		return fmt.Sprintf("0%o", n), "", ""
	}
	return convertString(v)
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

// defaultsMap returns Default() as the nested map koanf merges the other sources
// onto.
func defaultsMap() map[string]any {
	d := Default()
	out := map[string]any{}
	for _, s := range scalars {
		setNested(out, s.key, deref(s.ptr(d)))
	}
	out[keyPolicies] = []any{}
	out[keyCustomers] = []any{}
	return out
}

func deref(p any) any {
	switch p := p.(type) {
	case *string:
		return *p
	case *bool:
		return *p
	case *time.Duration:
		return *p
	case *int:
		return *p
	case *[]string:
		return slices.Clone(*p)
	}
	panic(fmt.Sprintf("config: unsupported field type %T", p))
}

// setNested sets "section.key" in a two-level map.
func setNested(m map[string]any, key string, v any) {
	sec, rest, ok := strings.Cut(key, ".")
	if !ok {
		m[key] = v
		return
	}
	sub, _ := m[sec].(map[string]any)
	if sub == nil {
		sub = map[string]any{}
		m[sec] = sub
	}
	setNested(sub, rest, v) // cache.shared.url: a map in a map
}
