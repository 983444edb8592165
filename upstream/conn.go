package upstream

import (
	"context"
	"crypto/md5"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/amiproxy/amiproxy/rawman"
)

// State is the state of the link to one PBX.
type State int32

// Link states.
const (
	StateConnecting State = iota // dialling, TLS, banner, Login or CoreSettings in progress
	StateUp                      // logged in; actions are forwarded, events flow
	StateDown                    // waiting out the reconnect backoff
	StateClosed                  // the Pool was closed
)

func (s State) String() string {
	switch s {
	case StateConnecting:
		return "connecting"
	case StateUp:
		return "up"
	case StateDown:
		return "down"
	case StateClosed:
		return "closed"
	}
	return "State(" + strconv.Itoa(int(s)) + ")"
}

// Stats is a snapshot of one Conn, for metrics.
type Stats struct {
	PBX             string
	State           State
	Since           time.Time // when State was entered (Options.Now)
	AsteriskVersion string    // from CoreSettings of the last login
	AMIVersion      string    // from CoreSettings, else the banner
	LastError       error     // why the link last went down or failed to come up

	EventsIn        uint64 // asynchronous events read from the PBX
	Delivered       uint64 // event deliveries into client queues (one event × N clients = N)
	Dropped         uint64 // deliveries refused by a full client queue
	SlowDisconnects uint64 // clients closed with ErrSlowConsumer
	Reconnects      uint64 // logins after the first one
	ConnectFailures uint64 // dial, TLS, banner, Login or CoreSettings failures
	Strays          uint64 // messages carrying a proxy ActionID nobody waits for any more
	Skipped         uint64 // events read during the handshake, before the link was up

	Pending     int // actions waiting for their reply
	LateReplies int // async Originates waiting for their OriginateResponse
	Subscribers int // clients subscribed to events
}

// Conn is the managed, multiplexed AMI session to one PBX.
//
// Conns are created by NewPool and obtained with Pool.Get; the zero value
// is not usable. A Conn is safe for concurrent use. Its goroutines (the
// manager, and per link a reader and a keepalive) are owned by the Pool
// and stop in Pool.Close.
type Conn struct {
	cfg      Config // defaults applied
	name     string
	log      *slog.Logger
	now      func() time.Time
	rand     func(int64) int64
	dial     func(ctx context.Context, network, address string) (net.Conn, error)
	tls      *tls.Config // nil without TLS
	idPrefix string      // "<pool nonce>.<conn index>."
	seq      atomic.Uint64
	done     chan struct{} // closed when manage returns

	mu         sync.Mutex
	state      State
	since      time.Time
	link       *link
	upCh       chan struct{} // closed when the link comes up; replaced when it goes down
	waiters    map[string]*waiter
	late       map[string]lateEntry
	recent     [recentReplies]recentEntry
	recentNext int
	lastErr    error
	astVer     string
	amiVer     string
	logins     uint64

	// The broadcast list. The reader loads a snapshot and delivers to its
	// entries whose on flag is set. Entries below a published length are
	// never rewritten: Subscribe appends in place past it (amortized O(1))
	// and copies only to grow; Unsubscribe clears on and copies (compacts)
	// only when over half the entries are dead, so n subscribes and
	// unsubscribes cost O(n), not O(n²).
	subMu   sync.Mutex                      // serializes changes of subs and subLive
	subs    atomic.Pointer[[]*subscription] // append-only snapshot list read by the reader
	subLive int                             // entries with on set; guarded by subMu
	nsubs   atomic.Int64                    // subLive, for Stats and the reader's fast path

	eventsIn, delivered, dropped, slow  atomic.Uint64
	reconnects, connectFailures, strays atomic.Uint64
	skipped                             atomic.Uint64

	slowLog, strayLog logLimiter
}

// link is one TCP (or TLS) connection that has logged in.
type link struct {
	nc   net.Conn
	wsem chan struct{} // cap 1: held while writing, so frames never interleave
}

