package policymap_test

import (
	"context"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/tlsgate/tlsgate/internal/mtasts"
	"github.com/tlsgate/tlsgate/internal/tlsrpt"
	"github.com/tlsgate/tlsgate/policy"
	"github.com/tlsgate/tlsgate/policymap"
	"github.com/tlsgate/tlsgate/socketmap"
	"github.com/tlsgate/tlsgate/verify"
)

// Hand-built facts. A host is "name:tlsa" where tlsa is one of none (secure denial),
// usable, unusable, error, insecure, notlooked; every host has one address unless it
// is "name:noaddr".
func hosts(spec ...string) []verify.Host {
	var hs []verify.Host
	for i, s := range spec {
		name, tlsa, _ := strings.Cut(s, ":")
		h := verify.Host{Name: name, Preference: uint16(10 * (i + 1)),
			Addrs: []netip.Addr{netip.AddrFrom4([4]byte{192, 0, 2, byte(10 + i)})}, AddrSecure: true}
		switch tlsa {
		case "none":
			h.TLSA = verify.TLSA{Status: verify.TLSANone, Base: name}
		case "usable":
			h.TLSA = verify.TLSA{Status: verify.TLSAFound, Base: name, Records: []*dns.TLSA{tlsaRR(3, 1, 1)}}
		case "unusable":
			// PKIX-TA(0) is not usable for SMTP (RFC 7672 §3.1.3).
			h.TLSA = verify.TLSA{Status: verify.TLSAFound, Base: name, Records: []*dns.TLSA{tlsaRR(0, 1, 1)}}
		case "error":
			h.TLSA = verify.TLSA{Status: verify.TLSAError, Base: name, Error: "TLSA lookup for _25._tcp." + name + " failed: server failure"}
		case "insecure":
			h.TLSA = verify.TLSA{Status: verify.TLSAInsecure, Base: name}
		case "noaddr":
			h.Addrs, h.AddrSecure, h.AddrError = nil, false, name+": host not found"
		case "notlooked", "":
			h.AddrSecure = false
		}
		hs = append(hs, h)
	}
	return hs
}

func tlsaRR(usage, selector, mtype uint8) *dns.TLSA {
	return &dns.TLSA{Hdr: dns.RR_Header{Rrtype: dns.TypeTLSA, Class: dns.ClassINET},
		Usage: usage, Selector: selector, MatchingType: mtype, Certificate: strings.Repeat("ab", 32)}
}

func facts(domain string, hs []verify.Host, sts *mtasts.Result) *verify.MapFacts {
	tried := 0
	left := verify.DefaultMXAddressLimit
	for _, h := range hs {
		if left <= 0 {
			break
		}
		left -= len(h.Addrs)
		tried++
	}
	return &verify.MapFacts{Domain: domain, MX: verify.MXFound, MXSecure: true, Hosts: hs, Tried: tried, STS: sts}
}

func stsPolicy(mode mtasts.Mode, mx ...string) *mtasts.Result {
	return &mtasts.Result{Status: mtasts.StatusPolicy, ID: "1",
		Policy: &mtasts.Policy{Mode: mode, MaxAge: 86400 * time.Second, MX: mx}}
}

