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

	"github.com/go-viper/mapstructure/v2"
	"github.com/knadh/koanf/parsers/yaml"
	"github.com/knadh/koanf/providers/file"
	"github.com/knadh/koanf/providers/posflag"
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
// flags; then it validates the result.
//
// Errors: the file cannot be read (wrapping the *fs.PathError, e.g. "open /x: no such
// file or directory"); the file is not YAML or too large (wrapping ErrInvalid); or the
// errors.Join of one *FieldError per unknown key, badly typed value (first pass,
// over all sources) or invalid value (Validate, when the first pass found nothing).
func Load(o Options) (*Config, error) {
	k := koanf.New(".")
	if err := k.Load(mapProvider(defaultsMap()), nil); err != nil {
		return nil, fmt.Errorf("config: defaults: %w", err)
	}

	var errs []error
	origins := map[string]origin{}

	if o.File != "" {
		raw, err := readFile(o.File)
		if err != nil {
			return nil, err
		}
		m, ferrs := normalize(raw, fileSource(o.File))
		errs = append(errs, ferrs...)
		if err := k.Load(mapProvider(m), nil); err != nil {
			return nil, fmt.Errorf("config: %s: %w", o.File, err)
		}
	}

	m, eerrs := envMap(o.Env, origins)
	errs = append(errs, eerrs...)
	if err := k.Load(mapProvider(m), nil); err != nil {
		return nil, fmt.Errorf("config: environment: %w", err)
	}

	if o.Flags != nil {
		raw, err := posflag.ProviderWithFlag(o.Flags, ".", nil, func(f *pflag.Flag) (string, any) {
			if _, ok := lookupScalar(f.Name); !ok {
				return "", nil
			}
			return f.Name, posflag.FlagVal(o.Flags, f)
		}).Read()
		if err != nil {
			return nil, fmt.Errorf("config: command line: %w", err)
		}
		m, ferrs := normalize(raw, flagSource{})
		errs = append(errs, ferrs...)
		for _, s := range scalars {
			if f := o.Flags.Lookup(s.key); f != nil && f.Changed {
				origins[s.key] = origin{where: flagSource{}.where(), name: "--" + s.key}
			}
		}
		if err := k.Load(mapProvider(m), nil); err != nil {
			return nil, fmt.Errorf("config: command line: %w", err)
		}
	}

	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}

	c := &Config{}
	if err := unmarshal(k, c); err != nil {
		// normalize gave every value its Go type; this is a bug, not bad input.
		return nil, fmt.Errorf("config: decoding the merged configuration: %w", err)
	}
	c.File = o.File
	c.origins = origins
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return c, nil
}

// unmarshal decodes the merged map into c. Every value already has its Go type
// (normalize), so the decoder needs no conversion hooks; it fails on keys without
// a field.
func unmarshal(k *koanf.Koanf, c *Config) error {
	return k.UnmarshalWithConf("", c, koanf.UnmarshalConf{
		DecoderConfig: &mapstructure.DecoderConfig{TagName: "koanf", ErrorUnused: true},
	})
}

// mapProvider is a koanf.Provider for an already nested map: the defaults and the
// normalized sources. (koanf's confmap provider is not a dependency of this module.)
type mapProvider map[string]any

func (p mapProvider) Read() (map[string]any, error) { return p, nil }

func (p mapProvider) ReadBytes() ([]byte, error) {
	return nil, errors.New("config: map provider has no bytes")
}

var _ koanf.Provider = mapProvider(nil)

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

// source names the origin of a nested map for error messages.
type source interface {
	where() string          // FieldError.File
	name(key string) string // FieldError.Key for a configuration key
}

type fileSource string

func (f fileSource) where() string        { return string(f) }
func (fileSource) name(key string) string { return key }

type flagSource struct{}

func (flagSource) where() string          { return "command line" }
func (flagSource) name(key string) string { return "--" + key }

