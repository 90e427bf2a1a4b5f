package config

import (
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/tlsgate/tlsgate/policy"
)

// Config is the whole tlsgate configuration. The koanf tags are the YAML keys; the
// environment variable of a scalar key is TLSGATE_ followed by the key in upper case
// with the dot replaced by '_' (see the package documentation).
//
// A Config returned by Load has passed Validate. The typed accessors (DefaultOnFail,
// AllowedNetworks, ...) assume that and fall back to the built-in default for a value
// that does not parse.
type Config struct {
	Milter struct {
		Listen            string        `koanf:"listen"`
		RcptTimeout       time.Duration `koanf:"rcpt_timeout"`
		Header            string        `koanf:"header"`
		CheckedTransports []string      `koanf:"checked_transports"`
		SocketMode        string        `koanf:"socket_mode"`
		SocketGroup       string        `koanf:"socket_group"`
	} `koanf:"milter"`
	// Socketmap is the delivery-time TLS policy table served to Postfix's
	// smtp_tls_policy_maps (socketmap_table(5)).
	Socketmap struct {
		Listen       string        `koanf:"listen"`
		SocketMode   string        `koanf:"socket_mode"`
		SocketGroup  string        `koanf:"socket_group"`
		DefaultLevel string        `koanf:"default_level"`
		Timeout      time.Duration `koanf:"timeout"`
	} `koanf:"socketmap"`
	DNS struct {
		Resolver string        `koanf:"resolver"`
		Timeout  time.Duration `koanf:"timeout"`
		Trusted  []string      `koanf:"trusted"`
	} `koanf:"dns"`
	Probe struct {
		Port           int           `koanf:"port"`
		HELO           string        `koanf:"helo"`
		Timeout        time.Duration `koanf:"timeout"`
		CAFile         string        `koanf:"ca_file"`
		AllowNetworks  []string      `koanf:"allow_networks"`
		MaxConcurrent  int           `koanf:"max_concurrent"`
		MaxQueued      int           `koanf:"max_queued"`
		RatePerAddress int           `koanf:"rate_per_address"`
	} `koanf:"probe"`
	MTASTS struct {
		Enabled   bool          `koanf:"enabled"`
		Timeout   time.Duration `koanf:"timeout"`
		CacheSize int           `koanf:"cache_size"`
	} `koanf:"mta_sts"`
	Cache struct {
		Size         int           `koanf:"size"`
		PassTTL      time.Duration `koanf:"pass_ttl"`
		FailTTL      time.Duration `koanf:"fail_ttl"`
		TempfailTTL  time.Duration `koanf:"tempfail_ttl"`
		File         string        `koanf:"file"`
		SaveInterval time.Duration `koanf:"save_interval"`
		RefreshAhead bool          `koanf:"refresh_ahead"`
		Shared       struct {
			URL        string        `koanf:"url"`
			KeyPrefix  string        `koanf:"key_prefix"`
			SecretFile string        `koanf:"secret_file"`
			Timeout    time.Duration `koanf:"timeout"`
		} `koanf:"shared"`
		AdminSocket string `koanf:"admin_socket"`
	} `koanf:"cache"`
	Defaults struct {
		OnFail        string `koanf:"on_fail"`
		OnTempfail    string `koanf:"on_tempfail"`
		RejectMessage string `koanf:"reject_message"`
	} `koanf:"defaults"`
	Metrics struct {
		Listen string `koanf:"listen"`
	} `koanf:"metrics"`
	// Web is the check page and HTTP API for customer portals and help desks.
	Web struct {
		Listen        string `koanf:"listen"`
		TokensFile    string `koanf:"tokens_file"`
		RatePerMinute int    `koanf:"rate_per_minute"`
	} `koanf:"web"`
	Log struct {
		Level  string `koanf:"level"`
		Format string `koanf:"format"`
	} `koanf:"log"`
	PolicyFiles []string         `koanf:"policy_files"`
	Policies    []PolicyConfig   `koanf:"policies"`
	Customers   []CustomerConfig `koanf:"customers"`

	// File is the configuration file the values were loaded from, "" for built-in
	// defaults only. It prefixes error messages.
	File string `koanf:"-"`

	// origins maps a top key ("milter.listen", "policies") to the environment
	// variable or flag that set it last, so that errors name what the operator
	// actually wrote. Keys set by the file or defaults are absent.
	origins map[string]origin
}

