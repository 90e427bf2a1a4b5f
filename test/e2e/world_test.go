//go:build e2e

package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"text/template"
	"time"

	"github.com/miekg/dns"

	"github.com/tlsgate/tlsgate/internal/fake"
	"github.com/tlsgate/tlsgate/internal/fingerprint"
)

// The test world's fixed loopback addresses. Nothing leaves 127.0.0.0/8.
const (
	nsdAddr      = "127.0.0.53" // authoritative (port 5353)
	resolverAddr = "127.0.0.54" // validating resolver (port 53: the oracle's libc needs it)
	senderAddr   = "127.0.0.2"  // sending Postfix with smtpd_milters -> tlsgate (port 2525)
	oracleAddr   = "127.0.0.3"  // oracle Postfix that really delivers (port 2525)
	milterAddr   = "127.0.0.4"  // tlsgate (port 10025)
)

// mxHost is one receiving MX: an address and what the server there does.
type mxHost struct {
	ip        string
	name      string // host name in the certificate / greeting
	behaviour string // good, notls, selfsigned, wrongname, expired, greet421, greet450, tarpit, none, sts
}

var mxHosts = []mxHost{
	{"127.0.1.1", "mx.tls.test", "good"},
	{"127.0.1.2", "mx.notls.test", "notls"},
	{"127.0.1.3", "mx.selfsigned.test", "selfsigned"},
	{"127.0.1.4", "mx.wrongname.test", "wrongname"},
	{"127.0.1.5", "mx.expired.test", "expired"},
	{"127.0.1.6", "mx.greet421.test", "greet421"},
	{"127.0.1.7", "mx.greet450.test", "greet450"},
	{"127.0.1.8", "mx.tarpit.test", "tarpit"},
	{"127.0.1.9", "mx.refused.test", "none"}, // nothing listens: connection refused
	{"127.0.1.10", "mx.sts.test", "sts"},     // MTA-STS domains' MX (unsigned zone, see sts_test.go)
	// A CN-only certificate (no subjectAltName) from a sub-CA whose name constraints
	// permit only attacker.test: OpenSSL applies them to the CN, Go's Verify does not.
	{"127.0.1.12", "mx.constrained.test", "constrained"},
	// Servers that speak only TLS 1.0/1.1 (issue 13), as an old OpenSSL would: one that
	// prefers what the client prefers (ECDHE-RSA, signed with MD5+SHA-1 below TLS 1.2),
	// one with RSA key exchange only (no ServerKeyExchange signature at all).
	{"127.0.1.20", "mx.legacy.test", "legacy"},
	{"127.0.1.21", "mx.legacy-rsa.test", "legacy-rsa"},
	// A server that picks its certificate by SNI (tls_server_sni_maps): without SNI a
	// certificate for another name, with SNI mx.sni.test its own, with SNI
	// other.sni.test a self-signed one (issue 13, servername=).
	{"127.0.1.22", "mx.sni.test", "sni"},
}

// world owns every process of the suite and stops them by PID.
type world struct {
	t     *testing.T
	dir   string
	procs []*exec.Cmd
	pf    []string // Postfix config directories started
	ca    *fake.CA
	pins  map[string]string // MX host name -> sha256 fingerprint of its certificate
	bin   string            // tlsgate binary
	gate  *exec.Cmd
	ids   map[cell]string // oracle queue id per cell
	tlsa  []string        // TLSA records for the signed zone
	// postconf holds main.cf settings ("name=value") that postfixInstance applies with
	// postconf -e to the instance of that name: what one test needs and the shared
	// world does not have (routing_test.go).
	postconf map[string][]string
}

func newWorld(t *testing.T) *world {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("the e2e suite runs Postfix, nsd and unbound and must run as root (see README)")
	}
	for _, tool := range []string{"nsd", "unbound", "ldns-keygen", "ldns-signzone", "postfix", "postcat", "postmap", "swaks", "unshare", "mount"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s not found: run test/e2e/install.sh first (%v)", tool, err)
		}
	}
	dir, err := os.MkdirTemp("", "tlsgate-e2e-")
	if err != nil {
		t.Fatal(err)
	}
	// Postfix's daemons run as the postfix user and must traverse the path.
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	w := &world{t: t, dir: dir, pins: map[string]string{}}
	t.Cleanup(w.stop)
	return w
}

