//go:build e2e

package e2e

// Routed recipient addresses, against the real sending Postfix (written against Postfix
// 3.7.11, Debian 12; the test logs the version it runs).
//
// Postfix delivers an address in one of its own domains to the address routed inside
// the local part (trivial-rewrite resolve.c; allow_percent_hack, swap_bangpath and
// resolve_dequoted_address are yes by default). With local.e2e.test in mydestination,
//
//	user%notls.test@local.e2e.test, notls.test!user@local.e2e.test and
//	"user@notls.test"@local.e2e.test
//
// all go to user@notls.test through the smtp transport. smtpd resolves the recipient
// the same way for the milter macros (smtpd_milter.c, smtpd_resolve_addr). Observed
// here: Postfix sends {rcpt_mailer}=smtp and {rcpt_addr}=user@notls.test (no {i}: with
// smtpd_delay_open_until_valid_rcpt = yes there is no queue file before the first
// accepted recipient), and tlsgate, which prefers {rcpt_addr}, judges notls.test. The
// right-most domain, the one in the RCPT command, is not checked. local.e2e.test has no
// DNS records: a tlsgate that judged the RCPT command's domain would refuse these with
// 5.1.2 for local.e2e.test (on a real host, whose own domain has TLS, it would accept
// them), and this test would fail.
//
// No mydestination entry is needed for this: an address literal of the host itself
// (inet_interfaces, here loopback-only: 127.0.0.1) is local too, so
// user%notls.test@[127.0.0.1] also goes to notls.test; checked with mydestination
// empty, as in TestE2E's world. Judged by the RCPT command alone it is an address
// literal, which tlsgate passes unchecked.
//
// Postfix accepts routed addresses, before the milter is asked, only from clients
// allowed to relay: the relay check (reject_unauth_destination) looks at the resolved
// domain, notls.test. The swaks client is on loopback, in mynetworks, so
// permit_mynetworks lets them through (permit_sasl_authenticated would for an
// authenticated submission client). A client outside mynetworks gets
// "454 4.7.1 <...>: Relay access denied" under Postfix's default
// smtpd_relay_restrictions, and tlsgate is never asked. allow_untrusted_routing (default
// no) does not change this: per its documentation it concerns routed addresses to
// relay_domains from untrusted clients.
//
// The test has its own world, as TestE2E's, with these changes to the sending Postfix
// (postconf -e): local.e2e.test in mydestination; routingOutsider excluded from
// mynetworks; smtpd_relay_restrictions at Postfix's default, which decides as the
// shared world's for clients in mynetworks; and debug_peer_list, which makes smtpd log
// the macros it sends the milter for the test's clients ("event: SMFIC_RCPT; macros:
// ..."), so that the test reads what Postfix sent, not what tlsgate made of it.

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

const (
	routingDomain   = "local.e2e.test" // in the sending Postfix's mydestination
	routingClient   = "127.0.0.6"      // source address of the test's SMTP sessions, in mynetworks
	routingOutsider = "127.0.0.7"      // a client outside mynetworks
)

