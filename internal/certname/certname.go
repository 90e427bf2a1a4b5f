// Package certname checks a server certificate's names the way Postfix's SMTP client
// does, which is OpenSSL's: Postfix (tls_client.c add_namechecks) hands the reference
// identifiers to SSL_add1_host with X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS, and OpenSSL
// matches them with X509_check_host (crypto/x509/v3_utl.c) during chain verification,
// where it also applies the DNS name constraints of every CA in the chain to the
// subject CN of a leaf that has no DNS subjectAltName (crypto/x509/x509_vfy.c
// check_name_constraints, v3_ncons.c NAME_CONSTRAINTS_check_CN).
//
// Go's crypto/x509 differs in both: VerifyHostname never looks at the CN and has its
// own wildcard and trailing-dot rules, and Verify checks name constraints against the
// subjectAltNames only (ignoring a subtree's minimum and maximum). A leaf whose only name is a CN issued by a CA constrained to
// other domains is valid to Go and refused by Postfix ("permitted subtree violation").
// Everything here is pure and works on byte strings, as OpenSSL does.
package certname

import (
	"crypto/x509"
	"encoding/asn1"
	"fmt"
	"strings"
)

var (
	oidCommonName      = asn1.ObjectIdentifier{2, 5, 4, 3}
	oidNameConstraints = asn1.ObjectIdentifier{2, 5, 29, 30}
)

// Names returns the names X509_check_host compares with a reference identifier: the
// dNSName subjectAltNames when the certificate has at least one (even one that matches
// nothing hides the subject), else every subject commonName, in order (OpenSSL
// do_x509_check). Empty names, which never match, are left out.
func Names(c *x509.Certificate) []string {
	var out []string
	if len(c.DNSNames) > 0 {
		for _, n := range c.DNSNames {
			if n != "" {
				out = append(out, n)
			}
		}
		return out
	}
	return commonNames(c)
}

// commonNames returns the values of every commonName attribute of the subject (Go's
// Subject.CommonName keeps only the last one; OpenSSL tries them all).
func commonNames(c *x509.Certificate) []string {
	var out []string
	for _, atv := range c.Subject.Names {
		if !atv.Type.Equal(oidCommonName) {
			continue
		}
		if s, ok := atv.Value.(string); ok && s != "" {
			out = append(out, s)
		}
	}
	return out
}

// MatchAny reports whether some name of c matches some reference identifier in refs
// (OpenSSL check_hosts: the first match wins).
func MatchAny(c *x509.Certificate, refs []string) bool {
	return MatchNames(Names(c), refs)
}

// MatchNames is MatchAny for names already taken from a certificate with Names.
func MatchNames(names, refs []string) bool {
	for _, n := range names {
		for _, r := range refs {
			if Match(n, r) {
				return true
			}
		}
	}
	return false
}

// Match reports whether the certificate name pattern (a DNS subjectAltName or CN)
// matches the reference identifier ref, exactly as OpenSSL's X509_check_host with
// X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS (RFC 6125 §6.4 with OpenSSL's choices):
//
//   - Bytes are compared with ASCII case folding only; nothing is trimmed, so the
//     certificate name "mx.example.com." does not match "mx.example.com". A NUL in
//     the certificate name never matches.
//   - A wildcard is a "*" that is the whole left-most label of a syntactically valid
//     name with at least two labels after it ("*.example.com", not "*.com" nor
//     "mx*.example.com"); it stands for exactly one non-empty label of letters, digits
//     and hyphens (or a literal "*"). A name with any other "*" is compared literally.
//   - A reference starting with "." (Postfix "dot-nexthop" and ".domain" match
//     entries) matches any certificate name that ends with it, at any depth; the
//     certificate name is then compared literally, so "*.example.com" matches
//     ".example.com" too.
func Match(pattern, ref string) bool {
	if pattern == "" || ref == "" || strings.IndexByte(ref, 0) >= 0 {
		return false // do_check_string: empty names; X509_check_host: NUL in the reference
	}
	dotSubdomains := len(ref) > 1 && ref[0] == '.'
	if !dotSubdomains {
		if star := validStar(pattern); star >= 0 {
			return wildcardMatch(pattern[:star], pattern[star+1:], ref)
		}
	}
	return equalNoCase(pattern, ref, dotSubdomains)
}

