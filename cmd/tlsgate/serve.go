package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"sync/atomic"
	"time"

	"github.com/spf13/pflag"

	"github.com/tlsgate/tlsgate/config"
	"github.com/tlsgate/tlsgate/internal/sharedcache"
	"github.com/tlsgate/tlsgate/milter"
	"github.com/tlsgate/tlsgate/policy"
	"github.com/tlsgate/tlsgate/verify"
)

func serve(ctx context.Context, args, env []string, stderr io.Writer) int {
	cfg, fs, err := loadConfig("serve", args, env, stderr, nil)
	if err == nil {
		err = noArguments("serve", fs, args)
	}
	if err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return 0
		}
		fmt.Fprintln(stderr, "tlsgate:", err)
		return exitUsage
	}
	log := newLogger(cfg, stderr)
	milter.LogLibraryWarnings(log)
	for _, w := range cfg.Warnings() {
		log.Warn("configuration", "warning", w)
	}
	if os.Geteuid() == 0 {
		// Nothing after binding needs root (a port below 1024 aside, and the default
		// port is 10025): see contrib for a systemd unit with a dedicated user.
		log.Warn("running as root; run tlsgate as an unprivileged user")
	}
	var m *metrics
	var events verify.Events
	if cfg.Metrics.Listen != "" {
		if m, err = newMetrics(); err != nil {
			fmt.Fprintln(stderr, "tlsgate: metrics:", err)
			return 1
		}
		events = m
	}
	var tier *sharedcache.Tier
	if cfg.Cache.Shared.URL != "" {
		if tier, err = openShared(cfg, m, log); err != nil {
			fmt.Fprintln(stderr, "tlsgate:", err)
			return exitUsage
		}
	}
	v, err := newVerifier(cfg, log, events, tier)
	if err != nil {
		if tier != nil {
			tier.Close()
		}
		fmt.Fprintln(stderr, "tlsgate:", err)
		return exitUsage
	}
	defer v.Close()
	if tier != nil {
		// Closed before the Verifier (defers run last first): no purge lands in a
		// closed cache.
		defer tier.Close()
		tier.Subscribe(func(key string) { v.Forget(key) }, v.ForgetAll)
		log.Info("shared cache tier", "url", redactURL(cfg.Cache.Shared.URL), "key_prefix", cfg.Cache.Shared.KeyPrefix, "timeout", cfg.Cache.Shared.Timeout)
	}
	if cfg.Cache.File != "" {
		// A restart must not turn into a probe storm: start from the saved verdicts.
		var skipped *verify.CacheLinesSkipped
		if n, err := v.LoadCache(cfg.Cache.File); errors.As(err, &skipped) {
			log.Warn("verdict cache loaded; bad lines skipped", "file", cfg.Cache.File, "domains", n,
				"skipped", skipped.Skipped, "first", skipped.First)
		} else if err != nil {
			log.Warn("verdict cache file ignored", "file", cfg.Cache.File, "err", err)
		} else {
			log.Info("verdict cache loaded", "file", cfg.Cache.File, "domains", n)
		}
		stopSaving := saveCachePeriodically(v, cfg.Cache.File, cfg.Cache.SaveInterval, log)
		defer func() {
			stopSaving()
			if n, err := v.SaveCache(cfg.Cache.File); err != nil {
				log.Error("saving the verdict cache", "file", cfg.Cache.File, "err", err)
			} else {
				log.Info("verdict cache saved", "file", cfg.Cache.File, "domains", n)
			}
		}()
	}

	// policies is the policy set in force, for the cache admin's show.
	var policies atomic.Pointer[policy.Set]
	// build turns a configuration into the milter's: at start and on every reload.
	build := func(c *config.Config) (milter.Config, error) {
		set, warnings, err := c.PolicySet()
		if err != nil {
			return milter.Config{}, err
		}
		for _, w := range warnings {
			log.Warn("policy", "warning", w.String())
		}
		fc := milter.Config{
			Policies:          set,
			Facts:             v,
			RcptTimeout:       c.Milter.RcptTimeout,
			Header:            c.Milter.Header,
			CheckedTransports: c.Milter.CheckedTransports,
			OnFail:            c.Defaults.OnFail,
			OnTempfail:        c.Defaults.OnTempfail,
			RejectMessage:     c.Defaults.RejectMessage,
			Log:               log,
		}
		if m != nil {
			fc.OnDecision = m.decision
		}
		policies.Store(set)
		return fc, nil
	}
	fc, err := build(cfg)
	if err != nil {
		fmt.Fprintln(stderr, "tlsgate:", err)
		return exitUsage
	}
	f := milter.NewFilter(fc)
	ln, err := milter.Listen(milter.ListenConfig{Network: cfg.Milter.Listen.Network, Address: cfg.Milter.Listen.Address, Mode: cfg.Milter.SocketMode, Group: cfg.Milter.SocketGroup})
	if err != nil {
		fmt.Fprintln(stderr, "tlsgate: listen:", err)
		return 1
	}
	sm, err := startSocketmap(cfg, v, fc.Policies.Table, m, log)
	if err != nil {
		ln.Close()
		fmt.Fprintln(stderr, "tlsgate:", err)
		return 1
	}
	ws, err := startWeb(cfg, v, fc.Policies, m, log)
	if err != nil {
		ln.Close()
		sm.shutdown(context.Background())
		fmt.Fprintln(stderr, "tlsgate:", err)
		return 1
	}
	if cfg.Cache.AdminSocket != "" {
		// Authorisation is the socket's mode (0600): tlsgate's user and root only.
		if err := serveAdmin(ctx, cfg.Cache.AdminSocket, &adminServer{v: v, tier: tier, set: &policies, log: log}); err != nil {
			ln.Close()
			sm.shutdown(context.Background())
			ws.shutdown(context.Background())
			fmt.Fprintln(stderr, "tlsgate: cache.admin_socket:", err)
			return 1
		}
		log.Info("cache admin listening", "socket", cfg.Cache.AdminSocket)
	}
	var listening atomic.Bool
	if m != nil {
		resolver, err := newResolver(cfg)
		if err == nil {
			err = serveMetrics(ctx, cfg.Metrics.Listen, m, resolver, &listening, log)
		}
		if err != nil {
			ln.Close()
			sm.shutdown(context.Background())
			ws.shutdown(context.Background())
			fmt.Fprintln(stderr, "tlsgate: metrics.listen:", err)
			return 1
		}
		log.Info("metrics listening", "listen", cfg.Metrics.Listen)
	}
	srv := f.NewServer()
	rctx, stopReloads := context.WithCancel(ctx)
	defer stopReloads()
	(&reloader{args: args, env: env, running: cfg, filter: f, build: build, log: log, metrics: m, also: func(c *config.Config, fc milter.Config) {
		sm.reload(c, fc)
		ws.reload(c, fc)
	}}).start(rctx)
	log.Info("tlsgate started", "version", version, "listen", cfg.Milter.Listen.String(), "config", cfg.File,
		"policies", fc.Policies.Table.Len(), "rcpt_timeout", cfg.Milter.RcptTimeout)

	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	listening.Store(true)
	select {
	case err := <-done:
		sm.shutdown(context.Background())
		ws.shutdown(context.Background())
		if !milter.IsClosed(err) {
			log.Error("milter server stopped", "err", err)
			return 1
		}
		return 0
	case <-ctx.Done():
	}
	log.Info("shutting down")
	// Let sessions in progress finish their current command, then close.
	sctx, cancel := context.WithTimeout(context.Background(), cfg.Milter.RcptTimeout+2*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		srv.Close()
	}
	sm.shutdown(sctx)
	ws.shutdown(sctx)
	<-done
	return 0
}

