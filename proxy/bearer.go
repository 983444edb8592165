package proxy

import (
	"context"
	"crypto/sha256"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/amiproxy/amiproxy/auth"
	"github.com/amiproxy/amiproxy/rawman"
)

// maxBearerToken bounds the bearer tokens read (a JWT of an identity
// provider is a few KiB).
const maxBearerToken = 16 << 10

// methodBearer is the audit method of a bearer request.
const methodBearer = "bearer"

// bearerToken returns the token of an "Authorization: Bearer <token>"
// request. ok is false when the request carries no Bearer authorization
// (it then uses cookies); a request with several Authorization headers of
// which one is Bearer, or a Bearer header without a well-formed token,
// gives ok true and an empty token, which is refused.
func bearerToken(r *http.Request) (token string, ok bool) {
	vals := r.Header.Values("Authorization")
	for _, v := range vals {
		scheme, rest, _ := strings.Cut(strings.TrimLeft(v, " \t"), " ")
		if !strings.EqualFold(scheme, "Bearer") {
			continue
		}
		if len(vals) != 1 {
			return "", true
		}
		rest = strings.Trim(rest, " \t")
		if !validB64Token(rest) {
			return "", true
		}
		return rest, true
	}
	return "", false
}

// validB64Token checks RFC 6750's b64token: 1*( ALPHA / DIGIT / "-" / "." /
// "_" / "~" / "+" / "/" ) *"=", at most maxBearerToken bytes.
func validB64Token(s string) bool {
	if s == "" || len(s) > maxBearerToken {
		return false
	}
	i := 0
	for ; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
			c == '-' || c == '.' || c == '_' || c == '~' || c == '+' || c == '/') {
			break
		}
	}
	if i == 0 {
		return false
	}
	for ; i < len(s); i++ {
		if s[i] != '=' {
			return false
		}
	}
	return true
}

// serveBearer serves a cookie URI (/rawman, /mxml, /manager, under the
// root or /pbx/<name>/) requested with "Authorization: Bearer <token>":
// the Authenticator checks the token on every request (auth caches the
// verification), and the request runs on the server-side session of that
// token, keyed by its SHA-256, which holds its events and WaitEvent. No
// cookie is read or set. A token that is malformed, refused, expired, or
// whose user may use no PBX gets 401 with `WWW-Authenticate: Bearer
// error="invalid_token"` and no detail (RFC 6750), after LoginFailDelay.
func (m *HTTPManager) serveBearer(ctx context.Context, req *httpRequest, token string) {
	if token == "" {
		m.bearerFailed(ctx, req, "malformed bearer authorization")
		return
	}
	addr := req.remote.Addr()
	lim := m.g.cfg.Limits
	if lim != nil {
		// Before the token is checked; valid tokens spend nothing.
		if dec := lim.Check(addr, ""); !dec.OK {
			m.g.stats.loginsThrottled.Add(1)
			m.bearerFailed(ctx, req, throttledCause(dec))
			return
		}
	}
	p, err := m.g.authenticator().Authenticate(ctx, auth.Credentials{Token: auth.Secret(token), Remote: req.remote})
	switch {
	case err != nil:
	case !p.Expires.IsZero() && !m.g.now().Before(p.Expires):
		err = errors.New("proxy: bearer token expired")
	case p.Username == "":
		err = errors.New("proxy: bearer token names no user")
	}
	if err != nil {
		if lim != nil {
			lim.Charge(addr)
			lim.Failed(addr, "")
		}
		m.bearerFailed(ctx, req, err.Error())
		return
	}
	key := sha256.Sum256([]byte(token))
	hs, cause := m.bearerSession(ctx, req, key, p)
	if hs == nil {
		m.bearerFailed(ctx, req, cause)
		return
	}
	out, o := m.run(ctx, hs, req)
	m.release(hs, o)
	if o.close {
		m.bearerMu.Lock()
		if cur, ok := m.bearers.Peek(key); ok && cur == hs {
			m.bearers.Remove(key)
		}
		m.bearerMu.Unlock()
	}
	if o.abandoned {
		return
	}
	m.write(req, http.StatusOK, out, 0)
}

// bearerSession returns the session of the token whose hash is key,
// marked busy, creating and logging it in as p when there is none (or it
// is gone). It returns nil and the cause when the policy refuses p.
func (m *HTTPManager) bearerSession(ctx context.Context, req *httpRequest, key [sha256.Size]byte, p auth.Principal) (*httpSession, string) {
	m.bearerMu.Lock()
	defer m.bearerMu.Unlock()
	if hs, ok := m.bearers.Get(key); ok {
		if hs.reuse(time.Now(), p.Username) {
			return hs, ""
		}
		m.bearers.Remove(key)
	}
	hs, cause := m.loginSession(ctx, req, p, "http-bearer", false, true)
	if hs == nil {
		return nil, cause
	}
	m.bearers.Add(key, hs)
	return hs, ""
}

// bearerFailed audits a refused bearer request, waits LoginFailDelay and
// answers 401 invalid_token.
func (m *HTTPManager) bearerFailed(ctx context.Context, req *httpRequest, reason string) {
	ref := newRef()
	m.g.stats.loginsFailed.Add(1)
	m.auditHTTP(ctx, slog.LevelWarn, "auth.login",
		slog.String("result", "failure"),
		slog.String("door", "http-bearer"),
		slog.String("remote", req.remote.String()),
		slog.String("method", methodBearer),
		slog.String("reason", clipLog(reason)),
		slog.String("ref", ref),
	)
	if d := m.g.cfg.LoginFailDelay; d > 0 {
		t := time.NewTimer(d)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
		}
	}
	body := m.errorPage(http.StatusUnauthorized, "Unauthorized", "")
	h := req.w.Header()
	m.setCommon(h, rawman.ContentTypeHTML, len(body))
	h["WWW-Authenticate"] = []string{`Bearer error="invalid_token"`}
	req.w.WriteHeader(http.StatusUnauthorized)
	_, _ = req.w.Write(body)
}
