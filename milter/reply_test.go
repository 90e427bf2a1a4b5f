package milter_test

import (
	"fmt"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/d--j/go-milter/milterutil"

	"github.com/tlsgate/tlsgate/milter"
	"github.com/tlsgate/tlsgate/policy"
	"github.com/tlsgate/tlsgate/verify"
)

// replyCase is one ReplyFor input.
type replyCase struct {
	name      string
	v         verify.Verdict
	temporary bool
	extra     string
}

// verdict builds a verdict for example.test.
func verdict(l policy.Level, s verify.Status, r verify.Reason, detail string) verify.Verdict {
	return verify.Verdict{Domain: "example.test", Level: l, Status: s, Reason: r, Detail: detail, MX: "mx1.example.test"}
}

const (
	enc  = policy.LevelEncrypt
	fail = verify.StatusFail
	temp = verify.StatusTempfail
)

// hostileDetail is remote-controlled text as a broken or malicious MX could make it:
// line breaks that would start a new reply line, NUL, a tab, non-ASCII, and far too long.
var hostileDetail = "mx1.example.test[192.0.2.1]: 554 5.7.1 go away\r\n250 2.0.0 Ok\x00\tbücher\x7f" + strings.Repeat("x", 300)

// replyCases has one row per reason/status/temporary combination ReplyFor handles,
// plus the level phrases and the untrusted-text cases.
var replyCases = []replyCase{
	{"starttls-not-supported/fail", verdict(enc, fail, verify.ReasonSTARTTLSNotSupported, ""), false, ""},
	{"starttls-not-supported/fail/detail", verdict(enc, fail, verify.ReasonSTARTTLSNotSupported, "mx1.example.test[192.0.2.1]: STARTTLS not offered in the EHLO reply"), false, ""},
	{"starttls-not-supported/fail/temporary", verdict(enc, fail, verify.ReasonSTARTTLSNotSupported, "mx1.example.test[192.0.2.1]: STARTTLS not offered in the EHLO reply"), true, ""},
	{"handshake-failure/fail", verdict(enc, fail, verify.ReasonHandshakeFailure, "mx1.example.test[192.0.2.1]: TLS handshake: remote error: tls: handshake failure"), false, ""},
	{"certificate-expired/fail/verify", verdict(policy.LevelVerify, fail, verify.ReasonCertExpired, "mx1.example.test[192.0.2.1]: certificate expired on 2026-01-01"), false, ""},
	{"certificate-not-trusted/fail/secure", verdict(policy.LevelSecure, fail, verify.ReasonCertNotTrusted, "mx1.example.test[192.0.2.1]: certificate signed by unknown authority"), false, ""},
	{"certificate-host-mismatch/fail/verify", verdict(policy.LevelVerify, fail, verify.ReasonCertHostMismatch, "mx1.example.test[192.0.2.1]: certificate names mail.other.test match none of mx1.example.test"), false, ""},
	{"certificate-host-mismatch/fail/secure", verdict(policy.LevelSecure, fail, verify.ReasonCertHostMismatch, ""), false, ""},
	{"validation-failure/fail/verify", verdict(policy.LevelVerify, fail, verify.ReasonValidationFailure, ""), false, ""},
	{"fingerprint-mismatch/fail/fingerprint", verdict(policy.LevelFingerprint, fail, verify.ReasonFingerprintMismatch, "mx1.example.test[192.0.2.1]: certificate fingerprint AB:CD matches no match= entry"), false, ""},
	{"handshake-failure/fail/dane-only", verdict(policy.LevelDaneOnly, fail, verify.ReasonHandshakeFailure, ""), false, ""},
	{"tlsa-invalid/fail/dane", verdict(policy.LevelDane, fail, verify.ReasonTLSAInvalid, "mx1.example.test[192.0.2.1]: dane: no TLSA record matches the certificate chain"), false, ""},
	{"dnssec-invalid/fail/dane-only", verdict(policy.LevelDaneOnly, fail, verify.ReasonDNSSECInvalid, "the MX records of example.test are not DNSSEC-validated; dane-only needs DNSSEC"), false, ""},
	{"sts-mx-mismatch/fail/published", withMech(verdict(policy.LevelPublished, fail, verify.ReasonSTSMXMismatch, "none of the MX hosts (mx1.example.test) is listed in the MTA-STS policy (mx: mx9.example.test)"), verify.MechMTASTS), false, ""},
	{"certificate-host-mismatch/fail/published-mta-sts", withMech(verdict(policy.LevelPublished, fail, verify.ReasonCertHostMismatch, ""), verify.MechMTASTS), false, ""},
	{"tlsa-invalid/fail/published-dane", withMech(verdict(policy.LevelPublished, fail, verify.ReasonTLSAInvalid, ""), verify.MechDANE), false, ""},
	{"dns-error/tempfail/published", verdict(policy.LevelPublished, temp, verify.ReasonDNSError, "the MTA-STS record of example.test could not be looked up: SERVFAIL"), false, ""},
	{"null-mx/fail", verdict(enc, fail, verify.ReasonNullMX, "the domain publishes a null MX: it accepts no mail"), false, ""},
	{"null-mx/fail/temporary", verdict(enc, fail, verify.ReasonNullMX, ""), true, ""},
	{"no-mx/fail", verdict(enc, fail, verify.ReasonNoMX, "the domain example.test does not exist"), false, ""},
	{"no-mx/fail/temporary", verdict(enc, fail, verify.ReasonNoMX, ""), true, ""},
	{"dns-error/tempfail", verdict(enc, temp, verify.ReasonDNSError, "MX lookup for example.test failed: SERVFAIL"), false, ""},
	{"dns-error/tempfail/temporary", verdict(enc, temp, verify.ReasonDNSError, ""), true, ""},
	{"greylisted/tempfail", verdict(enc, temp, verify.ReasonGreylisted, "mx1.example.test[192.0.2.1]: banner 450 4.7.1 greylisted"), false, ""},
	{"greylisted/tempfail/temporary", verdict(enc, temp, verify.ReasonGreylisted, ""), true, ""},
	{"timeout/tempfail", verdict(enc, temp, verify.ReasonTimeout, "mx1.example.test[192.0.2.1]: greeting: i/o timeout"), false, ""},
	{"connection-refused/tempfail", verdict(enc, temp, verify.ReasonConnectionRefused, "mx1.example.test[192.0.2.1]: connect: connection refused"), false, ""},
	{"smtp-error/tempfail", verdict(enc, temp, verify.ReasonProtocolError, ""), false, ""},
	{"probe-not-allowed/tempfail", verdict(enc, temp, verify.ReasonProbeNotAllowed, ""), false, ""},
	{"overloaded/tempfail", verdict(enc, temp, verify.ReasonOverloaded, ""), false, ""},
	{"policy-invalid/tempfail", verdict(enc, temp, verify.ReasonPolicyInvalid, ""), false, "See https://tls.example/help for help."},
	{"rate-limited/tempfail", verdict(enc, temp, verify.ReasonRateLimited, "mx1.example.test[192.0.2.1]: not probed: this address was probed too often in the last minute"), false, ""},
	{"in-progress/tempfail", verdict(enc, temp, verify.ReasonVerificationInProgress, ""), false, ""},
	{"in-progress/tempfail/temporary", verdict(enc, temp, verify.ReasonVerificationInProgress, ""), true, ""},
	{"internal-error/tempfail", verdict(enc, temp, verify.ReasonInternal, ""), false, ""},
	{"internal-error/tempfail/detail", verdict(policy.LevelDane, temp, verify.ReasonInternal, "level dane is not supported by this version"), true, ""},
	{"reject_message/fail", verdict(enc, fail, verify.ReasonSTARTTLSNotSupported, "mx1.example.test[192.0.2.1]: STARTTLS not offered in the EHLO reply"), false, "See https://tls.example/help for help."},
	{"reject_message/tempfail", verdict(enc, temp, verify.ReasonGreylisted, ""), true, "See https://tls.example/help for help."},
	{"reject_message/hostile", verdict(enc, fail, verify.ReasonSTARTTLSNotSupported, ""), false, "Contact postmaster\r\n250 2.0.0 Ok\x00 ünïcode " + strings.Repeat("y", 300)},
	{"detail/hostile", verdict(enc, fail, verify.ReasonSTARTTLSNotSupported, hostileDetail), false, ""},
	// The longest domain name: the secure sentence names it twice and is cut; with
	// encrypt the detail no longer fits and is dropped, and the reject_message after it.
	{"longest-domain/secure", verify.Verdict{Domain: longestDomain, Level: policy.LevelSecure, Status: fail, Reason: verify.ReasonCertHostMismatch,
		Detail: "mx1." + longestDomain + "[192.0.2.1]: certificate names match none"}, false, "See https://tls.example/help for help."},
	{"longest-domain/detail-dropped", verify.Verdict{Domain: longestDomain, Level: enc, Status: fail, Reason: verify.ReasonSTARTTLSNotSupported,
		Detail: "mx1." + longestDomain + "[192.0.2.1]: STARTTLS not offered in the EHLO reply"}, false, "See https://tls.example/help for help."},
	{"longest-domain/greylisted", verify.Verdict{Domain: longestDomain, Level: enc, Status: temp, Reason: verify.ReasonGreylisted,
		Detail: "mx1[192.0.2.1]: banner 450 4.7.1 greylisted"}, false, "See https://tls.example/help for help."},
}

