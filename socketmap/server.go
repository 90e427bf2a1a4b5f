package socketmap

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"
)

// Postfix's limits and timeouts (socketmap_table(5) "PROTOCOL LIMITS", dict_sockmap.c
// DICT_SOCKMAP_DEF_*), and the defaults the server derives from them.
const (
	// DefaultMaxQuery is the longest key served, Postfix's socketmap_max_query_size
	// default (10000 bytes, "not including the socketmap and netstring encapsulation").
	// Postfix 3.12 and later never send a longer key: they answer "not found" themselves
	// (dict_sockmap_lookup: "query too large"). Older ones send it and get PERM, a lookup
	// error; no next-hop domain or [host]:port is that long.
	DefaultMaxQuery = 10000
	// MaxName is the longest map name served. Postfix sends the name from the table's
	// "socketmap:...:name" as it is; names are short words such as QUERY.
	MaxName = 255
	// DefaultMaxReply is the longest reply sent, Postfix's socketmap_max_reply_size
	// default (100000 bytes, not including the netstring encapsulation). Postfix refuses
	// a longer one (netstring_get: NETSTRING_ERR_SIZE) and treats it as a lookup error.
	DefaultMaxReply = 100000
	// DefaultTimeout is the budget of one lookup, from the moment its request has been
	// read until its reply is due. Postfix waits 100s for a reply (DICT_SOCKMAP_DEF_TIMEOUT,
	// not configurable); a lookup that cannot answer in a small fraction of that is better
	// answered TIMEOUT, which makes Postfix defer and try again later, than left to hold a
	// delivery agent.
	DefaultTimeout = 10 * time.Second
	// DefaultIdleTimeout is how long a connection may wait for its next request. Postfix
	// closes a socketmap connection it has not used for 10s itself (DICT_SOCKMAP_DEF_MAX_IDLE)
	// and any connection after 100s (DICT_SOCKMAP_DEF_MAX_TTL), so with Postfix as the
	// client the server never closes first; the timeout only reaps clients that hold a
	// connection without using it. Six times Postfix's idle limit leaves room for a busy
	// or paused client; if the server closes a connection just as Postfix sends on it,
	// Postfix retries the request once on a new connection (dict_sockmap_lookup), so the
	// race costs a reconnect, never a lookup.
	DefaultIdleTimeout = 60 * time.Second
	// DefaultIOTimeout bounds the rest of a request after its first byte, and the writing
	// of a reply. Postfix writes a request (at most ~10 KB) with one write and reads
	// replies at once, so a request that trickles in is not from Postfix.
	DefaultIOTimeout = 10 * time.Second
	// DefaultMaxConns is the number of connections served at once; one more is closed
	// at once (Postfix retries once, then defers the lookup). Each Postfix delivery agent
	// holds one connection per socketmap endpoint, and default_process_limit is 100.
	DefaultMaxConns = 4096
)

// ErrServerClosed is returned by Serve after Shutdown or Close.
var ErrServerClosed = errors.New("socketmap: server closed")

// Server serves the socketmap protocol: one netstring request "NAME KEY" at a time on
// each connection, each answered by one netstring reply (socketmap_table(5)). Limits and
// timeouts that are zero (or negative) select the defaults above. Set the fields before
// Serve; do not change them after.
type Server struct {
	Handler Handler // answers every well-formed request
	// Observe, when set, is told of every reply just before it is sent, malformed requests
	// included (with name ""). The name is the client's: an Observer that uses it as a
	// metric label must map names it does not serve to one value.
	Observe Observer
	Log     *slog.Logger // protocol errors and handler panics; nil discards

	Timeout     time.Duration // budget of one lookup (ctx deadline of Handler); DefaultTimeout
	IdleTimeout time.Duration // wait for the next request; DefaultIdleTimeout
	IOTimeout   time.Duration // rest of a request, and writing its reply; DefaultIOTimeout
	MaxQuery    int           // longest key; DefaultMaxQuery
	MaxReply    int           // longest reply, without the netstring encapsulation; DefaultMaxReply
	MaxConns    int           // connections at once; DefaultMaxConns

	closing   atomic.Bool
	mu        sync.Mutex
	listeners map[net.Listener]struct{}
	conns     map[*conn]struct{}
	active    sync.WaitGroup // Serve loops and connections
	handlers  sync.WaitGroup // handler goroutines, including those past their deadline
	base      context.Context
	cancel    context.CancelFunc
	done      chan struct{} // closed by Shutdown and Close

	logMu      sync.Mutex
	logWindow  time.Time
	logCount   int
	logDropped int
}

