package sharedcache

import (
	"context"
	"encoding/json"
	"time"

	"github.com/tlsgate/tlsgate/internal/mtasts"
)

// Policies is the fleet's MTA-STS policy store (RFC 8461 §5.1 "policy persistence"):
// a policy one host fetched protects the domain at every host until it expires, also
// when the policy host is unreachable from the others.
func (t *Tier) Policies() mtasts.PolicyStore { return policyStore{t} }

type policyStore struct{ t *Tier }

func (p policyStore) LoadPolicy(ctx context.Context, domain string) (mtasts.Saved, bool) {
	var s mtasts.Saved
	payload, found, err := p.t.GetPolicy(ctx, domain)
	if err != nil || !found || json.Unmarshal(payload, &s) != nil {
		return mtasts.Saved{}, false
	}
	return s, true // mtasts checks it like a policy read from the cache file
}

func (p policyStore) SavePolicy(ctx context.Context, s mtasts.Saved) {
	payload, err := json.Marshal(s)
	if err != nil {
		return
	}
	p.t.PutPolicy(ctx, s.Domain, payload, time.Until(s.Expires))
}