// TestPublished is the specification of level published at delivery time, each row
// matching how verify.Judge judges published at RCPT time.
func TestPublished(t *testing.T) {
	t.Parallel()
	const d = "example.com"
	noSTS := &mtasts.Result{Status: mtasts.StatusNone, Detail: "no record"}
	stsErr := &mtasts.Result{Status: mtasts.StatusError, Problem: tlsrpt.STSPolicyFetchError, Detail: "TXT lookup: SERVFAIL"}
	enforce := stsPolicy(mtasts.ModeEnforce, "mx1.example.com", "*.example.net")
	const secure = "secure match=mx1.example.com:.example.net servername=hostname"
	const tlsrptAttrs = " policy_type=sts policy_domain=example.com mx_host_pattern=mx1.example.com mx_host_pattern=*.example.net" +
		" { policy_string = version: STSv1 } { policy_string = mode: enforce } { policy_string = mx: mx1.example.com }" +
		" { policy_string = mx: *.example.net } { policy_string = max_age: 86400 }"
	sixHosts := hosts("a1.example.com:none", "a2.example.com:none", "a3.example.com:none", "a4.example.com:none", "a5.example.com:none", "a6.example.com:usable")

	tests := []struct {
		name   string
		facts  *verify.MapFacts
		query  string // answer to QUERY: "OK data", "NOTFOUND", "TEMP" (reason not compared)
		tlsrpt string // answer to QUERYwithTLSRPT, when it differs
	}{
		{"MX lookup failed", &verify.MapFacts{Domain: d, MX: verify.MXError, MXDetail: "MX lookup for example.com failed: timeout"}, "TEMP", ""},
		{"null MX: Postfix bounces on its own", &verify.MapFacts{Domain: d, MX: verify.MXNull}, "NOTFOUND", ""},
		{"no such domain", &verify.MapFacts{Domain: d, MX: verify.MXNone, MXDetail: "does not exist"}, "NOTFOUND", ""},
		{"usable TLSA: dane, not dane-only", facts(d, hosts("mx1.example.com:usable"), noSTS), "OK dane", ""},
		{"usable TLSA on the second host: dane (a host without TLSA is a non-DANE host, RFC 7672 §2.2)", facts(d, hosts("mx1.example.com:none", "mx2.example.com:usable"), noSTS), "OK dane", ""},
		{"DANE wins over MTA-STS (RFC 8461 §2)", facts(d, hosts("mx9.example.org:usable"), enforce), "OK dane", ""},
		{"usable TLSA and a failed TLSA lookup: dane", facts(d, hosts("mx1.example.com:error", "mx2.example.com:usable"), noSTS), "OK dane", ""},
		{"TLSA lookup failed for every host: TEMP, never a downgrade", facts(d, hosts("mx1.example.com:error"), enforce), "TEMP", ""},
		{"TLSA lookup failed for one host of two: dane (Postfix skips that host)", facts(d, hosts("mx1.example.com:error", "mx2.example.com:none"), noSTS), "OK dane", ""},
		{"usable TLSA only past smtp_mx_address_limit: not DANE", facts(d, sixHosts, noSTS), "NOTFOUND", ""},
		{"_mta-sts TXT lookup failed without a cached policy: TEMP", facts(d, hosts("mx1.example.com:none"), stsErr), "TEMP", ""},
		{"MTA-STS enforce", facts(d, hosts("mx1.example.com:none"), enforce), "OK " + secure, "OK " + secure + tlsrptAttrs},
		{"MTA-STS enforce, MX matched by a wildcard", facts(d, hosts("mx.example.net:notlooked"), enforce), "OK " + secure, "OK " + secure + tlsrptAttrs},
		{"MTA-STS enforce, one listed MX of two", facts(d, hosts("other.example.org", "mx1.example.com"), enforce), "OK " + secure, "OK " + secure + tlsrptAttrs},
		{"MTA-STS enforce, no MX listed: sts-mx-mismatch, not delivered", facts(d, hosts("mail.example.org", "a.b.example.net"), enforce), "TEMP", ""},
		{"MTA-STS enforce beats unusable TLSA", facts(d, hosts("mx1.example.com:unusable"), enforce), "OK " + secure, "OK " + secure + tlsrptAttrs},
		{"MTA-STS testing: delivery goes ahead", facts(d, hosts("mx1.example.com:none"), stsPolicy(mtasts.ModeTesting, "mx9.example.org")), "NOTFOUND", ""},
		{"MTA-STS testing with unusable TLSA: as the RCPT verdict, testing", facts(d, hosts("mx1.example.com:unusable"), stsPolicy(mtasts.ModeTesting, "mx1.example.com")), "NOTFOUND", ""},
		{"MTA-STS mode none", facts(d, hosts("mx1.example.com:none"), stsPolicy(mtasts.ModeNone)), "NOTFOUND", ""},
		{"unusable TLSA only: dane (TLS mandatory)", facts(d, hosts("mx1.example.com:unusable"), noSTS), "OK dane", ""},
		{"policy fetch failed, no cached policy: nothing applies (RFC 8461 §5)", facts(d, hosts("mx1.example.com:none"), &mtasts.Result{Status: mtasts.StatusNone, Problem: tlsrpt.STSPolicyFetchError}), "NOTFOUND", ""},
		{"MTA-STS disabled, nothing published", facts(d, hosts("mx1.example.com:insecure"), nil), "NOTFOUND", ""},
		{"insecure addresses, no TLSA looked up", facts(d, hosts("mx1.example.com:notlooked"), noSTS), "NOTFOUND", ""},
		{"implicit MX", &verify.MapFacts{Domain: d, MX: verify.MXImplicit, MXSecure: true, Hosts: hosts("example.com:usable"), Tried: 1}, "OK dane", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			for _, tlsrpt := range []bool{false, true} {
				want := tc.query
				if tlsrpt && tc.tlsrpt != "" {
					want = tc.tlsrpt
				}
				a := policymap.Published(tc.facts, tlsrpt)
				checkAnswer(t, a, want)
			}
		})
	}
}

