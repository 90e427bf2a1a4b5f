package fake

import (
	"strings"
	"testing"
)

// recorder is a testing.TB that keeps what a helper reports instead of failing.
type recorder struct {
	testing.TB
	errors []string
}

func (r *recorder) Helper() {}

func (r *recorder) Error(args ...any) {
	for _, a := range args {
		r.errors = append(r.errors, a.(error).Error())
	}
}

// parkedForLeakTest is the goroutine the leak check must name.
func parkedForLeakTest(stop <-chan struct{}) { <-stop }

// TestCheckGoroutines: a goroutine started after the check began and still running is
// reported with its stack; one that ends, or one that ran before, is not.
func TestCheckGoroutines(t *testing.T) {
	older := make(chan struct{})
	defer close(older)
	go parkedForLeakTest(older) // running before the check: not ours

	r := &recorder{TB: t}
	check := checkGoroutines(r, 0)
	ended := make(chan struct{})
	go func() { close(ended) }()
	<-ended
	check()
	if len(r.errors) != 0 {
		t.Fatalf("goroutines that ended or ran before were reported: %v", r.errors)
	}

	stop := make(chan struct{})
	defer close(stop)
	check = checkGoroutines(r, 0)
	go parkedForLeakTest(stop)
	check()
	if len(r.errors) != 1 || !strings.Contains(r.errors[0], "parkedForLeakTest") {
		t.Errorf("a goroutine left running was not named: %v", r.errors)
	}
}
