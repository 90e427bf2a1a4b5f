//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tlsgate/tlsgate/socketmap"
)

// TestSocketmapPostmap checks tlsgate's socketmap server against Postfix's own socketmap
// client (dict_sockmap.c), as postmap(1) runs it: "postmap -q KEY
// socketmap:inet:HOST:PORT:NAME". Every reply class must mean to Postfix what the server
// meant: OK with its data (spaces and all, up to socketmap_max_reply_size), NOTFOUND,
// and TEMP, TIMEOUT, PERM as lookup errors; and several keys on one connection
// ("postmap -q -"). It needs only postmap and loopback, not the suite's world.
func TestSocketmapPostmap(t *testing.T) {
	postmap, err := exec.LookPath("postmap")
	if err != nil {
		t.Fatal("postmap not found; run test/e2e/install.sh")
	}
	// Postfix refuses to run without main.cf; an empty one selects every default
	// (socketmap_max_reply_size 100000).
	confDir := t.TempDir()
	if err := os.WriteFile(filepath.Join(confDir, "main.cf"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("postconf", "-c", confDir, "-h", "mail_version").Output(); err == nil {
		t.Logf("Postfix %s", strings.TrimSpace(string(out)))
	}

	const maxReply = socketmap.DefaultMaxReply
	atLimit := strings.Repeat("x", maxReply-len("OK "))
	answers := map[string]socketmap.Reply{
		"ok.test":         {Status: socketmap.StatusOK, Data: "secure match=nexthop:dot-nexthop servername=hostname"},
		"key with spaces": {Status: socketmap.StatusOK, Data: "encrypt"},
		"[mx.test]:25":    {Status: socketmap.StatusOK, Data: "dane-only"},
		"empty.test":      {Status: socketmap.StatusOK, Data: ""},
		"temp.test":       {Status: socketmap.StatusTemp, Data: "DNS lookup failed"},
		"timeout.test":    {Status: socketmap.StatusTimeout, Data: "resolver slow"},
		"perm.test":       {Status: socketmap.StatusPerm, Data: "invalid policy"},
		"atlimit.test":    {Status: socketmap.StatusOK, Data: atLimit},
		"overlimit.test":  {Status: socketmap.StatusOK, Data: atLimit + "y"},
	}
	srv := &socketmap.Server{Timeout: 300 * time.Millisecond, Handler: socketmap.HandlerFunc(
		func(ctx context.Context, name, key string) socketmap.Reply {
			if name != "QUERY" {
				return socketmap.Reply{Status: socketmap.StatusPerm, Data: "unknown map " + name}
			}
			if key == "slow.test" {
				<-ctx.Done()
				return socketmap.Reply{Status: socketmap.StatusTemp, Data: "too late"}
			}
			if r, ok := answers[key]; ok {
				return r
			}
			return socketmap.Reply{Status: socketmap.StatusNotFound}
		})}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	accepted := &countingListener{Listener: ln}
	go srv.Serve(accepted)
	t.Cleanup(func() { srv.Close() })
	table := func(name string) string { return fmt.Sprintf("socketmap:inet:%s:%s", ln.Addr(), name) }

	query := func(t *testing.T, stdin string, args ...string) (stdout, stderr string, code int) {
		t.Helper()
		cmd := exec.Command(postmap, append([]string{"-c", confDir}, args...)...)
		cmd.Stdin = strings.NewReader(stdin)
		var o, e bytes.Buffer
		cmd.Stdout, cmd.Stderr = &o, &e
		err := cmd.Run()
		var exit *exec.ExitError
		switch {
		case err == nil:
		case errors.As(err, &exit):
			code = exit.ExitCode()
		default:
			t.Fatalf("postmap: %v", err)
		}
		return o.String(), e.String(), code
	}

	// postmap -q exits 0 and prints the value when found, exits 1 silently when not
	// found, and fails with a warning naming the error class on a lookup error.
	tests := []struct {
		name, key, table string
		stdout           string // when found
		code             int
		stderr           string // a substring of Postfix's warning, for errors
	}{
		{"OK", "ok.test", "QUERY", "secure match=nexthop:dot-nexthop servername=hostname\n", 0, ""},
		{"OK, key with spaces", "key with spaces", "QUERY", "encrypt\n", 0, ""},
		{"OK, next-hop key", "[mx.test]:25", "QUERY", "dane-only\n", 0, ""},
		// Postfix takes an empty value for an error (maps_find: "should return NO
		// RESULT"): the server never sends one.
		{"OK without data", "empty.test", "QUERY", "", -1, "socketmap server temporary error: internal error"},
		{"OK at socketmap_max_reply_size", "atlimit.test", "QUERY", atLimit + "\n", 0, ""},
		{"NOTFOUND", "nothing.test", "QUERY", "", 1, ""},
		{"TEMP", "temp.test", "QUERY", "", -1, "socketmap server temporary error: DNS lookup failed"},
		{"TIMEOUT", "timeout.test", "QUERY", "", -1, "socketmap server timeout error: resolver slow"},
		{"PERM", "perm.test", "QUERY", "", -1, "socketmap server permanent error: invalid policy"},
		{"PERM, unknown map", "ok.test", "OTHER", "", -1, "socketmap server permanent error: unknown map OTHER"},
		// A reply over the limit would be a lookup error of Postfix's own; the server
		// says TEMP instead, and the data never reaches Postfix.
		{"reply over the limit", "overlimit.test", "QUERY", "", -1, "socketmap server temporary error: reply too large"},
		{"handler past its budget", "slow.test", "QUERY", "", -1, "socketmap server timeout error: lookup took longer than 300ms"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			stdout, stderr, code := query(t, "", "-q", tt.key, table(tt.table))
			if tt.code >= 0 && code != tt.code || tt.code < 0 && code == 0 || stdout != tt.stdout {
				t.Errorf("postmap -q %q: exit %d, stdout %.80q, stderr %.300q; want exit %d, stdout %.80q",
					tt.key, code, stdout, stderr, tt.code, tt.stdout)
			}
			if tt.stderr != "" && !strings.Contains(stderr, tt.stderr) {
				t.Errorf("postmap -q %q: stderr %q, want %q in it", tt.key, stderr, tt.stderr)
			}
			t.Logf("postmap -q %q: exit %d, stdout %.60q, stderr %.200q", tt.key, code, stdout, strings.TrimSpace(stderr))
		})
	}

	// The same over a unix socket: socketmap:unix:PATH:NAME.
	t.Run("unix socket", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "socketmap")
		uln, err := net.Listen("unix", path)
		if err != nil {
			t.Fatal(err)
		}
		go srv.Serve(uln)
		stdout, stderr, code := query(t, "", "-q", "[mx.test]:25", "socketmap:unix:"+path+":QUERY")
		if code != 0 || stdout != "dane-only\n" {
			t.Errorf("postmap -q over unix socket: exit %d, stdout %q, stderr %q", code, stdout, stderr)
		}
	})

	// "postmap -q -" looks every line's key up in turn on one connection.
	t.Run("several keys on one connection", func(t *testing.T) {
		before := accepted.n.Load()
		stdout, stderr, code := query(t, "ok.test\nnothing.test\n[mx.test]:25\nkey with spaces\n", "-q", "-", table("QUERY"))
		want := "ok.test\tsecure match=nexthop:dot-nexthop servername=hostname\n[mx.test]:25\tdane-only\nkey with spaces\tencrypt\n"
		if code != 0 || stdout != want {
			t.Errorf("postmap -q -: exit %d, stdout %q, stderr %q; want %q", code, stdout, stderr, want)
		}
		if n := accepted.n.Load() - before; n != 1 {
			t.Errorf("postmap -q - made %d connections for 4 keys, want 1", n)
		}
	})
}

// countingListener counts accepted connections.
type countingListener struct {
	net.Listener
	n atomic.Int64
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.n.Add(1)
	}
	return c, err
}
