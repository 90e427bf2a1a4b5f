package milter_test

import (
	"net"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/tlsgate/tlsgate/milter"
)

// socketPath returns a path for a unix socket in a fresh directory.
func socketPath(t *testing.T) string {
	t.Helper()
	return filepath.Join(t.TempDir(), "milter.sock")
}

func listen(t *testing.T, c milter.ListenConfig) net.Listener {
	t.Helper()
	ln, err := milter.Listen(c)
	if err != nil {
		t.Fatalf("Listen(%+v): %v", c, err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

// expectSocket checks that path is a unix socket with permissions perm that accepts
// connections.
func expectSocket(t *testing.T, path string, perm os.FileMode) {
	t.Helper()
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode()&os.ModeSocket == 0 {
		t.Fatalf("%s is %v, not a socket", path, fi.Mode())
	}
	if got := fi.Mode().Perm(); got != perm {
		t.Errorf("%s has mode %#o; want %#o", path, got, perm)
	}
	c, err := net.DialTimeout("unix", path, time.Second)
	if err != nil {
		t.Fatalf("dial %s: %v", path, err)
	}
	c.Close()
}

func TestListenUnixMode(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		mode os.FileMode
		want os.FileMode
	}{
		{"0600", 0o600, 0o600},
		{"0660", 0o660, 0o660},
		{"0666", 0o666, 0o666},
		{"default is 0660", 0, 0o660},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			path := socketPath(t)
			listen(t, milter.ListenConfig{Network: "unix", Address: path, Mode: tc.mode})
			expectSocket(t, path, tc.want)
		})
	}
}

func TestListenUnixGroup(t *testing.T) {
	t.Parallel()
	gid := os.Getgid()
	groups := []string{strconv.Itoa(gid)}
	if g, err := user.LookupGroupId(strconv.Itoa(gid)); err == nil {
		groups = append(groups, g.Name)
	}
	for _, group := range groups {
		path := socketPath(t)
		listen(t, milter.ListenConfig{Network: "unix", Address: path, Mode: 0o660, Group: group})
		fi, err := os.Lstat(path)
		if err != nil {
			t.Fatal(err)
		}
		if st, ok := fi.Sys().(*syscall.Stat_t); ok && int(st.Gid) != gid {
			t.Errorf("group %q: socket gid %d; want %d", group, st.Gid, gid)
		}
	}
	if _, err := milter.Listen(milter.ListenConfig{Network: "unix", Address: socketPath(t), Group: "no-such-group.invalid"}); err == nil {
		t.Error("Listen with an unknown group succeeded; want an error")
	}
}

// TestListenUnixStale: a socket file nobody listens on (left by a crash) is replaced.
func TestListenUnixStale(t *testing.T) {
	t.Parallel()
	path := socketPath(t)
	old, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	old.(*net.UnixListener).SetUnlinkOnClose(false)
	old.Close()
	if fi, err := os.Lstat(path); err != nil || fi.Mode()&os.ModeSocket == 0 {
		t.Fatalf("stale socket not left behind: %v %v", fi, err)
	}
	listen(t, milter.ListenConfig{Network: "unix", Address: path, Mode: 0o600})
	expectSocket(t, path, 0o600)
}

// TestListenUnixNotSocket: whatever else is at the path is an error and stays untouched.
func TestListenUnixNotSocket(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		create func(t *testing.T, path string)
	}{
		{"regular file", func(t *testing.T, path string) {
			if err := os.WriteFile(path, []byte("precious data\n"), 0o644); err != nil {
				t.Fatal(err)
			}
		}},
		{"directory", func(t *testing.T, path string) {
			if err := os.Mkdir(path, 0o755); err != nil {
				t.Fatal(err)
			}
		}},
		{"symlink", func(t *testing.T, path string) {
			if err := os.Symlink("/nonexistent.invalid", path); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			path := socketPath(t)
			tc.create(t, path)
			before, err := os.Lstat(path)
			if err != nil {
				t.Fatal(err)
			}
			ln, err := milter.Listen(milter.ListenConfig{Network: "unix", Address: path, Mode: 0o600})
			if err == nil {
				ln.Close()
				t.Fatalf("Listen over a %s succeeded; want an error", tc.name)
			}
			t.Logf("Listen: %v", err)
			after, err := os.Lstat(path)
			if err != nil {
				t.Fatalf("the %s was removed: %v", tc.name, err)
			}
			if after.Mode() != before.Mode() || after.Size() != before.Size() || !after.ModTime().Equal(before.ModTime()) {
				t.Errorf("the %s changed: %v %d -> %v %d", tc.name, before.Mode(), before.Size(), after.Mode(), after.Size())
			}
		})
	}
}

// TestListenUnixInUse: a socket another server listens on is an error; that server
// keeps its socket.
func TestListenUnixInUse(t *testing.T) {
	t.Parallel()
	path := socketPath(t)
	first := listen(t, milter.ListenConfig{Network: "unix", Address: path, Mode: 0o600})
	accepted := make(chan error, 1)
	go func() {
		c, err := first.Accept()
		if err == nil {
			c.Close()
		}
		accepted <- err
	}()
	if ln, err := milter.Listen(milter.ListenConfig{Network: "unix", Address: path, Mode: 0o666}); err == nil {
		ln.Close()
		t.Fatal("second Listen on a socket in use succeeded; want an error")
	} else {
		t.Logf("Listen: %v", err)
	}
	// Listen's own probe connection reached the first server; it still serves.
	if err := <-accepted; err != nil {
		t.Fatalf("first listener: %v", err)
	}
	go func() {
		if c, err := first.Accept(); err == nil {
			c.Close()
		}
	}()
	expectSocket(t, path, 0o600)
}

// TestListenUnixServes: a milter session works over the unix socket.
func TestListenUnixServes(t *testing.T) {
	t.Parallel()
	path := socketPath(t)
	ln := listen(t, milter.ListenConfig{Network: "unix", Address: path, Mode: 0o600})
	m := serveMilter(t, milter.NewFilter(milter.Config{Log: newLogger(t)}), ln)
	s := m.open(t, "alice@sender.example")
	act, _ := s.rcpt("user@example.test", "smtp")
	expectAccept(t, "user@example.test", act)
	if mods := s.end(); len(mods) != 0 {
		t.Errorf("modifications %v; want none without policies", mods)
	}
}

func TestListenTCP(t *testing.T) {
	t.Parallel()
	ln := listen(t, milter.ListenConfig{Network: "tcp", Address: "127.0.0.1:0"})
	if _, ok := ln.Addr().(*net.TCPAddr); !ok {
		t.Fatalf("address %v is not TCP", ln.Addr())
	}
	m := serveMilter(t, milter.NewFilter(milter.Config{Log: newLogger(t)}), ln)
	s := m.open(t, "alice@sender.example")
	act, _ := s.rcpt("user@example.test", "smtp")
	expectAccept(t, "user@example.test", act)
}
