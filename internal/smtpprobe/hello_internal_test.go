package smtpprobe

import (
	"bytes"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/tlsgate/tlsgate/internal/fake"
)

// The ClientHello is read by a real TLS server (Go's), which answers it: the builder
// writes what a TLS stack parses, and readServerFlight reads what a TLS stack writes,
// ServerHello and Certificate below TLS 1.3, supported_versions at TLS 1.3.
func TestClientHelloAnsweredByATLSServer(t *testing.T) {
	ca := fake.NewCA(t, "Root")
	rsaCert := ca.Issue(t, fake.CertOptions{DNSNames: []string{"mx.test"}, RSA: true})
	tests := []struct {
		name    string
		offer   Offer
		max     uint16
		suites  []uint16
		version uint16
		suite   uint16
		chain   bool
	}{
		{"TLS 1.1, ECDHE-RSA", OfferAuthenticated, tls.VersionTLS11, []uint16{tls.TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA}, tls.VersionTLS11, 0xC014, true},
		{"TLS 1.0, RSA key exchange", OfferOpportunistic, tls.VersionTLS10, []uint16{tls.TLS_RSA_WITH_AES_128_CBC_SHA}, tls.VersionTLS10, 0x002F, true},
		{"TLS 1.2", OfferAuthenticated, tls.VersionTLS12, []uint16{tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256}, tls.VersionTLS12, 0xC02F, true},
		{"TLS 1.3", OfferAuthenticated, tls.VersionTLS13, nil, tls.VersionTLS13, 0, false}, // Go picks the suite
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			client, server := net.Pipe()
			defer client.Close()
			srv := tls.Server(server, &tls.Config{Certificates: []tls.Certificate{rsaCert},
				MinVersion: tls.VersionTLS10, MaxVersion: tc.max, CipherSuites: tc.suites})
			go func() { srv.Handshake(); server.Close() }()
			ch, err := clientHello(tc.offer, "mx.test")
			if err != nil {
				t.Fatal(err)
			}
			client.SetDeadline(time.Now().Add(5 * time.Second))
			go client.Write(ch)
			h, chain, err := readServerFlight(client)
			if err != nil {
				t.Fatalf("readServerFlight: %v", err)
			}
			if h.Version != tc.version || tc.suite != 0 && h.Suite != tc.suite {
				t.Errorf("answer %s (0x%04X 0x%04X); want 0x%04X 0x%04X", h.String(), h.Version, h.Suite, tc.version, tc.suite)
			}
			if got := len(chain) > 0; got != tc.chain {
				t.Errorf("chain of %d certificates; want one: %v", len(chain), tc.chain)
			}
			if tc.chain && !bytes.Equal(chain[0].Raw, rsaCert.Certificate[0]) {
				t.Error("the chain's leaf is not the server's certificate")
			}
		})
	}
}

