package config

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tlsgate/tlsgate/policy"
)

func TestValidateErrors(t *testing.T) {
	t.Parallel()
	missing := filepath.Join(t.TempDir(), "missing.pem")
	notPEM := writeFile(t, "ca.pem", "not a certificate\n")
	tests := []struct {
		name   string
		mutate func(c *Config)
		key    string
		msg    string
	}{
		{"listen form", func(c *Config) { c.Milter.Listen = "tcp:127.0.0.1:10025" }, "milter.listen",
			`"tcp:127.0.0.1:10025" is not a Postfix milter socket`},
		{"listen port", func(c *Config) { c.Milter.Listen = "inet:127.0.0.1:0" }, "milter.listen", "has no valid port"},
		{"listen relative", func(c *Config) { c.Milter.Listen = "unix:milter.sock" }, "milter.listen", "needs an absolute socket path"},
		{"listen long path", func(c *Config) { c.Milter.Listen = "unix:/" + strings.Repeat("a", 200) }, "milter.listen", "too long for a unix socket path"},
		{"rcpt_timeout zero", func(c *Config) { c.Milter.RcptTimeout = 0 }, "milter.rcpt_timeout", `"0s" must be a positive duration`},
		{"rcpt_timeout huge", func(c *Config) { c.Milter.RcptTimeout = 5 * time.Minute }, "milter.rcpt_timeout", `"5m0s" must be below 5m0s`},
		{"header colon", func(c *Config) { c.Milter.Header = "X-TLS:" }, "milter.header", "is not a header field name"},
		{"header space", func(c *Config) { c.Milter.Header = "X TLS" }, "milter.header", "is not a header field name"},
		{"header long", func(c *Config) { c.Milter.Header = strings.Repeat("X", 77) }, "milter.header", "longer than 76"},
		{"transport", func(c *Config) { c.Milter.CheckedTransports = []string{"smtp", "re lay"} }, "milter.checked_transports[1]",
			`"re lay" is not a Postfix transport name`},
		{"socket mode", func(c *Config) { c.Milter.SocketMode = "rw-rw----" }, "milter.socket_mode", "is not an octal file mode like 0660"},
		{"socket mode decimal", func(c *Config) { c.Milter.SocketMode = "01224" }, "milter.socket_mode", `is decimal; write "0660"`},
		{"socket group", func(c *Config) { c.Milter.SocketGroup = "post fix" }, "milter.socket_group", "is not a group name or gid"},
		{"socketmap listen", func(c *Config) { c.Socketmap.Listen = "tcp:127.0.0.1:8642" }, "socketmap.listen",
			`"tcp:127.0.0.1:8642" is not a Postfix socket (inet:HOST:PORT`},
		{"socketmap listen relative", func(c *Config) { c.Socketmap.Listen = "unix:tlsgate/socketmap" }, "socketmap.listen", "needs an absolute socket path"},
		{"socketmap socket mode", func(c *Config) { c.Socketmap.SocketMode = "0999" }, "socketmap.socket_mode", "is not an octal file mode like 0660"},
		{"socketmap socket group", func(c *Config) { c.Socketmap.SocketGroup = "post fix" }, "socketmap.socket_group", "is not a group name or gid"},
		{"socketmap default level", func(c *Config) { c.Socketmap.DefaultLevel = "dane" }, "socketmap.default_level",
			`"dane" is not a socketmap default level (for a Postfix level, set smtp_tls_security_level in main.cf) (allowed: "", published)`},
		{"socketmap timeout zero", func(c *Config) { c.Socketmap.Timeout = 0 }, "socketmap.timeout", `"0s" must be a positive duration`},
		{"socketmap timeout past Postfix's", func(c *Config) { c.Socketmap.Timeout = 100 * time.Second }, "socketmap.timeout",
			`"1m40s" must be below 1m40s (Postfix's socketmap timeout)`},
		{"resolver name", func(c *Config) { c.DNS.Resolver = "dns.example:53" }, "dns.resolver", "is not an IP address with optional port"},
		{"resolver v6 unbracketed port", func(c *Config) { c.DNS.Resolver = "::1:53:x" }, "dns.resolver", "is not an IP address"},
		{"dns timeout", func(c *Config) { c.DNS.Timeout = -time.Second }, "dns.timeout", "must be a positive duration"},
		{"port", func(c *Config) { c.Probe.Port = 65536 }, "probe.port", `"65536" is not a port number (1-65535)`},
		{"helo", func(c *Config) { c.Probe.HELO = "not a name" }, "probe.helo", "is not a host name"},
		{"helo literal", func(c *Config) { c.Probe.HELO = "[IPv6:192.0.2.1]" }, "probe.helo", "is not an address literal"},
		{"probe timeout", func(c *Config) { c.Probe.Timeout = 0 }, "probe.timeout", "must be a positive duration"},
		{"ca_file missing", func(c *Config) { c.Probe.CAFile = missing }, "probe.ca_file", "no such file"},
		{"ca_file not PEM", func(c *Config) { c.Probe.CAFile = notPEM }, "probe.ca_file", "no PEM certificate found"},
		{"allow_networks", func(c *Config) { c.Probe.AllowNetworks = []string{"10.0.0.0/33"} }, "probe.allow_networks[0]",
			`"10.0.0.0/33" is not a CIDR or IP address`},
		{"max_concurrent", func(c *Config) { c.Probe.MaxConcurrent = 0 }, "probe.max_concurrent", "must be at least 1"},
		{"cache size", func(c *Config) { c.Cache.Size = 0 }, "cache.size", "must be at least 1"},
		{"shared url scheme", func(c *Config) { c.Cache.Shared.URL = "http://x"; c.Cache.Shared.SecretFile = "/s" }, "cache.shared.url", "is not a redis://"},
		{"shared secret required", func(c *Config) { c.Cache.Shared.URL = "redis://127.0.0.1:6379" }, "cache.shared.secret_file", "is required"},
		{"shared timeout", func(c *Config) { c.Cache.Shared.Timeout = 0 }, "cache.shared.timeout", "must be a positive duration"},
		{"admin socket relative", func(c *Config) { c.Cache.AdminSocket = "admin.sock" }, "cache.admin_socket", "must be an absolute path"},
		{"pass_ttl", func(c *Config) { c.Cache.PassTTL = 0 }, "cache.pass_ttl", "must be a positive duration"},
		{"fail_ttl", func(c *Config) { c.Cache.FailTTL = 0 }, "cache.fail_ttl", "must be a positive duration"},
		{"tempfail_ttl", func(c *Config) { c.Cache.TempfailTTL = 0 }, "cache.tempfail_ttl", "must be a positive duration"},
		{"on_fail", func(c *Config) { c.Defaults.OnFail = "bounce" }, "defaults.on_fail",
			`"bounce" is not an action (allowed: reject, tempfail, header)`},
		{"on_fail empty", func(c *Config) { c.Defaults.OnFail = "" }, "defaults.on_fail", "is not an action"},
		{"on_tempfail reject", func(c *Config) { c.Defaults.OnTempfail = "reject" }, "defaults.on_tempfail",
			"never answered with a 5xx (allowed: tempfail, header)"},
		{"on_tempfail unknown", func(c *Config) { c.Defaults.OnTempfail = "drop" }, "defaults.on_tempfail", "is not an action for a tempfail"},
		{"reject_message CRLF", func(c *Config) { c.Defaults.RejectMessage = "see\r\nhttps://x" }, "defaults.reject_message", "printable ASCII"},
		{"reject_message UTF-8", func(c *Config) { c.Defaults.RejectMessage = "siehe Anhänge" }, "defaults.reject_message", "printable ASCII"},
		{"reject_message long", func(c *Config) { c.Defaults.RejectMessage = strings.Repeat("x", 201) }, "defaults.reject_message", "longer than 200"},
		{"log level", func(c *Config) { c.Log.Level = "trace" }, "log.level", `"trace" is not a log level (allowed: debug, info, warn, error)`},
		{"log format", func(c *Config) { c.Log.Format = "xml" }, "log.format", "(allowed: text, json)"},
		{"policy file empty", func(c *Config) { c.PolicyFiles = []string{"/etc/postfix/tls_policy", " "} }, "policy_files[1]", "must not be empty"},

		{"policy domain missing", func(c *Config) { c.Policies = []PolicyConfig{{Level: "encrypt"}} }, "policies[0].domain", "must be set"},
		{"policy domain bad", func(c *Config) { c.Policies = []PolicyConfig{{Domain: "exa mple.test", Level: "encrypt"}} }, "policies[0].domain",
			`"exa mple.test" is not a domain, ".domain" (every subdomain) or next hop`},
		{"policy domain two dots", func(c *Config) { c.Policies = []PolicyConfig{{Domain: "..a.example", Level: "encrypt"}} }, "policies[0].domain", "is not a domain"},
		{"policy domain duplicate", func(c *Config) {
			c.Policies = []PolicyConfig{{Domain: "a.example", Level: "encrypt"}, {Domain: ".a.example", Level: "encrypt"}, {Domain: "A.Example.", Level: "may"}}
		}, "policies[2].domain", `"A.Example." is also the domain of policies[0]`},
		{"policy level", func(c *Config) { c.Policies = []PolicyConfig{{Domain: "a.example", Level: "encrpyt"}} }, "policies[0].level",
			`policies[0].level: "encrpyt" is not a TLS level (allowed: none, may, encrypt, dane, dane-only, fingerprint, verify, secure, published)`},
		{"policy level missing", func(c *Config) { c.Policies = []PolicyConfig{{Domain: "a.example"}} }, "policies[0].level", "must be set (allowed: none,"},
		{"match at encrypt", func(c *Config) {
			c.Policies = []PolicyConfig{{Domain: "a.example", Level: "encrypt", Match: []string{"hostname"}}}
		}, "policies[0].match", "only allowed for levels fingerprint, verify, secure, not encrypt"},
		{"fingerprint without match", func(c *Config) { c.Policies = []PolicyConfig{{Domain: "a.example", Level: "fingerprint"}} },
			"policies[0].match", "must list at least one"},
		{"fingerprint not hex", func(c *Config) {
			c.Policies = []PolicyConfig{{Domain: "a.example", Level: "fingerprint", Match: []string{strings.Repeat("zz", 32)}}}
		}, "policies[0].match[0]", "is not a hex fingerprint"},
		{"fingerprint odd length", func(c *Config) {
			c.Policies = []PolicyConfig{{Domain: "a.example", Level: "fingerprint", Match: []string{strings.Repeat("a", 63)}}}
		}, "policies[0].match[0]", "is not a hex fingerprint"},
		{"fingerprint wrong length", func(c *Config) {
			c.Policies = []PolicyConfig{{Domain: "a.example", Level: "fingerprint", Match: []string{"AA:BB:CC:DD"}}}
		}, "policies[0].match[0]", "MD5, SHA-1, SHA-256 or SHA-512"},
		{"secure match name", func(c *Config) {
			c.Policies = []PolicyConfig{{Domain: "a.example", Level: "secure", Match: []string{"nexthop", "bad name"}}}
		}, "policies[0].match[1]", `"bad name" is not a match strategy or name`},
		{"policy on_fail", func(c *Config) { c.Policies = []PolicyConfig{{Domain: "a.example", Level: "encrypt", OnFail: "drop"}} },
			"policies[0].on_fail", "is not an action"},
		{"policy on_tempfail reject", func(c *Config) {
			c.Policies = []PolicyConfig{{Domain: "a.example", Level: "encrypt", OnTempfail: "reject"}}
		}, "policies[0].on_tempfail", "never answered with a 5xx"},

		{"customer name missing", func(c *Config) { c.Customers = []CustomerConfig{{SASLLogins: []string{"a"}, Level: "encrypt"}} },
			"customers[0].name", "must be set"},
		{"customer name chars", func(c *Config) {
			c.Customers = []CustomerConfig{{Name: "acme corp", SASLLogins: []string{"a"}, Level: "encrypt"}}
		}, "customers[0].name", "letters, digits"},
		{"customer name duplicate", func(c *Config) {
			c.Customers = []CustomerConfig{{Name: "acme", SASLLogins: []string{"a"}, Level: "encrypt"}, {Name: "ACME", SASLLogins: []string{"b"}, Level: "encrypt"}}
		}, "customers[1].name", "is also the name of customers[0]"},
		{"customer without selector", func(c *Config) { c.Customers = []CustomerConfig{{Name: "acme", Level: "encrypt"}} },
			"customers[0]", "needs at least one of senders, sasl_logins, client_networks"},
		{"customer sender address", func(c *Config) {
			c.Customers = []CustomerConfig{{Name: "acme", Senders: []string{"boss@acme.example"}, Level: "encrypt"}}
		}, "customers[0].senders[0]", "must be a sender domain, not an address"},
		{"customer sender bad", func(c *Config) {
			c.Customers = []CustomerConfig{{Name: "acme", Senders: []string{"acme..example"}, Level: "encrypt"}}
		}, "customers[0].senders[0]", "is not a domain"},
		{"customer login", func(c *Config) {
			c.Customers = []CustomerConfig{{Name: "acme", SASLLogins: []string{"a b"}, Level: "encrypt"}}
		}, "customers[0].sasl_logins[0]", "is not a SASL login"},
		{"customer network", func(c *Config) {
			c.Customers = []CustomerConfig{{Name: "acme", ClientNetworks: []string{"192.0.2.0/24", "192.0.2.300"}, Level: "encrypt"}}
		}, "customers[0].client_networks[1]", `"192.0.2.300" is not a CIDR or IP address`},
		{"customer level", func(c *Config) {
			c.Customers = []CustomerConfig{{Name: "acme", SASLLogins: []string{"a"}, Level: "strong"}}
		},
			"customers[0].level", "is not a TLS level"},
		{"customer level missing", func(c *Config) { c.Customers = []CustomerConfig{{Name: "acme", SASLLogins: []string{"a"}}} },
			"customers[0].level", "must be set"},
		{"customer fingerprint", func(c *Config) {
			c.Customers = []CustomerConfig{{Name: "acme", SASLLogins: []string{"a"}, Level: "fingerprint"}}
		}, "customers[0].level", "needs per-domain fingerprints"},
		{"customer on_tempfail", func(c *Config) {
			c.Customers = []CustomerConfig{{Name: "acme", SASLLogins: []string{"a"}, Level: "encrypt", OnTempfail: "reject"}}
		}, "customers[0].on_tempfail", "never answered with a 5xx"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := Default()
			c.File = "/etc/tlsgate.yaml"
			tt.mutate(c)
			fe := wantFieldError(t, c.Validate(), tt.key, tt.msg)
			if fe.File != "/etc/tlsgate.yaml" {
				t.Errorf("File = %q", fe.File)
			}
			if !strings.HasPrefix(fe.Error(), "/etc/tlsgate.yaml: "+tt.key+": ") {
				t.Errorf("error %q does not start with file and key", fe.Error())
			}
		})
	}
}

