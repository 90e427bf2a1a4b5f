package socketmap_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tlsgate/tlsgate/internal/fake"
	"github.com/tlsgate/tlsgate/socketmap"
)

// policies is the map the tests' handler serves, as a TLS policy table would.
var policies = map[string]string{
	"example.com":      "secure match=nexthop:dot-nexthop servername=hostname",
	".example.com":     "encrypt",
	"[mx.example]:25":  "dane-only",
	"bücher.example":   "dane",
	"key with  spaces": "may",
}

// tableHandler answers map QUERY from policies, TEMP for temp.test and PERM for other
// maps, and records every key it is asked.
type tableHandler struct {
	mu   sync.Mutex
	keys []string
}

func (h *tableHandler) Lookup(ctx context.Context, name, key string) socketmap.Reply {
	h.mu.Lock()
	h.keys = append(h.keys, name+" "+key)
	h.mu.Unlock()
	if name != "QUERY" {
		return socketmap.Reply{Status: socketmap.StatusPerm, Data: "unknown map " + name}
	}
	if key == "temp.test" {
		return socketmap.Reply{Status: socketmap.StatusTemp, Data: "DNS lookup failed"}
	}
	if v, ok := policies[key]; ok {
		return socketmap.Reply{Status: socketmap.StatusOK, Data: v}
	}
	return socketmap.Reply{Status: socketmap.StatusNotFound}
}

func (h *tableHandler) asked() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]string(nil), h.keys...)
}

// start serves s on a loopback port until the test ends, then shuts it down and checks
// that Serve returned ErrServerClosed and that no goroutine is left behind.
func start(t *testing.T, s *socketmap.Server) string {
	t.Helper()
	before := runtime.NumGoroutine()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- s.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		if err := <-served; !errors.Is(err, socketmap.ErrServerClosed) {
			t.Errorf("Serve returned %v, want ErrServerClosed", err)
		}
		fake.WaitGoroutines(t, before, 0)
	})
	return ln.Addr().String()
}

// raw is a client that speaks bytes, for input no well-behaved client sends.
type raw struct {
	t  *testing.T
	c  net.Conn
	br *bufio.Reader
}

func dialRaw(t *testing.T, addr string) *raw {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second)) // a hung test fails instead of hanging
	return &raw{t: t, c: c, br: bufio.NewReader(c)}
}

func (r *raw) send(s string) {
	r.t.Helper()
	if _, err := io.WriteString(r.c, s); err != nil {
		r.t.Fatalf("write: %v", err)
	}
}

// reply reads one reply netstring and returns its data.
func (r *raw) reply() string {
	r.t.Helper()
	s, err := readReply(r.br)
	if err != nil {
		r.t.Fatal(err)
	}
	return s
}

func readReply(br *bufio.Reader) (string, error) {
	lenStr, err := br.ReadString(':')
	if err != nil {
		return "", fmt.Errorf("reading reply length: %w", err)
	}
	n, err := strconv.Atoi(strings.TrimSuffix(lenStr, ":"))
	if err != nil {
		return "", fmt.Errorf("reply length %q: %w", lenStr, err)
	}
	buf := make([]byte, n+1)
	if _, err := io.ReadFull(br, buf); err != nil {
		return "", fmt.Errorf("reading reply: %w", err)
	}
	if buf[n] != ',' {
		return "", fmt.Errorf("reply %q does not end with a comma", buf)
	}
	return string(buf[:n]), nil
}

// closed checks that the server ends the connection without sending anything more.
func (r *raw) closed() {
	r.t.Helper()
	b, err := io.ReadAll(r.br)
	if err != nil && !errors.Is(err, net.ErrClosed) && !isReset(err) {
		r.t.Fatalf("after the last reply: %v", err)
	}
	if len(b) > 0 {
		r.t.Fatalf("more after the last reply: %q", b)
	}
}

func isReset(err error) bool { return err != nil && strings.Contains(err.Error(), "connection reset") }

func ns(s string) string { return fmt.Sprintf("%d:%s,", len(s), s) }

