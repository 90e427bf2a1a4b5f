package smtpprobe

import (
	"bufio"
	"context"
	"crypto/ecdh"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"time"

	"github.com/tlsgate/tlsgate/internal/problem"
)

// Legacy TLS (TLS 1.0 and 1.1) and the suites Go's crypto/tls does not have.
//
// Postfix 3.7 on Debian 12 offers TLS 1.0 to 1.3 (smtp_tls_protocols and
// smtp_tls_mandatory_protocols default to ">=TLSv1", postconf(5)) and the "medium"
// cipher grade (tls_medium_cipherlist = aNULL:-aNULL:HIGH:MEDIUM:+RC4:@STRENGTH) as
// filtered by OpenSSL 3.0 at its default security level: no anonymous, PSK, SRP, RC4 or
// 3DES suites. Which of them the server picks decides whether the handshake completes:
// below TLS 1.2 a ServerKeyExchange is signed with MD5+SHA-1 (RSA) or SHA-1 (ECDSA,
// DSA), which OpenSSL 3 refuses at security level 1 and above ("legacy sigalg
// disallowed or unsupported", ssl/statem/statem_clnt.c tls_process_key_exchange); RSA
// key exchange signs nothing and completes. Go offers a different list in a different
// order and verifies MD5+SHA-1 signatures, so a Go handshake neither proves nor
// disproves what OpenSSL gets. When Go negotiated TLS 1.1 or less, or could not
// complete the handshake, the probe asks the server once more with a ClientHello that
// offers exactly what Postfix's client offers, and records the ServerHello's answer.

// Offer is one of the two ClientHellos Postfix's SMTP client sends. Postfix 3.7 sets
// OpenSSL's security level to 0 for its client context ("backwards compatible security
// as a base for opportunistic TLS", tls_client.c) and raises it to 1 for a session
// that authenticates the server (tls_level above encrypt: fingerprint, verify, secure,
// dane with usable TLSA records). Level 0 offers the anonymous suites and accepts SHA-1
// and MD5+SHA-1 signatures; level 1 offers neither.
type Offer uint8

// Offers.
const (
	OfferOpportunistic Offer = iota // may, encrypt, dane falling back to them: security level 0
	OfferAuthenticated              // fingerprint, verify, secure, dane with TLSA: security level 1
)

// Hello is a server's answer to one of Postfix's ClientHellos.
type Hello struct {
	Version uint16 // from the ServerHello (supported_versions for TLS 1.3)
	Suite   uint16
	Alert   uint8 // the server's fatal alert instead of a ServerHello
	// Failed says why there is no answer (a timeout, a dropped connection, a refused
	// STARTTLS): nothing is known, and nothing is concluded from it.
	Failed string
	// Garbled: the server answered, but not with a TLS handshake OpenSSL can read.
	Garbled string
}

// Completes reports whether OpenSSL 3 (Postfix's TLS library) completes the handshake
// the server answered to offer; known says whether anything is known, and why explains
// a handshake that does not complete, in Postfix's and OpenSSL's words.
func (h *Hello) Completes(offer Offer) (ok, known bool, why string) {
	switch {
	case h.Failed != "":
		return false, false, "no answer to Postfix's TLS handshake: " + h.Failed
	case h.Alert != 0:
		return false, true, fmt.Sprintf("TLS handshake failed: the server refused Postfix's ClientHello with alert %q", alertText(h.Alert))
	case h.Garbled != "":
		return false, true, "TLS handshake failed: " + h.Garbled
	case h.Version == tls.VersionTLS13:
		return true, true, ""
	case h.Version < tls.VersionTLS10 || h.Version > tls.VersionTLS13:
		return false, true, fmt.Sprintf("TLS handshake failed: the server chose protocol version 0x%04X, which Postfix does not offer", h.Version)
	}
	s, offered := postfixSuites[h.Suite]
	switch {
	case !offered || s.anonymous && offer == OfferAuthenticated:
		return false, true, fmt.Sprintf("TLS handshake failed: the server chose cipher suite 0x%04X, which Postfix does not offer here", h.Suite)
	case offer == OfferAuthenticated && h.Version < tls.VersionTLS12 && s.signedKX:
		// ssl/statem/statem_clnt.c tls_process_key_exchange: below TLS 1.2 the
		// signature is MD5+SHA-1 (RSA) or SHA-1 (ECDSA, DSA), under 80 bits of
		// security, refused at security level 1.
		return false, true, fmt.Sprintf("TLS handshake failed: %s with legacy signature algorithm (%s: the key exchange is signed with SHA-1); "+
			"Postfix's OpenSSL refuses it when the certificate must be checked (\"legacy sigalg disallowed or unsupported\")", tls.VersionName(h.Version), s.name)
	}
	return true, true, ""
}

