package auth_test

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/hex"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/amiproxy/amiproxy/auth"
	"github.com/amiproxy/amiproxy/internal/dextest"
)

// syncBuffer collects log output from concurrent handlers.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// webLab is a Web on an httptest TLS server, signed in through a real Dex.
type webLab struct {
	t      *testing.T
	dex    *dextest.Dex
	srv    *httptest.Server
	web    *auth.Web
	minter *auth.Minter
	oidc   *auth.OIDC
	logs   *syncBuffer
	// revoked records RevokeUser calls.
	mu      sync.Mutex
	revoked []string
}

func newWebLab(t *testing.T) *webLab {
	t.Helper()
	l := &webLab{t: t, logs: &syncBuffer{}}
	var h http.Handler = http.NotFoundHandler()
	var hmu sync.RWMutex
	l.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hmu.RLock()
		defer hmu.RUnlock()
		h.ServeHTTP(w, r)
	}))
	l.srv.StartTLS()
	t.Cleanup(l.srv.Close)
	l.dex = dextest.Start(t, dextest.Options{RedirectURIs: []string{l.srv.URL + "/login/callback"}})

	ctx := context.Background()
	o, err := auth.NewOIDC(ctx, auth.OIDCConfig{Issuer: l.dex.Issuer(), ClientID: l.dex.ClientID, Audiences: []string{l.dex.CLIClientID}})
	if err != nil {
		t.Fatal(err)
	}
	if err := o.DiscoveryError(); err != nil {
		t.Fatal(err)
	}
	l.oidc = o
	store, err := auth.OpenFileStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	key := bytes.Repeat([]byte{7}, auth.MintKeySize)
	m, err := auth.NewMinter(auth.MinterConfig{Store: store, Key: key, MaxTTL: 24 * time.Hour, PollInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	l.minter = m
	ep, err := o.Endpoint()
	if err != nil {
		t.Fatal(err)
	}
	logger := slog.New(slog.NewTextHandler(l.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	w, err := auth.NewWeb(auth.WebConfig{
		BaseURL: l.srv.URL, ClientID: l.dex.ClientID, ClientSecret: auth.Secret(l.dex.ClientSecret),
		AuthURL: ep.AuthURL, TokenURL: ep.TokenURL,
		VerifyIDToken: o.VerifyIDToken, VerifyBearer: o.Verify, Minter: m,
		Describe: func(p auth.Principal) ([]string, []string) {
			return []string{"role-of-" + p.Username}, []string{"east", "west"}
		},
		AdminGroups: []string{"ami-admins"},
		RevokeUser: func(ctx context.Context, u string) (int, int, error) {
			l.mu.Lock()
			l.revoked = append(l.revoked, u)
			l.mu.Unlock()
			n, err := m.RevokeUser(ctx, u)
			return n, 0, err
		},
		CLI:    auth.WebCLI{Issuer: l.dex.Issuer(), ClientID: l.dex.CLIClientID, Scopes: dextest.DefaultScopes, DeviceAuthURL: ep.DeviceAuthURL, TokenURL: ep.TokenURL},
		Logger: logger, Audit: logger,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close() })
	l.web = w
	hmu.Lock()
	h = w
	hmu.Unlock()
	return l
}

// browser is an HTTP client with a cookie jar trusting the test server;
// with stopAtCallback it does not follow the redirect to /login/callback.
func (l *webLab) browser(stopAtCallback bool) *http.Client {
	jar, _ := cookiejar.New(nil)
	c := l.srv.Client()
	c = &http.Client{Transport: c.Transport, Jar: jar, Timeout: 30 * time.Second}
	if stopAtCallback {
		c.CheckRedirect = func(req *http.Request, via []*http.Request) error {
			if req.URL.Path == "/login/callback" {
				return http.ErrUseLastResponse
			}
			return nil
		}
	}
	return c
}

// signIn runs the code flow in c up to the redirect back to the proxy and
// returns that callback URL (not yet visited).
func (l *webLab) callbackURL(c *http.Client, user dextest.User) *url.URL {
	l.t.Helper()
	ctx := context.Background()
	resp, err := c.Get(l.srv.URL + "/login")
	if err != nil {
		l.t.Fatal(err)
	}
	out, err := dextest.SubmitLogin(ctx, c, resp, user.Email, user.Password)
	if err != nil {
		l.t.Fatal(err)
	}
	defer out.Body.Close()
	loc, err := out.Location()
	if err != nil || loc.Path != "/login/callback" {
		l.t.Fatalf("Dex did not redirect to the callback: %s %v %v", out.Status, loc, err)
	}
	return loc
}

// signIn signs c in as user and returns the page.
func (l *webLab) signIn(c *http.Client, user dextest.User) string {
	l.t.Helper()
	resp, err := c.Get(l.srv.URL + "/login")
	if err != nil {
		l.t.Fatal(err)
	}
	out, err := dextest.SubmitLogin(context.Background(), c, resp, user.Email, user.Password)
	if err != nil {
		l.t.Fatal(err)
	}
	body := readAll(l.t, out)
	if out.Request.URL.Path != "/login/callback" || out.StatusCode != http.StatusOK || !strings.Contains(body, `<meta http-equiv="refresh" content="0;url=/me">`) {
		l.t.Fatalf("sign-in ended at %s (%s), want the callback's continue page: %.500s", out.Request.URL.Redacted(), out.Status, body)
	}
	resp, err = c.Get(l.srv.URL + "/me")
	if err != nil {
		l.t.Fatal(err)
	}
	return readAll(l.t, resp)
}

func readAll(t *testing.T, resp *http.Response) string {
	t.Helper()
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

var (
	csrfRe   = regexp.MustCompile(`name="csrf" value="([^"]+)"`)
	secretRe = regexp.MustCompile(`<code id="new-secret">([^<]+)</code>`)
	userRe   = regexp.MustCompile(`<code id="new-username">([^<]+)</code>`)
	idRe     = regexp.MustCompile(`action="/me/secrets/([a-z2-7]+)/revoke"`)
)

func field(t *testing.T, re *regexp.Regexp, page string) string {
	t.Helper()
	m := re.FindStringSubmatch(page)
	if m == nil {
		t.Fatalf("page has no match for %s: %.1500s", re, page)
	}
	return m[1]
}

// post submits a form of the page with an Origin header.
func (l *webLab) post(c *http.Client, path string, form url.Values, origin string) *http.Response {
	l.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, l.srv.URL+path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if origin != "" {
		req.Header.Set("Origin", origin)
	}
	resp, err := c.Do(req)
	if err != nil {
		l.t.Fatal(err)
	}
	return resp
}

// TestWebSignInMintRevoke is the whole browser path with Go's client: the
// page before sign-in, the code flow with Dex, the page's identity, the
// cookies' attributes, a mint whose secret works for plain and MD5 logins,
// CSRF and Origin checks, revocation, logout.
func TestWebSignInMintRevoke(t *testing.T) {
	l := newWebLab(t)
	c := l.browser(false)

	resp, err := c.Get(l.srv.URL + "/me")
	if err != nil {
		t.Fatal(err)
	}
	body := readAll(t, resp)
	if !strings.Contains(body, `id="signin" href="/login"`) {
		t.Fatalf("/me before sign-in has no sign-in link: %s", body)
	}
	for k, want := range map[string]string{
		"Cache-Control":           "no-store",
		"X-Frame-Options":         "DENY",
		"Referrer-Policy":         "same-origin",
		"Content-Security-Policy": "default-src 'self'",
		"X-Content-Type-Options":  "nosniff",
	} {
		if got := resp.Header.Get(k); !strings.Contains(got, want) {
			t.Errorf("header %s = %q, want it to contain %q", k, got, want)
		}
	}

	// Session fixation: a session id planted before sign-in is not kept.
	u, _ := url.Parse(l.srv.URL)
	c.Jar.SetCookies(u, []*http.Cookie{{Name: "__Host-amiproxy_session", Value: "planted", Path: "/", Secure: true}})
	page := l.signIn(c, dextest.Admin)
	for _, want := range []string{`<dd id="user">admin</dd>`, "role-of-admin", "east, west", "ami-admins, ops"} {
		if !strings.Contains(page, want) {
			t.Errorf("page lacks %q: %s", want, page)
		}
	}
	var sid string
	for _, ck := range c.Jar.Cookies(u) {
		if ck.Name == "__Host-amiproxy_session" {
			sid = ck.Value
		}
	}
	if sid == "" || sid == "planted" || len(sid) < 43 {
		t.Fatalf("session cookie after sign-in = %q, want a fresh 256-bit id", sid)
	}

	csrf := field(t, csrfRe, page)
	// CSRF: no token, a wrong token, a foreign Origin: all refused.
	for name, tc := range map[string]struct {
		form   url.Values
		origin string
	}{
		"no token":       {url.Values{"ttl": {"1h"}}, l.srv.URL},
		"wrong token":    {url.Values{"ttl": {"1h"}, "csrf": {"x" + csrf[1:]}}, l.srv.URL},
		"foreign origin": {url.Values{"ttl": {"1h"}, "csrf": {csrf}}, "https://evil.example"},
		"null origin":    {url.Values{"ttl": {"1h"}, "csrf": {csrf}}, "null"},
	} {
		resp := l.post(c, "/me/secrets", tc.form, tc.origin)
		readAll(t, resp)
		if resp.StatusCode != http.StatusForbidden {
			t.Errorf("mint with %s: status %s, want 403", name, resp.Status)
		}
	}
	if infos, _ := l.minter.List(context.Background(), "admin"); len(infos) != 0 {
		t.Fatalf("refused mints left %d secrets", len(infos))
	}

	resp = l.post(c, "/me/secrets", url.Values{"ttl": {"2h"}, "label": {"softphone"}, "csrf": {csrf}}, l.srv.URL)
	page = readAll(t, resp)
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Cache-Control") != "no-store" {
		t.Fatalf("mint: %s, Cache-Control %q: %s", resp.Status, resp.Header.Get("Cache-Control"), page)
	}
	secret := field(t, secretRe, page)
	username := field(t, userRe, page)
	if username != "admin" || !strings.HasPrefix(secret, auth.SecretPrefix) {
		t.Fatalf("minted %q / %q, want admin / %s…", username, secret, auth.SecretPrefix)
	}
	id := field(t, idRe, page)

	// The secret works for a plain Login and for Challenge/MD5.
	ctx := context.Background()
	p, err := l.minter.Authenticate(ctx, auth.Credentials{Username: "admin", Secret: auth.Secret(secret)})
	if err != nil || p.SecretID != id || p.Username != "admin" {
		t.Fatalf("plain login with the minted secret: %+v, %v", p, err)
	}
	sum := md5.Sum([]byte("12345" + secret))
	if _, err := l.minter.Authenticate(ctx, auth.Credentials{Username: "admin", AuthType: "MD5", Challenge: "12345", Key: hex.EncodeToString(sum[:])}); err != nil {
		t.Fatalf("MD5 login with the minted secret: %v", err)
	}
	// Reloading the page never shows the secret again.
	resp, _ = c.Get(l.srv.URL + "/me")
	if again := readAll(t, resp); strings.Contains(again, secret) || !strings.Contains(again, "softphone") {
		t.Fatalf("/me after mint: secret shown again or label missing: %s", again)
	}

	// Revoke it from the page.
	resp = l.post(c, "/me/secrets/"+id+"/revoke", url.Values{"csrf": {csrf}}, l.srv.URL)
	readAll(t, resp)
	if resp.StatusCode != http.StatusOK || resp.Request.URL.Path != "/me" {
		t.Fatalf("revoke: %s at %s", resp.Status, resp.Request.URL)
	}
	if _, err := l.minter.Authenticate(ctx, auth.Credentials{Username: "admin", Secret: auth.Secret(secret)}); err == nil {
		t.Fatal("revoked secret still authenticates")
	}

	// Logout ends the session on the server, not just the cookie.
	resp = l.post(c, "/logout", url.Values{"csrf": {csrf}}, l.srv.URL)
	if body := readAll(t, resp); !strings.Contains(body, `id="signin"`) {
		t.Fatalf("after logout: %s", body)
	}
	jar2, _ := cookiejar.New(nil)
	jar2.SetCookies(u, []*http.Cookie{{Name: "__Host-amiproxy_session", Value: sid, Path: "/", Secure: true}})
	c2 := &http.Client{Transport: c.Transport, Jar: jar2}
	resp, _ = c2.Get(l.srv.URL + "/me")
	if body := readAll(t, resp); !strings.Contains(body, `id="signin"`) {
		t.Fatal("the session id still works after logout")
	}
	l.checkLogs("secret.revoke", secret, sid, csrf)
}

// TestWebCookies checks the attributes of the sign-in and session cookies.
func TestWebCookies(t *testing.T) {
	l := newWebLab(t)
	// /login sets the short-lived sign-in cookie and redirects to Dex.
	noFollow := &http.Client{Transport: l.srv.Client().Transport,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	first, err := noFollow.Get(l.srv.URL + "/login")
	if err != nil {
		t.Fatal(err)
	}
	readAll(t, first)
	authURL, _ := first.Location()
	q := authURL.Query()
	if first.StatusCode != http.StatusFound || q.Get("code_challenge_method") != "S256" || len(q.Get("code_challenge")) != 43 ||
		len(q.Get("state")) < 43 || len(q.Get("nonce")) < 43 {
		t.Fatalf("/login: %s to %s: want a redirect with S256 PKCE, state and nonce", first.Status, authURL.Redacted())
	}
	var login *http.Cookie
	for _, ck := range first.Cookies() {
		if ck.Name == "__Host-amiproxy_login" {
			login = ck
		}
	}
	if login == nil || !login.HttpOnly || !login.Secure || login.SameSite != http.SameSiteLaxMode || login.MaxAge <= 0 || login.MaxAge > 900 {
		t.Fatalf("sign-in cookie = %+v, want HttpOnly, Secure, SameSite=Lax, short-lived", login)
	}

	c := l.browser(true)
	resp, err := c.Get(l.srv.URL + "/login")
	if err != nil {
		t.Fatal(err)
	}
	out, err := dextest.SubmitLogin(context.Background(), c, resp, dextest.Operator.Email, dextest.Password)
	if err != nil {
		t.Fatal(err)
	}
	out.Body.Close()
	loc, _ := out.Location()
	resp, err = c.Get(loc.String())
	if err != nil {
		t.Fatal(err)
	}
	readAll(t, resp)
	var session *http.Cookie
	for _, ck := range resp.Cookies() {
		if ck.Name == "__Host-amiproxy_session" && ck.Value != "" {
			session = ck
		}
	}
	if session == nil {
		t.Fatal("no session cookie set by the callback")
	}
	if !session.HttpOnly || !session.Secure || session.SameSite != http.SameSiteStrictMode || session.Path != "/" || session.Domain != "" {
		t.Errorf("session cookie = %+v, want HttpOnly, Secure, SameSite=Strict, Path=/ and no Domain", session)
	}
}

// TestWebCallbackRefusals: a wrong state, a replayed callback, a tampered
// or missing sign-in cookie, and an exchange without the PKCE verifier
// are all refused.
func TestWebCallbackRefusals(t *testing.T) {
	l := newWebLab(t)
	get := func(c *http.Client, u string) (*http.Response, string) {
		t.Helper()
		resp, err := c.Get(u)
		if err != nil {
			t.Fatal(err)
		}
		return resp, readAll(t, resp)
	}
	signedIn := func(body string) bool {
		return strings.Contains(body, `id="signed-in"`) || strings.Contains(body, `<dd id="user">`)
	}

	t.Run("wrong state", func(t *testing.T) {
		c := l.browser(true)
		cb := l.callbackURL(c, dextest.Operator)
		q := cb.Query()
		q.Set("state", "forged")
		cb.RawQuery = q.Encode()
		resp, body := get(c, cb.String())
		if resp.StatusCode != http.StatusBadRequest || signedIn(body) {
			t.Fatalf("wrong state: %s: %s", resp.Status, body)
		}
	})
	t.Run("replayed callback", func(t *testing.T) {
		c := l.browser(true)
		cb := l.callbackURL(c, dextest.Operator)
		jarCopy := c.Jar.Cookies(cb)
		c.CheckRedirect = nil
		resp, body := get(c, cb.String())
		if !signedIn(body) {
			t.Fatalf("first callback did not sign in: %s: %s", resp.Status, body)
		}
		// Replay in a browser that still holds the sign-in cookie.
		jar, _ := cookiejar.New(nil)
		jar.SetCookies(cb, jarCopy)
		c2 := &http.Client{Transport: c.Transport, Jar: jar}
		resp, body = get(c2, cb.String())
		if resp.StatusCode == http.StatusOK || signedIn(body) {
			t.Fatalf("replayed callback: %s: %s", resp.Status, body)
		}
	})
	t.Run("tampered cookie", func(t *testing.T) {
		c := l.browser(true)
		cb := l.callbackURL(c, dextest.Operator)
		var cookies []*http.Cookie
		for _, ck := range c.Jar.Cookies(cb) {
			if ck.Name == "__Host-amiproxy_login" {
				flip := "A"
				if ck.Value[0] == 'A' {
					flip = "B"
				}
				ck.Value = flip + ck.Value[1:]
			}
			ck.Path, ck.Secure = "/", true
			cookies = append(cookies, ck)
		}
		jar, _ := cookiejar.New(nil)
		jar.SetCookies(cb, cookies)
		c2 := &http.Client{Transport: c.Transport, Jar: jar}
		resp, body := get(c2, cb.String())
		if resp.StatusCode != http.StatusBadRequest || signedIn(body) {
			t.Fatalf("tampered cookie: %s: %s", resp.Status, body)
		}
	})
	t.Run("no cookie", func(t *testing.T) {
		c := l.browser(true)
		cb := l.callbackURL(c, dextest.Operator)
		c2 := &http.Client{Transport: c.Transport}
		resp, body := get(c2, cb.String())
		if resp.StatusCode != http.StatusBadRequest || signedIn(body) {
			t.Fatalf("no cookie: %s: %s", resp.Status, body)
		}
	})
	t.Run("code without PKCE verifier", func(t *testing.T) {
		c := l.browser(true)
		cb := l.callbackURL(c, dextest.Operator)
		ep, _ := l.oidc.Endpoint()
		oc := oauth2.Config{ClientID: l.dex.ClientID, ClientSecret: l.dex.ClientSecret, Endpoint: ep, RedirectURL: l.srv.URL + "/login/callback"}
		if _, err := oc.Exchange(context.Background(), cb.Query().Get("code")); err == nil {
			t.Fatal("Dex exchanged the code without the PKCE verifier: the proxy sent no code challenge")
		}
	})
	l.checkLogs("web.login_failed")
}

// TestWebAPI covers the JSON API used by amiproxy login and revoke.
func TestWebAPI(t *testing.T) {
	l := newWebLab(t)
	c := l.srv.Client()
	call := func(method, path, bearer, body string, out any) int {
		t.Helper()
		req, _ := http.NewRequest(method, l.srv.URL+path, strings.NewReader(body))
		if bearer != "" {
			req.Header.Set("Authorization", "Bearer "+bearer)
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b := readAll(t, resp)
		if out != nil && resp.StatusCode/100 == 2 {
			if err := json.Unmarshal([]byte(b), out); err != nil {
				t.Fatalf("%s %s: %v: %s", method, path, err, b)
			}
		}
		return resp.StatusCode
	}
	var lc auth.WebCLI
	if code := call("GET", "/api/v1/login-config", "", "", &lc); code != 200 || lc.ClientID != dextest.CLIClientID || !strings.HasSuffix(lc.DeviceAuthURL, "/device/code") {
		t.Fatalf("login-config: %d %+v", code, lc)
	}
	if code := call("POST", "/api/v1/secrets", "", `{}`, nil); code != 401 {
		t.Fatalf("mint without a token: %d, want 401", code)
	}
	if code := call("POST", "/api/v1/secrets", "not.a.jwt", `{}`, nil); code != 401 {
		t.Fatalf("mint with a bad token: %d, want 401", code)
	}
	opTok := l.dex.PasswordToken(t, "operator", dextest.Password)
	adminTok := l.dex.PasswordToken(t, "admin", dextest.Password)
	var m auth.MintResult
	if code := call("POST", "/api/v1/secrets", opTok, `{"ttl":"30m","label":"cli"}`, &m); code != 201 || m.Username != "operator" || m.Secret == "" {
		t.Fatalf("mint: %d %+v", code, m.ID)
	}
	if d := time.Until(m.Expires); d < 25*time.Minute || d > 31*time.Minute {
		t.Fatalf("minted with ttl 30m expires in %v", d)
	}
	if code := call("POST", "/api/v1/secrets", opTok, `{"ttl":"1000h"}`, nil); code != 400 {
		t.Fatalf("mint over max_ttl: %d, want 400", code)
	}
	if code := call("POST", "/api/v1/secrets", opTok, `{"bogus":1}`, nil); code != 400 {
		t.Fatalf("mint with an unknown field: %d, want 400", code)
	}
	var list struct{ Secrets []auth.SecretView }
	if code := call("GET", "/api/v1/secrets", opTok, "", &list); code != 200 || len(list.Secrets) != 1 || list.Secrets[0].ID != m.ID {
		t.Fatalf("list: %d %+v", code, list)
	}
	// Another user cannot revoke it.
	if code := call("DELETE", "/api/v1/secrets/"+m.ID, adminTok, "", nil); code != 404 {
		t.Fatalf("admin revoking operator's secret by id: %d, want 404", code)
	}
	// A non-admin cannot use the admin endpoint.
	if code := call("POST", "/api/v1/admin/revoke", opTok, `{"user":"admin"}`, nil); code != 403 {
		t.Fatalf("operator calling admin revoke: %d, want 403", code)
	}
	var rr auth.RevokeResult
	if code := call("POST", "/api/v1/admin/revoke", adminTok, `{"user":"operator"}`, &rr); code != 200 || rr.Secrets != 1 {
		t.Fatalf("admin revoke: %d %+v", code, rr)
	}
	if _, err := l.minter.Authenticate(context.Background(), auth.Credentials{Username: "operator", Secret: auth.Secret(m.Secret)}); err == nil {
		t.Fatal("secret still works after admin revoke")
	}
	// A token from before the revocation may not mint again.
	if code := call("POST", "/api/v1/secrets", opTok, `{}`, nil); code != 401 {
		t.Fatalf("mint with a token older than the revocation: %d, want 401", code)
	}
	// Signing in again afterwards works (iat has whole seconds: a token
	// issued in the second of the revocation counts as older).
	time.Sleep(1100 * time.Millisecond)
	opTok2 := l.dex.PasswordToken(t, "operator", dextest.Password)
	if code := call("POST", "/api/v1/secrets", opTok2, `{}`, &m); code != 201 {
		t.Fatalf("mint after signing in again: %d, want 201", code)
	}
	l.checkLogs("admin.revoke", m.Secret, opTok, adminTok)
}

// checkLogs fails if any of secrets, or anything token- or code-like,
// reached the logs.
func (l *webLab) checkLogs(wantEvent string, secrets ...string) {
	l.t.Helper()
	logs := l.logs.String()
	for _, s := range secrets {
		if s != "" && strings.Contains(logs, s) {
			l.t.Errorf("a secret or token reached the log")
		}
	}
	if m := regexp.MustCompile(`eyJ[A-Za-z0-9_-]{10,}|amp_[a-z2-7]{8,}|code=[A-Za-z0-9]{10,}`).FindString(logs); m != "" {
		l.t.Errorf("log contains a token, secret or code: %.20s…", m)
	}
	if !strings.Contains(logs, wantEvent) {
		l.t.Errorf("no %s audit line", wantEvent)
	}
}

// TestWebLoginRateLimit: one address may start 30 sign-ins at once, then
// about one a second; the rest are refused with 429 and create no state.
func TestWebLoginRateLimit(t *testing.T) {
	l := newWebLab(t)
	noFollow := &http.Client{Transport: l.srv.Client().Transport,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	var found, limited int
	for range 40 {
		resp, err := noFollow.Get(l.srv.URL + "/login")
		if err != nil {
			t.Fatal(err)
		}
		readAll(t, resp)
		switch resp.StatusCode {
		case http.StatusFound:
			found++
		case http.StatusTooManyRequests:
			limited++
			if len(resp.Cookies()) != 0 {
				t.Error("a refused sign-in start set a cookie")
			}
		default:
			t.Fatalf("GET /login: %s", resp.Status)
		}
	}
	// 30 of burst, plus at most a few refilled while the loop ran.
	if found < 30 || found > 35 || limited < 5 {
		t.Fatalf("40 sign-in starts: %d redirected, %d refused; want 30-35 and the rest refused", found, limited)
	}
}
