package mtasts

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"
)

// rfcPolicy is the example policy of RFC 8461 §3.2.
const rfcPolicy = `version: STSv1
mode: enforce
mx: mail.example.com
mx: *.example.net
mx: backupmx.example.com
max_age: 604800
`

var rfcWant = &Policy{
	Mode:   ModeEnforce,
	MaxAge: 604800 * time.Second,
	MX:     []string{"mail.example.com", "*.example.net", "backupmx.example.com"},
}

// pol builds a policy body from lines, each ended with LF.
func pol(lines ...string) string {
	return strings.Join(lines, "\n") + "\n"
}

func samePolicy(a, b *Policy) bool {
	return a.Mode == b.Mode && a.MaxAge == b.MaxAge && slices.Equal(a.MX, b.MX)
}

// TestParsePolicy: RFC 8461 §3.2. Each case gives either the policy or the error it must
// wrap, and optionally text the error message must contain (the line number).
func TestParsePolicy(t *testing.T) {
	t.Parallel()
	const (
		v   = "version: STSv1"
		enf = "mode: enforce"
		mx  = "mx: mx.example.com"
		age = "max_age: 86400"
	)
	day := 86400 * time.Second
	simple := &Policy{Mode: ModeEnforce, MaxAge: day, MX: []string{"mx.example.com"}}
	big := strings.Repeat("x", 64)

	tests := []struct {
		name string
		body string
		want *Policy
		err  error  // sentinel the error must wrap; nil when want is set
		msg  string // text the error message must contain
	}{
		// Line ends and layout (§3.2, errata 6253).
		{name: "rfc example", body: rfcPolicy, want: rfcWant},
		{name: "rfc example CRLF", body: strings.ReplaceAll(rfcPolicy, "\n", "\r\n"), want: rfcWant},
		{name: "no final line end", body: strings.TrimSuffix(rfcPolicy, "\n"), want: rfcWant},
		{name: "mixed LF and CRLF", body: v + "\r\n" + enf + "\n" + mx + "\r\n" + age, want: simple},
		{name: "empty lines", body: "\n" + v + "\n\n" + enf + "\r\n\r\n" + mx + "\n" + age + "\n\n", want: simple},
		{name: "blank line of spaces and tabs", body: pol(v, " \t ", enf, mx, age), want: simple},
		{name: "white space around colon and after value", body: pol("version :STSv1", "mode\t:\tenforce \t", "mx:   mx.example.com ", "max_age : 86400\t"), want: simple},
		{name: "fields in any order", body: pol(age, mx, enf, v), want: simple},

		// First occurrence wins for everything but mx.
		{name: "first mode wins", body: pol(v, "mode: testing", "mode: enforce", mx, age), want: &Policy{Mode: ModeTesting, MaxAge: day, MX: []string{"mx.example.com"}}},
		{name: "later bad mode ignored", body: pol(v, enf, "mode: bogus", mx, age), want: simple},
		{name: "first bad mode counts", body: pol(v, "mode: bogus", enf, mx, age), err: ErrInvalidPolicy, msg: "line 2"},
		{name: "first max_age wins", body: pol(v, enf, mx, age, "max_age: 60"), want: simple},
		{name: "later bad max_age ignored", body: pol(v, enf, mx, age, "max_age: forever"), want: simple},
		{name: "first version wins", body: pol(v, "version: STSv2", enf, mx, age), want: simple},
		{name: "first version bad", body: pol("version: STSv2", v, enf, mx, age), err: ErrInvalidPolicy, msg: "line 1"},

		// mx (§3.2, §4.1).
		{name: "mx repeat, case and trailing dot deduped", body: pol(v, enf, "mx: MX.Example.COM.", "mx: *.example.net", "mx: mx.example.com", "mx: *.EXAMPLE.net.", age),
			want: &Policy{Mode: ModeEnforce, MaxAge: day, MX: []string{"mx.example.com", "*.example.net"}}},
		{name: "mx single label", body: pol(v, enf, "mx: localhost", age), want: &Policy{Mode: ModeEnforce, MaxAge: day, MX: []string{"localhost"}}},
		{name: "mx digits and hyphens", body: pol(v, enf, "mx: 1-2.3com.example", age), want: &Policy{Mode: ModeEnforce, MaxAge: day, MX: []string{"1-2.3com.example"}}},
		{name: "mx label of 63", body: pol(v, enf, "mx: "+big[:63]+".example", age), want: &Policy{Mode: ModeEnforce, MaxAge: day, MX: []string{big[:63] + ".example"}}},
		{name: "mx IPv4", body: pol(v, enf, "mx: 192.0.2.1", age), err: ErrInvalidPolicy, msg: "line 3"},
		{name: "mx IPv4 in brackets", body: pol(v, enf, "mx: [192.0.2.1]", age), err: ErrInvalidPolicy},
		{name: "mx IPv6", body: pol(v, enf, "mx: 2001:db8::1", age), err: ErrInvalidPolicy},
		{name: "mx IPv6 in brackets", body: pol(v, enf, "mx: [2001:db8::1]", age), err: ErrInvalidPolicy},
		{name: "mx short IPv4", body: pol(v, enf, "mx: 10.1", age), err: ErrInvalidPolicy},
		{name: "mx wildcard over IPv4", body: pol(v, enf, "mx: *.0.2.1", age), err: ErrInvalidPolicy},
		{name: "mx IP after good mx", body: pol(v, enf, mx, "mx: 192.0.2.1", age), err: ErrInvalidPolicy, msg: "line 4"},
		{name: "mx bare star", body: pol(v, enf, "mx: *", age), err: ErrInvalidPolicy},
		{name: "mx star dot", body: pol(v, enf, "mx: *.", age), err: ErrInvalidPolicy},
		{name: "mx inner wildcard", body: pol(v, enf, "mx: mx.*.example", age), err: ErrInvalidPolicy},
		{name: "mx partial wildcard", body: pol(v, enf, "mx: mx*.example", age), err: ErrInvalidPolicy},
		{name: "mx double wildcard", body: pol(v, enf, "mx: *.*.example", age), err: ErrInvalidPolicy},
		{name: "mx empty label", body: pol(v, enf, "mx: mx..example", age), err: ErrInvalidPolicy},
		{name: "mx leading dot", body: pol(v, enf, "mx: .example", age), err: ErrInvalidPolicy},
		{name: "mx two trailing dots", body: pol(v, enf, "mx: mx.example..", age), err: ErrInvalidPolicy},
		{name: "mx leading hyphen", body: pol(v, enf, "mx: -mx.example", age), err: ErrInvalidPolicy},
		{name: "mx trailing hyphen", body: pol(v, enf, "mx: mx-.example", age), err: ErrInvalidPolicy},
		{name: "mx underscore", body: pol(v, enf, "mx: m_x.example", age), err: ErrInvalidPolicy},
		{name: "mx space inside", body: pol(v, enf, "mx: mx example", age), err: ErrInvalidPolicy},
		{name: "mx label of 64", body: pol(v, enf, "mx: "+big+".example", age), err: ErrInvalidPolicy},
		{name: "mx longer than 253", body: pol(v, enf, "mx: "+strings.Repeat(big[:62]+".", 4)+"example", age), err: ErrInvalidPolicy},
		{name: "mx not ASCII", body: pol(v, enf, "mx: bücher.example", age), err: ErrInvalidPolicy},

		// Mode (§3.2, case-sensitive) and the mx requirement.
		{name: "mode none without mx", body: pol(v, "mode: none", age), want: &Policy{Mode: ModeNone, MaxAge: day}},
		{name: "mode none with mx", body: pol(v, "mode: none", mx, age), want: &Policy{Mode: ModeNone, MaxAge: day, MX: []string{"mx.example.com"}}},
		{name: "mode testing", body: pol(v, "mode: testing", mx, age), want: &Policy{Mode: ModeTesting, MaxAge: day, MX: []string{"mx.example.com"}}},
		{name: "mode testing without mx", body: pol(v, "mode: testing", age), err: ErrInvalidPolicy, msg: "mx"},
		{name: "mode enforce without mx", body: pol(v, enf, age), err: ErrInvalidPolicy, msg: "mx"},
		{name: "mode upper case", body: pol(v, "mode: Enforce", mx, age), err: ErrInvalidPolicy, msg: "line 2"},
		{name: "mode unknown", body: pol(v, "mode: report", mx, age), err: ErrInvalidPolicy},

		// max_age (§3.2): 1*10 DIGIT, at most 31557600.
		{name: "max_age at limit", body: pol(v, enf, mx, "max_age: 31557600"), want: &Policy{Mode: ModeEnforce, MaxAge: MaxMaxAge * time.Second, MX: []string{"mx.example.com"}}},
		{name: "max_age zero", body: pol(v, enf, mx, "max_age: 0"), want: &Policy{Mode: ModeEnforce, MX: []string{"mx.example.com"}}},
		{name: "max_age 10 digits", body: pol(v, enf, mx, "max_age: 0000086400"), want: simple},
		{name: "max_age over limit", body: pol(v, enf, mx, "max_age: 31557601"), err: ErrInvalidPolicy, msg: "line 4"},
		{name: "max_age 11 digits", body: pol(v, enf, mx, "max_age: 00000086400"), err: ErrInvalidPolicy},
		{name: "max_age 10 digits over limit", body: pol(v, enf, mx, "max_age: 9999999999"), err: ErrInvalidPolicy},
		{name: "max_age unit", body: pol(v, enf, mx, "max_age: 86400s"), err: ErrInvalidPolicy},
		{name: "max_age negative", body: pol(v, enf, mx, "max_age: -1"), err: ErrInvalidPolicy},
		{name: "max_age plus sign", body: pol(v, enf, mx, "max_age: +86400"), err: ErrInvalidPolicy},
		{name: "max_age inner space", body: pol(v, enf, mx, "max_age: 86 400"), err: ErrInvalidPolicy},

		// Required fields, keys and extensions.
		{name: "no version", body: pol(enf, mx, age), err: ErrInvalidPolicy, msg: "version"},
		{name: "no mode", body: pol(v, mx, age), err: ErrInvalidPolicy, msg: "mode"},
		{name: "no max_age", body: pol(v, enf, mx), err: ErrInvalidPolicy, msg: "max_age"},
		{name: "empty body", body: "", err: ErrInvalidPolicy},
		{name: "only line ends", body: "\n\r\n\n", err: ErrInvalidPolicy},
		{name: "key upper case is an extension", body: pol(v, "Mode: enforce", mx, age), err: ErrInvalidPolicy, msg: "no mode"},
		{name: "extensions ignored", body: pol(v, "ext_1.a-b: some value", enf, "comment: héllo wörld", mx, "9: x", age), want: simple},
		{name: "key of 32", body: pol(v, enf, mx, age, big[:32]+": x"), want: simple},

		// Lines that are not "key: value".
		{name: "no colon", body: pol(v, "mode enforce", mx, age), err: ErrInvalidPolicy, msg: "line 2"},
		{name: "no key", body: pol(v, enf, ": x", mx, age), err: ErrInvalidPolicy, msg: "line 3"},
		{name: "leading space", body: pol(v, " mode: enforce", mx, age), err: ErrInvalidPolicy, msg: "line 2"},
		{name: "key starts with underscore", body: pol(v, enf, mx, age, "_x: y"), err: ErrInvalidPolicy, msg: "line 5"},
		{name: "key of 33", body: pol(v, enf, mx, age, big[:33]+": x"), err: ErrInvalidPolicy, msg: "line 5"},
		{name: "key with space", body: pol(v, enf, mx, age, "max age: 1"), err: ErrInvalidPolicy, msg: "line 5"},
		{name: "empty value", body: pol(v, enf, mx, age, "note:"), err: ErrInvalidPolicy, msg: "line 5"},
		{name: "blank value", body: pol(v, enf, mx, age, "note:  \t"), err: ErrInvalidPolicy, msg: "line 5"},
		{name: "NUL", body: pol(v, enf, "mx: mx.example.com\x00", age), err: ErrInvalidPolicy, msg: "line 3"},
		{name: "bare CR inside a line", body: v + "\r" + enf + "\n" + mx + "\n" + age, err: ErrInvalidPolicy, msg: "line 1"},
		{name: "DEL", body: pol(v, enf, mx, age, "note: a\x7f"), err: ErrInvalidPolicy, msg: "line 5"},
		{name: "not UTF-8", body: pol(v, enf, mx, age, "note: \xff\xfe"), err: ErrInvalidPolicy, msg: "line 5"},
		{name: "not UTF-8 in blank line", body: pol(v, enf, mx, "\xc3", age), err: ErrInvalidPolicy, msg: "line 4"},
		{name: "replacement character is UTF-8", body: pol(v, enf, mx, age, "note: \uFFFD"), want: simple},
		{name: "HTML", body: "<html><body>Not Found</body></html>\n", err: ErrInvalidPolicy, msg: "line 1"},
		{name: "JSON", body: `{"version": "STSv1", "mode": "enforce"}`, err: ErrInvalidPolicy, msg: "line 1"},

		// Size (§3.3).
		{name: "exactly MaxPolicySize", body: padTo(pol(v, enf, mx, age), MaxPolicySize), want: simple},
		{name: "over MaxPolicySize", body: padTo(pol(v, enf, mx, age), MaxPolicySize+1), err: ErrInvalidPolicy, msg: "bytes"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := ParsePolicy([]byte(tc.body))
			if tc.want != nil {
				if err != nil {
					t.Fatalf("ParsePolicy: %v", err)
				}
				if !samePolicy(got, tc.want) {
					t.Fatalf("ParsePolicy = %+v; want %+v", got, tc.want)
				}
				return
			}
			if !errors.Is(err, tc.err) {
				t.Fatalf("ParsePolicy = %+v, %v; want error %v", got, err, tc.err)
			}
			if got != nil {
				t.Errorf("ParsePolicy returned %+v with error %v", got, err)
			}
			if !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("error %q does not mention %q", err, tc.msg)
			}
		})
	}
}