// Name returns the configured PBX name.
func (c *Conn) Name() string { return c.name }

// State returns the current link state.
func (c *Conn) State() State {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.state
}

// Versions returns the Asterisk and AMI versions learned from CoreSettings
// at the last login ("" before the first login).
func (c *Conn) Versions() (asterisk, ami string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.astVer, c.amiVer
}

// LastError returns why the link last went down or failed to come up.
func (c *Conn) LastError() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lastErr
}

// Stats returns a snapshot of the Conn's state and counters.
func (c *Conn) Stats() Stats {
	c.mu.Lock()
	st := Stats{
		PBX: c.name, State: c.state, Since: c.since, AsteriskVersion: c.astVer, AMIVersion: c.amiVer,
		LastError: c.lastErr, Pending: len(c.waiters), LateReplies: len(c.late),
	}
	c.mu.Unlock()
	st.Subscribers = int(c.nsubs.Load())
	st.EventsIn = c.eventsIn.Load()
	st.Delivered = c.delivered.Load()
	st.Dropped = c.dropped.Load()
	st.SlowDisconnects = c.slow.Load()
	st.Reconnects = c.reconnects.Load()
	st.ConnectFailures = c.connectFailures.Load()
	st.Strays = c.strays.Load()
	st.Skipped = c.skipped.Load()
	return st
}

// WaitUp waits until the link is up, ctx ends or the pool is closed.
func (c *Conn) WaitUp(ctx context.Context) error {
	for {
		c.mu.Lock()
		state, ch := c.state, c.upCh
		c.mu.Unlock()
		switch state {
		case StateUp:
			return nil
		case StateClosed:
			return fmt.Errorf("upstream: pbx %s: %w", c.name, ErrClosed)
		}
		select {
		case <-ch:
		case <-c.done:
		case <-ctx.Done():
			return fmt.Errorf("upstream: pbx %s: wait for link: %w", c.name, context.Cause(ctx))
		}
	}
}

// Subscribe makes cl receive this PBX's events, and LinkDown/LinkUp
// changes, from now on; check State for the state at the time of
// subscribing: a link already up is not announced again. Subscribing twice
// is a no-op. It fails with ErrClosed if cl is closed.
func (c *Conn) Subscribe(cl *Client) error {
	c.subMu.Lock()
	defer c.subMu.Unlock()
	cl.mu.Lock()
	if cl.closed {
		err := cl.err
		cl.mu.Unlock()
		return fmt.Errorf("upstream: pbx %s: subscribe: %w", c.name, err)
	}
	s := cl.subFor(c)
	if s.active {
		cl.mu.Unlock()
		return nil
	}
	s.active = true
	cl.mu.Unlock()
	c.addSubLocked(s)
	return nil
}

// addSubLocked puts s on the broadcast list. c.subMu must be held.
func (c *Conn) addSubLocked(s *subscription) {
	if s.on.Load() {
		return
	}
	s.on.Store(true)
	c.subLive++
	c.nsubs.Store(int64(c.subLive))
	if s.listed {
		return // a dead entry still on the list: revived in place
	}
	s.listed = true
	var list []*subscription
	if p := c.subs.Load(); p != nil {
		list = *p
	}
	if len(list) == cap(list) {
		list = c.compactLocked(list, 2*c.subLive+8)
	}
	// Writes index len(list), which no published snapshot covers: every
	// snapshot of this array is at most len(list) long.
	list = append(list, s)
	c.subs.Store(&list)
}

// compactLocked copies the live entries of list into a new array of the
// given capacity and unlists the dead ones. c.subMu must be held.
func (c *Conn) compactLocked(list []*subscription, capacity int) []*subscription {
	out := make([]*subscription, 0, capacity)
	for _, x := range list {
		if x.on.Load() {
			out = append(out, x)
		} else {
			x.listed = false
		}
	}
	return out
}

