package mtasts

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Mode is the policy mode (RFC 8461 §3.2).
type Mode int

// Policy modes (RFC 8461 §3.2, §5).
const (
	ModeNone    Mode = iota // "none": the domain has no active policy
	ModeTesting             // "testing": check and report, but deliver anyway
	ModeEnforce             // "enforce": deliver only to MX hosts that pass
)

// String returns the mode as written in a policy: "none", "testing" or "enforce".
func (m Mode) String() string {
	switch m {
	case ModeNone:
		return "none"
	case ModeTesting:
		return "testing"
	case ModeEnforce:
		return "enforce"
	}
	return "Mode(" + strconv.Itoa(int(m)) + ")"
}

// Limits.
const (
	// MaxPolicySize is the largest policy body accepted, in bytes. RFC 8461 §3.3 lets
	// senders limit the size of the response; 64 KiB is far beyond any real policy.
	MaxPolicySize = 64 << 10

	// MaxMaxAge is the largest max_age, in seconds: about one year (RFC 8461 §3.2).
	MaxMaxAge = 31557600
)

// Policy is a parsed MTA-STS policy (RFC 8461 §3.2).
type Policy struct {
	Mode   Mode
	MaxAge time.Duration // max_age, a whole number of seconds
	MX     []string      // mx patterns: lower case, no trailing dot, in order, no duplicates
}

// Errors returned by ParseTXT and ParsePolicy. They are wrapped with a detail that says
// what was wrong and where; callers classify with errors.Is.
var (
	ErrNoRecord        = errors.New("mtasts: no v=STSv1 TXT record")
	ErrMultipleRecords = errors.New("mtasts: more than one v=STSv1 TXT record")
	ErrInvalidRecord   = errors.New("mtasts: invalid v=STSv1 TXT record")
	ErrInvalidPolicy   = errors.New("mtasts: invalid policy")
)

// ParseTXT takes the TXT records found at _mta-sts.<domain>, each already the
// concatenation of its character-strings, and returns the policy id (RFC 8461 §3.1).
//
// Records that do not begin with the version field "v=STSv1" are discarded. If none
// remains, the error wraps ErrNoRecord; if more than one remains, ErrMultipleRecords; if
// the one that remains does not follow the ABNF of §3.1 or has no id field,
// ErrInvalidRecord. In all three cases the domain has no usable policy (§3.1: "senders
// MUST assume the recipient domain does not have an available MTA-STS Policy").
func ParseTXT(records []string) (id string, err error) {
	var found []string
	for _, r := range records {
		if fields, ok := cutVersion(r); ok {
			found = append(found, fields)
		}
	}
	switch len(found) {
	case 0:
		return "", fmt.Errorf("%w: none of %d TXT records begins with v=STSv1", ErrNoRecord, len(records))
	case 1:
		return parseFields(found[0])
	default:
		return "", fmt.Errorf("%w: %d of %d TXT records begin with v=STSv1", ErrMultipleRecords, len(found), len(records))
	}
}

// cutVersion reports whether record begins with the version field
//
//	sts-version = %s"v" *WSP "=" *WSP %s"STSv1"
//
// (RFC 8461 §3.1, case-sensitive) and returns what follows it. The version must end there:
// the next byte, if any, is a space, tab or ";", so "v=STSv10" is another version and is
// discarded like any other TXT record. §3.1 speaks of records that "begin with
// v=STSv1;", but the ABNF allows white space before the ";" (errata 6285), so
// "v=STSv1 ;" counts as well; a record such as "v=STSv1 id=x" counts and is then
// rejected as invalid rather than silently dropped.
func cutVersion(record string) (rest string, ok bool) {
	s, ok := strings.CutPrefix(record, "v")
	if !ok {
		return "", false
	}
	s, ok = strings.CutPrefix(trimWSP(s), "=")
	if !ok {
		return "", false
	}
	s, ok = strings.CutPrefix(trimWSP(s), "STSv1")
	if !ok || (s != "" && s[0] != ' ' && s[0] != '\t' && s[0] != ';') {
		return "", false
	}
	return s, true
}

