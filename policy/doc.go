// Package policy decides which TLS level a recipient requires. A Table holds a Postfix
// smtp_tls_policy_maps table (ParseFile reads its source as postmap(1) does) and looks
// up a recipient domain or next hop as Postfix's SMTP client does; Customers are
// tlsgate's per-customer toggles, recognized on the sending side; Set.Require combines
// both into a Requirement that names the Rule that decided.
//
// A Level is a Postfix TLS security level (postconf(5) smtp_tls_security_level). This
// package only says which level applies; package verify judges whether it can be met.
// docs/policy.md describes the lookup rules and the value syntax, with references.
package policy
