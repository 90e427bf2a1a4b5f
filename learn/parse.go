// Package learn reads Postfix's mail log and proposes a tls_policy table from what the
// SMTP client has achieved in the past: `tlsgate learn` (README.md, "Learning policies
// from the mail log"). A Learner joins each TLS session summary of smtp(8) to the
// delivery records made over it and aggregates them per recipient domain; Candidate
// says which domains are worth a probe, Propose decides a level from the history and
// the probe, and WriteText, WriteDiff and ToJSON print the result. docs/learn.md
// describes the log lines it reads.
package learn

import (
	"bytes"
	"net/netip"
	"strings"
	"time"
)

// Trust is how a TLS session was authenticated, as the TLS summary line says.
type Trust uint8

// Trust classes, weakest first. Plain is a delivery with no TLS summary before it.
const (
	Plain     Trust = iota // no TLS
	Anonymous              // "Anonymous TLS connection": no certificate
	Untrusted              // "Untrusted": a certificate, chain not trusted (or pre-2.5 Postfix, which did not say)
	Trusted                // "Trusted": chain trusted by smtp_tls_CAfile/CApath, peer name not matched
	Verified               // "Verified": DANE, fingerprint, or PKIX chain and name (levels above encrypt)
)

var trustNames = [...]string{"plaintext", "anonymous", "untrusted", "trusted", "verified"}

func (t Trust) String() string {
	if int(t) < len(trustNames) {
		return trustNames[t]
	}
	return "unknown"
}

// lineKind is what a log line is, as far as learn is concerned.
type lineKind uint8

// Kinds of line.
const (
	kindOther    lineKind = iota // a well-formed log line of no interest
	kindTLS                      // a TLS summary of the SMTP client
	kindDelivery                 // a delivery record with a network relay
	kindGarbage                  // not a log line learn can read (no timestamp or no program[pid])
)

// logLine is one parsed log line. Strings are copies (they do not alias the read buffer)
// and only set for kindTLS and kindDelivery.
type logLine struct {
	Kind lineKind
	Time time.Time
	// Proc is "program[pid]" as logged ("postfix/smtp[1234]", "postfix-out/relay[77]"):
	// one process of one Postfix instance.
	Proc string

	// kindTLS
	Trust    Trust
	Protocol string // "TLSv1.3"
	Cipher   string

	// kindTLS and kindDelivery: the peer, "host[addr]:port".
	Peer string
	Addr netip.Addr

	// kindDelivery
	QueueID string
	Domain  string // the recipient's domain as logged (not yet validated: remote text)
	Status  string // "sent", "deferred", "bounced", ...

	// For every line that is not garbage: the program[pid] and, when the message starts
	// with one, the queue id, aliasing the buffer given to Parse (valid until it is
	// reused). The join needs them for every line of a process with a TLS session
	// pending; they cost no allocation.
	procB, queueB []byte
}

// logParser parses log lines. It holds the reference time for syslog timestamps without
// a year. The zero value is not usable: use NewParser.
type logParser struct {
	now  time.Time
	loc  *time.Location
	year int
}

// newLogParser returns a parser that places a timestamp without a year ("Dec  7
// 18:00:00") in the year that puts it no later than one day after now, in loc (the
// zone the log was written in, normally time.Local).
func newLogParser(now time.Time, loc *time.Location) *logParser {
	if loc == nil {
		loc = time.Local
	}
	return &logParser{now: now.In(loc), loc: loc, year: now.In(loc).Year()}
}

