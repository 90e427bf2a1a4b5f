package verify_test

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/tlsgate/tlsgate/internal/dnsx"
	"github.com/tlsgate/tlsgate/internal/fake"
	"github.com/tlsgate/tlsgate/internal/mtasts"
	"github.com/tlsgate/tlsgate/internal/report"
	"github.com/tlsgate/tlsgate/policy"
	"github.com/tlsgate/tlsgate/verify"
)

var published = policy.Policy{Level: policy.LevelPublished}

// publishSTS publishes an MTA-STS record and a policy host for example.test serving
// policy ("" publishes no record).
func (w *world) publishSTS(policyText string) *fake.PolicyServer {
	w.t.Helper()
	if policyText == "" {
		return nil
	}
	ip := netip.MustParseAddr("127.0.0.80")
	srv := fake.StartPolicyServer(w.t, w.ca.Issue(w.t, fake.CertOptions{DNSNames: []string{"mta-sts.example.test"}}))
	srv.RegisterWith(w.dialer, ip)
	srv.SetPolicy(policyText)
	w.dns.Add(w.t, `_mta-sts.example.test. 300 IN TXT "v=STSv1; id=20261121"`,
		"mta-sts.example.test. 300 IN A "+ip.String())
	return srv
}

// withSTS gives the verifier an MTA-STS client on the world's DNS and network.
func (w *world) withSTS(c *verify.Config) {
	res, err := dnsx.NewClient(w.dns.Addr(), time.Second, false)
	if err != nil {
		w.t.Fatal(err)
	}
	sts, err := mtasts.New(mtasts.Config{Resolver: res, Dial: w.dialer.DialContext, Roots: w.ca.Pool, Timeout: 2 * time.Second})
	if err != nil {
		w.t.Fatal(err)
	}
	c.STS = sts
}

func stsPolicy(mode string, mx ...string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "version: STSv1\nmode: %s\n", mode)
	for _, m := range mx {
		fmt.Fprintf(&b, "mx: %s\n", m)
	}
	b.WriteString("max_age: 86400\n")
	return b.String()
}

