//go:build e2e

package e2e

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/tls"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	gomilter "github.com/d--j/go-milter"
	"github.com/redis/go-redis/v9"

	"github.com/tlsgate/tlsgate/internal/fake"
	"github.com/tlsgate/tlsgate/policy"
	"github.com/tlsgate/tlsgate/verify"
)

// The fleet test: three `tlsgate serve` share one redis-server (Debian's package; Debian
// has no valkey-server), started and stopped by PID. Recipients are sent to the three
// milters directly with go-milter's client, as Postfix's smtpd would (three sending
// Postfix instances would add nothing the milter protocol does not show). The MX hosts
// of tls.test, implicit.test (127.0.1.1, STARTTLS with a certificate of the test CA) and
// notls.test (127.0.1.2, no STARTTLS) are fake SMTP servers that count the SMTP
// sessions tlsgate opens: that count is what "one probe per domain across the fleet"
// means.

const (
	redisAddr   = "127.0.0.6:6390"
	fleetSize   = 3
	fleetPrefix = "tlsgate:"
	fleetSecret = "e2e-fleet-secret-0123456789abcdef0123456789abcdef"
)

// fleetMember is one tlsgate of the fleet.
type fleetMember struct {
	milter, metrics, admin string
}

func fleetMilter(i int) fleetMember {
	return fleetMember{
		milter:  fmt.Sprintf("%s:%d", milterAddr, 10031+i),
		metrics: fmt.Sprintf("%s:%d", milterAddr, 9431+i),
	}
}

