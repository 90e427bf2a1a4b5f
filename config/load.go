package config

import (
	"errors"
	"fmt"
	"io"
	"iter"
	"maps"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/knadh/koanf/parsers/yaml"
	"github.com/knadh/koanf/providers/file"
	"github.com/knadh/koanf/providers/posflag"
	"github.com/spf13/pflag"
)

// Options says where Load reads from.
type Options struct {
	// File is the YAML configuration file; "" means built-in defaults only. A file
	// that is named but missing is an error.
	File string
	// Env is the environment in os.Environ form; nil means none. Only TLSGATE_*
	// variables are read.
	Env []string
	// Flags is a parsed flag set with the flags of AddFlags; only changed flags
	// override. Flags that are not configuration keys are ignored. May be nil.
	Flags *pflag.FlagSet
}

// maxFile bounds the configuration file.
const maxFile = 4 << 20

// Load builds the configuration from, in increasing precedence: the built-in
// defaults, the YAML file, the TLSGATE_* environment variables and the changed
// flags, parsing every value into its type; then it checks the values together.
//
// Errors: the file cannot be read (wrapping the *fs.PathError, e.g. "open /x: no such
// file or directory"); the file is not YAML or too large (wrapping ErrInvalid); or the
// errors.Join of one *FieldError per unknown key, value that does not parse or value
// out of its key's range (first pass, over all sources), or per invalid list entry or
// combination of values (when the first pass found nothing).
func Load(o Options) (*Config, error) {
	c := defaultConfig()
	c.File = o.File
	c.origins = map[string]origin{}
	c.notes = map[string][]string{}
	var errs []error
	if o.File != "" {
		raw, err := readFile(o.File)
		if err != nil {
			return nil, err
		}
		errs = append(errs, c.applyFile(raw, fileSource(o.File))...)
	}
	errs = append(errs, c.applyEnv(o.Env)...)
	if o.Flags != nil {
		o.Flags.Visit(func(f *pflag.Flag) {
			if k, ok := lookupKey(f.Name); ok {
				errs = append(errs, c.setFrom(k, posflag.FlagVal(o.Flags, f), flagSource{}, "--"+k.name)...)
			}
		})
	}
	if len(errs) > 0 {
		// The values that did parse are checked too, so that every problem is
		// reported at once; the checks across keys and lists wait for a clean pass.
		return nil, errors.Join(append(errs, c.checkKeys()...)...)
	}
	if err := c.validate(); err != nil {
		return nil, err
	}
	return c, nil
}

// setFrom converts v, from src where it is called name, into the field of k. It
// returns a *FieldError per problem, and keeps the field as it was then.
func (c *Config) setFrom(k key, v any, src source, name string) []error {
	out, probs := k.convert(v)
	var errs []error
	var notes []string
	for _, p := range probs {
		fe := &FieldError{File: src.where(), Key: name + p.suffix, Value: p.value, Msg: p.msg, Allowed: p.allowed}
		if p.warn {
			notes = append(notes, fe.Error())
		} else {
			errs = append(errs, fe)
		}
	}
	if errs != nil {
		return errs
	}
	k.set(c, out)
	c.notes[k.name] = notes
	if _, file := src.(fileSource); !file {
		c.origins[k.name] = origin{where: src.where(), name: name}
	}
	return nil
}

// readFile reads and parses the YAML file with koanf's file provider and parser.
func readFile(path string) (map[string]any, error) {
	if fi, err := os.Stat(path); err == nil && fi.Mode().IsRegular() && fi.Size() > maxFile {
		return nil, fmt.Errorf("%w: %s: larger than %d bytes", ErrInvalid, path, maxFile)
	}
	b, err := file.Provider(path).ReadBytes()
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	if len(b) > maxFile {
		return nil, fmt.Errorf("%w: %s: larger than %d bytes", ErrInvalid, path, maxFile)
	}
	m, err := yaml.Parser().Unmarshal(b)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrInvalid, path, err)
	}
	if m == nil {
		m = map[string]any{}
	}
	return m, nil
}

