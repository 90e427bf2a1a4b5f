package verify

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/miekg/dns"

	"github.com/tlsgate/tlsgate/internal/dane"
	"github.com/tlsgate/tlsgate/internal/fingerprint"
	"github.com/tlsgate/tlsgate/internal/mtasts"
	"github.com/tlsgate/tlsgate/internal/smtpprobe"
	"github.com/tlsgate/tlsgate/policy"
)

// Judge decides whether f allows delivery at the level p requires, the way Postfix's SMTP
// client would decide at delivery time. It does no I/O and is safe to call concurrently.
//
// Postfix tries the attempts in order and delivers over the first one whose session meets
// the level (TLS_README: with mandatory TLS a host that fails is skipped and the next
// one tried). So: pass if any attempt meets the level; otherwise fail when every attempt
// failed for a reason that will be the same next time (no STARTTLS, bad certificate,
// host not found); otherwise tempfail, because Postfix would defer and retry.
func Judge(f *Facts, p policy.Policy) Verdict {
	v := Verdict{
		Domain:    f.Destination(),
		Level:     p.Level,
		Mechanism: mechanismFor(p.Level),
		Checked:   f.Checked,
		Until:     f.Until,
	}
	if !p.Level.Probed() {
		// none, may: Postfix delivers with or without TLS.
		v.Status, v.Mechanism = StatusPass, MechNone
		return v
	}
	if !p.Level.Valid() {
		v.Status, v.Reason = StatusTempfail, ReasonInternal
		v.Detail = fmt.Sprintf("level %s is not supported by this version", p.Level)
		return v
	}
	switch f.MX {
	case MXError:
		v.Status, v.Reason, v.Detail = StatusTempfail, ReasonDNSError, f.MXDetail
		return v
	case MXNull:
		// RFC 7505 §3: a null MX means the domain accepts no mail.
		v.Status, v.Reason, v.Detail = StatusFail, ReasonNullMX, "the domain publishes a null MX: it accepts no mail"
		return v
	case MXNone:
		v.Status, v.Reason, v.Detail = StatusFail, ReasonNoMX, f.MXDetail
		return v
	}
	if !f.MXSecure && p.Level == policy.LevelDaneOnly {
		// RFC 7672 §2.2.1: DANE needs a DNSSEC-validated MX RRset. For "dane", Postfix
		// (smtp_tls_dane_insecure_mx_policy = dane, the default since 3.6) still uses
		// the secure TLSA records of a secure MX host found through an insecure MX
		// lookup and falls back to "may" for the others: judged per attempt below.
		v.Status, v.Reason, v.Detail = StatusFail, ReasonDNSSECInvalid, "the MX records of "+f.Domain+" are not DNSSEC-validated; dane-only needs DNSSEC"
		return v
	}

	if p.Level == policy.LevelPublished {
		return judgePublished(v, f, p)
	}
	return judgeAttempts(v, f, p, func(a *Attempt) bool { return !a.BeyondLimit })
}

// judgeAttempts judges the attempts use selects, in order, as Postfix would try them.
func judgeAttempts(v Verdict, f *Facts, p policy.Policy, use func(*Attempt) bool) Verdict {
	var failure *AttemptVerdict
	failRank, transient := -1, false
	for i := range f.Attempts {
		a := &f.Attempts[i]
		if !use(a) {
			continue
		}
		av, rank, definite := judgeAttempt(a, f, p)
		v.Attempts = append(v.Attempts, av)
		if av.Pass {
			v.Status, v.Reason, v.Detail = StatusPass, ReasonNone, av.Detail
			if av.Mechanism != "" {
				v.Mechanism = av.Mechanism
			}
			v.MX, v.IP, v.TLSVersion = a.Host, a.Result.IP, a.Result.TLSVersionName()
			return v
		}
		if !definite {
			if !transient {
				failure, transient = &v.Attempts[len(v.Attempts)-1], true
			}
			continue
		}
		// Report the definite failure that got furthest (a certificate problem says
		// more than "host not found"), the first one among equals.
		if !transient && rank > failRank {
			failure, failRank = &v.Attempts[len(v.Attempts)-1], rank
		}
	}
	if failure == nil {
		v.Status, v.Reason, v.Detail = StatusFail, ReasonNoMX, "no MX host has an address"
		return v
	}
	v.Status = StatusFail
	if transient {
		v.Status = StatusTempfail
	}
	v.Reason, v.Detail, v.MX, v.IP = failure.Reason, failure.Detail, failure.Host, failure.IP
	return v
}

