package proxy

// The attack suite: one subtest per attack on the front doors. Each
// asserts a clear error for the client, that nothing of the attack reached
// the PBX (a tap between the proxy and pbxsim records every byte the
// proxy sends), that a bystander session keeps working and receiving
// events, and that no secret, token, password or MD5 key used in the test
// appears in the operational or audit logs.
//
// Cases covered elsewhere, and not repeated here:
//   - TestFramingErrors (ami_test.go): a 2000-byte line and a NUL get
//     Asterisk's framing errors and reading goes on.
//   - TestHTTPInjectionRefused (http_more_test.go): CR, LF, NUL in GET
//     and POST parameters and names, in rawman and mxml, nothing reaches
//     the PBX.
//   - TestHandshakeTimeout, TestHandshakeTimeoutWhileStuck (ami_test.go):
//     idle and flooding clients are closed at the handshake timeout.
//   - TestLoginFloodIsThrottled, TestLoginLockoutGrowsAndResets,
//     TestHTTPLoginThrottled, TestHTTPDigestLimits (limit_test.go).
//   - TestHTTPDigest (http_more_test.go): replayed nc, unknown nonce,
//     other uri, wrong password.
//   - TestHTTPSessionLRU (http_more_test.go): evicted cookies are dead.
//   - TestBearerRefused, TestBearerExpiresDuringWaitEvent (bearer_test.go).
//   - TestRevokedSessionEndsWithNotice, TestHTTPSessionEndNotice
//     (revalidate_test.go).

import (
	"context"
	"crypto/md5"
	"encoding/hex"
	"fmt"
	"io"
	"math/bits"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/time/rate"

	"github.com/amiproxy/amiproxy/auth"
	"github.com/amiproxy/amiproxy/rawman"
	"github.com/amiproxy/amiproxy/upstream"
)

// pbxTap relays the proxy's PBX connections to pbxsim and records what
// the proxy sends.
type pbxTap struct {
	ln   net.Listener
	to   string
	sent syncBuffer
	wg   sync.WaitGroup
	mu   sync.Mutex
	cs   []net.Conn
}

func newPBXTap(t testing.TB, to string) *pbxTap {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &pbxTap{ln: ln, to: to}
	p.wg.Go(p.accept)
	t.Cleanup(func() {
		_ = ln.Close()
		p.mu.Lock()
		for _, c := range p.cs {
			_ = c.Close()
		}
		p.mu.Unlock()
		p.wg.Wait()
	})
	return p
}

func (p *pbxTap) accept() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		s, err := net.Dial("tcp", p.to)
		if err != nil {
			_ = c.Close()
			continue
		}
		p.mu.Lock()
		p.cs = append(p.cs, c, s)
		p.mu.Unlock()
		p.wg.Go(func() { _, _ = io.Copy(io.MultiWriter(s, &p.sent), c); _ = s.Close() })
		p.wg.Go(func() { _, _ = io.Copy(c, s); _ = c.Close() })
	}
}

// reached reports whether marker was sent to the PBX, ignoring case
// (HTTP parameter names keep the client's spelling).
func (p *pbxTap) reached(marker string) bool { return p.count(marker) > 0 }

// count returns how often marker was sent to the PBX, ignoring case.
func (p *pbxTap) count(marker string) int {
	return strings.Count(strings.ToLower(p.sent.String()), strings.ToLower(marker))
}

// attackEnv is the proxy (native and HTTP doors) in front of a tapped
// pbxsim, with its logs captured, plus the secrets to look for in them.
type attackEnv struct {
	*httpEnv
	tap     *pbxTap
	logs    *syncBuffer
	secrets []string
}

func newAttackEnv(t *testing.T, o envOpts) *attackEnv {
	t.Helper()
	a := &attackEnv{logs: &syncBuffer{}}
	o.logs = a.logs
	o.upstream = func(c *upstream.Config) {
		a.tap = newPBXTap(t, c.Address)
		c.Address = a.tap.ln.Addr().String()
	}
	a.httpEnv = newHTTPEnv(t, o, HTTPConfig{})
	a.secrets = []string{"adminpass", "limitedpass", "eastonlypass", "filteredpass"}
	return a
}

