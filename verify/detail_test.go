package verify_test

import (
	"context"
	"strings"
	"testing"

	"github.com/miekg/dns"

	"github.com/tlsgate/tlsgate/verify"
)

// TestDetailNamesNoLocalAddress: a verdict's detail can become a sender's reply (a
// tempfail here), so a failed _mta-sts TXT lookup says "timeout", not the resolver's
// address and port ("TXT via 127.0.0.1:59020/udp: context deadline exceeded"), which
// went into the reply before (issue 17).
func TestDetailNamesNoLocalAddress(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	w.serve(domain, host{name: "mx1", behaviour: "good"})
	w.dns.SetDrop("_mta-sts."+domain+".", dns.TypeTXT)
	f := w.verifier(w.withSTS).Probe(context.Background(), domain)
	v := verify.Judge(f, published)
	if v.Status != verify.StatusTempfail || v.Reason != verify.ReasonDNSError {
		t.Fatalf("verdict %s/%s (%s); want tempfail/dns-error", v.Status, v.Reason, v.Detail)
	}
	want := "the MTA-STS record of example.test could not be looked up: TXT lookup for _mta-sts.example.test failed: timeout"
	if v.Detail != want {
		t.Errorf("detail\n%q\nwant\n%q", v.Detail, want)
	}
	for _, leak := range []string{"127.0.0.1", "/udp", "via", "deadline"} {
		if strings.Contains(v.Detail, leak) {
			t.Errorf("detail %q holds %q", v.Detail, leak)
		}
	}
}