// judgePublished requires what the domain publishes (tlsgate's level "published"):
//
//   - DANE where it applies: some MX host Postfix would contact has DNSSEC-validated
//     TLSA records. Judged as Postfix's "dane" level. RFC 8461 §2: a sender that
//     validates DANE uses it instead of MTA-STS, so an MTA-STS policy can neither
//     weaken nor rescue a DANE verdict. A failed TLSA lookup of a secure host is a
//     tempfail, never a fall-back to MTA-STS (RFC 7672 §2.2).
//   - else the MTA-STS policy in mode enforce (RFC 8461 §5) or testing (delivery goes
//     ahead; the verdict passes and records what enforce would have said);
//   - else nothing: the domain publishes no TLS requirement.
func judgePublished(v Verdict, f *Facts, p policy.Policy) Verdict {
	usableTLSA, unusableTLSA := false, false
	for i := range f.Attempts {
		a := &f.Attempts[i]
		if a.BeyondLimit {
			continue
		}
		switch a.TLSA.Status {
		case TLSAError:
			usableTLSA = true // judged as dane: a tempfail for this host
		case TLSAFound:
			if len(dane.UsableRecords(a.TLSA.Records)) > 0 {
				usableTLSA = true
			} else {
				unusableTLSA = true
			}
		}
	}
	dp := p
	dp.Level = policy.LevelDane
	if usableTLSA {
		v.Mechanism = MechDANE
		return judgeAttempts(v, f, dp, func(a *Attempt) bool { return !a.BeyondLimit })
	}
	sts := f.STS
	switch {
	case sts != nil && sts.Status == mtasts.StatusError:
		v.Status, v.Reason = StatusTempfail, ReasonDNSError
		v.Detail = "the MTA-STS record of " + f.Domain + " could not be looked up: " + sts.Detail
		return v
	case sts != nil && sts.Policy != nil && sts.Policy.Mode != mtasts.ModeNone:
		return judgeSTS(v, f, sts)
	case unusableTLSA:
		// RFC 7672 §2.2: TLSA records that are all unusable still mean "TLS is
		// mandatory": Postfix's dane level is encrypt for those hosts.
		v.Mechanism = MechDANE
		return judgeAttempts(v, f, dp, func(a *Attempt) bool { return !a.BeyondLimit })
	}
	if addressUnknown(f) {
		// No host Postfix would try has an address, and some lookup failed, so no host
		// was asked for TLSA: what the domain publishes is unknown, and a DNS error
		// never becomes a pass (RFC 7672 §2.2).
		return judgeAttempts(v, f, dp, func(a *Attempt) bool { return !a.BeyondLimit })
	}
	v.Status, v.Mechanism = StatusPass, MechNone
	v.Detail = f.Domain + " publishes neither TLSA records nor an MTA-STS policy; nothing is required"
	switch {
	case sts == nil && isNextHopKey(f.Domain):
		// RFC 8461 §4: MTA-STS is the recipient domain's, for delivery to its MX hosts.
		v.Detail = "next hop " + f.Domain + " has no usable TLSA records, and MTA-STS does not apply to a next hop; nothing is required"
	case sts == nil:
		v.Detail = f.Domain + " publishes no usable TLSA records, and MTA-STS lookups are disabled (mta_sts.enabled: false); nothing is required"
	}
	if sts != nil && sts.Problem != "" {
		// RFC 8461 §5: no policy could be had, so delivery goes ahead as though there
		// were none; the header records why.
		v.Reason = Reason(sts.Problem)
		v.Detail = f.Domain + " has an MTA-STS record but no policy could be fetched, so none applies (RFC 8461 §5): " + sts.Detail
	}
	return v
}

