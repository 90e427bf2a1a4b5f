// Package dnsx is tlsgate's DNS client: a small, DNSSEC-aware stub resolver over
// github.com/miekg/dns that asks one configured recursive resolver.
//
// Every answer carries Authentic, the AD bit of the response (RFC 4035 §3.2.3, RFC 6840
// §5.8). A stub cannot validate signatures itself, so the AD bit is only as good as the
// path to the resolver: it is trusted only when the resolver is on loopback or the
// operator said it is trusted (RFC 7672 §2.1.1 and RFC 6698 §4: "a security-aware
// stub resolver ... trusts the AD bit only from a trusted, local resolver"). From any
// other resolver Authentic is always false.
//
// Outcomes are kept apart because they mean different things to a mail sender:
// NXDOMAIN and NODATA are answers (Status), while SERVFAIL (which is also how a validating
// resolver reports bogus DNSSEC data), REFUSED and timeouts are errors (ErrServFail,
// ErrTimeout, ...) that must never be read as "no record" (RFC 7672 §2.1.1: a lookup
// error is not a denial of existence).
package dnsx

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// Errors returned by Lookup. Callers classify with errors.Is.
var (
	ErrServFail    = errors.New("dnsx: server failure")       // SERVFAIL: resolver error or DNSSEC bogus
	ErrRefused     = errors.New("dnsx: query refused")        // REFUSED or NOTIMP
	ErrTimeout     = errors.New("dnsx: timeout")              // no answer in time
	ErrBadResponse = errors.New("dnsx: malformed response")   // unusable answer, wrong id/question, FORMERR
	ErrUnreachable = errors.New("dnsx: resolver unreachable") // network error talking to the resolver
	ErrCNAMELoop   = errors.New("dnsx: CNAME chain too long or looping")
	ErrBadName     = errors.New("dnsx: invalid domain name")
)

// Status is the kind of a successful answer.
type Status int

// Statuses of an Answer.
const (
	StatusOK       Status = iota // records of the asked type exist
	StatusNXDomain               // the name does not exist (RCODE 3)
	StatusNoData                 // the name exists, but has no records of the asked type
)

func (s Status) String() string {
	switch s {
	case StatusOK:
		return "ok"
	case StatusNXDomain:
		return "nxdomain"
	case StatusNoData:
		return "nodata"
	}
	return fmt.Sprintf("status(%d)", int(s))
}

// Answer is the result of one lookup, after following CNAMEs.
type Answer struct {
	Name      string   // the name asked for, FQDN, lower case
	Target    string   // the owner of Records after CNAME expansion (== Name without CNAMEs)
	Status    Status   // OK, NXDOMAIN or NODATA for Target
	Records   []dns.RR // records of the asked type owned by Target
	Authentic bool     // every response along the CNAME chain had AD set, from a trusted resolver
	TTL       time.Duration
}

// Addrs returns the addresses of the A and AAAA records of the answer (IPv4-mapped
// IPv6 addresses unmapped), in order.
func (a Answer) Addrs() []netip.Addr {
	var out []netip.Addr
	for _, rr := range a.Records {
		var ip netip.Addr
		switch r := rr.(type) {
		case *dns.A:
			ip, _ = netip.AddrFromSlice(r.A.To4())
		case *dns.AAAA:
			ip, _ = netip.AddrFromSlice(r.AAAA.To16())
		}
		if ip.IsValid() {
			out = append(out, ip.Unmap())
		}
	}
	return out
}

// Resolver looks up one name and type. Implementations return an Answer for NOERROR and
// NXDOMAIN, and an error wrapping one of the package errors otherwise.
type Resolver interface {
	Lookup(ctx context.Context, name string, qtype uint16) (Answer, error)
}

// maxCNAME bounds CNAME chains (RFC 1034 §3.6.2 allows chains; resolvers cap them near 8-16).
const maxCNAME = 8

// maxNegativeTTL caps the TTL we take from a SOA for negative answers (RFC 2308 §5).
const maxNegativeTTL = 3 * time.Hour

