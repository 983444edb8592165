package auth

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	jose "github.com/go-jose/go-jose/v4"
	lru "github.com/hashicorp/golang-lru/v2"
	"golang.org/x/oauth2"
)

// MethodOIDC is Principal.Method for an identity proven by an OpenID
// Connect ID token (a bearer token, a JWT sent as a Login secret, or the
// browser code flow).
const MethodOIDC = "oidc"

// OIDC defaults and limits.
const (
	DefaultUsernameClaim    = "preferred_username"
	DefaultGroupsClaim      = "groups"
	DefaultDiscoveryTimeout = 5 * time.Second
	DefaultHTTPTimeout      = 10 * time.Second
	DefaultClockSkew        = time.Minute
	DefaultOIDCCacheSize    = 4096

	// MaxTokenLen bounds a token's length before anything parses it.
	MaxTokenLen = 16 << 10

	// rediscoverInterval spaces discovery attempts while the identity
	// provider cannot be reached.
	rediscoverInterval = 10 * time.Second
	// cacheMaxAge bounds how long a verified token is served from the
	// cache, whatever its exp, so that a key withdrawn from the JWKS stops
	// being honoured within this time.
	cacheMaxAge = 5 * time.Minute
)

// defaultAlgorithms are the signature algorithms accepted when
// OIDCConfig.Algorithms is empty.
var defaultAlgorithms = []string{oidc.RS256, oidc.ES256}

// asymmetricAlgorithms are the only algorithms OIDCConfig.Algorithms may
// name: public-key signatures that go-oidc verifies against the JWKS.
// "none" and the HMAC family (HS256...) are refused: an HMAC "signature"
// keyed with the provider's public key is the classic algorithm-confusion
// forgery.
var asymmetricAlgorithms = []string{
	oidc.RS256, oidc.RS384, oidc.RS512,
	oidc.ES256, oidc.ES384, oidc.ES512,
	oidc.PS256, oidc.PS384, oidc.PS512,
	oidc.EdDSA,
}

// OIDCConfig configures an OIDC verifier. Only Issuer and ClientID are
// required; every other zero field takes the default documented on it.
type OIDCConfig struct {
	// Issuer is the provider's issuer URL, exactly as its discovery
	// document and its tokens' "iss" spell it. It must be https, or http
	// on a loopback host (127.0.0.0/8, ::1, localhost).
	Issuer string
	// ClientID is this proxy's OAuth client at the provider; tokens must
	// name it, or one of Audiences, in "aud".
	ClientID string
	// Audiences are further accepted "aud" values, for example the
	// public CLI client whose tokens are sent as bearer tokens.
	Audiences []string
	// UsernameClaim names the claim that becomes Principal.Username.
	// Default "preferred_username", which Dex emits with the "profile"
	// scope (for static users, their preferredUsername). The claim must
	// be a non-empty string without control characters.
	UsernameClaim string
	// GroupsClaim names the claim that becomes Principal.Groups: a list
	// of strings or a single string. Missing or null means no groups.
	// Default "groups" (Dex emits it with the "groups" scope).
	GroupsClaim string
	// Algorithms is the allow-list of signature algorithms. Default
	// RS256 and ES256. Only asymmetric algorithms are accepted: "none"
	// and HS256/384/512 are configuration errors.
	Algorithms []string
	// ClockSkew is the leeway for "nbf" and "iat" in the future. Default
	// one minute. "exp" gets no leeway.
	ClockSkew time.Duration
	// DiscoveryTimeout bounds one discovery request. Default 5 s.
	DiscoveryTimeout time.Duration
	// HTTPTimeout bounds every request to the provider made with the
	// default client, and is set on a copy of HTTPClient when that has
	// no Timeout. Default 10 s.
	HTTPTimeout time.Duration
	// CacheSize is the number of verified tokens kept. Default 4096;
	// negative disables the cache.
	CacheSize int
	// HTTPClient is used for discovery and key fetches; nil uses a
	// client with HTTPTimeout and http.DefaultTransport.
	HTTPClient *http.Client
	// Now is the clock for expiry checks and retry spacing. Default
	// time.Now.
	Now func() time.Time
}

