package auth

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"
)

// Chain.Validate returns errors wrapping ErrRevoked, ErrExpired or
// ErrRemoved (declared in minted_errors.go), so that the gateway can name
// the reason in its final notice. ErrExpired is also wrapped, together
// with ErrAuthFailed, when an expired token is presented.

// SecretAuthenticator authenticates minted short-lived AMI secrets and
// answers whether a Principal is still good (not revoked). *Minter
// implements it.
//
// Validate is called by Chain.Validate for minted Principals and for OIDC
// ones (so that revoking a user, by username and AuthTime, ends their
// token sessions too); it returns nil, or an error wrapping ErrRevoked,
// ErrExpired or ErrRemoved. It must be cheap and must not block on the
// network: the gateway calls it for every live session periodically.
type SecretAuthenticator interface {
	Authenticate(ctx context.Context, c Credentials) (Principal, error)
	Validate(ctx context.Context, p Principal) error
}

// ChainConfig is what a Chain delegates to. Every field is optional.
type ChainConfig struct {
	Local  *Local              // local accounts; nil refuses every local Login
	OIDC   *OIDC               // OIDC tokens; nil refuses every token
	Minted SecretAuthenticator // minted secrets; nil refuses them
	Now    func() time.Time    // AuthTime and expiry checks; default time.Now
}

// Chain is the proxy's Authenticator: it routes each set of credentials to
// exactly one authenticator.
//
//  1. Credentials.Token set (HTTP bearer): OIDC.
//  2. Username names a local account: Local, and nothing else, so a local
//     account can never be taken over by a token or a minted secret
//     carrying its name.
//  3. A plain Login whose Secret looks like a JWT (LooksLikeJWT): OIDC.
//  4. Anything else, MD5 Logins included: Minted.
//
// When a Login routed to OIDC or Minted fails, Chain also spends the
// bcrypt comparison Local spends on an unknown username, so the response
// time of a failed Login does not reveal whether its username is a local
// account (see Local on timing). Successful non-local Logins do not pay it.
//
// Chain sets Principal.AuthTime to its clock's now on success.
//
// The zero value is not usable; create one with NewChain. A Chain is safe
// for concurrent use; SetLocal swaps the local accounts atomically (for a
// configuration reload) without disturbing Logins in progress. It holds
// no goroutines and needs no Close.
type Chain struct {
	local  atomic.Pointer[Local]
	oidc   *OIDC
	minted SecretAuthenticator
	now    func() time.Time
}

// Failure causes of Chain routing, wrapped with ErrAuthFailed.
var (
	errNoOIDC   = errors.New("chain: token presented but OIDC is not configured")
	errNoMinted = errors.New("chain: unknown username (no local account; minted secrets are not configured)")
)

// NewChain returns a Chain over cfg's authenticators.
func NewChain(cfg ChainConfig) *Chain {
	c := &Chain{oidc: cfg.OIDC, minted: cfg.Minted, now: cfg.Now}
	if c.now == nil {
		c.now = time.Now
	}
	c.local.Store(cfg.Local)
	return c
}

// SetLocal replaces the local accounts used by later Logins and by
// Validate. nil removes every local account.
func (c *Chain) SetLocal(l *Local) { c.local.Store(l) }

// Local returns the current local accounts (possibly nil).
func (c *Chain) Local() *Local { return c.local.Load() }

// Authenticate routes cr as described on Chain. Every failure wraps
// ErrAuthFailed; the wrapped cause is for the log only.
func (c *Chain) Authenticate(ctx context.Context, cr Credentials) (Principal, error) {
	if ctx.Err() != nil {
		return failed(context.Cause(ctx))
	}
	local := c.local.Load()
	var p Principal
	var err error
	switch {
	case cr.Token != "":
		if c.oidc == nil {
			return failed(errNoOIDC)
		}
		p, err = c.oidc.Authenticate(ctx, cr)
	case local.Lookup(cr.Username):
		p, err = local.Authenticate(ctx, cr)
	case !isMD5(cr.AuthType) && LooksLikeJWT(cr.Secret.Reveal()):
		if c.oidc == nil {
			err = fmt.Errorf("%w: %w", ErrAuthFailed, errNoOIDC)
		} else {
			p, err = c.oidc.Authenticate(ctx, cr)
		}
		if err != nil {
			local.spendDummy([]byte(cr.Secret.Reveal()))
		}
	default:
		if c.minted == nil {
			// Local's own unknown-username path, timing included.
			p, err = local.Authenticate(ctx, cr)
			if err != nil {
				err = fmt.Errorf("%w: %w", ErrAuthFailed, errNoMinted)
			}
		} else {
			p, err = c.minted.Authenticate(ctx, cr)
			if err != nil && !isMD5(cr.AuthType) {
				local.spendDummy([]byte(cr.Secret.Reveal()))
			}
		}
	}
	if err != nil {
		if !errors.Is(err, ErrAuthFailed) {
			err = fmt.Errorf("%w: %w", ErrAuthFailed, err)
		}
		return Principal{}, err
	}
	p.AuthTime = c.now()
	return p, nil
}

// Validate reports whether a session's Principal still holds, without
// network I/O:
//
//   - any Principal whose Expires has passed: ErrExpired;
//   - local (MethodPassword, MethodMD5): the username is still an account
//     of the current Local (after SetLocal), else ErrRemoved;
//   - MethodOIDC: not expired, then the SecretAuthenticator's Validate
//     when one is configured (user revocation);
//   - any other method (minted secrets): the SecretAuthenticator's
//     Validate; without one, ErrRemoved.
//
// A nil error means the session may continue. Errors wrap ErrExpired,
// ErrRemoved or ErrRevoked (the last from the SecretAuthenticator).
func (c *Chain) Validate(ctx context.Context, p Principal) error {
	if !p.Expires.IsZero() && !c.now().Before(p.Expires) {
		return fmt.Errorf("auth: %s: expired at %s: %w", p.Subject, p.Expires.UTC().Format(time.RFC3339), ErrExpired)
	}
	switch p.Method {
	case MethodPassword, MethodMD5:
		if !c.local.Load().Lookup(p.Username) {
			return fmt.Errorf("auth: %s: local account no longer configured: %w", p.Subject, ErrRemoved)
		}
		return nil
	case MethodOIDC:
		if c.minted == nil {
			return nil
		}
		return c.minted.Validate(ctx, p)
	}
	if c.minted == nil {
		return fmt.Errorf("auth: %s: method %q has no authenticator configured: %w", p.Subject, p.Method, ErrRemoved)
	}
	return c.minted.Validate(ctx, p)
}
