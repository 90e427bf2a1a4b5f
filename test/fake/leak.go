package fake

import (
	"runtime"
	"testing"
	"time"
)

// WaitGoroutines fails the test unless the process's goroutines drop back to at most
// before+slack within 5 seconds (goroutines of closed connections and servers take a
// moment to return), printing every stack when they do not. Tests that use it must not
// be parallel: they count the goroutines of the whole process.
func WaitGoroutines(t testing.TB, before, slack int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		after := runtime.NumGoroutine()
		if after <= before+slack {
			return
		}
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("%d goroutines before, %d after:\n%s", before, after, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(10 * time.Millisecond)
	}
}
