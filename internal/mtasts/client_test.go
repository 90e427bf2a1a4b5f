package mtasts_test

import (
	"context"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/tlsgate/tlsgate/internal/dnsx"
	"github.com/tlsgate/tlsgate/internal/fake"
	"github.com/tlsgate/tlsgate/internal/mtasts"
	"github.com/tlsgate/tlsgate/internal/tlsrpt"
)

const (
	domain   = "example.test"
	txtName  = "_mta-sts.example.test."
	hostName = "mta-sts.example.test."
	policyV1 = "version: STSv1\nmode: enforce\nmx: mx1.example.test\nmax_age: 86400\n"
	policyV2 = "version: STSv1\nmode: enforce\nmx: mx2.example.test\nmax_age: 86400\n"
)

var policyIP = netip.MustParseAddr("127.0.0.80")

// stsWorld is one test's DNS, policy host and clock.
type stsWorld struct {
	t      *testing.T
	dns    *fake.DNSServer
	dialer *fake.Dialer
	ca     *fake.CA
	srv    *fake.PolicyServer
	mu     sync.Mutex
	now    time.Time
}

func newSTSWorld(t *testing.T) *stsWorld {
	t.Helper()
	w := &stsWorld{t: t, dns: fake.StartDNS(t), dialer: fake.NewDialer(), ca: fake.NewCA(t, "STS Root"),
		now: time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC)}
	w.srv = fake.StartPolicyServer(t, w.ca.Issue(t, fake.CertOptions{DNSNames: []string{"mta-sts.example.test"}}))
	w.srv.RegisterWith(w.dialer, policyIP)
	w.dns.Add(t, hostName+" 300 IN A "+policyIP.String())
	w.setTXT("v=STSv1; id=1")
	w.srv.SetPolicy(policyV1)
	return w
}

func (w *stsWorld) setTXT(records ...string) {
	w.dns.Remove(txtName, dns.TypeTXT)
	for _, r := range records {
		w.dns.Add(w.t, txtName+` 300 IN TXT "`+r+`"`)
	}
}

func (w *stsWorld) advance(d time.Duration) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.now = w.now.Add(d)
}

func (w *stsWorld) clock() time.Time {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.now
}

func (w *stsWorld) client(mod ...func(*mtasts.Config)) *mtasts.Client {
	w.t.Helper()
	res, err := dnsx.NewClient(w.dns.Addr(), time.Second, false)
	if err != nil {
		w.t.Fatal(err)
	}
	cfg := mtasts.Config{
		Resolver: res,
		Dial:     w.dialer.DialContext,
		Roots:    w.ca.Pool,
		Timeout:  2 * time.Second,
		Now:      w.clock,
	}
	for _, m := range mod {
		m(&cfg)
	}
	c, err := mtasts.New(cfg)
	if err != nil {
		w.t.Fatal(err)
	}
	w.t.Cleanup(c.Close)
	return c
}

// expect checks a result: its status, whether the policy lists mx1 or mx2, whether it
// came from the cache, and its problem.
type expect struct {
	status  mtasts.Status
	mx      string // the policy's only mx pattern, "" for no policy
	cached  bool
	problem tlsrpt.ResultType
	fetches int // the server's request count after the lookup
}

func (w *stsWorld) lookup(c *mtasts.Client, want expect) mtasts.Result {
	w.t.Helper()
	r := c.Lookup(context.Background(), domain)
	mx := ""
	if r.Policy != nil {
		mx = strings.Join(r.Policy.MX, ",")
	}
	if r.Status != want.status || mx != want.mx || r.Cached != want.cached || r.Problem != want.problem {
		w.t.Errorf("Lookup = status %s mx %q cached %v problem %q (%s); want %s %q %v %q",
			r.Status, mx, r.Cached, r.Problem, r.Detail, want.status, want.mx, want.cached, want.problem)
	}
	if n := w.srv.Fetches(); n != want.fetches {
		w.t.Errorf("%d policy fetches; want %d", n, want.fetches)
	}
	return r
}