// OIDC verifies OpenID Connect ID tokens issued by one provider and turns
// them into Principals.
//
// NewOIDC runs the provider's discovery once. If the provider cannot be
// reached, the OIDC is still returned, and discovery is retried by the
// next verification at most once per 10 s; until it succeeds, every
// verification fails with an error wrapping ErrAuthFailed and
// ErrUnavailable. Signing keys are fetched from the provider's jwks_uri
// on first use and again when no cached key verifies a token (a key
// rotated in at the provider), at most once per 10 s so that forged
// tokens cannot make the proxy hammer the provider. Discovery and key
// fetches run in the verifying goroutine, bounded by its context, the
// HTTP timeout and a size limit on the answer (256 KiB, 1 MiB).
//
// Verified tokens are cached by the SHA-256 of the token, never the token
// itself, for at most 5 minutes and never at or after the token's exp
// (checked on every hit). Failures are not cached.
//
// The zero value is not usable; create one with NewOIDC. An OIDC is safe
// for concurrent use, starts no goroutines and needs no Close.
type OIDC struct {
	cfg    OIDCConfig // defaults applied
	client *http.Client
	algs   []string
	cache  *lru.Cache[[sha256.Size]byte, cachedToken] // nil: disabled

	state atomic.Pointer[oidcState] // nil until discovery succeeds

	discMu   sync.Mutex // held by the one discovery attempt in progress
	lastTry  time.Time  // guarded by discMu
	lastFail error      // guarded by discMu; the last discovery failure
}

// oidcState is what a successful discovery yields.
type oidcState struct {
	endpoint oauth2.Endpoint
	verifier *oidc.IDTokenVerifier
}

type cachedToken struct {
	p     Principal // Claims and Groups never handed out, only copies
	until time.Time // min(exp, verified + cacheMaxAge)
}

// ErrUnavailable is wrapped (with ErrAuthFailed) when a token cannot be
// checked because the identity provider's discovery has not succeeded.
var ErrUnavailable = errors.New("auth: identity provider unavailable")

// Failure causes of OIDC verification, wrapped with ErrAuthFailed.
var (
	errTokenTooLong     = fmt.Errorf("oidc: token longer than %d bytes", MaxTokenLen)
	errNotJWT           = errors.New("oidc: not a JWT")
	errNoSubject        = errors.New("oidc: token has no sub claim")
	errBadAudience      = errors.New("oidc: token audience names neither the client id nor an accepted audience")
	errNotYetValid      = errors.New("oidc: token not valid yet (nbf in the future)")
	errIssuedInFuture   = errors.New("oidc: token issued in the future (iat)")
	errBadUsernameClaim = errors.New("oidc: username claim missing, not a string, empty or with control characters")
	errBadGroupsClaim   = errors.New("oidc: groups claim is neither a string nor a list of strings")
	errUsernameMismatch = errors.New("oidc: login username does not match the token's username claim")
	errTokenOnMD5       = errors.New("oidc: an MD5 login cannot carry a token")
	errNoToken          = errors.New("oidc: no token presented")
	errNonce            = errors.New("oidc: nonce missing or mismatched")
	errDiscoveryBusy    = errors.New("oidc: provider discovery in progress")
)

