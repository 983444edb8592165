package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/amiproxy/amiproxy/auth"
	"github.com/amiproxy/amiproxy/rawman"
	"github.com/amiproxy/amiproxy/upstream"
)

// Causes a native AMI session ends with (logs only).
var (
	errSessionEnd       = errors.New("proxy: session ended")
	errSlowClient       = errors.New("proxy: client too slow, disconnected")
	errHandshakeTimeout = errors.New("proxy: not logged in within the handshake timeout")
	errPanic            = errors.New("proxy: session goroutine panicked")
	errSessionRevoked   = errors.New("proxy: session ended by continuous authorisation")
)

// ServeAMI accepts native AMI clients (plain TCP) on ln until ln fails,
// ctx ends or the Gateway is closed. On its way out it shuts its own
// sessions down as Close does and waits for them. It returns ErrClosed
// after Close, the cause of ctx when ctx ended, else the accept error.
func (g *Gateway) ServeAMI(ctx context.Context, ln net.Listener) error {
	return g.serve(ctx, ln, nil)
}

// ServeAMITLS is ServeAMI for AMI over TLS (Asterisk's port 5039): each
// connection completes a TLS handshake with cfg, within HandshakeTimeout,
// before the banner. A cfg without MinVersion gets TLS 1.2. Certificates
// are the caller's business (cfg.Certificates or GetCertificate).
func (g *Gateway) ServeAMITLS(ctx context.Context, ln net.Listener, cfg *tls.Config) error {
	if cfg == nil {
		return errors.New("proxy: nil tls config")
	}
	cfg = cfg.Clone()
	if cfg.MinVersion == 0 {
		cfg.MinVersion = tls.VersionTLS12
	}
	return g.serve(ctx, ln, cfg)
}

// listenerState tracks the sessions of one ServeAMI call.
type listenerState struct {
	wg sync.WaitGroup
}

// serve is the accept loop of one listener; it runs on the caller's
// goroutine and owns the session goroutines it starts (with the Gateway).
func (g *Gateway) serve(ctx context.Context, ln net.Listener, tlsCfg *tls.Config) error {
	g.mu.Lock()
	if g.closed {
		g.mu.Unlock()
		_ = ln.Close()
		return ErrClosed
	}
	g.listeners[ln] = struct{}{}
	g.mu.Unlock()
	stop := context.AfterFunc(ctx, func() { _ = ln.Close() })
	ls := &listenerState{}
	defer func() {
		stop()
		_ = ln.Close()
		g.mu.Lock()
		delete(g.listeners, ln)
		var mine []*amiConn
		for c := range g.conns {
			if c.owner == ls {
				mine = append(mine, c)
			}
		}
		g.mu.Unlock()
		for _, c := range mine {
			c.shutdown()
		}
		ls.wg.Wait()
	}()
	var delay time.Duration
	for {
		nc, err := ln.Accept()
		if err != nil {
			g.mu.Lock()
			closed := g.closed
			g.mu.Unlock()
			switch {
			case closed:
				return ErrClosed
			case ctx.Err() != nil:
				return context.Cause(ctx)
			case errors.Is(err, net.ErrClosed):
				return err
			}
			// Out of file descriptors and the like: back off and retry,
			// as net/http does.
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			g.log.Warn("proxy: accept", "addr", ln.Addr().String(), "err", err, "retry_in", delay)
			t := time.NewTimer(delay)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
			}
			continue
		}
		delay = 0
		g.accept(ctx, nc, tlsCfg, ls)
	}
}

