package main

import (
	"bufio"
	"bytes"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tlsgate/tlsgate/learn"
)

// TestJoinOnSyntheticLog: on the generator's log, where a hundred smtp(8) processes'
// lines interleave, every domain's history is what the generator wrote: its one trust
// class (by domain number modulo 4), plaintext only for the domains that sometimes
// skip TLS (modulo 13), and the content filter's loopback deliveries not counted.
func TestJoinOnSyntheticLog(t *testing.T) {
	var buf bytes.Buffer
	w := bufio.NewWriter(&buf)
	g := newGen(7, 2000, 100)
	for g.written < 8<<20 {
		g.message(w)
	}
	w.Flush()
	lr := learn.NewLearner(time.Date(2026, 12, 8, 0, 0, 0, 0, time.UTC), time.UTC)
	if err := lr.Read(&buf); err != nil {
		t.Fatal(err)
	}
	classes := []learn.Trust{learn.Verified, learn.Trusted, learn.Untrusted, learn.Anonymous}
	checked := 0
	for _, d := range lr.Domains() {
		k, err := strconv.Atoi(strings.TrimSuffix(strings.TrimPrefix(d.Name, "d"), ".example"))
		if err != nil {
			t.Fatalf("domain %q", d.Name)
		}
		want := classes[k%4]
		tls := d.ByTrust[want]
		if k%13 == 0 {
			tls += d.ByTrust[learn.Plain]
		}
		if tls != d.Deliveries() {
			t.Errorf("%s: %v, want only %s", d.Name, d.ByTrust, want)
		}
		checked++
	}
	st := lr.Stats.Snapshot()
	if checked < 500 || st.Local == 0 || st.Garbage == 0 {
		t.Errorf("%d domains checked, stats %+v", checked, st)
	}
}
