package policy

import "testing"

// protocols= as Postfix 3.6+ reads it (tls_misc.c tls_proto_mask_lims), the set of
// versions its client then offers.
func TestParseProtocols(t *testing.T) {
	tests := []struct {
		in, want string
		bad      bool
	}{
		{in: "", want: "SSLv2 SSLv3 TLSv1 TLSv1.1 TLSv1.2 TLSv1.3"},
		{in: ">=TLSv1", want: "TLSv1 TLSv1.1 TLSv1.2 TLSv1.3"}, // Postfix 3.6+'s default
		{in: ">=TLSv1.2", want: "TLSv1.2 TLSv1.3"},
		{in: "<=TLSv1.2", want: "SSLv2 SSLv3 TLSv1 TLSv1.1 TLSv1.2"},
		{in: ">=TLSv1:<=TLSv1.1", want: "TLSv1 TLSv1.1"},
		{in: "!SSLv2:!SSLv3:!TLSv1:!TLSv1.1", want: "TLSv1.2 TLSv1.3"},
		{in: "!SSLv2, !SSLv3", want: "TLSv1 TLSv1.1 TLSv1.2 TLSv1.3"}, // main.cf syntax
		{in: "TLSv1.2:TLSv1.3", want: "TLSv1.2 TLSv1.3"},              // includes exclude the rest
		{in: "TLSv1.3:!TLSv1.3", want: "none"},
		{in: ">=TLSv1.3:<=TLSv1.2", want: "none"},
		{in: "tlsv1.2", bad: true}, // names are case-sensitive in Postfix
		{in: ">=TLSv1.4", bad: true},
		{in: "!", bad: true},
	}
	for _, tc := range tests {
		got, err := parseProtocols(tc.in)
		if (err != nil) != tc.bad {
			t.Errorf("parseProtocols(%q) error %v; want error %v", tc.in, err, tc.bad)
			continue
		}
		if !tc.bad && got.String() != tc.want {
			t.Errorf("parseProtocols(%q) = %s; want %s", tc.in, got, tc.want)
		}
	}
}

func TestProtocolsAttributeChecked(t *testing.T) {
	pol, warns, err := parsePolicy("encrypt protocols=>=TLSv1.2")
	if err != nil || len(warns) != 0 || pol.Invalid != "" {
		t.Fatalf("valid protocols=: %v %v %q", err, warns, pol.Invalid)
	}
	if set, ok := pol.Protocols(); !ok || set.String() != "TLSv1.2 TLSv1.3" {
		t.Errorf("Protocols() = %s, %v", set, ok)
	}
	pol, _, _ = parsePolicy("encrypt protocols=TLSv1.4")
	if pol.Invalid == "" {
		t.Error("an unknown protocol does not make the policy invalid; Postfix aborts the TLS session")
	}
}