// accept applies MaxUnauthenticated and MaxUnauthenticatedPerAddress and
// starts the session of nc.
func (g *Gateway) accept(ctx context.Context, nc net.Conn, tlsCfg *tls.Config, ls *listenerState) {
	if g.unauth.Add(1) > int64(g.cfg.MaxUnauthenticated) {
		g.unauth.Add(-1)
		g.stats.rejected.Add(1)
		g.log.Debug("proxy: too many unauthenticated connections", "remote", nc.RemoteAddr().String())
		_ = nc.Close()
		return
	}
	remote := remoteAddrPort(nc)
	prefix := auth.AddrPrefix(remote.Addr())
	if !g.unauthAddrs.acquire(prefix, g.cfg.MaxUnauthenticatedPerAddress) {
		g.unauth.Add(-1)
		g.stats.rejected.Add(1)
		g.stats.rejectedAddr.Add(1)
		g.log.Debug("proxy: too many unauthenticated connections from one address", "remote", nc.RemoteAddr().String())
		_ = nc.Close()
		return
	}
	c := newAMIConn(g, nc, remote, tlsCfg, ls)
	c.prefix = prefix
	c.unauthHeld.Store(true)
	g.mu.Lock()
	if g.closed {
		g.mu.Unlock()
		c.releaseUnauth()
		c.sess.close()
		_ = nc.Close()
		return
	}
	g.conns[c] = struct{}{}
	g.wg.Add(1)
	ls.wg.Add(1)
	g.mu.Unlock()
	g.stats.accepted.Add(1)
	go func() {
		defer g.wg.Done()
		defer ls.wg.Done()
		c.serve()
	}()
}

// amiConn is one native AMI connection: the session plus the two
// goroutines that drive it (house style §3, C8):
//
//   - readLoop, on serve's own goroutine, reads requests with rawman's
//     strict Asterisk framing and runs them one at a time through the
//     session, in order, like Asterisk's session thread; replies go to
//     the queue.
//   - writeLoop is the only writer to the connection: it moves events
//     from the session's upstream.Client (which the PBX readers fill
//     without blocking) into the queue as far as it has room, filtering
//     each for this client, writes what is queued, frames WaitEvent
//     replies, and ends the session at the end marker.
//
// serve returns when both have exited. Each recovers from panics and then
// ends this session only. An idle session holds no read buffer (see
// lazyReader), so it costs two parked goroutines and a few small structs.
type amiConn struct {
	g      *Gateway
	raw    net.Conn // as accepted
	conn   net.Conn // raw, or the TLS connection over it
	tlsCfg *tls.Config
	owner  *listenerState
	sess   *session
	q      *outQueue
	start  time.Time // accept time, for the handshake deadline

	ctx    context.Context
	cancel context.CancelCauseFunc

	unauthHeld atomic.Bool  // counts in Gateway.unauth and unauthAddrs
	prefix     netip.Prefix // the key in unauthAddrs
	shutOnce   sync.Once
	timerMu    sync.Mutex
	timers     []*time.Timer // shutdown grace, credential expiry
	wbuf       []byte        // writeLoop's coalescing buffer
}

// remoteAddrPort is the client address of nc (zero when it has none).
func remoteAddrPort(nc net.Conn) netip.AddrPort {
	if ta, ok := nc.RemoteAddr().(*net.TCPAddr); ok {
		return ta.AddrPort()
	}
	if ap, err := netip.ParseAddrPort(nc.RemoteAddr().String()); err == nil {
		return ap
	}
	return netip.AddrPort{}
}

func newAMIConn(g *Gateway, nc net.Conn, remote netip.AddrPort, tlsCfg *tls.Config, ls *listenerState) *amiConn {
	door := "ami"
	if tlsCfg != nil {
		door = "ami-tls"
	}
	// Sessions outlive the ctx of ServeAMI by the shutdown grace: its end
	// makes serve shut them down, politely.
	ctx, cancel := context.WithCancelCause(context.Background())
	c := &amiConn{
		g:      g,
		raw:    nc,
		conn:   nc,
		tlsCfg: tlsCfg,
		owner:  ls,
		sess:   newSession(g, remote, door),
		q:      newOutQueue(g.cfg.ClientQueue, maxQueueBytes),
		start:  time.Now(),
		ctx:    ctx,
	}
	// Ending the session closes the connection at once, which unblocks its
	// reader and writer (a closure rather than a context.AfterFunc: less
	// to hold per idle session).
	c.cancel = func(cause error) {
		cancel(cause)
		_ = nc.Close()
		c.q.signal()
	}
	c.sess.ender = c
	c.sess.client.UseReady(c.q.ready)
	// The writer may be stuck writing to this client when its upstream
	// queue overflows: end the session from here, at once. A Client
	// closed by Pool.Close ends it too.
	c.sess.client.OnClose(func(cause error) {
		if errors.Is(cause, upstream.ErrSlowConsumer) {
			cause = c.slow(0)
		}
		c.cancel(cause)
	})
	return c
}