func TestValidateAccepts(t *testing.T) {
	t.Parallel()
	ca := writeCA(t)
	c := Default()
	c.Milter.Listen = "inet:[::1]:10025"
	c.Milter.Header = ""
	c.Milter.SocketMode = "0o600"
	c.DNS.Resolver = "::1"
	c.Probe.HELO = "[IPv6:2001:db8::1]"
	c.Probe.CAFile = ca
	c.Probe.AllowNetworks = []string{"127.0.0.1", "::1", "fd00::/8"}
	c.Defaults.RejectMessage = "See https://mail.example/tls?x=1 (100% TLS)"
	c.Log.Level = "DEBUG"
	c.Policies = []PolicyConfig{
		{Domain: "bücher.example", Level: "encrypt"},
		{Domain: ".bücher.example", Level: "Verify", Match: []string{"hostname:nexthop", ".mx.example"}},
		{Domain: "fp.example", Level: "fingerprint", Match: []string{
			strings.Repeat("ab:", 31) + "ab",
			strings.Repeat("0", 32),
			strings.Repeat("F", 40),
			strings.Repeat("e", 128),
		}},
		{Domain: "dane.example", Level: "dane-only", OnFail: "header", OnTempfail: "header"},
	}
	c.Customers = []CustomerConfig{
		{Name: "acme", Senders: []string{".acme.example"}, Level: "secure"},
		{Name: "beta-2", ClientNetworks: []string{"2001:db8::/32", "192.0.2.7"}, Level: "may"},
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	pool, err := c.RootCAs()
	if err != nil || pool == nil {
		t.Errorf("RootCAs() = %v, %v", pool, err)
	}
}

// writeCA writes a self-signed CA certificate in PEM and returns its path.
func writeCA(t *testing.T) string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "tlsgate test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return writeFile(t, "ca.pem", string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})))
}

