// Package auth decides who a client is, never what it may do: local
// accounts (bcrypt), OIDC bearer tokens, browser sign-in, minted
// short-lived AMI secrets and the MD5 Challenge, with login rate limits. It
// returns a Principal.
//
// Status: not built yet (issues 3 and 4). It must not import policy or
// upstream.
package auth
