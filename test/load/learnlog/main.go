// Command learnlog writes a synthetic Postfix mail log for measuring `tlsgate learn`
// (README.md, "Learning policies from the mail log"): messages received by smtpd,
// queued by cleanup and qmgr, delivered by smtp(8) processes that run concurrently (so
// the lines of their sessions interleave), with the TLS summary before each session's
// delivery records, over IPv4 and IPv6, to a long tail of recipient domains, some in
// plaintext, some through a content filter on loopback, and a little garbage.
//
//	go run ./test/load/learnlog -size 1G > /tmp/mail.log
//	/usr/bin/time -v tlsgate learn --no-probe /tmp/mail.log > /dev/null
//
// The output is deterministic for a -seed.
package main

import (
	"bufio"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"time"
)

func main() {
	size := flag.String("size", "100M", "bytes to write (suffix K, M, G)")
	domains := flag.Int("domains", 50000, "distinct recipient domains")
	procs := flag.Int("procs", 100, "smtp(8) processes delivering at the same time")
	seed := flag.Uint64("seed", 1, "random seed")
	flag.Parse()
	n, err := parseSize(*size)
	if err != nil {
		fmt.Fprintln(os.Stderr, "learnlog:", err)
		os.Exit(2)
	}
	w := bufio.NewWriterSize(os.Stdout, 1<<20)
	g := newGen(*seed, *domains, *procs)
	for g.written < n {
		g.message(w)
	}
	if err := w.Flush(); err != nil {
		fmt.Fprintln(os.Stderr, "learnlog:", err)
		os.Exit(1)
	}
}

func parseSize(s string) (int64, error) {
	mult := int64(1)
	switch {
	case strings.HasSuffix(s, "G"):
		mult, s = 1<<30, strings.TrimSuffix(s, "G")
	case strings.HasSuffix(s, "M"):
		mult, s = 1<<20, strings.TrimSuffix(s, "M")
	case strings.HasSuffix(s, "K"):
		mult, s = 1<<10, strings.TrimSuffix(s, "K")
	}
	v, err := strconv.ParseInt(s, 10, 64)
	return v * mult, err
}

type proc struct {
	pid     int
	pending []string // lines of the session in progress, written one at a time
}

type gen struct {
	r       *rand.Rand
	zipf    *rand.Zipf
	domains int
	procs   []*proc
	at      time.Time
	seq     uint64
	written int64
}

func newGen(seed uint64, domains, procs int) *gen {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	g := &gen{r: r, zipf: rand.NewZipf(r, 1.1, 1, uint64(domains-1)), domains: domains,
		at: time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)}
	for i := range procs {
		g.procs = append(g.procs, &proc{pid: 10000 + i})
	}
	return g
}

func (g *gen) line(w *bufio.Writer, prog string, pid int, msg string) {
	g.at = g.at.Add(time.Duration(g.r.IntN(20)) * time.Millisecond)
	s := g.at.Format("Jan _2 15:04:05") + " mx1 " + prog + "[" + strconv.Itoa(pid) + "]: " + msg + "\n"
	g.written += int64(len(s))
	w.WriteString(s)
}

// message logs one message's reception and queues its delivery on a random smtp
// process; the processes' lines interleave.
func (g *gen) message(w *bufio.Writer) {
	g.seq++
	id := fmt.Sprintf("4Q%010X", g.seq)
	spid := 2000 + g.r.IntN(50)
	g.line(w, "postfix/smtpd", spid, "connect from client.example[198.51.100."+strconv.Itoa(g.r.IntN(250))+"]")
	g.line(w, "postfix/smtpd", spid, id+": client=client.example[198.51.100.7], sasl_method=PLAIN, sasl_username=user"+strconv.Itoa(g.r.IntN(1000)))
	g.line(w, "postfix/cleanup", 3000, id+": message-id=<"+strconv.FormatUint(g.seq, 36)+"@client.example>")
	g.line(w, "postfix/qmgr", 400, id+": from=<sender@client.example>, size="+strconv.Itoa(1000+g.r.IntN(100000))+", nrcpt=1 (queue active)")
	g.line(w, "postfix/smtpd", spid, "disconnect from client.example[198.51.100.7] ehlo=2 starttls=1 auth=1 mail=1 rcpt=1 data=1 quit=1 commands=8")

	d := int(g.zipf.Uint64())
	domain := "d" + strconv.Itoa(d) + ".example"
	mx := "mx" + strconv.Itoa(d%3) + "." + domain
	addr := "192.0.2." + strconv.Itoa(d%250+1)
	if d%7 == 0 {
		addr = "2001:db8::" + strconv.FormatInt(int64(d%65535), 16)
	}
	peer := mx + "[" + addr + "]:25"
	p := g.procs[g.r.IntN(len(g.procs))]
	var lines []string
	if d%11 == 0 { // through a content filter first: plaintext on loopback
		lines = append(lines, id+": to=<u@"+domain+">, relay=127.0.0.1[127.0.0.1]:10024, delay=0.3, delays=0.1/0/0/0.2, dsn=2.0.0, status=sent (250 2.0.0 Ok: queued as 4QZZ)")
	}
	if d%13 != 0 || g.r.IntN(4) != 0 { // d%13: sometimes plaintext
		trust := [...]string{"Verified", "Trusted", "Untrusted", "Anonymous"}[d%4]
		lines = append(lines, trust+" TLS connection established to "+peer+": TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits) key-exchange X25519 server-signature ECDSA (P-256) server-digest SHA256")
	}
	lines = append(lines, id+": to=<user"+strconv.Itoa(g.r.IntN(100))+"@"+domain+">, relay="+peer+", delay=0.8, delays=0.1/0/0.3/0.4, dsn=2.0.0, status=sent (250 2.0.0 Ok: queued as "+strconv.FormatUint(g.seq*7, 36)+")")
	if g.r.IntN(1000) == 0 {
		lines = append(lines, "\x00\x01garbage "+strings.Repeat("#", g.r.IntN(200)))
	}
	// The process finishes its previous session before starting this one, while the
	// others go on with theirs: one line of a random other process in between.
	for _, l := range p.pending {
		if l[0] == 0 { // garbage: not even a syslog header
			g.written += int64(len(l) + 1)
			w.WriteString(l + "\n")
			continue
		}
		g.line(w, "postfix/smtp", p.pid, l)
		o := g.procs[g.r.IntN(len(g.procs))]
		if o != p && len(o.pending) > 0 && o.pending[0][0] != 0 {
			g.line(w, "postfix/smtp", o.pid, o.pending[0])
			o.pending = o.pending[1:]
		}
	}
	p.pending = lines
	g.line(w, "postfix/qmgr", 400, id+": removed")
}