func TestValidateJoinsAll(t *testing.T) {
	t.Parallel()
	c := Default()
	c.Milter.RcptTimeout = 0
	c.Probe.Port = 0
	c.Policies = []PolicyConfig{{Domain: "a.example", Level: "bogus"}}
	err := c.Validate()
	var keys []string
	for _, fe := range fieldErrors(t, err) {
		keys = append(keys, fe.Key)
	}
	if want := []string{"milter.rcpt_timeout", "probe.port", "policies[0].level"}; !slices.Equal(keys, want) {
		t.Errorf("keys = %q, want %q", keys, want)
	}
	if !errors.Is(err, ErrInvalid) {
		t.Error("joined error is not ErrInvalid")
	}
	var fe *FieldError
	if !errors.As(err, &fe) || fe.Key != "milter.rcpt_timeout" {
		t.Errorf("errors.As gives %v", fe)
	}
}

func TestFieldErrorFormat(t *testing.T) {
	t.Parallel()
	tests := []struct {
		e    FieldError
		want string
	}{
		{FieldError{File: "/etc/tlsgate.yaml", Key: "policies[2].level", Value: "encrpyt", Msg: "is not a TLS level",
			Allowed: strings.Join(policy.LevelNames(), ", ")},
			`/etc/tlsgate.yaml: policies[2].level: "encrpyt" is not a TLS level (allowed: none, may, encrypt, dane, dane-only, fingerprint, verify, secure, published)`},
		{FieldError{Key: "policies[0].domain", Msg: "must be set"}, "policies[0].domain: must be set"},
		{FieldError{File: "environment", Key: "TLSGATE_X", Value: "a\nb", Msg: "is bad"}, `environment: TLSGATE_X: "a\nb" is bad`},
	}
	for _, tt := range tests {
		if got := tt.e.Error(); got != tt.want {
			t.Errorf("Error() = %q, want %q", got, tt.want)
		}
		if !errors.Is(&tt.e, ErrInvalid) {
			t.Errorf("%v is not ErrInvalid", &tt.e)
		}
	}
}

