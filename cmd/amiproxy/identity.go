package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/amiproxy/amiproxy/auth"
	"github.com/amiproxy/amiproxy/policy"
	"github.com/amiproxy/amiproxy/proxy"
)

// OIDC is the oidc section: an OpenID Connect provider whose ID tokens
// are accepted (as HTTP bearer tokens, as a JWT Login secret, and from the
// browser sign-in at /login). Off when Issuer is empty.
type OIDC struct {
	// Issuer is the provider's issuer URL (https, or http on loopback),
	// e.g. "https://dex.example.com/dex".
	Issuer string `yaml:"issuer"`
	// ClientID is the proxy's client at the provider; ID tokens must name
	// it (or one of Audiences, or CLIClientID) in "aud".
	ClientID string `yaml:"client_id"`
	// ClientSecret is the confidential client's secret, needed for the
	// browser sign-in ({env: NAME} or {file: PATH}).
	ClientSecret SecretSource `yaml:"client_secret"`
	// CLIClientID is a public client at the provider, with the device
	// authorization grant enabled, for `amiproxy login`. Its tokens are
	// accepted as well. Empty: no CLI sign-in.
	CLIClientID string `yaml:"cli_client_id"`
	// Audiences are further accepted "aud" values.
	Audiences []string `yaml:"audiences"`
	// Scopes asked for at sign-in. Default openid, profile, email, groups.
	Scopes []string `yaml:"scopes"`
	// UsernameClaim and GroupsClaim name the claims that become the AMI
	// username and the groups. Defaults preferred_username and groups.
	UsernameClaim string `yaml:"username_claim"`
	GroupsClaim   string `yaml:"groups_claim"`
	// PublicURL is the external URL of the listener serving /login (the
	// HTTPS manager listener), e.g. "https://ami.example.com:8089". The
	// provider must accept PublicURL + "/login/callback" as a redirect
	// URI. Empty: no browser sign-in.
	PublicURL string `yaml:"public_url"`
	// CAFile is a PEM file of extra CAs to trust for the provider.
	CAFile string `yaml:"ca_file"`
	// SessionTTL caps a browser session on the sign-in page (it also ends
	// with the ID token). Default 8h.
	SessionTTL Duration `yaml:"session_ttl"`
}

// Enabled reports whether OIDC is configured.
func (o OIDC) Enabled() bool { return o.Issuer != "" }

// Web reports whether the browser sign-in is configured.
func (o OIDC) Web() bool { return o.Enabled() && o.PublicURL != "" }

// Minted is the minted section: short-lived AMI secrets that signed-in
// users mint for clients that only know Username/Secret. Off when
// StateDir is empty.
type Minted struct {
	// StateDir keeps the minted secrets (encrypted) across restarts. It
	// is created with mode 0700 when missing.
	StateDir string `yaml:"state_dir"`
	// Key is the 32-byte key that encrypts the secrets at rest, base64 or
	// hex ({env: NAME} or {file: PATH}). Empty: a key file "minted.key" is
	// created (mode 0600) in StateDir on first start, which protects
	// backups of the store but not a stolen StateDir.
	Key SecretSource `yaml:"key"`
	// DefaultTTL is the lifetime of a secret minted without one. Default 8h.
	DefaultTTL Duration `yaml:"default_ttl"`
	// MaxTTL is the longest lifetime a user may ask for. Default 24h.
	MaxTTL Duration `yaml:"max_ttl"`
	// MaxPerUser bounds the live secrets per user. Default 20, at most
	// 1000.
	MaxPerUser int `yaml:"max_per_user"`
	// AdminGroups are the identity-provider groups whose members may
	// revoke any user's secrets and sessions (amiproxy revoke).
	AdminGroups []string `yaml:"admin_groups"`
	// Store shares the secrets and revocations between replicas (Redis)
	// instead of keeping them in StateDir (fleet.go).
	Store MintedStore `yaml:"store"`
}

// Enabled reports whether minting is configured.
func (m Minted) Enabled() bool { return m.StateDir != "" || m.Store.Shared() }