// TestPolicyCacheLifecycle walks RFC 8461 §5.1: cache by id, refetch on a new id, keep
// the old policy when the refetch fails, back off, keep it when the TXT record goes,
// drop it at max_age.
func TestPolicyCacheLifecycle(t *testing.T) {
	t.Parallel()
	w := newSTSWorld(t)
	c := w.client()

	r := w.lookup(c, expect{status: mtasts.StatusPolicy, mx: "mx1.example.test", fetches: 1})
	if r.ID != "1" || r.Policy.Mode != mtasts.ModeEnforce || r.Policy.MaxAge != 24*time.Hour {
		t.Errorf("policy id %q mode %s max_age %s", r.ID, r.Policy.Mode, r.Policy.MaxAge)
	}
	if !r.Expires.Equal(w.clock().Add(24 * time.Hour)) {
		t.Errorf("expires %s; want fetched + max_age", r.Expires)
	}
	if r.TTL <= 0 || r.TTL > 300*time.Second {
		t.Errorf("TTL %s; want the TXT TTL (300s)", r.TTL)
	}

	// Same id: the cached policy, no fetch.
	w.advance(time.Hour)
	w.lookup(c, expect{status: mtasts.StatusPolicy, mx: "mx1.example.test", cached: true, fetches: 1})

	// The id changes: refetch, the new policy applies at once.
	w.srv.SetPolicy(policyV2)
	w.setTXT("v=STSv1; id=2")
	w.lookup(c, expect{status: mtasts.StatusPolicy, mx: "mx2.example.test", fetches: 2})

	// The id changes again but the policy host fails: the old policy stays.
	w.srv.SetHandler(func(w http.ResponseWriter, _ *http.Request) { http.Error(w, "down", http.StatusServiceUnavailable) })
	w.setTXT("v=STSv1; id=3")
	w.lookup(c, expect{status: mtasts.StatusPolicy, mx: "mx2.example.test", cached: true, problem: tlsrpt.STSPolicyFetchError, fetches: 3})
	// Within the back-off, no new fetch.
	w.advance(30 * time.Second)
	w.lookup(c, expect{status: mtasts.StatusPolicy, mx: "mx2.example.test", cached: true, problem: tlsrpt.STSPolicyFetchError, fetches: 3})
	// After it, one more try.
	w.advance(31 * time.Second)
	w.lookup(c, expect{status: mtasts.StatusPolicy, mx: "mx2.example.test", cached: true, problem: tlsrpt.STSPolicyFetchError, fetches: 4})
	// The back-off doubles: 2 minutes now.
	w.advance(90 * time.Second)
	w.lookup(c, expect{status: mtasts.StatusPolicy, mx: "mx2.example.test", cached: true, problem: tlsrpt.STSPolicyFetchError, fetches: 4})

	// The TXT record disappears: an unexpired policy still applies (§5.1).
	w.setTXT()
	w.lookup(c, expect{status: mtasts.StatusPolicy, mx: "mx2.example.test", cached: true, fetches: 4})

	// At max_age it is gone, and without a record there is no policy.
	w.advance(25 * time.Hour)
	w.lookup(c, expect{status: mtasts.StatusNone, fetches: 4})
}

