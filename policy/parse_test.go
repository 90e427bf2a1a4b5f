package policy

import (
	"bytes"
	"errors"
	"io"
	"os"
	"reflect"
	"strings"
	"testing"
)

// entry builds an Entry whose Policy.Key and Source are filled in as
// ParseFile fills them, for a file named "t".
func entry(key, src string, p Policy) Entry {
	p.Key = key
	p.Source = src
	return Entry{Key: key, Policy: p}
}

func TestParseFile(t *testing.T) {
	t.Parallel()
	fp1 := "8A:07:FB:DC:01:0D:43:E5:2A:76:8F:60:6B:97:4E:23:89:36:62:A6:71:E9:6E:20:0C:EF:21:7D:35:2F:72:7B"
	fp2 := "49:87:85:41:22:6A:75:4E:5D:39:DB:35:49:14:8F:8A:07:80:64:1A:CA:93:8F:A7:2A:1B:4A:37:DD:D7:FC:49"
	fp3 := "D7:58:57:2D:7E:61:57:ED:2A:0A:57:4C:D9:6D:F7:B9:2E:9F:5D:12:02:49:2C:07:51:9A:01:90:DF:54:9B:C9"
	tests := []struct {
		name string
		in   string
		want []Entry
		// wantWarn holds, per expected warning in order, a substring of
		// Warning.String() (which starts with "t:LINE: ").
		wantWarn []string
	}{
		{
			name: "empty input",
			in:   "",
		},
		{
			name: "only comments and blank lines",
			in:   "# a comment\n\n   \n\t\n  # indented comment\n#example.com encrypt\n",
		},
		{
			name: "comments and blank lines around an entry",
			in:   "# tls_policy\n\n   \n\t\nexample.com encrypt\n  # indented comment is still a comment\n\n",
			want: []Entry{entry("example.com", "t:5", Policy{Level: LevelEncrypt})},
		},
		{
			name: "no newline at end of file",
			in:   "example.com encrypt",
			want: []Entry{entry("example.com", "t:1", Policy{Level: LevelEncrypt})},
		},
		{
			name: "hash inside a value is not a comment",
			in:   "example.com encrypt exclude=mx#1.example.com\n",
			want: []Entry{entry("example.com", "t:1", Policy{
				Level: LevelEncrypt,
				Attrs: map[string]string{"exclude": "mx#1.example.com"},
			})},
		},
		{
			name: "continuation lines carry attributes",
			in: "example.net fingerprint\n" +
				"        match=" + fp1 + "\n" +
				"\tmatch=" + fp2 + "|" + fp3 + "\n" +
				"example.org may\n",
			want: []Entry{
				entry("example.net", "t:1", Policy{Level: LevelFingerprint, Match: []string{fp1, fp2, fp3}}),
				entry("example.org", "t:4", Policy{Level: LevelMay}),
			},
		},
		{
			name: "comment and blank lines between a line and its continuation",
			in:   "example.com secure\n# why\n\n   match=example.com\n",
			want: []Entry{entry("example.com", "t:1", Policy{Level: LevelSecure, Match: []string{"example.com"}})},
		},
		{
			name: "continuation of the level itself",
			in:   "example.com\n  verify\n",
			want: []Entry{entry("example.com", "t:1", Policy{Level: LevelVerify})},
		},
		{
			name: "CRLF line endings",
			in:   "# comment\r\nexample.com encrypt\r\n\r\n.example.com secure match=nexthop:dot-nexthop\r\n  ciphers=high\r\n",
			want: []Entry{
				entry("example.com", "t:2", Policy{Level: LevelEncrypt}),
				entry(".example.com", "t:4", Policy{
					Level: LevelSecure,
					Match: []string{"nexthop", "dot-nexthop"},
					Attrs: map[string]string{"ciphers": "high"},
				}),
			},
		},
		{
			name: "tabs as separators",
			in:   "example.com\tsecure\tmatch=nexthop\t\tciphers=high\t\n",
			want: []Entry{entry("example.com", "t:1", Policy{
				Level: LevelSecure,
				Match: []string{"nexthop"},
				Attrs: map[string]string{"ciphers": "high"},
			})},
		},
		{
			name: "commas separate attributes as in Postfix",
			in:   "example.com secure,match=nexthop, protocols=>=TLSv1.2\n",
			want: []Entry{entry("example.com", "t:1", Policy{
				Level: LevelSecure,
				Match: []string{"nexthop"},
				Attrs: map[string]string{"protocols": ">=TLSv1.2"},
			})},
		},
		{
			name: "secure with match nexthop:dot-nexthop",
			in:   "example.com secure match=nexthop:dot-nexthop\n",
			want: []Entry{entry("example.com", "t:1", Policy{Level: LevelSecure, Match: []string{"nexthop", "dot-nexthop"}})},
		},
		{
			name: "verify match values split on colon, empty parts dropped, several match= concatenated",
			in:   "example.com verify match=hostname::.example.com: match=mx.example.net\n",
			want: []Entry{entry("example.com", "t:1", Policy{
				Level: LevelVerify,
				Match: []string{"hostname", ".example.com", "mx.example.net"},
			})},
		},
		{
			name: "fingerprints split on bar and kept as written",
			in:   "example.com fingerprint match=" + strings.ToLower(fp1) + "||" + fp2 + " match=" + fp3 + "\n",
			want: []Entry{entry("example.com", "t:1", Policy{
				Level: LevelFingerprint,
				Match: []string{strings.ToLower(fp1), fp2, fp3},
			})},
		},
		{
			name: "upper case keys lowercased, level and attribute names case-insensitive, values verbatim",
			in:   "EXAMPLE.Com ENCRYPT\n.Sub.Example.COM Secure MATCH=Example.COM Ciphers=HIGH\n",
			want: []Entry{
				entry("example.com", "t:1", Policy{Level: LevelEncrypt}),
				entry(".sub.example.com", "t:2", Policy{
					Level: LevelSecure,
					Match: []string{"Example.COM"},
					Attrs: map[string]string{"ciphers": "HIGH"},
				}),
			},
		},
		{
			name: "IDN key converted to A-label, trailing dot removed",
			in:   "bücher.example encrypt\n.Café.example. may\nexample.com. verify\n",
			want: []Entry{
				entry("xn--bcher-kva.example", "t:1", Policy{Level: LevelEncrypt}),
				entry(".xn--caf-dma.example", "t:2", Policy{Level: LevelMay}),
				entry("example.com", "t:3", Policy{Level: LevelVerify}),
			},
		},
		{
			name: "all levels",
			in:   "a.example none\nb.example may\nc.example encrypt\nd.example dane\ne.example dane-only\nf.example fingerprint\ng.example verify\nh.example secure\n",
			// Postfix refuses fingerprint without fingerprints (smtp_tls_policy.c).
			wantWarn: []string{`t:6: key "f.example": level fingerprint without match= fingerprints`},
			want: []Entry{
				entry("a.example", "t:1", Policy{Level: LevelNone}),
				entry("b.example", "t:2", Policy{Level: LevelMay}),
				entry("c.example", "t:3", Policy{Level: LevelEncrypt}),
				entry("d.example", "t:4", Policy{Level: LevelDane}),
				entry("e.example", "t:5", Policy{Level: LevelDaneOnly}),
				entry("f.example", "t:6", Policy{Level: LevelFingerprint}),
				entry("g.example", "t:7", Policy{Level: LevelVerify}),
				entry("h.example", "t:8", Policy{Level: LevelSecure}),
			},
		},
		{
			name: "every known attribute",
			in: "example.com secure match=nexthop protocols=!SSLv2:!SSLv3 ciphers=high exclude=aNULL:MD5\n" +
				"  tafile=/etc/a.pem tafile=/etc/b.pem servername=hostname connection_reuse=yes enable_rpk=No\n",
			want: []Entry{entry("example.com", "t:1", Policy{
				Level: LevelSecure,
				Match: []string{"nexthop"},
				Attrs: map[string]string{
					"protocols":        "!SSLv2:!SSLv3",
					"ciphers":          "high",
					"exclude":          "aNULL:MD5",
					"tafile":           "/etc/a.pem /etc/b.pem",
					"servername":       "hostname",
					"connection_reuse": "yes",
					"enable_rpk":       "No",
				},
			})},
		},
		{
			name: "value split at the first equals sign",
			in:   "example.com encrypt protocols=>=TLSv1.2 exclude=a=b\n",
			want: []Entry{entry("example.com", "t:1", Policy{
				Level: LevelEncrypt,
				Attrs: map[string]string{"protocols": ">=TLSv1.2", "exclude": "a=b"},
			})},
		},
		{
			name: "duplicate keys are all returned",
			in:   "example.com encrypt\nEXAMPLE.COM secure\n",
			want: []Entry{
				entry("example.com", "t:1", Policy{Level: LevelEncrypt}),
				entry("example.com", "t:2", Policy{Level: LevelSecure}),
			},
		},
		{
			// Kept for the socketmap (TestRawAndNextHops), not as domain entries.
			name: "next-hop keys are not domain entries",
			in:   "[mx.example.com]:587 encrypt\n[mx.example.com] secure\nmx.example.com:25 verify\n[192.0.2.1]:submission encrypt\nexample.com may\n",
			want: []Entry{entry("example.com", "t:5", Policy{Level: LevelMay})},
		},
		{
			name: "invalid keys skipped with warning",
			in:   "example..com encrypt\nuser@example.com encrypt\n* encrypt\n192.0.2.1 encrypt\nok.example may\n",
			want: []Entry{entry("ok.example", "t:5", Policy{Level: LevelMay})},
			wantWarn: []string{
				`t:1: policy: invalid domain "example..com": empty label; entry skipped`,
				`t:2: policy: invalid domain "user@example.com"`,
				`t:3: policy: invalid domain "*"`,
				`t:4: policy: invalid domain "192.0.2.1": IP address`,
			},
		},
		{
			name:     "unknown attribute kept with warning",
			in:       "example.com encrypt Foo=Bar\n",
			want:     []Entry{entry("example.com", "t:1", Policy{Level: LevelEncrypt, Attrs: map[string]string{"foo": "Bar"}})},
			wantWarn: []string{`t:1: key "example.com": unknown attribute "foo" kept (Postfix treats this policy as invalid`},
		},
		{
			name:     "match at a level without names is ignored with warning",
			in:       "example.com encrypt match=example.com\nexample.net dane-only match=nexthop\n",
			want:     []Entry{entry("example.com", "t:1", Policy{Level: LevelEncrypt}), entry("example.net", "t:2", Policy{Level: LevelDaneOnly})},
			wantWarn: []string{`t:1: key "example.com": attribute "match" invalid at level encrypt; ignored`, `t:2: key "example.net": attribute "match" invalid at level dane-only`},
		},
		{
			name:     "empty match value",
			in:       "example.com secure match=\n",
			want:     []Entry{entry("example.com", "t:1", Policy{Level: LevelSecure})},
			wantWarn: []string{`attribute "match" has empty value`},
		},
		{
			name: "attributes at level none are ignored with warning",
			in:   "example.com none ciphers=high match=x\n",
			want: []Entry{entry("example.com", "t:1", Policy{Level: LevelNone})},
			wantWarn: []string{
				`t:1: key "example.com": attribute "ciphers=high" ignored at level none`,
				`t:1: key "example.com": attribute "match=x" ignored at level none`,
			},
		},
		{
			name:     "single-instance attribute repeated keeps the first",
			in:       "example.com encrypt protocols=>=TLSv1.2 protocols=>=TLSv1.3\n",
			want:     []Entry{entry("example.com", "t:1", Policy{Level: LevelEncrypt, Attrs: map[string]string{"protocols": ">=TLSv1.2"}})},
			wantWarn: []string{`attribute "protocols" specified more than once; first kept`},
		},
		{
			name:     "tafile at a level without PKIX",
			in:       "example.com encrypt tafile=/etc/ca.pem\n",
			want:     []Entry{entry("example.com", "t:1", Policy{Level: LevelEncrypt, Attrs: map[string]string{"tafile": "/etc/ca.pem"}})},
			wantWarn: []string{`attribute "tafile" invalid at level encrypt`},
		},
		{
			// smtp_tls_policy.c: servername= must pass valid_hostname, else the policy
			// is invalid ("specifies an invalid hostname").
			name: "servername must be a valid hostname",
			in:   "example.com verify servername=mx_1.example.com\nexample.net verify servername=-bad.example\nexample.org verify servername=192.0.2.1\n",
			want: []Entry{
				entry("example.com", "t:1", Policy{Level: LevelVerify, Attrs: map[string]string{"servername": "mx_1.example.com"}}),
				entry("example.net", "t:2", Policy{Level: LevelVerify, Attrs: map[string]string{"servername": "-bad.example"}}),
				entry("example.org", "t:3", Policy{Level: LevelVerify, Attrs: map[string]string{"servername": "192.0.2.1"}}),
			},
			wantWarn: []string{`t:2: key "example.net": attribute "servername=-bad.example" specifies an invalid hostname`, `t:3: key "example.org": attribute "servername=192.0.2.1" specifies an invalid hostname`},
		},
		{
			name:     "connection_reuse must be yes or no",
			in:       "example.com encrypt connection_reuse=maybe\n",
			want:     []Entry{entry("example.com", "t:1", Policy{Level: LevelEncrypt, Attrs: map[string]string{"connection_reuse": "maybe"}})},
			wantWarn: []string{`attribute "connection_reuse" has value "maybe", want yes or no`},
		},
		{
			name:     "malformed fingerprint kept with warning",
			in:       "example.com fingerprint match=AB:CD|not-hex|ABC\n",
			want:     []Entry{entry("example.com", "t:1", Policy{Level: LevelFingerprint, Match: []string{"AB:CD", "not-hex", "ABC"}})},
			wantWarn: []string{`fingerprint "AB:CD" is 2 bytes`, `malformed fingerprint "not-hex"`, `malformed fingerprint "ABC"`},
		},
		{
			// Postfix 3.6+ pins SHA-256 digests (smtp_tls_fingerprint_digest = sha256):
			// an MD5 or SHA-1 pin, still common in old tables, can never match.
			name: "MD5 and SHA-1 pins kept with a warning: they never match",
			in: "example.com fingerprint match=EC:3B:2D:B0:5B:B7:4D:7C:97:A7:CB:96:38:E2:B5:1D" +
				"|0123456789ABCDEF0123456789ABCDEF01234567\n",
			want: []Entry{entry("example.com", "t:1", Policy{Level: LevelFingerprint,
				Match: []string{"EC:3B:2D:B0:5B:B7:4D:7C:97:A7:CB:96:38:E2:B5:1D", "0123456789ABCDEF0123456789ABCDEF01234567"}})},
			wantWarn: []string{`is 16 bytes, an MD5 digest; Postfix compares SHA-256 digests`, `is 20 bytes, a SHA-1 digest`},
		},
		{
			name:     "continuation without a logical line is ignored with one warning",
			in:       "  match=example.com\n\tciphers=high\n# c\nexample.com may\n",
			want:     []Entry{entry("example.com", "t:4", Policy{Level: LevelMay})},
			wantWarn: []string{"t:1: logical line must not start with whitespace"},
		},
		{
			name: "byte order mark at the start",
			in:   "\uFEFFexample.com encrypt\n",
			want: []Entry{entry("example.com", "t:1", Policy{Level: LevelEncrypt})},
		},
		{
			name: "line of exactly the maximum length",
			in:   padLine("example.com encrypt exclude=", maxLogicalLine) + "\r\n",
			want: []Entry{entry("example.com", "t:1", Policy{
				Level: LevelEncrypt,
				Attrs: map[string]string{"exclude": strings.Repeat("a", maxLogicalLine-len("example.com encrypt exclude="))},
			})},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, warns, err := ParseFile(strings.NewReader(tt.in), "t")
			if err != nil {
				t.Fatalf("ParseFile: %v", err)
			}
			// Invalid is set exactly for the entries with a warning that Postfix
			// refuses them; it is checked here and left out of the comparison.
			invalidAt := map[string]bool{}
			for _, w := range warns {
				if strings.HasSuffix(w.Msg, invalidInPostfix) {
					invalidAt[w.Source] = true
				}
			}
			for i := range got {
				if (got[i].Policy.Invalid != "") != invalidAt[got[i].Policy.Source] {
					t.Errorf("%s: Invalid = %q, but the warnings say %v", got[i].Key, got[i].Policy.Invalid, invalidAt[got[i].Policy.Source])
				}
				got[i].Policy.Invalid = ""
				got[i].Policy.Raw = "" // TestRawAndNextHops
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("entries:\n got %#v\nwant %#v", got, tt.want)
			}
			checkWarnings(t, warns, tt.wantWarn)
		})
	}
}

