// Package cache is a typed, size-bounded, TTL cache over ristretto. Entries expire at
// their TTL; eviction under pressure follows ristretto's TinyLFU admission, so a
// popular destination survives a flood of one-off ones.
package cache

import (
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/dgraph-io/ristretto/v2"
)

// ErrSize is returned by New for a size below 1.
var ErrSize = errors.New("cache: size must be at least 1")

// Cache maps string keys to values of type V. It is safe for concurrent use.
type Cache[V any] struct {
	r    *ristretto.Cache[string, V]
	size int
	// keys indexes the keys Set stored, for Keys: ristretto keeps hashes, not keys.
	// nil unless the cache was made by NewListed. It may hold keys ristretto has since
	// evicted or expired; Set prunes them when it has grown to twice the size.
	mu   sync.Mutex
	keys map[string]struct{}
}

// NewListed returns a cache holding at most size entries whose Keys lists them.
// The index costs a copy of each key.
func NewListed[V any](size int) (*Cache[V], error) {
	c, err := New[V](size)
	if err == nil {
		c.keys = map[string]struct{}{}
	}
	return c, err
}

// New returns a cache holding at most size entries.
func New[V any](size int) (*Cache[V], error) {
	if size < 1 {
		return nil, ErrSize
	}
	r, err := ristretto.NewCache(&ristretto.Config[string, V]{
		NumCounters: int64(size) * 10, // ristretto's advice: 10x the number of items
		MaxCost:     int64(size),      // every entry costs 1
		BufferItems: 64,
		// Count entries, not bytes: MaxCost is a number of entries.
		IgnoreInternalCost: true,
	})
	if err != nil {
		return nil, fmt.Errorf("cache: %w", err)
	}
	return &Cache[V]{r: r, size: size}, nil
}

// Get returns the value for key if present and not expired.
func (c *Cache[V]) Get(key string) (V, bool) { return c.r.Get(key) }

// Set stores v for ttl and makes it visible to Get before returning (ristretto buffers
// writes; a sender's retry must see the verdict its first attempt started). A ttl <= 0
// stores nothing.
func (c *Cache[V]) Set(key string, v V, ttl time.Duration) {
	if ttl <= 0 {
		return
	}
	if !c.r.SetWithTTL(key, v, 1, ttl) {
		return
	}
	c.r.Wait()
	if c.keys == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.keys[key] = struct{}{}
	if len(c.keys) > 2*c.size {
		// Amortised: forget the keys ristretto has evicted or expired.
		for k := range c.keys {
			if _, ok := c.r.Get(k); !ok {
				delete(c.keys, k)
			}
		}
	}
}

// Keys returns the keys present (not expired, not evicted) when it looks, in no
// particular order; nil for a cache not made by NewListed.
func (c *Cache[V]) Keys() []string {
	if c.keys == nil {
		return nil
	}
	c.mu.Lock()
	all := make([]string, 0, len(c.keys))
	for k := range c.keys {
		all = append(all, k)
	}
	c.mu.Unlock()
	out := all[:0]
	for _, k := range all {
		if _, ok := c.r.Get(k); ok {
			out = append(out, k)
		}
	}
	return out
}

// Delete removes key.
func (c *Cache[V]) Delete(key string) {
	c.r.Del(key)
	if c.keys != nil {
		c.mu.Lock()
		delete(c.keys, key)
		c.mu.Unlock()
	}
}

// Close stops the cache's goroutines.
func (c *Cache[V]) Close() { c.r.Close() }

// Clear removes every entry.
func (c *Cache[V]) Clear() {
	c.r.Clear()
	if c.keys != nil {
		c.mu.Lock()
		clear(c.keys)
		c.mu.Unlock()
	}
}