// TestRequestsAndReplies follows socketmap_table(5): requests "name key", replies
// "OK data", "NOTFOUND ", "TEMP reason", "PERM reason", all in turn on one connection.
func TestRequestsAndReplies(t *testing.T) {
	h := &tableHandler{}
	addr := start(t, &socketmap.Server{Handler: h})
	c := dialRaw(t, addr)
	tests := []struct {
		request, reply string
		asked          string // the request as the handler saw it; "" when it was not asked
	}{
		{"QUERY example.com", "OK secure match=nexthop:dot-nexthop servername=hostname", "QUERY example.com"},
		{"QUERY .example.com", "OK encrypt", "QUERY .example.com"},
		{"QUERY [mx.example]:25", "OK dane-only", "QUERY [mx.example]:25"},
		{"QUERY unknown.test", "NOTFOUND ", "QUERY unknown.test"},
		{"QUERY temp.test", "TEMP DNS lookup failed", "QUERY temp.test"},
		{"OTHER example.com", "PERM unknown map OTHER", "OTHER example.com"},
		// The name ends at the first space; the key is the rest, spaces and all.
		{"QUERY key with  spaces", "OK may", "QUERY key with  spaces"},
		{"QUERY bücher.example", "OK dane", "QUERY bücher.example"}, // UTF-8 (SMTPUTF8)
		{"QUERY ", "NOTFOUND ", "QUERY "},                           // an empty key is a key
		// Well-framed but not "name key": PERM, and the connection goes on.
		{"QUERY", `PERM malformed request: expected "name key"`, ""},
		{" example.com", "PERM malformed request: invalid map name", ""},
		{"QU\tERY example.com", "PERM malformed request: invalid map name", ""},
		// Keys with NUL or control bytes never reach the handler.
		{"QUERY example.com\x00.evil", "PERM malformed request: control character or invalid UTF-8 in key", ""},
		{"QUERY example.com\n", "PERM malformed request: control character or invalid UTF-8 in key", ""},
		{"QUERY exa\x7fmple.com", "PERM malformed request: control character or invalid UTF-8 in key", ""},
		{"QUERY \xff\xfe.example", "PERM malformed request: control character or invalid UTF-8 in key", ""},
		// Postfix never sends a key over socketmap_max_query_size; one that fits the
		// netstring limit is refused alone.
		{"QUERY " + strings.Repeat("a", socketmap.DefaultMaxQuery+1), "PERM key longer than 10000 bytes", ""},
		{"QUERY example.com", "OK secure match=nexthop:dot-nexthop servername=hostname", "QUERY example.com"},
	}
	var want []string
	for _, tt := range tests {
		c.send(ns(tt.request))
		if got := c.reply(); got != tt.reply {
			t.Errorf("%.40q: reply %q, want %q", tt.request, got, tt.reply)
		}
		if tt.asked != "" {
			want = append(want, tt.asked)
		}
	}
	if got := h.asked(); strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("handler asked %q, want %q", got, want)
	}
}

// TestRequestsInOneWrite: the server reads requests one at a time, so several sent at
// once (Postfix does not, but nothing forbids it) are answered in order.
func TestRequestsInOneWrite(t *testing.T) {
	addr := start(t, &socketmap.Server{Handler: &tableHandler{}})
	c := dialRaw(t, addr)
	c.send(ns("QUERY example.com") + ns("QUERY nope.test") + ns("QUERY .example.com"))
	for _, want := range []string{"OK secure match=nexthop:dot-nexthop servername=hostname", "NOTFOUND ", "OK encrypt"} {
		if got := c.reply(); got != want {
			t.Errorf("reply %q, want %q", got, want)
		}
	}
}

