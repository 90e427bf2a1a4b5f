package dnsx_test

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/tlsgate/tlsgate/internal/dnsx"
	"github.com/tlsgate/tlsgate/internal/fake"
)

// This file plays a hostile or broken resolver against the client: a scripted server on
// loopback that can send any bytes, over UDP and TCP, when it likes. Every case must end
// within the client's timeout with the right classification, and nothing that is not a
// well-formed answer to the question may read as "no data" or "no such name": for a TLSA
// or MTA-STS lookup that would be a downgrade.

// A packet is one thing the raw server sends back.
type packet struct {
	after    time.Duration // wait this long first
	data     []byte        // a DNS message, or any bytes
	unframed bool          // TCP: write data as is, without the two-byte length (RFC 1035 §4.2.2)
	hangup   bool          // TCP: close the connection after data
}

// A rawHandler scripts the raw server: it gets each query (already parsed) and the
// network it came over, and returns what to send, in order. Nothing, or running out,
// means silence; a TCP connection then stays open until the client closes it.
type rawHandler func(req *dns.Msg, network string) []packet

// rawServer is a scripted DNS server on 127.0.0.1, UDP and TCP on one port. It stops at
// the test's cleanup, closing its sockets and waiting for every goroutine.
type rawServer struct {
	addr   string
	pc     net.PacketConn
	ln     net.Listener
	handle rawHandler
	done   chan struct{}
	wg     sync.WaitGroup

	mu      sync.Mutex
	conns   map[net.Conn]bool
	closed  bool
	queries []string // "udp name TYPE"
}

func startRaw(t *testing.T, handle rawHandler) *rawServer {
	t.Helper()
	s := &rawServer{handle: handle, done: make(chan struct{}), conns: map[net.Conn]bool{}}
	var err error
	for range 20 { // the TCP port may be taken; try another UDP port
		s.pc, err = net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		s.addr = s.pc.LocalAddr().String()
		s.ln, err = net.Listen("tcp", s.addr)
		if err == nil {
			break
		}
		s.pc.Close()
	}
	if err != nil {
		t.Fatal(err)
	}
	s.wg.Add(2)
	go s.serveUDP()
	go s.serveTCP()
	t.Cleanup(s.close)
	return s
}

// closeTCP stops listening on TCP, so connections are refused.
func (s *rawServer) closeTCP() { s.ln.Close() }

func (s *rawServer) close() {
	close(s.done)
	s.pc.Close()
	s.ln.Close()
	s.mu.Lock()
	s.closed = true
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
}

func (s *rawServer) record(req *dns.Msg, network string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	q := req.Question[0]
	s.queries = append(s.queries, fmt.Sprintf("%s %s %s", network, q.Name, dns.TypeToString[q.Qtype]))
}

func (s *rawServer) Queries() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.queries...)
}

// sleep waits d, or less if the server stops; it reports whether to go on.
func (s *rawServer) sleep(d time.Duration) bool {
	if d <= 0 {
		return true
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
		return true
	case <-s.done:
		return false
	}
}

func (s *rawServer) serveUDP() {
	defer s.wg.Done()
	buf := make([]byte, dns.MaxMsgSize)
	for {
		n, from, err := s.pc.ReadFrom(buf)
		if err != nil {
			return
		}
		req := new(dns.Msg)
		if req.Unpack(buf[:n]) != nil || len(req.Question) != 1 {
			continue
		}
		s.record(req, "udp")
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			for _, p := range s.handle(req, "udp") {
				if !s.sleep(p.after) {
					return
				}
				s.pc.WriteTo(p.data, from)
			}
		}()
	}
}

