package proxy

import (
	"context"
	"errors"
	"net/netip"
	"sync"
	"time"

	"github.com/amiproxy/amiproxy/policy"
	"github.com/amiproxy/amiproxy/upstream"
)

// where says which cache of the HTTPManager holds an httpSession.
type where uint8

const (
	whereNone     where = iota // not kept: discarded after its request
	wherePending               // m.pending: not logged in, holds a Challenge
	whereSessions              // m.sessions: logged in (cookie or digest)
)

// httpSession is one HTTP manager session: the transport-independent
// session, its lifetime, and the queue of events kept for WaitEvent.
//
// Events reach it in two ways, with no goroutine of its own: a WaitEvent
// in progress drains the session's upstream.Client itself, and the
// manager's sweeper drains every session's upstream queue every
// sweepInterval, so that the upstream queue (which disconnects a client
// when it overflows) stays short while the client is between requests.
// Each event is filtered once, when drained (session.deliver), and kept in
// a ring of at most SessionQueue events that drops the oldest.
type httpSession struct {
	m      *HTTPManager
	id     uint32 // cookie value, or the first nonce of a digest session
	sess   *session
	digest bool
	bearer bool // keyed by a bearer token's hash, never by a cookie

	mu        sync.Mutex
	where     where
	dead      bool      // destroyed: evicted, expired, logged off
	busy      int       // requests in progress
	expires   time.Time // after the last request
	endNotice []byte    // the ProxySessionEnd notice, until delivered
	endSent   bool      // the notice went to a WaitEvent: destroy after it
	ring      eventRing
	dropped   uint64        // events dropped since the last WaitEvent
	dc        deliverCache  // read-rule cache of drain
	kick      chan struct{} // closed to end the WaitEvent in progress
	notify    chan struct{} // cap 1: the sweeper queued events
}

func (m *HTTPManager) newHTTPSession(remote netip.AddrPort, door string, digest bool) *httpSession {
	id := m.freshID()
	life := min(unauthLifetime, m.cfg.HTTPTimeout)
	hs := &httpSession{
		m:       m,
		id:      id,
		sess:    newSession(m.g, remote, door),
		digest:  digest,
		busy:    1,
		expires: time.Now().Add(life),
		notify:  make(chan struct{}, 1),
	}
	hs.sess.ender = hs
	return hs
}

// endSession is the HTTP part of ending a session for continuous
// authorisation: a pending WaitEvent answers with what is queued and the
// notice; otherwise the session stays (holding no subscription) so that
// its next request gets the notice, and is destroyed after that, or when
// its lifetime runs out. It never blocks.
func (hs *httpSession) endSession(notice []byte) {
	hs.mu.Lock()
	hs.endNotice = notice
	if hs.kick != nil {
		close(hs.kick)
		hs.kick = nil
	}
	hs.mu.Unlock()
	hs.sess.client.Close()
}

// takeEndNotice returns the end notice, once, for a WaitEvent to deliver.
func (hs *httpSession) takeEndNotice() []byte {
	hs.mu.Lock()
	defer hs.mu.Unlock()
	n := hs.endNotice
	if n != nil {
		hs.endNotice, hs.endSent = nil, true
	}
	return n
}

// endDelivered reports whether a WaitEvent delivered the end notice.
func (hs *httpSession) endDelivered() bool {
	hs.mu.Lock()
	defer hs.mu.Unlock()
	return hs.endSent
}

// freshID returns an id no kept session or nonce uses.
func (m *HTTPManager) freshID() uint32 {
	for {
		id, rekeyed := m.ids.next()
		if !rekeyed {
			return id
		}
		// After 2^32 ids a new key may repeat an id in use: skip those.
		if !m.sessions.Contains(id) && !m.pending.Contains(id) && !m.nonces.Contains(id) {
			return id
		}
	}
}

// onEvict returns the eviction callback of the cache w.
func (m *HTTPManager) onEvict(w where) func(uint32, *httpSession) {
	return func(_ uint32, hs *httpSession) {
		hs.mu.Lock()
		if hs.where != w { // moved to the other cache
			hs.mu.Unlock()
			return
		}
		hs.where = whereNone
		already := hs.dead
		hs.mu.Unlock()
		if !already && m.ctx.Err() == nil {
			m.stats.evicted.Add(1)
			m.g.log.Debug("proxy: http session evicted", "session", hs.sess.id)
		}
		hs.kill()
	}
}