// Unsubscribe stops delivering this PBX's events to cl. Events already
// queued stay queued; late replies to cl's actions are still delivered.
func (c *Conn) Unsubscribe(cl *Client) {
	c.subMu.Lock()
	defer c.subMu.Unlock()
	cl.mu.Lock()
	s := cl.subLocked(c)
	if s == nil || !s.active {
		cl.mu.Unlock()
		return
	}
	s.active = false
	cl.mu.Unlock()
	c.removeSubLocked(s)
}

func (c *Conn) removeSub(s *subscription) {
	c.subMu.Lock()
	defer c.subMu.Unlock()
	c.removeSubLocked(s)
}

// removeSubLocked drops s from the broadcast list: the reader skips it
// from now on, and the list is compacted once over half of it is dead.
// c.subMu must be held.
func (c *Conn) removeSubLocked(s *subscription) {
	if !s.on.Load() {
		return
	}
	s.on.Store(false)
	c.subLive--
	c.nsubs.Store(int64(c.subLive))
	p := c.subs.Load()
	if p == nil || 2*c.subLive >= len(*p) {
		return
	}
	list := c.compactLocked(*p, 2*c.subLive+8)
	c.subs.Store(&list)
}

// publish delivers one shared item to every subscriber without blocking.
// It returns the clients it closed for being too slow; the caller detaches
// them once it holds no lock.
func (c *Conn) publish(ev *Event) (slow []*Client) {
	p := c.subs.Load()
	if p == nil {
		return nil
	}
	var n uint64
	for _, s := range *p {
		if !s.on.Load() {
			continue // unsubscribed, not yet compacted away
		}
		switch s.cl.push(s, ev) {
		case pushed:
			n++
		case pushOverflow:
			c.slowClient(s)
			slow = append(slow, s.cl)
		}
	}
	c.delivered.Add(n)
	return slow
}

func detachAll(slow []*Client) {
	for _, cl := range slow {
		cl.detach()
	}
}

// deliverTo queues a reply for one client, under the budget of its
// subscription record for this PBX.
func (c *Conn) deliverTo(cl *Client, ev *Event) {
	cl.mu.Lock()
	s := cl.subFor(c)
	cl.mu.Unlock()
	switch cl.push(s, ev) {
	case pushed:
		c.delivered.Add(1)
	case pushOverflow:
		c.slowClient(s)
		cl.detach()
	case pushClosed:
		c.strays.Add(1)
	}
}

func (c *Conn) slowClient(s *subscription) {
	c.dropped.Add(1)
	n := c.slow.Add(1)
	if c.slowLog.allow(c.now()) {
		c.log.Warn("upstream: subscriber too slow, disconnected",
			slog.String("pbx", c.name), slog.Int("queue", s.limit), slog.Uint64("slow_disconnects", n))
	}
}

// manage is the Conn's manager goroutine: it connects, serves the link
// until it fails, and reconnects with capped exponential backoff and full
// jitter. It returns when ctx ends (Pool.Close), after the link's
// goroutines have exited.
func (c *Conn) manage(ctx context.Context) {
	defer close(c.done)
	attempt := 0
	for {
		upFor, err := c.runLink(ctx)
		if ctx.Err() != nil {
			c.setState(StateClosed, nil)
			return
		}
		// A link that stayed up for a while earns a fresh backoff; one
		// that flaps right after login keeps backing off.
		if upFor >= c.cfg.ReconnectMax {
			attempt = 0
		}
		d := backoff(attempt, c.cfg.ReconnectMin, c.cfg.ReconnectMax, c.rand)
		attempt++
		c.setState(StateDown, err)
		c.log.Warn("upstream: pbx link down", slog.String("pbx", c.name),
			slog.Any("err", err), slog.Int("attempt", attempt), slog.Duration("retry_in", d))
		t := time.NewTimer(d)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			c.setState(StateClosed, nil)
			return
		}
	}
}

