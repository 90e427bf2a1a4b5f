package main

import (
	"cmp"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"strings"

	"github.com/spf13/pflag"

	"github.com/tlsgate/tlsgate/config"
	"github.com/tlsgate/tlsgate/policy"
	"github.com/tlsgate/tlsgate/verify"
)

// configCmd runs `tlsgate config check FILE [--rcpt ADDR] [--sender ADDR] [--sasl LOGIN]
// [--client IP]`: validate a configuration (and its policy files) and, for a recipient,
// say which level applies and which rule said so. Exit 0 valid, 3 invalid.
func configCmd(args, env []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] != "check" {
		fmt.Fprintln(stderr, "usage: tlsgate config check FILE [--rcpt ADDR] [--sender ADDR] [--sasl LOGIN] [--client IP] [--next-hop HOP]")
		return exitUsage
	}
	fs := pflag.NewFlagSet("tlsgate config check", pflag.ContinueOnError)
	fs.SetOutput(stderr)
	rcpt := fs.String("rcpt", "", "recipient address or domain to show the effective policy for")
	sender := fs.String("sender", "", "envelope sender address (customer toggles by sender domain)")
	sasl := fs.String("sasl", "", "SASL login (customer toggles by {auth_authen})")
	client := fs.String("client", "", "client IP address (customer toggles by client_networks)")
	nextHop := fs.String("next-hop", "", "where Postfix delivers the recipient ({rcpt_host}: [host], [host]:port, host:port or a domain), when not the recipient domain")
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
	fmt.Fprintf(stdout, "%s: valid (%d domain policies, %d customers)\n", fs.Arg(0), set.Table.Len(), set.Customers.Len())
	for key, value := range cfg.Settings() {
		fmt.Fprintf(stdout, "set: %s = %s\n", key, value)
	}
	printSocketmapConfig(stdout, cfg)
	if err := printWebConfig(stdout, cfg); err != nil {
		fmt.Fprintln(stderr, "tlsgate:", err)
		return exitUsage
	}
	if *rcpt == "" {
		return 0
	}
	a, err := policyFor(cfg, set, *rcpt, *sender, *sasl, *client, *nextHop)
	if err != nil {
		fmt.Fprintln(stderr, "tlsgate config check:", err)
		return exitUsage
	}
	rule := a.Rule
	if rule == "none" {
		rule = "none (no policy or customer matches: the recipient passes unchecked)"
	}
	fmt.Fprintf(stdout, "recipient domain: %s\n", a.Domain)
	if a.NextHop != "" {
		// Postfix delivers to the next hop and looks its policy up by it.
		fmt.Fprintf(stdout, "next hop: %s (judged at it; its policy entry applies, not the recipient domain's)\n", a.NextHop)
	}
	fmt.Fprintf(stdout, "level: %s\nrule: %s\n", a.Level, rule)
	if len(a.Match) > 0 {
		fmt.Fprintf(stdout, "match: %s\n", strings.Join(a.Match, ":"))
	}
	fmt.Fprintf(stdout, "on_fail: %s\non_tempfail: %s\n", a.OnFail, a.OnTempfail)
	if a.invalid != "" {
		fmt.Fprintf(stdout, "invalid: %s (Postfix defers the mail; tlsgate answers tempfail, policy-invalid)\n", a.invalid)
	}
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
	NextHop    string      `json:"next_hop,omitempty"` // where Postfix delivers, when not the domain's MX hosts
	Level      string      `json:"level"`
	Rule       string      `json:"rule"`
	Match      []string    `json:"match,omitempty"`
	OnFail     string      `json:"on_fail"`
	OnTempfail string      `json:"on_tempfail"`
	Also       *policyAlso `json:"also,omitempty"`
	Socketmap  string      `json:"socketmap,omitempty"`
	// invalid: the entry that applies is one Postfix refuses (it defers the mail);
	// config check says so, the milter answers tempfail.
	invalid string
}

// policyAlso is a second requirement that must be met too (a domain policy and a
// customer of independent levels).
type policyAlso struct {
	Level string `json:"level"`
	Rule  string `json:"rule"`
}

// errBadClient is a --client (client=) that is no IP address.
var errBadClient = errors.New("client: not an IP address")

// policyFor finds the policy for a recipient (an address, a domain, or itself a next
// hop such as "[gw.example]:2525") of mail from sender (an address or a domain, ""
// none), a SASL login, a client IP ("" unknown) and the next hop Postfix delivers it to
// (nextHop, {rcpt_host}; "" the recipient domain). An error wraps policy.ErrBadDomain
// for a bad recipient domain, errBadClient for a bad client address.
func policyFor(cfg *config.Config, set *policy.Set, rcpt, sender, sasl, client, nextHop string) (policyAnswer, error) {
	domain := rcpt
	if i := strings.LastIndexByte(domain, '@'); i >= 0 {
		domain = domain[i+1:]
	}
	norm, err := policy.NormalizeDomain(strings.Trim(domain, "<> "))
	// rcpt may itself be a next hop ("[gw.example]:2525"): the destination alone.
	hop := ""
	if k, ok := policy.NormalizeNextHop(rcpt); ok && !strings.Contains(rcpt, "@") {
		hop, norm = k, k
	} else if err != nil {
		return policyAnswer{}, fmt.Errorf("rcpt: %w", err)
	}
	if nextHop != "" {
		if hop, err = configNextHop(nextHop, norm); err != nil {
			return policyAnswer{}, fmt.Errorf("next hop: %w", err)
		}
	}
	var ip netip.Addr
	if client != "" {
		if ip, err = netip.ParseAddr(client); err != nil {
			return policyAnswer{}, fmt.Errorf("%w: %q", errBadClient, client)
		}
	}
	req := set.Require(policy.Request{RecipientDomain: norm, NextHop: hop, SenderDomain: senderDomain(sender), SASLLogin: sasl, ClientIP: ip})
	p := req.Policy
	a := policyAnswer{Domain: norm, NextHop: hop, Level: p.Level.String(), Rule: req.Rule.String(), Match: p.Match,
		OnFail: p.OnFail.Or(cfg.Defaults.OnFail).String(), OnTempfail: p.OnTempfail.Or(cfg.Defaults.OnTempfail).String()}
	if r := req.Also; r != nil {
		a.Also = &policyAlso{Level: r.Level.String(), Rule: req.AlsoRule.String()}
	}
	a.invalid = req.Invalid
	if cfg.Socketmap.Listen != (config.Listen{}) {
		a.Socketmap = socketmapStatic(set.Table, cfg.Socketmap.DefaultPublished, cmp.Or(hop, norm))
	}
	return a, nil

}

// configNextHop is --next-hop as the milter reads {rcpt_host}: "" when it is the
// recipient domain itself.
func configNextHop(arg, domain string) (string, error) {
	h, ok, err := verify.ParseNextHop(arg)
	switch {
	case err != nil:
		return "", err
	case !ok:
		return "", fmt.Errorf("%q is neither a domain nor a next hop ([host], [host]:port, host:port)", arg)
	}
	if k, explicit := policy.NormalizeNextHop(arg); explicit {
		return k, nil
	}
	if h.Name == domain {
		return "", nil
	}
	return h.Name, nil
}
