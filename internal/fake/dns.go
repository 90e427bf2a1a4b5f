package fake

import (
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// Query is one question received by a DNSServer.
type Query struct {
	// Name is the question name, lower-cased and fully qualified.
	Name string
	// Type is the question type (dns.TypeMX, ...).
	Type uint16
	// Net is "udp" or "tcp".
	Net string
	// DO reports whether the query carried an EDNS0 OPT record with the
	// DNSSEC OK bit.
	DO bool
}

// DNSServer is a fake recursive resolver on 127.0.0.1, serving UDP and TCP
// on the same port from records the test adds. It answers like a validating
// recursive resolver would:
//
//   - RA is set; AA is not.
//   - Records of the asked type at the name: NOERROR with them.
//   - A CNAME at the name (and the question is not for CNAME): the CNAME,
//     followed within the data by the target's answer, for at most 8 hops;
//     a longer chain or a loop gives SERVFAIL. The final rcode is that of
//     the last name in the chain.
//   - The name exists (has records, or is an empty non-terminal above a name
//     with records) but has no records of the type: NOERROR with an empty
//     answer (NODATA) and a SOA in the authority section.
//   - Otherwise NXDOMAIN with a SOA in the authority section.
//
// The SOA is the closest one added at or above the name, or else one
// synthesized for the name's top-level domain. Names are case-insensitive;
// wildcards and DNAME are not supported, and the server does not sign
// anything: the AD bit is whatever the test configured, the AND over every
// owner name in the answer chain (SetAuthentic, SetAllAuthentic).
//
// A query with an EDNS0 OPT record gets one back with the same DO bit. UDP
// answers larger than the client's advertised size (512 without EDNS0) are
// truncated with TC=1, as real servers do.
//
// All methods are safe for use concurrently with serving.
type DNSServer struct {
	addr     string
	udp, tcp *dns.Server
	done     chan struct{}
	wg       sync.WaitGroup

	mu           sync.RWMutex
	records      map[string][]dns.RR // by lower-cased FQDN owner
	authentic    map[string]bool
	allAuthentic bool
	strictAD     bool
	rcodes       map[faultKey]int
	drops        map[faultKey]bool
	truncates    map[faultKey]bool
	delays       map[faultKey]time.Duration
	queries      []Query
}

type faultKey struct {
	name  string
	qtype uint16
}

// maxCNAMEHops bounds CNAME chasing.
const maxCNAMEHops = 8

// StartDNS starts a fake DNS server on 127.0.0.1 at a random port, UDP and
// TCP. It serves until the test's cleanup, which stops both listeners and
// waits for every handler, delayed ones included, to return. It fails the
// test if it cannot listen.
func StartDNS(t testing.TB) *DNSServer {
	t.Helper()
	s := &DNSServer{
		done:      make(chan struct{}),
		records:   make(map[string][]dns.RR),
		authentic: make(map[string]bool),
		rcodes:    make(map[faultKey]int),
		drops:     make(map[faultKey]bool),
		truncates: make(map[faultKey]bool),
		delays:    make(map[faultKey]time.Duration),
	}
	var (
		pc  net.PacketConn
		ln  net.Listener
		err error
	)
	for range 20 { // the TCP port may be taken; try another UDP port
		pc, err = net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("fake: StartDNS: %v", err)
		}
		s.addr = pc.LocalAddr().String()
		ln, err = net.Listen("tcp", s.addr)
		if err == nil {
			break
		}
		pc.Close()
	}
	if err != nil {
		t.Fatalf("fake: StartDNS: %v", err)
	}

	handler := dns.HandlerFunc(s.serveDNS)
	s.udp = &dns.Server{PacketConn: pc, Handler: handler}
	s.tcp = &dns.Server{Listener: ln, Handler: handler}
	for _, srv := range []*dns.Server{s.udp, s.tcp} {
		started := make(chan struct{})
		srv.NotifyStartedFunc = func() { close(started) }
		errc := make(chan error, 1)
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			errc <- srv.ActivateAndServe()
		}()
		select {
		case <-started:
		case err := <-errc:
			t.Fatalf("fake: StartDNS: %v", err)
		}
	}
	t.Cleanup(func() {
		close(s.done) // ends delays
		s.udp.Shutdown()
		s.tcp.Shutdown()
		s.wg.Wait()
	})
	return s
}

// Addr returns the server's address, "127.0.0.1:port", for UDP and TCP.
func (s *DNSServer) Addr() string { return s.addr }