// TestHandlerRepliesAreChecked: whatever the handler returns, what goes to Postfix is a
// reply Postfix reads as meant, within socketmap_max_reply_size.
func TestHandlerRepliesAreChecked(t *testing.T) {
	const maxReply = 1000
	answers := map[string]socketmap.Reply{
		"ok":            {Status: socketmap.StatusOK, Data: "secure"},
		"ok-empty":      {Status: socketmap.StatusOK},
		"notfound-data": {Status: socketmap.StatusNotFound, Data: "ignored"},
		"timeout":       {Status: socketmap.StatusTimeout, Data: "resolver"},
		"bad-status":    {Status: "MAYBE", Data: "x"},
		"empty-status":  {},
		"nul":           {Status: socketmap.StatusOK, Data: "secure\x00 match=nexthop"},
		"at-limit":      {Status: socketmap.StatusOK, Data: strings.Repeat("x", maxReply-len("OK "))},
		"over-limit":    {Status: socketmap.StatusOK, Data: strings.Repeat("x", maxReply-len("OK ")+1)},
		"huge":          {Status: socketmap.StatusOK, Data: strings.Repeat("x", 1<<20)},
	}
	var observed []string
	var mu sync.Mutex
	addr := start(t, &socketmap.Server{
		MaxReply: maxReply,
		Handler: socketmap.HandlerFunc(func(ctx context.Context, name, key string) socketmap.Reply {
			return answers[key]
		}),
		Observe: func(name string, st socketmap.Status, took time.Duration) {
			mu.Lock()
			observed = append(observed, name+" "+string(st))
			mu.Unlock()
		},
	})
	tests := []struct{ key, reply string }{
		{"ok", "OK secure"},
		// Postfix's maps_find takes an empty value for an error, not a value.
		{"ok-empty", "TEMP internal error"},
		{"notfound-data", "NOTFOUND "},
		{"timeout", "TIMEOUT resolver"},
		{"bad-status", "TEMP internal error"},
		{"empty-status", "TEMP internal error"},
		// Postfix reads the reply as a C string: "secure" alone would be a downgrade.
		{"nul", "TEMP internal error"},
		{"at-limit", "OK " + strings.Repeat("x", maxReply-len("OK "))},
		// Postfix would refuse it as a lookup error (DICT_ERR_RETRY): say TEMP.
		{"over-limit", "TEMP reply too large"},
		{"huge", "TEMP reply too large"},
	}
	c := dialRaw(t, addr)
	for _, tt := range tests {
		c.send(ns("QUERY " + tt.key))
		if got := c.reply(); got != tt.reply {
			t.Errorf("%s: reply %.60q, want %.60q", tt.key, got, tt.reply)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	want := "QUERY OK,QUERY TEMP,QUERY NOTFOUND,QUERY TIMEOUT,QUERY TEMP,QUERY TEMP,QUERY TEMP,QUERY OK,QUERY TEMP,QUERY TEMP"
	if got := strings.Join(observed, ","); got != want {
		t.Errorf("observed %s\nwant     %s", got, want)
	}
}

// TestMalformedNetstrings: input that is not a netstring gets a PERM reply where the
// server can tell what is wrong, and the connection ends (its framing is lost); the
// server and other clients carry on.
func TestMalformedNetstrings(t *testing.T) {
	var perms atomic.Int32
	h := &tableHandler{}
	addr := start(t, &socketmap.Server{Handler: h, Observe: func(name string, st socketmap.Status, _ time.Duration) {
		if name == "" && st == socketmap.StatusPerm {
			perms.Add(1)
		}
	}})
	const (
		malformed = "PERM malformed netstring"
		tooLong   = "PERM request longer than 10256 bytes"
	)
	tests := []struct {
		name, in, reply string // reply "" when there is none, the connection just ends
	}{
		{"non-digits", "abc:QUERY x,", malformed},
		{"negative length", "-7:QUERY x,", malformed},
		{"space before length", " 7:QUERY x,", malformed},
		{"leading zero", "07:QUERY x,", malformed},
		{"empty length", ":,", malformed},
		{"length too short", "5:QUERY x,", malformed},
		{"no comma", "17:QUERY example.com;", malformed},
		{"newline instead of comma", "17:QUERY example.com\n", malformed},
		{"length 10^18", "1000000000000000000:", tooLong},
		{"length overflowing int64", "99999999999999999999999999999:QUERY x,", tooLong},
		{"over-long", "10257:", tooLong},
		{"cut short", "17:QUERY exa", ""},
		{"length only", "17", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := dialRaw(t, addr)
			c.send(tt.in)
			c.c.(*net.TCPConn).CloseWrite()
			if tt.reply != "" {
				if got := c.reply(); got != tt.reply {
					t.Errorf("reply %q, want %q", got, tt.reply)
				}
			}
			c.closed()
			// The server still serves.
			other := dialRaw(t, addr)
			other.send(ns("QUERY .example.com"))
			if got := other.reply(); got != "OK encrypt" {
				t.Errorf("another client: reply %q", got)
			}
		})
	}
	if got := h.asked(); len(got) != len(tests) { // only the other clients' requests
		t.Errorf("handler asked %q", got)
	}
	if got, want := perms.Load(), int32(11); got != want {
		t.Errorf("observed %d PERM replies to malformed netstrings, want %d", got, want)
	}
}

// TestHugeKey: a 100 KB key (announced and sent) is refused once its length passes the
// limit; the client still reads the PERM reply, then the connection ends.
func TestHugeKey(t *testing.T) {
	addr := start(t, &socketmap.Server{Handler: &tableHandler{}})
	for _, key := range []string{strings.Repeat("a", 100_000), strings.Repeat("\x00", 100_000)} {
		c := dialRaw(t, addr)
		sent := make(chan error, 1)
		go func() { _, err := io.WriteString(c.c, ns("QUERY "+key)); sent <- err }()
		if got := c.reply(); got != "PERM request longer than 10256 bytes" {
			t.Errorf("reply %q", got)
		}
		c.closed()
		<-sent // a write error is fine: the server closed
	}
}

// TestHalfRequest: a client that sends part of a request and stops is disconnected after
// IOTimeout without a reply, one that sends nothing after (7/8 to all of) IdleTimeout;
// other clients are served meanwhile.
func TestHalfRequest(t *testing.T) {
	const ioTimeout, idleTimeout = 300 * time.Millisecond, 600 * time.Millisecond
	addr := start(t, &socketmap.Server{Handler: &tableHandler{}, IOTimeout: ioTimeout, IdleTimeout: idleTimeout})

	half := dialRaw(t, addr)
	idle := dialRaw(t, addr)
	begin := time.Now()
	half.send("17:QUERY exa")

	// Meanwhile another client asks and asks: it is never idle, so it stays.
	stop := make(chan struct{})
	served := make(chan int)
	active := dialRaw(t, addr)
	go func() {
		n := 0
		defer func() { served <- n }()
		for {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := io.WriteString(active.c, ns("QUERY .example.com")); err != nil {
				return
			}
			if got, err := readReply(active.br); err != nil || got != "OK encrypt" {
				return
			}
			n++
		}
	}()

	half.closed()
	if took := time.Since(begin); took < ioTimeout || took > ioTimeout+5*time.Second {
		t.Errorf("half request: connection ended after %v, want about %v", took, ioTimeout)
	}
	idle.closed()
	if took := time.Since(begin); took < idleTimeout*7/8 || took > idleTimeout+5*time.Second {
		t.Errorf("idle client: connection ended after %v, want about %v", took, idleTimeout)
	}
	close(stop)
	if n := <-served; n == 0 {
		t.Errorf("the active client was not served")
	}
	active.send(ns("QUERY .example.com"))
	if got := active.reply(); got != "OK encrypt" {
		t.Errorf("active client after %v: %q", time.Since(begin), got)
	}
}

// TestSlowHandler: a lookup that overruns its budget is answered TIMEOUT at the deadline,
// whether the handler honours ctx or not, and the connection serves its next request at
// once. Shutdown waits for the late handler.
func TestSlowHandler(t *testing.T) {
	const budget = 200 * time.Millisecond
	release := make(chan struct{})
	ctxErr, derivedErr := make(chan error, 1), make(chan error, 1)
	addr := start(t, &socketmap.Server{Timeout: budget, Handler: socketmap.HandlerFunc(
		func(ctx context.Context, name, key string) socketmap.Reply {
			switch key {
			case "honours-ctx":
				<-ctx.Done()
				ctxErr <- ctx.Err()
				return socketmap.Reply{Status: socketmap.StatusTemp, Data: "gave up"}
			case "ignores-ctx":
				<-release
				return socketmap.Reply{Status: socketmap.StatusOK, Data: "too late"}
			case "derives-ctx": // a context derived from ctx ends with it
				sub, cancel := context.WithCancel(ctx)
				defer cancel()
				<-sub.Done()
				derivedErr <- sub.Err()
				return socketmap.Reply{Status: socketmap.StatusTemp, Data: "gave up"}
			}
			return socketmap.Reply{Status: socketmap.StatusOK, Data: "fast"}
		})})
	t.Cleanup(func() { close(release) }) // runs before the server's cleanup, which waits for it

	c := dialRaw(t, addr)
	// Twice "ignores-ctx": the second TIMEOUT comes from the goroutine that took the
	// connection over at the first.
	for _, key := range []string{"honours-ctx", "ignores-ctx", "ignores-ctx", "derives-ctx"} {
		begin := time.Now()
		c.send(ns("QUERY " + key))
		got := c.reply()
		took := time.Since(begin)
		// The handler that honours ctx may win the race at the deadline with its own answer.
		if got != "TIMEOUT lookup took longer than 200ms" && !(key != "ignores-ctx" && got == "TEMP gave up") {
			t.Errorf("%s: reply %q", key, got)
		}
		if took < budget || took > budget+5*time.Second {
			t.Errorf("%s: answered after %v, budget %v", key, took, budget)
		}
		// The late handler is still running (ignores-ctx until the test ends): an
		// answer at all shows it does not hold the connection.
		c.send(ns("QUERY next"))
		if got := c.reply(); got != "OK fast" {
			t.Errorf("after %s: %q", key, got)
		}
	}
	// The handlers that honour ctx return once it is done (the TIMEOUT reply may come
	// before they do).
	for what, ch := range map[string]chan error{"handler's ctx": ctxErr, "derived ctx": derivedErr} {
		select {
		case err := <-ch:
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("%s ended with %v, want DeadlineExceeded", what, err)
			}
		case <-time.After(10 * time.Second):
			t.Errorf("%s never ended", what)
		}
	}
}