// equalNoCase is OpenSSL's equal_nocase with skip_prefix: with dotSubdomains (the
// reference starts with "."), a longer pattern is compared by its suffix as long as
// the reference, unless the skipped prefix holds a NUL.
func equalNoCase(pattern, subject string, dotSubdomains bool) bool {
	if dotSubdomains && len(pattern) > len(subject) {
		if skip := len(pattern) - len(subject); strings.IndexByte(pattern[:skip], 0) < 0 {
			pattern = pattern[skip:]
		}
	}
	if len(pattern) != len(subject) {
		return false
	}
	for i := 0; i < len(pattern); i++ {
		l, r := pattern[i], subject[i]
		if l == 0 {
			return false // the pattern must not contain NUL characters
		}
		if lower(l) != lower(r) {
			return false
		}
	}
	return true
}

// Label states of valid_star.
const (
	labelStart = 1 << iota
	labelHyphen
	labelIDNA
)

// validStar is OpenSSL's valid_star with X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS: the
// index of the one legal "*" of pattern, or -1 when the pattern has none and is to be
// compared literally.
func validStar(p string) int {
	star, state, dots := -1, labelStart, 0
	for i := 0; i < len(p); i++ {
		switch c := p[i]; {
		case c == '*':
			atStart := state&labelStart != 0
			atEnd := i == len(p)-1 || p[i+1] == '.'
			// At most one wildcard, not in an IDNA label, only in the first label, and
			// (no partial wildcards) the whole label.
			if star >= 0 || state&labelIDNA != 0 || dots > 0 || !atStart || !atEnd {
				return -1
			}
			star = i
			state &^= labelStart
		case isAlnum(c):
			if state&labelStart != 0 && len(p)-i >= 4 && hasPrefixFold(p[i:], "xn--") {
				state |= labelIDNA
			}
			state &^= labelHyphen | labelStart
		case c == '.':
			if state&(labelHyphen|labelStart) != 0 {
				return -1
			}
			state = labelStart
			dots++
		case c == '-':
			if state&labelStart != 0 {
				return -1 // no label starts with '-'
			}
			state |= labelHyphen
		default:
			return -1
		}
	}
	// The final label must not be empty or end in a hyphen, and there must be at
	// least two dots after the star.
	if state&(labelStart|labelHyphen) != 0 || dots < 2 {
		return -1
	}
	return star
}

// wildcardMatch is OpenSSL's wildcard_match.
func wildcardMatch(prefix, suffix, subject string) bool {
	if len(subject) < len(prefix)+len(suffix) {
		return false
	}
	if !equalNoCase(prefix, subject[:len(prefix)], false) {
		return false
	}
	start, end := len(prefix), len(subject)-len(suffix)
	if !equalNoCase(subject[end:], suffix, false) {
		return false
	}
	allowIDNA := false
	if len(prefix) == 0 && suffix != "" && suffix[0] == '.' {
		// The wildcard is the whole first label: it must match at least one character.
		if start == end {
			return false
		}
		allowIDNA = true
	}
	if !allowIDNA && hasPrefixFold(subject, "xn--") {
		return false // IDNA labels cannot match partial wildcards
	}
	if end == start+1 && subject[start] == '*' {
		return true // the wildcard may match a literal '*'
	}
	for i := start; i < end; i++ {
		if c := subject[i]; !isAlnum(c) && c != '-' {
			return false // one label of letters, digits and hyphens
		}
	}
	return true
}

