//go:build e2e

package e2e

// tlsgate as Postfix's TLS policy table (smtp_tls_policy_maps = socketmap:..., Postfix's
// socketmap_table(5)): the oracle's delivery side reads the level of a cell from tlsgate
// instead of from its own copy of the policy or from a second resolver daemon.
//
//   - published: the tlsgate under test also answers the socketmap (publishedMapAddr,
//     socketmap.default_level: published), from the same resolver and the same cache
//     as its RCPT verdicts. The oracle's smtp-published transport is the drop-in setup
//     of postfix-tlspol: smtp_tls_security_level = may, the map decides.
//   - each configured level L: one more `tlsgate serve` (levelMapAddr(L)) whose
//     policy_files lists every test domain at L (the fingerprint one reads the shared
//     tls_policy file, match= attributes included); the oracle's smtp-map-L transport
//     delivers every cell of level L a second time with only the map's answer for a
//     level. What the map answers for each domain must be the file's entry as Postfix
//     itself reads it (texthash), checked with postmap -q.

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

const (
	// publishedMapAddr is the socketmap of the tlsgate under test (milterAddr).
	publishedMapAddr = milterAddr + ":8642"
	// levelMapIP holds the socketmaps of the per-level tlsgate instances, ports
	// levelMapPort, levelMapPort+1, ... in the order of mapLevels.
	levelMapIP   = "127.0.0.8"
	levelMapPort = 8643
)

// mapLevels are the configured levels delivered through a tlsgate socketmap.
var mapLevels = []string{"encrypt", "fingerprint", "verify", "secure", "dane", "dane-only"}

func levelMapAddr(level string) string {
	i := slices.Index(mapLevels, level)
	if i < 0 {
		panic("no socketmap for level " + level)
	}
	return fmt.Sprintf("%s:%d", levelMapIP, levelMapPort+i)
}

// mapSenderFor is the oracle sender whose transport reads cell c's level from tlsgate's
// socketmap.
func mapSenderFor(c cell) string {
	if c.level == "published" {
		return senderFor(c) // smtp-published
	}
	return "someone@" + c.level + ".map.sender.test"
}

// levelPolicy is the policy file of level's socketmap instance. For fingerprint it is
// the shared tls_policy file (the pins); for the other levels one entry per domain of
// the matrix at that level.
func (w *world) levelPolicy(cells []cell, level, shared string) string {
	if level == "fingerprint" {
		return shared
	}
	var b strings.Builder
	fmt.Fprintf(&b, "# every test domain at %s: the oracle's smtp-map-%s reads it through tlsgate\n", level, level)
	for _, c := range cells {
		if c.level == level {
			fmt.Fprintf(&b, "%-22s %s\n", c.domain, level)
		}
	}
	return w.write("tls_policy-"+level, b.String(), 0o644)
}

// levelMaps starts one tlsgate per configured level, answering only the socketmap (its
// milter listens on a unix socket nobody uses), and waits until they listen. They are
// stopped by PID with the rest of the world.
func (w *world) levelMaps(cells []cell, shared string) {
	w.t.Helper()
	for _, l := range mapLevels {
		conf := w.write("tlsgate-map-"+l+".yaml", fmt.Sprintf(`milter:
  listen: unix:%s
dns:
  resolver: %s:53
  timeout: 3s
probe:
  helo: probe.e2e.test
  timeout: 4s
  ca_file: %s
  allow_networks: [127.0.0.0/8]
log:
  level: debug
socketmap:
  listen: inet:%s
policy_files: [%s]
`, w.path("map-"+l+".milter"), resolverAddr, w.path("certs", "ca.pem"), levelMapAddr(l), w.levelPolicy(cells, l, shared)), 0o644)
		w.start("tlsgate-map-"+l, w.bin, "serve", "--config", conf)
	}
	w.waitFor("tlsgate socketmaps", func() error {
		for _, l := range mapLevels {
			if err := dialClose(levelMapAddr(l)); err != nil {
				return err
			}
		}
		return nil
	})
}

