package config

import (
	"errors"
	"io/fs"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"

	"github.com/tlsgate/tlsgate/internal/mtasts"
	"github.com/tlsgate/tlsgate/internal/sharedcache"
	"github.com/tlsgate/tlsgate/milter"
	"github.com/tlsgate/tlsgate/policy"
	"github.com/tlsgate/tlsgate/policymap"
	"github.com/tlsgate/tlsgate/verify"
	"github.com/tlsgate/tlsgate/web"
)

// writeFile writes content to a file in a new temporary directory and returns its
// path.
func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// fieldErrors returns the *FieldError leaves of a (joined) error.
func fieldErrors(t *testing.T, err error) []*FieldError {
	t.Helper()
	var out []*FieldError
	var walk func(error)
	walk = func(err error) {
		var fe *FieldError
		switch e := err.(type) {
		case interface{ Unwrap() []error }:
			for _, e := range e.Unwrap() {
				walk(e)
			}
		default:
			if errors.As(err, &fe) {
				out = append(out, fe)
			}
		}
	}
	walk(err)
	return out
}

// wantFieldError asserts that err holds exactly one *FieldError and that it has
// the key and a message containing msg; it returns the FieldError.
func wantFieldError(t *testing.T, err error, key, msg string) *FieldError {
	t.Helper()
	if err == nil {
		t.Fatalf("got no error, want %s: ...%s...", key, msg)
	}
	if !errors.Is(err, ErrInvalid) {
		t.Errorf("errors.Is(%v, ErrInvalid) = false", err)
	}
	fes := fieldErrors(t, err)
	if len(fes) != 1 {
		t.Fatalf("got %d field errors, want 1: %v", len(fes), err)
	}
	fe := fes[0]
	if fe.Key != key {
		t.Errorf("key = %q, want %q (error: %v)", fe.Key, key, fe)
	}
	if !strings.Contains(fe.Error(), msg) {
		t.Errorf("error %q does not contain %q", fe.Error(), msg)
	}
	return fe
}

func TestLoadDefaults(t *testing.T) {
	t.Parallel()
	c, err := Load(Options{})
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(withoutOrigins(c), defaultConfig()) {
		t.Errorf("Load(no sources) = %+v\nwant defaultConfig() = %+v", c, defaultConfig())
	}
	// The defaults of docs/design.md "What the operator sees", spelt out so that a change
	// of Default is a visible change of the contract.
	checks := []struct {
		key       string
		got, want any
	}{
		{"milter.listen", c.Milter.Listen, Listen{"tcp", "127.0.0.1:10025"}},
		{"milter.rcpt_timeout", c.Milter.RcptTimeout, 8 * time.Second},
		{"milter.header", c.Milter.Header, "TLSGate-Verdict"},
		{"milter.checked_transports", c.Milter.CheckedTransports, []string{"smtp", "smtp-*", "relay"}},
		{"milter.socket_mode", c.Milter.SocketMode, os.FileMode(0o660)},
		{"milter.socket_group", c.Milter.SocketGroup, ""},
		{"dns.resolver", c.DNS.Resolver, ""},
		{"dns.timeout", c.DNS.Timeout, 3 * time.Second},
		{"probe.port", c.Probe.Port, 25},
		{"probe.helo", c.Probe.HELO, ""},
		{"probe.timeout", c.Probe.Timeout, 10 * time.Second},
		{"probe.ca_file", c.Probe.CAFile, ""},
		{"probe.allow_networks", c.Probe.AllowNetworks, []netip.Prefix{}},
		{"probe.max_concurrent", c.Probe.MaxConcurrent, 64},
		{"cache.size", c.Cache.Size, 100000},
		{"cache.pass_ttl", c.Cache.PassTTL, time.Hour},
		{"cache.fail_ttl", c.Cache.FailTTL, 10 * time.Minute},
		{"cache.tempfail_ttl", c.Cache.TempfailTTL, time.Minute},
		{"defaults.on_fail", c.Defaults.OnFail, policy.ActionReject},
		{"defaults.on_tempfail", c.Defaults.OnTempfail, policy.ActionTempfail},
		{"defaults.reject_message", c.Defaults.RejectMessage, ""},
		{"log.level", c.Log.Level, slog.LevelInfo},
		{"log.format", c.Log.Format, "text"},
		{"policy_files", c.PolicyFiles, []string{}},
		{"policies", len(c.policies), 0},
		{"customers", len(c.customers), 0},
		{"File", c.File, ""},
	}
	for _, ck := range checks {
		if !reflect.DeepEqual(ck.got, ck.want) {
			t.Errorf("%s = %#v, want %#v", ck.key, ck.got, ck.want)
		}
	}
	if w := c.Warnings(); len(w) != 0 {
		t.Errorf("defaults give warnings: %q", w)
	}
	if err := defaultConfig().validate(); err != nil {
		t.Errorf("defaultConfig().validate() = %v", err)
	}
}

