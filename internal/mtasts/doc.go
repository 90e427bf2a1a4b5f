// Package mtasts implements SMTP MTA Strict Transport Security (RFC 8461) for a sending
// MTA: a recipient domain publishes, over HTTPS, which MX hosts it uses and whether
// senders must deliver to them only over TLS with a certificate valid for the MX name.
//
// Discovery has two parts (RFC 8461 §3). First a TXT record at _mta-sts.<domain>
// (§3.1), for example "v=STSv1; id=20160831085700Z;". It says that a policy exists, and
// its id changes whenever the policy changes, so a sender with a cached policy knows
// when to fetch again. Only records that begin with "v=STSv1" count; if there is not
// exactly one of them, the domain has no usable policy. Then the policy itself (§3.2,
// §3.3), a small text file served at https://mta-sts.<domain>/.well-known/mta-sts.txt:
//
//	version: STSv1
//	mode: enforce
//	mx: mail.example.com
//	mx: *.example.net
//	mx: backupmx.example.com
//	max_age: 604800
//
// The mode says what to do when no MX passes the checks (§5): "enforce" refuses to
// deliver, "testing" delivers anyway and only reports, "none" says the domain has
// withdrawn its policy. max_age is how long, in seconds, a sender may cache the policy,
// at most one year (31557600 seconds). Each mx line is a pattern that the MX host names
// must match (§4.1): either a host name, or "*." and a domain, where "*" stands for
// exactly one left-most label.
//
// ParseTXT, ParsePolicy, MatchPattern and Policy.Allows are pure: no DNS, no HTTP, no
// clock. The caller looks up the TXT records and fetches the policy body, with the TLS
// and size rules of §3.3, and hands the bytes to this code.
//
// Where RFC 8461 leaves a choice, this package takes the strict side and says so next to
// the code: the ABNF is followed exactly for the TXT record; in a policy the first
// occurrence of version, mode and max_age wins; an IP address is never an mx pattern.
package mtasts
