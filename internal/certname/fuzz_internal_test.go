package certname

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"strings"
	"testing"
)

// FuzzMatch: any certificate name and reference, however hostile, gives an answer
// without panicking, ASCII case never changes it, and an exact name always matches
// itself unless OpenSSL refuses it (empty, NUL, or a leading-dot pattern).
func FuzzMatch(f *testing.F) {
	for _, s := range [][2]string{{"*.example.com", "mx.example.com"}, {"mx.example.com.", ".example.com"},
		{"*.xn--a.com", "xn--b.xn--a.com"}, {"a\x00b", "a"}, {"*", "*"}, {".", ".."}} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, pattern, ref string) {
		got := Match(pattern, ref)
		if up := Match(strings.ToUpper(pattern), ref); isASCII(pattern) && up != got {
			t.Errorf("Match(%q, %q) = %v, upper-case pattern %v", pattern, ref, got, up)
		}
		if pattern != "" && !strings.Contains(pattern, "\x00") && !Match(pattern, pattern) {
			t.Errorf("Match(%q, itself) = false", pattern)
		}
	})
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// FuzzDNSConstraints: a hostile name constraints extension and CN never panic.
func FuzzDNSConstraints(f *testing.F) {
	f.Add([]byte{0x30, 0x0f, 0xa0, 0x0d, 0x30, 0x0b, 0x82, 0x09, 'a', 't', 't', 'a', 'c', 'k', 'e', 'r', '.'}, "mx.example.test")
	f.Add([]byte{0x30, 0x06, 0xa1, 0x04, 0x30, 0x02, 0x82, 0x00}, "a.b")
	f.Fuzz(func(t *testing.T, ext []byte, cn string) {
		ca := &x509.Certificate{Extensions: []pkix.Extension{{Id: oidNameConstraints, Value: ext}}}
		leaf := &x509.Certificate{Subject: pkix.Name{Names: []pkix.AttributeTypeAndValue{{Type: oidCommonName, Value: cn}}}}
		_ = CheckNameConstraints([][]*x509.Certificate{{leaf, ca}})
	})
}