// padLine pads prefix with 'a' to n bytes.
func padLine(prefix string, n int) string {
	return prefix + strings.Repeat("a", n-len(prefix))
}

// checkWarnings checks that warns has one warning per want, in order, whose
// String() contains that substring.
func checkWarnings(t *testing.T, warns []Warning, want []string) {
	t.Helper()
	if len(warns) != len(want) {
		t.Errorf("got %d warnings, want %d:\n%s", len(warns), len(want), warningsText(warns))
		return
	}
	for i, w := range warns {
		if !strings.Contains(w.String(), want[i]) {
			t.Errorf("warning %d = %q, want it to contain %q", i, w.String(), want[i])
		}
	}
}

func warningsText(warns []Warning) string {
	var b strings.Builder
	for _, w := range warns {
		b.WriteString("\t" + w.String() + "\n")
	}
	return b.String()
}

func TestParseFileErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		in      string
		wantIs  []error
		wantMsg []string // substrings of the error message
	}{
		{
			name:    "unknown level",
			in:      "# c\nexample.com encrypt\nexample.net\tfast\n",
			wantIs:  []error{ErrSyntax, ErrUnknownLevel},
			wantMsg: []string{"t:3:", `"example.net"`, `"fast"`},
		},
		{
			name:    "tlsgate level in a Postfix file",
			in:      "example.com encrypt\nexample.net published\n",
			wantIs:  []error{ErrSyntax, ErrUnknownLevel},
			wantMsg: []string{"t:2:", `"published"`, "not a Postfix one"},
		},
		{
			name:    "missing level",
			in:      "example.com encrypt\nexample.net\n",
			wantIs:  []error{ErrSyntax},
			wantMsg: []string{"t:2:", `"example.net"`, "missing TLS level"},
		},
		{
			name:    "missing level with trailing whitespace",
			in:      "example.net \t \r\n",
			wantIs:  []error{ErrSyntax},
			wantMsg: []string{"t:1:", "missing TLS level"},
		},
		{
			name:    "missing level, only separators",
			in:      "example.net ,, ,\n",
			wantIs:  []error{ErrSyntax},
			wantMsg: []string{"t:1:", "missing TLS level"},
		},
		{
			name:    "level is an attribute",
			in:      "example.net match=nexthop secure\n",
			wantIs:  []error{ErrSyntax, ErrUnknownLevel},
			wantMsg: []string{"t:1:", `"match=nexthop"`},
		},
		{
			name:    "attribute without equals sign",
			in:      "example.com secure match\n",
			wantIs:  []error{ErrSyntax},
			wantMsg: []string{"t:1:", `"match"`, "missing '='"},
		},
		{
			name:    "attribute without name",
			in:      "example.com secure =nexthop\n",
			wantIs:  []error{ErrSyntax},
			wantMsg: []string{"t:1:", `"=nexthop"`, "missing attribute name"},
		},
		{
			name:    "trailing hash comment is not a comment",
			in:      "example.com encrypt # TLS 1.2 only\n",
			wantIs:  []error{ErrSyntax},
			wantMsg: []string{"t:1:", `"#"`, "missing '='"},
		},
		{
			name:    "comma inside a value splits it as in Postfix",
			in:      "example.com encrypt protocols=!SSLv2,!SSLv3\n",
			wantIs:  []error{ErrSyntax},
			wantMsg: []string{"t:1:", `"!SSLv3"`},
		},
		{
			name:    "error in a continuation line reports the logical line",
			in:      "# c\nexample.com fingerprint\n  match=AA:BB\n  oops\n",
			wantIs:  []error{ErrSyntax},
			wantMsg: []string{"t:2:", `"oops"`},
		},
		{
			name:    "error in a next-hop entry is still an error",
			in:      "[mx.example.com]:587 bogus\n",
			wantIs:  []error{ErrSyntax, ErrUnknownLevel},
			wantMsg: []string{"t:1:"},
		},
		{
			name:    "overlong physical line",
			in:      "example.com may\n" + padLine("example.net encrypt servername=", maxLogicalLine+1) + "\n",
			wantIs:  []error{ErrSyntax},
			wantMsg: []string{"t:2:", "logical line longer than 65536 bytes"},
		},
		{
			name:    "overlong physical line without newline",
			in:      strings.Repeat("x", 3*maxLogicalLine),
			wantIs:  []error{ErrSyntax},
			wantMsg: []string{"t:1:", "longer than"},
		},
		{
			name:    "overlong logical line made of continuations",
			in:      "example.com encrypt\n" + strings.Repeat(" "+strings.Repeat("a", 1023)+"=b\n", 70),
			wantIs:  []error{ErrSyntax},
			wantMsg: []string{"t:1:", "longer than"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, warns, err := ParseFile(strings.NewReader(tt.in), "t")
			if err == nil {
				t.Fatalf("ParseFile succeeded with %d entries, want error", len(got))
			}
			if got != nil || warns != nil {
				t.Errorf("ParseFile returned entries %v and warnings %v with an error", got, warns)
			}
			for _, target := range tt.wantIs {
				if !errors.Is(err, target) {
					t.Errorf("error %q does not wrap %q", err, target)
				}
			}
			for _, s := range tt.wantMsg {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not contain %q", err, s)
				}
			}
		})
	}
}