// stop stops every Postfix instance and process, also when a test failed.
func (w *world) stop() {
	for _, conf := range w.pf {
		out, _ := exec.Command("postfix", "-c", conf, "stop").CombinedOutput()
		w.t.Logf("postfix -c %s stop: %s", conf, strings.TrimSpace(string(out)))
	}
	for i := len(w.procs) - 1; i >= 0; i-- {
		p := w.procs[i]
		if p.Process != nil && p.ProcessState == nil {
			p.Process.Signal(syscall.SIGTERM)
			done := make(chan struct{})
			go func() { p.Wait(); close(done) }()
			select {
			case <-done:
			case <-time.After(5 * time.Second):
				p.Process.Kill()
				<-done
			}
		}
	}
	// Postfix masters are daemons; make sure none is left behind.
	for _, conf := range w.pf {
		pidFile := filepath.Join(filepath.Dir(conf), "queue", "pid", "master.pid")
		if b, err := os.ReadFile(pidFile); err == nil {
			var pid int
			fmt.Sscan(strings.TrimSpace(string(b)), &pid)
			if pid > 0 && syscall.Kill(pid, 0) == nil {
				syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	}
	if os.Getenv("TLSGATE_E2E_KEEP") == "" && !w.t.Failed() {
		os.RemoveAll(w.dir)
	} else {
		w.t.Logf("e2e files kept in %s", w.dir)
	}
}

func (w *world) path(parts ...string) string {
	return filepath.Join(append([]string{w.dir}, parts...)...)
}

func (w *world) write(name, content string, mode os.FileMode) string {
	w.t.Helper()
	p := w.path(name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		w.t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), mode); err != nil {
		w.t.Fatal(err)
	}
	return p
}

func (w *world) run(name string, args ...string) string {
	w.t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = w.dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		w.t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// start runs a foreground daemon, logging to dir/name.log, and remembers it for stop.
func (w *world) start(name string, args ...string) *exec.Cmd {
	w.t.Helper()
	logf, err := os.Create(w.path(name + ".log"))
	if err != nil {
		w.t.Fatal(err)
	}
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Dir = w.dir
	cmd.Stdout, cmd.Stderr = logf, logf
	// The suite's own TLSGATE_E2E_* switches are not tlsgate's: it refuses unknown
	// TLSGATE_ variables.
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "TLSGATE_E2E_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		w.t.Fatalf("start %s: %v", name, err)
	}
	w.procs = append(w.procs, cmd)
	return cmd
}

// certificates creates the test CA and one certificate per MX behaviour (the policy
// server's certificates are made in policyServer).
func (w *world) certificates() {
	w.ca = fake.NewCA(w.t, "tlsgate e2e root")
	w.write("certs/ca.pem", string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: w.ca.Cert.Raw})), 0o644)
	// The root's public key alone: a tafile= trust anchor (postconf(5)
	// smtp_tls_trust_anchor_file: "openssl x509 ... -pubkey").
	w.write("certs/ca-key.pem", string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: w.ca.Cert.RawSubjectPublicKeyInfo})), 0o644)
	// A root nothing here is issued by: a tafile= that trusts no MX (issue 13).
	other := fake.NewCA(w.t, "tlsgate e2e unrelated root")
	w.write("certs/other-ca.pem", string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: other.Cert.Raw})), 0o644)
	past := time.Now().Add(-72 * time.Hour)
	for _, h := range mxHosts {
		var c tls.Certificate
		switch h.behaviour {
		case "good", "sts":
			c = w.ca.Issue(w.t, fake.CertOptions{DNSNames: []string{h.name}})
		case "legacy", "legacy-rsa":
			// RSA, as the old servers have: RSA key exchange needs it, and below TLS
			// 1.2 its ServerKeyExchange signature is MD5+SHA-1.
			c = w.ca.Issue(w.t, fake.CertOptions{DNSNames: []string{h.name}, RSA: true})
		case "selfsigned":
			c = fake.SelfSigned(w.t, fake.CertOptions{DNSNames: []string{h.name}})
		case "wrongname":
			c = w.ca.Issue(w.t, fake.CertOptions{DNSNames: []string{"mail.other.example"}})
		case "sni":
			c = w.ca.Issue(w.t, fake.CertOptions{DNSNames: []string{"default.sni.example"}})
			w.sniChains(h.name)
		case "expired":
			c = w.ca.Issue(w.t, fake.CertOptions{DNSNames: []string{h.name}, NotBefore: past.Add(-48 * time.Hour), NotAfter: past})
		case "constrained":
			sub := w.ca.ConstrainedIntermediate(w.t, "attacker.test sub-CA", fake.NameConstraints{Permitted: []string{"attacker.test"}})
			c = sub.Issue(w.t, fake.CertOptions{CommonName: h.name})
		default:
			continue
		}
		var chain bytes.Buffer
		for _, der := range c.Certificate {
			pem.Encode(&chain, &pem.Block{Type: "CERTIFICATE", Bytes: der})
		}
		if h.behaviour == "good" {
			// DANE-TA: the trust anchor must be in the presented chain (RFC 7671 §5.2.2).
			pem.Encode(&chain, &pem.Block{Type: "CERTIFICATE", Bytes: w.ca.Cert.Raw})
		}
		key, err := x509.MarshalPKCS8PrivateKey(c.PrivateKey)
		if err != nil {
			w.t.Fatal(err)
		}
		w.write("certs/"+h.behaviour+".crt", chain.String(), 0o644)
		w.write("certs/"+h.behaviour+".key", string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: key})), 0o600)
		w.pins[h.name] = fingerprint.Of(c.Certificate[0])
		// DANE: DANE-TA for the good host (names checked), DANE-EE for the
		// self-signed and the expired one (names and dates ignored), a digest that
		// matches nothing for the wrong-name host.
		owner := "_25._tcp." + h.name + "."
		switch h.behaviour {
		case "good":
			w.tlsa = append(w.tlsa, fake.TLSA(owner, 2, 0, 1, w.ca.Cert))
		case "selfsigned":
			w.tlsa = append(w.tlsa, fake.TLSA(owner, 3, 1, 1, c.Leaf))
		case "expired":
			w.tlsa = append(w.tlsa, fake.TLSA(owner, 3, 0, 1, c.Leaf))
		case "wrongname":
			w.tlsa = append(w.tlsa, owner+" 300 IN TLSA 3 1 1 "+strings.Repeat("5A", 32))
		case "legacy", "legacy-rsa":
			w.tlsa = append(w.tlsa, fake.TLSA(owner, 3, 1, 1, c.Leaf))
		}
	}
}

