package policy

import (
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
)

// TrustAnchors are the trust anchors of a tls_policy entry's tafile= attributes
// (postconf(5) smtp_tls_trust_anchor_file): certificates and public keys, as Postfix
// loads them (tls_dane.c tls_dane_load_trustfile). verify.TrustAnchors checks chains
// against them.
type TrustAnchors struct {
	Certs []*x509.Certificate
	Keys  [][]byte // SubjectPublicKeyInfo, DER
	// PublicKeys are Keys parsed (crypto.PublicKey values).
	PublicKeys []any
}

// maxTAFile bounds a trust-anchor file.
const maxTAFile = 1 << 20

// LoadTrustAnchors reads the files of a tafile= value: one path per tafile=
// attribute (smtp_tls_policy.c passes the value to tls_dane_load_trustfile whole),
// several attributes joined with spaces by the policy parser. Like Postfix, a file that cannot be read, a malformed certificate or
// key, or a file with no PEM object at all is an error: the policy is invalid and
// Postfix defers the mail.
func LoadTrustAnchors(files string) (*TrustAnchors, error) {
	ta := &TrustAnchors{}
	names := strings.Fields(files)
	if len(names) == 0 {
		return nil, errors.New("tafile: no file named")
	}
	for _, name := range names {
		data, err := readBounded(name)
		if err != nil {
			return nil, fmt.Errorf("tafile %s: %w", name, err)
		}
		if err := ta.add(data); err != nil {
			return nil, fmt.Errorf("tafile %s: %w", name, err)
		}
	}
	return ta, nil
}

func readBounded(name string) ([]byte, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxTAFile+1))
	if err != nil {
		return nil, err
	}
	if len(data) > maxTAFile {
		return nil, fmt.Errorf("larger than %d bytes", maxTAFile)
	}
	return data, nil
}

// add parses PEM data: "CERTIFICATE" (and the old "X509 CERTIFICATE") and "PUBLIC
// KEY" objects are trust anchors; other objects are skipped, as Postfix skips them.
func (ta *TrustAnchors) add(data []byte) error {
	objects := 0
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			break
		}
		objects++
		switch block.Type {
		case "CERTIFICATE", "X509 CERTIFICATE":
			c, err := x509.ParseCertificate(block.Bytes)
			if err != nil {
				return fmt.Errorf("malformed trust-anchor certificate: %w", err)
			}
			ta.Certs = append(ta.Certs, c)
		case "PUBLIC KEY":
			k, err := x509.ParsePKIXPublicKey(block.Bytes)
			if err != nil {
				return fmt.Errorf("malformed trust-anchor public key: %w", err)
			}
			ta.Keys = append(ta.Keys, block.Bytes)
			ta.PublicKeys = append(ta.PublicKeys, k)
		}
	}
	if objects == 0 {
		return errors.New("no PEM certificate or public key")
	}
	return nil
}
