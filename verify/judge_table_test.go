package verify

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/tlsgate/tlsgate/internal/fake"
	"github.com/tlsgate/tlsgate/internal/fingerprint"
	"github.com/tlsgate/tlsgate/internal/mtasts"
	"github.com/tlsgate/tlsgate/internal/smtpprobe"
	"github.com/tlsgate/tlsgate/internal/tlsrpt"
	"github.com/tlsgate/tlsgate/policy"
)

// TestJudgeTable is the README's "Level semantics" table as a test: every outcome a
// probe can record, built by hand as Facts, judged at every level.
//
// Each row is one situation of example.com and what Judge must say at each level, in
// Postfix's order (none, may, encrypt, dane, dane-only, fingerprint, verify, secure)
// then tlsgate's own "published". A verdict is fail only when every attempt failed for
// a reason that will be the same next time; any transient failure without a pass is a
// tempfail (README "A verdict is fail only when...").
//
// Unless a row says otherwise: the MX RRset is not DNSSEC-signed (as for most domains),
// no host has TLSA records, the domain publishes no MTA-STS record, and the fingerprint
// level pins two digests: the certificate `pinned` and the public key of `keyPinned`.
// Whether the probe produces these Facts from real servers is TestJudgeMatrix's job.
func TestJudgeTable(t *testing.T) {
	t.Parallel()
	k := newJudgeKit(t)

	// The certificates the MX hosts present. "Trusted" is issued by the CA the probe
	// trusts (probe.ca_file); the chain is what the server sends, leaf first.
	var (
		good1      = k.trusted(mx1)                // the MX host's own name
		good2      = k.trusted(mx2)                //
		otherName  = k.trusted("mail.other.net")   // valid, for someone else
		domainName = k.trusted(domain)             // names the recipient domain only
		provider   = k.trusted(mxProvider)         // a hoster's MX, outside example.com
		untrusted  = k.untrusted(mx1)              // from a CA nobody trusts
		expired    = k.expiredCert(mx1)            // trusted CA, validity over
		pinned     = k.pinned                      // self-signed, expired, another name
		keyPinned  = k.keyPinned                   // trusted, for mx1, its public key pinned
		privateTA  = k.privateCA(mx1)              // leaf + the domain's private CA (for DANE-TA)
		privateBad = k.privateCA("mail.other.net") // same CA, leaf for another name
		selfSigned = k.selfSigned(mx1)             // no CA at all
	)

	// Cells: what the verdict must say at one level.
	var (
		ok          = pass("")           // pass, by the level's own mechanism
		asMay       = pass(MechNone)     // dane without TLSA: opportunistic, as "may"
		nothingReq  = pass(MechNone)     // published: the domain publishes nothing
		byDANE      = pass(MechDANE)     // authenticated by TLSA
		bySTS       = pass(MechMTASTS)   // an MTA-STS policy's checks passed
		unauthTLS   = pass(MechSTARTTLS) // TLSA all unusable: TLS, unauthenticated
		notOffered  = fail(ReasonSTARTTLSNotSupported)
		handshake   = fail(ReasonHandshakeFailure)
		notTrusted  = fail(ReasonCertNotTrusted)
		expiredCert = fail(ReasonCertExpired)
		wrongName   = fail(ReasonCertHostMismatch)
		notPinned   = fail(ReasonFingerprintMismatch)
		tlsaInvalid = fail(ReasonTLSAInvalid)
		unsignedMX  = fail(ReasonDNSSECInvalid)
		nullMX      = fail(ReasonNullMX)
		noMX        = fail(ReasonNoMX)
		dnsError    = temp(ReasonDNSError)
		stsMismatch = fail(ReasonSTSMXMismatch)
		timeout     = temp(ReasonTimeout)
		greylist    = temp(ReasonGreylisted)
		connRefused = temp(ReasonConnectionRefused)
		smtpErr     = temp(ReasonProtocolError)
		notProbed   = temp(ReasonProbeNotAllowed)
		rateLimit   = temp(ReasonRateLimited)
	)

	tests := []struct {
		name  string
		facts *Facts
		want  [nLevels]cell // none, may, encrypt, dane, dane-only, fingerprint, verify, secure, published
	}{
		// One MX host, one address: what its session showed.
		{"STARTTLS not offered",
			facts(mx(mx1, noSTARTTLS)),
			row(ok, ok, notOffered, asMay, unsignedMX, notOffered, notOffered, notOffered, nothingReq)},
		{"STARTTLS offered, TLS handshake fails",
			facts(mx(mx1, handshakeFails)),
			row(ok, ok, handshake, asMay, unsignedMX, handshake, handshake, handshake, nothingReq)},
		{"trusted certificate for the MX host name",
			facts(mx(mx1, k.tlsOK(good1))),
			row(ok, ok, ok, asMay, unsignedMX, notPinned, ok, ok, nothingReq)},
		{"trusted certificate for another name",
			facts(mx(mx1, k.tlsOK(otherName))),
			row(ok, ok, ok, asMay, unsignedMX, notPinned, wrongName, wrongName, nothingReq)},
		{"trusted certificate for the recipient domain only: secure (nexthop), not verify (hostname)",
			facts(mx(mx1, k.tlsOK(domainName))),
			row(ok, ok, ok, asMay, unsignedMX, notPinned, wrongName, ok, nothingReq)},
		{"provider MX outside the domain, certificate for it: verify (hostname), not secure (nexthop)",
			facts(mx(mxProvider, k.tlsOK(provider))),
			row(ok, ok, ok, asMay, unsignedMX, notPinned, ok, wrongName, nothingReq)},
		{"certificate from an untrusted CA",
			facts(mx(mx1, k.tlsOK(untrusted))),
			row(ok, ok, ok, asMay, unsignedMX, notPinned, notTrusted, notTrusted, nothingReq)},
		{"certificate expired",
			facts(mx(mx1, k.tlsOK(expired))),
			row(ok, ok, ok, asMay, unsignedMX, notPinned, expiredCert, expiredCert, nothingReq)},
		{"certificate pinned by its digest (self-signed, expired, another name: all ignored)",
			facts(mx(mx1, k.tlsOK(pinned))),
			row(ok, ok, ok, asMay, unsignedMX, ok, expiredCert, expiredCert, nothingReq)},
		{"certificate whose public key is pinned (the pin outlives a renewal)",
			facts(mx(mx1, k.tlsOK(keyPinned))),
			row(ok, ok, ok, asMay, unsignedMX, ok, ok, ok, nothingReq)},

		// Transient: Postfix would defer and retry, so tempfail, never fail.
		{"SMTP server does not answer in time",
			facts(mx(mx1, timedOut)),
			row(ok, ok, timeout, timeout, unsignedMX, timeout, timeout, timeout, nothingReq)},
		{"greeting 450 (greylisting)",
			facts(mx(mx1, greylisted)),
			row(ok, ok, greylist, greylist, unsignedMX, greylist, greylist, greylist, nothingReq)},
		{"TCP connection refused",
			facts(mx(mx1, refused)),
			row(ok, ok, connRefused, connRefused, unsignedMX, connRefused, connRefused, connRefused, nothingReq)},
		{"greeting 554 (session rejected)",
			facts(mx(mx1, rejected)),
			row(ok, ok, connRefused, connRefused, unsignedMX, connRefused, connRefused, connRefused, nothingReq)},
		{"connection dropped mid-session",
			facts(mx(mx1, garbled)),
			row(ok, ok, smtpErr, smtpErr, unsignedMX, smtpErr, smtpErr, smtpErr, nothingReq)},
		{"MX address outside probe.allow_networks: not probed",
			facts(mx(mx1, notAllowed)),
			row(ok, ok, notProbed, notProbed, unsignedMX, notProbed, notProbed, notProbed, nothingReq)},
		{"MX address probed too often: not probed",
			facts(rateLimited(mx1)),
			row(ok, ok, rateLimit, rateLimit, unsignedMX, rateLimit, rateLimit, rateLimit, nothingReq)},

		// The DNS.
		{"null MX (RFC 7505)",
			facts(nullMXRecord),
			row(ok, ok, nullMX, nullMX, nullMX, nullMX, nullMX, nullMX, nullMX)},
		{"no MX and no address (NXDOMAIN)",
			facts(nxdomain),
			row(ok, ok, noMX, noMX, noMX, noMX, noMX, noMX, noMX)},
		{"MX lookup fails (SERVFAIL)",
			facts(mxServfail),
			row(ok, ok, dnsError, dnsError, dnsError, dnsError, dnsError, dnsError, dnsError)},
		{"MX host name does not exist",
			facts(unresolvable(mx1, false)),
			row(ok, ok, noMX, noMX, unsignedMX, noMX, noMX, noMX, nothingReq)},
		{"MX host address lookup fails (SERVFAIL)",
			facts(unresolvable(mx1, true)),
			row(ok, ok, dnsError, dnsError, unsignedMX, dnsError, dnsError, dnsError, dnsError)},
		{"signed MX, the host's address lookup fails (SERVFAIL): never a 5xx, never a pass",
			facts(dnssec, unresolvable(mx1, true)),
			row(ok, ok, dnsError, dnsError, dnsError, dnsError, dnsError, dnsError, dnsError)},
		{"signed MX, the host does not exist",
			facts(dnssec, unresolvable(mx1, false)),
			row(ok, ok, noMX, noMX, noMX, noMX, noMX, noMX, nothingReq)},
		{"no MX, the domain's own address (implicit MX) with a certificate for it",
			facts(implicitMX, mx(domain, k.tlsOK(domainName))),
			row(ok, ok, ok, asMay, unsignedMX, notPinned, ok, ok, nothingReq)},

		// DANE (RFC 7672): the MX RRset is DNSSEC-signed unless the row says otherwise.
		{"signed MX, host without TLSA (secure denial)",
			facts(dnssec, mx(mx1, k.tlsOK(good1), noTLSA)),
			row(ok, ok, ok, asMay, tlsaInvalid, notPinned, ok, ok, nothingReq)},
		{"DANE-EE(3) matches the certificate's public key",
			facts(dnssec, mx(mx1, k.tlsOK(good1), tlsa(daneEE(good1[0])))),
			row(ok, ok, ok, byDANE, byDANE, notPinned, ok, ok, byDANE)},
		{"DANE-EE(3) matches a self-signed certificate (names, dates, chain ignored)",
			facts(dnssec, mx(mx1, k.tlsOK(selfSigned), tlsa(daneEE(selfSigned[0])))),
			row(ok, ok, ok, byDANE, byDANE, notPinned, notTrusted, notTrusted, byDANE)},
		{"DANE-EE(3) does not match the certificate",
			facts(dnssec, mx(mx1, k.tlsOK(good1), tlsa(daneEE(good2[0])))),
			row(ok, ok, ok, tlsaInvalid, tlsaInvalid, notPinned, ok, ok, tlsaInvalid)},
		{"DANE-TA(2): a private CA in the chain, leaf named as the MX host",
			facts(dnssec, mx(mx1, k.tlsOK(privateTA), tlsa(daneTA(privateTA[1])))),
			row(ok, ok, ok, byDANE, byDANE, notPinned, notTrusted, notTrusted, byDANE)},
		{"DANE-TA(2): the CA matches, the leaf names neither the MX host nor the domain",
			facts(dnssec, mx(mx1, k.tlsOK(privateBad), tlsa(daneTA(privateBad[1])))),
			row(ok, ok, ok, tlsaInvalid, tlsaInvalid, notPinned, notTrusted, notTrusted, tlsaInvalid)},
		{"usable TLSA, STARTTLS not offered",
			facts(dnssec, mx(mx1, noSTARTTLS, tlsa(daneEE(good1[0])))),
			row(ok, ok, notOffered, notOffered, notOffered, notOffered, notOffered, notOffered, notOffered)},
		{"only unusable TLSA (PKIX-EE): TLS mandatory, unauthenticated",
			facts(dnssec, mx(mx1, k.tlsOK(untrusted), tlsa(pkixEE(untrusted[0])))),
			row(ok, ok, ok, unauthTLS, tlsaInvalid, notPinned, notTrusted, notTrusted, unauthTLS)},
		{"only unusable TLSA, STARTTLS not offered",
			facts(dnssec, mx(mx1, noSTARTTLS, tlsa(pkixEE(good1[0])))),
			row(ok, ok, notOffered, notOffered, notOffered, notOffered, notOffered, notOffered, notOffered)},
		{"TLSA lookup fails for a secure host: never a downgrade",
			facts(dnssec, mx(mx1, k.tlsOK(good1), tlsaLookupFails)),
			row(ok, ok, ok, dnsError, dnsError, notPinned, ok, ok, dnsError)},

		// Legacy TLS (issue 13): Postfix 3.7 runs OpenSSL 3 at security level 0 up to
		// encrypt (and for dane without usable TLSA) and at 1 above, where a TLS 1.0/1.1
		// key exchange signed with SHA-1 or MD5+SHA-1 is refused ("legacy sigalg
		// disallowed or unsupported"). The probe records the server's answer to
		// Postfix's own ClientHello where Go's handshake does not tell.
		{"TLS 1.1 only, ECDHE signed with MD5+SHA-1: encrypt passes, authentication fails",
			facts(mx(mx1, legacy(k.tlsOK(good1), tls.VersionTLS11, nil, &smtpprobe.Hello{Version: tls.VersionTLS11, Suite: 0xC014}))),
			row(ok, ok, ok, asMay, unsignedMX, handshake, handshake, handshake, nothingReq)},
		{"TLS 1.1 only, ECDHE signed with MD5+SHA-1, matching DANE-EE: Postfix fails at dane",
			facts(dnssec, mx(mx1, legacy(k.tlsOK(good1), tls.VersionTLS11, nil, &smtpprobe.Hello{Version: tls.VersionTLS11, Suite: 0xC014}), tlsa(daneEE(good1[0])))),
			row(ok, ok, ok, handshake, handshake, handshake, handshake, handshake, handshake)},
		{"TLS 1.1 only, ECDHE signed with MD5+SHA-1, only unusable TLSA: dane is encrypt there",
			facts(dnssec, mx(mx1, legacy(k.tlsOK(untrusted), tls.VersionTLS11, nil, &smtpprobe.Hello{Version: tls.VersionTLS11, Suite: 0xC014}), tlsa(pkixEE(untrusted[0])))),
			row(ok, ok, ok, unauthTLS, tlsaInvalid, handshake, handshake, handshake, unauthTLS)},
		{"TLS 1.0 only, RSA key exchange (nothing signed): every level as at TLS 1.3",
			facts(mx(mx1, legacy(k.tlsOK(good1), tls.VersionTLS10, nil, &smtpprobe.Hello{Version: tls.VersionTLS10, Suite: 0x0035}))),
			row(ok, ok, ok, asMay, unsignedMX, notPinned, ok, ok, nothingReq)},
		{"Go's handshake fails; Postfix gets an anonymous suite at encrypt and an alert above",
			facts(mx(mx1, legacy(handshakeFails, 0, &smtpprobe.Hello{Version: tls.VersionTLS11, Suite: 0xC019}, &smtpprobe.Hello{Alert: 40}))),
			row(ok, ok, ok, asMay, unsignedMX, handshake, handshake, handshake, nothingReq)},
		{"Go's handshake fails; Postfix's completes (DHE at TLS 1.2), the chain from the answer",
			facts(mx(mx1, goFailed(k.tlsOK(good1), &smtpprobe.Hello{Version: tls.VersionTLS12, Suite: 0x009F}))),
			row(ok, ok, ok, asMay, unsignedMX, notPinned, ok, ok, nothingReq)},
		{"TLS 1.1 only; Postfix's ClientHello got no answer: nothing known above encrypt",
			facts(mx(mx1, legacy(k.tlsOK(good1), tls.VersionTLS11, nil, &smtpprobe.Hello{Failed: "timed out"}))),
			row(ok, ok, ok, asMay, unsignedMX, smtpErr, smtpErr, smtpErr, nothingReq)},
		{"unsigned MX RRset, secure host with matching DANE-EE",
			facts(mx(mx1, k.tlsOK(good1), tlsa(daneEE(good1[0])))),
			row(ok, ok, ok, byDANE, unsignedMX, notPinned, ok, ok, byDANE)},
		{"unsigned MX RRset, secure host with mismatching DANE-EE",
			facts(mx(mx1, k.tlsOK(good1), tlsa(daneEE(good2[0])))),
			row(ok, ok, ok, tlsaInvalid, unsignedMX, notPinned, ok, ok, tlsaInvalid)},
		{"mx1 DANE-EE mismatch, mx2 without TLSA nor STARTTLS: dane is per host",
			facts(dnssec, mx(mx1, k.tlsOK(good1), tlsa(daneEE(good2[0]))), mx(mx2, noSTARTTLS, noTLSA)),
			row(ok, ok, ok, asMay, tlsaInvalid, notPinned, ok, ok, asMay)},

		// Several hosts, in the order Postfix tries them: the first that meets the level
		// delivers; the failure reported is the one that got furthest.
		{"mx1 fails definitely (no STARTTLS), mx2 passes",
			facts(mx(mx1, noSTARTTLS), mx(mx2, k.tlsOK(good2))),
			row(ok, ok, ok, asMay, unsignedMX, notPinned, ok, ok, nothingReq)},
		{"mx1 no STARTTLS, mx2 untrusted: the furthest failure is reported",
			facts(mx(mx1, noSTARTTLS), mx(mx2, k.tlsOK(untrusted))),
			row(ok, ok, ok, asMay, unsignedMX, notPinned, notTrusted, notTrusted, nothingReq)},
		{"mx1 times out, mx2 fails definitely: tempfail",
			facts(mx(mx1, timedOut), mx(mx2, noSTARTTLS)),
			row(ok, ok, timeout, asMay, unsignedMX, timeout, timeout, timeout, nothingReq)},
		{"mx1 fails definitely, mx2 is greylisted: tempfail",
			facts(mx(mx1, k.tlsOK(otherName)), mx(mx2, greylisted)),
			row(ok, ok, ok, asMay, unsignedMX, greylist, greylist, greylist, nothingReq)},
		{"mx1 no STARTTLS, mx2 would pass but is past smtp_mx_address_limit",
			facts(mx(mx1, noSTARTTLS), mx(mx2, k.tlsOK(good2), beyondLimit)),
			row(ok, ok, notOffered, asMay, unsignedMX, notOffered, notOffered, notOffered, nothingReq)},

		// MTA-STS (RFC 8461), at "published" only; the other levels ignore it.
		{"MTA-STS enforce, listed MX with a trusted certificate",
			facts(sts(enforce(mx1)), mx(mx1, k.tlsOK(good1))),
			row(ok, ok, ok, asMay, unsignedMX, notPinned, ok, ok, bySTS)},
		{"MTA-STS enforce by pattern, listed MX with a certificate for another name",
			facts(sts(enforce("*.example.com")), mx(mx1, k.tlsOK(otherName))),
			row(ok, ok, ok, asMay, unsignedMX, notPinned, wrongName, wrongName, wrongName)},
		{"MTA-STS enforce, listed MX with an untrusted certificate",
			facts(sts(enforce(mx1)), mx(mx1, k.tlsOK(untrusted))),
			row(ok, ok, ok, asMay, unsignedMX, notPinned, notTrusted, notTrusted, notTrusted)},
		{"MTA-STS enforce, listed MX without STARTTLS",
			facts(sts(enforce(mx1)), mx(mx1, noSTARTTLS)),
			row(ok, ok, notOffered, asMay, unsignedMX, notOffered, notOffered, notOffered, notOffered)},
		{"MTA-STS enforce, listed MX times out",
			facts(sts(enforce(mx1)), mx(mx1, timedOut)),
			row(ok, ok, timeout, timeout, unsignedMX, timeout, timeout, timeout, timeout)},
		{"MTA-STS enforce lists no MX host",
			facts(sts(enforce("mx.elsewhere.net")), mx(mx1, k.tlsOK(good1))),
			row(ok, ok, ok, asMay, unsignedMX, notPinned, ok, ok, stsMismatch)},
		{"MTA-STS enforce: unlisted mx1 is skipped, listed mx2 passes",
			facts(sts(enforce(mx2)), mx(mx1, noSTARTTLS), mx(mx2, k.tlsOK(good2))),
			row(ok, ok, ok, asMay, unsignedMX, notPinned, ok, ok, bySTS)},
		{"MTA-STS enforce: the listed host is reached only past Postfix's address limit",
			facts(sts(enforce(mx2)), mx(mx1, noSTARTTLS), mx(mx2, k.tlsOK(good2), beyondLimit)),
			row(ok, ok, notOffered, asMay, unsignedMX, notOffered, notOffered, notOffered, bySTS)},
		{"MTA-STS testing, listed MX with an untrusted certificate: delivered, reason kept",
			facts(sts(stsTesting(mx1)), mx(mx1, k.tlsOK(untrusted))),
			row(ok, ok, ok, asMay, unsignedMX, notPinned, notTrusted, notTrusted, passBecause(MechMTASTS, ReasonCertNotTrusted))},
		{"MTA-STS mode none",
			facts(sts(stsModeNone), mx(mx1, noSTARTTLS)),
			row(ok, ok, notOffered, asMay, unsignedMX, notOffered, notOffered, notOffered, nothingReq)},
		{"MTA-STS record, policy fetch failed: no policy (RFC 8461 §5)",
			facts(sts(stsFetchFailed), mx(mx1, noSTARTTLS)),
			row(ok, ok, notOffered, asMay, unsignedMX, notOffered, notOffered, notOffered, passBecause(MechNone, ReasonSTSFetchError))},
		{"MTA-STS record, policy invalid: no policy (RFC 8461 §5)",
			facts(sts(stsInvalid), mx(mx1, noSTARTTLS)),
			row(ok, ok, notOffered, asMay, unsignedMX, notOffered, notOffered, notOffered, passBecause(MechNone, ReasonSTSPolicyInvalid))},
		{"MTA-STS refetch failed, the cached enforce policy still applies (RFC 8461 §5.1)",
			facts(sts(cachedAfterFailure(enforce(mx1))), mx(mx1, noSTARTTLS)),
			row(ok, ok, notOffered, asMay, unsignedMX, notOffered, notOffered, notOffered, notOffered)},
		{"MTA-STS lookups disabled (mta_sts.enabled: false)",
			facts(sts(nil), mx(mx1, noSTARTTLS)),
			row(ok, ok, notOffered, asMay, unsignedMX, notOffered, notOffered, notOffered, nothingReq)},
		{"_mta-sts TXT lookup fails (SERVFAIL), no cached policy",
			facts(sts(stsTXTFails), mx(mx1, k.tlsOK(good1))),
			row(ok, ok, ok, asMay, unsignedMX, notPinned, ok, ok, dnsError)},

		// DANE takes precedence over MTA-STS (RFC 8461 §2): it neither blocks nor rescues.
		{"DANE passes, MTA-STS enforce lists no MX host",
			facts(dnssec, sts(enforce("mx.elsewhere.net")), mx(mx1, k.tlsOK(good1), tlsa(daneEE(good1[0])))),
			row(ok, ok, ok, byDANE, byDANE, notPinned, ok, ok, byDANE)},
		{"DANE fails, MTA-STS enforce would pass",
			facts(dnssec, sts(enforce(mx1)), mx(mx1, k.tlsOK(good1), tlsa(daneEE(good2[0])))),
			row(ok, ok, ok, tlsaInvalid, tlsaInvalid, notPinned, ok, ok, tlsaInvalid)},
		{"TLSA lookup fails, MTA-STS enforce would pass",
			facts(dnssec, sts(enforce(mx1)), mx(mx1, k.tlsOK(good1), tlsaLookupFails)),
			row(ok, ok, ok, dnsError, dnsError, notPinned, ok, ok, dnsError)},
		{"only unusable TLSA, MTA-STS enforce applies",
			facts(dnssec, sts(enforce(mx1)), mx(mx1, k.tlsOK(untrusted), tlsa(pkixEE(untrusted[0])))),
			row(ok, ok, ok, unauthTLS, tlsaInvalid, notPinned, notTrusted, notTrusted, notTrusted)},
	}

	fingerprints := []string{fingerprint.Of(k.pinned[0].Raw), spkiFingerprint(k.keyPinned[0])}
	for _, tc := range tests {
		tc.facts.Checked = k.now
		for l := range policy.Level(nLevels) {
			p := policy.Policy{Level: l}
			if l == policy.LevelFingerprint {
				p.Match = fingerprints
			}
			name := tc.name + " at " + l.String()
			want := tc.want[l]
			expectCell(t, name, Judge(tc.facts, p), want)
			// Facts as cached: the certificate summarised, DANE verified, the chain
			// dropped. The verdict must not change.
			expectCell(t, name+" (cached facts)", Judge(asCached(tc.facts), p), want)
		}
	}
}