// checkAnswer compares an answer with "OK data", "NOTFOUND", "TEMP" or "PERM".
func checkAnswer(t *testing.T, a policymap.Answer, want string) {
	t.Helper()
	status, data, _ := strings.Cut(want, " ")
	if string(a.Status) != status || status == "OK" && a.Data != data {
		t.Errorf("answer %s %q (%s); want %s", a.Status, a.Data, a.Why, want)
	}
	if status != "OK" && status != "NOTFOUND" && a.Data == "" {
		t.Errorf("%s without a reason", a.Status)
	}
	if status == "NOTFOUND" && a.Data != "" {
		t.Errorf("NOTFOUND with data %q", a.Data)
	}
}

// fakeFacts serves hand-built facts and counts lookups.
type fakeFacts struct {
	m       map[string]*verify.MapFacts
	err     error
	lookups atomic.Int64
}

func (f *fakeFacts) MapFacts(ctx context.Context, domain string) (*verify.MapFacts, error) {
	f.lookups.Add(1)
	if f.err != nil {
		return nil, f.err
	}
	if m, ok := f.m[domain]; ok {
		return m, nil
	}
	return &verify.MapFacts{Domain: domain, MX: verify.MXNone}, nil
}

// table builds a policy table the way tlsgate does: the configuration's policies
// first, then a tls_policy file.
func table(t *testing.T, file string, policies map[string]policy.Policy) *policy.Table {
	t.Helper()
	tab := policy.NewTable()
	for k, p := range policies {
		if _, err := tab.Add(k, p); err != nil {
			t.Fatal(err)
		}
	}
	path := filepath.Join(t.TempDir(), "tls_policy")
	if err := os.WriteFile(path, []byte(file), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := tab.LoadFile(path); err != nil {
		t.Fatal(err)
	}
	return tab
}

// TestLookup: keys as Postfix's SMTP client forms them (smtp_tls_policy.c
// tls_policy_lookup: the next-hop domain, then ".parent" keys while NOTFOUND; a
// next-hop "[host]:port" alone), both map names, configured entries verbatim.
func TestLookup(t *testing.T) {
	t.Parallel()
	tab := table(t, ""+
		"secure.example      secure match=.secure.example ciphers=high\n"+
		".sub.example        verify match=hostname:nexthop\n"+
		"refused.example     encrypt match=nexthop\n"+
		"xn--bcher-kva.example dane-only\n"+
		"[relay.example]:587 encrypt protocols=>=TLSv1.2\n"+
		"[192.0.2.1]         fingerprint match=AA:BB\n",
		map[string]policy.Policy{
			"pub.example":           {Level: policy.LevelPublished, Raw: "published"},
			".pub.example":          {Level: policy.LevelPublished, Raw: "published"},
			"yaml.example":          {Level: policy.LevelSecure, Match: []string{"nexthop", "dot-nexthop"}, Raw: "secure match=nexthop:dot-nexthop"},
			"override.dane.example": {Level: policy.LevelEncrypt, Raw: "encrypt"},
		})
	ff := &fakeFacts{m: map[string]*verify.MapFacts{
		"pub.example":           facts("pub.example", hosts("mx1.pub.example:usable"), nil),
		"a.pub.example":         facts("a.pub.example", hosts("mx1.example.org:none"), nil),
		"dane.example":          facts("dane.example", hosts("mx1.dane.example:usable"), nil),
		"override.dane.example": facts("override.dane.example", hosts("mx1.dane.example:usable"), nil),
		"sts.example":           facts("sts.example", hosts("mx.sts.example"), stsPolicy(mtasts.ModeEnforce, "mx.sts.example")),
	}}
	none := policymap.New(policymap.Config{Policies: tab, Facts: ff})
	pub := policymap.New(policymap.Config{Policies: tab, Facts: ff, DefaultPublished: true})

	const tlsrpt = policymap.NameQueryTLSRPT
	tests := []struct {
		m          *policymap.Map
		name, key  string
		want       string
		wantLookup bool // the facts were needed
	}{
		{none, "QUERY", "secure.example", "OK secure match=.secure.example ciphers=high", false},
		{none, tlsrpt, "secure.example", "OK secure match=.secure.example ciphers=high", false},
		{none, "QUERY", "SECURE.Example.", "OK secure match=.secure.example ciphers=high", false},
		{none, "QUERY", "mx.secure.example", "NOTFOUND", false},
		{none, "QUERY", ".secure.example", "NOTFOUND", false},
		// tlsgate's lookup finds the closest parent for the domain key at once; Postfix
		// would find the same entry one lookup later.
		{none, "QUERY", "a.b.sub.example", "OK verify match=hostname:nexthop", false},
		{none, "QUERY", ".sub.example", "OK verify match=hostname:nexthop", false},
		{none, "QUERY", "sub.example", "NOTFOUND", false},
		{none, "QUERY", "refused.example", "OK encrypt match=nexthop", false}, // Postfix refuses it and defers, as with the file
		{none, "QUERY", "bücher.example", "OK dane-only", false},
		{none, "QUERY", "xn--bcher-kva.example", "OK dane-only", false},
		{none, "QUERY", "yaml.example", "OK secure match=nexthop:dot-nexthop", false},
		{none, "QUERY", "[relay.example]:587", "OK encrypt protocols=>=TLSv1.2", false},
		{none, "QUERY", "[RELAY.example]:587", "OK encrypt protocols=>=TLSv1.2", false},
		{none, "QUERY", "[relay.example]", "NOTFOUND", false},
		{none, "QUERY", "[relay.example]:25", "NOTFOUND", false},
		{none, "QUERY", "relay.example", "NOTFOUND", false},
		{none, "QUERY", "[192.0.2.1]", "OK fingerprint match=AA:BB", false},
		{none, "QUERY", "pub.example", "OK dane", true},
		{none, "QUERY", "a.pub.example", "NOTFOUND", true}, // published via .pub.example, nothing published
		{none, "QUERY", ".pub.example", "NOTFOUND", false}, // answered through the domain key
		{none, "QUERY", "dane.example", "NOTFOUND", false}, // no default level
		{pub, "QUERY", "dane.example", "OK dane", true},
		{pub, tlsrpt, "dane.example", "OK dane", true},
		{pub, "QUERY", "override.dane.example", "OK encrypt", false}, // a configured entry wins over the default
		{pub, "QUERY", "sts.example", "OK secure match=mx.sts.example servername=hostname", true},
		{pub, tlsrpt, "sts.example", "OK secure match=mx.sts.example servername=hostname policy_type=sts policy_domain=sts.example mx_host_pattern=mx.sts.example" +
			" { policy_string = version: STSv1 } { policy_string = mode: enforce } { policy_string = mx: mx.sts.example } { policy_string = max_age: 86400 }", true},
		// PUBLISHED is the table of a per-customer published service: every unconfigured
		// domain at level published whatever socketmap.default_level says.
		{none, policymap.NamePublished, "dane.example", "OK dane", true},
		{none, policymap.NamePublished, "override.dane.example", "OK encrypt", false},
		{none, policymap.NamePublished, "[mx.example]", "NOTFOUND", false},
		{none, policymap.NamePublishedTLSRPT, "sts.example", "OK secure match=mx.sts.example servername=hostname policy_type=sts policy_domain=sts.example mx_host_pattern=mx.sts.example" +
			" { policy_string = version: STSv1 } { policy_string = mode: enforce } { policy_string = mx: mx.sts.example } { policy_string = max_age: 86400 }", true},
		{pub, "QUERY", "nxdomain.example", "NOTFOUND", true},
		{pub, "QUERY", ".example", "NOTFOUND", false},     // the default never applies to parent keys
		{pub, "QUERY", "[mx.example]", "NOTFOUND", false}, // nor to explicit next hops
		{pub, "QUERY", "secure.example", "OK secure match=.secure.example ciphers=high", false},
		{pub, "query", "secure.example", "PERM", false},
		{pub, "TLSPOL", "secure.example", "PERM", false},
		{pub, "QUERY", "", "NOTFOUND", false},
		{pub, "QUERY", "a\x00b.example", "NOTFOUND", false},
		{pub, "QUERY", strings.Repeat("a", 100000), "NOTFOUND", false},
		{pub, "QUERY", "..example", "NOTFOUND", false},
		{pub, "QUERY", "/var/run/socket", "NOTFOUND", false},
	}
	for _, tc := range tests {
		before := ff.lookups.Load()
		a := tc.m.Answer(context.Background(), tc.name, tc.key)
		key := tc.key
		if len(key) > 40 {
			key = key[:40] + "..."
		}
		t.Run(tc.name+" "+key, func(t *testing.T) {
			checkAnswer(t, a, tc.want)
			if r := tc.m.Lookup(context.Background(), tc.name, tc.key); r != a.Reply() {
				t.Errorf("Lookup = %+v; Answer = %+v", r, a)
			}
			if looked := ff.lookups.Load() > before; looked != tc.wantLookup {
				t.Errorf("facts looked up: %v; want %v", looked, tc.wantLookup)
			}
		})
	}
}

// TestLookupFailures: a lookup that fails or is still pending past the budget is
// TEMP, never NOTFOUND (which would let Postfix deliver at its default level).
func TestLookupFailures(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		err  error
	}{
		{"pending past the budget", verify.ErrPending},
		{"verifier closed", verify.ErrClosed},
		{"too many lookups running", verify.ErrOverloaded},
		{"any error", errors.New("boom")},
	} {
		m := policymap.New(policymap.Config{Facts: &fakeFacts{err: tc.err}, DefaultPublished: true})
		a := m.Answer(context.Background(), "QUERY", "example.com")
		if a.Status != socketmap.StatusTemp || a.Data == "" {
			t.Errorf("%s: %+v; want TEMP with a reason", tc.name, a)
		}
	}
}