// Parse parses one line (without its newline) into l. It never fails: a line it cannot
// read is kindGarbage.
func (p *logParser) Parse(b []byte, l *logLine) {
	*l = logLine{}
	b = bytes.TrimRight(b, "\r\n")
	t, rest, ok := p.timestamp(b)
	if !ok {
		l.Kind = kindGarbage
		return
	}
	l.Time = t
	// " HOST PROG[PID]: MSG"
	rest, ok = cutSpace(rest)
	if !ok {
		l.Kind = kindGarbage
		return
	}
	sp := bytes.IndexByte(rest, ' ')
	if sp <= 0 {
		l.Kind = kindGarbage
		return
	}
	rest = rest[sp+1:]
	colon := bytes.Index(rest, []byte(": "))
	if colon <= 0 {
		l.Kind = kindGarbage
		return
	}
	proc, msg := rest[:colon], rest[colon+2:]
	open := bytes.IndexByte(proc, '[')
	if open <= 0 || proc[len(proc)-1] != ']' || !allDigits(proc[open+1:len(proc)-1]) {
		l.Kind = kindGarbage
		return
	}
	l.procB = proc
	if id, _, ok := bytes.Cut(msg, []byte(": ")); ok && isQueueID(id) {
		l.queueB = id
	}
	switch {
	case bytes.Contains(msg, []byte(" connection established to ")) || bytes.Contains(msg, []byte(" connection reused to ")) ||
		bytes.HasPrefix(msg, []byte("TLS connection established to ")):
		if parseTLS(msg, l) {
			l.Kind = kindTLS
			l.Proc = string(proc)
		}
	case bytes.Contains(msg, []byte(": to=<")):
		if parseDelivery(msg, l) {
			l.Kind = kindDelivery
			l.Proc = string(proc)
		}
	}
}

// parseTLS reads "[Trust ]TLS connection established|reused to HOST[ADDR]:PORT: PROTO with cipher CIPHER ...".
func parseTLS(msg []byte, l *logLine) bool {
	trust := Untrusted // Postfix < 2.5: "TLS connection established to ..." says nothing more
	for i, w := range [...]string{"Anonymous ", "Untrusted ", "Trusted ", "Verified "} {
		if bytes.HasPrefix(msg, []byte(w)) {
			trust = Trust(i + 1)
			msg = msg[len(w):]
			break
		}
	}
	switch {
	case bytes.HasPrefix(msg, []byte("TLS connection established to ")):
		msg = msg[len("TLS connection established to "):]
	case bytes.HasPrefix(msg, []byte("TLS connection reused to ")):
		msg = msg[len("TLS connection reused to "):]
	default:
		return false
	}
	// The peer ends at the first ": ": a host name and an address have no spaces.
	end := bytes.Index(msg, []byte(": "))
	if end < 0 {
		return false
	}
	peer := msg[:end]
	addr, ok := peerAddr(peer)
	if !ok {
		return false
	}
	rest := msg[end+2:]
	proto, rest, _ := bytes.Cut(rest, []byte(" "))
	if len(proto) == 0 || len(proto) > 16 {
		return false
	}
	if c, ok := bytes.CutPrefix(rest, []byte("with cipher ")); ok {
		c, _, _ = bytes.Cut(c, []byte(" "))
		if len(c) <= 64 {
			l.Cipher = string(c)
		}
	}
	l.Trust, l.Peer, l.Addr, l.Protocol = trust, string(peer), addr, string(proto)
	return true
}

// parseDelivery reads "QUEUEID: to=<ADDR>[, orig_to=<ADDR>], relay=RELAY, ..., status=STATUS ...".
// The addresses and the server's reply in the status are remote text: a quoted local
// part may hold ", relay=" or ">"; it is skipped as a quoted string (RFC 5321 §4.1.2
// Quoted-string), and the status is searched for only after the relay.
func parseDelivery(msg []byte, l *logLine) bool {
	id, rest, ok := bytes.Cut(msg, []byte(": to=<"))
	if !ok || !isQueueID(id) {
		return false
	}
	addr, rest, ok := cutAddress(rest)
	if !ok {
		return false
	}
	at := bytes.LastIndexByte(addr, '@')
	if at < 0 {
		return false // a local recipient without a domain: not an SMTP destination
	}
	domain := addr[at+1:]
	if r, ok := bytes.CutPrefix(rest, []byte(", orig_to=<")); ok {
		if _, rest, ok = cutAddress(r); !ok {
			return false
		}
	}
	rest, ok = bytes.CutPrefix(rest, []byte(", relay="))
	if !ok {
		return false
	}
	relay, rest, _ := bytes.Cut(rest, []byte(", "))
	a, ok := peerAddr(relay)
	if !ok {
		// relay=local, relay=none, relay=host[private/dovecot-lmtp]: no network peer.
		return false
	}
	i := bytes.Index(rest, []byte("status="))
	if i < 0 {
		return false
	}
	st := rest[i+len("status="):]
	if sp := bytes.IndexByte(st, ' '); sp >= 0 {
		st = st[:sp]
	}
	if len(st) == 0 || len(st) > 16 {
		return false
	}
	l.QueueID, l.Domain, l.Peer, l.Addr, l.Status = string(id), string(domain), string(relay), a, string(st)
	return true
}