// TestPolicyFetchFailures: without a cached policy, every failure to get a valid policy
// means "no policy" (RFC 8461 §5), with the RFC 8460 result type recorded.
func TestPolicyFetchFailures(t *testing.T) {
	t.Parallel()
	big := "version: STSv1\nmode: enforce\nmx: mx1.example.test\nmax_age: 86400\n" + strings.Repeat("# padding\n", 7000)
	tests := []struct {
		name    string
		setup   func(w *stsWorld)
		problem tlsrpt.ResultType
		fetches int
	}{
		{"404", func(w *stsWorld) {
			w.srv.SetHandler(func(w http.ResponseWriter, r *http.Request) { http.NotFound(w, r) })
		}, tlsrpt.STSPolicyFetchError, 1},
		{"redirect is not followed", func(w *stsWorld) {
			w.srv.SetHandler(func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path == "/elsewhere" {
					w.Header().Set("Content-Type", "text/plain")
					_, _ = w.Write([]byte(policyV1))
					return
				}
				http.Redirect(w, r, "/elsewhere", http.StatusMovedPermanently)
			})
		}, tlsrpt.STSPolicyFetchError, 1},
		{"not text/plain", func(w *stsWorld) {
			w.srv.SetHandler(func(w http.ResponseWriter, _ *http.Request) {
				w.Header().Set("Content-Type", "text/html")
				_, _ = w.Write([]byte(policyV1))
			})
		}, tlsrpt.STSPolicyInvalid, 1},
		{"larger than 64 KiB", func(w *stsWorld) { w.srv.SetPolicy(big) }, tlsrpt.STSPolicyInvalid, 1},
		{"invalid policy", func(w *stsWorld) { w.srv.SetPolicy("version: STSv1\nmode: enforce\nmax_age: 86400\n") }, tlsrpt.STSPolicyInvalid, 1},
		{"certificate from an unknown CA", func(w *stsWorld) {
			other := fake.NewCA(t, "Other Root")
			w.srv = fake.StartPolicyServer(t, other.Issue(t, fake.CertOptions{DNSNames: []string{"mta-sts.example.test"}}))
			w.srv.RegisterWith(w.dialer, policyIP)
			w.srv.SetPolicy(policyV1)
		}, tlsrpt.STSWebPKIInvalid, 0},
		{"certificate for another name", func(w *stsWorld) {
			w.srv = fake.StartPolicyServer(t, w.ca.Issue(t, fake.CertOptions{DNSNames: []string{"mx1.example.test"}}))
			w.srv.RegisterWith(w.dialer, policyIP)
			w.srv.SetPolicy(policyV1)
		}, tlsrpt.STSWebPKIInvalid, 0},
		{"policy host does not exist", func(w *stsWorld) { w.dns.Remove(hostName, dns.TypeA) }, tlsrpt.STSPolicyFetchError, 0},
		{"policy host refuses", func(w *stsWorld) { w.dialer.Refuse(policyIP) }, tlsrpt.STSPolicyFetchError, 0},
		{"policy host stalls", func(w *stsWorld) {
			w.srv.SetHandler(func(_ http.ResponseWriter, r *http.Request) { <-r.Context().Done() })
		}, tlsrpt.STSPolicyFetchError, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			w := newSTSWorld(t)
			tc.setup(w)
			c := w.client(func(c *mtasts.Config) { c.Timeout = 500 * time.Millisecond })
			start := time.Now()
			r := w.lookup(c, expect{status: mtasts.StatusNone, problem: tc.problem, fetches: tc.fetches})
			if r.ID != "1" {
				t.Errorf("id %q; want the record's id", r.ID)
			}
			if d := time.Since(start); d > 5*time.Second {
				t.Errorf("lookup took %s; the fetch timeout is 500ms", d)
			}
		})
	}
}

// TestPolicyHostNameConstraints: the policy host's certificate is verified by Go's
// HTTPS client against its name (RFC 8461 §3.3, RFC 6125), so a sub-CA's name
// constraints apply to the subjectAltNames, and a CN is never taken for a name (Go
// ignores it; so do OpenSSL-based fetchers that set
// X509_CHECK_FLAG_NEVER_CHECK_SUBJECT): the CN-only certificate of a constrained
// sub-CA that OpenSSL's CN fallback would have to check (issue 17) cannot pass here.
func TestPolicyHostNameConstraints(t *testing.T) {
	t.Parallel()
	toAttacker := fake.NameConstraints{Permitted: []string{"attacker.test"}}
	host := strings.TrimSuffix(hostName, ".")
	tests := []struct {
		name string
		nc   *fake.NameConstraints // nil: an unconstrained sub-CA
		leaf fake.CertOptions
		ok   bool
	}{
		{"SAN inside the permitted subtree", &fake.NameConstraints{Permitted: []string{"example.test"}},
			fake.CertOptions{DNSNames: []string{host}}, true},
		{"SAN outside the permitted subtree", &toAttacker,
			fake.CertOptions{DNSNames: []string{host}}, false},
		{"SAN in an excluded subtree", &fake.NameConstraints{Excluded: []string{"example.test"}},
			fake.CertOptions{DNSNames: []string{host}}, false},
		{"SAN inside, CN outside", &toAttacker,
			fake.CertOptions{DNSNames: []string{"mta-sts.attacker.test"}, CommonName: host}, false},
		{"CN-only outside the permitted subtree", &toAttacker,
			fake.CertOptions{CommonName: host}, false},
		{"CN-only, no constraints", nil,
			fake.CertOptions{CommonName: host}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			w := newSTSWorld(t)
			sub := w.ca.Intermediate(t, "STS sub-CA")
			if tc.nc != nil {
				sub = w.ca.ConstrainedIntermediate(t, "STS constrained sub-CA", *tc.nc)
			}
			w.srv = fake.StartPolicyServer(t, sub.Issue(t, tc.leaf))
			w.srv.RegisterWith(w.dialer, policyIP)
			w.srv.SetPolicy(policyV1)
			want := expect{status: mtasts.StatusNone, problem: tlsrpt.STSWebPKIInvalid}
			if tc.ok {
				want = expect{status: mtasts.StatusPolicy, mx: "mx1.example.test", fetches: 1}
			}
			w.lookup(w.client(), want)
		})
	}
}

