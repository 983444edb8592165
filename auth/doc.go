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
// construction; all of it is safe for concurrent use. The package starts no goroutines (except a
// Minter's Store poller, stopped by Close) and does not log;
// callers own audit logging and Asterisk's 1 s failure delay.
//
// Account.Permit and Account.Deny restrict a local account to client
// addresses (CIDR prefixes, IPv4 and IPv6), checked after the username
// lookup and before the secret, as Asterisk checks a user's permit=/deny=;
// a refusal's cause is "address not permitted" (log only).
//
// Non-goals: authorisation (policy), talking to the PBX (upstream),
// Asterisk's named ACLs and rule order (see Account), and caching bcrypt
// results.
//
// OIDC tokens and the Chain:
//
//   - OIDC (NewOIDC from OIDCConfig) verifies ID tokens from one OpenID
//     Connect provider with go-oidc: signature against the provider's JWKS
//     with an asymmetric algorithm from an allow-list (default RS256,
//     ES256; "none" and HS* are refused at construction), issuer, audience
//     (ClientID or OIDCConfig.Audiences), exp without leeway, nbf and iat
//     with ClockSkew. The Principal is Subject "oidc:<sub>", Username from
//     preferred_username (Dex emits it with the "profile" scope), Groups
//     from "groups", Method MethodOIDC, Expires = exp, Claims = all claims
//     (numbers as json.Number), AuthTime = now. Authenticate takes the JWT
//     from Credentials.Token (HTTP bearer) or from a plain Login's Secret,
//     whose Username must then equal the username claim (ASCII
//     case-insensitively); an MD5 Login cannot carry a token. Endpoint and
//     VerifyIDToken (nonce-checked) serve the browser and device flows.
//   - Discovery runs in NewOIDC; if the provider is down, NewOIDC still
//     succeeds, verification fails with ErrUnavailable, and discovery is
//     retried lazily at most once per 10 s. All provider requests use a
//     client with a timeout (DiscoveryTimeout, HTTPTimeout).
//   - Verified tokens are cached in an LRU keyed by SHA-256 of the token
//     (the token itself is never kept), for at most 5 minutes and never at
//     or after exp, checked on every hit. Failures are not cached. An
//     expired token fails with ErrExpired as well as ErrAuthFailed.
//   - LooksLikeJWT tells a JWT's shape from a password, for routing.
//   - Chain (NewChain from ChainConfig) is the proxy's Authenticator:
//     Credentials.Token goes to OIDC; a username that is a local account
//     goes to Local only (a token or minted secret can never open a local
//     account); a Login secret that looks like a JWT goes to OIDC; the rest
//     to the minted SecretAuthenticator. A failed non-local Login spends
//     Local's dummy bcrypt, so timing does not reveal local usernames.
//     SetLocal swaps the accounts atomically on reload. Chain.Validate
//     re-checks a live session's Principal without network I/O: local
//     account still configured (ErrRemoved), not expired (ErrExpired),
//     minted secrets and user revocation via SecretAuthenticator.Validate
//     (ErrRevoked).
//
// OIDC and Chain are safe for concurrent use, start no goroutines and
// need no Close. OIDC fetches the provider's signing keys itself (bounded
// size and time), refetching on an unverifiable token at most once per
// 10 s, so forged tokens cannot turn the proxy against its provider.
// Error texts never contain a token: library errors are scrubbed of every
// token segment before they are wrapped.
//
// Browser sign-in and the minting API (web*.go):
//
//   - Web (NewWeb from WebConfig) is an http.Handler: GET /login runs the
//     OpenID Connect authorization code flow with PKCE S256, state and
//     nonce (kept server-side under a random id in a short-lived HttpOnly,
//     SameSite=Lax cookie, usable once); /login/callback checks them,
//     exchanges the code, verifies the ID token with its nonce and starts
//     a web session under a fresh 256-bit id (HttpOnly, SameSite=Strict,
//     Secure and "__Host-" over https), ended by SessionTTL, the token's
//     expiry, logout or a user revocation. /me shows who the user is, the
//     roles and PBXs a WebConfig.Describe callback reports (auth does not
//     import policy), and mints, lists and revokes the user's AMI secrets
//     (a Minter); the secret is shown once, with Cache-Control: no-store.
//     Page POSTs need the session's CSRF token and a same-origin Origin.
//     Pages carry a strict CSP (no script), X-Frame-Options DENY and
//     Referrer-Policy same-origin.
//   - The JSON API under /api/v1/ (Bearer ID token) serves amiproxy login
//     (login-config, mint, list, revoke one's own) and amiproxy revoke
//     (admin/revoke for members of WebConfig.AdminGroups). A bearer token
//     is dated by its iat, so tokens issued before a user revocation
//     cannot mint.
//   - Web's tables are bounded LRUs in memory (no goroutines); a restart
//     signs browsers out, minted secrets survive in the Minter's Store.
//
// Minted short-lived AMI secrets (minted*.go, store*.go):
//
//   - Minter (NewMinter from MinterConfig) mints a secret for a Principal
//     that signed in another way (OIDC), for legacy clients that only know
//     Username/Secret or the MD5 Challenge. The secret is "amp_" and 32
//     lower-case base32 characters (160 random bits); it is returned once
//     (Minted.Secret) and works, plain or MD5, for the Principal's
//     username until it expires (DefaultTTL 8 h, at most MaxTTL, default
//     7 days) or is revoked. At most MaxPerUser (20) live secrets per
//     username: Mint refuses more (ErrTooManySecrets), it never evicts.
//     A session opened with a minted secret cannot mint another.
//   - A login yields the minting identity again: its Subject, Groups and
//     Claims, Method MethodMinted, Expires = the secret's expiry, SecretID
//     = its public ID, AuthTime = now. Authenticate always tries
//     max(MaxPerUser, held) candidates, with constant-time comparisons.
//   - List, ListAll, Revoke (own IDs only), RevokeID (admin) and
//     RevokeUser, which deletes the user's secrets and records a user
//     revocation: Validate then fails with ErrRevoked for every Principal
//     of that username authenticated at or before it (OIDC sessions
//     included); signing in again works. Validate also reports a revoked
//     (ErrRevoked) or expired (ErrExpired) minted secret. OnChange
//     functions run after every change, local or seen in the Store, so
//     the gateway can re-check live sessions at once.
//   - Store is the persistence contract (Load, a cheap Version counter,
//     insert-only Put, Delete, RevokeUser), written so that a shared
//     store lets replicas see each other's changes at their next Sync
//     (every PollInterval, default 1 s). FileStore keeps one JSON file,
//     minted.json (0600, in a 0700 directory, locked against a second
//     process), rewritten atomically; it refuses a group- or
//     world-accessible file and reports a corrupt one instead of starting
//     empty.
//   - At rest every secret is sealed with AES-256-GCM under a 32-byte key
//     (LoadKey, ParseKey, GenerateKeyFile), random nonce; the additional
//     data binds every other field of its Record, so an edited or swapped
//     record does not open. NewMinter refuses a Store with a record it
//     cannot open. In memory the secrets are kept decrypted, and zeroed
//     when revoked, swept or at Close.
//
// auth must not import policy or upstream.
package auth