// NewOIDC checks cfg, applies its defaults and runs discovery once,
// bounded by cfg.DiscoveryTimeout and ctx. Only a configuration error is
// returned; an unreachable provider is retried later (see OIDC), and
// DiscoveryError reports why it failed.
func NewOIDC(ctx context.Context, cfg OIDCConfig) (*OIDC, error) {
	var errs []error
	if err := checkIssuer(cfg.Issuer); err != nil {
		errs = append(errs, err)
	}
	if cfg.ClientID == "" {
		errs = append(errs, errors.New("auth: oidc: client id is empty"))
	}
	for i, a := range cfg.Audiences {
		if a == "" {
			errs = append(errs, fmt.Errorf("auth: oidc: audiences[%d] is empty", i))
		}
	}
	algs := slices.Clone(cfg.Algorithms)
	if len(algs) == 0 {
		algs = slices.Clone(defaultAlgorithms)
	}
	for _, a := range algs {
		if !slices.Contains(asymmetricAlgorithms, a) {
			errs = append(errs, fmt.Errorf("auth: oidc: algorithm %q not allowed (want one of %s)", a, strings.Join(asymmetricAlgorithms, ", ")))
		}
	}
	if cfg.ClockSkew < 0 || cfg.DiscoveryTimeout < 0 || cfg.HTTPTimeout < 0 {
		errs = append(errs, errors.New("auth: oidc: negative clock skew or timeout"))
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	if cfg.UsernameClaim == "" {
		cfg.UsernameClaim = DefaultUsernameClaim
	}
	if cfg.GroupsClaim == "" {
		cfg.GroupsClaim = DefaultGroupsClaim
	}
	if cfg.ClockSkew == 0 {
		cfg.ClockSkew = DefaultClockSkew
	}
	if cfg.DiscoveryTimeout == 0 {
		cfg.DiscoveryTimeout = DefaultDiscoveryTimeout
	}
	if cfg.HTTPTimeout == 0 {
		cfg.HTTPTimeout = DefaultHTTPTimeout
	}
	if cfg.CacheSize == 0 {
		cfg.CacheSize = DefaultOIDCCacheSize
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	cfg.Audiences = slices.Clone(cfg.Audiences)
	cfg.Algorithms = algs

	client := &http.Client{Timeout: cfg.HTTPTimeout}
	if cfg.HTTPClient != nil {
		c := *cfg.HTTPClient
		if c.Timeout == 0 {
			c.Timeout = cfg.HTTPTimeout
		}
		client = &c
	}
	o := &OIDC{cfg: cfg, client: client, algs: algs}
	if cfg.CacheSize > 0 {
		c, err := lru.New[[sha256.Size]byte, cachedToken](cfg.CacheSize)
		if err != nil {
			return nil, fmt.Errorf("auth: oidc: token cache: %w", err)
		}
		o.cache = c
	}
	_ = o.Discover(ctx)
	return o, nil
}

// checkIssuer accepts https URLs, and http ones on a loopback host.
func checkIssuer(issuer string) error {
	if issuer == "" {
		return errors.New("auth: oidc: issuer is empty")
	}
	if err := checkProviderURL(issuer); err != nil {
		shown := issuer
		if u, perr := url.Parse(issuer); perr != nil || u.User != nil {
			shown = "(not shown: it may hold a password)"
		}
		return fmt.Errorf("auth: oidc: issuer %q: %w", shown, err)
	}
	return nil
}

// checkProviderURL accepts absolute https URLs, and http ones on a
// loopback host, without user info, query or fragment.
func checkProviderURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return errors.New("not an absolute URL without user info, query or fragment")
	}
	switch u.Scheme {
	case "https":
		return nil
	case "http":
		host := u.Hostname()
		if host == "localhost" {
			return nil
		}
		if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
			return nil
		}
		return errors.New("http is allowed only on a loopback host; use https")
	}
	return errors.New("scheme must be https")
}

// Issuer returns the configured issuer URL.
func (o *OIDC) Issuer() string { return o.cfg.Issuer }

// Discover runs the provider's discovery now, unless it already succeeded
// or another attempt is in progress, and returns the outcome. It does not
// wait for the retry interval.
func (o *OIDC) Discover(ctx context.Context) error {
	_, err := o.discover(ctx, true)
	return err
}

// DiscoveryError returns why the last discovery attempt failed, or nil
// once discovery has succeeded. It makes no request, but waits for an
// attempt in progress.
func (o *OIDC) DiscoveryError() error {
	if o.state.Load() != nil {
		return nil
	}
	o.discMu.Lock()
	defer o.discMu.Unlock()
	if o.state.Load() != nil {
		return nil
	}
	return o.lastFail
}

