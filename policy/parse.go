package policy

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/tlsgate/tlsgate/internal/fingerprint"
)

// ErrSyntax is returned (wrapped, with "file:line" and what is wrong) by
// ParseFile and LoadFile for input that is not a usable tls_policy table.
var ErrSyntax = errors.New("policy: syntax error")

// Input bounds for ParseFile. A real tls_policy file has short lines and at
// most a few thousand entries; anything beyond these is a mistake or an attack.
const (
	maxLogicalLine = 64 << 10 // bytes in one logical line, continuations included
	maxFileSize    = 16 << 20 // bytes in one file
)

// Warning is a problem in a policy source that does not stop it from loading:
// an attribute Postfix would reject, a next-hop key skipped, a duplicate key.
type Warning struct {
	Source string // "file:line"
	Msg    string
}

// String returns "file:line: msg".
func (w Warning) String() string {
	if w.Source == "" {
		return w.Msg
	}
	return w.Source + ": " + w.Msg
}

// line returns the line number at the end of Source, or 0.
func (w Warning) line() int {
	i := strings.LastIndexByte(w.Source, ':')
	n, err := strconv.Atoi(w.Source[i+1:])
	if err != nil {
		return 0
	}
	return n
}

// Known tls_policy attributes (postconf(5) smtp_tls_policy_maps).
const (
	attrMatch           = "match"            // multiple instances, concatenated
	attrProtocols       = "protocols"        // one instance
	attrCiphers         = "ciphers"          // one instance
	attrExclude         = "exclude"          // one instance
	attrTAFile          = "tafile"           // multiple instances (verify, secure)
	attrServername      = "servername"       // one instance (Postfix 3.4)
	attrConnectionReuse = "connection_reuse" // yes|no, last wins (Postfix 3.4)
	attrEnableRPK       = "enable_rpk"       // yes|no, last wins (Postfix 3.9)
)

// invalidInPostfix is appended to warnings about input that postmap(1) accepts
// but that makes Postfix's SMTP client treat the whole policy as invalid and
// defer mail for the destination ("4.7.5 client TLS configuration problem").
const invalidInPostfix = " (Postfix treats this policy as invalid and defers mail)"

// ParseFile reads a Postfix tls_policy source file, the text postmap(1) reads,
// named name in messages. It returns the entries in file order; a duplicate key
// is returned twice (Table.Add keeps the first).
//
// Lines follow postmap(1) "INPUT FILE FORMAT":
//   - a logical line starts with non-whitespace text; a line that starts with
//     whitespace continues the previous logical line, so attributes may go on
//     indented lines below the key;
//   - empty and whitespace-only lines are ignored, as are lines whose first
//     non-whitespace character is '#' (also between a line and its
//     continuation); a '#' elsewhere is ordinary text, not a comment;
//   - the key is the first whitespace-delimited token, the value is the rest.
//     Keys are folded to lower case, as postmap does, and normalized like
//     NormalizeDomain (IDN labels become A-labels);
//   - CRLF line endings are accepted.
//
// A continuation line with no logical line to continue is ignored with a
// Warning (Postfix: "logical line must not start with whitespace").
//
// The value is a policy: "LEVEL [name=value ...]" (postconf(5)
// smtp_tls_policy_maps; TLS_README "TLS policy table"), where, as in Postfix,
// whitespace or commas separate the level and the attributes. For the
// fingerprint level, match= values are split on '|' (each fingerprint kept as
// written, "AA:BB:..."); for verify and secure they are split on ':'.
// Several match= attributes are concatenated. Attribute names are
// case-insensitive and stored in lower case; values are kept verbatim.
//
// Warnings, not errors: "[host]", "[host]:port" and "host:port" keys (they
// never match a recipient domain; the entry is skipped), keys that are not
// domains (skipped), unknown attributes (kept in Attrs), and attribute
// misuse that makes Postfix treat a policy as invalid at delivery time (match=
// at a level without names, a repeated single-instance attribute, empty
// values, attributes at level none, malformed fingerprints).
//
// Errors wrap ErrSyntax and start with "name:line": a missing or unknown
// level (also wrapping ErrUnknownLevel), an attribute without '=' or without a
// name, a logical line longer than 64 KiB, a file larger than 16 MiB. A read
// error from r is returned wrapped. On error no entries are returned.
func ParseFile(r io.Reader, name string) ([]Entry, []Warning, error) {
	p, err := parseFile(r, name)
	if err != nil {
		return nil, nil, err
	}
	return p.entries, p.warnings, nil
}

// parseFile is ParseFile, also returning the next-hop entries (for the socketmap).
func parseFile(r io.Reader, name string) (*fileParser, error) {
	p := &fileParser{
		name: name,
		lr:   newLineReader(r),
	}
	if err := p.run(); err != nil {
		return nil, err
	}
	return p, nil
}

