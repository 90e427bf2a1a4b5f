package config

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"log/slog"
	"math/big"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
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
		{"rcpt_timeout zero", func(c *Config) { c.Milter.RcptTimeout = 0 }, "milter.rcpt_timeout", `"0s" must be a positive duration`},
		{"rcpt_timeout huge", func(c *Config) { c.Milter.RcptTimeout = 5 * time.Minute }, "milter.rcpt_timeout", `"5m0s" must be below 5m0s`},
		{"header colon", func(c *Config) { c.Milter.Header = "X-TLS:" }, "milter.header", "is not a header field name"},
		{"header space", func(c *Config) { c.Milter.Header = "X TLS" }, "milter.header", "is not a header field name"},
		{"header long", func(c *Config) { c.Milter.Header = strings.Repeat("X", 77) }, "milter.header", "longer than 76"},
		{"transport", func(c *Config) { c.Milter.CheckedTransports = []string{"smtp", "re lay"} }, "milter.checked_transports[1]",
			`"re lay" is not a Postfix transport name`},
		{"socket group", func(c *Config) { c.Milter.SocketGroup = "post fix" }, "milter.socket_group", "is not a group name or gid"},
		{"socketmap socket group", func(c *Config) { c.Socketmap.SocketGroup = "post fix" }, "socketmap.socket_group", "is not a group name or gid"},
		{"socketmap timeout zero", func(c *Config) { c.Socketmap.Timeout = 0 }, "socketmap.timeout", `"0s" must be a positive duration`},
		{"socketmap timeout past Postfix's", func(c *Config) { c.Socketmap.Timeout = 100 * time.Second }, "socketmap.timeout",
			`"1m40s" must be below 1m40s (Postfix's socketmap timeout)`},
		{"dns timeout", func(c *Config) { c.DNS.Timeout = -time.Second }, "dns.timeout", "must be a positive duration"},
		{"port", func(c *Config) { c.Probe.Port = 65536 }, "probe.port", `"65536" is not a port number (1-65535)`},
		{"helo", func(c *Config) { c.Probe.HELO = "not a name" }, "probe.helo", "is not a host name"},
		{"helo literal", func(c *Config) { c.Probe.HELO = "[IPv6:192.0.2.1]" }, "probe.helo", "is not an address literal"},
		{"probe timeout", func(c *Config) { c.Probe.Timeout = 0 }, "probe.timeout", "must be a positive duration"},
		{"ca_file missing", func(c *Config) { c.Probe.CAFile = missing }, "probe.ca_file", "no such file"},
		{"ca_file not PEM", func(c *Config) { c.Probe.CAFile = notPEM }, "probe.ca_file", "no PEM certificate found"},
		{"max_concurrent", func(c *Config) { c.Probe.MaxConcurrent = 0 }, "probe.max_concurrent", "must be at least 1"},
		{"cache size", func(c *Config) { c.Cache.Size = 0 }, "cache.size", "must be at least 1"},
		{"shared url scheme", func(c *Config) { c.Cache.Shared.URL = "http://x"; c.Cache.Shared.SecretFile = "/s" }, "cache.shared.url", "is not a redis://"},
		{"shared secret required", func(c *Config) { c.Cache.Shared.URL = "redis://127.0.0.1:6379" }, "cache.shared.secret_file", "is required"},
		{"shared timeout", func(c *Config) { c.Cache.Shared.Timeout = 0 }, "cache.shared.timeout", "must be a positive duration"},
		{"admin socket relative", func(c *Config) { c.Cache.AdminSocket = "admin.sock" }, "cache.admin_socket", "must be an absolute path"},
		{"pass_ttl", func(c *Config) { c.Cache.PassTTL = 0 }, "cache.pass_ttl", "must be a positive duration"},
		{"fail_ttl", func(c *Config) { c.Cache.FailTTL = 0 }, "cache.fail_ttl", "must be a positive duration"},
		{"tempfail_ttl", func(c *Config) { c.Cache.TempfailTTL = 0 }, "cache.tempfail_ttl", "must be a positive duration"},
		{"reject_message CRLF", func(c *Config) { c.Defaults.RejectMessage = "see\r\nhttps://x" }, "defaults.reject_message", "printable ASCII"},
		{"reject_message UTF-8", func(c *Config) { c.Defaults.RejectMessage = "siehe Anhänge" }, "defaults.reject_message", "printable ASCII"},
		{"reject_message long", func(c *Config) { c.Defaults.RejectMessage = strings.Repeat("x", 201) }, "defaults.reject_message", "longer than 200"},
		{"policy file empty", func(c *Config) { c.PolicyFiles = []string{"/etc/postfix/tls_policy", " "} }, "policy_files[1]", "must not be empty"},

		{"policy domain missing", func(c *Config) { c.policies = []policyEntry{{Level: "encrypt"}} }, "policies[0].domain", "must be set"},
		{"policy domain bad", func(c *Config) { c.policies = []policyEntry{{Domain: "exa mple.test", Level: "encrypt"}} }, "policies[0].domain",
			`"exa mple.test" is not a domain, ".domain" (every subdomain) or next hop`},
		{"policy domain two dots", func(c *Config) { c.policies = []policyEntry{{Domain: "..a.example", Level: "encrypt"}} }, "policies[0].domain", "is not a domain"},
		{"policy domain duplicate", func(c *Config) {
			c.policies = []policyEntry{{Domain: "a.example", Level: "encrypt"}, {Domain: ".a.example", Level: "encrypt"}, {Domain: "A.Example.", Level: "may"}}
		}, "policies[2].domain", `"A.Example." is also the domain of policies[0]`},
		{"policy level", func(c *Config) { c.policies = []policyEntry{{Domain: "a.example", Level: "encrpyt"}} }, "policies[0].level",
			`policies[0].level: "encrpyt" is not a TLS level (allowed: none, may, encrypt, dane, dane-only, fingerprint, verify, secure, published)`},
		{"policy level missing", func(c *Config) { c.policies = []policyEntry{{Domain: "a.example"}} }, "policies[0].level", "must be set (allowed: none,"},
		{"match at encrypt", func(c *Config) {
			c.policies = []policyEntry{{Domain: "a.example", Level: "encrypt", Match: []string{"hostname"}}}
		}, "policies[0].match", "only allowed for levels fingerprint, verify, secure, not encrypt"},
		{"fingerprint without match", func(c *Config) { c.policies = []policyEntry{{Domain: "a.example", Level: "fingerprint"}} },
			"policies[0].match", "must list at least one"},
		{"fingerprint not hex", func(c *Config) {
			c.policies = []policyEntry{{Domain: "a.example", Level: "fingerprint", Match: []string{strings.Repeat("zz", 32)}}}
		}, "policies[0].match[0]", "is not a hex fingerprint"},
		{"fingerprint odd length", func(c *Config) {
			c.policies = []policyEntry{{Domain: "a.example", Level: "fingerprint", Match: []string{strings.Repeat("a", 63)}}}
		}, "policies[0].match[0]", "is not a hex fingerprint"},
		{"fingerprint wrong length", func(c *Config) {
			c.policies = []policyEntry{{Domain: "a.example", Level: "fingerprint", Match: []string{"AA:BB:CC:DD"}}}
		}, "policies[0].match[0]", "MD5, SHA-1, SHA-256 or SHA-512"},
		// smtp_tls_fingerprint_digest: Postfix compares SHA-256 digests only.
		{"fingerprint only SHA-1 pins", func(c *Config) {
			c.policies = []policyEntry{{Domain: "a.example", Level: "fingerprint", Match: []string{"AA:AA:AA:AA:AA:AA:AA:AA:AA:AA:AA:AA:AA:AA:AA:AA:AA:AA:AA:AA"}}}
		}, "policies[0].match", "has no SHA-256 fingerprint"},
		{"secure match next-hop name", func(c *Config) {
			c.policies = []policyEntry{{Domain: "a.example", Level: "secure", Match: []string{"[gw.a.example]"}}}
		}, "policies[0].match[0]", "is not a match strategy or name"},
		{"secure match name", func(c *Config) {
			c.policies = []policyEntry{{Domain: "a.example", Level: "secure", Match: []string{"nexthop", "bad name"}}}
		}, "policies[0].match[1]", `"bad name" is not a match strategy or name`},
		{"policy on_fail", func(c *Config) { c.policies = []policyEntry{{Domain: "a.example", Level: "encrypt", OnFail: "drop"}} },
			"policies[0].on_fail", "is not an action"},
		{"policy on_tempfail reject", func(c *Config) {
			c.policies = []policyEntry{{Domain: "a.example", Level: "encrypt", OnTempfail: "reject"}}
		}, "policies[0].on_tempfail", "never answered with a 5xx"},

		{"customer name missing", func(c *Config) { c.customers = []customerEntry{{SASLLogins: []string{"a"}, Level: "encrypt"}} },
			"customers[0].name", "must be set"},
		{"customer name chars", func(c *Config) {
			c.customers = []customerEntry{{Name: "acme corp", SASLLogins: []string{"a"}, Level: "encrypt"}}
		}, "customers[0].name", "letters, digits"},
		{"customer name duplicate", func(c *Config) {
			c.customers = []customerEntry{{Name: "acme", SASLLogins: []string{"a"}, Level: "encrypt"}, {Name: "ACME", SASLLogins: []string{"b"}, Level: "encrypt"}}
		}, "customers[1].name", "is also the name of customers[0]"},
		{"customer without selector", func(c *Config) { c.customers = []customerEntry{{Name: "acme", Level: "encrypt"}} },
			"customers[0]", "needs at least one of senders, sasl_logins, client_networks"},
		{"customer sender address", func(c *Config) {
			c.customers = []customerEntry{{Name: "acme", Senders: []string{"boss@acme.example"}, Level: "encrypt"}}
		}, "customers[0].senders[0]", "must be a sender domain, not an address"},
		{"customer sender bad", func(c *Config) {
			c.customers = []customerEntry{{Name: "acme", Senders: []string{"acme..example"}, Level: "encrypt"}}
		}, "customers[0].senders[0]", "is not a domain"},
		// A next-hop key never names a sender domain; policy.NewCustomers refused it
		// after config had accepted it, without file or key.
		{"customer sender next hop", func(c *Config) {
			c.customers = []customerEntry{{Name: "acme", Senders: []string{"[gw.acme.example]:2525"}, Level: "encrypt"}}
		}, "customers[0].senders[0]", "is not a domain"},
		{"customer login", func(c *Config) {
			c.customers = []customerEntry{{Name: "acme", SASLLogins: []string{"a b"}, Level: "encrypt"}}
		}, "customers[0].sasl_logins[0]", "is not a SASL login"},
		{"customer network", func(c *Config) {
			c.customers = []customerEntry{{Name: "acme", ClientNetworks: []string{"192.0.2.0/24", "192.0.2.300"}, Level: "encrypt"}}
		}, "customers[0].client_networks[1]", `"192.0.2.300" is not a CIDR or IP address`},
		{"customer level", func(c *Config) {
			c.customers = []customerEntry{{Name: "acme", SASLLogins: []string{"a"}, Level: "strong"}}
		},
			"customers[0].level", "is not a TLS level"},
		{"customer level missing", func(c *Config) { c.customers = []customerEntry{{Name: "acme", SASLLogins: []string{"a"}}} },
			"customers[0].level", "must be set"},
		{"customer fingerprint", func(c *Config) {
			c.customers = []customerEntry{{Name: "acme", SASLLogins: []string{"a"}, Level: "fingerprint"}}
		}, "customers[0].level", "needs per-domain fingerprints"},
		{"customer on_tempfail", func(c *Config) {
			c.customers = []customerEntry{{Name: "acme", SASLLogins: []string{"a"}, Level: "encrypt", OnTempfail: "reject"}}
		}, "customers[0].on_tempfail", "never answered with a 5xx"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := defaultConfig()
			c.File = "/etc/tlsgate.yaml"
			tt.mutate(c)
			fe := wantFieldError(t, c.validate(), tt.key, tt.msg)
			if fe.File != "/etc/tlsgate.yaml" {
				t.Errorf("File = %q", fe.File)
			}
			if !strings.HasPrefix(fe.Error(), "/etc/tlsgate.yaml: "+tt.key+": ") {
				t.Errorf("error %q does not start with file and key", fe.Error())
			}
		})
	}
}