// repeatReader yields n bytes of line repeated.
type repeatReader struct {
	line []byte
	n    int64
	off  int
}

func (r *repeatReader) Read(p []byte) (int, error) {
	if r.n <= 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > r.n {
		p = p[:r.n]
	}
	n := 0
	for n < len(p) {
		c := copy(p[n:], r.line[r.off:])
		n += c
		r.off = (r.off + c) % len(r.line)
	}
	r.n -= int64(n)
	return n, nil
}

func TestParseFileSizeLimit(t *testing.T) {
	t.Parallel()
	// 4 KiB comment lines: many megabytes, few lines.
	line := []byte("#" + strings.Repeat("c", 4094) + "\n")
	tests := []struct {
		name    string
		size    int64
		wantErr bool
	}{
		{"exactly the limit", maxFileSize, false},
		{"one byte over", maxFileSize + 1, true},
		{"far over", 4 * maxFileSize, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, _, err := ParseFile(&repeatReader{line: line, n: tt.size}, "big")
			if !tt.wantErr {
				if err != nil {
					t.Fatalf("ParseFile: %v", err)
				}
				return
			}
			if !errors.Is(err, ErrSyntax) || !strings.Contains(err.Error(), "big: ") || !strings.Contains(err.Error(), "larger than") {
				t.Errorf("error = %v, want ErrSyntax naming the file and the size limit", err)
			}
		})
	}
}