// TestPublishedMTASTS is the MTA-STS acceptance list (RFC 8461 §4, §5) for the level
// published, against real TLS servers and a real HTTPS policy host on loopback.
func TestPublishedMTASTS(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		hosts   []host
		policy  string // "" publishes no MTA-STS record
		dns     func(w *world)
		want    want
		mech    verify.Mechanism
		stsMode string
	}{
		{
			name:   "enforce, listed MX with a valid certificate",
			hosts:  []host{{name: "mx1", behaviour: "good"}},
			policy: stsPolicy("enforce", "mx1.example.test"),
			want:   "pass", mech: verify.MechMTASTS, stsMode: "enforce",
		},
		{
			name:   "enforce, wildcard matches one label",
			hosts:  []host{{name: "mx1", behaviour: "good"}},
			policy: stsPolicy("enforce", "*.example.test"),
			want:   "pass", mech: verify.MechMTASTS, stsMode: "enforce",
		},
		{
			name:   "enforce, wildcard does not match two labels",
			hosts:  []host{{name: "a.mx1", behaviour: "good"}},
			policy: stsPolicy("enforce", "*.example.test"),
			want:   "fail/sts-mx-mismatch", mech: verify.MechMTASTS, stsMode: "enforce",
		},
		{
			name:   "enforce, certificate for another name",
			hosts:  []host{{name: "mx1", behaviour: "wrongname"}},
			policy: stsPolicy("enforce", "mx1.example.test"),
			want:   "fail/certificate-host-mismatch", mech: verify.MechMTASTS, stsMode: "enforce",
		},
		{
			name:   "enforce, expired certificate",
			hosts:  []host{{name: "mx1", behaviour: "expired"}},
			policy: stsPolicy("enforce", "mx1.example.test"),
			want:   "fail/certificate-expired", mech: verify.MechMTASTS, stsMode: "enforce",
		},
		{
			name:   "enforce, self-signed certificate",
			hosts:  []host{{name: "mx1", behaviour: "selfsigned"}},
			policy: stsPolicy("enforce", "mx1.example.test"),
			want:   "fail/certificate-not-trusted", mech: verify.MechMTASTS, stsMode: "enforce",
		},
		{
			name:   "enforce, no STARTTLS",
			hosts:  []host{{name: "mx1", behaviour: "nostarttls"}},
			policy: stsPolicy("enforce", "mx1.example.test"),
			want:   "fail/starttls-not-supported", mech: verify.MechMTASTS, stsMode: "enforce",
		},
		{
			name:   "enforce, MX not listed",
			hosts:  []host{{name: "mx1", behaviour: "good"}},
			policy: stsPolicy("enforce", "mx9.example.test"),
			want:   "fail/sts-mx-mismatch", mech: verify.MechMTASTS, stsMode: "enforce",
		},
		{
			name:   "enforce, unlisted first MX is skipped, listed second delivers",
			hosts:  []host{{name: "mx1", behaviour: "nostarttls"}, {name: "mx2", behaviour: "good"}},
			policy: stsPolicy("enforce", "mx2.example.test"),
			want:   "pass", mech: verify.MechMTASTS, stsMode: "enforce",
		},
		{
			name:   "enforce, the listed MX is unreachable",
			hosts:  []host{{name: "mx1", behaviour: "good"}, {name: "mx2", behaviour: "refused"}},
			policy: stsPolicy("enforce", "mx2.example.test"),
			want:   "tempfail/connection-refused", mech: verify.MechMTASTS, stsMode: "enforce",
		},
		{
			name:   "testing mode delivers, recording what enforce would say",
			hosts:  []host{{name: "mx1", behaviour: "wrongname"}},
			policy: stsPolicy("testing", "mx1.example.test"),
			want:   "pass/certificate-host-mismatch", mech: verify.MechMTASTS, stsMode: "testing",
		},
		{
			name:   "mode none requires nothing",
			hosts:  []host{{name: "mx1", behaviour: "nostarttls"}},
			policy: "version: STSv1\nmode: none\nmax_age: 86400\n",
			want:   "pass", mech: verify.MechNone,
		},
		{
			name:  "no MTA-STS, no DANE: nothing required",
			hosts: []host{{name: "mx1", behaviour: "nostarttls"}},
			want:  "pass", mech: verify.MechNone,
		},
		{
			name:   "policy cannot be fetched: delivery as without MTA-STS (RFC 8461 §5)",
			hosts:  []host{{name: "mx1", behaviour: "nostarttls"}},
			policy: stsPolicy("enforce", "mx1.example.test"),
			dns:    func(w *world) { w.dns.Remove("mta-sts.example.test.", dns.TypeA) },
			want:   "pass/sts-policy-fetch-error", mech: verify.MechNone,
		},
		{
			name:   "TXT lookup fails: tempfail, never a downgrade",
			hosts:  []host{{name: "mx1", behaviour: "good"}},
			policy: stsPolicy("enforce", "mx1.example.test"),
			dns: func(w *world) {
				w.dns.SetRcode("_mta-sts.example.test.", dns.TypeTXT, dns.RcodeServerFailure)
			},
			want: "tempfail/dns-error",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			w := newWorld(t)
			w.serve(domain, tc.hosts...)
			w.publishSTS(tc.policy)
			if tc.dns != nil {
				tc.dns(w)
			}
			f := w.verifier(w.withSTS).Probe(context.Background(), domain)
			v := verify.Judge(f, published)
			tc.want.check(t, "published", v)
			if tc.mech != "" && v.Mechanism != tc.mech {
				t.Errorf("mechanism %s; want %s", v.Mechanism, tc.mech)
			}
			if v.STSMode != tc.stsMode {
				t.Errorf("sts mode %q; want %q", v.STSMode, tc.stsMode)
			}
		})
	}
}