// Add adds resource records written in zone-file syntax, for example
// "example.test. 300 IN MX 10 mx1.example.test.",
// "_25._tcp.mx1.example.test. 300 IN TLSA 3 1 1 <hex>" or the null MX
// "example.test. 300 IN MX 0 .". One string may hold several lines, and
// leading white space on a line is ignored (so that indented Go raw strings
// work; every record must name its owner). Relative names are relative to
// the root, and a missing TTL means 3600. Adding a
// record that is already there does nothing. Add fails the test on a parse
// error.
func (s *DNSServer) Add(t testing.TB, rrs ...string) {
	t.Helper()
	var parsed []dns.RR
	for _, text := range rrs {
		lines := strings.Split(text, "\n")
		for i, l := range lines {
			lines[i] = strings.TrimLeft(l, " \t")
		}
		zp := dns.NewZoneParser(strings.NewReader(strings.Join(lines, "\n")), ".", "")
		for rr, ok := zp.Next(); ok; rr, ok = zp.Next() {
			parsed = append(parsed, rr)
		}
		if err := zp.Err(); err != nil {
			t.Fatalf("fake: DNSServer.Add %q: %v", text, err)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
next:
	for _, rr := range parsed {
		owner := canonical(rr.Header().Name)
		for _, have := range s.records[owner] {
			if dns.IsDuplicate(have, rr) {
				continue next
			}
		}
		s.records[owner] = append(s.records[owner], rr)
	}
}

// Remove deletes the records of type qtype at name; dns.TypeANY deletes
// every record at name.
func (s *DNSServer) Remove(name string, qtype uint16) {
	name = canonical(name)
	s.mu.Lock()
	defer s.mu.Unlock()
	var keep []dns.RR
	for _, rr := range s.records[name] {
		if qtype != dns.TypeANY && rr.Header().Rrtype != qtype {
			keep = append(keep, rr)
		}
	}
	if len(keep) == 0 {
		delete(s.records, name)
	} else {
		s.records[name] = keep
	}
}

// SetAuthentic sets whether answers involving name (as the question name
// or as an owner name along a CNAME chain) may carry the AD bit, overriding
// SetAllAuthentic for that name.
func (s *DNSServer) SetAuthentic(name string, ad bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.authentic[canonical(name)] = ad
}

// SetAllAuthentic sets the AD setting of names without their own
// SetAuthentic setting. It is false at first.
func (s *DNSServer) SetAllAuthentic(ad bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.allAuthentic = ad
}

// SetStrictAD makes the server follow RFC 6840 §5.7, as Unbound and BIND
// do: AD is set only in answers to queries that had the AD or the DO bit.
// It is off at first, so AD follows SetAuthentic alone.
func (s *DNSServer) SetStrictAD(strict bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.strictAD = strict
}

// SetRcode makes questions for name and qtype (dns.TypeANY: every type) be
// answered with rcode and nothing else, for example dns.RcodeServerFailure
// or dns.RcodeRefused. dns.RcodeSuccess removes the setting. A setting for
// the exact type wins over one for dns.TypeANY.
func (s *DNSServer) SetRcode(name string, qtype uint16, rcode int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	k := faultKey{canonical(name), qtype}
	if rcode == dns.RcodeSuccess {
		delete(s.rcodes, k)
	} else {
		s.rcodes[k] = rcode
	}
}

// SetDrop makes the server never answer questions for name and qtype
// (dns.TypeANY: every type), over UDP or TCP, so the client times out.
func (s *DNSServer) SetDrop(name string, qtype uint16) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.drops[faultKey{canonical(name), qtype}] = true
}

// SetTruncate makes UDP answers to questions for name and qtype
// (dns.TypeANY: every type) carry TC=1 and no records, so the client retries
// over TCP, where the answer is complete.
func (s *DNSServer) SetTruncate(name string, qtype uint16) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.truncates[faultKey{canonical(name), qtype}] = true
}

// SetDelay makes the server wait d before answering questions for name and
// qtype (dns.TypeANY: every type).
func (s *DNSServer) SetDelay(name string, qtype uint16, d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.delays[faultKey{canonical(name), qtype}] = d
}

// ClearFaults removes the SetRcode, SetDrop, SetTruncate and SetDelay
// settings for exactly name and qtype.
func (s *DNSServer) ClearFaults(name string, qtype uint16) {
	s.mu.Lock()
	defer s.mu.Unlock()
	k := faultKey{canonical(name), qtype}
	delete(s.rcodes, k)
	delete(s.drops, k)
	delete(s.truncates, k)
	delete(s.delays, k)
}

// Queries returns every question received so far, in arrival order,
// including those that were dropped.
func (s *DNSServer) Queries() []Query {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return append([]Query(nil), s.queries...)
}

