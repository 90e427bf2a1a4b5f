package web

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"os"
	"regexp"
	"strings"
)

// Tokens are the clients allowed to use the check page and API, read from a file of
// "NAME TOKEN" lines. A token is kept only as its SHA-256 digest and compared in
// constant time against every entry, so neither the comparison nor the position of a
// match tells anything about a token.
type Tokens struct {
	names   []string
	digests [][sha256.Size]byte
}

// Limits of a tokens file.
const (
	minTokenLen   = 16
	maxTokenLen   = 256
	maxTokens     = 10000
	maxTokensFile = 1 << 20
)

var (
	tokenName = regexp.MustCompile(`^[A-Za-z0-9._@-]{1,64}$`)
	tokenText = regexp.MustCompile(`^[\x21-\x7e]+$`)
)

// LoadTokens reads a tokens file. It refuses a file that others may read or the group
// may write (the tokens are secrets; whoever can write the file decides who gets in),
// a malformed line, a short token and duplicates, naming the line; it never quotes a
// token in an error.
func LoadTokens(path string) (*Tokens, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%s: not a regular file", path)
	}
	if perm := st.Mode().Perm(); perm&0o027 != 0 {
		return nil, fmt.Errorf("%s: mode %04o lets others read it or the group write it; make it 0600 or 0640", path, perm)
	}
	if st.Size() > maxTokensFile {
		return nil, fmt.Errorf("%s: larger than %d bytes", path, maxTokensFile)
	}
	t := &Tokens{}
	seen := map[[sha256.Size]byte]bool{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 4096), maxTokensFile)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		fields := strings.Fields(line)
		if len(fields) != 2 {
			return nil, fmt.Errorf("%s:%d: want NAME TOKEN", path, n)
		}
		name, token := fields[0], fields[1]
		switch {
		case !tokenName.MatchString(name):
			return nil, fmt.Errorf("%s:%d: name %q: 1 to 64 letters, digits, '.', '_', '@' or '-'", path, n, name)
		case !tokenText.MatchString(token) || len(token) < minTokenLen || len(token) > maxTokenLen:
			return nil, fmt.Errorf("%s:%d: the token of %s must be %d to %d printable characters (e.g. openssl rand -hex 20)", path, n, name, minTokenLen, maxTokenLen)
		case t.has(name):
			return nil, fmt.Errorf("%s:%d: name %s appears twice", path, n, name)
		}
		d := sha256.Sum256([]byte(token))
		if seen[d] {
			return nil, fmt.Errorf("%s:%d: the token of %s is also another client's", path, n, name)
		}
		seen[d] = true
		t.names = append(t.names, name)
		t.digests = append(t.digests, d)
		if len(t.names) > maxTokens {
			return nil, fmt.Errorf("%s: more than %d tokens", path, maxTokens)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if len(t.names) == 0 {
		return nil, errors.New(path + ": no tokens")
	}
	return t, nil
}

// Len is the number of clients.
func (t *Tokens) Len() int { return len(t.names) }

func (t *Tokens) has(name string) bool {
	for _, n := range t.names {
		if n == name {
			return true
		}
	}
	return false
}

// match returns the name of the client whose token is token, and, when user is not
// "" (HTTP basic), whose name is user. Every entry is compared.
func (t *Tokens) match(user, token string) (string, bool) {
	d := sha256.Sum256([]byte(token))
	found := -1
	for i := range t.digests {
		if subtle.ConstantTimeCompare(d[:], t.digests[i][:]) == 1 {
			found = i
		}
	}
	if found < 0 {
		return "", false
	}
	if user != "" && !bytes.Equal([]byte(user), []byte(t.names[found])) {
		return "", false
	}
	return t.names[found], true
}