// TestPolicyHostNotAllowed: the fetch is an outbound connection chosen by the
// recipient domain, under the same guard as probes.
func TestPolicyHostNotAllowed(t *testing.T) {
	t.Parallel()
	w := newSTSWorld(t)
	c := w.client(func(c *mtasts.Config) { c.Allowed = func(netip.Addr) bool { return false } })
	r := w.lookup(c, expect{status: mtasts.StatusNone, problem: tlsrpt.STSPolicyFetchError})
	if !strings.Contains(r.Detail, "not a public address") {
		t.Errorf("detail %q does not say why", r.Detail)
	}
	if d := w.dialer.Dials(); len(d) != 0 {
		t.Errorf("dialed %q", d)
	}
}

// TestTXTRecords: RFC 8461 §3.1 record selection, before any fetch.
func TestTXTRecords(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		records []string
		rcode   int
		status  mtasts.Status
		fetches int
	}{
		{"no record", nil, 0, mtasts.StatusNone, 0},
		{"two STSv1 records", []string{"v=STSv1; id=1", "v=STSv1; id=2"}, 0, mtasts.StatusNone, 0},
		{"other records ignored", []string{"v=spf1 -all", "v=STSv1; id=1"}, 0, mtasts.StatusPolicy, 1},
		{"invalid record", []string{"v=STSv1; id=not-alnum!"}, 0, mtasts.StatusNone, 0},
		{"SERVFAIL is not a missing record", nil, dns.RcodeServerFailure, mtasts.StatusError, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			w := newSTSWorld(t)
			w.setTXT(tc.records...)
			if tc.rcode != 0 {
				w.dns.SetRcode(txtName, dns.TypeTXT, tc.rcode)
			}
			r := w.client().Lookup(context.Background(), domain)
			if r.Status != tc.status || w.srv.Fetches() != tc.fetches {
				t.Errorf("status %s (%s), %d fetches; want %s, %d", r.Status, r.Detail, w.srv.Fetches(), tc.status, tc.fetches)
			}
		})
	}
}

// TestTXTFailureKeepsCachedPolicy: a SERVFAIL for the record does not drop a cached
// policy either.
func TestTXTFailureKeepsCachedPolicy(t *testing.T) {
	t.Parallel()
	w := newSTSWorld(t)
	c := w.client()
	w.lookup(c, expect{status: mtasts.StatusPolicy, mx: "mx1.example.test", fetches: 1})
	w.dns.SetRcode(txtName, dns.TypeTXT, dns.RcodeServerFailure)
	w.lookup(c, expect{status: mtasts.StatusPolicy, mx: "mx1.example.test", cached: true, problem: tlsrpt.STSPolicyFetchError, fetches: 1})
}

