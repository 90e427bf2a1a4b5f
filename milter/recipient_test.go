package milter_test

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/tlsgate/tlsgate/milter"
	"github.com/tlsgate/tlsgate/policy"
	"github.com/tlsgate/tlsgate/verify"
)

// TestDecideHostileRecipients pins down what Decide does with RCPT arguments a client
// can send: which recipients it skips (and says why), which domain it asks its
// FactSource about, and which it fails as not a valid domain name without a probe. The
// acme customer requires encrypt for every recipient domain, so every recipient that is
// not skipped is judged.
//
// The domain is the part after the last '@' outside a quoted local part of the RCPT
// argument, unless Postfix sent {rcpt_addr}: its own resolution, which follows the
// routing operators ('%', '!', '@' inside quotes) of a local domain's address; see the
// rows marked "routing" here and TestDecideResolvedRecipient for what Postfix sends.
func TestDecideHostileRecipients(t *testing.T) {
	t.Parallel()
	const (
		skipNull    = "null recipient"
		skipNoDom   = "recipient without domain"
		skipLiteral = "address literal"
		invalid     = "invalid" // a fail verdict: 550 5.1.2, nothing asked
	)
	label63 := strings.Repeat("a", 63)
	// 4 labels of 63 octets and their dots are 255 octets; cut to 253 and 254.
	long := strings.Join([]string{label63, label63, label63, label63}, ".")
	tests := []struct {
		name string
		rcpt string
		// want is the domain the FactSource is asked about, or a skip reason, or invalid.
		want string
	}{
		// Null and domain-less recipients.
		{"empty", "", skipNull},
		{"blanks", " \t ", skipNull},
		{"null recipient <>", "<>", skipNull},
		{"lone @", "@", skipNull},
		{"source route without mailbox", "<@relay.invalid:>", skipNull},
		{"local part only", "postmaster", skipNoDom},
		{"empty domain", "<user@>", skipNoDom},
		{"trailing @ (Postfix: resolve_null_domain=no rejects it)", "user@example.test@", skipNoDom},
		{"NUL", "\x00", skipNoDom},
		{"fullwidth at sign is not '@'", "user\uff20example.test", skipNoDom},
		{"unterminated quote hides the @", `"user@example.test`, skipNoDom},
		{"routing: bang path without @", "example.test!user", skipNoDom},
		{"routing: percent without @", "user%example.test", skipNoDom},

		// Quoted and escaped local parts.
		{"angle brackets", "<user@example.test>", "example.test"},
		{"quoted @", `"a@other.test"@example.test`, "example.test"},
		{"quoted escaped quote and @", `"a\"@other.test"@example.test`, "example.test"},
		{"escaped @ outside quotes", `user\@other.test@example.test`, "example.test"},
		{"quoted string with spaces", `"first last"@example.test`, "example.test"},
		{"doubled @", "user@@example.test", "example.test"},
		{"routing: quoted @ (followed by Postfix for a local right-most domain)", `"user@other.test"@example.test`, "example.test"},
		{"routing: percent hack", "user%other.test@example.test", "example.test"},
		{"routing: bang path", "other.test!user@example.test", "example.test"},
		{"source route", "<@relay1.invalid,@relay2.invalid:user@example.test>", "example.test"},
		{"source route without brackets", "@relay.invalid:user@example.test", "example.test"},
		{"source route with a quoted ':'", `<@relay.invalid:"a:b"@example.test>`, "example.test"},
		{"empty local part", "<@example.test>", "example.test"},
		{"long local part", strings.Repeat("x", 10000) + "@example.test", "example.test"},

		// Case, dots, blanks.
		{"upper case", "USER@EXAMPLE.TEST", "example.test"},
		{"trailing dot", "user@example.test.", "example.test"},
		{"two trailing dots", "user@example.test..", invalid},
		{"leading dot", "user@.example.test", invalid},
		{"empty label", "user@example..test", invalid},
		{"space in domain", "user@exa mple.test", invalid},
		{"CRLF after the address", "user@example.test\r\n", "example.test"},
		{"blank before '>'", "<user@example.test >", "example.test"},
		{"doubled brackets", "<<user@example.test>>", invalid},
		{"ESMTP parameter left in", "<user@example.test> NOTIFY=NEVER", invalid},
		{"underscore", "user@_mx.example.test", "_mx.example.test"},
		{"hyphen at label start", "user@-example.test", invalid},

		// Control characters.
		{"NUL in domain", "user@exa\x00mple.test", invalid},
		{"NUL after domain", "user@example.test\x00", invalid},
		{"NUL as domain", "user@\x00", invalid},
		{"CR LF inside domain", "user@example.test\r\nX: y", invalid},
		{"DEL in domain", "user@example\x7f.test", invalid},
		{"ESC in domain", "user@\x1b[31mexample.test", invalid},
		{"invalid UTF-8", "user@ex\xffample.test", invalid},

		// IDN.
		{"U-label", "user@bücher.example", "xn--bcher-kva.example"},
		{"U-label, upper case", "user@BÜCHER.example", "xn--bcher-kva.example"},
		{"A-label", "user@xn--bcher-kva.example", "xn--bcher-kva.example"},
		{"A-label, upper case", "user@XN--BCHER-KVA.EXAMPLE", "xn--bcher-kva.example"},
		{"ideographic full stop (UTS #46 maps it to '.')", "user@example\u3002test", "example.test"},
		{"A-label that does not decode", "user@xn--a.example", invalid},
		{"A-label of an ASCII label", "user@xn--example-.test", invalid},

		// Lengths.
		{"label of 63 octets", "user@" + label63 + ".test", label63 + ".test"},
		{"label of 64 octets", "user@" + label63 + "a.test", invalid},
		{"domain of 253 octets", "user@" + long[:253], long[:253]},
		{"domain of 254 octets", "user@" + long[:254], invalid},
		{"domain of 253 octets and the root dot", "user@" + long[:253] + ".", long[:253]},
		{"huge domain", "user@" + strings.Repeat("a.", 100000) + "test", invalid},

		// Address literals and IP addresses.
		{"IPv4 literal", "user@[192.0.2.1]", skipLiteral},
		{"IPv6 literal", "<user@[IPv6:2001:db8::1]>", skipLiteral},
		// Postfix bounces these (trivial-rewrite: not a valid_mailhost_literal), so
		// the skip lets nothing through.
		{"malformed literal", "user@[192.0.2.1", skipLiteral},
		{"literal with a name after it", "user@[192.0.2.1]evil.example", skipLiteral},
		{"blank before a literal", "user@ [192.0.2.1]", invalid},
		{"bare IPv4 address", "user@192.0.2.1", invalid},
		{"bare IPv6 address", "user@2001:db8::1", invalid},
	}
	facts := map[string]*verify.Facts{}
	for _, tc := range tests {
		if !strings.Contains(tc.want, " ") && tc.want != invalid {
			facts[tc.want] = tlsFacts(tc.want)
		}
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			src := &factSource{facts: facts}
			f := milter.NewFilter(milter.Config{
				Policies:          policySet(t, nil, []policy.Customer{acme}),
				Facts:             src,
				CheckedTransports: []string{"smtp"},
				Log:               newLogger(t),
			})
			d := f.Decide(context.Background(), milter.Request{Rcpt: tc.rcpt, SASLLogin: "acme-user", QueueID: "4XyZ1"})
			asked := src.Asked()
			switch tc.want {
			case skipNull, skipNoDom, skipLiteral:
				if d.Skip != tc.want || d.Outcome != milter.Accept || d.Checked || len(asked) != 0 {
					t.Errorf("%q: skip %q, outcome %s, checked %v, asked %q; want skip %q, accept, nothing asked",
						tc.rcpt, d.Skip, d.Outcome, d.Checked, asked, tc.want)
				}
			case invalid:
				if d.Skip != "" || d.Outcome != milter.Reject || !d.Checked || d.Verdict.Status != verify.StatusFail ||
					d.Verdict.Reason != verify.ReasonNoMX || len(asked) != 0 {
					t.Errorf("%q: skip %q, outcome %s (%s), checked %v, status %s, reason %q, asked %q; want a no-mx fail, reject, nothing asked",
						tc.rcpt, d.Skip, d.Outcome, d.Reply.String(), d.Checked, d.Verdict.Status, d.Verdict.Reason, asked)
				}
				if got := d.Reply.String(); !strings.HasPrefix(got, "550 5.1.2 ") {
					t.Errorf("%q: reply %q; want 550 5.1.2", tc.rcpt, got)
				}
			default:
				if d.Skip != "" || !slices.Equal(asked, []string{tc.want}) || d.Verdict.Domain != tc.want ||
					d.Outcome != milter.Accept || !d.Checked || d.Verdict.Status != verify.StatusPass {
					t.Errorf("%q: skip %q, asked %q, verdict for %q, outcome %s, checked %v, status %s; want %q asked and passed",
						tc.rcpt, d.Skip, asked, d.Verdict.Domain, d.Outcome, d.Checked, d.Verdict.Status, tc.want)
				}
			}
			if d.Outcome != milter.Accept {
				for _, c := range []byte(d.Reply.String()) {
					if c < 0x20 || c > 0x7e {
						t.Fatalf("%q: reply %q has the byte %#x", tc.rcpt, d.Reply.String(), c)
					}
				}
			}
		})
	}
}