// validateIdentity reports every problem of the oidc and minted sections.
func (f *File) validateIdentity() []error {
	var errs []error
	add := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	o, m := f.OIDC, f.Minted
	if !o.Enabled() {
		if o.ClientID != "" || !o.ClientSecret.IsZero() || o.CLIClientID != "" || o.PublicURL != "" {
			add("oidc: issuer is required when other oidc fields are set")
		}
	} else {
		u, err := url.Parse(o.Issuer)
		switch {
		case err != nil || u.Host == "" || u.RawQuery != "" || u.Fragment != "":
			add("oidc.issuer: %q is not an absolute URL", o.Issuer)
		case u.Scheme == "http" && !loopbackHost(u.Hostname()):
			add("oidc.issuer: %q: http is allowed only on a loopback host; use https", o.Issuer)
		case u.Scheme != "http" && u.Scheme != "https":
			add("oidc.issuer: %q: scheme must be https", o.Issuer)
		}
		if o.ClientID == "" {
			add("oidc.client_id: required")
		}
		for i, a := range o.Audiences {
			if a == "" {
				add("oidc.audiences[%d]: empty", i)
			}
		}
		if err := o.ClientSecret.check("oidc.client_secret"); err != nil {
			errs = append(errs, err)
		}
		if o.ClientSecret.Value != "" {
			add("oidc.client_secret: give it as env or file, not inline value")
		}
	}
	if o.PublicURL != "" {
		u, err := url.Parse(o.PublicURL)
		switch {
		case err != nil || u.Host == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" || u.User != nil:
			add("oidc.public_url: %q: want scheme://host[:port] only", o.PublicURL)
		case u.Scheme == "https":
			if !f.Listen.HTTPS.Set() {
				add("oidc.public_url: https needs listen.https (the sign-in page is served there)")
			}
		case u.Scheme == "http":
			if !loopbackHost(u.Hostname()) {
				add("oidc.public_url: %q: http is allowed only on a loopback host (cookies and secrets would cross the network in clear text)", o.PublicURL)
			}
			if !f.Listen.HTTP.Set() {
				add("oidc.public_url: http needs listen.http")
			}
		default:
			add("oidc.public_url: %q: scheme must be https", o.PublicURL)
		}
		if o.ClientSecret.IsZero() {
			add("oidc.client_secret: required for the browser sign-in (oidc.public_url)")
		}
		if !m.Enabled() {
			add("oidc.public_url: the sign-in page mints secrets and needs the minted section (minted.state_dir)")
		}
	}
	if m.Enabled() {
		if !o.Enabled() {
			add("minted: needs the oidc section (secrets are minted by users signed in with OIDC)")
		}
		if err := m.Key.check("minted.key"); err != nil {
			errs = append(errs, err)
		}
		if m.Key.Value != "" {
			add("minted.key: give it as env or file, not inline value")
		}
		if m.MaxPerUser < 0 || m.MaxPerUser > auth.MaxMaxPerUser {
			add("minted.max_per_user: %d outside 0-%d", m.MaxPerUser, auth.MaxMaxPerUser)
		}
		def, maxTTL := m.ttls()
		if def > maxTTL {
			add("minted.default_ttl %s is longer than minted.max_ttl %s", def, maxTTL)
		}
		if def < time.Minute {
			add("minted.default_ttl %s: want at least 1m", def)
		}
		for i, g := range m.AdminGroups {
			if strings.TrimSpace(g) == "" {
				add("minted.admin_groups[%d]: empty", i)
			}
		}
		errs = append(errs, m.validateStore()...)
	} else if m.DefaultTTL != 0 || m.MaxTTL != 0 || !m.Key.IsZero() || m.MaxPerUser != 0 || len(m.AdminGroups) > 0 {
		add("minted: state_dir is required when other minted fields are set")
	}
	return errs
}

// Defaults of the minted section.
const (
	defaultMintTTL    = 8 * time.Hour
	defaultMintMaxTTL = 24 * time.Hour
)

// ttls returns the default and maximum lifetimes with defaults applied.
func (m Minted) ttls() (def, maxTTL time.Duration) {
	def, maxTTL = time.Duration(m.DefaultTTL), time.Duration(m.MaxTTL)
	if maxTTL == 0 {
		maxTTL = defaultMintMaxTTL
		if def > maxTTL {
			maxTTL = def
		}
	}
	if def == 0 {
		def = min(defaultMintTTL, maxTTL)
	}
	return def, maxTTL
}

