package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/spf13/pflag"

	"github.com/tlsgate/tlsgate/internal/report"
	"github.com/tlsgate/tlsgate/internal/safetext"
	"github.com/tlsgate/tlsgate/internal/sharedcache"
	"github.com/tlsgate/tlsgate/milter"
	"github.com/tlsgate/tlsgate/policy"
	"github.com/tlsgate/tlsgate/verify"
)

// The cache admin endpoint: HTTP over the unix socket cache.admin_socket, served by
// "tlsgate serve" and used by "tlsgate cache". Authorisation is the socket's file
// mode: 0600, so only tlsgate's own user (and root) can connect; nothing listens on a
// network. With the shared tier every action is fleet-wide: show and list read the
// shared entries, purge deletes them and publishes the purge, which every host applies
// to its local tier.

// adminServer answers the cache admin requests of one daemon.
type adminServer struct {
	v    *verify.Verifier
	tier *sharedcache.Tier // nil without cache.shared.url
	set  *atomic.Pointer[policy.Set]
	log  *slog.Logger
}

// adminEntry is one cached domain in show and list answers.
type adminEntry struct {
	Key     string    `json:"key"`
	Tier    string    `json:"tier"`   // local or shared
	Status  string    `json:"status"` // pass, fail, tempfail: how good the facts are (ClassOf)
	Checked time.Time `json:"checked"`
	Until   time.Time `json:"until"`
	// Show only: the verdict at the level configured for the domain (encrypt if none).
	Level   string `json:"level,omitempty"`
	Verdict string `json:"verdict,omitempty"`
	Report  string `json:"report,omitempty"`
}

type purgeRequest struct {
	Keys []string `json:"keys"`
	All  bool     `json:"all"`
}

type purgeAnswer struct {
	Local  int  `json:"local"`
	Shared int  `json:"shared"`
	Fleet  bool `json:"fleet"` // the purge was published to the fleet
}

func entryOf(key, tier string, f *verify.Facts) adminEntry {
	return adminEntry{Key: key, Tier: tier, Status: verify.ClassOf(f).String(), Checked: f.Checked, Until: f.Until}
}

func (a *adminServer) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/cache/show", a.show)
	mux.HandleFunc("GET /v1/cache/list", a.list)
	mux.HandleFunc("POST /v1/cache/purge", a.purge)
	return mux
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}

func (a *adminServer) show(w http.ResponseWriter, r *http.Request) {
	key, err := policy.NormalizeDomain(r.URL.Query().Get("key"))
	if err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
		return
	}
	f, tier := a.v.Peek(key)
	if f == nil {
		writeJSON(w, http.StatusNotFound, map[string]string{"error": key + " is not cached"})
		return
	}
	e := entryOf(key, tier, f)
	p := policy.Policy{Level: policy.LevelEncrypt}
	if set := a.set.Load(); set != nil {
		if req := set.Require(policy.Request{RecipientDomain: key}); req.Policy.Level.Probed() {
			p = req.Policy
		}
	}
	verdict := verify.Judge(f, p)
	e.Level, e.Verdict = p.Level.String(), verdict.Status.String()
	var b bytes.Buffer
	if err := report.New(f, verdict, "cache").WriteText(&b); err == nil {
		e.Report = b.String()
	}
	writeJSON(w, http.StatusOK, e)
}

func (a *adminServer) list(w http.ResponseWriter, r *http.Request) {
	status := r.URL.Query().Get("status")
	var out []adminEntry
	seen := map[string]bool{}
	add := func(e adminEntry) {
		if seen[e.Key] || status != "" && e.Status != status {
			return
		}
		seen[e.Key] = true
		out = append(out, e)
	}
	now := time.Now()
	if a.tier != nil {
		ctx, cancel := context.WithTimeout(r.Context(), 30*time.Second)
		defer cancel()
		err := a.tier.List(ctx, func(en sharedcache.Entry) {
			if f, err := verify.DecodeShared(en.Key, en.Payload); err == nil && now.Before(f.Until) {
				add(entryOf(en.Key, "shared", f))
			}
		})
		if err != nil {
			a.log.Warn("cache list: the shared tier could not be listed; listing this host's cache", "err", err)
		}
	}
	for _, f := range a.v.Domains() {
		add(entryOf(f.Domain, "local", f))
	}
	slices.SortFunc(out, func(x, y adminEntry) int { return strings.Compare(x.Key, y.Key) })
	writeJSON(w, http.StatusOK, map[string]any{"entries": out})
}

func (a *adminServer) purge(w http.ResponseWriter, r *http.Request) {
	var req purgeRequest
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&req); err != nil || !req.All && len(req.Keys) == 0 {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "want {\"keys\": [...]} or {\"all\": true}"})
		return
	}
	var ans purgeAnswer
	var keys []string
	for _, k := range req.Keys {
		d, err := policy.NormalizeDomain(k)
		if err != nil {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
			return
		}
		keys = append(keys, d)
	}
	ctx, cancel := context.WithTimeout(r.Context(), 30*time.Second)
	defer cancel()
	if req.All {
		ans.Local = len(a.v.Domains())
		a.v.ForgetAll()
	} else {
		for _, k := range keys {
			if f, tier := a.v.Peek(k); f != nil && tier == "local" {
				ans.Local++
			}
		}
		a.v.Forget(keys...)
	}
	if a.tier != nil {
		var err error
		if req.All {
			ans.Shared, err = a.tier.PurgeAll(ctx)
		} else {
			ans.Shared, err = a.tier.Purge(ctx, keys...)
		}
		if err != nil {
			writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "purged on this host only; the shared tier failed: " + err.Error()})
			return
		}
		ans.Fleet = true
	}
	a.log.Info("cache purged", "keys", keys, "all", req.All, "local", ans.Local, "shared", ans.Shared, "fleet", ans.Fleet)
	writeJSON(w, http.StatusOK, ans)
}

