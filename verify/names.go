package verify

import (
	"crypto/x509"

	"github.com/tlsgate/tlsgate/internal/certname"
)

// certNames returns the DNS names a certificate is valid for, as OpenSSL's
// X509_check_host (which Postfix uses) sees them: the DNS subjectAltNames, or every
// subject CommonName when the certificate has no DNS subjectAltName at all.
func certNames(c *x509.Certificate) []string {
	return certname.Names(c)
}

// matchName reports whether certificate name cn satisfies the reference identifier
// ref, exactly as OpenSSL X509_check_host with Postfix's flags
// (X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS); see certname.Match.
func matchName(cn, ref string) bool {
	return certname.Match(cn, ref)
}
