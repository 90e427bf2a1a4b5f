package config

import (
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"iter"
	"log/slog"
	"net"
	"net/netip"
	"net/url"
	"os"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/tlsgate/tlsgate/policy"
)

// Config is the whole tlsgate configuration, every value parsed into its type. The
// key of each field, its default and its documentation are in the schema (schema.go);
// Load fills a Config from it and refuses invalid input, so a Config from Load is
// ready to use as it is.
type Config struct {
	Milter struct {
		Listen            Listen
		RcptTimeout       time.Duration
		Header            string // "" disables the audit header
		CheckedTransports []string
		SocketMode        os.FileMode
		SocketGroup       string
	}
	// Socketmap is the delivery-time TLS policy table served to Postfix's
	// smtp_tls_policy_maps (socketmap_table(5)).
	Socketmap struct {
		Listen           Listen // the zero Listen: off
		SocketMode       os.FileMode
		SocketGroup      string
		DefaultPublished bool // socketmap.default_level: published
		Timeout          time.Duration
	}
	DNS struct {
		Resolver string // HOST:PORT; "" is the first nameserver of /etc/resolv.conf
		Timeout  time.Duration
		Trusted  []netip.Prefix
	}
	Probe struct {
		Port           int
		HELO           string
		Timeout        time.Duration
		CAFile         string
		AllowNetworks  []netip.Prefix // masked
		MaxConcurrent  int
		MaxQueued      int
		RatePerAddress int
	}
	MTASTS struct {
		Enabled   bool
		Timeout   time.Duration
		CacheSize int
	}
	Cache struct {
		Size         int
		PassTTL      time.Duration
		FailTTL      time.Duration
		TempfailTTL  time.Duration
		File         string
		SaveInterval time.Duration
		RefreshAhead bool
		Shared       struct {
			URL        string
			KeyPrefix  string
			SecretFile string
			Timeout    time.Duration
		}
		AdminSocket string
	}
	Defaults struct {
		OnFail        policy.Action // never ActionDefault
		OnTempfail    policy.Action // ActionTempfail or ActionHeader
		RejectMessage string
	}
	Metrics struct {
		Listen string
	}
	// Web is the check page and HTTP API for customer portals and help desks.
	Web struct {
		Listen        string
		TokensFile    string
		RatePerMinute int
	}
	Log struct {
		Level  slog.Level
		Format string // "text" or "json"
	}
	PolicyFiles []string

	// File is the configuration file the values were loaded from, "" for built-in
	// defaults only. It prefixes error messages.
	File string

	// policies and customers are the lists as written in the file; validate checks
	// them, once, into rules and toggles for PolicySet.
	policies  []policyEntry
	customers []customerEntry
	rules     []rule
	toggles   []policy.Customer
	// roots is probe.ca_file, read by validate.
	roots *x509.CertPool
	// origins maps a top key ("milter.listen", "policies") to the environment
	// variable or flag that set it last, so that errors name what the operator
	// actually wrote. Keys set by the file or defaults are absent.
	origins map[string]origin
	// notes are the observations made while parsing (a network with host bits),
	// by key, for Warnings.
	notes map[string][]string
}

// Listen is a socket in Postfix notation (postconf(5) smtpd_milters), parsed into
// the arguments of net.Listen: inet:127.0.0.1:10025 is tcp 127.0.0.1:10025, inet:10025
// tcp :10025 (all addresses), unix:/run/x.sock (also local:/run/x.sock and /run/x.sock)
// unix /run/x.sock.
type Listen struct {
	Network string // "tcp" or "unix"; "" when off
	Address string
}

// String writes l back in Postfix notation; "" when off.
func (l Listen) String() string {
	switch l.Network {
	case "unix":
		return "unix:" + l.Address
	case "tcp":
		return "inet:" + strings.TrimPrefix(l.Address, ":")
	}
	return ""
}

// policyEntry is one entry of the policies list as written: the TLS level required
// for a recipient domain, as a line of a Postfix tls_policy table.
type policyEntry struct {
	Domain, Level      string
	Match              []string
	OnFail, OnTempfail string
}

