//go:build e2e

// Package e2e is tlsgate's end-to-end suite: real Postfix with smtpd_milters pointing at
// tlsgate, real receiving MX servers (Postfix) on loopback addresses, a DNSSEC-signed zone
// served by nsd behind a validating unbound, swaks as the client, and a third Postfix,
// the oracle, that really delivers each cell at the tested level, once with the level as
// smtp_tls_security_level and once with the level read from tlsgate's own socketmap
// (smtp_tls_policy_maps; policymap_test.go). It proves that the RCPT-time verdict
// predicts what Postfix does at delivery, and that Postfix keeps it when tlsgate is its
// TLS policy table.
//
// Run as root: test/e2e/install.sh && go test -tags e2e -count=1 -v ./test/e2e/
package e2e

import (
	"bufio"
	"fmt"
	"net"
	"net/textproto"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"
)

// levels judged through customers (sender domain LEVEL.sender.test); fingerprint cells
// come from the shared tls_policy file.
var levels = []string{"encrypt", "verify", "secure", "dane", "dane-only"}

// cell is one (recipient domain, level) of the matrix with tlsgate's expected status.
type cell struct {
	domain, level string
	want          string // pass | fail | tempfail
	code          string // expected enhanced code for non-pass, "" for pass
	// expect, when set, must be in the audit header of a pass or the RCPT reply of a
	// non-pass.
	expect string
	// deviation, when set, explains why Postfix (the oracle) legitimately decides the
	// other way; the agreement check then requires that it does. Never for a cell that
	// tlsgate refuses: no cell may be delivered against a refusal.
	deviation string
	// mapWant, when set, is the first word of tlsgate's socketmap answer for the domain
	// at level published: the level Postfix is told to use, NOTFOUND (Postfix's own
	// smtp_tls_security_level, may) or TEMP (Postfix defers).
	mapWant string
	// entryLevel, when set, is the level of the tls_policy entry that decides a cell
	// of the "fingerprint" bucket (the domain policy applies) at another level: the
	// level the audit header names.
	entryLevel string
	// limit, when set, is a Postfix-version limit on the map-driven delivery that the
	// outcome does not show: the host Postfix delivers to.
	limit versionLimit
}

// versionLimit: this Postfix (Debian 12's 3.7) delivers the cell's message through relay,
// a host tlsgate's verdict did not use, for the reason why.
type versionLimit struct{ relay, why string }

