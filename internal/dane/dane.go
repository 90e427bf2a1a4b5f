// Package dane authenticates an SMTP server's TLS certificate with DANE TLSA records,
// as a sending MTA does for opportunistic or mandatory DANE (RFC 7672, "SMTP Security
// via Opportunistic DANE TLS", with the operational rules of RFC 7671).
//
// Only certificate usages DANE-TA(2) and DANE-EE(3) are usable for SMTP (RFC 7672
// §3.1.3): PKIX-TA(0) and PKIX-EE(1) records are unusable, as are records with an unknown
// selector or matching type, or malformed data. A TLSA RRset whose records are all
// unusable still signals that the server supports TLS: the client then requires TLS but
// authenticates nothing (RFC 7672 §2.2: "mandatory unauthenticated TLS").
//
//   - DANE-EE(3): the server's end-entity certificate (selector 0) or its public key
//     (selector 1) matches the record, in full or as SHA2-256/SHA2-512 digest. Names,
//     validity dates and the chain are ignored (RFC 7672 §3.1.1, RFC 7671 §5.1).
//   - DANE-TA(2): some certificate of the presented chain matches the record, the
//     end-entity certificate chains to it with valid dates, and carries a name that
//     matches the TLSA base domain or the next-hop domain (RFC 7672 §3.1.2, §3.2.2).
//
// Digest algorithm agility (RFC 7671 §9): for each (usage, selector) only the records
// with the strongest digest the server publishes are used, so a weak digest cannot be
// used to downgrade a strong one.
//
// Everything here is pure: no DNS, no network. The caller looks up the TLSA RRset
// (DNSSEC-validated) and performs the handshake.
package dane

import (
	"bytes"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/miekg/dns"

	"github.com/tlsgate/tlsgate/internal/certname"
)

// Certificate usages, selectors and matching types (RFC 6698 §7.2-7.4, RFC 7218 names).
const (
	UsagePKIXTA = 0
	UsagePKIXEE = 1
	UsageDANETA = 2
	UsageDANEEE = 3

	SelectorCert = 0
	SelectorSPKI = 1

	MatchFull   = 0
	MatchSHA256 = 1
	MatchSHA512 = 2
)

// Errors returned by Verify. They wrap nothing; callers use errors.Is.
var (
	ErrNoUsableRecords = errors.New("dane: no usable TLSA records")
	ErrNoMatch         = errors.New("dane: no TLSA record matches the certificate chain")
	ErrTAChain         = errors.New("dane: certificate does not chain to the DANE-TA trust anchor")
	ErrTAName          = errors.New("dane: certificate name matches neither the TLSA base domain nor the next-hop domain")
	ErrNoCertificate   = errors.New("dane: no certificate presented")
)

// Usable reports whether a TLSA record can be used for SMTP (RFC 7672 §3.1.3).
func Usable(r *dns.TLSA) bool {
	if r.Usage != UsageDANETA && r.Usage != UsageDANEEE {
		return false
	}
	if r.Selector != SelectorCert && r.Selector != SelectorSPKI {
		return false
	}
	data, err := hexData(r)
	if err != nil {
		return false
	}
	switch r.MatchingType {
	case MatchFull:
		return len(data) > 0
	case MatchSHA256:
		return len(data) == sha256.Size
	case MatchSHA512:
		return len(data) == sha512.Size
	}
	return false
}

func hexData(r *dns.TLSA) ([]byte, error) {
	return hex.DecodeString(r.Certificate)
}

// UsableRecords returns the usable records after digest agility: for every
// (usage, selector) only the strongest matching type present is kept (RFC 7671 §9; SHA2-512
// is preferred over SHA2-256; full data is kept alongside, as it is no digest).
func UsableRecords(rs []*dns.TLSA) []*dns.TLSA {
	type key struct{ usage, selector uint8 }
	best := map[key]uint8{}
	var usable []*dns.TLSA
	for _, r := range rs {
		if !Usable(r) {
			continue
		}
		usable = append(usable, r)
		k := key{r.Usage, r.Selector}
		if r.MatchingType > best[k] {
			best[k] = r.MatchingType
		}
	}
	var out []*dns.TLSA
	for _, r := range usable {
		if r.MatchingType == MatchFull || r.MatchingType == best[key{r.Usage, r.Selector}] {
			out = append(out, r)
		}
	}
	return out
}