func (s *Server) init() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.done == nil {
		s.done = make(chan struct{})
		s.base, s.cancel = context.WithCancel(context.Background())
		s.listeners = make(map[net.Listener]struct{})
		s.conns = make(map[*conn]struct{})
	}
}

// or is v, or def when v is not positive.
func or[T int | time.Duration](v, def T) T {
	if v <= 0 {
		return def
	}
	return v
}

// clientLog logs what a client caused, at most logBurst lines a second: a client can
// open connections faster than a log should grow. The next line logged says how many
// were dropped.
func (s *Server) clientLog(level slog.Level, msg string, args ...any) {
	s.logMu.Lock()
	now := time.Now()
	if now.Sub(s.logWindow) >= time.Second {
		s.logWindow, s.logCount = now, 0
	}
	s.logCount++
	if s.logCount > logBurst {
		s.logDropped++
		s.logMu.Unlock()
		return
	}
	if s.logDropped > 0 {
		args = append(args, "dropped_log_lines", s.logDropped)
		s.logDropped = 0
	}
	s.logMu.Unlock()
	s.log().Log(context.Background(), level, msg, args...)
}

const logBurst = 10

func (s *Server) log() *slog.Logger {
	if s.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return s.Log
}

// Serve accepts connections on ln and serves each until Shutdown or Close, which make it
// return ErrServerClosed. It may be called for several listeners. ln is closed on return.
func (s *Server) Serve(ln net.Listener) error {
	s.init()
	s.mu.Lock()
	if s.closing.Load() {
		s.mu.Unlock()
		ln.Close()
		return ErrServerClosed
	}
	s.listeners[ln] = struct{}{}
	s.active.Add(1)
	s.mu.Unlock()
	defer s.active.Done()
	defer func() {
		s.mu.Lock()
		delete(s.listeners, ln)
		s.mu.Unlock()
		ln.Close()
	}()

	maxConns := or(s.MaxConns, DefaultMaxConns)
	var backoff time.Duration
	for {
		nc, err := ln.Accept()
		if err != nil {
			if s.closing.Load() {
				return ErrServerClosed
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, os.ErrDeadlineExceeded) || isTemporary(err) {
				// Out of file descriptors and the like: wait, as net/http does.
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				s.log().Warn("socketmap: accept", "err", err, "retry_in", backoff)
				select {
				case <-time.After(backoff):
				case <-s.done:
					return ErrServerClosed
				}
				continue
			}
			return err
		}
		backoff = 0
		c := newConn(s, nc)
		s.mu.Lock()
		if s.closing.Load() {
			s.mu.Unlock()
			nc.Close()
			return ErrServerClosed
		}
		if len(s.conns) >= maxConns {
			s.mu.Unlock()
			s.clientLog(slog.LevelWarn, "socketmap: too many connections, closing a new one", "max_conns", maxConns, "remote", nc.RemoteAddr().String())
			nc.Close()
			continue
		}
		s.conns[c] = struct{}{}
		s.active.Add(1)
		s.mu.Unlock()
		go c.serve()
	}
}

// isTemporary reports accept errors that pass (EMFILE, ENFILE, ECONNABORTED...).
func isTemporary(err error) bool {
	var t interface{ Temporary() bool }
	return errors.As(err, &t) && t.Temporary()
}