func TestWarnings(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		mutate func(c *Config)
		want   []string
	}{
		{"rcpt_timeout at Postfix limit", func(c *Config) { c.Milter.RcptTimeout = 30 * time.Second },
			[]string{`f.yaml: milter.rcpt_timeout: "30s" is not below Postfix's default milter_command_timeout (30s)`}},
		{"socket settings on inet", func(c *Config) { c.Milter.SocketMode = "0600"; c.Milter.SocketGroup = "postfix" },
			[]string{`milter.socket_mode: "0600" is ignored`, `milter.socket_group: "postfix" is ignored`}},
		{"world-writable socket", func(c *Config) { c.Milter.Listen = "unix:/run/m.sock"; c.Milter.SocketMode = "0666" },
			[]string{"lets every local user talk to the milter"}},
		{"no transports", func(c *Config) { c.Milter.CheckedTransports = nil }, []string{"every recipient passes"}},
		{"host bits", func(c *Config) { c.Probe.AllowNetworks = []string{"10.1.2.3/8"} },
			[]string{`probe.allow_networks[0]: "10.1.2.3/8" has host bits set; using 10.0.0.0/8`}},
		{"socketmap socket settings on inet", func(c *Config) {
			c.Socketmap.Listen, c.Socketmap.SocketMode, c.Socketmap.SocketGroup = "inet:127.0.0.1:8642", "0600", "postfix"
		}, []string{`socketmap.socket_mode: "0600" is ignored`, `socketmap.socket_group: "postfix" is ignored`}},
		{"world-writable socketmap", func(c *Config) { c.Socketmap.Listen = "unix:/run/s.sock"; c.Socketmap.SocketMode = "0666" },
			[]string{"lets every local user query the socketmap"}},
		{"socketmap default without listen", func(c *Config) { c.Socketmap.DefaultLevel = "published" },
			[]string{`socketmap.default_level: "published" has no effect: socketmap.listen is off`}},
		{"socketmap published without MTA-STS", func(c *Config) {
			c.Socketmap.Listen, c.Socketmap.DefaultLevel, c.MTASTS.Enabled = "inet:127.0.0.1:8642", "published", false
		}, []string{"mta_sts.enabled"}},
		{"socketmap on unix", func(c *Config) {
			c.Socketmap.Listen, c.Socketmap.SocketGroup, c.Socketmap.DefaultLevel = "unix:/var/spool/postfix/tlsgate/socketmap", "postfix", "published"
		}, nil},
		{"none below limit", func(c *Config) { c.Milter.RcptTimeout = 29 * time.Second }, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := Default()
			c.File = "f.yaml"
			tt.mutate(c)
			if err := c.Validate(); err != nil {
				t.Fatalf("Validate: %v", err)
			}
			got := c.Warnings()
			if len(got) != len(tt.want) {
				t.Fatalf("Warnings() = %q, want %d", got, len(tt.want))
			}
			for i, w := range tt.want {
				if !strings.Contains(got[i], w) {
					t.Errorf("warning %q does not contain %q", got[i], w)
				}
			}
		})
	}
}

