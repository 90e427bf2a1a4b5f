package main

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	gomilter "github.com/d--j/go-milter"
)

// mta plays Postfix's side of the milter protocol with go-milter's client: one milter
// connection per SMTP session, as Postfix opens them.
type mta struct {
	client *gomilter.Client
}

func newMTA(addr string) *mta {
	return &mta{client: gomilter.NewClient("tcp", addr,
		gomilter.WithReadTimeout(30*time.Second), gomilter.WithWriteTimeout(10*time.Second))}
}

// smtpSession is one SMTP session after MAIL FROM.
type smtpSession struct {
	s      *gomilter.ClientSession
	macros *gomilter.MacroBag
}

// openRetries is how often open tries again after a failed option negotiation.
// go-milter's server gives the MTA a hard-coded second to send it (session.go,
// HandleMilterCommands); on a CPU-starved machine the client goroutine of this tool can
// miss that, which says nothing about the milter.
const openRetries = 3

// open connects, says HELO and MAIL FROM sender, as Postfix's smtpd reports a client,
// retrying failed negotiations (see openRetries); retries counts them.
func (m *mta) open(queueID, sender string) (s *smtpSession, retries int, err error) {
	for {
		s, err = m.open1(queueID, sender)
		if err == nil || !errors.Is(err, errNegotiation) || retries == openRetries {
			return s, retries, err
		}
		retries++
	}
}

// errNegotiation marks a failure to open a milter session.
var errNegotiation = errors.New("negotiation failed")

func (m *mta) open1(queueID, sender string) (*smtpSession, error) {
	macros := gomilter.NewMacroBag()
	macros.Set(gomilter.MacroQueueId, queueID)
	macros.Set(gomilter.MacroMailAddr, sender)
	s, err := m.client.Session(macros)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errNegotiation, err)
	}
	for _, step := range []struct {
		name string
		do   func() (*gomilter.Action, error)
	}{
		{"connect", func() (*gomilter.Action, error) {
			return s.Conn("client.load.test", gomilter.FamilyInet, 40000, "192.0.2.10")
		}},
		{"helo", func() (*gomilter.Action, error) { return s.Helo("client.load.test") }},
		{"mail", func() (*gomilter.Action, error) { return s.Mail(sender, "") }},
	} {
		act, err := step.do()
		if err == nil && act.Type != gomilter.ActionContinue {
			err = fmt.Errorf("answered %s", act)
		}
		if err != nil {
			s.Close()
			return nil, fmt.Errorf("%s: %w", step.name, err)
		}
	}
	macros.Set(gomilter.MacroRcptMailer, "smtp")
	return &smtpSession{s: s, macros: macros}, nil
}

// outcome is what the milter answered to one RCPT.
type outcome int

const (
	accepted outcome = iota
	tempfailed
	rejected
)

// rcpt sends RCPT TO addr and returns the answer and how long it took.
func (s *smtpSession) rcpt(addr string) (outcome, time.Duration, error) {
	s.macros.Set(gomilter.MacroRcptAddr, addr)
	start := time.Now()
	act, err := s.s.Rcpt(addr, "")
	took := time.Since(start)
	if err != nil {
		return 0, took, err
	}
	if s.s.Skip() {
		// The MTA would stop sending recipients: the comparison would be unfair.
		return 0, took, errors.New("the milter asked to skip the remaining recipients")
	}
	switch act.Type {
	case gomilter.ActionContinue:
		return accepted, took, nil
	case gomilter.ActionTempFail:
		return tempfailed, took, nil
	case gomilter.ActionReject:
		return rejected, took, nil
	case gomilter.ActionRejectWithCode:
		if act.SMTPCode < 500 {
			return tempfailed, took, nil
		}
		return rejected, took, nil
	}
	return 0, took, fmt.Errorf("RCPT answered %s", act)
}

// end sends DATA and an empty message and returns how many headers the milter added.
func (s *smtpSession) end() (int, error) {
	if _, err := s.s.DataStart(); err != nil {
		return 0, err
	}
	if _, err := s.s.HeaderEnd(); err != nil {
		return 0, err
	}
	mods, act, err := s.s.BodyReadFrom(strings.NewReader("Subject: load\r\n\r\nbody\r\n"))
	if err != nil {
		return 0, err
	}
	if act.Type != gomilter.ActionAccept && act.Type != gomilter.ActionContinue {
		return 0, fmt.Errorf("end of message answered %s", act)
	}
	n := 0
	for _, m := range mods {
		if m.Type == gomilter.ActionAddHeader {
			n++
		}
	}
	return n, nil
}