// Shutdown stops accepting, closes idle connections, lets each connection with a request
// in progress send its reply and close, and waits for them and for handlers still
// running past their deadline, up to ctx. When ctx ends first it closes everything, as
// Close, and returns ctx's error.
func (s *Server) Shutdown(ctx context.Context) error {
	s.init()
	s.stop()
	s.mu.Lock()
	for c := range s.conns {
		c.interruptIfIdle()
	}
	s.mu.Unlock()
	finished := make(chan struct{})
	go func() {
		s.active.Wait()
		s.cancel()
		s.handlers.Wait()
		close(finished)
	}()
	select {
	case <-finished:
		return nil
	case <-ctx.Done():
		s.Close()
		return ctx.Err()
	}
}

// Close stops accepting, closes every connection at once and cancels the contexts of
// running lookups. It does not wait.
func (s *Server) Close() error {
	s.init()
	s.stop()
	s.cancel()
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.conns {
		c.nc.Close()
		c.mu.Lock()
		if c.cur != nil {
			c.cur.cancel(context.Canceled)
		}
		c.mu.Unlock()
	}
	return nil
}

// stop marks the server closing and closes its listeners.
func (s *Server) stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.closing.Swap(true) {
		close(s.done)
	}
	for ln := range s.listeners {
		ln.Close()
	}
}

// conn is one client connection. One goroutine at a time serves it: the one Serve
// started, or, after a lookup overran its budget, the watchdog that answered TIMEOUT in
// its place (see call); the fields below mu belong to that goroutine.
type conn struct {
	s  *Server
	nc net.Conn

	mu   sync.Mutex
	idle bool       // waiting for the next request; Shutdown interrupts the wait
	cur  *lookupCtx // the lookup in progress, for the watchdog and Close

	br  *bufio.Reader
	out []byte // reply buffer, reused
	big []byte // request buffer for requests longer than the read buffer
	// name is the last map name, reused while the client keeps asking the same map.
	name string
	// The deadlines armed on the socket. Arming one costs more than the rest of a cached
	// lookup's CPU time, so a deadline still far enough away is left as it is: the idle
	// limit is then between 7/8 and all of idleTimeout, a write gets at least half of
	// ioTimeout.
	readDL, writeDL time.Time
	watchdog        *time.Timer   // fires expire at the budget of the lookup in progress
	cached          CachedHandler // s.Handler, when it is one

	idleTimeout, ioTimeout, timeout time.Duration
	maxQuery, maxReply, maxRequest  int
}

func newConn(s *Server, nc net.Conn) *conn {
	maxQuery := or(s.MaxQuery, DefaultMaxQuery)
	cached, _ := s.Handler.(CachedHandler)
	return &conn{
		cached: cached,
		s:      s, nc: nc, br: bufio.NewReaderSize(nc, 4096),
		idleTimeout: or(s.IdleTimeout, DefaultIdleTimeout),
		ioTimeout:   or(s.IOTimeout, DefaultIOTimeout),
		timeout:     or(s.Timeout, DefaultTimeout),
		maxQuery:    maxQuery,
		maxReply:    or(s.MaxReply, DefaultMaxReply),
		// The longest request: "NAME KEY" (socketmap_table(5) "REQUEST FORMAT").
		maxRequest: MaxName + 1 + maxQuery,
	}
}

// aLongTimeAgo is a deadline in the past: it interrupts a blocked read at once.
var aLongTimeAgo = time.Unix(1, 0)

func (c *conn) interruptIfIdle() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.idle {
		c.nc.SetReadDeadline(aLongTimeAgo)
	}
}

// waitIdle marks the connection idle and arms the idle deadline from now, the end of the
// last reply (unless the one armed is within 1/8 of the timeout already); false when the
// server is shutting down and the connection should end. Both under c.mu, so that Shutdown's interruption of an idle
// connection comes after the deadline and stays.
func (c *conn) waitIdle(now time.Time) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.s.closing.Load() {
		return false
	}
	c.idle = true
	if want := now.Add(c.idleTimeout); c.readDL.Before(want.Add(-c.idleTimeout / 8)) {
		c.readDL = want
		c.nc.SetReadDeadline(want)
	}
	return true
}