// TestDefaultsOfTheOwningPackages: a package used without the configuration (tests,
// test/load) fills a zero value with the default the schema documents, from the same
// constant: the MTA-STS timeout once was 5s here and 10s in the MTA-STS client.
func TestDefaultsOfTheOwningPackages(t *testing.T) {
	t.Parallel()
	c := defaultConfig()
	checks := []struct {
		key       string
		got, want any
	}{
		{"milter.rcpt_timeout", c.Milter.RcptTimeout, milter.DefaultRcptTimeout},
		{"defaults.on_fail", c.Defaults.OnFail, milter.DefaultOnFail},
		{"defaults.on_tempfail", c.Defaults.OnTempfail, milter.DefaultOnTempfail},
		{"mta_sts.timeout", c.MTASTS.Timeout, mtasts.DefaultTimeout},
		{"mta_sts.cache_size", c.MTASTS.CacheSize, mtasts.DefaultCacheSize},
		{"probe.port", c.Probe.Port, verify.DefaultSMTPPort},
		{"probe.timeout", c.Probe.Timeout, verify.DefaultHostTimeout},
		{"probe.max_concurrent", c.Probe.MaxConcurrent, verify.DefaultMaxConcurrent},
		{"cache.size", c.Cache.Size, verify.DefaultCacheSize},
		{"cache.pass_ttl", c.Cache.PassTTL, verify.DefaultPassTTL},
		{"cache.fail_ttl", c.Cache.FailTTL, verify.DefaultFailTTL},
		{"cache.tempfail_ttl", c.Cache.TempfailTTL, verify.DefaultTempfailTTL},
		{"socketmap.timeout", c.Socketmap.Timeout, policymap.DefaultTimeout},
		{"cache.shared.key_prefix", c.Cache.Shared.KeyPrefix, sharedcache.DefaultKeyPrefix},
		{"cache.shared.timeout", c.Cache.Shared.Timeout, sharedcache.DefaultTimeout},
		{"web.rate_per_minute", c.Web.RatePerMinute, web.DefaultRatePerMinute},
	}
	for _, ck := range checks {
		if !reflect.DeepEqual(ck.got, ck.want) {
			t.Errorf("%s: schema default %v, the package's zero value means %v", ck.key, ck.got, ck.want)
		}
	}
}

// TestSettings: what differs from the defaults, as the file would write it, naming
// the variable or flag that set it, a password in the shared cache URL hidden.
func TestSettings(t *testing.T) {
	t.Parallel()
	path := writeFile(t, "tlsgate.yaml", "milter:\n  listen: unix:/run/m.sock\n  socket_mode: \"0640\"\n"+
		"cache:\n  shared:\n    url: redis://tlsgate:s3cret@10.0.0.5:6379/0\n    secret_file: /etc/tlsgate/shared.key\n")
	c, err := Load(Options{File: path, Env: []string{"TLSGATE_PROBE_ALLOW_NETWORKS=10.0.0.0/8,::1", "TLSGATE_LOG_LEVEL=info"}})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for k, v := range c.Settings() {
		got = append(got, k+" = "+v)
	}
	want := []string{
		"milter.listen = unix:/run/m.sock",
		"milter.socket_mode = 0640",
		"probe.allow_networks = 10.0.0.0/8,::1/128 (environment: TLSGATE_PROBE_ALLOW_NETWORKS)",
		"cache.shared.url = redis://tlsgate:xxxxx@10.0.0.5:6379/0",
		"cache.shared.secret_file = /etc/tlsgate/shared.key",
	}
	if !slices.Equal(got, want) {
		t.Errorf("Settings() =\n%q\nwant\n%q", got, want)
	}
}

// withoutOrigins clears what Load keeps beside the values: where they came from and
// the policies and customers checked into rules and toggles.
func withoutOrigins(c *Config) *Config {
	cc := *c
	cc.origins, cc.notes, cc.rules, cc.toggles = nil, nil, nil, nil
	return &cc
}

const sampleYAML = `
milter:
  listen: unix:/run/tlsgate/milter.sock
  rcpt_timeout: 5s
  header: X-TLS
  checked_transports: [smtp]
  socket_mode: 0640
  socket_group: postfix
dns:
  resolver: "[::1]:5353"
  timeout: 2s
probe:
  port: 2525
  helo: probe.tlsgate.example
  timeout: 1m30s
  allow_networks: [127.0.0.0/8, "::1"]
  max_concurrent: 8
cache:
  size: 10
  pass_ttl: 2h
  fail_ttl: 5m
  tempfail_ttl: 30s
defaults:
  on_fail: header
  on_tempfail: header
  reject_message: See https://mail.example/tls
log:
  level: debug
  format: json
policy_files: [/etc/postfix/tls_policy]
policies:
  - domain: Example.COM
    level: encrypt
  - domain: .secure.example
    level: secure
    match: [nexthop, dot-nexthop]
    on_fail: tempfail
    on_tempfail: header
customers:
  - name: acme
    senders: [acme.example]
    sasl_logins: [acme]
    client_networks: [192.0.2.0/24]
    level: verify
    on_fail: reject
`