func (s *rawServer) serveTCP() {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			c.Close()
			return
		}
		s.conns[c] = true
		s.wg.Add(1)
		s.mu.Unlock()
		go func() {
			defer s.wg.Done()
			defer func() {
				s.mu.Lock()
				delete(s.conns, c)
				s.mu.Unlock()
				c.Close()
			}()
			for {
				var l [2]byte
				if _, err := io.ReadFull(c, l[:]); err != nil {
					return
				}
				b := make([]byte, binary.BigEndian.Uint16(l[:]))
				if _, err := io.ReadFull(c, b); err != nil {
					return
				}
				req := new(dns.Msg)
				if req.Unpack(b) != nil || len(req.Question) != 1 {
					return
				}
				s.record(req, "tcp")
				for _, p := range s.handle(req, "tcp") {
					if !s.sleep(p.after) {
						return
					}
					data := p.data
					if !p.unframed {
						data = binary.BigEndian.AppendUint16(nil, uint16(len(p.data)))
						data = append(data, p.data...)
					}
					if _, err := c.Write(data); err != nil || p.hangup {
						return
					}
				}
			}
		}()
	}
}

// reply packs a response to req: RA set, the question copied, then edit applied.
func reply(req *dns.Msg, edit func(m *dns.Msg)) []byte {
	m := new(dns.Msg)
	m.SetReply(req)
	m.RecursionAvailable = true
	m.Compress = true
	if edit != nil {
		edit(m)
	}
	b, err := m.Pack()
	if err != nil {
		panic(fmt.Sprintf("packing a scripted reply: %v", err)) // a bug in the test
	}
	return b
}

// records returns an edit that puts rrs (zone-file syntax) in the answer section.
func records(rrs ...string) func(m *dns.Msg) {
	parsed := make([]dns.RR, len(rrs))
	for i, s := range rrs {
		rr, err := dns.NewRR(s)
		if err != nil {
			panic(fmt.Sprintf("%q: %v", s, err)) // a bug in the test
		}
		parsed[i] = rr
	}
	return func(m *dns.Msg) { m.Answer = append(m.Answer, parsed...) }
}

func soa(zone string) dns.RR {
	rr, _ := dns.NewRR(zone + " 300 IN SOA ns.invalid. hostmaster.invalid. 1 3600 600 86400 60")
	return rr
}

// nodata is a NOERROR reply with an empty answer and a SOA (RFC 2308 §2.2).
func nodata(m *dns.Msg) { m.Ns = []dns.RR{soa("test.")} }

// withID returns b with its message ID replaced.
func withID(b []byte, id uint16) []byte {
	b = append([]byte(nil), b...)
	binary.BigEndian.PutUint16(b, id)
	return b
}

func now(data []byte) packet { return packet{data: data} }

// viaTCP answers a UDP query with TC=1 and nothing else (RFC 1035 §4.2.1) and a TCP query
// with whatever tcp returns.
func viaTCP(tcp rawHandler) rawHandler {
	return func(req *dns.Msg, network string) []packet {
		if network == "udp" {
			return []packet{now(reply(req, func(m *dns.Msg) { m.Truncated = true }))}
		}
		return tcp(req, network)
	}
}

// always answers every query with the reply edited by edit.
func always(edit func(m *dns.Msg)) rawHandler {
	return func(req *dns.Msg, _ string) []packet { return []packet{now(reply(req, edit))} }
}

// chainTo answers "<n>.chain.test." with a CNAME to "<n+1>.chain.test."; at last it
// answers with an A record.
func chainTo(last int) rawHandler {
	return func(req *dns.Msg, _ string) []packet {
		var n int
		fmt.Sscanf(req.Question[0].Name, "c%d.chain.test.", &n)
		if n >= last {
			return []packet{now(reply(req, records(req.Question[0].Name+" 60 IN A 192.0.2.1")))}
		}
		return []packet{now(reply(req, records(fmt.Sprintf("%s 60 IN CNAME c%d.chain.test.", req.Question[0].Name, n+1))))}
	}
}

// inlineChain is one answer holding a chain of n CNAMEs from c0.chain.test., ending in an A.
func inlineChain(n int) func(m *dns.Msg) {
	var rrs []string
	for i := range n {
		rrs = append(rrs, fmt.Sprintf("c%d.chain.test. 60 IN CNAME c%d.chain.test.", i, i+1))
	}
	rrs = append(rrs, fmt.Sprintf("c%d.chain.test. 60 IN A 192.0.2.1", n))
	return records(rrs...)
}

