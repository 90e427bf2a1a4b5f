//go:build e2e

package e2e

// The MTA-STS part of the world (RFC 8461), judged at tlsgate's level "published":
//
//   - The MTA-STS domains live in "sts.test.", an unsigned child of the signed "test."
//     zone, and so do their MX host names. DANE needs DNSSEC-validated MX host addresses
//     (RFC 7672 §2.2.2), so it can never apply there, whatever TLSA records exist: the
//     verdict is decided by MTA-STS alone, as for most MTA-STS domains on the Internet.
//     The MX names are new names for the existing MX servers' addresses: 127.0.1.10
//     (a certificate for mx.sts.test from the test CA), 127.0.1.4 (the wrong-name
//     server) and 127.0.1.2 (no STARTTLS).
//   - One domain, dane-sts.test, is in the signed zone: its MX is mx.tls.test, whose
//     DANE-TA TLSA record matches, and its MTA-STS policy lists another host.
//   - Every mta-sts.<domain> resolves to policyAddr, where the test runs an HTTPS
//     server on port 443 that picks a certificate from the test CA by SNI.
//   - The oracle's delivery side asks tlsgate itself: its smtp_tls_policy_maps for
//     "published" is the socketmap of the tlsgate under test (policymap_test.go), which
//     resolves through the same validating unbound as the oracle's SMTP client and
//     trusts the test CA (probe.ca_file).

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/tlsgate/tlsgate/internal/fake"
)

const (
	stsZone    = "sts.test"
	policyAddr = "127.0.1.11" // HTTPS server for every mta-sts.<domain> (port 443)
	stsID      = "20261121e2e"
)

// stsHosts are the A records of the MX host names in sts.test: new names for
// addresses in mxHosts.
var stsHosts = []struct{ name, ip string }{
	{"mx.sts.test", "127.0.1.10"},    // certificate for mx.sts.test
	{"other.sts.test", "127.0.1.10"}, // the same server: its certificate names mx.sts.test
	{"wrongname.sts.test", "127.0.1.4"},
	{"notls.sts.test", "127.0.1.2"},
}

// stsDomain is one recipient domain with an _mta-sts TXT record, and the cell that
// judges it at level published.
type stsDomain struct {
	domain string
	mx     []string // MX hosts in preference order
	policy string   // mode and mx lines of the policy served; "" answers 404
	want   string   // tlsgate's verdict (RFC 8461, RFC 7672)
	code   string
	// expect is in the audit header of a pass, or in the RCPT reply of a fail.
	expect string
	// mapWant is the first word of what tlsgate's socketmap answers Postfix for the
	// domain: a level, NOTFOUND or TEMP (see cell.mapWant).
	mapWant string
	// limit is a Postfix-version limit (see cell.limit).
	limit versionLimit
}

