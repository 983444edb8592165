package proxy

import (
	"bufio"
	"bytes"
	"context"
	"crypto/md5"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/amiproxy/amiproxy/auth"
	"github.com/amiproxy/amiproxy/internal/pbxsim"
	"github.com/amiproxy/amiproxy/policy"
	"github.com/amiproxy/amiproxy/upstream"
)

// checkLeaks fails the test if it leaves goroutines behind, in the style of
// tailscale's ResourceCheck. Call it first so its cleanup runs last. Tests
// that use it must not run in parallel.
func checkLeaks(t testing.TB) {
	t.Helper()
	before := runtime.NumGoroutine()
	t.Cleanup(func() {
		deadline := time.Now().Add(5 * time.Second)
		for {
			n := runtime.NumGoroutine()
			if n <= before {
				return
			}
			if time.Now().After(deadline) {
				buf := make([]byte, 1<<20)
				buf = buf[:runtime.Stack(buf, true)]
				t.Errorf("goroutine leak: %d before, %d after:\n%s", before, n, buf)
				return
			}
			time.Sleep(5 * time.Millisecond)
		}
	})
}

// testAuth is a map-based Authenticator: username -> secret. It follows
// Asterisk's rules for plain and MD5 logins (exact usernames here).
type testAuth struct {
	secrets map[string]string
	groups  map[string][]string
	expires map[string]time.Time
	panicOn string // a username whose login panics
}

func newTestAuth() *testAuth {
	return &testAuth{secrets: map[string]string{
		"admin":    "adminpass",
		"limited":  "limitedpass",
		"eastonly": "eastonlypass",
		"nobody":   "nobodypass", // has no role
		"filtered": "filteredpass",
	}, expires: map[string]time.Time{}}
}

func (a *testAuth) Authenticate(ctx context.Context, c auth.Credentials) (auth.Principal, error) {
	if c.Username == a.panicOn && c.Username != "" {
		panic("test authenticator panics")
	}
	secret, ok := a.secrets[c.Username]
	if !ok || c.Username == "" {
		return auth.Principal{}, fmt.Errorf("test: unknown user: %w", auth.ErrAuthFailed)
	}
	if strings.EqualFold(c.AuthType, "MD5") {
		sum := md5.Sum([]byte(c.Challenge + secret))
		if c.Challenge == "" || c.Key != hex.EncodeToString(sum[:]) {
			return auth.Principal{}, fmt.Errorf("test: bad key: %w", auth.ErrAuthFailed)
		}
		return auth.Principal{Subject: "test:" + c.Username, Username: c.Username, Groups: a.groups[c.Username], Method: auth.MethodMD5}, nil
	}
	if subtle.ConstantTimeCompare([]byte(c.Secret.Reveal()), []byte(secret)) != 1 {
		return auth.Principal{}, fmt.Errorf("test: bad secret: %w", auth.ErrAuthFailed)
	}
	return auth.Principal{Subject: "test:" + c.Username, Username: c.Username, Groups: a.groups[c.Username],
		Method: auth.MethodPassword, Expires: a.expires[c.Username]}, nil
}

// testPolicy grants admin everything everywhere (plus the unknown action
// NoSuchAction, to see pbxsim's reply pass through), limited read/write
// call everywhere (like the recordings' manager.conf), eastonly all on
// east only; nobody has no role.
func testPolicy() policy.Config {
	return policy.Config{
		Roles: []policy.Role{
			{Name: "admin", Read: "all", Write: "all", PBXs: []string{"*"}, AllowActions: []string{"NoSuchAction"},
				Rules: policy.Rules{Commands: []string{"core"}, ConfigFiles: []string{"*"}}},
			{Name: "limited", Read: "call", Write: "call", PBXs: []string{"*"}},
			{Name: "eastonly", Read: "all", Write: "all", PBXs: []string{"east"}},
			{Name: "filtered", Read: "all", Write: "all", PBXs: []string{"*"}, EventFilters: []string{"Event: Newchannel"}},
		},
		Users: map[string][]string{
			"admin":    {"admin"},
			"limited":  {"limited"},
			"eastonly": {"eastonly"},
			"filtered": {"filtered"},
		},
	}
}

