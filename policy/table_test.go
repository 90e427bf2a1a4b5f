package policy

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
)

// mustTable builds a table from key -> policy pairs, failing on any error or
// warning. Each policy's Source is "test:KEY".
func mustTable(t *testing.T, entries ...Entry) *Table {
	t.Helper()
	tab := NewTable()
	for _, e := range entries {
		p := e.Policy
		if p.Source == "" {
			p.Source = "test:" + e.Key
		}
		w, err := tab.Add(e.Key, p)
		if err != nil || w != "" {
			t.Fatalf("Add(%q) = %q, %v", e.Key, w, err)
		}
	}
	return tab
}

func TestTableLookup(t *testing.T) {
	t.Parallel()
	tab := mustTable(t,
		Entry{"example.com", Policy{Level: LevelEncrypt}},
		Entry{".example.com", Policy{Level: LevelSecure, Match: []string{".example.com"}}},
		Entry{"b.example.com", Policy{Level: LevelVerify}},
		Entry{".b.example.com", Policy{Level: LevelFingerprint, Match: []string{"AA:BB"}}},
		Entry{".com", Policy{Level: LevelMay}},
		Entry{"Only-Parent.Example", Policy{Level: LevelDane}},
		Entry{".subs.example", Policy{Level: LevelDaneOnly}},
		Entry{"mail_1.example", Policy{Level: LevelEncrypt}},
	)
	tests := []struct {
		domain  string
		wantKey string // "" means no match
		want    Level
	}{
		// Exact key first; ".example.com" does not match example.com itself.
		{"example.com", "example.com", LevelEncrypt},
		// Parent key for a subdomain.
		{"a.example.com", ".example.com", LevelSecure},
		{"deep.a.example.com", ".example.com", LevelSecure},
		// Exact beats parent.
		{"b.example.com", "b.example.com", LevelVerify},
		// Closest parent wins.
		{"a.b.example.com", ".b.example.com", LevelFingerprint},
		{"x.y.a.b.example.com", ".b.example.com", LevelFingerprint},
		// Up to the top-level domain.
		{"other.com", ".com", LevelMay},
		{"com", "", 0},
		// Case and trailing dot do not matter.
		{"EXAMPLE.COM.", "example.com", LevelEncrypt},
		{"A.B.Example.Com", ".b.example.com", LevelFingerprint},
		{" only-parent.example ", "only-parent.example", LevelDane},
		// An exact key does not match subdomains.
		{"x.only-parent.example", "", 0},
		// A parent key does not match the domain itself.
		{"subs.example", "", 0},
		{"a.subs.example", ".subs.example", LevelDaneOnly},
		// Label boundaries: "notexample.com" is not under ".example.com".
		{"notexample.com", ".com", LevelMay},
		{"mail_1.example", "mail_1.example", LevelEncrypt},
		// No match.
		{"example.org", "", 0},
		{"org", "", 0},
		// Invalid domains match nothing, not even ".com".
		{"", "", 0},
		{".", "", 0},
		{".example.com", "", 0},
		{"[192.0.2.1]", "", 0},
		{"[IPv6:2001:db8::1]", "", 0},
		{"192.0.2.1", "", 0},
		{"exa mple.com", "", 0},
		{"example..com", "", 0},
		{"mx.example.com:25", "", 0},
	}
	for _, tt := range tests {
		p, ok := tab.Lookup(tt.domain)
		switch {
		case tt.wantKey == "" && ok:
			t.Errorf("Lookup(%q) = key %q level %s, want no match", tt.domain, p.Key, p.Level)
		case tt.wantKey == "":
		case !ok:
			t.Errorf("Lookup(%q) found nothing, want key %q", tt.domain, tt.wantKey)
		case p.Key != tt.wantKey || p.Level != tt.want:
			t.Errorf("Lookup(%q) = key %q level %s, want key %q level %s", tt.domain, p.Key, p.Level, tt.wantKey, tt.want)
		}
	}
}

