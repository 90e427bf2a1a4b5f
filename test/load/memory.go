package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net/netip"
	"os"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"weak"

	"github.com/miekg/dns"

	"github.com/tlsgate/tlsgate/internal/dnsx"
	"github.com/tlsgate/tlsgate/internal/smtpprobe"
	"github.com/tlsgate/tlsgate/verify"
)

// The memory scenario fills a Verifier's cache through its public API, Facts, with an
// in-memory resolver and prober that answer at once, so that 100,000 domains take
// seconds instead of 100,000 TLS handshakes. What lands in the cache is built by the
// real verify code from answers shaped like real ones:
//
//   - DNS: MX -> mx1.<domain> (and mx2 with -mem-mx 2), A -> an address of its own per
//     host, AAAA -> NODATA; not DNSSEC-validated, so no TLSA; TTL 1h.
//   - SMTP: a Postfix-like greeting and 10-line EHLO reply, STARTTLS, TLS 1.3, and a
//     two-certificate chain (leaf ~1.2 KB DER shaped like a Let's Encrypt ECDSA leaf,
//     with SCTs, AIA, CRL and policy extensions, plus its intermediate). Reply texts are
//     allocated per probe, as the real prober allocates them.
//
// Certificates, by -mem-certs:
//
//   - shared: every MX presents the same leaf (a hosting provider's MX hosts): one
//     parsed chain, a new PeerCertificates slice per probe.
//   - unique: every MX has its own leaf (self-hosted domains). Each probe creates a new
//     leaf and parses it as a real handshake does: out of a copy of the Certificate
//     message (leaf and intermediate DER), through a copy of crypto/tls's weak
//     certificate cache, which keeps two string copies of the DER (map key and cleanup
//     argument); the intermediate is shared (crypto/tls's cache shares it too).

// memResolver answers every question at once from the name alone.
type memResolver struct{ mx int }

func (r memResolver) Lookup(_ context.Context, name string, qtype uint16) (dnsx.Answer, error) {
	fq := dns.Fqdn(strings.ToLower(name))
	ans := dnsx.Answer{Name: fq, Target: fq, TTL: time.Hour}
	hdr := func(t uint16) dns.RR_Header {
		return dns.RR_Header{Name: fq, Rrtype: t, Class: dns.ClassINET, Ttl: 3600}
	}
	switch qtype {
	case dns.TypeMX:
		for k := 1; k <= r.mx; k++ {
			ans.Records = append(ans.Records, &dns.MX{Hdr: hdr(dns.TypeMX), Preference: uint16(10 * k), Mx: fmt.Sprintf("mx%d.%s", k, fq)})
		}
	case dns.TypeA:
		// mx<k>.d<i>.mem.load.test -> 127.x.y.z, one address per host.
		host, rest, _ := strings.Cut(fq, ".")
		label, _, _ := strings.Cut(rest, ".")
		k, _ := strconv.Atoi(strings.TrimPrefix(host, "mx"))
		i, err := strconv.Atoi(strings.TrimPrefix(label, "d"))
		if err != nil {
			return dnsx.Answer{}, fmt.Errorf("%w: %s", dnsx.ErrServFail, name)
		}
		n := uint32(i*r.mx + k)
		ans.Records = []dns.RR{&dns.A{Hdr: hdr(dns.TypeA), A: []byte{127, byte(n >> 16), byte(n >> 8), byte(n)}}}
	default:
		ans.Status = dnsx.StatusNoData
	}
	return ans, nil
}

// memProber answers every probe at once with a successful STARTTLS session.
type memProber struct {
	shared  []*x509.Certificate // the chain every MX presents ("shared"); nil: "unique"
	inter   *x509.Certificate
	issuer  *ecdsa.PrivateKey
	leafKey *ecdsa.PrivateKey
	certs   weakCertCache
	serial  atomic.Int64
	n       atomic.Int64
}

