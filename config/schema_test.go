package config

import (
	"slices"
	"testing"
	"time"

	"github.com/tlsgate/tlsgate/policy"
)

// TestRestartNeeded: a reload applies policies and answers; the listeners, the prober
// and the caches are read once at start, and a change to them is named by its key.
func TestRestartNeeded(t *testing.T) {
	t.Parallel()
	for _, name := range readAtStart {
		if _, ok := lookupKey(name); !ok && !slices.Contains(sections(), name) {
			t.Errorf("readAtStart names %q, neither a key nor a section", name)
		}
	}
	running := defaultConfig()
	next := defaultConfig()
	next.Milter.RcptTimeout = 3 * time.Second        // applied by a reload
	next.Defaults.OnFail = policy.ActionTempfail     // applied by a reload
	next.Probe.Timeout = 7 * time.Second             // needs a restart
	next.Socketmap.Listen = Listen{"unix", "/run/s"} // needs a restart
	got := next.RestartNeeded(running)
	if want := []string{"socketmap.listen", "probe.timeout"}; !slices.Equal(got, want) {
		t.Errorf("RestartNeeded = %q, want %q", got, want)
	}
	if got := defaultConfig().RestartNeeded(running); got != nil {
		t.Errorf("RestartNeeded of an equal configuration = %q", got)
	}
}
