package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/tlsgate/tlsgate/config"
)

// referenceKey is one row of the README's configuration reference.
type referenceKey struct {
	key, def string // def as written, without the backquotes
}

// readmeSection returns the README's text under the heading line title (e.g. "## Configuration
// reference") up to the next heading of the same or a higher level.
func readmeSection(t *testing.T, title string) string {
	t.Helper()
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	level := strings.IndexByte(title, ' ')
	var out []string
	in := false
	for _, line := range strings.Split(string(b), "\n") {
		if in && strings.HasPrefix(line, "#") {
			if n := len(line) - len(strings.TrimLeft(line, "#")); n <= level && strings.HasPrefix(line[n:], " ") {
				break
			}
		}
		if in {
			out = append(out, line)
		}
		in = in || line == title
	}
	if !in {
		t.Fatalf("README has no %q", title)
	}
	return strings.Join(out, "\n")
}

// configReference parses the table of the README's configuration reference.
func configReference(t *testing.T) []referenceKey {
	t.Helper()
	row := regexp.MustCompile("^\\| `([a-z_.]+)` \\| `([^`]*)` \\|")
	var keys []referenceKey
	for _, line := range strings.Split(readmeSection(t, "## Configuration reference"), "\n") {
		if m := row.FindStringSubmatch(line); m != nil {
			keys = append(keys, referenceKey{m[1], m[2]})
		}
	}
	if len(keys) < 30 {
		t.Fatalf("only %d keys in the README's configuration reference", len(keys))
	}
	return keys
}

// documentedType is the pflag type a default as the README writes it implies, and the
// same value written as a flag value.
func documentedType(def string) (typ, value string) {
	switch {
	case def == "true" || def == "false":
		return "bool", def
	case regexp.MustCompile(`^[0-9]+(ms|s|m|h)$`).MatchString(def):
		return "duration", def
	case regexp.MustCompile(`^[0-9]+$`).MatchString(def):
		return "int", def
	case strings.HasPrefix(def, "["):
		items := strings.Split(strings.Trim(def, "[]"), ",")
		for i := range items {
			items[i] = strings.TrimSpace(items[i])
		}
		return "stringSlice", strings.Join(items, ",")
	}
	return "string", strings.Trim(def, `"`)
}

// TestServeFlagsMatchReference: every key of the README's configuration reference is
// a flag of `tlsgate serve` of the type its documented default has, the documented
// default given as that flag is accepted and is the built-in default, and a boolean
// flag written "--key false" is refused with the --key=false form rather than
// silently left true.
func TestServeFlagsMatchReference(t *testing.T) {
	t.Parallel()
	defaults, _, err := loadConfig("serve", nil, nil, io.Discard, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range configReference(t) {
		typ, value := documentedType(k.def)
		cfg, fs, err := loadConfig("serve", []string{"--" + k.key + "=" + value}, nil, io.Discard, nil)
		if err != nil {
			t.Errorf("--%s=%s (the documented default): %v", k.key, value, err)
			continue
		}
		if f := fs.Lookup(k.key); f == nil || f.Value.Type() != typ || !fs.Changed(k.key) {
			t.Errorf("--%s: flag %+v; want a %s flag, as the default %q says", k.key, f, typ, k.def)
			continue
		}
		if err := noArguments("serve", fs, nil); err != nil {
			t.Errorf("--%s=%s: %v", k.key, value, err)
		}
		if settings(t, cfg) != settings(t, defaults) {
			t.Errorf("--%s=%s, the README's default, is not the built-in default", k.key, value)
		}
		if typ != "bool" {
			continue
		}
		// Honoured with '=', refused without it.
		flipped := map[string]string{"true": "false", "false": "true"}[value]
		if cfg, _, err := loadConfig("serve", []string{"--" + k.key + "=" + flipped}, nil, io.Discard, nil); err != nil || settings(t, cfg) == settings(t, defaults) {
			t.Errorf("--%s=%s was not honoured (%v)", k.key, flipped, err)
		}
		code, out, errOut := runBriefly(t, "serve", "--"+k.key, flipped)
		if code != exitUsage || !strings.Contains(errOut, `"`+flipped+`"`) || !strings.Contains(errOut, "--"+k.key+"="+flipped) {
			t.Errorf("serve --%s %s: exit %d, %q%q; want %d naming %q and --%s=%s", k.key, flipped, code, out, errOut, exitUsage, flipped, k.key, flipped)
		}
	}
}

// settings renders the configuration's values (not where they came from); an empty
// list and no list are the same.
func settings(t *testing.T, c *config.Config) string {
	t.Helper()
	b, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	return strings.ReplaceAll(string(b), "null", "[]")
}

// runBriefly runs a command that is expected to stop at once; a serve that starts
// anyway (on a free address) is stopped after a few seconds.
func runBriefly(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	if args[0] == "serve" {
		args = append([]string{"serve", "--milter.listen=inet:" + freeAddr(t), "--dns.resolver=127.0.0.1:53"}, args[1:]...)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var stdout, stderr bytes.Buffer
	code := run(ctx, args, nil, &stdout, &stderr)
	return code, stdout.String(), stderr.String()
}

// TestServeBooleanHint: the hint names the boolean flag the stray argument was meant
// for, even when the same word is also another flag's value.
func TestServeBooleanHint(t *testing.T) {
	t.Parallel()
	code, _, errOut := runBriefly(t, "serve", "--milter.header", "false", "--mta_sts.enabled", "false")
	if code != exitUsage || !strings.Contains(errOut, "--mta_sts.enabled=false") {
		t.Errorf("exit %d, %q; want %d and the hint --mta_sts.enabled=false", code, errOut, exitUsage)
	}
}

// TestServeRefusesArguments: serve takes no positional arguments.
func TestServeRefusesArguments(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{
		{"serve", "extra"},
		{"serve", "--milter.header", "X-Test", "extra"},
		{"serve", "--", "extra"},
	} {
		code, _, errOut := runBriefly(t, args...)
		if code != exitUsage || !strings.Contains(errOut, `"extra"`) || !strings.Contains(errOut, "=") {
			t.Errorf("%q: exit %d, %q; want %d naming the argument", args, code, errOut, exitUsage)
		}
	}
}
