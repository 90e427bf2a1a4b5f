package verify

import (
	"net/netip"
	"time"

	"github.com/tlsgate/tlsgate/internal/tlsrpt"
	"github.com/tlsgate/tlsgate/policy"
)

// Status is the outcome of judging a level.
type Status int

// Statuses. The zero value is tempfail: a Verdict that was never filled in must not let
// mail through nor reject it.
const (
	StatusTempfail Status = iota // could not find out; try again later
	StatusPass                   // deliverable at the level
	StatusFail                   // definitely not deliverable at the level
)

func (s Status) String() string {
	return [...]string{"tempfail", "pass", "fail"}[s]
}

// Mechanism is what authenticated (or did not need to authenticate) the TLS session.
type Mechanism string

// Mechanisms, as the audit header and logs name them.
const (
	MechNone        Mechanism = "none"        // level none/may: nothing required
	MechSTARTTLS    Mechanism = "starttls"    // encrypt: any certificate
	MechFingerprint Mechanism = "fingerprint" // fingerprint: pinned certificate or key digest
	MechPKIX        Mechanism = "pkix"        // verify/secure: WebPKI chain and name
	MechDANE        Mechanism = "dane"        // TLSA records (RFC 7672)
	MechMTASTS      Mechanism = "mta-sts"     // an MTA-STS policy (RFC 8461)
)

// Reason is a machine-readable reason. Where one fits, it is an RFC 8460 §4.3 result
// type (internal/tlsrpt); the others are tlsgate's own.
type Reason string

// Reasons.
const (
	ReasonNone                   Reason = ""
	ReasonSTARTTLSNotSupported   Reason = Reason(tlsrpt.STARTTLSNotSupported)
	ReasonCertHostMismatch       Reason = Reason(tlsrpt.CertificateHostMismatch)
	ReasonCertExpired            Reason = Reason(tlsrpt.CertificateExpired)
	ReasonCertNotTrusted         Reason = Reason(tlsrpt.CertificateNotTrusted)
	ReasonValidationFailure      Reason = Reason(tlsrpt.ValidationFailure)
	ReasonTLSAInvalid            Reason = Reason(tlsrpt.TLSAInvalid)
	ReasonDNSSECInvalid          Reason = Reason(tlsrpt.DNSSECInvalid)
	ReasonSTSPolicyInvalid       Reason = Reason(tlsrpt.STSPolicyInvalid)
	ReasonSTSWebPKIInvalid       Reason = Reason(tlsrpt.STSWebPKIInvalid)
	ReasonSTSFetchError          Reason = Reason(tlsrpt.STSPolicyFetchError)
	ReasonSTSMXMismatch          Reason = "sts-mx-mismatch"      // no MX host is listed in the MTA-STS policy (RFC 8461 §4.1)
	ReasonFingerprintMismatch    Reason = "fingerprint-mismatch" // no fingerprint in match= fits the certificate
	ReasonHandshakeFailure       Reason = "handshake-failure"    // STARTTLS accepted, TLS handshake failed
	ReasonDNSError               Reason = "dns-error"            // SERVFAIL, timeout, refused
	ReasonTimeout                Reason = "timeout"              // SMTP server did not answer in time
	ReasonConnectionRefused      Reason = "connection-refused"   // TCP refused, or 5xx greeting/EHLO
	ReasonGreylisted             Reason = "greylisted"           // 4xx greeting, EHLO or STARTTLS
	ReasonProtocolError          Reason = "smtp-error"           // malformed SMTP, connection dropped
	ReasonNullMX                 Reason = "null-mx"              // RFC 7505
	ReasonNoMX                   Reason = "no-mx"                // NXDOMAIN, or no MX host with an address
	ReasonProbeNotAllowed        Reason = "probe-not-allowed"    // address outside probe.allow_networks
	ReasonRateLimited            Reason = "rate-limited"         // address probed too often (probe.rate_per_address)
	ReasonPolicyInvalid          Reason = "policy-invalid"       // the domain's tls_policy entry is one Postfix refuses (it defers the mail)
	ReasonOverloaded             Reason = "overloaded"           // too many probes waiting (probe queue full)
	ReasonVerificationInProgress Reason = "in-progress"          // the probe did not finish within rcpt_timeout
	ReasonInternal               Reason = "internal-error"       // our own failure
)

// Verdict is the judgement of one level for one domain.
type Verdict struct {
	Domain string
	// NextHop is the destination judged when it is not Domain's MX hosts: a
	// transport or relayhost next hop ("[gw.example]:2525", "relay.example").
	NextHop   string
	Level     policy.Level
	Status    Status
	Mechanism Mechanism
	Reason    Reason
	// Detail is a short human explanation of what was found, naming the host, e.g.
	// "mx1.example.com[192.0.2.1]: STARTTLS not offered in the EHLO reply".
	Detail     string
	MX         string     // the host used (pass) or whose failure is reported
	IP         netip.Addr // its address, when there was one
	TLSVersion string     // "TLSv1.3" when a session was made
	// STSMode is the mode of the MTA-STS policy that was applied ("enforce",
	// "testing"), "" when none was.
	STSMode string
	Checked time.Time
	Until   time.Time
	Cached  bool
	// Hosts carries the per-attempt findings for reports.
	Attempts []AttemptVerdict
}

// AttemptVerdict is how one attempt fared against the level.
type AttemptVerdict struct {
	Host      string
	IP        netip.Addr
	Pass      bool
	Mechanism Mechanism // what authenticated a passing attempt, when not the level's default
	Reason    Reason
	Detail    string
}
