package socketmap

import (
	"bufio"
	"errors"
	"io"
	"strconv"
)

// Netstrings (https://cr.yp.to/proto/netstrings.txt, Postfix's netstring(3)): "LEN:DATA,"
// where LEN is the decimal length of DATA. Every socketmap request and reply is one
// netstring (socketmap_table(5) "PROTOCOL").

// errFormat is a netstring that is not one: a length with a non-digit, an empty length, a
// length with a leading zero, or data not followed by ",". Postfix's netstring.c raises
// NETSTRING_ERR_FORMAT for the same inputs (it tolerates leading zeros and an empty length,
// which Postfix never sends; the netstring definition prohibits both).
var errFormat = errors.New("malformed netstring")

// errSize is a netstring whose announced length exceeds the limit (Postfix's
// NETSTRING_ERR_SIZE). It is detected while the length is read: a length of 10^18 is
// refused at its digit that passes the limit, before any of its data is awaited.
var errSize = errors.New("netstring too long")

// readNetstring reads one netstring of at most limit data bytes from r. The result
// aliases r's buffer when the netstring fits in it (no copy; valid until the next read of
// r) and buf (grown as needed) otherwise. At a clean end of input before the first byte it
// returns io.EOF; a netstring cut short returns io.ErrUnexpectedEOF; read errors (a
// deadline) are returned as they are.
func readNetstring(r *bufio.Reader, limit int, buf []byte) ([]byte, []byte, error) {
	n, digits := 0, 0
	for {
		b, err := r.ReadByte()
		if err != nil {
			if err == io.EOF && digits > 0 {
				err = io.ErrUnexpectedEOF
			}
			return nil, buf, err
		}
		if b == ':' {
			if digits == 0 {
				return nil, buf, errFormat
			}
			break
		}
		if b < '0' || b > '9' || (digits == 1 && n == 0) {
			return nil, buf, errFormat
		}
		n = n*10 + int(b-'0')
		digits++
		if n > limit {
			return nil, buf, errSize
		}
	}
	if n+1 <= r.Size() {
		// The common case: a short request, already in the buffer or arriving with it.
		p, err := r.Peek(n + 1)
		if err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return nil, buf, err
		}
		if p[n] != ',' {
			return nil, buf, errFormat
		}
		r.Discard(n + 1) //nolint:errcheck // cannot fail: Peek returned n+1 bytes
		return p[:n], buf, nil
	}
	if cap(buf) < n+1 {
		buf = make([]byte, n+1)
	}
	buf = buf[:n+1]
	if _, err := io.ReadFull(r, buf); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return nil, buf, err
	}
	if buf[n] != ',' {
		return nil, buf, errFormat
	}
	return buf[:n], buf, nil
}

// appendNetstring appends the netstring of the concatenation of parts to dst.
func appendNetstring(dst []byte, parts ...string) []byte {
	n := 0
	for _, p := range parts {
		n += len(p)
	}
	dst = strconv.AppendInt(dst, int64(n), 10)
	dst = append(dst, ':')
	for _, p := range parts {
		dst = append(dst, p...)
	}
	return append(dst, ',')
}
