package learn

import (
	"bytes"
	"fmt"
	"io"
	"testing"
	"time"
)

// synthetic writes n messages' worth of smtp(8) lines: interleaved processes, TLS
// summaries and delivery records to 5000 domains, noise from other daemons.
func synthetic(w io.Writer, n int) {
	at := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	for i := range n {
		at = at.Add(50 * time.Millisecond)
		ts := at.Format(time.Stamp)
		pid := 1000 + i%97
		d := i % 5000
		fmt.Fprintf(w, "%s mx postfix/qmgr[400]: 4Q%08X: from=<s@client.example>, size=%d, nrcpt=1 (queue active)\n", ts, i, 1000+i%5000)
		fmt.Fprintf(w, "%s mx postfix/smtp[%d]: Trusted TLS connection established to mx.d%d.example[192.0.2.%d]:25: TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits) key-exchange X25519 server-signature ECDSA (P-256) server-digest SHA256\n", ts, pid, d, d%250)
		fmt.Fprintf(w, "%s mx postfix/smtpd[%d]: disconnect from client.example[198.51.100.7] ehlo=2 starttls=1 mail=1 rcpt=1 data=1 quit=1 commands=7\n", ts, 2000+i%13)
		fmt.Fprintf(w, "%s mx postfix/smtp[%d]: 4Q%08X: to=<u%d@d%d.example>, relay=mx.d%d.example[192.0.2.%d]:25, delay=0.8, delays=0.1/0/0.3/0.4, dsn=2.0.0, status=sent (250 2.0.0 Ok: queued as X%d)\n", ts, pid, i, i%100, d, d, d%250, i)
		fmt.Fprintf(w, "%s mx postfix/qmgr[400]: 4Q%08X: removed\n", ts, i)
	}
}

// BenchmarkRead measures Learner.Read on a synthetic log (test/load/learnlog writes a
// realistic one of any size for the binary; README.md has the 1 GB figures).
func BenchmarkRead(b *testing.B) {
	var buf bytes.Buffer
	synthetic(&buf, 20000)
	data := buf.Bytes()
	lines := bytes.Count(data, []byte("\n"))
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		lr := NewLearner(time.Date(2026, 12, 8, 0, 0, 0, 0, time.UTC), time.UTC)
		if err := lr.Read(bytes.NewReader(data)); err != nil {
			b.Fatal(err)
		}
		if lr.Stats.Deliveries.Load() != 20000 {
			b.Fatalf("deliveries %d", lr.Stats.Deliveries.Load())
		}
	}
	b.ReportMetric(float64(lines)*float64(b.N)/b.Elapsed().Seconds(), "lines/s")
}

// TestSessionsBounded: the join keeps a TLS session per running process, not per line
// read: sessions of processes that moved on or went quiet are forgotten.
func TestSessionsBounded(t *testing.T) {
	lr := NewLearner(time.Date(2026, 12, 8, 0, 0, 0, 0, time.UTC), time.UTC)
	var buf bytes.Buffer
	at := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	// 100000 processes (PIDs never reused), each with a TLS session and no delivery
	// record, one a second: over a day of log.
	for i := range 100000 {
		at = at.Add(time.Second)
		fmt.Fprintf(&buf, "%s mx postfix/smtp[%d]: Untrusted TLS connection established to mx.example[192.0.2.1]:25: TLSv1.3 with cipher X (1/1 bits)\n", at.Format(time.Stamp), 100000+i)
	}
	if err := lr.Read(&buf); err != nil {
		t.Fatal(err)
	}
	if n := len(lr.sessions); n > int(sessionTTL/time.Second)*5/4+1 {
		t.Errorf("%d sessions kept after a day of log; want at most the last %s's", n, sessionTTL*5/4)
	}
}