func TestLoadFile(t *testing.T) {
	t.Parallel()
	path := writeFile(t, "tlsgate.yaml", sampleYAML)
	c, err := Load(Options{File: path})
	if err != nil {
		t.Fatal(err)
	}
	want := defaultConfig()
	want.File = path
	want.Milter.Listen = Listen{"unix", "/run/tlsgate/milter.sock"}
	want.Milter.RcptTimeout = 5 * time.Second
	want.Milter.Header = "X-TLS"
	want.Milter.CheckedTransports = []string{"smtp"}
	want.Milter.SocketMode = 0o640 // YAML read the unquoted 0640 as octal 416
	want.Milter.SocketGroup = "postfix"
	want.DNS.Resolver = "[::1]:5353"
	want.DNS.Timeout = 2 * time.Second
	want.Probe.Port = 2525
	want.Probe.HELO = "probe.tlsgate.example"
	want.Probe.Timeout = 90 * time.Second
	want.Probe.AllowNetworks = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}
	want.Probe.MaxConcurrent = 8
	want.Cache.Size = 10
	want.Cache.PassTTL = 2 * time.Hour
	want.Cache.FailTTL = 5 * time.Minute
	want.Cache.TempfailTTL = 30 * time.Second
	want.Defaults.OnFail = policy.ActionHeader
	want.Defaults.OnTempfail = policy.ActionHeader
	want.Defaults.RejectMessage = "See https://mail.example/tls"
	want.Log.Level = slog.LevelDebug
	want.Log.Format = "json"
	want.PolicyFiles = []string{"/etc/postfix/tls_policy"}
	want.policies = []policyEntry{
		{Domain: "Example.COM", Level: "encrypt"},
		{Domain: ".secure.example", Level: "secure", Match: []string{"nexthop", "dot-nexthop"}, OnFail: "tempfail", OnTempfail: "header"},
	}
	want.customers = []customerEntry{{
		Name: "acme", Senders: []string{"acme.example"}, SASLLogins: []string{"acme"},
		ClientNetworks: []string{"192.0.2.0/24"}, Level: "verify", OnFail: "reject",
	}}
	if got := withoutOrigins(c); !reflect.DeepEqual(got, want) {
		t.Errorf("Load(%s) =\n%+v\nwant\n%+v", path, got, want)
	}
	// The lists are checked once, into what PolicySet uses.
	wantRules := []rule{
		{"Example.COM", policy.Policy{Level: policy.LevelEncrypt, Source: "config policies[0]", Raw: "encrypt"}},
		{".secure.example", policy.Policy{Level: policy.LevelSecure, Match: []string{"nexthop", "dot-nexthop"},
			OnFail: policy.ActionTempfail, OnTempfail: policy.ActionHeader, Source: "config policies[1]", Raw: "secure match=nexthop:dot-nexthop"}},
	}
	if !reflect.DeepEqual(c.rules, wantRules) {
		t.Errorf("rules = %+v\nwant %+v", c.rules, wantRules)
	}
	wantToggles := []policy.Customer{{Name: "acme", Senders: []string{"acme.example"}, SASLLogins: []string{"acme"},
		ClientNetworks: []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")}, Level: policy.LevelVerify, OnFail: policy.ActionReject}}
	if !reflect.DeepEqual(c.toggles, wantToggles) {
		t.Errorf("toggles = %+v\nwant %+v", c.toggles, wantToggles)
	}
}

func TestLoadPartialFileKeepsDefaults(t *testing.T) {
	t.Parallel()
	path := writeFile(t, "tlsgate.yaml", "milter:\n  rcpt_timeout: 4s\ndns:\n")
	c, err := Load(Options{File: path})
	if err != nil {
		t.Fatal(err)
	}
	want := defaultConfig()
	want.File = path
	want.Milter.RcptTimeout = 4 * time.Second
	if got := withoutOrigins(c); !reflect.DeepEqual(got, want) {
		t.Errorf("got %+v\nwant %+v", got, want)
	}
	// An empty file is all defaults.
	empty := writeFile(t, "empty.yaml", "")
	c, err = Load(Options{File: empty})
	if err != nil {
		t.Fatal(err)
	}
	want = defaultConfig()
	want.File = empty
	if got := withoutOrigins(c); !reflect.DeepEqual(got, want) {
		t.Errorf("empty file: got %+v", got)
	}
}

func TestEnvOverridesFile(t *testing.T) {
	t.Parallel()
	path := writeFile(t, "tlsgate.yaml", "milter:\n  rcpt_timeout: 4s\n  header: X-File\ndns:\n  timeout: 1s\n")
	c, err := Load(Options{File: path, Env: []string{
		"TLSGATE_MILTER_RCPT_TIMEOUT=5s",
		"TLSGATE_PROBE_PORT=2525",
		"TLSGATE_CONFIG=/ignored/by/load.yaml",
		"HOME=/root",
		"tlsgate_milter_header=lower-case-is-not-ours",
	}})
	if err != nil {
		t.Fatal(err)
	}
	if c.Milter.RcptTimeout != 5*time.Second {
		t.Errorf("rcpt_timeout = %v, want 5s from the environment", c.Milter.RcptTimeout)
	}
	if c.Probe.Port != 2525 {
		t.Errorf("probe.port = %d, want 2525 from the environment", c.Probe.Port)
	}
	if c.Milter.Header != "X-File" || c.DNS.Timeout != time.Second {
		t.Errorf("file values lost: header %q, dns.timeout %v", c.Milter.Header, c.DNS.Timeout)
	}
}

func TestEnvLists(t *testing.T) {
	t.Parallel()
	path := writeFile(t, "tlsgate.yaml", "milter:\n  checked_transports: [smtp, relay, lmtp]\nprobe:\n  allow_networks: [10.0.0.0/8]\n")
	c, err := Load(Options{File: path, Env: []string{
		"TLSGATE_POLICY_FILES=/a, /b,,",
		"TLSGATE_MILTER_CHECKED_TRANSPORTS=smtp",
		"TLSGATE_PROBE_ALLOW_NETWORKS=",
	}})
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"/a", "/b"}; !slices.Equal(c.PolicyFiles, want) {
		t.Errorf("policy_files = %q, want %q", c.PolicyFiles, want)
	}
	if want := []string{"smtp"}; !slices.Equal(c.Milter.CheckedTransports, want) {
		t.Errorf("checked_transports = %q, want %q (the list is replaced, not appended)", c.Milter.CheckedTransports, want)
	}
	if len(c.Probe.AllowNetworks) != 0 {
		t.Errorf("allow_networks = %q, want empty", c.Probe.AllowNetworks)
	}
}

