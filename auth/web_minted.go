package auth

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"time"
)

// SecretView describes one of a user's minted secrets, without the
// secret: a row of the page and an element of GET /api/v1/secrets.
type SecretView struct {
	ID      string    `json:"id"`
	Label   string    `json:"label,omitempty"`
	Created time.Time `json:"created"`
	Expires time.Time `json:"expires"`
}

// MintResult is a secret just minted, as the page shows it once and POST
// /api/v1/secrets returns it. Secret is the plaintext, deliberately a
// string: never log a MintResult.
type MintResult struct {
	ID       string    `json:"id"`
	Username string    `json:"username"`
	Secret   string    `json:"secret"`
	Label    string    `json:"label,omitempty"`
	Expires  time.Time `json:"expires"`
}

// mint mints a secret for p and audits it (never the secret).
func (w *Web) mint(ctx context.Context, p Principal, ttl time.Duration, label, via string) (MintResult, error) {
	m, err := w.cfg.Minter.Mint(ctx, p, ttl, label)
	if err != nil {
		w.audit.LogAttrs(ctx, slog.LevelWarn, "secret.mint_failed", slog.String("principal", p.Subject),
			slog.String("user", p.Username), slog.String("via", via), slog.String("err", err.Error()))
		return MintResult{}, err
	}
	w.audit.LogAttrs(ctx, slog.LevelInfo, "secret.mint", slog.String("principal", p.Subject),
		slog.String("user", p.Username), slog.String("secret_id", m.ID), slog.String("via", via),
		slog.Time("expires", m.Expires))
	return MintResult{ID: m.ID, Username: m.Username, Secret: m.Secret.Reveal(), Label: m.Label, Expires: m.Expires}, nil
}

// listFor returns p's live secrets; a failure shows as none and is logged.
func (w *Web) listFor(ctx context.Context, p Principal) []SecretView {
	infos, err := w.cfg.Minter.List(ctx, p.Username)
	if err != nil {
		w.log.Warn("web: list minted secrets", "user", p.Username, "err", err)
		return nil
	}
	out := make([]SecretView, 0, len(infos))
	for _, i := range infos {
		out = append(out, SecretView{ID: i.ID, Label: i.Label, Created: i.Created, Expires: i.Expires})
	}
	return out
}

// revokeOwn revokes one of p's own secrets.
func (w *Web) revokeOwn(ctx context.Context, p Principal, id string) error {
	if err := w.cfg.Minter.Revoke(ctx, p.Username, id); err != nil {
		return err
	}
	w.audit.LogAttrs(ctx, slog.LevelInfo, "secret.revoke", slog.String("principal", p.Subject),
		slog.String("user", p.Username), slog.String("secret_id", id))
	return nil
}

// publicMintError is what a user is told when minting fails: the cause
// when it is theirs to fix, else a fixed text.
func publicMintError(err error) string {
	switch {
	case errors.Is(err, ErrTooManySecrets):
		return "you hold the maximum number of live secrets; revoke one first"
	case errors.Is(err, ErrRevoked):
		return "your sessions were revoked; sign in again"
	case errors.Is(err, ErrMinterClosed):
		return "the proxy is shutting down"
	}
	// Mint's own checks of the request (ttl, label) say what is wrong
	// in text that quotes no secret.
	if msg, ok := strings.CutPrefix(err.Error(), "auth: mint: "); ok &&
		(strings.HasPrefix(msg, "ttl") || strings.HasPrefix(msg, "negative ttl") || strings.HasPrefix(msg, "label")) {
		return msg
	}
	return "internal error"
}
