package proxy

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/amiproxy/amiproxy/auth"
	"github.com/amiproxy/amiproxy/rawman"
)

// tokenAuth is testAuth plus bearer tokens: token -> principal. A token
// may be used as a Login Secret too (as a JWT would, through the chain).
type tokenAuth struct {
	*testAuth
	mu     sync.Mutex
	tokens map[string]auth.Principal
	calls  int
}

func newTokenAuth() *tokenAuth {
	return &tokenAuth{testAuth: newTestAuth(), tokens: map[string]auth.Principal{}}
}

func (a *tokenAuth) add(token, user string, expires time.Time) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.tokens[token] = auth.Principal{Subject: "tok:" + user, Username: user, Method: "oidc", Expires: expires}
}

func (a *tokenAuth) Authenticate(ctx context.Context, c auth.Credentials) (auth.Principal, error) {
	a.mu.Lock()
	a.calls++
	tok := c.Token.Reveal()
	if tok == "" && c.Username != "" {
		if p, ok := a.tokens[c.Secret.Reveal()]; ok && p.Username == c.Username {
			a.mu.Unlock()
			return p, nil
		}
	}
	p, ok := a.tokens[tok]
	a.mu.Unlock()
	if tok == "" {
		return a.testAuth.Authenticate(ctx, c)
	}
	if !ok {
		return auth.Principal{}, fmt.Errorf("test: unknown token: %w", auth.ErrAuthFailed)
	}
	if !p.Expires.IsZero() && !time.Now().Before(p.Expires) {
		return auth.Principal{}, fmt.Errorf("test: token expired: %w", auth.ErrAuthFailed)
	}
	return p, nil
}

func (a *tokenAuth) callCount() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.calls
}

// bearerGet is a GET with an Authorization: Bearer header.
func (h *httpEnv) bearerGet(uri, token string) rawResp {
	h.t.Helper()
	return h.do("GET " + uri + " HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer " + token + "\r\n\r\n")
}

const tokAdmin = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhZG1pbiJ9.c2lnbmF0dXJl"

func TestBearerSession(t *testing.T) {
	checkLeaks(t)
	ta := newTokenAuth()
	ta.add(tokAdmin, "admin", time.Time{})
	h := newHTTPEnv(t, envOpts{authn: ta}, HTTPConfig{})
	r := h.bearerGet("/rawman?action=ping&actionid=1", tokAdmin)
	if r.status != "HTTP/1.1 200 OK" || header(r.body, "Ping") != "Pong" {
		t.Fatalf("bearer ping = %s %q", r.status, r.body)
	}
	if r.header("Set-Cookie") != "" || r.header("Pragma") != "" {
		t.Errorf("bearer answer sets a cookie: %q", r.headers)
	}
	// Events belong to the token's session: queued between requests and
	// returned by a WaitEvent on the same token.
	h.sims["east"].Emit(rawman.New("Event", "UserEvent", "Privilege", "user,all", "UserEvent", "bearer-1"))
	var body string
	waitFor(t, "event on the bearer session", func() bool {
		body = h.bearerGet("/rawman?action=waitevent&timeout=0", tokAdmin).body
		return strings.Contains(body, "UserEvent: bearer-1")
	})
	if n := h.hm.Stats().Sessions; n != 1 {
		t.Errorf("Sessions = %d, want 1 (one per token)", n)
	}
	// /pbx/<name>/ works with a bearer too, and a cookie is ignored.
	r = h.do("GET /pbx/east/rawman?action=ping HTTP/1.1\r\nHost: x\r\nCookie: mansession_id=\"12345678\"\r\nAuthorization: bearer " + tokAdmin + "\r\n\r\n")
	if header(r.body, "Ping") != "Pong" {
		t.Errorf("bearer under /pbx/east/ = %q", r.body)
	}
	if n := h.hm.Stats().Sessions; n != 1 {
		t.Errorf("Sessions = %d, want 1", n)
	}
	// Logoff ends the token's session; the next request makes a new one.
	r = h.bearerGet("/rawman?action=logoff", tokAdmin)
	if header(r.body, "Response") != "Goodbye" {
		t.Errorf("logoff = %q", r.body)
	}
	if n := h.hm.Stats().Sessions; n != 0 {
		t.Errorf("Sessions after Logoff = %d", n)
	}
}