// hostileTimeout is the client's per-exchange timeout; hostileSlack what a case may take
// beyond it (the race detector is slow).
const (
	hostileTimeout = 300 * time.Millisecond
	hostileSlack   = time.Second
)

// TestHostileDNS is not parallel: it checks the goroutines of the whole process around
// its cases, as internal/fake's TestCleanupLeavesNoGoroutines does; the paused parallel tests
// are not taken for leaks.
func TestHostileDNS(t *testing.T) {
	noLeak := fake.CheckGoroutines(t)
	t.Run("answers", testHostileAnswers)
	t.Run("timing", testHostileTiming)

	noLeak()
}

func testHostileAnswers(t *testing.T) {
	tests := []struct {
		name    string
		handle  rawHandler
		noTCP   bool   // refuse TCP connections
		qname   string // default "a.test."
		qtype   uint16 // default A
		untrust bool   // client.Trusted = false

		err       error // want errors.Is(err, this); nil: an answer as below
		status    dnsx.Status
		records   int
		target    string // default qname
		authentic bool

		maxQueries int // 0: not checked
	}{
		// 1. Transaction IDs (RFC 1035 §7.3, RFC 5452 §9.1). Over UDP a reply with
		// another ID is not ours: it is dropped and the wait goes on.
		{name: "wrong id then silence", err: dnsx.ErrTimeout,
			handle: func(req *dns.Msg, _ string) []packet {
				return []packet{now(withID(reply(req, records("a.test. 60 IN A 192.0.2.66")), req.Id+1))}
			}},
		{name: "wrong id then right id", status: dnsx.StatusOK, records: 1,
			handle: func(req *dns.Msg, _ string) []packet {
				return []packet{
					now(withID(reply(req, records("a.test. 60 IN A 192.0.2.66", "a.test. 60 IN A 192.0.2.67")), req.Id^0x8000)),
					{after: 20 * time.Millisecond, data: reply(req, records("a.test. 60 IN A 192.0.2.1"))},
				}
			}},
		{name: "wrong id garbage then right id", status: dnsx.StatusOK, records: 1,
			handle: func(req *dns.Msg, _ string) []packet {
				junk := binary.BigEndian.AppendUint16(nil, req.Id+1)
				junk = append(junk, strings.Repeat("\xff", 40)...)
				return []packet{now(junk), now(reply(req, records("a.test. 60 IN A 192.0.2.1")))}
			}},
		{name: "flood of wrong ids", err: dnsx.ErrTimeout,
			handle: func(req *dns.Msg, _ string) []packet {
				var ps []packet
				for i := range 2000 {
					ps = append(ps, now(withID(reply(req, nodata), req.Id+1+uint16(i))))
				}
				return ps
			}},
		// Over TCP (RFC 7766 §7) the connection carries this one query: another ID is an error.
		{name: "tcp wrong id", err: dnsx.ErrBadResponse,
			handle: viaTCP(func(req *dns.Msg, _ string) []packet {
				return []packet{now(withID(reply(req, records("a.test. 60 IN A 192.0.2.66")), req.Id+1))}
			})},

		// 2. The right ID, but not an answer to this question (RFC 1035 §7.3, RFC 5452 §9.1).
		{name: "other name", err: dnsx.ErrBadResponse,
			handle: always(func(m *dns.Msg) { m.Question[0].Name = "b.test."; nodata(m) })},
		{name: "other type", err: dnsx.ErrBadResponse,
			handle: always(func(m *dns.Msg) { m.Question[0].Qtype = dns.TypeAAAA; nodata(m) })},
		{name: "other class", err: dnsx.ErrBadResponse,
			handle: always(func(m *dns.Msg) { m.Question[0].Qclass = dns.ClassCHAOS; nodata(m) })},
		{name: "no question", err: dnsx.ErrBadResponse,
			handle: always(func(m *dns.Msg) { m.Question = nil; nodata(m) })},
		{name: "two questions", err: dnsx.ErrBadResponse,
			handle: always(func(m *dns.Msg) { m.Question = append(m.Question, m.Question[0]); nodata(m) })},
		{name: "tcp other name", err: dnsx.ErrBadResponse,
			handle: viaTCP(always(func(m *dns.Msg) { m.Question[0].Name = "b.test."; nodata(m) }))},
		// The query echoed back: same ID and question, QR=0, AD=1 as we sent it, no
		// records. It is not a response (RFC 1035 §4.1.1), least of all an authentic NODATA.
		{name: "query echoed", err: dnsx.ErrBadResponse, qtype: dns.TypeTLSA, qname: "_25._tcp.mx.test.",
			handle: func(req *dns.Msg, _ string) []packet {
				b, _ := req.Pack()
				return []packet{now(b)}
			}},
		{name: "not a QUERY opcode", err: dnsx.ErrBadResponse,
			handle: always(func(m *dns.Msg) { m.Opcode = dns.OpcodeNotify; nodata(m) })},

		// 3. Garbage and messages cut short.
		{name: "garbage with our id", err: dnsx.ErrBadResponse,
			handle: func(req *dns.Msg, _ string) []packet {
				junk := binary.BigEndian.AppendUint16(nil, req.Id)
				return []packet{now(append(junk, strings.Repeat("\xc0", 64)...))}
			}},
		{name: "short datagram", err: dnsx.ErrBadResponse,
			handle: func(req *dns.Msg, _ string) []packet {
				return []packet{now(binary.BigEndian.AppendUint16(nil, req.Id))}
			}},
		{name: "one byte", err: dnsx.ErrTimeout, // cannot even hold an ID: not ours
			handle: func(req *dns.Msg, _ string) []packet { return []packet{now([]byte{0})} }},
		{name: "header only", err: dnsx.ErrBadResponse,
			handle: func(req *dns.Msg, _ string) []packet { return []packet{now(reply(req, nil)[:12])} }},
		// The header promises two answers; the message ends after the question. miekg/dns
		// unpacks that without error, as an empty answer: it must not become NODATA.
		{name: "answers promised, none sent", err: dnsx.ErrBadResponse,
			handle: func(req *dns.Msg, _ string) []packet {
				b := reply(req, nil)
				binary.BigEndian.PutUint16(b[6:], 2)
				return []packet{now(b)}
			}},
		{name: "cut inside a record", err: dnsx.ErrBadResponse,
			handle: func(req *dns.Msg, _ string) []packet {
				b := reply(req, records("a.test. 60 IN A 192.0.2.1"))
				return []packet{now(b[:len(b)-2])}
			}},
		{name: "compression loop", err: dnsx.ErrBadResponse,
			handle: func(req *dns.Msg, _ string) []packet {
				b := reply(req, nil)
				binary.BigEndian.PutUint16(b[6:], 1)
				// an answer whose owner name points at itself
				b = binary.BigEndian.AppendUint16(b, 0xc000|uint16(len(b)))
				b = append(b, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 192, 0, 2, 1)
				return []packet{now(b)}
			}},
		// A UDP answer above the 1232 bytes we advertise, without TC: read whole, not cut.
		// The name is chosen so that a 1232-byte read would end on a record boundary,
		// which miekg/dns would take silently as a shorter answer.
		{name: "udp answer above the advertised size", qname: "abcdefghi.test.", status: dnsx.StatusOK, records: 200,
			handle: always(func(m *dns.Msg) {
				for i := range 200 {
					m.Answer = append(m.Answer, &dns.A{Hdr: dns.RR_Header{Name: m.Question[0].Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 60},
						A: net.IPv4(192, 0, 2, byte(i)).To4()})
				}
				m.SetEdns0(4096, true)
			})},

		// 4. Truncated over UDP, then TCP (RFC 7766 §5).
		{name: "tc then tcp refused", noTCP: true, err: dnsx.ErrUnreachable,
			handle: viaTCP(always(records("a.test. 60 IN A 192.0.2.1")))},
		{name: "tc then tcp garbage", err: dnsx.ErrBadResponse,
			handle: viaTCP(func(req *dns.Msg, _ string) []packet {
				junk := binary.BigEndian.AppendUint16(nil, req.Id)
				return []packet{now(append(junk, strings.Repeat("\x00\xff", 100)...))}
			})},
		{name: "tc then tcp length without message", err: dnsx.ErrBadResponse,
			handle: viaTCP(func(req *dns.Msg, _ string) []packet {
				return []packet{{data: []byte{0xff, 0xff, 0, 1}, unframed: true, hangup: true}}
			})},
		{name: "tc then tcp closed", err: dnsx.ErrBadResponse,
			handle: func(req *dns.Msg, network string) []packet {
				if network == "udp" {
					return []packet{now(reply(req, func(m *dns.Msg) { m.Truncated = true }))}
				}
				return []packet{{data: []byte{0}, unframed: true, hangup: true}} // half a length
			}},
		{name: "tc then tcp truncated again", err: dnsx.ErrBadResponse,
			handle: viaTCP(always(func(m *dns.Msg) { m.Truncated = true }))},
		{name: "tc then tcp 64 KiB", status: dnsx.StatusOK, records: -1,
			handle: viaTCP(always(func(m *dns.Msg) {
				// 16 bytes a record, with the owner compressed: just under 64 KiB in all
				for i := range 4060 {
					m.Answer = append(m.Answer, &dns.A{Hdr: dns.RR_Header{Name: m.Question[0].Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 60},
						A: net.IPv4(10, byte(i>>16), byte(i>>8), byte(i)).To4()})
				}
			}))},
		{name: "tc then tcp silent", err: dnsx.ErrTimeout,
			handle: viaTCP(func(*dns.Msg, string) []packet { return nil })},
		{name: "tc then tcp one byte at a time", err: dnsx.ErrTimeout,
			handle: viaTCP(func(req *dns.Msg, _ string) []packet {
				b := reply(req, records("a.test. 60 IN A 192.0.2.1"))
				b = append(binary.BigEndian.AppendUint16(nil, uint16(len(b))), b...)
				var ps []packet
				for i := range b {
					ps = append(ps, packet{after: 50 * time.Millisecond, data: b[i : i+1], unframed: true})
				}
				return ps
			})},

		// 5. The AD bit (RFC 4035 §3.2.3, RFC 6698 §4).
		{name: "ad on another question", err: dnsx.ErrBadResponse, qtype: dns.TypeTLSA, qname: "_25._tcp.mx.test.",
			handle: always(func(m *dns.Msg) { m.AuthenticatedData = true; m.Question[0].Name = "_25._tcp.other.test."; nodata(m) })},
		{name: "ad from trusted resolver", qtype: dns.TypeTLSA, qname: "_25._tcp.mx.test.", status: dnsx.StatusNoData, authentic: true,
			handle: always(func(m *dns.Msg) { m.AuthenticatedData = true; nodata(m) })},
		{name: "ad from untrusted resolver", untrust: true, status: dnsx.StatusOK, records: 1,
			handle: always(func(m *dns.Msg) { m.AuthenticatedData = true; records("a.test. 60 IN A 192.0.2.1")(m) })},
		{name: "ad only on the truncated udp answer", status: dnsx.StatusOK, records: 1,
			handle: func(req *dns.Msg, network string) []packet {
				if network == "udp" {
					return []packet{now(reply(req, func(m *dns.Msg) { m.Truncated, m.AuthenticatedData = true, true }))}
				}
				return []packet{now(reply(req, records("a.test. 60 IN A 192.0.2.1")))}
			}},

		// 6. CNAMEs (RFC 1034 §3.6.2, §4.3.2; RFC 2181 §10.1).
		{name: "cname loop in one answer", qname: "c0.chain.test.", err: dnsx.ErrCNAMELoop,
			handle: always(records("c0.chain.test. 60 IN CNAME c1.chain.test.", "c1.chain.test. 60 IN CNAME c0.chain.test."))},
		{name: "cname loop across queries", qname: "c0.chain.test.", err: dnsx.ErrCNAMELoop, maxQueries: 2,
			handle: func(req *dns.Msg, _ string) []packet {
				next := "c1.chain.test."
				if req.Question[0].Name == next {
					next = "c0.chain.test."
				}
				return []packet{now(reply(req, records(req.Question[0].Name+" 60 IN CNAME "+next)))}
			}},
		{name: "cname self loop", qname: "c0.chain.test.", err: dnsx.ErrCNAMELoop,
			handle: always(records("c0.chain.test. 60 IN CNAME C0.chain.test."))},
		{name: "8 cnames in one answer", qname: "c0.chain.test.", status: dnsx.StatusOK, records: 1, target: "c8.chain.test.",
			handle: always(inlineChain(8))},
		{name: "9 cnames in one answer", qname: "c0.chain.test.", err: dnsx.ErrCNAMELoop, maxQueries: 1,
			handle: always(inlineChain(9))},
		{name: "20 cnames in one answer", qname: "c0.chain.test.", err: dnsx.ErrCNAMELoop, maxQueries: 1,
			handle: always(inlineChain(20))},
		{name: "8 cnames one per query", qname: "c0.chain.test.", status: dnsx.StatusOK, records: 1, target: "c8.chain.test.", maxQueries: 9,
			handle: chainTo(8)},
		{name: "100 cnames one per query", qname: "c0.chain.test.", err: dnsx.ErrCNAMELoop, maxQueries: 9,
			handle: chainTo(100)},
		// The chain leaves the answer: the client asks for the target itself; AD is the
		// AND of both responses.
		{name: "cname out of the answer, insecure hop", qname: "c0.chain.test.", status: dnsx.StatusOK, records: 1, target: "c1.chain.test.", maxQueries: 2,
			handle: func(req *dns.Msg, _ string) []packet {
				if req.Question[0].Name == "c0.chain.test." {
					return []packet{now(reply(req, func(m *dns.Msg) {
						m.AuthenticatedData = true
						records("c0.chain.test. 60 IN CNAME c1.chain.test.")(m)
					}))}
				}
				return []packet{now(reply(req, records("c1.chain.test. 60 IN A 192.0.2.1")))}
			}},
		{name: "cname out of the answer, both secure", qname: "c0.chain.test.", status: dnsx.StatusOK, records: 1, target: "c1.chain.test.", authentic: true,
			handle: func(req *dns.Msg, _ string) []packet {
				return []packet{now(reply(req, func(m *dns.Msg) {
					m.AuthenticatedData = true
					if req.Question[0].Name == "c0.chain.test." {
						records("c0.chain.test. 60 IN CNAME c1.chain.test.")(m)
					} else {
						records("c1.chain.test. 60 IN A 192.0.2.1")(m)
					}
				}))}
			}},
		{name: "cname to a secure nodata through an insecure hop", qname: "_25._tcp.c0.chain.test.", qtype: dns.TypeTLSA,
			status: dnsx.StatusNoData, target: "_25._tcp.c1.chain.test.",
			handle: func(req *dns.Msg, _ string) []packet {
				if req.Question[0].Name == "_25._tcp.c0.chain.test." {
					return []packet{now(reply(req, records("_25._tcp.c0.chain.test. 60 IN CNAME _25._tcp.c1.chain.test.")))}
				}
				return []packet{now(reply(req, func(m *dns.Msg) { m.AuthenticatedData = true; nodata(m) }))}
			}},
		{name: "two cnames at one name", qname: "c0.chain.test.", err: dnsx.ErrBadResponse,
			handle: always(records("c0.chain.test. 60 IN CNAME c1.chain.test.", "c0.chain.test. 60 IN CNAME c2.chain.test.",
				"c2.chain.test. 60 IN A 192.0.2.1"))},

		// 7. Rcodes and sections (RFC 2308 §2, RFC 6604).
		{name: "nxdomain with the asked records", err: dnsx.ErrBadResponse,
			handle: always(func(m *dns.Msg) { m.Rcode = dns.RcodeNameError; records("a.test. 60 IN A 192.0.2.1")(m) })},
		{name: "nxdomain at the end of a cname", qname: "c0.chain.test.", status: dnsx.StatusNXDomain, target: "c1.chain.test.",
			handle: always(func(m *dns.Msg) {
				m.Rcode = dns.RcodeNameError
				records("c0.chain.test. 60 IN CNAME c1.chain.test.")(m)
				nodata(m)
			})},
		{name: "nxdomain", status: dnsx.StatusNXDomain,
			handle: always(func(m *dns.Msg) { m.Rcode = dns.RcodeNameError; nodata(m) })},
		{name: "nxdomain with unrelated records", err: dnsx.ErrBadResponse,
			handle: always(func(m *dns.Msg) { m.Rcode = dns.RcodeNameError; records("b.test. 60 IN A 192.0.2.1")(m) })},
		{name: "noerror with a soa only", status: dnsx.StatusNoData,
			handle: always(nodata)},
		{name: "noerror without soa", status: dnsx.StatusNoData,
			handle: always(nil)},
		{name: "noerror with another type only", qtype: dns.TypeTLSA, qname: "_25._tcp.mx.test.", err: dnsx.ErrBadResponse,
			handle: always(func(m *dns.Msg) {
				m.AuthenticatedData = true
				records("_25._tcp.mx.test. 60 IN TXT hello")(m)
			})},
		{name: "noerror with unrelated records only", err: dnsx.ErrBadResponse,
			handle: always(records("b.test. 60 IN A 192.0.2.1"))},
		{name: "records with unrelated ones", status: dnsx.StatusOK, records: 1,
			handle: always(records("b.test. 60 IN A 192.0.2.2", "a.test. 60 IN A 192.0.2.1"))},
		{name: "servfail", err: dnsx.ErrServFail,
			handle: always(func(m *dns.Msg) { m.Rcode = dns.RcodeServerFailure })},
		{name: "refused", err: dnsx.ErrRefused,
			handle: always(func(m *dns.Msg) { m.Rcode = dns.RcodeRefused })},
		{name: "formerr", err: dnsx.ErrBadResponse,
			handle: always(func(m *dns.Msg) { m.Rcode = dns.RcodeFormatError })},

		// 9. A large MX RRset over TCP: parsed whole, in bounded time. (The verifier
		// looks up at most 32 hosts: verify's TestHundredsOfMXHosts.)
		{name: "1000 mx over tcp", qtype: dns.TypeMX, qname: "example.test.", status: dnsx.StatusOK, records: 1000,
			handle: viaTCP(always(func(m *dns.Msg) {
				for i := range 1000 {
					m.Answer = append(m.Answer, &dns.MX{Hdr: dns.RR_Header{Name: "example.test.", Rrtype: dns.TypeMX, Class: dns.ClassINET, Ttl: 60},
						Preference: uint16(i), Mx: fmt.Sprintf("mx%d.example.test.", i)})
				}
			}))},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if tc.qname == "" {
				tc.qname = "a.test."
			}
			if tc.qtype == 0 {
				tc.qtype = dns.TypeA
			}
			if tc.target == "" {
				tc.target = tc.qname
			}
			s := startRaw(t, tc.handle)
			if tc.noTCP {
				s.closeTCP()
			}
			c, err := dnsx.NewClient(s.addr, hostileTimeout, false)
			if err != nil {
				t.Fatal(err)
			}
			if tc.untrust {
				c.Trusted = false
			}
			start := time.Now()
			ans, err := c.Lookup(context.Background(), tc.qname, tc.qtype)
			took := time.Since(start)
			t.Logf("%s %s: %s, status=%s records=%d target=%s authentic=%v err=%v",
				tc.qname, dns.TypeToString[tc.qtype], took.Round(time.Millisecond), ans.Status, len(ans.Records), ans.Target, ans.Authentic, err)
			if took > hostileTimeout+hostileSlack {
				t.Errorf("took %s; want at most the timeout %s (+%s)", took, hostileTimeout, hostileSlack)
			}
			if q := s.Queries(); tc.maxQueries > 0 && len(q) > tc.maxQueries {
				t.Errorf("%d queries; want at most %d: %q", len(q), tc.maxQueries, q)
			}
			if tc.err != nil {
				if !errors.Is(err, tc.err) {
					t.Errorf("err = %v; want %v", err, tc.err)
				}
				if err != nil && ans.Authentic {
					t.Error("an error with an authentic answer")
				}
				return
			}
			if err != nil {
				t.Fatalf("err = %v; want status %s", err, tc.status)
			}
			if ans.Status != tc.status || (tc.records >= 0 && len(ans.Records) != tc.records) || ans.Target != tc.target || ans.Authentic != tc.authentic {
				t.Errorf("status=%s records=%d target=%s authentic=%v; want %s %d %s %v",
					ans.Status, len(ans.Records), ans.Target, ans.Authentic, tc.status, tc.records, tc.target, tc.authentic)
			}
			if tc.records < 0 && len(ans.Records) != 4060 {
				t.Errorf("%d records; want the whole 64 KiB answer", len(ans.Records))
			}
		})
	}
}

