package main

import (
	"context"
	"io"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/tlsgate/tlsgate/internal/fake"
	"github.com/tlsgate/tlsgate/internal/smtpprobe"
)

// TestCheckTLSAAtProbePort: DANE TLSA records are looked up at _PORT._tcp of the port the
// probe connects to (RFC 7672 §3, as Postfix's smtp client does), which is probe.port,
// not always 25.
func TestCheckTLSAAtProbePort(t *testing.T) {
	t.Parallel()
	ca := fake.NewCA(t, "Root")
	cert := ca.Issue(t, fake.CertOptions{DNSNames: []string{"mx.example.test"}})
	d := fake.StartDNS(t)
	d.SetAllAuthentic(true)
	s := fake.StartSMTP(t, "127.0.0.61", fake.Behavior{Hostname: "mx.example.test", Cert: &cert})
	port := int(s.Addr().Port())
	owner := "_" + strconv.Itoa(port) + "._tcp.mx.example.test."
	d.Add(t, "example.test. 60 IN MX 10 mx.example.test.", "mx.example.test. 60 IN A 127.0.0.61",
		fake.TLSA(owner, 3, 1, 1, cert.Leaf))
	code, out, errOut := runCmd(t, "check", "--dns.resolver", d.Addr(), "--probe.port", strconv.Itoa(port),
		"--probe.allow_networks", "127.0.0.0/8", "--probe.helo", "probe.test", "--level", "dane-only", "example.test")
	if code != exitPass {
		t.Errorf("dane-only with TLSA at %s: exit %d; want %d\n%s%s", owner, code, exitPass, out, errOut)
	}
	var tlsa []string
	for _, q := range d.Queries() {
		if q.Type == dns.TypeTLSA {
			tlsa = append(tlsa, q.Name)
		}
	}
	if !slices.Contains(tlsa, owner) || slices.Contains(tlsa, "_25._tcp.mx.example.test.") {
		t.Errorf("TLSA queries %q; want %s (probe.port %d), not _25._tcp", tlsa, owner, port)
	}
}

// recordedEvents is a verify.Events that remembers what it was told.
type recordedEvents struct {
	mu   sync.Mutex
	seen []string
}

func (e *recordedEvents) add(s string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.seen = append(e.seen, s)
}
func (e *recordedEvents) CacheLookup(hit bool)   { e.add("lookup hit=" + strconv.FormatBool(hit)) }
func (e *recordedEvents) ProbeRunning(delta int) { e.add("running " + strconv.Itoa(delta)) }
func (e *recordedEvents) Session(o smtpprobe.Outcome, _ time.Duration) {
	e.add("session " + o.String())
}
func (e *recordedEvents) RateLimited()                  { e.add("rate-limited") }
func (e *recordedEvents) Overloaded()                   { e.add("overloaded") }
func (e *recordedEvents) PostureChanged(_, what string) { e.add("posture " + what) }

// TestNewVerifierEvents: the verifier serve builds reports to the Events it is given
// (the metrics); without them every verifier metric stays empty.
func TestNewVerifierEvents(t *testing.T) {
	t.Parallel()
	dnsAddr, port := checkWorld(t, fake.Behavior{NoStartTLS: true})
	cfg, _, err := loadConfig("serve", []string{"--dns.resolver", dnsAddr, "--probe.port", strconv.Itoa(port),
		"--probe.allow_networks", "127.0.0.0/8", "--probe.helo", "probe.test"}, nil, io.Discard, nil)
	if err != nil {
		t.Fatal(err)
	}
	ev := &recordedEvents{}
	v, err := newVerifier(cfg, slog.New(slog.DiscardHandler), ev, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	for range 2 {
		if _, _, err := v.Facts(context.Background(), "example.test"); err != nil {
			t.Fatal(err)
		}
	}
	want := []string{"lookup hit=false", "running 1", "session no-starttls", "running -1", "lookup hit=true"}
	ev.mu.Lock()
	defer ev.mu.Unlock()
	if !slices.Equal(ev.seen, want) {
		t.Errorf("events %q; want %q", ev.seen, want)
	}
}
