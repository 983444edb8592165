// Package dextest runs a real Dex OpenID Connect provider on loopback for
// tests: Start(t, Options) builds Dex from tools/dex when needed (into
// .tools/bin/dex), starts it with memory storage on a free 127.0.0.1 port,
// waits until discovery and signing keys answer and kills it in t.Cleanup.
//
// Issuer: http://127.0.0.1:<port>/dex. Clients:
//
//   - "amiproxy", secret "amiproxy-secret": confidential web client, with
//     Options.RedirectURIs (default http://127.0.0.1/callback);
//   - "amiproxy-cli": public client for the device flow (redirect URI
//     /device/callback plus Options.CLIRedirectURIs).
//
// Grants: authorization_code, refresh_token, password, device_code; the
// approval screen is skipped. ID tokens live Options.IDTokenExpiry
// (default 10 minutes).
//
// Static users (password "password"; Dex signs in by email):
//
//	admin     admin@example.com     groups ami-admins, ops
//	operator  operator@example.com  groups ami-operators
//	nobody    nobody@example.com    no groups
//
// plus Options.Users. With the "profile" scope an ID token carries the
// username as preferred_username (and name); with "groups" the groups; sub
// is an opaque string derived from the user id.
//
// Helpers: (*Dex).PasswordToken (password grant, ID token, fails the test),
// (*Dex).PasswordGrant (the same, returning errors), and, in flows.go, the
// human side of the code and device flows (SubmitLogin, ApproveDevice).
//
// Concurrency: a *Dex is safe for concurrent use; each Start runs its own
// process. Binary builds are serialised across test processes by a file
// lock. Non-goals: persistence, TLS, connectors other than the password
// database.
package dextest