func TestSharedTier(t *testing.T) {
	w := newWorld(t)
	w.certificates()
	w.dnsWorld()
	if _, err := exec.LookPath("redis-server"); err != nil {
		t.Fatalf("redis-server not found: run test/e2e/install.sh first (%v)", err)
	}
	good, err := tls.LoadX509KeyPair(w.path("certs", "good.crt"), w.path("certs", "good.key"))
	if err != nil {
		t.Fatal(err)
	}
	mxTLS := fake.StartSMTPPort(t, "127.0.1.1", 25, fake.Behavior{Hostname: "mx.tls.test", Cert: &good})
	mxNoTLS := fake.StartSMTPPort(t, "127.0.1.2", 25, fake.Behavior{Hostname: "mx.notls.test", NoStartTLS: true})

	redisCmd := w.startRedis("redis")
	secret := w.write("fleet.secret", fleetSecret+"\n", 0o600)
	bin := w.path("tlsgate")
	if out, err := exec.Command("go", "build", "-o", bin, "../../cmd/tlsgate").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	var fleet []fleetMember
	for i := range fleetSize {
		m := fleetMilter(i)
		m.admin = w.path(fmt.Sprintf("admin%d.sock", i))
		cfg := w.write(fmt.Sprintf("fleet%d.yaml", i), fmt.Sprintf(`milter:
  listen: inet:%s
  rcpt_timeout: 5s
dns:
  resolver: %s:53
  timeout: 2s
probe:
  helo: probe%d.e2e.test
  timeout: 3s
  ca_file: %s
  allow_networks: [127.0.0.0/8]
  rate_per_address: 100
mta_sts:
  enabled: false
metrics:
  listen: %s
log:
  level: debug
cache:
  admin_socket: %s
  shared:
    url: redis://%s/0
    secret_file: %s
policies:
  - domain: .test
    level: encrypt
`, m.milter, resolverAddr, i, w.path("certs", "ca.pem"), m.metrics, m.admin, redisAddr, secret), 0o644)
		w.start(fmt.Sprintf("tlsgate%d", i), bin, "serve", "--config", cfg)
		fleet = append(fleet, m)
	}
	for _, m := range fleet {
		w.waitFor("tlsgate "+m.milter, func() error {
			c, err := net.DialTimeout("tcp", m.milter, time.Second)
			if err == nil {
				c.Close()
			}
			return err
		})
	}
	const deadline = 5*time.Second + time.Second // rcpt_timeout and the client's slack

	t.Run("burst: one SMTP session for the fleet", func(t *testing.T) {
		const n = 30
		answers := make([]string, n)
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i := range n {
			wg.Go(func() {
				<-start
				answers[i] = milterRcpt(t, fleet[i%fleetSize].milter, fmt.Sprintf("user%d@tls.test", i))
			})
		}
		close(start)
		wg.Wait()
		for i, a := range answers {
			if a != "accept" {
				t.Errorf("RCPT %d at host %d: %s, want accept", i, i%fleetSize, a)
			}
		}
		if got := mxTLS.Connections(); got != 1 {
			t.Errorf("%d concurrent RCPTs over %d hosts opened %d SMTP sessions at tls.test's MX, want exactly 1", n, fleetSize, got)
		}
		t.Logf("%d concurrent RCPTs for tls.test over %d hosts: %d SMTP session(s) at its MX", n, fleetSize, mxTLS.Connections())
	})

	t.Run("a purged fail is re-probed at another host", func(t *testing.T) {
		if a := milterRcpt(t, fleet[0].milter, "a@notls.test"); !strings.HasPrefix(a, "5") {
			t.Fatalf("notls.test at host 0: %s, want a 5xx rejection", a)
		}
		if a := milterRcpt(t, fleet[1].milter, "b@notls.test"); !strings.HasPrefix(a, "5") {
			t.Fatalf("notls.test at host 1: %s, want a 5xx rejection", a)
		}
		if got := mxNoTLS.Connections(); got != 1 {
			t.Fatalf("notls.test at two hosts: %d sessions at its MX, want 1 (the second from the shared tier)", got)
		}
		out := w.tlsgateCache(bin, fleet[2].admin, "purge", "notls.test")
		if !strings.Contains(out, "purged from the fleet") {
			t.Fatalf("tlsgate cache purge: %s", out)
		}
		if a := milterRcpt(t, fleet[1].milter, "c@notls.test"); !strings.HasPrefix(a, "5") {
			t.Fatalf("notls.test at host 1 after the purge: %s, want a 5xx rejection", a)
		}
		if got := mxNoTLS.Connections(); got != 2 {
			t.Errorf("after a purge at host 2, the next RCPT at host 1 made %d sessions in all, want 2 (re-probed)", got)
		}
	})

	t.Run("cache show and list", func(t *testing.T) {
		out := w.tlsgateCache(bin, fleet[0].admin, "show", "tls.test")
		if !strings.Contains(out, "tls.test: pass") {
			t.Errorf("cache show tls.test:\n%s", out)
		}
		out = w.tlsgateCache(bin, fleet[0].admin, "list", "--status", "fail")
		if !strings.Contains(out, "notls.test\tfail\tshared") || strings.Contains(out, "\ntls.test") || strings.HasPrefix(out, "tls.test") {
			t.Errorf("cache list --status fail:\n%s", out)
		}
	})

	t.Run("a forged pass in the server is refused", func(t *testing.T) {
		w.tlsgateCache(bin, fleet[0].admin, "purge", "notls.test")
		rdb := redis.NewClient(&redis.Options{Addr: redisAddr})
		defer rdb.Close()
		ctx := context.Background()
		// The attacker can write to the server but has not the fleet's secret: it copies
		// tls.test's pass, renamed, and seals it with a key of its own.
		real, err := rdb.Get(ctx, fleetPrefix+"f:tls.test").Bytes()
		if err != nil {
			t.Fatalf("tls.test's shared entry: %v", err)
		}
		f, err := verify.DecodeShared("tls.test", real[36:])
		if err != nil {
			t.Fatal(err)
		}
		f.Domain = "notls.test"
		if v := verify.Judge(f, policy.Policy{Level: policy.LevelEncrypt}); v.Status != verify.StatusPass {
			t.Fatalf("the forged facts are not a pass: %s", v.Reason)
		}
		payload, err := verify.EncodeShared(f)
		if err != nil {
			t.Fatal(err)
		}
		forged := forge([]byte("attacker-secret-attacker-secret-attacker"), "notls.test", payload)
		if err := rdb.Set(ctx, fleetPrefix+"f:notls.test", forged, time.Minute).Err(); err != nil {
			t.Fatal(err)
		}
		before := mxNoTLS.Connections()
		if a := milterRcpt(t, fleet[2].milter, "d@notls.test"); !strings.HasPrefix(a, "5") {
			t.Fatalf("notls.test with a forged pass in the shared tier: %s, want a 5xx rejection", a)
		}
		if got := mxNoTLS.Connections(); got != before+1 {
			t.Errorf("the forged entry: %d new sessions at notls.test's MX, want 1 (a fresh probe)", got-before)
		}
		if v := scrapeMetric(t, fleet[2].metrics, `tlsgate_shared_cache_auth_failures_total{reason="bad-mac"}`); v < 1 {
			t.Errorf("auth failures at host 2: %v, want >= 1", v)
		}
	})

	t.Run("the server dies mid-burst and comes back", func(t *testing.T) {
		w.tlsgateCache(bin, fleet[0].admin, "purge", "--all")
		type answer struct {
			host int
			rcpt string
			got  string
			took time.Duration
		}
		domains := []struct{ name, want string }{{"tls.test", "accept"}, {"notls.test", "5"}, {"implicit.test", "accept"}}
		var mu sync.Mutex
		var answers []answer
		var wg sync.WaitGroup
		stop := make(chan struct{})
		for h := range fleetSize {
			wg.Go(func() {
				for i := 0; ; i++ {
					select {
					case <-stop:
						return
					default:
					}
					d := domains[(i+h)%len(domains)]
					rcpt := fmt.Sprintf("u%d@%s", i, d.name)
					start := time.Now()
					got := milterRcpt(t, fleet[h].milter, rcpt)
					mu.Lock()
					answers = append(answers, answer{h, rcpt, got, time.Since(start)})
					mu.Unlock()
					time.Sleep(20 * time.Millisecond)
				}
			})
		}
		time.Sleep(500 * time.Millisecond)
		sessionsBefore := mxTLS.Connections() + mxNoTLS.Connections()
		redisCmd.Process.Signal(syscall.SIGKILL)
		redisCmd.Wait()
		killed := time.Now()
		// While it is down, every host forgets its local tier (a purge on this host only:
		// the fleet cannot be reached), so the RCPTs that follow need probes: each host
		// makes its own.
		for _, m := range fleet {
			w.tlsgateCacheFail(bin, m.admin, "purge", "--all")
		}
		time.Sleep(1500 * time.Millisecond)
		for i, m := range fleet {
			if v := scrapeMetric(t, m.metrics, "tlsgate_shared_cache_up"); v != 0 {
				t.Errorf("host %d: tlsgate_shared_cache_up = %v during the outage", i, v)
			}
			if code := httpStatus(t, "http://"+m.metrics+"/readyz"); code != http.StatusOK {
				t.Errorf("host %d: /readyz %d during the outage, want 200", i, code)
			}
		}
		redisCmd = w.startRedis("redis-restarted")
		t.Logf("redis-server down for %v; the hosts' own probes meanwhile: %d SMTP sessions (3 domains x 3 hosts at most)",
			time.Since(killed).Round(time.Millisecond), mxTLS.Connections()+mxNoTLS.Connections()-sessionsBefore)
		time.Sleep(1500 * time.Millisecond)
		close(stop)
		wg.Wait()
		var slowest time.Duration
		for _, a := range answers {
			slowest = max(slowest, a.took)
			want := "accept"
			if strings.Contains(a.rcpt, "@notls.") {
				want = "5"
			}
			if !strings.HasPrefix(a.got, want) {
				t.Errorf("host %d %s: %s, want %s", a.host, a.rcpt, a.got, want)
			}
			if a.took > deadline {
				t.Errorf("host %d %s answered after %v, past rcpt_timeout", a.host, a.rcpt, a.took)
			}
		}
		t.Logf("%d RCPTs over the outage, all answered; slowest %v", len(answers), slowest.Round(time.Millisecond))
		for i, m := range fleet {
			waitMetric(t, m.metrics, "tlsgate_shared_cache_up", 1, 10*time.Second, fmt.Sprintf("host %d", i))
		}
		// Sharing resumes: one probe for the fleet again.
		w.tlsgateCache(bin, fleet[0].admin, "purge", "--all")
		before := mxTLS.Connections()
		for i := range fleetSize {
			if a := milterRcpt(t, fleet[i].milter, fmt.Sprintf("after%d@tls.test", i)); a != "accept" {
				t.Errorf("tls.test at host %d after the restart: %s", i, a)
			}
		}
		if got := mxTLS.Connections() - before; got != 1 {
			t.Errorf("after the restart, tls.test at %d hosts made %d sessions, want 1", fleetSize, got)
		}
	})
}

