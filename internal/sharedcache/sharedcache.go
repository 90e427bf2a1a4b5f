// Package sharedcache is the fleet's shared second cache tier, on a Valkey or Redis
// server: facts, probe leases (one probe per domain across the fleet), the per-address
// rate-limit counters, TLS postures and MTA-STS policies, and the pub/sub channel that
// carries purges to every host.
//
// Every operation is bounded by Config.Timeout and fails rather than waits: callers fall
// back to their local tier and their own probes. While the server is unreachable the
// Tier tries it at most once per RetryInterval and answers ErrUnavailable at once
// otherwise, so an outage costs no RCPT a timeout. It logs one line when the server
// becomes unreachable and one when it is back.
//
// Key layout (PREFIX is cache.shared.key_prefix, default "tlsgate:"):
//
//	PREFIX f:KEY         facts of one cache key (a domain), sealed; expires with the facts
//	PREFIX l:KEY         probe lease: the holder's id; PX LeaseTTL, renewed while probing
//	PREFIX p:KEY         last TLS posture of the domain, sealed; 7 days
//	PREFIX s:DOMAIN      MTA-STS policy, sealed; expires with the policy (max_age)
//	PREFIX r:ADDR:SLOT   probes of one MX address in one minute (INCR); 2 minutes
//	PREFIX inval         pub/sub channel: "k:KEY" purges one key, "*" everything
package sharedcache

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// Events receives counts for metrics. Implementations must be cheap and safe for
// concurrent use.
type Events interface {
	// SharedRequest counts one operation: op is get, put, lease, ratelimit, posture,
	// policy_get, policy_put, purge, list; result is hit, miss, ok, busy (a lease held
	// by another host), denied (over the rate limit), refused (an entry failed
	// authentication), error, timeout or unavailable (skipped during an outage).
	SharedRequest(op, result string)
	// SharedRefused counts an entry refused, by reason (bad-mac, version, oversize,
	// malformed).
	SharedRefused(reason string)
	// SharedUp reports whether the server answers.
	SharedUp(up bool)
	// SharedInvalidation counts one purge applied from the fleet's channel.
	SharedInvalidation()
}

// NopEvents ignores everything.
type NopEvents struct{}

func (NopEvents) SharedRequest(string, string) {}
func (NopEvents) SharedRefused(string)         {}
func (NopEvents) SharedUp(bool)                {}
func (NopEvents) SharedInvalidation()          {}

// Config configures a Tier.
type Config struct {
	// URL is redis://[user:password@]host:port/db, rediss://... (TLS) or
	// unix://[user:password@]/path?db=N.
	URL string
	// KeyPrefix starts every key and the channel; default DefaultKeyPrefix.
	KeyPrefix string
	// Secret authenticates entries (ReadSecret); required.
	Secret []byte
	// Timeout bounds one operation; default DefaultTimeout.
	Timeout time.Duration
	// RetryInterval is how often an unreachable server is tried again; default 1s.
	RetryInterval time.Duration
	Log           *slog.Logger
	Events        Events
	Now           func() time.Time
}

// ErrUnavailable is returned without contacting the server while it is known to be
// unreachable (at most one attempt per RetryInterval goes through).
var ErrUnavailable = errors.New("sharedcache: server unavailable")

// Tier is a connection to the shared server. Safe for concurrent use.
type Tier struct {
	cfg    Config
	rdb    *redis.Client
	holder string

	mu       sync.Mutex
	down     bool
	since    time.Time // when the current outage began
	nextTry  time.Time
	lastErr  string
	refused  int // refusals not yet logged
	refusedT time.Time

	subMu   sync.Mutex
	sub     *redis.PubSub
	subDone chan struct{}
}

// Defaults of the Config fields Open fills in for a zero value; the configuration's
// schema uses the same constants for cache.shared.key_prefix and cache.shared.timeout.
const (
	DefaultKeyPrefix = "tlsgate:"
	DefaultTimeout   = 75 * time.Millisecond
)

