//go:build e2e

package e2e

// Next hops: recipients that Postfix delivers somewhere else than their domain's MX
// hosts, through transport_maps (smtp:[host]:port, smtp:[host], smtp:domain,
// relay:[host]:port), relay_transport, relayhost and sender_dependent_relayhost_maps. The sending
// Postfix (smtpd_milters -> tlsgate) and the oracle Postfix read the same tables; the
// test records what the sending Postfix sends the milter in {rcpt_host} (its verbose
// log, debug_peer_list), what tlsgate answers at RCPT, and what the oracle does when it
// delivers the same envelope at smtp_tls_security_level = encrypt (the customer level
// of the senders, someone@encrypt.sender.test) with the shared tls_policy file as
// smtp_tls_policy_maps. Gateways listen on port 2526 of the MX addresses
// (mx.tls.test: STARTTLS with the test CA's certificate; mx.notls.test: no STARTTLS).

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const (
	hopClient = "127.0.0.6" // source address of the test's SMTP sessions (debug_peer_list)
	hopSender = "someone@encrypt.sender.test"
	// hopSDSender is routed by sender_dependent_relayhost_maps; its domain still makes
	// it the encrypt customer.
	hopSDSender = "routed@encrypt.sender.test"
)

// hopCell is one recipient routed to a next hop.
type hopCell struct {
	name, from, rcpt string
	route            string // the table line that routes it, for the report
	rcptHost         string // {rcpt_host} Postfix sends the milter (observed)
	mailer           string // {rcpt_mailer}
	want             string // tlsgate's verdict: pass, fail
	level            string // the level judged (the customer's encrypt, or a stricter next-hop entry)
}