// abort ends the transaction as a client's RSET or QUIT does.
func (s *smtpSession) abort() error { return s.s.Abort(nil) }

func (s *smtpSession) close() { s.s.Close() }

// stats are the measurements of one load run.
type stats struct {
	decisions                     int64 // RCPTs answered
	accepted, tempfailed, rejects int64
	sessions, ended, headers      int64 // ended: sessions that sent a message
	retries                       int64 // session opens retried (openRetries)
	elapsed                       time.Duration
	cpu                           time.Duration   // process CPU time (user and system), where measured
	lat                           []time.Duration // per RCPT, sorted
}

func (s *stats) add(o outcome, d time.Duration) {
	s.decisions++
	s.lat = append(s.lat, d)
	switch o {
	case accepted:
		s.accepted++
	case tempfailed:
		s.tempfailed++
	default:
		s.rejects++
	}
}

func (s *stats) merge(o *stats) {
	s.decisions += o.decisions
	s.accepted += o.accepted
	s.tempfailed += o.tempfailed
	s.rejects += o.rejects
	s.sessions += o.sessions
	s.ended += o.ended
	s.headers += o.headers
	s.retries += o.retries
	s.elapsed += o.elapsed
	s.cpu += o.cpu
	s.lat = append(s.lat, o.lat...)
}

// finish sets the wall time (when not merged from runs) and sorts the latencies.
func (s *stats) finish(elapsed time.Duration) {
	if elapsed > 0 {
		s.elapsed = elapsed
	}
	slices.Sort(s.lat)
}

// rate is decisions per second of wall time.
func (s *stats) rate() float64 {
	if s.elapsed <= 0 {
		return 0
	}
	return float64(s.decisions) / s.elapsed.Seconds()
}

// pct is the p-quantile (0 < p <= 1) of the RCPT latencies, nearest rank.
func (s *stats) pct(p float64) time.Duration {
	if len(s.lat) == 0 {
		return 0
	}
	i := int(p*float64(len(s.lat))+0.999999) - 1
	return s.lat[max(0, min(i, len(s.lat)-1))]
}

func (s *stats) max() time.Duration {
	if len(s.lat) == 0 {
		return 0
	}
	return s.lat[len(s.lat)-1]
}

// load is a closed-loop load: conns workers, each running SMTP sessions back to back
// for duration (or sessions per worker, when set), each session sending rcpts RCPTs
// and then ending the message (even sessions) or aborting (odd ones).
type load struct {
	addr     string
	conns    int
	duration time.Duration
	sessions int // per worker; 0: until duration
	rcpts    int
	sender   string
	rcpt     func(worker, session, i int) string
}

// run runs l and returns the merged statistics.
func (l load) run() (*stats, error) {
	m := newMTA(l.addr)
	deadline := time.Now().Add(l.duration)
	results := make([]*stats, l.conns)
	errs := make([]error, l.conns)
	var wg sync.WaitGroup
	start := time.Now()
	for w := range l.conns {
		wg.Go(func() {
			st := &stats{lat: make([]time.Duration, 0, 1024)}
			results[w] = st
			for n := 0; l.sessions > 0 && n < l.sessions || l.sessions == 0 && time.Now().Before(deadline); n++ {
				if err := l.session(m, st, w, n); err != nil {
					errs[w] = fmt.Errorf("worker %d session %d: %w", w, n, err)
					return
				}
			}
		})
	}
	wg.Wait()
	total := &stats{}
	for _, st := range results {
		total.merge(st)
	}
	total.elapsed = 0
	total.finish(time.Since(start))
	return total, errors.Join(errs...)
}

func (l load) session(m *mta, st *stats, w, n int) error {
	s, retries, err := m.open(fmt.Sprintf("L%dQ%d", w, n), l.sender)
	st.retries += int64(retries)
	if err != nil {
		return err
	}
	defer s.close()
	for i := range l.rcpts {
		o, d, err := s.rcpt(l.rcpt(w, n, i))
		if err != nil {
			return err
		}
		st.add(o, d)
	}
	st.sessions++
	if n%2 == 1 {
		return s.abort()
	}
	h, err := s.end()
	st.ended++
	st.headers += int64(h)
	return err
}