func expectCell(t *testing.T, name string, got Verdict, want cell) {
	t.Helper()
	if got.Status != want.status || got.Reason != want.reason ||
		(want.mech != "" && got.Mechanism != want.mech) {
		t.Errorf("%s:\n got  %s %q via %s (%s)\n want %s", name, got.Status, got.Reason, got.Mechanism, got.Detail, want)
	}
	if got.Status != StatusPass && got.Detail == "" {
		t.Errorf("%s: %s without a detail; the reply's second line would be empty", name, got.Status)
	}
}

// cell is what Judge must say at one level.
type cell struct {
	status Status
	reason Reason
	mech   Mechanism // checked when set
}

func (c cell) String() string {
	s := c.status.String()
	if c.reason != "" {
		s += fmt.Sprintf(" %q", c.reason)
	}
	if c.mech != "" {
		s += " via " + string(c.mech)
	}
	return s
}

func pass(m Mechanism) cell                  { return cell{StatusPass, ReasonNone, m} }
func passBecause(m Mechanism, r Reason) cell { return cell{StatusPass, r, m} }
func fail(r Reason) cell                     { return cell{StatusFail, r, ""} }
func temp(r Reason) cell                     { return cell{StatusTempfail, r, ""} }

// nLevels is the number of levels: LevelNone .. LevelPublished.
const nLevels = int(policy.LevelPublished) + 1

