package verify_test

import (
	"context"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/miekg/dns"

	"github.com/tlsgate/tlsgate/internal/fake"
	"github.com/tlsgate/tlsgate/policy"
	"github.com/tlsgate/tlsgate/verify"
)

func TestParseNextHop(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   string
		want verify.NextHop
		ok   bool
	}{
		{"example.test", verify.NextHop{Name: "example.test", MX: true}, true},
		{"Example.TEST.", verify.NextHop{Name: "example.test", MX: true}, true},
		{"[gw.example.test]", verify.NextHop{Name: "gw.example.test"}, true},
		{"[GW.example.test]:2525", verify.NextHop{Name: "gw.example.test", Port: 2525}, true},
		{"relay.example.test:587", verify.NextHop{Name: "relay.example.test", Port: 587, MX: true}, true},
		{"[192.0.2.1]:26", verify.NextHop{Name: "192.0.2.1", Port: 26, IP: netip.MustParseAddr("192.0.2.1")}, true},
		{"[ipv6:2001:db8::1]", verify.NextHop{Name: "ipv6:2001:db8::1", IP: netip.MustParseAddr("2001:db8::1")}, true},
		{"", verify.NextHop{}, false},
		{"[bad host]:25", verify.NextHop{}, false},
	}
	for _, tc := range tests {
		got, ok, err := verify.ParseNextHop(tc.in)
		if ok != tc.ok || err != nil || got != tc.want {
			t.Errorf("ParseNextHop(%q) = %+v, %v, %v; want %+v, %v", tc.in, got, ok, err, tc.want, tc.ok)
		}
	}
	if _, ok, err := verify.ParseNextHop("[gw.example.test]:99999"); !ok || err == nil {
		t.Errorf("port 99999: ok=%v err=%v; want an error", ok, err)
	}
}

// TestExplicitNextHop: a "[host]:port" next hop (transport_maps smtp:[gw]:2525,
// relayhost) is judged at that host and port, without an MX lookup (smtp(8)), with
// certificate names against the host (match=hostname and, for secure, nexthop: "the
// transport next-hop ... stripped of ... enclosing square brackets and trailing
// port", postconf(5) smtp_tls_secure_cert_match), and never with MTA-STS (RFC 8461
// applies to MX delivery).
func TestExplicitNextHop(t *testing.T) {
	t.Parallel()
	const gw = "gw.example.test"
	tests := []struct {
		name      string
		domainMX  string // behaviour of example.test's own MX
		gwServer  string // behaviour of the gateway
		level     policy.Level
		wantHop   want
		wantOwnMX want
	}{
		{"own MX passes, next hop fails", "good", "nostarttls", policy.LevelEncrypt, "fail/starttls-not-supported", "pass"},
		{"own MX fails, next hop passes", "nostarttls", "good", policy.LevelEncrypt, "pass", "fail/starttls-not-supported"},
		{"verify: hostname is the next-hop host", "good", "good", policy.LevelVerify, "pass", "pass"},
		{"secure: nexthop is the host, not the recipient domain", "nexthop-only", "nexthop-only", policy.LevelSecure, "fail/certificate-host-mismatch", "pass"},
		{"secure: certificate for the host", "wrongname", "good", policy.LevelSecure, "pass", "fail/certificate-host-mismatch"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			w := newWorld(t)
			w.serve(domain, host{name: "mx1", behaviour: tc.domainMX})
			// gw has an MX record of its own that must not be used for "[gw]".
			w.dns.Add(t, gw+". 300 IN A 127.0.0.30", gw+". 300 IN MX 10 mx1.example.test.")
			w.serveAt("127.0.0.30", tc.gwServer, gw)
			v := w.verifier()
			p := policy.Policy{Level: tc.level}
			f, _, err := v.Facts(context.Background(), "["+gw+"]:2525")
			if err != nil {
				t.Fatal(err)
			}
			tc.wantHop.check(t, tc.level.String(), verify.Judge(f, p))
			own, _, err := v.Facts(context.Background(), domain)
			if err != nil {
				t.Fatal(err)
			}
			tc.wantOwnMX.check(t, tc.level.String(), verify.Judge(own, p))
			if !slices.Contains(w.dialer.Dials(), "127.0.0.30:2525") {
				t.Errorf("dials %v; want 127.0.0.30:2525", w.dialer.Dials())
			}
			for _, q := range w.dns.Queries() {
				if q.Type == dns.TypeMX && q.Name == gw+"." {
					t.Errorf("MX lookup of %s for the explicit next hop", gw)
				}
			}
			// The domain and its next hop are distinct cache entries.
			if f2, ok := v.Cached("[" + gw + "]:2525"); !ok || f2 != f {
				t.Error("next-hop facts not cached under their own key")
			}
			if own.Domain != domain || f.Domain != "["+gw+"]:2525" {
				t.Errorf("keys %q, %q", own.Domain, f.Domain)
			}
		})
	}
}