// TestMaxAgeZero: a policy with max_age 0 is used once and not cached.
func TestMaxAgeZero(t *testing.T) {
	t.Parallel()
	w := newSTSWorld(t)
	w.srv.SetPolicy("version: STSv1\nmode: testing\nmx: mx1.example.test\nmax_age: 0\n")
	c := w.client()
	r := w.lookup(c, expect{status: mtasts.StatusPolicy, mx: "mx1.example.test", fetches: 1})
	if r.TTL != 0 || r.Policy.Mode != mtasts.ModeTesting {
		t.Errorf("TTL %s mode %s; want 0, testing", r.TTL, r.Policy.Mode)
	}
	w.lookup(c, expect{status: mtasts.StatusPolicy, mx: "mx1.example.test", fetches: 2})
}

// TestImportValidates: saved policies are checked like fetched ones; expired, damaged
// or forged entries are not imported.
func TestImportValidates(t *testing.T) {
	t.Parallel()
	w := newSTSWorld(t)
	c := w.client()
	now := w.clock()
	good := mtasts.Saved{Domain: "a.test", ID: "1", Mode: mtasts.ModeEnforce, MaxAge: 86400, MX: []string{"mx.a.test"}, Fetched: now, Expires: now.Add(time.Hour)}
	bad := func(mod func(*mtasts.Saved)) mtasts.Saved { s := good; s.MX = []string{"mx.a.test"}; mod(&s); return s }
	saved := []mtasts.Saved{
		good,
		bad(func(s *mtasts.Saved) { s.Domain = "expired.test"; s.Expires = now.Add(-time.Second) }),
		bad(func(s *mtasts.Saved) { s.Domain = "ip.test"; s.MX = []string{"192.0.2.1"} }),
		bad(func(s *mtasts.Saved) { s.Domain = "id.test"; s.ID = "not valid!" }),
		bad(func(s *mtasts.Saved) { s.Domain = "age.test"; s.MaxAge = mtasts.MaxMaxAge + 1 }),
		bad(func(s *mtasts.Saved) { s.Domain = "mode.test"; s.Mode = 7 }),
		bad(func(s *mtasts.Saved) { s.Domain = "nomx.test"; s.MX = nil }),
		bad(func(s *mtasts.Saved) { s.Domain = "" }),
	}
	if n := c.Import(saved); n != 1 {
		t.Errorf("imported %d; want only the valid one", n)
	}
	got := c.Export()
	if len(got) != 1 || got[0].Domain != "a.test" || got[0].ID != "1" || got[0].MaxAge != 86400 {
		t.Errorf("Export() = %+v", got)
	}
}

// memStore is a fleet's policy store (the shared tier) in memory.
type memStore struct {
	mu sync.Mutex
	m  map[string]mtasts.Saved
}

func (s *memStore) LoadPolicy(_ context.Context, d string) (mtasts.Saved, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, ok := s.m[d]
	return p, ok
}

func (s *memStore) SavePolicy(_ context.Context, p mtasts.Saved) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.m[p.Domain] = p
}

// TestPolicyStoreSharedByTheFleet: a policy one host fetched protects the domain at
// another host whose own fetch fails (RFC 8461 §5.1 policy persistence, fleet-wide);
// an invalid stored policy is not used.
func TestPolicyStoreSharedByTheFleet(t *testing.T) {
	t.Parallel()
	w := newSTSWorld(t)
	store := &memStore{m: map[string]mtasts.Saved{}}
	withStore := func(c *mtasts.Config) { c.Store = store }
	w.lookup(w.client(withStore), expect{status: mtasts.StatusPolicy, mx: "mx1.example.test", fetches: 1})
	if _, ok := store.m[domain]; !ok {
		t.Fatal("the fetched policy was not stored")
	}
	w.srv.SetHandler(func(w http.ResponseWriter, _ *http.Request) { http.Error(w, "down", http.StatusServiceUnavailable) })
	// Another host, same id: the fleet's policy, no fetch.
	w.lookup(w.client(withStore), expect{status: mtasts.StatusPolicy, mx: "mx1.example.test", cached: true, fetches: 1})
	// A stored policy that no policy host could have served is ignored.
	bad := store.m[domain]
	bad.MX = []string{"bad pattern with spaces"}
	store.m[domain] = bad
	w.lookup(w.client(withStore), expect{status: mtasts.StatusNone, problem: tlsrpt.STSPolicyFetchError, fetches: 2})
}