// Completes is OpenSSL 3 as Postfix 3.7 runs it: security level 0 up to encrypt (SHA-1
// signatures and anonymous suites accepted), 1 above (neither).
func TestHelloCompletesAsPostfix(t *testing.T) {
	const (
		ecdheRSA256 = 0xC014 // ECDHE-RSA-AES256-SHA
		rsa256      = 0x0035 // AES256-SHA
		aecdh256    = 0xC019 // AECDH-AES256-SHA
		dheRSAGCM   = 0x009F // DHE-RSA-AES256-GCM-SHA384
		des3        = 0x000A // DES-CBC3-SHA: not in Postfix's medium list on OpenSSL 3
	)
	tests := []struct {
		h           Hello
		opp, auth   bool // completes
		known, why  string
		unknownOnly bool
	}{
		{h: Hello{Version: tls.VersionTLS11, Suite: ecdheRSA256}, opp: true, auth: false, why: "TLS 1.1 with legacy signature algorithm"},
		{h: Hello{Version: tls.VersionTLS10, Suite: ecdheRSA256}, opp: true, auth: false, why: "TLS 1.0 with legacy signature algorithm"},
		{h: Hello{Version: tls.VersionTLS12, Suite: ecdheRSA256}, opp: true, auth: true},
		{h: Hello{Version: tls.VersionTLS11, Suite: rsa256}, opp: true, auth: true},
		{h: Hello{Version: tls.VersionTLS11, Suite: aecdh256}, opp: true, auth: false, why: "which Postfix does not offer"},
		{h: Hello{Version: tls.VersionTLS12, Suite: dheRSAGCM}, opp: true, auth: true},
		{h: Hello{Version: tls.VersionTLS13, Suite: tls.TLS_AES_128_GCM_SHA256}, opp: true, auth: true},
		{h: Hello{Version: tls.VersionTLS11, Suite: des3}, opp: false, auth: false, why: "which Postfix does not offer"},
		{h: Hello{Version: 0x0300, Suite: rsa256}, opp: false, auth: false, why: "protocol version"},
		{h: Hello{Alert: 40}, opp: false, auth: false, why: `alert "handshake failure"`},
		{h: Hello{Garbled: "the answer is not a TLS handshake"}, opp: false, auth: false, why: "not a TLS handshake"},
		{h: Hello{Failed: "timed out"}, unknownOnly: true, why: "no answer"},
	}
	for _, tc := range tests {
		for _, o := range []struct {
			offer Offer
			want  bool
		}{{OfferOpportunistic, tc.opp}, {OfferAuthenticated, tc.auth}} {
			ok, known, why := tc.h.Completes(o.offer)
			if tc.unknownOnly {
				if ok || known || !strings.Contains(why, tc.why) {
					t.Errorf("%s: %v %v %q; want unknown, %q", tc.h.String(), ok, known, why, tc.why)
				}
				continue
			}
			if ok != o.want || !known {
				t.Errorf("%s offer %d: completes %v known %v (%s); want %v", tc.h.String(), o.offer, ok, known, why, o.want)
			}
			if !ok && !strings.Contains(why, tc.why) {
				t.Errorf("%s offer %d: %q; want %q in it", tc.h.String(), o.offer, why, tc.why)
			}
		}
	}
}

// The opportunistic offer is the authenticated one with the anonymous suites where
// OpenSSL's @STRENGTH puts them; both end with what Postfix never offers left out.
func TestOffers(t *testing.T) {
	auth, opp := offeredSuites(OfferAuthenticated), offeredSuites(OfferOpportunistic)
	if len(auth) != 71 || len(opp) != 83 {
		t.Fatalf("%d and %d suites; want OpenSSL's 71 and 83", len(auth), len(opp))
	}
	if opp[3] != 0xC019 || opp[6] != auth[0] {
		t.Errorf("AECDH-AES256-SHA must come fourth, before %04X", auth[0])
	}
	for _, id := range auth {
		if postfixSuites[id].anonymous {
			t.Errorf("anonymous suite %04X offered when authenticating", id)
		}
	}
	for _, id := range []uint16{0x000A, 0x0005, 0x0004} { // 3DES, RC4
		for _, o := range opp {
			if o == id {
				t.Errorf("suite %04X offered", id)
			}
		}
	}
}

// FuzzReadServerFlight: the first flight of a hostile server never panics and never
// reads past the bound it is given.
func FuzzReadServerFlight(f *testing.F) {
	f.Add([]byte("\x15\x03\x01\x00\x02\x02\x28"))
	f.Add([]byte("\x16\x03\x02\x00\x04\x02\x00\x00\x00"))
	f.Add([]byte("this is not TLS\r\n"))
	f.Add([]byte("\x16\x03\x03\x00\x2a\x02\x00\x00\x26\x03\x02" + strings.Repeat("r", 32) + "\x00\xc0\x14\x00"))
	f.Fuzz(func(t *testing.T, b []byte) {
		r := io.LimitReader(bytes.NewReader(b), maxHelloBytes)
		h, chain, err := readServerFlight(r)
		if err != nil && h.Version != 0 && !errors.Is(err, errNotTLS) && err != io.EOF && err != io.ErrUnexpectedEOF {
			t.Fatalf("error %v with an answer %s", err, h.String())
		}
		_ = chain
	})
}
