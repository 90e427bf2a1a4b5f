package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"strings"

	"github.com/spf13/pflag"

	"github.com/tlsgate/tlsgate/internal/report"
	"github.com/tlsgate/tlsgate/internal/safetext"
	"github.com/tlsgate/tlsgate/policy"
	"github.com/tlsgate/tlsgate/policymap"
	"github.com/tlsgate/tlsgate/verify"
)

func check(ctx context.Context, args, env []string, stdout, stderr io.Writer) int {
	var levelName string
	var asJSON bool
	cfg, fs, err := loadConfig("check", args, env, stderr, func(fs *pflag.FlagSet) {
		fs.StringVar(&levelName, "level", "", "level to judge (default: the configured level for DOMAIN, else encrypt)")
		fs.BoolVar(&asJSON, "json", false, "print one JSON object")
	})
	if err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return 0
		}
		fmt.Fprintln(stderr, "tlsgate:", err)
		return exitUsage
	}
	if fs.NArg() != 1 {
		fmt.Fprintln(stderr, "tlsgate check: exactly one DOMAIN (or next hop [host], [host]:port, host:port) expected")
		return exitUsage
	}
	// DOMAIN is a recipient domain, or a next hop as Postfix names it in a
	// transport_maps entry or relayhost ("[gw.example]:2525"): judged and looked up
	// in the policy table as Postfix delivers to it.
	domain, hop, err := checkDestination(fs.Arg(0))
	if err != nil {
		fmt.Fprintln(stderr, "tlsgate check:", err)
		return exitUsage
	}
	log := newLogger(cfg, stderr)
	set, _, err := cfg.PolicySet()
	if err != nil {
		fmt.Fprintln(stderr, "tlsgate:", err)
		return exitUsage
	}
	p, rule, err := checkPolicy(set, domain, hop, "", levelName)
	if err != nil {
		fmt.Fprintln(stderr, "tlsgate check:", err)
		return exitUsage
	}
	v, err := newVerifier(cfg, log, nil, nil)
	if err != nil {
		fmt.Fprintln(stderr, "tlsgate:", err)
		return exitUsage
	}
	defer v.Close()

	// A policy with servername= is judged on a probe that sends that SNI.
	facts := v.Probe(ctx, verify.FactsKey(domain, p))
	out, verdict := newCheckJSON(v, set, cfg.Socketmap.DefaultPublished, facts, p, rule)
	sm := out.Socketmap
	if asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		err = enc.Encode(out)
	} else {
		var b bytes.Buffer
		if err = out.Report.WriteText(&b); err == nil {
			// The answer quotes DNS names and MTA-STS patterns: remote text.
			fmt.Fprintf(&b, "socketmap: %s (%s)\n", safetext.Terminal(sm.String()), safetext.Terminal(sm.Why))
			out := b.String()
			if colorTerminal(stdout) {
				out = colorize(out)
			}
			_, err = io.WriteString(stdout, out)
		}
	}
	if err != nil {
		fmt.Fprintln(stderr, "tlsgate check:", err)
		return exitUsage
	}
	switch verdict.Status {
	case verify.StatusPass:
		return exitPass
	case verify.StatusFail:
		return exitFail
	}
	return exitTempfail
}

// checkPolicy is the policy `tlsgate check` and the check API judge domain at, and the
// rule that chose it: levelName when given (an error when it names no level), else what
// applies to a recipient at domain delivered to the next hop hop ("" the domain's MX
// hosts; its own policy entry applies then), for mail from sender (when given), else
// encrypt.
func checkPolicy(set *policy.Set, domain, hop, sender, levelName string) (policy.Policy, string, error) {
	req := set.Require(policy.Request{RecipientDomain: domain, NextHop: hop, SenderDomain: senderDomain(sender)})
	p, rule := req.Policy, req.Rule.Tag()
	if levelName != "" {
		l, err := policy.ParseLevel(levelName)
		if err != nil {
			return policy.Policy{}, "", err
		}
		if l != p.Level {
			p, rule = policy.Policy{Level: l}, "--level"
		}
	} else if !p.Level.Probed() {
		p, rule = policy.Policy{Level: policy.LevelEncrypt}, "default"
	}
	return p, rule, nil
}

// senderDomain is the domain of an envelope sender given as an address or a domain.
func senderDomain(s string) string {
	if i := strings.LastIndexByte(s, '@'); i >= 0 {
		s = s[i+1:]
	}
	return strings.Trim(s, "<> ")
}

// newCheckJSON judges facts at p and builds the object `tlsgate check --json` prints
// and GET /api/v1/check answers: the report and the socketmap's answer.
func newCheckJSON(v *verify.Verifier, set *policy.Set, defaultPublished bool, facts *verify.Facts, p policy.Policy, rule string) (checkJSON, verify.Verdict) {
	verdict := facts.JudgeCached(p)
	sm := checkSocketmap(set.Table, defaultPublished, facts.Destination(), v.MapFactsOf(facts))
	return checkJSON{report.New(facts, verdict, rule), sm}, verdict
}

// colorTerminal reports whether w is a terminal that may get colours (no-color.org:
// NO_COLOR set to anything disables them).
func colorTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok || os.Getenv("NO_COLOR") != "" {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// colorize paints the verdict of a text report: green pass, red fail, yellow tempfail.
// It paints only a line that is exactly the report's own verdict line ("verdict:",
// padding, one status word): WriteText quotes remote text so that it can never start a
// line, and a line with anything else on it is left alone, so no certificate or
// greeting can have a line of its own painted green.
func colorize(report string) string {
	lines := strings.SplitAfter(report, "\n")
	for i, l := range lines {
		m := verdictLine.FindStringSubmatch(l)
		if m == nil {
			continue
		}
		code := map[string]string{"pass": "32", "fail": "31", "tempfail": "33"}[m[1]]
		lines[i] = "\x1b[1;" + code + "m" + strings.TrimSuffix(l, "\n") + "\x1b[0m" + l[len(strings.TrimSuffix(l, "\n")):]
	}
	return strings.Join(lines, "")
}

// verdictLine is the whole of the verdict line WriteText writes.
var verdictLine = regexp.MustCompile(`^verdict: +(pass|fail|tempfail)\n?$`)

// checkJSON is the object `tlsgate check --json` writes: the report, and what the
// socketmap would answer for the domain. Its keys are documented in the README.
type checkJSON struct {
	report.Report
	Socketmap policymap.Answer `json:"socketmap"`
}

// checkDestination parses check's argument: a domain, or a next hop "[host]",
// "[host]:port", "host:port". domain is what is probed and reported (the next-hop key
// for a next hop), hop the next-hop key for the policy lookup ("" for a domain).
func checkDestination(arg string) (domain, hop string, err error) {
	if k, ok := policy.NormalizeNextHop(arg); ok {
		if _, ok, err := verify.ParseNextHop(k); !ok || err != nil {
			if err == nil {
				err = fmt.Errorf("%q is not a usable next hop", arg)
			}
			return "", "", err
		}
		return k, k, nil
	}
	d, err := policy.NormalizeDomain(arg)
	return d, "", err
}