// bystander logs admin in with events on; check then proves it was not
// disturbed: an event emitted now reaches it, and Ping answers.
func (a *attackEnv) bystander() func() {
	a.t.Helper()
	c := a.login("admin", "adminpass")
	return func() {
		a.t.Helper()
		mark := "bystander-" + strconv.FormatInt(time.Now().UnixNano(), 36)
		a.sims["east"].Emit(userEvent(mark))
		c.until("UserEvent: " + mark)
		if m := c.call("Action", "Ping", "ActionID", mark); header(m, "Ping") != "Pong" {
			a.t.Errorf("bystander ping = %q", m)
		}
	}
}

// checkLogs fails if a secret of the test appears in a log line.
func (a *attackEnv) checkLogs(t *testing.T) {
	t.Helper()
	logs := a.logs.String()
	if logs == "" {
		t.Error("no logs captured: the scan would prove nothing")
	}
	for _, s := range a.secrets {
		if s != "" && strings.Contains(logs, s) {
			t.Errorf("a log line holds the secret %q", s)
		}
	}
}

func md5Key(challenge, secret string) string {
	sum := md5.Sum([]byte(challenge + secret))
	return hex.EncodeToString(sum[:])
}

// sync sends a Ping with ActionID id and returns every message up to its
// reply.
func (c *client) syncTo(id string) []string {
	c.t.Helper()
	c.send("Action", "Ping", "ActionID", id)
	return c.until("ActionID: " + id + "\r\nPing: Pong")
}

