package loadgen

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync/atomic"
	"time"
)

// Login is what a Client logs in with.
type Login struct {
	User, Secret string
	// Events asks for events ("Events: on"); otherwise "Events: off".
	Events bool
}

// Client is a minimal native-AMI client for measurements: it finds replies
// by ActionID and counts events without parsing them. Create one with
// Dial; the zero value is not usable. A Client belongs to one goroutine at
// a time; Close may be called from any goroutine.
type Client struct {
	conn net.Conn
	br   *bufio.Reader
	bw   *bufio.Writer
	seq  uint64
	idb  []byte // scratch for the ActionID being awaited
}

// Dial connects to addr, reads the banner and logs in. ctx bounds the
// whole handshake.
func Dial(ctx context.Context, addr string, l Login) (*Client, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("loadgen: dial %s: %w", addr, err)
	}
	c := &Client{conn: conn, br: bufio.NewReaderSize(conn, 64<<10), bw: bufio.NewWriterSize(conn, 16<<10)}
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	if err := c.login(l); err != nil {
		_ = conn.Close()
		return nil, fmt.Errorf("loadgen: %s: %w", addr, err)
	}
	if !stop() {
		_ = conn.Close()
		return nil, fmt.Errorf("loadgen: %s: login: %w", addr, ctx.Err())
	}
	_ = conn.SetDeadline(time.Time{})
	return c, nil
}

func (c *Client) login(l Login) error {
	banner, err := c.br.ReadString('\n')
	if err != nil {
		return fmt.Errorf("banner: %w", err)
	}
	if !bytes.HasPrefix([]byte(banner), []byte("Asterisk Call Manager/")) {
		return fmt.Errorf("unexpected banner %q", banner)
	}
	ev := "off"
	if l.Events {
		ev = "on"
	}
	fmt.Fprintf(c.bw, "Action: Login\r\nActionID: login\r\nUsername: %s\r\nSecret: %s\r\nEvents: %s\r\n\r\n", l.User, l.Secret, ev)
	if err := c.bw.Flush(); err != nil {
		return fmt.Errorf("login: %w", err)
	}
	msg, err := c.readReply([]byte("login"))
	if err != nil {
		return fmt.Errorf("login: %w", err)
	}
	if !bytes.Contains(msg, []byte("Response: Success")) {
		return errors.New("login refused") // the reply may echo the username only; keep it out
	}
	return nil
}

// Close closes the connection.
func (c *Client) Close() error { return c.conn.Close() }

// Conn returns the underlying connection (to set deadlines).
func (c *Client) Conn() net.Conn { return c.conn }

// send appends one request with the given ActionID to the write buffer.
func (c *Client) send(action string, id []byte) {
	c.bw.WriteString("Action: ")
	c.bw.WriteString(action)
	c.bw.WriteString("\r\nActionID: ")
	c.bw.Write(id)
	c.bw.WriteString("\r\n\r\n")
}

// nextID returns a fresh ActionID in c.idb.
func (c *Client) nextID() []byte {
	c.seq++
	c.idb = strconv.AppendUint(append(c.idb[:0], 'b'), c.seq, 10)
	return c.idb
}

// readReply reads messages until one carries "ActionID: id" and returns
// it; the slice is valid until the next read. Other messages (events) are
// skipped.
func (c *Client) readReply(id []byte) ([]byte, error) {
	var msg []byte
	match := false
	for {
		line, err := c.br.ReadSlice('\n')
		if err != nil {
			if errors.Is(err, bufio.ErrBufferFull) {
				continue // an oversized line: not an ActionID line
			}
			return nil, err
		}
		if len(line) <= 2 && (len(line) == 1 || line[0] == '\r') {
			if match {
				return msg, nil
			}
			msg = msg[:0]
			continue
		}
		msg = append(msg, line...)
		if v, ok := headerValue(line, "ActionID"); ok && bytes.Equal(v, id) {
			match = true
		}
	}
}

// headerValue returns the value of line if its key is key (ASCII
// case-insensitive), without the line ending.
func headerValue(line []byte, key string) ([]byte, bool) {
	if len(line) < len(key)+1 || line[len(key)] != ':' || !bytes.EqualFold(line[:len(key)], []byte(key)) {
		return nil, false
	}
	v := bytes.TrimRight(line[len(key)+1:], "\r\n")
	return bytes.TrimLeft(v, " "), true
}

// Do sends one action and waits for its reply; it returns the reply's
// first line ("Response: …"), valid until the next call.
func (c *Client) Do(action string) ([]byte, error) {
	id := c.nextID()
	c.send(action, id)
	if err := c.bw.Flush(); err != nil {
		return nil, err
	}
	msg, err := c.readReply(id)
	if err != nil {
		return nil, err
	}
	first, _, _ := bytes.Cut(msg, []byte("\n"))
	return first, nil
}