// normalize checks a nested map from the file or the flags against the schema and
// converts every value to its Go type. Unknown keys and badly typed values are
// reported and left out.
func normalize(raw map[string]any, src source) (map[string]any, []error) {
	out := map[string]any{}
	var errs []error
	fail := func(key, value, msg, allowed string) {
		errs = append(errs, &FieldError{File: src.where(), Key: src.name(key), Value: value, Msg: msg, Allowed: allowed})
	}
	for _, top := range sortedKeys(raw) {
		v := raw[top]
		switch {
		case top == keyPolicies || top == keyCustomers:
			if _, ok := src.(fileSource); !ok {
				fail(top, "", "can only be set in the configuration file", "")
				continue
			}
			items, ierrs := normalizeList(top, v, src)
			errs = append(errs, ierrs...)
			if ierrs == nil {
				out[top] = items
			}
		case slices.Contains(sections(), top):
			sub, ok := v.(map[string]any)
			if !ok && v != nil {
				fail(top, "", "must be a map of keys, not "+kindOf(v), strings.Join(sectionKeys(top), ", "))
				continue
			}
			for full, val := range flattenSection(top, sub) {
				s, ok := lookupScalar(full)
				if !ok {
					fail(full, "", "unknown key", strings.Join(sectionKeys(top), ", "))
					continue
				}
				cv, shown, msg := s.convert(val)
				if msg != "" {
					fail(full, shown, msg, "")
					continue
				}
				setNested(out, full, cv)
			}
		default:
			s, ok := lookupScalar(top)
			if !ok {
				fail(top, "", "unknown key", strings.Join(topLevelKeys(), ", "))
				continue
			}
			cv, shown, msg := s.convert(v)
			if msg != "" {
				fail(top, shown, msg, "")
				continue
			}
			out[top] = cv
		}
	}
	return out, errs
}

// normalizeList checks the policies or customers list: a list of maps with known
// keys, string values, and lists of strings where the schema has lists.
func normalizeList(top string, v any, src source) ([]any, []error) {
	keys, lists := policyKeys, policyLists
	if top == keyCustomers {
		keys, lists = customerKeys, customerList
	}
	var errs []error
	fail := func(key, value, msg, allowed string) {
		errs = append(errs, &FieldError{File: src.where(), Key: src.name(key), Value: value, Msg: msg, Allowed: allowed})
	}
	if v == nil {
		return []any{}, nil
	}
	list, ok := v.([]any)
	if !ok {
		fail(top, "", "must be a list of maps, not "+kindOf(v), "")
		return nil, errs
	}
	out := make([]any, 0, len(list))
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
	return slices.ContainsFunc(scalars, func(s scalar) bool { return strings.HasPrefix(s.key, prefix+".") })
}

func sortedKeys[V any](m map[string]V) []string { return slices.Sorted(maps.Keys(m)) }

// envMap reads the TLSGATE_* variables of env into a nested map. The variable of a
// key is found from the key list (TLSGATE_POLICY_FILES is the top-level policy_files,
// not a key "files" of a section "policy"). It records the origin of each key.
// (koanf's env provider reads os.Environ itself; Options.Env, which lets tests and
// the command pass the environment explicitly, is read here instead.)
func envMap(env []string, origins map[string]origin) (map[string]any, []error) {
	byName := map[string]scalar{}
	for _, s := range scalars {
		byName[envName(s.key)] = s
	}
	vals := map[string]string{}
	for _, kv := range env {
		name, val, ok := strings.Cut(kv, "=")
		if !ok || !strings.HasPrefix(name, envPrefix) || name == envConfig {
			continue
		}
		vals[name] = val // the last assignment wins, as in os/exec
	}
	const where = "environment"
	out := map[string]any{}
	var errs []error
	for _, name := range sortedKeys(vals) {
		val := vals[name]
		s, ok := byName[name]
		if !ok {
			e := &FieldError{File: where, Key: name, Msg: "unknown variable", Allowed: envAllowed(name)}
			if name == envName(keyPolicies) || name == envName(keyCustomers) {
				e.Msg, e.Allowed = "policies and customers can only be set in the configuration file", ""
			}
			errs = append(errs, e)
			continue
		}
		cv, shown, msg := s.convert(val)
		if msg != "" {
			errs = append(errs, &FieldError{File: where, Key: name, Value: shown, Msg: msg})
			continue
		}
		setNested(out, s.key, cv)
		origins[s.key] = origin{where: where, name: name}
	}
	return out, errs
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
	for _, s := range scalars {
		if section(s.key) == "" {
			all = append(all, envName(s.key))
		}
	}
	return strings.Join(append(all, envConfig), ", ")
}

// AddFlags registers one flag per scalar key on fs, named like the key
// ("milter.listen", "policy_files"), with the built-in default and the key's
// documentation as usage. Load applies only the flags the user changed. List flags
// take comma-separated values.
func AddFlags(fs *pflag.FlagSet) {
	d := Default()
	for _, s := range scalars {
		switch p := s.ptr(d).(type) {
		case *string:
			fs.String(s.key, *p, s.usage)
		case *bool:
			fs.Bool(s.key, *p, s.usage)
		case *time.Duration:
			fs.Duration(s.key, *p, s.usage)
		case *int:
			fs.Int(s.key, *p, s.usage)
		case *[]string:
			fs.StringSlice(s.key, *p, s.usage)
		}
	}
}
