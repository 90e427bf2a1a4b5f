package verify

import (
	"context"
	"fmt"
	"net/netip"

	"github.com/tlsgate/tlsgate/internal/dane"
	"github.com/tlsgate/tlsgate/internal/mtasts"
	"github.com/tlsgate/tlsgate/internal/smtpprobe"
)

// Probe gathers fresh facts for domain without the cache. It always returns facts;
// failures are recorded in them.
func (v *Verifier) Probe(ctx context.Context, domain string) *Facts {
	start := v.cfg.Now()
	f := &Facts{Domain: domain, Checked: start, DNSTTL: v.cfg.PassTTL}
	v.probe(ctx, f)
	f.Duration = v.cfg.Now().Sub(start)
	v.cfg.Log.Debug("probe finished", "domain", domain, "mx", f.MX.String(), "attempts", len(f.Attempts), "duration", f.Duration)
	return f
}

func (v *Verifier) probe(ctx context.Context, f *Facts) {
	dest := f.Destination()
	hop, ok, err := ParseNextHop(dest)
	if !ok || err != nil {
		f.MX, f.MXDetail = MXNone, fmt.Sprintf("%q is neither a domain nor a next hop", dest)
		if err != nil {
			f.MXDetail = err.Error()
		}
		return
	}
	if !hop.MX {
		v.probeNextHop(ctx, f, hop)
		return
	}
	var sts chan mtasts.Result
	// MTA-STS is the recipient domain's (RFC 8461 §4): never for "host:port". Facts
	// probed with a servername= (FactsKey) are never judged at published.
	if v.cfg.STS != nil && hop.Port == 0 && f.Servername() == "" {
		// The policy is looked up while the MX records are: it decides which hosts an
		// MTA-STS sender contacts.
		ch := make(chan mtasts.Result, 1)
		go func() { ch <- v.cfg.STS.Lookup(ctx, dest) }()
		sts = ch
	}
	waitSTS := func() *mtasts.Policy {
		if sts == nil {
			return nil
		}
		r := <-sts
		sts = nil
		f.STS = &r
		f.DNSTTL = min(f.DNSTTL, r.TTL)
		if r.Policy != nil && r.Policy.Mode != mtasts.ModeNone {
			return r.Policy
		}
		return nil
	}
	defer waitSTS()
	dctx, cancel := context.WithTimeout(ctx, v.cfg.DNSTimeout)
	hosts, err := v.lookupMX(dctx, f, hop)
	cancel()
	if err != nil || f.MX != MXFound && f.MX != MXImplicit {
		return
	}
	f.Hosts = hosts
	// The hosts Postfix would try are probed while the policy is still being fetched:
	// a slow policy host must not hold up levels that never use MTA-STS.
	v.probeHosts(ctx, f, nil, false)
	if pol := waitSTS(); pol != nil {
		v.probeHosts(ctx, f, pol, true)
		if pol.Mode == mtasts.ModeEnforce { // testing: the socketmap answers NOTFOUND, no SNI
			v.probeHostSNI(ctx, f, pol)
		}
	}
}

