package verify_test

import (
	"bufio"
	"bytes"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/tlsgate/tlsgate/internal/smtpprobe"
	"github.com/tlsgate/tlsgate/verify"
)

// TestStoredAttemptFormat: attempts as format 4 of the cache file holds them (written by
// the version that kept this JSON in smtpprobe) read back and are written again as the
// same JSON; the PKIX error keeps its message and its kind, the one thing the judge
// asks of it (expired, unknown authority, anything else: here a CN-only leaf outside
// its sub-CA's name constraints), and the server's answers to Postfix's ClientHellos
// survive.
func TestStoredAttemptFormat(t *testing.T) {
	t.Parallel()
	golden, err := os.ReadFile("testdata/attempts-v4.golden")
	if err != nil {
		t.Fatal(err)
	}
	type kind struct{ expired, unknown bool }
	want := []*kind{nil, {unknown: true}, {expired: true}, {}, nil}
	sc := bufio.NewScanner(bytes.NewReader(golden))
	sc.Buffer(nil, 1<<20)
	for i := 0; sc.Scan(); i++ {
		line := sc.Bytes()
		var a verify.Attempt
		if err := json.Unmarshal(line, &a); err != nil {
			t.Fatalf("line %d: %v", i+1, err)
		}
		again, err := json.Marshal(a)
		if err != nil {
			t.Fatal(err)
		}
		var was, is any
		if json.Unmarshal(line, &was) != nil || json.Unmarshal(again, &is) != nil || !reflect.DeepEqual(was, is) {
			t.Errorf("line %d written again differs:\n%s\nwas\n%s", i+1, again, line)
		}
		r := a.Result
		if w := want[i]; (r.PKIX == nil) != (w == nil) {
			t.Errorf("line %d: PKIX %v; want an error %v", i+1, r.PKIX, w != nil)
		} else if w != nil {
			var inv x509.CertificateInvalidError
			var ua x509.UnknownAuthorityError
			expired := errors.As(r.PKIX, &inv) && inv.Reason == x509.Expired
			unknown := errors.As(r.PKIX, &ua)
			if expired != w.expired || unknown != w.unknown || r.PKIX.Error() == "" {
				t.Errorf("line %d: PKIX %q is expired %v, unknown authority %v; want %+v", i+1, r.PKIX, expired, unknown, *w)
			}
		}
		if a.DNSError == "" && (len(r.Chain) != 2 || r.Leaf().DNSNames[0] != "mx1.example.test" ||
			r.Authenticated == nil || *r.Authenticated != (smtpprobe.Hello{Version: 0x0303, Suite: 0xc02f}) ||
			r.Opportunistic == nil || r.Opportunistic.Failed != "timeout" || !strings.Contains(r.EHLO.Text, "STARTTLS")) {
			t.Errorf("line %d: read back as %+v", i+1, r)
		}
	}
}

// TestStoredResultBounded: text in a cache file (written by an older version, or
// edited) is bounded again when it is read.
func TestStoredResultBounded(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("\xff", 5000)
	line, _ := json.Marshal(map[string]any{"Host": "mx.example.test", "Result": map[string]any{
		"detail": long, "greeting": map[string]any{"Code": 220, "Text": long}, "pkix_kind": "other", "pkix_error": long,
		"hello_authenticated": map[string]any{"failed": long}}})
	var a verify.Attempt
	if err := json.Unmarshal(line, &a); err != nil {
		t.Fatal(err)
	}
	r := a.Result
	for what, s := range map[string]string{"detail": r.Detail, "greeting": r.Greeting.Text, "pkix": r.PKIX.Error(), "hello": r.Authenticated.Failed} {
		if len(s) > 512 {
			t.Errorf("%s: %d bytes kept", what, len(s))
		}
	}
}