// slowFacts blocks until ctx ends, as a lookup that takes too long.
type slowFacts struct{ deadline atomic.Value }

func (s *slowFacts) MapFacts(ctx context.Context, domain string) (*verify.MapFacts, error) {
	d, _ := ctx.Deadline()
	s.deadline.Store(d)
	<-ctx.Done()
	return nil, verify.ErrPending
}

// TestBudget: the facts are waited for at most Config.Timeout.
func TestBudget(t *testing.T) {
	t.Parallel()
	sf := &slowFacts{}
	m := policymap.New(policymap.Config{Facts: sf, DefaultPublished: true, Timeout: 50 * time.Millisecond})
	start := time.Now()
	a := m.Answer(context.Background(), "QUERY", "example.com")
	if a.Status != socketmap.StatusTemp {
		t.Errorf("answer %+v; want TEMP", a)
	}
	if d, _ := sf.deadline.Load().(time.Time); d.IsZero() || d.Sub(start) > time.Second {
		t.Errorf("lookup deadline %v after the start; want about 50ms", d.Sub(start))
	}
}

// TestSetConfig: a reload replaces the table and the default at once.
func TestSetConfig(t *testing.T) {
	t.Parallel()
	ff := &fakeFacts{m: map[string]*verify.MapFacts{"dane.example": facts("dane.example", hosts("mx.dane.example:usable"), nil)}}
	m := policymap.New(policymap.Config{Facts: ff})
	checkAnswer(t, m.Answer(context.Background(), "QUERY", "dane.example"), "NOTFOUND")
	m.SetConfig(policymap.Config{Facts: ff, DefaultPublished: true})
	checkAnswer(t, m.Answer(context.Background(), "QUERY", "dane.example"), "OK dane")
}