// Client asks a single recursive resolver over UDP, retrying over TCP when the answer is
// truncated (RFC 7766 §5).
type Client struct {
	Server  string        // host:port of the recursive resolver
	Timeout time.Duration // per query exchange; the context deadline also applies
	Trusted bool          // trust the AD bit from Server even if it is not on loopback
}

var _ Resolver = (*Client)(nil)

// NewClient returns a client for server ("host" or "host:port"). The AD bit is trusted
// when the server is on loopback or trusted is true.
func NewClient(server string, timeout time.Duration, trusted bool) (*Client, error) {
	if _, _, err := net.SplitHostPort(server); err != nil {
		server = net.JoinHostPort(strings.Trim(server, "[]"), "53")
	}
	host, _, err := net.SplitHostPort(server)
	if err != nil {
		return nil, fmt.Errorf("dnsx: resolver %q: %w", server, err)
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return nil, fmt.Errorf("dnsx: resolver %q must be an IP address: %w", server, err)
	}
	return &Client{Server: server, Timeout: timeout, Trusted: trusted || ip.IsLoopback()}, nil
}

// SystemResolver returns the first nameserver of /etc/resolv.conf (or path).
func SystemResolver(path string) (string, error) {
	cc, err := dns.ClientConfigFromFile(path)
	if err != nil {
		return "", fmt.Errorf("dnsx: reading %s: %w", path, err)
	}
	if len(cc.Servers) == 0 {
		return "", fmt.Errorf("dnsx: %s lists no nameserver", path)
	}
	return net.JoinHostPort(cc.Servers[0], cc.Port), nil
}

// Lookup asks for name/qtype and follows CNAMEs (bounded). Returns ErrServFail, ErrRefused,
// ErrTimeout, ErrBadResponse, ErrUnreachable, ErrCNAMELoop or ErrBadName, wrapped with
// the name.
func (c *Client) Lookup(ctx context.Context, name string, qtype uint16) (Answer, error) {
	qname, err := fqdn(name)
	if err != nil {
		return Answer{}, err
	}
	ans := Answer{Name: qname, Target: qname, Authentic: true, TTL: maxNegativeTTL}
	// Every name of the chain so far. follow only ever hands back a name it has just
	// added, so each query asks for a new name, and there are at most maxCNAME+1.
	chain := map[string]bool{qname: true}
	for range maxCNAME + 1 {
		resp, err := c.exchange(ctx, ans.Target, qtype)
		if err != nil {
			return Answer{}, err
		}
		ans.Authentic = ans.Authentic && resp.AuthenticatedData && c.Trusted
		next, done, err := follow(&ans, resp, qtype, chain)
		if err != nil {
			return Answer{}, fmt.Errorf("%w (looking up %s %s)", err, qname, dns.TypeToString[qtype])
		}
		if done {
			return ans, nil
		}
		ans.Target = next
	}
	return Answer{}, fmt.Errorf("%w: %s", ErrCNAMELoop, qname)
}

