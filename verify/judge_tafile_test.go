package verify

import (
	"crypto/x509"
	"strings"
	"testing"

	"github.com/tlsgate/tlsgate/policy"
)

// A tls_policy entry's tafile= (postconf(5) smtp_tls_trust_anchor_file) replaces the
// CAs at verify and secure: the probe's check of the chain against those anchors
// decides, names are still matched (match=), and facts that lack the check never pass.
func TestJudgeTAFileAttribute(t *testing.T) {
	t.Parallel()
	k := newJudgeKit(t)
	good := k.trusted(mx1)        // trusted by probe.ca_file
	untrusted := k.untrusted(mx1) // from a CA probe.ca_file does not hold
	otherName := k.untrusted("mail.other.net")
	with := func(c []*x509.Certificate, ta *TAResult) *Facts {
		f := facts(mx(mx1, k.tlsOK(c)))
		f.Attempts[0].TA = ta
		return f
	}
	anchored := &TAResult{Done: true}
	notAnchored := &TAResult{Done: true, Reason: ReasonCertNotTrusted, Error: "the chain ends at none of the tafile= trust anchors"}
	unreadable := &TAResult{Done: true, Reason: ReasonPolicyInvalid, Error: "tafile /etc/x.pem: no such file"}
	tests := []struct {
		name   string
		facts  *Facts
		level  policy.Level
		match  []string
		want   Status
		reason Reason
	}{
		{"an anchor the CAs do not hold", with(untrusted, anchored), policy.LevelVerify, nil, StatusPass, ""},
		{"a CA the anchors do not hold", with(good, notAnchored), policy.LevelVerify, nil, StatusFail, ReasonCertNotTrusted},
		{"anchored, names still checked", with(otherName, anchored), policy.LevelVerify, nil, StatusFail, ReasonCertHostMismatch},
		{"anchored at secure, match=hostname", with(untrusted, anchored), policy.LevelSecure, []string{"hostname"}, StatusPass, ""},
		{"anchored at secure, match=nexthop", with(untrusted, anchored), policy.LevelSecure, []string{"nexthop"}, StatusFail, ReasonCertHostMismatch},
		{"file unreadable at probe time", with(good, unreadable), policy.LevelVerify, nil, StatusTempfail, ReasonPolicyInvalid},
		{"facts without the check", with(good, nil), policy.LevelVerify, nil, StatusTempfail, ReasonInternal},
	}
	for _, tc := range tests {
		p := policy.Policy{Level: tc.level, Match: tc.match, Attrs: map[string]string{"tafile": "/etc/ta.pem"}}
		v := tc.facts.JudgeCached(p)
		if v.Status != tc.want || v.Reason != tc.reason {
			t.Errorf("%s: %s %s (%s); want %s %s", tc.name, v.Status, v.Reason, v.Detail, tc.want, tc.reason)
		}
		// Without tafile= the CAs decide again: the memo keeps the policies apart.
		w := tc.facts.JudgeCached(policy.Policy{Level: tc.level, Match: tc.match})
		if strings.Contains(w.Detail, "tafile") {
			t.Errorf("%s without tafile=: %s", tc.name, w.Detail)
		}
	}
}