// addressUnknown reports whether no host Postfix would try has an address and some
// host's address lookup failed temporarily (SERVFAIL, timeout), rather than NXDOMAIN.
func addressUnknown(f *Facts) bool {
	temporary := false
	for i := range f.Attempts {
		a := &f.Attempts[i]
		if a.BeyondLimit {
			continue
		}
		if a.DNSError == "" {
			return false
		}
		temporary = temporary || a.DNSTemporary
	}
	return temporary
}

// judgeSTS applies an MTA-STS policy (RFC 8461 §4): only MX hosts the policy lists are
// used (§4.1), and their certificate must be PKIX-valid for the MX host name (§4.2),
// exactly the checks of Postfix's "verify" level with match=hostname.
func judgeSTS(v Verdict, f *Facts, sts *mtasts.Result) Verdict {
	pol := sts.Policy
	v.Mechanism, v.STSMode = MechMTASTS, pol.Mode.String()
	listed := func(a *Attempt) bool { return pol.Allows(a.Host) }
	if !slices.ContainsFunc(f.Attempts, func(a Attempt) bool { return listed(&a) }) {
		names := make([]string, len(f.Hosts))
		for i, h := range f.Hosts {
			names[i] = h.Name
		}
		v.Status, v.Reason = StatusFail, ReasonSTSMXMismatch
		v.Detail = fmt.Sprintf("none of the MX hosts (%s) is listed in the MTA-STS policy (mx: %s)",
			strings.Join(names, ", "), strings.Join(pol.MX, ", "))
	} else {
		// As Postfix with the socketmap's servername=hostname: on the sessions that
		// sent the MX host name (sni.go).
		v = judgeAttempts(v, withHostSNI(f), policy.Policy{Level: policy.LevelVerify}, listed)
		if v.Status == StatusPass && v.Mechanism == MechPKIX {
			v.Mechanism = MechMTASTS
		}
	}
	if pol.Mode == mtasts.ModeTesting && v.Status != StatusPass {
		// RFC 8461 §5: in testing mode the sender delivers anyway (and reports).
		v.Status = StatusPass
		v.Detail = "MTA-STS policy in testing mode, delivery goes ahead; enforce would fail: " + v.Detail
	}
	return v
}

func mechanismFor(l policy.Level) Mechanism {
	switch l {
	case policy.LevelEncrypt:
		return MechSTARTTLS
	case policy.LevelFingerprint:
		return MechFingerprint
	case policy.LevelVerify, policy.LevelSecure:
		return MechPKIX
	case policy.LevelDane, policy.LevelDaneOnly:
		return MechDANE
	}
	return MechNone
}

