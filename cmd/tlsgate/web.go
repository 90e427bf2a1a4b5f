package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/tlsgate/tlsgate/config"
	"github.com/tlsgate/tlsgate/milter"
	"github.com/tlsgate/tlsgate/policy"
	"github.com/tlsgate/tlsgate/verify"
	"github.com/tlsgate/tlsgate/web"
)

// webBackend answers the check page and API with the code of `tlsgate check --json`
// (checkPolicy, newCheckJSON) and `tlsgate config check` (policyFor), over the running
// configuration, and the Verifier's Facts: its cache, singleflight, outbound guard,
// per-address rate limit and queue bound, like a recipient at RCPT time.
type webBackend struct {
	v     *verify.Verifier
	state atomic.Pointer[webState]
}

type webState struct {
	cfg *config.Config
	set *policy.Set
}

func (b *webBackend) Check(ctx context.Context, domain, level, sender string) (*web.Result, error) {
	st := b.state.Load()
	p, rule, err := checkPolicy(st.set, domain, "", sender, level)
	if err != nil {
		return nil, err
	}
	facts, cached, err := b.v.Facts(ctx, verify.FactsKey(domain, p))
	if err != nil {
		return nil, err
	}
	out, verdict := newCheckJSON(b.v, st.set, st.cfg.Socketmap.DefaultPublished, facts, p, rule)
	return &web.Result{JSON: out, Facts: facts, Verdict: verdict, Rule: rule, Cached: cached}, nil
}

func (b *webBackend) Policy(rcpt, sender, sasl, client string) (any, error) {
	st := b.state.Load()
	return policyFor(st.cfg, st.set, rcpt, sender, sasl, client, "")
}

// webService is the running check page and API (web.listen).
type webService struct {
	backend *webBackend
	handler *web.Server
	srv     *http.Server
	log     *slog.Logger
	file    string // web.tokens_file it started with
}

// webWriteTimeout bounds writing one response; a check waits at most webCheckTimeout.
const (
	webCheckTimeout = 25 * time.Second
	webWriteTimeout = webCheckTimeout + 10*time.Second
)

// startWeb starts the check page and API when web.listen is set. It refuses to start
// with a tokens file that does not load (a typo must not open the page to everyone).
func startWeb(cfg *config.Config, v *verify.Verifier, set *policy.Set, m *metrics, log *slog.Logger) (*webService, error) {
	if cfg.Web.Listen == "" {
		return nil, nil
	}
	var tokens *web.Tokens
	if cfg.Web.TokensFile != "" {
		var err error
		if tokens, err = web.LoadTokens(cfg.Web.TokensFile); err != nil {
			return nil, fmt.Errorf("web.tokens_file: %w", err)
		}
	}
	b := &webBackend{v: v}
	b.state.Store(&webState{cfg: cfg, set: set})
	h := web.New(web.Config{Backend: b, Tokens: tokens, RatePerMinute: cfg.Web.RatePerMinute, CheckTimeout: webCheckTimeout, Log: log,
		OnRequest: m.webRequest})
	ln, err := net.Listen("tcp", cfg.Web.Listen)
	if err != nil {
		return nil, fmt.Errorf("web.listen: %w", err)
	}
	s := &webService{backend: b, handler: h, log: log, file: cfg.Web.TokensFile, srv: &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      webWriteTimeout,
		IdleTimeout:       time.Minute,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}}
	go func() {
		if err := s.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("web server stopped", "err", err)
		}
	}()
	auth := "none (loopback)"
	if tokens != nil {
		auth = fmt.Sprintf("%d tokens", tokens.Len())
	}
	log.Info("web listening", "listen", cfg.Web.Listen, "auth", auth, "rate_per_minute", cfg.Web.RatePerMinute)
	return s, nil
}

// reload applies a reloaded configuration: policies, tokens (read again: SIGHUP after
// editing the tokens file) and the rate. A tokens file that no longer loads keeps the
// running tokens; web.tokens_file cannot change from or to "" without a restart, so a
// reload never turns authentication off.
func (s *webService) reload(cfg *config.Config, fc milter.Config) {
	if s == nil {
		return
	}
	s.backend.state.Store(&webState{cfg: cfg, set: fc.Policies})
	file := cfg.Web.TokensFile
	if (file == "") != (s.file == "") {
		s.log.Warn("web.tokens_file changed between set and unset; restart tlsgate to apply it", "key", "web.tokens_file")
		file = s.file
	}
	var tokens *web.Tokens // nil keeps the running tokens
	if file != "" {
		t, err := web.LoadTokens(file)
		if err != nil {
			s.log.Error("web tokens not reloaded; the running tokens stay", "err", err)
		} else {
			tokens = t
		}
	}
	s.handler.Update(tokens, cfg.Web.RatePerMinute)
}

func (s *webService) shutdown(ctx context.Context) {
	if s == nil {
		return
	}
	if err := s.srv.Shutdown(ctx); err != nil {
		s.srv.Close()
	}
}

// printWebConfig is config check's line about the check page.
func printWebConfig(w interface{ Write([]byte) (int, error) }, cfg *config.Config) error {
	if cfg.Web.Listen == "" {
		fmt.Fprintln(w, "web: off (web.listen is empty)")
		return nil
	}
	auth := "no authentication (loopback only)"
	if cfg.Web.TokensFile != "" {
		t, err := web.LoadTokens(cfg.Web.TokensFile)
		if err != nil {
			return fmt.Errorf("web.tokens_file: %w", err)
		}
		auth = fmt.Sprintf("%d tokens from %s", t.Len(), cfg.Web.TokensFile)
	}
	fmt.Fprintf(w, "web: %s, %s, %d checks per client per minute\n", cfg.Web.Listen, auth, cfg.Web.RatePerMinute)
	return nil
}
