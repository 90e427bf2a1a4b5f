package main

import (
	"context"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"syscall"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/tlsgate/tlsgate/config"
	"github.com/tlsgate/tlsgate/milter"
)

// reloader rebuilds the milter configuration from the same arguments and environment
// on SIGHUP or when the configuration or a policy file changes. A configuration that
// does not load keeps the running one; milter connections and cached facts are
// untouched (facts are judged again against the new levels on the next recipient).
type reloader struct {
	args, env []string
	running   *config.Config // the configuration the daemon started with
	filter    *milter.Filter
	build     func(*config.Config) (milter.Config, error)
	log       *slog.Logger
	metrics   *metrics // nil without metrics
	// also applies a reloaded configuration elsewhere (the socketmap); may be nil.
	also func(*config.Config, milter.Config)
}

// reload loads the configuration again and swaps it in, or keeps the running one.
func (r *reloader) reload(why string) bool {
	cfg, _, err := loadConfig("serve", r.args, r.env, io.Discard, nil)
	var fc milter.Config
	if err == nil {
		fc, err = r.build(cfg)
	}
	if err != nil {
		r.log.Error("configuration reload failed; the running configuration stays", "trigger", why, "err", err)
		r.metrics.countReload(false)
		return false
	}
	for _, key := range cfg.RestartNeeded(r.running) {
		r.log.Warn("configuration changed where a reload cannot apply it; restart tlsgate", "key", key)
	}
	r.filter.Update(fc)
	if r.also != nil {
		r.also(cfg, fc)
	}
	r.log.Info("configuration reloaded", "trigger", why, "policies", fc.Policies.Table.Len())
	r.metrics.countReload(true)
	return true
}

// reloadDebounce gathers the burst of events an editor or a deployment tool makes
// when it replaces a file into one reload.
const reloadDebounce = time.Second

// start begins watching: SIGHUP and the watched files are registered before it
// returns, so a change made after the daemon reports it started is never missed; the
// reloads then run in the background until ctx ends.
func (r *reloader) start(ctx context.Context) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	files := watchedFiles(r.running)
	var w *fsnotify.Watcher
	if len(files) > 0 {
		var err error
		if w, err = fsnotify.NewWatcher(); err != nil {
			r.log.Warn("cannot watch configuration files; reload with SIGHUP", "err", err)
		} else {
			// Watch the directories: files are often replaced by a rename, which
			// ends a watch on the file itself.
			for _, dir := range dirsOf(files) {
				if err := w.Add(dir); err != nil {
					r.log.Warn("cannot watch a configuration directory; reload with SIGHUP", "dir", dir, "err", err)
				}
			}
		}
	}
	go r.loop(ctx, hup, w, files)
}

// loop reloads on SIGHUP and on changes of the watched files until ctx ends.
func (r *reloader) loop(ctx context.Context, hup chan os.Signal, w *fsnotify.Watcher, files []string) {
	defer signal.Stop(hup)
	var events <-chan fsnotify.Event
	var errs <-chan error
	if w != nil {
		defer w.Close()
		events, errs = w.Events, w.Errors
	}
	var debounce <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
			r.reload("SIGHUP")
		case ev := <-events:
			if slices.Contains(files, filepath.Clean(ev.Name)) && ev.Op&(fsnotify.Write|fsnotify.Create|fsnotify.Rename|fsnotify.Remove) != 0 {
				debounce = time.After(reloadDebounce)
			}
		case err := <-errs:
			r.log.Warn("watching configuration files", "err", err)
		case <-debounce:
			debounce = nil
			r.reload("file changed")
		}
	}
}

// watchedFiles are the configuration file and the policy files, as absolute paths.
func watchedFiles(cfg *config.Config) []string {
	var out []string
	for _, f := range append([]string{cfg.File}, cfg.PolicyFiles...) {
		if f == "" {
			continue
		}
		if abs, err := filepath.Abs(f); err == nil {
			out = append(out, filepath.Clean(abs))
		}
	}
	return out
}

func dirsOf(files []string) []string {
	var dirs []string
	for _, f := range files {
		if d := filepath.Dir(f); !slices.Contains(dirs, d) {
			dirs = append(dirs, d)
		}
	}
	return dirs
}