func (c *amiConn) releaseUnauth() {
	if c.unauthHeld.CompareAndSwap(true, false) {
		c.g.unauth.Add(-1)
		c.g.unauthAddrs.release(c.prefix)
	}
}

func (c *amiConn) addTimer(d time.Duration, cause error) {
	c.addTimerFunc(d, func() { c.cancel(cause) })
}

// addTimerFunc runs f after d unless the session has ended; serve stops
// the timers on its way out.
func (c *amiConn) addTimerFunc(d time.Duration, f func()) {
	t := time.AfterFunc(d, f)
	c.timerMu.Lock()
	c.timers = append(c.timers, t)
	c.timerMu.Unlock()
}

// serve runs the session until the client leaves or the session is shut
// down (the end of ServeAMI's ctx does that through the accept loop,
// which shuts down its sessions on its way out). It returns after its
// goroutines have exited.
func (c *amiConn) serve() {
	ctx := c.ctx
	defer func() {
		c.cancel(errSessionEnd)
		_ = c.raw.Close()
		c.timerMu.Lock()
		for _, t := range c.timers {
			t.Stop()
		}
		c.timerMu.Unlock()
		c.sess.close()
		c.releaseUnauth()
		c.g.mu.Lock()
		delete(c.g.conns, c)
		c.g.mu.Unlock()
		c.g.log.Debug("proxy: session end", "session", c.sess.id, "remote", c.sess.remote.String(), "cause", context.Cause(ctx))
	}()
	defer c.recoverPanic("serve")

	if !c.handshake() {
		return
	}
	var wg sync.WaitGroup
	wg.Go(c.guard("write", c.writeLoop))
	c.guard("read", c.readLoop)()
	wg.Wait()
}

// handshake arms the handshake deadline, runs TLS and writes the banner;
// false means the session ends. It is a function of its own so that its
// frame is not on the stack of an idle reader (serve's goroutine).
func (c *amiConn) handshake() bool {
	ctx := c.ctx
	// HandshakeTimeout runs from accept: TLS, banner and Login must fit in
	// it, whatever the client does meanwhile (authtimeout).
	deadline := c.start.Add(c.g.cfg.HandshakeTimeout)
	c.addTimerFunc(time.Until(deadline), func() {
		if !c.sess.loggedIn() {
			c.g.stats.handshakeTimeouts.Add(1)
			c.g.log.Debug("proxy: handshake timeout", "session", c.sess.id, "remote", c.sess.remote.String())
			c.cancel(errHandshakeTimeout)
		}
	})
	_ = c.raw.SetDeadline(deadline)
	if c.tlsCfg != nil {
		tc := tls.Server(c.raw, c.tlsCfg)
		if err := tc.HandshakeContext(ctx); err != nil {
			c.g.stats.handshakeFailed.Add(1)
			c.g.log.Debug("proxy: tls handshake", "remote", c.sess.remote.String(), "err", err)
			return false
		}
		c.conn = tc
		c.sess.sni = tc.ConnectionState().ServerName
	}
	// The banner goes out at once, in its own write; bytes the client sent
	// before it wait in the socket for readLoop.
	if _, err := c.conn.Write([]byte("Asterisk Call Manager/" + c.g.banner() + "\r\n")); err != nil {
		c.g.stats.handshakeFailed.Add(1)
		return false
	}
	_ = c.raw.SetDeadline(time.Time{})
	return true
}

// guard runs one loop of the session: an error return ends the session
// with that cause, a panic is logged with its stack and ends it too.
func (c *amiConn) guard(name string, loop func(context.Context) error) func() {
	return func() {
		defer c.recoverPanic(name)
		if err := loop(c.ctx); err != nil {
			c.cancel(err)
		}
	}
}

func (c *amiConn) recoverPanic(name string) {
	if r := recover(); r != nil {
		c.g.stats.panics.Add(1)
		c.g.log.Error("proxy: session goroutine panicked", "session", c.sess.id, "goroutine", name,
			"panic", r, "stack", string(debug.Stack()))
		c.cancel(errPanic)
	}
}

// shutdown ends the session politely: Asterisk's Shutdown event if the
// client reads system events, then close, within shutdownGrace. It is
// idempotent and does not wait.
func (c *amiConn) shutdown() {
	c.shutOnce.Do(func() {
		c.q.finish(c.sess.shutdownEvent())
		_ = c.raw.SetWriteDeadline(time.Now().Add(shutdownGrace))
		c.addTimer(shutdownGrace, ErrClosed)
	})
}

