//go:build e2e

package e2e

// The packaging in contrib/, checked with the real tools: the Postfix snippets against
// Debian's default configuration (postconf, postfix check, and a running instance with
// a chrooted smtpd talking to tlsgate through the socket the systemd drop-in puts in
// the queue directory), and the systemd unit with systemd-analyze. Neither needs the
// DNS and MX world of TestE2E.

import (
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
	"unicode"
)

const (
	contribDir = "../../contrib"
	// contribSMTPAddr is the scratch Postfix's smtpd; contribDeadDNS has no server, so
	// every recipient tlsgate checks gets a quick 451 4.4.3 (dns-error), and every one
	// it does not check gets 250.
	contribSMTPAddr = "127.0.2.1:2525"
	contribDeadDNS  = "127.0.2.9:53"
)

// Debian's defaults as the postfix package ships them: main.cf for a fresh install
// (what debconf writes adds site names and maps, which the scratch instance sets
// itself) and master.cf (identical to the installed /etc/postfix/master.cf).
var debianDefaults = map[string]string{
	"main.cf":   "/usr/share/postfix/main.cf.debian",
	"master.cf": "/usr/share/postfix/master.cf.dist",
}

// TestContribPostfix appends contrib/postfix's snippets to Debian's default main.cf and
// master.cf in a scratch configuration directory, builds the maps, and requires
// postconf and postfix check to be silent (they only warn, on stderr, about unknown
// parameters, including -o options in master.cf). It then starts that instance and
// tlsgate configured as the systemd unit with the Debian drop-in configures it, and
// checks through Postfix that customers' sender-dependent transports and the shared
// tls_policy file reach tlsgate.
func TestContribPostfix(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("the contrib test runs postfix check and a Postfix instance and must run as root (see README)")
	}
	for _, tool := range []string{"postfix", "postconf", "postmap", "go"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s not found: run test/e2e/install.sh first (%v)", tool, err)
		}
	}
	base := scratchDir(t, "tlsgate-contrib-")
	conf, queue, data := filepath.Join(base, "conf"), filepath.Join(base, "queue"), filepath.Join(base, "data")
	for _, d := range []string{conf, queue, data} {
		mustMkdir(t, d, 0o755)
	}
	mustRun(t, "chown", "postfix", data)

	// The snippets name /etc/postfix/...: point those paths at the scratch directory.
	etc := strings.NewReplacer("/etc/postfix/", conf+"/")
	mainSnippet := etc.Replace(readContrib(t, "postfix/main.cf.snippet"))
	masterSnippet := etc.Replace(readContrib(t, "postfix/master.cf.snippet"))

	// main.cf: Debian's default, what makes it a private loopback instance, the snippet.
	// Nothing below sets a parameter the snippet sets.
	mainCf := readFile(t, debianDefaults["main.cf"]) + fmt.Sprintf(`
# scratch instance
queue_directory = %[1]s/queue
data_directory = %[1]s/data
maillog_file = %[1]s/maillog
maillog_file_prefixes = %[1]s
inet_interfaces = loopback-only
inet_protocols = ipv4
myhostname = contrib.e2e.test
mydestination =
mynetworks = 127.0.0.0/8
alias_maps =
alias_database =
smtpd_peername_lookup = no

`, base) + mainSnippet
	writeFile(t, filepath.Join(conf, "main.cf"), mainCf)

	// master.cf: Debian's, with smtpd on a loopback port and still chrooted, as Debian
	// ships it: the snippet's unix:/tlsgate/milter.sock is then relative to the queue
	// directory, which is the point.
	masterCf := readFile(t, debianDefaults["master.cf"])
	smtpLine := regexp.MustCompile(`(?m)^smtp(\s+inet\s.*)$`)
	m := smtpLine.FindStringSubmatch(masterCf)
	if m == nil {
		t.Fatalf("%s has no smtp inet service", debianDefaults["master.cf"])
	}
	if f := strings.Fields(m[0]); len(f) < 8 || f[4] != "y" {
		t.Fatalf("Debian's master.cf no longer runs smtpd chrooted (%q): revisit smtpd_milters in contrib/postfix/main.cf.snippet and contrib/systemd/debian-chroot.conf", m[0])
	}
	masterCf = smtpLine.ReplaceAllString(masterCf, contribSMTPAddr+"$1")
	writeFile(t, filepath.Join(conf, "master.cf"), masterCf+"\n"+masterSnippet)

	for _, name := range []string{"tls_policy", "sender_transport"} {
		writeFile(t, filepath.Join(conf, name), readContrib(t, "postfix/"+name))
		postfixQuiet(t, "postmap", "-c", conf, "hash:"+filepath.Join(conf, name))
	}

	postfixQuiet(t, "postconf", "-c", conf, "-n")
	services := postfixQuiet(t, "postconf", "-c", conf, "-M")
	postfixQuiet(t, "postfix", "-c", conf, "check")

	// Every transport sender_transport names is a service of master.cf.snippet, and
	// every service there is in the checked_transports the snippet tells tlsgate to use:
	// Postfix reports the sender-dependent transport as {rcpt_mailer}, and tlsgate
	// passes unchecked what it does not check.
	defined := map[string]bool{}
	for _, line := range strings.Split(readContrib(t, "postfix/master.cf.snippet"), "\n") {
		if f := strings.Fields(line); len(f) > 1 && !strings.HasPrefix(line, "#") && !unicode.IsSpace(rune(line[0])) {
			defined[f[0]] = true
			if !strings.Contains(services, f[0]+" ") {
				t.Errorf("postconf -M does not list %s:\n%s", f[0], services)
			}
		}
	}
	for _, line := range strings.Split(readContrib(t, "postfix/sender_transport"), "\n") {
		if f := strings.Fields(line); len(f) == 2 && !strings.HasPrefix(f[0], "#") {
			if xport, _, _ := strings.Cut(f[1], ":"); !defined[xport] {
				t.Errorf("sender_transport: %q uses transport %s, which master.cf.snippet does not define", f[0], xport)
			}
		}
	}
	checked := checkedTransports(t, readContrib(t, "postfix/master.cf.snippet"))
	for s := range defined {
		if !strings.Contains(","+checked+",", ","+s+",") {
			t.Errorf("master.cf.snippet defines %s but its checked_transports (%s) lacks it", s, checked)
		}
	}
	if t.Failed() {
		return
	}

	// tlsgate as systemd would run it with contrib/systemd's unit and Debian drop-in,
	// with the unit's paths moved into the scratch directory.
	paths := strings.NewReplacer("/var/spool/postfix", queue, "/var/lib/tlsgate", filepath.Join(base, "state"),
		"/run/tlsgate", filepath.Join(base, "run"))
	mustMkdir(t, filepath.Join(base, "state"), 0o700)
	mustMkdir(t, filepath.Join(base, "run"), 0o755)
	unit := parseUnit(t, readContrib(t, "systemd/tlsgate.service"), readContrib(t, "systemd/debian-chroot.conf"))
	for _, pre := range unit["ExecStartPre"] {
		args := strings.Fields(paths.Replace(strings.TrimLeft(pre, "+-@:!")))
		mustRun(t, args[0], args[1:]...)
	}
	env := []string{
		"TLSGATE_POLICY_FILES=" + filepath.Join(conf, "tls_policy"),
		"TLSGATE_MILTER_CHECKED_TRANSPORTS=" + checked,
		"TLSGATE_DNS_RESOLVER=" + contribDeadDNS,
		"TLSGATE_PROBE_HELO=probe.e2e.test",
	}
	for _, e := range unit["Environment"] {
		if strings.ContainsAny(e, `"' `) {
			t.Fatalf("Environment=%s: this test reads one unquoted assignment per line", e)
		}
		env = append(env, paths.Replace(e)) // later ones win: the drop-in's listen address
	}
	bin := filepath.Join(base, "tlsgate")
	buildTLSGate(t, bin)
	gateLog := filepath.Join(base, "tlsgate.log")
	startDaemon(t, gateLog, env, bin, "serve", "--config", filepath.Join(contribDir, "tlsgate.yaml"))
	sock := filepath.Join(queue, "tlsgate", "milter.sock")
	waitUntil(t, "tlsgate socket "+sock, func() error {
		_, err := os.Stat(sock)
		return err
	}, gateLog)
	if st, err := os.Stat(sock); err != nil {
		t.Fatal(err)
	} else if gid := st.Sys().(*syscall.Stat_t).Gid; st.Mode().Perm() != 0o660 || lookupGroup(t, "postfix") != gid {
		t.Errorf("socket %s: mode %v gid %d; want 0660 and group postfix", sock, st.Mode().Perm(), gid)
	}

	maillog := filepath.Join(base, "maillog")
	t.Cleanup(func() { stopPostfix(t, conf, queue) })
	if out, err := exec.Command("postfix", "-c", conf, "start").CombinedOutput(); err != nil {
		t.Fatalf("postfix start: %v\n%s\n%s", err, out, tailFile(maillog))
	}
	waitUntil(t, "scratch Postfix", func() error {
		c, err := net.DialTimeout("tcp", contribSMTPAddr, time.Second)
		if err == nil {
			c.Close()
		}
		return err
	}, maillog)

	tests := []struct {
		name, from, to string
		code           int
		reply, rule    string // in the RCPT reply; in tlsgate's log
	}{
		// sender_transport sends acme's mail through smtp-encrypt, which tlsgate checks
		// at acme's level.
		{"customer toggle", "someone@acme.example", "user@anywhere.example", 451, "4.4.3", "rule=customer:acme"},
		// A domain of the shared tls_policy file, for any sender.
		{"tls_policy domain", "someone@other.example", "user@supplier.example", 451, "4.4.3", "rule=policy:supplier.example"},
		{"no requirement", "someone@other.example", "user@nopolicy.example", 250, "", ""},
	}
	for _, tc := range tests {
		code, reply := rcptThrough(t, tc.from, tc.to)
		if code != tc.code || !strings.Contains(reply, tc.reply) {
			t.Errorf("%s: RCPT TO:<%s> from <%s>: %d %s; want %d %s\n%s\n%s", tc.name, tc.to, tc.from, code, reply,
				tc.code, tc.reply, tailFile(maillog), tailFile(gateLog))
		}
		if tc.rule != "" && !strings.Contains(readFile(t, gateLog), tc.rule) {
			t.Errorf("%s: tlsgate did not log %s:\n%s", tc.name, tc.rule, tailFile(gateLog))
		}
	}
	// The example configuration and the shared tls_policy file load without a warning.
	for _, line := range strings.Split(readFile(t, gateLog), "\n") {
		if strings.Contains(line, "level=WARN msg=policy") || strings.Contains(line, "level=WARN msg=configuration") {
			t.Errorf("tlsgate warned: %s", line)
		}
	}
}

