// Command tlsgate is a Postfix milter that enforces mandatory-TLS reachability at RCPT
// time. See README.md.
//
//	tlsgate serve [--config FILE]
//	tlsgate check [--config FILE] [--level L] [--json] DOMAIN
//	tlsgate version
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"syscall"
)

// version and revision are set by the build:
//
//	go build -ldflags "-X main.version=1.2.0 -X main.revision=$(git rev-parse HEAD)" ./cmd/tlsgate
//
// Without -X main.revision the VCS revision Go records is shown, which a build with
// -buildvcs=false (or from a source tarball) does not have.
var (
	version  = "dev"
	revision = ""
)

// Exit codes of `tlsgate check` (README.md, "Command line"); serve uses exitUsage for configuration
// errors and 1 for runtime failures.
const (
	exitPass     = 0
	exitFail     = 1
	exitTempfail = 2
	exitUsage    = 3
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Environ(), os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

func run(ctx context.Context, args, env []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return exitUsage
	}
	switch args[0] {
	case "serve":
		return serve(ctx, args[1:], env, stderr)
	case "check":
		return check(ctx, args[1:], env, stdout, stderr)
	case "config":
		return configCmd(args[1:], env, stdout, stderr)
	case "learn":
		return learnCmd(ctx, args[1:], env, stdout, stderr)
	case "cache":
		return cacheCmd(args[1:], env, stdout, stderr)
	case "version", "--version", "-v":
		fmt.Fprintln(stdout, versionLine())
		return 0
	case "help", "--help", "-h":
		usage(stdout)
		return 0
	}
	fmt.Fprintf(stderr, "tlsgate: unknown command %q\n", args[0])
	usage(stderr)
	return exitUsage
}

func usage(w io.Writer) {
	fmt.Fprint(w, `usage:
  tlsgate serve [--config FILE] [--KEY=VALUE ...]   run the milter (no FILE: built-in defaults)
  tlsgate check [--config FILE] [--level LEVEL] [--json] DOMAIN
                                                    probe DOMAIN now and print the verdict
                                                    (exit 0 pass, 1 fail, 2 tempfail, 3 usage)
  tlsgate config check FILE [--rcpt ADDR] [--sender ADDR] [--sasl LOGIN] [--client IP]
                                                    validate FILE; show the policy for a recipient
  tlsgate learn [--since DURATION] [--min-deliveries N] [--json] [--diff FILE] [LOGFILE ...]
                                                    propose a tls_policy from Postfix's mail log
  tlsgate cache show DOMAIN | list [--status fail] | purge DOMAIN... | purge --all
                                                    inspect or purge a running daemon's verdict
                                                    cache (cache.admin_socket); fleet-wide with
                                                    cache.shared.url
  tlsgate version

FILE may also be given as TLSGATE_CONFIG. Every configuration key is also a flag
(--milter.listen, --dns.resolver, ...; a boolean as --mta_sts.enabled=false) and an
environment variable (TLSGATE_MILTER_LISTEN, ...). See README.md.
`)
}

// versionLine is the version with the build's Go version and VCS revision: the one
// stamped with -X main.revision, else the one Go recorded.
func versionLine() string {
	line := "tlsgate " + version + " " + runtime.Version()
	if revision != "" {
		return line + " revision " + revision
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				line += " revision " + s.Value
			case "vcs.modified":
				if s.Value == "true" {
					line += " (modified)"
				}
			}
		}
	}
	return line
}