// endSession ends a logged-in session for continuous authorisation: the
// notice is written after what is queued (a pending WaitEvent completes
// first), whatever the event mask, then the connection closes, within
// shutdownGrace. It never blocks.
func (c *amiConn) endSession(notice []byte) {
	c.shutOnce.Do(func() {
		c.q.finish(notice)
		_ = c.raw.SetWriteDeadline(time.Now().Add(shutdownGrace))
		c.addTimer(shutdownGrace, errSessionRevoked)
	})
}

// finish ends the session after what is queued has been written (within
// shutdownGrace).
func (c *amiConn) finish() {
	c.q.finish(nil)
	_ = c.raw.SetWriteDeadline(time.Now().Add(shutdownGrace))
	c.addTimer(shutdownGrace, errSessionEnd)
}

// slow disconnects a client that does not read fast enough: its upstream
// queue overflowed while the outgoing queue was full (see outQueue), as
// Asterisk disconnects a client that stays unwritable for writetimeout.
// lost counts the items in hand that will not be written.
func (c *amiConn) slow(lost int) error {
	queued := c.q.len() + c.sess.client.Stats().Queued
	c.g.stats.slow.Add(1)
	c.g.stats.dropped.Add(uint64(lost + queued))
	c.g.log.Warn("proxy: client too slow, disconnected", "session", c.sess.id,
		"remote", c.sess.remote.String(), "queued", queued)
	return errSlowClient
}

// maxBatch bounds the requests readLoop runs as one batch.
const maxBatch = 64

// readLoop reads and runs requests until the client leaves, the session
// ends (Logoff, failed Login) or ctx ends. It returns nil when what is
// queued should still be written.
//
// A logged-in client that pipelines has its requests run in batches:
// every request already read and buffered (up to maxBatch, stopping
// before a session-scoped action) runs through session.handleBatch,
// which sends the forwarded ones to the PBX together, and the replies
// are queued together, in order, followed by the events that arrived
// meanwhile. The client sees what it would see one request at a time.
func (c *amiConn) readLoop(ctx context.Context) error {
	r := &lazyReader{conn: c.conn}
	defer r.drop()
	var (
		sc      readScratch
		next    rawman.Message // read while batching, not part of the batch
		nextErr error
		hasNext bool
	)
	for {
		var (
			m   rawman.Message
			err error
		)
		if hasNext {
			m, err, hasNext = next, nextErr, false
			next, nextErr = rawman.Message{}, nil
		} else {
			m, err = r.ReadMessage()
		}
		if err != nil {
			if handled, err := c.frameError(ctx, err); handled {
				if err != nil {
					return err
				}
				continue
			}
			if ctx.Err() != nil {
				return context.Cause(ctx)
			}
			// EOF or a read error: write what the client is owed, then end.
			c.finish()
			return nil
		}
		sc.batch = append(sc.batch[:0], m)
		if r.Buffered() > 0 && batchable(m) && c.sess.loggedIn() {
			for len(sc.batch) < maxBatch && r.Buffered() > 0 {
				m2, err := r.ReadMessage()
				if err != nil || !batchable(m2) {
					next, nextErr, hasNext = m2, err, true
					break
				}
				sc.batch = append(sc.batch, m2)
			}
		}
		closing, err := c.runBatch(ctx, &sc)
		if err != nil {
			return err
		}
		if closing {
			c.finish()
			return nil
		}
	}
}

// readScratch is readLoop's reusable storage for one batch.
type readScratch struct {
	batch   []rawman.Message
	results []result
	items   []outItem
}

// frameError answers a request with bad framing, as Asterisk does
// (handle_parse_error), and reports whether err was one.
func (c *amiConn) frameError(ctx context.Context, err error) (bool, error) {
	var fe *rawman.FrameError
	if !errors.As(err, &fe) {
		return false, nil
	}
	c.g.stats.frameErrors.Add(1)
	c.g.log.Debug("proxy: bad request framing", "session", c.sess.id, "err", fe.Err)
	return true, c.q.put(ctx, nil, outItem{kind: outData, b: errorReply(fe.Message.ActionID(), fe.Reply())})
}

