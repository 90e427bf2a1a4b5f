package verify_test

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/tlsgate/tlsgate/internal/dnsx"
	"github.com/tlsgate/tlsgate/internal/fake"
	"github.com/tlsgate/tlsgate/internal/fingerprint"
	"github.com/tlsgate/tlsgate/internal/smtpprobe"
	"github.com/tlsgate/tlsgate/policy"
	"github.com/tlsgate/tlsgate/verify"
)

// world is one test's Internet: a resolver, SMTP servers on loopback, a CA.
type world struct {
	t      testing.TB
	dns    *fake.DNSServer
	dialer *fake.Dialer
	ca     *fake.CA
	certs  map[string]string // host name -> leaf sha256 (colon hex)
}

func newWorld(t testing.TB) *world {
	t.Helper()
	return &world{t: t, dns: fake.StartDNS(t), dialer: fake.NewDialer(), ca: fake.NewCA(t, "Test Root"), certs: map[string]string{}}
}

// behaviour returns a named server behaviour for host name. Every behaviour has a
// certificate for host unless it says otherwise, so that a server that never reaches
// STARTTLS is still a complete server.
func (w *world) behaviour(name, host string) fake.Behavior {
	t := w.t
	past := time.Now().Add(-48 * time.Hour)
	names := []string{host}
	opts := fake.CertOptions{DNSNames: names}
	b := fake.Behavior{Hostname: host}
	selfSigned := false
	var issuer *fake.CA // nil: w.ca
	// A sub-CA whose name constraints permit only attacker.test, or exclude the
	// host's parent domain (RFC 5280 §4.2.1.10).
	_, parent, _ := strings.Cut(host, ".")
	toAttacker := fake.NameConstraints{Permitted: []string{"attacker.test"}}
	switch name {
	case "good":
	case "cn-only":
		opts = fake.CertOptions{CommonName: host}
	case "cn-only-trailing-dot":
		opts = fake.CertOptions{CommonName: host + "."}
	case "cn-only-constrained-outside":
		// The finding of issue 17: Go verifies the chain (it checks constraints
		// against subjectAltNames only), OpenSSL does not (the CN is checked too).
		opts = fake.CertOptions{CommonName: host}
		issuer = w.ca.ConstrainedIntermediate(t, "attacker.test sub-CA", toAttacker)
	case "cn-only-constrained-inside":
		opts = fake.CertOptions{CommonName: host}
		issuer = w.ca.ConstrainedIntermediate(t, parent+" sub-CA", fake.NameConstraints{Permitted: []string{parent}})
	case "cn-only-constrained-excluded":
		opts = fake.CertOptions{CommonName: host}
		issuer = w.ca.ConstrainedIntermediate(t, "not-"+parent+" sub-CA", fake.NameConstraints{Excluded: []string{parent}})
	case "cn-only-wildcard-constrained-outside":
		// OpenSSL's cn2dnsid does not take "*.example.test" for a DNS name: the
		// constraints are not applied and Postfix delivers.
		opts = fake.CertOptions{CommonName: "*." + parent}
		issuer = w.ca.ConstrainedIntermediate(t, "attacker.test sub-CA", toAttacker)
	case "san-constrained-outside":
		issuer = w.ca.ConstrainedIntermediate(t, "attacker.test sub-CA", toAttacker)
	case "san-constrained-inside-cn-outside":
		opts = fake.CertOptions{CommonName: host, DNSNames: []string{"mx.attacker.test"}}
		issuer = w.ca.ConstrainedIntermediate(t, "attacker.test sub-CA", toAttacker)
	case "san-constrained-excluded":
		issuer = w.ca.ConstrainedIntermediate(t, "not-"+parent+" sub-CA", fake.NameConstraints{Excluded: []string{parent}})
	case "good-tls12":
		b.MaxTLSVersion = 0x0303
	case "tls11-ecdhe": // TLS 1.1 only, ECDHE signed with MD5+SHA-1 (issue 13)
		opts.RSA = true
		b.MinTLSVersion, b.MaxTLSVersion = 0x0301, 0x0302
		b.CipherSuites = []uint16{0xC013, 0xC014} // ECDHE-RSA-AES128/256-SHA
	case "tls10-rsa": // TLS 1.0 only, RSA key exchange
		opts.RSA = true
		b.MinTLSVersion, b.MaxTLSVersion = 0x0301, 0x0301
		b.CipherSuites = []uint16{0x002F, 0x0035} // AES128-SHA, AES256-SHA
	case "wildcard":
		opts.DNSNames = []string{"*." + parent}
	case "nexthop-only":
		opts.DNSNames = []string{"example.test"}
	case "wrongname":
		opts.DNSNames = []string{"mail.other.test"}
	case "selfsigned":
		selfSigned = true
	case "expired":
		opts.NotBefore, opts.NotAfter = past.Add(-24*time.Hour), past
	case "nostarttls":
		b.NoStartTLS = true
	case "starttls454":
		b.StartTLSReply = "454 4.7.0 TLS not available due to local problem"
	case "broken":
		b.BrokenTLS = true
	case "banner421":
		b.Banner = "421 4.3.2 Service not available"
	case "banner450":
		b.Banner = "450 4.7.1 Greylisted, try again later"
	case "banner554":
		b.Banner = "554 5.7.1 No SMTP service here"
	case "ehlo450":
		b.EHLOReply = "450 4.7.1 try later"
	case "tarpit":
		b.Tarpit = true
	case "close":
		b.Close = true
	default:
		t.Fatalf("unknown behaviour %q", name)
	}
	var c tls.Certificate
	switch {
	case selfSigned:
		c = fake.SelfSigned(t, opts)
	case issuer != nil:
		c = issuer.Issue(t, opts)
	default:
		c = w.ca.Issue(t, opts)
	}
	b.Cert = &c
	w.certs[host] = fingerprint.Of(c.Leaf.Raw)
	return b
}

