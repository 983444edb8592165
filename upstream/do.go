package upstream

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/amiproxy/amiproxy/rawman"
)

// recentReplies is how many completed actions are remembered so that an
// extra response to them (ModuleLoad answers up to three times, AMI spec
// 3.6) still reaches the client that asked.
const recentReplies = 64

type waiterKind uint8

const (
	kindPlain waiterKind = iota
	kindAsyncOriginate
	kindSyncOriginate // sent as Async: true; completed by OriginateResponse
	kindInternal      // the proxy's own Ping and Logoff
)

// waiter is one pending action. The reader fills it; Do drains it.
type waiter struct {
	id       string // proxy ActionID
	action   string
	kind     waiterKind
	cl       *Client
	clientID string        // the client's ActionID; "" when it sent none
	ttl      time.Duration // late-reply lifetime of an async Originate

	// Reader-side reply state, guarded by Conn.mu.
	gotResp, inList, awaitOrig bool

	mu       sync.Mutex
	msgs     []rawman.Message
	complete bool
	err      error
	ready    chan struct{} // cap 1
}

func (w *waiter) signal() {
	select {
	case w.ready <- struct{}{}:
	default:
	}
}

// push hands one reply message to Do. It reports false, failing the
// action, when Do's callback has fallen maxReplyBacklog messages behind.
func (w *waiter) push(m rawman.Message, complete bool) bool {
	w.mu.Lock()
	if w.err != nil || w.complete {
		w.mu.Unlock()
		return false
	}
	if len(w.msgs) >= maxReplyBacklog {
		w.err = ErrReplyTooLarge
		w.mu.Unlock()
		w.signal()
		return false
	}
	w.msgs = append(w.msgs, m)
	w.complete = complete
	w.mu.Unlock()
	w.signal()
	return true
}

func (w *waiter) fail(err error) {
	w.mu.Lock()
	if w.err == nil && !w.complete {
		w.err = err
	}
	w.mu.Unlock()
	w.signal()
}

func (w *waiter) take(buf []rawman.Message) ([]rawman.Message, bool, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	buf = append(buf, w.msgs...)
	clear(w.msgs)
	w.msgs = w.msgs[:0]
	return buf, w.complete, w.err
}

// lateEntry routes the OriginateResponse of an async Originate.
type lateEntry struct {
	cl       *Client
	clientID string
	expires  time.Time
}

// recentEntry remembers a completed action for extra responses.
type recentEntry struct {
	id       string
	cl       *Client
	clientID string
}

var sessionActions = []string{"Login", "Logoff", "Challenge", "Events", "Filter", "WaitEvent"}

// SessionScoped reports whether the action name (compared the way
// Asterisk does, ignoring case) is one that Do refuses because it belongs
// to a client's own session: Login, Logoff, Challenge, Events, Filter,
// WaitEvent.
func SessionScoped(action string) bool {
	for _, a := range sessionActions {
		if strings.EqualFold(action, a) {
			return true
		}
	}
	return false
}

// Do sends action to the PBX on the shared session and calls fn, on the
// caller's goroutine, for every message of the reply, with the client's
// original ActionID restored byte for byte (or removed when the client
// sent none or an empty one, as Asterisk omits it). The reply is the
// response and, when it opens a list ("EventList: start"), every item up
// to the event with "EventList: Complete"; further responses with the same
// ActionID are passed on too (AMI spec 3.6). fn owns each message.
//
// The PBX only ever sees a proxy ActionID. Do returns nil when the reply
// is complete, whatever its Response. It returns:
//   - a *LinkError when the link is not up or drops before the reply is
//     complete; fn has then received a synthesized "Response: Error" whose
//     Message names the PBX (LinkError.Public);
//   - ErrSessionAction, ErrMissingAction or ErrTooManyPending (wrapped)
//     without sending anything and without calling fn;
//   - the cause of ctx when ctx ends first. Later replies to the action
//     are discarded and counted as strays.
//
// For an async Originate ("Async" true, as Asterisk's ast_true reads
// it), the later OriginateResponse event is delivered to cl's queue only,
// with cl's ActionID restored and Event.Reply set; cl may be nil, and
// then it is dropped. A synchronous Originate is sent with "Async: true",
// so it cannot block the shared session, and Do waits for the
// OriginateResponse and answers as Asterisk's synchronous Originate does:
// "Response: Success"/"Message: Originate successfully queued" or
// "Response: Error"/"Message: Originate failed".
//
// Do is safe for concurrent use; actions from all clients are pipelined
// on the one session.
func (c *Conn) Do(ctx context.Context, cl *Client, action rawman.Message, fn func(rawman.Message)) error {
	var one [1]Pending
	c.send(ctx, cl, []rawman.Message{action}, one[:])
	return one[0].Await(ctx, fn)
}

