package milter_test

import (
	"context"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	gomilter "github.com/d--j/go-milter"

	"github.com/tlsgate/tlsgate/internal/fake"
	"github.com/tlsgate/tlsgate/milter"
	"github.com/tlsgate/tlsgate/policy"
	"github.com/tlsgate/tlsgate/verify"
)

// TestServerRobustness: 1,000 concurrent milter sessions, a client that connects and
// never speaks, and sessions the MTA aborts or drops in the middle of a transaction: the
// server answers every RCPT, keeps serving, and leaves no goroutine behind. Not
// parallel: it checks every goroutine of the process.
func TestServerRobustness(t *testing.T) {
	noLeak := fake.CheckGoroutines(t)
	facts := map[string]*verify.Facts{}
	for i := range 50 {
		d := fmt.Sprintf("d%02d.test", i)
		facts[d] = tlsFacts(d)
	}
	src := &factSource{facts: facts}
	f := milter.NewFilter(milter.Config{
		Policies:          policySet(t, nil, []policy.Customer{acme}), // encrypt for every recipient
		Facts:             src,
		CheckedTransports: []string{"smtp"},
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := f.NewServer()
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	client := gomilter.NewClient("tcp", ln.Addr().String())

	// A client that connects and never speaks.
	silent, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}

	const n = 1000
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			macros := gomilter.NewMacroBag()
			macros.Set(gomilter.MacroRcptMailer, "smtp")
			s, err := client.Session(macros)
			if err != nil {
				errs <- fmt.Errorf("session %d: %w", i, err)
				return
			}
			defer s.Close()
			if _, err := s.Conn("client.example", gomilter.FamilyInet, 40000, "192.0.2.10"); err != nil {
				errs <- fmt.Errorf("session %d: connect: %w", i, err)
				return
			}
			if _, err := s.Helo("client.example"); err != nil {
				errs <- fmt.Errorf("session %d: helo: %w", i, err)
				return
			}
			if _, err := s.Mail("sender@acme.example", ""); err != nil {
				errs <- fmt.Errorf("session %d: mail: %w", i, err)
				return
			}
			act, err := s.Rcpt(fmt.Sprintf("user@d%02d.test", i%50), "")
			if err != nil || act.Type != gomilter.ActionContinue {
				errs <- fmt.Errorf("session %d: rcpt: %v %v", i, act, err)
				return
			}
			switch i % 3 {
			case 0: // the SMTP client gave up: ABORT, then a new transaction
				if err := s.Abort(nil); err != nil {
					errs <- fmt.Errorf("session %d: abort: %w", i, err)
				}
			case 1: // the MTA drops the connection mid-transaction (deferred Close)
			default: // a complete message
				if _, err := s.DataStart(); err != nil {
					errs <- fmt.Errorf("session %d: data: %w", i, err)
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}

	if got := len(src.Asked()); got != n {
		t.Errorf("%d recipients judged; want %d", got, n)
	}

	// Still serving after all that.
	s, err := client.Session(gomilter.NewMacroBag())
	if err != nil {
		t.Fatalf("a new session after the burst: %v", err)
	}
	if _, err := s.Conn("client.example", gomilter.FamilyInet, 40000, "192.0.2.10"); err != nil {
		t.Fatalf("connect after the burst: %v", err)
	}
	s.Close()

	silent.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		srv.Close()
	}
	if err := <-served; !milter.IsClosed(err) {
		t.Errorf("Serve: %v", err)
	}
	noLeak()
}

// TestShutdownAnswersInFlightRCPT: Shutdown (SIGTERM in serve) lets an RCPT whose
// verdict is still being computed get its answer before the session closes.
func TestShutdownAnswersInFlightRCPT(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	src := &factSource{facts: map[string]*verify.Facts{"slow.test": tlsFacts("slow.test")}, block: release,
		waiting: make(chan string, 1)}
	f := milter.NewFilter(milter.Config{
		Policies:          policySet(t, nil, []policy.Customer{acme}),
		Facts:             src,
		RcptTimeout:       5 * time.Second,
		CheckedTransports: []string{"smtp"},
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := f.NewServer()
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	macros := gomilter.NewMacroBag()
	macros.Set(gomilter.MacroRcptMailer, "smtp")
	s, err := gomilter.NewClient("tcp", ln.Addr().String()).Session(macros)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for _, step := range []func() (*gomilter.Action, error){
		func() (*gomilter.Action, error) {
			return s.Conn("client.example", gomilter.FamilyInet, 40000, "192.0.2.10")
		},
		func() (*gomilter.Action, error) { return s.Helo("client.example") },
		func() (*gomilter.Action, error) { return s.Mail("sender@acme.example", "") },
	} {
		if _, err := step(); err != nil {
			t.Fatal(err)
		}
	}
	answered := make(chan *gomilter.Action, 1)
	go func() {
		act, err := s.Rcpt("user@slow.test", "")
		if err != nil {
			t.Errorf("RCPT during shutdown: %v", err)
		}
		answered <- act
	}()
	select {
	case <-src.waiting: // the RCPT is being decided, its verdict held back by release
	case <-time.After(5 * time.Second):
		t.Fatal("the RCPT never reached the fact source")
	}
	shut := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		shut <- srv.Shutdown(ctx)
	}()
	// Serve returns once Shutdown has closed the listener: shutdown has begun while the
	// verdict is still pending.
	select {
	case err := <-served:
		if !milter.IsClosed(err) {
			t.Errorf("Serve: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not return after Shutdown began")
	}
	close(release)
	select {
	case act := <-answered:
		if act == nil || act.Type != gomilter.ActionContinue {
			t.Errorf("in-flight RCPT answered %v; want continue", act)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the in-flight RCPT was never answered")
	}
	s.Close() // the MTA ends its session; Shutdown can complete
	if err := <-shut; err != nil {
		t.Errorf("Shutdown: %v", err)
	}
}