func row(cells ...cell) [nLevels]cell {
	if len(cells) != nLevels {
		panic(fmt.Sprintf("a row has %d cells; want one per level, %d", len(cells), nLevels))
	}
	return [nLevels]cell(cells)
}

// The names of the world of the table.
const (
	domain     = "example.com"
	mx1        = "mx1.example.com"
	mx2        = "mx2.example.com"
	mxProvider = "mx.provider.net"
)

// fact shapes the Facts of a row.
type fact func(*Facts)

// facts builds example.com's facts: MX records found (not DNSSEC-signed), no MTA-STS
// record, then the row's parts in order. Each attempt gets its own documentation
// address; hosts are listed in the order of their first attempt.
func facts(parts ...fact) *Facts {
	f := &Facts{Domain: domain, MX: MXFound, MXDetail: "MX records found",
		STS: &mtasts.Result{Status: mtasts.StatusNone, Detail: "no v=STSv1 TXT record"}}
	for _, part := range parts {
		part(f)
	}
	for i := range f.Attempts {
		a := &f.Attempts[i]
		if a.DNSError == "" {
			a.Result.IP = netip.AddrFrom4([4]byte{192, 0, 2, byte(10 + i)})
		}
		if !slices.ContainsFunc(f.Hosts, func(h Host) bool { return h.Name == a.Host }) {
			a.Preference = uint16(10 * (len(f.Hosts) + 1))
			f.Hosts = append(f.Hosts, Host{Name: a.Host, Preference: a.Preference, TLSA: a.TLSA})
		}
	}
	return f
}

