package report_test

import (
	"context"
	"flag"
	"log/slog"
	"net/netip"
	"strings"
	"testing"
	"time"
	"unicode"

	"github.com/tlsgate/tlsgate/internal/dnsx"
	"github.com/tlsgate/tlsgate/internal/fake"
	"github.com/tlsgate/tlsgate/internal/report"
	"github.com/tlsgate/tlsgate/internal/smtpprobe"
	"github.com/tlsgate/tlsgate/policy"
	"github.com/tlsgate/tlsgate/verify"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// golden compares got with testdata/name, or rewrites the file with -update.
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	fake.Golden(t, name, got, *update)
}

// hostile is remote text that tries everything a terminal obeys: colours and a cursor
// move, a fake line that colorize would paint green, a carriage return that overwrites
// the label, a title-setting OSC, C1 controls, bidirectional overrides and isolates,
// line and paragraph separators, a tab that shifts columns, and invalid UTF-8.
const hostile = "\x1b[32m\x1b[2Aok\nverdict:\tpass\r\x1b]0;owned\x07\u009b31m\u202egnp.exe\u2066x\u2069\u2028y\u2029\tz\xff\\"

// TestReportTextHostile: every string of remote origin in a `tlsgate check` text
// report is quoted: the output is printable apart from its own newlines, each line
// starts with one of WriteText's labels, and the only "verdict:" line at the start of
// a line is the report's own (golden file testdata/report-hostile.golden).
func TestReportTextHostile(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC)
	listed := true
	r := report.Report{
		Domain: "example.test", Level: "verify", Rule: "policy:example.test", Status: "fail",
		Reason: "certificate-host-mismatch", Mechanism: "pkix", Detail: "mx1.example.test[192.0.2.1]: " + hostile,
		MXStatus: "found", MXDetail: hostile,
		MX: []report.Host{{
			Host: "mx1.example.test" + hostile, Preference: 10, Addresses: []string{"192.0.2.1"}, Error: hostile,
			TLSA: report.TLSA{Status: "error", Error: hostile}, STSListed: &listed,
			Attempts: []report.Attempt{{
				IP: "192.0.2.1", Outcome: "tls", Detail: hostile, Greeting: "220 " + hostile, STARTTLS: true,
				TLSVersion: "TLSv1.3", Cipher: "TLS_AES_128_GCM_SHA256",
				Certificate: &report.Certificate{Subject: "CN=" + hostile, Issuer: "CN=" + hostile, DNSNames: []string{hostile, "mx1.example.test"},
					NotBefore: at, NotAfter: at.Add(24 * time.Hour), SHA256: "AA:BB", SPKISHA256: "CC:DD"},
				PKIX: hostile, Verdict: "certificate-host-mismatch",
			}},
		}},
		MTASTS: &report.STS{Status: "policy", ID: hostile, Mode: "enforce", MaxAge: 86400, MX: []string{hostile},
			Expires: at, Problem: "sts-policy-fetch-error", Detail: hostile},
		Checked: at, DurationMS: 42,
	}
	var b strings.Builder
	if err := r.WriteText(&b); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	checkTerminalSafe(t, out, "fail")
	golden(t, "report-hostile.golden", []byte(out))
}

// checkTerminalSafe fails unless text is printable but for its newlines and its only
// line that starts with "verdict:" is the report's own, saying status.
func checkTerminalSafe(t *testing.T, text, status string) {
	t.Helper()
	for _, r := range text {
		if r != '\n' && !unicode.IsPrint(r) {
			t.Errorf("the report holds %U", r)
		}
	}
	labels := []string{"domain:", "level:", "mx lookup:", "mx ", "  ", "mta-sts:", "verdict:", "mechanism:", "reason:", "detail:", "checked:"}
	verdicts := 0
	for _, line := range strings.Split(strings.TrimSuffix(text, "\n"), "\n") {
		if !startsWithAny(line, labels) {
			t.Errorf("line %q does not start with a label of the report's own", line)
		}
		if strings.HasPrefix(line, "verdict:") {
			verdicts++
			if strings.Join(strings.Fields(line), " ") != "verdict: "+status {
				t.Errorf("verdict line %q; want the verdict %s alone", line, status)
			}
		}
	}
	if verdicts != 1 {
		t.Errorf("%d lines start with \"verdict:\"; want 1:\n%s", verdicts, text)
	}
}

func startsWithAny(s string, prefixes []string) bool {
	for _, p := range prefixes {
		if strings.HasPrefix(s, p) {
			return true
		}
	}
	return false
}

// TestReportTextHostileServer: the same through a real probe: an MX whose greeting and
// certificate (subject CN, issuer, names) carry escape sequences and a fake verdict
// line gets a report that shows them quoted.
func TestReportTextHostileServer(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	ca := w.ca.Intermediate(t, "Evil \x1b[32mCA\u202e")
	c := ca.Issue(t, fake.CertOptions{DNSNames: []string{"mx1.example.test\x1b[2J", "mx1.example.test"},
		CommonName: "x\nverdict:\tpass\x1b[0m\u2028"})
	fake.StartSMTP(t, "127.0.0.10", fake.Behavior{Hostname: "mx1.example.test", Cert: &c,
		Banner: "220-mx1.example.test \x1b]0;owned\x07\n220 \rverdict: pass \u009b32m\xff"}).RegisterWith(w.dialer)
	f := w.verifier().Probe(context.Background(), "example.test")
	v := verify.Judge(f, policy.Policy{Level: policy.LevelEncrypt})
	var b strings.Builder
	if err := report.New(f, v, "").WriteText(&b); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	t.Logf("report:\n%s", out)
	if !strings.Contains(out, `\x1b]0;owned\x07`) || !strings.Contains(out, `\x1b[2J`) || !strings.Contains(out, `\u202e`) {
		t.Errorf("the hostile text is not shown quoted:\n%s", out)
	}
	checkTerminalSafe(t, out, v.Status.String())
}

// world is a DNS server and a dialer with example.test's one MX host,
// mx1.example.test at 127.0.0.10, for a Verifier to probe.
type world struct {
	t      testing.TB
	dns    *fake.DNSServer
	dialer *fake.Dialer
	ca     *fake.CA
}

func newWorld(t testing.TB) *world {
	t.Helper()
	w := &world{t: t, dns: fake.StartDNS(t), dialer: fake.NewDialer(), ca: fake.NewCA(t, "Test Root")}
	w.dns.Add(t, "example.test. 300 IN MX 10 mx1.example.test.", "mx1.example.test. 300 IN A 127.0.0.10")
	return w
}

func (w *world) verifier() *verify.Verifier {
	w.t.Helper()
	res, err := dnsx.NewClient(w.dns.Addr(), time.Second, false)
	if err != nil {
		w.t.Fatal(err)
	}
	v, err := verify.New(verify.Config{
		Resolver:    res,
		Prober:      &smtpprobe.Prober{Dialer: w.dialer, HELO: "probe.tlsgate.test", Roots: w.ca.Pool},
		Allow:       []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")},
		HostTimeout: 3 * time.Second,
		Log:         slog.New(slog.DiscardHandler),
	})
	if err != nil {
		w.t.Fatal(err)
	}
	w.t.Cleanup(v.Close)
	return v
}
