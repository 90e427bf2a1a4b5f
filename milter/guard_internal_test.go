package milter

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

// cmd builds the body of one milter packet (what follows the length): the command
// octet, then its data.
func cmd(code byte, data ...string) []byte {
	return append([]byte{code}, strings.Join(data, "")...)
}

// frame prefixes a packet body with its 4-octet length.
func frame(body []byte) []byte {
	return append(binary.BigEndian.AppendUint32(nil, uint32(len(body))), body...)
}

// port is a big-endian port number as CONNECT carries it.
func port(p uint16) string { return string(binary.BigEndian.AppendUint16(nil, p)) }

// optnegData is the 12 octets of a protocol 6 negotiation: version, actions, protocol.
var optnegData = string(binary.BigEndian.AppendUint32(binary.BigEndian.AppendUint32(binary.BigEndian.AppendUint32(nil, 6), 0x1ff), 0x1fffff))

// TestCheckPacket: the packets Postfix sends pass the guard; the packets go-milter
// v0.10.2 would index past the end of are caught, with ErrBadPacket.
func TestCheckPacket(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		p    []byte
		ok   bool
	}{
		// Postfix's packets (milter8.c), as they come.
		{"negotiation", cmd('O', optnegData), true},
		{"negotiation with more than the three words", cmd('O', optnegData, "\x00\x00\x00\x00"), true},
		{"connect IPv4", cmd('C', "mail.client.example\x00", "4", port(40000), "192.0.2.10\x00"), true},
		{"connect IPv6", cmd('C', "mail.client.example\x00", "6", port(40000), "2001:db8::10\x00"), true},
		{"connect IPv6 with prefix", cmd('C', "[2001:db8::10]\x00", "6", port(25), "IPv6:2001:db8::10\x00"), true},
		{"connect unix socket", cmd('C', "localhost\x00", "L", port(0), "/var/spool/postfix/private/smtpd\x00"), true},
		{"connect unknown family: no port, no address", cmd('C', "unknown\x00", "U"), true},
		{"connect unknown family with an address", cmd('C', "unknown\x00", "U", "unknown\x00"), true},
		{"connect without a host name", cmd('C', "\x00", "4", port(25), "192.0.2.10\x00"), true},
		{"HELO", cmd('H', "mail.client.example\x00"), true},
		{"MAIL", cmd('M', "<alice@sender.example>\x00"), true},
		{"MAIL null sender", cmd('M', "<>\x00"), true},
		{"MAIL with ESMTP arguments", cmd('M', "<alice@sender.example>\x00", "SIZE=1234\x00", "BODY=8BITMIME\x00"), true},
		{"RCPT", cmd('R', "<user@example.test>\x00"), true},
		{"RCPT with ESMTP arguments", cmd('R', "<user@example.test>\x00", "NOTIFY=NEVER\x00"), true},
		{"macros for CONNECT", cmd('D', "C", "j\x00mx.example.test\x00{daemon_name}\x00smtpd\x00"), true},
		{"macros for RCPT", cmd('D', "R", "{rcpt_mailer}\x00smtp\x00{rcpt_addr}\x00user@example.test\x00"), true},
		{"macro packet without macros", cmd('D', "R"), true},
		{"DATA", cmd('T'), true},
		{"header", cmd('L', "Subject\x00", "test\x00"), true},
		{"end of headers", cmd('N'), true},
		{"body chunk", cmd('B', "body\r\n"), true},
		{"empty body chunk", cmd('B'), true},
		{"end of message", cmd('E'), true},
		{"abort", cmd('A'), true},
		{"quit", cmd('Q'), true},
		{"quit, new connection", cmd('K'), true},

		// Malformed.
		{"empty packet", nil, false},
		{"negotiation without data", cmd('O'), false},
		{"negotiation with the version only", cmd('O', optnegData[:4]), false},
		{"negotiation one octet short", cmd('O', optnegData[:11]), false},
		{"connect without data", cmd('C'), false},
		{"connect without NUL", cmd('C', "mail.client.example"), false},
		{"connect without family", cmd('C', "mail.client.example\x00"), false},
		{"connect IPv4 without port", cmd('C', "mail.client.example\x00", "4"), false},
		{"connect IPv4 with one port octet", cmd('C', "mail.client.example\x00", "4", "\x00"), false},
		{"connect IPv6 with one port octet", cmd('C', "mail.client.example\x00", "6", "\x00"), false},
		{"connect unix socket without port", cmd('C', "localhost\x00", "L"), false},
		{"HELO without NUL", cmd('H', "mail.client.example"), false},
		{"empty HELO", cmd('H'), false},
		{"MAIL without NUL", cmd('M', "<alice@sender.example>"), false},
		{"empty MAIL", cmd('M'), false},
		{"RCPT without NUL", cmd('R', "<user@example.test>"), false},
		{"empty RCPT", cmd('R'), false},
		{"empty macro packet", cmd('D'), false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			err := checkPacket(tc.p)
			switch {
			case tc.ok && err != nil:
				t.Errorf("checkPacket(%q) = %v; want nil", tc.p, err)
			case !tc.ok && !errors.Is(err, ErrBadPacket):
				t.Errorf("checkPacket(%q) = %v; want ErrBadPacket", tc.p, err)
			}
		})
	}
}

