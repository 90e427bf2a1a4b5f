package fake_test

import (
	"errors"
	"fmt"
	"net"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/tlsgate/tlsgate/internal/fake"
)

// query asks s one question over network ("udp" or "tcp") and fails the
// test on a transport error.
func query(t *testing.T, s *fake.DNSServer, network, name string, qtype uint16, do bool) *dns.Msg {
	t.Helper()
	r, err := tryQuery(s, network, name, qtype, do, 2*time.Second)
	if err != nil {
		t.Fatalf("%s %s %s: %v", network, name, dns.TypeToString[qtype], err)
	}
	return r
}

func tryQuery(s *fake.DNSServer, network, name string, qtype uint16, do bool, timeout time.Duration) (*dns.Msg, error) {
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	if do {
		m.SetEdns0(1232, true)
	}
	c := &dns.Client{Net: network, Timeout: timeout}
	r, _, err := c.Exchange(m, s.Addr())
	return r, err
}

func answerStrings(m *dns.Msg) []string {
	var out []string
	for _, rr := range m.Answer {
		out = append(out, rr.String())
	}
	return out
}

func newExampleDNS(t *testing.T) *fake.DNSServer {
	s := fake.StartDNS(t)
	s.Add(t,
		"example.test. 300 IN MX 10 mx1.example.test.",
		"example.test. 300 IN MX 20 mx2.example.test.",
		"mx1.example.test. 300 IN A 127.0.0.5",
		"mx1.example.test. 300 IN AAAA ::1",
		"_25._tcp.mx1.example.test. 300 IN TLSA 3 1 1 0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
		"example.test. 300 IN TXT \"v=spf1 -all\"",
		"_mta-sts.example.test. 300 IN TXT \"v=STSv1; id=1\"",
		`null.test. 300 IN MX 0 .`,
		// A chain: alias -> alias2 -> mx1.
		"alias.example.test. 300 IN CNAME alias2.example.test.",
		"alias2.example.test. 300 IN CNAME mx1.example.test.",
		"loop1.example.test. 300 IN CNAME loop2.example.test.",
		"loop2.example.test. 300 IN CNAME loop1.example.test.",
		"dangling.example.test. 300 IN CNAME gone.example.test.",
	)
	return s
}

func TestDNSAnswers(t *testing.T) {
	t.Parallel()
	s := newExampleDNS(t)

	test := func(name string, qtype uint16, wantRcode int, wantAnswer []string, wantSOA bool) {
		t.Helper()
		for _, network := range []string{"udp", "tcp"} {
			r := query(t, s, network, name, qtype, false)
			if r.Rcode != wantRcode {
				t.Errorf("%s %s %s: rcode %s, want %s", network, name, dns.TypeToString[qtype], dns.RcodeToString[r.Rcode], dns.RcodeToString[wantRcode])
			}
			if got := answerStrings(r); !slices.Equal(got, wantAnswer) {
				t.Errorf("%s %s %s: answer\n%q\nwant\n%q", network, name, dns.TypeToString[qtype], got, wantAnswer)
			}
			if !r.RecursionAvailable || r.Authoritative || r.AuthenticatedData {
				t.Errorf("%s %s: RA %v AA %v AD %v, want RA only", network, name, r.RecursionAvailable, r.Authoritative, r.AuthenticatedData)
			}
			hasSOA := len(r.Ns) == 1 && r.Ns[0].Header().Rrtype == dns.TypeSOA
			if hasSOA != wantSOA {
				t.Errorf("%s %s %s: authority %v, want SOA %v", network, name, dns.TypeToString[qtype], r.Ns, wantSOA)
			}
		}
	}

	test("example.test.", dns.TypeMX, dns.RcodeSuccess, []string{
		"example.test.\t300\tIN\tMX\t10 mx1.example.test.",
		"example.test.\t300\tIN\tMX\t20 mx2.example.test.",
	}, false)
	test("mx1.example.test.", dns.TypeA, dns.RcodeSuccess, []string{"mx1.example.test.\t300\tIN\tA\t127.0.0.5"}, false)
	test("MX1.Example.TEST.", dns.TypeA, dns.RcodeSuccess, []string{"MX1.Example.TEST.\t300\tIN\tA\t127.0.0.5"}, false)
	test("mx1.example.test.", dns.TypeAAAA, dns.RcodeSuccess, []string{"mx1.example.test.\t300\tIN\tAAAA\t::1"}, false)
	test("_25._tcp.mx1.example.test.", dns.TypeTLSA, dns.RcodeSuccess, []string{
		"_25._tcp.mx1.example.test.\t300\tIN\tTLSA\t3 1 1 0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
	}, false)
	test("_mta-sts.example.test.", dns.TypeTXT, dns.RcodeSuccess, []string{"_mta-sts.example.test.\t300\tIN\tTXT\t\"v=STSv1; id=1\""}, false)
	test("null.test.", dns.TypeMX, dns.RcodeSuccess, []string{"null.test.\t300\tIN\tMX\t0 ."}, false)
	// CNAME chain, chased within the data.
	test("alias.example.test.", dns.TypeA, dns.RcodeSuccess, []string{
		"alias.example.test.\t300\tIN\tCNAME\talias2.example.test.",
		"alias2.example.test.\t300\tIN\tCNAME\tmx1.example.test.",
		"mx1.example.test.\t300\tIN\tA\t127.0.0.5",
	}, false)
	test("alias.example.test.", dns.TypeCNAME, dns.RcodeSuccess, []string{"alias.example.test.\t300\tIN\tCNAME\talias2.example.test."}, false)
	test("alias.example.test.", dns.TypeTLSA, dns.RcodeSuccess, []string{
		"alias.example.test.\t300\tIN\tCNAME\talias2.example.test.",
		"alias2.example.test.\t300\tIN\tCNAME\tmx1.example.test.",
	}, true)
	test("dangling.example.test.", dns.TypeA, dns.RcodeNameError, []string{"dangling.example.test.\t300\tIN\tCNAME\tgone.example.test."}, true)
	test("loop1.example.test.", dns.TypeA, dns.RcodeServerFailure, nil, false)
	// NODATA, empty non-terminals, NXDOMAIN.
	test("mx1.example.test.", dns.TypeTLSA, dns.RcodeSuccess, nil, true)
	test("_tcp.mx1.example.test.", dns.TypeTLSA, dns.RcodeSuccess, nil, true)
	test("test.", dns.TypeA, dns.RcodeSuccess, nil, true)
	test("_25._tcp.mx2.example.test.", dns.TypeTLSA, dns.RcodeNameError, nil, true)
	test("mx2.example.test.", dns.TypeA, dns.RcodeNameError, nil, true)
	test("nowhere.invalid.", dns.TypeMX, dns.RcodeNameError, nil, true)
}