// TestPanickingHandler: a panic in the handler is that lookup's TEMP, nothing more.
func TestPanickingHandler(t *testing.T) {
	addr := start(t, &socketmap.Server{Handler: socketmap.HandlerFunc(
		func(ctx context.Context, name, key string) socketmap.Reply {
			if key == "boom" {
				panic("boom")
			}
			return socketmap.Reply{Status: socketmap.StatusOK, Data: "fine"}
		})})
	c := dialRaw(t, addr)
	for _, tt := range []struct{ key, reply string }{{"boom", "TEMP internal error"}, {"x", "OK fine"}, {"boom", "TEMP internal error"}} {
		c.send(ns("QUERY " + tt.key))
		if got := c.reply(); got != tt.reply {
			t.Errorf("%s: %q, want %q", tt.key, got, tt.reply)
		}
	}
}

// TestThousandConnections: 1,000 clients at once, each with a few lookups, all answered.
func TestThousandConnections(t *testing.T) {
	addr := start(t, &socketmap.Server{Handler: &tableHandler{}})
	const n = 1000
	var wg sync.WaitGroup
	errs := make(chan error, n)
	ready := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			cl, err := socketmap.Dial("tcp", addr)
			if err != nil {
				errs <- err
				return
			}
			defer cl.Close()
			cl.Timeout = 20 * time.Second
			<-ready // every connection open before the first lookup
			for j := range 3 {
				key, want := "nope.test", socketmap.Reply{Status: socketmap.StatusNotFound}
				if (i+j)%2 == 0 {
					key, want = ".example.com", socketmap.Reply{Status: socketmap.StatusOK, Data: "encrypt"}
				}
				r, err := cl.Lookup("QUERY", key)
				if err != nil || r != want {
					errs <- fmt.Errorf("client %d lookup %d: %v %v", i, j, r, err)
					return
				}
			}
		})
	}
	close(ready)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// TestMaxConns: past MaxConns a new connection is closed at once; the others go on, and a
