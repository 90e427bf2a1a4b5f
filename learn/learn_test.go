package learn

import (
	"bytes"
	"crypto/tls"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/tlsgate/tlsgate/internal/smtpprobe"
	"github.com/tlsgate/tlsgate/policy"
	"github.com/tlsgate/tlsgate/verify"
)

// now is the reference time of the fixtures: they end on Dec 7 2026.
var now = time.Date(2026, 12, 8, 0, 0, 0, 0, time.UTC)

func TestParseTLSLines(t *testing.T) {
	p := newLogParser(now, time.UTC)
	for _, tc := range []struct {
		line  string
		trust Trust
		peer  string
		proto string
	}{
		// Postfix 3.7+ (tls_misc.c tls_log_summary), TLS 1.3 details.
		{"Dec  7 18:00:00 mx postfix/smtp[123]: Verified TLS connection established to mx.example[192.0.2.1]:25: TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits) key-exchange X25519 server-signature ECDSA (P-256) server-digest SHA256",
			Verified, "mx.example[192.0.2.1]:25", "TLSv1.3"},
		// Postfix 3.4-3.6: "(peer: ...)"-free, no key-exchange; Trusted.
		{"Dec  7 18:00:00 mx postfix/smtp[123]: Trusted TLS connection established to mx.example[192.0.2.1]:25: TLSv1.2 with cipher ECDHE-RSA-AES256-GCM-SHA384 (256/256 bits)",
			Trusted, "mx.example[192.0.2.1]:25", "TLSv1.2"},
		{"Dec  7 18:00:00 mx postfix/smtp[123]: Untrusted TLS connection established to mx.example[2001:db8::1]:25: TLSv1.3 with cipher TLS_AES_128_GCM_SHA256 (128/128 bits)",
			Untrusted, "mx.example[2001:db8::1]:25", "TLSv1.3"},
		{"Dec  7 18:00:00 mx postfix/smtp[123]: Anonymous TLS connection established to mx.example[192.0.2.1]:25: TLSv1.2 with cipher ADH-AES256-GCM-SHA384 (256/256 bits)",
			Anonymous, "mx.example[192.0.2.1]:25", "TLSv1.2"},
		// smtp_tls_connection_reuse: a session from the scache via tlsproxy (smtp_session.c).
		{"Dec  7 18:00:00 mx postfix/smtp[123]: Verified TLS connection reused to mx.example[192.0.2.1]:25: TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits)",
			Verified, "mx.example[192.0.2.1]:25", "TLSv1.3"},
		// Postfix < 2.5 said nothing about trust.
		{"Dec  7 18:00:00 mx postfix/smtp[123]: TLS connection established to mx.example[192.0.2.1]:25: TLSv1 with cipher DHE-RSA-AES256-SHA (256/256 bits)",
			Untrusted, "mx.example[192.0.2.1]:25", "TLSv1"},
		// A multi-instance name and a custom transport name, RFC 3339 stamps.
		{"2026-12-07T18:00:00.123456+01:00 mx postfix-out/relay[77]: Verified TLS connection established to relay.example[192.0.2.9]:587: TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits)",
			Verified, "relay.example[192.0.2.9]:587", "TLSv1.3"},
	} {
		var l logLine
		p.Parse([]byte(tc.line), &l)
		if l.Kind != kindTLS || l.Trust != tc.trust || l.Peer != tc.peer || l.Protocol != tc.proto {
			t.Errorf("%s\n got kind %d trust %s peer %q proto %q", tc.line, l.Kind, l.Trust, l.Peer, l.Protocol)
		}
	}
}

