package learn

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"errors"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/tlsgate/tlsgate/policy"
)

// Limits that keep learn's memory bounded whatever the log holds.
const (
	// maxLine is the longest line read; the rest of a longer one is skipped (and the
	// line counted). syslog daemons cut lines at 8 KiB or less by default.
	maxLine = 16 << 10
	// MaxDomains is how many destination domains are kept; deliveries to further
	// domains are counted in Stats.DomainsDropped. A million domains take a few
	// hundred MB.
	MaxDomains = 1 << 20
	// maxRelays and maxProtocols bound the distinct values kept per domain.
	maxRelays    = 4
	maxProtocols = 4
	// sessionTTL is how long a TLS session waits for its delivery record: smtp(8)
	// logs the record when the transaction ends, which smtp_data_done_timeout (600s)
	// and the other timeouts bound; an hour is far beyond them.
	sessionTTL = time.Hour
)

// Stats counts what was read. It is updated atomically while reading (for a progress
// line) and complete when Read returns.
type Stats struct {
	Bytes      atomic.Int64
	Lines      atomic.Int64
	Garbage    atomic.Int64 // not a syslog line with a timestamp and program[pid]
	TooLong    atomic.Int64 // longer than MaxLine: the rest was skipped
	TLS        atomic.Int64 // TLS summary lines of the SMTP client
	Deliveries atomic.Int64 // status=sent records counted
	// Local: deliveries to a loopback relay (a content filter such as amavisd at
	// 127.0.0.1:10024): not a destination's TLS, not counted.
	Local          atomic.Int64
	BadDomain      atomic.Int64 // recipient domain is not a valid domain name
	Old            atomic.Int64 // deliveries before --since
	DomainsDropped atomic.Int64 // deliveries not counted beyond MaxDomains
}

// Domain is the history of deliveries to one recipient domain.
type Domain struct {
	Name string // A-label, lower case
	// ByTrust counts status=sent deliveries by the TLS of their session.
	ByTrust     [Verified + 1]int
	First, Last time.Time
	// Relays are the next hops (host names as logged) that took the deliveries, at
	// most maxRelays of them; MoreRelays says there were others.
	Relays     []string
	MoreRelays bool
	Protocols  []string
}

// Deliveries is the number of deliveries counted.
func (d *Domain) Deliveries() int {
	n := 0
	for _, c := range d.ByTrust {
		n += c
	}
	return n
}

// Weakest is the weakest TLS any delivery had.
func (d *Domain) Weakest() Trust {
	for t, c := range d.ByTrust {
		if c > 0 {
			return Trust(t)
		}
	}
	return Plain
}

// session is a TLS session a process made, waiting for its delivery records.
type session struct {
	peer  string
	trust Trust
	proto string
	at    time.Time
	queue string // the queue id of the delivery request it belongs to, once seen
}

// Learner reads Postfix logs and aggregates deliveries per recipient domain.
//
// The join rule. A TLS summary line has no queue id; smtp(8) logs it from the process
// that made the session, before the records of the deliveries over it. So:
//
//  1. A TLS summary line from process P (program[pid], e.g. "postfix/smtp[123]")
//     opens a session for P: peer, trust, protocol; it replaces P's earlier one.
//  2. The first line from P after it that starts with a queue id binds the session to
//     that delivery request: one smtp(8) process serves one request at a time, and the
//     TLS line of a request comes before any of its own lines. A session that never
//     saw a delivery record of its request (the server dropped the connection, say)
//     is thereby not inherited by P's next request.
//  3. A delivery record from P for queue id Q to relay R counts as TLS, with the
//     session's trust, when P's session is bound to Q and its peer is exactly R
//     ("host[addr]:port"). Otherwise it was plaintext: Postfix logs a TLS summary for
//     every TLS session it makes or, with smtp_tls_connection_reuse, reuses
//     ("TLS connection reused"), and without tlsproxy it never hands a TLS session to
//     another process. A record for another relay (the first MX failed after TLS, the
//     second took the mail in plaintext) is plaintext too.
//  4. A session not used within an hour of log time is forgotten, and so is one whose
//     process moves on to another queue id, so memory is bounded by the processes
//     running at one time, not by the log.
type Learner struct {
	Since time.Time // deliveries before it are not counted (zero: all)
	// Local reports whether a relay address is a local hop (a content filter such as
	// amavisd at 127.0.0.1:10024), whose deliveries are not a destination's TLS and
	// are not counted. NewLearner sets it to netip.Addr.IsLoopback.
	Local func(netip.Addr) bool
	Stats Stats

	parser   *logParser
	sessions map[string]*session
	byRaw    map[string]*Domain // as logged, to skip NormalizeDomain for known names
	byName   map[string]*Domain
	last     time.Time // time of the last line read
	swept    time.Time
}