var stsDomains = []stsDomain{
	{domain: "enforce.sts.test", mx: []string{"mx.sts.test"}, policy: "mode: enforce\nmx: mx.sts.test",
		want: "pass", mapWant: "secure", expect: "mechanism=mta-sts; sts=enforce; mx=mx.sts.test;"},
	{domain: "wildcard.sts.test", mx: []string{"mx.sts.test"}, policy: "mode: enforce\nmx: *.sts.test",
		want: "pass", mapWant: "secure", expect: "mechanism=mta-sts; sts=enforce; mx=mx.sts.test;"},
	// §4.1: the unlisted first MX (no STARTTLS) is skipped; Postfix's secure level skips
	// it too, for want of TLS.
	{domain: "skip.sts.test", mx: []string{"notls.sts.test", "mx.sts.test"}, policy: "mode: enforce\nmx: mx.sts.test",
		want: "pass", mapWant: "secure", expect: "mechanism=mta-sts; sts=enforce; mx=mx.sts.test;"},
	{domain: "badcert.sts.test", mx: []string{"wrongname.sts.test"}, policy: "mode: enforce\nmx: wrongname.sts.test",
		want: "fail", code: "5.7.5", mapWant: "secure", expect: "certificate is not valid for the server's name"},
	// §4.1: no MX host is listed: the map answers TEMP (Postfix defers), as Postfix
	// cannot be told "none of the MX hosts" in a policy entry.
	{domain: "unlisted.sts.test", mx: []string{"mx.sts.test"}, policy: "mode: enforce\nmx: mx.elsewhere.test",
		want: "fail", code: "5.7.5", mapWant: "TEMP", expect: "none of its mail servers is listed in its MTA-STS policy"},
	{domain: "testing.sts.test", mx: []string{"wrongname.sts.test"}, policy: "mode: testing\nmx: wrongname.sts.test",
		want: "pass", mapWant: "NOTFOUND", expect: "mechanism=mta-sts; reason=certificate-host-mismatch; sts=testing;"},
	// §5: a TXT record but no policy to be had: deliver as though there were none.
	{domain: "nopolicy.sts.test", mx: []string{"wrongname.sts.test"},
		want: "pass", mapWant: "NOTFOUND", expect: "mechanism=none; reason=sts-policy-fetch-error;"},
	// §4.1: the only MX, other.sts.test, is not listed, although it presents a
	// certificate for the listed mx.sts.test. postfix-mta-sts-resolver answered
	// "secure match=mx.sts.test" and Postfix, which checks match= against the
	// certificate, delivered: RCPT refused what delivery then did. tlsgate's map answers
	// TEMP, as for unlisted.sts.test.
	{domain: "certname.sts.test", mx: []string{"other.sts.test"}, policy: "mode: enforce\nmx: mx.sts.test",
		want: "fail", code: "5.7.5", mapWant: "TEMP", expect: "none of its mail servers is listed in its MTA-STS policy"},
	// §4.1 again, with a listed MX behind the unlisted one: tlsgate passes (through
	// mx.sts.test) and Postfix delivers, so the outcomes agree, but Postfix 3.7 delivers
	// to other.sts.test, which the policy does not list: "secure match=mx.sts.test"
	// checks the certificate's names, not the MX host's. Only Postfix 3.10.5+
	// (smtp_tls_enforce_sts_mx_patterns, with the policy's MX patterns from
	// QUERYwithTLSRPT) can skip it. Asserted, so that a Postfix that skips it shows.
	{domain: "unlistedfirst.sts.test", mx: []string{"other.sts.test", "mx.sts.test"}, policy: "mode: enforce\nmx: mx.sts.test",
		want: "pass", mapWant: "secure", expect: "mechanism=mta-sts; sts=enforce; mx=mx.sts.test;",
		limit: versionLimit{relay: "other.sts.test", why: "RFC 8461 §4.1: only listed MX hosts may be used; Postfix before 3.10.5 " +
			"checks the policy's names against the certificate only, and other.sts.test presents one for mx.sts.test"}},
	// §4.2 with an MX that picks its certificate by SNI (mx.sni.test: another name's
	// without SNI, its own for SNI mx.sni.test). The map's "servername=hostname" makes
	// Postfix send the MX host name, and published is judged on a session sending it
	// too; judged on the session without SNI it failed what Postfix delivers.
	{domain: "sni.sts.test", mx: []string{"mx.sni.test"}, policy: "mode: enforce\nmx: mx.sni.test",
		want: "pass", mapWant: "secure", expect: "mechanism=mta-sts; sts=enforce; mx=mx.sni.test;"},
	// §2: MTA-STS must not interfere with DANE, and mx.tls.test's TLSA record matches.
	// postfix-mta-sts-resolver, which knows nothing of DANE, answered "secure
	// match=mx.elsewhere.test", which replaced Postfix's dane level and made it defer.
	// tlsgate's map answers dane.
	{domain: "dane-sts.test", mx: []string{"mx.tls.test"}, policy: "mode: enforce\nmx: mx.elsewhere.test",
		want: "pass", mapWant: "dane", expect: "mechanism=dane;"},
}