func (c *conn) setActive() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.idle = false
	return !c.s.closing.Load()
}

// serve serves the connection until it ends, or until a watchdog takes it over.
func (c *conn) serve() {
	if c.loop(time.Now()) {
		c.end()
	}
}

// end closes the connection and forgets it.
func (c *conn) end() {
	s := c.s
	c.nc.Close()
	if c.watchdog != nil {
		c.watchdog.Stop()
	}
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
	s.active.Done()
}

// loop reads requests and answers them, one at a time, from now on. It returns true
// when the connection is to end, false when another goroutine serves it now. It reads
// the clock twice per request, at its start and at its reply (time.Now is a good share of
// a cached lookup's CPU time).
func (c *conn) loop(now time.Time) bool {
	s := c.s
	for {
		if !c.waitIdle(now) {
			return true
		}
		if _, err := c.br.Peek(1); err != nil {
			// EOF: the client is done (Postfix closes after 10s idle); a timeout: the
			// idle limit or Shutdown. Neither is worth a reply.
			if err != io.EOF && !errors.Is(err, os.ErrDeadlineExceeded) {
				s.log().Debug("socketmap: read", "remote", c.remote(), "err", err)
			}
			return true
		}
		if !c.setActive() {
			return true
		}
		// Postfix writes a request with one write: it is usually all there. If not, the
		// rest must arrive within ioTimeout.
		start := time.Now()
		if !buffered(c.br) {
			c.readDL = start.Add(c.ioTimeout)
			c.nc.SetReadDeadline(c.readDL)
		}
		req, big, err := readNetstring(c.br, c.maxRequest, c.big)
		c.big = big
		if err != nil {
			c.badNetstring(err, start)
			return true
		}
		r, name, owner := c.lookup(req, start)
		if !owner {
			return false
		}
		var ok bool
		if now, ok = c.reply(r, name, start); !ok {
			return true
		}
	}
}

// buffered reports whether r's buffer holds a whole netstring (or the start of one that
// readNetstring will refuse without reading more).
func buffered(r *bufio.Reader) bool {
	p, _ := r.Peek(r.Buffered())
	n := 0
	for i, b := range p {
		switch {
		case b == ':':
			return len(p) > i+n+1
		case b < '0' || b > '9' || n > 1<<20:
			return true // malformed or too long: refused at once
		}
		n = n*10 + int(b-'0')
	}
	return false
}

// badNetstring ends a connection whose input is not a netstring: the framing is lost, so
// nothing after it can be read as a request. A format or size error gets a PERM reply
// first (Postfix, were it the client, would log the reason); a request cut short by EOF
// or the I/O deadline gets nothing, there is nobody to read it.
func (c *conn) badNetstring(err error, start time.Time) {
	s := c.s
	var reason string
	switch err {
	case errFormat:
		reason = "malformed netstring"
	case errSize:
		reason = fmt.Sprintf("request longer than %d bytes", MaxName+1+or(s.MaxQuery, DefaultMaxQuery))
	default:
		s.clientLog(slog.LevelInfo, "socketmap: incomplete request, closing", "remote", c.remote(), "err", err)
		return
	}
	s.clientLog(slog.LevelInfo, "socketmap: "+reason+", closing", "remote", c.remote())
	c.out = appendNetstring(c.out[:0], string(StatusPerm), " ", reason)
	if s.Observe != nil {
		s.Observe("", StatusPerm, time.Since(start))
	}
	c.nc.Write(c.out) //nolint:errcheck // the connection ends either way
	c.lingerClose()
}

