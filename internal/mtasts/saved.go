package mtasts

import (
	"time"
)

// Saved is a cached policy as it is written to the verdict cache file, so that a
// restart keeps the policies it knew: RFC 8461 §5.1's protection (an unexpired policy
// outlives a missing TXT record or a failed fetch) holds across restarts too.
type Saved struct {
	Domain  string    `json:"domain"`
	ID      string    `json:"id"`
	Mode    Mode      `json:"mode"`
	MaxAge  int64     `json:"max_age"` // seconds
	MX      []string  `json:"mx,omitempty"`
	Fetched time.Time `json:"fetched"`
	Expires time.Time `json:"expires"`
}

// Export returns the cached policies that have not expired.
func (c *Client) Export() []Saved {
	now := c.cfg.Now()
	var out []Saved
	for _, d := range c.policy.Keys() {
		e, ok := c.policy.Get(d)
		if !ok || !e.usable(now) {
			continue
		}
		out = append(out, Saved{Domain: d, ID: e.id, Mode: e.policy.Mode, MaxAge: int64(e.policy.MaxAge / time.Second),
			MX: e.policy.MX, Fetched: e.fetched, Expires: e.expires})
	}
	return out
}

// Import caches saved policies that have not expired and are valid, and returns how
// many it took. A policy already cached is kept.
func (c *Client) Import(saved []Saved) int {
	now := c.cfg.Now()
	n := 0
	for _, s := range saved {
		if !now.Before(s.Expires) || s.Domain == "" || !validSaved(s) {
			continue
		}
		if _, ok := c.policy.Get(s.Domain); ok {
			continue
		}
		p := &Policy{Mode: s.Mode, MaxAge: time.Duration(s.MaxAge) * time.Second, MX: s.MX}
		c.store(s.Domain, &entry{id: s.ID, policy: p, fetched: s.Fetched, expires: s.Expires}, now)
		n++
	}
	return n
}

// validSaved checks a saved policy the way ParsePolicy checks a fetched one, by
// parsing its rendering: a forged or damaged file cannot plant what no policy host
// could have served.
func validSaved(s Saved) bool {
	if s.MaxAge < 0 || s.MaxAge > MaxMaxAge || s.ID == "" {
		return false
	}
	if _, err := ParseTXT([]string{"v=STSv1; id=" + s.ID}); err != nil {
		return false
	}
	p := &Policy{Mode: s.Mode, MaxAge: time.Duration(s.MaxAge) * time.Second, MX: s.MX}
	if s.Mode < ModeNone || s.Mode > ModeEnforce {
		return false
	}
	_, err := ParsePolicy([]byte(p.String()))
	return err == nil
}
