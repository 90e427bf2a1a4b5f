package verify_test

import (
	"context"
	"strings"
	"testing"

	"github.com/miekg/dns"

	"github.com/tlsgate/tlsgate/internal/fake"
	"github.com/tlsgate/tlsgate/policymap"
	"github.com/tlsgate/tlsgate/verify"
)

// TestMapAgreesWithVerdict sets the RCPT verdict for level published beside the
// socketmap's answer for the same domain, against real servers on loopback: the answer
// from the probe's facts and the answer from a DNS-only lookup are the same, and they
// require what the verdict judged (an RCPT refusal is never a delivery at a weaker
// level: it is TEMP, or a level Postfix enforces as the verdict did).
func TestMapAgreesWithVerdict(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		setup   func(w *world)
		verdict want
		answer  string // "OK data", "NOTFOUND", "TEMP"
	}{
		{"DANE, matching TLSA", func(w *world) { w.daneHost(t, "match") }, "pass", "OK dane"},
		{"DANE, TLSA not matching the certificate: Postfix's dane refuses it too", func(w *world) { w.daneHost(t, "mismatch") }, "fail/tlsa-invalid", "OK dane"},
		{"DANE, TLSA lookup fails", func(w *world) { w.daneHost(t, "servfail") }, "tempfail/dns-error", "TEMP"},
		{"TLSA all unusable, no MTA-STS", func(w *world) { w.daneHost(t, "unusable") }, "pass", "OK dane"},
		{"MTA-STS enforce, listed MX", func(w *world) {
			w.serve(domain, host{name: "mx1", behaviour: "good"})
			w.publishSTS(stsPolicy("enforce", "mx1.example.test"))
		}, "pass", "OK secure match=mx1.example.test servername=hostname"},
		{"MTA-STS enforce, wrong certificate name: Postfix's secure refuses it too", func(w *world) {
			w.serve(domain, host{name: "mx1", behaviour: "wrongname"})
			w.publishSTS(stsPolicy("enforce", "mx1.example.test"))
		}, "fail/certificate-host-mismatch", "OK secure match=mx1.example.test servername=hostname"},
		{"MTA-STS enforce, no MX listed", func(w *world) {
			w.serve(domain, host{name: "mx1", behaviour: "good"})
			w.publishSTS(stsPolicy("enforce", "mx9.example.test"))
		}, "fail/sts-mx-mismatch", "TEMP"},
		{"MTA-STS testing", func(w *world) {
			w.serve(domain, host{name: "mx1", behaviour: "nostarttls"})
			w.publishSTS(stsPolicy("testing", "mx1.example.test"))
		}, "pass/starttls-not-supported", "NOTFOUND"},
		{"_mta-sts TXT lookup fails", func(w *world) {
			w.serve(domain, host{name: "mx1", behaviour: "good"})
			w.publishSTS(stsPolicy("enforce", "mx1.example.test"))
			w.dns.SetRcode("_mta-sts.example.test.", dns.TypeTXT, dns.RcodeServerFailure)
		}, "tempfail/dns-error", "TEMP"},
		{"nothing published", func(w *world) { w.serve(domain, host{name: "mx1", behaviour: "nostarttls"}) }, "pass", "NOTFOUND"},
		{"MX lookup fails", func(w *world) { w.dns.SetRcode(domain+".", dns.TypeMX, dns.RcodeServerFailure) }, "tempfail/dns-error", "TEMP"},
		{"null MX: Postfix bounces on its own", func(w *world) { w.dns.Add(t, domain+". 300 IN MX 0 .") }, "fail/null-mx", "NOTFOUND"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			w := newWorld(t)
			tc.setup(w)
			v := w.verifier(w.withSTS)
			f := v.Probe(context.Background(), domain)
			tc.verdict.check(t, "published", verify.Judge(f, published))

			fromProbe := policymap.Published(v.MapFactsOf(f), false)
			fromDNS := policymap.Published(v.LookupMapFacts(context.Background(), domain), false)
			for src, a := range map[string]policymap.Answer{"probe facts": fromProbe, "DNS-only facts": fromDNS} {
				status, data, _ := strings.Cut(tc.answer, " ")
				if string(a.Status) != status || a.Data != data && status == "OK" {
					t.Errorf("from %s: %s; want %s (%s)", src, a, tc.answer, a.Why)
				}
			}
		})
	}
}

// daneHost publishes one DNSSEC-signed MX host with a good server and TLSA records of
// the kind given: match, mismatch, servfail, unusable.
func (w *world) daneHost(t *testing.T, kind string) {
	w.dns.SetAllAuthentic(true)
	w.dns.Add(t, "example.test. 300 IN MX 10 mx1.example.test.", "mx1.example.test. 300 IN A 127.0.0.10")
	c := w.ca.Issue(t, fake.CertOptions{DNSNames: []string{"mx1.example.test"}})
	s := fake.StartSMTP(t, "127.0.0.10", fake.Behavior{Hostname: "mx1.example.test", Cert: &c})
	s.RegisterWith(w.dialer)
	const owner = "_25._tcp.mx1.example.test."
	switch kind {
	case "match":
		w.dns.Add(t, fake.TLSA(owner, 3, 1, 1, c.Leaf))
	case "mismatch":
		w.dns.Add(t, owner+" 300 IN TLSA 3 1 1 "+strings.Repeat("00", 32))
	case "servfail":
		w.dns.SetRcode(owner, dns.TypeTLSA, dns.RcodeServerFailure)
	case "unusable":
		w.dns.Add(t, fake.TLSA(owner, 1, 1, 1, c.Leaf))
	}
}

// TestMapAnswerSurvivesRestart: facts loaded from the cache file give the socketmap the
// same answer as before the restart (TLSA records included), never a weaker one.
func TestMapAnswerSurvivesRestart(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	w.daneHost(t, "match")
	file := t.TempDir() + "/cache.json"
	v := w.verifier()
	if _, _, err := v.Facts(context.Background(), domain); err != nil {
		t.Fatal(err)
	}
	if _, err := v.SaveCache(file); err != nil {
		t.Fatal(err)
	}
	v2 := w.verifier()
	if n, err := v2.LoadCache(file); err != nil || n != 1 {
		t.Fatalf("LoadCache: %d, %v", n, err)
	}
	m, ok := v2.CachedMapFacts(domain)
	if !ok || !m.FromProbe {
		t.Fatalf("no cached facts after the restart: %+v", m)
	}
	if a := policymap.Published(m, false); a.String() != "dane" {
		t.Errorf("after a restart: %s (%s); want dane", a, a.Why)
	}
}