func TestParseTimestamps(t *testing.T) {
	p := newLogParser(now, time.UTC)
	for _, tc := range []struct {
		stamp string
		want  time.Time
	}{
		{"Dec  7 18:00:00", time.Date(2026, 12, 7, 18, 0, 0, 0, time.UTC)},
		{"Dec 07 18:00:00", time.Date(2026, 12, 7, 18, 0, 0, 0, time.UTC)},                         // journalctl -o short
		{"Dec 07 18:00:00.250000", time.Date(2026, 12, 7, 18, 0, 0, 250e6, time.UTC)},              // -o short-precise
		{"Dec  8 23:59:59", time.Date(2026, 12, 8, 23, 59, 59, 0, time.UTC)},                       // within a day of now
		{"Dec 10 00:00:00", time.Date(2025, 12, 10, 0, 0, 0, 0, time.UTC)},                         // in the future: last year
		{"2026-12-07T18:00:00.123456+00:00", time.Date(2026, 12, 7, 18, 0, 0, 123456e3, time.UTC)}, // rsyslog high precision
		{"2026-12-07T19:00:00+0100", time.Date(2026, 12, 7, 18, 0, 0, 0, time.UTC)},                // journalctl -o short-iso (older)
		{"2026-12-07T13:00:00-05:00", time.Date(2026, 12, 7, 18, 0, 0, 0, time.UTC)},
		{"2026-12-07T18:00:00Z", time.Date(2026, 12, 7, 18, 0, 0, 0, time.UTC)},
	} {
		var l logLine
		p.Parse([]byte(tc.stamp+" mx postfix/smtp[1]: Verified TLS connection established to a[192.0.2.1]:25: TLSv1.3 with cipher X (1/1 bits)"), &l)
		if l.Kind != kindTLS || !l.Time.Equal(tc.want) {
			t.Errorf("%s: kind %d time %v, want %v", tc.stamp, l.Kind, l.Time, tc.want)
		}
	}
}

func TestParseDelivery(t *testing.T) {
	p := newLogParser(now, time.UTC)
	for _, tc := range []struct {
		line          string
		kind          lineKind
		domain, relay string
		status        string
	}{
		{"Dec  7 18:00:00 mx postfix/smtp[1]: 4ABCD12345: to=<a@example.org>, relay=mx.example.org[192.0.2.1]:25, delay=0.2, delays=0/0/0.1/0.1, dsn=2.0.0, status=sent (250 2.0.0 Ok)",
			kindDelivery, "example.org", "mx.example.org[192.0.2.1]:25", "sent"},
		{"Dec  7 18:00:00 mx postfix/smtp[1]: 4YzJbP1mGnz2Xyz: to=<a@example.org>, orig_to=<alias@local.example>, relay=mx.example.org[2001:db8::1]:25, conn_use=2, delay=0.2, delays=0/0/0.1/0.1, dsn=2.0.0, status=deferred (host said: 451)",
			kindDelivery, "example.org", "mx.example.org[2001:db8::1]:25", "deferred"},
		// A quoted local part with the separators in it (RFC 5321 Quoted-string).
		{`Dec  7 18:00:00 mx postfix/smtp[1]: 4ABCD12345: to=<"a>, relay=evil[203.0.113.1]:25, status=sent \" x"@example.org>, relay=mx.example.org[192.0.2.1]:25, delay=1, status=sent (250 relay=evil)`,
			kindDelivery, "example.org", "mx.example.org[192.0.2.1]:25", "sent"},
		// Not network deliveries.
		{"Dec  7 18:00:00 mx postfix/local[1]: 4ABCD12345: to=<a@mx.example>, relay=local, delay=0.2, status=sent (delivered to mailbox)", kindOther, "", "", ""},
		{"Dec  7 18:00:00 mx postfix/lmtp[1]: 4ABCD12345: to=<a@mx.example>, relay=mx.example[private/dovecot-lmtp], delay=0.2, status=sent (250 Ok)", kindOther, "", "", ""},
		{"Dec  7 18:00:00 mx postfix/smtp[1]: 4ABCD12345: to=<a@example.org>, relay=none, delay=0.2, status=deferred (connect timed out)", kindOther, "", "", ""},
		{"Dec  7 18:00:00 mx postfix/smtp[1]: warning: to=<a@example.org>, relay=mx[192.0.2.1]:25, status=sent", kindOther, "", "", ""},
		{"Dec  7 18:00:00 mx postfix/smtp[1]: 4ABCD12345: to=<a@example.org, relay=mx[192.0.2.1]:25, status=sent", kindOther, "", "", ""},
		// Garbage.
		{"", kindGarbage, "", "", ""},
		{"Dec  7 18:00:00", kindGarbage, "", "", ""},
		{"Dec  7 18:00:00 mx postfix/smtp: 4ABCD12345: to=<a@example.org>, relay=mx[192.0.2.1]:25, status=sent", kindGarbage, "", "", ""},
		{"Foo  7 18:00:00 mx postfix/smtp[1]: x", kindGarbage, "", "", ""},
		{"2026-13-07T18:00:00Z mx postfix/smtp[1]: x", kindGarbage, "", "", ""},
	} {
		var l logLine
		p.Parse([]byte(tc.line), &l)
		if l.Kind != tc.kind || l.Domain != tc.domain || l.Peer != tc.relay || l.Status != tc.status {
			t.Errorf("%s\n got kind %d domain %q relay %q status %q", tc.line, l.Kind, l.Domain, l.Peer, l.Status)
		}
	}
}