// PolicyConfig is one entry of the policies list: the TLS level required for a
// recipient domain, as a line of a Postfix tls_policy table.
type PolicyConfig struct {
	Domain     string   `koanf:"domain"`
	Level      string   `koanf:"level"`
	Match      []string `koanf:"match"`
	OnFail     string   `koanf:"on_fail"`
	OnTempfail string   `koanf:"on_tempfail"`
}

// CustomerConfig is one entry of the customers list: a TLS level required for every
// recipient of mail from this customer, recognised by envelope sender domain, SASL
// login or client network.
type CustomerConfig struct {
	Name           string   `koanf:"name"`
	Senders        []string `koanf:"senders"`
	SASLLogins     []string `koanf:"sasl_logins"`
	ClientNetworks []string `koanf:"client_networks"`
	Level          string   `koanf:"level"`
	OnFail         string   `koanf:"on_fail"`
	OnTempfail     string   `koanf:"on_tempfail"`
}

// Default returns the built-in configuration: the milter on inet:127.0.0.1:10025,
// the system resolver, no policies (every recipient passes).
func Default() *Config {
	c := &Config{}
	c.Milter.Listen = "inet:127.0.0.1:10025"
	c.Milter.RcptTimeout = 8 * time.Second
	c.Milter.Header = "TLSGate-Verdict"
	c.Milter.CheckedTransports = []string{"smtp", "smtp-*", "relay"}
	c.Milter.SocketMode = "0660"
	c.Milter.SocketGroup = ""
	c.Socketmap.Listen = ""
	c.Socketmap.SocketMode = "0660"
	c.Socketmap.SocketGroup = ""
	c.Socketmap.DefaultLevel = ""
	c.Socketmap.Timeout = 10 * time.Second
	c.DNS.Resolver = ""
	c.DNS.Timeout = 3 * time.Second
	c.DNS.Trusted = []string{}
	c.MTASTS.Enabled = true
	c.MTASTS.Timeout = 5 * time.Second
	c.MTASTS.CacheSize = 10000
	c.Probe.Port = 25
	c.Probe.HELO = ""
	c.Probe.Timeout = 10 * time.Second
	c.Probe.CAFile = ""
	c.Probe.AllowNetworks = []string{}
	c.Probe.MaxConcurrent = 64
	c.Probe.MaxQueued = 1024
	c.Probe.RatePerAddress = 10
	c.Cache.Size = 100000
	c.Cache.PassTTL = time.Hour
	c.Cache.FailTTL = 10 * time.Minute
	c.Cache.TempfailTTL = time.Minute
	c.Cache.File = ""
	c.Cache.SaveInterval = 5 * time.Minute
	c.Cache.Shared.KeyPrefix = "tlsgate:"
	c.Cache.Shared.Timeout = 75 * time.Millisecond
	c.Cache.RefreshAhead = true
	c.Defaults.OnFail = "reject"
	c.Defaults.OnTempfail = "tempfail"
	c.Defaults.RejectMessage = ""
	c.Metrics.Listen = ""
	c.Web.Listen = ""
	c.Web.TokensFile = ""
	c.Web.RatePerMinute = 30
	c.Log.Level = "info"
	c.Log.Format = "text"
	c.PolicyFiles = []string{}
	c.Policies = []PolicyConfig{}
	c.Customers = []CustomerConfig{}
	return c
}

// ErrInvalid is matched (errors.Is) by every error about the content of the
// configuration: each *FieldError, and the error of Load and Validate that joins them.
var ErrInvalid = errors.New("config: invalid configuration")

// FieldError is one problem with one configuration value.
type FieldError struct {
	File    string // the file, "environment" or "command line"; "" when unknown
	Key     string // "policies[2].level", "TLSGATE_DNS_TIMEOUT" or "--probe.port"
	Value   string // the offending value as written, "" when the value is not the point
	Msg     string // what is wrong, phrased to follow the quoted value
	Allowed string // the accepted values or keys, comma-separated; "" when not a list
}

// Error formats the problem as
//
//	/etc/tlsgate.yaml: policies[2].level: "encrpyt" is not a TLS level (allowed: none, may, ...)
func (e *FieldError) Error() string {
	var b strings.Builder
	if e.File != "" {
		b.WriteString(e.File)
		b.WriteString(": ")
	}
	b.WriteString(e.Key)
	b.WriteString(": ")
	if e.Value != "" {
		b.WriteString(strconv.Quote(e.Value))
		b.WriteString(" ")
	}
	b.WriteString(e.Msg)
	if e.Allowed != "" {
		b.WriteString(" (allowed: ")
		b.WriteString(e.Allowed)
		b.WriteString(")")
	}
	return b.String()
}