// host is one MX host of a test domain: a behaviour or a DNS condition.
type host struct {
	name      string // "mx1" -> mx1.example.test
	pref      int
	behaviour string // server behaviour; "refused" and "blackhole" are dialer faults; "" = no server
	ip        string // default 127.0.0.<10+index>
	dnsRcode  int    // rcode for the host's A query (e.g. SERVFAIL)
	noAddr    bool   // host name does not exist
}

// serve publishes domain with its hosts and starts their servers.
func (w *world) serve(domain string, hosts ...host) map[string]*fake.SMTPServer {
	servers := map[string]*fake.SMTPServer{}
	for i, h := range hosts {
		fq := h.name + "." + domain
		pref := h.pref
		if pref == 0 {
			pref = 10 * (i + 1)
		}
		w.dns.Add(w.t, fmt.Sprintf("%s. 300 IN MX %d %s.", domain, pref, fq))
		ip := h.ip
		if ip == "" {
			ip = fmt.Sprintf("127.0.0.%d", 10+i)
		}
		switch {
		case h.noAddr:
			continue
		case h.dnsRcode != 0:
			w.dns.SetRcode(fq+".", dns.TypeA, h.dnsRcode)
			w.dns.SetRcode(fq+".", dns.TypeAAAA, h.dnsRcode)
			continue
		}
		w.dns.Add(w.t, fmt.Sprintf("%s. 300 IN A %s", fq, ip))
		addr := netip.MustParseAddr(ip)
		switch h.behaviour {
		case "refused":
			w.dialer.Refuse(addr)
		case "blackhole":
			w.dialer.Blackhole(addr)
		case "":
		default:
			s := fake.StartSMTP(w.t, ip, w.behaviour(h.behaviour, fq))
			s.RegisterWith(w.dialer)
			servers[h.name] = s
		}
	}
	return servers
}