// TestParseErrors: a value that does not parse into its type is an error at load,
// naming the file, the key and the value.
func TestParseErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, key, value, msg string
	}{
		{"listen form", "milter.listen", "tcp:127.0.0.1:10025", `"tcp:127.0.0.1:10025" is not a Postfix milter socket`},
		{"listen port", "milter.listen", "inet:127.0.0.1:0", "has no valid port"},
		{"listen relative", "milter.listen", "unix:milter.sock", "needs an absolute socket path"},
		{"listen long path", "milter.listen", "unix:/" + strings.Repeat("a", 200), "too long for a unix socket path"},
		{"socket mode", "milter.socket_mode", "rw-rw----", "is not an octal file mode like 0660"},
		{"socket mode decimal", "milter.socket_mode", "01224", `is decimal; write "0660"`},
		{"socketmap listen", "socketmap.listen", "tcp:127.0.0.1:8642", `"tcp:127.0.0.1:8642" is not a Postfix socket (inet:HOST:PORT`},
		{"socketmap listen relative", "socketmap.listen", "unix:tlsgate/socketmap", "needs an absolute socket path"},
		{"socketmap socket mode", "socketmap.socket_mode", "0999", "is not an octal file mode like 0660"},
		{"socketmap default level", "socketmap.default_level", "dane",
			`"dane" is not a socketmap default level (for a Postfix level, set smtp_tls_security_level in main.cf) (allowed: "", published)`},
		{"resolver name", "dns.resolver", "dns.example:53", "is not an IP address with optional port"},
		{"resolver v6 unbracketed port", "dns.resolver", "::1:53:x", "is not an IP address"},
		{"trusted", "dns.trusted[0]", "nonsense", `"nonsense" is not a CIDR or IP address`},
		{"allow_networks", "probe.allow_networks[0]", "10.0.0.0/33", `"10.0.0.0/33" is not a CIDR or IP address`},
		{"on_fail", "defaults.on_fail", "bounce", `"bounce" is not an action (allowed: reject, tempfail, header)`},
		{"on_fail empty", "defaults.on_fail", "", "is not an action"},
		{"on_tempfail reject", "defaults.on_tempfail", "reject", "never answered with a 5xx (allowed: tempfail, header)"},
		{"on_tempfail unknown", "defaults.on_tempfail", "drop", "is not an action for a tempfail"},
		{"log level", "log.level", "trace", `"trace" is not a log level (allowed: debug, info, warn, error)`},
		{"log format", "log.format", "xml", "(allowed: text, json)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			key, _, list := strings.Cut(tt.key, "[")
			sec, name, _ := strings.Cut(key, ".")
			value := strconv.Quote(tt.value)
			if list {
				value = "[" + value + "]"
			}
			path := writeFile(t, "tlsgate.yaml", sec+":\n  "+name+": "+value+"\n")
			_, err := Load(Options{File: path})
			fe := wantFieldError(t, err, tt.key, tt.msg)
			if fe.File != path || !strings.HasPrefix(fe.Error(), path+": "+tt.key+": ") {
				t.Errorf("error %q does not start with the file and key", fe.Error())
			}
		})
	}
}