// TestStoredResultOutOfRange: a stage or outcome no version writes (an edited file, a
// forged shared-cache entry that passed its MAC) makes the line unusable, as bad JSON
// does: it must not reach a judge, log or report that names it (and would panic).
func TestStoredResultOutOfRange(t *testing.T) {
	t.Parallel()
	for _, bad := range []string{`"stage":99`, `"stage":-1`, `"outcome":10`, `"outcome":-3`} {
		line := `{"Host":"mx.example.test","Result":{"ip":"192.0.2.1",` + bad + `}}`
		var a verify.Attempt
		if err := json.Unmarshal([]byte(line), &a); err == nil {
			t.Errorf("%s: read as stage %d, outcome %d; want an error", bad, a.Result.Stage, a.Result.Outcome)
		}
	}
	var a verify.Attempt
	if err := json.Unmarshal([]byte(`{"Host":"mx.example.test","Result":{"stage":5,"outcome":9}}`), &a); err != nil {
		t.Errorf("the last stage and outcome: %v", err)
	}
}

// TestCacheFileOutOfRange: a cache file line whose facts hold a status no version
// writes is skipped like any bad line, as the shared cache's facts are (checkFacts):
// a loaded MX status of 99 would panic the first report or log that names it.
func TestCacheFileOutOfRange(t *testing.T) {
	t.Parallel()
	v := newWorld(t).verifier()
	path := filepath.Join(t.TempDir(), "cache.json")
	until := time.Now().Add(time.Hour).UTC().Format(time.RFC3339)
	line := func(d, facts string) string {
		return `{"facts":{"Domain":"` + d + `","Until":"` + until + `",` + facts + `}}` + "\n"
	}
	content := cacheHeader + line("good.test", `"MX":1`) + line("mx.test", `"MX":99`) +
		line("tlsa.test", `"MX":1,"Hosts":[{"Name":"mx.tlsa.test","TLSA":{"Status":7}}]`) +
		line("sts.test", `"MX":1,"STS":{"Status":5}`) +
		line("outcome.test", `"MX":1,"Attempts":[{"Host":"mx.outcome.test","Result":{"outcome":42}}]`)
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	n, err := v.LoadCache(path)
	var skipped *verify.CacheLinesSkipped
	if n != 1 || !errors.As(err, &skipped) || skipped.Skipped != 4 {
		t.Fatalf("LoadCache = %d, %v; want 1 domain and 4 lines skipped", n, err)
	}
	for _, d := range []string{"mx.test", "tlsa.test", "sts.test", "outcome.test"} {
		if _, ok := v.Cached(d); ok {
			t.Errorf("%s was loaded", d)
		}
	}
}

// TestStoredHostSNISession: the session an MTA-STS sender has with the MX host name as
// SNI (published judges MTA-STS on it) is stored like the attempt's own: its PKIX
// error keeps its kind and stage and outcome are checked. It used to be written with
// Go's default encoding, which writes an error as {} and cannot read it back, so
// every cached enforce-mode domain was dropped from the cache file and shared tier.
func TestStoredHostSNISession(t *testing.T) {
	t.Parallel()
	pkix := x509.UnknownAuthorityError{}
	a := verify.Attempt{Host: "mx.example.test",
		Result: smtpprobe.Result{Stage: smtpprobe.StageDone, Outcome: smtpprobe.OutcomeTLS},
		HostSNI: &verify.Session{RateLimited: true,
			Result: smtpprobe.Result{Stage: smtpprobe.StageDone, Outcome: smtpprobe.OutcomeTLS, PKIX: pkix, TLSVersion: 0x0304}}}
	b, err := json.Marshal(a)
	if err != nil {
		t.Fatal(err)
	}
	var back verify.Attempt
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatalf("reading back %s: %v", b, err)
	}
	s := back.HostSNI
	if s == nil || !s.RateLimited || s.Result.TLSVersion != 0x0304 || s.Result.PKIX == nil ||
		!errors.As(s.Result.PKIX, new(x509.UnknownAuthorityError)) && !strings.Contains(s.Result.PKIX.Error(), "unknown authority") {
		t.Errorf("host-name session read back as %+v from %s", s, b)
	}
	const line = `{"Host":"mx.example.test","Result":{"stage":5,"outcome":1},"HostSNI":{"Result":{"stage":5,"outcome":%d}}}`
	if err := json.Unmarshal(fmt.Appendf(nil, line, 1), &back); err != nil {
		t.Errorf("a host-name session with outcome 1: %v", err)
	}
	if err := json.Unmarshal(fmt.Appendf(nil, line, 42), &back); err == nil {
		t.Error("a host-name session with outcome 42 was read")
	}
}