func withMech(v verify.Verdict, m verify.Mechanism) verify.Verdict {
	v.Mechanism = m
	return v
}

// longestDomain is a domain name of 253 octets, the most there can be.
var longestDomain = domainOfLen(253)

// TestReplies renders every row to testdata/replies.golden (the wire text, one SMTP
// reply line per row) and checks the properties every reply must have.
func TestReplies(t *testing.T) {
	t.Parallel()
	var b strings.Builder
	for _, tc := range replyCases {
		r := milter.ReplyFor(tc.v, tc.temporary, tc.extra)
		checkReply(t, tc, r)
		fmt.Fprintf(&b, "== %s\n%s\n\n", tc.name, r.String())
	}
	golden(t, "replies.golden", []byte(b.String()))
}

var (
	enhancedRE = regexp.MustCompile(`^[245]\.[0-9]{1,3}\.[0-9]{1,3}$`)
	// enhancedStartRE matches text that starts with an enhanced status code.
	enhancedStartRE = regexp.MustCompile(`^[245]\.[0-9]{1,3}\.[0-9]{1,3}( |$)`)
)

// maxText is the room for Reply.Text on a reply line: RFC 5321 §4.5.3.1.5 allows 512
// octets including "550 " and CRLF.
const maxText = 512 - len("550 ") - len("\r\n")