// lingerClose ends the connection after a PERM reply to input that may still be arriving
// (a request announced as 10^18 bytes): closing a socket with unread data makes the kernel
// reset the connection, which can destroy the reply before the client reads it. So it
// half-closes, then discards what arrives for a moment, as net/http does.
func (c *conn) lingerClose() {
	if cw, ok := c.nc.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite() //nolint:errcheck
	}
	c.nc.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
	io.CopyN(io.Discard, c.nc, 256<<10) //nolint:errcheck
}

// lookup parses a request and runs the handler on it within its budget. It returns the
// reply and the map name ("" for a malformed request), and whether this goroutine still
// serves the connection (see call).
func (c *conn) lookup(req []byte, start time.Time) (Reply, string, bool) {
	// socketmap_table(5) "REQUEST FORMAT": "name <space> key". The name ends at the first
	// space; the key is the rest and may contain spaces.
	sp := bytes.IndexByte(req, ' ')
	if sp < 0 {
		return Reply{StatusPerm, "malformed request: expected \"name key\""}, "", true
	}
	nameb, keyb := req[:sp], req[sp+1:]
	if len(nameb) == 0 || len(nameb) > MaxName || !printable(nameb, false) {
		return Reply{StatusPerm, "malformed request: invalid map name"}, "", true
	}
	if c.name != string(nameb) { // no allocation for the comparison
		c.name = string(nameb)
	}
	name := c.name
	if len(keyb) > c.maxQuery {
		// Postfix 3.12+ never sends such a key (dict_sockmap_lookup: "query too large").
		return Reply{StatusPerm, fmt.Sprintf("key longer than %d bytes", c.maxQuery)}, name, true
	}
	// A key is text: a domain, [host]:port, an address. NUL would end it early in
	// Postfix's C strings, other control bytes are not in any name Postfix looks up, and
	// Postfix sends UTF-8 only (smtputf8) or ASCII; none of these reaches the handler.
	if !printable(keyb, true) || !utf8.Valid(keyb) {
		return Reply{StatusPerm, "malformed request: control character or invalid UTF-8 in key"}, name, true
	}
	key := string(keyb)
	if c.s.Handler == nil {
		return Reply{StatusTemp, "no handler"}, name, true
	}
	if c.cached != nil {
		if r, ok := c.s.cached(c.cached, name, key); ok {
			return r, name, true
		}
	}
	r, owner := c.call(name, key, start)
	return r, name, owner
}

// cached runs h.LookupCached inline; a panic is that lookup's TEMP.
func (s *Server) cached(h CachedHandler, name, key string) (r Reply, ok bool) {
	defer func() {
		if p := recover(); p != nil {
			s.log().Error("socketmap: handler panic", "map", name, "key", key, "panic", p, "stack", string(debug.Stack()))
			r, ok = Reply{StatusTemp, "internal error"}, true
		}
	}()
	return h.LookupCached(name, key)
}

// printable reports whether b has no ASCII control bytes (and no space, unless
// spaceOK); bytes of 0x80 and above are left to the UTF-8 check.
func printable(b []byte, spaceOK bool) bool {
	for _, ch := range b {
		if ch < 0x20 || ch == 0x7f || (ch == ' ' && !spaceOK) {
			return false
		}
	}
	return true
}

// call runs the handler in the connection's goroutine, watched by the connection's
// watchdog timer. A handler that returns within its budget costs no goroutine and no
// channel. One that overruns it costs that lookup a TIMEOUT reply and nothing else: at
// the deadline the watchdog (expire) answers TIMEOUT and goes on serving the connection
// in its own goroutine, and this one, when the handler finally returns (its ctx is done;
// it should return soon), drops the answer and ends; call then returns false.
func (c *conn) call(name, key string, start time.Time) (Reply, bool) {
	s := c.s
	lc := &lookupCtx{deadline: start.Add(c.timeout), start: start, name: name}
	// Under c.mu, which expire takes first: it sees c.cur and c.watchdog as set here.
	c.mu.Lock()
	c.cur = lc
	if c.watchdog == nil {
		c.watchdog = time.AfterFunc(c.timeout, c.expire)
	} else {
		c.watchdog.Reset(c.timeout)
	}
	c.mu.Unlock()
	if s.base.Err() != nil { // Close came first (it cancels c.cur, set above, otherwise)
		lc.cancel(context.Canceled)
	}
	r := s.safeLookup(lc, name, key)
	if !lc.state.CompareAndSwap(lookupRunning, lookupAnswered) {
		// The watchdog answered and serves the connection; it counted this goroutine
		// as a late handler.
		s.handlers.Done()
		return r, false
	}
	c.watchdog.Stop()
	c.mu.Lock()
	c.cur = nil
	c.mu.Unlock()
	lc.cancel(context.Canceled) // the lookup is over, as with context.WithTimeout's cancel
	return r, true
}