func TestParseListen(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in, network, address string
		err                  string // fragment; "" for success
	}{
		{"inet:127.0.0.1:10025", "tcp", "127.0.0.1:10025", ""},
		{"inet:[::1]:10025", "tcp", "[::1]:10025", ""},
		{"inet:10025", "tcp", ":10025", ""},
		{"inet:localhost:10025", "tcp", "localhost:10025", ""},
		{"inet::10025", "tcp", ":10025", ""},
		{"unix:/run/tlsgate/milter.sock", "unix", "/run/tlsgate/milter.sock", ""},
		{"local:/run/tlsgate/milter.sock", "unix", "/run/tlsgate/milter.sock", ""},
		{"/run/tlsgate/milter.sock", "unix", "/run/tlsgate/milter.sock", ""},
		{"", "", "", "is not a Postfix milter socket"},
		{"10025", "", "", "is not a Postfix milter socket"},
		{"tcp:127.0.0.1:10025", "", "", "is not a Postfix milter socket"},
		{"inet6:10025@::1", "", "", "is not a Postfix milter socket"},
		{"inet:", "", "", "has no valid port"},
		{"inet:127.0.0.1", "", "", "has no valid port"},
		{"inet:127.0.0.1:65536", "", "", "has no valid port"},
		{"inet:127.0.0.1:smtp", "", "", "has no valid port"},
		{"inet:::1:10025", "", "", "IPv6 addresses in brackets"},
		{"inet:a b:10025", "", "", "has an invalid host"},
		{"unix:", "", "", "needs an absolute socket path"},
		{"unix:run/milter.sock", "", "", "needs an absolute socket path"},
		{"unix:/" + strings.Repeat("x", 107), "", "", "too long"},
	}
	for _, tt := range tests {
		network, address, err := ParseListen(tt.in)
		if tt.err == "" {
			if err != nil || network != tt.network || address != tt.address {
				t.Errorf("ParseListen(%q) = %q, %q, %v; want %q, %q", tt.in, network, address, err, tt.network, tt.address)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tt.err) || !errors.Is(err, ErrInvalid) {
			t.Errorf("ParseListen(%q) error = %v, want ErrInvalid with %q", tt.in, err, tt.err)
		}
	}
}

