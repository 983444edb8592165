package auth

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"golang.org/x/oauth2"
	"golang.org/x/time/rate"
)

// Defaults of WebConfig.
const (
	DefaultWebSessionTTL   = 8 * time.Hour
	DefaultWebMaxSessions  = 10000
	DefaultWebLoginTimeout = 10 * time.Minute
)

// maxWebBody bounds every request body Web reads (forms and JSON).
const maxWebBody = 16 << 10

// WebCLI is what Web publishes at /api/v1/login-config so that
// `amiproxy login` can run the OAuth 2.0 device authorization grant
// against the identity provider. All of it is public information.
type WebCLI struct {
	Issuer        string   `json:"issuer"`
	ClientID      string   `json:"client_id"`
	Scopes        []string `json:"scopes"`
	DeviceAuthURL string   `json:"device_authorization_endpoint"`
	TokenURL      string   `json:"token_endpoint"`
}

// WebConfig configures Web. BaseURL, ClientID, AuthURL, TokenURL,
// VerifyIDToken and Minter are required.
type WebConfig struct {
	// BaseURL is the external URL of the listener Web is mounted on, e.g.
	// "https://ami.example.com:8089". The callback is BaseURL +
	// "/login/callback" and must be registered at the identity provider.
	// With an https BaseURL every cookie is Secure and "__Host-" prefixed.
	// Empty: no browser sign-in (the page routes answer 404), only the
	// JSON API.
	BaseURL string
	// ClientID and ClientSecret identify the proxy at the identity
	// provider (a confidential client for the authorization code flow).
	ClientID     string
	ClientSecret Secret
	// AuthURL and TokenURL are the provider's endpoints (from discovery).
	AuthURL, TokenURL string
	// Scopes asked for at sign-in. Default: openid, profile, email, groups.
	Scopes []string
	// VerifyIDToken checks a raw ID token from the token endpoint,
	// including its nonce, and maps it to a Principal.
	VerifyIDToken func(ctx context.Context, raw, nonce string) (Principal, error)
	// VerifyBearer checks an ID token presented to the JSON API
	// ("Authorization: Bearer"). Nil disables the bearer API.
	VerifyBearer func(ctx context.Context, raw string) (Principal, error)
	// Minter issues, lists and revokes the minted AMI secrets. Every
	// request of a web session also asks its Validate whether the
	// session's Principal still holds (a user revocation ends it).
	Minter *Minter
	// DefaultTTL is the lifetime the mint form proposes (the Minter's
	// default). Default DefaultMintTTL.
	DefaultTTL time.Duration
	// Describe returns what the page shows of the policy for p: its roles
	// and the PBXs it may address. Nil shows none. (auth does not import
	// policy; cmd supplies this.)
	Describe func(p Principal) (roles, pbxs []string)
	// AdminGroups are the groups whose members may revoke any user's
	// secrets and sessions (POST /api/v1/admin/revoke). Empty: nobody.
	AdminGroups []string
	// RevokeUser revokes every minted secret of username and ends the
	// AMI sessions it has open, returning how many of each. Required for
	// the admin endpoint; nil disables it. Web also ends the user's web
	// sessions.
	RevokeUser func(ctx context.Context, username string) (secrets, sessions int, err error)
	// CLI is published at /api/v1/login-config. A zero CLI.ClientID
	// answers 404 there (no CLI sign-in).
	CLI WebCLI
	// SessionTTL caps a web session; a session also ends when its ID
	// token expires. Default DefaultWebSessionTTL.
	SessionTTL time.Duration
	// MaxSessions bounds web sessions and pending sign-ins each (least
	// recently used dropped first). Default DefaultWebMaxSessions.
	MaxSessions int
	// LoginTimeout is how long a sign-in may take at the provider.
	// Default DefaultWebLoginTimeout.
	LoginTimeout time.Duration
	// HTTPClient talks to the token endpoint. Nil: a client with a 10 s
	// timeout.
	HTTPClient *http.Client
	// Logger gets operational logs, Audit one line per sign-in, mint and
	// revocation. Nil discards. Neither ever gets a secret, code or token.
	Logger, Audit *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Web serves browser sign-in (OpenID Connect authorization code flow with
// PKCE S256, state and nonce), a small page that shows who the user is and
// lets them mint, list and revoke short-lived AMI secrets, and a JSON API
// for `amiproxy login` and `amiproxy revoke`.
//
// Routes (mount Handler at "/" of a mux, or each of Paths):
//
//	GET  /login                    start sign-in (redirect to the provider)
//	GET  /login/callback           the provider's redirect back
//	GET  /me                       the page (or a "Sign in" link)
//	POST /me/secrets               mint; the secret is shown once
//	POST /me/secrets/{id}/revoke   revoke one of one's own secrets
//	POST /logout                   end the web session
//	GET  /api/v1/login-config      public CLI sign-in parameters
//	GET|POST /api/v1/secrets       list / mint (Bearer ID token)
//	DELETE /api/v1/secrets/{id}    revoke one of one's own secrets
//	POST /api/v1/admin/revoke      {"user": U}: revoke U's secrets and sessions
//
// State: a pending sign-in (state, nonce, PKCE verifier) lives server-side
// under a random id held in a short-lived HttpOnly SameSite=Lax cookie, and
// is used at most once. A web session has a fresh random 256-bit id (no
// fixation) in an HttpOnly SameSite=Strict cookie and ends at the earliest
// of SessionTTL, the ID token's expiry, logout or an admin revocation. Both
// tables are bounded LRUs in memory: a restart signs everyone out of the
// page (minted secrets survive; the Minter keeps them).
//
// Every POST of the page needs the session's CSRF token and, when the
// browser sends one, a same-origin Origin header. Pages are served with
// Cache-Control: no-store and a strict Content-Security-Policy.
//
// The zero value is not usable; create one with NewWeb. A Web is safe for
// concurrent use. It starts no goroutines; Close drops its sessions.
type Web struct {
	cfg      WebConfig
	oauth    oauth2.Config
	origin   string // scheme://host[:port] of BaseURL
	secure   bool
	now      func() time.Time
	log      *slog.Logger
	audit    *slog.Logger
	pending  *lru.Cache[string, *pendingLogin]
	sessions *lru.Cache[string, *webSession]
	starts   *lru.Cache[netip.Prefix, *rate.Limiter] // /login per client address
	startsMu sync.Mutex
	mux      *http.ServeMux
	close    sync.Once
}

type pendingLogin struct {
	state, nonce, verifier string
	expires                time.Time
	used                   bool
	mu                     sync.Mutex
}

type webSession struct {
	p       Principal
	csrf    string
	expires time.Time
}

// NewWeb checks cfg and builds a Web.
func NewWeb(cfg WebConfig) (*Web, error) {
	var errs []error
	u, err := url.Parse(cfg.BaseURL)
	switch {
	case cfg.BaseURL == "":
		u = &url.URL{}
	case err != nil:
		errs = append(errs, fmt.Errorf("base url: %w", err))
	case u.Scheme != "https" && u.Scheme != "http" || u.Host == "":
		errs = append(errs, fmt.Errorf("base url %q: want https://host[:port]", cfg.BaseURL))
	case u.Path != "" && u.Path != "/" || u.RawQuery != "" || u.Fragment != "" || u.User != nil:
		errs = append(errs, fmt.Errorf("base url %q: want scheme, host and port only", cfg.BaseURL))
	}
	if cfg.BaseURL != "" && cfg.ClientID == "" {
		errs = append(errs, errors.New("client id is required"))
	}
	if cfg.BaseURL != "" && (cfg.AuthURL == "" || cfg.TokenURL == "") {
		errs = append(errs, errors.New("the provider's authorization and token endpoints are required"))
	}
	if cfg.VerifyIDToken == nil {
		errs = append(errs, errors.New("VerifyIDToken is required"))
	}
	if cfg.Minter == nil {
		errs = append(errs, errors.New("Minter is required"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("auth: web: %w", err)
	}
	if cfg.SessionTTL <= 0 {
		cfg.SessionTTL = DefaultWebSessionTTL
	}
	if cfg.MaxSessions <= 0 {
		cfg.MaxSessions = DefaultWebMaxSessions
	}
	if cfg.DefaultTTL <= 0 {
		cfg.DefaultTTL = DefaultMintTTL
	}
	if cfg.LoginTimeout <= 0 {
		cfg.LoginTimeout = DefaultWebLoginTimeout
	}
	if len(cfg.Scopes) == 0 {
		cfg.Scopes = []string{"openid", "profile", "email", "groups"}
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{Timeout: 10 * time.Second}
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	w := &Web{
		cfg:    cfg,
		origin: u.Scheme + "://" + u.Host,
		secure: u.Scheme == "https",
		now:    cfg.Now,
		log:    loggerOr(cfg.Logger),
		audit:  loggerOr(cfg.Audit),
		oauth: oauth2.Config{
			ClientID:     cfg.ClientID,
			ClientSecret: cfg.ClientSecret.Reveal(),
			Endpoint:     oauth2.Endpoint{AuthURL: cfg.AuthURL, TokenURL: cfg.TokenURL},
			RedirectURL:  u.Scheme + "://" + u.Host + "/login/callback",
			Scopes:       cfg.Scopes,
		},
	}
	// Plain LRUs (no cleanup goroutine): entries carry their expiry and
	// are checked on every use; the size bounds the memory.
	if w.pending, err = lru.New[string, *pendingLogin](cfg.MaxSessions); err != nil {
		return nil, fmt.Errorf("auth: web: %w", err)
	}
	if w.sessions, err = lru.New[string, *webSession](cfg.MaxSessions); err != nil {
		return nil, fmt.Errorf("auth: web: %w", err)
	}
	if w.starts, err = lru.New[netip.Prefix, *rate.Limiter](cfg.MaxSessions); err != nil {
		return nil, fmt.Errorf("auth: web: %w", err)
	}
	mux := http.NewServeMux()
	if cfg.BaseURL != "" {
		mux.HandleFunc("GET /login", w.handleLogin)
		mux.HandleFunc("GET /login/callback", w.handleCallback)
		mux.HandleFunc("GET /me", w.handleMe)
		mux.HandleFunc("POST /me/secrets", w.handleMint)
		mux.HandleFunc("POST /me/secrets/{id}/revoke", w.handleRevoke)
		mux.HandleFunc("POST /logout", w.handleLogout)
	}
	mux.HandleFunc("GET /api/v1/login-config", w.apiLoginConfig)
	mux.HandleFunc("GET /api/v1/secrets", w.apiList)
	mux.HandleFunc("POST /api/v1/secrets", w.apiMint)
	mux.HandleFunc("DELETE /api/v1/secrets/{id}", w.apiRevoke)
	mux.HandleFunc("POST /api/v1/admin/revoke", w.apiAdminRevoke)
	w.mux = mux
	return w, nil
}

func loggerOr(l *slog.Logger) *slog.Logger {
	if l != nil {
		return l
	}
	return slog.New(slog.DiscardHandler)
}

// Paths are the path patterns Web serves, for mounting on a shared mux:
// each ending in "/" is a prefix. They do not depend on w; a nil *Web
// answers the same.
func (w *Web) Paths() []string {
	return []string{"/login", "/login/", "/me", "/me/", "/logout", "/api/v1/"}
}

// ServeHTTP serves Web's routes and 404 for anything else.
func (w *Web) ServeHTTP(rw http.ResponseWriter, r *http.Request) {
	h := rw.Header()
	h.Set("Cache-Control", "no-store")
	h.Set("Pragma", "no-cache")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	// same-origin, not no-referrer: under no-referrer browsers send
	// "Origin: null" with our own form POSTs, defeating the Origin check;
	// same-origin still sends nothing to any other site (the IdP).
	h.Set("Referrer-Policy", "same-origin")
	h.Set("Content-Security-Policy", "default-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'")
	if w.secure {
		h.Set("Strict-Transport-Security", "max-age=31536000")
	}
	w.mux.ServeHTTP(rw, r)
}

// Close forgets every pending sign-in and web session. It is idempotent;
// a closed Web must not serve.
func (w *Web) Close() error {
	w.close.Do(func() {
		w.pending.Purge()
		w.sessions.Purge()
	})
	return nil
}

// EndUser ends the web sessions of username (case-insensitive) and
// returns how many it ended.
func (w *Web) EndUser(username string) int {
	n := 0
	for _, id := range w.sessions.Keys() {
		if s, ok := w.sessions.Peek(id); ok && strings.EqualFold(s.p.Username, username) {
			if w.sessions.Remove(id) {
				n++
			}
		}
	}
	return n
}

// Cookie names; "__Host-" needs Secure, Path=/ and no Domain.
func (w *Web) cookieName(base string) string {
	if w.secure {
		return "__Host-" + base
	}
	return base
}

const (
	loginCookie   = "amiproxy_login"
	sessionCookie = "amiproxy_session"
)

func (w *Web) setCookie(rw http.ResponseWriter, base, value string, maxAge time.Duration, same http.SameSite) {
	c := &http.Cookie{Name: w.cookieName(base), Value: value, Path: "/", HttpOnly: true, Secure: w.secure, SameSite: same}
	if maxAge < 0 {
		c.MaxAge = -1
	} else {
		c.MaxAge = int(maxAge / time.Second)
	}
	http.SetCookie(rw, c)
}

// randomID returns 32 random bytes, base64url without padding.
func randomID() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b) // never fails (crypto/rand documents it)
	return base64.RawURLEncoding.EncodeToString(b)
}

// Sign-in starts allowed per client address (IPv4, or IPv6 /64): a
// sustained rate and a burst, so that one client cannot flush the table of
// pending sign-ins of everyone else.
const (
	loginStartRate  = rate.Limit(1) // per second
	loginStartBurst = 30
)

// allowStart reports whether r's client may start another sign-in.
func (w *Web) allowStart(r *http.Request) bool {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return true // not a TCP peer (tests, unix sockets): no address to limit
	}
	p := AddrPrefix(ap.Addr())
	w.startsMu.Lock()
	defer w.startsMu.Unlock()
	l, ok := w.starts.Get(p)
	if !ok {
		l = rate.NewLimiter(loginStartRate, loginStartBurst)
		w.starts.Add(p, l)
	}
	return l.Allow()
}

func (w *Web) handleLogin(rw http.ResponseWriter, r *http.Request) {
	if !w.allowStart(r) {
		rw.Header().Set("Retry-After", "30")
		w.renderError(rw, http.StatusTooManyRequests, "Too many sign-in attempts from your address. Wait a little and try again.")
		return
	}
	pl := &pendingLogin{state: randomID(), nonce: randomID(), verifier: oauth2.GenerateVerifier(),
		expires: w.now().Add(w.cfg.LoginTimeout)}
	id := randomID()
	w.pending.Add(id, pl)
	w.setCookie(rw, loginCookie, id, w.cfg.LoginTimeout, http.SameSiteLaxMode)
	u := w.oauth.AuthCodeURL(pl.state, oauth2.S256ChallengeOption(pl.verifier), oauth2.SetAuthURLParam("nonce", pl.nonce))
	http.Redirect(rw, r, u, http.StatusFound)
}

// loginFailure answers a failed callback: fixed text and a reference for
// the user, the cause under the same reference in the log.
func (w *Web) loginFailure(rw http.ResponseWriter, r *http.Request, status int, public string, cause error) {
	ref := randomID()[:8]
	w.audit.LogAttrs(r.Context(), slog.LevelWarn, "web.login_failed", slog.String("ref", ref),
		slog.String("remote", r.RemoteAddr), slog.String("err", cause.Error()))
	w.renderError(rw, status, public+" (ref "+ref+")")
}

func (w *Web) handleCallback(rw http.ResponseWriter, r *http.Request) {
	c, err := r.Cookie(w.cookieName(loginCookie))
	if err != nil {
		w.loginFailure(rw, r, http.StatusBadRequest, "Sign-in failed: no sign-in in progress in this browser. Start again.", errors.New("no login cookie"))
		return
	}
	w.setCookie(rw, loginCookie, "", -1, http.SameSiteLaxMode)
	pl, ok := w.pending.Get(c.Value)
	if !ok {
		w.loginFailure(rw, r, http.StatusBadRequest, "Sign-in failed: it expired or was already used. Start again.", errors.New("unknown or expired login cookie"))
		return
	}
	// One use only, whatever the outcome.
	w.pending.Remove(c.Value)
	if !w.now().Before(pl.expires) {
		w.loginFailure(rw, r, http.StatusBadRequest, "Sign-in failed: it took too long. Start again.", errors.New("login state expired"))
		return
	}
	pl.mu.Lock()
	used := pl.used
	pl.used = true
	pl.mu.Unlock()
	if used {
		w.loginFailure(rw, r, http.StatusBadRequest, "Sign-in failed: it was already used. Start again.", errors.New("login state replayed"))
		return
	}
	q := r.URL.Query()
	if subtle.ConstantTimeCompare([]byte(q.Get("state")), []byte(pl.state)) != 1 {
		w.loginFailure(rw, r, http.StatusBadRequest, "Sign-in failed: state mismatch. Start again.", errors.New("state mismatch"))
		return
	}
	if e := q.Get("error"); e != "" {
		w.loginFailure(rw, r, http.StatusForbidden, "Sign-in was refused by the identity provider.", fmt.Errorf("provider error %.64q", e))
		return
	}
	code := q.Get("code")
	if code == "" {
		w.loginFailure(rw, r, http.StatusBadRequest, "Sign-in failed: no authorization code.", errors.New("no code"))
		return
	}
	ctx := context.WithValue(r.Context(), oauth2.HTTPClient, w.cfg.HTTPClient)
	tok, err := w.oauth.Exchange(ctx, code, oauth2.VerifierOption(pl.verifier))
	if err != nil {
		w.loginFailure(rw, r, http.StatusBadGateway, "Sign-in failed at the identity provider.", fmt.Errorf("code exchange: %w", redactOAuthErr(err)))
		return
	}
	raw, _ := tok.Extra("id_token").(string)
	if raw == "" {
		w.loginFailure(rw, r, http.StatusBadGateway, "Sign-in failed: the identity provider sent no ID token.", errors.New("no id_token in token response"))
		return
	}
	p, err := w.cfg.VerifyIDToken(r.Context(), raw, pl.nonce)
	if err != nil {
		w.loginFailure(rw, r, http.StatusForbidden, "Sign-in failed: the ID token was not accepted.", fmt.Errorf("id token: %w", err))
		return
	}
	now := w.now()
	exp := now.Add(w.cfg.SessionTTL)
	if !p.Expires.IsZero() && p.Expires.Before(exp) {
		exp = p.Expires
	}
	if !exp.After(now) {
		w.loginFailure(rw, r, http.StatusForbidden, "Sign-in failed: the ID token has expired.", errors.New("id token expired"))
		return
	}
	// A fresh session id at every sign-in: no fixation. Any session the
	// browser held before is ended.
	if old, err := r.Cookie(w.cookieName(sessionCookie)); err == nil {
		w.sessions.Remove(old.Value)
	}
	sid := randomID()
	w.sessions.Add(sid, &webSession{p: p, csrf: randomID(), expires: exp})
	w.setCookie(rw, sessionCookie, sid, exp.Sub(now), http.SameSiteStrictMode)
	w.audit.LogAttrs(r.Context(), slog.LevelInfo, "web.login", slog.String("principal", p.Subject),
		slog.String("user", p.Username), slog.String("remote", r.RemoteAddr), slog.Time("expires", exp))
	// Not a redirect: this navigation came from the identity provider, a
	// cross-site chain in which browsers withhold SameSite=Strict cookies,
	// so a redirect to /me would arrive without the new session. A page
	// that moves on by itself starts a same-site navigation.
	w.renderContinue(rw)
}

// redactOAuthErr keeps an oauth2 error's status and error code but drops
// the response body, which can echo request data.
func redactOAuthErr(err error) error {
	var re *oauth2.RetrieveError
	if errors.As(err, &re) {
		status := ""
		if re.Response != nil {
			status = re.Response.Status
		}
		return fmt.Errorf("token endpoint answered %s: %.64q", status, re.ErrorCode)
	}
	return err
}

// session returns the live web session of r, if any.
func (w *Web) session(r *http.Request) (string, *webSession, bool) {
	c, err := r.Cookie(w.cookieName(sessionCookie))
	if err != nil {
		return "", nil, false
	}
	s, ok := w.sessions.Get(c.Value)
	if !ok {
		return "", nil, false
	}
	if !w.now().Before(s.expires) || w.cfg.Minter.Validate(r.Context(), s.p) != nil {
		w.sessions.Remove(c.Value)
		return "", nil, false
	}
	return c.Value, s, true
}

// checkPost verifies a page POST: a live session, a same-origin request
// and the session's CSRF token. It reads the (bounded) form.
func (w *Web) checkPost(rw http.ResponseWriter, r *http.Request) (string, *webSession, bool) {
	sid, s, ok := w.session(r)
	if !ok {
		w.renderError(rw, http.StatusUnauthorized, "Your session has ended. Sign in again.")
		return "", nil, false
	}
	if o := r.Header.Get("Origin"); o != "" && o != w.origin {
		w.renderError(rw, http.StatusForbidden, "Cross-origin request refused.")
		return "", nil, false
	}
	if sfs := r.Header.Get("Sec-Fetch-Site"); sfs != "" && sfs != "same-origin" && sfs != "none" {
		w.renderError(rw, http.StatusForbidden, "Cross-site request refused.")
		return "", nil, false
	}
	r.Body = http.MaxBytesReader(rw, r.Body, maxWebBody)
	if err := r.ParseForm(); err != nil {
		w.renderError(rw, http.StatusBadRequest, "Bad form.")
		return "", nil, false
	}
	if subtle.ConstantTimeCompare([]byte(r.PostForm.Get("csrf")), []byte(s.csrf)) != 1 {
		w.renderError(rw, http.StatusForbidden, "Stale or forged form. Reload the page and try again.")
		return "", nil, false
	}
	return sid, s, true
}

func (w *Web) handleMe(rw http.ResponseWriter, r *http.Request) {
	_, s, ok := w.session(r)
	if !ok {
		w.render(rw, http.StatusOK, pageData{})
		return
	}
	w.render(rw, http.StatusOK, w.pageFor(r.Context(), s))
}

func (w *Web) pageFor(ctx context.Context, s *webSession) pageData {
	d := pageData{SignedIn: true, User: s.p.Username, Subject: s.p.Subject, Groups: s.p.Groups,
		CSRF: s.csrf, SessionEnds: s.expires.UTC().Format(time.RFC3339),
		DefaultTTL: w.cfg.DefaultTTL.String()}
	if w.cfg.Describe != nil {
		d.Roles, d.PBXs = w.cfg.Describe(s.p)
	}
	for _, m := range w.listFor(ctx, s.p) {
		d.Secrets = append(d.Secrets, m)
	}
	return d
}

func (w *Web) handleMint(rw http.ResponseWriter, r *http.Request) {
	_, s, ok := w.checkPost(rw, r)
	if !ok {
		return
	}
	var ttl time.Duration
	if v := strings.TrimSpace(r.PostForm.Get("ttl")); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			w.renderError(rw, http.StatusBadRequest, "Lifetime must be a duration such as 8h or 30m.")
			return
		}
		ttl = d
	}
	label := r.PostForm.Get("label")
	res, err := w.mint(r.Context(), s.p, ttl, label, "web")
	if err != nil {
		w.renderError(rw, http.StatusBadRequest, "Could not mint a secret: "+publicMintError(err))
		return
	}
	d := w.pageFor(r.Context(), s)
	d.New = &res
	w.render(rw, http.StatusOK, d)
}