// String is "TLSv1.1 AES256-SHA"-style, or what went wrong.
func (h *Hello) String() string {
	switch {
	case h.Failed != "":
		return "no answer: " + h.Failed
	case h.Alert != 0:
		return "alert " + alertText(h.Alert)
	case h.Garbled != "":
		return h.Garbled
	}
	name := fmt.Sprintf("0x%04X", h.Suite)
	if s, ok := postfixSuites[h.Suite]; ok {
		name = s.name
	}
	return versionName(h.Version) + " " + name
}

func versionName(v uint16) string {
	r := Result{TLSVersion: v}
	return r.TLSVersionName()
}

func alertText(a uint8) string {
	switch a {
	case 40:
		return "handshake failure"
	case 70:
		return "protocol version"
	case 71:
		return "insufficient security"
	case 80:
		return "internal error"
	case 47:
		return "illegal parameter"
	case 50:
		return "decode error"
	}
	return fmt.Sprintf("%d", a)
}

type suiteInfo struct {
	name      string
	signedKX  bool // (EC)DHE with a signature: the ServerKeyExchange is signed
	anonymous bool // no certificate at all (ADH, AECDH)
}

// postfixSuiteOrder is the TLS 1.2-and-below part of the ClientHello of Postfix 3.7
// (cipher grade "medium", no exclusions) on OpenSSL 3.0 at security level 2, in the
// order OpenSSL sends it: `openssl ciphers -s -V -tls1_2
// 'aNULL:-aNULL:HIGH:MEDIUM:+RC4:@STRENGTH'` on Debian 12. Anonymous suites, which the
// string names first, are not sent at that security level.
var postfixSuiteOrder = []struct {
	id uint16
	suiteInfo
}{
	{0xC02C, suiteInfo{"ECDHE-ECDSA-AES256-GCM-SHA384", true, false}}, {0xC030, suiteInfo{"ECDHE-RSA-AES256-GCM-SHA384", true, false}},
	{0x00A3, suiteInfo{"DHE-DSS-AES256-GCM-SHA384", true, false}}, {0x009F, suiteInfo{"DHE-RSA-AES256-GCM-SHA384", true, false}},
	{0xCCA9, suiteInfo{"ECDHE-ECDSA-CHACHA20-POLY1305", true, false}}, {0xCCA8, suiteInfo{"ECDHE-RSA-CHACHA20-POLY1305", true, false}},
	{0xCCAA, suiteInfo{"DHE-RSA-CHACHA20-POLY1305", true, false}}, {0xC0AF, suiteInfo{"ECDHE-ECDSA-AES256-CCM8", true, false}},
	{0xC0AD, suiteInfo{"ECDHE-ECDSA-AES256-CCM", true, false}}, {0xC0A3, suiteInfo{"DHE-RSA-AES256-CCM8", true, false}},
	{0xC09F, suiteInfo{"DHE-RSA-AES256-CCM", true, false}}, {0xC05D, suiteInfo{"ECDHE-ECDSA-ARIA256-GCM-SHA384", true, false}},
	{0xC061, suiteInfo{"ECDHE-ARIA256-GCM-SHA384", true, false}}, {0xC057, suiteInfo{"DHE-DSS-ARIA256-GCM-SHA384", true, false}},
	{0xC053, suiteInfo{"DHE-RSA-ARIA256-GCM-SHA384", true, false}}, {0xC024, suiteInfo{"ECDHE-ECDSA-AES256-SHA384", true, false}},
	{0xC028, suiteInfo{"ECDHE-RSA-AES256-SHA384", true, false}}, {0x006B, suiteInfo{"DHE-RSA-AES256-SHA256", true, false}},
	{0x006A, suiteInfo{"DHE-DSS-AES256-SHA256", true, false}}, {0xC073, suiteInfo{"ECDHE-ECDSA-CAMELLIA256-SHA384", true, false}},
	{0xC077, suiteInfo{"ECDHE-RSA-CAMELLIA256-SHA384", true, false}}, {0x00C4, suiteInfo{"DHE-RSA-CAMELLIA256-SHA256", true, false}},
	{0x00C3, suiteInfo{"DHE-DSS-CAMELLIA256-SHA256", true, false}}, {0xC00A, suiteInfo{"ECDHE-ECDSA-AES256-SHA", true, false}},
	{0xC014, suiteInfo{"ECDHE-RSA-AES256-SHA", true, false}}, {0x0039, suiteInfo{"DHE-RSA-AES256-SHA", true, false}},
	{0x0038, suiteInfo{"DHE-DSS-AES256-SHA", true, false}}, {0x0088, suiteInfo{"DHE-RSA-CAMELLIA256-SHA", true, false}},
	{0x0087, suiteInfo{"DHE-DSS-CAMELLIA256-SHA", true, false}}, {0x009D, suiteInfo{"AES256-GCM-SHA384", false, false}},
	{0xC0A1, suiteInfo{"AES256-CCM8", false, false}}, {0xC09D, suiteInfo{"AES256-CCM", false, false}},
	{0xC051, suiteInfo{"ARIA256-GCM-SHA384", false, false}}, {0x003D, suiteInfo{"AES256-SHA256", false, false}},
	{0x00C0, suiteInfo{"CAMELLIA256-SHA256", false, false}}, {0x0035, suiteInfo{"AES256-SHA", false, false}},
	{0x0084, suiteInfo{"CAMELLIA256-SHA", false, false}}, {0xC02B, suiteInfo{"ECDHE-ECDSA-AES128-GCM-SHA256", true, false}},
	{0xC02F, suiteInfo{"ECDHE-RSA-AES128-GCM-SHA256", true, false}}, {0x00A2, suiteInfo{"DHE-DSS-AES128-GCM-SHA256", true, false}},
	{0x009E, suiteInfo{"DHE-RSA-AES128-GCM-SHA256", true, false}}, {0xC0AE, suiteInfo{"ECDHE-ECDSA-AES128-CCM8", true, false}},
	{0xC0AC, suiteInfo{"ECDHE-ECDSA-AES128-CCM", true, false}}, {0xC0A2, suiteInfo{"DHE-RSA-AES128-CCM8", true, false}},
	{0xC09E, suiteInfo{"DHE-RSA-AES128-CCM", true, false}}, {0xC05C, suiteInfo{"ECDHE-ECDSA-ARIA128-GCM-SHA256", true, false}},
	{0xC060, suiteInfo{"ECDHE-ARIA128-GCM-SHA256", true, false}}, {0xC056, suiteInfo{"DHE-DSS-ARIA128-GCM-SHA256", true, false}},
	{0xC052, suiteInfo{"DHE-RSA-ARIA128-GCM-SHA256", true, false}}, {0xC023, suiteInfo{"ECDHE-ECDSA-AES128-SHA256", true, false}},
	{0xC027, suiteInfo{"ECDHE-RSA-AES128-SHA256", true, false}}, {0x0067, suiteInfo{"DHE-RSA-AES128-SHA256", true, false}},
	{0x0040, suiteInfo{"DHE-DSS-AES128-SHA256", true, false}}, {0xC072, suiteInfo{"ECDHE-ECDSA-CAMELLIA128-SHA256", true, false}},
	{0xC076, suiteInfo{"ECDHE-RSA-CAMELLIA128-SHA256", true, false}}, {0x00BE, suiteInfo{"DHE-RSA-CAMELLIA128-SHA256", true, false}},
	{0x00BD, suiteInfo{"DHE-DSS-CAMELLIA128-SHA256", true, false}}, {0xC009, suiteInfo{"ECDHE-ECDSA-AES128-SHA", true, false}},
	{0xC013, suiteInfo{"ECDHE-RSA-AES128-SHA", true, false}}, {0x0033, suiteInfo{"DHE-RSA-AES128-SHA", true, false}},
	{0x0032, suiteInfo{"DHE-DSS-AES128-SHA", true, false}}, {0x0045, suiteInfo{"DHE-RSA-CAMELLIA128-SHA", true, false}},
	{0x0044, suiteInfo{"DHE-DSS-CAMELLIA128-SHA", true, false}}, {0x009C, suiteInfo{"AES128-GCM-SHA256", false, false}},
	{0xC0A0, suiteInfo{"AES128-CCM8", false, false}}, {0xC09C, suiteInfo{"AES128-CCM", false, false}},
	{0xC050, suiteInfo{"ARIA128-GCM-SHA256", false, false}}, {0x003C, suiteInfo{"AES128-SHA256", false, false}},
	{0x00BA, suiteInfo{"CAMELLIA128-SHA256", false, false}}, {0x002F, suiteInfo{"AES128-SHA", false, false}},
	{0x0041, suiteInfo{"CAMELLIA128-SHA", false, false}},
}

