package socketmap

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net"
	"time"
)

// Client is a socketmap client as Postfix's dict_sockmap speaks it: one request, then its
// reply, several in turn on one connection. It is for tests, tools and the load
// generator; it is not safe for concurrent use.
type Client struct {
	conn     net.Conn
	br       *bufio.Reader
	out, big []byte
	// MaxReply is the longest reply accepted (DefaultMaxReply when 0), as Postfix's
	// socketmap_max_reply_size.
	MaxReply int
	// Timeout bounds each Lookup (none when 0). Postfix's is 100s.
	Timeout time.Duration
}

// NewClient returns a client on conn; Close closes conn.
func NewClient(conn net.Conn) *Client {
	return &Client{conn: conn, br: bufio.NewReaderSize(conn, 4096)}
}

// Dial connects to a socketmap server at address on network ("tcp" or "unix").
func Dial(network, address string) (*Client, error) {
	c, err := net.Dial(network, address)
	if err != nil {
		return nil, err
	}
	return NewClient(c), nil
}

// Close closes the connection.
func (c *Client) Close() error { return c.conn.Close() }

// ErrReply is a reply that is not "STATUS <space> data" with one of the five statuses.
var ErrReply = errors.New("socketmap: malformed reply")

// Lookup sends the request "name key" and reads its reply. An error means the exchange
// failed (I/O, a malformed or oversized reply); the connection should not be used again.
func (c *Client) Lookup(name, key string) (Reply, error) {
	if c.Timeout > 0 {
		c.conn.SetDeadline(time.Now().Add(c.Timeout))
	}
	c.out = appendNetstring(c.out[:0], name, " ", key)
	if _, err := c.conn.Write(c.out); err != nil {
		return Reply{}, err
	}
	p, big, err := readNetstring(c.br, or(c.MaxReply, DefaultMaxReply), c.big)
	c.big = big
	if err != nil {
		return Reply{}, fmt.Errorf("socketmap: reading reply: %w", err)
	}
	return ParseReply(p)
}

// ParseReply parses the data of a reply netstring as dict_sockmap_lookup does: the status
// is what precedes the first space, the data what follows it.
func ParseReply(p []byte) (Reply, error) {
	status, data, ok := bytes.Cut(p, []byte{' '})
	if !ok {
		return Reply{}, fmt.Errorf("%w: no space in %.40q", ErrReply, p)
	}
	switch s := Status(status); s {
	case StatusOK, StatusNotFound, StatusTemp, StatusTimeout, StatusPerm:
		return Reply{Status: s, Data: string(data)}, nil
	}
	return Reply{}, fmt.Errorf("%w: unknown status %.40q", ErrReply, status)
}

// String returns the reply as it is sent, without the netstring encapsulation.
func (r Reply) String() string { return string(r.Status) + " " + r.Data }