// MX lookup outcomes other than "found".
var (
	dnssec       fact = func(f *Facts) { f.MXSecure = true }
	nullMXRecord fact = func(f *Facts) { f.MX, f.MXDetail = MXNull, "0 ." }
	nxdomain     fact = func(f *Facts) { f.MX, f.MXDetail = MXNone, "example.com: NXDOMAIN" }
	mxServfail   fact = func(f *Facts) { f.MX, f.MXDetail = MXError, "MX lookup of example.com: SERVFAIL" }
	implicitMX   fact = func(f *Facts) { f.MX, f.MXDetail = MXImplicit, "no MX records; example.com has an address" }
)

// mx is one address of host, probed, with what the session showed.
func mx(host string, r smtpprobe.Result, opts ...func(*Attempt)) fact {
	return func(f *Facts) {
		a := Attempt{Host: host, Result: r}
		for _, o := range opts {
			o(&a)
		}
		f.Attempts = append(f.Attempts, a)
	}
}

// unresolvable is a host whose addresses could not be found.
func unresolvable(host string, temporary bool) fact {
	return func(f *Facts) {
		a := Attempt{Host: host, DNSError: host + ": NXDOMAIN", DNSTemporary: temporary}
		if temporary {
			a.DNSError = "A lookup of " + host + ": SERVFAIL"
		}
		f.Attempts = append(f.Attempts, a)
	}
}