// follow folds one response into ans, walking the CNAME chain inside it (resolvers usually
// include it whole, RFC 1034 §4.3.2). chain holds the names of the chain so far, across
// responses; a name met twice is a loop, and more than maxCNAME CNAMEs in all are too many
// (ErrCNAMELoop). It returns done when ans is final, else the CNAME target that still has
// to be asked for.
//
// A negative answer has to be clean: NXDOMAIN or NODATA may carry nothing in the answer
// section but the CNAME chain that leads to the name that has no data (RFC 2308 §2.1,
// §2.2; RFC 6604 §3: the RCODE is that of the last name of the chain). Anything else there
// (records of another type at the name, records of names off the chain, the asked records
// beside NXDOMAIN) means the response does not answer the question, and reading it as "no
// records" could hide a TLSA or MX RRset: ErrBadResponse. A positive answer only takes the
// records of the asked type at the end of the chain and ignores the rest (RFC 2181 §5.4.1).
func follow(ans *Answer, resp *dns.Msg, qtype uint16, chain map[string]bool) (next string, done bool, err error) {
	target := ans.Target
	walked := map[string]bool{target: true} // the chain's names in this response
	for {
		var cname string
		var records []dns.RR
		for _, rr := range resp.Answer {
			h := rr.Header()
			if !strings.EqualFold(h.Name, target) {
				continue
			}
			if h.Rrtype == qtype {
				records = append(records, rr)
			} else if c, ok := rr.(*dns.CNAME); ok && qtype != dns.TypeCNAME {
				t := strings.ToLower(c.Target)
				if cname != "" && cname != t {
					// RFC 2181 §10.1: one CNAME at a name.
					return "", false, fmt.Errorf("%w: %s has two CNAMEs", ErrBadResponse, target)
				}
				cname = t
				ans.TTL = minTTL(ans.TTL, h.Ttl)
			}
		}
		if len(records) > 0 {
			if resp.Rcode == dns.RcodeNameError {
				return "", false, fmt.Errorf("%w: NXDOMAIN with %s records for %s", ErrBadResponse, dns.TypeToString[qtype], target)
			}
			for _, rr := range records {
				ans.TTL = minTTL(ans.TTL, rr.Header().Ttl)
			}
			ans.Records, ans.Target, ans.Status = records, target, StatusOK
			return "", true, nil
		}
		if cname == "" {
			break
		}
		if chain[cname] {
			return "", false, fmt.Errorf("%w: %s comes back to %s", ErrCNAMELoop, target, cname)
		}
		if len(chain) > maxCNAME {
			return "", false, fmt.Errorf("%w: more than %d CNAMEs", ErrCNAMELoop, maxCNAME)
		}
		chain[cname], walked[cname] = true, true
		target = cname
	}
	ans.Target = target
	if resp.Rcode == dns.RcodeSuccess && !strings.EqualFold(target, resp.Question[0].Name) {
		// The answer ended in a CNAME whose target it did not resolve: ask for it.
		return target, false, nil
	}
	for _, rr := range resp.Answer {
		h := rr.Header()
		switch {
		case walked[strings.ToLower(h.Name)] && (h.Rrtype == dns.TypeCNAME || h.Rrtype == dns.TypeRRSIG):
		case h.Rrtype == dns.TypeDNAME: // RFC 6672 §3.4: the DNAME behind a synthesized CNAME
		case isRRSIGOver(rr, dns.TypeDNAME):
		default:
			return "", false, fmt.Errorf("%w: %s for %s %s: %s %s record in the answer", ErrBadResponse,
				dns.RcodeToString[resp.Rcode], target, dns.TypeToString[qtype], h.Name, dns.TypeToString[h.Rrtype])
		}
	}
	ans.TTL = minTTL(ans.TTL, negativeTTL(resp))
	if resp.Rcode == dns.RcodeNameError {
		ans.Status = StatusNXDomain
	} else {
		ans.Status = StatusNoData
	}
	return "", true, nil
}

func isRRSIGOver(rr dns.RR, covered uint16) bool {
	sig, ok := rr.(*dns.RRSIG)
	return ok && sig.TypeCovered == covered
}

// negativeTTL is min(SOA TTL, SOA MINIMUM) of the authority section (RFC 2308 §5).
func negativeTTL(resp *dns.Msg) uint32 {
	for _, rr := range resp.Ns {
		if soa, ok := rr.(*dns.SOA); ok {
			return min(soa.Hdr.Ttl, soa.Minttl)
		}
	}
	return 300
}

func minTTL(cur time.Duration, ttl uint32) time.Duration {
	return min(cur, time.Duration(ttl)*time.Second)
}

