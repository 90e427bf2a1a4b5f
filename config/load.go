package config

import (
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/knadh/koanf/parsers/yaml"
	"github.com/knadh/koanf/providers/env/v2"
	"github.com/knadh/koanf/providers/file"
	"github.com/knadh/koanf/providers/posflag"
	"github.com/knadh/koanf/providers/rawbytes"
	"github.com/knadh/koanf/v2"
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
// koanf reads each source into its own instance and flattens it into keys; the key
// table converts each value and names the source in errors.
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
		k, err := readFile(o.File)
		if err != nil {
			return nil, err
		}
		if dotted := dottedKeys(k.Raw(), "", fileSource(o.File)); dotted != nil {
			return nil, errors.Join(dotted...)
		}
		errs = append(errs, c.applyTree(k, fileSource(o.File))...)
	}
	errs = append(errs, c.applyEnv(o.Env)...)
	if o.Flags != nil {
		errs = append(errs, c.applyFlags(o.Flags)...)
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

// setFrom converts v, from src, into the field of k. It returns a *FieldError per
// problem, and keeps the field as it was then.
func (c *Config) setFrom(k key, v any, src source) []error {
	out, probs := k.convert(v)
	var errs []error
	var notes []string
	for _, p := range probs {
		fe := &FieldError{File: src.where(), Key: src.name(k.name) + p.suffix, Value: p.value, Msg: p.msg, Allowed: p.allowed}
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
		c.origins[k.name] = origin{where: src.where(), name: src.name(k.name)}
	}
	return nil
}

// readFile loads the YAML file into a koanf instance: read with koanf's file
// provider, bounded, then parsed by its YAML parser. A read error and a parse error
// are told apart, hence the two steps.
func readFile(path string) (*koanf.Koanf, error) {
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
	k := koanf.New(delim)
	if err := k.Load(rawbytes.Provider(b), yaml.Parser()); err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrInvalid, path, err)
	}
	return k, nil
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

// delim separates the parts of a key: a section and its key (milter.listen), and
// the nested cache.shared keys.
const delim = "."

// source names the origin of a value for error messages.
type source interface {
	where() string          // FieldError.File
	name(key string) string // FieldError.Key of a key
}

type fileSource string

func (f fileSource) where() string        { return string(f) }
func (fileSource) name(key string) string { return key }

type flagSource struct{}

func (flagSource) where() string          { return "command line" }
func (flagSource) name(key string) string { return "--" + key }

type envSource struct{}

func (envSource) where() string          { return "environment" }
func (envSource) name(key string) string { return envName(key) }

// applyTree checks the keys koanf flattened from the file (or the flags) against
// the schema and sets every value it can convert; unknown keys and badly typed
// values are reported. It goes down each flattened key part by part, in the order
// of the nested keys, and stops at the first part that is a key (a map under
// milter.listen is that key's badly typed value, not keys of its own), the
// policies or customers list, or unknown.
func (c *Config) applyTree(k *koanf.Koanf, src source) []error {
	var errs []error
	fail := func(key, value, msg, allowed string) {
		errs = append(errs, &FieldError{File: src.where(), Key: src.name(key), Value: value, Msg: msg, Allowed: allowed})
	}
	// The parts of each flattened key as the file wrote them: a YAML key that holds
	// the delimiter stays one part.
	parts := k.KeyMap()
	leaves := k.Keys()
	slices.SortFunc(leaves, func(a, b string) int { return slices.Compare(parts[a], parts[b]) })
	done := map[string]bool{}
	for _, leaf := range leaves {
		for i := range parts[leaf] {
			path := strings.Join(parts[leaf][:i+1], delim)
			if done[path] {
				break
			}
			top, last := i == 0, i == len(parts[leaf])-1
			if kk, ok := lookupKey(path); ok {
				done[path] = true
				errs = append(errs, c.setFrom(kk, k.Get(path), src)...)
				break
			}
			if top && (path == keyPolicies || path == keyCustomers) {
				done[path] = true
				items, ierrs := normalizeList(path, k.Get(path), src)
				errs = append(errs, ierrs...)
				if ierrs == nil {
					c.setList(path, items)
				}
				break
			}
			if !hasNested(path) {
				done[path] = true
				allowed := topLevelKeys()
				if !top {
					allowed = sectionKeys(parts[leaf][0])
				}
				fail(path, "", "unknown key", strings.Join(allowed, ", "))
				break
			}
			if !last {
				continue // a section, or cache.shared, with keys under it
			}
			// A section or cache.shared that holds no keys: empty, or not a map.
			v := k.Get(path)
			if m, ok := v.(map[string]any); ok && len(m) == 0 || top && v == nil {
				continue
			}
			if top {
				fail(path, "", "must be a map of keys, not "+kindOf(v), strings.Join(sectionKeys(path), ", "))
			} else {
				fail(path, "", "unknown key", strings.Join(sectionKeys(parts[leaf][0]), ", "))
			}
		}
	}
	return errs
}