// discover returns the discovered state, attempting discovery when it is
// missing and (unless force) the last attempt is at least
// rediscoverInterval old. It never waits for another caller's attempt.
func (o *OIDC) discover(ctx context.Context, force bool) (*oidcState, error) {
	if s := o.state.Load(); s != nil {
		return s, nil
	}
	if !o.discMu.TryLock() {
		return nil, fmt.Errorf("%w: %w", ErrUnavailable, errDiscoveryBusy)
	}
	defer o.discMu.Unlock()
	if s := o.state.Load(); s != nil {
		return s, nil
	}
	now := o.cfg.Now()
	if !force && !o.lastTry.IsZero() && now.Sub(o.lastTry) < rediscoverInterval {
		return nil, fmt.Errorf("%w: %w (next attempt in %s)", ErrUnavailable, o.lastFail,
			(rediscoverInterval - now.Sub(o.lastTry)).Round(time.Second))
	}
	o.lastTry = now
	dctx, cancel := context.WithTimeout(ctx, o.cfg.DiscoveryTimeout)
	defer cancel()
	pc, err := fetchDiscovery(dctx, o.client, o.cfg.Issuer)
	if err != nil {
		o.lastFail = fmt.Errorf("oidc: discovery at %s: %s", o.cfg.Issuer, truncate(err.Error(), 300))
		return nil, fmt.Errorf("%w: %w", ErrUnavailable, o.lastFail)
	}
	ks := &keySet{url: pc.JWKSURL, client: o.client, now: o.cfg.Now}
	for _, a := range o.algs {
		ks.algs = append(ks.algs, jose.SignatureAlgorithm(a))
	}
	v := oidc.NewVerifier(o.cfg.Issuer, ks, &oidc.Config{
		ClientID:             o.cfg.ClientID,
		SkipClientIDCheck:    true, // checkClaims checks ClientID and Audiences
		SupportedSigningAlgs: o.algs,
		Now:                  o.cfg.Now,
	})
	ep := oauth2.Endpoint{AuthURL: pc.AuthURL, TokenURL: pc.TokenURL, DeviceAuthURL: pc.DeviceAuthURL}
	s := &oidcState{endpoint: ep, verifier: v}
	o.state.Store(s)
	o.lastFail = nil
	return s, nil
}

// Endpoint returns the provider's OAuth 2.0 endpoints for the browser
// code flow and the device flow: AuthURL, TokenURL, and DeviceAuthURL
// when discovery advertises device_authorization_endpoint ("" if not).
// It fails while discovery has not succeeded (and may attempt it, as a
// verification would).
func (o *OIDC) Endpoint() (oauth2.Endpoint, error) {
	s, err := o.discover(context.Background(), false)
	if err != nil {
		return oauth2.Endpoint{}, fmt.Errorf("auth: oidc: endpoint: %w", err)
	}
	return s.endpoint, nil
}

// Verify checks a raw ID token: its signature against the provider's
// JWKS with an allowed algorithm, issuer, audience, exp (no leeway), nbf
// and iat (ClockSkew leeway), and the username and groups claims. It
// returns the Principal: Subject "oidc:<sub>", Username and Groups from
// the configured claims, Method MethodOIDC, Expires the token's exp,
// Claims a copy of all claims (JSON numbers as json.Number) and AuthTime
// now. Every failure wraps ErrAuthFailed, ErrExpired for an expired token
// and ErrUnavailable while discovery has not succeeded; error text never
// contains the token.
func (o *OIDC) Verify(ctx context.Context, raw string) (Principal, error) {
	if len(raw) > MaxTokenLen {
		return failed(errTokenTooLong)
	}
	now := o.cfg.Now()
	var key [sha256.Size]byte
	if o.cache != nil {
		key = sha256.Sum256([]byte(raw))
		if e, ok := o.cache.Get(key); ok {
			if now.Before(e.until) {
				p := e.p.clone()
				p.AuthTime = now
				return p, nil
			}
			o.cache.Remove(key)
			if !now.Before(e.p.Expires) {
				return failed(expiredError(e.p.Expires))
			}
		}
	}
	p, err := o.verify(ctx, raw, now)
	if err != nil {
		return Principal{}, err
	}
	if o.cache != nil {
		until := now.Add(cacheMaxAge)
		if p.Expires.Before(until) {
			until = p.Expires
		}
		o.cache.Add(key, cachedToken{p: p.clone(), until: until})
	}
	return p, nil
}

