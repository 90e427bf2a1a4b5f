package web

import (
	"math"
	"sync"
	"time"
)

// limiter is a token bucket per client: perMinute checks a minute, up to perMinute at
// once after a quiet minute.
type limiter struct {
	mu        sync.Mutex
	perMinute int
	buckets   map[string]*bucket
}

type bucket struct {
	tokens float64
	last   time.Time
}

// maxBuckets bounds the clients remembered. Past it, clients whose bucket has refilled
// (idle for a minute) are forgotten; if none has, all are, which at worst gives every
// client one fresh minute: clients are tokens or, without tokens, loopback addresses.
const maxBuckets = 10000

func newLimiter(perMinute int) *limiter {
	return &limiter{perMinute: perMinute, buckets: map[string]*bucket{}}
}

func (l *limiter) setRate(perMinute int) {
	l.mu.Lock()
	l.perMinute = perMinute
	l.mu.Unlock()
}

// allow takes one check from key's bucket, or says how long until one is available.
func (l *limiter) allow(key string, now time.Time) (bool, time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	burst := float64(l.perMinute)
	perSecond := burst / 60
	b := l.buckets[key]
	if b == nil {
		if len(l.buckets) >= maxBuckets {
			l.sweep(now, perSecond, burst)
		}
		b = &bucket{tokens: burst, last: now}
		l.buckets[key] = b
	}
	if elapsed := now.Sub(b.last).Seconds(); elapsed > 0 {
		b.tokens = math.Min(burst, b.tokens+elapsed*perSecond)
	}
	b.last = now
	if b.tokens >= 1 {
		b.tokens--
		return true, 0
	}
	return false, time.Duration((1 - b.tokens) / perSecond * float64(time.Second))
}

func (l *limiter) sweep(now time.Time, perSecond, burst float64) {
	for k, b := range l.buckets {
		if b.tokens+now.Sub(b.last).Seconds()*perSecond >= burst {
			delete(l.buckets, k)
		}
	}
	if len(l.buckets) >= maxBuckets {
		clear(l.buckets)
	}
}