// RoundTrips sends n actions one at a time, each after the previous reply,
// and records every round trip in lat. It stops early when ctx ends.
func (c *Client) RoundTrips(ctx context.Context, action string, n int, lat *Latencies) error {
	for range n {
		if ctx.Err() != nil {
			return nil
		}
		id := c.nextID()
		start := time.Now()
		c.send(action, id)
		if err := c.bw.Flush(); err != nil {
			return fmt.Errorf("loadgen: write: %w", err)
		}
		if _, err := c.readReply(id); err != nil {
			return fmt.Errorf("loadgen: read: %w", err)
		}
		lat.Add(time.Since(start))
	}
	return nil
}

// Pipeline keeps window actions in flight until ctx ends, counting every
// reply in done; replies are matched in order, which every path keeps for
// one client. Writes are flushed whenever no read data is waiting, so
// requests go out in natural batches.
func (c *Client) Pipeline(ctx context.Context, action string, window int, done *atomic.Int64) error {
	stop := context.AfterFunc(ctx, func() { _ = c.conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	defer c.conn.SetDeadline(time.Time{})
	var ids [][]byte
	head := 0
	for range window {
		id := c.nextID()
		ids = append(ids, append([]byte(nil), id...))
		c.send(action, id)
	}
	if err := c.bw.Flush(); err != nil {
		return ignoreDeadline(ctx, err)
	}
	for {
		if _, err := c.readReply(ids[head]); err != nil {
			return ignoreDeadline(ctx, err)
		}
		done.Add(1)
		id := c.nextID()
		ids[head] = append(ids[head][:0], id...)
		head = (head + 1) % window
		c.send(action, id)
		if c.br.Buffered() == 0 {
			if err := c.bw.Flush(); err != nil {
				return ignoreDeadline(ctx, err)
			}
		}
	}
}

func ignoreDeadline(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return nil
	}
	return fmt.Errorf("loadgen: %w", err)
}

// CountEvents reads until want occurrences of marker have arrived, the
// peer closes, or ctx ends, adding each occurrence to got as it is read.
// It returns io.EOF when the peer closed first and nil otherwise
// (including when ctx ended). The marker should be a whole header line,
// for example "Event: UserEvent\r\n"; it is counted in the raw byte
// stream, across read boundaries.
func (c *Client) CountEvents(ctx context.Context, marker []byte, want int64, got *atomic.Int64) error {
	stop := context.AfterFunc(ctx, func() { _ = c.conn.SetReadDeadline(time.Unix(1, 0)) })
	defer stop()
	var mc MarkerCounter
	mc.Marker = marker
	var n int64
	buf := make([]byte, 64<<10)
	// Whatever the login left in the buffered reader comes first.
	if k := c.br.Buffered(); k > 0 {
		b, _ := c.br.Peek(k)
		d := mc.Count(b)
		n += d
		got.Add(d)
		_, _ = c.br.Discard(k)
	}
	for n < want {
		k, err := c.conn.Read(buf)
		if k > 0 {
			d := mc.Count(buf[:k])
			n += d
			got.Add(d)
		}
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) {
				return io.EOF
			}
			return fmt.Errorf("loadgen: read events: %w", err)
		}
	}
	return nil
}

// MarkerCounter counts occurrences of Marker in a byte stream given in
// pieces, including occurrences split across pieces. The zero value with
// Marker set is ready; Marker must not change after the first Count.
type MarkerCounter struct {
	Marker []byte
	tail   []byte // the last len(Marker)-1 bytes seen
}

// Count returns the occurrences of Marker that end inside p.
func (m *MarkerCounter) Count(p []byte) int64 {
	k := len(m.Marker)
	if k == 0 {
		return 0
	}
	var n int64
	if len(m.tail) > 0 {
		// Occurrences that start in the tail and end in p.
		j := min(len(p), k-1)
		joined := append(append(make([]byte, 0, len(m.tail)+j), m.tail...), p[:j]...)
		n += int64(bytes.Count(joined, m.Marker))
	}
	n += int64(bytes.Count(p, m.Marker))
	// Keep the last k-1 bytes of the stream.
	if len(p) >= k-1 {
		m.tail = append(m.tail[:0], p[len(p)-(k-1):]...)
	} else {
		m.tail = append(m.tail, p...)
		if len(m.tail) > k-1 {
			m.tail = m.tail[len(m.tail)-(k-1):]
		}
	}
	return n
}