// expire is the watchdog: it answers TIMEOUT for a lookup past its deadline and takes
// over the connection.
func (c *conn) expire() {
	s := c.s
	c.mu.Lock()
	lc := c.cur
	c.mu.Unlock()
	if lc == nil || time.Now().Before(lc.deadline) {
		return // the timer of an earlier lookup, which answered in time
	}
	// Counted before the handover, while the connection still counts in s.active, so
	// that Shutdown, which waits for handlers after connections, sees it.
	s.handlers.Add(1)
	if !lc.state.CompareAndSwap(lookupRunning, lookupExpired) {
		s.handlers.Done() // the handler answered just in time
		return
	}
	lc.cancel(context.DeadlineExceeded)
	c.mu.Lock()
	c.cur = nil
	c.mu.Unlock()
	r := Reply{StatusTimeout, fmt.Sprintf("lookup took longer than %v", c.timeout)}
	if s.base.Err() != nil {
		r = Reply{StatusTemp, "server shutting down"}
	}
	if now, ok := c.reply(r, lc.name, lc.start); !ok || c.loop(now) {
		c.end()
	}
}

// lookupCtx is the context of one lookup: its budget's deadline, cancelled by the
// watchdog at the deadline, by call when the lookup is over, or by Close. It costs less
// than context.WithTimeout, whose timer would be a second one per lookup; its Done
// channel is made only for a handler that asks for it.
type lookupCtx struct {
	deadline, start time.Time
	name            string
	state           atomic.Int32 // lookupRunning, then lookupAnswered or lookupExpired

	mu    sync.Mutex
	done  chan struct{}
	err   error
	after map[*func()]struct{} // AfterFunc's functions not yet run
}

const (
	lookupRunning int32 = iota
	lookupAnswered
	lookupExpired
)

func (lc *lookupCtx) Deadline() (time.Time, bool) { return lc.deadline, true }
func (lc *lookupCtx) Value(any) any               { return nil }

func (lc *lookupCtx) Done() <-chan struct{} {
	lc.mu.Lock()
	defer lc.mu.Unlock()
	if lc.done == nil {
		lc.done = make(chan struct{})
		if lc.err != nil {
			close(lc.done)
		}
	}
	return lc.done
}

func (lc *lookupCtx) Err() error {
	lc.mu.Lock()
	defer lc.mu.Unlock()
	return lc.err
}

func (lc *lookupCtx) cancel(err error) {
	lc.mu.Lock()
	defer lc.mu.Unlock()
	if lc.err == nil {
		lc.err = err
		if lc.done != nil {
			close(lc.done)
		}
		for f := range lc.after {
			go (*f)()
		}
		lc.after = nil
	}
}

// AfterFunc is context.AfterFunc for lookupCtx. The context package uses it for contexts
// a handler derives from ctx, instead of a goroutine per derived context waiting for Done.
func (lc *lookupCtx) AfterFunc(f func()) (stop func() bool) {
	lc.mu.Lock()
	defer lc.mu.Unlock()
	if lc.err != nil {
		go f()
		return func() bool { return false }
	}
	if lc.after == nil {
		lc.after = make(map[*func()]struct{})
	}
	p := &f
	lc.after[p] = struct{}{}
	return func() bool {
		lc.mu.Lock()
		defer lc.mu.Unlock()
		_, waiting := lc.after[p]
		delete(lc.after, p)
		return waiting
	}
}