// checkReply checks what every reply of ReplyFor must satisfy, whatever its text.
func checkReply(t *testing.T, tc replyCase, r milter.Reply) {
	t.Helper()
	if len(r.Parts) == 0 {
		t.Errorf("%s: reply has no parts", tc.name)
		return
	}
	mustBeTemporary := tc.temporary || tc.v.Status == verify.StatusTempfail
	if mustBeTemporary && r.Code/100 != 4 {
		t.Errorf("%s: temporary=%v status=%s gave %d; want a 4xx reply (never a 5xx for a tempfail)", tc.name, tc.temporary, tc.v.Status, r.Code)
	}
	if !mustBeTemporary && tc.v.Status == verify.StatusFail && r.Code/100 != 5 {
		switch tc.v.Reason {
		case verify.ReasonDNSError, verify.ReasonInternal, verify.ReasonVerificationInProgress:
		default:
			t.Errorf("%s: fail verdict with temporary=false gave %d; want 5xx", tc.name, r.Code)
		}
	}
	checkLine(t, tc.name, r)
	checkText(t, tc.name, r)
	checkOnWire(t, tc.name, r)
	// The sentence, then the detail and the reject_message, each a part of its own.
	want := 1
	if tc.v.Detail != "" {
		want++
	}
	if tc.extra != "" {
		want++
	}
	if len(r.Parts) != want {
		t.Errorf("%s: %d parts %q; want %d (sentence, detail, reject_message)", tc.name, len(r.Parts), r.Parts, want)
	}
}