func fixtures(t *testing.T, names ...string) *Learner {
	t.Helper()
	lr := NewLearner(now, time.UTC)
	for _, n := range SortFiles(names) {
		r, err := Open(n)
		if err != nil {
			t.Fatal(err)
		}
		if err := lr.Read(r); err != nil {
			t.Fatal(err)
		}
		r.Close()
	}
	return lr
}

func TestSortFiles(t *testing.T) {
	got := SortFiles([]string{"/var/log/mail.log", "/var/log/mail.log.1", "/var/log/mail.log.10.gz", "/var/log/mail.log.2.gz",
		"maillog", "maillog-20261201.gz", "maillog-20261124"})
	want := []string{"/var/log/mail.log.10.gz", "/var/log/mail.log.2.gz", "/var/log/mail.log.1", "/var/log/mail.log",
		"maillog-20261124", "maillog-20261201.gz", "maillog"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("SortFiles:\n got %q\nwant %q", got, want)
	}
}

type history struct {
	byTrust     [Verified + 1]int
	first, last string
	relays      []string
}

// TestFixtures reads rotated logs (one gzipped, one with RFC 3339 stamps), given
// newest first, and checks the join: interleaved processes, a session that spans two
// files, a failover from a TLS MX to a plaintext one, a process that moves on to the
// next request without a new TLS line, IPv6 relays, a content filter on loopback, a
// hostile quoted local part, and garbage.
func TestFixtures(t *testing.T) {
	lr := fixtures(t, "testdata/mail.log", "testdata/mail.log.1", "testdata/mail.log.2.gz")
	got := map[string]history{}
	for _, d := range lr.Domains() {
		got[d.Name] = history{d.ByTrust, d.First.Format(time.RFC3339), d.Last.Format(time.RFC3339), d.Relays}
	}
	want := map[string]history{
		// Two deliveries over one session in mail.log.2.gz (IPv6), one whose TLS line
		// ends mail.log.1 and whose record starts mail.log.
		"dane.example": {[5]int{Verified: 3}, "2026-12-05T10:00:02Z", "2026-12-07T00:00:01Z", []string{"mx.dane.example"}},
		// One with a hostile local part; one to "Trusted.Example".
		"trusted.example": {[5]int{Trusted: 4}, "2026-12-05T10:00:02Z", "2026-12-07T08:00:18Z", []string{"mx.trusted.example"}},
		"enc.example":     {[5]int{Anonymous: 1, Untrusted: 2}, "2026-12-06T09:00:01Z", "2026-12-07T08:00:11Z", []string{"mx2.enc.example", "mx.enc.example"}},
		// gina: TLS to mx1 failed after the handshake, mx2 took it in plaintext;
		// mallory, sybil: the process's next requests, no new TLS line: plaintext.
		"plain.example": {[5]int{Plain: 3, Untrusted: 1}, "2026-12-06T09:00:04Z", "2026-12-07T08:00:12Z", []string{"mx2.plain.example", "mx1.plain.example"}},
		"few.example":   {[5]int{Untrusted: 1}, "2026-12-07T08:00:07Z", "2026-12-07T08:00:08Z", []string{"mx.few.example"}},
	}
	want["few.example"] = history{[5]int{Untrusted: 1}, "2026-12-07T08:00:08Z", "2026-12-07T08:00:08Z", []string{"mx.few.example"}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("domains:\n got %+v\nwant %+v", got, want)
	}
	st := lr.Stats.Snapshot()
	if st.Garbage != 3 || st.Local != 1 || st.BadDomain != 1 || st.Deliveries != 15 || st.TLS != 13 {
		t.Errorf("stats %+v", st)
	}
}

