package dane

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
)

func rec(u, s, m uint8, data string) *dns.TLSA {
	return &dns.TLSA{Usage: u, Selector: s, MatchingType: m, Certificate: data}
}

var (
	h256 = strings.Repeat("ab", 32)
	h512 = strings.Repeat("cd", 64)
)

// TestUsable: RFC 7672 §3.1.3: only DANE-TA(2) and DANE-EE(3) with known selector and
// matching type and well-formed data.
func TestUsable(t *testing.T) {
	t.Parallel()
	tests := []struct {
		r    *dns.TLSA
		want bool
	}{
		{rec(3, 1, 1, h256), true},
		{rec(2, 0, 2, h512), true},
		{rec(3, 0, 0, "3082"), true},
		{rec(0, 1, 1, h256), false}, // PKIX-TA
		{rec(1, 1, 1, h256), false}, // PKIX-EE
		{rec(4, 1, 1, h256), false},
		{rec(3, 2, 1, h256), false},      // unknown selector
		{rec(3, 1, 3, h256), false},      // unknown matching type
		{rec(3, 1, 1, h256[:62]), false}, // short digest
		{rec(3, 1, 2, h256), false},      // SHA-512 with SHA-256 length
		{rec(3, 1, 1, "zz"+h256[2:]), false},
		{rec(3, 0, 0, ""), false},
	}
	for _, tc := range tests {
		if got := Usable(tc.r); got != tc.want {
			t.Errorf("Usable(%d %d %d %.8s...) = %v; want %v", tc.r.Usage, tc.r.Selector, tc.r.MatchingType, tc.r.Certificate, got, tc.want)
		}
	}
}

// TestDigestAgility: RFC 7671 §9: per (usage, selector) only the strongest digest counts.
func TestDigestAgility(t *testing.T) {
	t.Parallel()
	in := []*dns.TLSA{
		rec(3, 1, 1, h256), rec(3, 1, 2, h512), // SHA-256 dropped for 3 1
		rec(3, 0, 1, h256),                       // alone for 3 0: kept
		rec(2, 0, 0, "3082"), rec(2, 0, 1, h256), // full data kept beside the digest
		rec(1, 1, 2, h512), // unusable
	}
	var got []string
	for _, r := range UsableRecords(in) {
		got = append(got, fmt.Sprintf("%d %d %d", r.Usage, r.Selector, r.MatchingType))
	}
	want := "3 1 2,3 0 1,2 0 0,2 0 1"
	if strings.Join(got, ",") != want {
		t.Errorf("UsableRecords = %s; want %s", strings.Join(got, ","), want)
	}
}

func TestVerifyErrors(t *testing.T) {
	t.Parallel()
	if _, err := Verify([]*dns.TLSA{rec(1, 1, 1, h256)}, nil, nil, nowForTest); err != ErrNoUsableRecords {
		t.Errorf("unusable only: %v", err)
	}
	if _, err := Verify([]*dns.TLSA{rec(3, 1, 1, h256)}, nil, nil, nowForTest); err != ErrNoCertificate {
		t.Errorf("no chain: %v", err)
	}
}

var nowForTest = time.Date(2026, 11, 21, 0, 0, 0, 0, time.UTC)
