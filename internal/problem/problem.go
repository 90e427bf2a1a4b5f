// Package problem is the one classifier for error details that leave tlsgate: in an SMTP
// reply to a sender, in an audit header, in a `tlsgate check` report, in the verdict
// cache file. It keeps the finding (timeout, connection refused, SERVFAIL, the TLS
// alert the server sent) and drops what Go's error messages add about this host: local
// addresses and ports ("read tcp 127.0.0.1:44500->192.0.2.1:25"), the resolver's
// address and transport ("TXT via 127.0.0.1:53/udp"), system call names. The full error
// belongs in the debug log, never in a reply.
package problem

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/netip"
	"net/url"
	"os"
	"strings"
	"syscall"

	"github.com/tlsgate/tlsgate/internal/dnsx"
	"github.com/tlsgate/tlsgate/internal/safetext"
)

// Findings, as Describe names them.
const (
	Timeout             = "timeout"
	ConnectionRefused   = "connection refused"
	ConnectionReset     = "connection reset"
	ConnectionClosed    = "connection closed"
	ConnectionAborted   = "connection aborted"
	HostUnreachable     = "host unreachable"
	NetworkUnreachable  = "network unreachable"
	LocalNetworkError   = "local network error"
	ServFail            = "server failure (SERVFAIL, e.g. DNSSEC validation failed)"
	QueryRefused        = "query refused"
	ResolverUnreachable = "resolver unreachable"
	CNAMELoop           = "CNAME chain too long"
	InvalidName         = "invalid name"
	MalformedAnswer     = "malformed answer"
)

// sentinels maps the errors whose identity is the finding, in order: the first that
// err wraps names it. DNS sentinels come first: a DNS timeout also wraps the context's
// DeadlineExceeded, and "resolver unreachable" says more than the socket error behind it.
var sentinels = []struct {
	err  error
	name string
}{
	{dnsx.ErrTimeout, Timeout},
	{dnsx.ErrServFail, ServFail},
	{dnsx.ErrRefused, QueryRefused},
	{dnsx.ErrUnreachable, ResolverUnreachable},
	{dnsx.ErrCNAMELoop, CNAMELoop},
	{dnsx.ErrBadName, InvalidName},
	{dnsx.ErrBadResponse, MalformedAnswer},
	{context.DeadlineExceeded, Timeout},
	{context.Canceled, Timeout},
	{os.ErrDeadlineExceeded, Timeout},
	{syscall.ETIMEDOUT, Timeout},
	{syscall.ECONNREFUSED, ConnectionRefused},
	{syscall.ECONNRESET, ConnectionReset},
	{syscall.EPIPE, ConnectionClosed},
	{syscall.ECONNABORTED, ConnectionAborted},
	{syscall.EHOSTUNREACH, HostUnreachable},
	{syscall.EHOSTDOWN, HostUnreachable},
	{syscall.ENETUNREACH, NetworkUnreachable},
	{syscall.ENETDOWN, NetworkUnreachable},
	{syscall.EADDRNOTAVAIL, LocalNetworkError},
	{syscall.EADDRINUSE, LocalNetworkError},
	{syscall.EMFILE, LocalNetworkError},
	{syscall.ENFILE, LocalNetworkError},
	{syscall.ENOBUFS, LocalNetworkError},
	{io.ErrUnexpectedEOF, ConnectionClosed},
	{io.EOF, ConnectionClosed},
}

// phrases are the same findings recognised in the text of an error whose type was lost
// on the way (formatted with %v, joined as text), timeout first.
var phrases = []struct{ in, name string }{
	{"i/o timeout", Timeout},
	{"deadline exceeded", Timeout},
	{"timed out", Timeout},
	{"connection refused", ConnectionRefused},
	{"connection reset by peer", ConnectionReset},
	{"broken pipe", ConnectionClosed},
	{"software caused connection abort", ConnectionAborted},
	{"no route to host", HostUnreachable},
	{"network is unreachable", NetworkUnreachable},
	{"cannot assign requested address", LocalNetworkError},
	{"unexpected EOF", ConnectionClosed},
}

// Describe names the finding in err for a reply, a header or a report: one of the
// constants above when err is (or wraps, or reads like) a network, DNS or timeout
// error; otherwise err's own text without the addresses and ports of sockets, from
// behind any *url.Error, *net.OpError or *os.SyscallError wrapper, bounded to
// safetext.MaxField. nil is "".
func Describe(err error) string {
	if err == nil {
		return ""
	}
	for _, s := range sentinels {
		if errors.Is(err, s.err) {
			return s.name
		}
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return Timeout
	}
	var cv *tls.CertificateVerificationError
	if errors.As(err, &cv) {
		return "certificate not valid: " + Describe(cv.Err)
	}
	// Unwrap the socket-level wrappers: their text is "Get \"url\": ", "read tcp
	// a->b: ", "read: ", all about us.
	for {
		var ue *url.Error
		var oe *net.OpError
		var se *os.SyscallError
		switch {
		case errors.As(err, &ue) && ue.Err != nil:
			err = ue.Err
		case errors.As(err, &oe) && oe.Err != nil:
			err = oe.Err
		case errors.As(err, &se) && se.Err != nil:
			err = se.Err
		default:
			return Text(err.Error())
		}
		for _, s := range sentinels {
			if errors.Is(err, s.err) {
				return s.name
			}
		}
	}
}