func TestSince(t *testing.T) {
	lr := NewLearner(now, time.UTC)
	lr.Since = time.Date(2026, 12, 7, 0, 0, 0, 0, time.UTC)
	for _, n := range SortFiles([]string{"testdata/mail.log", "testdata/mail.log.1", "testdata/mail.log.2.gz"}) {
		r, _ := Open(n)
		lr.Read(r)
		r.Close()
	}
	for _, d := range lr.Domains() {
		if d.First.Before(lr.Since) {
			t.Errorf("%s: first seen %v, before --since", d.Name, d.First)
		}
	}
	// The session that began before the window still joins its delivery inside it.
	for _, d := range lr.Domains() {
		if d.Name == "dane.example" && d.ByTrust != [5]int{Verified: 1} {
			t.Errorf("dane.example %v", d.ByTrust)
		}
	}
	if lr.Stats.Old.Load() == 0 {
		t.Error("no delivery counted as before --since")
	}
}

// A line longer than MaxLine is skipped and counted; the next line is read.
func TestLongLine(t *testing.T) {
	lr := NewLearner(now, time.UTC)
	var b bytes.Buffer
	b.WriteString("Dec  7 08:00:00 mx postfix/smtp[1]: Verified TLS connection established to mx.a.example[192.0.2.1]:25: TLSv1.3 with cipher X (1/1 bits)\n")
	b.WriteString("Dec  7 08:00:00 mx postfix/smtp[9]: " + strings.Repeat("x", 3*maxLine) + "\n")
	b.WriteString("Dec  7 08:00:01 mx postfix/smtp[1]: 4ABCD12345: to=<a@a.example>, relay=mx.a.example[192.0.2.1]:25, status=sent (ok)")
	if err := lr.Read(&b); err != nil {
		t.Fatal(err)
	}
	st := lr.Stats.Snapshot()
	if st.TooLong != 1 || st.Lines != 3 || st.Deliveries != 1 {
		t.Errorf("stats %+v", st)
	}
	if d := lr.Domains(); len(d) != 1 || d[0].ByTrust[Verified] != 1 {
		t.Errorf("domains %+v", d)
	}
}

// facts builds what a probe of domain finds: one MX host at one address that
// completes TLS with a certificate for names, its chain trusted or not.
func facts(domain, mx string, names []string, trusted bool) *verify.Facts {
	var pkix error
	if !trusted {
		pkix = errors.New("x509: certificate signed by unknown authority")
	}
	ip := netip.MustParseAddr("192.0.2.1")
	return &verify.Facts{
		Domain: domain, MX: verify.MXFound, Checked: now,
		Hosts: []verify.Host{{Name: mx, Preference: 10, Addrs: []netip.Addr{ip}}},
		Attempts: []verify.Attempt{{Host: mx, Preference: 10, Cert: &verify.CertInfo{Names: names},
			Result: smtpprobe.Result{IP: ip, Outcome: smtpprobe.OutcomeTLS, Offered: true, TLSVersion: tls.VersionTLS13, PKIX: pkix}}},
	}
}

func noTLS(domain, mx string) *verify.Facts {
	f := facts(domain, mx, nil, false)
	f.Attempts[0].Result = smtpprobe.Result{IP: f.Attempts[0].Result.IP, Outcome: smtpprobe.OutcomeNoStartTLS, Detail: "STARTTLS not offered in the EHLO reply\n" + "evil.example encrypt"}
	return f
}

func dom(name string, byTrust [5]int, relays ...string) *Domain {
	return &Domain{Name: name, ByTrust: byTrust, First: now.Add(-48 * time.Hour), Last: now.Add(-time.Hour), Relays: relays}
}