func matrix() []cell {
	rows := []struct {
		domain string
		want   [5]string // encrypt, verify, secure, dane, dane-only
		code   string
	}{
		{"tls.test", [5]string{"pass", "pass", "pass", "pass", "pass"}, ""},
		{"notls.test", [5]string{"fail", "fail", "fail", "pass", "fail"}, "5.7.5"},
		{"selfsigned.test", [5]string{"pass", "fail", "fail", "pass", "pass"}, "5.7.5"},
		{"wrongname.test", [5]string{"pass", "fail", "fail", "fail", "fail"}, "5.7.5"},
		{"expired.test", [5]string{"pass", "fail", "fail", "pass", "pass"}, "5.7.5"},
		{"greet421.test", [5]string{"tempfail", "tempfail", "tempfail", "tempfail", "fail"}, "4.7.5"},
		{"greet450.test", [5]string{"tempfail", "tempfail", "tempfail", "tempfail", "fail"}, "4.7.5"},
		{"tarpit.test", [5]string{"tempfail", "tempfail", "tempfail", "tempfail", "fail"}, "4.7.5"},
		{"refused.test", [5]string{"tempfail", "tempfail", "tempfail", "tempfail", "fail"}, "4.7.5"},
		{"secondmx.test", [5]string{"pass", "pass", "fail", "pass", "pass"}, "5.7.5"},
		{"implicit.test", [5]string{"pass", "fail", "fail", "pass", "fail"}, "5.7.5"},
		{"unsigned.test", [5]string{"pass", "fail", "fail", "pass", "fail"}, "5.7.5"},
		{"nullmx.test", [5]string{"fail", "fail", "fail", "fail", "fail"}, "5.1.10"},
		{"nope.test", [5]string{"fail", "fail", "fail", "fail", "fail"}, "5.1.2"},
		{"bogus.test", [5]string{"tempfail", "tempfail", "tempfail", "tempfail", "tempfail"}, "4.4.3"},
		// CN-only certificate from a sub-CA constrained to attacker.test: Postfix
		// defers at verify and secure ("permitted subtree violation"; issue 17).
		{"constrained.test", [5]string{"pass", "fail", "fail", "pass", "fail"}, "5.7.5"},
		// TLS 1.0/1.1 only (issue 13). Postfix's client runs OpenSSL at security level 0
		// up to encrypt and gets an anonymous suite (AECDH-AES256-SHA); above encrypt
		// it runs at level 1, offers no anonymous suite, and refuses the server's
		// ECDHE key exchange, signed with MD5+SHA-1 ("legacy sigalg disallowed or
		// unsupported"), TLSA records or not. RSA key exchange signs nothing: Postfix
		// delivers to legacy-rsa at every level, TLS 1.1 and all.
		{"legacy.test", [5]string{"pass", "fail", "fail", "fail", "fail"}, "5.7.5"},
		{"legacy-rsa.test", [5]string{"pass", "pass", "pass", "pass", "pass"}, ""},
	}
	var cells []cell
	for _, r := range rows {
		for i, l := range levels {
			c := cell{domain: r.domain, level: l, want: r.want[i]}
			switch {
			case c.want == "fail" && strings.HasPrefix(r.code, "4"):
				c.code = "5.7.5" // dane-only without TLSA: a TLS failure, whatever the server does
			case c.want != "pass":
				c.code = r.code
			}
			cells = append(cells, c)
		}
	}
	// Level published for the domains of the signed zone: DANE where TLSA records are
	// published (all of them in the signed zone are DNSSEC-validated), else nothing is
	// required. The four domains whose servers refuse or never answer (greet421,
	// greet450, tarpit, refused) have no published cell: published requires nothing of
	// them, like may, so tlsgate passes them, while Postfix defers for reasons that are
	// not TLS.
	for _, p := range []struct{ domain, want, code, mapWant string }{
		{"tls.test", "pass", "", "dane"},
		{"notls.test", "pass", "", "NOTFOUND"},
		{"selfsigned.test", "pass", "", "dane"},     // DANE-EE: names and dates ignored
		{"wrongname.test", "fail", "5.7.5", "dane"}, // the TLSA digest matches nothing
		{"expired.test", "pass", "", "dane"},        // DANE-EE
		{"secondmx.test", "pass", "", "dane"},       // the first MX has no TLSA: may there
		{"implicit.test", "pass", "", "NOTFOUND"},   // no TLSA for the implicit MX
		{"unsigned.test", "pass", "", "NOTFOUND"},   // insecure: no DANE
		{"nullmx.test", "fail", "5.1.10", ""},       // Postfix bounces whatever the map says
		{"nope.test", "fail", "5.1.2", ""},          // NXDOMAIN: likewise
		{"bogus.test", "tempfail", "4.4.3", "TEMP"}, // never a downgrade on a DNSSEC failure
		{"legacy.test", "fail", "5.7.5", "dane"},    // TLS 1.1, ECDHE signed with MD5+SHA-1
		{"legacy-rsa.test", "pass", "", "dane"},     // TLS 1.1, RSA key exchange
	} {
		cells = append(cells, cell{domain: p.domain, level: "published", want: p.want, code: p.code, mapWant: p.mapWant})
	}
	cells = append(cells,
		cell{domain: "pin-tls.test", level: "fingerprint", want: "pass"},
		cell{domain: "pin-selfsigned.test", level: "fingerprint", want: "pass"},
		cell{domain: "pin-wrong.test", level: "fingerprint", want: "fail", code: "5.7.5"},
		// An entry Postfix refuses (smtp_tls_policy.c: fingerprint "with no fingerprints
		// to match"): Postfix defers, whether it reads the file or tlsgate's map, which
		// serves the entry as written; never a silent downgrade to the customer's level.
		// Its MX is mx.tls.test, which passes every level: only the entry can defer it.
		cell{domain: "badpolicy.test", level: "fingerprint", want: "tempfail", code: "4.7.5", expect: "is invalid"},
		cell{domain: "pin-legacy.test", level: "fingerprint", want: "fail", code: "5.7.5", expect: "TLS 1.1 with legacy signature algorithm"},
		cell{domain: "pin-legacy-rsa.test", level: "fingerprint", want: "pass"},
		// An encrypt entry of the shared file, judged like the fingerprint cells (the
		// domain policy applies): its protocols= leaves nothing this server speaks.
		cell{domain: "protocols-legacy.test", level: "fingerprint", want: "fail", code: "5.7.5", expect: "protocols=>=TLSv1.2"},
		// servername= (issue 13): mx.sni.test picks its certificate by SNI. Without
		// SNI it presents one for another name; servername=hostname gets its own;
		// servername=other.sni.test gets a self-signed one.
		cell{domain: "sni-host.test", level: "fingerprint", entryLevel: "verify", want: "pass", expect: "mx=mx.sni.test"},
		cell{domain: "sni-none.test", level: "fingerprint", want: "fail", code: "5.7.5", expect: "default.sni.example"},
		cell{domain: "sni-other.test", level: "fingerprint", want: "fail", code: "5.7.5", expect: "not issued by a trusted authority"},
		// tafile= (issue 13): the chain must end at one of the file's trust anchors,
		// not at the CAfile's CAs; the e2e root passes, an unrelated root fails even
		// though the e2e root is in smtp_tls_CAfile; a self-signed leaf is its own
		// anchor (Postfix loads each certificate as DANE-TA and DANE-EE), names still
		// checked; a file that is not there makes the entry invalid: Postfix defers.
		cell{domain: "ta-ca.test", level: "fingerprint", entryLevel: "verify", want: "pass"},
		cell{domain: "ta-other.test", level: "fingerprint", want: "fail", code: "5.7.5", expect: "not issued by a trusted authority"},
		cell{domain: "ta-leaf.test", level: "fingerprint", entryLevel: "verify", want: "pass"},
		cell{domain: "ta-leaf-secure.test", level: "fingerprint", want: "fail", code: "5.7.5", expect: "not valid for the server's name"},
		cell{domain: "ta-missing.test", level: "fingerprint", want: "tempfail", code: "4.7.5", expect: "is invalid"},
		// mx.sts.test presents its leaf alone: an anchor need not be presented
		// (OpenSSL's DANE-TA(2) full-certificate records), and a bare public key
		// anchor that signed the leaf will do.
		cell{domain: "ta-absent.test", level: "fingerprint", entryLevel: "verify", want: "pass"},
		cell{domain: "ta-key.test", level: "fingerprint", entryLevel: "verify", want: "pass"},
	)
	return append(cells, stsCells()...)
}