// TestPublishedDANEPrecedence: where DANE applies, MTA-STS is ignored (RFC 8461 §2):
// it neither blocks a DANE pass nor rescues a DANE failure.
func TestPublishedDANEPrecedence(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		tlsa   string // "match", "mismatch", "servfail", "unusable"
		policy string
		want   want
		mech   verify.Mechanism
	}{
		{"DANE passes although MTA-STS lists another MX", "match", stsPolicy("enforce", "mx9.example.test"), "pass", verify.MechDANE},
		{"DANE failure is not rescued by a valid MTA-STS policy", "mismatch", stsPolicy("enforce", "mx1.example.test"), "fail/tlsa-invalid", verify.MechDANE},
		{"TLSA lookup failure tempfails, MTA-STS or not", "servfail", stsPolicy("enforce", "mx1.example.test"), "tempfail/dns-error", verify.MechDANE},
		{"only unusable TLSA: MTA-STS enforce applies", "unusable", stsPolicy("enforce", "mx9.example.test"), "fail/sts-mx-mismatch", verify.MechMTASTS},
		{"only unusable TLSA, no MTA-STS: TLS is still mandatory", "unusable", "", "pass", verify.MechSTARTTLS},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			w := newWorld(t)
			w.daneHost(t, tc.tlsa)
			w.publishSTS(tc.policy)
			f := w.verifier(w.withSTS).Probe(context.Background(), domain)
			v := verify.Judge(f, published)
			tc.want.check(t, "published", v)
			if v.Mechanism != tc.mech {
				t.Errorf("mechanism %s; want %s", v.Mechanism, tc.mech)
			}
		})
	}
}

// TestSTSBeyondAddressLimit: an MTA-STS sender skips unlisted hosts, so it reaches a
// listed host past Postfix's smtp_mx_address_limit; Postfix levels do not.
func TestSTSBeyondAddressLimit(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	var hosts []host
	for i := 1; i <= 5; i++ {
		hosts = append(hosts, host{name: fmt.Sprintf("mx%d", i), behaviour: "refused"})
	}
	hosts = append(hosts, host{name: "mx6", behaviour: "good"})
	servers := w.serve(domain, hosts...)
	w.publishSTS(stsPolicy("enforce", "mx6.example.test"))
	f := w.verifier(w.withSTS).Probe(context.Background(), domain)
	if n := len(f.Attempts); n != 6 || !f.Attempts[5].BeyondLimit || f.Attempts[4].BeyondLimit {
		t.Fatalf("%d attempts (last beyond limit: %v); want 5 within Postfix's limit and mx6 beyond", n, n > 0 && f.Attempts[n-1].BeyondLimit)
	}
	if servers["mx6"].Connections() != 1 {
		t.Errorf("mx6 contacted %d times; want 1", servers["mx6"].Connections())
	}
	// Only an MTA-STS sender reaches it, told servername=hostname by the socketmap.
	if got := servers["mx6"].ServerNames(); len(got) != 1 || got[0] != "mx6.example.test" {
		t.Errorf("mx6 saw SNI %q; want its host name", got)
	}
	want("pass").check(t, "published", verify.Judge(f, published))
	want("tempfail/connection-refused").check(t, "encrypt", verify.Judge(f, encrypt))
}

// TestSTSChangedPolicyNotStale: the facts of a domain are re-probed with the policy
// whose id changed, not served from a stale cached policy.
func TestSTSChangedPolicyNotStale(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	w.serve(domain, host{name: "mx1", behaviour: "good"})
	srv := w.publishSTS(stsPolicy("enforce", "mx1.example.test"))
	v := w.verifier(w.withSTS)
	want("pass").check(t, "published", verify.Judge(v.Probe(context.Background(), domain), published))
	srv.SetPolicy(stsPolicy("enforce", "mx2.example.test"))
	w.dns.Remove("_mta-sts.example.test.", dns.TypeTXT)
	w.dns.Add(t, `_mta-sts.example.test. 300 IN TXT "v=STSv1; id=2"`)
	want("fail/sts-mx-mismatch").check(t, "published", verify.Judge(v.Probe(context.Background(), domain), published))
	if n := srv.Fetches(); n != 2 {
		t.Errorf("%d policy fetches; want 2", n)
	}
}