// backoff returns the delay before reconnect attempt n (from 0): uniform
// in [0, min(hi, lo·2ⁿ)), "full jitter". rnd(k) returns [0, k).
func backoff(n int, lo, hi time.Duration, rnd func(int64) int64) time.Duration {
	ceil := hi
	if n < 62 && lo > 0 {
		if x := lo << n; x>>n == lo && x > 0 && x < hi {
			ceil = x
		}
	}
	if ceil <= 0 {
		return 0
	}
	return time.Duration(rnd(int64(ceil)))
}

func (c *Conn) setState(s State, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.state == s && err == nil {
		return
	}
	c.state, c.since = s, c.now()
	if err != nil {
		c.lastErr = err
	}
}

// runLink makes one connection attempt and serves it until it fails. upFor
// is how long the link was up (0 if it never came up).
func (c *Conn) runLink(ctx context.Context) (upFor time.Duration, err error) {
	defer func() {
		if r := recover(); r != nil {
			c.log.Error("upstream: panic in pbx manager", slog.String("pbx", c.name),
				slog.Any("panic", r), slog.String("stack", string(debug.Stack())))
			err = fmt.Errorf("upstream: pbx %s: panic: %v", c.name, r)
		}
	}()
	c.setState(StateConnecting, nil)
	nc, err := c.connect(ctx)
	if err != nil {
		c.connectFailures.Add(1)
		return 0, err
	}
	r := rawman.NewReplyReader(nc)
	if err := c.handshake(ctx, nc, r); err != nil {
		_ = nc.Close()
		c.connectFailures.Add(1)
		return 0, err
	}
	up := time.Now()
	err = c.serve(ctx, &link{nc: nc, wsem: make(chan struct{}, 1)}, r)
	return time.Since(up), err
}

// connect dials the PBX and, if configured, completes the TLS handshake.
func (c *Conn) connect(ctx context.Context) (net.Conn, error) {
	dctx, cancel := context.WithTimeout(ctx, c.cfg.DialTimeout)
	defer cancel()
	nc, err := c.dial(dctx, "tcp", c.cfg.Address)
	if err != nil {
		return nil, fmt.Errorf("upstream: pbx %s: dial: %w", c.name, err)
	}
	if c.tls == nil {
		return nc, nil
	}
	tc := tls.Client(nc, c.tls)
	hctx, cancel2 := context.WithTimeout(ctx, c.cfg.HandshakeTimeout)
	defer cancel2()
	if err := tc.HandshakeContext(hctx); err != nil {
		_ = nc.Close()
		return nil, fmt.Errorf("upstream: pbx %s: tls: %w", c.name, err)
	}
	return tc, nil
}