func TestDNSAddedSOAIsUsed(t *testing.T) {
	t.Parallel()
	s := fake.StartDNS(t)
	s.Add(t, `example.test. 3600 IN SOA ns1.example.test. admin.example.test. (
		2024010101 7200 900 1209600 60 )
	example.test. 300 IN A 127.0.0.1`)
	r := query(t, s, "udp", "nope.example.test.", dns.TypeA, false)
	if r.Rcode != dns.RcodeNameError || len(r.Ns) != 1 {
		t.Fatalf("rcode %s, authority %v", dns.RcodeToString[r.Rcode], r.Ns)
	}
	if soa := r.Ns[0].(*dns.SOA); soa.Ns != "ns1.example.test." || soa.Minttl != 60 {
		t.Errorf("SOA %v, want the added one", soa)
	}
}

func TestDNSAuthenticData(t *testing.T) {
	t.Parallel()
	s := newExampleDNS(t)
	test := func(name string, qtype uint16, want bool) {
		t.Helper()
		if got := query(t, s, "udp", name, qtype, true).AuthenticatedData; got != want {
			t.Errorf("%s %s: AD %v, want %v", name, dns.TypeToString[qtype], got, want)
		}
	}

	test("example.test.", dns.TypeMX, false) // default: not authentic
	s.SetAuthentic("EXAMPLE.test", true)     // case-insensitive, FQDN optional
	test("example.test.", dns.TypeMX, true)
	test("mx1.example.test.", dns.TypeA, false)

	s.SetAllAuthentic(true)
	test("mx1.example.test.", dns.TypeA, true)
	test("alias.example.test.", dns.TypeA, true)
	test("nowhere.test.", dns.TypeA, true) // authenticated denial
	s.SetAuthentic("alias2.example.test.", false)
	test("alias.example.test.", dns.TypeA, false) // AND over the chain
	test("mx1.example.test.", dns.TypeA, true)
	s.SetAuthentic("example.test.", false)
	test("example.test.", dns.TypeMX, false) // per-name setting wins

	// RFC 6840 §5.7: with strict AD, only queries with DO or AD get AD.
	if r := query(t, s, "udp", "mx1.example.test.", dns.TypeA, false); !r.AuthenticatedData {
		t.Error("non-strict: AD missing without DO")
	}
	s.SetStrictAD(true)
	if r := query(t, s, "udp", "mx1.example.test.", dns.TypeA, false); r.AuthenticatedData {
		t.Error("strict: AD set without DO or AD in the query")
	}
	test("mx1.example.test.", dns.TypeA, true)
}

