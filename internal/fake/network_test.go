package fake_test

import (
	"bufio"
	"context"
	"errors"
	"net"
	"net/netip"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tlsgate/tlsgate/internal/fake"
)

func TestDialerRewritesRegisteredAddresses(t *testing.T) {
	t.Parallel()
	mx1 := fake.StartSMTP(t, "127.0.0.21", fake.Behavior{Hostname: "mx1.example.test", NoStartTLS: true})
	mx2 := fake.StartSMTP(t, "127.0.0.22", fake.Behavior{Hostname: "mx2.example.test", NoStartTLS: true})
	d := fake.NewDialer()
	mx1.RegisterWith(d)
	d.Register(netip.MustParseAddr("127.0.0.22"), mx2.Addr())

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for addr, want := range map[string]string{
		"127.0.0.21:25":     "220 mx1.example.test",
		"127.0.0.22:25":     "220 mx2.example.test",
		"127.0.0.22:587":    "220 mx2.example.test", // any port
		mx1.Addr().String(): "220 mx1.example.test",
	} {
		c, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			t.Errorf("dial %s: %v", addr, err)
			continue
		}
		c.SetDeadline(time.Now().Add(5 * time.Second))
		line, err := bufio.NewReader(c).ReadString('\n')
		c.Close()
		if !strings.HasPrefix(line, want) {
			t.Errorf("dial %s: greeting %q (%v), want %q", addr, line, err, want)
		}
	}
	if got := len(d.Dials()); got != 4 {
		t.Errorf("Dials recorded %d, want 4", got)
	}
	if got := mx1.Connections() + mx2.Connections(); got != 4 {
		t.Errorf("servers saw %d connections, want 4", got)
	}
}

func TestDialerPassesOtherAddressesThrough(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan struct{})
	go func() {
		c, err := ln.Accept()
		if err == nil {
			c.Close()
			close(accepted)
		}
	}()

	d := fake.NewDialer()
	d.Register(netip.MustParseAddr("127.0.0.23"), netip.MustParseAddrPort("127.0.0.1:1"))
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	addr := net.JoinHostPort("localhost", port) // a host name is never rewritten
	c, err := d.DialContext(context.Background(), "tcp4", addr)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	c.Close()
	select {
	case <-accepted:
	case <-time.After(5 * time.Second):
		t.Fatal("listener never saw the connection")
	}
	if got := d.Dials(); !slices.Equal(got, []string{addr}) {
		t.Errorf("Dials %q", got)
	}
}

func TestDialerRefuseAndBlackhole(t *testing.T) {
	t.Parallel()
	d := new(fake.Dialer) // the zero value works too
	d.Refuse(netip.MustParseAddr("127.0.0.24"))
	d.Blackhole(netip.MustParseAddr("192.0.2.1"))

	_, err := d.DialContext(context.Background(), "tcp", "127.0.0.24:25")
	var opErr *net.OpError
	if !errors.Is(err, syscall.ECONNREFUSED) || !errors.As(err, &opErr) {
		t.Errorf("refused dial: %v, want a *net.OpError wrapping ECONNREFUSED", err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	deadline, _ := ctx.Deadline()
	_, err = d.DialContext(ctx, "tcp", "192.0.2.1:25")
	var ne net.Error
	if !errors.Is(err, context.DeadlineExceeded) || !errors.As(err, &ne) || !ne.Timeout() {
		t.Errorf("blackholed dial: %v, want a timeout", err)
	}
	// Measured against the context's own deadline: a start time taken after
	// WithTimeout would make the check flaky by the time between the two.
	if early := time.Until(deadline); early > 0 {
		t.Errorf("blackholed dial returned %v before the deadline", early)
	}
}