// TestPropose: the strictest level the history allows and the probe passes.
func TestPropose(t *testing.T) {
	for _, tc := range []struct {
		name   string
		d      *Domain
		f      *verify.Facts
		status Status
		level  policy.Level
	}{
		// Trusted chains in the log, the certificate names the domain: secure.
		{"secure", dom("s.example", [5]int{Trusted: 5}, "mx.s.example"), facts("s.example", "mx.s.example", []string{"mx.s.example"}, true), StatusProposed, policy.LevelSecure},
		// ... names only the MX host: verify.
		{"verify", dom("v.example", [5]int{Trusted: 5}, "mx.hoster.example"), facts("v.example", "mx.hoster.example", []string{"mx.hoster.example"}, true), StatusProposed, policy.LevelVerify},
		{"verify, not dane-only without DNSSEC", dom("v.example", [5]int{Verified: 5}, "mx.hoster.example"), facts("v.example", "mx.hoster.example", []string{"mx.hoster.example"}, true), StatusProposed, policy.LevelVerify},
		// Untrusted in the log: encrypt, whatever the probe shows now.
		{"encrypt", dom("e.example", [5]int{Untrusted: 4, Trusted: 1}, "mx.e.example"), facts("e.example", "mx.e.example", []string{"mx.e.example"}, true), StatusProposed, policy.LevelEncrypt},
		// Trusted in the log, the chain no longer verifies: encrypt.
		{"trusted then untrusted", dom("t.example", [5]int{Trusted: 5}, "mx.t.example"), facts("t.example", "mx.t.example", []string{"mx.t.example"}, false), StatusProposed, policy.LevelEncrypt},
		{"fails now", dom("f.example", [5]int{Untrusted: 5}, "mx.f.example"), noTLS("f.example", "mx.f.example"), StatusFailsNow, policy.LevelEncrypt},
		{"plaintext", dom("p.example", [5]int{Untrusted: 5, Plain: 1}, "mx.p.example"), nil, StatusPlaintext, policy.LevelNone},
		{"too few", dom("few.example", [5]int{Verified: 2}, "mx.few.example"), nil, StatusTooFew, policy.LevelNone},
		{"not an MX", dom("n.example", [5]int{Verified: 5}, "smarthost.provider.example"), facts("n.example", "mx.n.example", []string{"mx.n.example"}, true), StatusNotMX, policy.LevelEncrypt},
	} {
		p := Propose(tc.d, 3, tc.f)
		if p.Status != tc.status || p.Level != tc.level {
			t.Errorf("%s: %s %s (%s), want %s %s", tc.name, p.Status, p.Level, p.Reason, tc.status, tc.level)
		}
	}
}

// TestProposalParses: the text output is a tls_policy file that ParseFile reads
// without a warning, with exactly the proposed entries, however hostile the remote
// text in the comments (a verdict detail with a newline and a policy line after it).
func TestProposalParses(t *testing.T) {
	props := []*Proposal{
		Propose(dom("s.example", [5]int{Trusted: 5}, "mx.hoster.example"), 3, facts("s.example", "mx.hoster.example", []string{"mx.hoster.example"}, true)),
		Propose(dom("e.example", [5]int{Untrusted: 5}, "mx.e.example\nevil.example\tsecure"), 3, facts("e.example", "mx.e.example\nevil.example\tsecure", nil, false)),
		Propose(dom("f.example", [5]int{Untrusted: 5}, "mx.f.example"), 3, noTLS("f.example", "mx.f.example")),
		Propose(dom("p.example", [5]int{Plain: 2}, "mx.p.example\r\nevil2.example encrypt"), 3, nil),
	}
	var b bytes.Buffer
	if err := WriteText(&b, Header{Generated: now, Files: []string{"mail.log\nevil3.example verify"}, MinDeliveries: 3}, props); err != nil {
		t.Fatal(err)
	}
	entries, warnings, err := policy.ParseFile(bytes.NewReader(b.Bytes()), "proposal")
	if err != nil || len(warnings) != 0 {
		t.Fatalf("ParseFile: %v %v\n%s", err, warnings, b.String())
	}
	var got []string
	for _, e := range entries {
		got = append(got, e.Key+" "+e.Policy.Level.String())
	}
	want := []string{"s.example verify", "e.example encrypt"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("entries %q, want %q\n%s", got, want, b.String())
	}
	for _, line := range strings.Split(b.String(), "\n") {
		if line != "" && !strings.HasPrefix(line, "# ") && line != "s.example\tverify" && line != "e.example\tencrypt" {
			t.Errorf("unexpected line %q", line)
		}
	}
	if !strings.Contains(b.String(), "\n# f.example encrypt\n") {
		t.Errorf("the failing domain is not listed commented out:\n%s", b.String())
	}
}