func TestEnvNames(t *testing.T) {
	t.Parallel()
	for key, want := range map[string]string{
		"milter.rcpt_timeout":  "TLSGATE_MILTER_RCPT_TIMEOUT",
		"policy_files":         "TLSGATE_POLICY_FILES",
		"probe.allow_networks": "TLSGATE_PROBE_ALLOW_NETWORKS",
		"dns.resolver":         "TLSGATE_DNS_RESOLVER",
	} {
		if got := envName(key); got != want {
			t.Errorf("envName(%q) = %q, want %q", key, got, want)
		}
	}
	// Every key is reachable through its variable, which sets its field.
	for _, k := range keys {
		c := defaultConfig()
		c.origins, c.notes = map[string]origin{}, map[string][]string{}
		if errs := c.applyEnv([]string{envName(k.name) + "=" + sampleValue(k)}); len(errs) != 0 {
			t.Errorf("%s: %v", envName(k.name), errs)
			continue
		}
		if reflect.DeepEqual(k.get(c), k.def) {
			t.Errorf("%s=%s left %s at its default", envName(k.name), sampleValue(k), k.name)
		}
		if o := c.origins[k.name]; o.name != envName(k.name) {
			t.Errorf("%s: origin %+v", k.name, o)
		}
	}
}

// sampleValue is a valid value for a key, other than its default, as a string.
func sampleValue(k key) string {
	switch k.def.(type) {
	case time.Duration:
		return "1s"
	case int:
		return "1"
	case bool:
		if k.parse != nil {
			return "published"
		}
		return strconv.FormatBool(!k.def.(bool))
	case Listen:
		return "inet:1"
	case os.FileMode:
		return "0600"
	case []netip.Prefix:
		return "10.0.0.0/8"
	case policy.Action:
		return "header"
	case slog.Level:
		return "debug"
	}
	switch k.name {
	case "dns.resolver":
		return "127.0.0.1"
	case "log.format":
		return "json"
	}
	return "x"
}

func TestFlagsOverrideEnv(t *testing.T) {
	t.Parallel()
	path := writeFile(t, "tlsgate.yaml", "milter:\n  listen: inet:127.0.0.1:1\n  header: X-File\n")
	fs := pflag.NewFlagSet("tlsgate", pflag.ContinueOnError)
	AddFlags(fs)
	fs.String("config", "", "not a configuration key; ignored by Load")
	err := fs.Parse([]string{
		"--milter.listen", "inet:10025",
		"--dns.timeout=7s",
		"--probe.max_concurrent=3",
		"--policy_files=/x,/y",
		"--config=/somewhere.yaml",
	})
	if err != nil {
		t.Fatal(err)
	}
	c, err := Load(Options{File: path, Flags: fs, Env: []string{
		"TLSGATE_MILTER_LISTEN=inet:127.0.0.1:2",
		"TLSGATE_DNS_TIMEOUT=6s",
		"TLSGATE_LOG_LEVEL=warn",
	}})
	if err != nil {
		t.Fatal(err)
	}
	checks := []struct {
		key       string
		got, want any
	}{
		{"milter.listen (flag over env over file)", c.Milter.Listen, Listen{"tcp", ":10025"}},
		{"dns.timeout (flag over env)", c.DNS.Timeout, 7 * time.Second},
		{"probe.max_concurrent (flag)", c.Probe.MaxConcurrent, 3},
		{"policy_files (flag)", c.PolicyFiles, []string{"/x", "/y"}},
		{"log.level (env, flag unchanged)", c.Log.Level, slog.LevelWarn},
		{"milter.header (file, flag unchanged)", c.Milter.Header, "X-File"},
		{"probe.port (default, flag unchanged)", c.Probe.Port, 25},
	}
	for _, ck := range checks {
		if !reflect.DeepEqual(ck.got, ck.want) {
			t.Errorf("%s = %#v, want %#v", ck.key, ck.got, ck.want)
		}
	}
}

func TestAddFlags(t *testing.T) {
	t.Parallel()
	fs := pflag.NewFlagSet("tlsgate", pflag.ContinueOnError)
	AddFlags(fs)
	for _, k := range keys {
		f := fs.Lookup(k.name)
		if f == nil {
			t.Errorf("no flag --%s", k.name)
			continue
		}
		if f.Usage == "" || strings.Contains(f.Usage, "`") {
			t.Errorf("--%s usage %q: empty, or with a backquote pflag would read as the value's name", k.name, f.Usage)
		}
	}
	for flag, want := range map[string]string{
		"milter.listen":             "inet:127.0.0.1:10025",
		"milter.rcpt_timeout":       "8s",
		"milter.checked_transports": "[smtp,smtp-*,relay]",
		"milter.socket_mode":        "0660",
		"defaults.on_fail":          "reject",
		"log.level":                 "info",
		"socketmap.default_level":   "",
		"probe.port":                "25",
		"cache.size":                "100000",
	} {
		if got := fs.Lookup(flag).DefValue; got != want {
			t.Errorf("--%s default = %q, want %q", flag, got, want)
		}
	}
	// With nothing changed, flags do not override the file.
	path := writeFile(t, "tlsgate.yaml", "probe:\n  port: 2525\n")
	c, err := Load(Options{File: path, Flags: fs})
	if err != nil {
		t.Fatal(err)
	}
	if c.Probe.Port != 2525 {
		t.Errorf("unchanged flag overrode the file: probe.port = %d", c.Probe.Port)
	}
}