// VerifyIDToken checks an ID token from the authorization-code flow as
// Verify does (without the cache) and also requires its "nonce" claim to
// equal nonce, which must not be empty.
func (o *OIDC) VerifyIDToken(ctx context.Context, raw, nonce string) (Principal, error) {
	if len(raw) > MaxTokenLen {
		return failed(errTokenTooLong)
	}
	if nonce == "" {
		return failed(errNonce)
	}
	p, err := o.verify(ctx, raw, o.cfg.Now())
	if err != nil {
		return Principal{}, err
	}
	got, _ := p.Claims["nonce"].(string)
	if subtle.ConstantTimeCompare([]byte(got), []byte(nonce)) != 1 {
		return failed(errNonce)
	}
	return p, nil
}

// Authenticate checks a token presented either as Credentials.Token (an
// HTTP bearer token; Username may be empty, and if set must match) or as
// the Secret of a plain Login, whose Username must equal the token's
// username claim (ASCII case-insensitively). An MD5 Login cannot carry a
// token and fails. See Verify for the checks.
func (o *OIDC) Authenticate(ctx context.Context, c Credentials) (Principal, error) {
	if ctx.Err() != nil {
		return failed(context.Cause(ctx))
	}
	raw := c.Token.Reveal()
	if raw == "" {
		if isMD5(c.AuthType) {
			return failed(errTokenOnMD5)
		}
		if c.Username == "" {
			return failed(errEmptyUsername)
		}
		raw = c.Secret.Reveal()
	}
	if raw == "" {
		return failed(errNoToken)
	}
	p, err := o.Verify(ctx, raw)
	if err != nil {
		return Principal{}, err
	}
	if c.Username != "" && asciiLower(c.Username) != asciiLower(p.Username) {
		return failed(errUsernameMismatch)
	}
	return p, nil
}

// verify runs the uncached verification.
func (o *OIDC) verify(ctx context.Context, raw string, now time.Time) (Principal, error) {
	if !LooksLikeJWT(raw) {
		return failed(errNotJWT)
	}
	s, err := o.discover(ctx, false)
	if err != nil {
		return failed(err)
	}
	tok, err := s.verifier.Verify(ctx, raw)
	if err != nil {
		if te, ok := errors.AsType[*oidc.TokenExpiredError](err); ok {
			return failed(expiredError(te.Expiry))
		}
		return failed(&scrubbedError{msg: scrub(err.Error(), raw), err: err})
	}
	var payload json.RawMessage
	if err := tok.Claims(&payload); err != nil {
		return failed(fmt.Errorf("oidc: claims: %s", scrub(err.Error(), raw)))
	}
	claims, err := decodeClaims(payload)
	if err != nil {
		return failed(err)
	}
	if err := o.checkClaims(tok, claims, now); err != nil {
		return failed(err)
	}
	username, groups, err := o.identity(claims)
	if err != nil {
		return failed(err)
	}
	return Principal{
		Subject:  "oidc:" + tok.Subject,
		Username: username,
		Groups:   groups,
		Method:   MethodOIDC,
		Expires:  tok.Expiry,
		Claims:   claims,
		AuthTime: now,
	}, nil
}

// checkClaims adds what go-oidc leaves to its caller or checks leniently:
// the audience (ClientID or Audiences), exp without leeway, nbf and iat
// with ClockSkew, and a subject.
func (o *OIDC) checkClaims(tok *oidc.IDToken, claims map[string]any, now time.Time) error {
	if tok.Subject == "" {
		return errNoSubject
	}
	audOK := false
	for _, a := range tok.Audience {
		if a == o.cfg.ClientID || slices.Contains(o.cfg.Audiences, a) {
			audOK = true
			break
		}
	}
	if !audOK {
		return errBadAudience
	}
	if tok.Expiry.IsZero() || !now.Before(tok.Expiry) {
		return expiredError(tok.Expiry)
	}
	if v, present := claims["nbf"]; present {
		nbf, ok := numericDate(v)
		if !ok {
			return errors.New("oidc: nbf claim is not a number")
		}
		if nbf.After(now.Add(o.cfg.ClockSkew)) {
			return errNotYetValid
		}
	}
	if !tok.IssuedAt.IsZero() && tok.IssuedAt.After(now.Add(o.cfg.ClockSkew)) {
		return errIssuedInFuture
	}
	return nil
}

