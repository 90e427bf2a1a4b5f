package verify

import (
	"crypto/tls"
	"strings"
	"testing"

	"github.com/tlsgate/tlsgate/internal/smtpprobe"
	"github.com/tlsgate/tlsgate/policy"
)

// A tls_policy entry's protocols= (postconf(5) smtp_tls_policy_maps) is what Postfix
// offers that destination: a server whose highest version is below it fails, for good.
// The probe offers every version, so what it negotiated is the server's highest.
func TestJudgeProtocolsAttribute(t *testing.T) {
	t.Parallel()
	k := newJudgeKit(t)
	good := k.trusted(mx1)
	at := func(v uint16) *Facts {
		r := k.tlsOK(good)
		r.TLSVersion = v
		if v < tls.VersionTLS12 { // RSA key exchange: Postfix's handshake completes
			r.Authenticated = &smtpprobe.Hello{Version: v, Suite: 0x0035}
		}
		return facts(mx(mx1, r))
	}
	tests := []struct {
		facts     *Facts
		level     policy.Level
		protocols string
		want      Status
		detail    string
	}{
		{at(tls.VersionTLS11), policy.LevelEncrypt, ">=TLSv1.2", StatusFail, "the server speaks at most TLS 1.1; the policy's protocols=>=TLSv1.2 allows only TLSv1.2 TLSv1.3"},
		{at(tls.VersionTLS11), policy.LevelVerify, "!SSLv2:!SSLv3:!TLSv1:!TLSv1.1", StatusFail, "at most TLS 1.1"},
		{at(tls.VersionTLS11), policy.LevelEncrypt, ">=TLSv1", StatusPass, ""},
		{at(tls.VersionTLS13), policy.LevelEncrypt, ">=TLSv1.2", StatusPass, ""},
		{at(tls.VersionTLS13), policy.LevelEncrypt, "<=TLSv1.2", StatusPass, ""}, // RFC 9325: a TLS 1.3 server speaks 1.2
		{at(tls.VersionTLS12), policy.LevelSecure, "TLSv1.3", StatusFail, "at most TLS 1.2"},
		{at(tls.VersionTLS13), policy.LevelEncrypt, "<=TLSv1.1", StatusTempfail, "is not known"},
		{at(tls.VersionTLS13), policy.LevelEncrypt, ">=TLSv1.3:<=TLSv1.2", StatusFail, "leaves no protocol version"},
	}
	for _, tc := range tests {
		p := policy.Policy{Level: tc.level, Attrs: map[string]string{"protocols": tc.protocols}}
		v := tc.facts.JudgeCached(p)
		if v.Status != tc.want || !strings.Contains(v.Detail, tc.detail) {
			t.Errorf("%s protocols=%s: %s %s (%s); want %s %q", tc.level, tc.protocols, v.Status, v.Reason, v.Detail, tc.want, tc.detail)
		}
		// The same facts without the attribute: the memo keeps them apart.
		if w := tc.facts.JudgeCached(policy.Policy{Level: tc.level}); w.Status != StatusPass {
			t.Errorf("%s without protocols=: %s (%s)", tc.level, w.Status, w.Detail)
		}
	}
}