// sniChains writes the SNI server's tls_server_sni_maps source (sni.map) and its chain
// files, each a private key followed by its certificate (postconf(5)
// tls_server_sni_maps): host's own CA-issued certificate for SNI host, a self-signed
// one for SNI other.sni.test.
func (w *world) sniChains(host string) {
	var m strings.Builder
	for _, e := range []struct {
		name string
		cert tls.Certificate
	}{
		{host, w.ca.Issue(w.t, fake.CertOptions{DNSNames: []string{host}})},
		{"other.sni.test", fake.SelfSigned(w.t, fake.CertOptions{DNSNames: []string{"other.sni.test"}})},
	} {
		key, err := x509.MarshalPKCS8PrivateKey(e.cert.PrivateKey)
		if err != nil {
			w.t.Fatal(err)
		}
		var chain bytes.Buffer
		pem.Encode(&chain, &pem.Block{Type: "PRIVATE KEY", Bytes: key})
		for _, der := range e.cert.Certificate {
			pem.Encode(&chain, &pem.Block{Type: "CERTIFICATE", Bytes: der})
		}
		file := w.write("certs/sni-"+e.name+".pem", chain.String(), 0o600)
		fmt.Fprintf(&m, "%s %s\n", e.name, file)
	}
	// texthash reads the files named on the right-hand side itself (dict_thash.c,
	// DICT_FLAG_SRC_RHS_IS_FILE): no postmap -F needed.
	w.write("certs/sni.map", m.String(), 0o644)
}