// Text applies Describe's rules to an error message that is only text: a known phrase
// (outside quotes) becomes its finding, else socket addresses with their ports ("127.0.0.1:44500",
// "[::1]:53", "10.0.0.1:53/udp", "a->b") are dropped, with a "via" before them, and
// the rest is bounded.
func Text(msg string) string {
	// Phrases count only before the first '"': what follows is usually quoted remote
	// text (a malformed reply, a name), which is no finding of ours.
	own, _, quoted := strings.Cut(msg, `"`)
	for _, p := range phrases {
		if strings.Contains(own, p.in) {
			return p.name
		}
	}
	if !quoted && (msg == "EOF" || strings.HasSuffix(msg, ": EOF")) {
		return ConnectionClosed
	}
	// Scrubbed before the cut (which could leave half an address) and after it
	// (which turns invalid bytes into longer runes); scrubbing only drops text.
	return scrub(safetext.Bound(scrub(msg), safetext.MaxField))
}

// Scrub drops socket addresses from a text that is already a finding (a verdict's
// detail, naming the host and what it did) as the last step before a reply: it is
// scrub, without Text's rewording.
func Scrub(s string) string { return scrub(s) }

// scrub drops every socket address (an IP address with a port: "127.0.0.1:44500",
// "[::1]:53", "[fe80::1%eth0]:53"), with a "/udp" or "/tcp" after it, a "->" joining it
// to another, and a "via", "from" or "to" before it. A bare address without a port (a
// remote host's, "mx[192.0.2.1]") is a finding and stays.
func scrub(msg string) string {
	changed := false
	for {
		out := scrubOnce(msg)
		if out == msg {
			break
		}
		msg, changed = out, true
	}
	if changed {
		// The spaces around what was dropped.
		for strings.Contains(msg, "  ") {
			msg = strings.ReplaceAll(msg, "  ", " ")
		}
		msg = strings.TrimSpace(msg)
	}
	return msg
}

func scrubOnce(msg string) string {
	var b strings.Builder
	for i := 0; i < len(msg); {
		j := runEnd(msg, i)
		if j == i {
			b.WriteByte(msg[i])
			i++
			continue
		}
		run := msg[i:j]
		core := strings.TrimRight(run, ":")
		if !isSocket(core) {
			if run[0] == '[' {
				// Not a bracketed address: look inside it, from after the '['.
				b.WriteByte('[')
				i++
				continue
			}
			b.WriteString(run)
			i = j
			continue
		}
		// Drop the address and what only makes sense with it.
		for _, suffix := range []string{"/udp", "/tcp"} {
			if strings.HasPrefix(msg[j:], suffix) {
				j += len(suffix)
			}
		}
		if strings.HasPrefix(msg[j:], "->") {
			if k := runEnd(msg, j+2); k > j+2 && isSocket(strings.TrimRight(msg[j+2:k], ":")) {
				j = k
				run = msg[i:j]
			}
		}
		kept := b.String()
		for _, w := range []string{" via ", " from ", " to "} {
			if strings.HasSuffix(kept, w) {
				kept = kept[:len(kept)-len(w)+1]
				break
			}
		}
		tail := run[len(run)-(len(run)-len(strings.TrimRight(run, ":"))):] // the colons after it
		if tail != "" || j < len(msg) && msg[j] == ':' {
			kept = strings.TrimRight(kept, " ")
		}
		b.Reset()
		b.WriteString(kept)
		b.WriteString(tail)
		i = j
	}
	return b.String()
}

// runEnd returns the end of the address-like run starting at i (i when there is none):
// hex digits, dots and colons, or a bracketed part (an IPv6 address with its zone).
func runEnd(s string, i int) int {
	j := i
	for j < len(s) {
		c := s[j]
		switch {
		case c == '[':
			k := strings.IndexByte(s[j:], ']')
			if k < 0 || k > 64 {
				return j
			}
			j += k + 1
		case c == '.' || c == ':' || '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F':
			j++
		default:
			return j
		}
	}
	return j
}

func isSocket(s string) bool {
	_, err := netip.ParseAddrPort(s)
	return err == nil
}