// anonymousSuites are what security level 0 adds to postfixSuiteOrder: the 256-bit ones
// first, the 128-bit ones before the first 128-bit suite (`openssl ciphers -s -V
// -tls1_2 'aNULL:-aNULL:HIGH:MEDIUM:+RC4:@STRENGTH:@SECLEVEL=0'`).
var anonymousSuites = []struct {
	id uint16
	suiteInfo
}{
	{0x00A7, suiteInfo{"ADH-AES256-GCM-SHA384", false, true}}, {0x006D, suiteInfo{"ADH-AES256-SHA256", false, true}},
	{0x00C5, suiteInfo{"ADH-CAMELLIA256-SHA256", false, true}}, {0xC019, suiteInfo{"AECDH-AES256-SHA", false, true}},
	{0x003A, suiteInfo{"ADH-AES256-SHA", false, true}}, {0x0089, suiteInfo{"ADH-CAMELLIA256-SHA", false, true}},
	{0x00A6, suiteInfo{"ADH-AES128-GCM-SHA256", false, true}}, {0x006C, suiteInfo{"ADH-AES128-SHA256", false, true}},
	{0x00BF, suiteInfo{"ADH-CAMELLIA128-SHA256", false, true}}, {0xC018, suiteInfo{"AECDH-AES128-SHA", false, true}},
	{0x0034, suiteInfo{"ADH-AES128-SHA", false, true}}, {0x0046, suiteInfo{"ADH-CAMELLIA128-SHA", false, true}},
}

