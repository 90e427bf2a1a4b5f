package fake_test

import (
	"crypto/tls"
	"net"
	"net/smtp"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/tlsgate/tlsgate/internal/fake"
)

// TestCleanupLeavesNoGoroutines is not parallel: it checks the goroutines of
// the whole process (the paused parallel tests are not counted as leaks).
func TestCleanupLeavesNoGoroutines(t *testing.T) {
	noLeak := fake.CheckGoroutines(t)
	var open []net.Conn
	defer func() {
		for _, c := range open {
			c.Close()
		}
	}()

	t.Run("servers", func(t *testing.T) {
		cert := fake.SelfSigned(t, fake.CertOptions{DNSNames: []string{"mx.test"}})
		normal := fake.StartSMTP(t, "127.0.0.1", fake.Behavior{Cert: &cert})
		tarpit := fake.StartSMTP(t, "127.0.0.1", fake.Behavior{Tarpit: true})
		slow := fake.StartSMTP(t, "127.0.0.1", fake.Behavior{BannerDelay: time.Hour, NoStartTLS: true})
		resolver := fake.StartDNS(t)
		resolver.Add(t, "slow.example.test. 300 IN A 127.0.0.1")
		resolver.SetDelay("slow.example.test.", dns.TypeANY, time.Hour)

		// A TLS session left open mid-conversation.
		c, err := net.Dial("tcp", normal.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		open = append(open, c)
		sc, err := smtp.NewClient(c, "mx.test")
		if err != nil {
			t.Fatal(err)
		}
		if err := sc.StartTLS(&tls.Config{InsecureSkipVerify: true}); err != nil {
			t.Fatal(err)
		}
		// Connections left waiting in the tarpit and before a slow banner.
		for _, s := range []*fake.SMTPServer{tarpit, slow} {
			c, err := net.Dial("tcp", s.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			open = append(open, c)
		}
		// DNS questions held by a delay, over UDP and TCP.
		for _, network := range []string{"udp", "tcp"} {
			c, err := dns.Dial(network, resolver.Addr())
			if err != nil {
				t.Fatal(err)
			}
			open = append(open, c.Conn)
			m := new(dns.Msg)
			m.SetQuestion("slow.example.test.", dns.TypeA)
			if err := c.WriteMsg(m); err != nil {
				t.Fatal(err)
			}
		}
		deadline := time.Now().Add(5 * time.Second)
		for tarpit.Connections() == 0 || slow.Connections() == 0 || len(resolver.Queries()) < 2 {
			if time.Now().After(deadline) {
				t.Fatal("servers never saw the connections")
			}
			time.Sleep(time.Millisecond)
		}
	})

	noLeak()
}
