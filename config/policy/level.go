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
// documented level order.
func (l Level) Stricter(o Level) bool { return l > o }

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