// TestContribSystemd verifies contrib/systemd's unit, alone and with the Debian drop-in,
// with systemd-analyze in a scratch root that holds systemd's units and the programs the
// unit runs (verify checks that they exist), and bounds its exposure score.
func TestContribSystemd(t *testing.T) {
	for _, tool := range []string{"systemd-analyze", "go"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s not found: run test/e2e/install.sh first (%v)", tool, err)
		}
	}
	root := scratchDir(t, "tlsgate-systemd-")
	unitDir := filepath.Join(root, "etc/systemd/system")
	mustMkdir(t, filepath.Join(unitDir, "tlsgate.service.d"), 0o755)
	mustMkdir(t, filepath.Join(root, "usr/lib/systemd"), 0o755)
	systemUnits := "/usr/lib/systemd/system"
	if _, err := os.Stat(systemUnits); err != nil {
		systemUnits = "/lib/systemd/system"
	}
	mustRun(t, "cp", "-a", systemUnits, filepath.Join(root, "usr/lib/systemd/"))

	service := readContrib(t, "systemd/tlsgate.service")
	dropIn := readContrib(t, "systemd/debian-chroot.conf")
	unit := parseUnit(t, service, dropIn)
	for _, key := range []string{"ExecStartPre", "ExecStart", "ExecReload"} {
		for _, cmd := range unit[key] {
			prog := strings.Fields(strings.TrimLeft(cmd, "+-@:!"))[0]
			dst := filepath.Join(root, prog)
			mustMkdir(t, filepath.Dir(dst), 0o755)
			if filepath.Base(prog) == "tlsgate" {
				buildTLSGate(t, dst)
			} else {
				mustRun(t, "cp", prog, dst)
			}
		}
	}

	analyze := func(args ...string) {
		t.Helper()
		out, err := exec.Command("systemd-analyze", append(args, "--root="+root, "tlsgate.service")...).CombinedOutput()
		report := strings.TrimSpace(string(out))
		if args[0] == "security" && err == nil {
			report = report[strings.LastIndexByte(report, '\n')+1:] // "→ Overall exposure level ..."
		}
		t.Logf("systemd-analyze %s: %s", strings.Join(args, " "), report)
		if err != nil {
			t.Errorf("systemd-analyze %s: %v", strings.Join(args, " "), err)
		}
		if args[0] == "verify" && len(strings.TrimSpace(string(out))) > 0 {
			// verify exits 0 on keys it ignores; any output is a finding.
			t.Errorf("systemd-analyze verify is not silent")
		}
	}
	writeFile(t, filepath.Join(unitDir, "tlsgate.service"), service)
	analyze("verify", "--man=no")
	// Exposure 0 (locked down) to 10 (unprotected); the unit scores about 1.3. It keeps
	// the network, its socket's group and the host's root directory.
	analyze("security", "--offline=yes", "--threshold=20", "--no-pager")

	writeFile(t, filepath.Join(unitDir, "tlsgate.service.d", "debian-chroot.conf"), dropIn)
	analyze("verify", "--man=no")
	analyze("security", "--offline=yes", "--threshold=20", "--no-pager")
}