// startRedis starts a redis-server without persistence on redisAddr.
func (w *world) startRedis(name string) *exec.Cmd {
	host, port, _ := net.SplitHostPort(redisAddr)
	cmd := w.start(name, "redis-server", "--bind", host, "--port", port, "--save", "", "--appendonly", "no",
		"--protected-mode", "no", "--daemonize", "no", "--dir", w.dir)
	w.waitFor("redis-server", func() error {
		c, err := net.DialTimeout("tcp", redisAddr, time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(time.Second))
		c.Write([]byte("PING\r\n"))
		b := make([]byte, 7)
		if _, err := io.ReadFull(c, b); err != nil || string(b) != "+PONG\r\n" {
			return fmt.Errorf("PING: %q %v", b, err)
		}
		return nil
	})
	return cmd
}

// tlsgateCache runs `tlsgate cache ARGS` against one daemon's admin socket.
func (w *world) tlsgateCache(bin, socket string, args ...string) string {
	w.t.Helper()
	out, err := exec.Command(bin, append(append([]string{"cache"}, args...), "--socket", socket)...).CombinedOutput()
	if err != nil {
		w.t.Fatalf("tlsgate cache %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// tlsgateCacheFail runs `tlsgate cache ARGS` that must fail (the shared tier is down)
// and still purge this host.
func (w *world) tlsgateCacheFail(bin, socket string, args ...string) {
	w.t.Helper()
	out, err := exec.Command(bin, append(append([]string{"cache"}, args...), "--socket", socket)...).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "purged on this host only") {
		w.t.Errorf("tlsgate cache %s with the shared tier down: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// forge seals payload for key like a fleet member would, but with secret.
func forge(secret []byte, key string, payload []byte) []byte {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte("tlsgate-shared-cache\x00"))
	m.Write([]byte{1, 'f'})
	var n [4]byte
	binary.BigEndian.PutUint32(n[:], uint32(len(key)))
	m.Write(n[:])
	m.Write([]byte(key))
	m.Write(payload)
	return append(append([]byte("TG\x01f"), m.Sum(nil)...), payload...)
}

// milterRcpt answers RCPT TO:<addr> over one milter session, as Postfix's smtpd asks:
// "accept" or the reply.
func milterRcpt(t *testing.T, milter, addr string) string {
	c := gomilter.NewClient("tcp", milter, gomilter.WithReadTimeout(30*time.Second), gomilter.WithWriteTimeout(10*time.Second))
	macros := gomilter.NewMacroBag()
	macros.Set(gomilter.MacroQueueId, "4XyZ1")
	macros.Set(gomilter.MacroMailAddr, "sender@client.test")
	s, err := c.Session(macros)
	if err != nil {
		t.Errorf("milter session: %v", err)
		return err.Error()
	}
	defer s.Close()
	if _, err := s.Conn("client.test", gomilter.FamilyInet, 40000, "192.0.2.10"); err != nil {
		return err.Error()
	}
	if _, err := s.Helo("client.test"); err != nil {
		return err.Error()
	}
	if _, err := s.Mail("<sender@client.test>", ""); err != nil {
		return err.Error()
	}
	macros.Set(gomilter.MacroRcptMailer, "smtp")
	macros.Set(gomilter.MacroRcptAddr, addr)
	_, domain, _ := strings.Cut(addr, "@")
	macros.Set(gomilter.MacroRcptHost, domain)
	act, err := s.Rcpt("<"+addr+">", "")
	if err != nil {
		return err.Error()
	}
	switch act.Type {
	case gomilter.ActionContinue:
		return "accept"
	case gomilter.ActionRejectWithCode:
		return act.SMTPReply
	}
	return act.String()
}

// scrapeMetric returns one sample of a daemon's /metrics (-1 when absent).
func scrapeMetric(t *testing.T, addr, sample string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Errorf("scrape %s: %v", addr, err)
		return -1
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	re := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(sample) + ` (\S+)$`)
	m := re.FindSubmatch(b)
	if m == nil {
		return -1
	}
	v, _ := strconv.ParseFloat(string(m[1]), 64)
	return v
}

func waitMetric(t *testing.T, addr, sample string, want float64, timeout time.Duration, who string) {
	t.Helper()
	for end := time.Now().Add(timeout); ; time.Sleep(100 * time.Millisecond) {
		if v := scrapeMetric(t, addr, sample); v == want {
			return
		} else if time.Now().After(end) {
			t.Errorf("%s: %s = %v, want %v", who, sample, v, want)
			return
		}
	}
}

func httpStatus(t *testing.T, url string) int {
	resp, err := http.Get(url)
	if err != nil {
		t.Errorf("GET %s: %v", url, err)
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}
