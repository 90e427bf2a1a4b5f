package problem

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"net/url"
	"os"
	"strings"
	"syscall"
	"testing"

	"github.com/tlsgate/tlsgate/internal/dnsx"
)

// TestDescribe: every error shape that reached a reply before keeps its finding and
// loses this host's addresses, ports and resolver internals.
func TestDescribe(t *testing.T) {
	t.Parallel()
	local := net.TCPAddrFromAddrPort(netip.MustParseAddrPort("127.0.0.1:44500"))
	remote := net.TCPAddrFromAddrPort(netip.MustParseAddrPort("192.0.2.1:25"))
	reset := &net.OpError{Op: "read", Net: "tcp", Source: local, Addr: remote, Err: &os.SyscallError{Syscall: "read", Err: syscall.ECONNRESET}}
	refused := &net.OpError{Op: "dial", Net: "tcp", Addr: net.TCPAddrFromAddrPort(netip.MustParseAddrPort("127.0.0.1:443")),
		Err: &os.SyscallError{Syscall: "connect", Err: syscall.ECONNREFUSED}}
	for _, tc := range []struct {
		name string
		err  error
		want string
	}{
		{"nil", nil, ""},
		// internal/mtasts: the _mta-sts TXT lookup that timed out, as dnsx words it.
		{"DNS timeout", fmt.Errorf("TXT lookup failed: _mta-sts.example.test: %w", fmt.Errorf("%w: %s: %w", dnsx.ErrTimeout,
			"TXT via 127.0.0.1:59020/udp", context.DeadlineExceeded)), "timeout"},
		{"DNS timeout, as text only", errors.New("TXT via 127.0.0.1:59020/udp: context deadline exceeded"), "timeout"},
		// internal/smtpprobe: a reset in mid-session.
		{"TCP reset", reset, "connection reset"},
		{"TCP reset, as text only", errors.New("read tcp 127.0.0.1:44500->192.0.2.1:25: connection reset by peer"), "connection reset"},
		{"TCP reset, wrapped", fmt.Errorf("EHLO: %w", reset), "connection reset"},
		{"refused, behind an HTTP client", &url.Error{Op: "Get", URL: "https://mta-sts.example.test/.well-known/mta-sts.txt", Err: refused}, "connection refused"},
		{"EOF", io.EOF, "connection closed"},
		{"i/o timeout", &net.OpError{Op: "read", Net: "tcp", Source: local, Addr: remote, Err: os.ErrDeadlineExceeded}, "timeout"},
		{"SERVFAIL", fmt.Errorf("%w: example.test MX", dnsx.ErrServFail), ServFail},
		{"resolver unreachable", fmt.Errorf("%w: MX via [::1]:53/udp: %v", dnsx.ErrUnreachable, syscall.ECONNREFUSED), "resolver unreachable"},
		{"no route", fmt.Errorf("dial: %w", syscall.EHOSTUNREACH), "host unreachable"},
		{"local port exhaustion", &net.OpError{Op: "dial", Net: "tcp", Err: &os.SyscallError{Syscall: "connect", Err: syscall.EADDRNOTAVAIL}}, "local network error"},
		{"a TLS alert keeps its words", tls.AlertError(40), "tls: handshake failure"},
		{"an unknown error behind a socket wrapper", &net.OpError{Op: "read", Net: "tcp", Source: local, Addr: remote, Err: errors.New("something odd")}, "something odd"},
		{"socket addresses dropped from unknown text", errors.New("lookup via 10.1.2.3:53/udp failed; from [fd00::1]:4711 to 192.0.2.1:25"), "lookup failed;"},
		{"a remote host's bare address stays", errors.New("mta-sts.example.test[192.0.2.7] is not a public address; not contacted"),
			"mta-sts.example.test[192.0.2.7] is not a public address; not contacted"},
		{"HTTP status", errors.New("HTTP status 404 Not Found"), "HTTP status 404 Not Found"},
		{"quoted remote text is not a finding", errors.New(`smtpprobe: malformed reply: "421 connection refused, i/o timeout"`),
			`smtpprobe: malformed reply: "421 connection refused, i/o timeout"`},
		{"long text is bounded", errors.New(strings.Repeat("\xff", 4096)), strings.Repeat("\ufffd", 169) + "..."},
	} {
		if got := Describe(tc.err); got != tc.want {
			t.Errorf("%s: Describe(%v) = %q; want %q", tc.name, tc.err, got, tc.want)
		}
	}
}

// FuzzText: whatever an error says, what Describe keeps holds no socket address.
func FuzzText(f *testing.F) {
	f.Add("read tcp 127.0.0.1:44500->192.0.2.1:25: connection reset by peer")
	f.Add("TXT via 127.0.0.1:59020/udp: context deadline exceeded")
	f.Add("x [::1]:53, (10.0.0.1:1) y")
	f.Add("000 via 0.0.0.0:0( 000000000000000000000")
	f.Add("resolver [fe80::1%eth0]:53->[::1]:4711/udp: odd")
	f.Fuzz(func(t *testing.T, msg string) {
		got := Text(msg)
		for i := 0; i < len(got); i++ {
			if j := runEnd(got, i); j > i {
				if run := strings.TrimRight(got[i:j], ":"); isSocket(run) {
					t.Fatalf("Text(%q) = %q: keeps the socket address %q", msg, got, run)
				}
				i = j
			}
		}
	})
}

// TestTextCutKeepsNoHalfAddress: a message whose socket address straddles the length
// bound loses the address, not just its tail.
func TestTextCutKeepsNoHalfAddress(t *testing.T) {
	t.Parallel()
	msg := strings.Repeat("x", 500) + " 127.0.0.1:44500 more"
	if got := Text(msg); strings.Contains(got, "127.0.0.1") {
		t.Errorf("Text(...) = %q: keeps part of the address", got[480:])
	}
}
