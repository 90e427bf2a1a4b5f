// Package tlsrpt names the result types of SMTP TLS Reporting (RFC 8460 §4.3, the IANA
// registry "STARTTLS Validation Result Types"): the one spelling of why a TLS session
// to a mail server failed or would fail, for verify's verdicts (verify.Reason) and for
// the MTA-STS client's failures (mtasts.Result.Problem).
package tlsrpt

// ResultType is an RFC 8460 result type.
type ResultType string

// Negotiation failures (RFC 8460 §4.3).
const (
	STARTTLSNotSupported    ResultType = "starttls-not-supported"
	CertificateHostMismatch ResultType = "certificate-host-mismatch"
	CertificateExpired      ResultType = "certificate-expired"
	CertificateNotTrusted   ResultType = "certificate-not-trusted" // unknown CA, name constraints, chain errors
	ValidationFailure       ResultType = "validation-failure"      // a failure matching none of the above
)

// DANE policy failures (RFC 8460 §4.3).
const (
	TLSAInvalid   ResultType = "tlsa-invalid"   // no record of the TLSA RRset is valid
	DNSSECInvalid ResultType = "dnssec-invalid" // no valid records from the resolver
)

// MTA-STS policy failures (RFC 8460 §4.3).
const (
	STSPolicyFetchError ResultType = "sts-policy-fetch-error"
	STSPolicyInvalid    ResultType = "sts-policy-invalid"
	STSWebPKIInvalid    ResultType = "sts-webpki-invalid" // the policy host's certificate failed PKIX
)