var errBrokenReader = errors.New("broken reader")

type brokenReader struct{ r io.Reader }

func (b brokenReader) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	if errors.Is(err, io.EOF) {
		return n, errBrokenReader
	}
	return n, err
}

func TestParseFileReadError(t *testing.T) {
	t.Parallel()
	_, _, err := ParseFile(brokenReader{strings.NewReader("example.com encrypt\nexample.net ")}, "t")
	if !errors.Is(err, errBrokenReader) {
		t.Fatalf("error = %v, want the reader's error", err)
	}
	if !strings.Contains(err.Error(), "t:2") {
		t.Errorf("error %q does not name the line", err)
	}
}

// TestParseFileTestdata parses the TLS_README style sample file.
func TestParseFileTestdata(t *testing.T) {
	t.Parallel()
	data, err := os.ReadFile("testdata/tls_policy")
	if err != nil {
		t.Fatal(err)
	}
	const src = "testdata/tls_policy"
	want := []Entry{
		entry("example.edu", src+":8", Policy{Level: LevelNone}),
		entry("example.mil", src+":9", Policy{Level: LevelMay}),
		entry("example.gov", src+":10", Policy{Level: LevelEncrypt, Attrs: map[string]string{"protocols": ">=TLSv1.2"}}),
		entry("example.com", src+":11", Policy{Level: LevelVerify, Attrs: map[string]string{"ciphers": "high"}}),
		entry("example.net", src+":12", Policy{Level: LevelSecure}),
		entry(".example.net", src+":13", Policy{Level: LevelSecure, Match: []string{".example.net", "example.net"}}),
		entry("thumb.example", src+":21", Policy{Level: LevelFingerprint, Match: []string{
			"D7:58:57:2D:7E:61:57:ED:2A:0A:57:4C:D9:6D:F7:B9:2E:9F:5D:12:02:49:2C:07:51:9A:01:90:DF:54:9B:C9",
			"8A:07:FB:DC:01:0D:43:E5:2A:76:8F:60:6B:97:4E:23:89:36:62:A6:71:E9:6E:20:0C:EF:21:7D:35:2F:72:7B",
		}}),
		entry("dnssec.example", src+":25", Policy{Level: LevelDaneOnly}),
		entry(".dnssec.example", src+":26", Policy{Level: LevelDane}),
		entry("bank.example", src+":29", Policy{
			Level: LevelSecure,
			Match: []string{"nexthop", "dot-nexthop"},
			Attrs: map[string]string{"tafile": "/etc/postfix/bank-ca.pem", "servername": "hostname"},
		}),
		entry("xn--bcher-kva.example", src+":35", Policy{Level: LevelEncrypt}),
		entry("xn--caf-dma.example", src+":36", Policy{Level: LevelEncrypt, Attrs: map[string]string{"connection_reuse": "yes"}}),
	}
	var wantWarn []string // next-hop entries are kept for the socketmap, silently
	for _, variant := range []struct {
		name string
		data []byte
	}{
		{"LF", data},
		{"CRLF", bytes.ReplaceAll(data, []byte("\n"), []byte("\r\n"))},
	} {
		t.Run(variant.name, func(t *testing.T) {
			t.Parallel()
			got, warns, err := ParseFile(bytes.NewReader(variant.data), src)
			if err != nil {
				t.Fatalf("ParseFile: %v", err)
			}
			for i := range got {
				got[i].Policy.Raw = "" // TestRawAndNextHops
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("entries:\n got %#v\nwant %#v", got, want)
			}
			checkWarnings(t, warns, wantWarn)
		})
	}
}

