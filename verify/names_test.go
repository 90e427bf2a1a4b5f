package verify

import "testing"

// TestMatchName follows OpenSSL X509_check_host with Postfix's
// X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS.
func TestMatchName(t *testing.T) {
	t.Parallel()
	tests := []struct {
		cert, ref string
		want      bool
	}{
		{"mx.example.com", "mx.example.com", true},
		{"MX.Example.COM", "mx.example.com", true},
		{"mx.example.com.", "mx.example.com", false}, // nothing trimmed (certname.TestMatchAgreesWithOpenSSL)
		{"mx.example.com", "mx2.example.com", false},
		{"*.example.com", "mx.example.com", true},
		{"*.example.com", "example.com", false},
		{"*.example.com", "a.mx.example.com", false},
		{"*.com", "example.com", false},               // a wildcard needs two labels after it
		{"mx*.example.com", "mx1.example.com", false}, // partial wildcards are off
		{"*.*.example.com", "a.b.example.com", false},
		{"mx.example.com", ".example.com", true}, // dot-nexthop: any subdomain
		{"a.b.example.com", ".example.com", true},
		{"example.com", ".example.com", false},
		{"*.example.com", ".example.com", true}, // compared literally, as OpenSSL does
		{"badexample.com", ".example.com", false},
		{"", "example.com", false},
		{"example.com", "", false},
	}
	for _, tc := range tests {
		if got := matchName(tc.cert, tc.ref); got != tc.want {
			t.Errorf("matchName(%q, %q) = %v; want %v", tc.cert, tc.ref, got, tc.want)
		}
	}
}