func readBounded(r io.Reader, limit int64) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("larger than %d bytes", limit)
	}
	return b, nil
}

// source names the origin of a value for error messages.
type source interface {
	where() string // FieldError.File
}

type fileSource string

func (f fileSource) where() string { return string(f) }

type flagSource struct{}

func (flagSource) where() string { return "command line" }

type envSource struct{}

func (envSource) where() string { return "environment" }

// applyFile checks the nested map of the file against the schema and sets every
// value it can convert. Unknown keys and badly typed values are reported.
func (c *Config) applyFile(raw map[string]any, src fileSource) []error {
	var errs []error
	fail := func(key, value, msg, allowed string) {
		errs = append(errs, &FieldError{File: src.where(), Key: key, Value: value, Msg: msg, Allowed: allowed})
	}
	for _, top := range sortedKeys(raw) {
		v := raw[top]
		switch {
		case top == keyPolicies || top == keyCustomers:
			items, ierrs := normalizeList(top, v, src)
			errs = append(errs, ierrs...)
			if ierrs == nil {
				c.setList(top, items)
			}
		case slices.Contains(sections(), top):
			sub, ok := v.(map[string]any)
			if !ok && v != nil {
				fail(top, "", "must be a map of keys, not "+kindOf(v), strings.Join(sectionKeys(top), ", "))
				continue
			}
			for full, val := range flattenSection(top, sub) {
				k, ok := lookupKey(full)
				if !ok {
					fail(full, "", "unknown key", strings.Join(sectionKeys(top), ", "))
					continue
				}
				errs = append(errs, c.setFrom(k, val, src, full)...)
			}
		default:
			k, ok := lookupKey(top)
			if !ok {
				fail(top, "", "unknown key", strings.Join(topLevelKeys(), ", "))
				continue
			}
			errs = append(errs, c.setFrom(k, v, src, top)...)
		}
	}
	return errs
}

// setList stores the normalized policies or customers list.
func (c *Config) setList(top string, items []map[string]any) {
	if top == keyPolicies {
		c.policies = nil
	} else {
		c.customers = nil
	}
	for _, m := range items {
		str := func(k string) string { s, _ := m[k].(string); return s }
		list := func(k string) []string { l, _ := m[k].([]string); return l }
		if top == keyPolicies {
			c.policies = append(c.policies, policyEntry{Domain: str("domain"), Level: str("level"), Match: list("match"),
				OnFail: str("on_fail"), OnTempfail: str("on_tempfail")})
			continue
		}
		c.customers = append(c.customers, customerEntry{Name: str("name"), Senders: list("senders"), SASLLogins: list("sasl_logins"),
			ClientNetworks: list("client_networks"), Level: str("level"), OnFail: str("on_fail"), OnTempfail: str("on_tempfail")})
	}
}

// normalizeList checks the policies or customers list: a list of maps with known
// keys, string values, and lists of strings where the schema has lists.
func normalizeList(top string, v any, src source) ([]map[string]any, []error) {
	keys, lists := policyKeys, policyLists
	if top == keyCustomers {
		keys, lists = customerKeys, customerList
	}
	var errs []error
	fail := func(key, value, msg, allowed string) {
		errs = append(errs, &FieldError{File: src.where(), Key: key, Value: value, Msg: msg, Allowed: allowed})
	}
	if v == nil {
		return nil, nil
	}
	list, ok := v.([]any)
	if !ok {
		fail(top, "", "must be a list of maps, not "+kindOf(v), "")
		return nil, errs
	}
	out := make([]map[string]any, 0, len(list))
	for i, item := range list {
		prefix := fmt.Sprintf("%s[%d]", top, i)
		m, ok := item.(map[string]any)
		if !ok {
			fail(prefix, "", "must be a map with the keys "+strings.Join(keys, ", ")+", not "+kindOf(item), "")
			continue
		}
		nm := map[string]any{}
		for _, key := range sortedKeys(m) {
			full := prefix + "." + key
			if !slices.Contains(keys, key) {
				fail(full, "", "unknown key", strings.Join(keys, ", "))
				continue
			}
			conv := convertString
			if slices.Contains(lists, key) {
				conv = convertList
			}
			cv, shown, msg := conv(m[key])
			if msg != "" {
				fail(full, shown, msg, "")
				continue
			}
			nm[key] = cv
		}
		out = append(out, nm)
	}
	return out, errs
}

