package policy

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"unicode/utf8"

	"golang.org/x/net/idna"
)

// ErrBadDomain is returned (wrapped, quoting the input) for a string that is not
// a usable domain name.
var ErrBadDomain = errors.New("policy: invalid domain")

// ErrNextHopKey is returned (wrapped) by Table.Add for a Postfix next-hop key:
// "[host]", "[host]:port" or "host:port". Postfix looks such keys up only for
// explicit next hops from transport(5) or relayhost, never for the domain part
// of a recipient address (postconf(5) smtp_tls_policy_maps), so a recipient
// domain can never match them.
var ErrNextHopKey = errors.New("policy: next-hop key never matches a recipient domain")

const (
	maxDomainLen = 253 // RFC 1035 section 2.3.4, without the trailing dot
	maxLabelLen  = 63  // RFC 1035 section 2.3.4
	// maxDomainInput bounds the work done on hostile input before IDNA
	// processing: no name whose A-label form fits in 253 octets needs more.
	maxDomainInput = 1024
)

// idnaProfile converts U-labels to A-labels the way a resolver would (UTS #46
// lookup mapping, non-transitional, Bidi rule, RFC 5891 section 5). Two
// deviations from idna.Lookup keep real-world names usable: '_' is allowed
// (StrictDomainName(false); some operators have it in labels) and hyphens in
// positions 3 and 4 are allowed (CheckHyphens(false); "r3---sn-x.example" is
// a common ASCII name). The result is validated as LDH (plus '_') afterwards.
//
// The profile is immutable; it is a package variable only to build it once.
var idnaProfile = idna.New(
	idna.MapForLookup(),
	idna.BidiRule(),
	idna.Transitional(false),
	idna.StrictDomainName(false),
	idna.CheckHyphens(false),
)

// NormalizeDomain returns the canonical form of a domain name as tlsgate
// compares it: surrounding space trimmed, one trailing dot (the DNS root)
// removed, lower case, internationalized labels (U-labels) converted to
// A-labels ("bücher.example" -> "xn--bcher-kva.example"), and validated: every
// label 1 to 63 octets of letters, digits, '-' and '_' with no '-' at either
// end, the whole name at most 253 octets.
//
// Postfix compares table keys case-insensitively (postmap(1) folds keys to lower
// case) and a recipient domain may arrive in either IDN form when SMTPUTF8 is in
// use; normalizing both sides to A-labels makes them match.
//
// A leading '.' is not allowed: ".example.com" is a table key form, not a
// domain. Address literals ("[192.0.2.1]") and bare IP addresses are not
// domains either. Every error wraps ErrBadDomain and quotes the input.
func NormalizeDomain(d string) (string, error) {
	a, why := normalize(d)
	if why != "" {
		return "", fmt.Errorf("%w %q: %s", ErrBadDomain, d, why)
	}
	return a, nil
}

// normalize implements NormalizeDomain; it returns why d is invalid instead of
// an error so that callers can quote their own input.
func normalize(d string) (ascii, why string) {
	s := strings.TrimSpace(d)
	s = strings.TrimSuffix(s, ".")
	switch {
	case s == "":
		return "", "empty"
	case len(s) > maxDomainInput:
		return "", "too long"
	case s[0] == '[':
		return "", "address literal, not a domain"
	case s[0] == '.':
		return "", "leading dot"
	case !utf8.ValidString(s):
		// idna would map invalid bytes to U+FFFD and accept the result.
		return "", "invalid UTF-8"
	}
	if a, ok := asciiLDH(s); ok {
		// Fast path: plain ASCII LDH without A-labels, the common case. idna's lookup
		// mapping of such a name is lower-casing, and its checks pass (CheckHyphens is
		// off, '_' is allowed); checkLDH below still applies.
		s = a
		if why := checkLDH(s); why != "" {
			return "", why
		}
		if strings.Trim(s, "0123456789.") == "" { // only then can it be an IPv4 address
			if _, err := netip.ParseAddr(s); err == nil {
				return "", "IP address, not a domain"
			}
		}
		return s, ""
	}
	return normalizeIDNA(s)
}

// normalizeIDNA is normalize's general path: UTS #46 mapping and checks.
func normalizeIDNA(s string) (ascii, why string) {
	a, err := idnaProfile.ToASCII(s)
	if err != nil {
		return "", err.Error()
	}
	if !isASCII(s) {
		// Checks run on the A-labels read back, as for a key written in
		// ASCII, so both forms of a name are accepted or rejected alike.
		// (idna checks the Bidi rule on the input, before mapping: "ℶ" maps
		// to Hebrew "ב" and escapes it.)
		if a2, err := idnaProfile.ToASCII(a); err != nil || a2 != a {
			return "", fmt.Sprintf("%q is not a valid A-label form", a)
		}
	}
	if why := checkLDH(a); why != "" {
		return "", why
	}
	if _, err := netip.ParseAddr(a); err == nil {
		return "", "IP address, not a domain"
	}
	return a, ""
}