// hasNested reports whether some key lies under prefix: milter.listen under milter,
// cache.shared.url under cache.shared.
func hasNested(prefix string) bool {
	return slices.ContainsFunc(keys, func(k key) bool { return strings.HasPrefix(k.name, prefix+delim) })
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
		for _, key := range slices.Sorted(maps.Keys(m)) {
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

// applyEnv sets the keys whose TLSGATE_* variable env has, in the order of the
// schema, then reports the other TLSGATE_* variables. koanf's env provider reads
// the variables (the last assignment wins, as in os/exec) and nests each under the
// key whose variable it is; the key list decides, not a blind '_' to '.' mapping
// (TLSGATE_POLICY_FILES is the top-level policy_files, not a key "files" of a
// section "policy"). The other variables are kept aside by name: koanf would nest
// one holding a dot.
func (c *Config) applyEnv(environ []string) []error {
	unknown := map[string]bool{}
	k := koanf.New(delim)
	err := k.Load(env.Provider(delim, env.Opt{
		Prefix:      envPrefix,
		EnvironFunc: func() []string { return environ },
		TransformFunc: func(name, v string) (string, any) {
			if i := slices.IndexFunc(keys, func(k key) bool { return envName(k.name) == name }); i >= 0 {
				return keys[i].name, v
			}
			if name != envConfig {
				unknown[name] = true
			}
			return "", nil
		},
	}), nil)
	if err != nil { // the env provider does not fail
		return []error{fmt.Errorf("config: environment: %w", err)}
	}
	var errs []error
	for _, kk := range keys {
		if k.Exists(kk.name) {
			errs = append(errs, c.setFrom(kk, k.Get(kk.name), envSource{})...)
		}
	}
	for _, name := range slices.Sorted(maps.Keys(unknown)) {
		e := &FieldError{File: envSource{}.where(), Key: name, Msg: "unknown variable", Allowed: envAllowed(name)}
		if name == envName(keyPolicies) || name == envName(keyCustomers) {
			e.Msg, e.Allowed = "policies and customers can only be set in the configuration file", ""
		}
		errs = append(errs, e)
	}
	return errs
}

// applyFlags sets the keys of the flags the user changed: without a koanf instance
// to consult, koanf's posflag provider takes only those. Flags that are not keys
// (--config) are left out.
func (c *Config) applyFlags(fs *pflag.FlagSet) []error {
	k := koanf.New(delim)
	err := k.Load(posflag.ProviderWithFlag(fs, delim, nil, func(f *pflag.Flag) (string, any) {
		if _, ok := lookupKey(f.Name); !ok {
			return "", nil
		}
		return f.Name, posflag.FlagVal(fs, f)
	}), nil)
	if err != nil { // the posflag provider does not fail
		return []error{fmt.Errorf("config: command line: %w", err)}
	}
	return c.applyTree(k, flagSource{})
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

// dottedKeys refuses YAML keys that contain the key delimiter ("milter.listen": x):
// koanf flattens "milter.listen" and milter: {listen: ...} into one key and keeps
// either, at random, when both are written. Each key has one spelling: nested.
func dottedKeys(m map[string]any, prefix string, src fileSource) []error {
	var errs []error
	for _, name := range slices.Sorted(maps.Keys(m)) {
		path := prefix + name
		if strings.Contains(name, ".") {
			errs = append(errs, &FieldError{File: src.where(), Key: path,
				Msg: "is not a key: write it nested (milter: {listen: ...}), not with a dot"})
			continue
		}
		if sub, ok := m[name].(map[string]any); ok {
			errs = append(errs, dottedKeys(sub, path+".", src)...)
		}
	}
	return errs
}