// checkLine checks the reply line itself: a 4xx or 5xx code, a well-formed enhanced
// code of the same class right after it and nowhere else at the start, one line of
// printable ASCII, at most 512 octets with CRLF.
func checkLine(t *testing.T, name string, r milter.Reply) bool {
	t.Helper()
	ok := true
	errorf := func(format string, args ...any) {
		t.Helper()
		t.Errorf("%s: "+format, append([]any{name}, args...)...)
		ok = false
	}
	if r.Code < 400 || r.Code > 599 {
		errorf("code %d is not a 4xx or 5xx reply", r.Code)
	}
	if !enhancedRE.MatchString(r.Enhanced) {
		errorf("enhanced code %q is malformed (RFC 3463)", r.Enhanced)
	} else if cls := byte('0' + r.Code/100); r.Enhanced[0] != cls {
		// RFC 3463 §2: the class digit must match the reply code; Postfix's milter client
		// rejects such a reply as malformed.
		errorf("code %d with enhanced code %s: classes differ", r.Code, r.Enhanced)
	}
	line := r.String()
	if n := len(line) + len("\r\n"); n > 512 {
		errorf("the reply line has %d octets with CRLF; RFC 5321 §4.5.3.1.5 allows 512: %.80q...", n, line)
	}
	prefix := fmt.Sprintf("%d %s ", r.Code, r.Enhanced)
	rest, found := strings.CutPrefix(line, prefix)
	if !found {
		errorf("%q does not start with %q", line, prefix)
	} else if enhancedStartRE.MatchString(rest) {
		errorf("%q repeats the enhanced code", line)
	}
	for _, c := range []byte(line) {
		if c < 0x20 || c > 0x7e {
			// This also catches CR and LF: the reply is one line.
			errorf("%q has the byte %#x; a reply is one line of printable ASCII", line, c)
			break
		}
	}
	return ok
}

// checkText checks how Text() fits the parts on the line: all of them joined by single
// spaces when they fit; otherwise the first parts that fit, the rest dropped; and when
// the first part alone does not fit, a prefix of it ending in "...", cut at a space
// unless it fills the line.
func checkText(t *testing.T, name string, r milter.Reply) bool {
	t.Helper()
	text := r.Text()
	head := r.Enhanced + " "
	if full := head + strings.Join(r.Parts, " "); len(full) <= maxText {
		if text != full {
			t.Errorf("%s: Text() =\n%q\nwant all parts\n%q", name, text, full)
			return false
		}
		return true
	}
	if len(text) > maxText {
		t.Errorf("%s: Text() has %d octets; the line has room for %d", name, len(text), maxText)
		return false
	}
	for k := len(r.Parts) - 1; k >= 1; k-- {
		if kept := head + strings.Join(r.Parts[:k], " "); len(kept) <= maxText {
			if text != kept {
				t.Errorf("%s: Text() =\n%q\nwant the first %d of %d parts\n%q", name, text, k, len(r.Parts), kept)
				return false
			}
			return true
		}
	}
	// The first part alone is too long.
	cut, ok := strings.CutPrefix(text, head)
	if ok {
		cut, ok = strings.CutSuffix(cut, "...")
	}
	if !ok || !strings.HasPrefix(r.Parts[0], cut) || len(cut) >= len(r.Parts[0]) {
		t.Errorf("%s: Text() =\n%q\nwant a prefix of the first part %.60q... followed by \"...\"", name, text, r.Parts[0])
		return false
	}
	if r.Parts[0][len(cut)] != ' ' && len(text) != maxText {
		t.Errorf("%s: Text() =\n%q\nis cut inside a word although it does not fill the line", name, text)
		return false
	}
	return true
}

// checkOnWire checks that what go-milter puts on the wire for Text() (the server hands
// Text() to gomilter.RejectWithCodeAndReason) is exactly what String() says. go-milter
// doubles '%' for the MTA, which undoes it.
func checkOnWire(t *testing.T, name string, r milter.Reply) bool {
	t.Helper()
	got, err := milterutil.FormatResponse(r.Code, r.Text())
	if err != nil {
		t.Errorf("%s: go-milter cannot format the reply: %v", name, err)
		return false
	}
	if want := strings.ReplaceAll(r.String(), "%", "%%"); got != want {
		t.Errorf("%s: go-milter sends\n%q\nbut String() is\n%q", name, got, want)
		return false
	}
	return true
}

// domainOfLen returns a valid domain name of exactly n octets: labels of at most 63
// letters, separated by dots.
func domainOfLen(n int) string {
	var b strings.Builder
	for label, rem := 0, n; rem > 0; label++ {
		l := min(rem, 63)
		if rem == 64 {
			l = 62 // leave room for a dot and a one-letter label
		}
		b.WriteString(strings.Repeat(string(rune('a'+label)), l))
		if rem -= l; rem > 0 {
			b.WriteByte('.')
			rem--
		}
	}
	return b.String()
}