// exchange asks the resolver for name/qtype: over UDP, then over TCP when the UDP answer
// is truncated (RFC 7766 §5; the truncated answer is not used at all). The response it
// returns answers exactly this question with NOERROR or NXDOMAIN.
func (c *Client) exchange(ctx context.Context, name string, qtype uint16) (*dns.Msg, error) {
	q := new(dns.Msg)
	q.SetQuestion(name, qtype)
	q.RecursionDesired = true
	// Ask for the AD bit (RFC 6840 §5.7) and allow large UDP answers (RFC 6891).
	q.AuthenticatedData = true
	q.SetEdns0(udpSize, true)

	resp, err := c.exchangeNet(ctx, q, "udp")
	if err == nil && resp.Truncated {
		resp, err = c.exchangeNet(ctx, q, "tcp")
		if err == nil && resp.Truncated {
			// Nothing is larger than a TCP message: TC here means records are missing.
			return nil, fmt.Errorf("%w: %s %s: truncated over TCP", ErrBadResponse, name, dns.TypeToString[qtype])
		}
	}
	if err != nil {
		return nil, err
	}
	switch resp.Rcode {
	case dns.RcodeSuccess, dns.RcodeNameError:
		return resp, nil
	case dns.RcodeServerFailure:
		return nil, fmt.Errorf("%w: %s %s", ErrServFail, name, dns.TypeToString[qtype])
	case dns.RcodeRefused, dns.RcodeNotImplemented:
		return nil, fmt.Errorf("%w: %s %s: %s", ErrRefused, name, dns.TypeToString[qtype], dns.RcodeToString[resp.Rcode])
	default:
		return nil, fmt.Errorf("%w: %s %s: rcode %s", ErrBadResponse, name, dns.TypeToString[qtype], dns.RcodeToString[resp.Rcode])
	}
}

// udpSize is the EDNS0 UDP payload size we advertise (RFC 6891 §6.2.5; 1232 avoids IP
// fragmentation, as DNS Flag Day 2020 recommends).
const udpSize = 1232

// exchangeNet sends q over network ("udp" or "tcp") on a connection of its own and returns
// the response to it, which is a well-formed response to q's question, or a truncated UDP
// one. It ends by the timeout, the context's deadline or the context's cancellation,
// whichever comes first (ErrTimeout).
//
// Responses are matched as RFC 1035 §7.3 and RFC 5452 §9.1 ask: the connected socket
// accepts only the resolver's address and port, and over UDP a datagram without q's ID is
// somebody else's (late, stray or forged): it is dropped unread and the wait goes on.
// A message with q's ID is the answer: if it is not a response (QR, opcode) to exactly q's
// question, it is an error (ErrBadResponse), never an empty answer. Over TCP the
// connection carries this one query (RFC 7766 §7), so the first message is the answer.
//
// Memory is bounded by one DNS message, at most 64 KiB (RFC 1035 §4.2.2).
func (c *Client) exchangeNet(ctx context.Context, q *dns.Msg, network string) (*dns.Msg, error) {
	timeout := c.Timeout
	if timeout <= 0 {
		timeout = 3 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	what := fmt.Sprintf("%s %s via %s/%s", q.Question[0].Name, dns.TypeToString[q.Question[0].Qtype], c.Server, network)

	var d net.Dialer
	conn, err := d.DialContext(ctx, network, c.Server)
	if err != nil {
		return nil, netError(ctx, err, what)
	}
	defer conn.Close()
	// The deadline bounds every read and write; a cancellation has no deadline for the
	// socket to see, so it moves the deadline to now and wakes a blocked read.
	deadline, _ := ctx.Deadline()
	conn.SetDeadline(deadline)
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Now()) })
	defer stop()

	out, err := q.Pack()
	if err != nil {
		return nil, fmt.Errorf("dnsx: packing %s: %w", what, err)
	}
	if network == "tcp" {
		out = append(binary.BigEndian.AppendUint16(nil, uint16(len(out))), out...)
	}
	if _, err := conn.Write(out); err != nil {
		return nil, netError(ctx, err, what)
	}

	if network == "tcp" {
		var l [2]byte
		if _, err := io.ReadFull(conn, l[:]); err != nil {
			return nil, netError(ctx, err, what)
		}
		p := make([]byte, binary.BigEndian.Uint16(l[:]))
		if _, err := io.ReadFull(conn, p); err != nil {
			return nil, netError(ctx, err, what)
		}
		resp, err := parseResponse(p, q, false)
		if err != nil {
			return nil, fmt.Errorf("%w: %s: %v", ErrBadResponse, what, err)
		}
		return resp, nil
	}
	// A whole datagram, even one larger than we advertised: a read into a smaller buffer
	// would silently cut it.
	buf := make([]byte, dns.MaxMsgSize)
	for {
		n, err := conn.Read(buf)
		if err != nil {
			return nil, netError(ctx, err, what)
		}
		if n < 2 || binary.BigEndian.Uint16(buf) != q.Id {
			continue // not ours
		}
		resp, err := parseResponse(buf[:n], q, true)
		if err != nil {
			return nil, fmt.Errorf("%w: %s: %v", ErrBadResponse, what, err)
		}
		return resp, nil
	}
}