func TestDiff(t *testing.T) {
	existing, _, err := policy.ParseFile(strings.NewReader(`
up.example       encrypt
down.example     secure
same.example     verify
gone.example     encrypt
unsure.example   encrypt
quiet.example    secure
.sub.example     encrypt
`), "old")
	if err != nil {
		t.Fatal(err)
	}
	props := []*Proposal{
		{Domain: dom("up.example", [5]int{Trusted: 3}), Status: StatusProposed, Level: policy.LevelSecure},
		{Domain: dom("down.example", [5]int{Trusted: 3}), Status: StatusProposed, Level: policy.LevelEncrypt},
		{Domain: dom("same.example", [5]int{Trusted: 3}), Status: StatusProposed, Level: policy.LevelVerify},
		{Domain: dom("gone.example", [5]int{Untrusted: 3}), Status: StatusFailsNow, Level: policy.LevelEncrypt, Reason: "encrypt fail now"},
		{Domain: dom("unsure.example", [5]int{Untrusted: 3}), Status: StatusUncertain, Level: policy.LevelEncrypt, Reason: "dns-error"},
		{Domain: dom("new.example", [5]int{Untrusted: 3}), Status: StatusProposed, Level: policy.LevelEncrypt},
	}
	changes := Diff(existing, props)
	var got []string
	for _, c := range changes {
		got = append(got, c.Kind+" "+c.Domain)
	}
	want := []string{"weaker down.example", "removed gone.example", "added new.example", "unseen quiet.example", "removed unsure.example", "stronger up.example"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("changes %q\nwant %q", got, want)
	}
	if DiffExit(changes) != 1 {
		t.Errorf("exit %d, want 1 (weaker)", DiffExit(changes))
	}
	if c := Diff(existing[2:3], props[2:3]); DiffExit(c) != 0 || len(c) != 0 {
		t.Errorf("unchanged entry: %+v exit %d", c, DiffExit(c))
	}
	if c := Diff(existing[4:5], props); DiffExit(c) != 2 {
		t.Errorf("inconclusive: %+v exit %d, want 2", c, DiffExit(c))
	}
	var b bytes.Buffer
	WriteDiff(&b, changes)
	if !strings.Contains(b.String(), "<! weaker   down.example secure -> encrypt") {
		t.Errorf("diff output:\n%s", b.String())
	}
}

// FuzzParse: no line crashes the parser or the learner, and what a line yields is
// bounded and consistent.
func FuzzParse(f *testing.F) {
	data, _ := os.ReadFile(filepath.Join("testdata", "mail.log"))
	for _, l := range strings.Split(string(data), "\n") {
		f.Add(l)
	}
	data, _ = os.ReadFile(filepath.Join("testdata", "mail.log.1"))
	for _, l := range strings.Split(string(data), "\n") {
		f.Add(l)
	}
	f.Add(`Dec  7 18:00:00 mx postfix/smtp[1]: 4ABCD12345: to=<"\"@x>, relay=a[::1]:25, status=sent`)
	f.Add("2026-12-07T18:00:00.+99:99 h p[1]: x")
	f.Fuzz(func(t *testing.T, line string) {
		p := newLogParser(now, time.UTC)
		var l logLine
		p.Parse([]byte(line), &l)
		switch l.Kind {
		case kindTLS:
			if !l.Addr.IsValid() || l.Proc == "" || len(l.Peer) > 300 {
				t.Fatalf("TLS line without peer: %+v", l)
			}
		case kindDelivery:
			if !l.Addr.IsValid() || l.QueueID == "" || l.Status == "" || !strings.Contains(line, l.Domain) {
				t.Fatalf("delivery without fields: %+v", l)
			}
		}
		lr := NewLearner(now, time.UTC)
		if err := lr.Read(strings.NewReader(line + "\n" + line)); err != nil {
			t.Fatal(err)
		}
		for _, d := range lr.Domains() {
			if n, err := policy.NormalizeDomain(d.Name); err != nil || n != d.Name {
				t.Fatalf("domain %q kept: %v", d.Name, err)
			}
		}
	})
}