func TestWarningString(t *testing.T) {
	t.Parallel()
	tests := []struct {
		w    Warning
		want string
	}{
		{Warning{Source: "/etc/postfix/tls_policy:12", Msg: "duplicate entry"}, "/etc/postfix/tls_policy:12: duplicate entry"},
		{Warning{Msg: "no source"}, "no source"},
	}
	for _, tt := range tests {
		if got := tt.w.String(); got != tt.want {
			t.Errorf("%#v.String() = %q, want %q", tt.w, got, tt.want)
		}
	}
}

func FuzzParseFile(f *testing.F) {
	sample, err := os.ReadFile("testdata/tls_policy")
	if err != nil {
		f.Fatal(err)
	}
	for _, seed := range [][]byte{
		sample,
		bytes.ReplaceAll(sample, []byte("\n"), []byte("\r\n")),
		[]byte("example.com encrypt\n"),
		[]byte(".example.com secure match=nexthop:dot-nexthop,ciphers=high\n  protocols=>=TLSv1.2\n"),
		[]byte("example.net fingerprint\n match=AA:BB|CC:DD\n\tmatch=EE:FF\n"),
		[]byte("[mx.example.com]:587 encrypt\n  # comment\n bücher.example may"),
		[]byte("  stray\nEXAMPLE.COM. none ciphers=high\nexample.org bogus\n"),
		[]byte("example.com secure match\n"),
		[]byte("\uFEFFxn--bcher-kva.example dane-only\r\n"),
		[]byte("ℶ븇 mAY"), // the A-label of this key used to be rejected by Add
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		entries, warns, err := ParseFile(bytes.NewReader(data), "fuzz")
		if err != nil {
			if !errors.Is(err, ErrSyntax) {
				t.Errorf("error %v does not wrap ErrSyntax", err)
			}
			if entries != nil || warns != nil {
				t.Errorf("entries or warnings returned with error %v", err)
			}
			return
		}
		for _, w := range warns {
			if !strings.HasPrefix(w.Source, "fuzz:") {
				t.Errorf("warning source %q", w.Source)
			}
		}
		var tab Table
		for _, e := range entries {
			if e.Policy.Level < LevelNone || e.Policy.Level > LevelSecure {
				t.Errorf("entry %q has invalid level %d", e.Key, e.Policy.Level)
			}
			if e.Key == "" || e.Policy.Key != e.Key {
				t.Errorf("entry key %q, policy key %q", e.Key, e.Policy.Key)
			}
			if k, err := NormalizeDomainKey(e.Key); err != nil || k != e.Key {
				t.Errorf("entry key %q is not normalized: %q, %v", e.Key, k, err)
			}
			if !strings.HasPrefix(e.Policy.Source, "fuzz:") {
				t.Errorf("entry source %q", e.Policy.Source)
			}
			if _, err := tab.Add(e.Key, e.Policy); err != nil {
				t.Errorf("Add(%q): %v", e.Key, err)
			}
			if _, ok := tab.Lookup(strings.TrimPrefix(e.Key, ".")); !ok && !strings.HasPrefix(e.Key, ".") {
				t.Errorf("Lookup(%q) found nothing after Add", e.Key)
			}
		}
	})
}

