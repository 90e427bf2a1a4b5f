package fake

import (
	"net/netip"
	"sync"
	"testing"
	"time"
)

// AddrSource is a settable list of this host's addresses for an outbound guard
// (netguard.Config.OwnAddrs is its Read). Reads can be held up with Hold.
type AddrSource struct {
	mu      sync.Mutex
	addrs   []netip.Addr
	err     error
	reads   int
	hold    chan struct{} // when set, a read waits until it is closed
	waiting chan struct{} // a held read announces itself here
}

// Read returns the addresses and error last Set.
func (s *AddrSource) Read() ([]netip.Addr, error) {
	s.mu.Lock()
	hold, waiting := s.hold, s.waiting
	s.mu.Unlock()
	if hold != nil {
		select {
		case waiting <- struct{}{}:
		default:
		}
		<-hold
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.reads++
	return s.addrs, s.err
}

// Set replaces the addresses (and the error Read returns).
func (s *AddrSource) Set(err error, addrs ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.addrs, s.err = nil, err
	for _, a := range addrs {
		s.addrs = append(s.addrs, netip.MustParseAddr(a))
	}
}

// Hold makes every later Read wait until release is called; waiting receives once
// a Read is held.
func (s *AddrSource) Hold() (waiting <-chan struct{}, release func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.hold, s.waiting = make(chan struct{}), make(chan struct{}, 1)
	hold := s.hold
	return s.waiting, sync.OnceFunc(func() { close(hold) })
}

// Reads is how many Reads have returned.
func (s *AddrSource) Reads() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.reads
}

// Eventually waits up to 5 seconds for cond, polling it.
func Eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); time.Sleep(2 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("not within 5s: %s", what)
		}
	}
}