func loopbackHost(h string) bool {
	if h == "localhost" {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

// identitySecrets are the oidc and minted secrets, resolved by build.
type identitySecrets struct {
	clientSecret auth.Secret
	key          []byte // nil: the key file in minted.state_dir
	roots        *x509.CertPool
	// minted.store.redis (fleet.go)
	redisPassword auth.Secret
	redisRoots    *x509.CertPool
}

// mintKeyFile is the key file created in minted.state_dir when
// minted.key is not given.
const mintKeyFile = "minted.key"

// buildIdentitySecrets resolves the secrets of the oidc and minted
// sections. It creates nothing.
func (f *File) buildIdentitySecrets(env func(string) (string, bool), readFile func(string) ([]byte, error)) (identitySecrets, []error) {
	var out identitySecrets
	var errs []error
	if f.OIDC.Enabled() && !f.OIDC.ClientSecret.IsZero() {
		s, err := f.OIDC.ClientSecret.resolve(env, readFile)
		if err != nil {
			errs = append(errs, fmt.Errorf("oidc.client_secret: %w", err))
		}
		out.clientSecret = auth.Secret(s)
	}
	if f.OIDC.CAFile != "" {
		pool, err := x509.SystemCertPool()
		if err != nil || pool == nil {
			pool = x509.NewCertPool()
		}
		pem, err := readFile(f.OIDC.CAFile)
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("oidc.ca_file: %w", err))
		case !pool.AppendCertsFromPEM(pem):
			errs = append(errs, fmt.Errorf("oidc.ca_file %s: no PEM certificate", f.OIDC.CAFile))
		}
		out.roots = pool
	}
	if m := f.Minted; m.Store.Shared() {
		var rerrs []error
		out.redisPassword, out.redisRoots, rerrs = m.Store.Redis.secrets(env, readFile)
		errs = append(errs, rerrs...)
	}
	if m := f.Minted; m.Enabled() {
		switch {
		case m.Key.File != "":
			k, err := auth.LoadKey(m.Key.File)
			if err != nil {
				errs = append(errs, fmt.Errorf("minted.key: %w", err))
			}
			out.key = k
		case !m.Key.IsZero():
			v, err := m.Key.resolve(env, readFile)
			if err == nil {
				out.key, err = auth.ParseKey(v)
			}
			if err != nil {
				errs = append(errs, fmt.Errorf("minted.key: %w", err))
			}
		default:
			// The key file in state_dir must, if it exists, be usable.
			path := filepath.Join(m.StateDir, mintKeyFile)
			if _, err := os.Stat(path); err == nil {
				if _, err := auth.LoadKey(path); err != nil {
					errs = append(errs, fmt.Errorf("minted: %w", err))
				}
			}
		}
	}
	return out, errs
}

// identity holds the runtime objects of the oidc and minted sections: the
// Gateway's Authenticator (a Chain over local accounts, OIDC and minted
// secrets) and the sign-in Web handler.
type identity struct {
	chain  *auth.Chain
	oidc   *auth.OIDC   // nil: oidc off
	store  mintedStore  // nil: minted off (file or Redis, fleet.go)
	minter *auth.Minter // nil: minted off
	// web serves sign-in and the API once the provider's endpoints are
	// known (nil until then, or always without oidc and minted); makeWeb
	// builds it, retried by serveWeb at most every webRetry.
	web     atomic.Pointer[auth.Web]
	makeWeb func() (*auth.Web, error)
	webMu   sync.Mutex // serializes makeWeb; guards webTry
	webTry  time.Time
	logger  *slog.Logger
	gw      atomic.Pointer[proxy.Gateway]
	engine  atomic.Pointer[policy.Engine]
}

