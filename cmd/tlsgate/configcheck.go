package main

import (
	"errors"
	"fmt"
	"io"
	"net/netip"
	"strings"

	"github.com/spf13/pflag"

	"github.com/tlsgate/tlsgate/config"
	"github.com/tlsgate/tlsgate/config/policy"
)

// configCmd runs `tlsgate config check FILE [--rcpt ADDR] [--sender ADDR] [--sasl LOGIN]
// [--client IP]`: validate a configuration (and its policy files) and, for a recipient,
// say which level applies and which rule said so. Exit 0 valid, 3 invalid.
func configCmd(args, env []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] != "check" {
		fmt.Fprintln(stderr, "usage: tlsgate config check FILE [--rcpt ADDR] [--sender ADDR] [--sasl LOGIN] [--client IP]")
		return exitUsage
	}
	fs := pflag.NewFlagSet("tlsgate config check", pflag.ContinueOnError)
	fs.SetOutput(stderr)
	rcpt := fs.String("rcpt", "", "recipient address or domain to show the effective policy for")
	sender := fs.String("sender", "", "envelope sender address (customer toggles by sender domain)")
	sasl := fs.String("sasl", "", "SASL login (customer toggles by {auth_authen})")
	client := fs.String("client", "", "client IP address (customer toggles by client_networks)")
	if err := fs.Parse(args[1:]); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return 0
		}
		return exitUsage
	}
	if fs.NArg() != 1 {
		fmt.Fprintln(stderr, "tlsgate config check: exactly one FILE expected")
		return exitUsage
	}
	cfg, err := config.Load(config.Options{File: fs.Arg(0), Env: env})
	if err != nil {
		fmt.Fprintln(stderr, "tlsgate:", err)
		return exitUsage
	}
	set, warnings, err := cfg.PolicySet()
	if err != nil {
		fmt.Fprintln(stderr, "tlsgate:", err)
		return exitUsage
	}
	for _, w := range cfg.Warnings() {
		fmt.Fprintln(stdout, "warning:", w)
	}
	for _, w := range warnings {
		fmt.Fprintln(stdout, "warning:", w.String())
	}
	fmt.Fprintf(stdout, "%s: valid (%d domain policies, %d customers)\n", fs.Arg(0), set.Table.Len(), len(cfg.Customers))
	printSocketmapConfig(stdout, cfg)
	if err := printWebConfig(stdout, cfg); err != nil {
		fmt.Fprintln(stderr, "tlsgate:", err)
		return exitUsage
	}
	if *rcpt == "" {
		return 0
	}
	a, err := policyFor(cfg, set, *rcpt, *sender, *sasl, *client)
	if err != nil {
		fmt.Fprintln(stderr, "tlsgate config check:", err)
		return exitUsage
	}
	rule := a.Rule
	if rule == "none" {
		rule = "none (no policy or customer matches: the recipient passes unchecked)"
	}
	fmt.Fprintf(stdout, "recipient domain: %s\nlevel: %s\nrule: %s\n", a.Domain, a.Level, rule)
	if len(a.Match) > 0 {
		fmt.Fprintf(stdout, "match: %s\n", strings.Join(a.Match, ":"))
	}
	fmt.Fprintf(stdout, "on_fail: %s\non_tempfail: %s\n", a.OnFail, a.OnTempfail)
	if a.Also != nil {
		fmt.Fprintf(stdout, "also required: %s (%s)\n", a.Also.Level, a.Also.Rule)
	}
	if a.Socketmap != "" {
		fmt.Fprintf(stdout, "socketmap: %s\n", a.Socketmap)
	}
	return 0
}

// policyAnswer is the policy for one recipient: what `config check --rcpt` prints and
// GET /api/v1/policy answers. Its keys are documented in the README.
type policyAnswer struct {
	Domain     string      `json:"recipient_domain"`
	Level      string      `json:"level"`
	Rule       string      `json:"rule"`
	Match      []string    `json:"match,omitempty"`
	OnFail     string      `json:"on_fail"`
	OnTempfail string      `json:"on_tempfail"`
	Also       *policyAlso `json:"also,omitempty"`
	Socketmap  string      `json:"socketmap,omitempty"`
}

// policyAlso is a second requirement that must be met too (a domain policy and a
// customer of independent levels).
type policyAlso struct {
	Level string `json:"level"`
	Rule  string `json:"rule"`
}

// errBadClient is a --client (client=) that is no IP address.
var errBadClient = errors.New("client: not an IP address")

// policyFor finds the policy for a recipient (an address or a domain) of mail from
// sender (an address or a domain, "" none), a SASL login and a client IP ("" unknown).
// An error wraps policy.ErrBadDomain for a bad recipient domain, errBadClient for a bad
// client address.
func policyFor(cfg *config.Config, set *policy.Set, rcpt, sender, sasl, client string) (policyAnswer, error) {
	domain := rcpt
	if i := strings.LastIndexByte(domain, '@'); i >= 0 {
		domain = domain[i+1:]
	}
	norm, err := policy.NormalizeDomain(strings.Trim(domain, "<> "))
	if err != nil {
		return policyAnswer{}, fmt.Errorf("rcpt: %w", err)
	}
	var ip netip.Addr
	if client != "" {
		if ip, err = netip.ParseAddr(client); err != nil {
			return policyAnswer{}, fmt.Errorf("%w: %q", errBadClient, client)
		}
	}
	req := set.Require(policy.Request{RecipientDomain: norm, SenderDomain: senderDomain(sender), SASLLogin: sasl, ClientIP: ip})
	p := req.Policy
	a := policyAnswer{Domain: norm, Level: p.Level.String(), Rule: req.Rule, Match: p.Match,
		OnFail: p.OnFail.Or(cfg.DefaultOnFail()).String(), OnTempfail: p.OnTempfail.Or(cfg.DefaultOnTempfail()).String()}
	if r := req.Also; r != nil {
		a.Also = &policyAlso{Level: r.Level.String(), Rule: req.AlsoRule}
	}
	if cfg.Socketmap.Listen != "" {
		a.Socketmap = socketmapStatic(set.Table, cfg.SocketmapDefaultPublished(), norm)
	}
	return a, nil
}