func TestFlagValidationNamesFlag(t *testing.T) {
	t.Parallel()
	fs := pflag.NewFlagSet("tlsgate", pflag.ContinueOnError)
	AddFlags(fs)
	if err := fs.Parse([]string{"--probe.port=0"}); err != nil {
		t.Fatal(err)
	}
	_, err := Load(Options{Flags: fs})
	fe := wantFieldError(t, err, "--probe.port", `"0" is not a port number`)
	if fe.File != "command line" {
		t.Errorf("File = %q, want command line", fe.File)
	}
}

func TestEnvValidationNamesVariable(t *testing.T) {
	t.Parallel()
	path := writeFile(t, "tlsgate.yaml", "log:\n  level: info\n")
	_, err := Load(Options{File: path, Env: []string{"TLSGATE_LOG_LEVEL=loud", "TLSGATE_PROBE_ALLOW_NETWORKS=10.0.0.0/8,nonsense"}})
	fes := fieldErrors(t, err)
	if len(fes) != 2 {
		t.Fatalf("got %v, want two field errors", err)
	}
	want := []string{
		`environment: TLSGATE_PROBE_ALLOW_NETWORKS[1]: "nonsense" is not a CIDR or IP address`,
		`environment: TLSGATE_LOG_LEVEL: "loud" is not a log level (allowed: debug, info, warn, error)`,
	}
	for i, fe := range fes {
		if fe.Error() != want[i] {
			t.Errorf("error %d = %q, want %q", i, fe.Error(), want[i])
		}
	}
}

func TestUnknownKeys(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, yaml, key, msg string
	}{
		{"section key", "milter:\n  listn: inet:1\n", "milter.listn",
			"milter.listn: unknown key (allowed: listen, rcpt_timeout, header, checked_transports, socket_mode, socket_group)"},
		{"top level", "miltr:\n  listen: inet:1\n", "miltr",
			"miltr: unknown key (allowed: milter, socketmap, dns, probe, mta_sts, cache, defaults, metrics, web, log, policy_files, policies, customers)"},
		{"policy key", "policies:\n  - domain: a.example\n    levle: encrypt\n", "policies[0].levle",
			"unknown key (allowed: domain, level, match, on_fail, on_tempfail)"},
		{"customer key", "customers:\n  - name: a\n    sender: [a.example]\n", "customers[0].sender",
			"unknown key (allowed: name, senders, sasl_logins, client_networks, level, on_fail, on_tempfail)"},
		{"section not a map", "milter: inet:1\n", "milter", "must be a map of keys"},
		{"policies not a list", "policies:\n  domain: a.example\n", "policies", "must be a list of maps, not a map"},
		{"policy not a map", "policies:\n  - a.example\n", "policies[0]", "must be a map with the keys domain,"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			path := writeFile(t, "tlsgate.yaml", tt.yaml)
			_, err := Load(Options{File: path})
			fe := wantFieldError(t, err, tt.key, tt.msg)
			if fe.File != path {
				t.Errorf("File = %q, want %q", fe.File, path)
			}
		})
	}
}

func TestUnknownEnv(t *testing.T) {
	t.Parallel()
	tests := []struct {
		env, key, msg string
	}{
		{"TLSGATE_MILTER_LISTN=inet:1", "TLSGATE_MILTER_LISTN",
			"unknown variable (allowed: TLSGATE_MILTER_LISTEN, TLSGATE_MILTER_RCPT_TIMEOUT, TLSGATE_MILTER_HEADER, TLSGATE_MILTER_CHECKED_TRANSPORTS, TLSGATE_MILTER_SOCKET_MODE, TLSGATE_MILTER_SOCKET_GROUP)"},
		{"TLSGATE_MILTR_LISTEN=inet:1", "TLSGATE_MILTR_LISTEN",
			"unknown variable (allowed: TLSGATE_MILTER_*, TLSGATE_SOCKETMAP_*, TLSGATE_DNS_*, TLSGATE_PROBE_*, TLSGATE_MTA_STS_*, TLSGATE_CACHE_*, TLSGATE_DEFAULTS_*, TLSGATE_METRICS_*, TLSGATE_WEB_*, TLSGATE_LOG_*, TLSGATE_POLICY_FILES, TLSGATE_CONFIG)"},
		{"TLSGATE_POLICIES=a.example", "TLSGATE_POLICIES", "can only be set in the configuration file"},
		{"TLSGATE_CUSTOMERS=acme", "TLSGATE_CUSTOMERS", "can only be set in the configuration file"},
		// The blind '_' -> '.' mapping would turn this into policy.files.
		{"TLSGATE_POLICY_FILE=/x", "TLSGATE_POLICY_FILE", "unknown variable"},
	}
	for _, tt := range tests {
		t.Run(tt.key, func(t *testing.T) {
			t.Parallel()
			_, err := Load(Options{Env: []string{tt.env}})
			fe := wantFieldError(t, err, tt.key, tt.msg)
			if fe.File != "environment" {
				t.Errorf("File = %q, want environment", fe.File)
			}
		})
	}
}

func TestTypeErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, yaml string
		env        []string
		key, msg   string
	}{
		{"duration word", "milter:\n  rcpt_timeout: banana\n", nil, "milter.rcpt_timeout",
			`milter.rcpt_timeout: "banana" is not a duration (Go syntax, like 10s or 1m30s)`},
		{"duration without unit", "dns:\n  timeout: 3\n", nil, "dns.timeout", `"3" has no unit`},
		{"duration list", "dns:\n  timeout: [3s]\n", nil, "dns.timeout", "must be a duration (like 10s or 1m30s), not a list"},
		{"int string", "probe:\n  port: \"x\"\n", nil, "probe.port", `"x" is not a whole number`},
		{"int fraction", "probe:\n  port: 25.5\n", nil, "probe.port", `"25.5" is not a whole number`},
		{"string map", "milter:\n  listen: {a: b}\n", nil, "milter.listen", "must be a single value, not a map"},
		{"list of maps", "policy_files:\n  - {a: b}\n", nil, "policy_files", "must be a list of single values, not of a map"},
		{"policy field list", "policies:\n  - domain: [a.example]\n    level: encrypt\n", nil, "policies[0].domain", "must be a single value, not a list"},
		{"env duration", "", []string{"TLSGATE_CACHE_PASS_TTL=forever"}, "TLSGATE_CACHE_PASS_TTL", `"forever" is not a duration`},
		{"env int", "", []string{"TLSGATE_CACHE_SIZE=lots"}, "TLSGATE_CACHE_SIZE", `"lots" is not a whole number`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			o := Options{Env: tt.env}
			if tt.yaml != "" {
				o.File = writeFile(t, "tlsgate.yaml", tt.yaml)
			}
			_, err := Load(o)
			fe := wantFieldError(t, err, tt.key, tt.msg)
			if tt.yaml != "" && fe.File != o.File {
				t.Errorf("File = %q, want %q", fe.File, o.File)
			}
			if strings.Contains(err.Error(), "mapstructure") || strings.Contains(err.Error(), "'") {
				t.Errorf("raw decoder error leaked: %v", err)
			}
		})
	}
}

func TestAllProblemsAtOnce(t *testing.T) {
	t.Parallel()
	path := writeFile(t, "tlsgate.yaml", "milter:\n  listn: x\n  rcpt_timeout: banana\n  socket_mode: rw\nprobe:\n  port: x\n  timeout: 0s\n")
	_, err := Load(Options{File: path, Env: []string{"TLSGATE_NOPE=1", "TLSGATE_DNS_TIMEOUT=-1s"}})
	var keys []string
	for _, fe := range fieldErrors(t, err) {
		keys = append(keys, fe.Key)
	}
	// Unknown and unparsable first, in source order; then values out of range.
	want := []string{"milter.listn", "milter.rcpt_timeout", "milter.socket_mode", "probe.port", "TLSGATE_NOPE", "TLSGATE_DNS_TIMEOUT", "probe.timeout"}
	if !slices.Equal(keys, want) {
		t.Errorf("error keys = %q, want %q\n%v", keys, want, err)
	}
}

func TestSocketModeUnquotedDecimal(t *testing.T) {
	t.Parallel()
	path := writeFile(t, "tlsgate.yaml", "milter:\n  listen: unix:/run/m.sock\n  socket_mode: 660\n")
	_, err := Load(Options{File: path})
	wantFieldError(t, err, "milter.socket_mode", `"01224" is not an octal file mode like 0660 (an unquoted 660 in YAML is decimal; write "0660")`)
}

func TestMissingFile(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "nope.yaml")
	_, err := Load(Options{File: path})
	if err == nil {
		t.Fatal("Load of a missing file succeeded")
	}
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("errors.Is(%v, fs.ErrNotExist) = false", err)
	}
	if want := "open " + path + ": no such file"; !strings.Contains(err.Error(), want) {
		t.Errorf("error %q does not contain %q", err, want)
	}
}

func TestBadYAML(t *testing.T) {
	t.Parallel()
	path := writeFile(t, "tlsgate.yaml", "milter:\n  listen: [\n")
	_, err := Load(Options{File: path})
	if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), path) {
		t.Errorf("Load(bad YAML) = %v, want an ErrInvalid error naming the file", err)
	}
	path = writeFile(t, "list.yaml", "- a\n- b\n")
	if _, err := Load(Options{File: path}); !errors.Is(err, ErrInvalid) {
		t.Errorf("Load(YAML list) = %v, want ErrInvalid", err)
	}
}