// rateLimited is an address the rate limit kept the probe from.
func rateLimited(host string) fact {
	return func(f *Facts) { f.Attempts = append(f.Attempts, Attempt{Host: host, RateLimited: true}) }
}

func sts(r *mtasts.Result) fact { return func(f *Facts) { f.STS = r } }

// Attempt options: the host's DANE data, the address limit.
var (
	noTLSA          = func(a *Attempt) { a.TLSA = TLSA{Status: TLSANone, Base: a.Host} }
	tlsaLookupFails = func(a *Attempt) {
		a.TLSA = TLSA{Status: TLSAError, Base: a.Host, Error: "TLSA lookup of _25._tcp." + a.Host + ": SERVFAIL"}
	}
	beyondLimit = func(a *Attempt) { a.BeyondLimit = true }
)

func tlsa(rs ...*dns.TLSA) func(*Attempt) {
	return func(a *Attempt) { a.TLSA = TLSA{Status: TLSAFound, Base: a.Host, Records: rs} }
}

// TLSA records (RFC 6698 §2.1): usage, selector 1 (public key), SHA2-256, or for
// DANE-TA selector 0 (the whole CA certificate).
func daneEE(c *x509.Certificate) *dns.TLSA { return tlsaRR(3, 1, c.RawSubjectPublicKeyInfo) }
func daneTA(c *x509.Certificate) *dns.TLSA { return tlsaRR(2, 0, c.Raw) }
func pkixEE(c *x509.Certificate) *dns.TLSA { return tlsaRR(1, 1, c.RawSubjectPublicKeyInfo) }