// Open returns a Tier for cfg. It does not contact the server: a fleet member must start
// (and answer from its local tier) while the server is down.
func Open(cfg Config) (*Tier, error) {
	if len(cfg.Secret) < MinSecret {
		return nil, errors.New("sharedcache: a secret of at least 32 bytes is required")
	}
	opt, err := redis.ParseURL(cfg.URL)
	if err != nil {
		return nil, fmt.Errorf("cache.shared.url: %w", err)
	}
	if cfg.KeyPrefix == "" {
		cfg.KeyPrefix = DefaultKeyPrefix
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.RetryInterval <= 0 {
		cfg.RetryInterval = time.Second
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Events == nil {
		cfg.Events = NopEvents{}
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	// Fail fast: no retries (the caller falls back), every wait bounded by Timeout; the
	// context deadline of each operation is honoured too.
	opt.DialTimeout = max(cfg.Timeout, 50*time.Millisecond)
	opt.ReadTimeout = cfg.Timeout
	opt.WriteTimeout = cfg.Timeout
	opt.PoolTimeout = cfg.Timeout
	opt.MaxRetries = -1
	opt.ContextTimeoutEnabled = true
	opt.DisableIdentity = true // CLIENT SETINFO is unknown before Redis 7.2
	opt.Protocol = 2
	var id [6]byte
	rand.Read(id[:])
	host, _ := os.Hostname()
	t := &Tier{cfg: cfg, rdb: redis.NewClient(opt), holder: fmt.Sprintf("%s/%d/%s", host, os.Getpid(), hex.EncodeToString(id[:]))}
	cfg.Events.SharedUp(true) // assumed up until an operation fails
	return t, nil
}

// Close stops the subscription and closes the connections.
func (t *Tier) Close() error {
	t.subMu.Lock()
	if t.sub != nil {
		t.sub.Close()
		t.sub = nil
	}
	done := t.subDone
	t.subMu.Unlock()
	if done != nil {
		<-done
	}
	return t.rdb.Close()
}

// Holder is this process's lease holder id.
func (t *Tier) Holder() string { return t.holder }

// Prefix is the key prefix.
func (t *Tier) Prefix() string { return t.cfg.KeyPrefix }

func (t *Tier) key(kind, k string) string { return t.cfg.KeyPrefix + kind + ":" + k }

// do runs one operation under the outage breaker and the timeout, counts it and keeps
// the up/down state. classify turns a nil error into the result label.
func (t *Tier) do(ctx context.Context, op string, fn func(ctx context.Context) (string, error)) error {
	return t.doT(ctx, op, t.cfg.Timeout, fn)
}

// adminTimeout bounds one batch of an administrative walk (list, purge --all).
const adminTimeout = 2 * time.Second

func (t *Tier) doT(ctx context.Context, op string, timeout time.Duration, fn func(ctx context.Context) (string, error)) error {
	if !t.attempt() {
		t.cfg.Events.SharedRequest(op, "unavailable")
		return ErrUnavailable
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	result, err := fn(ctx)
	var refused *RefusedError
	var rerr redis.Error
	switch {
	case err == nil:
		t.up()
	case errors.As(err, &refused):
		t.up()
		result = "refused"
		t.refuse(refused)
	case errors.As(err, &rerr):
		// The server answered with an error (READONLY, OOM, NOAUTH, ...): it is up
		// but this operation failed.
		t.up()
		result = "error"
		t.logServerError(op, err)
	default:
		result = "error"
		if errors.Is(err, context.DeadlineExceeded) || isTimeout(err) {
			result = "timeout"
		}
		t.failed(err)
	}
	t.cfg.Events.SharedRequest(op, result)
	return err
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// attempt reports whether an operation may contact the server now.
func (t *Tier) attempt() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.down {
		return true
	}
	now := t.cfg.Now()
	if now.Before(t.nextTry) {
		return false
	}
	t.nextTry = now.Add(t.cfg.RetryInterval) // one attempt per interval goes through
	return true
}

func (t *Tier) up() {
	t.mu.Lock()
	if !t.down {
		t.mu.Unlock()
		return
	}
	t.down = false
	since := t.since
	t.mu.Unlock()
	t.cfg.Events.SharedUp(true)
	t.cfg.Log.Info("shared cache reachable again; sharing resumes", "url", redacted(t.cfg.URL), "outage", t.cfg.Now().Sub(since).Round(time.Millisecond))
}

func (t *Tier) failed(err error) {
	t.mu.Lock()
	now := t.cfg.Now()
	t.nextTry = now.Add(t.cfg.RetryInterval)
	if t.down {
		t.mu.Unlock()
		return
	}
	t.down, t.since, t.lastErr = true, now, err.Error()
	t.mu.Unlock()
	t.cfg.Events.SharedUp(false)
	t.cfg.Log.Warn("shared cache unreachable; using the local cache and own probes until it is back",
		"url", redacted(t.cfg.URL), "err", err)
}

// Up reports whether the server answered the last operation.
func (t *Tier) Up() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return !t.down
}

// refuse logs a refused entry, at most one line per 10 seconds with the count.
func (t *Tier) refuse(e *RefusedError) {
	t.cfg.Events.SharedRefused(e.Reason)
	t.mu.Lock()
	t.refused++
	now := t.cfg.Now()
	if now.Sub(t.refusedT) < 10*time.Second {
		t.mu.Unlock()
		return
	}
	n := t.refused
	t.refused, t.refusedT = 0, now
	t.mu.Unlock()
	t.cfg.Log.Warn("shared cache entry refused: not written by a host with this fleet's secret, or damaged; ignored",
		"key", e.Key, "reason", e.Reason, "refused_since_last_log", n)
}

func (t *Tier) logServerError(op string, err error) {
	t.cfg.Log.Warn("shared cache error", "op", op, "err", err)
}

// redacted hides a password in url.
func redacted(url string) string {
	if i := strings.Index(url, "://"); i >= 0 {
		if j := strings.LastIndex(url, "@"); j > i {
			return url[:i+3] + "REDACTED" + url[j:]
		}
	}
	return url
}

// get reads and opens one sealed entry.
func (t *Tier) get(ctx context.Context, op string, kind byte, prefix, k string) (payload []byte, found bool, err error) {
	err = t.do(ctx, op, func(ctx context.Context) (string, error) {
		// GETRANGE, not GET: a value planted to be huge costs at most MaxEntry+1 bytes
		// on the wire (and is then refused as oversize). A missing key reads as "".
		b, err := t.rdb.GetRange(ctx, t.key(prefix, k), 0, MaxEntry).Bytes()
		if errors.Is(err, redis.Nil) || err == nil && len(b) == 0 {
			return "miss", nil
		}
		if err != nil {
			return "", err
		}
		payload, err = open(t.cfg.Secret, kind, k, b)
		if err != nil {
			return "", err
		}
		found = true
		return "hit", nil
	})
	if err != nil {
		return nil, false, err
	}
	return payload, found, nil
}

func (t *Tier) put(ctx context.Context, op string, kind byte, prefix, k string, payload []byte, ttl time.Duration) error {
	if ttl <= 0 {
		return nil
	}
	v := seal(t.cfg.Secret, kind, k, payload)
	if len(v) > MaxEntry {
		t.cfg.Events.SharedRequest(op, "oversize")
		return fmt.Errorf("sharedcache: entry for %q is %d bytes, over %d", k, len(v), MaxEntry)
	}
	return t.do(ctx, op, func(ctx context.Context) (string, error) {
		return "ok", t.rdb.Set(ctx, t.key(prefix, k), v, ttl).Err()
	})
}

// GetFacts returns the authenticated facts payload stored for key. A refused entry
// is an error wrapping ErrRefused (already counted and logged).
func (t *Tier) GetFacts(ctx context.Context, key string) ([]byte, bool, error) {
	return t.get(ctx, "get", KindFacts, "f", key)
}

// PutFacts stores the facts payload for key, expiring after ttl.
func (t *Tier) PutFacts(ctx context.Context, key string, payload []byte, ttl time.Duration) error {
	return t.put(ctx, "put", KindFacts, "f", key, payload, ttl)
}

// GetPolicy returns the MTA-STS policy payload stored for domain.
func (t *Tier) GetPolicy(ctx context.Context, domain string) ([]byte, bool, error) {
	return t.get(ctx, "policy_get", KindPolicy, "s", domain)
}

// PutPolicy stores an MTA-STS policy payload for domain until it expires.
func (t *Tier) PutPolicy(ctx context.Context, domain string, payload []byte, ttl time.Duration) error {
	return t.put(ctx, "policy_put", KindPolicy, "s", domain, payload, ttl)
}

// SwapPosture stores the posture payload for key and returns the one it replaced
// (atomically: SET ... GET), so that of the hosts that see one change, exactly one is
// told the old posture differed.
func (t *Tier) SwapPosture(ctx context.Context, key string, payload []byte, ttl time.Duration) (old []byte, found bool, err error) {
	v := seal(t.cfg.Secret, KindPosture, key, payload)
	err = t.do(ctx, "posture", func(ctx context.Context) (string, error) {
		b, err := t.rdb.SetArgs(ctx, t.key("p", key), v, redis.SetArgs{TTL: ttl, Get: true}).Bytes()
		if errors.Is(err, redis.Nil) {
			return "miss", nil
		}
		if err != nil {
			return "", err
		}
		if old, err = open(t.cfg.Secret, KindPosture, key, b); err != nil {
			return "", err
		}
		found = true
		return "hit", nil
	})
	return old, found, err
}

// LeaseTTL is how long a probe lease lasts without renewal: a host that died while
// probing holds up the others at most this long.
const LeaseTTL = 5 * time.Second

// Acquire takes the probe lease of key for this process. It reports false when another
// host holds it.
func (t *Tier) Acquire(ctx context.Context, key string) (bool, error) {
	var ok bool
	err := t.do(ctx, "lease", func(ctx context.Context) (string, error) {
		var err error
		ok, err = t.rdb.SetNX(ctx, t.key("l", key), t.holder, LeaseTTL).Result()
		if !ok && err == nil {
			return "busy", nil
		}
		return "ok", err
	})
	return ok, err
}

var (
	renewScript   = redis.NewScript(`if redis.call("GET", KEYS[1]) == ARGV[1] then return redis.call("PEXPIRE", KEYS[1], ARGV[2]) else return 0 end`)
	releaseScript = redis.NewScript(`if redis.call("GET", KEYS[1]) == ARGV[1] then return redis.call("DEL", KEYS[1]) else return 0 end`)
)

// Hold keeps the lease of key renewed until the returned release is called, which
// deletes it (only if this process still holds it).
func (t *Tier) Hold(key string) (release func()) {
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(LeaseTTL / 3)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				t.do(context.Background(), "lease", func(ctx context.Context) (string, error) {
					return "ok", renewScript.Run(ctx, t.rdb, []string{t.key("l", key)}, t.holder, LeaseTTL.Milliseconds()).Err()
				})
			}
		}
	}()
	var once sync.Once
	return func() {
		once.Do(func() {
			close(stop)
			<-done
			t.do(context.Background(), "lease", func(ctx context.Context) (string, error) {
				return "ok", releaseScript.Run(ctx, t.rdb, []string{t.key("l", key)}, t.holder).Err()
			})
		})
	}
}