// freed slot is used again.
func TestMaxConns(t *testing.T) {
	addr := start(t, &socketmap.Server{Handler: &tableHandler{}, MaxConns: 2})
	a, b := dialRaw(t, addr), dialRaw(t, addr)
	for _, c := range []*raw{a, b} { // both accepted and served
		c.send(ns("QUERY .example.com"))
		if got := c.reply(); got != "OK encrypt" {
			t.Fatalf("reply %q", got)
		}
	}
	third := dialRaw(t, addr)
	third.closed()
	a.c.Close()
	// The slot is freed once the server has seen a's end; retry until then.
	deadline := time.Now().Add(5 * time.Second)
	for {
		cl, err := socketmap.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		r, err := cl.Lookup("QUERY", ".example.com")
		cl.Close()
		if err == nil {
			if r.Data != "encrypt" {
				t.Errorf("reply %v", r)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no slot after a connection closed: %v", err)
		}
		runtime.Gosched()
	}
}

// TestShutdown: Shutdown closes idle connections at once, lets a lookup in progress
// answer, then closes its connection; Serve returns ErrServerClosed.
func TestShutdown(t *testing.T) {
	before := runtime.NumGoroutine()
	entered, release := make(chan struct{}), make(chan struct{})
	s := &socketmap.Server{Handler: socketmap.HandlerFunc(func(ctx context.Context, name, key string) socketmap.Reply {
		if key == "slow" {
			close(entered)
			<-release
		}
		return socketmap.Reply{Status: socketmap.StatusOK, Data: key}
	})}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- s.Serve(ln) }()
	idle, busy := dialRaw(t, ln.Addr().String()), dialRaw(t, ln.Addr().String())
	idle.send(ns("QUERY a"))
	if got := idle.reply(); got != "OK a" {
		t.Fatalf("reply %q", got)
	}
	busy.send(ns("QUERY slow"))
	<-entered
	shut := make(chan error, 1)
	go func() { shut <- s.Shutdown(context.Background()) }()
	idle.closed()
	if err := <-served; !errors.Is(err, socketmap.ErrServerClosed) {
		t.Errorf("Serve: %v", err)
	}
	if _, err := net.Dial("tcp", ln.Addr().String()); err == nil {
		t.Errorf("still accepting after Shutdown")
	}
	close(release)
	if got := busy.reply(); got != "OK slow" {
		t.Errorf("lookup in progress: %q", got)
	}
	busy.closed()
	if err := <-shut; err != nil {
		t.Errorf("Shutdown: %v", err)
	}
	if err := s.Serve(ln); !errors.Is(err, socketmap.ErrServerClosed) {
		t.Errorf("Serve after Shutdown: %v", err)
	}
	fake.WaitGoroutines(t, before, 0)
}