func TestTableLookupIDN(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		key    string
		domain string
	}{
		{"U-label key, A-label domain", "bücher.example", "xn--bcher-kva.example"},
		{"A-label key, U-label domain", "xn--bcher-kva.example", "bücher.example"},
		{"U-label key, U-label domain in upper case", "bücher.example", "BÜCHER.EXAMPLE."},
		{"A-label key in upper case, U-label domain", "XN--BCHER-KVA.Example", "Bücher.example"},
		{"U-label parent key, A-label subdomain", ".bücher.example", "mx.xn--bcher-kva.example"},
		{"A-label parent key, U-label subdomain", ".xn--bcher-kva.example", "mail.bücher.example"},
		{"U-label subdomain under ASCII parent", ".example", "café.example"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tab := mustTable(t, Entry{tt.key, Policy{Level: LevelVerify}})
			p, ok := tab.Lookup(tt.domain)
			if !ok || p.Level != LevelVerify {
				t.Fatalf("Lookup(%q) = %+v, %v; want the %q policy", tt.domain, p, ok, tt.key)
			}
			wantKey, err := NormalizeDomainKey(tt.key)
			if err != nil {
				t.Fatal(err)
			}
			if p.Key != wantKey || !strings.Contains(p.Key, "xn--") && tt.key != ".example" {
				t.Errorf("Key = %q, want the A-label form %q", p.Key, wantKey)
			}
		})
	}
}

func TestTableLookupReturnsCopy(t *testing.T) {
	t.Parallel()
	orig := Policy{Level: LevelSecure, Match: []string{"nexthop"}, Attrs: map[string]string{"ciphers": "high"}}
	tab := mustTable(t, Entry{"example.com", orig})

	// Changing the caller's policy after Add does not change the table.
	orig.Match[0] = "changed"
	orig.Attrs["ciphers"] = "changed"

	p, _ := tab.Lookup("example.com")
	if p.Match[0] != "nexthop" || p.Attrs["ciphers"] != "high" {
		t.Fatalf("table changed through the caller's policy: %+v", p)
	}
	// Changing a looked-up policy does not change the table.
	p.Match[0] = "changed"
	p.Attrs["ciphers"] = "changed"
	p2, _ := tab.Lookup("example.com")
	if p2.Match[0] != "nexthop" || p2.Attrs["ciphers"] != "high" {
		t.Fatalf("table changed through a looked-up policy: %+v", p2)
	}
}

