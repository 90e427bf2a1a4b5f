package verify

import (
	"crypto/x509"
	"strings"
)

// certNames returns the DNS names a certificate is valid for, as OpenSSL's
// X509_check_host (which Postfix uses) sees them: the DNS subjectAltNames, or the subject
// CommonName when the certificate has no DNS subjectAltName at all.
func certNames(c *x509.Certificate) []string {
	if len(c.DNSNames) > 0 {
		return c.DNSNames
	}
	if c.Subject.CommonName != "" {
		return []string{c.Subject.CommonName}
	}
	return nil
}

// matchName reports whether certificate name cn satisfies the reference identifier ref,
// following OpenSSL X509_check_host with Postfix's flags
// (X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS):
//   - "example.com": case-insensitive equality, or a "*" left-most label in cn that stands
//     for exactly one non-empty label ("*.example.com" matches "mx.example.com", not
//     "example.com" nor "a.mx.example.com"); the wildcard needs two labels after it.
//   - ".example.com" (Postfix "dot-nexthop" and ".domain" match= entries): any name
//     strictly below example.com, at any depth; cn is compared literally, so the
//     certificate name "*.example.com" matches too.
func matchName(cn, ref string) bool {
	cn = strings.TrimSuffix(strings.ToLower(cn), ".")
	ref = strings.TrimSuffix(strings.ToLower(ref), ".")
	if cn == "" || ref == "" {
		return false
	}
	if strings.HasPrefix(ref, ".") {
		return len(cn) > len(ref) && strings.HasSuffix(cn, ref) && !strings.HasPrefix(cn, ".")
	}
	if cn == ref {
		return true
	}
	rest, ok := strings.CutPrefix(cn, "*.")
	if !ok || strings.Count(rest, ".") < 1 || strings.Contains(rest, "*") {
		return false
	}
	label, tail, ok := strings.Cut(ref, ".")
	return ok && label != "" && tail == rest
}