func TestContribExample(t *testing.T) {
	t.Parallel()
	path := filepath.Join("..", "contrib", "tlsgate.yaml")
	c, err := Load(Options{File: path})
	if err != nil {
		t.Fatal(err)
	}
	if w := c.Warnings(); len(w) != 0 {
		t.Errorf("example gives warnings: %q", w)
	}
	// The example shows every scalar key with its default.
	for _, k := range keys {
		if got := k.get(c); !reflect.DeepEqual(got, k.def) {
			t.Errorf("example %s = %#v, want the default %#v", k.name, got, k.def)
		}
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		name := k.name[strings.LastIndexByte(k.name, '.')+1:]
		if !strings.Contains(string(b), "\n  "+name+":") && !strings.Contains(string(b), "\n"+name+":") &&
			!strings.Contains(string(b), "\n    "+name+":") {
			t.Errorf("example does not show %s", k.name)
		}
	}
	if len(c.policies) == 0 || len(c.customers) == 0 {
		t.Errorf("example has %d policies and %d customers, want examples of both", len(c.policies), len(c.customers))
	}
	if _, _, err := c.PolicySet(); err != nil {
		t.Errorf("example PolicySet: %v", err)
	}
}

// TestSchemaCoversConfig checks that the key table and the struct agree: every
// exported field of Config (but File) is the field of exactly one key, and the
// default of each key has the type of its field.
func TestSchemaCoversConfig(t *testing.T) {
	t.Parallel()
	var c Config
	fields := map[uintptr]string{}
	var walk func(v reflect.Value, path string)
	walk = func(v reflect.Value, path string) {
		for i := range v.NumField() {
			f := v.Type().Field(i)
			if !f.IsExported() || path == "" && f.Name == "File" {
				continue
			}
			if f.Type.Kind() == reflect.Struct && f.Type.NumField() > 0 && f.Type != reflect.TypeFor[Listen]() {
				walk(v.Field(i), path+f.Name+".")
				continue
			}
			fields[v.Field(i).Addr().Pointer()] = path + f.Name
		}
	}
	walk(reflect.ValueOf(&c).Elem(), "")
	for _, k := range keys {
		p := reflect.ValueOf(k.field(&c))
		name, ok := fields[p.Pointer()]
		if !ok {
			t.Errorf("%s: its field is not a field of Config, or is another key's", k.name)
			continue
		}
		delete(fields, p.Pointer())
		if p.Elem().Type() != reflect.TypeOf(k.def) {
			t.Errorf("%s: default of type %T for the field %s of type %s", k.name, k.def, name, p.Elem().Type())
		}
		if !strings.Contains(strings.ToLower(strings.ReplaceAll(name, ".", "")), strings.ToLower(strings.Split(k.name, ".")[0][:3])) {
			t.Errorf("%s: field %s is not in its section", k.name, name)
		}
	}
	for _, name := range fields {
		t.Errorf("Config.%s has no key", name)
	}
}

func TestConvert(t *testing.T) {
	t.Parallel()
	keyOf := func(name string) key {
		k, ok := lookupKey(name)
		if !ok {
			t.Fatalf("no key %s", name)
		}
		return k
	}
	tests := []struct {
		key  string
		in   any
		want any    // nil when an error is expected
		msg  string // error fragment
	}{
		{"milter.header", "X-A", "X-A", ""},
		{"milter.header", 123, "123", ""},
		{"milter.header", nil, "", ""},
		{"milter.header", []any{"a"}, nil, "not a list"},
		{"milter.socket_mode", 0o640, os.FileMode(0o640), ""},
		{"milter.socket_mode", "0640", os.FileMode(0o640), ""},
		{"milter.socket_mode", 660, nil, `(an unquoted 660 in YAML is decimal; write "0660")`},
		{"probe.allow_networks", "10.0.0.0/8, ::1", []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("::1/128")}, ""},
		{"probe.allow_networks", []any{"10.0.0.0/8", "x"}, nil, "is not a CIDR or IP address"},
		{"defaults.on_tempfail", "Header", policy.ActionHeader, ""},
		{"probe.port", 25, 25, ""},
		{"probe.port", int64(25), 25, ""},
		{"probe.port", uint64(25), 25, ""},
		{"probe.port", float64(25), 25, ""},
		{"probe.port", " 25 ", 25, ""},
		{"probe.port", uint64(1 << 63), nil, "out of range"},
		{"probe.port", nil, nil, "needs a number"},
		{"probe.port", true, nil, "must be a number, not a bool"},
		{"dns.timeout", 3 * time.Second, 3 * time.Second, ""},
		{"dns.timeout", " 1m30s", 90 * time.Second, ""},
		{"dns.timeout", "1d", nil, "is not a duration"},
		{"dns.timeout", nil, nil, "needs a duration"},
		{"policy_files", "/a,/b", []string{"/a", "/b"}, ""},
		{"policy_files", []any{"/a", " /b "}, []string{"/a", "/b"}, ""},
		{"policy_files", []string{"/a"}, []string{"/a"}, ""},
		{"policy_files", nil, []string{}, ""},
		{"policy_files", map[string]any{"a": 1}, nil, "must be a list, not a map"},
		{"policy_files", []any{[]any{"x"}}, nil, "not of a list"},
	}
	for _, tt := range tests {
		got, probs := keyOf(tt.key).convert(tt.in)
		msg := ""
		if len(probs) > 0 {
			msg = probs[0].msg
		}
		if tt.want == nil {
			if !strings.Contains(msg, tt.msg) || msg == "" {
				t.Errorf("convert %s %#v: msg %q, want %q", tt.key, tt.in, msg, tt.msg)
			}
			continue
		}
		if msg != "" || !reflect.DeepEqual(got, tt.want) {
			t.Errorf("convert %s %#v = %#v (%s), want %#v", tt.key, tt.in, got, msg, tt.want)
		}
	}
}

