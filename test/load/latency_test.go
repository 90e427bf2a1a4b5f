package main

import (
	"bufio"
	"net"
	"testing"
	"time"
)

// echoServer greets, then answers every line with the same line, until EOF.
func echoServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				c.Write([]byte("hello\n"))
				r := bufio.NewReader(c)
				for {
					line, err := r.ReadString('\n')
					if err != nil {
						return
					}
					c.Write([]byte(line))
				}
			}()
		}
	}()
	return ln.Addr().String()
}

// TestLatencyProxyRoundTrips checks the proxy's accounting: the greeting arrives 2 RTT
// after the dial (TCP handshake, then the server's first bytes), each request/reply
// exchange costs one RTT, and pipelined requests share one. Only lower bounds (the
// proxy never delivers early) are asserted; the rest is logged.
func TestLatencyProxyRoundTrips(t *testing.T) {
	t.Parallel()
	const rtt = 20 * time.Millisecond
	p, err := startLatencyProxy(echoServer(t), rtt)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	start := time.Now()
	c, err := net.Dial("tcp", p.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	r := bufio.NewReader(c)
	if _, err := r.ReadString('\n'); err != nil {
		t.Fatal(err)
	}
	greeting := time.Since(start)
	const exchanges = 5
	start = time.Now()
	for range exchanges {
		c.Write([]byte("ping\n"))
		if _, err := r.ReadString('\n'); err != nil {
			t.Fatal(err)
		}
	}
	serial := time.Since(start)
	start = time.Now()
	c.Write([]byte("a\nb\nc\n")) // pipelined: one trip
	for range 3 {
		if _, err := r.ReadString('\n'); err != nil {
			t.Fatal(err)
		}
	}
	pipelined := time.Since(start)
	t.Logf("greeting %v (2 RTT = %v), %d exchanges %v (%v), pipelined %v (%v)", greeting, 2*rtt, exchanges, serial, exchanges*rtt, pipelined, rtt)
	if greeting < 2*rtt || serial < exchanges*rtt || pipelined < rtt {
		t.Errorf("faster than the injected latency allows")
	}
	// No upper bound: under -race on a busy machine scheduling adds tens of
	// milliseconds; timing limits belong to the load tool's measurements, not here.
	if p.Accepted() != 1 {
		t.Errorf("Accepted %d, want 1", p.Accepted())
	}
}