func tlsaRR(usage, selector uint8, data []byte) *dns.TLSA {
	sum := sha256.Sum256(data)
	return &dns.TLSA{Hdr: dns.RR_Header{Rrtype: dns.TypeTLSA, Class: dns.ClassINET, Ttl: 300},
		Usage: usage, Selector: selector, MatchingType: 1, Certificate: hex.EncodeToString(sum[:])}
}

// legacy is r negotiated at version by Go, with the server's answers to Postfix's
// opportunistic and authenticating ClientHellos.
func legacy(r smtpprobe.Result, version uint16, opp, auth *smtpprobe.Hello) smtpprobe.Result {
	if r.Outcome == smtpprobe.OutcomeTLS {
		r.TLSVersion = version
	}
	r.Opportunistic, r.Authenticated = opp, auth
	return r
}

// goFailed is r's chain, as the answer to Postfix's ClientHello carried it, after a
// failed Go handshake: both of Postfix's ClientHellos got answer.
func goFailed(r smtpprobe.Result, answer *smtpprobe.Hello) smtpprobe.Result {
	r.Stage, r.Outcome, r.Detail, r.TLSVersion = smtpprobe.StageEHLO, smtpprobe.OutcomeHandshakeError, "TLS handshake failed: remote error: tls: handshake failure", 0
	r.Opportunistic, r.Authenticated = answer, answer
	return r
}