func (p *memProber) Probe(_ context.Context, ip netip.Addr, _ string) smtpprobe.Result {
	p.n.Add(1)
	host := "mail-" + strings.ReplaceAll(ip.String(), ".", "-") + ".mem.load.test"
	var chain []*x509.Certificate
	if p.shared != nil {
		chain = append(chain, p.shared...)
	} else {
		der, err := newLeaf(host, p.serial.Add(1), p.leafKey, p.inter, p.issuer)
		if err == nil {
			// crypto/tls parses the certificates out of a copy of the whole Certificate
			// message (conn.go, unmarshalHandshakeMessage), so the leaf's Raw keeps the
			// intermediate's DER alive too.
			msg := append(append(make([]byte, 0, len(der)+len(p.inter.Raw)), der...), p.inter.Raw...)
			var leaf *x509.Certificate
			if leaf, err = p.certs.newCert(msg[:len(der)]); err == nil {
				chain = []*x509.Certificate{leaf, p.inter}
			}
		}
		if err != nil {
			return smtpprobe.Result{IP: ip, Outcome: smtpprobe.OutcomeProtocolError, Detail: err.Error()}
		}
	}
	return smtpprobe.Result{
		IP:       ip,
		Stage:    smtpprobe.StageDone,
		Outcome:  smtpprobe.OutcomeTLS,
		Greeting: smtpprobe.Reply{Code: 220, Text: host + " ESMTP Postfix (Debian/GNU)"},
		EHLO: smtpprobe.Reply{Code: 250, Text: host + "\nPIPELINING\nSIZE 52428800\nETRN\nSTARTTLS\nAUTH PLAIN LOGIN\n" +
			"ENHANCEDSTATUSCODES\n8BITMIME\nDSN\nSMTPUTF8\nCHUNKING"},
		StartTLS:    smtpprobe.Reply{Code: 220, Text: strings.Clone("2.0.0 Ready to start TLS")},
		Offered:     true,
		TLSVersion:  tls.VersionTLS13,
		CipherSuite: tls.TLS_AES_256_GCM_SHA384,
		Chain:       chain,
		Duration:    50 * time.Millisecond,
	}
}

// weakCertCache is crypto/tls's (cache.go, Go 1.26): parsed certificates shared by DER
// while anything holds them, keyed by a string copy of the DER.
type weakCertCache struct{ sync.Map }

func (wcc *weakCertCache) newCert(der []byte) (*x509.Certificate, error) {
	if entry, ok := wcc.Load(string(der)); ok {
		if v := entry.(weak.Pointer[x509.Certificate]).Value(); v != nil {
			return v, nil
		}
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	wp := weak.Make(cert)
	if entry, loaded := wcc.LoadOrStore(string(der), wp); !loaded {
		runtime.AddCleanup(cert, func(_ any) { wcc.CompareAndDelete(string(der), entry) }, any(string(der)))
	} else if v := entry.(weak.Pointer[x509.Certificate]).Value(); v != nil {
		return v, nil
	} else if wcc.CompareAndSwap(string(der), entry, wp) {
		runtime.AddCleanup(cert, func(_ any) { wcc.CompareAndDelete(string(der), wp) }, any(string(der)))
	}
	return cert, nil
}

var (
	oidSCTList = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 11129, 2, 4, 2}
	oidDV      = asn1.ObjectIdentifier{2, 23, 140, 1, 2, 1}
)

// newLeaf issues a server certificate shaped like a Let's Encrypt ECDSA leaf.
func newLeaf(host string, serial int64, key *ecdsa.PrivateKey, parent *x509.Certificate, issuer *ecdsa.PrivateKey) ([]byte, error) {
	scts := make([]byte, 2*120) // two signed certificate timestamps
	rand.Read(scts)
	sctExt, err := asn1.Marshal(scts)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          new(big.Int).Lsh(big.NewInt(serial), 64),
		Subject:               pkix.Name{CommonName: host},
		DNSNames:              []string{host, "smtp." + host},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(90 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		OCSPServer:            []string{"http://r11.o.lencr.example"},
		IssuingCertificateURL: []string{"http://r11.i.lencr.example/"},
		CRLDistributionPoints: []string{"http://r11.c.lencr.example/42.crl"},
		PolicyIdentifiers:     []asn1.ObjectIdentifier{oidDV},
		ExtraExtensions:       []pkix.Extension{{Id: oidSCTList, Value: sctExt}},
	}
	return x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, issuer)
}

// newMemProber makes the CA, the intermediate and, for "shared", the one leaf.
func newMemProber(certs string) (*memProber, error) {
	gen := func() *ecdsa.PrivateKey {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			panic(err) // crypto/rand does not fail
		}
		return k
	}
	rootKey, interKey, leafKey := gen(), gen(), gen()
	now := time.Now()
	ca := func(name string, serial int64, key *ecdsa.PrivateKey, parent *x509.Certificate, parentKey *ecdsa.PrivateKey) (*x509.Certificate, error) {
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(serial), Subject: pkix.Name{Country: []string{"US"}, Organization: []string{"Load Test Encrypt"}, CommonName: name},
			NotBefore: now.Add(-time.Hour), NotAfter: now.Add(365 * 24 * time.Hour),
			KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
			ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
			BasicConstraintsValid: true, IsCA: true, MaxPathLenZero: parent != nil,
			IssuingCertificateURL: []string{"http://x1.i.lencr.example/"},
			CRLDistributionPoints: []string{"http://x1.c.lencr.example/"},
		}
		if parent == nil {
			parent, parentKey = tmpl, key
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
		if err != nil {
			return nil, err
		}
		return x509.ParseCertificate(der)
	}
	root, err := ca("Load Root X1", 1, rootKey, nil, nil)
	if err != nil {
		return nil, err
	}
	inter, err := ca("R11", 2, interKey, root, rootKey)
	if err != nil {
		return nil, err
	}
	p := &memProber{inter: inter, issuer: interKey, leafKey: leafKey}
	switch certs {
	case "shared":
		der, err := newLeaf("mx.hosting.mem.load.test", 1, leafKey, inter, interKey)
		if err != nil {
			return nil, err
		}
		leaf, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, err
		}
		p.shared = []*x509.Certificate{leaf, inter}
	case "unique":
	default:
		return nil, fmt.Errorf("unknown -mem-certs %q (shared, unique)", certs)
	}
	return p, nil
}