func (s *DNSServer) serveDNS(w dns.ResponseWriter, req *dns.Msg) {
	m := new(dns.Msg)
	m.SetReply(req)
	m.RecursionAvailable = true
	if req.Opcode != dns.OpcodeQuery {
		m.SetRcode(req, dns.RcodeNotImplemented)
		w.WriteMsg(m)
		return
	}
	if len(req.Question) != 1 {
		m.SetRcode(req, dns.RcodeFormatError)
		w.WriteMsg(m)
		return
	}
	q := req.Question[0]
	name := canonical(q.Name)
	network := "udp"
	if _, ok := w.RemoteAddr().(*net.TCPAddr); ok {
		network = "tcp"
	}
	opt := req.IsEdns0()
	do := opt != nil && opt.Do()

	s.mu.Lock()
	s.queries = append(s.queries, Query{Name: name, Type: q.Qtype, Net: network, DO: do})
	drop, _ := lookup(s.drops, name, q.Qtype)
	delay, _ := lookup(s.delays, name, q.Qtype)
	rcode, hasRcode := lookup(s.rcodes, name, q.Qtype)
	truncate, _ := lookup(s.truncates, name, q.Qtype)
	strict := s.strictAD
	s.mu.Unlock()

	if drop {
		return
	}
	if delay > 0 {
		timer := time.NewTimer(delay)
		defer timer.Stop()
		select {
		case <-timer.C:
		case <-s.done:
			return
		}
	}

	switch {
	case hasRcode:
		m.Rcode = rcode
	case truncate && network == "udp":
		m.Truncated = true
	default:
		s.resolve(m, q)
		if strict && !req.AuthenticatedData && !do {
			m.AuthenticatedData = false
		}
	}

	maxSize := dns.MinMsgSize
	if opt != nil {
		m.SetEdns0(4096, do)
		maxSize = max(maxSize, int(opt.UDPSize()))
	}
	if network == "udp" && m.Len() > maxSize {
		m.Truncate(maxSize)
	}
	w.WriteMsg(m)
}

// resolve fills in m's rcode, answer, authority and AD bit for q.
func (s *DNSServer) resolve(m *dns.Msg, q dns.Question) {
	s.mu.RLock()
	defer s.mu.RUnlock()

	name := canonical(q.Name)
	ad := true
	seen := make(map[string]bool)
	for hop := 0; ; hop++ {
		seen[name] = true
		ad = ad && s.authenticLocked(name)
		rrs := s.records[name]

		var match []dns.RR
		var cname *dns.CNAME
		for _, rr := range rrs {
			t := rr.Header().Rrtype
			if q.Qtype == dns.TypeANY || t == q.Qtype {
				match = append(match, answerCopy(rr, name, q.Name))
			}
			if c, ok := rr.(*dns.CNAME); ok && cname == nil {
				cname = c
			}
		}
		if len(match) > 0 {
			m.Answer = append(m.Answer, match...)
			break
		}
		if cname != nil && q.Qtype != dns.TypeCNAME {
			m.Answer = append(m.Answer, answerCopy(cname, name, q.Name))
			name = canonical(cname.Target)
			if hop+1 >= maxCNAMEHops || seen[name] {
				m.Rcode = dns.RcodeServerFailure
				m.Answer = nil
				ad = false
				break
			}
			continue
		}
		if !s.existsLocked(name) {
			m.Rcode = dns.RcodeNameError
		}
		m.Ns = []dns.RR{s.soaLocked(name)}
		break
	}
	m.AuthenticatedData = ad
}

// answerCopy copies rr; a record owned by the question name gets the
// question's spelling of it, as resolvers preserve the case of the query.
func answerCopy(rr dns.RR, owner, qname string) dns.RR {
	rr = dns.Copy(rr)
	if owner == canonical(qname) {
		rr.Header().Name = dns.Fqdn(qname)
	}
	return rr
}

func (s *DNSServer) authenticLocked(name string) bool {
	if ad, ok := s.authentic[name]; ok {
		return ad
	}
	return s.allAuthentic
}

// existsLocked reports whether name owns records or is an empty
// non-terminal above a name that does.
func (s *DNSServer) existsLocked(name string) bool {
	if len(s.records[name]) > 0 {
		return true
	}
	for owner := range s.records {
		if dns.IsSubDomain(name, owner) {
			return true
		}
	}
	return false
}

// soaLocked returns the closest SOA added at or above name, or a
// synthesized one for name's top-level domain.
func (s *DNSServer) soaLocked(name string) dns.RR {
	labels := dns.SplitDomainName(name)
	for i := range labels {
		zone := dns.Fqdn(strings.Join(labels[i:], "."))
		for _, rr := range s.records[zone] {
			if rr.Header().Rrtype == dns.TypeSOA {
				return dns.Copy(rr)
			}
		}
	}
	zone := "."
	if len(labels) > 0 {
		zone = labels[len(labels)-1] + "."
	}
	return &dns.SOA{
		Hdr:     dns.RR_Header{Name: zone, Rrtype: dns.TypeSOA, Class: dns.ClassINET, Ttl: 300},
		Ns:      "ns.invalid.",
		Mbox:    "hostmaster.invalid.",
		Serial:  1,
		Refresh: 3600,
		Retry:   600,
		Expire:  86400,
		Minttl:  300,
	}
}

// lookup finds the setting for name and qtype, falling back to the one for
// name and dns.TypeANY.
func lookup[V any](m map[faultKey]V, name string, qtype uint16) (V, bool) {
	if v, ok := m[faultKey{name, qtype}]; ok {
		return v, true
	}
	v, ok := m[faultKey{name, dns.TypeANY}]
	return v, ok
}

// canonical returns name lower-cased and fully qualified.
func canonical(name string) string {
	return strings.ToLower(dns.Fqdn(name))
}

// String describes q for test failure messages, e.g.
// "udp mx1.example.test. A +do".
func (q Query) String() string {
	s := fmt.Sprintf("%s %s %s", q.Net, q.Name, dns.TypeToString[q.Type])
	if q.DO {
		s += " +do"
	}
	return s
}
