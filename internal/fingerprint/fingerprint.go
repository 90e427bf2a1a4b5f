// Package fingerprint is the one place that writes and reads certificate and public-key
// fingerprints in Postfix's notation: hex bytes separated by ':' (postconf(5)
// smtp_tls_fingerprint_digest; the match= attribute of the fingerprint level in
// smtp_tls_policy_maps).
package fingerprint

import "crypto/sha256"

// Of returns the SHA-256 digest of der (a certificate or a SubjectPublicKeyInfo) as
// Format prints it. SHA-256 is Postfix's smtp_tls_fingerprint_digest since 3.6.
func Of(der []byte) string {
	sum := sha256.Sum256(der)
	return Format(sum[:])
}

// Format prints b as upper-case hex pairs separated by ':' ("AB:CD:..."), the form
// Postfix logs and its documentation shows.
func Format(b []byte) string {
	const hexdig = "0123456789ABCDEF"
	out := make([]byte, 0, len(b)*3)
	for i, c := range b {
		if i > 0 {
			out = append(out, ':')
		}
		out = append(out, hexdig[c>>4], hexdig[c&15])
	}
	return string(out)
}

// Parse decodes a fingerprint as written in match=: hex digits of either case, the
// ':' separators optional (every ':' is skipped). ok is false for an odd number of
// digits, any other character, and for no digits at all.
func Parse(s string) (b []byte, ok bool) {
	out := make([]byte, 0, len(s)/2)
	var hi byte
	odd := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		var v byte
		switch {
		case c == ':':
			continue
		case '0' <= c && c <= '9':
			v = c - '0'
		case 'a' <= c && c <= 'f':
			v = c - 'a' + 10
		case 'A' <= c && c <= 'F':
			v = c - 'A' + 10
		default:
			return nil, false
		}
		if odd {
			out = append(out, hi<<4|v)
		}
		hi, odd = v, !odd
	}
	if odd || len(out) == 0 {
		return nil, false
	}
	return out, true
}
