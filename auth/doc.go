// Package auth decides who a client is, never what it may do. It returns a
// Principal; package policy decides what that Principal may do.
//
// This first part covers local accounts for services and people, used by
// both front doors of package proxy (native AMI and the HTTP manager):
//
//   - Local (built by NewLocal from []Account) checks an AMI Login, plain or
//     with the MD5 Challenge, with Asterisk's rules (ami-spec §2.1-2.2):
//     case-insensitive usernames, exact case-sensitive secrets, and the key
//     lower-case hex MD5(challenge + secret) compared case-sensitively.
//   - NewChallenge makes a challenge in Asterisk's format (1-9 digits).
//   - HashSecret makes the bcrypt hash stored in Account.SecretHash.
//   - Secret is a credential type that never prints.
//   - LoginLimiter throttles login attempts before any credential is
//     checked: per address (IPv6 by /64), per username, and a lockout per
//     username+address that doubles with each consecutive failure. Its
//     tables are LRUs, so its memory is bounded under a flood.
//
// Every failure wraps ErrAuthFailed. Its Error() text names the cause for
// the log; clients must only ever see Asterisk's fixed "Authentication
// failed" (house style C4). No error contains a secret, key or hash.
//
// Timing: a plain Login always costs one bcrypt comparison (a dummy one for
// unknown usernames and plaintext-only accounts), and secrets and keys are
// compared in constant time, so response times do not reveal which
// usernames exist. See Local for details and the cost trade-off.
//
// Concurrency: everything here except LoginLimiter is immutable after
// construction; all of it is safe for concurrent use. The package starts no goroutines and does not log;
// callers own audit logging and Asterisk's 1 s failure delay.
//
// Non-goals: authorisation (policy), talking to the PBX (upstream),
// per-account ACLs (later; Credentials.Remote is reserved for them), and
// caching bcrypt results.
//
// Planned: OIDC bearer tokens, browser sign-in, minted short-lived AMI
// secrets. auth must not import policy or upstream.
package auth