func TestTableAdd(t *testing.T) {
	t.Parallel()
	t.Run("sets key and keeps source", func(t *testing.T) {
		t.Parallel()
		tab := NewTable()
		w, err := tab.Add(" .Example.COM. ", Policy{Level: LevelEncrypt, Source: "config policies[0]", Key: "ignored"})
		if err != nil || w != "" {
			t.Fatalf("Add = %q, %v", w, err)
		}
		p, ok := tab.Lookup("a.example.com")
		if !ok || p.Key != ".example.com" || p.Source != "config policies[0]" {
			t.Errorf("Lookup = %+v, %v", p, ok)
		}
		if tab.Len() != 1 {
			t.Errorf("Len = %d, want 1", tab.Len())
		}
	})
	t.Run("duplicate keeps the first", func(t *testing.T) {
		t.Parallel()
		tests := []struct{ first, second string }{
			{"example.com", "example.com"},
			{"example.com", "EXAMPLE.com."},
			{".example.com", ".Example.Com"},
			{"bücher.example", "xn--bcher-kva.example"},
			{"xn--bcher-kva.example", "BÜCHER.example"},
		}
		for _, tt := range tests {
			tab := NewTable()
			if w, err := tab.Add(tt.first, Policy{Level: LevelEncrypt, Source: "a:1"}); err != nil || w != "" {
				t.Fatalf("Add(%q) = %q, %v", tt.first, w, err)
			}
			w, err := tab.Add(tt.second, Policy{Level: LevelSecure, Source: "a:2"})
			if err != nil {
				t.Fatalf("Add(%q): %v", tt.second, err)
			}
			if !strings.Contains(w, "duplicate entry") || !strings.Contains(w, "a:1") {
				t.Errorf("Add(%q) after %q warning = %q, want a duplicate entry warning naming the first", tt.second, tt.first, w)
			}
			domain := tt.first
			if strings.HasPrefix(domain, ".") {
				domain = "x" + domain
			}
			p, _ := tab.Lookup(domain)
			if p.Level != LevelEncrypt || p.Source != "a:1" || tab.Len() != 1 {
				t.Errorf("after duplicate %q/%q: got %+v, len %d; want the first entry kept", tt.first, tt.second, p, tab.Len())
			}
		}
	})
	t.Run("exact and parent keys are distinct", func(t *testing.T) {
		t.Parallel()
		tab := NewTable()
		for _, k := range []string{"example.com", ".example.com"} {
			if w, err := tab.Add(k, Policy{Level: LevelEncrypt}); err != nil || w != "" {
				t.Fatalf("Add(%q) = %q, %v", k, w, err)
			}
		}
		if tab.Len() != 2 {
			t.Errorf("Len = %d, want 2", tab.Len())
		}
	})
	t.Run("errors", func(t *testing.T) {
		t.Parallel()
		tests := []struct {
			key     string
			p       Policy
			wantErr error
		}{
			{"[mx.example.com]:587", Policy{Level: LevelEncrypt}, ErrNextHopKey},
			{"[mx.example.com]", Policy{Level: LevelEncrypt}, ErrNextHopKey},
			{"mx.example.com:25", Policy{Level: LevelEncrypt}, ErrNextHopKey},
			{"[192.0.2.1]", Policy{Level: LevelEncrypt}, ErrNextHopKey},
			{"", Policy{Level: LevelEncrypt}, ErrBadDomain},
			{".", Policy{Level: LevelEncrypt}, ErrBadDomain},
			{"..example.com", Policy{Level: LevelEncrypt}, ErrBadDomain},
			{"*.example.com", Policy{Level: LevelEncrypt}, ErrBadDomain},
			{"exa mple.com", Policy{Level: LevelEncrypt}, ErrBadDomain},
			{"192.0.2.1", Policy{Level: LevelEncrypt}, ErrBadDomain},
			{"example.com", Policy{Level: Level(42)}, ErrUnknownLevel},
			{"example.com", Policy{Level: Level(-1)}, ErrUnknownLevel},
			{"example.com", Policy{Level: LevelEncrypt, OnFail: Action(9)}, ErrUnknownAction},
			{"example.com", Policy{Level: LevelEncrypt, OnTempfail: Action(-1)}, ErrUnknownAction},
		}
		for _, tt := range tests {
			tab := NewTable()
			w, err := tab.Add(tt.key, tt.p)
			if !errors.Is(err, tt.wantErr) {
				t.Errorf("Add(%q, %v) error = %v, want %v", tt.key, tt.p, err, tt.wantErr)
			}
			if w != "" || tab.Len() != 0 {
				t.Errorf("Add(%q) = warning %q, len %d after error", tt.key, w, tab.Len())
			}
		}
	})
}

func TestTableZeroAndNil(t *testing.T) {
	t.Parallel()
	var nilTab *Table
	if _, ok := nilTab.Lookup("example.com"); ok || nilTab.Len() != 0 {
		t.Error("nil table is not empty")
	}
	var zero Table
	if _, ok := zero.Lookup("example.com"); ok || zero.Len() != 0 {
		t.Error("zero table is not empty")
	}
	if _, err := zero.Add("example.com", Policy{Level: LevelMay}); err != nil {
		t.Fatalf("Add to zero table: %v", err)
	}
	if p, ok := zero.Lookup("example.com"); !ok || p.Level != LevelMay {
		t.Errorf("Lookup after Add to zero table = %+v, %v", p, ok)
	}
}

// TestTableConcurrentLookup runs many Lookups at once; with -race it checks
// that Lookup does not write shared state.
func TestTableConcurrentLookup(t *testing.T) {
	t.Parallel()
	tab := mustTable(t,
		Entry{"example.com", Policy{Level: LevelEncrypt, Match: []string{"x"}, Attrs: map[string]string{"a": "b"}}},
		Entry{".example.com", Policy{Level: LevelSecure}},
	)
	var wg sync.WaitGroup
	for i := range 16 {
		wg.Go(func() {
			for j := range 200 {
				d := "example.com"
				if (i+j)%2 == 1 {
					d = "mx.example.com"
				}
				p, ok := tab.Lookup(d)
				if !ok {
					t.Errorf("Lookup(%q) found nothing", d)
					return
				}
				p.Match = append(p.Match, "mine")
				if p.Attrs != nil {
					p.Attrs["mine"] = "x"
				}
			}
		})
	}
	wg.Wait()
}