// judgeAttempt judges one attempt. rank orders definite failures by how far they got.
func judgeAttempt(a *Attempt, f *Facts, p policy.Policy) (av AttemptVerdict, rank int, definite bool) {
	domain := f.NextHopName() // "nexthop": the recipient domain or the next hop's host
	r := &a.Result
	av = AttemptVerdict{Host: a.Host, IP: r.IP}
	// where names the host in details; built only when a detail is.
	where := func() string {
		if r.IP.IsValid() {
			return a.Host + "[" + r.IP.String() + "]"
		}
		return a.Host
	}
	fail := func(reason Reason, rank int, definite bool, format string, args ...any) (AttemptVerdict, int, bool) {
		av.Reason, av.Detail = reason, where()+": "+fmt.Sprintf(format, args...)
		return av, rank, definite
	}
	// A host without an address was never asked for TLSA: its DNS error decides, at
	// every level, before "dane-only needs TLSA" could turn a SERVFAIL into a 5xx.
	if a.DNSError != "" {
		if a.DNSTemporary {
			return fail(ReasonDNSError, 0, false, "%s", a.DNSError)
		}
		return fail(ReasonNoMX, 0, true, "%s", a.DNSError)
	}
	daneLevel := p.Level == policy.LevelDane || p.Level == policy.LevelDaneOnly
	var usable []*dns.TLSA
	if daneLevel {
		switch a.TLSA.Status {
		case TLSAError:
			// RFC 7672 §2.2: a failed TLSA lookup of a secure host is not "no TLSA".
			return fail(ReasonDNSError, 0, false, "%s", a.TLSA.Error)
		case TLSAFound:
			usable = dane.UsableRecords(a.TLSA.Records)
		}
		if a.TLSA.Status != TLSAFound && p.Level == policy.LevelDaneOnly {
			return fail(ReasonTLSAInvalid, 1, true, "no DNSSEC-validated TLSA records (%s); dane-only needs them", a.TLSA.Status)
		}
	}
	if a.RateLimited {
		return fail(ReasonRateLimited, 0, false, "not probed: this address was probed too often in the last minute")
	}
	if p.Level == policy.LevelDane && a.TLSA.Status != TLSAFound {
		// No TLSA for this host: Postfix's "dane" is opportunistic TLS here ("may"):
		// any session that reaches EHLO delivers, in cleartext if need be.
		switch r.Outcome {
		case smtpprobe.OutcomeTLS, smtpprobe.OutcomeNoStartTLS, smtpprobe.OutcomeHandshakeError:
			av.Pass, av.Mechanism = true, MechNone
			av.Detail = where() + ": no TLSA records, opportunistic TLS"
			return av, 0, true
		}
	}
	// Postfix authenticates the server above encrypt (and for dane with usable TLSA):
	// OpenSSL runs at security level 1 there, at 0 below (smtpprobe.Offer).
	authenticated := p.Level != policy.LevelEncrypt && (!daneLevel || len(usable) > 0)
	outcome, version, vnum := r.Outcome, r.TLSVersionName(), r.TLSVersion
	hello := postfixHello(r, authenticated)
	if hello != nil {
		offer := smtpprobe.OfferOpportunistic
		if authenticated {
			offer = smtpprobe.OfferAuthenticated
		}
		switch ok, known, why := hello.Completes(offer); {
		case !known:
			return fail(ReasonProtocolError, 0, false, "%s", why)
		case !ok:
			return fail(ReasonHandshakeFailure, 2, true, "%s", why)
		}
		// Postfix's handshake completes, whatever Go's did: the chain (Go's, or the
		// one the answer carried) is judged below.
		outcome = smtpprobe.OutcomeTLS
		if hello.Version != 0 {
			v := smtpprobe.Result{TLSVersion: hello.Version}
			version, vnum = v.TLSVersionName(), hello.Version
		}
	}
	if outcome == smtpprobe.OutcomeTLS {
		if msg, definite := protocolsRefuse(p, vnum); msg != "" {
			return fail(ReasonHandshakeFailure, 2, definite, "%s", msg)
		}
	}
	switch outcome {
	case smtpprobe.OutcomeTLS:
	case smtpprobe.OutcomeNoStartTLS:
		return fail(ReasonSTARTTLSNotSupported, 1, true, "%s", r.Detail)
	case smtpprobe.OutcomeHandshakeError:
		return fail(ReasonHandshakeFailure, 2, true, "%s", r.Detail)
	case smtpprobe.OutcomeGreylisted:
		return fail(ReasonGreylisted, 0, false, "%s", r.Detail)
	case smtpprobe.OutcomeRejected, smtpprobe.OutcomeRefused:
		return fail(ReasonConnectionRefused, 0, false, "%s", r.Detail)
	case smtpprobe.OutcomeTimeout:
		return fail(ReasonTimeout, 0, false, "%s", r.Detail)
	case smtpprobe.OutcomeNotAllowed:
		return fail(ReasonProbeNotAllowed, 0, false, "%s", r.Detail)
	case smtpprobe.OutcomeProtocolError:
		return fail(ReasonProtocolError, 0, false, "%s", r.Detail)
	default:
		return fail(ReasonInternal, 0, false, "not probed")
	}
	leaf := a.cert()
	if leaf == nil && !authenticated && hello != nil {
		// An anonymous suite (OpenSSL's security level 0 offers them): Postfix logs
		// "Anonymous TLS connection established" and delivers at encrypt.
		av.Pass, av.Detail = true, where()+": "+version+", anonymous cipher suite"
		if daneLevel {
			av.Mechanism = MechSTARTTLS
		}
		return av, 0, true
	}
	if leaf == nil {
		return fail(ReasonHandshakeFailure, 2, true, "no certificate presented")
	}

	switch p.Level {
	case policy.LevelDane, policy.LevelDaneOnly:
		if len(usable) == 0 && p.Level == policy.LevelDaneOnly {
			return fail(ReasonTLSAInvalid, 3, true, "none of the %d TLSA records is usable for SMTP (RFC 7672 §3.1.3); dane-only needs one", len(a.TLSA.Records))
		}
		if len(usable) == 0 {
			// RFC 7672 §2.2: TLSA records exist but none is usable: TLS is mandatory,
			// unauthenticated (Postfix: "encrypt" for this host).
			av.Mechanism = MechSTARTTLS
			break
		}
		// RFC 7672 §3.2.2: reference identifiers are the TLSA base domain and the
		// next-hop domain.
		if res := a.daneResult(usable, f); res.Error != "" {
			return fail(ReasonTLSAInvalid, 3, true, "%s", res.Error)
		}
		av.Mechanism = MechDANE
	case policy.LevelEncrypt:
		// TLS_README "Mandatory TLS encryption": any certificate will do.
	case policy.LevelFingerprint:
		// TLS_README "Certificate fingerprint verification": the leaf certificate's or its
		// public key's digest must be listed; names, expiry and chain are ignored.
		if !fingerprintMatches(leaf, p.Match) {
			return fail(ReasonFingerprintMismatch, 3, true, "certificate fingerprint %s matches no match= entry", leaf.Fingerprint())
		}
	case policy.LevelVerify, policy.LevelSecure:
		// TLS_README "Mandatory server certificate verification" / "Secure server
		// certificate verification": chain to a trusted CA, then a name from match=.
		// With tafile=, to one of its trust anchors instead of a CA (postconf(5)
		// smtp_tls_trust_anchor_file: CAfile and CApath "are no longer trusted").
		if _, hasTA := p.Attrs["tafile"]; hasTA {
			switch ta := a.TA; {
			case ta == nil || !ta.Done:
				// Facts probed without these trust anchors: never a pass.
				return fail(ReasonInternal, 0, false, "the certificate was not checked against the tafile= trust anchors")
			case ta.Reason == ReasonPolicyInvalid:
				// tls_dane_load_trustfile failed: Postfix treats the policy as
				// invalid and defers.
				return fail(ReasonPolicyInvalid, 0, false, "%s", ta.Error)
			case ta.Error != "":
				return fail(ta.Reason, 3, true, "%s", ta.Error)
			}
		} else if r.PKIX != nil {
			reason, msg := pkixReason(r.PKIX)
			return fail(reason, 3, true, "%s", msg)
		}
		refs := referenceNames(p, a.Host, domain)
		if !namesMatch(leaf, refs) {
			return fail(ReasonCertHostMismatch, 4, true, "certificate names %s match none of %s",
				strings.Join(leaf.Names, ", "), strings.Join(refs, ", "))
		}
	default:
		return fail(ReasonInternal, 0, false, "level %s cannot be judged", p.Level)
	}
	av.Pass = true
	av.Detail = where() + ": " + version
	return av, 0, true
}

