package milter_test

import (
	"flag"
	"log/slog"
	"strings"
	"sync"
	"testing"

	"github.com/tlsgate/tlsgate/internal/fake"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// golden compares got with testdata/name, or rewrites the file with -update.
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	fake.Golden(t, name, got, *update)
}

// testLog is an io.Writer for slog that sends every record to t.Log. Records that
// arrive after the test finished (a goroutine of a server that is shutting down) are
// dropped instead of panicking.
type testLog struct {
	mu   sync.Mutex
	t    testing.TB
	done bool
}

func (l *testLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.done {
		l.t.Log(strings.TrimRight(string(p), "\n"))
	}
	return len(p), nil
}

// newLogger returns a debug-level logger writing to t.Log. Call it before starting
// anything that logs, so that its cleanup runs last.
func newLogger(t testing.TB) *slog.Logger {
	t.Helper()
	l := &testLog{t: t}
	t.Cleanup(func() {
		l.mu.Lock()
		l.done = true
		l.mu.Unlock()
	})
	return slog.New(slog.NewTextHandler(l, &slog.HandlerOptions{Level: slog.LevelDebug}))
}