// checkedTransports is the checked_transports list the master.cf snippet documents, as
// a comma-separated value for TLSGATE_MILTER_CHECKED_TRANSPORTS.
func checkedTransports(t *testing.T, snippet string) string {
	t.Helper()
	const key = "checked_transports: ["
	_, rest, ok := strings.Cut(snippet, key)
	rest, _, closed := strings.Cut(rest, "]")
	if !ok || !closed {
		t.Fatal("master.cf.snippet does not say which checked_transports tlsgate needs")
	}
	list := strings.FieldsFunc(rest, func(r rune) bool { return r == ',' || r == '#' || unicode.IsSpace(r) })
	return strings.Join(list, ",")
}

// parseUnit returns the values of every assignment in the unit files, in order.
func parseUnit(t *testing.T, files ...string) map[string][]string {
	t.Helper()
	m := map[string][]string{}
	for _, f := range files {
		for _, line := range strings.Split(f, "\n") {
			line = strings.TrimSpace(line)
			if line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, ";") || strings.HasPrefix(line, "[") {
				continue
			}
			if strings.HasSuffix(line, `\`) {
				t.Fatalf("unit line %q continues: this test reads one line per assignment", line)
			}
			k, v, ok := strings.Cut(line, "=")
			if !ok {
				t.Fatalf("unit line %q is not an assignment", line)
			}
			m[k] = append(m[k], v)
		}
	}
	return m
}

// rcptThrough opens an SMTP session with the scratch Postfix and returns its reply to
// RCPT TO.
func rcptThrough(t *testing.T, from, to string) (int, string) {
	t.Helper()
	c, err := smtpDial(contribSMTPAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.cmd(t, 250, "EHLO client.e2e.test")
	c.cmd(t, 250, "MAIL FROM:<"+from+">")
	code, msg := c.try("RCPT TO:<" + to + ">")
	c.try("QUIT")
	return code, msg
}

// postfixQuiet runs a Postfix command that must succeed without a word on stderr:
// postconf and postfix check report unknown parameters as warnings there and exit 0.
func postfixQuiet(t *testing.T, name string, args ...string) string {
	t.Helper()
	var stdout, stderr strings.Builder
	cmd := exec.Command(name, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if err != nil || stderr.Len() > 0 {
		t.Errorf("%s %s: %v\n%s", name, strings.Join(args, " "), err, stderr.String())
	}
	if name == "postfix" && stdout.Len() > 0 {
		t.Errorf("%s %s printed:\n%s", name, strings.Join(args, " "), stdout.String())
	}
	return stdout.String()
}

func stopPostfix(t *testing.T, conf, queue string) {
	out, _ := exec.Command("postfix", "-c", conf, "stop").CombinedOutput()
	t.Logf("postfix -c %s stop: %s", conf, strings.TrimSpace(string(out)))
	if b, err := os.ReadFile(filepath.Join(queue, "pid", "master.pid")); err == nil {
		var pid int
		fmt.Sscan(strings.TrimSpace(string(b)), &pid)
		if pid > 0 && syscall.Kill(pid, 0) == nil {
			time.Sleep(time.Second)
			if syscall.Kill(pid, 0) == nil {
				syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	}
}

// startDaemon starts a foreground program with exactly env (plus PATH), logging to
// logFile, and stops it by PID when the test ends.
func startDaemon(t *testing.T, logFile string, env []string, args ...string) {
	t.Helper()
	f, err := os.Create(logFile)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH")}, env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", args[0], err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			cmd.Process.Kill()
			<-done
		}
		f.Close()
	})
}

func waitUntil(t *testing.T, what string, probe func() error, logFile string) {
	t.Helper()
	var err error
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if err = probe(); err == nil {
			return
		}
	}
	t.Fatalf("%s not ready: %v\n%s", what, err, tailFile(logFile))
}

func buildTLSGate(t *testing.T, out string) {
	t.Helper()
	if b, err := exec.Command("go", "build", "-o", out, "../../cmd/tlsgate").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, b)
	}
}

// scratchDir is a directory Postfix's unprivileged processes can traverse, removed
// when the test passes unless TLSGATE_E2E_KEEP is set.
func scratchDir(t *testing.T, prefix string) string {
	t.Helper()
	dir, err := os.MkdirTemp("", prefix)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if os.Getenv("TLSGATE_E2E_KEEP") == "" && !t.Failed() {
			os.RemoveAll(dir)
		} else {
			t.Logf("files kept in %s", dir)
		}
	})
	return dir
}

func lookupGroup(t *testing.T, name string) uint32 {
	t.Helper()
	for _, line := range strings.Split(readFile(t, "/etc/group"), "\n") {
		if f := strings.Split(line, ":"); len(f) > 2 && f[0] == name {
			var gid uint32
			fmt.Sscan(f[2], &gid)
			return gid
		}
	}
	t.Fatalf("no group %s", name)
	return 0
}

func readContrib(t *testing.T, name string) string {
	t.Helper()
	return readFile(t, filepath.Join(contribDir, name))
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func mustMkdir(t *testing.T, dir string, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(dir, mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, mode); err != nil {
		t.Fatal(err)
	}
}

func mustRun(t *testing.T, name string, args ...string) {
	t.Helper()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}

func tailFile(path string) string {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Sprintf("(%s: %v)", path, err)
	}
	defer f.Close()
	b, _ := io.ReadAll(f)
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) > 30 {
		lines = lines[len(lines)-30:]
	}
	return path + ":\n" + strings.Join(lines, "\n")
}
