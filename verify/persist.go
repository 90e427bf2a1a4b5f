package verify

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/tlsgate/tlsgate/verify/mtasts"
)

// The verdict cache file keeps the facts cache across restarts, so a restart does not
// send a storm of probes to every destination at once, and the MTA-STS policies, so that
// an unexpired policy keeps protecting a domain across a restart (RFC 8461 §5.1). It is
// JSON lines: a header, then one record per line, facts or a policy. Both are read back
// only until they expire.

const cacheFileVersion = 2

// cacheRecord is one line after the header: exactly one field is set.
type cacheRecord struct {
	Facts  *Facts        `json:"facts,omitempty"`
	MTASTS *mtasts.Saved `json:"mta_sts,omitempty"`
}

// stsStore is implemented by an STSLookup whose policies can be saved (*mtasts.Client).
type stsStore interface {
	Export() []mtasts.Saved
	Import([]mtasts.Saved) int
}

type cacheFileHeader struct {
	Format  string    `json:"format"`
	Version int       `json:"version"`
	Saved   time.Time `json:"saved"`
}

// maxCacheLine bounds one line of the cache file (a domain with many hosts and
// certificate chains stays far below).
const maxCacheLine = 4 << 20

// ErrCacheFile is wrapped by every LoadCache error about the file's content or safety.
var ErrCacheFile = errors.New("verify: unusable cache file")

// track records that domain is in the cache, for SaveCache (ristretto cannot list its
// keys). The index is pruned of evicted domains on every save.
func (v *Verifier) track(domain string) {
	v.keysMu.Lock()
	defer v.keysMu.Unlock()
	v.keys[domain] = struct{}{}
	if len(v.keys) > 2*v.cfg.CacheSize {
		// Amortised: forget the domains the cache has evicted or expired.
		for d := range v.keys {
			if _, ok := v.cache.Get(d); !ok {
				delete(v.keys, d)
			}
		}
	}
}

// SaveCache writes the unexpired cached facts to path atomically (a temporary file in
// the same directory, synced, then renamed), readable only by the owner. It returns the
// number of domains written.
func (v *Verifier) SaveCache(path string) (int, error) {
	now := v.cfg.Now()
	v.keysMu.Lock()
	domains := make([]string, 0, len(v.keys))
	for d := range v.keys {
		domains = append(domains, d)
	}
	v.keysMu.Unlock()

	tmp, err := os.CreateTemp(filepath.Dir(path), ".tlsgate-cache-*")
	if err != nil {
		return 0, fmt.Errorf("verify: saving cache: %w", err)
	}
	defer os.Remove(tmp.Name()) // after a successful rename this fails harmlessly
	w := bufio.NewWriter(tmp)
	enc := json.NewEncoder(w)
	n := 0
	err = enc.Encode(cacheFileHeader{Format: "tlsgate-cache", Version: cacheFileVersion, Saved: now.UTC()})
	for _, d := range domains {
		if err != nil {
			break
		}
		f, ok := v.cache.Get(d)
		if !ok || !now.Before(f.Until) {
			v.keysMu.Lock()
			delete(v.keys, d)
			v.keysMu.Unlock()
			continue
		}
		err = enc.Encode(cacheRecord{Facts: f})
		n++
	}
	if st, ok := v.cfg.STS.(stsStore); ok {
		for _, s := range st.Export() {
			if err != nil {
				break
			}
			err = enc.Encode(cacheRecord{MTASTS: &s})
		}
	}
	if err == nil {
		err = w.Flush()
	}
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		return 0, fmt.Errorf("verify: saving cache: %w", err)
	}
	return n, nil
}

// LoadCache fills the cache from a file SaveCache wrote. A missing file loads nothing
// and is no error. Facts past their Until are dropped; at most the cache size is
// loaded. The file must be a regular file owned by this process's user and not
// writable by anyone else: a forged cache file would be a forged pass. On any error
// nothing is loaded and the error wraps ErrCacheFile (or the I/O error).
func (v *Verifier) LoadCache(path string) (int, error) {
	file, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("verify: loading cache: %w", err)
	}
	defer file.Close()
	if err := checkCacheFile(file); err != nil {
		return 0, fmt.Errorf("%w %s: %v", ErrCacheFile, path, err)
	}
	sc := bufio.NewScanner(file)
	sc.Buffer(make([]byte, 64<<10), maxCacheLine)
	var hdr cacheFileHeader
	if !sc.Scan() || json.Unmarshal(sc.Bytes(), &hdr) != nil || hdr.Format != "tlsgate-cache" || hdr.Version != cacheFileVersion {
		return 0, fmt.Errorf("%w %s: not a tlsgate cache file of version %d", ErrCacheFile, path, cacheFileVersion)
	}
	now := v.cfg.Now()
	var facts []*Facts
	var policies []mtasts.Saved
	for line := 2; sc.Scan(); line++ {
		var r cacheRecord
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			return 0, fmt.Errorf("%w %s:%d: %v", ErrCacheFile, path, line, err)
		}
		switch {
		case r.Facts != nil && r.MTASTS == nil:
			if r.Facts.Domain == "" {
				return 0, fmt.Errorf("%w %s:%d: no domain", ErrCacheFile, path, line)
			}
			if now.Before(r.Facts.Until) && len(facts) < v.cfg.CacheSize {
				facts = append(facts, r.Facts)
			}
		case r.MTASTS != nil && r.Facts == nil:
			policies = append(policies, *r.MTASTS)
		default:
			return 0, fmt.Errorf("%w %s:%d: neither facts nor an MTA-STS policy", ErrCacheFile, path, line)
		}
	}
	if err := sc.Err(); err != nil {
		return 0, fmt.Errorf("%w %s: %v", ErrCacheFile, path, err)
	}
	for _, f := range facts {
		v.cache.Set(f.Domain, f, f.Until.Sub(now))
		v.track(f.Domain)
	}
	if st, ok := v.cfg.STS.(stsStore); ok {
		st.Import(policies)
	}
	return len(facts), nil
}

// checkCacheFile refuses a cache file that someone else could have written.
func checkCacheFile(f *os.File) error {
	st, err := f.Stat()
	if err != nil {
		return err
	}
	if !st.Mode().IsRegular() {
		return errors.New("not a regular file")
	}
	if st.Mode().Perm()&0o022 != 0 {
		return fmt.Errorf("mode %04o: writable by group or others", st.Mode().Perm())
	}
	if sys, ok := st.Sys().(*syscall.Stat_t); ok && int(sys.Uid) != os.Geteuid() {
		return fmt.Errorf("owned by uid %d, not by this process (uid %d)", sys.Uid, os.Geteuid())
	}
	return nil
}