// NewLearner returns a Learner whose year-less timestamps are placed relative to now.
func NewLearner(now time.Time, loc *time.Location) *Learner {
	return &Learner{
		Local:    netip.Addr.IsLoopback,
		parser:   newLogParser(now, loc),
		sessions: make(map[string]*session),
		byRaw:    make(map[string]*Domain),
		byName:   make(map[string]*Domain),
	}
}

// Read reads one log stream to its end. Streams must come oldest first (SortFiles):
// a session may span the end of one file and the start of the next.
func (lr *Learner) Read(r io.Reader) error {
	br := bufio.NewReaderSize(r, maxLine)
	var l logLine
	for {
		b, err := br.ReadSlice('\n')
		lr.Stats.Bytes.Add(int64(len(b)))
		if errors.Is(err, bufio.ErrBufferFull) {
			// A line longer than MaxLine: count it and skip to its end.
			lr.Stats.Lines.Add(1)
			lr.Stats.TooLong.Add(1)
			for errors.Is(err, bufio.ErrBufferFull) {
				b, err = br.ReadSlice('\n')
				lr.Stats.Bytes.Add(int64(len(b)))
			}
			if err == io.EOF {
				return nil
			}
			if err != nil {
				return err
			}
			continue
		}
		if len(b) > 0 {
			lr.Stats.Lines.Add(1)
			lr.parser.Parse(b, &l)
			lr.add(&l)
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// add applies one parsed line (the join rule above).
func (lr *Learner) add(l *logLine) {
	if l.Kind == kindGarbage {
		lr.Stats.Garbage.Add(1)
		return
	}
	lr.last = l.Time
	if l.Time.Sub(lr.swept) > sessionTTL/4 {
		lr.sweep()
	}
	switch l.Kind {
	case kindTLS:
		lr.Stats.TLS.Add(1)
		lr.sessions[l.Proc] = &session{peer: l.Peer, trust: l.Trust, proto: l.Protocol, at: l.Time}
		return
	case kindOther:
		if len(l.queueB) > 0 && len(lr.sessions) > 0 {
			if s, ok := lr.sessions[string(l.procB)]; ok { // no allocation for the lookup
				if s.queue == "" {
					s.queue = string(l.queueB)
				} else if s.queue != string(l.queueB) {
					delete(lr.sessions, string(l.procB))
				}
			}
		}
		return
	}
	// kindDelivery
	trust := Plain
	proto := ""
	if s, ok := lr.sessions[l.Proc]; ok {
		if s.queue == "" {
			s.queue = l.QueueID
		}
		switch {
		case s.queue != l.QueueID:
			delete(lr.sessions, l.Proc)
		case s.peer == l.Peer:
			trust, proto = s.trust, s.proto
		}
	}
	if l.Status != "sent" {
		return
	}
	if lr.Local(l.Addr) {
		lr.Stats.Local.Add(1)
		return
	}
	if !lr.Since.IsZero() && l.Time.Before(lr.Since) {
		lr.Stats.Old.Add(1)
		return
	}
	d := lr.domain(l.Domain)
	if d == nil {
		return
	}
	lr.Stats.Deliveries.Add(1)
	d.ByTrust[trust]++
	if d.First.IsZero() || l.Time.Before(d.First) {
		d.First = l.Time
	}
	if l.Time.After(d.Last) {
		d.Last = l.Time
	}
	if h := peerHost(l.Peer); !contains(d.Relays, h) {
		if len(d.Relays) < maxRelays {
			d.Relays = append(d.Relays, h)
		} else {
			d.MoreRelays = true
		}
	}
	if proto != "" && !contains(d.Protocols, proto) && len(d.Protocols) < maxProtocols {
		d.Protocols = append(d.Protocols, proto)
	}
}

// domain finds or makes the Domain of a recipient domain as logged; nil when it is not
// a valid domain (counted) or there are too many.
func (lr *Learner) domain(raw string) *Domain {
	if d, ok := lr.byRaw[raw]; ok {
		return d
	}
	if len(lr.byRaw) >= MaxDomains {
		lr.Stats.DomainsDropped.Add(1)
		return nil
	}
	name, err := policy.NormalizeDomain(raw)
	if err != nil {
		lr.Stats.BadDomain.Add(1)
		return nil
	}
	d, ok := lr.byName[name]
	if !ok {
		d = &Domain{Name: name}
		lr.byName[name] = d
	}
	lr.byRaw[raw] = d
	return d
}

// sweep forgets sessions older than sessionTTL in log time.
func (lr *Learner) sweep() {
	lr.swept = lr.last
	for k, s := range lr.sessions {
		if lr.last.Sub(s.at) > sessionTTL {
			delete(lr.sessions, k)
		}
	}
}

// Domains returns the domains seen, by name.
func (lr *Learner) Domains() []*Domain {
	out := make([]*Domain, 0, len(lr.byName))
	for _, d := range lr.byName {
		out = append(out, d)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

func contains(s []string, x string) bool {
	for _, v := range s {
		if v == x {
			return true
		}
	}
	return false
}

// Open opens a log file for reading, gunzipping it when it starts with the gzip magic
// (whatever its name); "-" is standard input.
func Open(name string) (io.ReadCloser, error) {
	var f *os.File
	if name == "-" {
		f = os.Stdin
	} else {
		var err error
		if f, err = os.Open(name); err != nil {
			return nil, err
		}
	}
	br := bufio.NewReaderSize(f, 64<<10)
	magic, _ := br.Peek(2)
	if bytes.Equal(magic, []byte{0x1f, 0x8b}) {
		zr, err := gzip.NewReader(br)
		if err != nil {
			f.Close()
			return nil, err
		}
		return readCloser{zr, func() error { zr.Close(); return f.Close() }}, nil
	}
	return readCloser{br, f.Close}, nil
}

type readCloser struct {
	io.Reader
	close func() error
}

func (r readCloser) Close() error { return r.close() }

// rotated matches the names logrotate and newsyslog give: "mail.log.1",
// "mail.log.2.gz", "maillog-20261201", "maillog-20261201.gz".
var rotated = regexp.MustCompile(`^(.*?)(?:\.(\d+)|-(\d{8}))(?:\.gz|\.bz2|\.xz)?$`)

// SortFiles orders log files oldest first, whatever order they were given in: per
// base name, the highest rotation number first ("mail.log.2.gz", "mail.log.1"), dated
// ones by date, and the live file ("mail.log") last. "-" keeps its place at the end.
func SortFiles(names []string) []string {
	type key struct {
		stem string
		rank int64 // larger is newer
	}
	keys := make(map[string]key, len(names))
	for _, n := range names {
		base := filepath.Base(n)
		k := key{stem: filepath.Join(filepath.Dir(n), strings.TrimSuffix(base, ".gz")), rank: 1 << 62}
		if m := rotated.FindStringSubmatch(base); m != nil {
			k.stem = filepath.Join(filepath.Dir(n), m[1])
			if m[2] != "" {
				num, _ := strconv.ParseInt(m[2], 10, 32)
				k.rank = -num
			} else {
				date, _ := strconv.ParseInt(m[3], 10, 64)
				k.rank = date - (1 << 40)
			}
		}
		if n == "-" {
			k.stem = "\xff"
		}
		keys[n] = k
	}
	out := append([]string(nil), names...)
	sort.SliceStable(out, func(i, j int) bool {
		a, b := keys[out[i]], keys[out[j]]
		if a.stem != b.stem {
			return a.stem < b.stem
		}
		return a.rank < b.rank
	})
	return out
}