// fileParser holds the state of one ParseFile call.
type fileParser struct {
	name     string
	lr       *lineReader
	entries  []Entry
	nextHops []Entry // keyed by NormalizeNextHop
	warnings []Warning
}

func (p *fileParser) src(line int) string { return p.name + ":" + strconv.Itoa(line) }

func (p *fileParser) warn(line int, format string, args ...any) {
	p.warnings = append(p.warnings, Warning{Source: p.src(line), Msg: fmt.Sprintf(format, args...)})
}

func (p *fileParser) syntaxError(line int, format string, args ...any) error {
	return fmt.Errorf("%s: %w: %s", p.src(line), ErrSyntax, fmt.Sprintf(format, args...))
}

// run splits the input into logical lines as Postfix readlline(3) does and
// parses each one.
func (p *fileParser) run() error {
	var (
		cur      []byte // the logical line being assembled
		curLine  int    // its first physical line
		started  bool   // cur holds a logical line
		skipping bool   // inside a continuation without a logical line
	)
	for {
		line, err := p.lr.next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return p.readError(err)
		}
		switch {
		case isBlankOrComment(line):
			// Ignored, and does not end the logical line (readlline).
		case isSpace(line[0]):
			if !started {
				if !skipping {
					p.warn(p.lr.lineno, "logical line must not start with whitespace; ignored up to the next unindented line")
					skipping = true
				}
				continue
			}
			if len(cur)+len(line) > maxLogicalLine {
				return p.syntaxError(curLine, "logical line longer than %d bytes", maxLogicalLine)
			}
			cur = append(cur, line...)
		default:
			if started {
				if err := p.parseLine(string(cur), curLine); err != nil {
					return err
				}
			}
			cur = append(cur[:0], line...)
			curLine = p.lr.lineno
			started, skipping = true, false
		}
	}
	if started {
		return p.parseLine(string(cur), curLine)
	}
	return nil
}

func (p *fileParser) readError(err error) error {
	switch {
	case errors.Is(err, errLineTooLong):
		return p.syntaxError(p.lr.lineno+1, "logical line longer than %d bytes", maxLogicalLine)
	case errors.Is(err, errFileTooLarge):
		return fmt.Errorf("%s: %w: file larger than %d bytes", p.name, ErrSyntax, maxFileSize)
	default:
		return fmt.Errorf("%s:%d: policy: read: %w", p.name, p.lr.lineno+1, err)
	}
}

// parseLine parses one logical line "key value" that starts on physical line
// lineno.
func (p *fileParser) parseLine(text string, lineno int) error {
	text = strings.TrimFunc(text, isSpaceRune)
	i := strings.IndexFunc(text, isSpaceRune)
	if i < 0 {
		return p.syntaxError(lineno, "key %q: missing TLS level (expected \"key level [name=value ...]\")", text)
	}
	key := strings.ToLower(text[:i])
	pol, warns, err := parsePolicy(text[i:])
	if err != nil {
		return fmt.Errorf("%s: %w: key %q: %w", p.src(lineno), ErrSyntax, key, err)
	}
	pol.Raw = strings.TrimFunc(text[i:], isSpaceRune)
	k, err := NormalizeDomainKey(key)
	switch {
	case errors.Is(err, ErrNextHopKey):
		// Not a recipient domain: the milter never looks it up, but Postfix does
		// for an explicit next hop, and the socketmap answers it (LookupNextHop).
		if hop, ok := NormalizeNextHop(key); ok {
			pol.Source, pol.Key = p.src(lineno), hop
			p.nextHops = append(p.nextHops, Entry{Key: hop, Policy: pol})
		}
		return nil
	case err != nil:
		p.warn(lineno, "%v; entry skipped", err)
		return nil
	}
	for _, w := range warns {
		p.warn(lineno, "key %q: %s", key, w)
	}
	pol.Source = p.src(lineno)
	pol.Key = k
	p.entries = append(p.entries, Entry{Key: k, Policy: pol})
	return nil
}

// Problems in a policy value; parseLine adds the file position and ErrSyntax.
var (
	errMissingLevel = errors.New("missing TLS level")
	errAttrSyntax   = errors.New("malformed attribute")
)

