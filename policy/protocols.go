package policy

import (
	"crypto/tls"
	"errors"
	"fmt"
	"strings"
)

// Protocols is a set of TLS protocol versions: what Postfix's SMTP client offers to a
// destination under a protocols= attribute (or smtp_tls_mandatory_protocols).
type Protocols uint8

// The protocol versions, in Postfix's names (postconf(5) smtp_tls_mandatory_protocols).
var protocolNames = []struct {
	name    string
	version uint16
}{
	{"SSLv2", 0x0002},
	{"SSLv3", 0x0300},
	{"TLSv1", tls.VersionTLS10},
	{"TLSv1.1", tls.VersionTLS11},
	{"TLSv1.2", tls.VersionTLS12},
	{"TLSv1.3", tls.VersionTLS13},
}

// allProtocols is every version Postfix knows. smtp_tls_mandatory_protocols' default
// since Postfix 3.6, ">=TLSv1", is allProtocols minus SSLv2 and SSLv3 (which OpenSSL 3
// does not have anyway).
const allProtocols Protocols = 1<<6 - 1

var errProtocols = errors.New("invalid TLS protocol list")

// parseProtocols reads a protocols= value as Postfix 3.6+ does (tls_misc.c
// tls_proto_mask_lims): names separated by whitespace, ',' or ':'; "!NAME" excludes a
// version, ">=NAME" and "<=NAME" bound the range, a bare NAME includes it (and, once any
// is included, excludes every version not included). Names are case-sensitive. An
// empty list excludes nothing: the result is allProtocols.
func parseProtocols(s string) (Protocols, error) {
	var include, exclude Protocols
	floor, ceiling := 0, len(protocolNames)-1
	for _, tok := range strings.FieldsFunc(s, func(r rune) bool { return r == ':' || r == ',' || isSpaceRune(r) }) {
		var bound *int
		switch {
		case strings.HasPrefix(tok, ">="):
			bound, tok = &floor, tok[2:]
		case strings.HasPrefix(tok, "<="):
			bound, tok = &ceiling, tok[2:]
		}
		neg := bound == nil && strings.HasPrefix(tok, "!")
		if neg {
			tok = tok[1:]
		}
		i := protocolIndex(tok)
		if i < 0 {
			return 0, fmt.Errorf("%w: unknown protocol %q (want SSLv2, SSLv3, TLSv1, TLSv1.1, TLSv1.2 or TLSv1.3)", errProtocols, tok)
		}
		switch {
		case bound != nil:
			*bound = i
		case neg:
			exclude |= 1 << i
		default:
			include |= 1 << i
		}
	}
	set := allProtocols &^ exclude
	if include != 0 {
		set &= include
	}
	for i := range protocolNames {
		if i < floor || i > ceiling {
			set &^= 1 << i
		}
	}
	return set, nil
}

func protocolIndex(name string) int {
	for i, p := range protocolNames {
		if p.name == name {
			return i
		}
	}
	return -1
}

// Allows reports whether version (tls.VersionTLS12, ...) is in the set.
func (p Protocols) Allows(version uint16) bool {
	for i, n := range protocolNames {
		if n.version == version {
			return p&(1<<i) != 0
		}
	}
	return false
}

// Highest is the highest version in the set, 0 when it is empty.
func (p Protocols) Highest() uint16 {
	for i := len(protocolNames) - 1; i >= 0; i-- {
		if p&(1<<i) != 0 {
			return protocolNames[i].version
		}
	}
	return 0
}

// String lists the set in Postfix's names: "TLSv1.2 TLSv1.3", or "none".
func (p Protocols) String() string {
	var names []string
	for i, n := range protocolNames {
		if p&(1<<i) != 0 {
			names = append(names, n.name)
		}
	}
	if len(names) == 0 {
		return "none"
	}
	return strings.Join(names, " ")
}

// Protocols returns the versions Postfix offers under this policy's protocols=
// attribute, and whether the policy has one. A list Postfix cannot read is reported at
// parse time (Policy.Invalid); here it offers nothing.
func (p Policy) Protocols() (Protocols, bool) {
	s, ok := p.Attrs[attrProtocols]
	if !ok {
		return 0, false
	}
	set, err := parseProtocols(s)
	if err != nil {
		return 0, true
	}
	return set, true
}