// expiredError is the cause for a token expired at exp (zero: no exp).
func expiredError(exp time.Time) error {
	if exp.IsZero() {
		return fmt.Errorf("oidc: token has no exp: %w", ErrExpired)
	}
	return fmt.Errorf("oidc: token expired at %s: %w", exp.UTC().Format(time.RFC3339), ErrExpired)
}

// identity extracts the username and groups claims.
func (o *OIDC) identity(claims map[string]any) (string, []string, error) {
	username, _ := claims[o.cfg.UsernameClaim].(string)
	if username == "" || checkUsername(username) != nil || len(username) > 256 {
		return "", nil, errBadUsernameClaim
	}
	groups, err := groupsFrom(claims[o.cfg.GroupsClaim])
	if err != nil {
		return "", nil, err
	}
	return username, groups, nil
}

// groupsFrom reads a groups claim: absent or null is no groups, a string
// is one group, a list must hold only strings (empty ones are skipped).
func groupsFrom(v any) ([]string, error) {
	switch g := v.(type) {
	case nil:
		return nil, nil
	case string:
		if g == "" {
			return nil, nil
		}
		return []string{g}, nil
	case []any:
		out := make([]string, 0, len(g))
		for _, e := range g {
			s, ok := e.(string)
			if !ok {
				return nil, errBadGroupsClaim
			}
			if s != "" {
				out = append(out, s)
			}
		}
		return out, nil
	}
	return nil, errBadGroupsClaim
}

// decodeClaims decodes a JWT payload into a map, keeping numbers exact as
// json.Number.
func decodeClaims(payload []byte) (map[string]any, error) {
	dec := json.NewDecoder(bytes.NewReader(payload))
	dec.UseNumber()
	var claims map[string]any
	if err := dec.Decode(&claims); err != nil || claims == nil {
		return nil, errors.New("oidc: claims are not a JSON object")
	}
	return claims, nil
}

// numericDate reads a JWT NumericDate held as json.Number.
func numericDate(v any) (time.Time, bool) {
	n, ok := v.(json.Number)
	if !ok {
		return time.Time{}, false
	}
	f, err := n.Float64()
	if err != nil {
		return time.Time{}, false
	}
	sec := int64(f)
	return time.Unix(sec, int64((f-float64(sec))*1e9)), true
}

// clone returns p with its own Groups and a deep copy of its Claims.
func (p Principal) clone() Principal {
	p.Groups = slices.Clone(p.Groups)
	if p.Claims != nil {
		p.Claims = copyJSON(p.Claims).(map[string]any)
	}
	return p
}

// copyJSON deep-copies a value decoded by encoding/json.
func copyJSON(v any) any {
	switch x := v.(type) {
	case map[string]any:
		m := make(map[string]any, len(x))
		for k, e := range x {
			m[k] = copyJSON(e)
		}
		return m
	case []any:
		s := make([]any, len(x))
		for i, e := range x {
			s[i] = copyJSON(e)
		}
		return s
	}
	return v
}

// scrubbedError carries a library error whose text has had every part of
// the token removed; Unwrap still reaches the original for errors.Is/As.
type scrubbedError struct {
	msg string
	err error
}

func (e *scrubbedError) Error() string { return e.msg }
func (e *scrubbedError) Unwrap() error { return e.err }

// scrub removes the token and each of its dot-separated segments (longer
// than 7 bytes) from msg and bounds its length, so that a library error
// quoting its input cannot leak the token into a log.
func scrub(msg, raw string) string {
	if raw != "" {
		msg = strings.ReplaceAll(msg, raw, "<token>")
		for seg := range strings.SplitSeq(raw, ".") {
			if len(seg) > 7 {
				msg = strings.ReplaceAll(msg, seg, "<token>")
			}
		}
	}
	return truncate(msg, 300)
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