// Pending is an action sent by [Conn.Send] whose reply is still to be
// read with Await. The zero value is not usable.
type Pending struct {
	c     *Conn
	w     *waiter
	err   error // set when the action was not sent
	synth bool  // err is a LinkError the client gets a Response for
}

// Send is Do for several actions of one client, pipelined: they are sent
// in order, in one write, before any reply is read; then each Pending's
// Await, called in order, reads its reply exactly as Do does (same
// callback, same errors: an action that could not be sent reports it
// there). Asterisk runs the actions of the shared session in order, so
// the replies are those of the actions run one after the other. Await
// every Pending (an action whose Await is never called is forgotten only
// when its reply arrives or the link drops).
func (c *Conn) Send(ctx context.Context, cl *Client, actions []rawman.Message) []Pending {
	ps := make([]Pending, len(actions))
	c.send(ctx, cl, actions, ps)
	return ps
}

func (c *Conn) send(ctx context.Context, cl *Client, actions []rawman.Message, ps []Pending) {
	var (
		frames []byte
		l      *link
		few    [16]int
	)
	sent := few[:0]
	for i, action := range actions {
		ps[i].c = c
		w, buf, err := c.prepare(cl, action)
		if err != nil {
			ps[i].err = err
			continue
		}
		ps[i].w = w
		ll, err := c.register(w, w.ttl, l)
		if err != nil {
			ps[i].err, ps[i].synth = err, true
			continue
		}
		l = ll // every frame of one Send goes out on one link
		if frames == nil {
			frames = buf
		} else {
			frames = append(frames, buf...)
		}
		sent = append(sent, i)
	}
	if len(sent) == 0 {
		return
	}
	if ok, err := c.write(ctx, l, frames, time.Time{}); !ok {
		for _, i := range sent {
			c.abandon(ps[i].w, false)
			ps[i].err = fmt.Errorf("upstream: pbx %s: %s: %w", c.name, ps[i].w.action, err)
		}
	}
	// A failed write closes the link; the teardown fails the waiters.
}

// prepare builds the waiter and the encoded frame of one action.
func (c *Conn) prepare(cl *Client, action rawman.Message) (*waiter, []byte, error) {
	name := action.Action()
	if name == "" {
		return nil, nil, fmt.Errorf("upstream: pbx %s: %w", c.name, ErrMissingAction)
	}
	if SessionScoped(name) {
		return nil, nil, fmt.Errorf("upstream: pbx %s: %s: %w", c.name, name, ErrSessionAction)
	}
	w := &waiter{action: name, cl: cl, clientID: action.ActionID(), ready: make(chan struct{}, 1)}
	out := action.Clone()
	out.Del("ActionID")
	if strings.EqualFold(name, "Originate") {
		if astTrue(action.Get("Async")) {
			w.kind = kindAsyncOriginate
			w.ttl = c.cfg.LateReplyTTL + originateTimeout(action.Get("Timeout"))
		} else {
			w.kind = kindSyncOriginate
			out.Del("Async")
			if err := out.Add("Async", "true"); err != nil {
				return nil, nil, fmt.Errorf("upstream: pbx %s: %s: %w", c.name, name, err)
			}
		}
	}
	w.id = c.nextID()
	if err := out.Add("ActionID", w.id); err != nil {
		return nil, nil, fmt.Errorf("upstream: pbx %s: %s: %w", c.name, name, err)
	}
	buf, err := encode(out)
	if err != nil {
		return nil, nil, fmt.Errorf("upstream: pbx %s: %s: %w", c.name, name, err)
	}
	return w, buf, nil
}