// testHostileTiming: answers slower than the timeout, and callers that give up.
func testHostileTiming(t *testing.T) {
	silent := func(*dns.Msg, string) []packet { return nil }
	late := func(req *dns.Msg, _ string) []packet {
		return []packet{{after: 3 * hostileTimeout, data: reply(req, records("a.test. 60 IN A 192.0.2.1"))}}
	}
	test := func(t *testing.T, handle rawHandler, timeout time.Duration, ctx context.Context, budget time.Duration) error {
		t.Helper()
		s := startRaw(t, handle)
		c, err := dnsx.NewClient(s.addr, timeout, false)
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		ans, err := c.Lookup(ctx, "a.test.", dns.TypeA)
		took := time.Since(start)
		t.Logf("%s: status=%s records=%d err=%v", took.Round(time.Millisecond), ans.Status, len(ans.Records), err)
		if took > budget {
			t.Errorf("took %s; want at most %s", took, budget)
		}
		if !errors.Is(err, dnsx.ErrTimeout) {
			t.Errorf("err = %v; want %v", err, dnsx.ErrTimeout)
		}
		return err
	}

	t.Run("answer after the timeout", func(t *testing.T) {
		t.Parallel()
		test(t, late, hostileTimeout, context.Background(), hostileTimeout+hostileSlack)
	})
	t.Run("context deadline before the timeout", func(t *testing.T) {
		t.Parallel()
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		test(t, silent, time.Minute, ctx, 100*time.Millisecond+hostileSlack)
	})
	// A caller that gives up (the SMTP client went away) must not wait out the timeout:
	// a cancel carries no deadline for the socket to see.
	for _, network := range []string{"udp", "tcp"} {
		t.Run("context cancelled during "+network, func(t *testing.T) {
			t.Parallel()
			handle := rawHandler(silent)
			if network == "tcp" {
				handle = viaTCP(silent)
			}
			ctx, cancel := context.WithCancel(context.Background())
			time.AfterFunc(100*time.Millisecond, cancel)
			err := test(t, handle, time.Minute, ctx, 100*time.Millisecond+hostileSlack)
			if !errors.Is(err, context.Canceled) {
				t.Errorf("err = %v; want it to wrap context.Canceled too", err)
			}
		})
	}
	t.Run("context already cancelled", func(t *testing.T) {
		t.Parallel()
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		test(t, silent, time.Minute, ctx, hostileSlack)
	})
}
