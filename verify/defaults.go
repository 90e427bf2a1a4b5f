package verify

import "time"

// Defaults of the Config fields New fills in for a zero value. The configuration's
// schema (config) uses these same constants for probe.*, cache.* so that a Verifier
// made without the configuration behaves like the documented defaults.
const (
	DefaultHostTimeout   = 10 * time.Second // probe.timeout
	DefaultSMTPPort      = 25               // probe.port
	DefaultMaxConcurrent = 64               // probe.max_concurrent
	DefaultCacheSize     = 100000           // cache.size
	DefaultPassTTL       = time.Hour        // cache.pass_ttl
	DefaultFailTTL       = 10 * time.Minute // cache.fail_ttl
	DefaultTempfailTTL   = time.Minute      // cache.tempfail_ttl
)
