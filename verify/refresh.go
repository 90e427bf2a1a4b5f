package verify

import (
	"container/heap"
	"fmt"
	"sync"
	"time"
)

// Refresh-ahead: a destination asked for during its cache period (a cache hit of an
// RCPT) is probed again shortly before its facts expire, so that a busy domain never
// goes cold: the next sender after the expiry finds fresh facts instead of waiting
// for a probe (and getting "in progress" from a slow MX). A destination nobody asked
// for after its facts were stored expires as before: a refresh is not a hit, so a
// domain asked for once is refreshed at most once.
//
// Why a scheduler and not "refresh on the first hit in the last 10%": a domain asked
// for every few minutes with an hour's TTL may have no RCPT in the last 10% and would
// still go cold; the first hit of a period schedules the refresh, whenever it comes.
//
// Budget: refreshes never wait in the probe queue (probe.max_queued is first
// contacts' only) and hold at most a quarter of probe.max_concurrent slots, taken only
// when free; a refresh that finds no free slot retries every tick until its facts
// expire and their stale grace (below) is over ("busy"). Probes go through the same
// address rate limit; a refresh that hit it keeps the old facts, which stay valid
// until they expire ("rate-limited").
//
// Stale while revalidate: a refresh started late (the first RCPT of the period came
// less than a probe's time before the expiry, or no refresh slot was free until then)
// may still be running, or not yet started, when the facts expire. An RCPT for the
// destination then is answered from the expired facts rather than waiting for a probe
// ("in progress"), for at most staleGrace past the expiry, and only while the refresh
// is running or still to start (such an RCPT starts it if a slot is free; the
// scheduler keeps trying every tick until the grace is over). This is RFC 8767's
// serve-stale, bounded as it advises: data past its TTL answers only while it is being
// refreshed and only for a short, fixed time (there 30 s per answer, at most 1 to 3
// days in all), and never instead of what the refresh brought back: store replaces
// the cached facts the moment the probe ends, so a refresh that finds the destination
// failing ends the stale answers at once. Facts nobody asked for during their cache
// period, and facts whose refresh ended without new ones (rate-limited), are never
// served stale: they expire as before. A stale answer is what a refresh started a
// little earlier would have given: the destination as a probe saw it at most the
// facts' TTL plus staleGrace ago.
//
// RefreshEvents, when Config.Events implements it, counts each refresh by result.
type RefreshEvents interface {
	// Refresh reports one refresh: "refreshed" (new facts stored), "busy" (no free
	// slot before the facts expired and their stale grace was over), "rate-limited"
	// (the old facts kept) or "error";
	// or one RCPT answered from expired facts while they were being refreshed
	// ("stale"; an answer, not a probe).
	Refresh(result string)
}

// staleGrace is how long past their expiry f may answer while being refreshed: the
// longest a probe may take (the DNS budget, then one session per address Postfix
// would try: probe.timeout x smtp_mx_address_limit), and at most half the facts' TTL,
// so facts are never served at more than 1.5 times the age they were cached for.
func (v *Verifier) staleGrace(f *Facts) time.Duration {
	return min(v.probeBudget(), f.Until.Sub(f.Checked)/2)
}

func (v *Verifier) probeBudget() time.Duration {
	return v.cfg.DNSTimeout + time.Duration(v.cfg.MXAddressLimit)*v.cfg.HostTimeout
}

// staleKeep is how much longer than their TTL facts stay in the cache, so that
// serveStale finds them: the bound of staleGrace with refresh-ahead, else nothing.
func (v *Verifier) staleKeep() time.Duration {
	if v.refresh == nil {
		return 0
	}
	return v.probeBudget()
}

// The refresh states of Facts.refresh.
const (
	refreshNone      int32 = iota // nobody asked for the facts since they were stored
	refreshScheduled              // a cache hit scheduled the refresh
	refreshRunning
	refreshOver // refreshed (new facts cached), or ended without new facts, or busy
)

// serveStale says whether expired facts f may answer an RCPT at now: f was asked for
// during its cache period, its refresh is running or still to start (this RCPT
// starts it when a slot is free), and now is within staleGrace of its expiry.
func (v *Verifier) serveStale(f *Facts, now time.Time) bool {
	if v.refresh == nil || !now.Before(f.Until.Add(v.staleGrace(f))) {
		return false
	}
	switch f.refresh.Load() {
	case refreshScheduled:
		v.startRefresh(f, now) // without a free slot, the scheduler tries again
	case refreshRunning:
	default:
		return false
	}
	v.refreshEvent("stale")
	return true
}

// refreshLead is how long before expiry facts with this TTL are refreshed: a tenth of
// the TTL, at least minRefreshLead (time for a slow probe), at most half of it.
func refreshLead(ttl time.Duration) time.Duration {
	return min(max(ttl/10, minRefreshLead), ttl/2)
}

const minRefreshLead = 15 * time.Second

type refreshItem struct {
	due time.Time
	f   *Facts
}

type refreshHeap []refreshItem

func (h refreshHeap) Len() int           { return len(h) }
func (h refreshHeap) Less(i, j int) bool { return h[i].due.Before(h[j].due) }
func (h refreshHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *refreshHeap) Push(x any)        { *h = append(*h, x.(refreshItem)) }
func (h *refreshHeap) Pop() any {
	old := *h
	it := old[len(old)-1]
	*h = old[:len(old)-1]
	return it
}

// refresher schedules and runs refreshes.
type refresher struct {
	mu    sync.Mutex
	queue refreshHeap
	slots chan struct{} // the refresh budget
	tick  time.Duration
}

