package upstream

import (
	"context"
	"sync"
	"sync/atomic"

	"github.com/amiproxy/amiproxy/rawman"
)

// LinkChange tells a client that the link to a PBX went away or came back.
type LinkChange int

// Link changes carried by Event.Link.
const (
	LinkNone LinkChange = iota // the Event is a message from the PBX
	LinkDown                   // the PBX went away; pending actions failed, events were missed
	LinkUp                     // the PBX is back (logged in again); events flow again
)

func (l LinkChange) String() string {
	switch l {
	case LinkDown:
		return "down"
	case LinkUp:
		return "up"
	}
	return "none"
}

// Event is one item of a Client's queue: an event from a PBX, a late reply
// addressed to this client only, or a change of a PBX link.
//
// Events fanned out to several clients are the same *Event: Msg and Raw
// are shared and MUST NOT be modified (Clone Msg before changing it).
type Event struct {
	// PBX is the configured name of the PBX the item comes from.
	PBX string
	// Msg is the message as the PBX sent it (for a late reply, with the
	// client's ActionID restored). Empty for link changes.
	Msg rawman.Message
	// Raw is Msg encoded once as AMI text, ready to write to a TCP client.
	Raw []byte
	// Reply marks a message addressed to this client only: the
	// OriginateResponse of its async Originate, or an extra response to
	// one of its actions that arrived after Do returned (AMI spec 3.6).
	Reply bool
	// Link is LinkDown or LinkUp for a link change, else LinkNone.
	Link LinkChange
	// Err is the cause of a LinkDown, for logs only.
	Err error

	memo atomic.Pointer[[]memoEntry] // Memo's results, copy-on-write
}

type memoEntry struct {
	key any
	val bool
}

// maxMemo bounds the results an Event remembers: past it Memo computes
// without remembering.
const maxMemo = 16

// Memo returns f(), computed once per key for this Event and remembered:
// the clients reading one fanned-out Event can share a decision that
// depends only on the event and key (for example one eventfilter set's
// verdict, keyed by policy.Subject.FilterKey). key must be comparable and
// not nil. Safe for concurrent use; f may run more than once for a key when
// called concurrently, so it must not have side effects.
func (e *Event) Memo(key any, f func() bool) bool {
	p := e.memo.Load()
	if p != nil {
		for _, m := range *p {
			if m.key == key {
				return m.val
			}
		}
	}
	v := f()
	for {
		var n int
		if p != nil {
			n = len(*p)
		}
		if n >= maxMemo {
			return v
		}
		next := make([]memoEntry, n, n+1)
		if p != nil {
			copy(next, *p)
		}
		next = append(next, memoEntry{key, v})
		if e.memo.CompareAndSwap(p, &next) {
			return v
		}
		p = e.memo.Load()
		for _, m := range *p {
			if m.key == key {
				return m.val
			}
		}
	}
}

// Client is one subscriber: an opaque handle for one proxy session, with
// one bounded queue that receives the events of the PBXs it subscribed to
// (Conn.Subscribe), the late replies to its own actions, and link changes.
// upstream never learns who the end user is.
//
// Create one with Pool.NewClient; the zero value is not usable. A Client is
// safe for concurrent use; typically one goroutine reads it (Next,
// NextBatch) while PBX readers fill it. Close it when the session ends.
// The queue is bounded per PBX by that PBX's Config.SubscriberQueue: a
// delivery beyond the bound closes the client with ErrSlowConsumer, and
// the drop is counted (Conn Stats Dropped and SlowDisconnects,
// ClientStats.Dropped). Events already queued can still be read; after
// them Next returns the cause.
type Client struct {
	pool  *Pool
	ready chan struct{} // cap 1: signalled when the queue becomes non-empty
	done  chan struct{} // closed by closeWith

	mu        sync.Mutex
	items     []qitem
	head      int
	subs      []*subscription // one per Conn it has used: few, and a slice is smaller than a map
	closed    bool
	err       error
	delivered uint64
	dropped   uint64
	onClose   func(cause error)
}

// qitem is one queued event and the subscription whose budget it uses.
type qitem struct {
	ev  *Event
	sub *subscription
}

