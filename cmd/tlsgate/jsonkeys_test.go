package main

import (
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

// jsonKeys lists the JSON object keys of type t and of the objects inside it, by path
// ("" for the top level, "mx[]", "mx[].tlsa", ...).
func jsonKeys(t reflect.Type, path string, out map[string][]string) {
	for t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice {
		if t.Kind() == reflect.Slice {
			path += "[]"
		}
		t = t.Elem()
	}
	if t.Kind() != reflect.Struct || t == reflect.TypeFor[time.Time]() {
		return
	}
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "-" || !f.IsExported() {
			continue
		}
		if f.Anonymous && name == "" {
			jsonKeys(f.Type, path, out) // an embedded struct's keys are the outer object's
			continue
		}
		if name == "" {
			name = f.Name
		}
		out[path] = append(out[path], name)
		sub := name
		if path != "" {
			sub = path + "." + name
		}
		jsonKeys(f.Type, sub, out)
	}
}

// TestCheckJSONKeysDocumented: the README documents every key of `tlsgate check --json`
// (checkJSON), each object under its path, and no key that is not there.
func TestCheckJSONKeysDocumented(t *testing.T) {
	t.Parallel()
	want := map[string][]string{}
	jsonKeys(reflect.TypeFor[checkJSON](), "", want)
	got := map[string][]string{}
	row := regexp.MustCompile("^\\| (top level|`[a-z_.\\[\\]]+`) \\| (.+) \\|$")
	section := readmeSection(t, "### Command line")
	for _, line := range strings.Split(section, "\n") {
		m := row.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		path := strings.Trim(m[1], "`")
		if path == "top level" {
			path = ""
		}
		for _, k := range regexp.MustCompile("`([a-z_0-9]+)`").FindAllStringSubmatch(m[2], -1) {
			got[path] = append(got[path], k[1])
		}
	}
	for path, keys := range want {
		slices.Sort(keys)
		g := slices.Sorted(slices.Values(got[path]))
		if !slices.Equal(g, keys) {
			t.Errorf("README, --json object %q: keys %q; tlsgate writes %q", path, g, keys)
		}
	}
	for path := range got {
		if _, ok := want[path]; !ok {
			t.Errorf("README documents --json object %q, which tlsgate does not write", path)
		}
	}
}

// TestPolicyJSONKeysDocumented: the README's endpoint reference names every key of the
// policy API's answer (policyAnswer).
func TestPolicyJSONKeysDocumented(t *testing.T) {
	t.Parallel()
	keys := map[string][]string{}
	jsonKeys(reflect.TypeFor[policyAnswer](), "", keys)
	section := readmeSection(t, "### Endpoints")
	for path, ks := range keys {
		for _, k := range ks {
			if !strings.Contains(section, "`"+k+"`") {
				t.Errorf("README, GET /api/v1/policy: key %q (object %q) is not documented", k, path)
			}
		}
	}
}