func TestValidateAccepts(t *testing.T) {
	t.Parallel()
	ca := writeCA(t)
	c := defaultConfig()
	c.Milter.Header = ""
	c.Probe.HELO = "[IPv6:2001:db8::1]"
	c.Probe.CAFile = ca
	c.Defaults.RejectMessage = "See https://mail.example/tls?x=1 (100% TLS)"
	c.policies = []policyEntry{
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
	c.customers = []customerEntry{
		{Name: "acme", Senders: []string{".acme.example"}, Level: "secure"},
		{Name: "beta-2", ClientNetworks: []string{"2001:db8::/32", "192.0.2.7"}, Level: "may"},
	}
	if err := c.validate(); err != nil {
		t.Fatal(err)
	}
	if c.RootCAs() == nil {
		t.Error("RootCAs() = nil after validating probe.ca_file")
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
	c := defaultConfig()
	c.Milter.RcptTimeout = 0
	c.Probe.Port = 0
	c.policies = []policyEntry{{Domain: "a.example", Level: "bogus"}}
	err := c.validate()
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
		{"socket settings on inet", func(c *Config) { c.Milter.SocketMode = 0o600; c.Milter.SocketGroup = "postfix" },
			[]string{`milter.socket_mode: "0600" is ignored`, `milter.socket_group: "postfix" is ignored`}},
		{"world-writable socket", func(c *Config) { c.Milter.Listen = Listen{"unix", "/run/m.sock"}; c.Milter.SocketMode = 0o666 },
			[]string{"lets every local user talk to the milter"}},
		{"no transports", func(c *Config) { c.Milter.CheckedTransports = nil }, []string{"every recipient passes"}},
		{"socketmap socket settings on inet", func(c *Config) {
			c.Socketmap.Listen, c.Socketmap.SocketMode, c.Socketmap.SocketGroup = Listen{"tcp", "127.0.0.1:8642"}, 0o600, "postfix"
		}, []string{`socketmap.socket_mode: "0600" is ignored`, `socketmap.socket_group: "postfix" is ignored`}},
		{"world-writable socketmap", func(c *Config) { c.Socketmap.Listen = Listen{"unix", "/run/s.sock"}; c.Socketmap.SocketMode = 0o666 },
			[]string{"lets every local user query the socketmap"}},
		{"socketmap default without listen", func(c *Config) { c.Socketmap.DefaultPublished = true },
			[]string{`socketmap.default_level: "published" has no effect: socketmap.listen is off`}},
		{"socketmap published without MTA-STS", func(c *Config) {
			c.Socketmap.Listen, c.Socketmap.DefaultPublished, c.MTASTS.Enabled = Listen{"tcp", "127.0.0.1:8642"}, true, false
		}, []string{"mta_sts.enabled"}},
		{"socketmap on unix", func(c *Config) {
			c.Socketmap.Listen, c.Socketmap.SocketGroup, c.Socketmap.DefaultPublished = Listen{"unix", "/var/spool/postfix/tlsgate/socketmap"}, "postfix", true
		}, nil},
		{"a SHA-1 pin beside a SHA-256 one", func(c *Config) {
			c.policies = []policyEntry{{Domain: "a.example", Level: "fingerprint", Match: []string{"5E:5E:5E:5E:5E:5E:5E:5E:5E:5E:5E:5E:5E:5E:5E:5E:5E:5E:5E:5E:5E:5E:5E:5E:5E:5E:5E:5E:5E:5E:5E:5E", "AA:AA:AA:AA:AA:AA:AA:AA:AA:AA:AA:AA:AA:AA:AA:AA:AA:AA:AA:AA"}}}
		}, []string{`policies[0].match[1]: "AA:AA:AA:AA:AA:AA:AA:AA:AA:AA:AA:AA:AA:AA:AA:AA:AA:AA:AA:AA" is not a SHA-256 digest`}},
		{"none below limit", func(c *Config) { c.Milter.RcptTimeout = 29 * time.Second }, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := defaultConfig()
			c.File = "f.yaml"
			tt.mutate(c)
			if err := c.validate(); err != nil {
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
		l, msg := parseListen(tt.in)
		if tt.err == "" {
			if msg != "" || l.Network != tt.network || l.Address != tt.address {
				t.Errorf("parseListen(%q) = %+v, %q; want %q, %q", tt.in, l, msg, tt.network, tt.address)
			}
			if back, _ := parseListen(l.String()); back != l {
				t.Errorf("parseListen(%q).String() = %q, which parses as %+v", tt.in, l.String(), back)
			}
			continue
		}
		if !strings.Contains(msg, tt.err) {
			t.Errorf("parseListen(%q) = %q, want %q", tt.in, msg, tt.err)
		}
	}
}

// TestParsedValues: every form a key accepts reaches its field as the typed value
// the daemon uses, whatever the source.
func TestParsedValues(t *testing.T) {
	t.Parallel()
	c, err := Load(Options{Env: []string{
		"TLSGATE_MILTER_LISTEN=inet:[::1]:10025",
		"TLSGATE_MILTER_SOCKET_MODE=0o600",
		"TLSGATE_SOCKETMAP_LISTEN=/run/tlsgate/socketmap",
		"TLSGATE_SOCKETMAP_DEFAULT_LEVEL=published",
		"TLSGATE_DNS_RESOLVER=::1",
		"TLSGATE_DNS_TRUSTED=192.0.2.53",
		"TLSGATE_PROBE_ALLOW_NETWORKS=127.0.0.0/8,::1,10.1.2.3/8,::ffff:192.0.2.1",
		"TLSGATE_DEFAULTS_ON_FAIL=Header",
		"TLSGATE_DEFAULTS_ON_TEMPFAIL=header",
		"TLSGATE_LOG_LEVEL=DEBUG",
		"TLSGATE_LOG_FORMAT=JSON",
	}})
	if err != nil {
		t.Fatal(err)
	}
	checks := []struct {
		key       string
		got, want any
	}{
		{"milter.listen", c.Milter.Listen, Listen{"tcp", "[::1]:10025"}},
		{"milter.socket_mode", c.Milter.SocketMode, os.FileMode(0o600)},
		{"socketmap.listen", c.Socketmap.Listen, Listen{"unix", "/run/tlsgate/socketmap"}},
		{"socketmap.default_level", c.Socketmap.DefaultPublished, true},
		{"dns.resolver", c.DNS.Resolver, "[::1]:53"},
		{"dns.trusted", c.DNS.Trusted, []netip.Prefix{netip.MustParsePrefix("192.0.2.53/32")}},
		{"probe.allow_networks", c.Probe.AllowNetworks, []netip.Prefix{
			netip.MustParsePrefix("127.0.0.0/8"),
			netip.MustParsePrefix("::1/128"),
			netip.MustParsePrefix("10.0.0.0/8"),
			netip.MustParsePrefix("192.0.2.1/32"),
		}},
		{"defaults.on_fail", c.Defaults.OnFail, policy.ActionHeader},
		{"defaults.on_tempfail", c.Defaults.OnTempfail, policy.ActionHeader},
		{"log.level", c.Log.Level, slog.LevelDebug},
		// Accepted in any case before, but then only "json" chose the JSON handler.
		{"log.format", c.Log.Format, "json"},
	}
	for _, ck := range checks {
		if !reflect.DeepEqual(ck.got, ck.want) {
			t.Errorf("%s = %#v, want %#v", ck.key, ck.got, ck.want)
		}
	}
	if w := strings.Join(c.Warnings(), "\n"); !strings.Contains(w, `environment: TLSGATE_PROBE_ALLOW_NETWORKS[2]: "10.1.2.3/8" has host bits set; using 10.0.0.0/8`) {
		t.Errorf("warnings %q lack the host bits", w)
	}
	for in, want := range map[string]string{
		"127.0.0.1":      "127.0.0.1:53",
		"127.0.0.1:5353": "127.0.0.1:5353",
		"::1":            "[::1]:53",
		"[::1]:53":       "[::1]:53",
		"":               "",
	} {
		if got, err := resolverAddr(in); got != want || err != nil {
			t.Errorf("resolverAddr(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for in, want := range map[string]slog.Level{"debug": slog.LevelDebug, "Warn": slog.LevelWarn, "error": slog.LevelError, "info": slog.LevelInfo} {
		if got, msg, _ := parseLogLevel(in); got != want {
			t.Errorf("parseLogLevel(%q) = %v (%s), want %s", in, got, msg, want)
		}
	}
	if c := defaultConfig(); c.RootCAs() != nil {
		t.Error("RootCAs() of the defaults is not nil (the system roots)")
	}
}

func TestRootCAsBadCertificate(t *testing.T) {
	t.Parallel()
	bad := writeFile(t, "bad.pem", string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte("garbage")})))
	if _, err := loadCAFile(bad); err == nil || !strings.Contains(err.Error(), "certificate 1") {
		t.Errorf("loadCAFile(garbage) = %v, want an error naming certificate 1", err)
	}
}

func TestResolverTrusted(t *testing.T) {
	t.Parallel()
	c := defaultConfig()
	c.DNS.Trusted = []netip.Prefix{netip.MustParsePrefix("192.0.2.53/32"), netip.MustParsePrefix("2001:db8::/64")}
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
	c := defaultConfig()
	c.customers = []customerEntry{{Name: "acme", SASLLogins: []string{"acme"}, Level: "published"}}
	if err := c.validate(); err != nil {
		t.Fatal(err)
	}
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
		c := defaultConfig()
		c.Web.Listen, c.Web.TokensFile, c.Web.RatePerMinute = tc.listen, tc.tokens, tc.rate
		err := c.validate()
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%q tokens %q: %v; want valid", tc.listen, tc.tokens, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%q tokens %q rate %d: %v; want an error with %q", tc.listen, tc.tokens, tc.rate, err, tc.want)
		}
	}
}