func TestDNSEDNS0(t *testing.T) {
	t.Parallel()
	s := newExampleDNS(t)
	r := query(t, s, "udp", "example.test.", dns.TypeMX, true)
	if opt := r.IsEdns0(); opt == nil || !opt.Do() {
		t.Errorf("answer to a DO query: OPT %v, want one with DO", opt)
	}
	r = query(t, s, "udp", "example.test.", dns.TypeMX, false)
	if opt := r.IsEdns0(); opt != nil {
		t.Errorf("answer to a plain query carries OPT %v", opt)
	}
	m := new(dns.Msg)
	m.SetQuestion("example.test.", dns.TypeMX)
	m.SetEdns0(1232, false)
	r, _, err := (&dns.Client{Timeout: 2 * time.Second}).Exchange(m, s.Addr())
	if err != nil {
		t.Fatal(err)
	}
	if opt := r.IsEdns0(); opt == nil || opt.Do() {
		t.Errorf("answer to an EDNS0 query without DO: OPT %v", opt)
	}
	if got := s.Queries(); len(got) != 3 || !got[0].DO || got[1].DO || got[2].DO {
		t.Errorf("Queries %v", got)
	}
}

func TestDNSRcode(t *testing.T) {
	t.Parallel()
	s := newExampleDNS(t)
	s.SetRcode("example.test.", dns.TypeMX, dns.RcodeServerFailure)
	s.SetRcode("mx1.example.test.", dns.TypeANY, dns.RcodeRefused)
	s.SetRcode("mx1.example.test.", dns.TypeTLSA, dns.RcodeServerFailure)

	test := func(name string, qtype uint16, want int) {
		t.Helper()
		r := query(t, s, "udp", name, qtype, false)
		if r.Rcode != want || len(r.Answer) != 0 && want != dns.RcodeSuccess {
			t.Errorf("%s %s: %s with %d answers, want %s", name, dns.TypeToString[qtype], dns.RcodeToString[r.Rcode], len(r.Answer), dns.RcodeToString[want])
		}
	}
	test("example.test.", dns.TypeMX, dns.RcodeServerFailure)
	test("example.test.", dns.TypeTXT, dns.RcodeSuccess)
	test("mx1.example.test.", dns.TypeA, dns.RcodeRefused)
	test("mx1.example.test.", dns.TypeTLSA, dns.RcodeServerFailure) // exact type wins
	s.SetRcode("example.test.", dns.TypeMX, dns.RcodeSuccess)
	test("example.test.", dns.TypeMX, dns.RcodeSuccess)
	s.ClearFaults("mx1.example.test.", dns.TypeANY)
	test("mx1.example.test.", dns.TypeA, dns.RcodeSuccess)
}

func TestDNSDropTimesOut(t *testing.T) {
	t.Parallel()
	s := newExampleDNS(t)
	s.SetDrop("example.test.", dns.TypeMX)
	for _, network := range []string{"udp", "tcp"} {
		_, err := tryQuery(s, network, "example.test.", dns.TypeMX, false, 200*time.Millisecond)
		var ne net.Error
		if !errors.As(err, &ne) || !ne.Timeout() {
			t.Errorf("%s: %v, want a timeout", network, err)
		}
	}
	query(t, s, "udp", "mx1.example.test.", dns.TypeA, false) // others still answered
	if got := len(s.Queries()); got != 3 {
		t.Errorf("%d queries logged, want 3 (dropped ones included)", got)
	}
}

func TestDNSTruncateFallsBackToTCP(t *testing.T) {
	t.Parallel()
	s := newExampleDNS(t)
	s.SetTruncate("example.test.", dns.TypeANY)

	r := query(t, s, "udp", "example.test.", dns.TypeMX, false)
	if !r.Truncated || len(r.Answer) != 0 {
		t.Errorf("udp: TC %v with %d answers, want TC and none", r.Truncated, len(r.Answer))
	}
	r = query(t, s, "tcp", "example.test.", dns.TypeMX, false)
	if r.Truncated || len(r.Answer) != 2 {
		t.Errorf("tcp: TC %v with %d answers, want the full answer", r.Truncated, len(r.Answer))
	}
	want := []fake.Query{
		{Name: "example.test.", Type: dns.TypeMX, Net: "udp"},
		{Name: "example.test.", Type: dns.TypeMX, Net: "tcp"},
	}
	if got := s.Queries(); !slices.Equal(got, want) {
		t.Errorf("Queries %v, want %v", got, want)
	}
}