// Allow counts one probe of addr in the current window (a fixed window: at most limit
// probes per window, so at most 2 x limit in any window-long span across a boundary)
// and reports whether it is within limit, fleet-wide.
func (t *Tier) Allow(ctx context.Context, addr string, limit int, window time.Duration) (bool, error) {
	slot := t.cfg.Now().UnixMilli() / window.Milliseconds()
	k := t.key("r", fmt.Sprintf("%s:%d", addr, slot))
	var n int64
	err := t.do(ctx, "ratelimit", func(ctx context.Context) (string, error) {
		var incr *redis.IntCmd
		_, err := t.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			incr = p.Incr(ctx, k)
			p.PExpire(ctx, k, 2*window)
			return nil
		})
		if err != nil {
			return "", err
		}
		n = incr.Val()
		if n > int64(limit) {
			return "denied", nil
		}
		return "ok", nil
	})
	return err == nil && n <= int64(limit), err
}

// Purge deletes the facts of keys and tells every host to drop them from its local
// tier. It returns how many entries the server held.
func (t *Tier) Purge(ctx context.Context, keys ...string) (int, error) {
	var n int64
	err := t.do(ctx, "purge", func(ctx context.Context) (string, error) {
		var del *redis.IntCmd
		_, err := t.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			fk := make([]string, len(keys))
			for i, k := range keys {
				fk[i] = t.key("f", k)
			}
			del = p.Del(ctx, fk...)
			for _, k := range keys {
				p.Publish(ctx, t.cfg.KeyPrefix+"inval", "k:"+k)
			}
			return nil
		})
		n = del.Val()
		return "ok", err
	})
	return int(n), err
}