// CheckNameConstraints makes the name-constraint checks OpenSSL's chain verification
// adds to Go's Verify, for each of the verified chains (leaf first, as
// x509.Certificate.Verify returns them), with the constraints of every CA certificate
// above the leaf (x509_vfy.c check_name_constraints, v3_ncons.c):
//
//   - When the leaf has no DNS subjectAltName, its subject CNs are checked against the
//     DNS subtrees ("If EE certificate check commonName too", unless
//     X509_CHECK_FLAG_NEVER_CHECK_SUBJECT, which Postfix does not set). This runs for
//     every verification, whether or not a host name is then matched. A CN is checked
//     when it looks like a DNS name of two or more labels (cn2dnsid): a wildcard
//     "*.example.com" or a one-label CN is not checked, as in OpenSSL. A CN with an
//     embedded NUL under any CA with name constraints is an error.
//   - A DNS subtree with a minimum other than 0 or with a maximum fails any DNS name
//     checked against it (nc_minmax_valid); Go ignores both fields.
//
// OpenSSL verifies the one chain it builds; Go may return several. Every chain must
// pass, so that the answer never depends on which one OpenSSL would have built.
//
// The error is an x509.CertificateInvalidError with reason CANotAuthorizedForThisName,
// the same Go gives for a subjectAltName outside the constraints.
func CheckNameConstraints(chains [][]*x509.Certificate) error {
	for _, chain := range chains {
		if len(chain) < 2 {
			continue
		}
		leaf := chain[0]
		for j := len(chain) - 1; j >= 1; j-- {
			nc, ok, err := parseDNSConstraints(chain[j])
			switch {
			case len(leaf.DNSNames) > 0:
				// has_san_id(leaf, GEN_DNS): the CN is not a name here, and Go has
				// checked the subjectAltNames, all but the minimum and maximum.
				if ok && err == nil && nc.badMinMax() {
					return invalid(leaf, "%v (name constraints of %s)", errMinMax, subjectOf(chain[j]))
				}
				continue
			case err != nil:
				return invalid(leaf, "name constraints of %s: %v", subjectOf(chain[j]), err)
			case !ok:
				continue
			}
			if err := nc.checkCN(leaf); err != nil {
				return invalid(leaf, "%v (name constraints of %s)", err, subjectOf(chain[j]))
			}
		}
	}
	return nil
}

func invalid(leaf *x509.Certificate, format string, args ...any) error {
	return x509.CertificateInvalidError{Cert: leaf, Reason: x509.CANotAuthorizedForThisName, Detail: fmt.Sprintf(format, args...)}
}

// subjectOf names a CA in an error: its CN, quoted and bounded (it is the peer's).
func subjectOf(c *x509.Certificate) string {
	return quote(c.Subject.CommonName)
}

// quote quotes certificate text for an error message: escaped, at most 64 bytes.
func quote(s string) string {
	const maxQuoted = 64
	if len(s) > maxQuoted {
		return fmt.Sprintf("%q...", s[:maxQuoted])
	}
	return fmt.Sprintf("%q", s)
}

// dnsSubtree is one GeneralSubtree whose base is a dNSName.
type dnsSubtree struct {
	base     string
	minMaxOK bool // minimum 0 and no maximum (OpenSSL nc_minmax_valid)
}

// dnsConstraints are the DNS subtrees of one CA's name constraints.
type dnsConstraints struct {
	permitted, excluded []dnsSubtree
}

// badMinMax reports whether a DNS subtree has a minimum or maximum OpenSSL refuses.
func (nc *dnsConstraints) badMinMax() bool {
	for _, list := range [][]dnsSubtree{nc.permitted, nc.excluded} {
		for _, s := range list {
			if !s.minMaxOK {
				return true
			}
		}
	}
	return false
}

// checkCN is NAME_CONSTRAINTS_check_CN: every CN that cn2dnsid takes for a DNS name
// must satisfy nc_match.
func (nc *dnsConstraints) checkCN(leaf *x509.Certificate) error {
	for _, atv := range leaf.Subject.Names {
		if !atv.Type.Equal(oidCommonName) {
			continue
		}
		s, _ := atv.Value.(string)
		id, err := cn2dnsid(s)
		if err != nil {
			return err
		}
		if id == "" {
			continue
		}
		if err := nc.match(id); err != nil {
			return fmt.Errorf("subject CN %s: %w", quote(id), err)
		}
	}
	return nil
}

// cn2dnsid returns the CN as a DNS-ID when it looks like a host name of two or more
// labels (letters, digits, '_', inner '-' and '.', no empty label, no '-' next to a
// '.'), "" when it does not; trailing NULs are dropped, an inner NUL is an error.
func cn2dnsid(cn string) (string, error) {
	cn = strings.TrimRight(cn, "\x00")
	if strings.IndexByte(cn, 0) >= 0 {
		return "", fmt.Errorf("unsupported or invalid name syntax: NUL in the subject CN")
	}
	isDNSName := false
	for i := 0; i < len(cn); i++ {
		c := cn[i]
		if isAlnum(c) || c == '_' {
			continue
		}
		if i > 0 && i < len(cn)-1 {
			if c == '-' {
				continue
			}
			if c == '.' && cn[i+1] != '.' && cn[i-1] != '-' && cn[i+1] != '-' {
				isDNSName = true
				continue
			}
		}
		isDNSName = false
		break
	}
	if !isDNSName {
		return "", nil
	}
	return cn, nil
}

