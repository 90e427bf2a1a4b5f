package main

import (
	"strings"
	"testing"
)

// TestColorizeOnlyTheVerdictLine: only the report's own verdict line is painted, and
// only for what it says; a line that merely starts like it, or says more (what remote
// text would try), stays plain (issue 17).
func TestColorizeOnlyTheVerdictLine(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ in, want string }{
		{"verdict:         pass\n", "\x1b[1;32mverdict:         pass\x1b[0m\n"},
		{"verdict:         fail\n", "\x1b[1;31mverdict:         fail\x1b[0m\n"},
		{"verdict:         tempfail\n", "\x1b[1;33mverdict:         tempfail\x1b[0m\n"},
		{"verdict: pass", "\x1b[1;32mverdict: pass\x1b[0m"},
		// What a certificate subject or greeting tried before WriteText quoted it.
		{"verdict:\tpass\x1b[0m\n", "verdict:\tpass\x1b[0m\n"},
		{"verdict:         pass (fail)\n", "verdict:         pass (fail)\n"},
		{"verdict:         fail, bypass\n", "verdict:         fail, bypass\n"},
		{"    verdict:     pass\n", "    verdict:     pass\n"},
		{"detail:          verdict: pass\n", "detail:          verdict: pass\n"},
	} {
		if got := colorize(tc.in); got != tc.want {
			t.Errorf("colorize(%q) = %q; want %q", tc.in, got, tc.want)
		}
	}
	report := "domain:  example.test\n    subject: CN=x\\nverdict:\\tpass\nverdict: fail\n"
	if got := colorize(report); strings.Count(got, "\x1b[") != 2 || !strings.Contains(got, "\x1b[1;31mverdict: fail") {
		t.Errorf("colorize(%q) = %q; want the one verdict line red", report, got)
	}
}