// Sessions that ended before a certificate was seen, as smtpprobe records them.
var (
	noSTARTTLS     = smtpprobe.Result{Stage: smtpprobe.StageEHLO, Outcome: smtpprobe.OutcomeNoStartTLS, Detail: "STARTTLS not offered in the EHLO reply"}
	handshakeFails = smtpprobe.Result{Stage: smtpprobe.StageEHLO, Outcome: smtpprobe.OutcomeHandshakeError, Detail: "TLS handshake failed: remote error: tls: handshake failure"}
	timedOut       = smtpprobe.Result{Stage: smtpprobe.StageConnected, Outcome: smtpprobe.OutcomeTimeout, Detail: "no greeting within 30s"}
	greylisted     = smtpprobe.Result{Stage: smtpprobe.StageGreeting, Outcome: smtpprobe.OutcomeGreylisted, Detail: "greeting 450 4.7.1 try again later"}
	refused        = smtpprobe.Result{Outcome: smtpprobe.OutcomeRefused, Detail: "connection refused"}
	rejected       = smtpprobe.Result{Stage: smtpprobe.StageGreeting, Outcome: smtpprobe.OutcomeRejected, Detail: "greeting 554 5.7.1 no SMTP service here"}
	garbled        = smtpprobe.Result{Stage: smtpprobe.StageGreeting, Outcome: smtpprobe.OutcomeProtocolError, Detail: "connection closed after the greeting"}
	notAllowed     = smtpprobe.Result{Outcome: smtpprobe.OutcomeNotAllowed, Detail: "192.0.2.10 is not a public address; not probed"}
)

// MTA-STS lookups (mtasts.Client.Lookup results).
var (
	stsModeNone    = &mtasts.Result{Status: mtasts.StatusPolicy, ID: "1", Policy: &mtasts.Policy{Mode: mtasts.ModeNone, MaxAge: 24 * time.Hour}}
	stsFetchFailed = &mtasts.Result{Status: mtasts.StatusNone, ID: "1", Problem: tlsrpt.STSPolicyFetchError, Detail: "GET https://mta-sts.example.com/.well-known/mta-sts.txt: 404"}
	stsInvalid     = &mtasts.Result{Status: mtasts.StatusNone, ID: "1", Problem: tlsrpt.STSPolicyInvalid, Detail: "mtasts: invalid policy: no mode"}
	stsTXTFails    = &mtasts.Result{Status: mtasts.StatusError, Problem: tlsrpt.STSPolicyFetchError, Detail: "TXT lookup of _mta-sts.example.com: SERVFAIL"}
)