// postmapQuery asks Postfix's postmap for keys in table, one process per key list
// ("postmap -q -"), and returns the values found. A lookup error (TEMP, PERM,
// TIMEOUT from a socketmap) is fatal to postmap and fails the test.
func (w *world) postmapQuery(t *testing.T, oracle, table string, keys []string) map[string]string {
	t.Helper()
	cmd := exec.Command("postmap", "-c", filepath.Join(oracle, "conf"), "-q", "-", table)
	cmd.Stdin = strings.NewReader(strings.Join(keys, "\n") + "\n")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	// postmap -q - exits 1 when a key is not found; a fatal error says so on stderr.
	if err != nil && stderr.Len() > 0 {
		t.Fatalf("postmap -q - %s: %v\n%s", table, err, stderr.String())
	}
	found := map[string]string{}
	for _, line := range strings.Split(strings.TrimRight(string(out), "\n"), "\n") {
		if k, v, ok := strings.Cut(line, "\t"); ok {
			found[k] = v
		}
	}
	return found
}

// mapEntries checks that each socketmap answers, for every domain of its policy file,
// exactly what Postfix itself reads from that file (texthash: the rest of the logical
// line, continuation lines joined, inner white space kept), attributes included: the level
// maps for their levels, and the map of the tlsgate under test for the shared file's
// entries (a configured entry wins over socketmap.default_level), the "[host]:port"
// next-hop key included.
func (w *world) mapEntries(t *testing.T, oracle string, cells []cell, shared string) {
	t.Helper()
	check := func(table, file string, keys []string) {
		want := w.postmapQuery(t, oracle, "texthash:"+file, keys)
		got := w.postmapQuery(t, oracle, table, keys)
		for _, k := range keys {
			if want[k] == "" {
				t.Errorf("texthash:%s has no entry for %s", file, k)
				continue
			}
			if got[k] != want[k] {
				t.Errorf("%s answers %q for %s; the policy file says %q", table, got[k], k, want[k])
			}
		}
	}
	for _, l := range mapLevels {
		var keys []string
		for _, c := range cells {
			if c.level == l {
				keys = append(keys, c.domain)
			}
		}
		check("socketmap:inet:"+levelMapAddr(l)+":QUERY", w.levelPolicy(cells, l, shared), keys)
	}
	check("socketmap:inet:"+publishedMapAddr+":QUERY", shared,
		[]string{"pin-tls.test", "pin-selfsigned.test", "pin-wrong.test", "badpolicy.test", "[relay.e2e.test]:587"})
}

// mapAnswers returns what the maps answer Postfix for every cell's domain now: for a
// configured level its map's entry, for published the tlsgate under test's answer
// ("OK value", "NOTFOUND" or "TEMP ..." as postmap reports it), and checks the first
// word of the published answers against the cells' mapWant.
func (w *world) mapAnswers(t *testing.T, oracle string, cells []cell) map[cell]string {
	t.Helper()
	answers := map[cell]string{}
	byLevel := map[string][]string{}
	for _, c := range cells {
		if c.level != "published" {
			byLevel[c.level] = append(byLevel[c.level], c.domain)
		}
	}
	found := map[string]map[string]string{}
	for l, keys := range byLevel {
		found[l] = w.postmapQuery(t, oracle, "socketmap:inet:"+levelMapAddr(l)+":QUERY", keys)
	}
	for _, c := range cells {
		if c.level != "published" {
			answers[c] = found[c.level][c.domain]
			continue
		}
		// One process per key: a TEMP answer is fatal to postmap.
		out, err := exec.Command("postmap", "-c", filepath.Join(oracle, "conf"), "-q", c.domain,
			"socketmap:inet:"+publishedMapAddr+":QUERY").CombinedOutput()
		text := strings.TrimSpace(string(out))
		var a string
		switch {
		case err == nil:
			a = text
		case text == "":
			a = "NOTFOUND"
		default:
			// "postmap: warning: ... socketmap server temporary error: REASON" and
			// "postmap: fatal: table ...: query error: ...": Postfix defers.
			a = "TEMP"
			if _, reason, ok := strings.Cut(text, "temporary error: "); ok {
				a += " " + strings.SplitN(reason, "\n", 2)[0]
			} else {
				a += " (" + strings.ReplaceAll(text, "\n", " ") + ")"
			}
		}
		answers[c] = a
		if c.mapWant != "" && strings.Fields(a + " x")[0] != c.mapWant {
			t.Errorf("%s/published: tlsgate's socketmap answers %q; want %s", c.domain, a, c.mapWant)
		}
	}
	return answers
}