// offeredSuites is the TLS 1.2-and-below suite list of offer, in OpenSSL's order.
func offeredSuites(offer Offer) []uint16 {
	var ids []uint16
	for _, s := range postfixSuiteOrder {
		if offer == OfferOpportunistic {
			switch s.id {
			case postfixSuiteOrder[0].id:
				for _, a := range anonymousSuites[:6] {
					ids = append(ids, a.id)
				}
			case 0xC02B: // ECDHE-ECDSA-AES128-GCM-SHA256, the first 128-bit suite
				for _, a := range anonymousSuites[6:] {
					ids = append(ids, a.id)
				}
			}
		}
		ids = append(ids, s.id)
	}
	return ids
}

// postfixSuites indexes postfixSuiteOrder and anonymousSuites, plus the TLS 1.3 suites
// OpenSSL 3 sends first.
var postfixSuites = func() map[uint16]suiteInfo {
	m := map[uint16]suiteInfo{
		tls.TLS_AES_256_GCM_SHA384:       {"TLS_AES_256_GCM_SHA384", false, false},
		tls.TLS_CHACHA20_POLY1305_SHA256: {"TLS_CHACHA20_POLY1305_SHA256", false, false},
		tls.TLS_AES_128_GCM_SHA256:       {"TLS_AES_128_GCM_SHA256", false, false},
	}
	for _, s := range postfixSuiteOrder {
		m[s.id] = s.suiteInfo
	}
	for _, s := range anonymousSuites {
		m[s.id] = s.suiteInfo
	}
	return m
}()