func (w *world) verifier(mod ...func(*verify.Config)) *verify.Verifier {
	w.t.Helper()
	res, err := dnsx.NewClient(w.dns.Addr(), time.Second, false)
	if err != nil {
		w.t.Fatal(err)
	}
	cfg := verify.Config{
		Resolver: res,
		Prober: &smtpprobe.Prober{
			Dialer: w.dialer,
			HELO:   "probe.tlsgate.test",
			Roots:  w.ca.Pool,
		},
		Allow:       []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")},
		HostTimeout: 3 * time.Second, // generous: -race on two cores is slow; tarpit cases wait this long
		Log:         slog.New(slog.NewTextHandler(testWriter{w.t}, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	for _, m := range mod {
		m(&cfg)
	}
	v, err := verify.New(cfg)
	if err != nil {
		w.t.Fatal(err)
	}
	w.t.Cleanup(v.Close)
	return v
}

type testWriter struct{ t testing.TB }

func (tw testWriter) Write(p []byte) (int, error) {
	tw.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// want is an expected verdict: "pass", "fail/reason" or "tempfail/reason".
type want string

func (w want) check(t *testing.T, level string, v verify.Verdict) {
	t.Helper()
	status, reason, _ := strings.Cut(string(w), "/")
	if v.Status.String() != status || string(v.Reason) != reason {
		t.Errorf("level %s: verdict %s/%s (%s); want %s", level, v.Status, v.Reason, v.Detail, w)
	}
}

const domain = "example.test"

// TestJudgeMatrix is the (server behaviour x level) table: every level in scope against
// every behaviour a real MX shows, through real DNS and SMTP on loopback. It shows that
// the probe records the right Facts for each behaviour; what Judge makes of every kind
// of Facts is TestJudgeTable's job (judge_table_test.go).
func TestJudgeMatrix(t *testing.T) {
	t.Parallel()
	type levels struct{ encrypt, fingerprint, verify, secure want }
	tests := []struct {
		name  string
		hosts []host
		want  levels
		pin   string // host whose certificate fingerprint is pinned (default: the first host)
	}{
		{"good", []host{{name: "mx1", behaviour: "good"}},
			levels{"pass", "pass", "pass", "pass"}, ""},
		{"tls1.2 only", []host{{name: "mx1", behaviour: "good-tls12"}},
			levels{"pass", "pass", "pass", "pass"}, ""},
		// Legacy TLS (issue 13): Postfix completes a TLS 1.0/1.1 session at encrypt and,
		// with RSA key exchange, above; an ECDHE key exchange it refuses above encrypt.
		{"TLS 1.1 only, ECDHE signed with MD5+SHA-1", []host{{name: "mx1", behaviour: "tls11-ecdhe"}},
			levels{"pass", "fail/handshake-failure", "fail/handshake-failure", "fail/handshake-failure"}, ""},
		{"TLS 1.0 only, RSA key exchange", []host{{name: "mx1", behaviour: "tls10-rsa"}},
			levels{"pass", "pass", "pass", "pass"}, ""},
		{"wildcard certificate", []host{{name: "mx1", behaviour: "wildcard"}},
			levels{"pass", "pass", "pass", "pass"}, ""},
		{"certificate names only the next-hop domain", []host{{name: "mx1", behaviour: "nexthop-only"}},
			levels{"pass", "pass", "fail/certificate-host-mismatch", "pass"}, ""},
		// Names as OpenSSL's X509_check_host sees them, and name constraints applied
		// to a CN-only leaf as OpenSSL does (issue 17: these were false passes).
		{"CN-only certificate", []host{{name: "mx1", behaviour: "cn-only"}},
			levels{"pass", "pass", "pass", "pass"}, ""},
		{"CN-only certificate with a trailing dot", []host{{name: "mx1", behaviour: "cn-only-trailing-dot"}},
			levels{"pass", "pass", "fail/certificate-host-mismatch", "fail/certificate-host-mismatch"}, ""},
		{"CN-only certificate from a sub-CA constrained to another domain", []host{{name: "mx1", behaviour: "cn-only-constrained-outside"}},
			levels{"pass", "pass", "fail/validation-failure", "fail/validation-failure"}, ""},
		{"CN-only certificate inside the sub-CA's permitted subtree", []host{{name: "mx1", behaviour: "cn-only-constrained-inside"}},
			levels{"pass", "pass", "pass", "pass"}, ""},
		{"CN-only certificate in the sub-CA's excluded subtree", []host{{name: "mx1", behaviour: "cn-only-constrained-excluded"}},
			levels{"pass", "pass", "fail/validation-failure", "fail/validation-failure"}, ""},
		{"wildcard CN-only certificate from a sub-CA constrained elsewhere", []host{{name: "mx1", behaviour: "cn-only-wildcard-constrained-outside"}},
			levels{"pass", "pass", "pass", "pass"}, ""},
		{"SAN outside the sub-CA's permitted subtree", []host{{name: "mx1", behaviour: "san-constrained-outside"}},
			levels{"pass", "pass", "fail/validation-failure", "fail/validation-failure"}, ""},
		{"SAN inside the permitted subtree hides a CN outside it", []host{{name: "mx1", behaviour: "san-constrained-inside-cn-outside"}},
			levels{"pass", "pass", "fail/certificate-host-mismatch", "fail/certificate-host-mismatch"}, ""},
		{"SAN in the sub-CA's excluded subtree", []host{{name: "mx1", behaviour: "san-constrained-excluded"}},
			levels{"pass", "pass", "fail/validation-failure", "fail/validation-failure"}, ""},
		{"constrained sub-CA's CN-only MX second, good MX first", []host{{name: "mx1", behaviour: "good"}, {name: "mx2", behaviour: "cn-only-constrained-outside"}},
			levels{"pass", "pass", "pass", "pass"}, ""},
		{"no STARTTLS", []host{{name: "mx1", behaviour: "nostarttls"}},
			levels{"fail/starttls-not-supported", "fail/starttls-not-supported", "fail/starttls-not-supported", "fail/starttls-not-supported"}, ""},
		{"self-signed", []host{{name: "mx1", behaviour: "selfsigned"}},
			levels{"pass", "pass", "fail/certificate-not-trusted", "fail/certificate-not-trusted"}, ""},
		{"wrong name", []host{{name: "mx1", behaviour: "wrongname"}},
			levels{"pass", "pass", "fail/certificate-host-mismatch", "fail/certificate-host-mismatch"}, ""},
		{"expired", []host{{name: "mx1", behaviour: "expired"}},
			levels{"pass", "pass", "fail/certificate-expired", "fail/certificate-expired"}, ""},
		{"STARTTLS answered 454", []host{{name: "mx1", behaviour: "starttls454"}},
			levels{"tempfail/greylisted", "tempfail/greylisted", "tempfail/greylisted", "tempfail/greylisted"}, ""},
		{"handshake broken", []host{{name: "mx1", behaviour: "broken"}},
			levels{"fail/handshake-failure", "fail/handshake-failure", "fail/handshake-failure", "fail/handshake-failure"}, ""},
		{"421 banner", []host{{name: "mx1", behaviour: "banner421"}},
			levels{"tempfail/greylisted", "tempfail/greylisted", "tempfail/greylisted", "tempfail/greylisted"}, ""},
		{"450 banner", []host{{name: "mx1", behaviour: "banner450"}},
			levels{"tempfail/greylisted", "tempfail/greylisted", "tempfail/greylisted", "tempfail/greylisted"}, ""},
		{"554 banner", []host{{name: "mx1", behaviour: "banner554"}},
			levels{"tempfail/connection-refused", "tempfail/connection-refused", "tempfail/connection-refused", "tempfail/connection-refused"}, ""},
		{"450 to EHLO", []host{{name: "mx1", behaviour: "ehlo450"}},
			levels{"tempfail/greylisted", "tempfail/greylisted", "tempfail/greylisted", "tempfail/greylisted"}, ""},
		{"silent tarpit", []host{{name: "mx1", behaviour: "tarpit"}},
			levels{"tempfail/timeout", "tempfail/timeout", "tempfail/timeout", "tempfail/timeout"}, ""},
		{"connection refused", []host{{name: "mx1", behaviour: "refused"}},
			levels{"tempfail/connection-refused", "tempfail/connection-refused", "tempfail/connection-refused", "tempfail/connection-refused"}, ""},
		{"closes at once", []host{{name: "mx1", behaviour: "close"}},
			levels{"tempfail/smtp-error", "tempfail/smtp-error", "tempfail/smtp-error", "tempfail/smtp-error"}, ""},
		{"second MX good when the first has no TLS", []host{{name: "mx1", behaviour: "nostarttls"}, {name: "mx2", behaviour: "good"}},
			levels{"pass", "pass", "pass", "pass"}, "LASTHOST"},
		{"second MX good when the first is self-signed", []host{{name: "mx1", behaviour: "selfsigned"}, {name: "mx2", behaviour: "good"}},
			levels{"pass", "pass", "pass", "pass"}, "LASTHOST"},
		{"second MX good when the first refuses", []host{{name: "mx1", behaviour: "refused"}, {name: "mx2", behaviour: "good"}},
			levels{"pass", "pass", "pass", "pass"}, "LASTHOST"},
		{"tarpit then no TLS is not definite", []host{{name: "mx1", behaviour: "tarpit"}, {name: "mx2", behaviour: "nostarttls"}},
			levels{"tempfail/timeout", "tempfail/timeout", "tempfail/timeout", "tempfail/timeout"}, ""},
		// TLS failures do not count towards smtp_mx_session_limit (Postfix smtp_connect.c:
		// "Don't count handshake errors towards the session limit").
		{"third MX tried after two without TLS", []host{{name: "mx1", behaviour: "nostarttls"}, {name: "mx2", behaviour: "nostarttls"}, {name: "mx3", behaviour: "good"}},
			levels{"pass", "pass", "pass", "pass"}, "LASTHOST"},
		{"refused addresses do not count as sessions", []host{{name: "mx1", behaviour: "refused"}, {name: "mx2", behaviour: "refused"}, {name: "mx3", behaviour: "good"}},
			levels{"pass", "pass", "pass", "pass"}, "LASTHOST"},
		{"certificate problem reported over missing STARTTLS", []host{{name: "mx1", behaviour: "nostarttls"}, {name: "mx2", behaviour: "expired"}},
			levels{"pass", "pass", "fail/certificate-expired", "fail/certificate-expired"}, "mx2"},
		{"MX host without address is skipped", []host{{name: "mx1", noAddr: true}, {name: "mx2", behaviour: "good"}},
			levels{"pass", "pass", "pass", "pass"}, "LASTHOST"},
		{"no MX host has an address", []host{{name: "mx1", noAddr: true}, {name: "mx2", noAddr: true}},
			levels{"fail/no-mx", "fail/no-mx", "fail/no-mx", "fail/no-mx"}, ""},
		{"SERVFAIL for the only host", []host{{name: "mx1", dnsRcode: dns.RcodeServerFailure}},
			levels{"tempfail/dns-error", "tempfail/dns-error", "tempfail/dns-error", "tempfail/dns-error"}, ""},
		{"SERVFAIL for one host, other has no TLS", []host{{name: "mx1", dnsRcode: dns.RcodeServerFailure}, {name: "mx2", behaviour: "nostarttls"}},
			levels{"tempfail/dns-error", "tempfail/dns-error", "tempfail/dns-error", "tempfail/dns-error"}, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			w := newWorld(t)
			servers := w.serve(domain, tc.hosts...)
			v := w.verifier()
			facts := v.Probe(context.Background(), domain)
			pin := tc.pin
			switch pin {
			case "":
				pin = tc.hosts[0].name
			case "LASTHOST":
				pin = tc.hosts[len(tc.hosts)-1].name
			}
			fp := w.certs[pin+"."+domain]
			for _, l := range []struct {
				p    policy.Policy
				want want
			}{
				{policy.Policy{Level: policy.LevelNone}, "pass"},
				{policy.Policy{Level: policy.LevelMay}, "pass"},
				{policy.Policy{Level: policy.LevelEncrypt}, tc.want.encrypt},
				{policy.Policy{Level: policy.LevelFingerprint, Match: []string{"00:11", fp}}, tc.want.fingerprint},
				{policy.Policy{Level: policy.LevelVerify}, tc.want.verify},
				{policy.Policy{Level: policy.LevelSecure}, tc.want.secure},
			} {
				l.want.check(t, l.p.Level.String(), verify.Judge(facts, l.p))
			}
			for name, s := range servers {
				for _, c := range s.Commands() {
					verb, _, _ := strings.Cut(c, " ")
					if verb == "MAIL" || verb == "RCPT" || verb == "DATA" {
						t.Errorf("%s received %q: the probe must never send MAIL/RCPT/DATA", name, c)
					}
				}
			}
		})
	}
}

type behaviorMod = fake.Behavior

// startSMTP starts a server with a named behaviour, optionally modified.
func startSMTP(w *world, ip, behaviour, hostname string, mods ...func(*fake.Behavior)) *fake.SMTPServer {
	b := w.behaviour(behaviour, hostname)
	for _, m := range mods {
		m(&b)
	}
	return fake.StartSMTP(w.t, ip, b)
}
