// Package fake provides in-process fakes for tlsgate's unit and integration
// tests: a certificate factory, scripted ESMTP servers on loopback
// addresses, a dialer that maps port 25 onto those servers, and a
// recursive-resolver-like DNS server with a per-name AD (Authenticated
// Data) toggle.
//
// The fakes are plain data driven by the test, in the style of
// net/http/httptest: there are no expectations to program and no mocks.
// Every fake listens on a real loopback socket, is bound to one test through
// testing.TB, and is shut down by t.Cleanup; nothing is global and nothing
// outlives the test that created it.
//
// A typical probe test wires them together like this:
//
//	ca := fake.NewCA(t, "Test Root")
//	cert := ca.Issue(t, fake.CertOptions{DNSNames: []string{"mx1.example.test"}})
//	mx := fake.StartSMTP(t, "127.0.0.5", fake.Behavior{Hostname: "mx1.example.test", Cert: &cert})
//	dialer := fake.NewDialer()
//	mx.RegisterWith(dialer) // 127.0.0.5:25 now reaches the fake
//
//	dns := fake.StartDNS(t)
//	dns.Add(t,
//		"example.test. 300 IN MX 10 mx1.example.test.",
//		"mx1.example.test. 300 IN A 127.0.0.5",
//	)
//	dns.SetAllAuthentic(true)
//
// Names used with the fakes should come from the reserved .test, .example
// and .invalid top-level domains (RFC 2606, RFC 6761).
package fake