func (w *Web) handleRevoke(rw http.ResponseWriter, r *http.Request) {
	_, s, ok := w.checkPost(rw, r)
	if !ok {
		return
	}
	if err := w.revokeOwn(r.Context(), s.p, r.PathValue("id")); err != nil {
		w.renderError(rw, http.StatusNotFound, "No such secret.")
		return
	}
	http.Redirect(rw, r, "/me", http.StatusSeeOther)
}

func (w *Web) handleLogout(rw http.ResponseWriter, r *http.Request) {
	sid, s, ok := w.checkPost(rw, r)
	if !ok {
		return
	}
	w.sessions.Remove(sid)
	w.setCookie(rw, sessionCookie, "", -1, http.SameSiteStrictMode)
	w.audit.LogAttrs(r.Context(), slog.LevelInfo, "web.logout", slog.String("principal", s.p.Subject))
	http.Redirect(rw, r, "/me", http.StatusSeeOther)
}

// --- JSON API ---

// apiError is the JSON error body.
type apiError struct {
	Error string `json:"error"`
}

func writeJSON(rw http.ResponseWriter, status int, v any) {
	rw.Header().Set("Content-Type", "application/json")
	rw.WriteHeader(status)
	_ = json.NewEncoder(rw).Encode(v)
}

// bearer authenticates an API request by its ID token.
func (w *Web) bearer(rw http.ResponseWriter, r *http.Request) (Principal, bool) {
	if w.cfg.VerifyBearer == nil {
		writeJSON(rw, http.StatusNotFound, apiError{"bearer API disabled"})
		return Principal{}, false
	}
	h := r.Header.Get("Authorization")
	raw, ok := strings.CutPrefix(h, "Bearer ")
	if !ok || raw == "" {
		rw.Header().Set("WWW-Authenticate", `Bearer realm="amiproxy"`)
		writeJSON(rw, http.StatusUnauthorized, apiError{"missing bearer token"})
		return Principal{}, false
	}
	p, err := w.cfg.VerifyBearer(r.Context(), strings.TrimSpace(raw))
	if err != nil {
		ref := randomID()[:8]
		w.audit.LogAttrs(r.Context(), slog.LevelWarn, "api.auth_failed", slog.String("ref", ref),
			slog.String("remote", r.RemoteAddr), slog.String("err", err.Error()))
		rw.Header().Set("WWW-Authenticate", `Bearer realm="amiproxy", error="invalid_token"`)
		writeJSON(rw, http.StatusUnauthorized, apiError{"token not accepted (ref " + ref + ")"})
		return Principal{}, false
	}
	// A bearer token may have been issued long before it is shown here:
	// date the identity by the token's iat, so that a user revocation
	// also stops tokens issued before it from minting new secrets.
	if iat, ok := issuedAt(p.Claims); ok && iat.Before(p.AuthTime) {
		p.AuthTime = iat
	}
	if err := w.cfg.Minter.Validate(r.Context(), p); err != nil {
		w.audit.LogAttrs(r.Context(), slog.LevelWarn, "api.auth_failed", slog.String("principal", p.Subject),
			slog.String("remote", r.RemoteAddr), slog.String("err", err.Error()))
		writeJSON(rw, http.StatusUnauthorized, apiError{"token revoked; sign in again"})
		return Principal{}, false
	}
	return p, true
}