// padTo appends blank lines to body until it is n bytes long.
func padTo(body string, n int) string {
	return body + strings.Repeat("\n", n-len(body))
}

// TestParseTXT: RFC 8461 §3.1.
func TestParseTXT(t *testing.T) {
	t.Parallel()
	id32 := strings.Repeat("a1B2", 8)
	name32 := strings.Repeat("x", 32)

	tests := []struct {
		name    string
		records []string
		id      string
		err     error  // sentinel the error must wrap; nil when id is set
		msg     string // text the error message must contain
	}{
		// Which records count.
		{name: "no records", records: nil, err: ErrNoRecord},
		{name: "only other records", records: []string{"v=spf1 -all", "google-site-verification=abc"}, err: ErrNoRecord, msg: "2 TXT"},
		{name: "rfc example", records: []string{"v=STSv1; id=20160831085700Z;"}, id: "20160831085700Z"},
		{name: "other records ignored", records: []string{"v=spf1 -all", "v=STSv1; id=abc", "v=DMARC1; p=none"}, id: "abc"},
		{name: "two records", records: []string{"v=STSv1; id=abc", "v=STSv1; id=def"}, err: ErrMultipleRecords, msg: "2 of 2"},
		{name: "two identical records", records: []string{"v=STSv1; id=abc", "v=STSv1; id=abc"}, err: ErrMultipleRecords},
		{name: "invalid second record still counts", records: []string{"v=STSv1; id=abc", "v=STSv1"}, err: ErrMultipleRecords},
		{name: "other version discarded", records: []string{"v=STSv2; id=abc", "v=STSv1; id=def"}, id: "def"},
		{name: "longer version discarded", records: []string{"v=STSv10; id=abc"}, err: ErrNoRecord},
		{name: "upper-case v discarded", records: []string{"V=STSv1; id=abc"}, err: ErrNoRecord},
		{name: "lower-case version discarded", records: []string{"v=stsv1; id=abc"}, err: ErrNoRecord},
		{name: "leading space discarded", records: []string{" v=STSv1; id=abc"}, err: ErrNoRecord},
		{name: "empty record discarded", records: []string{""}, err: ErrNoRecord},
		{name: "no equals discarded", records: []string{"v STSv1; id=abc"}, err: ErrNoRecord},
		{name: "truncated version discarded", records: []string{"v=STS"}, err: ErrNoRecord},

		// Delimiters (errata 6285: white space before ";" is allowed by the ABNF).
		{name: "no trailing delimiter", records: []string{"v=STSv1; id=abc"}, id: "abc"},
		{name: "no white space", records: []string{"v=STSv1;id=abc;"}, id: "abc"},
		{name: "space before semicolon", records: []string{"v=STSv1 ; id=abc ;"}, id: "abc"},
		{name: "tabs around semicolons", records: []string{"v=STSv1\t;\tid=abc\t;\t"}, id: "abc"},
		{name: "trailing delimiter with space", records: []string{"v=STSv1; id=abc; "}, id: "abc"},
		{name: "space around equals", records: []string{"v = STSv1; id = abc"}, id: "abc"},
		{name: "trailing space without semicolon", records: []string{"v=STSv1; id=abc "}, err: ErrInvalidRecord},
		{name: "no delimiter after version", records: []string{"v=STSv1 id=abc"}, err: ErrInvalidRecord},
		{name: "double semicolon", records: []string{"v=STSv1;; id=abc"}, err: ErrInvalidRecord},
		{name: "double trailing semicolon", records: []string{"v=STSv1; id=abc;;"}, err: ErrInvalidRecord},
		{name: "comma delimiter", records: []string{"v=STSv1, id=abc"}, err: ErrNoRecord},

		// The id field.
		{name: "id of 32", records: []string{"v=STSv1; id=" + id32}, id: id32},
		{name: "id of 33", records: []string{"v=STSv1; id=" + id32 + "x"}, err: ErrInvalidRecord, msg: "32"},
		{name: "id with hyphen", records: []string{"v=STSv1; id=2016-08-31"}, err: ErrInvalidRecord},
		{name: "id with period", records: []string{"v=STSv1; id=1.2"}, err: ErrInvalidRecord},
		{name: "id with bang", records: []string{"v=STSv1; id=abc!"}, err: ErrInvalidRecord},
		{name: "id with equals", records: []string{"v=STSv1; id=abc=def"}, err: ErrInvalidRecord},
		{name: "id with inner space", records: []string{"v=STSv1; id=abc def"}, err: ErrInvalidRecord},
		{name: "id not ASCII", records: []string{"v=STSv1; id=abcé"}, err: ErrInvalidRecord},
		{name: "empty id", records: []string{"v=STSv1; id=;"}, err: ErrInvalidRecord},
		{name: "missing id", records: []string{"v=STSv1;"}, err: ErrInvalidRecord, msg: "no id"},
		{name: "version only", records: []string{"v=STSv1"}, err: ErrInvalidRecord, msg: "no id"},
		{name: "upper-case ID is an extension", records: []string{"v=STSv1; ID=abc"}, err: ErrInvalidRecord, msg: "no id"},
		{name: "first id wins", records: []string{"v=STSv1; id=first; id=second"}, id: "first"},
		{name: "later bad id still invalid", records: []string{"v=STSv1; id=first; id=bad!"}, err: ErrInvalidRecord},

		// Extension fields: checked, then ignored.
		{name: "extension before id", records: []string{"v=STSv1; ext=1; id=abc"}, id: "abc"},
		{name: "extension after id", records: []string{"v=STSv1; id=abc; rua=mailto:sts@example.com;"}, id: "abc"},
		{name: "extension name characters", records: []string{"v=STSv1; id=abc; 9x_y-z.w = a!\"#$%&'()*+,-./:<>?@[]^_`{|}~"}, id: "abc"},
		{name: "extension name of 32", records: []string{"v=STSv1; id=abc; " + name32 + "=1"}, id: "abc"},
		{name: "extension name of 33", records: []string{"v=STSv1; id=abc; " + name32 + "x=1"}, err: ErrInvalidRecord},
		{name: "extension name starts with underscore", records: []string{"v=STSv1; id=abc; _x=1"}, err: ErrInvalidRecord},
		{name: "extension without value", records: []string{"v=STSv1; id=abc; ext="}, err: ErrInvalidRecord},
		{name: "extension without equals", records: []string{"v=STSv1; id=abc; ext"}, err: ErrInvalidRecord},
		{name: "extension value with space", records: []string{"v=STSv1; id=abc; ext=a b"}, err: ErrInvalidRecord},
		{name: "extension value with equals", records: []string{"v=STSv1; id=abc; ext=a=b"}, err: ErrInvalidRecord},
		{name: "extension value not ASCII", records: []string{"v=STSv1; id=abc; ext=é"}, err: ErrInvalidRecord},
		{name: "extension value with control", records: []string{"v=STSv1; id=abc; ext=a\x01"}, err: ErrInvalidRecord},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			id, err := ParseTXT(tc.records)
			if tc.err == nil {
				if err != nil || id != tc.id {
					t.Fatalf("ParseTXT(%q) = %q, %v; want %q", tc.records, id, err, tc.id)
				}
				return
			}
			if !errors.Is(err, tc.err) || id != "" {
				t.Fatalf("ParseTXT(%q) = %q, %v; want error %v", tc.records, id, err, tc.err)
			}
			if !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("error %q does not mention %q", err, tc.msg)
			}
		})
	}
}