// clientHello builds the ClientHello of Postfix's SMTP client on OpenSSL 3.0: TLS 1.3
// suites, then offeredSuites(offer), then the renegotiation SCSV; the extensions OpenSSL
// sends by default (RFC 8446 §4.2 for TLS 1.3, RFC 8422 for the groups and point
// formats, RFC 7627, RFC 7366), and SNI only when sni is set (smtp_tls_servername).
func clientHello(offer Offer, sni string) ([]byte, error) {
	var random, sessionID [32]byte
	if _, err := rand.Read(random[:]); err != nil {
		return nil, err
	}
	if _, err := rand.Read(sessionID[:]); err != nil {
		return nil, err
	}
	key, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	var b []byte
	b = binary.BigEndian.AppendUint16(b, tls.VersionTLS12) // legacy_version
	b = append(b, random[:]...)
	b = append(b, byte(len(sessionID)))
	b = append(b, sessionID[:]...)
	suites := []uint16{tls.TLS_AES_256_GCM_SHA384, tls.TLS_CHACHA20_POLY1305_SHA256, tls.TLS_AES_128_GCM_SHA256}
	suites = append(suites, offeredSuites(offer)...)
	suites = append(suites, 0x00FF) // TLS_EMPTY_RENEGOTIATION_INFO_SCSV (RFC 5746 §3.3)
	b = binary.BigEndian.AppendUint16(b, uint16(2*len(suites)))
	for _, s := range suites {
		b = binary.BigEndian.AppendUint16(b, s)
	}
	b = append(b, 1, 0) // compression: null only

	var ext []byte
	add := func(typ uint16, body []byte) {
		ext = binary.BigEndian.AppendUint16(ext, typ)
		ext = binary.BigEndian.AppendUint16(ext, uint16(len(body)))
		ext = append(ext, body...)
	}
	u16list := func(lenBytes int, vals ...uint16) []byte {
		var v []byte
		if lenBytes == 2 {
			v = binary.BigEndian.AppendUint16(v, uint16(2*len(vals)))
		} else {
			v = append(v, byte(2*len(vals)))
		}
		for _, x := range vals {
			v = binary.BigEndian.AppendUint16(v, x)
		}
		return v
	}
	if sni != "" {
		var name []byte
		name = binary.BigEndian.AppendUint16(name, uint16(len(sni)+3))
		name = append(name, 0) // host_name
		name = binary.BigEndian.AppendUint16(name, uint16(len(sni)))
		name = append(name, sni...)
		add(0, name) // server_name (RFC 6066 §3)
	}
	add(11, []byte{3, 0, 1, 2}) // ec_point_formats
	// supported_groups: x25519, secp256r1, x448, secp521r1, secp384r1, ffdhe2048..8192
	add(10, u16list(2, 0x001D, 0x0017, 0x001E, 0x0019, 0x0018, 0x0100, 0x0101, 0x0102, 0x0103, 0x0104))
	add(35, nil) // session_ticket
	add(22, nil) // encrypt_then_mac
	add(23, nil) // extended_master_secret
	// signature_algorithms (TLS 1.2 and up): OpenSSL 3.0's default list; security level
	// 0 keeps the SHA-1 and SHA-224 ones.
	sigalgs := []uint16{0x0403, 0x0503, 0x0603, 0x0807, 0x0808, 0x081A, 0x081B, 0x081C,
		0x0809, 0x080A, 0x080B, 0x0804, 0x0805, 0x0806, 0x0401, 0x0501, 0x0601}
	if offer == OfferOpportunistic {
		sigalgs = append(sigalgs, 0x0303, 0x0301, 0x0302, 0x0402, 0x0502, 0x0602, 0x0203, 0x0201, 0x0202)
	}
	add(13, u16list(2, sigalgs...))
	add(43, u16list(1, tls.VersionTLS13, tls.VersionTLS12, tls.VersionTLS11, tls.VersionTLS10)) // supported_versions
	add(45, []byte{1, 1})                                                                       // psk_key_exchange_modes: psk_dhe_ke
	pub := key.PublicKey().Bytes()
	var ks []byte
	ks = binary.BigEndian.AppendUint16(ks, uint16(4+len(pub)))
	ks = binary.BigEndian.AppendUint16(ks, 0x001D)
	ks = binary.BigEndian.AppendUint16(ks, uint16(len(pub)))
	ks = append(ks, pub...)
	add(51, ks) // key_share
	b = binary.BigEndian.AppendUint16(b, uint16(len(ext)))
	b = append(b, ext...)

	msg := append([]byte{1, byte(len(b) >> 16), byte(len(b) >> 8), byte(len(b))}, b...) // client_hello
	rec := []byte{22, 3, 1, byte(len(msg) >> 8), byte(len(msg))}                        // handshake record, TLS 1.0 record version
	return append(rec, msg...), nil
}

