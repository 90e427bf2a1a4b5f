package verify_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/tlsgate/tlsgate/internal/fake"
	"github.com/tlsgate/tlsgate/internal/fingerprint"
	"github.com/tlsgate/tlsgate/policy"
	"github.com/tlsgate/tlsgate/verify"
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

// TestCacheFileRejected: a foreign or unsafe file loads nothing, with an error the
// daemon logs as a warning; a missing file is not an error.
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
	good := cacheHeader + factsLine("forged.test")
	link := filepath.Join(dir, "link")
	if err := os.Symlink(write("target", good, 0o600), link); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, path, want string
	}{
		{"not JSON", write("garbage", "\x00\x01garbage\n", 0o600), "not a tlsgate cache file"},
		{"wrong version", write("v9", strings.Replace(good, `"version":4`, `"version":9`, 1), 0o600), "version 4"},
		{"world-writable", write("unsafe", good, 0o666), "writable by group or others"},
		{"a directory", dir, "not a regular file"},
		{"a symbolic link to a good file", link, "symbolic link"},
		{"a device", "/dev/zero", "not a regular file"},
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

const cacheHeader = `{"format":"tlsgate-cache","version":4,"saved":"2026-11-21T10:00:00Z"}` + "\n"

// factsLine is a cache file line with facts for domain, valid for an hour.
func factsLine(domain string) string {
	until := time.Now().Add(time.Hour).UTC().Format(time.RFC3339)
	return `{"facts":{"Domain":"` + domain + `","MX":1,"Until":"` + until + `"}}` + "\n"
}

// TestCacheFileBadLinesSkipped: a line that is not JSON, not a record, or longer than
// the line limit is skipped and counted; every good line around it loads. One bad
// record must not cost the other domains their verdicts and MTA-STS policies.
func TestCacheFileBadLinesSkipped(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	v := w.verifier()
	path := filepath.Join(t.TempDir(), "cache.json")
	huge := `{"facts":{"Domain":"huge.test","MXDetail":"` + strings.Repeat("x", 5<<20) + `"}}` + "\n"
	content := cacheHeader + factsLine("one.test") + "{\"Domain\":\n" + factsLine("two.test") + "{}\n" + huge +
		`{"facts":{"MX":1}}` + "\n" + factsLine("three.test") + "\xff\xfe\n" + strings.TrimSuffix(factsLine("four.test"), "\n")
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	n, err := v.LoadCache(path)
	var skipped *verify.CacheLinesSkipped
	if n != 4 || !errors.Is(err, verify.ErrCacheFile) || !errors.As(err, &skipped) || skipped.Skipped != 5 ||
		!strings.Contains(err.Error(), "5 bad lines skipped (first: line 3:") {
		t.Fatalf("LoadCache = %d, %v; want 4 domains and a warning that 5 bad lines were skipped", n, err)
	}
	for _, d := range []string{"one.test", "two.test", "three.test", "four.test"} {
		if _, ok := v.Cached(d); !ok {
			t.Errorf("%s, a good line among bad ones, was not loaded", d)
		}
	}
	if _, ok := v.Cached("huge.test"); ok {
		t.Error("the line over the limit was loaded")
	}
}

// TestCacheFileFIFO: a FIFO in place of the cache file (anyone who can write the
// directory can make one) neither blocks the start nor is read: LoadCache returns at
// once with an error, and the daemon starts with an empty cache.
func TestCacheFileFIFO(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	v := w.verifier()
	path := filepath.Join(t.TempDir(), "cache.json")
	if err := syscall.Mkfifo(path, 0o600); err != nil {
		t.Fatal(err)
	}
	type result struct {
		n   int
		err error
	}
	done := make(chan result, 1)
	go func() {
		n, err := v.LoadCache(path)
		done <- result{n, err}
	}()
	select {
	case r := <-done:
		if r.n != 0 || !errors.Is(r.err, verify.ErrCacheFile) || !strings.Contains(r.err.Error(), "not a regular file") {
			t.Errorf("LoadCache(FIFO) = %d, %v; want 0 and an error saying it is not a regular file", r.n, r.err)
		}
	case <-time.After(5 * time.Second):
		// Unblock the reader so the test can end: a writer opening the FIFO wakes it.
		if f, err := os.OpenFile(path, os.O_WRONLY|syscall.O_NONBLOCK, 0); err == nil {
			f.Close()
		}
		<-done
		t.Fatal("LoadCache blocked on a FIFO for 5s")
	}
}

// hostileText is a reply of 100 lines of 2 KiB of 0xff each (the longest lines, and
// the most lines, the probe reads), with extra as the last line.
func hostileText(code, extra string) string {
	lines := make([]string, 0, 100)
	for range 99 {
		lines = append(lines, code+"-"+strings.Repeat("\xff", 2044))
	}
	return strings.Join(append(lines, code+" "+extra), "\n")
}

// TestCacheFileHostileMX: MX hosts that send the longest and most lines the probe
// accepts, all 0xff (each byte becomes six in JSON), cannot make the cache file
// unloadable: the probe keeps a bounded, valid UTF-8 text of every reply, so the saved
// file loads completely after a restart, and the domain still judges as it did.
func TestCacheFileHostileMX(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	w.serve("other.test", host{name: "mx1", behaviour: "good", ip: "127.0.0.20"})
	for i, name := range []string{"mx1", "mx2", "mx3"} {
		fq := name + "." + domain
		ip := fmt.Sprintf("127.0.0.%d", 10+i)
		w.dns.Add(t, fmt.Sprintf("%s. 300 IN MX %d %s.", domain, 10*(i+1), fq), fmt.Sprintf("%s. 300 IN A %s", fq, ip))
		c := w.ca.Issue(t, fake.CertOptions{DNSNames: []string{fq}})
		fake.StartSMTP(t, ip, fake.Behavior{Hostname: fq, Cert: &c,
			Banner:    hostileText("220", "ESMTP"),
			EHLOReply: hostileText("250", "STARTTLS")}).RegisterWith(w.dialer)
	}
	path := filepath.Join(t.TempDir(), "cache.json")
	first := w.verifier()
	for _, d := range []string{domain, "other.test"} {
		if _, _, err := first.Facts(context.Background(), d); err != nil {
			t.Fatal(err)
		}
	}
	before := verify.Judge(first.Probe(context.Background(), domain), policy.Policy{Level: policy.LevelVerify})
	if before.Status != verify.StatusPass {
		t.Fatalf("the hostile MX does TLS with a good certificate, yet: %s %s", before.Status, before.Detail)
	}
	if n, err := first.SaveCache(path); err != nil || n != 2 {
		t.Fatalf("SaveCache = %d, %v; want 2", n, err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for i, line := range strings.Split(string(data), "\n") {
		if len(line) > 64<<10 {
			t.Errorf("line %d of the cache file is %d bytes: remote text is not bounded", i+1, len(line))
		}
	}

	second := w.verifier()
	if n, err := second.LoadCache(path); err != nil || n != 2 {
		t.Fatalf("after a restart: LoadCache = %d, %v; want both domains and no error", n, err)
	}
	f, ok := second.Cached(domain)
	if !ok {
		t.Fatal("the hostile domain was not loaded")
	}
	if got := verify.Judge(f, policy.Policy{Level: policy.LevelVerify}); got.Status != before.Status || got.Detail != before.Detail {
		t.Errorf("after reload: %s %q; before: %s %q", got.Status, got.Detail, before.Status, before.Detail)
	}
	for _, a := range f.Attempts {
		for _, text := range []string{a.Result.Greeting.Text, a.Result.EHLO.Text, a.Result.Detail} {
			if len(text) > 512 || !utf8.ValidString(text) {
				t.Errorf("%s: a stored reply text is %d bytes (valid UTF-8: %v)", a.Host, len(text), utf8.ValidString(text))
			}
		}
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
				{Level: policy.LevelFingerprint, Match: []string{fingerprint.Of(c.Leaf.Raw)}},
				{Level: policy.LevelFingerprint, Match: []string{fingerprint.Of(c.Leaf.RawSubjectPublicKeyInfo)}},
				{Level: policy.LevelFingerprint, Match: []string{fingerprint.Of([]byte("other"))}}}
			for _, p := range policies {
				a, b := verify.Judge(full, p), verify.Judge(cached, p)
				if a.Status != b.Status || a.Reason != b.Reason || a.Detail != b.Detail || a.Mechanism != b.Mechanism {
					t.Errorf("%s %q: full %s/%s %q; cached %s/%s %q", p.Level, p.Match, a.Status, a.Reason, a.Detail, b.Status, b.Reason, b.Detail)
				}
			}
		})
	}
}
