package sharedcache

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"syscall"
)

// An entry in the shared server is a trust boundary: whoever can write to the server
// could otherwise plant a pass. Every value tlsgate stores there is
//
//	"TG" | version (1 byte) | kind (1 byte) | HMAC-SHA256 (32 bytes) | payload
//
// where the MAC covers a context string, the version, the kind, the cache key and the
// payload, under the key of cache.shared.secret_file that every host of the fleet shares.
// A value whose MAC, version, size or framing is wrong is refused: never trusted,
// counted and logged. The MAC binds the key, so a valid entry of one domain replayed
// under another domain's key is refused too.

// Kinds of entries.
const (
	KindFacts   byte = 'f' // a domain's facts (verify's cache-file serialisation)
	KindPosture byte = 'p' // a domain's last TLS posture
	KindPolicy  byte = 's' // a domain's MTA-STS policy (RFC 8461 §5.1 persistence)
)

// Version is the entry format written; no other version is accepted.
const Version byte = 1

// MaxEntry bounds an entry read from or written to the server. Facts are a few KiB at
// most (verify bounds remote text); anything larger is refused, not parsed.
const MaxEntry = 256 << 10

const headerLen = 2 + 1 + 1 + sha256.Size

// Reasons an entry is refused (the label of tlsgate_shared_cache_auth_failures_total).
const (
	ReasonMalformed = "malformed"
	ReasonVersion   = "version"
	ReasonOversize  = "oversize"
	ReasonMAC       = "bad-mac"
)

// RefusedError is returned for an entry that was present but not trusted.
type RefusedError struct {
	Reason string
	Key    string
}

func (e *RefusedError) Error() string {
	return fmt.Sprintf("shared cache entry for %q refused: %s", e.Key, e.Reason)
}

// ErrRefused is wrapped by every *RefusedError.
var ErrRefused = errors.New("sharedcache: entry refused")

func (e *RefusedError) Unwrap() error { return ErrRefused }

func mac(secret []byte, version, kind byte, key string, payload []byte) []byte {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte("tlsgate-shared-cache\x00"))
	m.Write([]byte{version, kind})
	var n [4]byte
	binary.BigEndian.PutUint32(n[:], uint32(len(key)))
	m.Write(n[:])
	m.Write([]byte(key))
	m.Write(payload)
	return m.Sum(nil)
}

// seal frames and authenticates payload for key.
func seal(secret []byte, kind byte, key string, payload []byte) []byte {
	out := make([]byte, 0, headerLen+len(payload))
	out = append(out, 'T', 'G', Version, kind)
	out = append(out, mac(secret, Version, kind, key, payload)...)
	return append(out, payload...)
}

// open checks value as an entry of kind for key and returns its payload.
func open(secret []byte, kind byte, key string, value []byte) ([]byte, error) {
	refuse := func(reason string) ([]byte, error) { return nil, &RefusedError{Reason: reason, Key: key} }
	if len(value) > MaxEntry {
		return refuse(ReasonOversize)
	}
	if len(value) < headerLen || value[0] != 'T' || value[1] != 'G' {
		return refuse(ReasonMalformed)
	}
	if value[2] != Version {
		return refuse(ReasonVersion)
	}
	if value[3] != kind {
		return refuse(ReasonMalformed)
	}
	payload := value[headerLen:]
	if !hmac.Equal(value[4:headerLen], mac(secret, value[2], kind, key, payload)) {
		return refuse(ReasonMAC)
	}
	return payload, nil
}

// MinSecret is the least length of the shared secret, in bytes.
const MinSecret = 32

// ReadSecret reads the fleet's shared key from path. The file is checked like the
// verdict cache file (a regular file owned by this user, not writable by group or
// others), and further must not be readable by others: whoever reads it can forge
// passes. Surrounding white space is ignored; at least MinSecret bytes must remain
// (e.g. `head -c 48 /dev/urandom | base64 > secret`).
func ReadSecret(path string) ([]byte, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, fmt.Errorf("cache.shared.secret_file: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("cache.shared.secret_file: %w", err)
	}
	switch {
	case !st.Mode().IsRegular():
		return nil, fmt.Errorf("cache.shared.secret_file %s: not a regular file", path)
	case st.Mode().Perm()&0o027 != 0:
		return nil, fmt.Errorf("cache.shared.secret_file %s: mode %04o: must not be writable by group nor accessible to others (chmod 0600)", path, st.Mode().Perm())
	}
	if sys, ok := st.Sys().(*syscall.Stat_t); ok && int(sys.Uid) != os.Geteuid() {
		return nil, fmt.Errorf("cache.shared.secret_file %s: owned by uid %d, not by this process (uid %d)", path, sys.Uid, os.Geteuid())
	}
	b, err := io.ReadAll(io.LimitReader(f, 4096))
	if err != nil {
		return nil, fmt.Errorf("cache.shared.secret_file: %w", err)
	}
	s := strings.TrimSpace(string(b))
	if len(s) < MinSecret {
		return nil, fmt.Errorf("cache.shared.secret_file %s: %d bytes; at least %d are required", path, len(s), MinSecret)
	}
	return []byte(s), nil
}