func TestAccessors(t *testing.T) {
	t.Parallel()
	c := Default()
	if got := c.DefaultOnFail(); got != policy.ActionReject {
		t.Errorf("DefaultOnFail() = %v", got)
	}
	if got := c.DefaultOnTempfail(); got != policy.ActionTempfail {
		t.Errorf("DefaultOnTempfail() = %v", got)
	}
	if got := c.SocketFileMode(); got != 0o660 {
		t.Errorf("SocketFileMode() = %o", got)
	}
	if got := c.ResolverAddr(); got != "" {
		t.Errorf("ResolverAddr() = %q", got)
	}
	if pool, err := c.RootCAs(); pool != nil || err != nil {
		t.Errorf("RootCAs() = %v, %v; want nil, nil for the system roots", pool, err)
	}
	if got := c.AllowedNetworks(); len(got) != 0 {
		t.Errorf("AllowedNetworks() = %v", got)
	}

	c.Defaults.OnFail = "header"
	c.Defaults.OnTempfail = "header"
	c.Milter.SocketMode = "0600"
	c.Probe.AllowNetworks = []string{"127.0.0.0/8", "::1", "10.1.2.3/8", "::ffff:192.0.2.1"}
	if got := c.DefaultOnFail(); got != policy.ActionHeader {
		t.Errorf("DefaultOnFail() = %v", got)
	}
	if got := c.DefaultOnTempfail(); got != policy.ActionHeader {
		t.Errorf("DefaultOnTempfail() = %v", got)
	}
	if got := c.SocketFileMode(); got != 0o600 {
		t.Errorf("SocketFileMode() = %o", got)
	}
	want := []netip.Prefix{
		netip.MustParsePrefix("127.0.0.0/8"),
		netip.MustParsePrefix("::1/128"),
		netip.MustParsePrefix("10.0.0.0/8"),
		netip.MustParsePrefix("192.0.2.1/32"),
	}
	if got := c.AllowedNetworks(); !slices.Equal(got, want) {
		t.Errorf("AllowedNetworks() = %v, want %v", got, want)
	}

	for in, want := range map[string]string{
		"127.0.0.1":      "127.0.0.1:53",
		"127.0.0.1:5353": "127.0.0.1:5353",
		"::1":            "[::1]:53",
		"[::1]:53":       "[::1]:53",
	} {
		c.DNS.Resolver = in
		if got := c.ResolverAddr(); got != want {
			t.Errorf("ResolverAddr(%q) = %q, want %q", in, got, want)
		}
	}

	for in, want := range map[string]string{"debug": "DEBUG", "Warn": "WARN", "error": "ERROR", "info": "INFO"} {
		c.Log.Level = in
		if got := c.LogLevel().String(); got != want {
			t.Errorf("LogLevel(%q) = %s, want %s", in, got, want)
		}
	}
}