// parseFields parses what follows the version in a v=STSv1 record (RFC 8461 §3.1):
//
//	sts-text-record = sts-version 1*(sts-field-delim sts-field) [sts-field-delim]
//	sts-field-delim = *WSP ";" *WSP
//	sts-field       = sts-id / sts-extension
//	sts-id          = %s"id" *WSP "=" *WSP 1*32(ALPHA / DIGIT)
//	sts-extension   = sts-ext-name *WSP "=" *WSP sts-ext-value
//	sts-ext-name    = (ALPHA / DIGIT) *31(ALPHA / DIGIT / "_" / "-" / ".")
//	sts-ext-value   = 1*(%x21-3A / %x3C / %x3E-7E)
//
// It returns the id. Every field must be well formed, including extension fields, whose
// values are otherwise ignored. A field named "id" is always read as sts-id: an id value
// that is not 1 to 32 letters and digits makes the record invalid, even though the same
// text would also match sts-extension. The id field is required (§3.1); the RFC does
// not say what a repeated id means, and we use the first, as ParsePolicy does for
// repeated policy fields.
func parseFields(s string) (string, error) {
	var id string
	for n := 1; ; n++ {
		// sts-field-delim, or the end of the record.
		rest, ok := strings.CutPrefix(trimWSP(s), ";")
		if !ok {
			if s == "" {
				break
			}
			return "", fmt.Errorf("%w: want \";\" before %q", ErrInvalidRecord, clip(s))
		}
		s = trimWSP(rest)
		if s == "" {
			break // the optional trailing sts-field-delim
		}

		name, value, rest, err := cutField(s)
		if err != nil {
			return "", fmt.Errorf("%w: field %d: %v", ErrInvalidRecord, n, err)
		}
		if name == "id" {
			if len(value) > 32 || !isAlnum(value) {
				return "", fmt.Errorf("%w: field %d: id %q is not 1 to 32 letters and digits", ErrInvalidRecord, n, clip(value))
			}
			if id == "" {
				id = value // the first id wins; later ones are only checked
			}
		}
		s = rest
	}
	if id == "" {
		return "", fmt.Errorf("%w: no id field", ErrInvalidRecord)
	}
	return id, nil
}

// cutField splits s, which begins with a field, into the field's name and value (each
// at least one character, the name at most 32) and the rest of s.
func cutField(s string) (name, value, rest string, err error) {
	i := 0
	for i < len(s) && isNameByte(s[i]) {
		i++
	}
	name, s = s[:i], s[i:]
	if name == "" || !isAlnumByte(name[0]) || len(name) > 32 {
		return "", "", "", fmt.Errorf("want a field name of 1 to 32 letters, digits, \"_\", \"-\" or \".\", starting with a letter or digit, at %q", clip(name+s))
	}
	s, ok := strings.CutPrefix(trimWSP(s), "=")
	if !ok {
		return "", "", "", fmt.Errorf("want \"=\" after %q", name)
	}
	s = trimWSP(s)
	i = 0
	for i < len(s) && isExtValueByte(s[i]) {
		i++
	}
	if i == 0 {
		return "", "", "", fmt.Errorf("empty or malformed value for %q at %q", name, clip(s))
	}
	return name, s[:i], s[i:], nil
}

// ParsePolicy parses a policy body (RFC 8461 §3.2). The caller limits what it reads, but
// ParsePolicy rejects a body of more than MaxPolicySize bytes as well.
//
// The body is lines ending in LF or CRLF (§3.2 with errata 6253); empty lines, and lines
// of only spaces and tabs, are ignored. Every other line must be
//
//	key *WSP ":" *WSP value *WSP
//
// where key is sts-policy-field-name = (ALPHA / DIGIT) *31(ALPHA / DIGIT / "_" / "-" /
// "."), and value is not empty. The RFC's ABNF has no white space before the ":"; we
// accept it. Keys are case-sensitive. version ("STSv1"), mode and max_age are required
// once; the RFC does not say what a repeat means, and here the first line of each wins
// and later lines with the same key are ignored (they only need to be "key: value").
// mx may repeat and is required unless mode is "none". Other keys are extensions and
// ignored (§3.2).
//
// Every error wraps ErrInvalidPolicy and names the line where it can.
func ParsePolicy(body []byte) (*Policy, error) {
	if len(body) > MaxPolicySize {
		return nil, fmt.Errorf("%w: %d bytes, more than the limit of %d", ErrInvalidPolicy, len(body), MaxPolicySize)
	}
	var (
		p                              Policy
		haveVersion, haveMode, haveAge bool
		seen                           = make(map[string]bool)
	)
	s := string(body)
	for n := 1; s != ""; n++ {
		var line string
		line, s, _ = strings.Cut(s, "\n")
		line = strings.TrimSuffix(line, "\r") // sts-policy-term = LF / CRLF
		if err := checkText(line); err != nil {
			return nil, fmt.Errorf("%w: line %d: %v", ErrInvalidPolicy, n, err)
		}
		if trimWSP(line) == "" {
			continue
		}
		key, value, err := cutLine(line)
		if err != nil {
			return nil, fmt.Errorf("%w: line %d: %v", ErrInvalidPolicy, n, err)
		}
		switch key {
		case "version":
			if haveVersion {
				continue
			}
			haveVersion = true
			if value != "STSv1" { // sts-policy-version-value = %s"STSv1"
				return nil, fmt.Errorf("%w: line %d: version %q, want STSv1", ErrInvalidPolicy, n, clip(value))
			}
		case "mode":
			if haveMode {
				continue
			}
			haveMode = true
			m, ok := parseMode(value)
			if !ok {
				return nil, fmt.Errorf("%w: line %d: mode %q, want enforce, testing or none", ErrInvalidPolicy, n, clip(value))
			}
			p.Mode = m
		case "max_age":
			if haveAge {
				continue
			}
			haveAge = true
			age, err := parseMaxAge(value)
			if err != nil {
				return nil, fmt.Errorf("%w: line %d: %v", ErrInvalidPolicy, n, err)
			}
			p.MaxAge = age
		case "mx":
			pat, err := parsePattern(value)
			if err != nil {
				return nil, fmt.Errorf("%w: line %d: mx %q: %v", ErrInvalidPolicy, n, clip(value), err)
			}
			if !seen[pat] {
				seen[pat] = true
				p.MX = append(p.MX, pat)
			}
		}
	}
	switch {
	case !haveVersion:
		return nil, fmt.Errorf("%w: no version field", ErrInvalidPolicy)
	case !haveMode:
		return nil, fmt.Errorf("%w: no mode field", ErrInvalidPolicy)
	case !haveAge:
		return nil, fmt.Errorf("%w: no max_age field", ErrInvalidPolicy)
	case len(p.MX) == 0 && p.Mode != ModeNone:
		// §3.2: mx is "required at least once, except when mode is none".
		return nil, fmt.Errorf("%w: mode %s needs at least one mx field", ErrInvalidPolicy, p.Mode)
	}
	return &p, nil
}

