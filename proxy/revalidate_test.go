package proxy

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/amiproxy/amiproxy/auth"
	"github.com/amiproxy/amiproxy/policy"
)

// revoker is a Validator of the tests: principals whose Username or
// SecretID it holds are refused with the error it holds for them.
type revoker struct {
	mu    sync.Mutex
	bad   map[string]error
	calls int
}

func newRevoker() *revoker { return &revoker{bad: map[string]error{}} }

func (r *revoker) revoke(key string, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.bad[key] = err
}

func (r *revoker) Validate(ctx context.Context, p auth.Principal) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls++
	if err, ok := r.bad[p.Username]; ok {
		return err
	}
	if err, ok := r.bad["secret:"+p.SecretID]; ok && p.SecretID != "" {
		return err
	}
	return nil
}

var errTestRevoked = errors.New("test: revoked")

// expectNotice reads messages (events of the session are allowed before
// it) until the ProxySessionEnd notice and checks its headers, then EOF.
func expectNotice(t *testing.T, c *client, reason, pbx string) {
	t.Helper()
	msgs := c.until("Event: " + EventSessionEnd)
	m := msgs[len(msgs)-1]
	want := "Event: ProxySessionEnd\r\nPrivilege: system,all\r\nReason: " + reason + "\r\nServer: " + pbx + "\r\n\r\n"
	if m != want {
		t.Errorf("notice = %q, want %q", m, want)
	}
	c.expectEOF()
}

// A revoked session is ended by the sweep alone (no Revalidate call),
// with the notice even though the client turned events off; another
// client keeps working.
func TestRevokedSessionEndsWithNotice(t *testing.T) {
	checkLeaks(t)
	rv := newRevoker()
	logs := &syncBuffer{}
	e := newEnv(t, envOpts{cfg: Config{Validator: rv}, logs: logs})
	adm := e.login("admin", "adminpass", "Events", "off")
	lim := e.login("limited", "limitedpass")
	start := time.Now()
	rv.revoke("admin", fmt.Errorf("test: minted secret revoked: %w", errTestRevoked))
	expectNotice(t, adm, ReasonRevoked, "east")
	t.Logf("revoked session ended %v after the revocation (sweep only)", time.Since(start))
	if m := lim.call("Action", "Ping", "ActionID", "p1"); header(m, "Ping") != "Pong" {
		t.Errorf("other session after the revocation: %q", m)
	}
	s := e.gw.Stats()
	if s.EndedRevoked != 1 || s.EndedExpired != 0 || s.EndedRemoved != 0 {
		t.Errorf("Ended* = %d/%d/%d, want 1/0/0", s.EndedRevoked, s.EndedExpired, s.EndedRemoved)
	}
	waitFor(t, "audit line", func() bool {
		return strings.Contains(logs.String(), `"msg":"session.end","log":"audit","reason":"revoked"`)
	})
	// A new Login still passes the Authenticator (the Validator does not
	// decide logins) and is ended by the next sweep: its reply may or may
	// not precede the notice, depending on the sweep's timing.
	again := e.connect()
	again.send("Action", "Login", "Username", "admin", "Secret", "adminpass")
	msgs := again.until("Event: " + EventSessionEnd)
	if len(msgs) > 1 && header(msgs[0], "Message") != "Authentication accepted" {
		t.Errorf("before the notice: %q", msgs)
	}
	again.expectEOF()
}

// Revalidate ends the session before it returns; the notice is sent even
// when the session is in the middle of a WaitEvent, which completes first.
func TestRevalidateDuringWaitEvent(t *testing.T) {
	checkLeaks(t)
	rv := newRevoker()
	e := newEnv(t, envOpts{cfg: Config{Validator: rv, RevalidateInterval: MaxRevalidateInterval}})
	c := e.login("admin", "adminpass")
	c.send("Action", "WaitEvent", "ActionID", "w1")
	waitFor(t, "waitevent handled", func() bool { return e.gw.Stats().ActionsAllowed >= 1 })
	rv.revoke("admin", errTestRevoked)
	e.gw.Revalidate()
	if n := e.gw.Stats().EndedRevoked; n != 1 {
		t.Fatalf("EndedRevoked right after Revalidate = %d, want 1", n)
	}
	// The WaitEvent completes before the notice (unless the end overtook
	// the WaitEvent on its way to the writer: then only the notice).
	msgs := c.until("Event: " + EventSessionEnd)
	if len(msgs) > 1 && (len(msgs) != 3 || header(msgs[0], "Message") != "Waiting for Event completed." ||
		header(msgs[1], "Event") != "WaitEventComplete") {
		t.Fatalf("messages before the notice = %q", msgs)
	}
	c.expectEOF()
}