// checkLDH validates an ASCII domain name after IDNA conversion and returns
// why it is invalid, or "" if it is valid.
func checkLDH(s string) string {
	if len(s) > maxDomainLen {
		return fmt.Sprintf("longer than %d octets", maxDomainLen)
	}
	for label := range strings.SplitSeq(s, ".") {
		switch {
		case label == "":
			return "empty label"
		case len(label) > maxLabelLen:
			return fmt.Sprintf("label longer than %d octets", maxLabelLen)
		case label[0] == '-' || label[len(label)-1] == '-':
			return fmt.Sprintf("label %q starts or ends with '-'", label)
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
				return fmt.Sprintf("invalid character %q", c)
			}
		}
	}
	return ""
}

// NormalizeKey returns the canonical form of a key of a TLS policy table, as
// tlsgate compares them: a domain ("example.com", exact match) or a domain with a
// leading dot (".example.com", every subdomain) normalized like NormalizeDomain, or a
// Postfix next-hop key normalized like NormalizeNextHop. The error wraps ErrBadDomain
// or ErrNextHopKey (a malformed next-hop key).
func NormalizeKey(key string) (string, error) {
	if k, ok := NormalizeNextHop(key); ok {
		return k, nil
	}
	return NormalizeDomainKey(key)
}

// NormalizeDomainKey is NormalizeKey for keys that may match a recipient domain
// (or a sender domain, or a certificate name): it returns ErrNextHopKey (wrapped) for
// a Postfix next-hop key.
func NormalizeDomainKey(key string) (string, error) {
	k := strings.TrimSpace(key)
	if isNextHopKey(k) {
		return "", fmt.Errorf("%w: %q", ErrNextHopKey, key)
	}
	parent := strings.HasPrefix(k, ".")
	if parent {
		k = k[1:]
	}
	d, why := normalize(k)
	if why != "" {
		return "", fmt.Errorf("%w %q: %s", ErrBadDomain, key, why)
	}
	if parent {
		return "." + d, nil
	}
	return d, nil
}

// NormalizeNextHop returns the canonical form of a Postfix next-hop key
// ("[host]", "[host]:port", "host:port"), as tlsgate compares them: lower case
// (Postfix folds table keys, DICT_FLAG_FOLD_FIX), and a host name inside
// converted to A-labels like NormalizeDomain; an address literal stays as it is.
// ok is false when key has none of the three forms.
func NormalizeNextHop(key string) (string, bool) {
	k := strings.ToLower(strings.TrimSpace(key))
	if len(k) > maxDomainInput || !isNextHopKey(k) {
		return "", false
	}
	var host, rest string
	bracket := strings.HasPrefix(k, "[")
	if bracket {
		host, rest, _ = strings.Cut(k[1:], "]")
	} else {
		i := strings.LastIndexByte(k, ':')
		host, rest = k[:i], k[i:]
	}
	if _, err := netip.ParseAddr(strings.TrimPrefix(host, "ipv6:")); err != nil {
		if d, why := normalize(host); why == "" {
			host = d
		}
	}
	if bracket {
		return "[" + host + "]" + rest, true
	}
	return host + rest, true
}

// isNextHopKey reports whether k has the form "[host]", "[host]:port" or
// "host:port", the Postfix next-hop forms (postconf(5) smtp_tls_policy_maps).
func isNextHopKey(k string) bool {
	if rest, ok := strings.CutPrefix(k, "["); ok {
		host, after, ok := strings.Cut(rest, "]")
		if !ok || host == "" {
			return false
		}
		if after == "" {
			return true
		}
		port, ok := strings.CutPrefix(after, ":")
		return ok && validPort(port)
	}
	host, port, ok := strings.Cut(k, ":")
	return ok && host != "" && validPort(port)
}

// validPort reports whether p looks like a port number or service name, as
// Postfix accepts after a next-hop ("587", "submission").
func validPort(p string) bool {
	if p == "" {
		return false
	}
	for i := 0; i < len(p); i++ {
		c := p[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

// asciiLDH returns s lower-cased when it is made of ASCII letters, digits, '-', '_' and
// '.' only and has no label starting with "xn--" (A-labels need idna's checks).
func asciiLDH(s string) (string, bool) {
	upper := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', '0' <= c && c <= '9', c == '-', c == '_', c == '.':
		case 'A' <= c && c <= 'Z':
			upper = true
		default:
			return "", false
		}
		if (i == 0 || s[i-1] == '.') && len(s)-i >= 4 && (c == 'x' || c == 'X') && strings.EqualFold(s[i:i+4], "xn--") {
			return "", false
		}
	}
	if upper {
		s = strings.ToLower(s)
	}
	return s, true
}