// TestMatchPattern: RFC 8461 §4.1.
func TestMatchPattern(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		pattern string
		host    string
		want    bool
	}{
		{name: "equal", pattern: "mail.example.com", host: "mail.example.com", want: true},
		{name: "case", pattern: "Mail.Example.com", host: "MAIL.example.COM", want: true},
		{name: "trailing dot on host", pattern: "mail.example.com", host: "mail.example.com.", want: true},
		{name: "trailing dot on pattern", pattern: "mail.example.com.", host: "mail.example.com", want: true},
		{name: "two trailing dots", pattern: "mail.example.com", host: "mail.example.com..", want: false},
		{name: "other name", pattern: "mail.example.com", host: "mail.example.net", want: false},
		{name: "subdomain of name", pattern: "example.com", host: "mail.example.com", want: false},
		{name: "parent of name", pattern: "mail.example.com", host: "example.com", want: false},

		{name: "wildcard one label", pattern: "*.example.com", host: "mx.example.com", want: true},
		{name: "wildcard case and dot", pattern: "*.Example.COM.", host: "MX.example.com.", want: true},
		{name: "wildcard no label", pattern: "*.example.com", host: "example.com", want: false},
		{name: "wildcard two labels", pattern: "*.example.com", host: "a.b.example.com", want: false},
		{name: "wildcard empty label", pattern: "*.example.com", host: ".example.com", want: false},
		{name: "wildcard other domain", pattern: "*.example.com", host: "mx.example.net", want: false},
		{name: "wildcard suffix only", pattern: "*.example.com", host: "mx.badexample.com", want: false},
		{name: "wildcard host", pattern: "*.example.com", host: "*.example.com", want: false},
		{name: "inner wildcard", pattern: "mx.*.com", host: "mx.example.com", want: false},
		{name: "inner wildcard literally", pattern: "mx.*.com", host: "mx.*.com", want: false},
		{name: "partial wildcard", pattern: "mx*.example.com", host: "mx1.example.com", want: false},
		{name: "double wildcard", pattern: "*.*.example.com", host: "a.b.example.com", want: false},
		{name: "bare star", pattern: "*", host: "com", want: false},
		{name: "star dot", pattern: "*.", host: "com.", want: false},

		{name: "empty pattern", pattern: "", host: "mx.example.com", want: false},
		{name: "empty host", pattern: "mx.example.com", host: "", want: false},
		{name: "both empty", pattern: "", host: "", want: false},
		{name: "both root", pattern: ".", host: ".", want: false},
		{name: "no Unicode case folding", pattern: "k.example", host: "\u212a.example", want: false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := MatchPattern(tc.pattern, tc.host); got != tc.want {
				t.Errorf("MatchPattern(%q, %q) = %v; want %v", tc.pattern, tc.host, got, tc.want)
			}
		})
	}
}