// Unwrap returns ErrInvalid.
func (e *FieldError) Unwrap() error { return ErrInvalid }

// origin is where a value set outside the file came from.
type origin struct {
	where string // "environment" or "command line"
	name  string // "TLSGATE_DNS_TIMEOUT" or "--dns.timeout"
}

// fieldError builds a FieldError for key (a full path such as
// "probe.allow_networks[1]"), naming the environment variable or flag when the value
// came from one.
func (c *Config) fieldError(key, value, msg, allowed string) *FieldError {
	e := &FieldError{File: c.File, Key: key, Value: value, Msg: msg, Allowed: allowed}
	top, rest := splitTop(key)
	if o, ok := c.origins[top]; ok {
		e.File, e.Key = o.where, o.name+rest
	}
	return e
}

// splitTop splits "policies[2].level" into ("policies", "[2].level") and
// "probe.allow_networks[1]" into ("probe.allow_networks", "[1]").
func splitTop(key string) (top, rest string) {
	if i := strings.IndexByte(key, '['); i >= 0 {
		return key[:i], key[i:]
	}
	return key, ""
}

// ParseListen parses a milter socket in Postfix notation (postconf(5) smtpd_milters)
// into arguments for net.Listen:
//
//	inet:127.0.0.1:10025  -> tcp, 127.0.0.1:10025
//	inet:[::1]:10025      -> tcp, [::1]:10025
//	inet:10025            -> tcp, :10025 (all addresses)
//	unix:/run/x.sock      -> unix, /run/x.sock (also local:/run/x.sock and /run/x.sock)
//
// Socket paths must be absolute. The error, wrapping ErrInvalid, says what is wrong.
func ParseListen(s string) (network, address string, err error) {
	network, address, msg := parseListen(s)
	if msg != "" {
		return "", "", fmt.Errorf("%w: listen %q %s", ErrInvalid, s, msg)
	}
	return network, address, nil
}

// maxSocketPath is the longest path that fits sockaddr_un.sun_path (108 bytes on
// Linux, including the terminating NUL).
const maxSocketPath = 107

const listenForms = "inet:HOST:PORT, inet:PORT, unix:/PATH, local:/PATH, /PATH"

func parseListen(s string) (network, address, msg string) {
	kind, rest, found := strings.Cut(s, ":")
	if !found && strings.HasPrefix(s, "/") {
		kind, rest = "unix", s
	}
	switch kind {
	case "unix", "local":
		if !strings.HasPrefix(rest, "/") {
			return "", "", "needs an absolute socket path"
		}
		if len(rest) > maxSocketPath {
			return "", "", fmt.Sprintf("is too long for a unix socket path (at most %d bytes)", maxSocketPath)
		}
		if strings.ContainsFunc(rest, func(r rune) bool { return r < ' ' || r == 0x7f }) {
			return "", "", "contains control characters"
		}
		return "unix", rest, ""
	case "inet":
		host, port := "", rest
		if strings.Contains(rest, ":") {
			var err error
			host, port, err = net.SplitHostPort(rest)
			if err != nil {
				return "", "", "is not inet:HOST:PORT (IPv6 addresses in brackets: inet:[::1]:10025)"
			}
		}
		n, err := strconv.ParseUint(port, 10, 16)
		if err != nil || n == 0 {
			return "", "", "has no valid port (1-65535)"
		}
		if host != "" && strings.ContainsFunc(host, func(r rune) bool { return r <= ' ' || r >= 0x7f || r == '/' }) {
			return "", "", "has an invalid host"
		}
		return "tcp", net.JoinHostPort(host, port), ""
	}
	return "", "", "is not a Postfix milter socket (" + listenForms + ")"
}

// AllowedNetworks returns probe.allow_networks as prefixes; a bare address becomes a
// /32 or /128. Host bits are cleared.
func (c *Config) AllowedNetworks() []netip.Prefix {
	out := make([]netip.Prefix, 0, len(c.Probe.AllowNetworks))
	for _, s := range c.Probe.AllowNetworks {
		if p, err := parsePrefix(s); err == nil {
			out = append(out, p.Masked())
		}
	}
	return out
}

// parsePrefix parses a CIDR or a bare address (as a single-address prefix).
func parsePrefix(s string) (netip.Prefix, error) {
	s = strings.TrimSpace(s)
	if strings.Contains(s, "/") {
		return netip.ParsePrefix(s)
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	if a.Zone() != "" {
		return netip.Prefix{}, errors.New("zone not allowed")
	}
	return netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()), nil
}