// cutAddress reads an address up to its closing '>' and returns it and what follows the
// '>'. A quoted local part ("a>b, relay=x"@example) is skipped with its escapes.
func cutAddress(b []byte) (addr, rest []byte, ok bool) {
	i := 0
	if len(b) > 0 && b[0] == '"' {
		for i = 1; i < len(b); i++ {
			if b[i] == '\\' {
				i++
				continue
			}
			if b[i] == '"' {
				i++
				break
			}
		}
		if i > len(b) {
			return nil, nil, false
		}
	}
	j := bytes.IndexByte(b[i:], '>')
	if j < 0 {
		return nil, nil, false
	}
	return b[:i+j], b[i+j+1:], true
}

// peerAddr checks "host[addr]:port" and returns addr. The host part may be "unknown"
// (no PTR); the address may be IPv6 ("mx[2001:db8::1]:25").
func peerAddr(p []byte) (netip.Addr, bool) {
	open := bytes.IndexByte(p, '[')
	close := bytes.LastIndexByte(p, ']')
	if open <= 0 || close < open || len(p) > 300 {
		return netip.Addr{}, false
	}
	if port := p[close+1:]; len(port) > 0 {
		if port[0] != ':' || len(port) < 2 || len(port) > 6 || !allDigits(port[1:]) {
			return netip.Addr{}, false
		}
	}
	a, err := netip.ParseAddr(string(p[open+1 : close]))
	if err != nil {
		return netip.Addr{}, false
	}
	return a.Unmap(), true
}

// peerHost is the host name part of "host[addr]:port", lower case.
func peerHost(peer string) string {
	h, _, _ := strings.Cut(peer, "[")
	return strings.ToLower(strings.TrimSuffix(h, "."))
}

func cutSpace(b []byte) ([]byte, bool) {
	if len(b) == 0 || b[0] != ' ' {
		return nil, false
	}
	return b[1:], true
}