// Reasons come from the Validator's error; a context error ends nothing.
func TestValidatorErrorsAndReasons(t *testing.T) {
	checkLeaks(t)
	rv := newRevoker()
	e := newEnv(t, envOpts{cfg: Config{Validator: rv}})
	c := e.login("admin", "adminpass")
	rv.revoke("admin", fmt.Errorf("test: cannot check: %w", context.DeadlineExceeded))
	e.gw.Revalidate()
	if m := c.call("Action", "Ping"); header(m, "Ping") != "Pong" {
		t.Fatalf("session after a context error: %q", m)
	}
	rv.revoke("admin", errTestRevoked)
	e.gw.Revalidate()
	expectNotice(t, c, ReasonRevoked, "east")
}

// A policy reload removes a user's roles: its sessions end ("removed");
// another user's changed rights apply to the live session at once, both
// ways.
func TestSetPolicyRecomputesRights(t *testing.T) {
	checkLeaks(t)
	e := newEnv(t, envOpts{})
	adm := e.login("admin", "adminpass", "Events", "off")
	lim := e.login("limited", "limitedpass")
	if m := lim.call("Action", "Command", "Command", "core show uptime"); header(m, "Message") != msgPermissionDenied {
		t.Fatalf("limited Command before reload: %q", m)
	}
	pc := testPolicy()
	delete(pc.Users, "admin")
	pc.Users["limited"] = []string{"admin"}
	eng, err := policy.Compile(pc, []string{"east"})
	if err != nil {
		t.Fatal(err)
	}
	e.gw.SetPolicy(eng)
	expectNotice(t, adm, ReasonRemoved, "east")
	if m := lim.call("Action", "Command", "Command", "core show uptime"); header(m, "Response") != "Success" {
		t.Errorf("limited Command after it gained admin: %q", m)
	}
	// And back: the right goes away without a new Login.
	e.gw.SetPolicy(mustCompile(t, testPolicy()))
	if m := lim.call("Action", "Command", "Command", "core show uptime"); header(m, "Message") != msgPermissionDenied {
		t.Errorf("limited Command after it lost admin: %q", m)
	}
	if s := e.gw.Stats(); s.EndedRemoved != 1 {
		t.Errorf("EndedRemoved = %d, want 1", s.EndedRemoved)
	}
}

// SetAuthenticator's Authenticator is the Validator when it is one.
func TestSetAuthenticatorValidates(t *testing.T) {
	checkLeaks(t)
	e := newEnv(t, envOpts{})
	c := e.login("limited", "limitedpass")
	va := &validatingAuth{testAuth: newTestAuth(), rv: newRevoker()}
	va.rv.revoke("limited", errTestRevoked)
	e.gw.SetAuthenticator(va)
	expectNotice(t, c, ReasonRevoked, "east")
	// New logins use the new Authenticator.
	va.secrets["fresh"] = "freshpass"
	e.gw.SetPolicy(mustCompile(t, func() policy.Config {
		pc := testPolicy()
		pc.Users["fresh"] = []string{"admin"}
		return pc
	}()))
	e.login("fresh", "freshpass")
}

type validatingAuth struct {
	*testAuth
	rv *revoker
}

func (v *validatingAuth) Validate(ctx context.Context, p auth.Principal) error {
	return v.rv.Validate(ctx, p)
}

func mustCompile(t testing.TB, pc policy.Config) *policy.Engine {
	t.Helper()
	eng, err := policy.Compile(pc, []string{"east"})
	if err != nil {
		t.Fatal(err)
	}
	return eng
}

// EndUserSessions ends every session of a user, matched ignoring case.
func TestEndUserSessions(t *testing.T) {
	checkLeaks(t)
	e := newEnv(t, envOpts{})
	a1 := e.login("admin", "adminpass")
	a2 := e.login("admin", "adminpass")
	lim := e.login("limited", "limitedpass")
	if n := e.gw.EndUserSessions("ADMIN", "bogus\r\nInjected: 1"); n != 2 {
		t.Fatalf("EndUserSessions = %d, want 2", n)
	}
	expectNotice(t, a1, ReasonRevoked, "east")
	expectNotice(t, a2, ReasonRevoked, "east")
	if n := e.gw.EndUserSessions("admin", ReasonRemoved); n != 0 {
		t.Errorf("EndUserSessions again = %d, want 0", n)
	}
	if m := lim.call("Action", "Ping"); header(m, "Ping") != "Pong" {
		t.Errorf("other user: %q", m)
	}
}

