package milter

import (
	"fmt"
	"strings"

	"github.com/tlsgate/tlsgate/internal/problem"
	"github.com/tlsgate/tlsgate/policy"
	"github.com/tlsgate/tlsgate/verify"
)

// Reply is an SMTP reply for one recipient: a code, an enhanced code (RFC 3463) and
// parts of text (the sentence for the sender, the finding, the operator's message).
//
// The parts go out on one line. Postfix accepts multi-line milter replies, but go-milter
// v0.10.2's reply formatter (milterutil.SMTPReplyTransformer) silently cuts the
// "550-5.7.5 " prefix of a continuation line that starts near the end of its output
// buffer, so multi-line replies would reach the sender mangled at some lengths.
type Reply struct {
	Code     uint16 // 451, 550, 556
	Enhanced string // "5.7.5"
	Parts    []string
}

// maxReplyLine is RFC 5321 §4.5.3.1.5's limit on a reply line: 512 octets including
// the three-digit code, its separator and CRLF.
const maxReplyLine = 512

// Text is the reply after the code, as handed to the MTA: the enhanced code and the
// parts, on one line of at most maxReplyLine octets. Parts that do not fit are dropped
// from the end; a first part that alone does not fit is cut at a word boundary.
func (r Reply) Text() string {
	limit := maxReplyLine - len("550 ") - len("\r\n")
	text := r.Enhanced
	for i, p := range r.Parts {
		if len(text)+1+len(p) <= limit {
			text += " " + p
			continue
		}
		if i == 0 {
			cut := p[:limit-len(text)-1-len("...")]
			if j := strings.LastIndexByte(cut, ' '); j > len(cut)/2 {
				cut = cut[:j]
			}
			text += " " + cut + "..."
		}
		break
	}
	return text
}

// String renders the reply as it appears on the wire (without the final CRLF).
func (r Reply) String() string {
	return fmt.Sprintf("%d %s", r.Code, r.Text())
}

// levelPhrase says what a verdict's level requires, in words a sender understands.
func levelPhrase(v verify.Verdict) string {
	domain := v.Domain
	switch l := v.Level; l {
	case policy.LevelPublished:
		switch v.Mechanism {
		case verify.MechDANE:
			return "encrypted delivery authenticated by the DANE records it publishes"
		case verify.MechMTASTS:
			return "encrypted delivery to the mail servers its MTA-STS policy lists"
		}
		return "the TLS protection it publishes (DANE or MTA-STS)"
	case policy.LevelEncrypt:
		return "encrypted delivery (TLS)"
	case policy.LevelFingerprint:
		return "encrypted delivery to a server with a pinned certificate (TLS fingerprint)"
	case policy.LevelVerify:
		return "encrypted delivery to a server with a verified certificate (TLS verify)"
	case policy.LevelSecure:
		return "encrypted delivery to a server with a certificate verified for " + domain + " (TLS secure)"
	case policy.LevelDane, policy.LevelDaneOnly:
		return "encrypted delivery authenticated by DANE (TLS " + l.String() + ")"
	}
	return "delivery at TLS level " + v.Level.String()
}

// failPhrase says what went wrong for a reason, completing "..., but ...".
func failPhrase(r verify.Reason) string {
	switch r {
	case verify.ReasonSTARTTLSNotSupported:
		return "its mail servers do not offer it"
	case verify.ReasonHandshakeFailure:
		return "the encrypted connection to its mail servers fails"
	case verify.ReasonCertExpired:
		return "its mail server's certificate has expired"
	case verify.ReasonCertNotTrusted:
		return "its mail server's certificate is not issued by a trusted authority"
	case verify.ReasonCertHostMismatch:
		return "its mail server's certificate is not valid for the server's name"
	case verify.ReasonFingerprintMismatch:
		return "its mail server's certificate does not match the pinned fingerprint"
	case verify.ReasonValidationFailure:
		return "its mail server's certificate could not be verified"
	case verify.ReasonTLSAInvalid:
		return "its mail servers cannot be authenticated with their DANE (TLSA) records"
	case verify.ReasonDNSSECInvalid:
		return "its MX records are not DNSSEC-signed"
	case verify.ReasonSTSMXMismatch:
		return "none of its mail servers is listed in its MTA-STS policy"
	case verify.ReasonGreylisted:
		return "its mail servers asked us to try again later"
	case verify.ReasonTimeout:
		return "its mail servers did not answer in time"
	case verify.ReasonConnectionRefused:
		return "its mail servers refused the connection"
	case verify.ReasonProtocolError:
		return "its mail servers' replies could not be understood"
	case verify.ReasonDNSError:
		return "its mail servers could not be looked up in the DNS"
	case verify.ReasonProbeNotAllowed:
		return "its mail servers are on a network this server is not allowed to check"
	case verify.ReasonRateLimited:
		return "its mail servers were checked too often in the last minute"
	}
	return "it could not be checked"
}