// subscription is the link between one Client and one Conn: the budget of
// that PBX's events in the client's queue. active means the client
// receives the Conn's broadcast events; an inactive one only carries
// late replies. queued is guarded by cl.mu. on (set while on the
// Conn's broadcast list and live: the reader delivers only then) and
// listed (present in the list, perhaps dead) change under conn.subMu.
type subscription struct {
	cl     *Client
	conn   *Conn
	limit  int
	queued int
	active bool
	listed bool
	on     atomic.Bool
}

// ClientStats is a snapshot of a Client's counters.
type ClientStats struct {
	Queued    int    // events waiting to be read
	Delivered uint64 // events put in the queue
	Dropped   uint64 // events refused because the queue was full
}

type pushResult int

const (
	pushed pushResult = iota
	pushClosed
	pushOverflow
)

func newClient(p *Pool) *Client {
	return &Client{
		pool:  p,
		ready: make(chan struct{}, 1),
		done:  make(chan struct{}),
	}
}

// subFor returns the subscription record of cn, creating an inactive one.
// cl.mu must be held.
func (cl *Client) subFor(cn *Conn) *subscription {
	if s := cl.subLocked(cn); s != nil {
		return s
	}
	s := &subscription{cl: cl, conn: cn, limit: cn.cfg.SubscriberQueue}
	cl.subs = append(cl.subs, s)
	return s
}

// subLocked returns the subscription record of cn, or nil. cl.mu must be
// held.
func (cl *Client) subLocked(cn *Conn) *subscription {
	for _, s := range cl.subs {
		if s.conn == cn {
			return s
		}
	}
	return nil
}

// push adds ev to the queue without ever blocking. On overflow the client
// is closed with ErrSlowConsumer; the caller counts and logs it, and calls
// detach once it holds no Conn lock.
func (cl *Client) push(s *subscription, ev *Event) pushResult {
	cl.mu.Lock()
	if cl.closed {
		cl.mu.Unlock()
		return pushClosed
	}
	if s.queued >= s.limit {
		cl.dropped++
		f := cl.closeLocked(ErrSlowConsumer)
		cl.mu.Unlock()
		if f != nil {
			f(ErrSlowConsumer)
		}
		return pushOverflow
	}
	s.queued++
	cl.delivered++
	wasEmpty := cl.head == len(cl.items)
	cl.items = append(cl.items, qitem{ev, s})
	cl.mu.Unlock()
	if wasEmpty {
		select {
		case cl.ready <- struct{}{}:
		default:
		}
	}
	return pushed
}

// popLocked moves up to max queued events to dst. cl.mu must be held.
func (cl *Client) popLocked(dst []*Event, max int) []*Event {
	n := min(len(cl.items)-cl.head, max)
	for i := cl.head; i < cl.head+n; i++ {
		it := &cl.items[i]
		it.sub.queued--
		dst = append(dst, it.ev)
		*it = qitem{}
	}
	cl.head += n
	if cl.head == len(cl.items) {
		cl.items, cl.head = cl.items[:0], 0
	} else if cl.head > 1024 && cl.head > len(cl.items)/2 {
		k := copy(cl.items, cl.items[cl.head:])
		clear(cl.items[k:])
		cl.items, cl.head = cl.items[:k], 0
	}
	return dst
}

// Next returns the next queued item, waiting until there is one, the
// client is closed (then it returns the cause once the queue is empty:
// ErrSlowConsumer or ErrClosed) or ctx ends.
func (cl *Client) Next(ctx context.Context) (*Event, error) {
	var one [1]*Event
	evs, err := cl.next(ctx, one[:0], 1)
	if err != nil {
		return nil, err
	}
	return evs[0], nil
}

// NextBatch is like Next but appends every queued item to buf[:0] at once,
// which saves a lock round trip per event on a busy stream.
func (cl *Client) NextBatch(ctx context.Context, buf []*Event) ([]*Event, error) {
	return cl.next(ctx, buf[:0], int(^uint(0)>>1))
}

func (cl *Client) next(ctx context.Context, dst []*Event, max int) ([]*Event, error) {
	for {
		cl.mu.Lock()
		if cl.head < len(cl.items) {
			dst = cl.popLocked(dst, max)
			cl.mu.Unlock()
			return dst, nil
		}
		if cl.closed {
			err := cl.err
			cl.mu.Unlock()
			return dst, err
		}
		cl.mu.Unlock()
		select {
		case <-cl.ready:
		case <-cl.done:
		case <-ctx.Done():
			return dst, context.Cause(ctx)
		}
	}
}