// protocolsRefuse says why Postfix's handshake fails under the policy's protocols=
// attribute (postconf(5) smtp_tls_policy_maps "protocols"), given the version the
// probe negotiated offering every version up to TLS 1.3, which is the highest the
// server speaks; "" when it does not fail. A server speaks every version from its
// lowest to its highest: a server at TLS 1.3 speaks TLS 1.2 (RFC 9325 §3.1.1,
// "implementations MUST support TLS 1.2"); whether it still speaks 1.1 or 1.0 the probe
// does not know, and that is not a definite failure.
func protocolsRefuse(p policy.Policy, negotiated uint16) (msg string, definite bool) {
	set, ok := p.Protocols()
	if !ok || negotiated == 0 || set.Allows(negotiated) {
		return "", false
	}
	attr := "protocols=" + p.Attrs["protocols"]
	switch high := set.Highest(); {
	case high == 0:
		return fmt.Sprintf("the policy's %s leaves no protocol version to offer", attr), true
	case high > negotiated:
		return fmt.Sprintf("the server speaks at most %s; the policy's %s allows only %s",
			tls.VersionName(negotiated), attr, set), true
	case high == tls.VersionTLS12 && negotiated == tls.VersionTLS13:
		return "", false
	}
	return fmt.Sprintf("the server negotiated %s; whether it speaks %s, all the policy's %s allows, is not known",
		tls.VersionName(negotiated), set, attr), false
}

