package pbxsim

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/amiproxy/amiproxy/rawman"
)

// TestMain fails the run if any goroutine of the package outlives the
// tests: every Server a test starts must be closed, and Close must wait for
// everything it started.
func TestMain(m *testing.M) {
	code := m.Run()
	if code == 0 {
		if leaked := waitNoLeaks(5 * time.Second); leaked != "" {
			fmt.Fprintf(os.Stderr, "goroutines leaked after all tests:\n%s\n", leaked)
			code = 1
		}
	}
	os.Exit(code)
}

// pbxsimGoroutines returns the stacks of goroutines running pbxsim code
// (not test code).
func pbxsimGoroutines() string {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	var out []string
	for g := range strings.SplitSeq(string(buf), "\n\n") {
		if strings.Contains(g, "internal/pbxsim.(*") && !strings.Contains(g, "_test.go") {
			out = append(out, g)
		}
	}
	return strings.Join(out, "\n\n")
}

func waitNoLeaks(d time.Duration) string {
	deadline := time.Now().Add(d)
	for {
		g := pbxsimGoroutines()
		if g == "" || time.Now().After(deadline) {
			return g
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// checkLeaks, for tests that do not run in parallel, fails the test if a
// pbxsim goroutine is still running once the test and its cleanups ended.
func checkLeaks(t *testing.T) {
	t.Helper()
	t.Cleanup(func() {
		if g := waitNoLeaks(5 * time.Second); g != "" {
			t.Errorf("goroutines leaked:\n%s", g)
		}
	})
}

// startServer starts a Server on 127.0.0.1:0 with fast defaults and closes
// it when the test ends.
func startServer(t testing.TB, cfg Config) *Server {
	t.Helper()
	if cfg.LoginFailDelay == 0 {
		cfg.LoginFailDelay = 20 * time.Millisecond
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	if _, err := s.Start("127.0.0.1:0"); err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// client is a minimal AMI client for tests.
type client struct {
	t      testing.TB
	conn   net.Conn
	r      *rawman.Reader
	banner string
}

func dial(t testing.TB, addr net.Addr) *client {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr.String(), 5*time.Second)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	c := &client{t: t, conn: conn, r: rawman.NewReplyReader(conn)}
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	c.banner, err = c.r.ReadBanner()
	if err != nil {
		t.Fatalf("banner: %v", err)
	}
	return c
}

// send writes one action from key/value pairs.
func (c *client) send(kv ...string) {
	c.t.Helper()
	var b bytes.Buffer
	for i := 0; i+1 < len(kv); i += 2 {
		fmt.Fprintf(&b, "%s: %s\r\n", kv[i], kv[i+1])
	}
	b.WriteString("\r\n")
	if _, err := c.conn.Write(b.Bytes()); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

// read returns the next message or fails the test after d.
func (c *client) read(d time.Duration) rawman.Message {
	c.t.Helper()
	m, err := c.tryRead(d)
	if err != nil {
		c.t.Fatalf("read: %v", err)
	}
	return m
}

func (c *client) tryRead(d time.Duration) (rawman.Message, error) {
	_ = c.conn.SetReadDeadline(time.Now().Add(d))
	return c.r.ReadMessage()
}

// response reads until the response with ActionID id (skipping events).
func (c *client) response(id string, d time.Duration) rawman.Message {
	c.t.Helper()
	deadline := time.Now().Add(d)
	for {
		m := c.read(time.Until(deadline))
		if m.IsResponse() && m.ActionID() == id {
			return m
		}
	}
}

// event reads until an event named name arrives.
func (c *client) event(name string, d time.Duration) rawman.Message {
	c.t.Helper()
	deadline := time.Now().Add(d)
	for {
		m := c.read(time.Until(deadline))
		if m.Event() == name {
			return m
		}
	}
}

func (c *client) login(user, secret string, extra ...string) rawman.Message {
	c.t.Helper()
	c.send(append([]string{"Action", "Login", "ActionID", "login", "Username", user, "Secret", secret}, extra...)...)
	m := c.response("login", 5*time.Second)
	if m.Get("Message") != "Authentication accepted" {
		c.t.Fatalf("login %s: %v", user, m)
	}
	return m
}

// expectClosed waits for EOF.
func (c *client) expectClosed(d time.Duration) {
	c.t.Helper()
	deadline := time.Now().Add(d)
	for {
		_, err := c.tryRead(time.Until(deadline))
		if err == nil {
			continue
		}
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			c.t.Fatalf("connection still open after %v", d)
		}
		return
	}
}