func TestAttacks(t *testing.T) {
	t.Run("request smuggling against the parser differential", func(t *testing.T) {
		checkLeaks(t)
		a := newAttackEnv(t, envOpts{})
		check := a.bystander()
		// limited may run Status (call) but not UserEvent (user); an MD5
		// login, so that a key exists to look for in the logs.
		c := a.connect()
		ch := header(c.call("Action", "Challenge", "AuthType", "MD5"), "Challenge")
		key := md5Key(ch, "limitedpass")
		a.secrets = append(a.secrets, key)
		if m := c.call("Action", "Login", "Username", "limited", "AuthType", "MD5", "Key", key, "Events", "off"); header(m, "Message") != "Authentication accepted" {
			t.Fatalf("md5 login = %q", m)
		}
		for i, tc := range []struct {
			name, raw, want string
		}{
			{"bare LF", "Action: Status\nActionID: lf\nX: 1\n\nAction: UserEvent\nUserEvent: Smuggled-lf\n\n", "Message: Permission denied"},
			{"bare CR", "Action: Status\rAction: UserEvent\r\nUserEvent: Smuggled-cr\r\n\r\n", "bare CR in line"},
			{"NUL", "Action: Status\r\nX: a\x00\r\nAction: UserEvent\r\nUserEvent: Smuggled-nul\r\n\r\n", "NUL byte in line"},
			{"1023-byte cut", "Action: Status\r\nX: " + strings.Repeat("a", rawman.MaxLineLen-1-3) + "Action: UserEvent\r\nUserEvent: Smuggled-cut\r\n\r\n", "line too long"},
			{"129 headers", "Action: Status\r\nX-Marker: Smuggled-129\r\n" + strings.Repeat("X-Pad: p\r\n", rawman.MaxHeaders-1) + "\r\n", "Too many lines in message"},
			{"extra blank lines", "\r\n\r\n\n\r\nAction: UserEvent\r\nUserEvent: Smuggled-blank\r\n\r\n", "Missing action in request"},
			{"duplicate Action", "Action: Status\r\nAction: UserEvent\r\nUserEvent: Smuggled-dup\r\n\r\n", "repeated Action header"},
			{"duplicate ActionID", "Action: Status\r\nActionID: a1\r\nActionID: Smuggled-id\r\n\r\n", "repeated ActionID header"},
			{"duplicate Server", "Action: Status\r\nServer: east\r\nServer: Smuggled-srv\r\n\r\n", "repeated Server header"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				c.write(tc.raw)
				got := strings.Join(c.syncTo(fmt.Sprintf("sync-%d", i)), "")
				if !strings.Contains(got, tc.want) {
					t.Errorf("replies = %q, want %q", got, tc.want)
				}
				if a.tap.reached("Smuggled") {
					t.Errorf("the PBX received the smuggled part:\n%q", a.tap.sent.String())
				}
			})
		}
		// The connection is still in step: a plain Status works, and the
		// tap sees it (the checks above are not blind).
		if m := c.call("Action", "Status", "ActionID", "st", "X-Marker", "Legit-1"); header(m, "Response") != "Success" {
			t.Errorf("Status after the attacks = %q", m)
		}
		if !a.tap.reached("X-Marker: Legit-1") {
			t.Errorf("the tap did not see a legitimate action")
		}
		check()
		a.checkLogs(t)
	})

	t.Run("CR LF injected through HTTP parameters", func(t *testing.T) {
		checkLeaks(t)
		a := newAttackEnv(t, envOpts{})
		check := a.bystander()
		id := a.loginHTTP("", "admin", "adminpass")
		const want = "Response: Error\r\nMessage: Invalid HTTP parameter: CR, LF or NUL is not allowed\r\n\r\n"
		for _, q := range []string{
			"action=Status&x=a%0d%0aAction:%20UserEvent%0d%0aUserEvent:%20Smuggled-get",
			"action=Status%0d%0aAction:%20UserEvent",
			"action=UserEvent&userevent=Smuggled-get2%0D%0A%0D%0AAction:%20Command",
			"action=Status&actionid=x%0aSmuggled",
		} {
			if r := a.get("/rawman?"+q, id); r.status != "HTTP/1.1 200 OK" || r.body != want {
				t.Errorf("GET %s = %s %q", q, r.status, r.body)
			}
		}
		for _, body := range []string{
			"action=UserEvent&userevent=Smuggled-post&x=%0d%0aEvent:%20Fake",
			"action=UserEvent&userevent=Smuggled-post2%0a",
		} {
			r := a.do(fmt.Sprintf("POST /rawman HTTP/1.1\r\nHost: x\r\nCookie: mansession_id=%q\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: %d\r\n\r\n%s", id, len(body), body))
			if r.body != want {
				t.Errorf("POST %s = %s %q", body, r.status, r.body)
			}
		}
		if a.tap.reached("Smuggled") || a.tap.reached("Fake") {
			t.Errorf("the PBX received injected text:\n%q", a.tap.sent.String())
		}
		check()
		a.checkLogs(t)
	})

	t.Run("oversized bodies and lines", func(t *testing.T) {
		checkLeaks(t)
		a := newAttackEnv(t, envOpts{})
		check := a.bystander()
		id := a.loginHTTP("", "admin", "adminpass")
		body := "action=UserEvent&userevent=Smuggled-big&x=" + strings.Repeat("a", rawman.MaxFormBody)
		r := a.do(fmt.Sprintf("POST /rawman HTTP/1.1\r\nHost: x\r\nCookie: mansession_id=%q\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: %d\r\n\r\n%s", id, len(body), body))
		if r.status != "HTTP/1.1 413 Request Entity Too Large" {
			t.Errorf("big POST = %s", r.status)
		}
		// A 2 MiB header: net/http's 431, no session touched.
		hc := a.dialHTTP()
		go func() {
			_, _ = io.WriteString(hc.conn, "GET /rawman?action=ping HTTP/1.1\r\nHost: x\r\nX-Big: "+strings.Repeat("b", 2<<20)+"\r\n\r\n")
		}()
		_ = hc.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		if l, err := hc.br.ReadString('\n'); l != "HTTP/1.1 431 Request Header Fields Too Large\r\n" {
			t.Errorf("big header = %q, %v", l, err)
		}
		_ = hc.conn.Close()
		// A bearer token over 16 KiB: 401, never given to the Authenticator.
		r = a.bearerGet("/rawman?action=ping", strings.Repeat("t", maxBearerToken+1))
		if r.status != "HTTP/1.1 401 Unauthorized" {
			t.Errorf("huge bearer token = %s", r.status)
		}
		// A native line over 1023 bytes, then a whole message of 128
		// such lines: errors, and the session reads on.
		n := a.login("admin", "adminpass", "Events", "off")
		n.write("Action: UserEvent\r\nUserEvent: Smuggled-line\r\nX: " + strings.Repeat("x", 64<<10) + "\r\n\r\n")
		if got := strings.Join(n.syncTo("after-line"), ""); !strings.Contains(got, "line too long") {
			t.Errorf("long line replies = %q", got)
		}
		if a.tap.reached("Smuggled") {
			t.Errorf("the PBX received part of an oversized request")
		}
		check()
		a.checkLogs(t)
	})

	t.Run("slowloris before login", func(t *testing.T) {
		checkLeaks(t)
		a := newAttackEnv(t, envOpts{cfg: Config{HandshakeTimeout: 500 * time.Millisecond}})
		check := a.bystander()
		c := a.connect()
		start := time.Now()
		login := "Action: Login\r\nUsername: admin\r\nSecret: adminpass\r\n\r\n"
		closed := false
		for i := 0; i < len(login)-2 && time.Since(start) < 5*time.Second; i++ {
			if _, err := c.conn.Write([]byte{login[i]}); err != nil {
				closed = true
				break
			}
			time.Sleep(40 * time.Millisecond) // the attacker's pace, not an assertion
		}
		_ = c.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		rest, err := io.ReadAll(c.br)
		if err != nil || len(rest) != 0 {
			t.Errorf("slow client: %q, %v; want EOF without a word", rest, err)
		}
		if d := time.Since(start); d < 400*time.Millisecond || d > 5*time.Second {
			t.Errorf("closed after %v, want about the 500ms handshake timeout", d)
		}
		t.Logf("trickling client closed after %v (writes failed: %v)", time.Since(start), closed)
		if s := a.gw.Stats(); s.HandshakeTimeouts != 1 || s.LoginsOK != 1 {
			t.Errorf("HandshakeTimeouts %d LoginsOK %d, want 1 and 1 (the bystander)", s.HandshakeTimeouts, s.LoginsOK)
		}
		check()
		a.checkLogs(t)
	})

	t.Run("login flood", func(t *testing.T) {
		checkLeaks(t)
		lim, err := auth.NewLoginLimiter(auth.LimitConfig{PerAddress: rate.Every(time.Hour), AddressBurst: 3,
			PerUser: rate.Every(time.Hour), UserBurst: 100, LockoutBase: time.Nanosecond, LockoutMax: time.Nanosecond})
		if err != nil {
			t.Fatal(err)
		}
		ca := &countingAuth{Authenticator: newTestAuth()}
		a := newAttackEnv(t, envOpts{authn: ca, cfg: Config{Limits: lim, LoginFailDelay: -1}})
		check := a.bystander() // from 127.0.0.1: spends one of its address's logins
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 3)}}
		for i := range 8 {
			conn, err := d.Dial("tcp", a.env.addr)
			if err != nil {
				t.Skipf("cannot bind 127.0.0.3: %v", err)
			}
			c := &client{t: t, conn: conn, br: bufioReader(conn)}
			c.line()
			if m := c.call("Action", "Login", "Username", "admin", "Secret", fmt.Sprintf("guess-%d", i)); header(m, "Message") != msgAuthFailed {
				t.Errorf("flood login %d = %q", i, m)
			}
			c.expectEOF()
			_ = conn.Close()
		}
		if n := ca.n.Load(); n > 1+3 {
			t.Errorf("Authenticate calls = %d, want at most 4 (bystander + the flood's burst)", n)
		}
		if s := a.gw.Stats(); s.LoginsThrottled < 5 || s.LoginsFailed != 8 {
			t.Errorf("LoginsThrottled %d LoginsFailed %d, want >= 5 and 8", s.LoginsThrottled, s.LoginsFailed)
		}
		// The legitimate user from another address still gets in.
		legit := a.login("limited", "limitedpass")
		if m := legit.call("Action", "Ping"); header(m, "Ping") != "Pong" {
			t.Errorf("legit user = %q", m)
		}
		check()
		a.checkLogs(t)
	})

	t.Run("replayed digest nonce", func(t *testing.T) {
		checkLeaks(t)
		a := newAttackEnv(t, envOpts{})
		check := a.bystander()
		uri := "/arawman?action=UserEvent&userevent=Replay-1"
		nonce := nonceOf(a.get(uri, ""))
		req := "GET " + uri + " HTTP/1.1\r\nHost: x\r\nAuthorization: " +
			digestHeader("admin", "adminpass", "asterisk", nonce, "GET", uri, "00000001") + "\r\n\r\n"
		a.secrets = append(a.secrets, md5Hex("admin:asterisk:adminpass"))
		if r := a.do(req); r.status != "HTTP/1.1 200 OK" || !strings.Contains(r.body, "Response: Success") {
			t.Fatalf("first request = %s %q", r.status, r.body)
		}
		for range 3 {
			r := a.do(req)
			if r.status != "HTTP/1.1 401 Unauthorized" || !strings.Contains(r.header("WWW-authenticate"), "stale=true") {
				t.Errorf("replay = %s %q", r.status, r.headers)
			}
		}
		if n := a.tap.count("UserEvent: Replay-1"); n != 1 {
			t.Errorf("the PBX ran the digest request %d times, want 1", n)
		}
		check()
		a.checkLogs(t)
	})

	t.Run("session cookie fixation and guessing", func(t *testing.T) {
		checkLeaks(t)
		a := newAttackEnv(t, envOpts{})
		check := a.bystander()
		const chosen = "deadbeef"
		r := a.get("/rawman?action=login&username=admin&secret=adminpass", chosen)
		got := cookieOf(r)
		if !strings.Contains(r.body, "Authentication accepted") || got == "" || got == chosen {
			t.Fatalf("login with a chosen cookie = %q, cookie %q", r.body, got)
		}
		if r := a.get("/rawman?action=ping", chosen); r.body != permissionDenied {
			t.Errorf("the chosen cookie was adopted: %q", r.body)
		}
		if r := a.get("/rawman?action=ping", got); !strings.Contains(r.body, "Pong") {
			t.Errorf("the issued cookie = %q", r.body)
		}
		// Guessing: issued ids are distinct, not sequential, and their
		// bits look random; unknown ids are not logged in.
		seen := map[uint32]bool{}
		ones, prev, seq := 0, uint32(0), 0
		const n = 64
		for i := range n {
			id := parseHexID(cookieOf(a.get("/rawman?action=ping", "")))
			if id == 0 || seen[id] {
				t.Fatalf("cookie %d: %08x repeated or missing", i, id)
			}
			seen[id] = true
			ones += bits.OnesCount32(id)
			if d := id - prev; d < 1024 {
				seq++
			}
			prev = id
		}
		if frac := float64(ones) / (32 * n); frac < 0.4 || frac > 0.6 || seq > 2 {
			t.Errorf("cookie bits: %.2f ones, %d near-sequential pairs", frac, seq)
		}
		for id := range seen {
			if r := a.get("/rawman?action=ping", formatID(id+1)); r.body != permissionDenied {
				t.Errorf("guessed neighbour %08x = %q", id+1, r.body)
			}
			break
		}
		check()
		a.checkLogs(t)
	})

	t.Run("minted secret used after revocation", func(t *testing.T) {
		checkLeaks(t)
		ms := newMintedAuth()
		const secret = "ms1_Qm9ndXNNaW50ZWRTZWNyZXQ"
		ms.mint(secret, "m-1", "admin")
		a := newAttackEnv(t, envOpts{authn: ms, cfg: Config{Validator: ms}})
		a.secrets = append(a.secrets, secret)
		check := a.bystander()
		native := a.login("admin", secret)
		httpID := a.loginHTTP("", "admin", secret)
		ms.revoke("m-1")
		expectNotice(t, native, ReasonRevoked, "east")
		waitFor(t, "http session ended", func() bool { return a.gw.Stats().EndedRevoked == 2 })
		if r := a.get("/rawman?action=UserEvent&userevent=Smuggled-after", httpID); !strings.Contains(r.body, "Session ended (revoked)") {
			t.Errorf("HTTP request after revocation = %q", r.body)
		}
		c := a.connect()
		if m := c.call("Action", "Login", "Username", "admin", "Secret", secret); header(m, "Message") != msgAuthFailed {
			t.Errorf("Login with the revoked secret = %q", m)
		}
		if r := a.get("/rawman?action=login&username=admin&secret="+secret, ""); !strings.Contains(r.body, msgAuthFailed) {
			t.Errorf("HTTP Login with the revoked secret = %q", r.body)
		}
		if a.tap.reached("Smuggled") {
			t.Error("the PBX received an action of a revoked session")
		}
		check()
		a.checkLogs(t)
	})

	t.Run("expired bearer token", func(t *testing.T) {
		checkLeaks(t)
		ta := newTokenAuth()
		ta.add("tok.expired.sig", "admin", time.Now().Add(-time.Second))
		a := newAttackEnv(t, envOpts{authn: ta})
		a.secrets = append(a.secrets, "tok.expired.sig")
		check := a.bystander()
		r := a.bearerGet("/rawman?action=UserEvent&userevent=Smuggled-bearer", "tok.expired.sig")
		if r.status != "HTTP/1.1 401 Unauthorized" || r.header("WWW-Authenticate") != `Bearer error="invalid_token"` || strings.Contains(r.body, "expired") {
			t.Errorf("expired token = %s %q %q", r.status, r.headers, r.body)
		}
		if a.tap.reached("Smuggled") {
			t.Error("the PBX received the action of an expired token")
		}
		if n := a.hm.Stats().Sessions; n != 0 {
			t.Errorf("Sessions = %d", n)
		}
		check()
		a.checkLogs(t)
	})
}

