package main

import (
	"fmt"
	"slices"
	"sync"
	"testing"
)

// harness lets the fakes of package fake, which are bound to a testing.TB, run outside
// go test. Helper and the Log methods do nothing; Fatal, Fatalf, Error and Errorf panic
// with a fatal value that runScenario turns into an error; Cleanup registers functions
// that close runs in reverse order, as the testing package does. Any other testing.TB
// method panics (the embedded interface is nil): the fakes do not use them.
type harness struct {
	testing.TB
	mu       sync.Mutex
	cleanups []func()
}

// fatal is the panic value of harness.Fatalf.
type fatal struct{ msg string }

func (h *harness) Helper()                           {}
func (h *harness) Name() string                      { return "load" }
func (h *harness) Log(args ...any)                   {}
func (h *harness) Logf(format string, args ...any)   {}
func (h *harness) Fatal(args ...any)                 { panic(fatal{fmt.Sprint(args...)}) }
func (h *harness) Fatalf(format string, args ...any) { panic(fatal{fmt.Sprintf(format, args...)}) }
func (h *harness) Error(args ...any)                 { panic(fatal{fmt.Sprint(args...)}) }
func (h *harness) Errorf(format string, args ...any) { panic(fatal{fmt.Sprintf(format, args...)}) }

func (h *harness) Cleanup(f func()) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.cleanups = append(h.cleanups, f)
}

// close runs the cleanups, last registered first.
func (h *harness) close() {
	h.mu.Lock()
	fs := slices.Clone(h.cleanups)
	h.cleanups = nil
	h.mu.Unlock()
	for _, f := range slices.Backward(fs) {
		f()
	}
}

// runScenario runs fn with a fresh harness and cleans up after it. A failure of a fake
// (harness.Fatalf) becomes the returned error.
func runScenario(fn func(tb testing.TB) error) (err error) {
	h := &harness{}
	defer h.close()
	defer func() {
		if p := recover(); p != nil {
			f, ok := p.(fatal)
			if !ok {
				panic(p)
			}
			err = fmt.Errorf("setup: %s", f.msg)
		}
	}()
	return fn(h)
}