// TestShutdownDeadline: a handler that never returns cannot hold Shutdown past its ctx;
// Close ends every connection.
func TestShutdownDeadline(t *testing.T) {
	before := runtime.NumGoroutine()
	entered, release := make(chan struct{}), make(chan struct{})
	s := &socketmap.Server{Handler: socketmap.HandlerFunc(func(ctx context.Context, name, key string) socketmap.Reply {
		close(entered)
		<-release
		return socketmap.Reply{Status: socketmap.StatusOK}
	})}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go s.Serve(ln)
	c := dialRaw(t, ln.Addr().String())
	c.send(ns("QUERY stuck"))
	<-entered
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := s.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Shutdown: %v, want DeadlineExceeded", err)
	}
	// Close cancelled the lookup's ctx: the connection answers TEMP, or is already closed.
	b, _ := io.ReadAll(c.br)
	if s := string(b); s != "" && s != ns("TEMP server shutting down") {
		t.Errorf("after Close: %q", s)
	}
	close(release)
	fake.WaitGoroutines(t, before, 0)
}

// TestUnixSocket: the protocol is the same on a unix socket (Postfix
// "socketmap:unix:/path:name").
func TestUnixSocket(t *testing.T) {
	before := runtime.NumGoroutine()
	path := t.TempDir() + "/socketmap"
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	s := &socketmap.Server{Handler: &tableHandler{}}
	go s.Serve(ln)
	cl, err := socketmap.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	r, err := cl.Lookup("QUERY", "[mx.example]:25")
	if err != nil || r.String() != "OK dane-only" {
		t.Errorf("lookup: %v %v", r, err)
	}
	cl.Close()
	if err := s.Shutdown(context.Background()); err != nil {
		t.Error(err)
	}
	fake.WaitGoroutines(t, before, 0)
}

// cachedHandler answers keys under "cached." from memory and the rest the slow way.
type cachedHandler struct {
	slow atomic.Int32
}

func (h *cachedHandler) LookupCached(name, key string) (socketmap.Reply, bool) {
	switch {
	case key == "panic.cached.test":
		panic("cache corrupt")
	case strings.HasSuffix(key, ".cached.test"):
		return socketmap.Reply{Status: socketmap.StatusOK, Data: "cached"}, true
	}
	return socketmap.Reply{}, false
}