// TestReplyOnWireEveryLength sweeps domain lengths and reject_message lengths, so that
// the reply line ends at every position of go-milter's formatting buffers and crosses
// the 512-octet bound at every part: the wire text must be exactly String(), one line.
func TestReplyOnWireEveryLength(t *testing.T) {
	t.Parallel()
	// The operator's message, words and all, cut to every length up to beyond
	// sanitize's bound.
	message := strings.Repeat("Please see https://tls.example/help or call the help desk. ", 5)[:220]
	failures := 0
	for n := 1; n <= 253 && failures < 5; n++ {
		domain := domainOfLen(n)
		if len(domain) != n {
			t.Fatalf("domainOfLen(%d) has %d octets", n, len(domain))
		}
		// Every 11th message length, starting at n%11: with the domain length, every
		// line length comes up for every reason, at a fifth of the cost of all pairs.
		for m := n % 11; m <= len(message) && failures < 5; m += 11 {
			extra := strings.TrimSpace(message[:m])
			for _, tc := range []struct {
				v         verify.Verdict
				temporary bool
			}{
				{verify.Verdict{Domain: domain, Level: enc, Status: fail, Reason: verify.ReasonSTARTTLSNotSupported, Detail: "mx1[192.0.2.1]: STARTTLS not offered"}, false},
				{verify.Verdict{Domain: domain, Level: enc, Status: fail, Reason: verify.ReasonSTARTTLSNotSupported, Detail: "mx1[192.0.2.1]: STARTTLS not offered"}, true},
				{verify.Verdict{Domain: domain, Level: enc, Status: temp, Reason: verify.ReasonGreylisted, Detail: "mx1[192.0.2.1]: banner 450 4.7.1 greylisted"}, false},
				{verify.Verdict{Domain: domain, Level: enc, Status: fail, Reason: verify.ReasonNullMX, Detail: "null MX"}, false},
				// The domain twice in the sentence: the sentence alone is too long for the
				// line from n = 168 on and is cut.
				{verify.Verdict{Domain: domain, Level: policy.LevelSecure, Status: fail, Reason: verify.ReasonCertHostMismatch, Detail: "mx1[192.0.2.1]: certificate names match none"}, false},
			} {
				r := milter.ReplyFor(tc.v, tc.temporary, extra)
				name := fmt.Sprintf("%s/%s with a %d-octet domain and a %d-octet reject_message", tc.v.Status, tc.v.Reason, n, len(extra))
				ok := checkLine(t, name, r) && checkText(t, name, r) && checkOnWire(t, name, r)
				if c := strings.Count(r.String(), r.Enhanced); c != 1 {
					t.Errorf("%s: %q has the enhanced code %d times; want once", name, r.String(), c)
					ok = false
				}
				if !ok {
					failures++ // a few examples are enough
				}
			}
		}
	}
}

// TestReplyText pins how Text() fits parts on the line, at the 512-octet bound.
func TestReplyText(t *testing.T) {
	t.Parallel()
	words := strings.Repeat("word ", 120) // 600 octets
	tests := []struct {
		name string
		r    milter.Reply
		want string
	}{
		{"one part", milter.Reply{Code: 550, Enhanced: "5.7.5", Parts: []string{"Mail rejected."}},
			"5.7.5 Mail rejected."},
		{"parts joined by single spaces", milter.Reply{Code: 550, Enhanced: "5.7.5", Parts: []string{"Mail rejected.", "(detail)", "See help."}},
			"5.7.5 Mail rejected. (detail) See help."},
		{"first part exactly at the bound", milter.Reply{Code: 550, Enhanced: "5.7.5", Parts: []string{strings.Repeat("x", maxText-6)}},
			"5.7.5 " + strings.Repeat("x", maxText-6)},
		{"first part one over the bound, no space: cut to fill the line", milter.Reply{Code: 550, Enhanced: "5.7.5", Parts: []string{strings.Repeat("x", maxText-5)}},
			"5.7.5 " + strings.Repeat("x", maxText-6-3) + "..."},
		{"longer enhanced code, less room", milter.Reply{Code: 556, Enhanced: "5.1.10", Parts: []string{strings.Repeat("x", maxText-6)}},
			"5.1.10 " + strings.Repeat("x", maxText-7-3) + "..."},
		{"first part too long: cut at a space", milter.Reply{Code: 550, Enhanced: "5.7.5", Parts: []string{words}},
			"5.7.5 " + strings.TrimSpace(strings.Repeat("word ", 99)) + "..."},
		{"first part too long: later parts dropped", milter.Reply{Code: 451, Enhanced: "4.7.5", Parts: []string{words, "(detail)"}},
			"4.7.5 " + strings.TrimSpace(strings.Repeat("word ", 99)) + "..."},
		{"second part exactly at the bound", milter.Reply{Code: 550, Enhanced: "5.7.5", Parts: []string{"Mail rejected.", strings.Repeat("y", maxText-21)}},
			"5.7.5 Mail rejected. " + strings.Repeat("y", maxText-21)},
		{"second part one over the bound: dropped", milter.Reply{Code: 550, Enhanced: "5.7.5", Parts: []string{"Mail rejected.", strings.Repeat("y", maxText-20)}},
			"5.7.5 Mail rejected."},
		{"parts dropped from the end, a short last one too", milter.Reply{Code: 550, Enhanced: "5.7.5", Parts: []string{"Mail rejected.", strings.Repeat("y", maxText-20), "See help."}},
			"5.7.5 Mail rejected."},
		{"third part does not fit", milter.Reply{Code: 550, Enhanced: "5.7.5", Parts: []string{"Mail rejected.", "(detail)", strings.Repeat("z", maxText-29)}},
			"5.7.5 Mail rejected. (detail)"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := tc.r.Text(); got != tc.want {
				t.Errorf("Text() =\n%q\nwant\n%q", got, tc.want)
			}
			if got, want := tc.r.String(), fmt.Sprintf("%d %s", tc.r.Code, tc.want); got != want {
				t.Errorf("String() =\n%q\nwant\n%q", got, want)
			}
			checkLine(t, tc.name, tc.r)
			checkText(t, tc.name, tc.r)
			checkOnWire(t, tc.name, tc.r)
		})
	}
}