// Bad, unknown, malformed and expired tokens: 401 with RFC 6750's
// invalid_token and no detail; nothing reaches a session.
func TestBearerRefused(t *testing.T) {
	checkLeaks(t)
	ta := newTokenAuth()
	ta.add("expired.token.x", "admin", time.Now().Add(-time.Minute))
	ta.add("nouser.token.x", "nobody", time.Time{})
	logs := &syncBuffer{}
	h := newHTTPEnv(t, envOpts{authn: ta, logs: logs}, HTTPConfig{})
	for name, req := range map[string]string{
		"unknown":    "Authorization: Bearer unknown.token.value",
		"expired":    "Authorization: Bearer expired.token.x",
		"no role":    "Authorization: Bearer nouser.token.x",
		"empty":      "Authorization: Bearer ",
		"bad chars":  "Authorization: Bearer abc\"def",
		"two tokens": "Authorization: Bearer a.b.c\r\nAuthorization: Bearer d.e.f",
		"space":      "Authorization: Bearer a b",
	} {
		t.Run(name, func(t *testing.T) {
			r := h.do("GET /rawman?action=ping HTTP/1.1\r\nHost: x\r\n" + req + "\r\n\r\n")
			if r.status != "HTTP/1.1 401 Unauthorized" || r.header("WWW-Authenticate") != `Bearer error="invalid_token"` {
				t.Errorf("answer = %s %q", r.status, r.headers)
			}
			if strings.Contains(r.body, "Pong") || strings.Contains(r.body, "expired") || r.header("Set-Cookie") != "" {
				t.Errorf("body = %q", r.body)
			}
		})
	}
	if n := h.hm.Stats().Sessions; n != 0 {
		t.Errorf("Sessions = %d, want 0", n)
	}
	for _, secret := range []string{"unknown.token.value", "expired.token.x", "nouser.token.x"} {
		if strings.Contains(logs.String(), secret) {
			t.Errorf("log holds the token %q", secret)
		}
	}
}

// A token that expires while its session waits: the pending WaitEvent
// gets the notice (Reason expired); the token then gets 401.
func TestBearerExpiresDuringWaitEvent(t *testing.T) {
	checkLeaks(t)
	ta := newTokenAuth()
	exp := time.Now().Add(2 * time.Second)
	ta.add("short.lived.tok", "admin", exp)
	h := newHTTPEnv(t, envOpts{authn: ta}, HTTPConfig{})
	r := h.bearerGet("/rawman?action=waitevent&timeout=20", "short.lived.tok")
	if time.Now().Before(exp) {
		t.Fatalf("WaitEvent answered before the token expired: %q", r.body)
	}
	if !strings.Contains(r.body, "Event: ProxySessionEnd\r\nPrivilege: system,all\r\nReason: expired\r\nServer: east\r\n\r\n") {
		t.Errorf("WaitEvent answer = %q", r.body)
	}
	if late := time.Since(exp); late > 3*time.Second {
		t.Errorf("notice %v after expiry", late)
	}
	r = h.bearerGet("/rawman?action=ping", "short.lived.tok")
	if r.status != "HTTP/1.1 401 Unauthorized" {
		t.Errorf("expired token = %s", r.status)
	}
	if s := h.gw.Stats(); s.EndedExpired != 1 {
		t.Errorf("EndedExpired = %d", s.EndedExpired)
	}
}

// The native door takes a JWT-sized Secret in Login: a secret that fills
// the AMI line up to its limit reaches the Authenticator whole.
func TestLongSecretLogin(t *testing.T) {
	checkLeaks(t)
	ta := newTokenAuth()
	const prefix = "Secret: "
	tok := strings.Repeat("a", rawman.MaxLineLen-len(prefix)-2-1) // the line, CRLF: 1023 bytes
	ta.add(tok, "admin", time.Time{})
	e := newEnv(t, envOpts{authn: ta})
	c := e.login("admin", tok)
	if m := c.call("Action", "Ping"); header(m, "Ping") != "Pong" {
		t.Errorf("ping = %q", m)
	}
	if ta.callCount() != 1 {
		t.Errorf("Authenticate calls = %d", ta.callCount())
	}
}

