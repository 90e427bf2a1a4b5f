// Package safetext makes text of remote origin (SMTP replies, certificate names, DNS
// data, MTA-STS policies, error messages quoting any of these) safe to keep and to show:
// Bound caps what is stored, in memory and in the cache file; Terminal quotes what is
// printed to an operator's terminal.
package safetext

import (
	"strings"
	"unicode"
	"unicode/utf8"
)

// MaxField is how much of one remote text field tlsgate keeps (a greeting, an EHLO
// reply, an error detail): enough to explain a finding, not enough for one remote host
// to make a cache line or a log line grow without bound.
const MaxField = 512

// Bound returns s as valid UTF-8 (each byte that is not part of a valid sequence becomes
// U+FFFD) of at most max bytes, cut on a rune boundary; a cut text ends in "...".
func Bound(s string, max int) string {
	if len(s) <= max && utf8.ValidString(s) {
		return s // the common case: no allocation
	}
	const more = "..."
	b := make([]byte, 0, min(len(s)+8, max))
	keep := 0             // how much of b stays if the text must be cut: room for the "..."
	for _, r := range s { // an invalid byte comes as utf8.RuneError, written as U+FFFD
		w := utf8.RuneLen(r)
		if len(b)+w > max {
			if max < len(more) {
				return string(b[:keep])
			}
			return string(b[:keep]) + more
		}
		b = utf8.AppendRune(b, r)
		if len(b) <= max-len(more) {
			keep = len(b)
		}
	}
	return string(b)
}

// Terminal quotes s for a terminal: printable characters stay as they are; everything
// else is written as a Go escape (\x1b, \n, \u202e, \xff), and a backslash as \\, so the
// text cannot move the cursor, change colours, reorder what follows it (bidirectional
// overrides and isolates, U+202A-U+202E, U+2066-U+2069), start a new line (CR, LF, NEL,
// U+2028, U+2029) or shift a column (TAB).
func Terminal(s string) string {
	clean := utf8.ValidString(s)
	for _, r := range s {
		if !printable(r) || r == '\\' {
			clean = false
			break
		}
	}
	if clean {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		r, w := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && w == 1:
			b.WriteString(`\x`)
			b.WriteByte(hexDigits[s[i]>>4])
			b.WriteByte(hexDigits[s[i]&15])
		case r == '\\':
			b.WriteString(`\\`)
		case printable(r):
			b.WriteString(s[i : i+w])
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\r':
			b.WriteString(`\r`)
		case r == '\t':
			b.WriteString(`\t`)
		case r < 0x80:
			b.WriteString(`\x`)
			b.WriteByte(hexDigits[r>>4])
			b.WriteByte(hexDigits[r&15])
		case r <= 0xffff:
			b.WriteString(`\u`)
			for sh := 12; sh >= 0; sh -= 4 {
				b.WriteByte(hexDigits[(r>>sh)&15])
			}
		default:
			b.WriteString(`\U`)
			for sh := 28; sh >= 0; sh -= 4 {
				b.WriteByte(hexDigits[(r>>sh)&15])
			}
		}
		i += w
	}
	return b.String()
}

const hexDigits = "0123456789abcdef"

// printable reports whether r is shown as itself: a letter, mark, number, punctuation,
// symbol or the ASCII space (unicode.IsPrint). That leaves out C0 and C1 controls, DEL,
// every format character (Cf: the bidirectional controls, zero-width joiners, the soft
// hyphen), the line and paragraph separators and every space but U+0020.
func printable(r rune) bool {
	return unicode.IsPrint(r)
}