// issuedAt reads the "iat" claim (a JSON number of seconds).
func issuedAt(claims map[string]any) (time.Time, bool) {
	var secs float64
	switch v := claims["iat"].(type) {
	case json.Number:
		f, err := v.Float64()
		if err != nil {
			return time.Time{}, false
		}
		secs = f
	case float64:
		secs = v
	case int64:
		secs = float64(v)
	default:
		return time.Time{}, false
	}
	if secs <= 0 || secs > 1<<40 {
		return time.Time{}, false
	}
	return time.Unix(int64(secs), 0), true
}

func (w *Web) apiLoginConfig(rw http.ResponseWriter, _ *http.Request) {
	if w.cfg.CLI.ClientID == "" || w.cfg.VerifyBearer == nil {
		writeJSON(rw, http.StatusNotFound, apiError{"CLI sign-in is not configured"})
		return
	}
	writeJSON(rw, http.StatusOK, w.cfg.CLI)
}

// MintRequest is the body of POST /api/v1/secrets.
type MintRequest struct {
	TTL   string `json:"ttl,omitempty"` // Go duration; empty: the default
	Label string `json:"label,omitempty"`
}

func (w *Web) apiMint(rw http.ResponseWriter, r *http.Request) {
	p, ok := w.bearer(rw, r)
	if !ok {
		return
	}
	var req MintRequest
	dec := json.NewDecoder(http.MaxBytesReader(rw, r.Body, maxWebBody))
	dec.DisallowUnknownFields()
	// An empty body (io.EOF) takes every default.
	if err := dec.Decode(&req); err != nil && !errors.Is(err, io.EOF) {
		writeJSON(rw, http.StatusBadRequest, apiError{"body: want {\"ttl\": \"8h\", \"label\": \"x\"}"})
		return
	}
	var ttl time.Duration
	if req.TTL != "" {
		d, err := time.ParseDuration(req.TTL)
		if err != nil || d <= 0 {
			writeJSON(rw, http.StatusBadRequest, apiError{"ttl: want a positive duration such as 8h"})
			return
		}
		ttl = d
	}
	res, err := w.mint(r.Context(), p, ttl, req.Label, "api")
	if err != nil {
		writeJSON(rw, http.StatusBadRequest, apiError{publicMintError(err)})
		return
	}
	writeJSON(rw, http.StatusCreated, res)
}

