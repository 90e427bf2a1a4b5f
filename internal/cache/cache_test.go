package cache

import (
	"errors"
	"slices"
	"strconv"
	"testing"
	"time"
)

func TestSetGet(t *testing.T) {
	t.Parallel()
	c, err := New[int](10)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Set("a", 1, time.Minute)
	if v, ok := c.Get("a"); !ok || v != 1 {
		t.Fatalf("Get(a) = %v, %v; want 1, true", v, ok)
	}
	c.Set("z", 2, 0)
	if _, ok := c.Get("z"); ok {
		t.Fatal("ttl 0 must not store")
	}
	c.Delete("a")
	if _, ok := c.Get("a"); ok {
		t.Fatal("deleted entry still present")
	}
}

func TestExpiry(t *testing.T) {
	t.Parallel()
	c, err := New[string](10)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Set("k", "v", time.Second)
	if _, ok := c.Get("k"); !ok {
		t.Fatal("fresh entry missing")
	}
	// ristretto expires with second granularity; poll instead of sleeping a fixed time.
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if _, ok := c.Get("k"); !ok {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatal("entry did not expire")
}

func TestBadSize(t *testing.T) {
	t.Parallel()
	if _, err := New[int](0); !errors.Is(err, ErrSize) {
		t.Fatalf("New(0) error = %v; want ErrSize", err)
	}
}

// TestKeys: a listed cache lists what it holds, not what was deleted, cleared or
// expired; its index stays bounded however many keys pass through; an unlisted
// cache lists nothing.
func TestKeys(t *testing.T) {
	t.Parallel()
	c, err := NewListed[int](10)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Set("a", 1, time.Minute)
	c.Set("b", 2, time.Minute)
	c.Set("c", 3, time.Minute)
	c.Set("never", 4, 0)
	c.Delete("b")
	got := c.Keys()
	slices.Sort(got)
	if !slices.Equal(got, []string{"a", "c"}) {
		t.Errorf("Keys = %q; want [a c]", got)
	}
	c.Clear()
	if got := c.Keys(); len(got) != 0 {
		t.Errorf("Keys after Clear = %q; want none", got)
	}
	for i := range 1000 {
		c.Set(strconv.Itoa(i), i, time.Minute)
	}
	c.mu.Lock()
	n := len(c.keys)
	c.mu.Unlock()
	if n > 2*10+1 {
		t.Errorf("index holds %d keys for a cache of 10", n)
	}
	for _, k := range c.Keys() {
		if _, ok := c.Get(k); !ok {
			t.Errorf("Keys lists %q, which Get does not find", k)
		}
	}

	u, err := New[int](10)
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	u.Set("a", 1, time.Minute)
	if got := u.Keys(); got != nil {
		t.Errorf("unlisted Keys = %q; want nil", got)
	}
}

// TestKeysExpire: an expired key is not listed.
func TestKeysExpire(t *testing.T) {
	t.Parallel()
	c, err := NewListed[int](10)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Set("k", 1, time.Second)
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if len(c.Keys()) == 0 {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatal("expired key still listed")
}