func TestRootCAsBadCertificate(t *testing.T) {
	t.Parallel()
	bad := writeFile(t, "bad.pem", string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte("garbage")})))
	c := Default()
	c.Probe.CAFile = bad
	if _, err := c.RootCAs(); err == nil || !strings.Contains(err.Error(), "certificate 1") {
		t.Errorf("RootCAs(garbage) = %v, want an error naming certificate 1", err)
	}
}

func TestResolverTrusted(t *testing.T) {
	t.Parallel()
	c := Default()
	c.DNS.Trusted = []string{"192.0.2.53", "2001:db8::/64"}
	for addr, want := range map[string]bool{
		"192.0.2.53:53":      true,
		"192.0.2.54:53":      false,
		"[2001:db8::35]:53":  true,
		"[2001:db8:1::1]:53": false,
		"not an address":     false,
	} {
		if got := c.ResolverTrusted(addr); got != want {
			t.Errorf("ResolverTrusted(%q) = %v; want %v", addr, got, want)
		}
	}
	c.DNS.Trusted = []string{"nonsense"}
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), `dns.trusted[0]: "nonsense" is not a CIDR or IP address`) {
		t.Errorf("Validate() = %v", err)
	}
}

func TestWarningWorldWritableConfig(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "tlsgate.yaml")
	if err := os.WriteFile(path, []byte("log:\n  level: info\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, 0o666); err != nil {
		t.Fatal(err)
	}
	c, err := Load(Options{File: path})
	if err != nil {
		t.Fatal(err)
	}
	if w := strings.Join(c.Warnings(), "\n"); !strings.Contains(w, "writable by every user") {
		t.Errorf("warnings %q lack the world-writable file", w)
	}
}

