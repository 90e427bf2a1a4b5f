//go:build e2e

package e2e

import (
	"bufio"
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// learnFromLog runs `tlsgate learn` on the oracle's own mail log (smtp_tls_loglevel = 1:
// the TLS summaries and delivery records of the matrix just delivered) and then has the
// oracle deliver once more to every domain at the level learn proposed: each must be
// sent. A domain learn lists as failing now must not be deliverable at the level it
// names.
//
// Twice: on the whole log, where every domain also had deliveries at encrypt and may
// (Trusted or Untrusted in the log, so at most secure/verify is proposed), and on the
// lines of the smtp-dane transport only, which is the log of a site running
// smtp_tls_security_level = dane: there the DANE domains were "Verified" every time,
// and dane-only is proposed where it holds.
func (w *world) learnFromLog(t *testing.T, oracle string) {
	log := filepath.Join(oracle, "maillog")
	daneLog := filepath.Join(w.dir, "maillog-dane")
	b, err := os.ReadFile(log)
	if err != nil {
		t.Fatal(err)
	}
	// The site at level dane: the messages the smtp-dane transport delivered (sender
	// domain dane.sender.test, in qmgr's from= line). Every other delivery record
	// becomes a line that still names its queue id, so that the join binds each
	// TLS session to its request as in the whole log.
	fromDane := regexp.MustCompile(`: ([0-9A-Za-z]+): from=<[^>]*@dane\.sender\.test>`)
	record := regexp.MustCompile(`^(.* postfix/smtp\[\d+\]: ([0-9A-Za-z]+): )to=<`)
	daneIDs := map[string]bool{}
	for _, m := range fromDane.FindAllSubmatch(b, -1) {
		daneIDs[string(m[1])] = true
	}
	var dane bytes.Buffer
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		line := sc.Text()
		if m := record.FindStringSubmatch(line); m != nil && !daneIDs[m[2]] {
			line = m[1] + "delivery record of another transport (filtered)"
		}
		dane.WriteString(line + "\n")
	}
	w.write("maillog-dane", dane.String(), 0o644)

	for _, run := range []struct{ name, file string }{{"whole log", log}, {"smtp-dane transport", daneLog}} {
		t.Run(run.name, func(t *testing.T) {
			cmd := exec.Command(w.bin, "learn", "--config", w.path("tlsgate.yaml"), "--log.level", "warn", "--min-deliveries", "1", "--json", run.file)
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			out, err := cmd.Output()
			if err != nil {
				t.Fatalf("tlsgate learn: %v\n%s", err, stderr.String())
			}
			t.Logf("%s", firstLine(stderr.String()))
			var res struct {
				Stats   struct{ Lines, Garbage, Deliveries int }
				Domains []struct {
					Domain, Status, Level, Reason string
					ByTLS                         map[string]int `json:"by_tls"`
				}
			}
			if err := json.Unmarshal(out, &res); err != nil {
				t.Fatalf("learn --json: %v\n%s", err, out)
			}
			if res.Stats.Deliveries == 0 {
				t.Fatalf("no deliveries learned from %s: %+v\n%s", run.file, res.Stats, stderr.String())
			}
			// The oracle delivers to each domain at the level learn proposed (or says fails).
			type probe struct{ domain, level, status string }
			var probes []probe
			var envs []envelope
			levelOK := regexp.MustCompile(`^(encrypt|verify|secure|dane-only)$`)
			for _, d := range res.Domains {
				t.Logf("%-24s %-13s %-10s %v %s", d.Domain, d.Status, d.Level, d.ByTLS, d.Reason)
				if (d.Status != "proposed" && d.Status != "fails-now") || !levelOK.MatchString(d.Level) {
					continue
				}
				probes = append(probes, probe{d.Domain, d.Level, d.Status})
				envs = append(envs, envelope{"learn@" + d.Level + ".sender.test", "learn@" + d.Domain})
			}
			if len(envs) == 0 {
				t.Fatal("learn proposed nothing")
			}
			ids := w.submit(oracleAddr+":2525", envs)
			outcomes := w.oracleOutcomes(oracle, ids)
			proposed, daneOnly := 0, 0
			for i, p := range probes {
				got := outcomes[ids[i]]
				switch {
				case p.status == "proposed" && got[0] != "sent":
					t.Errorf("learn proposed %s %s, but Postfix at %s: %s (%s)", p.domain, p.level, p.level, got[0], got[1])
				case p.status == "fails-now" && got[0] == "sent":
					t.Errorf("learn says %s fails at %s now, but Postfix at %s delivered", p.domain, p.level, p.level)
				default:
					t.Logf("learn %-9s %-24s %-9s Postfix at that level: %s", p.status, p.domain, p.level, got[0])
				}
				if p.status == "proposed" {
					proposed++
					if p.level == "dane-only" {
						daneOnly++
					}
				}
			}
			if proposed == 0 {
				t.Error("no domain proposed")
			}
			if run.file == daneLog && daneOnly == 0 {
				t.Error("no dane-only proposal from the log of a site at level dane")
			}
		})
	}
}

func firstLine(s string) string {
	l, _, _ := strings.Cut(s, "\n")
	return l
}