// TestReportShowsMTASTS: `tlsgate check` shows the record id, the policy, which MX
// hosts it lists, and attempts made only for MTA-STS.
func TestReportShowsMTASTS(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	w.serve(domain, host{name: "mx1", behaviour: "good"}, host{name: "mx2", behaviour: "good"})
	w.publishSTS(stsPolicy("enforce", "mx2.example.test"))
	f := w.verifier(w.withSTS).Probe(context.Background(), domain)
	v := verify.Judge(f, published)
	r := report.New(f, v, "customer acme")
	if r.MTASTS == nil || r.MTASTS.ID != "20261121" || r.MTASTS.Mode != "enforce" || r.MTASTS.MaxAge != 86400 ||
		len(r.MTASTS.MX) != 1 || r.MTASTS.MX[0] != "mx2.example.test" || r.MTASTS.Cached {
		t.Fatalf("mta_sts = %+v", r.MTASTS)
	}
	if len(r.MX) != 2 || r.MX[0].STSListed == nil || *r.MX[0].STSListed || r.MX[1].STSListed == nil || !*r.MX[1].STSListed {
		t.Fatalf("mx listed flags wrong: %+v", r.MX)
	}
	// mx1 was probed for Postfix levels but not judged by the policy; mx2 passed.
	if got := r.MX[0].Attempts[0].Verdict; got != "not judged" {
		t.Errorf("mx1 verdict %q; want not judged", got)
	}
	if got := r.MX[1].Attempts[0].Verdict; got != "pass" {
		t.Errorf("mx2 verdict %q; want pass", got)
	}
	var b strings.Builder
	if err := r.WriteText(&b); err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"mta-sts:\tid 20261121, mode enforce, max_age 86400, fetched now",
		"mx:\tmx2.example.test", "not listed in the policy", "listed in the policy", "mechanism:\tmta-sts"} {
		if !strings.Contains(strings.Join(strings.Fields(b.String()), " "), strings.Join(strings.Fields(s), " ")) {
			t.Errorf("report lacks %q:\n%s", s, b.String())
		}
	}
}

// TestSTSPolicySurvivesRestart: the cache file carries MTA-STS policies, so after a
// restart an unexpired policy still applies when its TXT record has gone and the policy
// host is unreachable (RFC 8461 §5.1), with no fetch.
func TestSTSPolicySurvivesRestart(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	w.serve(domain, host{name: "mx1", behaviour: "good"})
	srv := w.publishSTS(stsPolicy("enforce", "mx9.example.test"))
	path := filepath.Join(t.TempDir(), "cache.json")
	first := w.verifier(w.withSTS)
	if _, _, err := first.Facts(context.Background(), domain); err != nil {
		t.Fatal(err)
	}
	if _, err := first.SaveCache(path); err != nil {
		t.Fatal(err)
	}
	// The attacker's view: no TXT record, no policy host.
	w.dns.Remove("_mta-sts.example.test.", dns.TypeTXT)
	w.dns.Remove("mta-sts.example.test.", dns.TypeA)
	second := w.verifier(w.withSTS)
	if _, err := second.LoadCache(path); err != nil {
		t.Fatal(err)
	}
	// A fresh probe (not the cached facts) still applies the saved policy.
	f := second.Probe(context.Background(), domain)
	want("fail/sts-mx-mismatch").check(t, "published", verify.Judge(f, published))
	if f.STS == nil || !f.STS.Cached || f.STS.ID != "20261121" {
		t.Errorf("STS result %+v; want the saved policy", f.STS)
	}
	if n := srv.Fetches(); n != 1 {
		t.Errorf("%d policy fetches; want only the first verifier's", n)
	}

	// A file of version 2 (written before certificate names were checked against a
	// constrained CA's subtrees) still gives its policies, never its facts.
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	old := filepath.Join(t.TempDir(), "cache-v2.json")
	if err := os.WriteFile(old, []byte(strings.Replace(string(b), `"version":4`, `"version":2`, 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	third := w.verifier(w.withSTS)
	if n, err := third.LoadCache(old); n != 0 || err != nil {
		t.Errorf("LoadCache(version 2) = %d, %v; want no facts and no error", n, err)
	}
	if _, ok := third.Cached(domain); ok {
		t.Error("facts of a version 2 file were loaded")
	}
	f = third.Probe(context.Background(), domain)
	if f.STS == nil || !f.STS.Cached || f.STS.ID != "20261121" {
		t.Errorf("STS result after a version 2 file %+v; want its saved policy", f.STS)
	}
}
