package cache

import (
	"errors"
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
