package fake

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// ErrNoRedis: neither valkey-server nor redis-server is installed on this machine.
var ErrNoRedis = errors.New("no redis-server or valkey-server installed (test/e2e/install.sh installs redis-server)")

// Redis is this machine's valkey-server or redis-server, started by PID on a free
// loopback port without persistence, for the shared cache tier's tests.
type Redis struct {
	Addr string // 127.0.0.1:PORT
	bin  string
	dir  string
	cmd  *exec.Cmd
}

// StartRedis starts a server that tb's cleanup kills. It returns ErrNoRedis when none
// is installed.
func StartRedis(tb testing.TB) (*Redis, error) {
	r := &Redis{}
	for _, b := range []string{"valkey-server", "redis-server"} {
		if p, err := exec.LookPath(b); err == nil {
			r.bin = p
			break
		}
	}
	if r.bin == "" {
		return nil, ErrNoRedis
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	r.Addr = ln.Addr().String()
	ln.Close()
	if r.dir, err = os.MkdirTemp("", "tlsgate-redis-"); err != nil {
		return nil, err
	}
	tb.Cleanup(func() { r.Kill(); os.RemoveAll(r.dir) })
	return r, r.Restart()
}

// RequireRedis is StartRedis for a test that needs the server: without one the test
// is skipped, or fails where CI is set (test/all.sh installs the server first, and a
// skip there would leave the shared tier unverified and the run green).
func RequireRedis(t testing.TB) *Redis {
	t.Helper()
	r, err := StartRedis(t)
	switch {
	case errors.Is(err, ErrNoRedis) && os.Getenv("CI") == "":
		t.Skip(err)
	case err != nil:
		t.Fatal(err)
	}
	return r
}

// Kill kills the server (SIGKILL: an outage, not a shutdown).
func (r *Redis) Kill() {
	if r.cmd != nil && r.cmd.ProcessState == nil {
		r.cmd.Process.Signal(syscall.SIGKILL)
		r.cmd.Wait()
	}
}

// Restart starts the server (again) on the same port, empty, and waits until it
// answers PING.
func (r *Redis) Restart() error {
	r.Kill()
	_, port, _ := net.SplitHostPort(r.Addr)
	r.cmd = exec.Command(r.bin, "--bind", "127.0.0.1", "--port", port, "--save", "", "--appendonly", "no", "--dir", r.dir)
	r.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := r.cmd.Start(); err != nil {
		return err
	}
	var err error
	for end := time.Now().Add(10 * time.Second); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		if err = ping(r.Addr); err == nil {
			return nil
		}
	}
	return fmt.Errorf("%s not answering: %w", r.bin, err)
}

// ping sends PING in the RESP inline form and wants +PONG.
func ping(addr string) error {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if strings.TrimSpace(line) != "+PONG" {
		return fmt.Errorf("PING answered %q", line)
	}
	return nil
}