// Await reads the reply of the action into fn, on the caller's
// goroutine, and returns what Do would have returned for it.
func (p *Pending) Await(ctx context.Context, fn func(rawman.Message)) error {
	if p.err != nil {
		if p.synth {
			p.c.synthesize(p.w, p.err, fn)
		}
		return p.err
	}
	return p.c.await(ctx, p.w, fn)
}

// internal runs one of the proxy's own actions on link l and returns its
// response. It bypasses the pending limit.
func (c *Conn) internal(ctx context.Context, l *link, action string) (rawman.Message, error) {
	w := &waiter{action: action, kind: kindInternal, id: c.nextID(), ready: make(chan struct{}, 1)}
	buf, err := encode(rawman.New("Action", action, "ActionID", w.id))
	if err != nil {
		return rawman.Message{}, err
	}
	if _, err := c.register(w, 0, l); err != nil {
		return rawman.Message{}, err
	}
	deadline, _ := ctx.Deadline()
	if sent, err := c.write(ctx, l, buf, deadline); !sent {
		c.abandon(w, false)
		return rawman.Message{}, err
	}
	var resp rawman.Message
	err = c.await(ctx, w, func(m rawman.Message) { resp = m })
	return resp, err
}

// register adds w to the pending table, and reserves the late-reply entry
// of an async Originate. want, if set, is the link w must go out on.
func (c *Conn) register(w *waiter, ttl time.Duration, want *link) (*link, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	l := c.link
	if l == nil || (want != nil && l != want) {
		cause := ErrNotConnected
		if c.state == StateClosed {
			cause = ErrClosed
		}
		return nil, &LinkError{PBX: c.name, Action: w.action, Err: cause}
	}
	if w.kind != kindInternal && len(c.waiters) >= c.cfg.MaxPending {
		return nil, fmt.Errorf("upstream: pbx %s: %s: %w (%d waiting)", c.name, w.action, ErrTooManyPending, len(c.waiters))
	}
	if w.kind == kindAsyncOriginate && w.cl != nil {
		if len(c.late) >= c.cfg.MaxLateReplies {
			c.expireLateLocked()
		}
		if len(c.late) >= c.cfg.MaxLateReplies {
			return nil, fmt.Errorf("upstream: pbx %s: %s: %w (%d late replies awaited)", c.name, w.action, ErrTooManyPending, len(c.late))
		}
		c.late[w.id] = lateEntry{cl: w.cl, clientID: w.clientID, expires: c.now().Add(ttl)}
	}
	c.waiters[w.id] = w
	return l, nil
}

// abandon forgets w after ctx ended. An async Originate that was sent
// keeps its late-reply entry: the call goes on in Asterisk.
func (c *Conn) abandon(w *waiter, sent bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.waiters[w.id] == w {
		delete(c.waiters, w.id)
	}
	if !sent {
		delete(c.late, w.id)
	}
}

// write sends one encoded frame on l. sent is false if ctx ended before
// the frame could be written, in which case nothing was written. A write
// error closes the connection, since a partial frame breaks the stream.
func (c *Conn) write(ctx context.Context, l *link, b []byte, deadline time.Time) (sent bool, err error) {
	if ctx.Err() != nil { // select would pick at random were the slot free
		return false, context.Cause(ctx)
	}
	select {
	case l.wsem <- struct{}{}:
	case <-ctx.Done():
		return false, context.Cause(ctx)
	}
	defer func() { <-l.wsem }()
	if !deadline.IsZero() {
		_ = l.nc.SetWriteDeadline(deadline)
		defer func() { _ = l.nc.SetWriteDeadline(time.Time{}) }()
	}
	if _, err := l.nc.Write(b); err != nil {
		_ = l.nc.Close()
		return true, err
	}
	return true, nil
}