func TestAllows(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		host string
		want bool
	}{
		{name: "first pattern", host: "mail.example.com", want: true},
		{name: "wildcard pattern", host: "mx1.example.net.", want: true},
		{name: "last pattern", host: "BACKUPMX.example.com", want: true},
		{name: "below wildcard", host: "a.mx1.example.net", want: false},
		{name: "no pattern", host: "mx.attacker.example", want: false},
		{name: "empty", host: "", want: false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := rfcWant.Allows(tc.host); got != tc.want {
				t.Errorf("Allows(%q) = %v; want %v", tc.host, got, tc.want)
			}
		})
	}
	if (&Policy{Mode: ModeNone}).Allows("mail.example.com") {
		t.Error("a policy without mx allows a host")
	}
}

// TestPolicyString: String writes the §3.2 format, which ParsePolicy reads back.
func TestPolicyString(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		p    *Policy
		want string
	}{
		{name: "rfc example", p: rfcWant, want: rfcPolicy},
		{name: "none without mx", p: &Policy{Mode: ModeNone, MaxAge: time.Hour}, want: "version: STSv1\nmode: none\nmax_age: 3600\n"},
		{name: "testing", p: &Policy{Mode: ModeTesting, MaxAge: MaxMaxAge * time.Second, MX: []string{"*.example.com"}},
			want: "version: STSv1\nmode: testing\nmx: *.example.com\nmax_age: 31557600\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got := tc.p.String()
			if got != tc.want {
				t.Fatalf("String() = %q; want %q", got, tc.want)
			}
			back, err := ParsePolicy([]byte(got))
			if err != nil {
				t.Fatalf("ParsePolicy(String()): %v", err)
			}
			if !samePolicy(back, tc.p) {
				t.Errorf("ParsePolicy(String()) = %+v; want %+v", back, tc.p)
			}
		})
	}
}

func TestModeString(t *testing.T) {
	t.Parallel()
	tests := []struct {
		m    Mode
		want string
	}{
		{ModeNone, "none"},
		{ModeTesting, "testing"},
		{ModeEnforce, "enforce"},
		{Mode(7), "Mode(7)"},
	}
	for _, tc := range tests {
		if got := tc.m.String(); got != tc.want {
			t.Errorf("Mode(%d).String() = %q; want %q", int(tc.m), got, tc.want)
		}
	}
}
