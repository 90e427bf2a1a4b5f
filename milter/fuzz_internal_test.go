package milter

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"testing"

	"github.com/tlsgate/tlsgate/policy"
	"github.com/tlsgate/tlsgate/verify"
)

// recorder is a FactSource that records the domains it is asked for and answers every
// one with verify.ErrPending, as the Verifier does while a probe runs. It never logs,
// so any Error record of the Filter is Decide's own (a recovered panic).
type recorder struct {
	mu    sync.Mutex
	asked []string
}

func (r *recorder) Facts(ctx context.Context, domain string) (*verify.Facts, bool, error) {
	r.mu.Lock()
	r.asked = append(r.asked, domain)
	r.mu.Unlock()
	return nil, false, fmt.Errorf("%w: fuzz", verify.ErrPending)
}

// fuzzLogin is the SASL login of a customer that requires encrypt for every recipient
// domain: with it, every recipient with a usable domain is probed.
const fuzzLogin = "fuzz-user"

func fuzzPolicies(tb testing.TB) *policy.Set {
	tb.Helper()
	cs, err := policy.NewCustomers([]policy.Customer{{Name: "fuzz", SASLLogins: []string{fuzzLogin}, Level: policy.LevelEncrypt}})
	if err != nil {
		tb.Fatal(err)
	}
	return &policy.Set{Table: policy.NewTable(), Customers: cs}
}

// checkDomain fails unless d is a domain as NormalizeDomain documents its output:
// lower-case A-labels, no trailing dot, labels of 1 to 63 octets of letters, digits,
// '-' and '_' with no '-' at either end, at most 253 octets, and a fixed point.
func checkDomain(t *testing.T, what, d string) {
	t.Helper()
	bad := func(why string) { t.Fatalf("%s %q: %s", what, d, why) }
	if d == "" || len(d) > 253 {
		bad("length not in 1..253")
	}
	for label := range strings.SplitSeq(d, ".") {
		if label == "" || len(label) > 63 {
			bad(fmt.Sprintf("label %q length not in 1..63", label))
		}
		if label[0] == '-' || label[len(label)-1] == '-' {
			bad(fmt.Sprintf("label %q starts or ends with '-'", label))
		}
		for i := 0; i < len(label); i++ {
			if c := label[i]; !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
				bad(fmt.Sprintf("byte %q", c))
			}
		}
	}
	if again, err := policy.NormalizeDomain(d); err != nil || again != d {
		bad(fmt.Sprintf("not a fixed point: NormalizeDomain gives %q, %v", again, err))
	}
}

// printable fails unless s is printable ASCII (what may go into a reply or a header).
func printable(t *testing.T, what, s string) {
	t.Helper()
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			t.Fatalf("%s %q has the byte %#x", what, s, s[i])
		}
	}
}