func enforce(mx ...string) *mtasts.Result    { return stsPolicy(mtasts.ModeEnforce, mx) }
func stsTesting(mx ...string) *mtasts.Result { return stsPolicy(mtasts.ModeTesting, mx) }

func stsPolicy(mode mtasts.Mode, mx []string) *mtasts.Result {
	return &mtasts.Result{Status: mtasts.StatusPolicy, ID: "1", Detail: "policy fetched",
		Policy: &mtasts.Policy{Mode: mode, MaxAge: 7 * 24 * time.Hour, MX: mx}}
}

func cachedAfterFailure(r *mtasts.Result) *mtasts.Result {
	c := *r
	c.Cached, c.Problem, c.Detail = true, tlsrpt.STSPolicyFetchError, "policy fetch for id 2 failed, using the cached policy"
	return &c
}

// asCached returns f as the Verifier caches it: each attempt's leaf summarised and its
// DANE check done while the chain was at hand, then the chains dropped.
func asCached(f *Facts) *Facts {
	c := &Facts{Domain: f.Domain, MX: f.MX, MXSecure: f.MXSecure, MXDetail: f.MXDetail,
		Hosts: f.Hosts, Attempts: slices.Clone(f.Attempts), STS: f.STS, Checked: f.Checked}
	for i := range c.Attempts {
		a := &c.Attempts[i]
		if leaf := a.Result.Leaf(); leaf != nil {
			a.Cert = summarize(leaf)
		}
		a.recordDANE(c)
	}
	c.compact()
	return c
}

// judgeKit makes the certificates of the table: a CA the probe trusts, one it does
// not, and the time the facts were gathered.
type judgeKit struct {
	t         *testing.T
	now       time.Time
	ca        *fake.CA            // the probe's trust anchor (probe.ca_file)
	rogue     *fake.CA            // a CA nobody trusts
	private   *fake.CA            // a domain's own CA, published as DANE-TA
	pinned    []*x509.Certificate // pinned by its certificate digest
	keyPinned []*x509.Certificate // pinned by its public-key digest
}

func newJudgeKit(t *testing.T) *judgeKit {
	k := &judgeKit{t: t, now: time.Now(),
		ca: fake.NewCA(t, "Trusted Root"), rogue: fake.NewCA(t, "Rogue Root"), private: fake.NewCA(t, "example.com private CA")}
	past := k.now.Add(-48 * time.Hour)
	k.pinned = chainOf(fake.SelfSigned(t, fake.CertOptions{DNSNames: []string{"pinned.invalid"}, NotAfter: past}))
	k.keyPinned = k.trusted(mx1)
	return k
}

func chainOf(c tls.Certificate) []*x509.Certificate {
	chain := make([]*x509.Certificate, len(c.Certificate))
	for i, der := range c.Certificate {
		var err error
		if chain[i], err = x509.ParseCertificate(der); err != nil {
			panic(err)
		}
	}
	return chain
}

func (k *judgeKit) trusted(name string) []*x509.Certificate {
	return chainOf(k.ca.Issue(k.t, fake.CertOptions{DNSNames: []string{name}}))
}

func (k *judgeKit) untrusted(name string) []*x509.Certificate {
	return chainOf(k.rogue.Issue(k.t, fake.CertOptions{DNSNames: []string{name}}))
}

func (k *judgeKit) expiredCert(name string) []*x509.Certificate {
	return chainOf(k.ca.Issue(k.t, fake.CertOptions{DNSNames: []string{name}, NotAfter: k.now.Add(-48 * time.Hour)}))
}

func (k *judgeKit) selfSigned(name string) []*x509.Certificate {
	return chainOf(fake.SelfSigned(k.t, fake.CertOptions{DNSNames: []string{name}}))
}

// privateCA is a leaf from the domain's own CA, with the CA certificate in the chain as
// DANE-TA(2) needs (RFC 7671 §5.2.2: the server sends its trust anchor).
func (k *judgeKit) privateCA(name string) []*x509.Certificate {
	return append(chainOf(k.private.Issue(k.t, fake.CertOptions{DNSNames: []string{name}})), k.private.Cert)
}

// tlsOK is a completed STARTTLS session presenting chain, with the PKIX verdict the
// probe reaches against the trusted CA (smtpprobe verifies the chain, not the names).
func (k *judgeKit) tlsOK(chain []*x509.Certificate) smtpprobe.Result {
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	_, pkixErr := chain[0].Verify(x509.VerifyOptions{Roots: k.ca.Pool, Intermediates: inter, CurrentTime: k.now,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
	return smtpprobe.Result{Stage: smtpprobe.StageDone, Outcome: smtpprobe.OutcomeTLS, TLSVersion: tls.VersionTLS13,
		Chain: chain, PKIX: pkixErr}
}

func spkiFingerprint(c *x509.Certificate) string {
	return fingerprint.Of(c.RawSubjectPublicKeyInfo)
}