// handshake reads the banner, logs in (plain or Challenge+MD5) and learns
// the versions with CoreSettings, all under HandshakeTimeout. Events read
// meanwhile (FullyBooted, SuccessfulAuth of the proxy's own login) belong
// to the proxy's session and are skipped, and counted.
func (c *Conn) handshake(ctx context.Context, nc net.Conn, r *rawman.Reader) error {
	_ = nc.SetDeadline(time.Now().Add(c.cfg.HandshakeTimeout))
	stop := context.AfterFunc(ctx, func() { _ = nc.SetDeadline(time.Unix(1, 0)) })
	defer stop()

	banner, err := r.ReadBanner()
	if err != nil {
		return fmt.Errorf("upstream: pbx %s: banner: %w", c.name, err)
	}
	_, bannerVer, _ := strings.Cut(banner, "/")

	w := rawman.NewWriter(nc)
	exchange := func(action string, kv ...string) (rawman.Message, error) {
		m := rawman.New("Action", action, "ActionID", c.nextID())
		for i := 0; i+1 < len(kv); i += 2 {
			if err := m.Add(kv[i], kv[i+1]); err != nil {
				return m, fmt.Errorf("upstream: pbx %s: %s: %w", c.name, action, err)
			}
		}
		if err := w.WriteMessage(m); err != nil {
			return m, fmt.Errorf("upstream: pbx %s: %s: %w", c.name, action, err)
		}
		id := m.ActionID()
		for {
			reply, err := r.ReadMessage()
			if err != nil {
				if errors.Is(err, io.EOF) {
					err = io.ErrUnexpectedEOF
				}
				return reply, fmt.Errorf("upstream: pbx %s: %s: %w", c.name, action, err)
			}
			if reply.IsResponse() && reply.ActionID() == id {
				if reply.Response() != "Success" {
					return reply, &ActionError{PBX: c.name, Action: action, Message: reply.Get("Message")}
				}
				return reply, nil
			}
			if reply.IsEvent() {
				c.skipped.Add(1)
			}
		}
	}

	if c.cfg.AuthMD5 {
		ch, err := exchange("Challenge", "AuthType", "MD5")
		if err != nil {
			return err
		}
		sum := md5.Sum([]byte(ch.Get("Challenge") + string(c.cfg.Secret)))
		_, err = exchange("Login", "AuthType", "MD5", "Username", c.cfg.Username, "Key", hex.EncodeToString(sum[:]))
		if err != nil {
			return err
		}
	} else if _, err := exchange("Login", "Username", c.cfg.Username, "Secret", string(c.cfg.Secret)); err != nil {
		return err
	}

	astVer, amiVer := "", bannerVer
	cs, err := exchange("CoreSettings")
	var ae *ActionError
	switch {
	case errors.As(err, &ae):
		// The service account may lack the system/reporting class; the
		// link is usable, the versions stay unknown.
		c.log.Warn("upstream: CoreSettings refused; versions unknown", slog.String("pbx", c.name), slog.String("message", ae.Message))
	case err != nil:
		return err
	default:
		astVer = cs.Get("AsteriskVersion")
		if v := cs.Get("AMIversion"); v != "" {
			amiVer = v
		}
	}
	if err := nc.SetDeadline(time.Time{}); err != nil {
		return fmt.Errorf("upstream: pbx %s: %w", c.name, err)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("upstream: pbx %s: %w", c.name, context.Cause(ctx))
	}
	c.mu.Lock()
	c.astVer, c.amiVer = astVer, amiVer
	c.mu.Unlock()
	return nil
}

// serve runs an established link: the reader and keepalive goroutines,
// until either fails or ctx ends. On ctx end it sends Logoff first. It
// returns only after both goroutines have exited and every pending
// action has been failed.
func (c *Conn) serve(ctx context.Context, l *link, r *rawman.Reader) error {
	linkCtx, cancel := context.WithCancelCause(context.WithoutCancel(ctx))
	defer cancel(nil)
	stop := context.AfterFunc(linkCtx, func() { _ = l.nc.Close() })
	defer stop()

	c.goUp(l)
	var wg sync.WaitGroup
	wg.Go(func() { cancel(c.readLoop(l, r)) })
	wg.Go(func() { cancel(c.keepalive(linkCtx, l)) })
	select {
	case <-linkCtx.Done():
	case <-ctx.Done():
		c.logoff(linkCtx, l)
		cancel(fmt.Errorf("upstream: pbx %s: %w", c.name, ErrClosed))
	}
	wg.Wait()
	cause := context.Cause(linkCtx)
	if ctx.Err() != nil {
		cause = fmt.Errorf("upstream: pbx %s: %w", c.name, ErrClosed)
	}
	c.goDown(cause)
	return cause
}

// goUp publishes a new link: actions may be sent, subscribers hear LinkUp.
// The state change and its LinkUp happen under subMu, so a client that
// subscribes either hears this LinkUp or finds the link already up.
func (c *Conn) goUp(l *link) {
	c.subMu.Lock()
	c.mu.Lock()
	c.link = l
	c.state, c.since = StateUp, c.now()
	c.logins++
	if c.logins > 1 {
		c.reconnects.Add(1)
	}
	close(c.upCh)
	astVer, amiVer := c.astVer, c.amiVer
	c.mu.Unlock()
	slow := c.publish(&Event{PBX: c.name, Link: LinkUp})
	c.subMu.Unlock()
	detachAll(slow)
	c.log.Info("upstream: pbx link up", slog.String("pbx", c.name),
		slog.String("asterisk_version", astVer), slog.String("ami_version", amiVer))
}