func TestE2E(t *testing.T) {
	start := time.Now()
	w := newWorld(t)
	w.certificates()
	w.dnsWorld()
	w.mxPostfix()
	w.policyServer()

	// One tls_policy file for both sides: Postfix's smtp_tls_policy_maps in the oracle
	// and tlsgate's policy_files.
	policy := w.write("tls_policy", fmt.Sprintf(`# fingerprint cells, shared by the oracle and tlsgate
pin-tls.test        fingerprint match=%s
pin-selfsigned.test fingerprint
    match=%s
pin-wrong.test      fingerprint match=00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF
# invalid: Postfix refuses fingerprint without match= and defers; tlsgate tempfails
badpolicy.test      fingerprint
# TLS 1.1-only servers (issue 13): fingerprint authenticates, so OpenSSL runs at
# security level 1 and refuses the MD5+SHA-1 signature; RSA key exchange passes
pin-legacy.test     fingerprint match=%s
pin-legacy-rsa.test fingerprint match=%s
# protocols= is what Postfix offers: TLS 1.2 and up, and this server speaks 1.1 at most
protocols-legacy.test encrypt protocols=>=TLSv1.2
# servername= picks the certificate of an SNI server (Postfix sends no SNI by default)
sni-host.test       verify servername=hostname
sni-none.test       verify
sni-other.test      verify servername=other.sni.test
# tafile= replaces the CAfile's CAs with the file's trust anchors
ta-ca.test          verify tafile=%[5]s
ta-other.test       verify tafile=%[6]s
ta-leaf.test        verify tafile=%[7]s
ta-leaf-secure.test secure tafile=%[7]s
ta-missing.test     verify tafile=%[8]s
ta-absent.test      verify tafile=%[5]s
ta-key.test         verify tafile=%[9]s
[relay.e2e.test]:587 encrypt
`, w.pins["mx.tls.test"], w.pins["mx.selfsigned.test"], w.pins["mx.legacy.test"], w.pins["mx.legacy-rsa.test"],
		w.path("certs", "ca.pem"), w.path("certs", "other-ca.pem"), w.path("certs", "selfsigned.crt"), w.path("certs", "missing.pem"), w.path("certs", "ca-key.pem")), 0o644)

	oracle := w.oracle(policy)
	w.startTLSGate(policy)
	cells := matrix()
	w.levelMaps(cells, policy)
	sender := w.senderPostfix()
	t.Logf("world up in %s", time.Since(start).Round(time.Millisecond))
	// What Postfix reads from tlsgate's maps is the policy file's entry, verbatim.
	w.mapEntries(t, oracle, cells, policy)

	// The oracle delivers every cell for real, twice for a configured level: once at
	// the level as smtp_tls_security_level (the static transports), and once with the
	// level from tlsgate's socketmap (the map transports); cells at published only
	// through the map. Its verdict is the SMTP client's log line.
	var static []cell
	var envs []envelope
	for _, c := range cells {
		if c.level != "published" {
			static = append(static, c)
			envs = append(envs, envelope{senderFor(c), "oracle@" + c.domain})
		}
	}
	for _, c := range cells {
		envs = append(envs, envelope{mapSenderFor(c), "oracle@" + c.domain})
	}
	envs = append(envs, envelope{tlsrptSender, "oracle@" + tlsrptDomain})
	ids := w.submit(oracleAddr+":2525", envs)
	staticIDs, mapIDs := map[cell]string{}, map[cell]string{}
	for i, c := range static {
		staticIDs[c] = ids[i]
	}
	for i, c := range cells {
		mapIDs[c] = ids[len(static)+i]
	}
	w.ids = staticIDs

	// tlsgate's verdict, through the sending Postfix, as swaks sees it at RCPT.
	got := map[cell]string{}
	for _, c := range cells {
		t.Run(c.domain+"/"+c.level, func(t *testing.T) {
			out := swaks(t, senderAddr+":2525", senderFor(c), "user@"+c.domain)
			reply := rcptReply(out)
			status := statusOf(reply)
			got[c] = status
			if status != c.want {
				t.Errorf("RCPT reply %q: status %s, want %s\n%s", reply, status, c.want, out)
				return
			}
			if c.want == "pass" {
				w.checkHeader(t, sender, queueID(out), c)
				return
			}
			if !strings.Contains(reply, " "+c.code+" ") || !strings.Contains(reply, c.domain) {
				t.Errorf("RCPT reply %q: want enhanced code %s and the domain named", reply, c.code)
			}
			if !strings.Contains(reply, c.expect) {
				t.Errorf("RCPT reply %q: want %q in it", reply, c.expect)
			}
		})
	}

	outcomes := w.oracleOutcomes(oracle, ids)
	w.agreement(t, "Postfix at the level (smtp_tls_security_level)", static, got, outcomes, staticIDs, nil)
	answers := w.mapAnswers(t, oracle, cells)
	w.agreement(t, "Postfix with tlsgate's socketmap as smtp_tls_policy_maps", cells, got, outcomes, mapIDs, answers)
	w.versionLimits(t, oracle, cells, mapIDs)
	w.tlsrptOn37(t, oracle, outcomes[ids[len(ids)-1]])
	t.Run("learn from the oracle's log", func(t *testing.T) { w.learnFromLog(t, oracle) })

	t.Run("one message, mixed recipients", func(t *testing.T) { w.mixedMessage(t, sender) })
	t.Run("check page in chromium", func(t *testing.T) { w.checkPage(t) })
	t.Run("tlsgate killed and restarted mid-session", func(t *testing.T) { w.restartMidSession(t, policy) })
	t.Run("resolver down", func(t *testing.T) { w.resolverDown(t) })
	t.Logf("suite took %s", time.Since(start).Round(time.Second))
}