func (w *Web) apiList(rw http.ResponseWriter, r *http.Request) {
	p, ok := w.bearer(rw, r)
	if !ok {
		return
	}
	writeJSON(rw, http.StatusOK, struct {
		Secrets []SecretView `json:"secrets"`
	}{w.listFor(r.Context(), p)})
}

func (w *Web) apiRevoke(rw http.ResponseWriter, r *http.Request) {
	p, ok := w.bearer(rw, r)
	if !ok {
		return
	}
	if err := w.revokeOwn(r.Context(), p, r.PathValue("id")); err != nil {
		writeJSON(rw, http.StatusNotFound, apiError{"no such secret"})
		return
	}
	writeJSON(rw, http.StatusOK, struct {
		Revoked string `json:"revoked"`
	}{r.PathValue("id")})
}

// RevokeRequest is the body of POST /api/v1/admin/revoke.
type RevokeRequest struct {
	User string `json:"user"`
}

// RevokeResult is the answer of POST /api/v1/admin/revoke.
type RevokeResult struct {
	User        string `json:"user"`
	Secrets     int    `json:"secrets_revoked"`
	AMISessions int    `json:"ami_sessions_ended"`
	WebSessions int    `json:"web_sessions_ended"`
}

func (w *Web) apiAdminRevoke(rw http.ResponseWriter, r *http.Request) {
	p, ok := w.bearer(rw, r)
	if !ok {
		return
	}
	if w.cfg.RevokeUser == nil || !slices.ContainsFunc(p.Groups, func(g string) bool { return slices.Contains(w.cfg.AdminGroups, g) }) {
		w.audit.LogAttrs(r.Context(), slog.LevelWarn, "admin.revoke_denied", slog.String("principal", p.Subject))
		writeJSON(rw, http.StatusForbidden, apiError{"not an administrator"})
		return
	}
	var req RevokeRequest
	dec := json.NewDecoder(http.MaxBytesReader(rw, r.Body, maxWebBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil || strings.TrimSpace(req.User) == "" {
		writeJSON(rw, http.StatusBadRequest, apiError{"body: want {\"user\": \"name\"}"})
		return
	}
	if err := checkUsername(req.User); err != nil || len(req.User) > maxUsernameLen {
		writeJSON(rw, http.StatusBadRequest, apiError{"user: not a valid username"})
		return
	}
	secrets, sessions, err := w.cfg.RevokeUser(r.Context(), req.User)
	if err != nil {
		ref := randomID()[:8]
		w.log.Error("admin revoke failed", "ref", ref, "user", req.User, "err", err)
		writeJSON(rw, http.StatusInternalServerError, apiError{"revocation failed (ref " + ref + ")"})
		return
	}
	res := RevokeResult{User: req.User, Secrets: secrets, AMISessions: sessions, WebSessions: w.EndUser(req.User)}
	w.audit.LogAttrs(r.Context(), slog.LevelInfo, "admin.revoke", slog.String("principal", p.Subject),
		slog.String("user", req.User), slog.Int("secrets", res.Secrets), slog.Int("ami_sessions", res.AMISessions),
		slog.Int("web_sessions", res.WebSessions))
	writeJSON(rw, http.StatusOK, res)
}