// mintedAuth stands in for the minted-secret authenticator: secrets map
// to (SecretID, user); revoked ones fail Authenticate and Validate.
type mintedAuth struct {
	*testAuth
	mu      sync.Mutex
	secrets map[string][2]string
	revoked map[string]bool
}

func newMintedAuth() *mintedAuth {
	return &mintedAuth{testAuth: newTestAuth(), secrets: map[string][2]string{}, revoked: map[string]bool{}}
}

func (m *mintedAuth) mint(secret, id, user string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.secrets[secret] = [2]string{id, user}
}

func (m *mintedAuth) revoke(id string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.revoked[id] = true
}

func (m *mintedAuth) Authenticate(ctx context.Context, c auth.Credentials) (auth.Principal, error) {
	m.mu.Lock()
	rec, ok := m.secrets[c.Secret.Reveal()]
	bad := m.revoked[rec[0]]
	m.mu.Unlock()
	if !ok {
		return m.testAuth.Authenticate(ctx, c)
	}
	if bad || rec[1] != c.Username {
		return auth.Principal{}, fmt.Errorf("test: minted secret %s refused: %w", rec[0], auth.ErrAuthFailed)
	}
	return auth.Principal{Subject: "minted:" + rec[0], Username: rec[1], Method: "minted", SecretID: rec[0], AuthTime: time.Now()}, nil
}

func (m *mintedAuth) Validate(_ context.Context, p auth.Principal) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if p.SecretID != "" && m.revoked[p.SecretID] {
		return fmt.Errorf("test: minted secret %s: %w", p.SecretID, auth.ErrRevoked)
	}
	return nil
}