// match is OpenSSL's nc_match for a dNSName: when there are permitted DNS subtrees, one
// must match; no excluded DNS subtree may match.
func (nc *dnsConstraints) match(name string) error {
	match := 0 // 0: no DNS subtree; 1: none matched yet; 2: matched
	for _, s := range nc.permitted {
		if !s.minMaxOK {
			return errMinMax
		}
		if match == 2 {
			continue
		}
		match = 1
		if ncDNS(name, s.base) {
			match = 2
		}
	}
	if match == 1 {
		return fmt.Errorf("permitted subtree violation: not within any permitted DNS subtree")
	}
	for _, s := range nc.excluded {
		if !s.minMaxOK {
			return errMinMax
		}
		if ncDNS(name, s.base) {
			return fmt.Errorf("excluded subtree violation: within the excluded DNS subtree %s", quote(s.base))
		}
	}
	return nil
}

var errMinMax = fmt.Errorf("name constraints minimum and maximum not supported")

// ncDNS is OpenSSL's nc_dns: an empty base matches everything; otherwise name equals
// base, or ends with it after a '.' (the base's own leading '.' or one in name).
// ASCII case is ignored.
func ncDNS(name, base string) bool {
	if base == "" {
		return true
	}
	if len(name) < len(base) {
		return false
	}
	if len(name) > len(base) {
		cut := len(name) - len(base)
		if base[0] != '.' && name[cut-1] != '.' {
			return false
		}
		name = name[cut:]
	}
	return equalFoldASCII(name, base)
}

// parseDNSConstraints reads the dNSName subtrees of c's name constraints extension
// (RFC 5280 §4.2.1.10). ok is false when c has no such extension. It parses the
// extension itself because Go drops the minimum and maximum fields, which OpenSSL
// refuses unless they are the defaults.
func parseDNSConstraints(c *x509.Certificate) (nc dnsConstraints, ok bool, err error) {
	for _, e := range c.Extensions {
		if !e.Id.Equal(oidNameConstraints) {
			continue
		}
		var raw struct {
			Permitted []asn1.RawValue `asn1:"optional,tag:0"`
			Excluded  []asn1.RawValue `asn1:"optional,tag:1"`
		}
		if rest, err := asn1.Unmarshal(e.Value, &raw); err != nil || len(rest) > 0 {
			return nc, true, fmt.Errorf("malformed name constraints extension")
		}
		if nc.permitted, err = dnsSubtrees(raw.Permitted); err != nil {
			return nc, true, err
		}
		if nc.excluded, err = dnsSubtrees(raw.Excluded); err != nil {
			return nc, true, err
		}
		return nc, true, nil
	}
	return nc, false, nil
}

// dnsSubtrees decodes GeneralSubtree SEQUENCEs, keeping those whose base is a dNSName
// ([2] IA5String).
func dnsSubtrees(subtrees []asn1.RawValue) ([]dnsSubtree, error) {
	var out []dnsSubtree
	for _, st := range subtrees {
		if st.Class != asn1.ClassUniversal || st.Tag != asn1.TagSequence || !st.IsCompound {
			return nil, fmt.Errorf("malformed name constraints subtree")
		}
		var base asn1.RawValue
		rest, err := asn1.Unmarshal(st.Bytes, &base)
		if err != nil {
			return nil, fmt.Errorf("malformed name constraints subtree")
		}
		if base.Class != asn1.ClassContextSpecific || base.Tag != 2 || base.IsCompound {
			continue // not a dNSName
		}
		s := dnsSubtree{base: string(base.Bytes), minMaxOK: true}
		for len(rest) > 0 {
			var f asn1.RawValue
			if rest, err = asn1.Unmarshal(rest, &f); err != nil || f.Class != asn1.ClassContextSpecific {
				return nil, fmt.Errorf("malformed name constraints subtree")
			}
			switch f.Tag {
			case 0: // minimum [0] BaseDistance DEFAULT 0: only 0 is supported
				for _, b := range f.Bytes {
					if b != 0 {
						s.minMaxOK = false
					}
				}
				if len(f.Bytes) == 0 {
					s.minMaxOK = false
				}
			default: // maximum [1] BaseDistance: never supported
				s.minMaxOK = false
			}
		}
		out = append(out, s)
	}
	return out, nil
}

func lower(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

func isAlnum(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
}

func equalFoldASCII(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		if lower(a[i]) != lower(b[i]) {
			return false
		}
	}
	return true
}

func hasPrefixFold(s, prefix string) bool {
	return len(s) >= len(prefix) && equalFoldASCII(s[:len(prefix)], prefix)
}