// runBatch runs the requests of s.batch (see readLoop) and queues their
// replies; closing says the session ends after them. It is a function of
// its own, like frameError, so that an idle reader, parked in readLoop,
// holds only readLoop's small frame on its stack.
func (c *amiConn) runBatch(ctx context.Context, s *readScratch) (closing bool, err error) {
	c.q.hold()
	switch {
	case !c.sess.loggedIn():
		s.results = append(s.results[:0], c.handleAside(ctx, s.batch[0]))
	case len(s.batch) == 1:
		s.results = append(s.results[:0], c.sess.handle(ctx, s.batch[0]))
	default:
		s.results = c.sess.handleBatch(ctx, s.batch)
	}
	clear(s.batch)
	s.items = s.items[:0]
	for _, res := range s.results {
		if res.login {
			c.releaseUnauth()
			if !res.expires.IsZero() {
				// The sweep would catch it too; this is on time.
				c.addTimerFunc(res.expires.Sub(c.g.now()), func() {
					c.g.endSession(c.sess, ReasonExpired, "credentials expired")
				})
			}
		}
		switch {
		case res.wait != nil:
			s.items = append(s.items, outItem{kind: outWait, wait: *res.wait})
		case len(res.out) > 0:
			s.items = append(s.items, outItem{kind: outData, b: res.out})
		}
		if res.close {
			closing = true
			break
		}
	}
	clear(s.results)
	err = c.q.release(ctx, s.items...)
	clear(s.items)
	return closing, err
}

// handleAside runs a request of a session not logged in yet on a
// goroutine of its own and waits for it. A Login goes deep (the
// Authenticator, the policy engine, the audit log); run on readLoop it
// would leave that goroutine's stack grown for the whole life of an
// otherwise idle session. A panic is passed on to readLoop's guard, with
// the stack where it happened.
func (c *amiConn) handleAside(ctx context.Context, m rawman.Message) result {
	var (
		res     result
		panicky any
	)
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer func() {
			if r := recover(); r != nil {
				panicky = fmt.Sprintf("%v\n%s", r, debug.Stack())
			}
		}()
		res = c.sess.handle(ctx, m)
	}()
	<-done
	if panicky != nil {
		panic(panicky)
	}
	return res
}

// eventPump is writeLoop's part that moves the session's upstream queue
// into the outgoing queue, keeping what this client may see.
type eventPump struct {
	buf     []*upstream.Event
	pending []outItem // passed the checks, waiting for room in the queue
	dc      deliverCache
}

// pump moves events until the upstream queue is empty or the outgoing
// queue is full; it never waits. What does not fit stays in the upstream
// queue (at most a queue's room is taken out of it at once), which keeps
// filling meanwhile without blocking the PBX reader. It returns the
// session's end cause when the upstream Client was closed: for being too
// slow, or because the Pool is closing.
func (c *amiConn) pump(p *eventPump) error {
	cl := c.sess.client
	for {
		if len(p.pending) > 0 {
			n := c.q.offer(p.pending)
			c.g.stats.delivered.Add(uint64(n))
			k := copy(p.pending, p.pending[n:])
			clear(p.pending[k:])
			p.pending = p.pending[:k]
			if k > 0 {
				return nil
			}
		}
		evs := cl.DrainUpTo(p.buf, c.q.room())
		if len(evs) == 0 {
			select {
			case <-cl.Done():
				if errors.Is(cl.Err(), upstream.ErrSlowConsumer) {
					return errSlowClient // counted by the OnClose hook
				}
				if cl.Stats().Queued == 0 {
					return cl.Err()
				}
			default:
			}
			p.buf = evs
			return nil
		}
		for i, ev := range evs {
			if b := c.sess.deliver(ev, &p.dc); b != nil {
				p.pending = append(p.pending, outItem{kind: outEvent, b: b})
			}
			evs[i] = nil
		}
		if f := len(evs) - len(p.pending); f > 0 {
			c.g.stats.filtered.Add(uint64(f))
		}
		p.buf = evs[:0]
	}
}

// waiting is a WaitEvent in progress in writeLoop.
type waiting struct {
	req    waitReq
	timer  *time.Timer
	events [][]byte
}

func (w *waiting) stop() {
	if w != nil && w.timer != nil {
		w.timer.Stop()
	}
}

