// Package config loads and validates the tlsgate configuration.
//
// # Sources and precedence
//
// Load merges four sources; a later source overrides an earlier one key by key:
//
//  1. the built-in defaults (Default; contrib/tlsgate.yaml shows them all),
//  2. the YAML configuration file, if one is named (tlsgate serve --config FILE,
//     or TLSGATE_CONFIG, which the command reads: Load only tolerates the variable),
//  3. TLSGATE_* environment variables,
//  4. command-line flags the operator actually gave (AddFlags registers one per
//     key, named like the key: --milter.listen, --dns.timeout, --policy_files).
//
// A list from a later source replaces the whole list, it does not append.
//
// # Environment variables
//
// Every key except policies and customers is settable as TLSGATE_ followed by the
// key in upper case, the section and key joined by '_':
//
//	milter.rcpt_timeout   TLSGATE_MILTER_RCPT_TIMEOUT=5s
//	dns.resolver          TLSGATE_DNS_RESOLVER=127.0.0.1:53
//	policy_files          TLSGATE_POLICY_FILES=/etc/postfix/tls_policy,/etc/tlsgate/extra
//
// The variable names come from the list of keys, not from replacing every '_' by
// '.', so top-level keys with an underscore (policy_files) work. List values
// (milter.checked_transports, probe.allow_networks, policy_files) are
// comma-separated; an empty value is an empty list. The policies and customers
// lists are structured and can only be written in the file. Any other TLSGATE_*
// variable is an error, so that a misspelt variable does not go unnoticed.
//
// # Values
//
// Durations use Go syntax ("10s", "1m30s", "1h"); a number without a unit is an
// error. milter.socket_mode and socketmap.socket_mode are octal strings; write them
// quoted ("0660") in YAML.
//
// # Errors
//
// Unknown keys, values of the wrong type and invalid values are reported all at
// once, each as a *FieldError naming where the value came from (the file, the
// environment variable or the flag), the key, the value, and the allowed values:
//
//	/etc/tlsgate.yaml: milter.listn: unknown key (allowed: listen, rcpt_timeout, ...)
//	/etc/tlsgate.yaml: policies[2].level: "encrpyt" is not a TLS level (allowed: none, may, ...)
//	environment: TLSGATE_DNS_TIMEOUT: "3" has no unit (write a duration like 10s or 1m30s)
//
// Every such error matches ErrInvalid with errors.Is. Values that are valid but
// doubtful (an rcpt_timeout Postfix will not wait for) are listed by
// Config.Warnings.
//
// A valid Config is turned into the policy table and customer toggles by
// Config.PolicySet, which also reads the Postfix tls_policy files of
// policy_files.
package config