// kill ends the session: a WaitEvent in progress ends (empty answer), the
// upstream subscription is released. It is idempotent and never blocks.
func (hs *httpSession) kill() {
	hs.mu.Lock()
	hs.dead = true
	if hs.kick != nil {
		close(hs.kick)
		hs.kick = nil
	}
	hs.ring = eventRing{}
	hs.mu.Unlock()
	hs.sess.close()
}

// lookup returns the live cookie session id names, marked busy, or nil.
func (m *HTTPManager) lookup(id uint32, now time.Time) *httpSession {
	if id == 0 {
		return nil
	}
	hs, ok := m.sessions.Get(id)
	if !ok {
		hs, ok = m.pending.Get(id)
	}
	if !ok || hs.digest || hs.bearer {
		return nil
	}
	hs.mu.Lock()
	if hs.dead || (hs.busy == 0 && hs.expiredLocked(now)) {
		hs.mu.Unlock()
		m.expire(hs)
		return nil
	}
	hs.busy++
	hs.mu.Unlock()
	return hs
}

// expiredLocked reports whether the session has outlived its lifetime.
// Expired credentials are the Gateway's business (session.checkEnded and
// Revalidate): they end the session with a notice. hs.mu must be held.
func (hs *httpSession) expiredLocked(now time.Time) bool {
	return now.After(hs.expires)
}

// expire removes an expired session.
func (m *HTTPManager) expire(hs *httpSession) {
	hs.mu.Lock()
	first := !hs.dead
	hs.dead = true
	hs.mu.Unlock()
	if first {
		m.stats.expired.Add(1)
	}
	m.remove(hs)
}

// remove takes hs out of its cache (the eviction callback then kills it)
// and kills it.
func (m *HTTPManager) remove(hs *httpSession) {
	hs.mu.Lock()
	w := hs.where
	hs.mu.Unlock()
	switch w {
	case whereSessions:
		m.sessions.Remove(hs.id)
	case wherePending:
		m.pending.Remove(hs.id)
	}
	hs.kill()
}

// release ends a request on hs: the lifetime restarts, and the session is
// kept, moved, or destroyed.
func (m *HTTPManager) release(hs *httpSession, o outcome) {
	now := time.Now()
	authed := hs.sess.loggedIn()
	hs.mu.Lock()
	hs.busy--
	life := unauthLifetime
	if authed || m.cfg.HTTPTimeout < unauthLifetime {
		life = m.cfg.HTTPTimeout
	}
	hs.expires = now.Add(life)
	if o.login {
		m.stats.created.Add(1)
	}
	dead, w := hs.dead, hs.where
	var keep where
	switch {
	case dead || o.close || m.ctx.Err() != nil:
		keep = whereNone
	case authed:
		keep = whereSessions
	case hs.sess.hasChallenge():
		keep = wherePending
	}
	switch {
	case dead:
	case keep == whereNone:
		hs.dead = true // destroyed, not evicted
	case keep != w:
		hs.where = keep
	}
	hs.mu.Unlock()
	switch {
	case dead:
		return
	case keep == whereNone:
		m.remove(hs) // where is unchanged: removes it from its cache
	case keep != w:
		// where is already the new cache: the old one's callback is a
		// no-op.
		if w == wherePending {
			m.pending.Remove(hs.id)
		}
		if keep == whereSessions {
			m.sessions.Add(hs.id, hs)
		} else {
			m.pending.Add(hs.id, hs)
		}
	}
}

// hasChallenge reports whether a Challenge was issued on the session.
func (s *session) hasChallenge() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.challenge != ""
}

// eventsOnIfOff is Asterisk's HTTP WaitEvent rule: a session whose event
// mask is off gets all classes (still limited by the read mask).
func (s *session) eventsOnIfOff() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.authed && s.mask == 0 {
		s.mask = policy.All
		s.rebuildViewLocked()
	}
}

