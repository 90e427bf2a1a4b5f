package cache_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/tlsgate/tlsgate/internal/cache"
)

// benchValue stands in for *verify.Facts: the cache holds pointers.
type benchValue struct{ domain string }

// benchCache returns a cache of size holding n entries "d<i>.example.test".
func benchCache(b *testing.B, size, n int) (*cache.Cache[*benchValue], []string) {
	b.Helper()
	c, err := cache.New[*benchValue](size)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(c.Close)
	keys := make([]string, n)
	for i := range keys {
		keys[i] = fmt.Sprintf("d%d.example.test", i)
		c.Set(keys[i], &benchValue{keys[i]}, time.Hour)
	}
	return c, keys
}

// BenchmarkGet is the cache lookup of every RCPT for a probed level: a hit in a cache of
// the default size (100,000) holding 100,000 domains, one goroutine and all of them.
func BenchmarkGet(b *testing.B) {
	c, keys := benchCache(b, 100000, 100000)
	hits := 0
	for _, k := range keys {
		if _, ok := c.Get(k); ok {
			hits++
		}
	}
	if hits < len(keys)*9/10 {
		b.Fatalf("%d of %d keys cached", hits, len(keys))
	}
	b.Run("hit", func(b *testing.B) {
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			c.Get(keys[i%len(keys)])
			i++
		}
	})
	b.Run("hit-parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			i := 0
			for pb.Next() {
				c.Get(keys[i%len(keys)])
				i += 7
			}
		})
	})
	b.Run("miss", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			c.Get("not-cached.example.test")
		}
	})
}

// BenchmarkSet is the cost of storing one probe's facts (Set waits until the entry is
// visible).
func BenchmarkSet(b *testing.B) {
	c, _ := benchCache(b, 100000, 0)
	v := &benchValue{"x"}
	keys := make([]string, 1<<16)
	for i := range keys {
		keys[i] = fmt.Sprintf("s%d.example.test", i)
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		c.Set(keys[i%len(keys)], v, time.Hour)
		i++
	}
}
