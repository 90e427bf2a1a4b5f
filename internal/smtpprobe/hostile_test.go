package smtpprobe_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/netip"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tlsgate/tlsgate/internal/fake"
	"github.com/tlsgate/tlsgate/internal/smtpprobe"
)

// serve runs script on the first connection to a listener on 127.0.0.1 and returns
// the port. The test's cleanup closes the listener and the connection and waits for
// script to return, so a script only has to end when its connection fails.
func serve(t *testing.T, script func(c net.Conn)) uint16 {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var (
		wg     sync.WaitGroup
		mu     sync.Mutex
		conn   net.Conn
		closed bool
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		mu.Lock()
		conn = c
		stop := closed
		mu.Unlock()
		if !stop {
			script(c)
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		closed = true
		if conn != nil {
			conn.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return uint16(ln.Addr().(*net.TCPAddr).Port)
}

// Script steps. Each reports whether the client is still there.

func say(c net.Conn, s string) bool {
	_, err := io.WriteString(c, s)
	return err == nil
}

func expect(r *bufio.Reader, verb string) bool {
	line, err := r.ReadString('\n')
	return err == nil && strings.HasPrefix(strings.ToUpper(line), verb)
}

// pause waits d, or less if the client hangs up (or says something: scripts pause only
// where the client has nothing to say).
func pause(c net.Conn, d time.Duration) bool {
	c.SetReadDeadline(time.Now().Add(d))
	defer c.SetReadDeadline(time.Time{})
	_, err := c.Read(make([]byte, 1))
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// hold keeps the connection open, discarding input, until the client or cleanup
// closes it.
func hold(c net.Conn) { io.Copy(io.Discard, c) }

// upToStartTLS greets, offers STARTTLS and reads the STARTTLS command.
func upToStartTLS(c net.Conn) bool {
	r := bufio.NewReader(c)
	return say(c, "220 mx.test ESMTP\r\n") &&
		expect(r, "EHLO") && say(c, "250-mx.test\r\n250 STARTTLS\r\n") &&
		expect(r, "STARTTLS")
}

// upToClientHello also accepts STARTTLS and reads the client's first TLS flight.
func upToClientHello(c net.Conn) bool {
	if !upToStartTLS(c) || !say(c, "220 2.0.0 go ahead\r\n") {
		return false
	}
	_, err := c.Read(make([]byte, 16<<10))
	return err == nil
}

// halfServerHello is the start of a TLS 1.2 ServerHello record: the header announces
// 122 bytes and only 26 follow.
var halfServerHello = append([]byte{0x16, 0x03, 0x03, 0x00, 0x7a, 0x02, 0x00, 0x00, 0x76, 0x03, 0x03}, bytes.Repeat([]byte{0x42}, 15)...)

// flood writes prefix, then body until total bytes are written or the client goes
// away, then hangs up; sent counts the bytes the kernel accepted. body is allocated
// before the probe starts, so the server does not count towards its allocations.
func flood(sent *atomic.Int64, prefix string, body []byte, total int64) func(net.Conn) {
	return func(c net.Conn) {
		r := bufio.NewReader(c)
		if !say(c, "220 mx.test ESMTP\r\n") || !expect(r, "EHLO") || !say(c, prefix) {
			return
		}
		sent.Add(int64(len(prefix)))
		for total <= 0 || sent.Load() < total {
			n, err := c.Write(body)
			sent.Add(int64(n))
			if err != nil {
				return
			}
		}
		say(c, "\r\n")
	}
}

// TestHostileServers runs the prober against servers that stall, trickle, flood,
// answer garbage or hang up at every step. Each probe must end within its budget
// with a transient outcome unless the server gave a definite answer, hold bounded
// memory whatever the server sends, and leave no goroutine behind. Not parallel: it
// checks the goroutines and counts the allocations of the whole process, which the
// paused parallel tests do not change.
func TestHostileServers(t *testing.T) {
	const (
		mib       = 1 << 20
		floodSize = 8 * mib
		slack     = 500 * time.Millisecond
	)
	cert := fake.SelfSigned(t, fake.CertOptions{DNSNames: []string{"mx.test"}})
	serverTLS := &tls.Config{Certificates: []tls.Certificate{cert}}

	longLine := bytes.Repeat([]byte("A"), 64<<10)
	longLines := bytes.Repeat([]byte("\r\n250-"+strings.Repeat("x", 994)), 64) // 1000-byte lines
	continuation := bytes.Repeat([]byte("250-x\r\n"), 8<<10)

	type hostile struct {
		name    string
		budget  time.Duration // the probe's context deadline
		script  func(c net.Conn)
		outcome smtpprobe.Outcome
		stage   smtpprobe.Stage
		atMost  time.Duration // when not 0, the probe must end this soon, well inside the budget
		detail  string        // when not "", the detail exactly
		sent    *atomic.Int64 // flooding servers count the bytes they got out
	}
	var hugeLine, manyLines, endless atomic.Int64
	tests := []hostile{
		{
			name: "banner never sent", budget: time.Second,
			script:  hold,
			outcome: smtpprobe.OutcomeTimeout, stage: smtpprobe.StageConnected,
		},
		{
			// A deadline per read would be renewed by every byte and never fire.
			name: "banner trickled one byte per second", budget: 2 * time.Second,
			script: func(c net.Conn) {
				for _, b := range []byte("220 mx.test ESMTP but very slowly\r\n") {
					if !say(c, string(b)) || !pause(c, time.Second) {
						return
					}
				}
			},
			outcome: smtpprobe.OutcomeTimeout, stage: smtpprobe.StageConnected,
		},
		{
			name: "EHLO reply is one 8 MiB line", budget: 2 * time.Second,
			script:  flood(&hugeLine, "250-", longLine, floodSize),
			outcome: smtpprobe.OutcomeProtocolError, stage: smtpprobe.StageGreeting,
			atMost: slack, sent: &hugeLine,
		},
		{
			name: "EHLO reply is 8 MiB of 1000-byte lines", budget: 2 * time.Second,
			script:  flood(&manyLines, "250-mx.test", longLines, floodSize),
			outcome: smtpprobe.OutcomeProtocolError, stage: smtpprobe.StageGreeting,
			atMost: slack, sent: &manyLines,
		},
		{
			name: "EHLO reply continues forever", budget: 2 * time.Second,
			script:  flood(&endless, "", continuation, 0),
			outcome: smtpprobe.OutcomeProtocolError, stage: smtpprobe.StageGreeting,
			atMost: slack, sent: &endless,
		},
		{
			// Garbage is not an answer: Postfix defers such a session, it does not bounce.
			name: "STARTTLS answered with garbage", budget: 2 * time.Second,
			script: func(c net.Conn) {
				if upToStartTLS(c) && say(c, "\x16\x03\x01\x02\x00\x01\xfc\xfd\x80\xff garbage \x00\x1b[2J\r\n") {
					hold(c)
				}
			},
			outcome: smtpprobe.OutcomeProtocolError, stage: smtpprobe.StageEHLO, atMost: slack,
		},
		{
			name: "STARTTLS answered with an unterminated binary flood", budget: 2 * time.Second,
			script: func(c net.Conn) {
				if upToStartTLS(c) {
					for say(c, "\x80\x81\x82\x83\xfe\xff\x00\x01") {
					}
				}
			},
			outcome: smtpprobe.OutcomeProtocolError, stage: smtpprobe.StageEHLO, atMost: slack,
		},
		{
			name: "TLS handshake stalled: no ServerHello", budget: time.Second,
			script: func(c net.Conn) {
				if upToClientHello(c) {
					hold(c)
				}
			},
			outcome: smtpprobe.OutcomeTimeout, stage: smtpprobe.StageEHLO,
		},
		{
			name: "TLS handshake stalled after half a ServerHello", budget: time.Second,
			script: func(c net.Conn) {
				if upToClientHello(c) && say(c, string(halfServerHello)) {
					hold(c)
				}
			},
			outcome: smtpprobe.OutcomeTimeout, stage: smtpprobe.StageEHLO,
		},
		{
			// An answer, if not TLS: the server offered STARTTLS, said 220 and cannot
			// do TLS. That is reproducible (Postfix: "wrong version number").
			name: "ClientHello answered with plaintext", budget: 2 * time.Second,
			script: func(c net.Conn) {
				if upToClientHello(c) && say(c, "this is not TLS\r\n") {
					hold(c)
				}
			},
			outcome: smtpprobe.OutcomeHandshakeError, stage: smtpprobe.StageEHLO, atMost: slack,
		},
		{
			// A drop is not an answer to the ClientHello: transient, not a handshake error.
			name: "close after half a ServerHello", budget: 2 * time.Second,
			script: func(c net.Conn) {
				if upToClientHello(c) {
					say(c, string(halfServerHello))
				}
			},
			outcome: smtpprobe.OutcomeProtocolError, stage: smtpprobe.StageEHLO, atMost: slack,
		},
		{
			name: "reset after half a ServerHello", budget: 2 * time.Second,
			script: func(c net.Conn) {
				if !upToClientHello(c) || !say(c, string(halfServerHello)) {
					return
				}
				// Reset only once the half is in the probe's hands: otherwise the RST
				// may overtake it, and this is "reset on the ClientHello" again. If it
				// never arrives, hold: the probe then times out and the case fails.
				if !acked(c.(*net.TCPConn), time.Second) {
					hold(c)
					return
				}
				c.(*net.TCPConn).SetLinger(0) // Close sends RST
			},
			outcome: smtpprobe.OutcomeProtocolError, stage: smtpprobe.StageEHLO, atMost: slack,
		},
		{
			name: "reset on the ClientHello", budget: 2 * time.Second,
			script: func(c net.Conn) {
				if upToClientHello(c) {
					c.(*net.TCPConn).SetLinger(0)
				}
			},
			outcome: smtpprobe.OutcomeProtocolError, stage: smtpprobe.StageEHLO, atMost: slack,
		},
		{
			// Without its CRLF this is not a reply (RFC 5321 §4.2), let alone a 220.
			name: "greeting cut short, then close", budget: 2 * time.Second,
			script:  func(c net.Conn) { say(c, "220 mx.test ESMTP") },
			outcome: smtpprobe.OutcomeProtocolError, stage: smtpprobe.StageConnected, atMost: slack,
		},
		{
			name: "220 greeting, then close", budget: 2 * time.Second,
			script:  func(c net.Conn) { say(c, "220 mx.test ESMTP\r\n") },
			outcome: smtpprobe.OutcomeProtocolError, stage: smtpprobe.StageGreeting, atMost: slack,
		},
		{
			name: "220 greeting, then reset", budget: 2 * time.Second,
			script: func(c net.Conn) {
				if say(c, "220 mx.test ESMTP\r\n") && expect(bufio.NewReader(c), "EHLO") {
					c.(*net.TCPConn).SetLinger(0)
				}
			},
			outcome: smtpprobe.OutcomeProtocolError, stage: smtpprobe.StageGreeting, atMost: slack,
			// Not "read tcp 127.0.0.1:44500->127.0.0.1:25: read: connection reset by
			// peer": the detail may reach a sender's reply (issue 17).
			detail: "EHLO: connection reset",
		},
		{
			// RFC 5321 §4.1.1.10: the server closes after its 221; this one does not,
			// and the probe must not wait for it.
			name: "open after 221 to QUIT, no STARTTLS", budget: 2 * time.Second,
			script: func(c net.Conn) {
				r := bufio.NewReader(c)
				if say(c, "220 mx.test ESMTP\r\n") && expect(r, "EHLO") && say(c, "250 mx.test\r\n") &&
					expect(r, "QUIT") && say(c, "221 2.0.0 bye\r\n") {
					hold(c)
				}
			},
			outcome: smtpprobe.OutcomeNoStartTLS, stage: smtpprobe.StageEHLO, atMost: slack,
		},
		{
			name: "open after 221 to QUIT, over TLS", budget: 2 * time.Second,
			script: func(c net.Conn) {
				if !upToStartTLS(c) || !say(c, "220 2.0.0 go ahead\r\n") {
					return
				}
				tc := tls.Server(c, serverTLS)
				r := bufio.NewReader(tc)
				if tc.Handshake() == nil && expect(r, "EHLO") && say(tc, "250 mx.test\r\n") &&
					expect(r, "QUIT") && say(tc, "221 2.0.0 bye\r\n") {
					hold(tc)
				}
			},
			outcome: smtpprobe.OutcomeTLS, stage: smtpprobe.StageDone, atMost: slack,
		},
		{
			name: "QUIT never answered", budget: 2 * time.Second,
			script: func(c net.Conn) {
				r := bufio.NewReader(c)
				if say(c, "220 mx.test ESMTP\r\n") && expect(r, "EHLO") && say(c, "250 mx.test\r\n") {
					hold(c)
				}
			},
			outcome: smtpprobe.OutcomeNoStartTLS, stage: smtpprobe.StageEHLO, atMost: time.Second,
		},
	}

	for _, tc := range tests {
		noLeak := fake.CheckGoroutines(t)
		t.Run(tc.name, func(t *testing.T) {
			port := serve(t, tc.script)
			p := &smtpprobe.Prober{Dialer: &net.Dialer{}, Port: int(port), HELO: "probe.test"}
			ctx, cancel := context.WithTimeout(context.Background(), tc.budget)
			defer cancel()

			var m0, m1 runtime.MemStats
			runtime.ReadMemStats(&m0)
			start := time.Now()
			r := p.Probe(ctx, netip.MustParseAddr("127.0.0.1"), "")
			took := time.Since(start)
			runtime.ReadMemStats(&m1)
			alloc := m1.TotalAlloc - m0.TotalAlloc

			t.Logf("%s at stage %s after %s (budget %s), %d KiB allocated: %s",
				r.Outcome, r.Stage, took.Round(time.Millisecond), tc.budget, alloc>>10, r.Detail)
			if r.Outcome != tc.outcome || r.Stage != tc.stage {
				t.Errorf("outcome %s at stage %s; want %s at stage %s", r.Outcome, r.Stage, tc.outcome, tc.stage)
			}
			if took > tc.budget+slack {
				t.Errorf("probe took %s with a budget of %s", took, tc.budget)
			}
			if tc.atMost != 0 && took > tc.atMost {
				t.Errorf("probe took %s; want at most %s", took, tc.atMost)
			}
			if tc.outcome == smtpprobe.OutcomeTimeout && took < tc.budget-100*time.Millisecond {
				t.Errorf("timed out after %s, before the %s budget", took, tc.budget)
			}
			if tc.detail != "" && r.Detail != tc.detail {
				t.Errorf("detail %q; want %q", r.Detail, tc.detail)
			}
			if strings.Contains(r.Detail, "127.0.0.1:") || strings.Contains(r.Detail, "->") {
				t.Errorf("detail %q names a socket address", r.Detail)
			}
			if len(r.Detail) > 256 {
				t.Errorf("detail is %d bytes long, the peer's input is not bounded in it", len(r.Detail))
			}
			if tc.sent != nil {
				// A reader that buffered what it was sent would allocate megabytes: the
				// server writes until the probe hangs up, as fast as the probe reads.
				t.Logf("server got %d KiB into the socket before the probe hung up", tc.sent.Load()>>10)
				if alloc >= mib {
					t.Errorf("probe allocated %d bytes; want under 1 MiB", alloc)
				}
			}
		})
		// The subtest's cleanup has closed the server; nothing of the probe may remain.
		noLeak()
	}
}