// newIdentity builds the identity objects. It creates minted.state_dir and
// its key file when missing.
func newIdentity(ctx context.Context, f *File, rc *runtimeConfig, local *auth.Local, logger, audit *slog.Logger) (*identity, error) {
	id := &identity{}
	id.engine.Store(rc.engine)
	sec := rc.identity
	if f.OIDC.Enabled() {
		var hc *http.Client
		if sec.roots != nil {
			tr := http.DefaultTransport.(*http.Transport).Clone()
			tr.TLSClientConfig = &tls.Config{RootCAs: sec.roots, MinVersion: tls.VersionTLS12}
			hc = &http.Client{Transport: tr, Timeout: 10 * time.Second}
		}
		auds := append([]string(nil), f.OIDC.Audiences...)
		if f.OIDC.CLIClientID != "" {
			auds = append(auds, f.OIDC.CLIClientID)
		}
		o, err := auth.NewOIDC(ctx, auth.OIDCConfig{
			Issuer: f.OIDC.Issuer, ClientID: f.OIDC.ClientID, Audiences: auds,
			UsernameClaim: f.OIDC.UsernameClaim, GroupsClaim: f.OIDC.GroupsClaim, HTTPClient: hc,
		})
		if err != nil {
			return nil, fmt.Errorf("oidc: %w", err)
		}
		if err := o.DiscoveryError(); err != nil {
			// Not fatal: verification retries discovery.
			logger.Warn("oidc discovery failed; retrying on use", "issuer", f.OIDC.Issuer, "err", err)
		}
		id.oidc = o
	}
	if m := f.Minted; m.Enabled() {
		key := sec.key
		if key == nil {
			var err error
			if key, err = stateKey(m.StateDir); err != nil {
				return nil, err
			}
		}
		store, err := openMintedStore(ctx, f, sec, logger)
		if err != nil {
			return nil, fmt.Errorf("minted: %w", err)
		}
		def, maxTTL := m.ttls()
		mlog := logger.With("part", "minted")
		minter, err := auth.NewMinter(auth.MinterConfig{Store: store, Key: key, DefaultTTL: def, MaxTTL: maxTTL,
			MaxPerUser: m.MaxPerUser, ReportError: func(err error) { mlog.Error("minted store", "err", err) }})
		clear(key)
		if err != nil {
			_ = store.Close()
			return nil, fmt.Errorf("minted: %w", err)
		}
		id.store, id.minter = store, minter
		startWatch(store, minter)
	}
	cc := auth.ChainConfig{Local: local, OIDC: id.oidc}
	if id.minter != nil {
		cc.Minted = id.minter
	}
	id.chain = auth.NewChain(cc)
	id.logger = logger
	if id.oidc != nil && id.minter != nil {
		id.makeWeb = func() (*auth.Web, error) { return id.newWeb(f, sec, logger, audit) }
		w, err := id.makeWeb()
		switch {
		case errors.Is(err, errNoEndpoints):
			// The provider is down: sign-in starts working once it answers
			// (serveWeb retries); AMI with local accounts works meanwhile.
			logger.Warn("sign-in unavailable until the identity provider answers", "err", err)
		case err != nil:
			id.Close()
			return nil, err
		default:
			id.web.Store(w)
		}
	}
	return id, nil
}

// errNoEndpoints: discovery has not succeeded, the endpoints are unknown.
var errNoEndpoints = errors.New("identity provider endpoints unknown")

// webRetry spaces attempts to build the sign-in handler while the
// identity provider is unreachable.
const webRetry = 2 * time.Second

// currentWeb returns the sign-in handler, building it first if the
// provider was unreachable until now. Nil means still unreachable.
func (id *identity) currentWeb(ctx context.Context) *auth.Web {
	if w := id.web.Load(); w != nil {
		return w
	}
	if !id.webMu.TryLock() {
		return nil // another request is trying right now
	}
	defer id.webMu.Unlock()
	if w := id.web.Load(); w != nil {
		return w
	}
	if time.Since(id.webTry) < webRetry {
		return nil
	}
	id.webTry = time.Now()
	_ = id.oidc.Discover(ctx)
	w, err := id.makeWeb()
	if err != nil {
		id.logger.Warn("sign-in still unavailable", "err", err)
		return nil
	}
	id.web.Store(w)
	id.logger.Info("sign-in available: identity provider reached")
	return w
}

// serveWeb serves the sign-in routes, or 503 while the provider is
// unreachable.
func (id *identity) serveWeb(rw http.ResponseWriter, r *http.Request) {
	if w := id.currentWeb(r.Context()); w != nil {
		w.ServeHTTP(rw, r)
		return
	}
	rw.Header().Set("Retry-After", "5")
	rw.Header().Set("Cache-Control", "no-store")
	http.Error(rw, "sign-in is unavailable: the identity provider cannot be reached; try again shortly", http.StatusServiceUnavailable)
}

// stateKey loads the key file in dir, creating dir and the file first
// when missing.
func stateKey(dir string) ([]byte, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("minted: %w", err)
	}
	path := filepath.Join(dir, mintKeyFile)
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		if err := auth.GenerateKeyFile(path); err != nil {
			return nil, fmt.Errorf("minted: %w", err)
		}
	}
	k, err := auth.LoadKey(path)
	if err != nil {
		return nil, fmt.Errorf("minted: %w", err)
	}
	return k, nil
}

