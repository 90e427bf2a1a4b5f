package verify

import (
	"bufio"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"time"

	"github.com/tlsgate/tlsgate/internal/mtasts"
	"github.com/tlsgate/tlsgate/internal/safetext"
	"github.com/tlsgate/tlsgate/internal/smtpprobe"
)

// The verdict cache file keeps the facts cache across restarts, so a restart does not
// send a storm of probes to every destination at once, and the MTA-STS policies, so that
// an unexpired policy keeps protecting a domain across a restart (RFC 8461 §5.1). It is
// JSON lines: a header, then one record per line, facts or a policy. Both are read back
// only until they expire.

// cacheFileVersion 4: facts of TLS 1.0/1.1 servers carry the server's answer to
// Postfix's own ClientHello (smtpprobe.Hello); version 3 facts of such a server say
// "handshake failed", a false reject at encrypt. Version 3: facts judged with OpenSSL's
// name constraints on a CN-only leaf. Files of versions 2 and 3 are still read for their
// MTA-STS policies (they stay valid), but their facts are dropped.
const (
	cacheFileVersion = 4
)

// cacheFilePoliciesVersions are older versions whose MTA-STS policies are still loaded.
var cacheFilePoliciesVersions = []int{2, 3}

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

// SaveCache writes the unexpired cached facts to path atomically (a temporary file in
// the same directory, synced, then renamed), readable only by the owner. It returns the
// number of domains written.
func (v *Verifier) SaveCache(path string) (int, error) {
	now := v.cfg.Now()
	domains := v.cache.Keys()
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tlsgate-cache-*")
	if err != nil {
		return 0, fmt.Errorf("verify: saving cache: %w", err)
	}
	defer os.Remove(tmp.Name()) // after a successful rename this fails harmlessly
	w := bufio.NewWriter(tmp)
	n := 0
	// put writes one record on its own line; a record that would not load again (over
	// maxCacheLine: a domain with thousands of MX hosts) is left out, not the file.
	put := func(rec any) (bool, error) {
		line, err := json.Marshal(rec)
		if err != nil || len(line) > maxCacheLine {
			return false, err
		}
		_, err = w.Write(append(line, '\n'))
		return err == nil, err
	}
	_, err = put(cacheFileHeader{Format: "tlsgate-cache", Version: cacheFileVersion, Saved: now.UTC()})
	for _, d := range domains {
		if err != nil {
			break
		}
		f, ok := v.cache.Get(d)
		if !ok || !now.Before(f.Until) {
			continue
		}
		var wrote bool
		if wrote, err = put(cacheRecord{Facts: f}); wrote {
			n++
		}
	}
	if st, ok := v.cfg.STS.(stsStore); ok {
		for _, s := range st.Export() {
			if err != nil {
				break
			}
			_, err = put(cacheRecord{MTASTS: &s})
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
	// The rename is durable once the directory is synced (best effort: some file
	// systems refuse fsync on a directory).
	if dir, err := os.Open(filepath.Dir(path)); err == nil {
		dir.Sync()
		dir.Close()
	}
	return n, nil
}

// LoadCache fills the cache from a file SaveCache wrote, and returns how many domains
// it loaded. A missing file loads nothing and is no error. Facts past their Until are
// dropped; at most the cache size is loaded.
//
// The file must be a regular file owned by this process's user and not writable by
// anyone else (a forged cache file would be a forged pass); it is opened without
// following a symbolic link and without blocking (a FIFO put in its place must not stop
// the start), and the checks are made on the file opened, not on the path. A file that
// fails them, or whose header is not this version's, loads nothing: the error wraps
// ErrCacheFile (or is the I/O error).
//
// A bad line (not JSON, not a record, longer than maxCacheLine) is skipped and counted,
// and the rest loads: one damaged or oversized record must not cost every saved verdict
// and MTA-STS policy. Then both the count loaded and a *CacheLinesSkipped (wrapping
// ErrCacheFile) that says how many lines were skipped are returned.
func (v *Verifier) LoadCache(path string) (int, error) {
	file, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return 0, nil
	case errors.Is(err, syscall.ELOOP):
		return 0, fmt.Errorf("%w %s: a symbolic link", ErrCacheFile, path)
	case err != nil:
		return 0, fmt.Errorf("verify: loading cache: %w", err)
	}
	defer file.Close()
	if err := checkCacheFile(file); err != nil {
		return 0, fmt.Errorf("%w %s: %v", ErrCacheFile, path, err)
	}
	lr := lineReader{r: bufio.NewReaderSize(file, 64<<10), max: maxCacheLine}
	var hdr cacheFileHeader
	line, err := lr.next()
	if err != nil || json.Unmarshal(line, &hdr) != nil || hdr.Format != "tlsgate-cache" ||
		hdr.Version != cacheFileVersion && !slices.Contains(cacheFilePoliciesVersions, hdr.Version) {
		return 0, fmt.Errorf("%w %s: not a tlsgate cache file of version %d", ErrCacheFile, path, cacheFileVersion)
	}
	keepFacts := hdr.Version == cacheFileVersion
	now := v.cfg.Now()
	var facts []*Facts
	var policies []mtasts.Saved
	skipped, firstBad := 0, ""
	skip := func(n int, why string) {
		if skipped == 0 {
			firstBad = fmt.Sprintf("line %d: %s", n, why)
		}
		skipped++
	}
	for n := 2; ; n++ {
		line, err := lr.next()
		if errors.Is(err, io.EOF) {
			break
		}
		if errors.Is(err, errLineTooLong) {
			skip(n, err.Error())
			continue
		}
		if err != nil {
			return 0, fmt.Errorf("verify: loading cache %s: %w", path, err)
		}
		var r cacheRecord
		if err := json.Unmarshal(line, &r); err != nil {
			skip(n, safetext.Bound(err.Error(), 200))
			continue
		}
		switch {
		case r.Facts != nil && r.MTASTS == nil:
			if r.Facts.Domain == "" {
				skip(n, "no domain")
				continue
			}
			if err := checkFacts(r.Facts, r.Facts.Domain); err != nil {
				skip(n, safetext.Bound(err.Error(), 200))
				continue
			}
			if keepFacts && now.Before(r.Facts.Until) && len(facts) < v.cfg.CacheSize {
				boundFacts(r.Facts)
				facts = append(facts, r.Facts)
			}
		case r.MTASTS != nil && r.Facts == nil:
			policies = append(policies, *r.MTASTS)
		default:
			skip(n, "neither facts nor an MTA-STS policy")
		}
	}
	for _, f := range facts {
		v.cache.Set(f.Domain, f, f.Until.Sub(now))
	}
	if st, ok := v.cfg.STS.(stsStore); ok {
		st.Import(policies)
	}
	if skipped > 0 {
		return len(facts), &CacheLinesSkipped{Path: path, Skipped: skipped, First: firstBad, Loaded: len(facts)}
	}
	return len(facts), nil
}

// CacheLinesSkipped is LoadCache's error when the file loaded but for some bad lines:
// the domains of the other lines are in the cache. It wraps ErrCacheFile.
type CacheLinesSkipped struct {
	Path    string
	Skipped int    // lines skipped
	First   string // the first one and why: "line 3: unexpected end of JSON input"
	Loaded  int    // domains loaded from the rest
}

func (e *CacheLinesSkipped) Error() string {
	return fmt.Sprintf("verify: cache file %s: %d bad lines skipped (first: %s); %d domains loaded from the rest",
		e.Path, e.Skipped, e.First, e.Loaded)
}

func (e *CacheLinesSkipped) Unwrap() error { return ErrCacheFile }

var errLineTooLong = fmt.Errorf("longer than %d bytes", maxCacheLine)

// lineReader reads lines of at most max bytes; a longer line is read to its end and
// discarded (errLineTooLong), never held whole in memory, and reading goes on after it.
type lineReader struct {
	r   *bufio.Reader
	max int
	buf []byte
}

// next returns the next line without its "\n", valid until the next call, or io.EOF.
// A last line without "\n" is a line.
func (lr *lineReader) next() ([]byte, error) {
	lr.buf = lr.buf[:0]
	tooLong := false
	for {
		chunk, err := lr.r.ReadSlice('\n')
		if !tooLong {
			if len(lr.buf)+len(chunk) > lr.max+1 { // +1: the "\n"
				tooLong, lr.buf = true, lr.buf[:0]
			} else {
				lr.buf = append(lr.buf, chunk...)
			}
		}
		switch {
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		case errors.Is(err, io.EOF):
			if tooLong || len(lr.buf) > lr.max {
				return nil, errLineTooLong
			}
			if len(lr.buf) == 0 {
				return nil, io.EOF
			}
			return lr.buf, nil
		case err != nil:
			return nil, err
		}
		if tooLong {
			return nil, errLineTooLong
		}
		return lr.buf[:len(lr.buf)-1], nil
	}
}

// boundFacts caps the text of facts that may quote a remote host (DNS and DANE errors,
// the MTA-STS detail) to safetext.MaxField, when they are cached and again when they
// are read back from the file (written by an older version, or edited). The probe
// bounds its replies and detail itself.
func boundFacts(f *Facts) {
	b := func(s *string) { *s = safetext.Bound(*s, safetext.MaxField) }
	b(&f.MXDetail)
	for i := range f.Hosts {
		b(&f.Hosts[i].AddrError)
		b(&f.Hosts[i].TLSA.Error)
	}
	for i := range f.Attempts {
		a := &f.Attempts[i]
		b(&a.DNSError)
		b(&a.TLSA.Error)
		b(&a.DANE.Error)
		if a.TA != nil {
			b(&a.TA.Error)
		}
	}
	if f.STS != nil {
		b(&f.STS.Detail)
	}
}

// checkFacts refuses stored facts (the cache file's, the shared cache's) whose
// enumerations are out of range (their String methods index arrays) or that are about
// another domain. A probe result's stage and outcome are checked as they are decoded
// (storedResult.result).
func checkFacts(f *Facts, domain string) error {
	bad := f.Domain != domain || f.MX < MXError || f.MX > MXNone ||
		f.STS != nil && (f.STS.Status < mtasts.StatusNone || f.STS.Status > mtasts.StatusError)
	for _, h := range f.Hosts {
		bad = bad || h.TLSA.Status < 0 || h.TLSA.Status > TLSAInsecure
	}
	for _, a := range f.Attempts {
		bad = bad || a.TLSA.Status < 0 || a.TLSA.Status > TLSAInsecure
	}
	if bad {
		return fmt.Errorf("verify: stored facts for %s out of range", domain)
	}
	return nil
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

// The facts' probe results (smtpprobe.Result) are written as storedResult: the
// certificates as DER, the PKIX error as its kind and message. Attempt's JSON methods
// put it in the place of the Result field, whose key and shape stay those of format 4.

// storedResult is smtpprobe.Result as the verdict cache file keeps it.
type storedResult struct {
	IP          netip.Addr        `json:"ip"`
	Stage       smtpprobe.Stage   `json:"stage"`
	Outcome     smtpprobe.Outcome `json:"outcome"`
	Detail      string            `json:"detail,omitempty"`
	Greeting    storedReply       `json:"greeting"`
	EHLO        storedReply       `json:"ehlo"`
	StartTLS    storedReply       `json:"starttls"`
	Offered     bool              `json:"offered,omitempty"`
	TLSVersion  uint16            `json:"tls_version,omitempty"`
	CipherSuite uint16            `json:"cipher_suite,omitempty"`
	Chain       [][]byte          `json:"chain,omitempty"`
	PKIXKind    pkixKind          `json:"pkix_kind,omitempty"` // "" when the chain verified
	PKIXError   string            `json:"pkix_error,omitempty"`
	Opp         *storedHello      `json:"hello_opportunistic,omitempty"`
	Auth        *storedHello      `json:"hello_authenticated,omitempty"`
	Duration    time.Duration     `json:"duration"`
}

// storedReply is smtpprobe.Reply in the file.
type storedReply struct {
	Code int    `json:"Code"`
	Text string `json:"Text"`
}

// storedHello is smtpprobe.Hello in the file.
type storedHello struct {
	Version uint16 `json:"version,omitempty"`
	Suite   uint16 `json:"suite,omitempty"`
	Alert   uint8  `json:"alert,omitempty"`
	Failed  string `json:"failed,omitempty"`
	Garbled string `json:"garbled,omitempty"`
}

func storeHello(h *smtpprobe.Hello) *storedHello {
	if h == nil {
		return nil
	}
	s := storedHello(*h)
	return &s
}

// attemptJSON is an Attempt as JSON: its own fields, the Result as storedResult.
type attemptJSON struct {
	attemptFields
	Result storedResult
}

type attemptFields Attempt // Attempt without its JSON methods

// MarshalJSON encodes a for the verdict cache file and the shared cache.
func (a Attempt) MarshalJSON() ([]byte, error) {
	return json.Marshal(attemptJSON{attemptFields(a), storeResult(a.Result)})
}

// UnmarshalJSON decodes what MarshalJSON wrote.
func (a *Attempt) UnmarshalJSON(b []byte) error {
	var s attemptJSON
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	r, err := s.Result.result()
	if err != nil {
		return err
	}
	*a = Attempt(s.attemptFields)
	a.Result = r
	return nil
}

// sessionJSON is a Session as JSON: its Result stored as an Attempt's is.
type sessionJSON struct {
	sessionFields
	Result storedResult
}

type sessionFields Session // Session without its JSON methods

// MarshalJSON encodes s, the MX-host-name session of an Attempt, like its Result.
func (s Session) MarshalJSON() ([]byte, error) {
	return json.Marshal(sessionJSON{sessionFields(s), storeResult(s.Result)})
}

// UnmarshalJSON decodes what MarshalJSON wrote.
func (s *Session) UnmarshalJSON(b []byte) error {
	var j sessionJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	r, err := j.Result.result()
	if err != nil {
		return err
	}
	*s = Session(j.sessionFields)
	s.Result = r
	return nil
}

func storeResult(r smtpprobe.Result) storedResult {
	s := storedResult{IP: r.IP, Stage: r.Stage, Outcome: r.Outcome, Detail: r.Detail, Greeting: storedReply(r.Greeting),
		EHLO: storedReply(r.EHLO), StartTLS: storedReply(r.StartTLS), Offered: r.Offered, TLSVersion: r.TLSVersion,
		CipherSuite: r.CipherSuite, Opp: storeHello(r.Opportunistic), Auth: storeHello(r.Authenticated), Duration: r.Duration}
	for _, c := range r.Chain {
		s.Chain = append(s.Chain, c.Raw)
	}
	if r.PKIX != nil {
		s.PKIXKind, s.PKIXError = pkixKindOf(r.PKIX), safetext.Bound(r.PKIX.Error(), safetext.MaxField)
	}
	return s
}

// result is the stored result read back. The PKIX error keeps its message and still
// matches x509.CertificateInvalidError (Expired) or x509.UnknownAuthorityError with
// errors.As, which is what the judge asks of it. The text is bounded again: the file
// may have been written by an older version, or edited.
func (s storedResult) result() (smtpprobe.Result, error) {
	if !s.Stage.Valid() || !s.Outcome.Valid() {
		return smtpprobe.Result{}, fmt.Errorf("verify: stored result: stage %d, outcome %d", s.Stage, s.Outcome)
	}
	b := func(t string) string { return safetext.Bound(t, safetext.MaxField) }
	reply := func(r storedReply) smtpprobe.Reply { return smtpprobe.Reply{Code: r.Code, Text: b(r.Text)} }
	hello := func(h *storedHello) *smtpprobe.Hello {
		if h == nil {
			return nil
		}
		return &smtpprobe.Hello{Version: h.Version, Suite: h.Suite, Alert: h.Alert, Failed: b(h.Failed), Garbled: b(h.Garbled)}
	}
	r := smtpprobe.Result{IP: s.IP, Stage: s.Stage, Outcome: s.Outcome, Detail: b(s.Detail),
		Greeting: reply(s.Greeting), EHLO: reply(s.EHLO), StartTLS: reply(s.StartTLS), Offered: s.Offered,
		TLSVersion: s.TLSVersion, CipherSuite: s.CipherSuite, Opportunistic: hello(s.Opp), Authenticated: hello(s.Auth), Duration: s.Duration}
	for _, der := range s.Chain {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return smtpprobe.Result{}, fmt.Errorf("verify: stored certificate: %w", err)
		}
		r.Chain = append(r.Chain, c)
	}
	if s.PKIXKind != "" {
		r.PKIX = &storedPKIXError{kind: s.PKIXKind, msg: b(s.PKIXError), leaf: r.Leaf()}
	}
	return r, nil
}

// storedPKIXError is a chain verification error read back from the cache file.
type storedPKIXError struct {
	kind pkixKind
	msg  string
	leaf *x509.Certificate
}

func (e *storedPKIXError) Error() string { return e.msg }

func (e *storedPKIXError) Unwrap() error {
	switch e.kind {
	case pkixExpired:
		return x509.CertificateInvalidError{Cert: e.leaf, Reason: x509.Expired, Detail: e.msg}
	case pkixUnknownAuthority:
		return x509.UnknownAuthorityError{Cert: e.leaf}
	}
	return nil
}
