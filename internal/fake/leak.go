package fake

import (
	"runtime"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// leakWait bounds how long a leak check waits for goroutines to end: closed
// connections and servers take a moment to return, longer under -race on a busy
// machine than goleak's own retries (about half a second) allow.
const leakWait = 5 * time.Second

// CheckGoroutines records the goroutines running now and returns a function that fails
// t unless every goroutine started since has ended, waiting up to 5 seconds, and lists
// the stacks of those that remain. It is go.uber.org/goleak's VerifyNone with
// IgnoreCurrent and a longer wait:
//
//	noLeak := fake.CheckGoroutines(t)
//	... start and stop servers, sessions, probes ...
//	noLeak()
//
// Like goleak, it sees the whole process: tests that use it must not be parallel
// (paused parallel tests are ignored, running ones are not).
func CheckGoroutines(t testing.TB) (verify func()) { return checkGoroutines(t, leakWait) }

func checkGoroutines(t testing.TB, wait time.Duration) func() {
	current := goleak.IgnoreCurrent()
	return func() {
		t.Helper()
		deadline := time.Now().Add(wait)
		for {
			err := goleak.Find(current) // retries, sleeping, for about half a second
			if err == nil {
				return
			}
			if time.Now().After(deadline) {
				t.Error(err)
				return
			}
		}
	}
}

// WaitGoroutines fails the test unless the process's goroutines drop back to at most
// before+slack within 5 seconds, printing every stack when they do not. It counts
// rather than names goroutines, so a goroutine of an earlier test that ends meanwhile
// can hide a leak: new tests use CheckGoroutines. It stays for the tests written
// against it. Tests that use it must not be parallel.
func WaitGoroutines(t testing.TB, before, slack int) {
	t.Helper()
	deadline := time.Now().Add(leakWait)
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