// zone data: "test." is signed, "unsigned.test." is an unsigned delegation,
// "bogus.test." is signed with expired signatures (a validating resolver says SERVFAIL),
// "sts.test." is an unsigned delegation holding the MTA-STS domains (sts_test.go adds
// their records, and dane-sts.test's to "test.").
const testZone = `$ORIGIN test.
$TTL 60
@ IN SOA ns.test. hostmaster.test. 1 3600 600 86400 60
@ IN NS ns.test.
ns IN A {{.NS}}
{{range .MX}}{{.Name}}. IN A {{.IP}}
{{end}}
tls IN MX 10 mx.tls.test.
notls IN MX 10 mx.notls.test.
selfsigned IN MX 10 mx.selfsigned.test.
wrongname IN MX 10 mx.wrongname.test.
expired IN MX 10 mx.expired.test.
greet421 IN MX 10 mx.greet421.test.
greet450 IN MX 10 mx.greet450.test.
tarpit IN MX 10 mx.tarpit.test.
refused IN MX 10 mx.refused.test.
secondmx IN MX 10 mx.notls.test.
secondmx IN MX 20 mx.tls.test.
nullmx IN MX 0 .
implicit IN A 127.0.1.1
pin-tls IN MX 10 mx.tls.test.
pin-selfsigned IN MX 10 mx.selfsigned.test.
pin-wrong IN MX 10 mx.tls.test.
badpolicy IN MX 10 mx.tls.test.
unsigned IN NS ns.unsigned.test.
ns.unsigned IN A {{.NS}}
bogus IN NS ns.bogus.test.
ns.bogus IN A {{.NS}}
sts IN NS ns.sts.test.
ns.sts IN A {{.NS}}
constrained IN MX 10 mx.constrained.test.
legacy IN MX 10 mx.legacy.test.
legacy-rsa IN MX 10 mx.legacy-rsa.test.
pin-legacy IN MX 10 mx.legacy.test.
pin-legacy-rsa IN MX 10 mx.legacy-rsa.test.
protocols-legacy IN MX 10 mx.legacy-rsa.test.
sni-host IN MX 10 mx.sni.test.
sni-none IN MX 10 mx.sni.test.
sni-other IN MX 10 mx.sni.test.
ta-ca IN MX 10 mx.tls.test.
ta-other IN MX 10 mx.tls.test.
ta-leaf IN MX 10 mx.selfsigned.test.
ta-leaf-secure IN MX 10 mx.selfsigned.test.
ta-missing IN MX 10 mx.tls.test.
ta-absent IN MX 10 mx.sts.test.
ta-key IN MX 10 mx.sts.test.
`

const unsignedZone = `$ORIGIN unsigned.test.
$TTL 60
@ IN SOA ns.test. hostmaster.test. 1 3600 600 86400 60
@ IN NS ns.unsigned.test.
ns IN A {{.NS}}
@ IN MX 10 mx.unsigned.test.
mx IN A 127.0.1.1
`

const bogusZone = `$ORIGIN bogus.test.
$TTL 60
@ IN SOA ns.test. hostmaster.test. 1 3600 600 86400 60
@ IN NS ns.bogus.test.
ns IN A {{.NS}}
@ IN MX 10 mx.bogus.test.
mx IN A 127.0.1.1
`

func (w *world) tmpl(name, text string, data any) string {
	w.t.Helper()
	var b bytes.Buffer
	if err := template.Must(template.New(name).Parse(text)).Execute(&b, data); err != nil {
		w.t.Fatal(err)
	}
	return b.String()
}