// postfixHello is the server's answer to the ClientHello Postfix sends at this level,
// when the probe asked for it (smtpprobe.Result.Opportunistic, Authenticated): then it,
// not Go's handshake, says whether Postfix's handshake completes. nil: Go's result
// stands (TLS 1.2 and up, where Go and OpenSSL agree, or no handshake at all).
func postfixHello(r *smtpprobe.Result, authenticated bool) *smtpprobe.Hello {
	if r.Outcome != smtpprobe.OutcomeTLS && r.Outcome != smtpprobe.OutcomeHandshakeError {
		return nil
	}
	if authenticated {
		return r.Authenticated
	}
	// At security level 0 OpenSSL accepts every TLS 1.0/1.1 session Go completes (SHA-1
	// signatures included): the answer is only asked for when Go's handshake failed.
	return r.Opportunistic
}

// referenceNames expands a policy's match= list into the names a certificate may carry
// (postconf(5) smtp_tls_verify_cert_match, default "hostname";
// smtp_tls_secure_cert_match, default "nexthop, dot-nexthop").
func referenceNames(p policy.Policy, mxHost, nexthop string) []string {
	match := p.Match
	if len(match) == 0 {
		if p.Level == policy.LevelSecure {
			match = []string{"nexthop", "dot-nexthop"}
		} else {
			match = []string{"hostname"}
		}
	}
	var refs []string
	for _, m := range match {
		switch strings.ToLower(m) {
		case "hostname":
			refs = append(refs, mxHost)
		case "nexthop":
			refs = append(refs, nexthop)
		case "dot-nexthop":
			refs = append(refs, "."+nexthop)
		default:
			refs = append(refs, strings.ToLower(m))
		}
	}
	return refs
}

func namesMatch(leaf *CertInfo, refs []string) bool {
	for _, cn := range leaf.Names {
		for _, ref := range refs {
			if matchName(cn, ref) {
				return true
			}
		}
	}
	return false
}

// pkixReason maps a chain verification error to an RFC 8460 result type.
func pkixReason(err error) (Reason, string) {
	switch pkixKindOf(err) {
	case pkixExpired:
		return ReasonCertExpired, "certificate expired or not yet valid: " + err.Error()
	case pkixUnknownAuthority:
		return ReasonCertNotTrusted, "certificate not signed by a trusted CA: " + err.Error()
	}
	return ReasonValidationFailure, "certificate verification failed: " + err.Error()
}

// pkixKind classifies a chain verification error: the one distinction the judge makes
// (pkixReason) and the verdict cache file keeps (storedResult).
type pkixKind string

const (
	pkixExpired          pkixKind = "expired"           // x509.Expired: expired or not yet valid
	pkixUnknownAuthority pkixKind = "unknown-authority" // no chain to the roots
	pkixOther            pkixKind = "other"             // anything else (names are not checked there)
)

func pkixKindOf(err error) pkixKind {
	var inv x509.CertificateInvalidError
	if errors.As(err, &inv) && inv.Reason == x509.Expired {
		return pkixExpired
	}
	var ua x509.UnknownAuthorityError
	if errors.As(err, &ua) {
		return pkixUnknownAuthority
	}
	return pkixOther
}

// fingerprintMatches compares the leaf certificate's and public key's SHA-256 digests
// with the match= fingerprints (Postfix notation: hex pairs separated by ':'; separators
// and case are ignored). Postfix compares one digest, smtp_tls_fingerprint_digest,
// sha256 by default since 3.6: an MD5 or SHA-1 pin never matches there, so not here.
func fingerprintMatches(leaf *CertInfo, match []string) bool {
	for _, m := range match {
		want, ok := fingerprint.Parse(strings.TrimSpace(m))
		if !ok || len(want) != sha256.Size {
			continue
		}
		if string(want) == string(leaf.SHA256[:]) || string(want) == string(leaf.SPKISHA256[:]) {
			return true
		}
	}
	return false
}