// envelope is one message to submit.
type envelope struct{ from, to string }

// submit queues one message per envelope at addr in one SMTP session and returns the
// queue ids in order (a session per message, as swaks, takes seconds for the matrix).
func (w *world) submit(addr string, envs []envelope) []string {
	w.t.Helper()
	c, err := smtpDial(addr)
	if err != nil {
		w.t.Fatalf("submit: %v", err)
	}
	defer c.Close()
	if code, msg := c.try("EHLO client.e2e.test"); code != 250 {
		w.t.Fatalf("submit: EHLO: %d %s", code, msg)
	}
	ids := make([]string, len(envs))
	for i, e := range envs {
		for _, step := range []struct {
			line string
			want int
		}{
			{"MAIL FROM:<" + e.from + ">", 250},
			{"RCPT TO:<" + e.to + ">", 250},
			{"DATA", 354},
			{"Subject: tlsgate e2e\r\nX-Cell: " + e.from + " " + e.to + "\r\n\r\nhello\r\n.", 250},
		} {
			code, msg := c.try(step.line)
			if code != step.want {
				w.t.Fatalf("submit %s -> %s: %q: %d %s", e.from, e.to, step.line, code, msg)
			}
			if step.want == 250 && strings.HasPrefix(step.line, "Subject:") {
				if ids[i] = queueID(msg); ids[i] == "" {
					w.t.Fatalf("submit %s -> %s: no queue id in %q", e.from, e.to, msg)
				}
			}
		}
	}
	c.try("QUIT")
	return ids
}

func dialClose(addr string) error {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	return c.Close()
}

// The map QUERYwithTLSRPT adds the TLSRPT attributes of Postfix 3.10+ (policy_type,
// policy_domain, mx_host_pattern, policy_string) to an MTA-STS answer.
const (
	tlsrptSender = "someone@tlsrpt.sender.test" // the oracle's smtp-tlsrpt transport
	tlsrptDomain = "enforce.sts.test"
)

// tlsrptOn37: Postfix before 3.10 knows no TLSRPT attributes and refuses the whole
// entry ("invalid attribute name", smtp_tls_policy.c), so QUERYwithTLSRPT defers every
// MTA-STS domain there: never a downgrade, but it needs Postfix 3.10+ (use QUERY
// before). From 3.10 on the message must be delivered, as through QUERY.
func (w *world) tlsrptOn37(t *testing.T, oracle string, outcome [2]string) {
	version := strings.TrimSpace(w.run("postconf", "-d", "-h", "mail_version"))
	var major, minor int
	fmt.Sscanf(version, "%d.%d", &major, &minor)
	log, _ := os.ReadFile(filepath.Join(oracle, "maillog"))
	if major > 3 || major == 3 && minor >= 10 {
		if outcome[0] != "sent" {
			t.Errorf("Postfix %s, QUERYwithTLSRPT, %s: %s (%s); want sent", version, tlsrptDomain, outcome[0], outcome[1])
		}
		return
	}
	if outcome[0] != "deferred" || !strings.Contains(string(log), `invalid attribute name: "policy_type"`) {
		t.Errorf("Postfix %s, QUERYwithTLSRPT, %s: %s (%s); want deferred for the invalid attribute policy_type",
			version, tlsrptDomain, outcome[0], outcome[1])
		return
	}
	t.Logf("Postfix-version limit: Postfix %s defers %s through QUERYwithTLSRPT (%s: invalid attribute name \"policy_type\"); QUERYwithTLSRPT needs Postfix 3.10+",
		version, tlsrptDomain, outcome[1])
}
