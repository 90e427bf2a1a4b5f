package main

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"

	"github.com/spf13/pflag"

	"github.com/tlsgate/tlsgate/config"
	"github.com/tlsgate/tlsgate/internal/dnsx"
	"github.com/tlsgate/tlsgate/internal/mtasts"
	"github.com/tlsgate/tlsgate/internal/netguard"
	"github.com/tlsgate/tlsgate/internal/sharedcache"
	"github.com/tlsgate/tlsgate/internal/smtpprobe"
	"github.com/tlsgate/tlsgate/verify"
)

// loadConfig parses flags (the common ones plus every config key) and loads the
// configuration. extra registers command-specific flags.
func loadConfig(name string, args, env []string, stderr io.Writer, extra func(*pflag.FlagSet)) (*config.Config, *pflag.FlagSet, error) {
	fs := pflag.NewFlagSet("tlsgate "+name, pflag.ContinueOnError)
	fs.SetOutput(stderr)
	file := fs.String("config", envValue(env, "TLSGATE_CONFIG"), "configuration file (YAML); also TLSGATE_CONFIG")
	if extra != nil {
		extra(fs)
	}
	config.AddFlags(fs)
	if err := fs.Parse(args); err != nil {
		return nil, nil, err
	}
	cfg, err := config.Load(config.Options{File: *file, Env: env, Flags: fs})
	if err != nil {
		return nil, nil, err
	}
	return cfg, fs, nil
}

// noArguments refuses positional arguments of a command that takes none (serve): a
// boolean flag written "--key false" leaves "false" behind as one, and silently
// ignoring it would run with the flag true. The error names the argument and the
// --key=value form.
func noArguments(name string, fs *pflag.FlagSet, args []string) error {
	if fs.NArg() == 0 {
		return nil
	}
	arg := fs.Arg(0)
	example := "--mta_sts.enabled=false"
	for i := 1; i < len(args); i++ {
		if args[i] != arg {
			continue
		}
		if prev, ok := strings.CutPrefix(args[i-1], "--"); ok && !strings.Contains(prev, "=") {
			if f := fs.Lookup(prev); f != nil && f.Value.Type() == "bool" {
				example = "--" + prev + "=" + arg
				break
			}
		}
	}
	return fmt.Errorf("%s takes no arguments, but %q was given; a boolean flag takes its value after '=': %s", name, arg, example)
}

func envValue(env []string, key string) string {
	for _, kv := range env {
		if k, v, ok := strings.Cut(kv, "="); ok && k == key {
			return v
		}
	}
	return ""
}

func newLogger(cfg *config.Config, w io.Writer) *slog.Logger {
	opts := &slog.HandlerOptions{Level: cfg.Log.Level}
	if cfg.Log.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// newVerifier builds the verify layer from the configuration; tier is the fleet's
// shared cache tier, nil for a host on its own.
func newVerifier(cfg *config.Config, log *slog.Logger, events verify.Events, tier *sharedcache.Tier) (*verify.Verifier, error) {
	resolver, err := newResolver(cfg)
	if err != nil {
		return nil, err
	}
	roots := cfg.RootCAs()
	helo := cfg.Probe.HELO
	if helo == "" {
		if helo, err = os.Hostname(); err != nil || helo == "" {
			return nil, errors.New("probe.helo is empty and the host name is unknown; set probe.helo")
		}
	}
	prober := &smtpprobe.Prober{
		Dialer: &net.Dialer{Timeout: cfg.Probe.Timeout},
		Port:   cfg.Probe.Port,
		HELO:   helo,
		Roots:  roots,
	}
	// One outbound guard (public, not this host's own, or allowed) for probes and
	// MTA-STS fetches alike.
	guard := netguard.New(netguard.Config{Allow: cfg.Probe.AllowNetworks})
	var sts verify.STSLookup
	if cfg.MTASTS.Enabled {
		var store mtasts.PolicyStore
		if tier != nil {
			store = tier.Policies()
		}
		c, err := mtasts.New(mtasts.Config{
			Store:     store,
			Resolver:  resolver,
			Allowed:   guard.Allowed,
			Roots:     roots,
			Timeout:   cfg.MTASTS.Timeout,
			CacheSize: cfg.MTASTS.CacheSize,
			Log:       log,
		})
		if err != nil {
			guard.Close()
			return nil, err
		}
		sts = c
	}
	vc := verify.Config{
		Guard:          guard,
		STS:            sts,
		Resolver:       resolver,
		Prober:         prober,
		Allow:          cfg.Probe.AllowNetworks,
		HostTimeout:    cfg.Probe.Timeout,
		DNSTimeout:     cfg.DNS.Timeout * 3,
		MaxConcurrent:  cfg.Probe.MaxConcurrent,
		MaxQueued:      cfg.Probe.MaxQueued,
		RatePerAddress: cfg.Probe.RatePerAddress,
		CacheSize:      cfg.Cache.Size,
		PassTTL:        cfg.Cache.PassTTL,
		FailTTL:        cfg.Cache.FailTTL,
		TempfailTTL:    cfg.Cache.TempfailTTL,
		RefreshAhead:   cfg.Cache.RefreshAhead,
		Log:            log,
		// RFC 7672 §3: the TLSA records of an SMTP server are at _PORT._tcp of the
		// port the client connects to, which is probe.port.
		SMTPPort: cfg.Probe.Port,
		Events:   events,
	}
	if tier != nil {
		vc.Shared = tier
	}
	return verify.New(vc)
}

// newResolver is the DNS client of the configuration: dns.resolver, or the first
// nameserver of /etc/resolv.conf.
func newResolver(cfg *config.Config) (*dnsx.Client, error) {
	server := cfg.DNS.Resolver
	if server == "" {
		var err error
		if server, err = dnsx.SystemResolver("/etc/resolv.conf"); err != nil {
			return nil, err
		}
	}
	return dnsx.NewClient(server, cfg.DNS.Timeout, cfg.ResolverTrusted(server))
}