// cachedFacts is a fakeFacts that also answers from its cache without waiting.
type cachedFacts struct {
	fakeFacts
	cached map[string]*verify.MapFacts
}

func (c *cachedFacts) CachedMapFacts(domain string) (*verify.MapFacts, bool) {
	m, ok := c.cached[domain]
	return m, ok
}

// TestLookupCached: the server's fast path answers at once what needs no lookup, and
// hands the rest to Lookup; both give the same answers.
func TestLookupCached(t *testing.T) {
	t.Parallel()
	tab := table(t, "secure.example secure match=.secure.example\n", nil)
	dane := facts("dane.example", hosts("mx.dane.example:usable"), nil)
	cf := &cachedFacts{fakeFacts: fakeFacts{m: map[string]*verify.MapFacts{"dane.example": dane, "cold.example": dane}},
		cached: map[string]*verify.MapFacts{"dane.example": dane}}
	m := policymap.New(policymap.Config{Policies: tab, Facts: cf, DefaultPublished: true})
	for _, tc := range []struct {
		name, key string
		cached    bool
		want      string
	}{
		{"QUERY", "secure.example", true, "OK secure match=.secure.example"},
		{"QUERY", "dane.example", true, "OK dane"},
		{"QUERYwithTLSRPT", "dane.example", true, "OK dane"},
		{"QUERY", "cold.example", false, ""},
		{"QUERY", ".example", true, "NOTFOUND"},
		{"OTHER", "dane.example", true, "PERM"},
	} {
		before := cf.lookups.Load()
		r, ok := m.LookupCached(tc.name, tc.key)
		if n := cf.lookups.Load() - before; n != 0 {
			t.Errorf("LookupCached(%s, %s) looked facts up %d times", tc.name, tc.key, n)
		}
		if ok != tc.cached {
			t.Errorf("LookupCached(%s, %s) answered: %v; want %v", tc.name, tc.key, ok, tc.cached)
			continue
		}
		if ok {
			checkAnswer(t, policymap.Answer{Status: r.Status, Data: r.Data, Why: "-"}, tc.want)
			if full := m.Lookup(context.Background(), tc.name, tc.key); full != r {
				t.Errorf("LookupCached(%s, %s) = %v; Lookup = %v", tc.name, tc.key, r, full)
			}
		}
	}
	// A facts source without a cache: level published always goes to Lookup.
	m = policymap.New(policymap.Config{Policies: tab, Facts: &fakeFacts{}, DefaultPublished: true})
	if _, ok := m.LookupCached("QUERY", "dane.example"); ok {
		t.Error("answered published without cached facts")
	}
}