// TestReplyWire pins the exact wire text of the replies senders see most.
func TestReplyWire(t *testing.T) {
	t.Parallel()
	noTLS := "mx1.example.test[192.0.2.1]: STARTTLS not offered in the EHLO reply"
	tests := []struct {
		name      string
		v         verify.Verdict
		temporary bool
		extra     string
		want      string
	}{
		{"starttls-not-supported", verdict(enc, fail, verify.ReasonSTARTTLSNotSupported, ""), false, "",
			"550 5.7.5 Mail to example.test requires encrypted delivery (TLS), but its mail servers do not offer it."},
		{"starttls-not-supported with detail", verdict(enc, fail, verify.ReasonSTARTTLSNotSupported, noTLS), false, "",
			"550 5.7.5 Mail to example.test requires encrypted delivery (TLS), but its mail servers do not offer it. " +
				"(mx1.example.test[192.0.2.1]: STARTTLS not offered in the EHLO reply)"},
		{"fail as tempfail", verdict(enc, fail, verify.ReasonSTARTTLSNotSupported, noTLS), true, "",
			"451 4.7.5 Mail to example.test requires encrypted delivery (TLS), but its mail servers do not offer it. " +
				"(mx1.example.test[192.0.2.1]: STARTTLS not offered in the EHLO reply)"},
		{"reject_message after the detail", verdict(enc, fail, verify.ReasonSTARTTLSNotSupported, noTLS), false, "See https://tls.example/help",
			"550 5.7.5 Mail to example.test requires encrypted delivery (TLS), but its mail servers do not offer it. " +
				"(mx1.example.test[192.0.2.1]: STARTTLS not offered in the EHLO reply) See https://tls.example/help"},
		{"certificate-expired", verdict(policy.LevelVerify, fail, verify.ReasonCertExpired, ""), false, "",
			"550 5.7.5 Mail to example.test requires encrypted delivery to a server with a verified certificate (TLS verify), but its mail server's certificate has expired."},
		{"certificate-host-mismatch secure", verdict(policy.LevelSecure, fail, verify.ReasonCertHostMismatch, ""), false, "",
			"550 5.7.5 Mail to example.test requires encrypted delivery to a server with a certificate verified for example.test (TLS secure), but its mail server's certificate is not valid for the server's name."},
		{"fingerprint-mismatch", verdict(policy.LevelFingerprint, fail, verify.ReasonFingerprintMismatch, ""), false, "",
			"550 5.7.5 Mail to example.test requires encrypted delivery to a server with a pinned certificate (TLS fingerprint), but its mail server's certificate does not match the pinned fingerprint."},
		{"handshake-failure", verdict(enc, fail, verify.ReasonHandshakeFailure, ""), false, "",
			"550 5.7.5 Mail to example.test requires encrypted delivery (TLS), but the encrypted connection to its mail servers fails."},
		{"null-mx", verdict(enc, fail, verify.ReasonNullMX, ""), false, "",
			"556 5.1.10 Mail to example.test cannot be delivered: the domain publishes a null MX, it accepts no mail."},
		{"no-mx", verdict(enc, fail, verify.ReasonNoMX, ""), false, "",
			"550 5.1.2 Mail to example.test cannot be delivered: the domain has no mail servers that can be reached."},
		{"dns-error", verdict(enc, temp, verify.ReasonDNSError, ""), false, "",
			"451 4.4.3 Mail to example.test requires encrypted delivery (TLS), but its mail servers could not be looked up in the DNS. Please try again later."},
		{"greylisted", verdict(enc, temp, verify.ReasonGreylisted, ""), false, "",
			"451 4.7.5 Mail to example.test requires encrypted delivery (TLS), but its mail servers asked us to try again later. Please try again later."},
		{"timeout", verdict(enc, temp, verify.ReasonTimeout, ""), false, "",
			"451 4.7.5 Mail to example.test requires encrypted delivery (TLS), but its mail servers did not answer in time. Please try again later."},
		{"connection-refused", verdict(enc, temp, verify.ReasonConnectionRefused, ""), false, "",
			"451 4.7.5 Mail to example.test requires encrypted delivery (TLS), but its mail servers refused the connection. Please try again later."},
		{"in-progress", verdict(enc, temp, verify.ReasonVerificationInProgress, ""), false, "",
			"451 4.7.0 Mail to example.test requires encrypted delivery (TLS); checking its mail servers is in progress. Please try again in a minute."},
		{"internal-error", verdict(enc, temp, verify.ReasonInternal, ""), false, "",
			"451 4.3.0 Mail to example.test requires encrypted delivery (TLS), but it could not be checked because of a temporary local problem. Please try again later."},
		{"hostile detail and reject_message", verdict(enc, fail, verify.ReasonSTARTTLSNotSupported, "a\r\n550 5.7.1 b\x00ü"), false, "c\nd",
			"550 5.7.5 Mail to example.test requires encrypted delivery (TLS), but its mail servers do not offer it. (a  550 5.7.1 b??) c d"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := milter.ReplyFor(tc.v, tc.temporary, tc.extra)
			if got := r.String(); got != tc.want {
				t.Errorf("ReplyFor(%s/%s, temporary=%v).String() =\n%q\nwant\n%q", tc.v.Status, tc.v.Reason, tc.temporary, got, tc.want)
			}
			checkReply(t, replyCase{tc.name, tc.v, tc.temporary, tc.extra}, r)
		})
	}
}