// Match reports whether certificate c matches record r (selector and matching type).
func Match(r *dns.TLSA, c *x509.Certificate) bool {
	var content []byte
	switch r.Selector {
	case SelectorCert:
		content = c.Raw
	case SelectorSPKI:
		content = c.RawSubjectPublicKeyInfo
	default:
		return false
	}
	want, err := hexData(r)
	if err != nil {
		return false
	}
	switch r.MatchingType {
	case MatchFull:
		return bytes.Equal(content, want)
	case MatchSHA256:
		sum := sha256.Sum256(content)
		return bytes.Equal(sum[:], want)
	case MatchSHA512:
		sum := sha512.Sum512(content)
		return bytes.Equal(sum[:], want)
	}
	return false
}

// Result says which record authenticated the server.
type Result struct {
	Record *dns.TLSA
}

// Verify authenticates the presented chain (leaf first) with the TLSA records of one
// server. names are the reference identifiers for DANE-TA: the TLSA base domain and the
// next-hop domain (RFC 7672 §3.2.2). now is the time for DANE-TA date checks.
//
// Errors: ErrNoUsableRecords, ErrNoCertificate, ErrNoMatch, ErrTAChain, ErrTAName.
func Verify(records []*dns.TLSA, chain []*x509.Certificate, names []string, now time.Time) (Result, error) {
	usable := UsableRecords(records)
	if len(usable) == 0 {
		return Result{}, ErrNoUsableRecords
	}
	if len(chain) == 0 {
		return Result{}, ErrNoCertificate
	}
	leaf := chain[0]
	// DANE-EE first: a match ends the check (names and dates ignored, RFC 7672 §3.1.1).
	for _, r := range usable {
		if r.Usage == UsageDANEEE && Match(r, leaf) {
			return Result{Record: r}, nil
		}
	}
	var taErr error = ErrNoMatch
	for _, r := range usable {
		if r.Usage != UsageDANETA {
			continue
		}
		for i, ta := range chain {
			if !Match(r, ta) {
				continue
			}
			if err := verifyTA(chain, i, names, now); err != nil {
				taErr = err
				continue
			}
			return Result{Record: r}, nil
		}
	}
	return Result{}, taErr
}

// verifyTA checks that the leaf chains to chain[ta] with valid dates and carries one of
// names (RFC 7672 §3.1.2: DANE-TA requires name checks; RFC 7671 §5.2.2). Names and
// name constraints are checked as OpenSSL checks them for Postfix (certname): the CN
// counts when there is no DNS subjectAltName, and then the DNS name constraints of the
// trust anchor and the CAs below it apply to it.
func verifyTA(chain []*x509.Certificate, ta int, names []string, now time.Time) error {
	leaf := chain[0]
	roots := x509.NewCertPool()
	roots.AddCert(chain[ta])
	inter := x509.NewCertPool()
	for _, c := range chain[1:ta] {
		inter.AddCert(c)
	}
	if ta == 0 {
		// The leaf itself is the trust anchor: only its dates matter here.
		if now.Before(leaf.NotBefore) || now.After(leaf.NotAfter) {
			return fmt.Errorf("%w: certificate not valid at %s", ErrTAChain, now.UTC().Format(time.RFC3339))
		}
	} else {
		chains, err := leaf.Verify(x509.VerifyOptions{
			Roots: roots, Intermediates: inter, CurrentTime: now,
			KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
		})
		if err == nil {
			err = certname.CheckNameConstraints(chains)
		}
		if err != nil {
			return fmt.Errorf("%w: %v", ErrTAChain, err)
		}
	}
	if certname.MatchAny(leaf, names) {
		return nil
	}
	return fmt.Errorf("%w (%s)", ErrTAName, strings.Join(names, ", "))
}
