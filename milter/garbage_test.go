package milter_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	gomilter "github.com/d--j/go-milter"

	"github.com/tlsgate/tlsgate/internal/fake"
	"github.com/tlsgate/tlsgate/milter"
	"github.com/tlsgate/tlsgate/verify"
)

// childEnv makes the test binary, re-executed by TestGarbagePackets, run the milter
// server of TestHelperMilterServer: a crash of the server then fails one case with its
// panic message instead of killing the whole test binary.
const childEnv = "TLSGATE_MILTER_TEST_SERVER"

// TestHelperMilterServer is not a test on its own: in a normal run it returns at once.
// Started by TestGarbagePackets with childEnv set, it serves tlsgate's milter on a
// loopback port, prints "listening <addr>", and serves until its stdin is closed.
func TestHelperMilterServer(t *testing.T) {
	if os.Getenv(childEnv) == "" {
		return
	}
	f := milter.NewFilter(milter.Config{
		Policies:          policySet(t, []entry{{"notls.test", encrypt}}, nil),
		Facts:             &factSource{facts: map[string]*verify.Facts{"notls.test": noTLSFacts("notls.test")}},
		Header:            headerName,
		CheckedTransports: []string{"smtp"},
		Log:               newLogger(t),
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := f.NewServer()
	go srv.Serve(ln)
	fmt.Printf("listening %s\n", ln.Addr())
	io.Copy(io.Discard, os.Stdin)
	srv.Close()
}

// child is the test binary running TestHelperMilterServer.
type child struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	stderr *fake.Buffer
	addr   string
	exited chan struct{}
	err    error // of Wait, once exited is closed
}

// addrWriter collects the child's stdout and reports the "listening" line once.
type addrWriter struct {
	mu    sync.Mutex
	buf   bytes.Buffer
	addr  chan string
	found bool
}

func (w *addrWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(p)
	if !w.found {
		for line := range strings.Lines(w.buf.String()) {
			if a, ok := strings.CutPrefix(strings.TrimSpace(line), "listening "); ok && strings.HasSuffix(line, "\n") {
				w.found = true
				w.addr <- a
				break
			}
		}
	}
	return len(p), nil
}

func startChild(t *testing.T) *child {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperMilterServer$", "-test.timeout=2m")
	cmd.Env = append(os.Environ(), childEnv+"=1")
	out := &addrWriter{addr: make(chan string, 1)}
	c := &child{cmd: cmd, stderr: &fake.Buffer{}, exited: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = out, c.stderr
	var err error
	if c.stdin, err = cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		c.err = cmd.Wait()
		close(c.exited)
	}()
	t.Cleanup(func() {
		c.stdin.Close()
		select {
		case <-c.exited:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-c.exited
		}
	})
	select {
	case c.addr = <-out.addr:
	case <-c.exited:
		t.Fatalf("milter server process exited at start: %v\n%s", c.err, c.stderr)
	case <-time.After(30 * time.Second):
		t.Fatal("milter server process did not start")
	}
	return c
}

// logged reports whether the child's output has s, waiting a little for it to arrive.
func (c *child) logged(s string) bool {
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if strings.Contains(c.stderr.String(), s) {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
	}
}

// crashReport waits briefly for the child to exit and describes how it ended.
func (c *child) crashReport() string {
	select {
	case <-c.exited:
	case <-time.After(5 * time.Second):
		return "the server process is still running"
	}
	lines := strings.Split(c.stderr.String(), "\n")
	var keep []string
	for _, l := range lines {
		if strings.HasPrefix(l, "panic:") || strings.Contains(l, "go-milter") || strings.Contains(l, "goroutine ") {
			keep = append(keep, l)
		}
		if len(keep) >= 6 {
			break
		}
	}
	return fmt.Sprintf("the server process died (%v):\n%s", c.err, strings.Join(keep, "\n"))
}

// packet frames one milter packet: 4-octet length, command code, data.
func packet(code byte, data ...[]byte) []byte {
	body := append([]byte{code}, bytes.Join(data, nil)...)
	return append(binary.BigEndian.AppendUint32(nil, uint32(len(body))), body...)
}

// optneg is a milter protocol 6 negotiation offering what tlsgate's server needs.
func optneg() []byte {
	var d []byte
	d = binary.BigEndian.AppendUint32(d, 6)
	d = binary.BigEndian.AppendUint32(d, uint32(gomilter.AllClientSupportedActionMasks))
	d = binary.BigEndian.AppendUint32(d, uint32(gomilter.OptNoHelo|gomilter.OptNoHeaders|gomilter.OptNoEOH|
		gomilter.OptNoBody|gomilter.OptNoUnknown|gomilter.OptNoData))
	return packet('O', d)
}

// readPacket reads one framed packet.
func readPacket(c net.Conn) (byte, []byte, error) {
	var n uint32
	if err := binary.Read(c, binary.BigEndian, &n); err != nil {
		return 0, nil, err
	}
	if n == 0 || n > 1<<16 {
		return 0, nil, fmt.Errorf("packet length %d", n)
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(c, b); err != nil {
		return 0, nil, err
	}
	return b[0], b[1:], nil
}

// TestGarbagePackets sends malformed and truncated milter packets to the server; it
// must survive every one and then serve a proper MTA session. The packets go-milter
// v0.10.2 cannot parse safely (it panicked on several of them) must be caught by the
// guard in front of it: the connection is closed without an answer and the guard's
// error is logged.
func TestGarbagePackets(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewChaCha8([32]byte{'t', 'l', 's', 'g', 'a', 't', 'e'}))
	random := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		return b
	}
	cstr := func(s string) []byte { return append([]byte(s), 0) }
	tests := []struct {
		name      string
		negotiate bool // send a valid negotiation first
		dropped   bool // the guard must close the connection without an answer
		data      []byte
	}{
		{"random bytes", false, false, random(512)},
		{"random packet", false, false, packet('O', random(64))},
		{"empty packet", false, true, []byte{0, 0, 0, 0}},
		{"truncated length", false, false, []byte{0, 0}},
		{"truncated packet", false, false, append(binary.BigEndian.AppendUint32(nil, 100), random(10)...)},
		{"length above the limit", false, true, []byte{0xff, 0xff, 0xff, 0xff}},
		{"length above a body chunk", false, true, binary.BigEndian.AppendUint32(nil, 2<<20)},
		{"short negotiation", false, true, packet('O', []byte{0, 0, 0, 6})},
		{"negotiation with version 0", false, false, packet('O', make([]byte, 12))},
		{"first command is not a negotiation", false, false, packet('C', cstr("client.example"), []byte{'4', 0, 25}, cstr("192.0.2.1"))},
		{"empty packet after negotiation", true, true, []byte{0, 0, 0, 0}},
		{"random bytes after negotiation", true, false, random(512)},
		{"truncated packet after negotiation", true, false, append(binary.BigEndian.AppendUint32(nil, 50), 'M', '<')},
		{"length above a body chunk after negotiation", true, true, binary.BigEndian.AppendUint32(nil, 2<<20)},
		{"unknown command", true, false, packet('Z', random(8))},
		{"connect without family", true, true, packet('C', cstr("client.example"))},
		{"connect without NUL", true, true, packet('C', []byte("client.example"))},
		{"connect with a bad address", true, false, packet('C', cstr("client.example"), []byte{'4', 0, 25}, cstr("not-an-address"))},
		{"connect with truncated port", true, true, packet('C', cstr("client.example"), []byte{'6', 0})},
		{"connect without port", true, true, packet('C', cstr("client.example"), []byte{'4'})},
		{"HELO without NUL", true, true, packet('H', []byte("client.example"))},
		{"MAIL without NUL", true, true, packet('M', []byte("<alice@sender.example>"))},
		{"RCPT without NUL", true, true, packet('R', []byte("<user@notls.test>"))},
		{"RCPT before MAIL", true, false, packet('R', cstr("<user@notls.test>"))},
		{"empty MAIL", true, true, packet('M')},
		{"empty RCPT", true, true, packet('R')},
		{"macro without values", true, false, packet('D', []byte{'R'}, cstr("{rcpt_mailer}"))},
		{"empty macro", true, true, packet('D')},
		{"header without value", true, false, packet('L', cstr("Subject"))},
		{"second negotiation", true, false, optneg()},
		{"end of message without a message", true, false, packet('E')},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := startChild(t)
			conn, err := net.DialTimeout("tcp", c.addr, 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			conn.SetDeadline(time.Now().Add(10 * time.Second))
			if tc.negotiate {
				if _, err := conn.Write(optneg()); err != nil {
					t.Fatal(err)
				}
				if code, _, err := readPacket(conn); err != nil || code != 'O' {
					t.Fatalf("negotiation: %c %v", code, err)
				}
			}
			if _, err := conn.Write(tc.data); err != nil {
				t.Logf("writing the garbage: %v", err)
			}
			conn.(*net.TCPConn).CloseWrite()
			// The server answers or closes; either is fine as long as it lives on.
			reply, err := io.ReadAll(conn)
			t.Logf("server sent %q, then %v", reply, err)
			if errors.Is(err, os.ErrDeadlineExceeded) {
				t.Errorf("the server neither answered nor closed the connection within 10s")
			}
			if tc.dropped {
				if len(reply) != 0 {
					t.Errorf("the server answered %q; want the guard to close the connection", reply)
				}
				if !c.logged(milter.ErrBadPacket.Error()) {
					t.Errorf("the server did not log %q; want the guard to drop the packet:\n%s", milter.ErrBadPacket, c.stderr)
				}
			}

			if err := checkServes(t, c.addr); err != nil {
				t.Errorf("after %s the server does not serve: %v\n%s", tc.name, err, c.crashReport())
			}
		})
	}
}