// TestReplySanitize checks that remote text in the detail and the operator's
// reject_message cannot add reply lines, smuggle bytes, or grow without bound.
func TestReplySanitize(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		detail string
		want   string // the detail's text, without parentheses
	}{
		{"plain", "mx1.example.test[192.0.2.1]: 454 4.7.0 TLS not available", "mx1.example.test[192.0.2.1]: 454 4.7.0 TLS not available"},
		{"CRLF", "a\r\nb", "a  b"},
		{"bare LF and CR", "a\nb\rc", "a b c"},
		{"NUL and controls", "a\x00b\x1bc\x7fd", "a?b?c?d"},
		{"tab", "a\tb", "a b"},
		{"non-ASCII", "bücher", "b?cher"},
		{"invalid UTF-8", "a\xff\xfeb", "a??b"},
		{"overlong", strings.Repeat("x", 300), strings.Repeat("x", 197) + "..."},
		// A detail that fits the 200-octet bound exactly is not cut.
		{"exactly at the bound", strings.Repeat("x", 200), strings.Repeat("x", 200)},
		{"one over the bound", strings.Repeat("x", 201), strings.Repeat("x", 197) + "..."},
		{"non-ASCII at the bound", strings.Repeat("x", 199) + "ü", strings.Repeat("x", 199) + "?"},
	}
	sentence := "Mail to example.test requires encrypted delivery (TLS), but its mail servers do not offer it."
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := milter.ReplyFor(verdict(enc, fail, verify.ReasonSTARTTLSNotSupported, tc.detail), false, "")
			if want := []string{sentence, "(" + tc.want + ")"}; !slices.Equal(r.Parts, want) {
				t.Errorf("detail: parts\n%q\nwant\n%q", r.Parts, want)
			}
			if got, want := r.String(), "550 5.7.5 "+sentence+" ("+tc.want+")"; got != want {
				t.Errorf("detail: reply\n%q\nwant\n%q", got, want)
			}
			r = milter.ReplyFor(verdict(enc, fail, verify.ReasonSTARTTLSNotSupported, ""), false, tc.detail)
			if want := []string{sentence, tc.want}; !slices.Equal(r.Parts, want) {
				t.Errorf("reject_message: parts\n%q\nwant\n%q", r.Parts, want)
			}
			if got, want := r.String(), "550 5.7.5 "+sentence+" "+tc.want; got != want {
				t.Errorf("reject_message: reply\n%q\nwant\n%q", got, want)
			}
		})
	}
}