func TestTableLoadFile(t *testing.T) {
	t.Parallel()
	t.Run("sample file", func(t *testing.T) {
		t.Parallel()
		tab := NewTable()
		warns, err := tab.LoadFile("testdata/tls_policy")
		if err != nil {
			t.Fatalf("LoadFile: %v", err)
		}
		// Next-hop entries are kept for the socketmap, silently; the bank's tafile=
		// is not on this machine, which makes its entry invalid, as in Postfix.
		checkWarnings(t, warns, []string{`testdata/tls_policy:29: key "bank.example": tafile /etc/postfix/bank-ca.pem: open /etc/postfix/bank-ca.pem: no such file or directory (Postfix treats this policy as invalid and defers mail)`})
		if tab.Len() != 12 {
			t.Errorf("Len = %d, want 12", tab.Len())
		}
		tests := []struct {
			domain, key, source string
			level               Level
		}{
			{"example.edu", "example.edu", "testdata/tls_policy:8", LevelNone},
			{"mx.example.net", ".example.net", "testdata/tls_policy:13", LevelSecure},
			{"example.net", "example.net", "testdata/tls_policy:12", LevelSecure},
			{"mx1.dnssec.example", ".dnssec.example", "testdata/tls_policy:26", LevelDane},
			{"xn--bcher-kva.example", "xn--bcher-kva.example", "testdata/tls_policy:35", LevelEncrypt},
			{"café.example", "xn--caf-dma.example", "testdata/tls_policy:36", LevelEncrypt},
		}
		for _, tt := range tests {
			p, ok := tab.Lookup(tt.domain)
			if !ok || p.Key != tt.key || p.Source != tt.source || p.Level != tt.level {
				t.Errorf("Lookup(%q) = %+v, %v; want key %q source %q level %s", tt.domain, p, ok, tt.key, tt.source, tt.level)
			}
		}
		if _, ok := tab.Lookup("mail.example.org"); ok {
			t.Error("next-hop entry [mail.example.org]:587 matched a recipient domain")
		}
		for _, k := range []string{"[mail.example.org]:587", "[thumb.example.org]"} {
			if _, ok := tab.LookupNextHop(k); !ok {
				t.Errorf("next-hop entry %s not kept for the socketmap", k)
			}
		}
	})
	t.Run("warnings in line order with duplicates", func(t *testing.T) {
		t.Parallel()
		tab := NewTable()
		warns, err := tab.LoadFile("testdata/tls_policy_warnings")
		if err != nil {
			t.Fatalf("LoadFile: %v", err)
		}
		const src = "testdata/tls_policy_warnings"
		checkWarnings(t, warns, []string{
			src + `:3: key "example.com": attribute "match" invalid at level encrypt`,
			src + `:4: key "example.net": attribute "protocols" specified more than once`,
			src + `:5: key "example.org": attribute "ciphers=high" ignored at level none`,
			src + `:7: key "example.edu": unknown attribute "cipher"`,
			src + `:9: duplicate entry "example.com" (first entry at ` + src + `:3 is kept)`,
		})
		if p, _ := tab.Lookup("example.com"); p.Level != LevelEncrypt {
			t.Errorf("duplicate replaced the first entry: %+v", p)
		}
	})
	t.Run("duplicates across sources", func(t *testing.T) {
		t.Parallel()
		tab := mustTable(t, Entry{"example.com", Policy{Level: LevelDaneOnly, Source: "config policies[0]"}})
		warns, err := tab.LoadFile("testdata/tls_policy")
		if err != nil {
			t.Fatal(err)
		}
		var found bool
		for _, w := range warns {
			if w.Source == "testdata/tls_policy:11" && strings.Contains(w.Msg, "duplicate entry") && strings.Contains(w.Msg, "config policies[0]") {
				found = true
			}
		}
		if !found {
			t.Errorf("no duplicate warning for example.com:\n%s", warningsText(warns))
		}
		if p, _ := tab.Lookup("example.com"); p.Level != LevelDaneOnly {
			t.Errorf("file entry replaced the config entry: %+v", p)
		}
	})
	t.Run("bad level leaves the table unchanged", func(t *testing.T) {
		t.Parallel()
		tab := mustTable(t, Entry{"keep.example", Policy{Level: LevelEncrypt}})
		warns, err := tab.LoadFile("testdata/tls_policy_bad_level")
		if !errors.Is(err, ErrSyntax) || !errors.Is(err, ErrUnknownLevel) {
			t.Fatalf("LoadFile error = %v, want ErrSyntax and ErrUnknownLevel", err)
		}
		if !strings.Contains(err.Error(), "testdata/tls_policy_bad_level:3:") || !strings.Contains(err.Error(), `"mandatory"`) {
			t.Errorf("error %q does not name file:line and the level", err)
		}
		if warns != nil || tab.Len() != 1 {
			t.Errorf("after error: warnings %v, len %d; want none and the table unchanged", warns, tab.Len())
		}
		if _, ok := tab.Lookup("example.com"); ok {
			t.Error("entry before the bad line was added")
		}
	})
	t.Run("missing file", func(t *testing.T) {
		t.Parallel()
		tab := NewTable()
		_, err := tab.LoadFile(filepath.Join(t.TempDir(), "nonexistent"))
		if !errors.Is(err, os.ErrNotExist) {
			t.Errorf("error = %v, want os.ErrNotExist", err)
		}
	})
	t.Run("file written by the test", func(t *testing.T) {
		t.Parallel()
		path := filepath.Join(t.TempDir(), "tls_policy")
		if err := os.WriteFile(path, []byte("example.com encrypt\r\n.example.com\r\n  secure match=.example.com\r\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		tab := NewTable()
		warns, err := tab.LoadFile(path)
		if err != nil || len(warns) != 0 {
			t.Fatalf("LoadFile = %v, %v", warns, err)
		}
		want := Policy{Level: LevelSecure, Match: []string{".example.com"}, Source: path + ":2", Key: ".example.com", Raw: "secure match=.example.com"}
		if p, ok := tab.Lookup("mx.example.com"); !ok || !reflect.DeepEqual(p, want) {
			t.Errorf("Lookup = %+v, %v; want %+v", p, ok, want)
		}
	})
}

// TestTableLoadFileTAFile: Postfix loads a tafile= when it looks the policy up; an
// unreadable or malformed file makes the policy invalid and the mail deferred
// (smtp_tls_policy.c, tls_dane.c tls_dane_load_trustfile).
func TestTableLoadFileTAFile(t *testing.T) {
	dir := t.TempDir()
	ca := filepath.Join(dir, "ca.pem")
	// A public key is a trust anchor on its own (an Ed25519 SubjectPublicKeyInfo).
	key := "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEAGb9ECWmEzf6FQbrBZ9w7lshQhqowtrbLDFw4rXAxZuE=\n-----END PUBLIC KEY-----\n"
	if err := os.WriteFile(ca, []byte(key), 0o644); err != nil {
		t.Fatal(err)
	}
	src := filepath.Join(dir, "tls_policy")
	content := "good.example verify tafile=" + ca + "\n" +
		"missing.example secure tafile=" + filepath.Join(dir, "missing.pem") + "\n" +
		"[gw.example]:2525 verify tafile=" + filepath.Join(dir, "missing.pem") + "\n"
	if err := os.WriteFile(src, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	tab := NewTable()
	warns, err := tab.LoadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if p, _ := tab.Lookup("good.example"); p.Invalid != "" {
		t.Errorf("good.example: Invalid %q", p.Invalid)
	}
	if p, _ := tab.Lookup("missing.example"); !strings.Contains(p.Invalid, "missing.pem") {
		t.Errorf("missing.example: Invalid %q, want the file named", p.Invalid)
	}
	if p, _ := tab.LookupNextHop("[gw.example]:2525"); p.Invalid == "" {
		t.Errorf("[gw.example]:2525: a next hop's missing tafile is not invalid")
	}
	if len(warns) != 2 || !strings.Contains(warns[0].String(), "defers mail") {
		t.Errorf("warnings %v, want one per missing file", warns)
	}
}