// TestLookupCachedMemo: a repeated lookup is answered from the memo only while what the
// answer was computed from holds: a configuration swap, new facts for the domain (a
// refresh), or facts that left the cache (expiry, purge) give a new answer.
func TestLookupCachedMemo(t *testing.T) {
	t.Parallel()
	daneFacts := facts("pub.example", hosts("mx.pub.example:usable"), nil)
	daneFacts.Checked = time.Unix(1000, 0)
	cf := &cachedFacts{cached: map[string]*verify.MapFacts{"pub.example": daneFacts}}
	m := policymap.New(policymap.Config{Facts: cf, DefaultPublished: true})
	lookup := func(want string) {
		t.Helper()
		r, ok := m.LookupCached("QUERY", "pub.example")
		if !ok {
			if want != "" {
				t.Fatalf("LookupCached: not answered; want %q", want)
			}
			return
		}
		checkAnswer(t, policymap.Answer{Status: r.Status, Data: r.Data, Why: "-"}, want)
	}
	lookup("OK dane")
	lookup("OK dane") // memoized
	// A refresh: the domain's TLSA records are gone.
	plain := facts("pub.example", hosts("mx.pub.example:none"), nil)
	plain.Checked = time.Unix(2000, 0)
	cf.cached["pub.example"] = plain
	lookup("NOTFOUND")
	// A configuration swap: the domain now has an entry of its own.
	m.SetConfig(policymap.Config{Facts: cf, DefaultPublished: true,
		Policies: table(t, "pub.example encrypt\n", nil)})
	lookup("OK encrypt")
	m.SetConfig(policymap.Config{Facts: cf, DefaultPublished: true})
	// The facts expired or were purged: no answer from memory.
	delete(cf.cached, "pub.example")
	lookup("")
}
