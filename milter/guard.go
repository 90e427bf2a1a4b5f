package milter

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
)

// The milter wire format (libmilter's mfapi, as Postfix speaks it): every packet is a
// 4-octet big-endian length, then that many octets: a one-octet command and its data.
// go-milter v0.10.2 trusts that data: a zero-length packet, a CONNECT without its NUL or
// family octet, or a HELO/MAIL/RCPT string without its NUL make it index past the end of
// a slice, and the panic takes the whole daemon down. The guard checks the framing of
// every packet before go-milter reads it and closes the connection on anything it
// would choke on: a milter client that sends garbage loses its session, not everyone's.

// maxPacket bounds one packet: body chunks are at most 1 MiB (SMFIP_MDS_1M), plus room for
// the command octet; anything larger is not a Postfix packet.
const maxPacket = 1<<20 + 1024

// ErrBadPacket is the error a guarded connection returns for a malformed packet.
var ErrBadPacket = errors.New("milter: malformed packet")

// Milter commands whose data go-milter parses by position (libmilter mfdef.h SMFIC_*).
const (
	cmdConnect = 'C'
	cmdHelo    = 'H'
	cmdMail    = 'M'
	cmdRcpt    = 'R'
	cmdMacro   = 'D'
	cmdOptNeg  = 'O'
)

// checkPacket reports why a packet would be unsafe to hand to go-milter, or nil.
func checkPacket(p []byte) error {
	if len(p) == 0 {
		return fmt.Errorf("%w: empty packet", ErrBadPacket)
	}
	cmd, data := p[0], p[1:]
	switch cmd {
	case cmdOptNeg:
		if len(data) < 12 { // version, actions, protocol
			return fmt.Errorf("%w: option negotiation with %d octets", ErrBadPacket, len(data))
		}
	case cmdConnect:
		// hostname NUL, family, then for 4/6/L: port (2) and address.
		i := bytes.IndexByte(data, 0)
		if i < 0 || i+1 >= len(data) {
			return fmt.Errorf("%w: connect without host name or family", ErrBadPacket)
		}
		switch data[i+1] {
		case '4', '6', 'L':
			if len(data) < i+2+2 {
				return fmt.Errorf("%w: connect without port", ErrBadPacket)
			}
		}
	case cmdHelo, cmdMail, cmdRcpt:
		if bytes.IndexByte(data, 0) < 0 {
			return fmt.Errorf("%w: %c without NUL terminator", ErrBadPacket, cmd)
		}
	case cmdMacro:
		if len(data) == 0 {
			return fmt.Errorf("%w: macro packet without command", ErrBadPacket)
		}
	}
	return nil
}

// guardListener wraps every accepted connection in a guardConn.
type guardListener struct{ net.Listener }

func (l guardListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &guardConn{Conn: c, r: bufio.NewReaderSize(c, 4096)}, nil
}

// guardConn hands go-milter only whole packets that passed checkPacket. Deadlines set by
// go-milter apply to the underlying connection, so they bound the guard's reads too.
type guardConn struct {
	net.Conn
	r   *bufio.Reader // Conn, buffered: a macro packet and its command arrive in one read
	buf []byte        // the rest of the current checked packet, header included
	err error
}

func (g *guardConn) Read(p []byte) (int, error) {
	if len(g.buf) == 0 {
		if g.err != nil {
			return 0, g.err
		}
		if g.buf, g.err = readPacket(g.r); g.err != nil {
			return 0, g.err
		}
	}
	n := copy(p, g.buf)
	g.buf = g.buf[n:]
	return n, nil
}

// readPacket reads one packet with its length header and checks it.
func readPacket(r io.Reader) ([]byte, error) {
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, err
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if n > maxPacket {
		return nil, fmt.Errorf("%w: %d octets", ErrBadPacket, n)
	}
	pkt := make([]byte, 4+int(n))
	copy(pkt, hdr[:])
	if _, err := io.ReadFull(r, pkt[4:]); err != nil {
		return nil, err
	}
	if err := checkPacket(pkt[4:]); err != nil {
		return nil, err
	}
	return pkt, nil
}