// TestNextHopDANE: a "[host]:port" next hop whose address records are
// DNSSEC-validated has its TLSA records at _port._tcp.host (RFC 7672 §3, Postfix
// looks them up for a non-MX destination when the address lookup is secure).
func TestNextHopDANE(t *testing.T) {
	t.Parallel()
	const gw = "gw.example.test"
	w := newWorld(t)
	w.dns.SetAllAuthentic(true)
	w.dns.Add(t, gw+". 300 IN A 127.0.0.31")
	c := w.ca.Issue(t, fake.CertOptions{DNSNames: []string{gw}})
	s := fake.StartSMTP(t, "127.0.0.31", fake.Behavior{Hostname: gw, Cert: &c})
	s.RegisterWith(w.dialer)
	w.dns.Add(t, fake.TLSA("_2525._tcp."+gw+".", 3, 1, 1, c.Leaf))
	// A record at port 25 that matches nothing: it must not be the one used.
	w.dns.Add(t, "_25._tcp."+gw+". 300 IN TLSA 3 1 1 "+strings.Repeat("00", 32))
	v := w.verifier()
	f, _, err := v.Facts(context.Background(), "["+gw+"]:2525")
	if err != nil {
		t.Fatal(err)
	}
	if !f.MXSecure || f.Hosts[0].TLSA.Status != verify.TLSAFound {
		t.Fatalf("secure=%v TLSA=%+v", f.MXSecure, f.Hosts[0].TLSA)
	}
	want("pass").check(t, "dane-only", verify.Judge(f, policy.Policy{Level: policy.LevelDaneOnly}))
	f25, _, err := v.Facts(context.Background(), "["+gw+"]")
	if err != nil {
		t.Fatal(err)
	}
	want("fail/tlsa-invalid").check(t, "dane-only", verify.Judge(f25, policy.Policy{Level: policy.LevelDaneOnly}))

	// Unsigned address records: no DANE for the host (dane-only fails, dane is may).
	w.dns.SetAuthentic(gw+".", false)
	fu := w.verifier().Probe(context.Background(), "["+gw+"]:2525")
	want("fail/dnssec-invalid").check(t, "dane-only", verify.Judge(fu, policy.Policy{Level: policy.LevelDaneOnly}))
	want("pass").check(t, "dane", verify.Judge(fu, policy.Policy{Level: policy.LevelDane}))
}

// TestNextHopDomainPort: "relay.example.test:2525" is MX delivery to relay's MX hosts
// at port 2525 (smtp(8): MX lookup for a next hop without brackets).
func TestNextHopDomainPort(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	w.serve("relay.example.test", host{name: "mx1", behaviour: "good", ip: "127.0.0.32"})
	f := w.verifier().Probe(context.Background(), "relay.example.test:2525")
	want("pass").check(t, "verify", verify.Judge(f, policy.Policy{Level: policy.LevelVerify}))
	if f.MX != verify.MXFound || !slices.Contains(w.dialer.Dials(), "127.0.0.32:2525") {
		t.Errorf("MX %s, dials %v; want the MX host at 2525", f.MX, w.dialer.Dials())
	}
}

// TestNextHopCachePersisted: a next hop's facts are saved and loaded under their key.
func TestNextHopCachePersisted(t *testing.T) {
	t.Parallel()
	const gw = "gw.example.test"
	w := newWorld(t)
	w.dns.Add(t, gw+". 300 IN A 127.0.0.33")
	w.serveAt("127.0.0.33", "good", gw)
	v := w.verifier()
	if _, _, err := v.Facts(context.Background(), "["+gw+"]:2525"); err != nil {
		t.Fatal(err)
	}
	path := t.TempDir() + "/cache"
	if n, err := v.SaveCache(path); n != 1 || err != nil {
		t.Fatalf("saved %d, %v", n, err)
	}
	v2 := w.verifier()
	if n, err := v2.LoadCache(path); n != 1 || err != nil {
		t.Fatalf("loaded %d, %v", n, err)
	}
	f, ok := v2.Cached("[" + gw + "]:2525")
	if !ok || f.NextHopName() != gw {
		t.Fatalf("loaded facts: %v", ok)
	}
	want("pass").check(t, "verify", verify.Judge(f, policy.Policy{Level: policy.LevelVerify}))
}
