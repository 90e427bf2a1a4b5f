package fake

import (
	"crypto/tls"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"sync"
	"testing"
)

// PolicyServer is an HTTPS server publishing an MTA-STS policy at
// /.well-known/mta-sts.txt (RFC 8461 §3.3), on loopback. By default it answers
// 200 text/plain with the body set by SetPolicy; SetHandler replaces that for hostile
// or broken servers.
type PolicyServer struct {
	srv     *httptest.Server
	mu      sync.Mutex
	policy  string
	handler http.HandlerFunc
	fetches int
}

// StartPolicyServer starts a policy server presenting cert, stopped at the end of the
// test.
func StartPolicyServer(t testing.TB, cert tls.Certificate) *PolicyServer {
	t.Helper()
	p := &PolicyServer{}
	p.srv = httptest.NewUnstartedServer(http.HandlerFunc(p.serve))
	p.srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	p.srv.Config.ErrorLog = log.New(io.Discard, "", 0) // rejected handshakes are the point of some tests
	p.srv.StartTLS()
	t.Cleanup(p.srv.Close)
	return p
}

func (p *PolicyServer) serve(w http.ResponseWriter, r *http.Request) {
	p.mu.Lock()
	p.fetches++
	policy, h := p.policy, p.handler
	p.mu.Unlock()
	if h != nil {
		h(w, r)
		return
	}
	if r.URL.Path != "/.well-known/mta-sts.txt" {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Content-Type", "text/plain")
	_, _ = w.Write([]byte(policy))
}

// SetPolicy sets the policy body served.
func (p *PolicyServer) SetPolicy(body string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.policy, p.handler = body, nil
}

// SetHandler replaces the default answer; nil restores it.
func (p *PolicyServer) SetHandler(h http.HandlerFunc) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.handler = h
}

// Fetches is the number of requests served.
func (p *PolicyServer) Fetches() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.fetches
}

// RegisterWith routes d's connections to ip (any port) to this server.
func (p *PolicyServer) RegisterWith(d *Dialer, ip netip.Addr) {
	d.Register(ip, p.srv.Listener.Addr().(*net.TCPAddr).AddrPort())
}
