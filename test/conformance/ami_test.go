package conformance

import (
	"fmt"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/amiproxy/amiproxy/rawman"
)

// amiConn is a raw AMI client that keeps the exchange it had, so a failed
// flow can print it.
type amiConn struct {
	t      testing.TB
	conn   net.Conn
	r      *rawman.Reader
	banner string
	tr     strings.Builder
	other  int // unrelated events skipped since the last record
}

var actionSeq atomic.Int64

func dialAMI(t testing.TB, addr string) *amiConn {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	c := &amiConn{t: t, conn: conn, r: rawman.NewReplyReader(conn)}
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	c.banner, err = c.r.ReadBanner()
	if err != nil {
		t.Fatalf("banner from %s: %v", addr, err)
	}
	fmt.Fprintf(&c.tr, "S->C %s\n", c.banner)
	return c
}

// sendRaw writes bytes as they are and records them.
func (c *amiConn) sendRaw(s string) {
	c.t.Helper()
	c.flushOther()
	fmt.Fprintf(&c.tr, "C->S\n%s", indent(strings.ReplaceAll(s, "\r\n", "\n")))
	if _, err := c.conn.Write([]byte(s)); err != nil {
		c.t.Fatalf("write: %v\nexchange:\n%s", err, c.exchange())
	}
}

// action sends an action from key/value pairs with a fresh ActionID and
// returns that ActionID.
func (c *amiConn) action(kv ...string) string {
	c.t.Helper()
	id := fmt.Sprintf("kit-%d", actionSeq.Add(1))
	var b strings.Builder
	for i := 0; i+1 < len(kv); i += 2 {
		fmt.Fprintf(&b, "%s: %s\r\n", kv[i], kv[i+1])
	}
	fmt.Fprintf(&b, "ActionID: %s\r\n\r\n", id)
	c.sendRaw(b.String())
	return id
}

// next reads one message, or returns an error after d.
func (c *amiConn) next(d time.Duration) (rawman.Message, error) {
	_ = c.conn.SetReadDeadline(time.Now().Add(d))
	return c.r.ReadMessage()
}

func (c *amiConn) record(m rawman.Message) {
	c.flushOther()
	c.tr.WriteString("S->C\n")
	c.tr.WriteString(indent(format(m)))
}

func (c *amiConn) flushOther() {
	if c.other > 0 {
		fmt.Fprintf(&c.tr, "S->C (%d unrelated events)\n", c.other)
		c.other = 0
	}
}

// response reads until the response to id (events of other actions are
// skipped and counted) and returns it with the list items that follow a
// list start, up to and including the completion event.
func (c *amiConn) response(id string) (rawman.Message, []rawman.Message, error) {
	deadline := time.Now().Add(15 * time.Second)
	var resp rawman.Message
	for {
		m, err := c.next(time.Until(deadline))
		if err != nil {
			return resp, nil, fmt.Errorf("reading the reply to %s: %w", id, err)
		}
		if m.IsResponse() && m.ActionID() == id {
			c.record(m)
			resp = m
			break
		}
		c.other++
	}
	if !resp.IsListStart() {
		return resp, nil, nil
	}
	var items []rawman.Message
	for {
		m, err := c.next(time.Until(deadline))
		if err != nil {
			return resp, items, fmt.Errorf("reading the list of %s: %w", id, err)
		}
		if m.ActionID() != id || !m.IsEvent() {
			c.other++
			continue
		}
		c.record(m)
		items = append(items, m)
		if m.IsListComplete() {
			return resp, items, nil
		}
	}
}

// event reads until an event for which match is true.
func (c *amiConn) event(match func(rawman.Message) bool, d time.Duration) (rawman.Message, error) {
	deadline := time.Now().Add(d)
	for {
		m, err := c.next(time.Until(deadline))
		if err != nil {
			return m, err
		}
		if m.IsEvent() && match(m) {
			c.record(m)
			return m, nil
		}
		c.other++
	}
}

// closed reports whether the peer closed the connection within d.
func (c *amiConn) closed(d time.Duration) bool {
	deadline := time.Now().Add(d)
	for {
		m, err := c.next(time.Until(deadline))
		if err != nil {
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				return false
			}
			c.flushOther()
			c.tr.WriteString("(closed)\n")
			return true
		}
		_ = m
		c.other++
	}
}

func (c *amiConn) exchange() string {
	c.flushOther()
	return c.tr.String()
}

// format renders a message as its "Key: Value" lines.
func format(m rawman.Message) string {
	var b strings.Builder
	for _, h := range m.Headers() {
		fmt.Fprintf(&b, "%s: %s\n", h.Key, h.Value)
	}
	if body := m.Body(); body != "" {
		b.WriteString(body)
		if !strings.HasSuffix(body, "\n") {
			b.WriteString("\n")
		}
	}
	return b.String()
}

func indent(s string) string {
	s = strings.TrimRight(s, "\n")
	return "    " + strings.ReplaceAll(s, "\n", "\n    ") + "\n"
}

// want checks headers of m; it returns a description of the differences.
func want(m rawman.Message, kv ...string) string {
	var diffs []string
	for i := 0; i+1 < len(kv); i += 2 {
		if got := m.Get(kv[i]); got != kv[i+1] {
			diffs = append(diffs, fmt.Sprintf("%s: got %q, want %q", kv[i], got, kv[i+1]))
		}
	}
	return strings.Join(diffs, "; ")
}
