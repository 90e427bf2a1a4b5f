package milter_test

import (
	"context"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/tlsgate/tlsgate/milter"
	"github.com/tlsgate/tlsgate/policy"
	"github.com/tlsgate/tlsgate/verify"
)

// readmeReplies returns the README's "SMTP replies" section.
func readmeReplies(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, s, ok := strings.Cut(string(b), "\n## SMTP replies\n")
	if !ok {
		t.Fatal(`README has no "## SMTP replies"`)
	}
	s, _, _ = strings.Cut(s, "\n## ")
	return s
}

// TestREADMEReplyTable: every row of the README's reply table is what ReplyFor sends for
// that reason (code, enhanced code, and the sentence, which is the start of the one
// line), every reason a recipient can be refused for has a row, and a fail tempfailed
// by its action keeps the sentence with a 4xx code.
func TestREADMEReplyTable(t *testing.T) {
	t.Parallel()
	const domain = "example.com"
	encrypt := verify.Verdict{Domain: domain, Level: policy.LevelEncrypt}
	level := "encrypted delivery (TLS)" // the README's example of LEVEL
	row := regexp.MustCompile("^\\| ([245][0-9][0-9]) ([245]\\.[0-9]+\\.[0-9]+) \\| `([a-z-]+)`[^|]*\\| (.+) \\|$")
	var documented []verify.Reason
	for _, line := range strings.Split(readmeReplies(t), "\n") {
		m := row.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		code, reason, text := m[1]+" "+m[2], verify.Reason(m[3]), m[4]
		documented = append(documented, reason)
		v := encrypt
		v.Reason, v.Status = reason, verify.StatusFail
		if code[0] == '4' {
			v.Status = verify.StatusTempfail
		}
		if rest, ok := strings.CutPrefix(text, "... "); ok {
			text = "Mail to DOMAIN requires LEVEL, " + rest
		}
		text = strings.NewReplacer("DOMAIN", domain, "LEVEL", level).Replace(text)
		r := milter.ReplyFor(v, false, "")
		if got := fmt.Sprintf("%d %s", r.Code, r.Enhanced); got != code || len(r.Parts) == 0 || r.Parts[0] != text {
			t.Errorf("README row %s:\n  README: %s %s\n  sent:   %s", reason, code, text, r)
			continue
		}
		if v.Status == verify.StatusFail {
			// on_fail: tempfail. The same sentence, class 4 (RFC 3463 §3.1).
			tr := milter.ReplyFor(v, true, "")
			if tr.Code != 451 || tr.Enhanced != "4"+r.Enhanced[1:] || tr.Parts[0] != text {
				t.Errorf("%s tempfailed by its action: %s; want 451 4%s with the same text", reason, tr, r.Enhanced[1:])
			}
		}
	}
	// Reasons that only annotate a pass (MTA-STS "no policy" notes) have no reply.
	notes := []verify.Reason{verify.ReasonNone, verify.ReasonSTSFetchError, verify.ReasonSTSPolicyInvalid, verify.ReasonSTSWebPKIInvalid}
	for _, r := range allReasons {
		if !slices.Contains(documented, r) && !slices.Contains(notes, r) {
			t.Errorf("the README's reply table has no row for %q", r)
		}
	}
	if len(documented) < 20 {
		t.Errorf("only %d rows found: %q", len(documented), documented)
	}
}

// allReasons are verify's reasons (verify/verdict.go).
var allReasons = []verify.Reason{
	verify.ReasonNone, verify.ReasonSTARTTLSNotSupported, verify.ReasonCertHostMismatch, verify.ReasonCertExpired,
	verify.ReasonCertNotTrusted, verify.ReasonValidationFailure, verify.ReasonTLSAInvalid, verify.ReasonDNSSECInvalid,
	verify.ReasonSTSPolicyInvalid, verify.ReasonSTSWebPKIInvalid, verify.ReasonSTSFetchError, verify.ReasonSTSMXMismatch,
	verify.ReasonFingerprintMismatch, verify.ReasonHandshakeFailure, verify.ReasonDNSError, verify.ReasonTimeout,
	verify.ReasonConnectionRefused, verify.ReasonGreylisted, verify.ReasonProtocolError, verify.ReasonNullMX,
	verify.ReasonNoMX, verify.ReasonProbeNotAllowed, verify.ReasonRateLimited, verify.ReasonPolicyInvalid,
	verify.ReasonOverloaded, verify.ReasonVerificationInProgress, verify.ReasonInternal,
}

// TestREADMEReplyExamples: the example replies of the README are, byte for byte, what
// the milter sends for these recipients (one line each: sentence, finding,
// defaults.reject_message).
func TestREADMEReplyExamples(t *testing.T) {
	t.Parallel()
	const rejectMessage = "Questions: https://example.net/tls"
	tempfail := policy.Policy{Level: policy.LevelEncrypt, OnFail: policy.ActionTempfail}
	cases := []struct {
		facts *verify.Facts
		p     policy.Policy
	}{
		{noTLSFacts("example.com"), encrypt},
		{noTLSFacts("example.com"), tempfail},
		{greylistFacts("example.com"), encrypt},
	}
	var sent []string
	for _, c := range cases {
		src := &factSource{facts: map[string]*verify.Facts{"example.com": c.facts}}
		f := milter.NewFilter(milter.Config{Policies: policySet(t, []entry{{"example.com", c.p}}, nil), Facts: src,
			RejectMessage: rejectMessage, Log: newLogger(t)})
		d := f.Decide(context.Background(), milter.Request{Rcpt: "<user@example.com>"})
		sent = append(sent, d.Reply.String())
	}
	s := readmeReplies(t)
	_, s, ok := strings.Cut(s, "Example replies")
	if !ok {
		t.Fatal(`the README's reply section has no "Example replies"`)
	}
	_, s, _ = strings.Cut(s, "```\n")
	block, _, _ := strings.Cut(s, "```")
	if got := strings.Split(strings.TrimSuffix(block, "\n"), "\n"); !slices.Equal(got, sent) {
		t.Errorf("README example replies:\n%s\nsent:\n%s", strings.Join(got, "\n"), strings.Join(sent, "\n"))
	}
}