// ReplyFor maps a verdict that is not accepted to the SMTP reply. temporary selects a 4xx
// reply (tempfail verdicts always; fail verdicts when the configured action is tempfail).
// extra is the operator's reject_message, appended as its own line when not empty.
//
// Enhanced codes (RFC 3463, IANA "SMTP Enhanced Status Codes"): X.7.5 "Cryptographic
// failure" for TLS problems, as Postfix's own SMTP client uses 4.7.5 when mandatory TLS
// fails; 5.1.10 for a null MX (RFC 7505 §4.2); X.1.2 "Bad destination system address"
// for a domain without mail servers; 4.4.3 "Directory server failure" for DNS errors;
// 4.7.0 while verification is in progress; 4.3.0 for tlsgate's own failures.
func ReplyFor(v verify.Verdict, temporary bool, extra string) Reply {
	d := v.Domain
	var r Reply
	level := levelPhrase(v)
	switch v.Reason {
	case verify.ReasonNullMX:
		r = Reply{556, "5.1.10", []string{fmt.Sprintf("Mail to %s cannot be delivered: the domain publishes a null MX, it accepts no mail.", d)}}
	case verify.ReasonNoMX:
		r = Reply{550, "5.1.2", []string{fmt.Sprintf("Mail to %s cannot be delivered: the domain has no mail servers that can be reached.", d)}}
	case verify.ReasonVerificationInProgress:
		r = Reply{451, "4.7.0", []string{fmt.Sprintf("Mail to %s requires %s; checking its mail servers is in progress. Please try again in a minute.", d, level)}}
		temporary = true
	case verify.ReasonOverloaded:
		r = Reply{451, "4.7.0", []string{fmt.Sprintf("Mail to %s requires %s; too many checks are waiting right now. Please try again in a few minutes.", d, level)}}
		temporary = true
	case verify.ReasonPolicyInvalid:
		r = Reply{451, "4.7.5", []string{fmt.Sprintf("Mail to %s cannot be sent right now: the TLS policy configured for it on this server is invalid. Please try again later.", d)}}
		temporary = true
	case verify.ReasonInternal:
		r = Reply{451, "4.3.0", []string{fmt.Sprintf("Mail to %s requires %s, but it could not be checked because of a temporary local problem. Please try again later.", d, level)}}
		temporary = true
	case verify.ReasonDNSError:
		r = Reply{451, "4.4.3", []string{fmt.Sprintf("Mail to %s requires %s, but %s. Please try again later.", d, level, failPhrase(v.Reason))}}
		temporary = true
	default:
		sentence := fmt.Sprintf("Mail to %s requires %s, but %s.", d, level, failPhrase(v.Reason))
		if v.Status == verify.StatusTempfail {
			sentence += " Please try again later."
			temporary = true
		}
		r = Reply{550, "5.7.5", []string{sentence}}
	}
	if v.Detail != "" {
		// The detail was made from classified errors (internal/problem); scrubbing
		// it again guarantees no local address or port reaches the sender.
		r.Parts = append(r.Parts, "("+sanitize(problem.Scrub(v.Detail), 200)+")")
	}
	if extra != "" {
		r.Parts = append(r.Parts, sanitize(extra, 200))
	}
	if temporary {
		r.Code = 451
		r.Enhanced = "4" + r.Enhanced[1:]
	}
	return r
}

// Sentence says in plain language what a verdict means for mail to its domain: for a
// pass, the protection delivery will have; otherwise the sentence of the SMTP reply
// ReplyFor gives the sender (without the finding and the operator's message), so the
// check page and the RCPT reply say the same thing.
func Sentence(v verify.Verdict) string {
	if v.Status == verify.StatusPass {
		return fmt.Sprintf("Mail to %s can be delivered with %s.", v.Domain, levelPhrase(v))
	}
	return ReplyFor(v, false, "").Parts[0]
}

// sanitize makes remote-controlled text (server greetings, error strings) safe for an
// SMTP reply line: printable ASCII only, at most max octets ("..." marks a cut).
func sanitize(s string, max int) string {
	var b strings.Builder
	for _, c := range s {
		switch {
		case c == '\r' || c == '\n' || c == '\t':
			b.WriteByte(' ')
		case c < 0x20 || c > 0x7e:
			b.WriteByte('?')
		default:
			b.WriteRune(c)
		}
	}
	out := b.String()
	if len(out) > max {
		out = out[:max-3] + "..."
	}
	return out
}