// goDown withdraws the link, tells subscribers, and fails every pending
// action at once.
func (c *Conn) goDown(cause error) {
	c.subMu.Lock()
	c.mu.Lock()
	c.link = nil
	c.state, c.since, c.lastErr = StateDown, c.now(), cause
	c.upCh = make(chan struct{})
	ws := c.waiters
	c.waiters = make(map[string]*waiter)
	c.mu.Unlock()
	slow := c.publish(&Event{PBX: c.name, Link: LinkDown, Err: cause})
	c.subMu.Unlock()
	detachAll(slow)
	for _, w := range ws {
		w.fail(&LinkError{PBX: c.name, Action: w.action, Sent: true, Err: cause})
	}
}

// readLoop is the link's reader goroutine: it routes every message the PBX
// sends, never blocking on a client. It returns when the connection fails
// or is closed.
func (c *Conn) readLoop(l *link, r *rawman.Reader) (err error) {
	defer c.recoverTo(&err, "reader")
	for {
		m, err := r.ReadMessage()
		if err != nil {
			var fe *rawman.FrameError
			if errors.As(err, &fe) {
				c.oversized(fe)
				continue
			}
			return fmt.Errorf("upstream: pbx %s: read: %w", c.name, err)
		}
		c.route(m)
	}
}

// keepalive is the link's keepalive goroutine: a Ping every PingInterval
// that must be answered within PingTimeout. It returns ErrPingTimeout
// (tearing the link down) or nil when ctx ends. It also expires late-reply
// registrations.
func (c *Conn) keepalive(ctx context.Context, l *link) (err error) {
	defer c.recoverTo(&err, "keepalive")
	t := time.NewTimer(c.cfg.PingInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		if err := c.ping(ctx, l); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		c.expireLate()
		t.Reset(c.cfg.PingInterval)
	}
}

func (c *Conn) ping(ctx context.Context, l *link) error {
	pctx, cancel := context.WithTimeout(ctx, c.cfg.PingTimeout)
	defer cancel()
	_, err := c.internal(pctx, l, "Ping")
	if err != nil && pctx.Err() != nil && ctx.Err() == nil {
		return fmt.Errorf("upstream: pbx %s: no reply within %v: %w", c.name, c.cfg.PingTimeout, ErrPingTimeout)
	}
	return err
}

// logoff says goodbye on Pool.Close, waiting at most PingTimeout.
func (c *Conn) logoff(ctx context.Context, l *link) {
	lctx, cancel := context.WithTimeout(ctx, c.cfg.PingTimeout)
	defer cancel()
	if _, err := c.internal(lctx, l, "Logoff"); err != nil {
		c.log.Debug("upstream: logoff", slog.String("pbx", c.name), slog.Any("err", err))
	}
}

// recoverTo turns a panic of a link goroutine into an error that tears
// down that link only (and is retried), after logging the stack.
func (c *Conn) recoverTo(err *error, who string) {
	if p := recover(); p != nil {
		c.log.Error("upstream: panic in pbx "+who, slog.String("pbx", c.name),
			slog.Any("panic", p), slog.String("stack", string(debug.Stack())))
		*err = fmt.Errorf("upstream: pbx %s: %s panic: %v", c.name, who, p)
	}
}

// logLimiter lets a noisy log line through at most once a second.
type logLimiter struct {
	mu   sync.Mutex
	last time.Time
}

func (l *logLimiter) allow(now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.last.IsZero() && now.Sub(l.last) < time.Second {
		return false
	}
	l.last = now
	return true
}
