package pbxsim

import (
	"errors"
	"fmt"
	"net"
	"runtime/debug"
	"slices"
	"sync"
	"time"

	"github.com/amiproxy/amiproxy/policy"
	"github.com/amiproxy/amiproxy/rawman"
)

// incoming is one request read from a client: a message, or the framing
// error Asterisk answers, or the end of the stream.
type incoming struct {
	m   rawman.Message
	fe  *rawman.FrameError
	err error // io error: the client is gone
}

// session is one AMI connection, Asterisk's mansession_session.
//
// Two goroutines serve it, both started by serve and waited for there:
// readLoop parses requests and hands them over one at a time; run is
// Asterisk's session thread: it answers actions strictly in order and
// writes queued events whenever it is not busy with an action. run is the
// only writer to the connection.
type session struct {
	srv       *Server
	conn      net.Conn
	id        uint64
	sessionID string // "0x7ffa000011a0", a pointer in Asterisk
	local     string // "IPV4/TCP/127.0.0.1/5038"
	remote    string
	remoteIP  string
	connected time.Time

	done     chan struct{} // closed by kill
	killOnce sync.Once
	finished chan struct{} // closed when serve has returned
	notify   chan struct{} // cap 1: events were broadcast
	in       chan incoming // from readLoop

	mu        sync.Mutex // guards the fields below, read by other sessions
	authed    bool
	acct      *account
	user      string // the Username of the Login, as given (at most 79 bytes)
	read      policy.Class
	write     policy.Class
	loginTime time.Time
	send      policy.Class // send mask; Asterisk 22.10 starts TCP sessions with every bit
	queue     []event
	unseen    int  // events broadcast since the last drain, delivered or not
	dropped   bool // queue overflowed

	// Owned by run.
	filters   policy.FilterSet
	challenge string
	pending   *incoming // request read while WaitEvent waited
	wbuf      []byte
}

func newSession(s *Server, conn net.Conn, id uint64) *session {
	c := &session{
		srv:       s,
		conn:      conn,
		id:        id,
		sessionID: fmt.Sprintf("0x%x", 0x7ffa00000f10+id*0x10a0),
		connected: s.cfg.Now(),
		done:      make(chan struct{}),
		finished:  make(chan struct{}),
		notify:    make(chan struct{}, 1),
		in:        make(chan incoming),
		send:      policy.All,
	}
	c.local = secAddr(conn.LocalAddr())
	c.remote = secAddr(conn.RemoteAddr())
	if ta, ok := conn.RemoteAddr().(*net.TCPAddr); ok {
		c.remoteIP = ta.IP.String()
	}
	return c
}

// secAddr formats an address like Asterisk's security events:
// "IPV4/TCP/127.0.0.1/5038".
func secAddr(a net.Addr) string {
	ta, ok := a.(*net.TCPAddr)
	if !ok {
		return "IPV4/TCP/" + a.String()
	}
	family := "IPV4"
	ip := ta.IP
	if ip4 := ip.To4(); ip4 != nil {
		ip = ip4
	} else {
		family = "IPV6"
	}
	return fmt.Sprintf("%s/TCP/%s/%d", family, ip, ta.Port)
}

func sortSessions(l []*session) {
	slices.SortFunc(l, func(a, b *session) int {
		switch {
		case a.id < b.id:
			return -1
		case a.id > b.id:
			return 1
		}
		return 0
	})
}

// kill closes the connection; serve then winds down. Safe to call from
// any goroutine, any number of times.
func (c *session) kill() {
	c.killOnce.Do(func() {
		close(c.done)
		_ = c.conn.Close()
	})
}

func (c *session) isAuthed() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.authed
}

// serve runs the session until the client leaves, the session is killed
// or the server closes. It returns after both of its goroutines ended.
func (c *session) serve() {
	defer close(c.finished)
	defer c.srv.removeSession(c)
	var wg sync.WaitGroup
	wg.Go(c.readLoop)
	func() {
		defer func() {
			if r := recover(); r != nil {
				c.srv.log.Error("pbxsim: session panic", "session", c.id, "panic", r, "stack", string(debug.Stack()))
			}
		}()
		c.run()
	}()
	c.kill()
	wg.Wait()
	c.srv.log.Debug("pbxsim: session closed", "session", c.id, "remote", c.remote)
}