// keygen makes a KSK and a ZSK for zone and returns their base names.
func (w *world) keygen(zone string) (ksk, zsk string) {
	ksk = strings.TrimSpace(w.run("ldns-keygen", "-a", "ECDSAP256SHA256", "-k", zone))
	zsk = strings.TrimSpace(w.run("ldns-keygen", "-a", "ECDSAP256SHA256", zone))
	return ksk, zsk
}

// dnsWorld signs the zones and starts nsd and unbound. It returns the trust anchor file.
func (w *world) dnsWorld() {
	type mx struct{ Name, IP string }
	data := struct {
		NS string
		MX []mx
	}{NS: nsdAddr}
	for _, h := range mxHosts {
		if !inChildZone(h.name) {
			data.MX = append(data.MX, mx{h.name, h.ip})
		}
	}
	w.write("unsigned.test.zone", w.tmpl("unsigned", unsignedZone, data), 0o644)
	w.write("sts.test.zone", w.tmpl("sts", stsZoneHead, data)+stsRecords(stsZone), 0o644)

	// bogus.test: signed, DS in the parent, but signatures expired in 2020.
	w.write("bogus.test.zone", w.tmpl("bogus", bogusZone, data), 0o644)
	bksk, bzsk := w.keygen("bogus.test.")
	w.run("ldns-signzone", "-n", "-i", "20191201000000", "-e", "20200101000000", "bogus.test.zone", bksk, bzsk)
	ds, err := os.ReadFile(w.path(bksk + ".ds"))
	if err != nil {
		w.t.Fatal(err)
	}

	w.write("test.zone", w.tmpl("test", testZone, data)+string(ds)+strings.Join(w.tlsa, "\n")+"\n"+stsRecords("test"), 0o644)
	ksk, zsk := w.keygen("test.")
	w.run("ldns-signzone", "-n", "test.zone", ksk, zsk)

	w.write("nsd.conf", fmt.Sprintf(`server:
  ip-address: %[1]s@5353
  port: 5353
  username: ""
  chroot: ""
  zonesdir: "%[2]s"
  pidfile: "%[2]s/nsd.pid"
  database: ""
  zonelistfile: "%[2]s/nsd.zonelist"
  xfrdfile: "%[2]s/nsd.xfrd"
  xfrdir: "%[2]s"
  verbosity: 1
remote-control:
  control-enable: no
zone:
  name: test.
  zonefile: test.zone.signed
zone:
  name: unsigned.test.
  zonefile: unsigned.test.zone
zone:
  name: bogus.test.
  zonefile: bogus.test.zone.signed
zone:
  name: sts.test.
  zonefile: sts.test.zone
`, nsdAddr, w.dir), 0o644)
	w.start("nsd", "nsd", "-d", "-c", w.path("nsd.conf"))

	// unbound: validates with the test. key as trust anchor, asks only nsd, refuses
	// everything outside test. ("test." is one of unbound's built-in local zones).
	w.write("unbound.conf", fmt.Sprintf(`server:
  interface: %[1]s
  port: 53
  do-ip6: no
  do-daemonize: no
  chroot: ""
  username: ""
  directory: "%[2]s"
  pidfile: "%[2]s/unbound.pid"
  use-syslog: no
  logfile: ""
  verbosity: 1
  val-log-level: 2
  access-control: 127.0.0.0/8 allow
  do-not-query-localhost: no
  module-config: "validator iterator"
  trust-anchor-file: "%[2]s/%[3]s.key"
  local-zone: "test." transparent
  local-zone: "." refuse
  cache-max-ttl: 10
  cache-max-negative-ttl: 10
  qname-minimisation: no
stub-zone:
  name: "test."
  stub-addr: %[4]s@5353
remote-control:
  control-enable: no
`, resolverAddr, w.dir, ksk, nsdAddr), 0o644)
	w.start("unbound", "unbound", "-d", "-c", w.path("unbound.conf"))

	w.waitFor("validating resolver", func() error {
		m := new(dns.Msg)
		m.SetQuestion("tls.test.", dns.TypeMX)
		m.SetEdns0(1232, true)
		r, err := dns.Exchange(m, resolverAddr+":53")
		if err != nil {
			return err
		}
		if r.Rcode != dns.RcodeSuccess || !r.AuthenticatedData || len(r.Answer) == 0 {
			return fmt.Errorf("rcode %s ad=%v answers=%d", dns.RcodeToString[r.Rcode], r.AuthenticatedData, len(r.Answer))
		}
		return nil
	})
}