// TestReplyDropsLocalAddresses: whatever produced a verdict's detail, the reply names
// the remote host and the finding, never a local socket address or the resolver's
// (issue 17).
func TestReplyDropsLocalAddresses(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ detail, want string }{
		{"mx1.example.test[192.0.2.1]: EHLO: read tcp 127.0.0.1:44500->192.0.2.1:25: connection reset by peer",
			"(mx1.example.test[192.0.2.1]: EHLO: read tcp: connection reset by peer)"},
		{"the MTA-STS record of example.test could not be looked up: TXT via 127.0.0.1:59020/udp: context deadline exceeded",
			"(the MTA-STS record of example.test could not be looked up: TXT: context deadline exceeded)"},
		{"mx1.example.test[2001:db8::1]: lookup from [fd00::53]:4711 failed", "(mx1.example.test[2001:db8::1]: lookup failed)"},
	} {
		r := milter.ReplyFor(verdict(enc, verify.StatusTempfail, verify.ReasonProtocolError, tc.detail), true, "")
		if got := r.Parts[len(r.Parts)-1]; got != tc.want {
			t.Errorf("detail %q: reply part\n%q\nwant\n%q", tc.detail, got, tc.want)
		}
	}
}

// TestReplyLineLength checks RFC 5321 §4.5.3.1.5: a reply line, code and CRLF
// included, is at most 512 octets, also for the longest domain name there can be and
// the longest detail and reject_message.
func TestReplyLineLength(t *testing.T) {
	t.Parallel()
	long := longestDomain
	if len(long) != 253 {
		t.Fatalf("test domain has %d octets", len(long))
	}
	for _, l := range []policy.Level{policy.LevelEncrypt, policy.LevelFingerprint, policy.LevelVerify, policy.LevelSecure, policy.LevelDaneOnly} {
		for _, reason := range []verify.Reason{verify.ReasonCertHostMismatch, verify.ReasonProbeNotAllowed, verify.ReasonVerificationInProgress, verify.ReasonInternal, verify.ReasonNullMX} {
			tc := replyCase{
				name:  fmt.Sprintf("level %s, reason %s", l, reason),
				v:     verify.Verdict{Domain: long, Level: l, Status: fail, Reason: reason, Detail: strings.Repeat("z", 300)},
				extra: strings.Repeat("e", 300),
			}
			r := milter.ReplyFor(tc.v, false, tc.extra)
			checkReply(t, tc, r)
			// The sentence always says what is wrong, even when it has to be cut.
			if !strings.Contains(r.String(), "Mail to "+long) {
				t.Errorf("%s: %q lacks the domain", tc.name, r.String())
			}
		}
	}
}

// TestSentence: the check page's sentence for a verdict is the first part of the RCPT
// reply, and a pass says what delivery will have.
func TestSentence(t *testing.T) {
	t.Parallel()
	fail := verify.Verdict{Domain: "example.com", Level: policy.LevelEncrypt, Status: verify.StatusFail, Reason: verify.ReasonSTARTTLSNotSupported, Detail: "mx[192.0.2.1]: no STARTTLS"}
	if got, want := milter.Sentence(fail), "Mail to example.com requires encrypted delivery (TLS), but its mail servers do not offer it."; got != want {
		t.Errorf("fail: %q, want %q", got, want)
	}
	if got := milter.Sentence(fail); got != milter.ReplyFor(fail, false, "").Parts[0] {
		t.Errorf("fail: %q is not the reply's sentence", got)
	}
	pass := verify.Verdict{Domain: "example.com", Level: policy.LevelDaneOnly, Status: verify.StatusPass, Mechanism: verify.MechDANE}
	if got, want := milter.Sentence(pass), "Mail to example.com can be delivered with encrypted delivery authenticated by DANE (TLS dane-only)."; got != want {
		t.Errorf("pass: %q, want %q", got, want)
	}
}