func senderFor(c cell) string {
	if c.level == "fingerprint" {
		return "someone@plain.sender.test" // the domain policy applies
	}
	return "someone@" + c.level + ".sender.test" // the customer toggle for the level
}

func statusOf(reply string) string {
	switch {
	case strings.HasPrefix(reply, "2"):
		return "pass"
	case strings.HasPrefix(reply, "4"):
		return "tempfail"
	case strings.HasPrefix(reply, "5"):
		return "fail"
	}
	return "no-reply"
}

// oracle starts the delivering Postfix: transports chosen by the sender's domain, DNSSEC
// lookups through the validating resolver.
//
//   - smtp-LEVEL (sender LEVEL.sender.test): smtp_tls_security_level = LEVEL; the
//     fingerprint cells use the default transport and the shared tls_policy file as
//     smtp_tls_policy_maps.
//   - smtp-map-LEVEL (sender LEVEL.map.sender.test) and smtp-published (sender
//     published.sender.test): smtp_tls_security_level = may and tlsgate's socketmap as
//     smtp_tls_policy_maps, so that the level is only what the map answers: the map of
//     that level (policymap_test.go), or for published the tlsgate under test with
//     socketmap.default_level: published. "may" is Postfix's level for what the map does
//     not list (NOTFOUND): published requires nothing of a domain that publishes
//     nothing, and DANE comes from the map's "dane" answer, not from the default level.
func (w *world) oracle(policy string) string {
	var master, transports strings.Builder
	master.WriteString(oracleAddr + ":2525 inet n - n - - smtpd\n")
	for _, l := range levels {
		fmt.Fprintf(&master, "smtp-%s unix - - n - - smtp -o smtp_tls_security_level=%s\n", l, l)
		fmt.Fprintf(&transports, "/@%s\\.sender\\.test$/ smtp-%s:\n", l, l)
	}
	for _, l := range mapLevels {
		fmt.Fprintf(&master, "smtp-map-%s unix - - n - - smtp -o smtp_tls_security_level=may -o smtp_tls_policy_maps=socketmap:inet:%s:QUERY\n", l, levelMapAddr(l))
		fmt.Fprintf(&transports, "/@%s\\.map\\.sender\\.test$/ smtp-map-%s:\n", l, l)
	}
	fmt.Fprintf(&master, "smtp-published unix - - n - - smtp -o smtp_tls_security_level=may -o smtp_tls_policy_maps=socketmap:inet:%s:QUERY\n", publishedMapAddr)
	transports.WriteString("/@published\\.sender\\.test$/ smtp-published:\n")
	fmt.Fprintf(&master, "smtp-tlsrpt unix - - n - - smtp -o smtp_tls_security_level=may -o smtp_tls_policy_maps=socketmap:inet:%s:QUERYwithTLSRPT\n", publishedMapAddr)
	transports.WriteString("/@tlsrpt\\.sender\\.test$/ smtp-tlsrpt:\n")
	w.write("pf-oracle-transport", transports.String(), 0o644)
	main := fmt.Sprintf(`smtp_dns_support_level = dnssec
smtp_host_lookup = dns
smtp_tls_CAfile = %s
smtp_tls_loglevel = 1
smtp_tls_policy_maps = texthash:%s
sender_dependent_default_transport_maps = regexp:%s
smtp_connect_timeout = 5s
smtp_helo_timeout = 5s
smtp_starttls_timeout = 10s
smtp_address_preference = ipv4
default_destination_concurrency_limit = 50
`, w.path("certs", "ca.pem"), policy, w.path("pf-oracle-transport"))
	return w.postfixInstance("oracle", main, master.String(), resolverAddr)
}

