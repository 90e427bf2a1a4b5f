package config

import (
	"errors"
	"io/fs"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/tlsgate/tlsgate/policy"
)

func TestPolicySet(t *testing.T) {
	t.Parallel()
	policyFile := filepath.Join("testdata", "tls_policy")
	c := defaultConfig()
	c.File = "/etc/tlsgate.yaml"
	c.PolicyFiles = []string{policyFile}
	c.policies = []policyEntry{
		{Domain: "Config.Example", Level: "secure", Match: []string{"nexthop:dot-nexthop"}, OnFail: "tempfail", OnTempfail: "header"},
		{Domain: ".sub.config.example", Level: "encrypt"},
	}
	c.customers = []customerEntry{{
		Name: "acme", Senders: []string{".acme.example"}, SASLLogins: []string{"acme"},
		ClientNetworks: []string{"192.0.2.7", "2001:db8::/32"}, Level: "verify", OnFail: "header",
	}}
	if err := c.validate(); err != nil {
		t.Fatal(err)
	}
	set, warns, err := c.PolicySet()
	if err != nil {
		t.Fatal(err)
	}

	lookups := []struct {
		domain string
		ok     bool
		want   policy.Policy
	}{
		{"config.example", true, policy.Policy{Level: policy.LevelSecure, Match: []string{"nexthop", "dot-nexthop"},
			OnFail: policy.ActionTempfail, OnTempfail: policy.ActionHeader, Source: "config policies[0]", Key: "config.example",
			Raw: "secure match=nexthop:dot-nexthop"}},
		{"a.sub.config.example", true, policy.Policy{Level: policy.LevelEncrypt, Source: "config policies[1]", Key: ".sub.config.example", Raw: "encrypt"}},
		{"files.example", true, policy.Policy{Level: policy.LevelEncrypt, Source: policyFile + ":2", Key: "files.example"}},
		{"mx.files.example", true, policy.Policy{Level: policy.LevelVerify, Match: []string{"hostname", "nexthop"},
			Source: policyFile + ":3", Key: ".files.example", Raw: "verify match=hostname:nexthop"}},
		{"dane.example", true, policy.Policy{Level: policy.LevelDane, Source: policyFile + ":4", Key: "dane.example"}},
		{"daneonly.example", true, policy.Policy{Level: policy.LevelDaneOnly, Source: policyFile + ":5", Key: "daneonly.example"}},
		{"other.example", false, policy.Policy{}},
	}
	for _, l := range lookups {
		got, ok := set.Table.Lookup(l.domain)
		if ok != l.ok {
			t.Errorf("Lookup(%q) found = %v, want %v", l.domain, ok, l.ok)
			continue
		}
		if ok && (got.Level != l.want.Level || !slices.Equal(got.Match, l.want.Match) || got.OnFail != l.want.OnFail ||
			got.OnTempfail != l.want.OnTempfail || got.Source != l.want.Source || got.Key != l.want.Key ||
			l.want.Raw != "" && got.Raw != l.want.Raw) {
			t.Errorf("Lookup(%q) = %+v\nwant %+v", l.domain, got, l.want)
		}
	}
	if n := set.Table.Len(); n != 6 {
		t.Errorf("table has %d keys, want 6", n)
	}

	var ws []string
	for _, w := range warns {
		ws = append(ws, w.String())
	}
	want := []string{
		policyFile + `:7: duplicate entry "config.example" (first entry at config policies[0] is kept)`,
	}
	if !slices.Equal(ws, want) {
		t.Errorf("warnings =\n%q\nwant\n%q", ws, want)
	}

	cust, ok := set.Customers.Match("x.acme.example", "", netip.Addr{})
	if !ok || cust.Name != "acme" || cust.Level != policy.LevelVerify || cust.OnFail != policy.ActionHeader {
		t.Errorf("customer by sender = %+v, %v", cust, ok)
	}
	if cust, ok := set.Customers.Match("", "", netip.MustParseAddr("2001:db8::25")); !ok || cust.Name != "acme" {
		t.Errorf("customer by network = %+v, %v", cust, ok)
	}
	if cust, ok := set.Customers.Match("", "", netip.MustParseAddr("192.0.2.8")); ok {
		t.Errorf("192.0.2.8 matched %+v; the bare address 192.0.2.7 is a /32", cust)
	}
}

func TestPolicySetErrors(t *testing.T) {
	t.Parallel()
	missing := filepath.Join(t.TempDir(), "tls_policy")
	broken := writeFile(t, "tls_policy", "a.example\n")
	tests := []struct {
		name   string
		mutate func(c *Config)
		key    string
		msg    string
		is     error
	}{
		{"missing policy file", func(c *Config) { c.PolicyFiles = []string{missing} },
			"policy_files[0]", "cannot be loaded: open " + missing + ": no such file", fs.ErrNotExist},
		{"broken policy file", func(c *Config) { c.PolicyFiles = []string{broken} },
			"policy_files[0]", "missing TLS level", policy.ErrSyntax},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := defaultConfig()
			c.File = "/etc/tlsgate.yaml"
			tt.mutate(c)
			if err := c.validate(); err != nil {
				t.Fatalf("Validate: %v", err)
			}
			set, _, err := c.PolicySet()
			if set != nil {
				t.Errorf("got a set with an error")
			}
			fe := wantFieldError(t, err, tt.key, "")
			if !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("error %q does not contain %q", err, tt.msg)
			}
			if fe.File != "/etc/tlsgate.yaml" {
				t.Errorf("File = %q", fe.File)
			}
			if tt.is != nil && !errors.Is(err, tt.is) {
				t.Errorf("errors.Is(%v, %v) = false", err, tt.is)
			}
		})
	}
}
