package proxy

import (
	"context"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/time/rate"

	"github.com/amiproxy/amiproxy/auth"
)

// countingAuth counts the calls of the Authenticator it wraps.
type countingAuth struct {
	Authenticator
	n atomic.Int64
}

func (a *countingAuth) Authenticate(ctx context.Context, c auth.Credentials) (auth.Principal, error) {
	a.n.Add(1)
	return a.Authenticator.Authenticate(ctx, c)
}

// limitClock is a settable clock safe for concurrent use.
type limitClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *limitClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *limitClock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func newLoginLimiter(t *testing.T, cfg auth.LimitConfig) *auth.LoginLimiter {
	t.Helper()
	l, err := auth.NewLoginLimiter(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// tryLogin makes one plain Login on a new connection and returns the reply.
func (e *env) tryLogin(user, secret string) string {
	e.t.Helper()
	c := e.connect()
	m := c.call("Action", "Login", "ActionID", "l1", "Username", user, "Secret", secret)
	_ = c.conn.Close()
	return m
}

const authFailed = "Response: Error\r\nActionID: l1\r\nMessage: Authentication failed\r\n\r\n"

// A login flood from one address: after the burst, Logins are answered
// "Authentication failed" without the Authenticator being called.
func TestLoginFloodIsThrottled(t *testing.T) {
	checkLeaks(t)
	ca := &countingAuth{Authenticator: newTestAuth()}
	lim := newLoginLimiter(t, auth.LimitConfig{PerAddress: rate.Every(time.Hour), AddressBurst: 3, LockoutBase: time.Nanosecond, LockoutMax: time.Nanosecond})
	e := newEnv(t, envOpts{authn: ca, cfg: Config{Limits: lim, LoginFailDelay: -1}})
	users := []string{"u1", "u2", "u3", "u4", "admin", "u6"}
	for i, u := range users {
		secret := "wrong"
		if u == "admin" {
			secret = "adminpass" // even the right secret is refused now
		}
		if m := e.tryLogin(u, secret); m != authFailed {
			t.Fatalf("login %d = %q", i, m)
		}
	}
	if n := ca.n.Load(); n != 3 {
		t.Fatalf("authenticator called %d times, want 3 (the burst)", n)
	}
	st := e.gw.Stats()
	if st.LoginsThrottled != 3 || st.LoginsFailed != 6 {
		t.Fatalf("stats: throttled %d failed %d, want 3 and 6", st.LoginsThrottled, st.LoginsFailed)
	}
}

// The lockout of a username from an address doubles with each failure
// and a success resets it; the refused attempts never reach the
// Authenticator, even with the right secret.
func TestLoginLockoutGrowsAndResets(t *testing.T) {
	checkLeaks(t)
	clk := &limitClock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	ca := &countingAuth{Authenticator: newTestAuth()}
	lim := newLoginLimiter(t, auth.LimitConfig{PerAddress: rate.Inf, PerUser: rate.Inf, LockoutBase: time.Second, LockoutMax: time.Minute, Now: clk.now})
	e := newEnv(t, envOpts{authn: ca, cfg: Config{Limits: lim, LoginFailDelay: -1}})
	step := func(what, secret, want string, calls int64) {
		t.Helper()
		before := ca.n.Load()
		m := e.tryLogin("admin", secret)
		if !strings.Contains(m, want) {
			t.Fatalf("%s: %q, want %q", what, m, want)
		}
		if got := ca.n.Load() - before; got != calls {
			t.Fatalf("%s: authenticator called %d times, want %d", what, got, calls)
		}
	}
	step("first failure", "wrong", "Authentication failed", 1) // locked 1s
	step("locked", "adminpass", "Authentication failed", 0)
	clk.advance(time.Second)
	step("second failure", "wrong", "Authentication failed", 1) // locked 2s
	clk.advance(time.Second)
	step("still locked", "adminpass", "Authentication failed", 0)
	if m := e.tryLogin("limited", "limitedpass"); !strings.Contains(m, "Authentication accepted") {
		t.Fatalf("another user from the same address: %q", m)
	}
	clk.advance(time.Second)
	step("success", "adminpass", "Authentication accepted", 1)
	step("failure after success", "wrong", "Authentication failed", 1) // locked 1s again
	clk.advance(time.Second)
	step("reset lockout", "adminpass", "Authentication accepted", 1)
	if st := e.gw.Stats(); st.LoginsThrottled != 2 {
		t.Fatalf("LoginsThrottled = %d, want 2", st.LoginsThrottled)
	}
}

// One address may hold only MaxUnauthenticatedPerAddress connections
// that have not logged in; more are closed before the banner, and a login
// frees a place.
func TestUnauthenticatedPerAddressCap(t *testing.T) {
	checkLeaks(t)
	e := newEnv(t, envOpts{cfg: Config{MaxUnauthenticatedPerAddress: 2}})
	a := e.connect()
	e.connect()
	c := e.dial()
	c.expectEOF()
	if st := e.gw.Stats(); st.RejectedAddress != 1 || st.Rejected != 1 {
		t.Fatalf("stats: rejected %d, for the address %d; want 1, 1", st.Rejected, st.RejectedAddress)
	}
	if m := a.call("Action", "Login", "Username", "admin", "Secret", "adminpass", "Events", "off"); !strings.Contains(m, "Authentication accepted") {
		t.Fatalf("login = %q", m)
	}
	waitFor(t, "a free place", func() bool { return e.gw.Stats().Unauthenticated == 1 })
	e.connect()
	if n := e.gw.unauthAddrs.len(); n != 1 {
		t.Fatalf("address table holds %d entries, want 1", n)
	}
}

// Originate over its per-user rate is answered with a clear error and its
// ActionID, audited and not forwarded; Ping, not limited, still works.
func TestActionRateLimit(t *testing.T) {
	checkLeaks(t)
	al, err := NewActionLimiter(ActionLimitConfig{Rates: map[string]ActionRate{"Originate": {Limit: rate.Every(time.Hour), Burst: 1}}})
	if err != nil {
		t.Fatal(err)
	}
	logs := &syncBuffer{}
	e := newEnv(t, envOpts{cfg: Config{ActionLimits: al}, logs: logs})
	c := e.login("admin", "adminpass", "Events", "off")
	orig := []string{"Channel", "Local/200@lab", "Application", "Wait", "Data", "1", "Async", "true"}
	if m := c.call(append([]string{"Action", "Originate", "ActionID", "o1"}, orig...)...); header(m, "Message") != "Originate successfully queued" {
		t.Fatalf("first Originate = %q", m)
	}
	want := "Response: Error\r\nActionID: o2\r\nMessage: Rate limit exceeded for Originate, retry later\r\n\r\n"
	if m := c.call(append([]string{"Action", "originate", "ActionID", "o2"}, orig...)...); m != want {
		t.Fatalf("second Originate = %q, want %q", m, want)
	}
	if m := c.call("Action", "Ping", "ActionID", "p1"); header(m, "Ping") != "Pong" {
		t.Fatalf("Ping = %q", m)
	}
	// The limit is per user: another user has its own budget.
	c2 := e.login("eastonly", "eastonlypass", "Events", "off")
	if m := c2.call(append([]string{"Action", "Originate", "ActionID", "o3"}, orig...)...); header(m, "Message") != "Originate successfully queued" {
		t.Fatalf("other user's Originate = %q", m)
	}
	st := e.gw.Stats()
	if st.ActionsThrottled != 1 {
		t.Fatalf("ActionsThrottled = %d, want 1", st.ActionsThrottled)
	}
	if !strings.Contains(logs.String(), `"result":"deny"`) || !strings.Contains(logs.String(), `"rule":"rate limit Originate"`) {
		t.Fatalf("no audit deny line for the rate limit:\n%s", logs.String())
	}
}

func TestNewActionLimiterRejectsBadConfig(t *testing.T) {
	_, err := NewActionLimiter(ActionLimitConfig{Rates: map[string]ActionRate{
		"Originate": {Limit: 1, Burst: 1}, "originate": {Limit: 1, Burst: 1},
		"Bad Name": {Limit: 1, Burst: 1}, "Command": {Limit: 0, Burst: 1},
	}})
	if err == nil {
		t.Fatal("accepted")
	}
	for _, want := range []string{"duplicate", "invalid action name", "Command"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
}

// The action limiter's table is bounded.
func TestActionLimiterBounded(t *testing.T) {
	al, err := NewActionLimiter(ActionLimitConfig{Rates: map[string]ActionRate{"Originate": {Limit: 1, Burst: 1}}, MaxEntries: 100})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 10_000 {
		al.Allow(string(rune('a'+i%26))+strings.Repeat("x", i%50)+string(rune(i)), "Originate")
	}
	if n := al.Len(); n > 100 {
		t.Fatalf("%d limiters kept, want at most 100", n)
	}
	if _, ok := al.Allow("u", "Ping"); !ok {
		t.Fatal("an action without a rate was limited")
	}
}

// The HTTP manager's Login and the Digest URIs are throttled the same way.
func TestHTTPLoginThrottled(t *testing.T) {
	checkLeaks(t)
	accts := testAccounts(t, false)
	local, err := auth.NewLocal(accts)
	if err != nil {
		t.Fatal(err)
	}
	ca := &countingAuth{Authenticator: local}
	lim := newLoginLimiter(t, auth.LimitConfig{PerAddress: rate.Every(time.Hour), AddressBurst: 2, LockoutBase: time.Nanosecond, LockoutMax: time.Nanosecond})
	h := newHTTPEnvAccounts(t, envOpts{authn: ca, cfg: Config{Limits: lim, LoginFailDelay: -1}}, HTTPConfig{}, accts)
	failed := "Response: Error\r\nMessage: Authentication failed\r\n\r\n"
	for i, secret := range []string{"wrong", "wrong", "adminpass"} {
		if r := h.get("/rawman?action=login&username=admin&secret="+secret, ""); r.body != failed {
			t.Fatalf("login %d = %s %q", i, r.status, r.body)
		}
	}
	if n := ca.n.Load(); n != 2 {
		t.Fatalf("authenticator called %d times, want 2", n)
	}

	// Digest: the address budget is spent, so even a right digest
	// response is refused (401) until it refills.
	ping := "/arawman?action=ping"
	n := nonceOf(h.get(ping, ""))
	r := h.do("GET " + ping + " HTTP/1.1\r\nHost: x\r\nAuthorization: " + digestHeader("admin", "adminpass", "asterisk", n, "GET", ping, "00000001") + "\r\n\r\n")
	if r.status != "HTTP/1.1 401 Unauthorized" {
		t.Fatalf("throttled digest = %s %q", r.status, r.body)
	}
	if st := h.gw.Stats(); st.LoginsThrottled != 2 {
		t.Fatalf("LoginsThrottled = %d, want 2", st.LoginsThrottled)
	}
}

// Valid digest requests spend no login budget; failed ones do.
func TestHTTPDigestLimits(t *testing.T) {
	checkLeaks(t)
	accts := testAccounts(t, false)
	lim := newLoginLimiter(t, auth.LimitConfig{PerAddress: rate.Every(time.Hour), AddressBurst: 2, LockoutBase: time.Nanosecond, LockoutMax: time.Nanosecond})
	h := newHTTPEnvAccounts(t, envOpts{cfg: Config{Limits: lim, LoginFailDelay: -1}}, HTTPConfig{}, accts)
	ping := "/arawman?action=ping"
	withAuth := func(pass, nc, n string) rawResp {
		return h.do("GET " + ping + " HTTP/1.1\r\nHost: x\r\nAuthorization: " + digestHeader("admin", pass, "asterisk", n, "GET", ping, nc) + "\r\n\r\n")
	}
	n := nonceOf(h.get(ping, ""))
	for i := 1; i <= 5; i++ {
		if r := withAuth("adminpass", "0000000"+string(rune('0'+i)), n); r.status != "HTTP/1.1 200 OK" {
			t.Fatalf("valid digest request %d = %s", i, r.status)
		}
	}
	for range 2 {
		if r := withAuth("wrong", "00000009", n); r.status != "HTTP/1.1 401 Unauthorized" {
			t.Fatalf("wrong digest = %s", r.status)
		}
	}
	if r := withAuth("adminpass", "00000008", n); r.status != "HTTP/1.1 401 Unauthorized" {
		t.Fatalf("after two failures with a burst of 2: %s, want 401", r.status)
	}
	if st := h.gw.Stats(); st.LoginsThrottled != 1 {
		t.Fatalf("LoginsThrottled = %d, want 1", st.LoginsThrottled)
	}
}