// serveAdmin serves the admin endpoint on the unix socket path until ctx ends.
func serveAdmin(ctx context.Context, path string, a *adminServer) error {
	ln, err := milter.Listen(milter.ListenConfig{Network: "unix", Address: path, Mode: 0o600})
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: a.handler(), ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			a.log.Error("cache admin socket stopped", "err", err)
		}
	}()
	return nil
}

// cacheCmd is "tlsgate cache show|list|purge": a client of a running daemon's admin
// socket.
func cacheCmd(args, env []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprintln(stderr, "tlsgate cache: show DOMAIN | list [--status pass|fail|tempfail] | purge DOMAIN... | purge --all")
		return exitUsage
	}
	sub := args[0]
	var socket, status string
	var all, asJSON bool
	cfg, fs, err := loadConfig("cache "+sub, args[1:], env, stderr, func(fs *pflag.FlagSet) {
		fs.StringVar(&socket, "socket", "", "admin socket of the daemon (default cache.admin_socket)")
		fs.BoolVar(&asJSON, "json", false, "print the daemon's JSON answer")
		switch sub {
		case "list":
			fs.StringVar(&status, "status", "", "only entries of this status: pass, fail, tempfail")
		case "purge":
			fs.BoolVar(&all, "all", false, "purge every cached domain (fleet-wide with the shared tier)")
		}
	})
	if err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return 0
		}
		fmt.Fprintln(stderr, "tlsgate:", err)
		return exitUsage
	}
	if socket == "" {
		socket = cfg.Cache.AdminSocket
	}
	if socket == "" {
		fmt.Fprintln(stderr, "tlsgate cache: no admin socket: set cache.admin_socket (in the daemon's configuration) or --socket")
		return exitUsage
	}
	client := &http.Client{Timeout: 60 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", socket)
		}}}
	var resp *http.Response
	switch {
	case sub == "show" && fs.NArg() == 1:
		resp, err = client.Get("http://tlsgate/v1/cache/show?key=" + url.QueryEscape(fs.Arg(0)))
	case sub == "list" && fs.NArg() == 0:
		if status != "" && status != "pass" && status != "fail" && status != "tempfail" {
			fmt.Fprintln(stderr, "tlsgate cache list: --status is pass, fail or tempfail")
			return exitUsage
		}
		resp, err = client.Get("http://tlsgate/v1/cache/list?status=" + url.QueryEscape(status))
	case sub == "purge" && (all && fs.NArg() == 0 || !all && fs.NArg() > 0):
		body, _ := json.Marshal(purgeRequest{Keys: fs.Args(), All: all})
		resp, err = client.Post("http://tlsgate/v1/cache/purge", "application/json", bytes.NewReader(body))
	default:
		fmt.Fprintln(stderr, "tlsgate cache: show DOMAIN | list [--status pass|fail|tempfail] | purge DOMAIN... | purge --all")
		return exitUsage
	}
	if err != nil {
		fmt.Fprintln(stderr, "tlsgate cache:", err)
		return 1
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		fmt.Fprintln(stderr, "tlsgate cache:", err)
		return 1
	}
	if resp.StatusCode != http.StatusOK {
		var e struct{ Error string }
		json.Unmarshal(body, &e)
		fmt.Fprintln(stderr, "tlsgate cache "+sub+":", safetext.Terminal(e.Error))
		if resp.StatusCode == http.StatusNotFound {
			return exitFail
		}
		return 1
	}
	if asJSON {
		stdout.Write(body)
		return 0
	}
	switch sub {
	case "show":
		var e adminEntry
		json.Unmarshal(body, &e)
		fmt.Fprintf(stdout, "%s: %s (from the %s tier), checked %s, cached until %s\n", e.Key, e.Status, e.Tier,
			e.Checked.UTC().Format(time.RFC3339), e.Until.UTC().Format(time.RFC3339))
		fmt.Fprint(stdout, safetext.Terminal(e.Report))
	case "list":
		var l struct{ Entries []adminEntry }
		json.Unmarshal(body, &l)
		for _, e := range l.Entries {
			fmt.Fprintf(stdout, "%s\t%s\t%s\t%s\n", e.Key, e.Status, e.Tier, e.Until.UTC().Format(time.RFC3339))
		}
	case "purge":
		var p purgeAnswer
		json.Unmarshal(body, &p)
		where := "this host"
		if p.Fleet {
			where = "the fleet (shared tier and every host's local cache)"
		}
		fmt.Fprintf(stdout, "purged from %s: %d local entries, %d shared entries\n", where, p.Local, p.Shared)
	}
	return 0
}