// The real auth.Chain over auth.Local: a reload without the user
// (SetLocal) ends its session with Reason removed.
func TestChainRemovedLocalUser(t *testing.T) {
	checkLeaks(t)
	accts := testAccounts(t, false)
	local, err := auth.NewLocal(accts)
	if err != nil {
		t.Fatal(err)
	}
	chain := auth.NewChain(auth.ChainConfig{Local: local})
	e := newEnv(t, envOpts{authn: chain})
	lim := e.login("limited", "limitedpass")
	adm := e.login("admin", "adminpass")
	var kept []auth.Account
	for _, a := range accts {
		if a.Username != "admin" {
			kept = append(kept, a)
		}
	}
	l2, err := auth.NewLocal(kept)
	if err != nil {
		t.Fatal(err)
	}
	chain.SetLocal(l2)
	e.gw.Revalidate()
	expectNotice(t, adm, ReasonRemoved, "east")
	if m := lim.call("Action", "Ping"); header(m, "Ping") != "Pong" {
		t.Errorf("kept user: %q", m)
	}
	c := e.connect()
	if m := c.call("Action", "Login", "Username", "admin", "Secret", "adminpass"); header(m, "Message") != msgAuthFailed {
		t.Errorf("removed user's Login = %q", m)
	}
	if !errors.Is(fmt.Errorf("x: %w", auth.ErrRemoved), auth.ErrRemoved) || reasonOf(fmt.Errorf("x: %w", auth.ErrExpired)) != ReasonExpired {
		t.Error("reasonOf does not follow the auth sentinels")
	}
}

// A digest session under the real auth.Chain survives revalidation while
// its account exists (digest logins are local password logins to the
// Validator), and ends "removed" when a reload drops the account.
func TestChainDigestSession(t *testing.T) {
	checkLeaks(t)
	accts := testAccounts(t, false)
	local, err := auth.NewLocal(accts)
	if err != nil {
		t.Fatal(err)
	}
	chain := auth.NewChain(auth.ChainConfig{Local: local})
	h := newHTTPEnv(t, envOpts{authn: chain}, HTTPConfig{})
	uri := "/arawman?action=waitevent&timeout=30"
	nonce := nonceOf(h.get(uri, ""))
	done := make(chan rawResp, 1)
	go func() {
		done <- h.do("GET " + uri + " HTTP/1.1\r\nHost: x\r\nAuthorization: " +
			digestHeader("admin", "adminpass", "asterisk", nonce, "GET", uri, "00000001") + "\r\n\r\n")
	}()
	waitFor(t, "digest session", func() bool { return h.hm.Stats().Sessions == 1 })
	h.gw.Revalidate()
	h.gw.Revalidate()
	if s := h.gw.Stats(); s.EndedRemoved+s.EndedRevoked != 0 {
		t.Fatalf("digest session ended by revalidation: %+v", s)
	}
	l2, err := auth.NewLocal(accts[1:]) // without admin
	if err != nil {
		t.Fatal(err)
	}
	chain.SetLocal(l2)
	h.hm.SetDigest(NewDigestAccounts(accts[1:]))
	h.gw.Revalidate()
	r := <-done
	if !strings.Contains(r.body, "Event: ProxySessionEnd\r\nPrivilege: system,all\r\nReason: removed\r\n") {
		t.Errorf("digest WaitEvent = %q", r.body)
	}
}

func FuzzBearerToken(f *testing.F) {
	for _, s := range []string{"Bearer abc.def.ghi", "bearer a==", "Bearer ", "Bearer a b", "Basic x", "Bearer =abc", "BEARER  tok~+/=", "Bearer\ttok"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, h string) {
		r, err := http.NewRequest("GET", "http://x/rawman", nil)
		if err != nil {
			t.Skip()
		}
		r.Header.Set("Authorization", h)
		tok, ok := bearerToken(r)
		if !ok {
			if len(h) >= 7 && strings.EqualFold(strings.TrimLeft(h, " \t")[:min(6, len(strings.TrimLeft(h, " \t")))], "bearer") &&
				strings.HasPrefix(strings.TrimLeft(h, " \t")[6:]+"x", " ") {
				t.Fatalf("bearerToken(%q) not recognised", h)
			}
			return
		}
		if tok != "" && (!validB64Token(tok) || !strings.Contains(h, tok)) {
			t.Fatalf("bearerToken(%q) = %q", h, tok)
		}
		if strings.ContainsAny(tok, " \t\r\n\"\\,") {
			t.Fatalf("token %q holds a separator", tok)
		}
	})
}
