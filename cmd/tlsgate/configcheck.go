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
	"github.com/tlsgate/tlsgate/config/policy"
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
	fmt.Fprintf(stdout, "%s: valid (%d domain policies, %d customers)\n", fs.Arg(0), set.Table.Len(), len(cfg.Customers))
	printSocketmapConfig(stdout, cfg)
	if *rcpt == "" {
		return 0
	}
	domain := *rcpt
	if i := strings.LastIndexByte(domain, '@'); i >= 0 {
		domain = domain[i+1:]
	}
	domain = strings.Trim(domain, "<> ")
	norm, err := policy.NormalizeDomain(domain)
	// --rcpt may itself be a next hop ("[gw.example]:2525"): the destination alone.
	hop := ""
	if k, ok := policy.NormalizeNextHop(*rcpt); ok && !strings.Contains(*rcpt, "@") {
		hop, norm = k, k
	} else if err != nil {
		fmt.Fprintln(stderr, "tlsgate config check: --rcpt:", err)
		return exitUsage
	}
	if *nextHop != "" {
		if hop, err = configNextHop(*nextHop, norm); err != nil {
			fmt.Fprintln(stderr, "tlsgate config check: --next-hop:", err)
			return exitUsage
		}
	}
	var ip netip.Addr
	if *client != "" {
		if ip, err = netip.ParseAddr(*client); err != nil {
			fmt.Fprintln(stderr, "tlsgate config check: --client:", err)
			return exitUsage
		}
	}
	senderDomain := *sender
	if i := strings.LastIndexByte(senderDomain, '@'); i >= 0 {
		senderDomain = senderDomain[i+1:]
	}
	req := set.Require(policy.Request{RecipientDomain: norm, NextHop: hop, SenderDomain: strings.Trim(senderDomain, "<> "), SASLLogin: *sasl, ClientIP: ip})
	p := req.Policy
	rule := req.Rule
	if rule == "none" {
		rule = "none (no policy or customer matches: the recipient passes unchecked)"
	}
	fmt.Fprintf(stdout, "recipient domain: %s\n", norm)
	if hop != "" {
		// Postfix delivers to the next hop and looks its policy up by it.
		fmt.Fprintf(stdout, "next hop: %s (judged at it; its policy entry applies, not the recipient domain's)\n", hop)
	}
	fmt.Fprintf(stdout, "level: %s\nrule: %s\n", p.Level, rule)
	if len(p.Match) > 0 {
		fmt.Fprintf(stdout, "match: %s\n", strings.Join(p.Match, ":"))
	}
	fmt.Fprintf(stdout, "on_fail: %s\non_tempfail: %s\n", p.OnFail.Or(cfg.DefaultOnFail()), p.OnTempfail.Or(cfg.DefaultOnTempfail()))
	if a := req.Also; a != nil {
		fmt.Fprintf(stdout, "also required: %s (%s)\n", a.Level, req.AlsoRule)
	}
	if cfg.Socketmap.Listen != "" {
		fmt.Fprintf(stdout, "socketmap: %s\n", socketmapStatic(set.Table, cfg.SocketmapDefaultPublished(), cmp.Or(hop, norm)))
	}
	return 0
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