// PurgeAll deletes every facts entry of this prefix and tells every host to empty its
// local tier.
func (t *Tier) PurgeAll(ctx context.Context) (int, error) {
	n := 0
	err := t.scan(ctx, "purge", func(ctx context.Context, keys []string) error {
		d, err := t.rdb.Del(ctx, keys...).Result()
		n += int(d)
		return err
	})
	if err != nil {
		return n, err
	}
	return n, t.do(ctx, "purge", func(ctx context.Context) (string, error) {
		return "ok", t.rdb.Publish(ctx, t.cfg.KeyPrefix+"inval", "*").Err()
	})
}

// Entry is one facts entry listed.
type Entry struct {
	Key     string
	Payload []byte
}

// List calls fn with every authenticated facts entry (refused ones are counted and
// skipped), in no particular order.
func (t *Tier) List(ctx context.Context, fn func(Entry)) error {
	plen := len(t.key("f", ""))
	return t.scan(ctx, "list", func(ctx context.Context, keys []string) error {
		vals, err := t.rdb.MGet(ctx, keys...).Result()
		if err != nil {
			return err
		}
		for i, v := range vals {
			s, ok := v.(string)
			if !ok {
				continue // expired since the scan
			}
			k := keys[i][plen:]
			payload, err := open(t.cfg.Secret, KindFacts, k, []byte(s))
			var refused *RefusedError
			if errors.As(err, &refused) {
				t.refuse(refused)
				continue
			}
			fn(Entry{Key: k, Payload: payload})
		}
		return nil
	})
}