// stsCells are the matrix cells of the MTA-STS domains, at level published.
func stsCells() []cell {
	var cells []cell
	for _, d := range stsDomains {
		cells = append(cells, cell{domain: d.domain, level: "published", want: d.want, code: d.code,
			expect: d.expect, mapWant: d.mapWant, limit: d.limit})
	}
	return cells
}

// stsRecords are the zone-file lines (absolute names) of the MTA-STS domains that
// belong to zone: stsZone, or "test" for those in the signed parent (dane-sts.test).
func stsRecords(zone string) string {
	var b strings.Builder
	child := zone == stsZone
	inZone := func(name string) bool { return inChildZone(name) == child }
	if child {
		for _, h := range stsHosts {
			fmt.Fprintf(&b, "%s. IN A %s\n", h.name, h.ip)
		}
	}
	for _, d := range stsDomains {
		if !inZone(d.domain) {
			continue
		}
		for i, mx := range d.mx {
			fmt.Fprintf(&b, "%s. IN MX %d %s.\n", d.domain, 10*(i+1), mx)
		}
		fmt.Fprintf(&b, "_mta-sts.%s. IN TXT \"v=STSv1; id=%s\"\n", d.domain, stsID)
		fmt.Fprintf(&b, "mta-sts.%s. IN A %s\n", d.domain, policyAddr)
	}
	return b.String()
}

// inChildZone reports whether name belongs to the unsigned sts.test zone rather than
// to test.
func inChildZone(name string) bool {
	return name == stsZone || strings.HasSuffix(name, "."+stsZone)
}

const stsZoneHead = `$ORIGIN sts.test.
$TTL 60
@ IN SOA ns.test. hostmaster.test. 1 3600 600 86400 60
@ IN NS ns.sts.test.
ns IN A {{.NS}}
`

// policyServer serves every domain's policy over HTTPS on policyAddr:443 until the
// test ends (RFC 8461 §3.3: https://mta-sts.<domain>/.well-known/mta-sts.txt, 200,
// text/plain; a domain without a policy gets 404).
func (w *world) policyServer() {
	w.t.Helper()
	certs := map[string]*tls.Certificate{}
	bodies := map[string]string{}
	for _, d := range stsDomains {
		host := "mta-sts." + d.domain
		c := w.ca.Issue(w.t, fake.CertOptions{DNSNames: []string{host}})
		certs[host] = &c
		if d.policy != "" {
			body := "version: STSv1\n" + d.policy + "\nmax_age: 86400\n"
			bodies[host] = strings.ReplaceAll(body, "\n", "\r\n") // §3.2: CRLF line ends
		}
	}
	logf, err := os.Create(w.path("policy-server.log"))
	if err != nil {
		w.t.Fatal(err)
	}
	logger := log.New(logf, "", log.LstdFlags|log.Lmicroseconds)
	srv := &http.Server{
		Handler: http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
			host := r.TLS.ServerName
			body, ok := bodies[host]
			logger.Printf("%s GET https://%s%s (Host %s, %s): found=%v", r.RemoteAddr, host, r.URL.Path, r.Host, r.UserAgent(), ok)
			if !ok || r.URL.Path != "/.well-known/mta-sts.txt" || strings.TrimSuffix(r.Host, ":443") != host {
				http.NotFound(rw, r)
				return
			}
			rw.Header().Set("Content-Type", "text/plain")
			io.WriteString(rw, body)
		}),
		TLSConfig: &tls.Config{GetCertificate: func(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
			if c, ok := certs[hello.ServerName]; ok {
				return c, nil
			}
			return nil, fmt.Errorf("no certificate for SNI %q", hello.ServerName)
		}},
		ErrorLog:          logger,
		ReadHeaderTimeout: 10 * time.Second,
	}
	ln, err := net.Listen("tcp", policyAddr+":443")
	if err != nil {
		w.t.Fatalf("policy server: %v", err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.ServeTLS(ln, "", ""); !errors.Is(err, http.ErrServerClosed) {
			logger.Printf("serve: %v", err)
		}
	}()
	w.t.Cleanup(func() {
		srv.Close()
		<-done
		logf.Close()
	})
}