func TestNextHops(t *testing.T) {
	start := time.Now()
	w := newWorld(t)
	w.certificates()
	w.dnsWorld()
	w.mxPostfix()
	gateways := fmt.Sprintf(`127.0.1.1:2526 inet n - n - - smtpd -o myhostname=mx.tls.test -o smtpd_tls_security_level=may -o smtpd_tls_cert_file=%s -o smtpd_tls_key_file=%s
127.0.1.2:2526 inet n - n - - smtpd -o myhostname=mx.notls.test -o smtpd_tls_security_level=none
127.0.1.3:2526 inet n - n - - smtpd -o myhostname=mx.selfsigned.test -o smtpd_tls_security_level=may -o smtpd_tls_cert_file=%s -o smtpd_tls_key_file=%s
`, w.path("certs", "good.crt"), w.path("certs", "good.key"), w.path("certs", "selfsigned.crt"), w.path("certs", "selfsigned.key"))
	w.postfixInstance("gw", "default_transport = discard\nsmtpd_tls_loglevel = 1\n", gateways, "")

	// The same tables for both Postfix instances.
	transport := w.write("transport", `# transport(5): recipient address -> transport:nexthop
hopfail@tls.test      smtp:[mx.notls.test]:2526
hoppass@notls.test    smtp:[mx.tls.test]:2526
bracket@notls.test    smtp:[mx.tls.test]
bracketfail@tls.test  smtp:[mx.notls.test]
domhop@tls.test       smtp:notls.test
domhoppass@notls.test smtp:tls.test
relaytr@notls.test    relay:[mx.tls.test]:2526
pinned@selfsigned.test smtp:[mx.tls.test]
selfsigned@tls.test   smtp:[mx.selfsigned.test]:2526
daneee@notls.test     smtp:[mx.selfsigned.test]
danebad@tls.test      smtp:[mx.wrongname.test]
`, 0o644)
	sdrh := w.write("sender_relay", hopSDSender+" [mx.notls.test]:2526\n", 0o644)
	policy := w.write("tls_policy", `# next-hop entries: looked up by the next hop, verbatim
[mx.tls.test]:2526 verify
[mx.selfsigned.test]:2526 verify
# DANE at a [host] next hop: TLSA at _25._tcp.host, the host's A record is signed
[mx.selfsigned.test] dane-only
[mx.wrongname.test] dane-only
# a recipient domain's entry that must not apply when its mail goes elsewhere: a pin
# nothing matches (Postfix would defer at it)
selfsigned.test fingerprint match=00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF
`, 0o644)
	routing := []string{
		"transport_maps = texthash:" + transport,
		"relayhost = [mx.tls.test]:2526",
		"sender_dependent_relayhost_maps = texthash:" + sdrh,
		// relay.e2e.test has no DNS records: only the relay transport's next hop counts.
		"relay_domains = relay.e2e.test",
		"relay_transport = relay:[mx.notls.test]:2526",
	}
	w.postconf = map[string][]string{"sender": append(routing, "debug_peer_list = "+hopClient)}

	cells := []hopCell{
		{"transport smtp:[host]:port: own MX passes, next hop fails", hopSender, "hopfail@tls.test",
			"smtp:[mx.notls.test]:2526", "[mx.notls.test]:2526", "smtp", "fail", "encrypt"},
		{"transport smtp:[host]:port: own MX fails, next hop passes (its entry: verify)", hopSender, "hoppass@notls.test",
			"smtp:[mx.tls.test]:2526", "[mx.tls.test]:2526", "smtp", "pass", "verify"},
		{"transport smtp:[host]:port: its entry (verify) fails where the customer's encrypt passes", hopSender, "selfsigned@tls.test",
			"smtp:[mx.selfsigned.test]:2526", "[mx.selfsigned.test]:2526", "smtp", "fail", "verify"},
		{"transport smtp:[host]", hopSender, "bracket@notls.test",
			"smtp:[mx.tls.test]", "[mx.tls.test]", "smtp", "pass", "encrypt"},
		{"transport smtp:[host] failing", hopSender, "bracketfail@tls.test",
			"smtp:[mx.notls.test]", "[mx.notls.test]", "smtp", "fail", "encrypt"},
		{"transport smtp:[host] at dane-only: DANE-EE matches the self-signed certificate", hopSender, "daneee@notls.test",
			"smtp:[mx.selfsigned.test]", "[mx.selfsigned.test]", "smtp", "pass", "dane-only"},
		{"transport smtp:[host] at dane-only: TLSA digest matches nothing", hopSender, "danebad@tls.test",
			"smtp:[mx.wrongname.test]", "[mx.wrongname.test]", "smtp", "fail", "dane-only"},
		{"transport smtp:domain: the domain's MX hosts", hopSender, "domhop@tls.test",
			"smtp:notls.test", "notls.test", "smtp", "fail", "encrypt"},
		{"transport smtp:domain passing", hopSender, "domhoppass@notls.test",
			"smtp:tls.test", "tls.test", "smtp", "pass", "encrypt"},
		{"transport relay:[host]:port", hopSender, "relaytr@notls.test",
			"relay:[mx.tls.test]:2526", "[mx.tls.test]:2526", "relay", "pass", "verify"},
		{"recipient domain's entry not used: routed elsewhere", hopSender, "pinned@selfsigned.test",
			"smtp:[mx.tls.test]", "[mx.tls.test]", "smtp", "pass", "encrypt"},
		{"relay_domains with relay_transport relay:[host]:port", hopSender, "rt@relay.e2e.test",
			"relay_transport = relay:[mx.notls.test]:2526", "[mx.notls.test]:2526", "relay", "fail", "encrypt"},
		{"relayhost: own MX fails, relay passes", hopSender, "rh@notls.test",
			"relayhost = [mx.tls.test]:2526", "[mx.tls.test]:2526", "smtp", "pass", "verify"},
		{"sender_dependent_relayhost_maps: own MX passes, relay fails", hopSDSender, "sd@tls.test",
			"sender_dependent_relayhost_maps: " + hopSDSender + " [mx.notls.test]:2526", "[mx.notls.test]:2526", "smtp", "fail", "encrypt"},
	}

	oracle := w.postfixInstance("oracle", fmt.Sprintf(`smtp_dns_support_level = dnssec
smtp_host_lookup = dns
smtp_tls_CAfile = %s
smtp_tls_loglevel = 1
smtp_tls_security_level = encrypt
smtp_tls_policy_maps = texthash:%s
smtp_connect_timeout = 5s
smtp_helo_timeout = 5s
smtp_address_preference = ipv4
`, w.path("certs", "ca.pem"), policy)+strings.Join(routing, "\n")+"\n",
		oracleAddr+":2525 inet n - n - - smtpd\n", resolverAddr)
	w.startTLSGate(policy)
	sender := w.senderPostfix()
	maillog := filepath.Join(sender, "maillog")
	t.Logf("postfix %s; world up in %s", strings.TrimSpace(w.run("postconf", "-c", filepath.Join(sender, "conf"), "-h", "mail_version")),
		time.Since(start).Round(time.Millisecond))

	var envs []envelope
	for _, c := range cells {
		envs = append(envs, envelope{c.from, c.rcpt})
	}
	ids := w.submit(oracleAddr+":2525", envs)

	got := map[cell]string{}
	idsByCell := map[cell]string{}
	var asCells []cell
	for i, c := range cells {
		key := cell{domain: c.rcpt, level: c.level}
		asCells = append(asCells, key)
		idsByCell[key] = ids[i]
		t.Run(c.name, func(t *testing.T) {
			gateLog := newTail(w.path("tlsgate.log"))
			out := swaks(t, senderAddr+":2525", c.from, c.rcpt, "--local-interface", hopClient)
			reply := rcptReply(out)
			got[key] = statusOf(reply)
			m := sentMacros(t, maillog, c.rcpt)
			t.Logf("%s (%s): Postfix sent {rcpt_host}=%s {rcpt_mailer}=%s; tlsgate: %s", c.rcpt, c.route, m["{rcpt_host}"], m["{rcpt_mailer}"], reply)
			if m["{rcpt_host}"] != c.rcptHost || m["{rcpt_mailer}"] != c.mailer {
				t.Errorf("Postfix sent {rcpt_host}=%q {rcpt_mailer}=%q; want %q, %q", m["{rcpt_host}"], m["{rcpt_mailer}"], c.rcptHost, c.mailer)
			}
			if got[key] != c.want {
				t.Errorf("RCPT reply %q: %s; want %s\n%s", reply, got[key], c.want, out)
			}
			for _, line := range gateLog.lines() {
				if !strings.Contains(line, " msg=rcpt ") {
					continue
				}
				if !strings.Contains(line, " next_hop="+c.rcptHost) || !strings.Contains(line, " tls_level="+c.level+" ") {
					t.Errorf("decision line without next_hop=%s and tls_level=%s: %s", c.rcptHost, c.level, line)
				}
			}
			if got[key] == "pass" && strings.HasPrefix(c.rcptHost, "[") {
				held, err := exec.Command("postcat", "-c", filepath.Join(sender, "conf"), "-h", "-q", queueID(out)).CombinedOutput()
				if err != nil || !strings.Contains(string(held), "; next_hop="+c.rcptHost+"; mx=") {
					t.Errorf("held message: no next_hop=%s in the audit header (%v):\n%s", c.rcptHost, err, held)
				}
			}
		})
	}
	outcomes := w.oracleOutcomes(oracle, ids)
	w.agreement(t, "next hops: Postfix at encrypt with the same transport_maps, relayhost, sender_dependent_relayhost_maps and tls_policy",
		asCells, got, outcomes, idsByCell, nil)
}