// newWeb builds the sign-in handler. Without oidc.public_url it serves
// only the JSON API (CLI login and revoke).
func (id *identity) newWeb(f *File, sec identitySecrets, logger, audit *slog.Logger) (*auth.Web, error) {
	ep, err := id.oidc.Endpoint()
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errNoEndpoints, err)
	}
	base := f.OIDC.PublicURL // empty: JSON API only
	def, _ := f.Minted.ttls()
	cli := auth.WebCLI{Issuer: f.OIDC.Issuer, ClientID: f.OIDC.CLIClientID, Scopes: f.OIDC.Scopes,
		DeviceAuthURL: ep.DeviceAuthURL, TokenURL: ep.TokenURL}
	if len(cli.Scopes) == 0 {
		cli.Scopes = []string{"openid", "profile", "email", "groups"}
	}
	if ep.DeviceAuthURL == "" {
		cli = auth.WebCLI{}
	}
	cfg := auth.WebConfig{
		BaseURL: base, ClientID: f.OIDC.ClientID, ClientSecret: sec.clientSecret,
		AuthURL: ep.AuthURL, TokenURL: ep.TokenURL, Scopes: f.OIDC.Scopes,
		VerifyIDToken: id.oidc.VerifyIDToken, VerifyBearer: id.oidc.Verify,
		Minter: id.minter, DefaultTTL: def, Describe: id.describe,
		AdminGroups: f.Minted.AdminGroups, RevokeUser: id.revokeUser, CLI: cli,
		SessionTTL: time.Duration(f.OIDC.SessionTTL),
		Logger:     logger.With("part", "web"), Audit: audit,
	}
	if sec.roots != nil {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.TLSClientConfig = &tls.Config{RootCAs: sec.roots, MinVersion: tls.VersionTLS12}
		cfg.HTTPClient = &http.Client{Transport: tr, Timeout: 10 * time.Second}
	}
	w, err := auth.NewWeb(cfg)
	if err != nil {
		return nil, fmt.Errorf("oidc: sign-in: %w", err)
	}
	return w, nil
}

// describe is what the sign-in page shows of the policy: p's roles and PBXs.
func (id *identity) describe(p auth.Principal) (roles, pbxs []string) {
	e := id.engine.Load()
	if e == nil {
		return nil, nil
	}
	s := e.SubjectFor(policy.Identity{Username: p.Username, Groups: p.Groups, Claims: p.Claims})
	return s.Roles(), s.PBXs()
}

// revokeUser revokes username's minted secrets (and, by the revocation
// time, every credential it authenticated with before) and ends its AMI
// sessions at once.
func (id *identity) revokeUser(ctx context.Context, username string) (secrets, sessions int, err error) {
	if id.minter != nil {
		if secrets, err = id.minter.RevokeUser(ctx, username); err != nil {
			return 0, 0, err
		}
	}
	if gw := id.gw.Load(); gw != nil {
		sessions = gw.EndUserSessions(username, proxy.ReasonRevoked)
	}
	return secrets, sessions, nil
}

// authenticator is the Gateway's Authenticator (and Validator).
func (id *identity) authenticator() proxy.Authenticator { return id.chain }

// attach connects the identity to the Gateway: revocations end sessions
// and minted-secret changes revalidate live sessions at once.
func (id *identity) attach(gw *proxy.Gateway) {
	id.gw.Store(gw)
	if id.minter != nil {
		id.minter.OnChange(gw.Revalidate)
	}
}

// setPolicy tells the sign-in page about a reloaded policy.
func (id *identity) setPolicy(e *policy.Engine) { id.engine.Store(e) }

// mount returns h with the sign-in routes in front of it.
func (id *identity) mount(h http.Handler) http.Handler {
	if id.makeWeb == nil {
		return h
	}
	mux := http.NewServeMux()
	for _, p := range (*auth.Web).Paths(nil) {
		mux.HandleFunc(p, id.serveWeb)
	}
	mux.Handle("/", h)
	return mux
}

// Close releases the sign-in sessions, the Minter and its store.
func (id *identity) Close() {
	if w := id.web.Load(); w != nil {
		_ = w.Close()
	}
	if id.minter != nil {
		_ = id.minter.Close()
	}
	if id.store != nil {
		_ = id.store.Close()
	}
}