// scan walks the facts keys in batches; each batch is one bounded operation, the whole
// walk is bounded by ctx.
func (t *Tier) scan(ctx context.Context, op string, batch func(ctx context.Context, keys []string) error) error {
	match := globEscape(t.cfg.KeyPrefix) + "f:*"
	var cursor uint64
	for {
		var keys []string
		err := t.doT(ctx, op, max(t.cfg.Timeout, adminTimeout), func(ctx context.Context) (string, error) {
			var err error
			keys, cursor, err = t.rdb.Scan(ctx, cursor, match, 1000).Result()
			if err == nil && len(keys) > 0 {
				err = batch(ctx, keys)
			}
			return "ok", err
		})
		if err != nil {
			return err
		}
		if cursor == 0 {
			return nil
		}
		if err := ctx.Err(); err != nil {
			return err
		}
	}
}

// globEscape quotes the glob characters of SCAN MATCH.
func globEscape(s string) string {
	var b strings.Builder
	for _, r := range s {
		if strings.ContainsRune(`*?[]\`, r) {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}

// Subscribe applies the fleet's purges: forget(key) for one key, forgetAll() for a
// purge of everything, and forgetAll() too after the subscription was re-established
// (purges published while this host was cut off are lost; its local entries are then
// re-read from the shared tier, which costs one round trip each, not a probe).
// It returns at once; Close stops it.
func (t *Tier) Subscribe(forget func(key string), forgetAll func()) {
	ps := t.rdb.Subscribe(context.Background(), t.cfg.KeyPrefix+"inval")
	done := make(chan struct{})
	t.subMu.Lock()
	t.sub, t.subDone = ps, done
	t.subMu.Unlock()
	go func() {
		defer close(done)
		subscribed := false
		for {
			msg, err := ps.Receive(context.Background())
			if err != nil {
				if errors.Is(err, redis.ErrClosed) {
					return
				}
				t.failed(err)
				time.Sleep(t.cfg.RetryInterval)
				continue
			}
			switch m := msg.(type) {
			case *redis.Subscription:
				if m.Kind != "subscribe" {
					continue
				}
				if subscribed {
					t.cfg.Log.Info("shared cache invalidations resubscribed; local tier emptied (purges may have been missed)")
					t.cfg.Events.SharedInvalidation()
					forgetAll()
				}
				subscribed = true
				t.up()
			case *redis.Message:
				t.cfg.Events.SharedInvalidation()
				if k, ok := strings.CutPrefix(m.Payload, "k:"); ok {
					forget(k)
				} else if m.Payload == "*" {
					forgetAll()
				}
			}
		}
	}()
}
