package policy

import (
	"errors"
	"fmt"
	"strings"
)

// Level is a TLS security level as Postfix names it in smtp_tls_security_level and in
// tls_policy tables (postconf(5), TLS_README "TLS security levels").
type Level int

// The levels in Postfix's documented order. Only none < may < encrypt is a true
// strength order; dane, dane-only, fingerprint, verify and secure are distinct
// mechanisms. Stricter uses this order as a total order, which is what Postfix's
// documentation lists and what an operator reading a policy expects.
const (
	LevelNone Level = iota
	LevelMay
	LevelEncrypt
	LevelDane
	LevelDaneOnly
	LevelFingerprint
	LevelVerify
	LevelSecure
	// LevelPublished is tlsgate's own level, not a Postfix one: require what the
	// recipient domain publishes: DANE where it has usable TLSA records, else its
	// MTA-STS policy (RFC 8461) in enforce mode, else nothing. Postfix rejects it in a
	// tls_policy table, so only tlsgate's configuration may use it.
	LevelPublished
)

var levelNames = [...]string{
	LevelNone:        "none",
	LevelMay:         "may",
	LevelEncrypt:     "encrypt",
	LevelDane:        "dane",
	LevelDaneOnly:    "dane-only",
	LevelFingerprint: "fingerprint",
	LevelVerify:      "verify",
	LevelSecure:      "secure",
	LevelPublished:   "published",
}

// strictness orders the levels for Stricter: Postfix's documented order, with
// published between may and encrypt, since it requires nothing of a domain that
// publishes nothing.
var strictness = [...]int{
	LevelNone:        0,
	LevelMay:         1,
	LevelPublished:   2,
	LevelEncrypt:     3,
	LevelDane:        4,
	LevelDaneOnly:    5,
	LevelFingerprint: 6,
	LevelVerify:      7,
	LevelSecure:      8,
}

// ErrUnknownLevel is returned by ParseLevel for a name that is not a Postfix level.
var ErrUnknownLevel = errors.New("policy: unknown TLS level")

// ErrUnknownAction is returned by ParseAction for a name that is not an action.
var ErrUnknownAction = errors.New("policy: unknown action")

// String returns the Postfix name of the level.
func (l Level) String() string {
	if l < 0 || int(l) >= len(levelNames) {
		return fmt.Sprintf("level(%d)", int(l))
	}
	return levelNames[l]
}

// LevelNames lists every level name in order, for error messages and docs.
func LevelNames() []string { return append([]string(nil), levelNames[:]...) }

// ParseLevel parses a Postfix level name, case-insensitively. It returns
// ErrUnknownLevel (wrapped, naming the input) for anything else.
func ParseLevel(s string) (Level, error) {
	name := strings.ToLower(strings.TrimSpace(s))
	for i, n := range levelNames {
		if n == name {
			return Level(i), nil
		}
	}
	return 0, fmt.Errorf("%w %q (allowed: %s)", ErrUnknownLevel, s, strings.Join(levelNames[:], ", "))
}

// Probed reports whether judging this level needs facts from the network.
// none and may always pass: Postfix delivers in cleartext when TLS is not offered.
func (l Level) Probed() bool { return l > LevelMay }

// Stricter reports whether l is a stricter requirement than o in Postfix's
// documented level order (published ranks between may and encrypt).
func (l Level) Stricter(o Level) bool { return l.rank() > o.rank() }

func (l Level) rank() int {
	if l < 0 || int(l) >= len(strictness) {
		return -1
	}
	return strictness[l]
}

// Valid reports whether l is a known level.
func (l Level) Valid() bool { return l >= LevelNone && l <= LevelPublished }

// Postfix reports whether l is a Postfix level, valid in a tls_policy table.
func (l Level) Postfix() bool { return l >= LevelNone && l <= LevelSecure }

// Action is what tlsgate does with a recipient whose verdict is not pass.
type Action int

// Actions. ActionDefault means "not set here; use the configured default".
const (
	ActionDefault  Action = iota
	ActionReject          // 5xx for this recipient
	ActionTempfail        // 4xx for this recipient
	ActionHeader          // accept and record the verdict in the audit header (dry run / fail open)
)

var actionNames = [...]string{
	ActionDefault:  "",
	ActionReject:   "reject",
	ActionTempfail: "tempfail",
	ActionHeader:   "header",
}

// String returns the configuration name of the action ("" for ActionDefault).
func (a Action) String() string {
	if a < 0 || int(a) >= len(actionNames) {
		return fmt.Sprintf("action(%d)", int(a))
	}
	return actionNames[a]
}

// ParseAction parses "reject", "tempfail" or "header"; "" gives ActionDefault.
func ParseAction(s string) (Action, error) {
	name := strings.ToLower(strings.TrimSpace(s))
	for i, n := range actionNames {
		if n == name {
			return Action(i), nil
		}
	}
	return 0, fmt.Errorf("%w %q (allowed: reject, tempfail, header)", ErrUnknownAction, s)
}

// Or returns a unless it is ActionDefault, else def.
func (a Action) Or(def Action) Action {
	if a == ActionDefault {
		return def
	}
	return a
}