func allDigits(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	for _, c := range b {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// isQueueID reports whether b looks like a Postfix queue id: short ("4ABCD12345",
// upper-case hex) or long ("4YzJbP1mGnz2Xyz", enable_long_queue_ids) form, which both
// have a digit or an upper-case letter; "warning" and "error" have neither.
func isQueueID(b []byte) bool {
	if len(b) < 5 || len(b) > 32 || !allAlnum(b) {
		return false
	}
	for _, c := range b {
		if c >= '0' && c <= '9' || c >= 'A' && c <= 'Z' {
			return true
		}
	}
	return false
}

func allAlnum(b []byte) bool {
	for _, c := range b {
		if !(c >= '0' && c <= '9' || c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z') {
			return false
		}
	}
	return true
}

var months = [...]string{"Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"}

// timestamp reads the line's timestamp and returns the rest of the line after it:
//
//   - RFC 3339 (rsyslog RSYSLOG_FileFormat, journalctl -o short-iso[-precise]):
//     "2026-12-07T18:00:00[.123456](Z|+00:00|+0000)";
//   - classic BSD syslog (RFC 3164, Postfix's own maillog_file, journalctl -o short
//     and -o short-precise): "Dec  7 18:00:00[.123456]", without a year.
func (p *logParser) timestamp(b []byte) (time.Time, []byte, bool) {
	if len(b) >= 20 && b[4] == '-' && b[10] == 'T' {
		return rfc3339(b)
	}
	if len(b) < 15 || b[3] != ' ' || b[6] != ' ' || b[9] != ':' || b[12] != ':' {
		return time.Time{}, nil, false
	}
	mon := 0
	for i, m := range months {
		if string(b[:3]) == m {
			mon = i + 1
			break
		}
	}
	day := b[4:6]
	if day[0] == ' ' {
		day = day[1:]
	}
	d, ok1 := atoi(day)
	hh, ok2 := atoi(b[7:9])
	mm, ok3 := atoi(b[10:12])
	ss, ok4 := atoi(b[13:15])
	if mon == 0 || !ok1 || !ok2 || !ok3 || !ok4 || d < 1 || d > 31 || hh > 23 || mm > 59 || ss > 60 {
		return time.Time{}, nil, false
	}
	rest := b[15:]
	ns, rest := fraction(rest)
	t := time.Date(p.year, time.Month(mon), d, hh, mm, ss, ns, p.loc)
	// No year in the line: the year that puts it at most a day after now (clock skew
	// between hosts), so December lines read in January land in the last year.
	if t.After(p.now.Add(24 * time.Hour)) {
		t = time.Date(p.year-1, time.Month(mon), d, hh, mm, ss, ns, p.loc)
	}
	return t, rest, true
}

func rfc3339(b []byte) (time.Time, []byte, bool) {
	if b[7] != '-' || b[13] != ':' || b[16] != ':' {
		return time.Time{}, nil, false
	}
	y, ok1 := atoi(b[0:4])
	mo, ok2 := atoi(b[5:7])
	d, ok3 := atoi(b[8:10])
	hh, ok4 := atoi(b[11:13])
	mm, ok5 := atoi(b[14:16])
	ss, ok6 := atoi(b[17:19])
	if !ok1 || !ok2 || !ok3 || !ok4 || !ok5 || !ok6 || mo < 1 || mo > 12 || d < 1 || d > 31 || hh > 23 || mm > 59 || ss > 60 {
		return time.Time{}, nil, false
	}
	ns, rest := fraction(b[19:])
	var off int
	switch {
	case len(rest) > 0 && rest[0] == 'Z':
		rest = rest[1:]
	case len(rest) >= 5 && (rest[0] == '+' || rest[0] == '-'):
		neg := rest[0] == '-'
		h, ok := atoi(rest[1:3])
		var m int
		var okm bool
		if rest[3] == ':' && len(rest) >= 6 {
			m, okm = atoi(rest[4:6])
			rest = rest[6:]
		} else {
			m, okm = atoi(rest[3:5])
			rest = rest[5:]
		}
		if !ok || !okm || h > 23 || m > 59 {
			return time.Time{}, nil, false
		}
		off = h*3600 + m*60
		if neg {
			off = -off
		}
	default:
		return time.Time{}, nil, false
	}
	return time.Date(y, time.Month(mo), d, hh, mm, ss, ns, time.UTC).Add(-time.Duration(off) * time.Second), rest, true
}

// fraction reads ".123456" (up to 9 digits) and returns nanoseconds.
func fraction(b []byte) (int, []byte) {
	if len(b) == 0 || b[0] != '.' {
		return 0, b
	}
	i, ns, scale := 1, 0, 100000000
	for ; i < len(b) && b[i] >= '0' && b[i] <= '9'; i++ {
		if scale > 0 {
			ns += int(b[i]-'0') * scale
			scale /= 10
		}
	}
	return ns, b[i:]
}

func atoi(b []byte) (int, bool) {
	if len(b) == 0 {
		return 0, false
	}
	n := 0
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	return n, true
}
