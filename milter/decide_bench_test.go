package milter_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"testing"
	"time"

	gomilter "github.com/d--j/go-milter"
	"github.com/miekg/dns"

	"github.com/tlsgate/tlsgate/internal/dnsx"
	"github.com/tlsgate/tlsgate/internal/fake"
	"github.com/tlsgate/tlsgate/internal/smtpprobe"
	"github.com/tlsgate/tlsgate/milter"
	"github.com/tlsgate/tlsgate/policy"
	"github.com/tlsgate/tlsgate/verify"
)

// The hot path of tlsgate is a RCPT for a domain whose facts are cached: recipient
// split and normalized, policy looked up (10,000 entries, 20 customers), cache hit,
// Judge, the decision logged at Info. These benchmarks measure it without the network
// (Decide) and through go-milter on loopback (ServerRcpt, beside a no-op milter), for
// profiling:
//
//	go test ./milter -run '^$' -bench DecideCached -cpuprofile cpu.out -memprofile mem.out

const benchDomains = 100

// benchCPU starts counting the process's CPU time; the returned function reports it per
// operation as cpu-ns/op. On a shared machine ns/op (wall time) also counts waiting for
// other processes; cpu-ns/op counts only this process's work, client side included
// where the benchmark has one.
func benchCPU(b *testing.B) func() {
	start := processCPU()
	return func() {
		if used := processCPU() - start; used > 0 && b.N > 0 {
			b.ReportMetric(float64(used)/float64(b.N), "cpu-ns/op")
		}
	}
}

var benchMX = netip.MustParseAddr("192.0.2.25")

// benchResolver answers MX -> mx1.provider.bench.test (a hosting provider's MX, as most
// domains have) and A -> 192.0.2.25 at once.
type benchResolver struct{}

func (benchResolver) Lookup(_ context.Context, name string, qtype uint16) (dnsx.Answer, error) {
	fq := dns.Fqdn(name)
	a := dnsx.Answer{Name: fq, Target: fq, TTL: time.Hour}
	h := dns.RR_Header{Name: fq, Rrtype: qtype, Class: dns.ClassINET, Ttl: 3600}
	switch qtype {
	case dns.TypeMX:
		a.Records = []dns.RR{&dns.MX{Hdr: h, Preference: 10, Mx: "mx1.provider.bench.test."}}
	case dns.TypeA:
		a.Records = []dns.RR{&dns.A{Hdr: h, A: benchMX.AsSlice()}}
	default:
		a.Status = dnsx.StatusNoData
	}
	return a, nil
}

// benchProber answers every probe with a TLS 1.3 session presenting leaf.
type benchProber struct{ chain []*x509.Certificate }

func (p benchProber) Probe(_ context.Context, ip netip.Addr, _ string) smtpprobe.Result {
	return smtpprobe.Result{IP: ip, Stage: smtpprobe.StageDone, Outcome: smtpprobe.OutcomeTLS, Offered: true,
		Greeting: smtpprobe.Reply{Code: 220, Text: "mx ESMTP"}, TLSVersion: tls.VersionTLS13, Chain: p.chain}
}

// benchFilter is a Filter as cmd/tlsgate builds it, with a Verifier whose cache holds
// benchDomains domains hot<i>.bench.test, half of them at encrypt, half at verify.
func benchFilter(b *testing.B, log *slog.Logger) (*milter.Filter, []string) {
	b.Helper()
	root := fake.NewCA(b, "Bench Root")
	inter := root.Intermediate(b, "Bench Intermediate")
	cert := inter.Issue(b, fake.CertOptions{DNSNames: []string{"mx1.provider.bench.test", "mx2.provider.bench.test"}})
	v, err := verify.New(verify.Config{
		Resolver: benchResolver{},
		Prober:   benchProber{chain: []*x509.Certificate{cert.Leaf, inter.Cert}},
		Allow:    []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")},
		Log:      slog.New(slog.DiscardHandler),
	})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(v.Close)
	tab := policy.NewTable()
	for i := range 10000 {
		key := fmt.Sprintf("dom%d.policy.test", i)
		if i%10 >= 7 {
			key = "." + key
		}
		if _, err := tab.Add(key, policy.Policy{Level: policy.LevelEncrypt, Source: fmt.Sprintf("/etc/postfix/tls_policy:%d", i+1)}); err != nil {
			b.Fatal(err)
		}
	}
	rcpts := make([]string, 4096)
	for i := range benchDomains {
		d := fmt.Sprintf("hot%d.bench.test", i)
		l := []policy.Level{policy.LevelEncrypt, policy.LevelVerify}[i%2]
		if _, err := tab.Add(d, policy.Policy{Level: l, Source: "config policies"}); err != nil {
			b.Fatal(err)
		}
		f, _, err := v.Facts(context.Background(), d)
		if err != nil {
			b.Fatal(err)
		}
		if vd := verify.Judge(f, policy.Policy{Level: l}); vd.Status != verify.StatusPass {
			b.Fatalf("%s: %s", d, vd.Detail)
		}
	}
	for i := range rcpts {
		rcpts[i] = fmt.Sprintf("user%d@hot%d.bench.test", i%97, i%benchDomains)
	}
	cs := make([]policy.Customer, 20)
	for i := range cs {
		cs[i] = policy.Customer{Name: fmt.Sprintf("cust%d", i), Senders: []string{fmt.Sprintf("cust%d.example", i), fmt.Sprintf(".cust%d.example", i)},
			SASLLogins: []string{fmt.Sprintf("cust%d", i)}, ClientNetworks: []netip.Prefix{netip.PrefixFrom(netip.AddrFrom4([4]byte{198, 51, 100, byte(i)}), 32)},
			Level: policy.LevelEncrypt}
	}
	customers, err := policy.NewCustomers(cs)
	if err != nil {
		b.Fatal(err)
	}
	return milter.NewFilter(milter.Config{
		Policies:          &policy.Set{Table: tab, Customers: customers},
		Facts:             v,
		Header:            "TLSGate-Verdict",
		CheckedTransports: []string{"smtp", "relay"},
		Log:               log,
	}), rcpts
}