func (w *world) waitFor(what string, probe func() error) {
	w.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	var err error
	for time.Now().Before(deadline) {
		if err = probe(); err == nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	w.t.Fatalf("%s not ready: %v", what, err)
}

// masterServices are the Postfix services every instance needs (no chroot).
const masterServices = `pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
local     unix  -       n       n       -       -       local
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
`

// postfixInstance writes and starts one Postfix instance named name. ns, when set,
// runs it in a private mount namespace whose /etc/resolv.conf points at ns.
func (w *world) postfixInstance(name, mainExtra, master, ns string) string {
	w.t.Helper()
	base := w.path("pf-" + name)
	conf := filepath.Join(base, "conf")
	for _, d := range []string{conf, filepath.Join(base, "queue"), filepath.Join(base, "data")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			w.t.Fatal(err)
		}
	}
	w.run("chown", "postfix", filepath.Join(base, "data"))
	main := fmt.Sprintf(`compatibility_level = 3.6
queue_directory = %[1]s/queue
data_directory = %[1]s/data
maillog_file = %[1]s/maillog
maillog_file_prefixes = %[2]s
inet_interfaces = loopback-only
inet_protocols = ipv4
myhostname = %[3]s.e2e.test
mydestination =
alias_maps =
alias_database =
mynetworks = 127.0.0.0/8
smtpd_relay_restrictions = permit_mynetworks, reject
smtpd_peername_lookup = no
biff = no
smtputf8_enable = no
`, base, w.dir, name) + mainExtra
	w.write("pf-"+name+"/conf/main.cf", main, 0o644)
	if settings := w.postconf[name]; len(settings) > 0 {
		w.run("postconf", append([]string{"-c", conf, "-e"}, settings...)...)
	}
	w.write("pf-"+name+"/conf/master.cf", master+masterServices, 0o644)
	w.pf = append(w.pf, conf)
	start := fmt.Sprintf("postfix -c %s start", conf)
	var cmd *exec.Cmd
	if ns != "" {
		// The oracle's SMTP client resolves through libc: give it its own resolv.conf
		// in a private mount namespace (never touch the machine's). trust-ad makes
		// glibc keep the AD bit, which smtp_dns_support_level=dnssec needs.
		rc := w.write("pf-"+name+"/resolv.conf", "nameserver "+ns+"\noptions trust-ad\n", 0o644)
		cmd = exec.Command("unshare", "--mount", "--propagation", "private", "sh", "-c",
			fmt.Sprintf("mount --bind %s /etc/resolv.conf && %s", rc, start))
	} else {
		cmd = exec.Command("sh", "-c", start)
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		w.t.Fatalf("starting postfix %s: %v\n%s\n%s", name, err, out, w.tail(filepath.Join(base, "maillog")))
	}
	return base
}

func (w *world) tail(path string) string {
	b, _ := os.ReadFile(path)
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) > 30 {
		lines = lines[len(lines)-30:]
	}
	return strings.Join(lines, "\n")
}

