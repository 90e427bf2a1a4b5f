package fingerprint_test

import (
	"bytes"
	"testing"

	"github.com/tlsgate/tlsgate/internal/fingerprint"
)

// The notation is Postfix's: SHA-256, upper-case hex pairs joined by ':'.
func TestOf(t *testing.T) {
	t.Parallel()
	const want = "BA:78:16:BF:8F:01:CF:EA:41:41:40:DE:5D:AE:22:23:B0:03:61:A3:96:17:7A:9C:B4:10:FF:61:F2:00:15:AD"
	if got := fingerprint.Of([]byte("abc")); got != want {
		t.Errorf("Of(abc) = %s; want %s", got, want)
	}
	if got := fingerprint.Format(nil); got != "" {
		t.Errorf("Format(nil) = %q; want empty", got)
	}
}

// Parse reads hex of either case with or without ':' separators; never an odd digit
// count, a foreign character or nothing.
func TestParse(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   string
		want []byte
	}{
		{"AB:cd:01", []byte{0xab, 0xcd, 0x01}},
		{"abcd01", []byte{0xab, 0xcd, 0x01}},
		{"A:B", []byte{0xab}}, // every ':' is skipped, as policy and verify always did
		{":ab:", []byte{0xab}},
		{"", nil},
		{":", nil},
		{"abc", nil},
		{"ab cd", nil},
		{"zz", nil},
	}
	for _, tc := range tests {
		got, ok := fingerprint.Parse(tc.in)
		if ok != (tc.want != nil) || !bytes.Equal(got, tc.want) {
			t.Errorf("Parse(%q) = %x, %v; want %x", tc.in, got, ok, tc.want)
		}
	}
	if b, ok := fingerprint.Parse(fingerprint.Of([]byte("x"))); !ok || len(b) != 32 {
		t.Errorf("Parse(Of(x)) = %x, %v; want 32 bytes", b, ok)
	}
}