// readLoop parses requests with Asterisk's framing and hands them to run
// one at a time. It ends when the connection fails or the session is
// killed.
func (c *session) readLoop() {
	defer func() {
		if r := recover(); r != nil {
			c.srv.log.Error("pbxsim: reader panic", "session", c.id, "panic", r, "stack", string(debug.Stack()))
			c.kill()
		}
	}()
	r := rawman.NewReader(c.conn)
	r.Compat = true
	for {
		m, err := r.ReadMessage()
		it := incoming{m: m}
		if err != nil {
			var fe *rawman.FrameError
			if errors.As(err, &fe) {
				it.fe = fe
			} else {
				it.err = err
			}
		}
		select {
		case c.in <- it:
		case <-c.done:
			return
		}
		if it.err != nil {
			return
		}
	}
}

// run is Asterisk's session thread.
func (c *session) run() {
	if err := c.writeRaw([]byte("Asterisk Call Manager/" + c.srv.cfg.Banner + "\r\n")); err != nil {
		return
	}
	authTimer := time.NewTimer(c.srv.cfg.AuthTimeout)
	defer authTimer.Stop()
	for {
		if c.pending != nil {
			it := *c.pending
			c.pending = nil
			if !c.handle(it) {
				return
			}
			continue
		}
		stalled, stallCh := c.srv.stallState()
		in := c.in
		if stalled {
			in = nil
		}
		var authC <-chan time.Time
		if !c.isAuthed() {
			authC = authTimer.C
		}
		select {
		case <-c.done:
			return
		case <-stallCh:
		case <-authC:
			c.srv.log.Debug("pbxsim: authtimeout", "session", c.id)
			return
		case <-c.notify:
			if c.flush() != nil {
				return
			}
		case it := <-in:
			if !c.handle(it) {
				return
			}
		}
	}
}

// handle runs one request; false ends the session.
func (c *session) handle(it incoming) bool {
	if it.err != nil {
		return false
	}
	if d := c.srv.getReplyDelay(); d > 0 {
		if c.sleep(d) != nil {
			return false
		}
	}
	if it.fe != nil {
		if c.writeRaw(ack("Error", it.fe.Message.ActionID(), it.fe.Reply())) != nil {
			return false
		}
		return c.flush() == nil
	}
	keep := c.dispatch(it.m)
	if !keep {
		return false
	}
	if it.m.Get("SuppressEvents") != "" {
		return true
	}
	return c.flush() == nil
}

// sleep waits d unless the session or server ends first.
func (c *session) sleep(d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-c.done:
		return errSessionGone
	}
}

var errSessionGone = errors.New("pbxsim: session closed")

// writeRaw writes b in one Write with the write timeout; a failed write
// ends the session, as Asterisk's send_string does.
func (c *session) writeRaw(b []byte) error {
	if len(b) == 0 {
		return nil
	}
	_ = c.conn.SetWriteDeadline(time.Now().Add(c.srv.cfg.WriteTimeout))
	if _, err := c.conn.Write(b); err != nil {
		c.srv.log.Debug("pbxsim: write failed, closing session", "session", c.id, "err", err)
		c.kill()
		return err
	}
	return nil
}

// enqueue queues evs for delivery if the session is logged in and may read
// their class. It never blocks: a session with MaxQueuedEvents undelivered
// events is disconnected instead.
func (c *session) enqueue(evs []event) {
	c.mu.Lock()
	overflow := false
	c.unseen += len(evs)
	if c.authed && !c.dropped {
		for _, ev := range evs {
			if !c.read.CanRead(ev.class) || !c.send.Delivers(ev.class) {
				continue
			}
			if len(c.queue) >= c.srv.cfg.MaxQueuedEvents {
				c.dropped, overflow = true, true
				c.queue = nil
				break
			}
			c.queue = append(c.queue, ev)
		}
	}
	c.mu.Unlock()
	if overflow {
		c.srv.log.Warn("pbxsim: session too far behind, disconnected", "session", c.id, "max_queued_events", c.srv.cfg.MaxQueuedEvents)
		c.kill()
		return
	}
	select {
	case c.notify <- struct{}{}:
	default:
	}
}

// drain takes the queued events and returns those the session's send
// mask and eventfilters let through, appended to dst.
func (c *session) drain(dst []byte) []byte {
	c.mu.Lock()
	q := c.queue
	c.queue = nil
	c.unseen = 0
	send := c.send
	c.mu.Unlock()
	for _, ev := range q {
		if send.Delivers(ev.class) && c.filters.Allows(ev.text) {
			dst = append(dst, ev.text...)
		}
	}
	return dst
}

// hasUnseen reports whether any event was broadcast since the last drain,
// the condition that ends Asterisk's WaitEvent over TCP.
func (c *session) hasUnseen() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.unseen > 0
}

// flush writes the queued events (Asterisk's process_events).
func (c *session) flush() error {
	c.wbuf = c.drain(c.wbuf[:0])
	err := c.writeRaw(c.wbuf)
	if cap(c.wbuf) > 1<<20 {
		c.wbuf = nil
	}
	return err
}