// TestRouting sends routed recipient addresses through the sending Postfix and checks
// what Postfix tells the milter, tlsgate's verdict on the domain Postfix delivers to,
// and what the client is answered.
func TestRouting(t *testing.T) {
	start := time.Now()
	w := newWorld(t)
	w.certificates()
	w.dnsWorld()
	w.mxPostfix()
	w.startTLSGate(w.write("tls_policy", "# no domain policies: the customer's level decides\n", 0o644))
	w.postconf = map[string][]string{"sender": {
		"mydestination = " + routingDomain,
		"mynetworks = !" + routingOutsider + " 127.0.0.0/8",
		"smtpd_relay_restrictions = permit_mynetworks, permit_sasl_authenticated, defer_unauth_destination",
		"debug_peer_list = " + routingClient + " " + routingOutsider,
	}}
	sender := w.senderPostfix()
	t.Logf("postfix %s", strings.TrimSpace(w.run("postconf", "-c", filepath.Join(sender, "conf"), "-h", "mail_version")))
	maillog := filepath.Join(sender, "maillog")
	t.Logf("world up in %s", time.Since(start).Round(time.Millisecond))

	const (
		encrypt = "someone@encrypt.sender.test" // customer encrypt
		notls   = "550 5.7.5 Mail to notls.test requires encrypted delivery"
	)
	tests := []struct {
		name, client, rcpt string
		// mailer and addr are the {rcpt_mailer} and {rcpt_addr} Postfix sends; both
		// empty when Postfix refuses the recipient before the milter.
		mailer, addr string
		reply        string // the RCPT reply starts with it
		// decision is in tlsgate's one log line for the recipient; "" when tlsgate
		// must not be asked.
		decision string
		header   string // the audit header's domain for an accepted recipient; "" for none
	}{
		{"percent hack", routingClient, "pct%notls.test@" + routingDomain,
			"smtp", "pct@notls.test", notls, " outcome=reject ", ""},
		{"bang path", routingClient, "notls.test!bang@" + routingDomain,
			"smtp", "bang@notls.test", notls, " outcome=reject ", ""},
		{"quoted local part", routingClient, `"quoted@notls.test"@` + routingDomain,
			"smtp", "quoted@notls.test", notls, " outcome=reject ", ""},
		{"address literal of the host", routingClient, "literal%notls.test@[127.0.0.1]",
			"smtp", "literal@notls.test", notls, " outcome=reject ", ""},
		{"control: percent hack to a TLS domain", routingClient, "ctl%tls.test@" + routingDomain,
			"smtp", "ctl@tls.test", "250 ", " outcome=accept ", "tls.test"},
		{"local recipient", routingClient, "root@" + routingDomain,
			"local", "root@" + routingDomain, "250 ", `skip="transport local is not checked"`, ""},
		{"client outside mynetworks", routingOutsider, "out%notls.test@" + routingDomain,
			"", "", "454 4.7.1 <out%notls.test@" + routingDomain + ">: Relay access denied", "", ""},
	}
	for _, test := range tests {
		t.Run(test.name, func(t *testing.T) {
			gateLog := newTail(w.path("tlsgate.log"))
			out := swaks(t, senderAddr+":2525", encrypt, test.rcpt, "--local-interface", test.client)
			reply := rcptReply(out)
			if !strings.HasPrefix(reply, test.reply) {
				t.Errorf("RCPT TO:<%s>: %q; want %q...\n%s", test.rcpt, reply, test.reply, out)
			}

			// tlsgate's decision line is written before the milter replies, so before
			// swaks sees the reply.
			var decisions []string
			for _, line := range gateLog.lines() {
				if strings.Contains(line, " msg=rcpt ") {
					decisions = append(decisions, line)
				}
			}
			switch {
			case test.decision == "" && len(decisions) > 0:
				t.Errorf("tlsgate was asked about a recipient Postfix refused:\n%s", strings.Join(decisions, "\n"))
			case test.decision == "":
			case len(decisions) != 1:
				t.Errorf("tlsgate logged %d decisions, want 1:\n%s", len(decisions), strings.Join(decisions, "\n"))
			default:
				t.Logf("tlsgate: %s", decisions[0])
				// The domain tlsgate judged, {rcpt_addr}'s; a skipped recipient is
				// logged with its domain too.
				_, domain, _ := strings.Cut(test.addr, "@")
				for _, want := range []string{test.decision, " domain=" + domain + " "} {
					if !strings.Contains(decisions[0], want) {
						t.Errorf("tlsgate's decision lacks %q:\n%s", want, decisions[0])
					}
				}
			}

			if test.mailer != "" {
				m := sentMacros(t, maillog, test.rcpt)
				t.Logf("Postfix sent for RCPT TO:<%s>: %v", test.rcpt, m)
				if m["{rcpt_mailer}"] != test.mailer || m["{rcpt_addr}"] != test.addr {
					t.Errorf("Postfix sent {rcpt_mailer}=%q {rcpt_addr}=%q; want %q and %q",
						m["{rcpt_mailer}"], m["{rcpt_addr}"], test.mailer, test.addr)
				}
			}

			if !strings.HasPrefix(reply, "250") {
				return
			}
			if test.header != "" {
				w.checkHeader(t, sender, queueID(out), cell{domain: test.header, level: "encrypt"})
				return
			}
			held, err := exec.Command("postcat", "-c", filepath.Join(sender, "conf"), "-h", "-q", queueID(out)).CombinedOutput()
			if err != nil || strings.Contains(string(held), "TLSGate-Verdict:") {
				t.Errorf("held message %q: want no audit header (%v):\n%s", queueID(out), err, held)
			}
		})
	}
}

// tail reads what a log file gains after newTail.
type tail struct {
	path string
	off  int64
}

func newTail(path string) *tail {
	fi, err := os.Stat(path)
	if err != nil {
		return &tail{path: path}
	}
	return &tail{path: path, off: fi.Size()}
}

// lines returns the complete lines written since newTail.
func (tl *tail) lines() []string {
	f, err := os.Open(tl.path)
	if err != nil {
		return nil
	}
	defer f.Close()
	if _, err := f.Seek(tl.off, 0); err != nil {
		return nil
	}
	var lines []string
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	return lines
}

var (
	// smtpd's verbose log (debug_peer_list): the command, then the macros milter8 sends
	// with the RCPT event, both under the smtpd process's PID.
	rcptCmdRE    = regexp.MustCompile(`postfix/smtpd\[(\d+)\]: < \S+: RCPT TO:<(.*)>$`)
	rcptMacrosRE = regexp.MustCompile(`postfix/smtpd\[(\d+)\]: event: SMFIC_RCPT; macros:(.*)$`)
)

// sentMacros returns the macros the sending Postfix sent the milter with the RCPT event
// for rcpt, read from its verbose log. postlogd writes the log asynchronously: it
// waits for the line up to 10 s.
func sentMacros(t *testing.T, maillog, rcpt string) map[string]string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		pending := map[string]string{} // smtpd PID -> its last RCPT TO address
		var found map[string]string
		for _, line := range (&tail{path: maillog}).lines() {
			if m := rcptCmdRE.FindStringSubmatch(line); m != nil {
				pending[m[1]] = m[2]
				continue
			}
			if m := rcptMacrosRE.FindStringSubmatch(line); m != nil && pending[m[1]] == rcpt {
				delete(pending, m[1])
				found = map[string]string{}
				for _, kv := range strings.Fields(m[2]) {
					k, v, _ := strings.Cut(kv, "=")
					found[k] = v
				}
			}
		}
		if found != nil {
			return found
		}
		if time.Now().After(deadline) {
			t.Errorf("no SMFIC_RCPT macros for RCPT TO:<%s> in %s", rcpt, maillog)
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
}