// parsePolicy parses a tls_policy value "LEVEL [name=value ...]" the way
// Postfix's SMTP client does (smtp_tls_policy.c, tls_policy_lookup_one): the
// tokens are separated by whitespace or commas, the first is the level, the
// others are name=value attributes split at the first '='. It returns the
// policy, warnings for what Postfix would reject at delivery time, and an error
// for a missing or unknown level or a token that is not name=value.
func parsePolicy(value string) (Policy, []string, error) {
	tokens := strings.FieldsFunc(value, isPolicySep)
	if len(tokens) == 0 {
		return Policy{}, nil, errMissingLevel
	}
	level, err := ParseLevel(tokens[0])
	if err != nil {
		return Policy{}, nil, err
	}
	if !level.Postfix() {
		// The file is shared with Postfix, whose smtp_tls_policy_maps lookup
		// would fail on a level it does not know.
		return Policy{}, nil, fmt.Errorf("%w %q: a tlsgate level, not a Postfix one; set it in tlsgate's configuration (policies, customers), not in a tls_policy file", ErrUnknownLevel, tokens[0])
	}
	pol := Policy{Level: level}
	var warns []string
	warnf := func(format string, args ...any) { warns = append(warns, fmt.Sprintf(format, args...)) }
	for _, tok := range tokens[1:] {
		name, val, ok := strings.Cut(tok, "=")
		if !ok {
			return Policy{}, nil, fmt.Errorf("%w %q: missing '=' (attributes are name=value, separated by whitespace or commas)", errAttrSyntax, tok)
		}
		if name == "" {
			return Policy{}, nil, fmt.Errorf("%w %q: missing attribute name", errAttrSyntax, tok)
		}
		name = strings.ToLower(name)
		if level == LevelNone {
			// Postfix: "ignoring attribute ... with TLS disabled".
			warnf("attribute %q ignored at level none", tok)
			continue
		}
		switch name {
		case attrMatch:
			addMatch(&pol, val, warnf)
		case attrProtocols, attrCiphers, attrExclude, attrServername:
			if _, dup := pol.Attrs[name]; dup {
				warnf("attribute %q specified more than once; first kept%s", name, invalidInPostfix)
				continue
			}
			if val == "" && name != attrProtocols && name != attrExclude {
				warnf("attribute %q has empty value%s", name, invalidInPostfix)
			}
			if name == attrServername && val != "" && !validHostname(val) {
				// smtp_tls_policy.c: "servername=... specifies an invalid hostname".
				warnf("attribute \"%s=%.100s\" specifies an invalid hostname%s", name, val, invalidInPostfix)
			}
			if name == attrProtocols {
				// tls_client.c: "Invalid TLS protocol list ...: aborting TLS session".
				if _, err := parseProtocols(val); err != nil {
					warnf("attribute %q: %v%s", name, err, invalidInPostfix)
				}
			}
			setAttr(&pol, name, val)
		case attrTAFile:
			if level != LevelVerify && level != LevelSecure {
				warnf("attribute %q invalid at level %s%s", name, level, invalidInPostfix)
			}
			if val == "" {
				warnf("attribute %q has empty value%s", name, invalidInPostfix)
				continue
			}
			if old, ok := pol.Attrs[name]; ok {
				// Values never contain whitespace: a space joins them unambiguously.
				val = old + " " + val
			}
			setAttr(&pol, name, val)
		case attrConnectionReuse, attrEnableRPK:
			if !strings.EqualFold(val, "yes") && !strings.EqualFold(val, "no") {
				warnf("attribute %q has value %q, want yes or no%s", name, val, invalidInPostfix)
			}
			setAttr(&pol, name, val) // last one wins, as in Postfix
		default:
			warnf("unknown attribute %q kept%s", name, invalidInPostfix)
			setAttr(&pol, name, val)
		}
	}
	if level == LevelFingerprint && len(pol.Match) == 0 {
		// smtp_tls_policy.c: "configured at fingerprint security level, but with no
		// fingerprints to match" (unless smtp_tls_fingerprint_cert_match is set).
		warnf("level fingerprint without match= fingerprints%s", invalidInPostfix)
	}
	for _, w := range warns {
		if reason, ok := strings.CutSuffix(w, invalidInPostfix); ok {
			pol.Invalid = reason
			break
		}
	}
	return pol, warns, nil
}

// addMatch appends the names or fingerprints of one match= attribute.
func addMatch(pol *Policy, val string, warnf func(string, ...any)) {
	if val == "" {
		warnf("attribute %q has empty value%s", attrMatch, invalidInPostfix)
		return
	}
	switch pol.Level {
	case LevelFingerprint:
		for fp := range strings.SplitSeq(val, "|") {
			if fp == "" {
				continue
			}
			if b, ok := fingerprint.Parse(fp); !ok {
				warnf("malformed fingerprint %q (want hex bytes, optionally separated by ':'); Postfix ignores it", fp)
			} else if n := len(b); n != sha256Size {
				// postconf(5) smtp_tls_fingerprint_digest: sha256 since Postfix 3.6
				// (compatibility_level 3.6); Postfix compares the digest it computes
				// with the pin as a string, so a pin of another length never matches.
				warnf("fingerprint %q is %d bytes, %s; Postfix compares SHA-256 digests (smtp_tls_fingerprint_digest = sha256), so it never matches", fp, n, digestName(n))
			}
			pol.Match = append(pol.Match, fp)
		}
	case LevelVerify, LevelSecure:
		for name := range strings.SplitSeq(val, ":") {
			if name != "" {
				pol.Match = append(pol.Match, name)
			}
		}
	default:
		warnf("attribute %q invalid at level %s; ignored%s", attrMatch, pol.Level, invalidInPostfix)
	}
}