// envOpts configures newEnv.
type envOpts struct {
	pbxs     []string // default: east
	sim      func(name string, c *pbxsim.Config)
	cfg      Config
	authn    Authenticator
	policy   *policy.Config
	wrap     func(net.Listener) net.Listener
	upstream func(c *upstream.Config)
	logs     *syncBuffer // receives Logger and Audit output (JSON)
}

// env is a running proxy in front of pbxsim PBXs.
type env struct {
	t     testing.TB
	sims  map[string]*pbxsim.Server
	pool  *upstream.Pool
	gw    *Gateway
	addr  string
	serve chan error
}

// newEnv starts pbxsims, a pool, a Gateway and ServeAMI on 127.0.0.1:0;
// everything is stopped at cleanup, in the order cmd/amiproxy uses.
func newEnv(t testing.TB, o envOpts) *env {
	t.Helper()
	if len(o.pbxs) == 0 {
		o.pbxs = []string{"east"}
	}
	e := &env{t: t, sims: map[string]*pbxsim.Server{}, serve: make(chan error, 1)}
	var cfgs []upstream.Config
	for _, name := range o.pbxs {
		sc := pbxsim.Config{LoginFailDelay: -1, TimeScale: 0.1}
		if o.sim != nil {
			o.sim(name, &sc)
		}
		srv, err := pbxsim.New(sc)
		if err != nil {
			t.Fatal(err)
		}
		addr, err := srv.Start("127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = srv.Close() })
		e.sims[name] = srv
		uc := upstream.Config{
			Name: name, Address: addr.String(), Username: "admin", Secret: "adminpass",
			PingInterval: time.Hour, PingTimeout: 2 * time.Second,
			ReconnectMin: 10 * time.Millisecond, ReconnectMax: 80 * time.Millisecond,
			HandshakeTimeout: 2 * time.Second, DialTimeout: time.Second,
		}
		if o.upstream != nil {
			o.upstream(&uc)
		}
		cfgs = append(cfgs, uc)
	}
	pool, err := upstream.NewPool(cfgs, upstream.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pool.Close() })
	e.pool = pool
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, c := range pool.Conns() {
		if err := c.WaitUp(ctx); err != nil {
			t.Fatalf("PBX %s not up: %v", c.Name(), err)
		}
	}
	pc := testPolicy()
	if o.policy != nil {
		pc = *o.policy
	}
	eng, err := policy.Compile(pc, o.pbxs)
	if err != nil {
		t.Fatal(err)
	}
	if o.authn == nil {
		o.authn = newTestAuth()
	}
	cfg := o.cfg
	if cfg.LoginFailDelay == 0 {
		cfg.LoginFailDelay = 20 * time.Millisecond
	}
	if o.logs != nil {
		h := slog.NewJSONHandler(o.logs, &slog.HandlerOptions{Level: slog.LevelDebug})
		cfg.Logger = slog.New(h).With("log", "ops")
		cfg.Audit = slog.New(h).With("log", "audit")
	}
	gw, err := NewGateway(cfg, pool, eng, o.authn)
	if err != nil {
		t.Fatal(err)
	}
	e.gw = gw
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e.addr = ln.Addr().String()
	if o.wrap != nil {
		ln = o.wrap(ln)
	}
	go func() { e.serve <- gw.ServeAMI(context.Background(), ln) }()
	t.Cleanup(func() {
		_ = gw.Close()
		if err := <-e.serve; !errors.Is(err, ErrClosed) {
			t.Errorf("ServeAMI = %v, want ErrClosed", err)
		}
	})
	return e
}

// client is a raw AMI client for tests.
type client struct {
	t    testing.TB
	conn net.Conn
	br   *bufio.Reader
}

func (e *env) dial() *client {
	e.t.Helper()
	conn, err := net.Dial("tcp", e.addr)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { _ = conn.Close() })
	return &client{t: e.t, conn: conn, br: bufio.NewReader(conn)}
}

// connect dials and reads the banner.
func (e *env) connect() *client {
	e.t.Helper()
	c := e.dial()
	if b := c.line(); b != "Asterisk Call Manager/11.0.0\r\n" {
		e.t.Fatalf("banner = %q", b)
	}
	return c
}