// maxHelloBytes bounds what is read of the server's first flight (ServerHello,
// Certificate, ServerKeyExchange, CertificateRequest, ServerHelloDone).
const maxHelloBytes = 256 << 10

// hello runs a new session up to STARTTLS and sends Postfix's ClientHello. Besides the
// answer it returns the certificate chain of a TLS 1.2-or-below answer, which comes in
// the clear, for a server Go could not complete a handshake with.
func (p *Prober) hello(ctx context.Context, ip netip.Addr, sni string, offer Offer) (h Hello, chain []*x509.Certificate) {
	port := p.Port
	if port == 0 {
		port = 25
	}
	conn, err := p.Dialer.DialContext(ctx, "tcp", netip.AddrPortFrom(ip, uint16(port)).String())
	if err != nil {
		return Hello{Failed: "connect: " + problem.Describe(err)}, nil
	}
	defer conn.Close()
	dl, _ := ctx.Deadline()
	conn.SetDeadline(dl)
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	s := &session{ctx: ctx, conn: conn, r: bufio.NewReaderSize(conn, bufSize)}
	for _, step := range []string{"", "EHLO " + p.HELO, "STARTTLS"} {
		var r Reply
		if step == "" {
			r, err = s.read()
		} else {
			r, err = s.cmd(step)
		}
		if err != nil {
			return Hello{Failed: problem.Describe(err)}, nil
		}
		if r.Code/100 != 2 {
			return Hello{Failed: "the server answered " + r.bounded().String()}, nil
		}
	}
	ch, err := clientHello(offer, sni)
	if err != nil {
		return Hello{Failed: err.Error()}, nil
	}
	if _, err := conn.Write(ch); err != nil {
		return Hello{Failed: problem.Describe(err)}, nil
	}
	h, chain, err = readServerFlight(io.LimitReader(conn, maxHelloBytes))
	if err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() || ctx.Err() != nil {
			return Hello{Failed: "timed out"}, nil
		}
		if errors.Is(err, errNotTLS) {
			return Hello{Garbled: err.Error()}, nil
		}
		return Hello{Failed: problem.Describe(err)}, nil
	}
	return h, chain
}