// senderPostfix is the Postfix under test: smtpd_milters -> tlsgate; accepted mail is
// held so that its headers can be read and nothing is delivered.
func (w *world) senderPostfix() string {
	main := fmt.Sprintf(`smtpd_milters = inet:%s:10025
milter_default_action = tempfail
milter_command_timeout = 30s
smtpd_end_of_data_restrictions = check_client_access static:HOLD
`, milterAddr)
	base := w.postfixInstance("sender", main, senderAddr+":2525 inet n - n - - smtpd\n", "")
	w.waitFor("sending Postfix", func() error {
		c, err := net.DialTimeout("tcp", senderAddr+":2525", time.Second)
		if err == nil {
			c.Close()
		}
		return err
	})
	return base
}

// startTLSGate builds and starts tlsgate with a customer per level and the shared policy
// file, and its socketmap at publishedMapAddr (default level published) for the oracle.
func (w *world) startTLSGate(policy string) {
	if w.bin == "" {
		w.bin = w.path("tlsgate")
		build := exec.Command("go", "build", "-o", w.bin, "../../cmd/tlsgate")
		if out, err := build.CombinedOutput(); err != nil {
			w.t.Fatalf("go build: %v\n%s", err, out)
		}
		var customers strings.Builder
		for _, l := range append(levels[:len(levels):len(levels)], "published") {
			fmt.Fprintf(&customers, "  - name: %s\n    senders: [%s.sender.test]\n    level: %s\n", l, l, l)
		}
		w.write("tlsgate.yaml", fmt.Sprintf(`milter:
  listen: inet:%s:10025
  rcpt_timeout: 15s
dns:
  resolver: %s:53
  timeout: 3s
probe:
  helo: probe.e2e.test
  timeout: 4s
  ca_file: %s
  allow_networks: [127.0.0.0/8]
mta_sts:
  timeout: 5s
log:
  level: debug
socketmap:
  listen: inet:%s
  default_level: published
web:
  listen: %s
  tokens_file: %s
  rate_per_minute: 600
policy_files: [%s]
customers:
%s`, milterAddr, resolverAddr, w.path("certs", "ca.pem"), publishedMapAddr, webAddr, w.webTokensFile(), policy, customers.String()), 0o644)
	}
	w.gate = w.start("tlsgate", w.bin, "serve", "--config", w.path("tlsgate.yaml"))
	w.waitFor("tlsgate", func() error {
		for _, addr := range []string{milterAddr + ":10025", publishedMapAddr, webAddr} {
			c, err := net.DialTimeout("tcp", addr, time.Second)
			if err != nil {
				return err
			}
			c.Close()
		}
		return nil
	})
}