// Drain appends every queued item to buf[:0] without waiting.
func (cl *Client) Drain(buf []*Event) []*Event {
	cl.mu.Lock()
	defer cl.mu.Unlock()
	return cl.popLocked(buf[:0], int(^uint(0)>>1))
}

// DrainUpTo is Drain for at most max items (none when max <= 0): a
// reader that has room for only that many leaves the rest in the queue,
// where they keep counting against the bound.
func (cl *Client) DrainUpTo(buf []*Event, max int) []*Event {
	if max <= 0 {
		return buf[:0]
	}
	cl.mu.Lock()
	defer cl.mu.Unlock()
	return cl.popLocked(buf[:0], max)
}

// Ready returns a channel that receives a value when items may be queued.
// It suits a select loop: on receive, call Drain. A receive can be stale;
// Drain then returns nothing.
func (cl *Client) Ready() <-chan struct{} { return cl.ready }

// UseReady makes the client signal ch (a non-blocking send) instead of
// its own Ready channel, so that its reader can wait on one channel for
// this client and its other work. ch must be buffered (capacity 1
// suffices). Call it before the client subscribes or sends an action.
func (cl *Client) UseReady(ch chan struct{}) {
	cl.mu.Lock()
	cl.ready = ch
	cl.mu.Unlock()
}

// Done returns a channel closed when the client is closed, by Close, by
// Pool.Close, or for being too slow.
func (cl *Client) Done() <-chan struct{} { return cl.done }

// Err returns nil while the client is open, then why it was closed:
// ErrSlowConsumer or ErrClosed.
func (cl *Client) Err() error {
	cl.mu.Lock()
	defer cl.mu.Unlock()
	return cl.err
}

// Stats returns a snapshot of the client's counters.
func (cl *Client) Stats() ClientStats {
	cl.mu.Lock()
	defer cl.mu.Unlock()
	return ClientStats{Queued: len(cl.items) - cl.head, Delivered: cl.delivered, Dropped: cl.dropped}
}

// Close unsubscribes the client from every PBX and discards its queue. It
// is idempotent. Late replies addressed to it are then dropped.
func (cl *Client) Close() {
	cl.closeWith(ErrClosed)
	cl.mu.Lock()
	clear(cl.items)
	cl.items, cl.head = nil, 0
	cl.mu.Unlock()
}

func (cl *Client) closeWith(cause error) {
	cl.mu.Lock()
	f := cl.closeLocked(cause)
	cl.mu.Unlock()
	if f != nil {
		f(cause)
	}
	cl.detach()
}

// closeLocked marks the client closed and returns the OnClose function to
// call, once cl.mu is released, if this call closed it. cl.mu must be
// held.
func (cl *Client) closeLocked(cause error) func(error) {
	if cl.closed {
		return nil
	}
	cl.closed, cl.err = true, cause
	close(cl.done)
	return cl.onClose
}

// OnClose sets f to be called once when the client is closed (by Close,
// Pool.Close, or for being too slow), with the cause, on the goroutine
// that closes it: possibly a PBX reader, so f must not block and must not
// call into upstream; it may use the Client's own methods. A reader that
// is busy elsewhere (writing to a slow socket) learns of the close at
// once this way, without a goroutine waiting on Done. Set it before the
// client subscribes; it is not called for a client already closed.
func (cl *Client) OnClose(f func(cause error)) {
	cl.mu.Lock()
	cl.onClose = f
	cl.mu.Unlock()
}

// detach removes a closed client's subscriptions from their Conns and the
// client from the pool. It must be called without cl.mu or any Conn's
// subMu held; concurrent calls are safe.
func (cl *Client) detach() {
	cl.mu.Lock()
	var subs []*subscription
	for _, s := range cl.subs {
		if s.active {
			s.active = false
			subs = append(subs, s)
		}
	}
	cl.mu.Unlock()
	for _, s := range subs {
		s.conn.removeSub(s)
	}
	if cl.pool != nil {
		cl.pool.forget(cl)
	}
}