// customerEntry is one entry of the customers list as written: a TLS level required
// for every recipient of mail from this customer, recognised by envelope sender
// domain, SASL login or client network.
type customerEntry struct {
	Name                      string
	Senders, SASLLogins       []string
	ClientNetworks            []string
	Level, OnFail, OnTempfail string
}

// rule is a checked entry of the policies list.
type rule struct {
	domain string
	policy.Policy
}

// ErrInvalid is matched (errors.Is) by every error about the content of the
// configuration: each *FieldError, and the error of Load that joins them.
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

// maxSocketPath is the longest path that fits sockaddr_un.sun_path (108 bytes on
// Linux, including the terminating NUL).
const maxSocketPath = 107

const listenForms = "inet:HOST:PORT, inet:PORT, unix:/PATH, local:/PATH, /PATH"

// parseListen parses a socket in Postfix notation; msg says what is wrong.
func parseListen(s string) (l Listen, msg string) {
	kind, rest, found := strings.Cut(s, ":")
	if !found && strings.HasPrefix(s, "/") {
		kind, rest = "unix", s
	}
	switch kind {
	case "unix", "local":
		if !strings.HasPrefix(rest, "/") {
			return l, "needs an absolute socket path"
		}
		if len(rest) > maxSocketPath {
			return l, fmt.Sprintf("is too long for a unix socket path (at most %d bytes)", maxSocketPath)
		}
		if strings.ContainsFunc(rest, func(r rune) bool { return r < ' ' || r == 0x7f }) {
			return l, "contains control characters"
		}
		return Listen{"unix", rest}, ""
	case "inet":
		host, port := "", rest
		if strings.Contains(rest, ":") {
			var err error
			host, port, err = net.SplitHostPort(rest)
			if err != nil {
				return l, "is not inet:HOST:PORT (IPv6 addresses in brackets: inet:[::1]:10025)"
			}
		}
		n, err := strconv.ParseUint(port, 10, 16)
		if err != nil || n == 0 {
			return l, "has no valid port (1-65535)"
		}
		if host != "" && strings.ContainsFunc(host, func(r rune) bool { return r <= ' ' || r >= 0x7f || r == '/' }) {
			return l, "has an invalid host"
		}
		return Listen{"tcp", net.JoinHostPort(host, port)}, ""
	}
	return l, "is not a Postfix milter socket (" + listenForms + ")"
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

func parseMode(s string) (os.FileMode, error) {
	s = strings.TrimPrefix(strings.TrimPrefix(s, "0o"), "0O")
	n, err := strconv.ParseUint(s, 8, 32)
	if err != nil || n > 0o777 {
		return 0, errors.New("bad mode")
	}
	return os.FileMode(n), nil
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
	for _, p := range c.DNS.Trusted {
		if p.Contains(ip.Unmap()) {
			return true
		}
	}
	return false
}

// Settings yields, in the schema's order, each key whose value differs from its
// default, with the value as the file would write it (lists comma-separated) and,
// when set there, the environment variable or flag that set it.
func (c *Config) Settings() iter.Seq2[string, string] {
	return func(yield func(string, string) bool) {
		for _, k := range keys {
			v := k.get(c)
			if reflect.DeepEqual(v, k.def) || k.isList() && reflect.ValueOf(v).Len() == 0 && reflect.ValueOf(k.def).Len() == 0 {
				continue
			}
			text := strings.Join(k.format(v), ",")
			if k.secret {
				u, err := url.Parse(text)
				text = "(not shown)"
				if err == nil {
					text = u.Redacted()
				}
			}
			if o, ok := c.origins[k.name]; ok {
				text += " (" + o.where + ": " + o.name + ")"
			}
			if !yield(k.name, text) {
				return
			}
		}
	}
}

// RootCAs is probe.ca_file as read when the configuration was loaded: nil for the
// system roots.
func (c *Config) RootCAs() *x509.CertPool { return c.roots }

// maxCAFile bounds probe.ca_file; a trust store is well below a megabyte per
// hundred certificates.
const maxCAFile = 16 << 20

// loadCAFile reads a PEM file of CA certificates. Errors: the file cannot be read,
// is too large, or holds no certificate, or a CERTIFICATE block does not parse.
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