// TestRawAndNextHops: the socketmap serves a tls_policy entry to Postfix as Postfix
// would have read it from the file, so every entry keeps its raw value (continuation
// lines joined, attributes tlsgate does not model and attributes Postfix refuses
// included), and next-hop keys, which the milter never uses, are kept for it too.
func TestRawAndNextHops(t *testing.T) {
	t.Parallel()
	in := "example.com   secure match=.example.com ciphers=high\n" +
		"  protocols=>=TLSv1.2\n" +
		"bad.example encrypt match=nexthop\n" +
		"[MX.Example.COM]:587 encrypt  \n" +
		"[bücher.example] dane-only\n" +
		"[192.0.2.1] fingerprint match=AA:BB\n" +
		"mx.example.net:25 verify\n" +
		"[MX.example.com]:587 none\n"
	tab := NewTable()
	path := t.TempDir() + "/tls_policy"
	if err := os.WriteFile(path, []byte(in), 0o600); err != nil {
		t.Fatal(err)
	}
	warns, err := tab.LoadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for key, want := range map[string]string{
		"example.com": "secure match=.example.com ciphers=high  protocols=>=TLSv1.2",
		"bad.example": "encrypt match=nexthop",
	} {
		p, ok := tab.Lookup(key)
		if !ok || p.Raw != want {
			t.Errorf("Lookup(%q).Raw = %q, %v; want %q", key, p.Raw, ok, want)
		}
	}
	if p, _ := tab.Lookup("bad.example"); p.Invalid == "" {
		t.Error("bad.example: Invalid not set for match= at level encrypt")
	}
	for key, want := range map[string]string{
		"[mx.example.com]:587":             "encrypt",
		"[MX.EXAMPLE.COM]:587":             "encrypt",
		"[xn--bcher-kva.example]":          "dane-only",
		"[bücher.example]":                 "dane-only",
		"[192.0.2.1]":                      "fingerprint match=AA:BB",
		"mx.example.net:25":                "verify",
		"[mx.example.net]:25":              "",
		"mx.example.com":                   "",
		"[mx.example.com]":                 "",
		"[mx.example.com]:587\x00injected": "",
	} {
		p, ok := tab.LookupNextHop(key)
		if ok != (want != "") || p.Raw != want {
			t.Errorf("LookupNextHop(%q) = %q, %v; want %q", key, p.Raw, ok, want)
		}
	}
	if _, ok := tab.Lookup("mx.example.com"); ok {
		t.Error("a next-hop key matched a recipient domain")
	}
	var dup bool
	for _, w := range warns {
		dup = dup || strings.Contains(w.Msg, `duplicate entry "[mx.example.com]:587"`)
	}
	if !dup {
		t.Errorf("no duplicate warning for the second [mx.example.com]:587 entry: %v", warns)
	}
}

// TestValidHostname: Postfix's util/valid_hostname.c, which servername= values must pass.
func TestValidHostname(t *testing.T) {
	for in, want := range map[string]bool{
		"hostname": true, "nexthop": true, "mx.example.com": true, "mx_1.example.com": true,
		"a-b.example": true, "1a.example": true, "MX.Example.COM": true,
		"": false, "mx..example": false, ".mx.example": false, "mx.example.": false,
		"-mx.example": false, "mx-.example": false, "192.0.2.1": false, "123": false,
		"mx#1.example": false, "a=b": false, "m\u00fcller.example": false,
		strings.Repeat("a", 63) + ".example": true, strings.Repeat("a", 64) + ".example": false,
		strings.Repeat("a.", 127) + "bb": false,
	} {
		if got := validHostname(in); got != want {
			t.Errorf("validHostname(%q) = %v, want %v", in, got, want)
		}
	}
}
