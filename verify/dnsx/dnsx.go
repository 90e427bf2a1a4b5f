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
	"errors"
	"fmt"
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
// ErrTimeout, ErrBadResponse, ErrCNAMELoop or ErrBadName, wrapped with the name.
func (c *Client) Lookup(ctx context.Context, name string, qtype uint16) (Answer, error) {
	qname, err := fqdn(name)
	if err != nil {
		return Answer{}, err
	}
	ans := Answer{Name: qname, Target: qname, Authentic: true, TTL: maxNegativeTTL}
	seen := map[string]bool{}
	for hop := 0; hop <= maxCNAME; hop++ {
		if seen[ans.Target] {
			break
		}
		seen[ans.Target] = true
		resp, err := c.exchange(ctx, ans.Target, qtype)
		if err != nil {
			return Answer{}, err
		}
		ans.Authentic = ans.Authentic && resp.AuthenticatedData && c.Trusted
		next, done := follow(&ans, resp, qtype)
		if done {
			return ans, nil
		}
		ans.Target = next
	}
	return Answer{}, fmt.Errorf("%w: %s", ErrCNAMELoop, qname)
}

// follow folds one response into ans. It returns done when ans is final, else the CNAME
// target that still has to be asked for.
func follow(ans *Answer, resp *dns.Msg, qtype uint16) (next string, done bool) {
	target := ans.Target
	// Walk the CNAME chain inside this answer (resolvers usually include it whole).
	for i := 0; i <= maxCNAME; i++ {
		var cname string
		for _, rr := range resp.Answer {
			h := rr.Header()
			if !strings.EqualFold(h.Name, target) {
				continue
			}
			if h.Rrtype == qtype {
				ans.Records = append(ans.Records, rr)
				ans.TTL = minTTL(ans.TTL, h.Ttl)
			} else if c, ok := rr.(*dns.CNAME); ok && qtype != dns.TypeCNAME {
				cname = strings.ToLower(c.Target)
				ans.TTL = minTTL(ans.TTL, h.Ttl)
			}
		}
		if len(ans.Records) > 0 {
			ans.Target, ans.Status = target, StatusOK
			return "", true
		}
		if cname == "" {
			break
		}
		target = cname
	}
	ans.Target = target
	if target != strings.ToLower(resp.Question[0].Name) {
		// The answer ended in a CNAME whose target it did not resolve: ask for it.
		if resp.Rcode == dns.RcodeSuccess && !hasOwner(resp.Answer, target) {
			return target, false
		}
	}
	ans.TTL = minTTL(ans.TTL, negativeTTL(resp))
	if resp.Rcode == dns.RcodeNameError {
		ans.Status = StatusNXDomain
	} else {
		ans.Status = StatusNoData
	}
	return "", true
}

func hasOwner(rrs []dns.RR, name string) bool {
	for _, rr := range rrs {
		if strings.EqualFold(rr.Header().Name, name) {
			return true
		}
	}
	return false
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

func (c *Client) exchange(ctx context.Context, name string, qtype uint16) (*dns.Msg, error) {
	q := new(dns.Msg)
	q.SetQuestion(name, qtype)
	q.RecursionDesired = true
	// Ask for the AD bit (RFC 6840 §5.7) and allow large UDP answers (RFC 6891).
	q.AuthenticatedData = true
	q.SetEdns0(1232, true)

	resp, err := c.exchangeNet(ctx, q, "udp")
	if err == nil && resp.Truncated {
		resp, err = c.exchangeNet(ctx, q, "tcp")
	}
	if err != nil {
		return nil, err
	}
	if len(resp.Question) != 1 || !strings.EqualFold(resp.Question[0].Name, name) || resp.Question[0].Qtype != qtype {
		return nil, fmt.Errorf("%w: %s %s: question mismatch", ErrBadResponse, name, dns.TypeToString[qtype])
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

func (c *Client) exchangeNet(ctx context.Context, q *dns.Msg, network string) (*dns.Msg, error) {
	timeout := c.Timeout
	if timeout <= 0 {
		timeout = 3 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cl := &dns.Client{Net: network, Timeout: timeout, UDPSize: 1232}
	resp, _, err := cl.ExchangeContext(ctx, q, c.Server)
	if err != nil {
		var ne net.Error
		if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) || (errors.As(err, &ne) && ne.Timeout()) {
			return nil, fmt.Errorf("%w: %s %s via %s", ErrTimeout, q.Question[0].Name, dns.TypeToString[q.Question[0].Qtype], c.Server)
		}
		var oe *net.OpError
		if errors.As(err, &oe) {
			return nil, fmt.Errorf("%w: %s %s via %s/%s: %v", ErrUnreachable, q.Question[0].Name, dns.TypeToString[q.Question[0].Qtype], c.Server, network, oe.Err)
		}
		return nil, fmt.Errorf("%w: %s %s via %s/%s: %v", ErrBadResponse, q.Question[0].Name, dns.TypeToString[q.Question[0].Qtype], c.Server, network, err)
	}
	return resp, nil
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
