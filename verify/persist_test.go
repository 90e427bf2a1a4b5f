package verify_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tlsgate/tlsgate/config/policy"
	"github.com/tlsgate/tlsgate/test/fake"
	"github.com/tlsgate/tlsgate/verify"
	"github.com/tlsgate/tlsgate/verify/smtpprobe"
)

// TestCacheFileRoundTrip: facts saved by one Verifier are loaded by the next and judged
// exactly as before, without a probe; expired facts are dropped.
func TestCacheFileRoundTrip(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	servers := w.serve(domain, host{name: "mx1", behaviour: "expired"}, host{name: "mx2", behaviour: "selfsigned"})
	w.serve("other.test", host{name: "mx1", behaviour: "good", ip: "127.0.0.20"})
	levels := []policy.Level{policy.LevelEncrypt, policy.LevelVerify, policy.LevelSecure, policy.LevelFingerprint, policy.LevelDane}
	path := filepath.Join(t.TempDir(), "cache.json")

	first := w.verifier()
	before := map[string][]verify.Verdict{}
	for _, d := range []string{domain, "other.test"} {
		f, _, err := first.Facts(context.Background(), d)
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range levels {
			before[d] = append(before[d], verify.Judge(f, policy.Policy{Level: l}))
		}
	}
	n, err := first.SaveCache(path)
	if err != nil || n != 2 {
		t.Fatalf("SaveCache = %d, %v; want 2 domains", n, err)
	}
	if st, err := os.Stat(path); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("cache file mode %v, %v; want 0600", st.Mode(), err)
	}

	second := w.verifier()
	if n, err := second.LoadCache(path); err != nil || n != 2 {
		t.Fatalf("LoadCache = %d, %v; want 2", n, err)
	}
	conns := servers["mx1"].Connections()
	for _, d := range []string{domain, "other.test"} {
		f, cached, err := second.Facts(context.Background(), d)
		if err != nil || !cached {
			t.Fatalf("%s: cached=%v err=%v; want a hit from the loaded file", d, cached, err)
		}
		for i, l := range levels {
			got, was := verify.Judge(f, policy.Policy{Level: l}), before[d][i]
			if got.Status != was.Status || got.Reason != was.Reason || got.Detail != was.Detail {
				t.Errorf("%s %s after reload: %s/%s %q; before: %s/%s %q", d, l, got.Status, got.Reason, got.Detail, was.Status, was.Reason, was.Detail)
			}
		}
	}
	if servers["mx1"].Connections() != conns {
		t.Error("a loaded domain was probed again")
	}

	// A verifier whose clock is past every Until loads nothing.
	later := w.verifier(func(c *verify.Config) { c.Now = func() time.Time { return time.Now().Add(2 * time.Hour) } })
	if n, err := later.LoadCache(path); err != nil || n != 0 {
		t.Errorf("LoadCache with expired facts = %d, %v; want 0", n, err)
	}
}

// TestCacheFileRejected: a corrupt, foreign or unsafe file loads nothing, with an error
// the daemon logs as a warning; a missing file is not an error.
func TestCacheFileRejected(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	v := w.verifier()
	dir := t.TempDir()
	write := func(name, content string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	header := `{"format":"tlsgate-cache","version":2,"saved":"2026-11-21T10:00:00Z"}` + "\n"
	until := time.Now().Add(time.Hour).UTC().Format(time.RFC3339)
	good := `{"facts":{"Domain":"forged.test","MX":1,"Until":"` + until + `"}}` + "\n"
	for _, tc := range []struct {
		name, path, want string
	}{
		{"not JSON", write("garbage", "\x00\x01garbage\n", 0o600), "not a tlsgate cache file"},
		{"wrong version", write("v9", strings.Replace(header, `"version":2`, `"version":9`, 1)+good, 0o600), "version 2"},
		{"neither record kind", write("empty-record", header+"{}\n", 0o600), "neither facts nor"},
		{"corrupt line", write("corrupt", header+good+"{\"Domain\":\n", 0o600), ":3:"},
		{"world-writable", write("unsafe", header+good, 0o666), "writable by group or others"},
		{"a directory", dir, "not a regular file"},
	} {
		n, err := v.LoadCache(tc.path)
		if n != 0 || !errors.Is(err, verify.ErrCacheFile) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: LoadCache = %d, %v; want 0 and an error containing %q", tc.name, n, err, tc.want)
		}
	}
	if _, cached, _ := v.Facts(context.Background(), "forged.test"); cached {
		t.Error("an entry of a rejected file was loaded")
	}
	if n, err := v.LoadCache(filepath.Join(dir, "missing")); n != 0 || err != nil {
		t.Errorf("missing file: %d, %v; want 0, nil", n, err)
	}
}

// TestCompactFactsJudgeAlike: cached facts keep a certificate summary instead of the
// chain, and every level judges them exactly as the full facts.
func TestCompactFactsJudgeAlike(t *testing.T) {
	t.Parallel()
	for _, spec := range []string{"LEAF 3 1 1", "INTER 2 0 1", "x 3 1 1", "LEAF 1 1 1"} {
		t.Run(spec, func(t *testing.T) {
			t.Parallel()
			w := newWorld(t)
			w.dns.SetAllAuthentic(true)
			w.dns.Add(t, "example.test. 300 IN MX 10 mx1.example.test.", "mx1.example.test. 300 IN A 127.0.0.10")
			ca := w.ca.Intermediate(t, "Test Intermediate")
			c := ca.Issue(t, fake.CertOptions{DNSNames: []string{"mx1.example.test"}})
			fake.StartSMTP(t, "127.0.0.10", fake.Behavior{Hostname: "mx1.example.test", Cert: &c}).RegisterWith(w.dialer)
			w.dns.Add(t, tlsaRR(t, "_25._tcp.mx1.example.test.", spec, c.Leaf, ca))
			v := w.verifier()
			full := v.Probe(context.Background(), domain)
			cached, _, err := v.Facts(context.Background(), domain)
			if err != nil {
				t.Fatal(err)
			}
			if len(cached.Attempts) != 1 || cached.Attempts[0].Result.Chain != nil || cached.Attempts[0].Cert == nil {
				t.Fatalf("cached facts still hold the chain or lack the summary: %+v", cached.Attempts)
			}
			policies := []policy.Policy{{Level: policy.LevelEncrypt}, {Level: policy.LevelVerify}, {Level: policy.LevelSecure},
				{Level: policy.LevelDane}, {Level: policy.LevelDaneOnly}, {Level: policy.LevelPublished},
				{Level: policy.LevelFingerprint, Match: []string{smtpprobe.Fingerprint(c.Leaf.Raw)}},
				{Level: policy.LevelFingerprint, Match: []string{smtpprobe.Fingerprint(c.Leaf.RawSubjectPublicKeyInfo)}},
				{Level: policy.LevelFingerprint, Match: []string{smtpprobe.Fingerprint([]byte("other"))}}}
			for _, p := range policies {
				a, b := verify.Judge(full, p), verify.Judge(cached, p)
				if a.Status != b.Status || a.Reason != b.Reason || a.Detail != b.Detail || a.Mechanism != b.Mechanism {
					t.Errorf("%s %q: full %s/%s %q; cached %s/%s %q", p.Level, p.Match, a.Status, a.Reason, a.Detail, b.Status, b.Reason, b.Detail)
				}
			}
		})
	}
}