func TestDNSLargeAnswersTruncateOverUDP(t *testing.T) {
	t.Parallel()
	s := fake.StartDNS(t)
	for i := range 15 {
		s.Add(t, fmt.Sprintf("big.example.test. 300 IN TXT \"record number %d with some padding text\"", i))
	}
	if r := query(t, s, "udp", "big.example.test.", dns.TypeTXT, false); !r.Truncated {
		t.Errorf("udp without EDNS0: %d answers, not truncated", len(r.Answer))
	}
	if r := query(t, s, "udp", "big.example.test.", dns.TypeTXT, true); r.Truncated || len(r.Answer) != 15 {
		t.Errorf("udp with EDNS0 1232: TC %v, %d answers", r.Truncated, len(r.Answer))
	}
	if r := query(t, s, "tcp", "big.example.test.", dns.TypeTXT, false); r.Truncated || len(r.Answer) != 15 {
		t.Errorf("tcp: TC %v, %d answers", r.Truncated, len(r.Answer))
	}
}

func TestDNSDelay(t *testing.T) {
	t.Parallel()
	s := newExampleDNS(t)
	const delay = 300 * time.Millisecond
	s.SetDelay("mx1.example.test.", dns.TypeA, delay)
	start := time.Now()
	query(t, s, "udp", "mx1.example.test.", dns.TypeA, false)
	if d := time.Since(start); d < delay {
		t.Errorf("answer after %v, want at least %v", d, delay)
	}
	// A delay longer than the test must not hold up cleanup.
	s.SetDelay("example.test.", dns.TypeMX, time.Hour)
	if _, err := tryQuery(s, "udp", "example.test.", dns.TypeMX, false, 100*time.Millisecond); err == nil {
		t.Error("answer before the delay")
	}
}

func TestDNSRemove(t *testing.T) {
	t.Parallel()
	s := newExampleDNS(t)
	s.Remove("mx1.example.test.", dns.TypeA)
	if r := query(t, s, "udp", "mx1.example.test.", dns.TypeA, false); r.Rcode != dns.RcodeSuccess || len(r.Answer) != 0 {
		t.Errorf("after removing A: %s with %d answers, want NODATA", dns.RcodeToString[r.Rcode], len(r.Answer))
	}
	s.Remove("_25._tcp.mx1.example.test.", dns.TypeANY)
	s.Remove("mx1.example.test.", dns.TypeANY)
	if r := query(t, s, "udp", "mx1.example.test.", dns.TypeAAAA, false); r.Rcode != dns.RcodeNameError {
		t.Errorf("after removing everything: %s, want NXDOMAIN", dns.RcodeToString[r.Rcode])
	}
}

// fatalRecorder is a testing.TB whose Fatalf records the failure and ends
// the calling goroutine, as the real one does.
type fatalRecorder struct {
	testing.TB
	mu  sync.Mutex
	msg string
}

func (r *fatalRecorder) Helper() {}
func (r *fatalRecorder) Fatalf(format string, args ...any) {
	r.mu.Lock()
	r.msg = fmt.Sprintf(format, args...)
	r.mu.Unlock()
	runtime.Goexit()
}

func TestDNSAddParseErrorFailsTest(t *testing.T) {
	t.Parallel()
	s := fake.StartDNS(t)
	rec := &fatalRecorder{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.Add(rec, "example.test. 300 IN A 127.0.0.1", "example.test. 300 IN MX not-a-number")
	}()
	<-done
	if rec.msg == "" {
		t.Fatal("Add accepted a malformed record")
	}
	t.Logf("Add failed as expected: %s", rec.msg)
	if r := query(t, s, "udp", "example.test.", dns.TypeA, false); len(r.Answer) != 0 {
		t.Error("Add kept part of a failed call")
	}
}

func TestDNSConcurrentMutation(t *testing.T) {
	t.Parallel()
	s := newExampleDNS(t)
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Go(func() {
			for j := range 20 {
				s.Add(t, fmt.Sprintf("h%d-%d.example.test. 300 IN A 127.0.1.%d", i, j, j))
				s.SetAuthentic("example.test.", j%2 == 0)
				s.SetDelay("x.example.test.", dns.TypeA, time.Duration(j))
			}
		})
		wg.Go(func() {
			for range 20 {
				if _, err := tryQuery(s, "udp", "example.test.", dns.TypeMX, true, 2*time.Second); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	if r := query(t, s, "tcp", "h3-19.example.test.", dns.TypeA, false); len(r.Answer) != 1 {
		t.Errorf("added record missing: %v", r)
	}
}
