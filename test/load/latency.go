package main

import (
	"net"
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// latencyProxy forwards TCP connections to a backend as if client and backend were one
// network round trip (RTT) apart:
//
//   - every byte reaches the other side RTT/2 after it was written, in each direction
//     (a one-way delay, so a request and its reply cost exactly one RTT, and bytes a
//     side writes back to back, such as pipelined commands, share one trip);
//   - a new connection reaches the backend after the TCP handshake's SYN, SYN-ACK and
//     ACK, 1.5 RTT after the client dialed, so an SMTP greeting, which the server sends
//     as soon as it accepts, reaches the client 2 RTT after the dial, as on a real
//     network. Bytes the client writes before that wait, and arrive at 1.5 RTT at the
//     earliest, as they would after a connect that returns at 1 RTT.
//
// Bandwidth, loss, slow start and Nagle are not modelled: what shows is the number of
// round trips a protocol needs. The client side's connect returns at once (loopback);
// no client of this tool writes before it has read a greeting, so that does not count.
type latencyProxy struct {
	ln       net.Listener
	backend  string
	oneWay   time.Duration
	done     chan struct{}
	wg       sync.WaitGroup
	accepted atomic.Int64

	mu     sync.Mutex
	closed bool
	conns  map[net.Conn]struct{}
}

// startLatencyProxy starts a proxy to backend on 127.0.0.1 at a random port.
func startLatencyProxy(backend string, rtt time.Duration) (*latencyProxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &latencyProxy{ln: ln, backend: backend, oneWay: rtt / 2, done: make(chan struct{}), conns: map[net.Conn]struct{}{}}
	p.wg.Add(1)
	go p.acceptLoop()
	return p, nil
}

// Addr is the address clients connect to.
func (p *latencyProxy) Addr() netip.AddrPort { return p.ln.Addr().(*net.TCPAddr).AddrPort() }

// Accepted is the number of connections accepted so far.
func (p *latencyProxy) Accepted() int64 { return p.accepted.Load() }

// Close stops the proxy, closes every connection and waits for its goroutines.
func (p *latencyProxy) Close() {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.closed = true
	close(p.done)
	for c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
	p.ln.Close()
	p.wg.Wait()
}

func (p *latencyProxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		c.Close()
		return false
	}
	p.conns[c] = struct{}{}
	return true
}

func (p *latencyProxy) untrack(c net.Conn) {
	p.mu.Lock()
	delete(p.conns, c)
	p.mu.Unlock()
	c.Close()
}

func (p *latencyProxy) acceptLoop() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			select {
			case <-p.done:
				return
			case <-time.After(10 * time.Millisecond):
				continue
			}
		}
		if !p.track(c) {
			return
		}
		p.accepted.Add(1)
		p.wg.Add(1)
		go p.serve(c)
	}
}

// chunk is bytes in flight and when they arrive.
type chunk struct {
	data []byte
	at   time.Time
}

func (p *latencyProxy) serve(c net.Conn) {
	defer p.wg.Done()
	dialed := time.Now()
	var pumps sync.WaitGroup
	up := make(chan chunk, 64)
	forwarding := false
	// Closing c ends its reader, and so the pump towards the backend.
	defer func() {
		p.untrack(c)
		if !forwarding {
			for range up { // nobody else reads it
			}
		}
		pumps.Wait()
	}()
	pumps.Go(func() { p.read(c, up) })
	// SYN, SYN-ACK, ACK: the backend accepts 1.5 RTT after the dial.
	if !p.sleepUntil(dialed.Add(3 * p.oneWay)) {
		return
	}
	b, err := net.Dial("tcp", p.backend)
	if err != nil || !p.track(b) {
		return
	}
	defer p.untrack(b)
	down := make(chan chunk, 64)
	pumps.Go(func() { p.read(b, down) })
	pumps.Go(func() { p.write(b, up) })
	forwarding = true
	// Until the backend is done talking; then until the client closes its side (or
	// Close closes it).
	p.write(c, down)
	pumps.Wait()
}

// read reads src and queues what it reads with its arrival time, until EOF or an error.
func (p *latencyProxy) read(src net.Conn, q chan<- chunk) {
	defer close(q)
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			data := make([]byte, n)
			copy(data, buf[:n])
			select {
			case q <- chunk{data, time.Now().Add(p.oneWay)}:
			case <-p.done:
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// write delivers the queued chunks to dst at their arrival times, then half-closes dst.
// After a write error it keeps draining q, so that the reader never blocks.
func (p *latencyProxy) write(dst net.Conn, q <-chan chunk) {
	failed := false
	for ch := range q {
		if failed || !p.sleepUntil(ch.at) {
			failed = true
			continue
		}
		if _, err := dst.Write(ch.data); err != nil {
			failed = true
		}
	}
	if tc, ok := dst.(*net.TCPConn); ok && !failed {
		tc.CloseWrite()
	} else {
		dst.Close()
	}
}

// spinWindow is how early sleepUntil wakes up to wait out the rest by yielding: timers
// fire late by a fraction of a millisecond on many machines (idle CPUs, virtual
// machines), which would add to every injected trip.
const spinWindow = 1500 * time.Microsecond

// sleepUntil waits until t and reports false if the proxy closed first.
func (p *latencyProxy) sleepUntil(t time.Time) bool {
	if d := time.Until(t) - spinWindow; d > 0 {
		timer := time.NewTimer(d)
		defer timer.Stop()
		select {
		case <-timer.C:
		case <-p.done:
			return false
		}
	}
	for time.Now().Before(t) {
		runtime.Gosched()
	}
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}