// TestReadPacket checks the framing: whole packets with their header, and a length the
// guard refuses before reading the body.
func TestReadPacket(t *testing.T) {
	t.Parallel()
	t.Run("stream of packets", func(t *testing.T) {
		t.Parallel()
		packets := [][]byte{
			frame(cmd('O', optnegData)),
			frame(cmd('D', "C", "j\x00mx.example.test\x00")),
			frame(cmd('C', "mail.client.example\x00", "4", port(40000), "192.0.2.10\x00")),
			frame(cmd('E')),
		}
		r := bytes.NewReader(bytes.Join(packets, nil))
		for i, want := range packets {
			got, err := readPacket(r)
			if err != nil || !bytes.Equal(got, want) {
				t.Fatalf("packet %d: %q, %v; want %q", i, got, err, want)
			}
		}
		if got, err := readPacket(r); err != io.EOF {
			t.Errorf("after the last packet: %q, %v; want io.EOF", got, err)
		}
	})
	tests := []struct {
		name    string
		stream  []byte
		wantErr error
	}{
		{"zero length", []byte{0, 0, 0, 0}, ErrBadPacket},
		{"malformed packet", frame(cmd('R', "<user@example.test>")), ErrBadPacket},
		// Only the header is there: the guard must refuse the length without waiting
		// for a body (reading it would give io.ErrUnexpectedEOF instead).
		{"length one above the limit", binary.BigEndian.AppendUint32(nil, maxPacket+1), ErrBadPacket},
		{"largest length", []byte{0xff, 0xff, 0xff, 0xff}, ErrBadPacket},
		{"truncated header", []byte{0, 0}, io.ErrUnexpectedEOF},
		{"truncated body", append(binary.BigEndian.AppendUint32(nil, 10), 'M', '<'), io.ErrUnexpectedEOF},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := readPacket(bytes.NewReader(tc.stream))
			if !errors.Is(err, tc.wantErr) {
				t.Errorf("readPacket = %q, %v; want %v", got, err, tc.wantErr)
			}
		})
	}
	t.Run("body chunk at the limit", func(t *testing.T) {
		t.Parallel()
		want := frame(cmd('B', strings.Repeat("x", maxPacket-1)))
		got, err := readPacket(bytes.NewReader(want))
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("readPacket of a %d-octet packet: %d octets, %v", maxPacket, len(got), err)
		}
	})
}

// TestGuardConn reads through a guarded connection: the octets of good packets come
// through unchanged, however small the reads and however the peer splits its writes;
// a malformed packet ends the stream with ErrBadPacket, and so does every later Read.
func TestGuardConn(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	good := bytes.Join([][]byte{
		frame(cmd('O', optnegData)),
		frame(cmd('C', "mail.client.example\x00", "4", port(40000), "192.0.2.10\x00")),
		frame(cmd('M', "<alice@sender.example>\x00")),
		frame(cmd('B', strings.Repeat("body\r\n", 2000))),
	}, nil)
	bad := frame(cmd('R', "<user@example.test>"))
	stream := append(append([]byte{}, good...), bad...)
	wrote := make(chan error, 1)
	go func() {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			wrote <- err
			return
		}
		defer c.Close()
		// Split the writes across packet headers and bodies.
		for len(stream) > 0 && err == nil {
			n := min(len(stream), 7)
			_, err = c.Write(stream[:n])
			stream = stream[n:]
			if len(stream)%5 == 0 {
				time.Sleep(time.Millisecond)
			}
		}
		wrote <- err
		// Keep the connection open until the reader is done.
		io.Copy(io.Discard, c)
	}()
	c, err := guardListener{ln}.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, ok := c.(*guardConn); !ok {
		t.Fatalf("Accept returned %T; want a *guardConn", c)
	}
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	var got []byte
	buf := make([]byte, 3)
	for {
		n, err := c.Read(buf)
		got = append(got, buf[:n]...)
		if err != nil {
			if !errors.Is(err, ErrBadPacket) {
				t.Fatalf("Read after %d octets: %v; want ErrBadPacket", len(got), err)
			}
			break
		}
	}
	if !bytes.Equal(got, good) {
		t.Errorf("read %d octets; want the %d octets of the good packets, unchanged", len(got), len(good))
	}
	if n, err := c.Read(buf); n != 0 || !errors.Is(err, ErrBadPacket) {
		t.Errorf("Read after the bad packet: %d, %v; want 0, ErrBadPacket", n, err)
	}
	if err := <-wrote; err != nil {
		t.Errorf("writing: %v", err)
	}
}