// TestFileShapes: koanf flattens the file into keys; each is checked at the first
// part that is a key, a list of policies or customers, or unknown. A map under a
// key is that key's wrong value, an unknown section is reported once, an empty
// section is no keys.
func TestFileShapes(t *testing.T) {
	t.Parallel()
	const cacheKeys = "size, pass_ttl, fail_ttl, tempfail_ttl, file, save_interval, admin_socket, shared.url, shared.key_prefix, shared.secret_file, shared.timeout, refresh_ahead"
	tests := []struct {
		name, yaml string
		want       []string // the field errors, without the file name
	}{
		{"empty section", "dns:\nmilter: {}\ncache:\n  shared: {}\n", nil},
		{"section a list", "milter: []\n", []string{"milter: must be a map of keys, not a list (allowed: listen, rcpt_timeout, header, checked_transports, socket_mode, socket_group)"}},
		{"nested prefix empty", "cache:\n  shared:\n", []string{"cache.shared: unknown key (allowed: " + cacheKeys + ")"}},
		{"nested prefix a value", "cache:\n  shared: x\n", []string{"cache.shared: unknown key (allowed: " + cacheKeys + ")"}},
		{"nested keys", "cache:\n  shared:\n    nope: 1\n    url: {a: 1}\n", []string{
			"cache.shared.nope: unknown key (allowed: " + cacheKeys + ")",
			"cache.shared.url: must be a single value, not a map",
		}},
		{"map under a key", "milter:\n  listen: {a: {b: c}}\n", []string{"milter.listen: must be a single value, not a map"}},
		{"unknown section once", "zz: 1\nmiltr:\n  a: 1\n  b: {c: 2}\n", []string{
			"miltr: unknown key (allowed: milter, socketmap, dns, probe, mta_sts, cache, defaults, metrics, web, log, policy_files, policies, customers)",
			"zz: unknown key (allowed: milter, socketmap, dns, probe, mta_sts, cache, defaults, metrics, web, log, policy_files, policies, customers)",
		}},
		// A key has one spelling, nested: a YAML key holding the delimiter would let
		// "milter.listen" and milter: {listen: ...} both set one key.
		{"dotted key in a section", "milter:\n  \"rcpt_timeout.x\": 1s\n", []string{
			"milter.rcpt_timeout.x: is not a key: write it nested (milter: {listen: ...}), not with a dot",
		}},
		{"one key in two spellings", "\"milter.listen\": inet:1\nmilter:\n  listen: inet:2\n", []string{
			"milter.listen: is not a key: write it nested (milter: {listen: ...}), not with a dot",
		}},
		// koanf turns YAML keys that are not strings into strings.
		{"number key", "milter:\n  1: x\n", []string{"milter.1: unknown key (allowed: listen, rcpt_timeout, header, checked_transports, socket_mode, socket_group)"}},
		{"policies a map", "policies: {domain: a.example}\n", []string{"policies: must be a list of maps, not a map"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			path := writeFile(t, "tlsgate.yaml", tt.yaml)
			_, err := Load(Options{File: path})
			var got []string
			for _, fe := range fieldErrors(t, err) {
				if fe.File != path {
					t.Errorf("File = %q, want %q", fe.File, path)
				}
				got = append(got, strings.TrimPrefix(fe.Error(), path+": "))
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("errors =\n%q\nwant\n%q", got, tt.want)
			}
		})
	}
}

// TestEnvVariableWithDelimiter: a variable whose name holds a dot is reported by its
// name, not nested under another one.
func TestEnvVariableWithDelimiter(t *testing.T) {
	t.Parallel()
	_, err := Load(Options{Env: []string{"TLSGATE_A=1", "TLSGATE_A.B=2", "TLSGATE_NOVALUE"}})
	var got []string
	for _, fe := range fieldErrors(t, err) {
		got = append(got, fe.Key)
	}
	if want := []string{"TLSGATE_A", "TLSGATE_A.B"}; !slices.Equal(got, want) {
		t.Errorf("error keys = %q, want %q (%v)", got, want, err)
	}
}

// TestFlagSettingsNameTheFlag: a value from a flag is shown, and checked, under the
// flag's name; a flag left at its default does not count as set.
func TestFlagSettingsNameTheFlag(t *testing.T) {
	t.Parallel()
	fs := pflag.NewFlagSet("tlsgate", pflag.ContinueOnError)
	AddFlags(fs)
	if err := fs.Parse([]string{"--dns.timeout=7s", "--probe.port=25", "--cache.shared.key_prefix=fleet:"}); err != nil {
		t.Fatal(err)
	}
	c, err := Load(Options{Flags: fs, Env: []string{"TLSGATE_DNS_TIMEOUT=6s"}})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for k, v := range c.Settings() {
		got = append(got, k+" = "+v)
	}
	want := []string{
		"dns.timeout = 7s (command line: --dns.timeout)",
		"cache.shared.key_prefix = fleet: (command line: --cache.shared.key_prefix)",
	}
	if !slices.Equal(got, want) {
		t.Errorf("Settings() =\n%q\nwant\n%q", got, want)
	}
	if err := fs.Set("probe.max_queued", "0"); err != nil {
		t.Fatal(err)
	}
	_, err = Load(Options{Flags: fs})
	if fe := wantFieldError(t, err, "--probe.max_queued", `"0"`); fe.File != "command line" {
		t.Errorf("File = %q, want command line", fe.File)
	}
}