// checkText rejects what no policy line may contain: bytes that are not UTF-8, and
// control characters other than tab (RFC 8461 §3.2: values are UTF-8 "excluding CTLs").
func checkText(line string) error {
	for i := 0; i < len(line); {
		r, size := utf8.DecodeRuneInString(line[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			return fmt.Errorf("not UTF-8 at byte %d", i+1)
		case (r < 0x20 && r != '\t') || r == 0x7f:
			return fmt.Errorf("control character %q at byte %d", r, i+1)
		}
		i += size
	}
	return nil
}

// cutLine splits a policy line into key and value (RFC 8461 §3.2).
func cutLine(line string) (key, value string, err error) {
	i := 0
	for i < len(line) && isNameByte(line[i]) {
		i++
	}
	key = line[:i]
	rest, ok := strings.CutPrefix(trimWSP(line[i:]), ":")
	if key == "" || !isAlnumByte(key[0]) || len(key) > 32 || !ok {
		return "", "", fmt.Errorf("%q is not \"key: value\"", clip(line))
	}
	// sts-policy-ext-value: at least one character, no leading or trailing space.
	value = strings.TrimRight(trimWSP(rest), " \t")
	if value == "" {
		return "", "", fmt.Errorf("%s has an empty value", key)
	}
	return key, value, nil
}

// parseMode parses sts-policy-mode-value = %s"testing" / %s"enforce" / %s"none".
func parseMode(s string) (Mode, bool) {
	switch s {
	case "enforce":
		return ModeEnforce, true
	case "testing":
		return ModeTesting, true
	case "none":
		return ModeNone, true
	}
	return 0, false
}

// parseMaxAge parses sts-policy-max-age-value = 1*10(DIGIT), at most MaxMaxAge
// (RFC 8461 §3.2).
func parseMaxAge(s string) (time.Duration, error) {
	if len(s) > 10 || !isDigits(s) {
		return 0, fmt.Errorf("max_age %q is not 1 to 10 digits", clip(s))
	}
	n, err := strconv.ParseUint(s, 10, 64) // cannot fail: at most 10 digits
	if err != nil || n > MaxMaxAge {
		return 0, fmt.Errorf("max_age %s is more than %d", s, MaxMaxAge)
	}
	return time.Duration(n) * time.Second, nil
}

// parsePattern checks an mx value and returns it lower case without a trailing dot.
//
//	sts-policy-mx-value = ["*."] Domain
//	Domain              = sub-domain *("." sub-domain)        ; RFC 5321 §4.1.2
//	sub-domain          = Let-dig [Ldh-str]
//
// Labels are at most 63 bytes and the whole pattern at most 253 (RFC 1035 §2.3.4). One
// trailing dot is tolerated, as in a DNS name. IP addresses, bare or in brackets, are
// rejected: MTA-STS authenticates MX host names (§4.1), and an address cannot match
// one. A Domain whose last label is all digits is rejected too; no top-level domain is
// numeric, and such a name would be read as an IPv4 address (RFC 1123 §2.1).
func parsePattern(v string) (string, error) {
	if _, err := netip.ParseAddr(strings.TrimSuffix(strings.TrimPrefix(v, "["), "]")); err == nil {
		return "", errors.New("an IP address is not an mx pattern")
	}
	pat := lowerASCII(strings.TrimSuffix(v, "."))
	if len(pat) > 253 {
		return "", errors.New("longer than 253 bytes")
	}
	name := strings.TrimPrefix(pat, "*.")
	labels := strings.Split(name, ".")
	for _, l := range labels {
		if !isLDHLabel(l) {
			return "", fmt.Errorf("label %q is not 1 to 63 letters, digits and inner hyphens", clip(l))
		}
	}
	if isDigits(labels[len(labels)-1]) {
		return "", errors.New("the last label is numeric, like an IP address")
	}
	return pat, nil
}

// MatchPattern reports whether the MX host name host matches the policy mx pattern
// (RFC 8461 §4.1). The comparison ignores ASCII case and one trailing dot on either side.
// A pattern "*.example.com" matches a host with exactly one more, non-empty, left-most
// label: "mx.example.com", not "example.com" nor "a.mx.example.com". "*" means nothing
// anywhere else. An empty pattern or host never matches, nor does a host containing "*".
func MatchPattern(pattern, host string) bool {
	pattern = lowerASCII(strings.TrimSuffix(pattern, "."))
	host = lowerASCII(strings.TrimSuffix(host, "."))
	if pattern == "" || host == "" || strings.Contains(host, "*") {
		return false
	}
	rest, wildcard := strings.CutPrefix(pattern, "*.")
	if rest == "" || strings.Contains(rest, "*") {
		return false
	}
	if !wildcard {
		return host == pattern
	}
	label, tail, ok := strings.Cut(host, ".")
	return ok && label != "" && tail == rest
}

// Allows reports whether host matches any of p.MX (RFC 8461 §4.1). It does not look at
// p.Mode: what a failed match means is up to the caller (§5).
func (p *Policy) Allows(host string) bool {
	for _, pat := range p.MX {
		if MatchPattern(pat, host) {
			return true
		}
	}
	return false
}

// String renders the policy in the format of RFC 8461 §3.2, with LF line ends: version,
// mode, the mx lines in order, then max_age in whole seconds, as in the example of §3.2.
func (p *Policy) String() string {
	var b strings.Builder
	b.WriteString("version: STSv1\n")
	b.WriteString("mode: " + p.Mode.String() + "\n")
	for _, mx := range p.MX {
		b.WriteString("mx: " + mx + "\n")
	}
	b.WriteString("max_age: " + strconv.FormatInt(int64(p.MaxAge/time.Second), 10) + "\n")
	return b.String()
}

// trimWSP removes leading spaces and tabs (RFC 5234 WSP).
func trimWSP(s string) string {
	return strings.TrimLeft(s, " \t")
}

// clip shortens s for an error message, so that a large hostile input does not become a
// large log line.
func clip(s string) string {
	const limit = 64
	if len(s) <= limit {
		return s
	}
	return s[:limit] + "..."
}

// lowerASCII lower-cases ASCII letters only; DNS names compare case-insensitively in
// ASCII alone (RFC 4343), so no Unicode case folding.
func lowerASCII(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}

// isLDHLabel reports whether l is Let-dig [Ldh-str] (RFC 5321 §4.1.2) of at most 63
// bytes (RFC 1035 §2.3.4).
func isLDHLabel(l string) bool {
	if l == "" || len(l) > 63 || !isAlnumByte(l[0]) || !isAlnumByte(l[len(l)-1]) {
		return false
	}
	for i := 0; i < len(l); i++ {
		if !isAlnumByte(l[i]) && l[i] != '-' {
			return false
		}
	}
	return true
}

func isAlnum(s string) bool {
	for i := 0; i < len(s); i++ {
		if !isAlnumByte(s[i]) {
			return false
		}
	}
	return s != ""
}

func isDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}

func isAlnumByte(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
}

// isNameByte: ALPHA / DIGIT / "_" / "-" / ".", the characters of sts-ext-name and
// sts-policy-field-name (RFC 8461 §3.1, §3.2).
func isNameByte(c byte) bool {
	return isAlnumByte(c) || c == '_' || c == '-' || c == '.'
}

// isExtValueByte: %x21-3A / %x3C / %x3E-7E, the characters of sts-ext-value
// (RFC 8461 §3.1): printable ASCII except "=" and ";".
func isExtValueByte(c byte) bool {
	return c >= 0x21 && c <= 0x7e && c != '=' && c != ';'
}