func (h *cachedHandler) Lookup(ctx context.Context, name, key string) socketmap.Reply {
	h.slow.Add(1)
	if _, hasDeadline := ctx.Deadline(); !hasDeadline {
		return socketmap.Reply{Status: socketmap.StatusTemp, Data: "no budget"}
	}
	return socketmap.Reply{Status: socketmap.StatusOK, Data: "looked up"}
}

// TestCachedHandler: a CachedHandler answers from memory when it can; otherwise the
// lookup runs as any other, with its budget.
func TestCachedHandler(t *testing.T) {
	h := &cachedHandler{}
	addr := start(t, &socketmap.Server{Handler: h})
	c := dialRaw(t, addr)
	for _, tt := range []struct{ key, reply string }{
		{"a.cached.test", "OK cached"},
		{"other.test", "OK looked up"},
		{"panic.cached.test", "TEMP internal error"},
		{"b.cached.test", "OK cached"},
	} {
		c.send(ns("QUERY " + tt.key))
		if got := c.reply(); got != tt.reply {
			t.Errorf("%s: %q, want %q", tt.key, got, tt.reply)
		}
	}
	if n := h.slow.Load(); n != 1 {
		t.Errorf("Lookup called %d times, want 1", n)
	}
}

// TestClientLogIsBounded: what clients cause is logged at most ten lines a second,
// however many connections misbehave; the dropped lines are counted.
func TestClientLogIsBounded(t *testing.T) {
	var log fake.Buffer
	addr := start(t, &socketmap.Server{Handler: &tableHandler{}, Log: slog.New(slog.NewTextHandler(&log, nil))})
	begin := time.Now()
	const n = 50
	for range n {
		c := dialRaw(t, addr)
		c.send("x")
		if got := c.reply(); got != "PERM malformed netstring" {
			t.Fatalf("reply %q", got)
		}
		c.c.Close()
	}
	seconds := int(time.Since(begin)/time.Second) + 1
	lines := strings.Count(log.String(), "malformed netstring, closing")
	if lines < 10 || lines > 10*seconds+10 {
		t.Errorf("%d log lines for %d malformed connections in %d s:\n%s", lines, n, seconds, log.String())
	}
	if seconds < 5 && lines == n {
		t.Errorf("every line logged")
	}
}

// TestWatchdogRace: with handlers finishing around their budget, the handler and the
// watchdog race to answer each lookup. Every request gets exactly one reply, in order,
// either the handler's or TIMEOUT, and nothing is left running afterwards.
func TestWatchdogRace(t *testing.T) {
	const budget = 2 * time.Millisecond
	addr := start(t, &socketmap.Server{Timeout: budget, Handler: socketmap.HandlerFunc(
		func(ctx context.Context, name, key string) socketmap.Reply {
			n, _ := strconv.Atoi(key)
			time.Sleep(time.Duration(n%5) * budget / 2) // the work: 0 to 2 budgets
			return socketmap.Reply{Status: socketmap.StatusOK, Data: key}
		})})
	var wg sync.WaitGroup
	var timeouts, answers atomic.Int32
	for w := range 4 {
		wg.Go(func() {
			cl, err := socketmap.Dial("tcp", addr)
			if err != nil {
				t.Error(err)
				return
			}
			defer cl.Close()
			cl.Timeout = 10 * time.Second
			for i := range 200 {
				key := strconv.Itoa(w*1000 + i)
				r, err := cl.Lookup("QUERY", key)
				switch {
				case err != nil:
					t.Errorf("lookup %s: %v", key, err)
					return
				case r.Status == socketmap.StatusTimeout:
					timeouts.Add(1)
				case r.Status == socketmap.StatusOK && r.Data == key:
					answers.Add(1)
				default:
					t.Errorf("lookup %s: reply %q", key, r)
					return
				}
			}
		})
	}
	wg.Wait()
	t.Logf("%d answers, %d timeouts", answers.Load(), timeouts.Load())
	if timeouts.Load() == 0 || answers.Load() == 0 {
		t.Errorf("%d answers, %d timeouts; want both", answers.Load(), timeouts.Load())
	}
}