// sha256Size is the length of the digest Postfix pins with (smtp_tls_fingerprint_digest).
const sha256Size = 32

// digestName names a digest by its length, for the warning about a pin in a digest
// Postfix does not use.
func digestName(n int) string {
	switch n {
	case 16:
		return "an MD5 digest"
	case 20:
		return "a SHA-1 digest"
	case 48:
		return "a SHA-384 digest"
	case 64:
		return "a SHA-512 digest"
	}
	return "no digest Postfix computes"
}

func setAttr(pol *Policy, name, val string) {
	if pol.Attrs == nil {
		pol.Attrs = make(map[string]string)
	}
	pol.Attrs[name] = val
}

// validHostname is Postfix's valid_hostname (util/valid_hostname.c), which checks a
// servername= value: ASCII letters, digits, '_' and '-' in labels of at most 63
// characters, no empty label, no hyphen at a label's ends, not all digits, at most
// 255 characters. "hostname" and "nexthop" are valid hostnames too.
func validHostname(s string) bool {
	if s == "" || len(s) > 255 {
		return false
	}
	labelLen, nonNumeric := 0, false
	for i := 0; i < len(s); i++ {
		c := s[i]
		last := i+1 == len(s)
		switch {
		case c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '_':
			nonNumeric = true
			fallthrough
		case c >= '0' && c <= '9':
			labelLen++
			if labelLen > 63 {
				return false
			}
		case c == '.':
			if labelLen == 0 || last {
				return false
			}
			labelLen = 0
		case c == '-':
			nonNumeric = true
			labelLen++
			if labelLen == 1 || last || s[i+1] == '.' {
				return false
			}
		default:
			return false
		}
	}
	return nonNumeric
}

// isSpace is C isspace() in the "C" locale, Postfix's ISSPACE.
func isSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r'
}

func isSpaceRune(r rune) bool { return r < 0x80 && isSpace(byte(r)) }

// isPolicySep separates tokens of a policy value: Postfix splits on
// "\t\n\r ," (CHARS_COMMA_SP); \v and \f are included as they are whitespace
// for readlline.
func isPolicySep(r rune) bool { return r == ',' || isSpaceRune(r) }

func isBlankOrComment(line []byte) bool {
	i := 0
	for i < len(line) && isSpace(line[i]) {
		i++
	}
	return i == len(line) || line[i] == '#'
}

var (
	errLineTooLong  = errors.New("line too long")
	errFileTooLarge = errors.New("file too large")
)

// lineReader returns physical lines without their line ending, counting
// lines and bounding line length and total size.
type lineReader struct {
	br     *bufio.Reader
	read   int64 // bytes consumed
	lineno int   // physical lines returned so far
	buf    []byte
}

func newLineReader(r io.Reader) *lineReader {
	// Read at most one byte past the limit: enough to know it was exceeded.
	return &lineReader{br: bufio.NewReader(io.LimitReader(r, maxFileSize+1))}
}

// next returns the next physical line with "\n" or "\r\n" removed. The result
// is valid until the next call. It returns io.EOF at the end of input,
// errLineTooLong for a line over maxLogicalLine bytes and errFileTooLarge past
// maxFileSize bytes.
func (lr *lineReader) next() ([]byte, error) {
	lr.buf = lr.buf[:0]
	for {
		chunk, err := lr.br.ReadSlice('\n')
		lr.read += int64(len(chunk))
		if lr.read > maxFileSize {
			return nil, errFileTooLarge
		}
		lr.buf = append(lr.buf, chunk...)
		// Allow for the "\r\n" that is stripped below.
		if len(lr.buf) > maxLogicalLine+2 {
			return nil, errLineTooLong
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		if errors.Is(err, io.EOF) && len(lr.buf) == 0 {
			return nil, io.EOF
		}
		if err != nil && !errors.Is(err, io.EOF) {
			return nil, err
		}
		break
	}
	if lr.lineno == 0 {
		lr.buf = bytes.TrimPrefix(lr.buf, []byte("\uFEFF")) // UTF-8 byte order mark
	}
	line := bytes.TrimSuffix(lr.buf, []byte("\n"))
	line = bytes.TrimSuffix(line, []byte("\r"))
	if len(line) > maxLogicalLine {
		return nil, errLineTooLong
	}
	lr.lineno++
	return line, nil
}