func newRefresher(cfg Config) *refresher {
	tick := cfg.RefreshTick
	if tick <= 0 {
		tick = time.Second
	}
	return &refresher{slots: make(chan struct{}, max(1, cfg.MaxConcurrent/4)), tick: tick}
}

// noteHit schedules the refresh of f on its first cache hit.
func (v *Verifier) noteHit(f *Facts) {
	if v.refresh == nil || !f.refresh.CompareAndSwap(refreshNone, refreshScheduled) {
		return
	}
	due := f.Until.Add(-refreshLead(f.Until.Sub(f.Checked)))
	if now := v.cfg.Now(); !due.After(now) && v.startRefresh(f, now) {
		return // due already: started at once rather than at the next tick
	}
	r := v.refresh
	r.mu.Lock()
	heap.Push(&r.queue, refreshItem{due: due, f: f})
	r.mu.Unlock()
}

// runRefresher starts due refreshes every tick until the Verifier closes.
func (v *Verifier) runRefresher() {
	defer v.wg.Done()
	t := time.NewTicker(v.refresh.tick)
	defer t.Stop()
	for {
		select {
		case <-v.ctx.Done():
			return
		case <-t.C:
			v.startDueRefreshes()
		}
	}
}

// startDueRefreshes starts due refreshes, earliest due first, until none is due or no
// slot is free; the rest wait for the next tick or the next refresh that ends. It
// stops at the first refresh without a slot rather than trying every due one: each
// refresh that ends calls it, and a wave of due refreshes would otherwise be walked
// once per slot freed.
func (v *Verifier) startDueRefreshes() {
	r := v.refresh
	now := v.cfg.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	for r.queue.Len() > 0 && !r.queue[0].due.After(now) {
		if !v.startRefresh(r.queue[0].f, now) {
			return // no slot: it stays first in line
		}
		heap.Pop(&r.queue)
	}
}

// startRefresh starts the refresh of f if it is still the cached facts, still to be
// refreshed, and a slot is free; false means "try again at the next tick". The
// scheduler and an RCPT served stale may call it at once: one of them starts it.
func (v *Verifier) startRefresh(f *Facts, now time.Time) bool {
	if f.refresh.Load() != refreshScheduled {
		return true // started by an RCPT served stale, or over
	}
	if cur, ok := v.cache.Get(f.Domain); !ok || cur != f {
		return true // replaced (a probe after a change) or evicted: nothing to refresh
	}
	if !now.Before(f.Until.Add(v.staleGrace(f))) {
		// Expired, and past the grace in which a refresh still saves the next RCPT
		// from waiting, without ever finding a slot.
		if f.refresh.CompareAndSwap(refreshScheduled, refreshOver) {
			v.refreshEvent("busy")
		}
		return true
	}
	if !v.takeRefreshSlot() {
		return false
	}
	if !f.refresh.CompareAndSwap(refreshScheduled, refreshRunning) {
		v.releaseRefreshSlot()
		return true
	}
	if !v.enter() {
		f.refresh.Store(refreshOver)
		v.releaseRefreshSlot()
		return true
	}
	go v.runRefresh(f)
	return true
}

// takeRefreshSlot takes a refresh budget slot and a probe slot, both only when free.
func (v *Verifier) takeRefreshSlot() bool {
	select {
	case v.refresh.slots <- struct{}{}:
	default:
		return false
	}
	select {
	case v.sem <- struct{}{}:
		return true
	default:
		<-v.refresh.slots
		return false
	}
}

func (v *Verifier) releaseRefreshSlot() {
	<-v.sem
	<-v.refresh.slots
}

// runRefresh probes old's destination again. An RCPT that misses the cache meanwhile
// (the facts expired during the refresh) joins it through the singleflight group.
func (v *Verifier) runRefresh(old *Facts) {
	defer v.wg.Done()
	// The freed slot goes to the next due refresh at once, not at the next tick: a
	// wave of destinations first probed together (a restart, a burst of first
	// contacts) comes due together every TTL, and a slot per tick would turn most of
	// the wave into "busy" and its next RCPTs into probes to wait for.
	defer v.startDueRefreshes()
	defer v.releaseRefreshSlot()
	v.cfg.Events.ProbeRunning(1)
	defer v.cfg.Events.ProbeRunning(-1)
	result := "error"
	defer func() {
		// Over once the new facts are stored (or none came): never served stale
		// again. Before it is counted, so that whoever sees the count sees it over.
		old.refresh.Store(refreshOver)
		v.refreshEvent(result)
	}()
	_, _, _ = v.group.Do(old.Domain, func() (res any, err error) {
		defer func() {
			if p := recover(); p != nil {
				v.cfg.Log.Error("panic refreshing domain", "domain", old.Domain, "panic", p)
				res, err = old, fmt.Errorf("verify: panic refreshing %s: %v", old.Domain, p)
			}
		}()
		f := v.Probe(v.ctx, old.Domain)
		if v.ctx.Err() != nil {
			return old, v.ctx.Err()
		}
		for i := range f.Attempts {
			if f.Attempts[i].RateLimited {
				// Our own rate limit is no news about the destination: keep the
				// facts we have until they expire.
				result = "rate-limited"
				return old, nil
			}
		}
		v.store(f)
		result = "refreshed"
		return f, nil
	})
}

func (v *Verifier) refreshEvent(result string) {
	if e, ok := v.cfg.Events.(RefreshEvents); ok {
		e.Refresh(result)
	}
	v.cfg.Log.Debug("refresh-ahead", "result", result)
}

// startRefresher starts the scheduler when refresh-ahead is on.
func (v *Verifier) startRefresher() {
	if !v.cfg.RefreshAhead {
		return
	}
	v.refresh = newRefresher(v.cfg)
	if v.enter() {
		go v.runRefresher()
	}
}