// drainLocked moves what waits in the upstream queue into the ring,
// keeping what the session may see. buf is scratch space, returned for
// reuse. hs.mu must be held.
func (hs *httpSession) drainLocked(buf []*upstream.Event) []*upstream.Event {
	if hs.dead {
		return buf
	}
	evs := hs.sess.client.Drain(buf)
	filtered, dropped := 0, 0
	for i, ev := range evs {
		if b := hs.sess.deliver(ev, &hs.dc); b != nil {
			if hs.ring.push(b, hs.m.cfg.SessionQueue) {
				dropped++
			}
		} else {
			filtered++
		}
		evs[i] = nil
	}
	if filtered > 0 {
		hs.m.g.stats.filtered.Add(uint64(filtered))
	}
	if dropped > 0 {
		if hs.dropped == 0 {
			hs.m.g.log.Warn("proxy: http session queue full, dropping oldest events",
				"session", hs.sess.id, "queue", hs.m.cfg.SessionQueue)
		}
		hs.dropped += uint64(dropped)
		hs.m.stats.dropped.Add(uint64(dropped))
		hs.m.g.stats.dropped.Add(uint64(dropped))
	}
	return evs[:0]
}

// takeLocked empties the ring into a batch, headed by the drop notice when
// events were dropped. hs.mu must be held.
func (hs *httpSession) takeLocked() [][]byte {
	var out [][]byte
	if hs.dropped > 0 {
		b := appendHeader(nil, "Event", EventEventsDropped)
		b = appendHeader(b, "Privilege", policy.System.String())
		b = appendHeader(b, "Dropped", uintString(hs.dropped))
		out = append(out, append(b, "\r\n"...))
		hs.m.g.log.Info("proxy: http session told of dropped events", "session", hs.sess.id, "dropped", hs.dropped)
		hs.dropped = 0
	}
	n := hs.ring.n
	out = hs.ring.take(out)
	hs.m.g.stats.delivered.Add(uint64(n))
	return out
}

func uintString(v uint64) string {
	var b [20]byte
	i := len(b)
	for {
		i--
		b[i] = byte('0' + v%10)
		v /= 10
		if v == 0 {
			return string(b[i:])
		}
	}
}

// waitEvent is WaitEvent over HTTP (ami-spec.md §6.5): queued events
// return at once, one batch per call; otherwise it waits up to the
// Timeout, capped at the session's expiry - 10 s, for the first event. A
// newer WaitEvent on the session, or its destruction, ends it with an
// empty answer (ok true, out nil); so does the client leaving (ok false).
// Close ends it with the normal answer plus Asterisk's Shutdown event.
func (m *HTTPManager) waitEvent(ctx context.Context, hs *httpSession, wr waitReq) (out []byte, ok bool) {
	hs.sess.eventsOnIfOff()
	now := time.Now()
	kick := make(chan struct{})
	hs.mu.Lock()
	if hs.kick != nil {
		close(hs.kick) // the older WaitEvent answers empty
	}
	hs.kick = kick
	if hs.dead {
		close(kick)
		hs.kick = nil
	}
	// The expiry set by the previous request bounds the wait, as in
	// Asterisk (sessiontimeout - now - 10).
	maxWait := max(hs.expires.Sub(now)-waitEventMargin, 0)
	if hs.digest || hs.bearer || hs.expires.IsZero() {
		maxWait = max(m.cfg.HTTPTimeout-waitEventMargin, 0)
	}
	hs.mu.Unlock()
	defer func() {
		hs.mu.Lock()
		if hs.kick == kick {
			hs.kick = nil
		}
		hs.mu.Unlock()
	}()
	timeout := wr.timeout
	if timeout < 0 || timeout > maxWait {
		timeout = maxWait
	}
	var timer <-chan time.Time
	if timeout > 0 {
		t := time.NewTimer(timeout)
		defer t.Stop()
		timer = t.C
	}
	complete := func(extra []byte) []byte {
		hs.mu.Lock()
		hs.drainLocked(nil)
		evs := hs.takeLocked()
		hs.mu.Unlock()
		if extra != nil {
			evs = append(evs, extra)
		}
		w := &waiting{req: wr, events: evs}
		parts := w.complete(nil)
		n := 0
		for _, p := range parts {
			n += len(p)
		}
		b := make([]byte, 0, n) // one allocation: appends would regrow it per event
		for _, p := range parts {
			b = append(b, p...)
		}
		return b
	}
	cl := hs.sess.client
	for {
		hs.mu.Lock()
		hs.drainLocked(nil)
		ready := hs.ring.n > 0 || hs.dropped > 0
		hs.mu.Unlock()
		if ready || timeout == 0 {
			return complete(nil), true
		}
		select {
		case <-cl.Ready():
		case <-hs.notify:
		case <-kick:
			if n := hs.takeEndNotice(); n != nil {
				return complete(n), true
			}
			return nil, true
		case <-timer:
			return complete(nil), true
		case <-cl.Done():
			return complete(hs.takeEndNotice()), true
		case <-ctx.Done():
			if m.ctx.Err() != nil {
				return complete(hs.sess.shutdownEvent()), true
			}
			return nil, false
		}
	}
}