func (w *world) killTLSGate() {
	w.gate.Process.Signal(syscall.SIGKILL)
	w.gate.Wait()
}

// checkHeader reads the held message and checks its audit header.
func (w *world) checkHeader(t *testing.T, sender, id string, c cell) {
	t.Helper()
	if id == "" {
		t.Error("accepted message was not queued")
		return
	}
	out, err := exec.Command("postcat", "-c", filepath.Join(sender, "conf"), "-h", "-q", id).CombinedOutput()
	if err != nil {
		t.Errorf("postcat %s: %v\n%s", id, err, out)
		return
	}
	level := c.level
	if c.entryLevel != "" {
		level = c.entryLevel
	}
	for _, want := range []string{fmt.Sprintf("TLSGate-Verdict: %s; level=%s; status=pass;", c.domain, level), c.expect} {
		if !strings.Contains(string(out), want) {
			t.Errorf("held message %s has no %q:\n%s", id, want, out)
		}
	}
}

var deliveryRE = regexp.MustCompile(`postfix/[a-z-]+/?[a-z]*\[\d+\]: ([0-9A-Za-z]+): to=<[^>]*>,.* status=(sent|deferred|bounced) \((.*)\)$`)

var relayRE = regexp.MustCompile(`: ([0-9A-Za-z]+): to=<[^>]*>, relay=([^\[, ]+)`)

// versionLimits asserts the cells' Postfix-version limits: the map-driven delivery went
// to the host the limit names (a newer Postfix that does better fails this, and the
// limit must go).
func (w *world) versionLimits(t *testing.T, oracle string, cells []cell, ids map[cell]string) {
	b, err := os.ReadFile(filepath.Join(oracle, "maillog"))
	if err != nil {
		t.Fatal(err)
	}
	relays := map[string]string{}
	for _, m := range relayRE.FindAllStringSubmatch(string(b), -1) {
		relays[m[1]] = m[2] // the last attempt
	}
	for _, c := range cells {
		if c.limit.relay == "" {
			continue
		}
		if got := relays[ids[c]]; got != c.limit.relay {
			t.Errorf("%s/%s: Postfix delivered through %q, not %q as the documented Postfix-version limit says: %s",
				c.domain, c.level, got, c.limit.relay, c.limit.why)
			continue
		}
		t.Logf("Postfix-version limit %s/%s: delivered through %s: %s", c.domain, c.level, c.limit.relay, c.limit.why)
	}
}

// oracleOutcomes waits for the oracle's first delivery attempt of every message.
func (w *world) oracleOutcomes(base string, ids []string) map[string][2]string {
	w.t.Helper()
	want := map[string]bool{}
	for _, id := range ids {
		want[id] = true
	}
	outcomes := map[string][2]string{}
	deadline := time.Now().Add(90 * time.Second)
	for time.Now().Before(deadline) {
		f, err := os.Open(filepath.Join(base, "maillog"))
		if err == nil {
			sc := bufio.NewScanner(f)
			for sc.Scan() {
				if m := deliveryRE.FindStringSubmatch(sc.Text()); m != nil && want[m[1]] {
					if _, seen := outcomes[m[1]]; !seen {
						outcomes[m[1]] = [2]string{m[2], m[3]}
					}
				}
			}
			f.Close()
		}
		if len(outcomes) == len(want) {
			return outcomes
		}
		time.Sleep(500 * time.Millisecond)
	}
	w.t.Errorf("oracle decided %d of %d messages in time", len(outcomes), len(want))
	return outcomes
}