// complete appends the whole WaitEvent reply (tcp-waitevent.txt): the
// response, the events that ended the wait, and WaitEventComplete.
func (w *waiting) complete(out [][]byte) [][]byte {
	out = append(out, appendAck(nil, "Success", w.req.actionID, "Waiting for Event completed."))
	out = append(out, w.events...)
	b := appendHeader(nil, "Event", "WaitEventComplete")
	if w.req.actionID != "" {
		b = appendHeader(b, "ActionID", w.req.actionID)
	}
	return append(out, append(b, "\r\n"...))
}

// writeLoop writes the queue to the client until the end marker, a write
// error, or ctx ends. Items taken together are written together (one
// writev on TCP), each item whole, so a reply never reaches the client in
// pieces and never interleaves with an event.
//
// A WaitEvent (TCP semantics, ami-spec.md §6.5) holds back nothing that
// precedes it; it ends at its Timeout, when events arrive (they are
// framed into its reply), or when the next reply is queued (the client
// sent another request), and answers then.
func (c *amiConn) writeLoop(ctx context.Context) error {
	var (
		batch []outItem
		out   [][]byte
		w     *waiting
		p     eventPump
	)
	defer func() { w.stop() }()
	for {
		if ctx.Err() != nil {
			return context.Cause(ctx)
		}
		if err := c.pump(&p); err != nil {
			return err
		}
		batch = c.q.take(batch)
		if len(batch) == 0 {
			var timeout <-chan time.Time
			if w != nil && w.timer != nil {
				timeout = w.timer.C
			}
			// One channel wakes the writer: the queue's ready, which the
			// upstream Client signals too (UseReady), and so does the
			// end of the session (cancel). A parked writer then holds
			// one waiting record instead of one per channel.
			select {
			case <-c.q.ready:
			case <-timeout:
				out = w.complete(out[:0])
				w = nil
				if err := c.flush(out); err != nil {
					return c.writeFailed(err, len(out))
				}
				clear(out)
			}
			continue
		}
		out = out[:0]
		end := false
		for _, it := range batch {
			if w != nil {
				if it.kind == outEvent {
					w.events = append(w.events, it.b)
					continue
				}
				out = w.complete(out)
				w.stop()
				w = nil
			}
			switch it.kind {
			case outData, outEvent:
				out = append(out, it.b)
			case outWait:
				w = &waiting{req: it.wait}
				if it.wait.timeout == 0 {
					out = w.complete(out)
					w = nil
				} else if it.wait.timeout > 0 {
					w.timer = time.NewTimer(it.wait.timeout)
				}
			case outEnd:
				end = true
			}
			if end {
				break
			}
		}
		if w != nil && len(w.events) > 0 {
			out = w.complete(out)
			w.stop()
			w = nil
		}
		clear(batch)
		if err := c.flush(out); err != nil {
			return c.writeFailed(err, len(out))
		}
		clear(out)
		if end {
			return errSessionEnd
		}
	}
}

// writeFailed turns a failed write into the session's end cause: a
// client that accepted nothing for WriteTimeout is slow, and counted.
func (c *amiConn) writeFailed(err error, lost int) error {
	if errors.Is(err, os.ErrDeadlineExceeded) && !c.q.isEnded() {
		return c.slow(lost)
	}
	return err
}

// flush writes bufs: with one writev on a TCP connection, else coalesced
// into writes of about 64 KiB that never split an item. Each write must
// make progress within WriteTimeout (within the shutdown grace once the
// session is ending).
func (c *amiConn) flush(bufs [][]byte) error {
	if len(bufs) == 0 {
		return nil
	}
	if !c.q.isEnded() {
		_ = c.conn.SetWriteDeadline(time.Now().Add(c.g.cfg.WriteTimeout))
	}
	if tc, ok := c.conn.(*net.TCPConn); ok {
		nb := net.Buffers(bufs)
		_, err := nb.WriteTo(tc)
		return err
	}
	const chunk = 64 << 10
	b := c.wbuf[:0]
	for _, p := range bufs {
		if len(b) > 0 && len(b)+len(p) > chunk {
			if _, err := c.conn.Write(b); err != nil {
				return err
			}
			b = b[:0]
		}
		b = append(b, p...)
	}
	_, err := c.conn.Write(b)
	if cap(b) <= 4*chunk {
		c.wbuf = b[:0]
	}
	return err
}