// safeLookup runs the handler; a panic is that lookup's TEMP.
func (s *Server) safeLookup(ctx context.Context, name, key string) (r Reply) {
	defer func() {
		if p := recover(); p != nil {
			s.log().Error("socketmap: handler panic", "map", name, "key", key, "panic", p, "stack", string(debug.Stack()))
			r = Reply{StatusTemp, "internal error"}
		}
	}()
	return s.Handler.Lookup(ctx, name, key)
}

// reply sends r for the request read at start. It returns the time it was sent, and
// false when the connection is to end.
func (c *conn) reply(r Reply, name string, start time.Time) (time.Time, bool) {
	s := c.s
	maxReply := c.maxReply
	switch r.Status {
	case StatusOK:
		// Postfix's maps_find() takes an empty value for a configuration error ("should
		// return NO RESULT in case of NOT FOUND"), never for a value. Whether the handler
		// meant NOTFOUND the server cannot tell; TEMP fails safe.
		if r.Data == "" {
			s.log().Error("socketmap: handler returned OK without data", "map", name)
			r = Reply{StatusTemp, "internal error"}
		}
	case StatusTemp, StatusTimeout, StatusPerm:
	case StatusNotFound:
		// socketmap_table(5): "NOTFOUND <space>", no data.
		r.Data = ""
	default:
		s.log().Error("socketmap: handler returned an invalid status", "map", name, "status", string(r.Status))
		r = Reply{StatusTemp, "internal error"}
	}
	// Postfix reads the reply as a C string (dict_sockmap_lookup: VSTRING_TERMINATE, then
	// strcmp and split_at): a NUL would silently cut the data short, which for a TLS
	// policy could drop the attributes that make it strict. Never send one.
	if strings.IndexByte(r.Data, 0) >= 0 {
		s.log().Error("socketmap: handler reply contains NUL", "map", name, "status", string(r.Status))
		r = Reply{StatusTemp, "internal error"}
	}
	// Postfix refuses a reply longer than socketmap_max_reply_size (netstring_get:
	// NETSTRING_ERR_SIZE) and reports it as DICT_ERR_RETRY, the class of TEMP (PERM is
	// DICT_ERR_CONFIG, a configuration error). Say so with a TEMP that fits.
	if len(r.Status)+1+len(r.Data) > maxReply {
		s.log().Error("socketmap: reply too large", "map", name, "status", string(r.Status), "bytes", len(r.Status)+1+len(r.Data), "max_reply", maxReply)
		r = Reply{StatusTemp, "reply too large"}
	}
	// Always "STATUS <space> data", also with empty data: dict_sockmap_lookup splits the
	// reply at its first space, and Postfix versions before that was hardened return no
	// value at all (not found) for an "OK" without one.
	c.out = appendNetstring(c.out[:0], string(r.Status), " ", r.Data)
	if cap(c.out) > 64<<10 {
		defer func() { c.out = nil }() // do not keep a near-limit reply's buffer per connection
	}
	now := time.Now()
	if c.writeDL.Before(now.Add(c.ioTimeout / 2)) {
		c.writeDL = now.Add(c.ioTimeout)
		c.nc.SetWriteDeadline(c.writeDL)
	}
	// Observed before the write, so that whoever reads the reply finds it counted.
	if s.Observe != nil {
		s.Observe(name, r.Status, now.Sub(start))
	}
	if _, err := c.nc.Write(c.out); err != nil {
		s.log().Debug("socketmap: write", "remote", c.remote(), "err", err)
		return now, false
	}
	return now, true
}

func (c *conn) remote() string {
	if a := c.nc.RemoteAddr(); a != nil {
		return a.String()
	}
	return ""
}