// TestDecideResolvedRecipient: with {rcpt_addr}, the domain checked is the one Postfix
// resolved the recipient to (smtpd_milter.c: smtpd_resolve_addr), so a routed address
// of a local domain cannot bypass the policy of the domain it is delivered to.
func TestDecideResolvedRecipient(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ name, rcpt, rcptAddr, want string }{
		{"quoted @", `"user@other.test"@example.test`, "user@other.test", "other.test"},
		{"percent hack", "user%other.test@example.test", "user@other.test", "other.test"},
		{"bang path", "other.test!user@example.test", "user@other.test", "other.test"},
		{"quoted local part", "<a.b@example.test>", `"a b"@example.test`, "example.test"},
		{"no rcpt_addr: the RCPT argument", "user%other.test@example.test", "", "example.test"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			src := &factSource{facts: map[string]*verify.Facts{tc.want: tlsFacts(tc.want)}}
			f := milter.NewFilter(milter.Config{
				Policies:          policySet(t, nil, []policy.Customer{acme}),
				Facts:             src,
				CheckedTransports: []string{"smtp"},
				Log:               newLogger(t),
			})
			d := f.Decide(context.Background(), milter.Request{Rcpt: tc.rcpt, RcptAddr: tc.rcptAddr, SASLLogin: "acme-user"})
			if asked := src.Asked(); len(asked) != 1 || asked[0] != tc.want || d.Verdict.Domain != tc.want {
				t.Errorf("asked about %q, verdict for %q; want %q", asked, d.Verdict.Domain, tc.want)
			}
		})
	}
}