// saveCachePeriodically saves the verdict cache every interval until the returned stop
// function is called (which waits for a save in progress).
func saveCachePeriodically(v *verify.Verifier, file string, every time.Duration, log *slog.Logger) (stop func()) {
	done, stopped := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(stopped)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				if n, err := v.SaveCache(file); err != nil {
					log.Error("saving the verdict cache", "file", file, "err", err)
				} else {
					log.Debug("verdict cache saved", "file", file, "domains", n)
				}
			}
		}
	}()
	return func() { close(done); <-stopped }
}

// openShared opens the shared tier of cache.shared (it does not wait for the server:
// a fleet member starts, alone, while the server is down).
func openShared(cfg *config.Config, m *metrics, log *slog.Logger) (*sharedcache.Tier, error) {
	secret, err := sharedcache.ReadSecret(cfg.Cache.Shared.SecretFile)
	if err != nil {
		return nil, err
	}
	var ev sharedcache.Events
	if m != nil {
		if err := m.registerShared(); err != nil {
			return nil, err
		}
		ev = m
	}
	return sharedcache.Open(sharedcache.Config{URL: cfg.Cache.Shared.URL, KeyPrefix: cfg.Cache.Shared.KeyPrefix,
		Secret: secret, Timeout: cfg.Cache.Shared.Timeout, Log: log, Events: ev})
}

// redactURL hides the password of a shared tier URL in the log.
func redactURL(u string) string {
	if p, err := url.Parse(u); err == nil {
		return p.Redacted()
	}
	return "(unparsable URL)"
}