// memResult is one memory measurement.
type memResult struct {
	certs             string
	domains, resident int
	heapPer, rssPer   float64 // bytes per resident domain
	heapFixed         int64   // the empty caches, at verify.New
	fill              time.Duration
}

// memory fills a Verifier with c.memDomains verdicts per certificate mode and reports
// the heap and RSS growth per cached domain.
func memory(c config, out io.Writer) ([]memResult, error) {
	fmt.Fprintf(out, "== memory: %d cached verdicts (in-memory DNS and SMTP; %d MX per domain, an address each; cache size %d)\n",
		c.memDomains, c.memMX, c.memDomains)
	var results []memResult
	for _, mode := range c.memCerts {
		r, err := memoryOnce(c, mode)
		if err != nil {
			return results, err
		}
		results = append(results, r)
		fmt.Fprintf(out, "certs %-6s  resident %6d of %6d   heap %6.0f B/domain (%.2f KiB)   RSS %6.0f B/domain (%.2f KiB)   fill %v\n",
			r.certs, r.resident, r.domains, r.heapPer, r.heapPer/1024, r.rssPer, r.rssPer/1024, r.fill.Round(time.Millisecond))
	}
	if len(results) > 0 {
		r := results[0]
		fmt.Fprintf(out, "not counted above: the empty caches of verify.New (size %d) take %.1f MiB of heap\n",
			c.memDomains, float64(r.heapFixed)/(1<<20))
	}
	fmt.Fprintln(out, "target <= 2 KiB per cached domain")
	fmt.Fprintln(out)
	return results, nil
}

func memoryOnce(c config, mode string) (memResult, error) {
	r := memResult{certs: mode, domains: c.memDomains}
	prober, err := newMemProber(mode)
	if err != nil {
		return r, err
	}
	heap0, _ := settle()
	v, err := verify.New(verify.Config{
		Resolver:  memResolver{mx: c.memMX},
		Prober:    prober,
		Allow:     loopback,
		CacheSize: c.memDomains,
		Log:       discardLogger,
	})
	if err != nil {
		return r, err
	}
	defer v.Close()
	heap1, rss1 := settle()
	r.heapFixed = heap1 - heap0

	domain := func(i int) string { return fmt.Sprintf("d%d.mem.load.test", i) }
	ctx := context.Background()
	start := time.Now()
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make([]error, runtime.GOMAXPROCS(0)*4)
	for w := range errs {
		wg.Go(func() {
			for i := int(next.Add(1)) - 1; i < c.memDomains; i = int(next.Add(1)) - 1 {
				if _, _, err := v.Facts(ctx, domain(i)); err != nil {
					errs[w] = err
					return
				}
			}
		})
	}
	wg.Wait()
	r.fill = time.Since(start)
	if err := errors.Join(errs...); err != nil {
		return r, err
	}
	heap2, rss2 := settle()
	if c.memprofile != "" {
		if err := writeHeapProfile(c.memprofile + "." + mode); err != nil {
			return r, err
		}
	}
	// Count what the cache holds; a miss probes again, after the measurement.
	probes := prober.n.Load()
	for i := range c.memDomains {
		if _, cached, err := v.Facts(ctx, domain(i)); err == nil && cached {
			r.resident++
		}
	}
	if r.resident == 0 {
		return r, fmt.Errorf("certs %s: nothing cached after %d probes", mode, probes)
	}
	r.heapPer = float64(heap2-heap1) / float64(r.resident)
	r.rssPer = float64(rss2-rss1) / float64(r.resident)
	runtime.KeepAlive(prober)
	return r, nil
}

// settle collects garbage, returns freed memory to the OS and reports the live heap
// and the resident set size.
func settle() (heap, rss int64) {
	runtime.GC()
	runtime.GC() // the second cycle runs the cleanups the first one queued
	debug.FreeOSMemory()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return int64(ms.HeapAlloc), vmRSS()
}

// vmRSS reads VmRSS from /proc/self/status, in bytes; 0 where there is no /proc.
func vmRSS() int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for line := range strings.Lines(string(b)) {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f := strings.Fields(rest)
			if len(f) >= 1 {
				kb, _ := strconv.ParseInt(f[0], 10, 64)
				return kb * 1024
			}
		}
	}
	return 0
}

func writeHeapProfile(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := pprof.Lookup("heap").WriteTo(f, 0); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