// HTTP: a pending WaitEvent gets the notice; a session without one gets
// it on its next request; after the notice the session is gone.
func TestHTTPSessionEndNotice(t *testing.T) {
	checkLeaks(t)
	rv := newRevoker()
	h := newHTTPEnv(t, envOpts{cfg: Config{Validator: rv}}, HTTPConfig{})
	r := h.get("/rawman?action=login&username=admin&secret=adminpass", "")
	adm := cookieOf(r)
	r = h.get("/rawman?action=login&username=limited&secret=limitedpass", "")
	lim := cookieOf(r)
	if adm == "" || lim == "" {
		t.Fatal("no cookies")
	}
	done := make(chan rawResp, 1)
	go func() { done <- h.get("/rawman?action=waitevent&timeout=30", adm) }()
	waitFor(t, "waitevent pending", func() bool { return h.gw.Stats().ActionsAllowed >= 1 })
	rv.revoke("admin", errTestRevoked)
	rv.revoke("limited", errTestRevoked)
	var w rawResp
	select {
	case w = <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("pending WaitEvent not answered after the revocation")
	}
	wantNotice := "Event: ProxySessionEnd\r\nPrivilege: system,all\r\nReason: revoked\r\nServer: east\r\n\r\n"
	if !strings.Contains(w.body, "Message: Waiting for Event completed.\r\n") || !strings.Contains(w.body, wantNotice) {
		t.Errorf("WaitEvent body = %q", w.body)
	}
	r = h.get("/rawman?action=ping", adm)
	if !strings.Contains(r.body, "Message: Permission denied") {
		t.Errorf("request after the notice = %q, want a new session (Permission denied)", r.body)
	}
	waitFor(t, "limited ended", func() bool { return h.gw.Stats().EndedRevoked == 2 })
	r = h.get("/rawman?action=ping&actionid=x", lim)
	if want := "Response: Error\r\nActionID: x\r\nMessage: Session ended (revoked)\r\n\r\n" + wantNotice; r.body != want {
		t.Errorf("next request = %q, want %q", r.body, want)
	}
	r = h.get("/rawman?action=ping", lim)
	if !strings.Contains(r.body, "Message: Permission denied") {
		t.Errorf("request after the notice = %q", r.body)
	}
}

// The real auth.Minter behind the real auth.Chain: a native session and an
// HTTP session on a minted secret end with Reason revoked as soon as the
// secret is revoked (Minter.OnChange -> Revalidate), and the secret no
// longer logs in.
func TestRealMinterRevocation(t *testing.T) {
	checkLeaks(t)
	store, err := auth.OpenFileStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = store.Close() })
	key := make([]byte, auth.MintKeySize)
	for i := range key {
		key[i] = byte(i*7 + 1)
	}
	minter, err := auth.NewMinter(auth.MinterConfig{Store: store, Key: key, PollInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = minter.Close() })
	local, err := auth.NewLocal(testAccounts(t, false))
	if err != nil {
		t.Fatal(err)
	}
	chain := auth.NewChain(auth.ChainConfig{Local: local, Minted: minter})
	pc := testPolicy()
	pc.Users["carol"] = []string{"admin"}
	logs := &syncBuffer{}
	h := newHTTPEnv(t, envOpts{authn: chain, policy: &pc, logs: logs}, HTTPConfig{})
	minter.OnChange(h.gw.Revalidate)
	m, err := minter.Mint(context.Background(), auth.Principal{Subject: "oidc:carol", Username: "carol", Method: "oidc"}, time.Hour, "test")
	if err != nil {
		t.Fatal(err)
	}
	secret := m.Secret.Reveal()
	native := h.login("carol", secret, "Events", "off")
	id := h.loginHTTP("", "carol", secret)
	if err := minter.RevokeID(context.Background(), m.ID); err != nil {
		t.Fatal(err)
	}
	expectNotice(t, native, ReasonRevoked, "east")
	if r := h.get("/rawman?action=ping", id); !strings.Contains(r.body, "Message: Session ended (revoked)") {
		t.Errorf("HTTP after revocation = %q", r.body)
	}
	c := h.connect()
	if msg := c.call("Action", "Login", "Username", "carol", "Secret", secret); header(msg, "Message") != msgAuthFailed {
		t.Errorf("Login with the revoked secret = %q", msg)
	}
	if strings.Contains(logs.String(), secret) {
		t.Error("a log line holds the minted secret")
	}
}
