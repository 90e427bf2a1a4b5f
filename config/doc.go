// Package config loads the tlsgate configuration. One table (schema.go) names every
// key with its type, default and documentation; Load parses the sources into a typed
// Config and refuses input that does not parse or is invalid.
//
// Load merges, a later source overriding an earlier one key by key (a list is
// replaced, not appended): the built-in defaults; the YAML file (serve --config FILE,
// or TLSGATE_CONFIG, which the command reads); the TLSGATE_* environment variables,
// named from the key (milter.rcpt_timeout is TLSGATE_MILTER_RCPT_TIMEOUT,
// policy_files TLSGATE_POLICY_FILES; lists comma-separated); and the flags the
// operator gave (AddFlags: --milter.rcpt_timeout). The policies and customers lists
// are read from the file only. Any other TLSGATE_* variable is an error, so that a
// misspelt one does not go unnoticed. koanf reads each source (its file provider and
// YAML parser, its env provider, its posflag provider) and flattens it into keys;
// the table converts each value and names the file, variable or flag in errors.
//
// Durations use Go syntax ("10s", "1m30s"); a number without a unit is an error.
// Socket modes are octal: quote them in YAML ("0660").
//
// All problems are reported at once, each a *FieldError naming the source, the key,
// the value and what is allowed:
//
//	/etc/tlsgate.yaml: policies[2].level: "encrpyt" is not a TLS level (allowed: none, may, ...)
//	environment: TLSGATE_DNS_TIMEOUT: "3" has no unit (write a duration like 10s or 1m30s)
//
// Config.Warnings lists values that are valid but doubtful; Config.PolicySet builds
// the policy table and customer toggles, reading the policy_files.
package config