func benchLoggers() []struct {
	name string
	log  *slog.Logger
} {
	return []struct {
		name string
		log  *slog.Logger
	}{
		{"log=text", slog.New(slog.NewTextHandler(io.Discard, nil))}, // formatted, as in production
		{"log=none", slog.New(slog.DiscardHandler)},
	}
}

// BenchmarkDecideCached is Filter.Decide for cached domains: everything of a RCPT but
// the milter protocol.
func BenchmarkDecideCached(b *testing.B) {
	for _, lg := range benchLoggers() {
		f, rcpts := benchFilter(b, lg.log)
		req := func(i int) milter.Request {
			return milter.Request{Rcpt: rcpts[i%len(rcpts)], Mailer: "smtp", MailerKnown: true, Sender: "alice@sender.example",
				Client: netip.MustParseAddr("192.0.2.10"), QueueID: "4XyZ1"}
		}
		if d := f.Decide(context.Background(), req(0)); d.Outcome != milter.Accept || !d.Verdict.Cached {
			b.Fatalf("decision %v, cached %v: %s", d.Outcome, d.Verdict.Cached, d.Verdict.Detail)
		}
		b.Run(lg.name, func(b *testing.B) {
			b.ReportAllocs()
			defer benchCPU(b)()
			i := 0
			for b.Loop() {
				f.Decide(context.Background(), req(i))
				i++
			}
		})
		b.Run(lg.name+"/parallel", func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				i := 0
				for pb.Next() {
					f.Decide(context.Background(), req(i))
					i++
				}
			})
		})
	}
}

// BenchmarkHeaderValue is the audit header of one recipient domain at end of message.
func BenchmarkHeaderValue(b *testing.B) {
	v := verify.Verdict{Domain: "example.com", Level: policy.LevelEncrypt, Status: verify.StatusPass, Mechanism: verify.MechSTARTTLS,
		MX: "mx1.example.com", TLSVersion: "TLSv1.3", Checked: time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC), Cached: true}
	b.ReportAllocs()
	for b.Loop() {
		milter.HeaderValue(v, "policy:example.com")
	}
}

// benchNoop accepts every recipient (gomilter.NoOpMilter would ask to skip them).
type benchNoop struct{ gomilter.NoOpMilter }

func (benchNoop) RcptTo(string, string, gomilter.Modifier) (*gomilter.Response, error) {
	return gomilter.RespContinue, nil
}

// BenchmarkServerRcpt is one RCPT through the milter protocol on loopback TCP, client
// and server in this process, sessions of 50 RCPTs (session setup included, as a share),
// against tlsgate and against a no-op milter negotiating the same.
func BenchmarkServerRcpt(b *testing.B) {
	f, rcpts := benchFilter(b, slog.New(slog.NewTextHandler(io.Discard, nil)))
	noop := gomilter.NewServer(
		gomilter.WithMilter(func() gomilter.Milter { return benchNoop{} }),
		gomilter.WithAction(gomilter.OptAddHeader),
		gomilter.WithProtocol(gomilter.OptNoHelo|gomilter.OptNoHeaders|gomilter.OptNoEOH|gomilter.OptNoBody|gomilter.OptNoUnknown|gomilter.OptNoData),
		gomilter.WithMacroRequest(gomilter.StageMail, []gomilter.MacroName{gomilter.MacroQueueId, gomilter.MacroAuthAuthen, gomilter.MacroMailAddr}),
		gomilter.WithMacroRequest(gomilter.StageRcpt, []gomilter.MacroName{gomilter.MacroQueueId, gomilter.MacroRcptMailer, gomilter.MacroRcptAddr}),
	)
	for _, srv := range []struct {
		name string
		s    interface {
			Serve(net.Listener) error
			Close() error
		}
	}{{"noop", noop}, {"tlsgate", f.NewServer()}} {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		go srv.s.Serve(ln)
		b.Cleanup(func() { srv.s.Close() })
		client := gomilter.NewClient("tcp", ln.Addr().String())
		b.Run(srv.name, func(b *testing.B) {
			b.ReportAllocs()
			defer benchCPU(b)()
			var s *gomilter.ClientSession
			macros := gomilter.NewMacroBag()
			i := 0
			for b.Loop() {
				if i%50 == 0 {
					if s != nil {
						s.Abort(nil)
						s.Close()
					}
					macros.Set(gomilter.MacroQueueId, "4XyZ1")
					if s, err = client.Session(macros); err != nil {
						b.Fatal(err)
					}
					s.Conn("client.example", gomilter.FamilyInet, 40000, "192.0.2.10")
					s.Helo("client.example")
					s.Mail("alice@sender.example", "")
					macros.Set(gomilter.MacroRcptMailer, "smtp")
				}
				act, err := s.Rcpt(rcpts[i%len(rcpts)], "")
				if err != nil || act.Type != gomilter.ActionContinue {
					b.Fatalf("RCPT: %v %v", act, err)
				}
				i++
			}
			if s != nil {
				s.Close()
			}
		})
	}
}