// flattenSection returns the keys of one section with their values, in order; a map
// under a key that is the prefix of nested keys (cache.shared) is flattened into them.
func flattenSection(prefix string, sub map[string]any) iter.Seq2[string, any] {
	return func(yield func(string, any) bool) {
		for _, key := range sortedKeys(sub) {
			full := prefix + "." + key
			if m, ok := sub[key].(map[string]any); ok && hasNested(full) {
				for k, v := range flattenSection(full, m) {
					if !yield(k, v) {
						return
					}
				}
				continue
			}
			if !yield(full, sub[key]) {
				return
			}
		}
	}
}

// hasNested reports whether some key lies under prefix (cache.shared.url under
// cache.shared).
func hasNested(prefix string) bool {
	return slices.ContainsFunc(keys, func(k key) bool { return strings.HasPrefix(k.name, prefix+".") })
}

func sortedKeys[V any](m map[string]V) []string { return slices.Sorted(maps.Keys(m)) }

// applyEnv sets the keys whose TLSGATE_* variable env has, in the order of the
// schema, then reports the other TLSGATE_* variables. The variable of a key is
// found from the key list (TLSGATE_POLICY_FILES is the top-level policy_files, not a
// key "files" of a section "policy").
func (c *Config) applyEnv(env []string) []error {
	vals := map[string]string{}
	for _, kv := range env {
		name, val, ok := strings.Cut(kv, "=")
		if !ok || !strings.HasPrefix(name, envPrefix) || name == envConfig {
			continue
		}
		vals[name] = val // the last assignment wins, as in os/exec
	}
	var errs []error
	for _, k := range keys {
		name := envName(k.name)
		if val, ok := vals[name]; ok {
			errs = append(errs, c.setFrom(k, val, envSource{}, name)...)
			delete(vals, name)
		}
	}
	for _, name := range sortedKeys(vals) {
		e := &FieldError{File: envSource{}.where(), Key: name, Msg: "unknown variable", Allowed: envAllowed(name)}
		if name == envName(keyPolicies) || name == envName(keyCustomers) {
			e.Msg, e.Allowed = "policies and customers can only be set in the configuration file", ""
		}
		errs = append(errs, e)
	}
	return errs
}

// envAllowed lists the variables of the section name seems to address, or the
// prefixes of all sections.
func envAllowed(name string) string {
	var all []string
	for _, sec := range sections() {
		prefix := envName(sec) + "_"
		if strings.HasPrefix(name, prefix) {
			var names []string
			for _, k := range sectionKeys(sec) {
				names = append(names, envName(sec+"."+k))
			}
			return strings.Join(names, ", ")
		}
		all = append(all, prefix+"*")
	}
	for _, k := range keys {
		if section(k.name) == "" {
			all = append(all, envName(k.name))
		}
	}
	return strings.Join(append(all, envConfig), ", ")
}

// AddFlags registers one flag per key on fs, named like the key ("milter.listen",
// "policy_files"), with the built-in default and the key's documentation as usage.
// Load applies only the flags the user changed. List flags take comma-separated
// values.
func AddFlags(fs *pflag.FlagSet) {
	for _, k := range keys {
		switch def := k.def.(type) {
		case bool:
			if k.parse == nil {
				fs.Bool(k.name, def, k.usage())
				continue
			}
		case int:
			fs.Int(k.name, def, k.usage())
			continue
		case time.Duration:
			fs.Duration(k.name, def, k.usage())
			continue
		}
		if k.isList() {
			fs.StringSlice(k.name, k.format(k.def), k.usage())
		} else {
			fs.String(k.name, k.format(k.def)[0], k.usage())
		}
	}
}
