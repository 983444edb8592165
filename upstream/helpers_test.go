package upstream

import (
	"context"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/amiproxy/amiproxy/rawman"
)

// checkLeaks fails the test if it leaves goroutines behind, in the style of
// tailscale's ResourceCheck. Call it first so its cleanup runs last. Tests
// that use it must not run in parallel.
func checkLeaks(t *testing.T) {
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

// testConfig is a Config for the fake PBX with fast reconnects and no
// keepalive noise unless a test asks for it.
func testConfig(addr string) Config {
	return Config{
		Name: "east", Address: addr, Username: "admin", Secret: "adminpass",
		PingInterval: time.Hour, PingTimeout: 2 * time.Second,
		ReconnectMin: 10 * time.Millisecond, ReconnectMax: 80 * time.Millisecond,
		HandshakeTimeout: 2 * time.Second, DialTimeout: time.Second,
	}
}

// startPool starts a pool for cfg, closes it at cleanup, and waits for the
// link to come up unless the config is expected to fail.
func startPool(t *testing.T, cfg Config, opts Options, waitUp bool) (*Pool, *Conn) {
	t.Helper()
	p, err := NewPool([]Config{cfg}, opts)
	if err != nil {
		t.Fatalf("NewPool: %v", err)
	}
	t.Cleanup(func() { _ = p.Close() })
	c, ok := p.Get(cfg.Name)
	if !ok {
		t.Fatalf("Get(%q) = false", cfg.Name)
	}
	if waitUp {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := c.WaitUp(ctx); err != nil {
			t.Fatalf("WaitUp: %v (last error %v)", err, c.LastError())
		}
	}
	return p, c
}

// newFake starts a fake PBX and stops it at cleanup.
func newFake(t *testing.T) *fakePBX {
	t.Helper()
	f := newFakePBX(t)
	f.start()
	t.Cleanup(f.close)
	return f
}

// do runs an action and returns what fn saw, encoded, and Do's error.
func do(t *testing.T, c *Conn, cl *Client, kv ...string) ([]rawman.Message, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var got []rawman.Message
	err := c.Do(ctx, cl, rawman.New(kv...), func(m rawman.Message) { got = append(got, m) })
	return got, err
}

func concat(ms []rawman.Message) string {
	var b strings.Builder
	for _, m := range ms {
		raw, err := rawman.Encode(m)
		if err != nil {
			panic(err)
		}
		b.Write(raw)
	}
	return b.String()
}

// waitFor polls cond until it holds or 5 s pass.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// nextEvent reads one queue item within 5 s.
func nextEvent(t *testing.T, cl *Client) *Event {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ev, err := cl.Next(ctx)
	if err != nil {
		t.Fatalf("Next: %v", err)
	}
	return ev
}

// nextMsg reads queue items until a message (not a link change).
func nextMsg(t *testing.T, cl *Client) *Event {
	t.Helper()
	for {
		if ev := nextEvent(t, cl); ev.Link == LinkNone {
			return ev
		}
	}
}

// nextLink reads queue items until a link change and returns it.
func nextLink(t *testing.T, cl *Client) *Event {
	t.Helper()
	for {
		if ev := nextEvent(t, cl); ev.Link != LinkNone {
			return ev
		}
	}
}

// counter is a goroutine-safe list of timestamps.
type counter struct {
	mu sync.Mutex
	at []time.Time
}

func (c *counter) add() {
	c.mu.Lock()
	c.at = append(c.at, time.Now())
	c.mu.Unlock()
}

func (c *counter) times() []time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]time.Time(nil), c.at...)
}