// await drains w into fn until the reply is complete, the link fails or
// ctx ends.
func (c *Conn) await(ctx context.Context, w *waiter, fn func(rawman.Message)) error {
	finished := false
	defer func() {
		if !finished { // ctx ended, or fn panicked: forget w
			c.abandon(w, true)
		}
	}()
	var buf []rawman.Message
	for {
		msgs, complete, err := w.take(buf[:0])
		for i := range msgs {
			c.reply(w, msgs[i], fn)
		}
		clear(msgs)
		buf = msgs
		if complete {
			finished = true
			return nil
		}
		if err != nil {
			finished = true
			if errors.Is(err, ErrReplyTooLarge) {
				return fmt.Errorf("upstream: pbx %s: %s: %w", c.name, w.action, err)
			}
			c.synthesize(w, err, fn)
			return err
		}
		select {
		case <-w.ready:
		case <-ctx.Done():
			return fmt.Errorf("upstream: pbx %s: %s: %w", c.name, w.action, context.Cause(ctx))
		}
	}
}

// reply passes one reply message to fn with the client's ActionID.
func (c *Conn) reply(w *waiter, m rawman.Message, fn func(rawman.Message)) {
	if fn == nil {
		return
	}
	if w.kind == kindSyncOriginate {
		switch {
		case m.IsResponse() && strings.EqualFold(m.Response(), "Success"):
			return // the ack of the async Originate it was turned into
		case m.IsEvent() && strings.EqualFold(m.Event(), "OriginateResponse"):
			resp, text := "Success", "Originate successfully queued"
			if !strings.EqualFold(m.Get("Response"), "Success") {
				resp, text = "Error", "Originate failed"
			}
			out := rawman.New("Response", resp)
			if w.clientID != "" {
				_ = out.Add("ActionID", w.clientID) // valid: it came from a Message
			}
			_ = out.Add("Message", text)
			fn(out)
			return
		}
	}
	restoreID(&m, w.clientID)
	fn(m)
}

// synthesize passes the client the "Response: Error" of a LinkError.
func (c *Conn) synthesize(w *waiter, err error, fn func(rawman.Message)) {
	var le *LinkError
	if fn == nil || !errors.As(err, &le) {
		return
	}
	m := rawman.New("Response", "Error")
	if w.clientID != "" {
		_ = m.Add("ActionID", w.clientID)
	}
	_ = m.Add("Message", le.Public())
	fn(m)
}

// restoreID puts the client's ActionID back in place of the proxy's, at
// the same position, or removes it when the client sent none.
func restoreID(m *rawman.Message, clientID string) {
	if clientID == "" {
		m.Del("ActionID")
		return
	}
	_ = m.Set("ActionID", clientID) // valid: it came from a Message
}

func (c *Conn) nextID() string {
	return c.idPrefix + strconv.FormatUint(c.seq.Add(1), 36)
}

// route sends one message from the PBX where it belongs: to the action
// waiting for it, to the client awaiting a late reply, or to every
// subscriber. It runs on the reader goroutine and never blocks on a
// client.
func (c *Conn) route(m rawman.Message) {
	kind := m.Kind()
	if id, ok := m.Lookup("ActionID"); ok && strings.HasPrefix(id, c.idPrefix) {
		if c.routeOwned(kind, id, m) {
			return
		}
	}
	if kind != rawman.KindEvent {
		c.stray(m, "")
		return
	}
	c.eventsIn.Add(1)
	if c.nsubs.Load() == 0 {
		return
	}
	raw, err := encode(m)
	if err != nil {
		c.stray(m, "unencodable event")
		return
	}
	detachAll(c.publish(&Event{PBX: c.name, Msg: m, Raw: raw}))
}