func TestWarningPublishedWithoutMTASTS(t *testing.T) {
	t.Parallel()
	c := Default()
	c.Customers = []CustomerConfig{{Name: "acme", SASLLogins: []string{"acme"}, Level: "published"}}
	if w := strings.Join(c.Warnings(), "\n"); strings.Contains(w, "mta_sts.enabled") {
		t.Errorf("warning with MTA-STS enabled: %q", w)
	}
	c.MTASTS.Enabled = false
	if w := strings.Join(c.Warnings(), "\n"); !strings.Contains(w, "mta_sts.enabled") || !strings.Contains(w, "DANE only") {
		t.Errorf("warnings %q lack published without MTA-STS", w)
	}
}

// TestWebListen: the check page makes tlsgate open outbound connections, so a listener
// other hosts can reach needs authentication; loopback may go without.
func TestWebListen(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		listen, tokens string
		rate           int
		want           string // "" valid, else part of the error
	}{
		{"", "", 30, ""},
		{"127.0.0.1:8425", "", 30, ""},
		{"[::1]:8425", "", 30, ""},
		{"localhost:8425", "", 30, ""},
		{"192.0.2.1:8425", "/etc/tlsgate/web-tokens", 30, ""},
		{"192.0.2.1:8425", "", 30, "web.listen: \"192.0.2.1:8425\" is not a loopback address and web.tokens_file is empty"},
		{":8425", "", 30, "is not a loopback address"},
		{"[::]:8425", "", 30, "is not a loopback address"},
		{"8425", "", 30, "is not HOST:PORT"},
		{"127.0.0.1:8425", "", 0, "web.rate_per_minute: \"0\" must be between 1 and 1000000"},
	} {
		c := Default()
		c.Web.Listen, c.Web.TokensFile, c.Web.RatePerMinute = tc.listen, tc.tokens, tc.rate
		err := c.Validate()
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%q tokens %q: %v; want valid", tc.listen, tc.tokens, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%q tokens %q rate %d: %v; want an error with %q", tc.listen, tc.tokens, tc.rate, err, tc.want)
		}
	}
}
