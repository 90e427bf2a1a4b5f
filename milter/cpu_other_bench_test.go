//go:build !unix

package milter_test

import "time"

// processCPU is not measured here; benchCPU reports nothing.
func processCPU() time.Duration { return 0 }