// routeOwned handles a message carrying one of this Conn's ActionIDs. It
// returns false for an event that must be broadcast anyway (UserEvent,
// which Asterisk builds from the sender's headers, ActionID included).
func (c *Conn) routeOwned(kind rawman.Kind, id string, m rawman.Message) bool {
	c.mu.Lock()
	if w := c.waiters[id]; w != nil {
		accept, complete := false, false
		switch kind {
		case rawman.KindResponse:
			accept = true
			if !w.gotResp {
				w.gotResp = true
				ok := strings.EqualFold(m.Response(), "Success")
				switch {
				case m.IsListStart():
					w.inList = true
				case w.kind == kindSyncOriginate && ok:
					w.awaitOrig = true
				default:
					complete = true
				}
				if w.kind == kindAsyncOriginate && !ok {
					delete(c.late, id) // refused: no OriginateResponse will follow
				}
			}
		case rawman.KindEvent:
			switch {
			case w.inList:
				accept, complete = true, m.IsListComplete()
			case w.awaitOrig && strings.EqualFold(m.Event(), "OriginateResponse"):
				accept, complete = true, true
			}
		}
		if accept {
			if complete {
				delete(c.waiters, id)
				if w.cl != nil {
					c.recent[c.recentNext] = recentEntry{id: id, cl: w.cl, clientID: w.clientID}
					c.recentNext = (c.recentNext + 1) % recentReplies
				}
			}
			c.mu.Unlock()
			if !w.push(m, complete) {
				c.mu.Lock()
				if c.waiters[id] == w {
					delete(c.waiters, id)
				}
				c.mu.Unlock()
				c.stray(m, "reply backlog full")
			}
			return true
		}
	}
	switch kind {
	case rawman.KindEvent:
		if strings.EqualFold(m.Event(), "OriginateResponse") {
			if e, ok := c.late[id]; ok {
				delete(c.late, id)
				c.mu.Unlock()
				c.deliverReply(e.cl, e.clientID, m)
				return true
			}
		}
	case rawman.KindResponse:
		for _, e := range c.recent {
			if e.id == id {
				c.mu.Unlock()
				c.deliverReply(e.cl, e.clientID, m)
				return true
			}
		}
	}
	c.mu.Unlock()
	if kind == rawman.KindEvent && strings.EqualFold(m.Event(), "UserEvent") {
		return false
	}
	c.stray(m, "")
	return true
}

// deliverReply queues a late reply for the one client it belongs to.
func (c *Conn) deliverReply(cl *Client, clientID string, m rawman.Message) {
	restoreID(&m, clientID)
	raw, err := encode(m)
	if err != nil {
		c.stray(m, "unencodable reply")
		return
	}
	c.deliverTo(cl, &Event{PBX: c.name, Msg: m, Raw: raw, Reply: true})
}

// oversized handles a message the reader refused (larger than
// rawman.DefaultMaxMessage): the action it answers, if any, is failed.
func (c *Conn) oversized(fe *rawman.FrameError) {
	id := fe.Message.ActionID()
	c.mu.Lock()
	w := c.waiters[id]
	if w != nil {
		delete(c.waiters, id)
	}
	c.mu.Unlock()
	if w != nil {
		w.fail(ErrReplyTooLarge)
	}
	c.stray(fe.Message, fe.Err.Error())
}

// stray counts a message nobody can receive and logs it, rate-limited.
func (c *Conn) stray(m rawman.Message, why string) {
	n := c.strays.Add(1)
	if c.strayLog.allow(c.now()) {
		c.log.Warn("upstream: stray message from pbx dropped", slog.String("pbx", c.name),
			slog.String("response", m.Response()), slog.String("event", m.Event()),
			slog.String("reason", why), slog.Uint64("strays", n))
	}
}

// expireLate drops late-reply registrations whose time is up.
func (c *Conn) expireLate() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.expireLateLocked()
}

func (c *Conn) expireLateLocked() {
	now := c.now()
	for id, e := range c.late {
		if now.After(e.expires) {
			delete(c.late, id)
		}
	}
}

// originateTimeout is Originate's Timeout header (milliseconds, default
// 30000 as in Asterisk), capped at one hour.
func originateTimeout(v string) time.Duration {
	ms, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
	if err != nil || ms <= 0 {
		ms = 30000
	}
	return min(time.Duration(ms)*time.Millisecond, time.Hour)
}

// astTrue is Asterisk's ast_true.
func astTrue(v string) bool {
	switch strings.ToLower(v) {
	case "yes", "true", "y", "t", "1", "on":
		return true
	}
	return false
}

// encode renders m as AMI text in one right-sized allocation.
func encode(m rawman.Message) ([]byte, error) {
	n := 2
	for i := range m.Len() {
		h := m.At(i)
		n += len(h.Key) + len(h.Value) + 4
	}
	if b := m.Body(); b != "" {
		n += len(b) + 17
	}
	return rawman.Append(make([]byte, 0, n), m)
}
