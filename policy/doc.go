// Package policy decides which TLS level a recipient requires: the policy
// table of tlsgate.
//
// # Levels
//
// A Level is a Postfix TLS security level (postconf(5)
// smtp_tls_security_level; TLS_README "TLS security levels"): none, may,
// encrypt, dane, dane-only, fingerprint, verify, secure. tlsgate later checks
// whether the recipient domain's MX hosts can meet that level; this package
// only says which level is required.
//
// # The table and Postfix lookup semantics
//
// A Table holds the same information as a Postfix smtp_tls_policy_maps table
// and answers the same question the same way, so that tlsgate's verdict at
// RCPT time predicts what Postfix's SMTP client will do at delivery time.
// A tls_policy table looks like this:
//
//	example.com           encrypt
//	.example.com          secure match=.example.com
//	[mx.example.net]:25   verify
//
// "example.com" matches that domain only, ".example.com" every subdomain of
// it but not example.com itself, and "[mx.example.net]:25" is a next-hop key.
// For a recipient domain Postfix looks up the domain itself, then, "just as
// with the transport(5) table, the parent domain starting with a leading '.'
// is matched recursively" (postconf(5) smtp_tls_policy_maps): for
// "a.b.example.com" it tries "a.b.example.com", ".b.example.com",
// ".example.com", ".com" and stops at the first key found. Keys in "[host]",
// "[host]:port" and "host:port" form are looked up only for explicit next
// hops (transport(5) entries, relayhost), never for the domain of a recipient
// address, so they are skipped here.
//
// Comparison is case-insensitive (postmap(1) folds keys to lower case), a
// trailing dot is ignored, and internationalized domain names are compared in
// A-label form, so "bücher.example" and "xn--bcher-kva.example" are the same
// key (NormalizeDomain).
//
// # Policy values
//
// A tls_policy value is a level followed by attributes (postconf(5)
// smtp_tls_policy_maps; TLS_README "TLS policy table"):
//
//	example.com    secure match=nexthop:dot-nexthop ciphers=high
//	example.net    fingerprint
//	        match=D7:58:57:2D:7E:61:57:ED:2A:0A:57:4C:D9:6D:F7:B9:2E:9F:5D:12:02:49:2C:07:51:9A:01:90:DF:54:9B:C9
//	        match=8A:07:FB:DC:01:0D:43:E5:2A:76:8F:60:6B:97:4E:23:89:36:62:A6:71:E9:6E:20:0C:EF:21:7D:35:2F:72:7B|49:87:85:41:22:6A:75:4E:5D:39:DB:35:49:14:8F:8A:07:80:64:1A:CA:93:8F:A7:2A:1B:4A:37:DD:D7:FC:49
//
// match= lists certificate names for verify and secure, separated by ':', and
// certificate or public-key fingerprints for fingerprint, separated by '|'
// (fingerprints contain ':'); several match= attributes add up. Other
// attributes (protocols, ciphers, exclude, tafile, servername,
// connection_reuse, enable_rpk) are kept in Policy.Attrs for the code that
// reproduces the handshake.
//
// ParseFile reads Postfix tls_policy source files, the text that postmap(1)
// turns into a lookup table, with postmap's "INPUT FILE FORMAT" rules:
// comment lines start with '#', indented lines continue the previous line,
// the key is the first word. Input that postmap accepts but that makes
// Postfix's SMTP client treat a policy as invalid (and defer the mail) gives a
// Warning; input tlsgate cannot judge (a missing or unknown level) is an
// error, so a broken file never silently lowers a requirement.
//
// # Customers
//
// Customer toggles are tlsgate's own addition: a level required for every
// recipient of mail from one customer, recognized on the sending side by
// envelope sender domain (same exact / ".parent" rule as the table), SASL
// login ({auth_authen}) or client network. Set.Require combines the domain
// policy and the customer requirement: the stricter level wins, and on equal
// levels the domain policy wins because it may carry match= values.
//
// # References
//
//   - postconf(5) smtp_tls_policy_maps, smtp_tls_security_level:
//     https://www.postfix.org/postconf.5.html#smtp_tls_policy_maps
//   - TLS_README, "TLS policy table":
//     https://www.postfix.org/TLS_README.html#client_tls_policy
//   - postmap(1), "INPUT FILE FORMAT": https://www.postfix.org/postmap.1.html
//   - transport(5), parent domain matching: https://www.postfix.org/transport.5.html
//   - RFC 5891 section 5 (IDNA lookup), UTS #46 (IDNA mapping).
package policy
