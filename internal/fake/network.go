package fake

import (
	"context"
	"net"
	"net/netip"
	"os"
	"sync"
	"syscall"
)

// Dialer dials like net.Dialer, except for IP addresses registered with it:
// a connection to a registered address, at any port, goes to the fake
// server registered for it (so a prober dialing 127.0.0.5:25 reaches a fake
// listening on 127.0.0.5:40123). Addresses can also be made to refuse
// connections or to swallow them. Host names and unregistered addresses are
// dialed unchanged.
//
// A Dialer is safe for concurrent use. Its zero value is ready to use, as is
// the one NewDialer returns.
type Dialer struct {
	mu     sync.Mutex
	routes map[netip.Addr]netip.AddrPort
	faults map[netip.Addr]dialFault
	dials  []string
	net    net.Dialer
}

type dialFault int

const (
	faultRefuse dialFault = iota + 1
	faultBlackhole
)

// NewDialer returns an empty Dialer.
func NewDialer() *Dialer { return &Dialer{} }

// Register sends connections to ip, at any port, to real instead.
func (d *Dialer) Register(ip netip.Addr, real netip.AddrPort) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.routes == nil {
		d.routes = make(map[netip.Addr]netip.AddrPort)
	}
	d.routes[ip.Unmap()] = real
}

// Refuse makes connections to ip fail at once with a *net.OpError wrapping
// syscall.ECONNREFUSED, as if nothing listened there.
func (d *Dialer) Refuse(ip netip.Addr) { d.setFault(ip, faultRefuse) }

// Blackhole makes connections to ip hang until the dial's context ends, as
// if the packets were dropped; the error then wraps the context's error
// (context.DeadlineExceeded is a timeout). Dial with a deadline.
func (d *Dialer) Blackhole(ip netip.Addr) { d.setFault(ip, faultBlackhole) }

func (d *Dialer) setFault(ip netip.Addr, f dialFault) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.faults == nil {
		d.faults = make(map[netip.Addr]dialFault)
	}
	d.faults[ip.Unmap()] = f
}

// Dials returns every address passed to DialContext so far, as given (before
// any rewriting), in call order.
func (d *Dialer) Dials() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]string(nil), d.dials...)
}

// DialContext connects to address on the named network, applying the
// registrations above. Its signature matches net.Dialer.DialContext.
func (d *Dialer) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	d.mu.Lock()
	d.dials = append(d.dials, address)
	target := address
	var fault dialFault
	if host, _, err := net.SplitHostPort(address); err == nil {
		if ip, err := netip.ParseAddr(host); err == nil {
			ip = ip.Unmap()
			if real, ok := d.routes[ip]; ok {
				target = real.String()
			}
			fault = d.faults[ip]
		}
	}
	d.mu.Unlock()

	switch fault {
	case faultRefuse:
		return nil, &net.OpError{Op: "dial", Net: network, Addr: tcpAddr(address),
			Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}
	case faultBlackhole:
		<-ctx.Done()
		return nil, &net.OpError{Op: "dial", Net: network, Addr: tcpAddr(address), Err: ctx.Err()}
	}
	return d.net.DialContext(ctx, network, target)
}

// tcpAddr returns address as a net.Addr for error messages, or nil.
func tcpAddr(address string) net.Addr {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return nil
	}
	return net.TCPAddrFromAddrPort(ap)
}
