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
//   - The oracle asks postfix-mta-sts-resolver (Debian's package; a socketmap for
//     smtp_tls_policy_maps), run inside the oracle's mount namespace so that it resolves
//     through unbound like the oracle's SMTP client, and trusts the test CA.

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/tlsgate/tlsgate/test/fake"
)

const (
	stsZone    = "sts.test"
	policyAddr = "127.0.1.11" // HTTPS server for every mta-sts.<domain> (port 443)
	// stsMapAddr is the oracle's postfix-mta-sts-resolver. Not 127.0.0.1:8461, the
	// package's default: a system copy of the daemon may listen there.
	stsMapAddr = oracleAddr + ":8461"
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
	// deviation, when set, says why Postfix with postfix-mta-sts-resolver decides the
	// other way: the agreement check then asserts that it does.
	deviation string
}

var stsDomains = []stsDomain{
	{domain: "enforce.sts.test", mx: []string{"mx.sts.test"}, policy: "mode: enforce\nmx: mx.sts.test",
		want: "pass", expect: "mechanism=mta-sts; sts=enforce; mx=mx.sts.test;"},
	{domain: "wildcard.sts.test", mx: []string{"mx.sts.test"}, policy: "mode: enforce\nmx: *.sts.test",
		want: "pass", expect: "mechanism=mta-sts; sts=enforce; mx=mx.sts.test;"},
	// §4.1: the unlisted first MX (no STARTTLS) is skipped; Postfix's secure level skips
	// it too, for want of TLS.
	{domain: "skip.sts.test", mx: []string{"notls.sts.test", "mx.sts.test"}, policy: "mode: enforce\nmx: mx.sts.test",
		want: "pass", expect: "mechanism=mta-sts; sts=enforce; mx=mx.sts.test;"},
	{domain: "badcert.sts.test", mx: []string{"wrongname.sts.test"}, policy: "mode: enforce\nmx: wrongname.sts.test",
		want: "fail", code: "5.7.5", expect: "certificate is not valid for the server's name"},
	{domain: "unlisted.sts.test", mx: []string{"mx.sts.test"}, policy: "mode: enforce\nmx: mx.elsewhere.test",
		want: "fail", code: "5.7.5", expect: "none of its mail servers is listed in its MTA-STS policy"},
	{domain: "testing.sts.test", mx: []string{"wrongname.sts.test"}, policy: "mode: testing\nmx: wrongname.sts.test",
		want: "pass", expect: "mechanism=mta-sts; reason=certificate-host-mismatch; sts=testing;"},
	// §5: a TXT record but no policy to be had: deliver as though there were none.
	{domain: "nopolicy.sts.test", mx: []string{"wrongname.sts.test"},
		want: "pass", expect: "mechanism=none; reason=sts-policy-fetch-error;"},
	{domain: "certname.sts.test", mx: []string{"other.sts.test"}, policy: "mode: enforce\nmx: mx.sts.test",
		want: "fail", code: "5.7.5", expect: "none of its mail servers is listed in its MTA-STS policy",
		deviation: "RFC 8461 §4.1 accepts only MX hosts the policy lists (other.sts.test is not); the resolver " +
			"answers \"secure match=mx.sts.test\", which Postfix checks against the certificate's names, " +
			"and other.sts.test presents a certificate for mx.sts.test, so Postfix delivers"},
	{domain: "dane-sts.test", mx: []string{"mx.tls.test"}, policy: "mode: enforce\nmx: mx.elsewhere.test",
		want: "pass", expect: "mechanism=dane;",
		deviation: "RFC 8461 §2: MTA-STS must not interfere with DANE, and mx.tls.test's TLSA record matches; " +
			"the resolver knows nothing of DANE and its \"secure match=mx.elsewhere.test\" entry replaces " +
			"Postfix's dane level for the domain, so Postfix defers"},
}

// stsCells are the matrix cells of the MTA-STS domains, at level published.
func stsCells() []cell {
	var cells []cell
	for _, d := range stsDomains {
		cells = append(cells, cell{domain: d.domain, level: "published", want: d.want, code: d.code,
			expect: d.expect, deviation: d.deviation})
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

// stsResolver starts postfix-mta-sts-resolver for the oracle in the oracle's mount
// namespace (the resolv.conf that points at unbound), trusting the test CA, and checks
// that it answers with the enforce.sts.test policy.
func (w *world) stsResolver(oracle string) {
	w.t.Helper()
	var pid int
	w.waitFor("oracle master pid", func() error {
		b, err := os.ReadFile(filepath.Join(oracle, "queue", "pid", "master.pid"))
		if err != nil {
			return err
		}
		pid, err = strconv.Atoi(strings.TrimSpace(string(b)))
		return err
	})
	// The daemon binds with SO_REUSEPORT: a copy left running would share the port
	// silently and answer from its own cache, so refuse to start beside one.
	if c, err := net.DialTimeout("tcp", stsMapAddr, time.Second); err == nil {
		c.Close()
		w.t.Fatalf("something already listens on %s (a stale mta-sts-daemon?)", stsMapAddr)
	}
	host, port, _ := net.SplitHostPort(stsMapAddr)
	conf := w.write("mta-sts-daemon.yml", fmt.Sprintf(`host: %s
port: %s
shutdown_timeout: 1
cache:
  type: internal
  options:
    cache_size: 100
default_zone:
  strict_testing: false
  timeout: 4
`, host, port), 0o644)
	w.t.Logf("postfix-mta-sts-resolver %s", strings.TrimSpace(w.run("dpkg-query", "-W", "-f", "${Version}", "postfix-mta-sts-resolver")))
	// nsenter execs the daemon: the PID that stop signals is the daemon's. The
	// environment is minimal: no proxy variables (aiohttp would use them), the test CA
	// as the only trust anchor.
	cmd := w.start("mta-sts-daemon", "nsenter", "--mount=/proc/"+strconv.Itoa(pid)+"/ns/mnt", "--",
		"env", "-i", "PATH=/usr/sbin:/usr/bin:/sbin:/bin", "SSL_CERT_FILE="+w.path("certs", "ca.pem"),
		"mta-sts-daemon", "-c", conf, "-v", "debug")
	w.waitFor("mta-sts-daemon", func() error {
		if cmd.ProcessState != nil {
			return fmt.Errorf("exited: %s", cmd.ProcessState)
		}
		c, err := net.DialTimeout("tcp", stsMapAddr, time.Second)
		if err == nil {
			c.Close()
		}
		return err
	})
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "postmap", "-c", filepath.Join(oracle, "conf"), "-q", "enforce.sts.test",
		"socketmap:inet:"+stsMapAddr+":postfix").CombinedOutput()
	if got := strings.TrimSpace(string(out)); err != nil || !strings.HasPrefix(got, "secure match=mx.sts.test") {
		w.t.Fatalf("postfix-mta-sts-resolver for enforce.sts.test: %q, %v; want secure match=mx.sts.test\n%s",
			got, err, w.tail(w.path("mta-sts-daemon.log")))
	}
}
