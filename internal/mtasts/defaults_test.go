package mtasts

import (
	"context"
	"testing"
	"time"

	"github.com/tlsgate/tlsgate/internal/dnsx"
)

type noResolver struct{}

func (noResolver) Lookup(context.Context, string, uint16) (dnsx.Answer, error) {
	return dnsx.Answer{}, nil
}

// TestNewDefaults: a Client made without the configuration fetches within the same
// time and keeps as many policies as the configuration's documented defaults
// (mta_sts.timeout 5s, mta_sts.cache_size 10000; config uses these constants).
func TestNewDefaults(t *testing.T) {
	t.Parallel()
	c, err := New(Config{Resolver: noResolver{}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if want := 5 * time.Second; c.cfg.Timeout != want {
		t.Errorf("Timeout = %v, want the documented %v", c.cfg.Timeout, want)
	}
	if want := 10000; c.cfg.CacheSize != want {
		t.Errorf("CacheSize = %d, want the documented %d", c.cfg.CacheSize, want)
	}
}
