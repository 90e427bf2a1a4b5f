package verify

import (
	"crypto/sha256"
	"crypto/x509"
	"slices"
	"time"

	"github.com/miekg/dns"

	"github.com/tlsgate/tlsgate/internal/dane"
	"github.com/tlsgate/tlsgate/internal/fingerprint"
	"github.com/tlsgate/tlsgate/internal/safetext"
)

// CertInfo is what judging needs of a server's leaf certificate, kept in cached facts
// instead of the parsed chain (a chain with the TLS stack's buffers behind it costs
// several KiB per domain; this costs a few hundred bytes).
type CertInfo struct {
	// Names are the reference identifiers the certificate carries as Postfix reads
	// them: the DNS subjectAltNames, or the subject CN when there is none.
	Names      []string `json:"names,omitempty"`
	SHA256     [32]byte `json:"sha256"`      // of the certificate (DER)
	SPKISHA256 [32]byte `json:"spki_sha256"` // of its SubjectPublicKeyInfo
	// What reports show of the certificate once the chain is dropped (Facts.compact):
	// remote text, bounded.
	Subject   string    `json:"subject,omitempty"`
	Issuer    string    `json:"issuer,omitempty"`
	DNSNames  []string  `json:"dns_names,omitempty"`
	NotBefore time.Time `json:"not_before,omitzero"`
	NotAfter  time.Time `json:"not_after,omitzero"`
}

// maxReportNames bounds the subjectAltNames a CertInfo keeps for reports.
const maxReportNames = 20

func summarize(c *x509.Certificate) *CertInfo {
	return &CertInfo{
		Names:      slices.Clone(certNames(c)),
		SHA256:     sha256.Sum256(c.Raw),
		SPKISHA256: sha256.Sum256(c.RawSubjectPublicKeyInfo),
		Subject:    safetext.Bound(c.Subject.String(), safetext.MaxField),
		Issuer:     safetext.Bound(c.Issuer.String(), safetext.MaxField),
		DNSNames:   boundNames(c.DNSNames),
		NotBefore:  c.NotBefore.UTC(),
		NotAfter:   c.NotAfter.UTC(),
	}
}

func boundNames(names []string) []string {
	var out []string
	for i, n := range names {
		if i == maxReportNames {
			break
		}
		out = append(out, safetext.Bound(n, safetext.MaxField))
	}
	return out
}

// DANEResult is the DANE verification of an attempt's chain against its host's usable
// TLSA records (RFC 7672 §3), done when the chain was at hand.
type DANEResult struct {
	Done  bool   `json:"done"`
	Error string `json:"error,omitempty"` // "" when the chain matched
}

// cert returns the leaf summary: the one recorded at probe time, or one made now from
// the chain (facts built by hand, or fresh from Probe).
func (a *Attempt) cert() *CertInfo {
	if a.Cert != nil {
		return a.Cert
	}
	if leaf := a.Result.Leaf(); leaf != nil {
		return summarize(leaf)
	}
	return nil
}

// daneResult verifies the chain against usable TLSA records, or returns the result
// recorded at probe time. Reference identifiers are the TLSA base domain and the
// next-hop domain (RFC 7672 §3.2.2).
func (a *Attempt) daneResult(usable []*dns.TLSA, f *Facts) DANEResult {
	if a.DANE.Done {
		return a.DANE
	}
	r := DANEResult{Done: true}
	if _, err := dane.Verify(usable, a.Result.Chain, []string{a.TLSA.Base, f.NextHopName()}, f.Checked); err != nil {
		r.Error = err.Error()
	}
	return r
}

// recordDANE verifies the chain against the host's usable TLSA records while the
// chain is at hand (Cert comes with the probe result), so that compact can drop it.
func (a *Attempt) recordDANE(f *Facts) {
	if len(a.Result.Chain) == 0 || a.TLSA.Status != TLSAFound {
		return
	}
	if usable := dane.UsableRecords(a.TLSA.Records); len(usable) > 0 {
		a.DANE = a.daneResult(usable, f)
	}
}

// recordTA checks the chain against the trust anchors of the facts' tafile= while the
// chain is at hand. taErr: the files could not be loaded.
func (a *Attempt) recordTA(anchors *trustAnchors, taErr error, now time.Time) {
	switch {
	case taErr != nil:
		a.TA = &TAResult{Done: true, Reason: ReasonPolicyInvalid, Error: taErr.Error()}
	case anchors != nil && len(a.Result.Chain) > 0:
		r := anchors.Verify(a.Result.Chain, now)
		a.TA = &r
	}
}

// compact drops the certificate chains of facts about to be cached; everything Judge
// needs of them is in Cert and DANE (recordDANE).
func (f *Facts) compact() {
	for i := range f.Attempts {
		if a := &f.Attempts[i]; a.Cert != nil {
			a.Result.Chain = nil
		}
		if s := f.Attempts[i].HostSNI; s != nil && s.Cert != nil {
			s.Result.Chain = nil
		}
	}
}

// Fingerprint is the certificate's SHA-256 digest in Postfix's notation (upper-case
// hex pairs separated by ':').
func (c *CertInfo) Fingerprint() string { return fingerprint.Format(c.SHA256[:]) }