// sweep runs until Close: every sweepInterval it drains the upstream
// queues of the kept sessions, and every expireEvery sweeps it purges the
// expired sessions and nonces.
func (m *HTTPManager) sweep() {
	defer func() {
		if v := recover(); v != nil {
			m.g.stats.panics.Add(1)
			m.g.log.Error("proxy: http sweeper panicked", "panic", v)
		}
	}()
	t := time.NewTicker(sweepInterval)
	defer t.Stop()
	var buf []*upstream.Event
	for n := 1; ; n++ {
		select {
		case <-m.ctx.Done():
			return
		case <-t.C:
		}
		now := time.Now()
		expire := n%expireEvery == 0
		for _, hs := range m.sessions.Values() {
			cl := hs.sess.client
			select {
			case <-cl.Ready():
				hs.mu.Lock()
				before := hs.ring.n
				buf = hs.drainLocked(buf)
				queued := hs.ring.n > before
				hs.mu.Unlock()
				if queued {
					select {
					case hs.notify <- struct{}{}:
					default:
					}
				}
			default:
			}
			if hs.sess.endedReason() != "" {
				// Ended with a notice for its next request: kept until
				// then or until its lifetime runs out.
				if expire {
					m.expireIfIdle(hs, now)
				}
				continue
			}
			select {
			case <-cl.Done():
				// Too slow (upstream overflowed) or the Pool closed: the
				// session ends, as a TCP client is disconnected.
				if errors.Is(hs.sess.client.Err(), upstream.ErrSlowConsumer) {
					m.g.stats.slow.Add(1)
					m.g.log.Warn("proxy: http session too slow, dropped", "session", hs.sess.id)
				}
				m.remove(hs)
				continue
			default:
			}
			if expire {
				m.expireIfIdle(hs, now)
			}
		}
		if expire {
			for _, hs := range m.pending.Values() {
				m.expireIfIdle(hs, now)
			}
			m.expireNonces(now)
		}
	}
}

func (m *HTTPManager) expireIfIdle(hs *httpSession, now time.Time) {
	hs.mu.Lock()
	exp := hs.busy == 0 && hs.expiredLocked(now)
	hs.mu.Unlock()
	if exp {
		m.expire(hs)
	}
}

// eventRing is a FIFO of at most max events that drops the oldest. It
// allocates as it fills and lets go of its memory when emptied, so an idle
// session costs nothing here.
type eventRing struct {
	buf  [][]byte
	head int
	n    int
}

// push appends b and reports whether the oldest event was dropped.
func (r *eventRing) push(b []byte, limit int) (dropped bool) {
	if r.n == limit {
		r.buf[r.head] = b
		r.head = (r.head + 1) % len(r.buf)
		return true
	}
	if r.n == len(r.buf) {
		nb := make([][]byte, min(max(2*len(r.buf), 8), limit))
		for i := range r.n {
			nb[i] = r.buf[(r.head+i)%len(r.buf)]
		}
		r.buf, r.head = nb, 0
	}
	r.buf[(r.head+r.n)%len(r.buf)] = b
	r.n++
	return false
}

// take appends the events in order to dst and empties the ring.
func (r *eventRing) take(dst [][]byte) [][]byte {
	for i := range r.n {
		dst = append(dst, r.buf[(r.head+i)%len(r.buf)])
	}
	*r = eventRing{}
	return dst
}
