package socketmap

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// pipeConn is a net.Conn that reads a fixed input and records what is written: one
// connection's whole exchange, served without sockets.
type pipeConn struct {
	in  *bytes.Reader
	out bytes.Buffer
}

func (p *pipeConn) Read(b []byte) (int, error)             { return p.in.Read(b) }
func (p *pipeConn) Write(b []byte) (int, error)            { return p.out.Write(b) }
func (p *pipeConn) Close() error                           { return nil }
func (p *pipeConn) LocalAddr() net.Addr                    { return nil }
func (p *pipeConn) RemoteAddr() net.Addr                   { return nil }
func (p *pipeConn) SetDeadline(time.Time) error            { return nil }
func (p *pipeConn) SetReadDeadline(time.Time) error        { return nil }
func (p *pipeConn) SetWriteDeadline(time.Time) error       { return nil }
func (p *pipeConn) reset(in []byte)                        { p.in.Reset(in); p.out.Reset() }
func newPipeConn(in []byte) *pipeConn                      { return &pipeConn{in: bytes.NewReader(in)} }
func (s *Server) serveOne(nc net.Conn)                     { s.init(); s.active.Add(1); newConn(s, nc).serve() }
func (s *Server) serveConn(c *conn)                        { s.active.Add(1); c.serve() }
func echoCached(name, key string) (Reply, bool)            { return Reply{StatusOK, key}, true }
func (echoHandler) LookupCached(n, k string) (Reply, bool) { return echoCached(n, k) }

// echoHandler answers every key with itself, and checks that no key reaches it that the
// server should have refused.
type echoHandler struct{ t *testing.T }

func (h echoHandler) Lookup(_ context.Context, name, key string) Reply {
	r, _ := h.LookupCached(name, key)
	return r
}

func checkKey(t *testing.T, name, key string) {
	if name == "" || strings.ContainsAny(name, " \x00") || len(key) > DefaultMaxQuery || !utf8.ValidString(key) ||
		strings.ContainsFunc(key, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
		t.Fatalf("handler got name %q key %.80q", name, key)
	}
}

// FuzzConn serves one connection's arbitrary input and checks what goes back: only well
// formed replies with one of the five statuses, at most one per request, within
// socketmap_max_reply_size; and the handler never sees a key the server must refuse.
func FuzzConn(f *testing.F) {
	for _, s := range []string{
		"17:QUERY example.com,", "5:QUERY,6: QUERY,", "9:QUERY a\x00b,7:QUERY x,", "07:QUERY x,",
		"1000000000000000000:", "12:QUERY \xff\xfe\xfd\xfc\xfb,", "8:QUERY x,,", "0:,0:,",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		s := &Server{Handler: HandlerFunc(func(_ context.Context, name, key string) Reply {
			checkKey(t, name, key)
			return Reply{StatusOK, "v " + key}
		})}
		pc := newPipeConn(in)
		s.serveOne(pc)
		out := bufio.NewReader(&pc.out)
		for n := 0; ; n++ {
			p, _, err := readNetstring(out, DefaultMaxReply, nil)
			if err == io.EOF {
				return
			}
			if err != nil {
				t.Fatalf("reply %d: %v in %q", n, err, pc.out.String())
			}
			if _, err := ParseReply(p); err != nil {
				t.Fatalf("reply %d: %v", n, err)
			}
			if n > strings.Count(string(in), ":") {
				t.Fatalf("%d replies to at most %d requests", n+1, strings.Count(string(in), ":"))
			}
		}
	})
}

// TestCachedLookupAllocations: a cached lookup costs the server one allocation, the key
// string the handler is given; the rest of the loop reuses its buffers.
func TestCachedLookupAllocations(t *testing.T) {
	const requests = 100
	var in []byte
	for range requests {
		in = appendNetstring(in, "QUERY example.com")
	}
	s := &Server{Handler: echoHandler{t}}
	s.init()
	pc := newPipeConn(in)
	c := newConn(s, pc)
	s.serveConn(c) // warm up the connection's buffers
	if got, want := pc.out.String(), strings.Repeat("14:OK example.com,", requests); got != want {
		t.Fatalf("replies %.80q..., want %.80q...", got, want)
	}
	allocs := testing.AllocsPerRun(20, func() {
		pc.reset(in)
		s.serveConn(c)
	})
	perRequest := allocs / requests
	t.Logf("%.0f allocations for %d requests", allocs, requests)
	if perRequest > 1 {
		t.Errorf("%.2f allocations per cached lookup, want at most 1", perRequest)
	}
}

// TestLookupCtx: the lookup's context behaves as context.WithDeadline's: a deadline, Done
// closed and Err set once cancelled, AfterFunc functions run once (unless stopped), and
// contexts derived from it end with it.
func TestLookupCtx(t *testing.T) {
	deadline := time.Now().Add(time.Hour)
	lc := &lookupCtx{deadline: deadline}
	if d, ok := lc.Deadline(); !ok || !d.Equal(deadline) {
		t.Errorf("Deadline %v %v", d, ok)
	}
	if lc.Err() != nil || lc.Value("k") != nil {
		t.Errorf("Err %v before cancel", lc.Err())
	}
	done := lc.Done()
	ran := make(chan struct{})
	lc.AfterFunc(func() { close(ran) })
	stopped := lc.AfterFunc(func() { t.Error("a stopped AfterFunc ran") })
	if !stopped() || stopped() {
		t.Error("stop: want true, then false")
	}
	derived, cancel := context.WithCancel(lc)
	defer cancel()
	lc.cancel(context.DeadlineExceeded)
	lc.cancel(context.Canceled) // the first cause stays
	<-done
	<-ran
	<-derived.Done()
	if lc.Err() != context.DeadlineExceeded || derived.Err() != context.DeadlineExceeded {
		t.Errorf("Err %v, derived %v", lc.Err(), derived.Err())
	}
	select {
	case <-lc.Done(): // made after the cancel: closed already
	default:
		t.Error("Done after cancel is open")
	}
	late := make(chan struct{})
	if lc.AfterFunc(func() { close(late) })() {
		t.Error("stop of an AfterFunc registered after cancel returned true")
	}
	<-late
}