// DefaultOnFail is defaults.on_fail as an action (reject if unset or invalid).
func (c *Config) DefaultOnFail() policy.Action {
	a, err := policy.ParseAction(c.Defaults.OnFail)
	if err != nil || a == policy.ActionDefault {
		return policy.ActionReject
	}
	return a
}

// DefaultOnTempfail is defaults.on_tempfail as an action (tempfail if unset or
// invalid; never reject).
func (c *Config) DefaultOnTempfail() policy.Action {
	a, err := policy.ParseAction(c.Defaults.OnTempfail)
	if err != nil || a == policy.ActionDefault || a == policy.ActionReject {
		return policy.ActionTempfail
	}
	return a
}

// SocketFileMode is milter.socket_mode as a file mode (0660 if invalid).
func (c *Config) SocketFileMode() os.FileMode {
	m, err := parseMode(c.Milter.SocketMode)
	if err != nil {
		return 0o660
	}
	return m
}

// SocketmapFileMode is socketmap.socket_mode as a file mode (0660 if invalid).
func (c *Config) SocketmapFileMode() os.FileMode {
	m, err := parseMode(c.Socketmap.SocketMode)
	if err != nil {
		return 0o660
	}
	return m
}

// SocketmapDefaultPublished reports socketmap.default_level: published.
func (c *Config) SocketmapDefaultPublished() bool {
	return c.Socketmap.DefaultLevel == policy.LevelPublished.String()
}

func parseMode(s string) (os.FileMode, error) {
	s = strings.TrimPrefix(strings.TrimPrefix(s, "0o"), "0O")
	n, err := strconv.ParseUint(s, 8, 32)
	if err != nil || n > 0o777 {
		return 0, errors.New("bad mode")
	}
	return os.FileMode(n), nil
}

// ResolverTrusted reports whether the AD bit of the resolver at addr (host:port) is
// trusted because dns.trusted lists its address (a loopback resolver is always trusted).
func (c *Config) ResolverTrusted(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return false
	}
	for _, t := range c.DNS.Trusted {
		if p, err := parsePrefix(t); err == nil && p.Contains(ip.Unmap()) {
			return true
		}
	}
	return false
}

// ResolverAddr is dns.resolver as host:port (port 53 added when missing), or "" for
// the first nameserver of /etc/resolv.conf.
func (c *Config) ResolverAddr() string {
	addr, _ := resolverAddr(c.DNS.Resolver)
	return addr
}

func resolverAddr(s string) (string, error) {
	if s == "" {
		return "", nil
	}
	if a, err := netip.ParseAddr(s); err == nil && a.Zone() == "" {
		return net.JoinHostPort(a.String(), "53"), nil
	}
	ap, err := netip.ParseAddrPort(s)
	if err != nil || ap.Addr().Zone() != "" || ap.Port() == 0 {
		return "", errors.New("bad resolver")
	}
	return ap.String(), nil
}

// LogLevel is log.level for log/slog (info if invalid).
func (c *Config) LogLevel() slog.Level {
	switch strings.ToLower(c.Log.Level) {
	case "debug":
		return slog.LevelDebug
	case "warn":
		return slog.LevelWarn
	case "error":
		return slog.LevelError
	}
	return slog.LevelInfo
}

// maxCAFile bounds probe.ca_file; a trust store is well below a megabyte per
// hundred certificates.
const maxCAFile = 16 << 20

// RootCAs loads probe.ca_file. It returns nil and no error when ca_file is empty,
// meaning the system roots. Errors: the file cannot be read, is too large, or holds
// no certificate, or a CERTIFICATE block does not parse.
func (c *Config) RootCAs() (*x509.CertPool, error) {
	if c.Probe.CAFile == "" {
		return nil, nil
	}
	return loadCAFile(c.Probe.CAFile)
}

func loadCAFile(path string) (*x509.CertPool, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if fi, err := f.Stat(); err == nil && fi.Size() > maxCAFile {
		return nil, fmt.Errorf("%s: larger than %d bytes", path, maxCAFile)
	}
	b, err := readBounded(f, maxCAFile)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	pool := x509.NewCertPool()
	n := 0
	for {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			break
		}
		if blk.Type != "CERTIFICATE" {
			continue
		}
		cert, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%s: certificate %d: %w", path, n+1, err)
		}
		pool.AddCert(cert)
		n++
	}
	if n == 0 {
		return nil, fmt.Errorf("%s: no PEM certificate found", path)
	}
	return pool, nil
}