// probeHosts probes the addresses Postfix would contact and, with an MTA-STS policy
// pol, those an MTA-STS sender would contact; with beyondOnly, only those past
// Postfix's limit (the others were probed by a first call without pol).
//
// Postfix counts a session towards smtp_mx_session_limit only when its SMTP handshake,
// STARTTLS included, succeeded (smtp_connect.c: "Don't count handshake errors towards
// the session limit"); with mandatory TLS a successful handshake delivers. So for every
// level judged here only smtp_mx_address_limit bounds the addresses Postfix tries.
// An MTA-STS sender skips the hosts its policy does not list (RFC 8461 §4.1), so its
// limit counts only listed hosts, and may reach hosts past Postfix's limit.
func (v *Verifier) probeHosts(ctx context.Context, f *Facts, pol *mtasts.Policy, beyondOnly bool) {
	port := v.cfg.SMTPPort
	if hop, _, _ := ParseNextHop(f.Destination()); hop.Port > 0 {
		port = hop.Port
	}
	servername := f.Servername()
	// tafile=: the trust anchors are read at every probe, as Postfix reads them at
	// delivery; a file that cannot be read is recorded in every attempt (the policy
	// is invalid then: Postfix defers).
	var anchors *trustAnchors
	var taErr error
	if files := f.TAFile(); files != "" {
		anchors, taErr = loadTrustAnchors(files)
	}
	postfixLeft, stsLeft := v.cfg.MXAddressLimit, 0
	if pol != nil {
		stsLeft = v.cfg.MXAddressLimit
	}
	for i := range f.Hosts {
		h := &f.Hosts[i]
		listed := pol != nil && pol.Allows(h.Name)
		if postfixLeft <= 0 && (!listed || stsLeft <= 0) {
			continue
		}
		if h.AddrError != "" {
			if beyond := postfixLeft <= 0; beyond || !beyondOnly {
				f.Attempts = append(f.Attempts, Attempt{Host: h.Name, Preference: h.Preference, TLSA: h.TLSA,
					DNSError: h.AddrError, DNSTemporary: h.AddrTemporary, BeyondLimit: beyond})
			}
			continue
		}
		// DANE: the server is asked for the TLSA base domain as SNI (RFC 7672 §8.1).
		sni := ""
		switch {
		case servername != "":
			// A policy's servername= at a level that is not DANE (FactsKey): the name
			// Postfix sends (tls_client.c tls_auth_enable), TLSA records or not.
			sni = f.serverName(servername, h.Name)
		case h.TLSA.Status == TLSAFound && len(dane.UsableRecords(h.TLSA.Records)) > 0:
			sni = h.TLSA.Base
		}
		for _, ip := range h.Addrs {
			byPostfix, bySTS := postfixLeft > 0, listed && stsLeft > 0
			if !byPostfix && !bySTS {
				break
			}
			if byPostfix {
				postfixLeft--
			}
			if bySTS {
				stsLeft--
			}
			if byPostfix && beyondOnly {
				continue
			}
			a := Attempt{Host: h.Name, Preference: h.Preference, TLSA: h.TLSA, BeyondLimit: !byPostfix}
			asni := sni
			if a.BeyondLimit && pol.Mode == mtasts.ModeEnforce {
				// Only an MTA-STS sender reaches it, with the MX host name (probeHostSNI).
				asni = h.Name
			}
			a.Result, a.Cert, a.RateLimited = v.probeAddr(ctx, f, h.Name, ip, port, asni, anchors != nil || taErr != nil)
			a.recordDANE(f)
			a.recordTA(anchors, taErr, v.cfg.Now())
			f.Attempts = append(f.Attempts, a)
		}
	}
}

// addrResult is a probe result shared between domains, with its leaf summary. Without
// SNI the chain is dropped (nothing domain-specific needs it); with SNI (a DANE host)
// it is kept for the DANE check of each domain.
type addrResult struct {
	r    smtpprobe.Result
	cert *CertInfo
}

// probeAddr probes one address, unless the abuse guard forbids it, and returns the
// result with its leaf summary. A result for the same address and SNI is shared
// between domains (many domains share their provider's MX hosts; the probe does not
// depend on the domain).
//
// needChain: the caller checks the chain itself (tafile=), so a result shared without
// its chain will not do; such results are shared under their own key, chain kept.
func (v *Verifier) probeAddr(ctx context.Context, f *Facts, host string, ip netip.Addr, port int, sni string, needChain bool) (r smtpprobe.Result, cert *CertInfo, limited bool) {
	if !v.allowed(ip) {
		v.cfg.Log.Warn("probe refused by configuration", "domain", f.Domain, "mx", host, "ip", ip.String())
		return smtpprobe.Result{IP: ip, Outcome: smtpprobe.OutcomeNotAllowed,
			Detail: fmt.Sprintf("%s is not a public address or is this host's own; not probed (allow it with probe.allow_networks)", ip)}, nil, false
	}
	key := ip.String() + "|" + sni
	if port != v.cfg.SMTPPort {
		key = netip.AddrPortFrom(ip, uint16(port)).String() + "|" + sni
	}
	if needChain {
		key += "|chain"
	}
	if ar, ok := v.addrs.Get(key); ok {
		return ar.r, ar.cert, false
	}
	res, _, _ := v.addrGroup.Do(key, func() (any, error) {
		if !v.allowProbe(ctx, ip) {
			return nil, nil
		}
		pctx, cancel := context.WithTimeout(ctx, v.cfg.HostTimeout)
		defer cancel()
		r := v.probeAt(pctx, ip, port, sni)
		v.cfg.Events.Session(r.Outcome, r.Duration)
		ar := addrResult{r: r}
		if leaf := r.Leaf(); leaf != nil {
			ar.cert = summarize(leaf)
		}
		if ctx.Err() == nil {
			shared := ar
			if sni == "" && !needChain {
				shared.r.Chain = nil
			}
			v.addrs.Set(key, shared, v.cfg.AddressTTL)
		}
		return ar, nil
	})
	if res == nil {
		v.cfg.Events.RateLimited()
		v.cfg.Log.Warn("probe rate limit reached", "domain", f.Domain, "mx", host, "ip", ip.String(), "per_minute", v.cfg.RatePerAddress)
		return smtpprobe.Result{IP: ip}, nil, true
	}
	ar := res.(addrResult)
	v.cfg.Log.Debug("probed", "domain", f.Domain, "mx", host, "ip", ip.String(),
		"outcome", ar.r.Outcome.String(), "detail", ar.r.Detail, "err", ar.r.Err, "duration", ar.r.Duration)
	return ar.r, ar.cert, false
}