// FuzzRecipientDomain fuzzes the recipient-domain extractor (splitAddress, then
// policy.NormalizeDomain, as Decide uses them) and Decide itself, with a customer that
// requires encrypt for every recipient. For any RCPT argument and sender:
//   - nothing panics (Decide would recover, tempfail and log an Error record);
//   - splitAddress returns pieces of its input, and a domain it found comes back
//     unchanged from "<u@domain>" and from "<@route:u@domain>";
//   - Decide either skips the recipient for the reason its address form gives,
//     fails a domain that is not a valid name without asking for facts about it, or
//     asks the FactSource about exactly one domain: the normalized A-label name, which
//     is a fixed point of the extractor;
//   - no recipient with a domain is accepted unchecked except an address literal (no
//     false pass), and what reaches a reply is printable ASCII on one line.
func FuzzRecipientDomain(f *testing.F) {
	for _, s := range []struct{ rcpt, sender string }{
		{"user@example.test", "alice@sender.example"},
		{"<User@EXAMPLE.Test.>", "<>"},
		{`"a@other.test"@example.test`, ""},
		{`"a\"@other.test"@example.test`, ""},
		{`"unterminated@example.test`, ""},
		{"<@relay1.invalid,@relay2.invalid:user@example.test>", ""},
		{"user%other.test@example.test", "bob"},
		{"other.test!user@example.test", ""},
		{"user@bücher.example", "alice@bücher.example"},
		{"user@xn--bcher-kva.example", ""},
		{"user@[192.0.2.1]", ""},
		{"<user@[IPv6:2001:db8::1]>", ""},
		{"user@192.0.2.1", ""},
		{"<>", ""},
		{"", ""},
		{"user@exa\x00mple.test", "\x00"},
		{"user@example.test\r\n", ""},
		{"user@" + strings.Repeat("a", 64) + ".test", ""},
		{"user@example。test", ""},
		{"@", "@"},
	} {
		f.Add(s.rcpt, s.sender)
	}
	set := fuzzPolicies(f)
	f.Fuzz(func(t *testing.T, rcpt, sender string) {
		local, domain, ok := splitAddress(rcpt)
		switch {
		case ok && !strings.Contains(rcpt, local+"@"+domain):
			t.Fatalf("splitAddress(%q) = %q, %q: not a split of the input", rcpt, local, domain)
		case !ok && (domain != "" || !strings.Contains(rcpt, local)):
			t.Fatalf("splitAddress(%q) = %q, %q, false", rcpt, local, domain)
		}
		literal := ok && strings.HasPrefix(domain, "[")
		var norm string
		var normErr error
		if ok {
			for _, again := range []string{"<u@" + domain + ">", "<@route.invalid:u@" + domain + ">"} {
				if l, d, ok := splitAddress(again); l != "u" || d != domain || !ok {
					t.Fatalf("splitAddress(%q) = %q, %q, %v; want \"u\", %q, true", again, l, d, ok, domain)
				}
			}
			if !literal {
				norm, normErr = policy.NormalizeDomain(domain)
				if normErr == nil {
					checkDomain(t, "normalized domain", norm)
					if _, d, _ := splitAddress("<u@" + norm + ">"); d != norm {
						t.Fatalf("extractor not idempotent: %q gives %q, then %q", rcpt, norm, d)
					}
				}
			}
		}

		var logged bytes.Buffer
		src := &recorder{}
		fl := NewFilter(Config{
			Policies:          set,
			Facts:             src,
			CheckedTransports: []string{"smtp"},
			Log:               slog.New(slog.NewTextHandler(&logged, &slog.HandlerOptions{Level: slog.LevelError})),
		})
		d := fl.Decide(context.Background(), Request{Rcpt: rcpt, Sender: sender, SASLLogin: fuzzLogin,
			Client: netip.MustParseAddr("192.0.2.7"), QueueID: "FUZZ"})
		if logged.Len() > 0 {
			t.Fatalf("Decide(%q, sender %q) logged an error: %s", rcpt, sender, logged.String())
		}

		wantSkip := ""
		switch {
		case !ok && local == "":
			wantSkip = "null recipient"
		case !ok:
			wantSkip = "recipient without domain"
		case literal:
			wantSkip = "address literal"
		}
		if d.Skip != wantSkip {
			t.Fatalf("Decide(%q): skip %q; want %q", rcpt, d.Skip, wantSkip)
		}
		switch {
		case wantSkip != "":
			if d.Outcome != Accept || d.Checked || len(src.asked) != 0 {
				t.Fatalf("Decide(%q): skipped (%s) but outcome %s, checked %v, asked %q", rcpt, d.Skip, d.Outcome, d.Checked, src.asked)
			}
		case normErr != nil:
			// Not a name a resolver can look up: a fail verdict, never a probe.
			v := d.Verdict
			if len(src.asked) != 0 || !d.Checked || v.Status != verify.StatusFail || v.Reason != verify.ReasonNoMX || d.Outcome != Reject {
				t.Fatalf("Decide(%q) with invalid domain %q (%v): outcome %s, checked %v, status %s, reason %q, asked %q",
					rcpt, domain, normErr, d.Outcome, d.Checked, v.Status, v.Reason, src.asked)
			}
			if v.Domain == "" || len(v.Domain) > 100 {
				t.Fatalf("Decide(%q): verdict domain %q; want 1 to 100 octets", rcpt, v.Domain)
			}
			printable(t, "verdict domain", v.Domain)
		default:
			if len(src.asked) != 1 || src.asked[0] != norm {
				t.Fatalf("Decide(%q): asked for %q; want [%q]", rcpt, src.asked, norm)
			}
			if d.Verdict.Domain != norm || d.Outcome != Tempfail || d.Verdict.Reason != verify.ReasonVerificationInProgress {
				t.Fatalf("Decide(%q): verdict for %q, outcome %s, reason %q; want %q, tempfail, in-progress",
					rcpt, d.Verdict.Domain, d.Outcome, d.Verdict.Reason, norm)
			}
		}
		if d.Outcome != Accept {
			s := d.Reply.String()
			printable(t, "reply", s)
			if len(s)+len("\r\n") > maxReplyLine {
				t.Fatalf("Decide(%q): reply of %d octets: %q", rcpt, len(s), s)
			}
		}
		if d.Checked {
			printable(t, "audit header", HeaderValue(d.Verdict, d.Rule))
		}
	})
}
