package auth

import "errors"

// Sentinel errors that say why a Principal that once authenticated is no
// longer valid (Minter.Validate, and the chain's re-checks of live
// sessions). They are returned wrapped, with text that is safe to log;
// gateways end the session and may tell the client it was revoked or
// expired.
var (
	// ErrRevoked: the credential was revoked (a minted secret revoked or
	// deleted, or every session of the user ended by RevokeUser).
	ErrRevoked = errors.New("auth: credential revoked")
	// ErrExpired: the credential's lifetime ended.
	ErrExpired = errors.New("auth: credential expired")
	// ErrRemoved: the account no longer exists (for example, removed from
	// the configuration on reload).
	ErrRemoved = errors.New("auth: account removed")
)