// agreement prints the matrix of one way of delivering (ids: the oracle's queue id per
// cell; answers, when set: what tlsgate's socketmap answered Postfix for the cell) and
// fails on any cell where tlsgate and the oracle disagree: pass <-> sent, fail/tempfail
// <-> deferred/bounced. A cell with a documented deviation must disagree, the way its
// explanation says; if it agrees, the explanation is stale and the cell fails too.
//
// Security first: whatever a cell documents, Postfix must never deliver a message
// whose recipient tlsgate refused at RCPT time.
func (w *world) agreement(t *testing.T, title string, cells []cell, got map[cell]string, outcomes map[string][2]string, ids map[cell]string, answers map[cell]string) {
	var b strings.Builder
	fmt.Fprintf(&b, "\n%s\n%-22s %-12s %-9s %-9s %-20s", title, "domain", "level", "tlsgate", "postfix", "agree")
	if answers != nil {
		b.WriteString(" map answer")
	}
	b.WriteString("\n")
	cells = slices.Clone(cells)
	sort.SliceStable(cells, func(i, j int) bool { return cells[i].domain < cells[j].domain })
	agree, deviations, total := 0, 0, 0
	var disagreements, explained, breaches []string
	for _, c := range cells {
		o, ok := outcomes[ids[c]]
		oracle := o[0]
		if !ok {
			oracle = "unknown"
		}
		same := (got[c] == "pass") == (oracle == "sent")
		total++
		mark := "yes"
		if got[c] != "pass" && oracle == "sent" {
			breaches = append(breaches, fmt.Sprintf("%s/%s: tlsgate answered RCPT with %s, Postfix delivered (%s)", c.domain, c.level, got[c], o[1]))
		}
		switch {
		case oracle == "unknown":
			mark = "NO"
			disagreements = append(disagreements, fmt.Sprintf("%s/%s: tlsgate %s, postfix did not decide", c.domain, c.level, got[c]))
		case c.deviation == "" && same:
			agree++
		case c.deviation == "":
			mark = "NO"
			disagreements = append(disagreements, fmt.Sprintf("%s/%s: tlsgate %s, postfix %s (%s)", c.domain, c.level, got[c], oracle, o[1]))
		case !same:
			mark = "known deviation"
			deviations++
			explained = append(explained, fmt.Sprintf("%s/%s: tlsgate %s, postfix %s (%s): %s", c.domain, c.level, got[c], oracle, o[1], c.deviation))
		default:
			mark = "NO (deviation gone)"
			disagreements = append(disagreements, fmt.Sprintf("%s/%s: tlsgate %s and postfix %s agree, but the cell documents a deviation: %s", c.domain, c.level, got[c], oracle, c.deviation))
		}
		fmt.Fprintf(&b, "%-22s %-12s %-9s %-9s %-20s", c.domain, c.level, got[c], oracle, mark)
		if answers != nil {
			b.WriteString(" " + answers[c])
		}
		b.WriteString("\n")
	}
	fmt.Fprintf(&b, "agreement: %d/%d cells, %d known deviations, %d delivered against a refusal\n", agree, total, deviations, len(breaches))
	for _, e := range explained {
		fmt.Fprintf(&b, "  known deviation %s\n", e)
	}
	t.Log(b.String())
	for _, br := range breaches {
		t.Errorf("%s: DELIVERED AGAINST tlsgate's REFUSAL: %s", title, br)
	}
	for _, d := range disagreements {
		t.Errorf("%s: verdict disagrees with Postfix: %s", title, d)
	}
}