// parseResponse unpacks p, which carries q's ID, and checks that it is a complete response
// to q. A truncated UDP response is returned once its header says so (allowTC): only its
// TC bit is used.
func parseResponse(p []byte, q *dns.Msg, allowTC bool) (*dns.Msg, error) {
	if len(p) < 12 {
		return nil, fmt.Errorf("%d-byte message", len(p))
	}
	resp := new(dns.Msg)
	err := resp.Unpack(p) // fills in the header even when a section fails
	if resp.Id != q.Id {
		return nil, fmt.Errorf("id %d, want %d", resp.Id, q.Id)
	}
	// RFC 1035 §4.1.1: a response has QR set and the query's opcode. (A query echoed
	// back has our ID and question, and even our AD bit.)
	if !resp.Response || resp.Opcode != dns.OpcodeQuery {
		return nil, fmt.Errorf("not a response to a query (qr=%v opcode=%s)", resp.Response, dns.OpcodeToString[resp.Opcode])
	}
	if resp.Truncated && allowTC {
		return resp, nil
	}
	if err != nil {
		return nil, err
	}
	// miekg/dns stops quietly where the data ends even when the header promises more
	// records; a response cut short must not read as having fewer or no records.
	// (RFC 1035 §4.1.1: QDCOUNT, ANCOUNT, NSCOUNT and ARCOUNT at offsets 4 to 11.)
	promised := [4]int{}
	for i := range promised {
		promised[i] = int(binary.BigEndian.Uint16(p[4+2*i:]))
	}
	if held := [4]int{len(resp.Question), len(resp.Answer), len(resp.Ns), len(resp.Extra)}; held != promised {
		return nil, fmt.Errorf("the header promises %v entries per section, the message holds %v", promised, held)
	}
	// RFC 1035 §7.3, RFC 5452 §9.1: the question must be ours (name, type and class).
	qq := q.Question[0]
	if len(resp.Question) != 1 || !strings.EqualFold(resp.Question[0].Name, qq.Name) ||
		resp.Question[0].Qtype != qq.Qtype || resp.Question[0].Qclass != qq.Qclass {
		return nil, fmt.Errorf("question mismatch: %v", resp.Question)
	}
	return resp, nil
}

// netError classifies an I/O error of an exchange. Once ctx is done, any error is a
// timeout; the error then also wraps ctx's cause (context.Canceled or DeadlineExceeded).
func netError(ctx context.Context, err error, what string) error {
	if ctx.Err() != nil {
		return fmt.Errorf("%w: %s: %w", ErrTimeout, what, context.Cause(ctx))
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return fmt.Errorf("%w: %s", ErrTimeout, what)
	}
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		// The resolver hung up before a whole answer.
		return fmt.Errorf("%w: %s: %v", ErrBadResponse, what, err)
	}
	var oe *net.OpError
	if errors.As(err, &oe) {
		return fmt.Errorf("%w: %s: %v", ErrUnreachable, what, oe.Err)
	}
	return fmt.Errorf("%w: %s: %v", ErrBadResponse, what, err)
}

// fqdn validates and canonicalises a presentation-format name.
func fqdn(name string) (string, error) {
	name = strings.ToLower(strings.TrimSpace(name))
	if name == "" || name == "." {
		return "", fmt.Errorf("%w: %q", ErrBadName, name)
	}
	name = dns.Fqdn(name)
	if _, ok := dns.IsDomainName(name); !ok || len(name) > 254 {
		return "", fmt.Errorf("%w: %q", ErrBadName, name)
	}
	return name, nil
}