// checkServes runs a proper MTA session: one rejected and one accepted recipient,
// then end of message.
func checkServes(t *testing.T, addr string) error {
	t.Helper()
	macros := gomilter.NewMacroBag()
	macros.Set(gomilter.MacroRcptMailer, "smtp")
	s, err := gomilter.NewClient("tcp", addr, gomilter.WithDialer(&net.Dialer{Timeout: 5 * time.Second})).Session(macros)
	if err != nil {
		return err
	}
	defer s.Close()
	if _, err := s.Conn("client.example", gomilter.FamilyInet, 40000, "192.0.2.10"); err != nil {
		return err
	}
	if _, err := s.Helo("client.example"); err != nil {
		return err
	}
	if _, err := s.Mail("alice@sender.example", ""); err != nil {
		return err
	}
	act, err := s.Rcpt("user@notls.test", "")
	if err != nil {
		return err
	}
	const reply = "550 5.7.5 Mail to notls.test requires encrypted delivery (TLS), but its mail servers do not offer it. " +
		"(mx1.notls.test[192.0.2.1]: STARTTLS not offered in the EHLO reply)"
	if act.Type != gomilter.ActionRejectWithCode || act.SMTPCode != 550 || act.SMTPReply != reply {
		return fmt.Errorf("RCPT TO:<user@notls.test>: %s; want the reply %q", act, reply)
	}
	if act, err = s.Rcpt("user@free.test", ""); err != nil {
		return err
	}
	if act.Type != gomilter.ActionContinue {
		return fmt.Errorf("RCPT TO:<user@free.test>: %s; want continue", act)
	}
	if _, err := s.DataStart(); err != nil {
		return err
	}
	if _, err := s.HeaderEnd(); err != nil {
		return err
	}
	_, act, err = s.BodyReadFrom(strings.NewReader("body\r\n"))
	if err != nil {
		return err
	}
	if act.Type != gomilter.ActionAccept {
		return fmt.Errorf("end of message: %s; want accept", act)
	}
	return nil
}