// mixedMessage: one message, three recipients with different verdicts: the rejected one
// is refused alone, the message is accepted for the others with one header per domain.
func (w *world) mixedMessage(t *testing.T, sender string) {
	c, err := smtpDial(senderAddr + ":2525")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.cmd(t, 250, "EHLO client.e2e.test")
	c.cmd(t, 250, "MAIL FROM:<someone@encrypt.sender.test>")
	c.cmd(t, 250, "RCPT TO:<a@tls.test>")
	if code, msg := c.try("RCPT TO:<b@notls.test>"); code != 550 || !strings.Contains(msg, "5.7.5") {
		t.Errorf("notls.test: %d %s; want 550 5.7.5", code, msg)
	}
	c.cmd(t, 250, "RCPT TO:<c@secondmx.test>")
	c.cmd(t, 354, "DATA")
	_, msg := c.try("Subject: mixed\r\n\r\nhello\r\n.")
	id := queueID(msg)
	c.cmd(t, 221, "QUIT")
	out, err := exec.Command("postcat", "-c", filepath.Join(sender, "conf"), "-h", "-q", id).CombinedOutput()
	if err != nil {
		t.Fatalf("postcat %q: %v\n%s", id, err, out)
	}
	for _, want := range []string{"TLSGate-Verdict: tls.test; level=encrypt; status=pass;", "TLSGate-Verdict: secondmx.test; level=encrypt; status=pass;"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("held message lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(string(out), "notls.test") {
		t.Errorf("rejected recipient's domain in the headers:\n%s", out)
	}
}

// restartMidSession: tlsgate dies during an SMTP session; Postfix's milter_default_action
// (tempfail) answers; a new tlsgate serves the next session. Nothing is accepted unchecked.
func (w *world) restartMidSession(t *testing.T, policy string) {
	c, err := smtpDial(senderAddr + ":2525")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.cmd(t, 250, "EHLO client.e2e.test")
	c.cmd(t, 250, "MAIL FROM:<someone@encrypt.sender.test>")
	c.cmd(t, 250, "RCPT TO:<a@tls.test>")
	w.killTLSGate()
	if code, msg := c.try("RCPT TO:<b@tls.test>"); code/100 != 4 {
		t.Errorf("RCPT with tlsgate dead: %d %s; want 4xx (milter_default_action = tempfail)", code, msg)
	}
	c.try("QUIT")

	// Killed between sessions: Postfix cannot reach the milter and tempfails the session
	// (at CONNECT, EHLO, MAIL or RCPT), nothing is queued unchecked.
	out := swaks(t, senderAddr+":2525", "someone@encrypt.sender.test", "user@tls.test")
	if r := firstRefusal(out); !strings.HasPrefix(r, "4") || queueID(out) != "" {
		t.Errorf("with tlsgate down: first refusal %q, queued %q; want 4xx and nothing queued\n%s", r, queueID(out), out)
	}
	w.startTLSGate(policy)
	out = swaks(t, senderAddr+":2525", "someone@encrypt.sender.test", "user@tls.test")
	if r := rcptReply(out); !strings.HasPrefix(r, "250") {
		t.Errorf("after restart: %q; want 250\n%s", r, out)
	}
}

// resolverDown: with the validating resolver gone, a domain not in the cache tempfails
// with 4.4.3, never passes.
func (w *world) resolverDown(t *testing.T) {
	for _, p := range w.procs {
		if filepath.Base(p.Path) == "unbound" && p.ProcessState == nil {
			p.Process.Signal(syscall.SIGTERM)
			p.Wait()
		}
	}
	out := swaks(t, senderAddr+":2525", "someone@encrypt.sender.test", "user@unsigned.test") // never asked at level encrypt after restart
	if r := rcptReply(out); !strings.HasPrefix(r, "451 4.4.3") {
		t.Errorf("resolver down: %q; want 451 4.4.3\n%s", r, out)
	}
}

// smtpConn is a minimal SMTP client for scripted sessions.
type smtpConn struct {
	*textproto.Conn
}

func smtpDial(addr string) (*smtpConn, error) {
	nc, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return nil, err
	}
	nc.SetDeadline(time.Now().Add(60 * time.Second))
	c := &smtpConn{textproto.NewConn(nc)}
	if _, _, err := c.ReadResponse(220); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

func (c *smtpConn) try(line string) (int, string) {
	if err := c.PrintfLine("%s", line); err != nil {
		return 0, err.Error()
	}
	code, msg, _ := c.ReadResponse(0)
	return code, msg
}

func (c *smtpConn) cmd(t *testing.T, want int, line string) {
	t.Helper()
	if code, msg := c.try(line); code != want {
		t.Fatalf("%s: %d %s; want %d", line, code, msg, want)
	}
}