var errNotTLS = errors.New("the answer is not a TLS handshake")

// readServerFlight reads records until the ServerHello is known and, below TLS 1.3,
// the Certificate message (or ServerHelloDone) has been seen.
func readServerFlight(r io.Reader) (h Hello, chain []*x509.Certificate, err error) {
	var hs []byte // handshake bytes, across records
	gotHello := false
	for {
		var hdr [5]byte
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			if gotHello {
				return h, chain, nil // what came is enough
			}
			return h, nil, err
		}
		n := int(binary.BigEndian.Uint16(hdr[3:]))
		if hdr[1] != 3 || n > 1<<14+2048 {
			return h, nil, errNotTLS
		}
		body := make([]byte, n)
		if _, err := io.ReadFull(r, body); err != nil {
			return h, nil, err
		}
		switch hdr[0] {
		case 21: // alert
			if len(body) >= 2 && !gotHello {
				return Hello{Alert: body[1]}, nil, nil
			}
			return h, chain, nil
		case 22: // handshake
			hs = append(hs, body...)
		default:
			if gotHello {
				return h, chain, nil // TLS 1.3: encrypted from here
			}
			return h, nil, errNotTLS
		}
		for len(hs) >= 4 {
			typ, mlen := hs[0], int(hs[1])<<16|int(hs[2])<<8|int(hs[3])
			if len(hs) < 4+mlen {
				break
			}
			msg := hs[4 : 4+mlen]
			hs = hs[4+mlen:]
			switch typ {
			case 2: // server_hello
				if h, err = parseServerHello(msg); err != nil {
					return h, nil, err
				}
				gotHello = true
				if h.Version == tls.VersionTLS13 {
					return h, nil, nil
				}
			case 11: // certificate (TLS 1.2 and below: RFC 5246 §7.4.2)
				chain = parseCertificates(msg)
				return h, chain, nil
			case 14: // server_hello_done
				return h, chain, nil
			}
		}
	}
}

func parseServerHello(m []byte) (Hello, error) {
	bad := fmt.Errorf("%w: malformed ServerHello", errNotTLS)
	if len(m) < 2+32+1 {
		return Hello{}, bad
	}
	h := Hello{Version: binary.BigEndian.Uint16(m)}
	m = m[34:]
	sid := int(m[0])
	if len(m) < 1+sid+3 {
		return Hello{}, bad
	}
	m = m[1+sid:]
	h.Suite = binary.BigEndian.Uint16(m)
	m = m[3:] // suite, compression
	if len(m) < 2 {
		return h, nil // no extensions
	}
	ext := m[2:]
	if int(binary.BigEndian.Uint16(m)) != len(ext) {
		return Hello{}, bad
	}
	for len(ext) >= 4 {
		typ, n := binary.BigEndian.Uint16(ext), int(binary.BigEndian.Uint16(ext[2:]))
		if len(ext) < 4+n {
			return Hello{}, bad
		}
		if typ == 43 && n == 2 { // supported_versions (RFC 8446 §4.2.1)
			h.Version = binary.BigEndian.Uint16(ext[4:])
		}
		ext = ext[4+n:]
	}
	return h, nil
}

// parseCertificates reads a TLS 1.2 Certificate message; certificates that do not
// parse end the chain.
func parseCertificates(m []byte) []*x509.Certificate {
	if len(m) < 3 {
		return nil
	}
	m = m[3:]
	var chain []*x509.Certificate
	for len(m) >= 3 {
		n := int(m[0])<<16 | int(m[1])<<8 | int(m[2])
		if len(m) < 3+n {
			break
		}
		c, err := x509.ParseCertificate(m[3 : 3+n])
		if err != nil {
			break
		}
		chain = append(chain, c)
		m = m[3+n:]
	}
	return chain
}
