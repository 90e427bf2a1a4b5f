package main

import (
	"fmt"
	"io"

	"github.com/tlsgate/tlsgate/config"
	"github.com/tlsgate/tlsgate/config/policy"
	"github.com/tlsgate/tlsgate/policymap"
)

// printSocketmapConfig shows the socketmap settings in `config check`.
func printSocketmapConfig(w io.Writer, cfg *config.Config) {
	if cfg.Socketmap.Listen == "" {
		fmt.Fprintln(w, "socketmap: off (socketmap.listen is empty)")
		return
	}
	def := `"" (NOTFOUND: smtp_tls_security_level applies)`
	if cfg.SocketmapDefaultPublished() {
		def = "published"
	}
	fmt.Fprintf(w, "socketmap: %s, default_level %s, timeout %s\n", cfg.Socketmap.Listen, def, cfg.Socketmap.Timeout)
}

// socketmapStatic is what the socketmap answers for a domain as far as the
// configuration alone says; level published is looked up at delivery time.
func socketmapStatic(t *policy.Table, defaultPublished bool, domain string) string {
	k := policymap.Classify(domain)
	if _, published := policymap.Needs(t, defaultPublished, k); published {
		return "published: looked up at delivery (tlsgate check " + domain + " shows the answer)"
	}
	return policymap.Decide(t, defaultPublished, k, nil, nil, false).String()
}
