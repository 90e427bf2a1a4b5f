package verify

import (
	"bytes"
	"crypto/x509"
	"time"

	"github.com/tlsgate/tlsgate/internal/certname"
	"github.com/tlsgate/tlsgate/policy"
)

// trustAnchors are the trust anchors of a tls_policy entry's tafile= attributes
// (postconf(5) smtp_tls_trust_anchor_file): certificates and public keys. With them,
// at verify and secure, "the root CAs in CAfile and CApath are no longer trusted";
// the server's chain must end at one of them. They "need not be (self-signed) root
// CAs ... may be intermediate certificates" and may be the server's own certificate:
// Postfix loads each certificate as a DANE-TA(2) and a DANE-EE(3) "full" TLSA record,
// each public key likewise (tls_dane.c tls_dane_load_trustfile), and, unlike a DANE
// session, checks names for a DANE-EE match too (no DANE_FLAG_NO_DANE_EE_NAMECHECKS at
// verify/secure; tls_client.c tls_auth_enable).
type trustAnchors struct{ *policy.TrustAnchors }

// loadTrustAnchors reads the files of a tafile= value (policy.LoadTrustAnchors).
func loadTrustAnchors(files string) (*trustAnchors, error) {
	ta, err := policy.LoadTrustAnchors(files)
	if err != nil {
		return nil, err
	}
	return &trustAnchors{ta}, nil
}

// TAResult is the check of an attempt's chain against a policy's trust anchors, done
// at probe time while the chain was at hand (cached facts drop it).
type TAResult struct {
	Done   bool   `json:"done"`
	Reason Reason `json:"reason,omitempty"` // "" when the chain ends at a trust anchor
	Error  string `json:"error,omitempty"`
}

// Verify checks chain (leaf first) against the trust anchors as OpenSSL's DANE code
// does for Postfix with these synthetic TLSA records; the server's names are checked
// by Judge from the leaf summary. Order:
//
//   - the leaf itself is an anchor (certificate, or its public key): DANE-EE, no date
//     or chain checks;
//   - a certificate anchor, whether the server presented it or not, or a certificate in
//     the chain whose public key is an anchor, is where the chain may end (DANE-TA):
//     the chain to it is verified with dates (OpenSSL 3 checks the anchor's dates too)
//     and name constraints, as for a CA;
//   - a public-key anchor that signed the top of a partial chain (OpenSSL's
//     "bare_ta_signed"): the chain up to that certificate is verified.
func (ta *trustAnchors) Verify(chain []*x509.Certificate, now time.Time) TAResult {
	if len(chain) == 0 {
		return TAResult{Done: true, Reason: ReasonHandshakeFailure, Error: "no certificate presented"}
	}
	leaf := chain[0]
	for _, c := range ta.Certs {
		if bytes.Equal(c.Raw, leaf.Raw) {
			return TAResult{Done: true}
		}
	}
	for _, k := range ta.Keys {
		if bytes.Equal(k, leaf.RawSubjectPublicKeyInfo) {
			return TAResult{Done: true}
		}
	}
	var firstErr error
	try := func(roots []*x509.Certificate, inter []*x509.Certificate) bool {
		rp, ip := x509.NewCertPool(), x509.NewCertPool()
		for _, c := range roots {
			rp.AddCert(c)
		}
		for _, c := range inter {
			ip.AddCert(c)
		}
		chains, err := leaf.Verify(x509.VerifyOptions{Roots: rp, Intermediates: ip, CurrentTime: now,
			KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
		if err == nil {
			err = certname.CheckNameConstraints(chains)
		}
		if err != nil && firstErr == nil {
			firstErr = err
		}
		return err == nil
	}
	// Certificate anchors and chain certificates whose key is an anchor.
	roots := append([]*x509.Certificate(nil), ta.Certs...)
	for _, c := range chain[1:] {
		for _, k := range ta.Keys {
			if bytes.Equal(k, c.RawSubjectPublicKeyInfo) {
				roots = append(roots, c)
			}
		}
	}
	if len(roots) > 0 && try(roots, chain[1:]) {
		return TAResult{Done: true}
	}
	// Bare public keys that signed a certificate of the chain.
	for i, c := range chain {
		for _, k := range ta.PublicKeys {
			signer := &x509.Certificate{PublicKey: k}
			if signer.CheckSignature(c.SignatureAlgorithm, c.RawTBSCertificate, c.Signature) != nil {
				continue
			}
			if i == 0 {
				// The leaf signed by an anchor key: only its dates remain.
				if now.Before(leaf.NotBefore) || now.After(leaf.NotAfter) {
					return TAResult{Done: true, Reason: ReasonCertExpired, Error: "certificate expired or not yet valid"}
				}
				return TAResult{Done: true}
			}
			if try([]*x509.Certificate{c}, chain[1:i]) {
				return TAResult{Done: true}
			}
		}
	}
	if firstErr == nil {
		return TAResult{Done: true, Reason: ReasonCertNotTrusted, Error: "the chain ends at none of the tafile= trust anchors"}
	}
	reason, msg := pkixReason(firstErr)
	if reason == ReasonCertNotTrusted {
		msg = "the chain ends at none of the tafile= trust anchors: " + firstErr.Error()
	}
	return TAResult{Done: true, Reason: reason, Error: msg}
}