// mxPostfix starts the receiving MX servers: one Postfix, one master.cf line per
// loopback address, each with its own TLS and greeting behaviour. Mail is discarded.
func (w *world) mxPostfix() {
	var master strings.Builder
	for _, h := range mxHosts {
		svc := h.ip + ":smtp inet n - n - - smtpd -o myhostname=" + h.name
		switch h.behaviour {
		case "good", "selfsigned", "wrongname", "expired", "sts", "constrained", "sni":
			svc += fmt.Sprintf(" -o smtpd_tls_security_level=may -o smtpd_tls_cert_file=%s -o smtpd_tls_key_file=%s",
				w.path("certs", h.behaviour+".crt"), w.path("certs", h.behaviour+".key"))
			if h.behaviour == "sni" {
				svc += " -o tls_server_sni_maps=texthash:" + w.path("certs", "sni.map")
			}
		case "legacy", "legacy-rsa":
			// TLS 1.0 and 1.1 only. @SECLEVEL=0 makes this OpenSSL 3 behave as the old
			// servers do: sign with MD5+SHA-1, offer anonymous suites.
			ciphers := "aNULL:-aNULL:HIGH:MEDIUM:+RC4:@STRENGTH:@SECLEVEL=0"
			if h.behaviour == "legacy-rsa" {
				ciphers = "kRSA:!aNULL:!eNULL:@STRENGTH:@SECLEVEL=0"
			}
			svc += fmt.Sprintf(" -o smtpd_tls_security_level=may -o smtpd_tls_cert_file=%s -o smtpd_tls_key_file=%s"+
				" -o smtpd_tls_protocols=>=TLSv1,<=TLSv1.1 -o tls_medium_cipherlist=%s",
				w.path("certs", h.behaviour+".crt"), w.path("certs", h.behaviour+".key"), ciphers)
		case "notls":
			svc += " -o smtpd_tls_security_level=none"
		case "greet421":
			svc += " -o smtpd_delay_reject=no -o {smtpd_client_restrictions=check_client_access static:{421 4.3.2 Service shutting down}}"
		case "greet450":
			svc += " -o smtpd_delay_reject=no -o {smtpd_client_restrictions=check_client_access static:{450 4.7.1 Greylisted, try again later}}"
		default:
			continue
		}
		master.WriteString(svc + "\n")
	}
	w.postfixInstance("mx", "default_transport = discard\nsmtpd_tls_loglevel = 1\n", master.String(), "")
	for _, h := range mxHosts {
		if h.behaviour == "tarpit" {
			w.tarpit(h.ip + ":25")
		}
	}
	w.waitFor("MX servers", func() error {
		for _, h := range mxHosts {
			if h.behaviour == "none" {
				continue
			}
			c, err := net.DialTimeout("tcp", h.ip+":25", time.Second)
			if err != nil {
				return err
			}
			c.Close()
		}
		return nil
	})
}

// tarpit accepts connections and never says anything.
func (w *world) tarpit(addr string) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		w.t.Fatal(err)
	}
	var conns []net.Conn
	done := make(chan struct{})
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				close(done)
				return
			}
			conns = append(conns, c)
		}
	}()
	w.t.Cleanup(func() {
		ln.Close()
		<-done
		for _, c := range conns {
			c.Close()
		}
	})
}

// swaks submits one message and returns what it printed.
func swaks(t *testing.T, server, from, to string, extra ...string) string {
	t.Helper()
	args := append([]string{"--server", server, "--from", from, "--to", to, "--helo", "client.e2e.test",
		"--timeout", "60", "--header", "Subject: tlsgate e2e"}, extra...)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	out, _ := exec.CommandContext(ctx, "swaks", args...).CombinedOutput() // a rejected RCPT is a non-zero exit
	return string(out)
}

// rcptReply is the server's reply to RCPT TO in swaks output ("<-  250 ..." or "<** 550 ...").
func rcptReply(out string) string {
	sc := bufio.NewScanner(strings.NewReader(out))
	afterRcpt := false
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, " -> RCPT TO") {
			afterRcpt = true
			continue
		}
		if afterRcpt && (strings.HasPrefix(line, "<-  ") || strings.HasPrefix(line, "<** ")) {
			return strings.TrimSpace(line[4:])
		}
	}
	return ""
}

// firstRefusal is the first non-2xx/3xx reply swaks printed ("<** ..."), or "".
func firstRefusal(out string) string {
	for _, line := range strings.Split(out, "\n") {
		if strings.HasPrefix(line, "<** ") {
			return strings.TrimSpace(line[4:])
		}
	}
	return ""
}

var queuedRE = regexp.MustCompile(`queued as ([0-9A-Za-z]+)`)

func queueID(out string) string {
	if m := queuedRE.FindStringSubmatch(out); m != nil {
		return m[1]
	}
	return ""
}