// login connects and logs in; extra are more Login headers.
func (e *env) login(user, secret string, extra ...string) *client {
	e.t.Helper()
	c := e.connect()
	kv := append([]string{"Action", "Login", "Username", user, "Secret", secret}, extra...)
	m := c.call(kv...)
	if !strings.Contains(m, "Message: Authentication accepted\r\n") {
		e.t.Fatalf("login %s: %q", user, m)
	}
	// FullyBooted, if any, came in the same write: skip it.
	if b, _ := c.br.Peek(c.br.Buffered()); bytes.HasPrefix(b, []byte("Event: FullyBooted\r\n")) {
		c.readMsg()
	}
	return c
}

func (c *client) send(kv ...string) {
	c.t.Helper()
	var b strings.Builder
	for i := 0; i+1 < len(kv); i += 2 {
		b.WriteString(kv[i] + ": " + kv[i+1] + "\r\n")
	}
	b.WriteString("\r\n")
	c.write(b.String())
}

func (c *client) write(s string) {
	c.t.Helper()
	if _, err := io.WriteString(c.conn, s); err != nil {
		c.t.Fatal(err)
	}
}

func (c *client) line() string {
	c.t.Helper()
	_ = c.conn.SetReadDeadline(time.Now().Add(readTimeout))
	l, err := c.br.ReadString('\n')
	if err != nil {
		c.t.Fatalf("read line: %v (got %q)", err, l)
	}
	return l
}

// readMsg reads one message, raw, up to and including its blank line.
func (c *client) readMsg() string {
	c.t.Helper()
	m, err := c.tryRead(readTimeout)
	if err != nil {
		c.t.Fatalf("read message: %v (got %q)", err, m)
	}
	return m
}

func (c *client) tryRead(d time.Duration) (string, error) {
	_ = c.conn.SetReadDeadline(time.Now().Add(d))
	var b strings.Builder
	for {
		l, err := c.br.ReadString('\n')
		b.WriteString(l)
		if err != nil {
			return b.String(), err
		}
		if l == "\r\n" {
			return b.String(), nil
		}
	}
}

// call sends an action and returns the first message that is not an event.
// Events read meanwhile are dropped.
func (c *client) call(kv ...string) string {
	c.t.Helper()
	c.send(kv...)
	for {
		m := c.readMsg()
		if !strings.HasPrefix(m, "Event: ") {
			return m
		}
	}
}

// until reads messages until one contains want and returns all of them.
func (c *client) until(want string) []string {
	c.t.Helper()
	var got []string
	for {
		m, err := c.tryRead(readTimeout)
		if err != nil {
			c.t.Fatalf("waiting for %q: %v; got %q", want, err, got)
		}
		got = append(got, m)
		if strings.Contains(m, want) {
			return got
		}
	}
}

// expectEOF asserts that the proxy closes the connection (after any data).
func (c *client) expectEOF() {
	c.t.Helper()
	_ = c.conn.SetReadDeadline(time.Now().Add(readTimeout))
	rest, err := io.ReadAll(c.br)
	if err != nil {
		c.t.Fatalf("expected EOF, got %v after %q", err, rest)
	}
	if len(rest) > 0 {
		c.t.Fatalf("unexpected bytes before EOF: %q", rest)
	}
}

// header returns the value of key in the raw message m.
func header(m, key string) string {
	for _, l := range strings.Split(m, "\r\n") {
		k, v, ok := strings.Cut(l, ": ")
		if ok && strings.EqualFold(k, key) {
			return v
		}
	}
	return ""
}

// syncBuffer is a goroutine-safe bytes.Buffer for captured logs.
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

// waitFor polls cond until it holds or 5 s pass.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func bufioReader(r io.Reader) *bufio.Reader { return bufio.NewReader(r) }

// readTimeout bounds a test client's wait for the proxy. It is generous:
// a plain Login against a bcrypt hash takes seconds under -race on a
// loaded machine, and a wait only runs this long when a test fails.
const readTimeout = 30 * time.Second
