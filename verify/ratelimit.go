package verify

import (
	"net/netip"
	"sync"
	"time"
)

// addrLimiter allows at most limit probes per address in any window of one period
// (a sliding log, exact and small: limit is a handful). Probing a server too often gets
// the prober's address blocklisted, so this protects the operator as well as the
// destination.
type addrLimiter struct {
	limit  int
	period time.Duration
	mu     sync.Mutex
	seen   map[netip.Addr][]time.Time // probe times within the last period, oldest first
}

// maxLimiterAddrs bounds the limiter's memory: past it, addresses whose window is empty
// are forgotten; if all are busy, the oldest windows are dropped (allowing, rather than
// refusing, a probe is the safe direction for mail flow).
const maxLimiterAddrs = 100000

func newAddrLimiter(limit int, period time.Duration) *addrLimiter {
	return &addrLimiter{limit: limit, period: period, seen: make(map[netip.Addr][]time.Time)}
}

// allow records a probe of ip at now and reports whether it is within the limit.
// A limit below 1 disables the limiter.
func (l *addrLimiter) allow(ip netip.Addr, now time.Time) bool {
	if l == nil || l.limit < 1 {
		return true
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	times := expire(l.seen[ip], now.Add(-l.period))
	if len(times) >= l.limit {
		l.seen[ip] = times
		return false
	}
	if _, known := l.seen[ip]; !known && len(l.seen) >= maxLimiterAddrs {
		l.prune(now)
	}
	l.seen[ip] = append(times, now)
	return true
}

// expire drops the times at or before cutoff.
func expire(times []time.Time, cutoff time.Time) []time.Time {
	i := 0
	for i < len(times) && !times[i].After(cutoff) {
		i++
	}
	return times[i:]
}

// prune forgets idle addresses, or, when none is idle, half of the map.
func (l *addrLimiter) prune(now time.Time) {
	cutoff := now.Add(-l.period)
	for ip, times := range l.seen {
		if len(expire(times, cutoff)) == 0 {
			delete(l.seen, ip)
		}
	}
	for ip := range l.seen {
		if len(l.seen) < maxLimiterAddrs/2 {
			break
		}
		delete(l.seen, ip)
	}
}
