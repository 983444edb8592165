package proxy

import (
	"context"
	"errors"
	"sync"
)

// outKind says what an outItem is.
type outKind uint8

const (
	outData  outKind = iota // a reply from the session, written as is
	outEvent                // an event (or late reply) from the upstream queue
	outWait                 // a WaitEvent: hold events back, then frame them
	outEnd                  // end of stream: write what precedes, then end
)

// outItem is one entry of a client's outgoing queue. b may be shared with
// other sessions (an upstream Event.Raw) and is never modified.
type outItem struct {
	kind outKind
	b    []byte
	wait waitReq
}

// errAborted is returned by put when its abort channel closed.
var errAborted = errors.New("proxy: queue wait aborted")

// outQueue is the bounded queue between a session's producers (the reader
// with replies; the writer itself with events) and its
// writer, the only goroutine that writes to the client. It is the second
// stage of a client's outgoing buffer; the first is the session's
// upstream.Client queue, which the PBX readers fill without ever blocking.
//
// The reader, finding the queue full, waits for the writer (put): it then
// stops reading requests (TCP flow control pushes back on a client that
// pipelines without reading). The writer moves events from the upstream
// queue only as far as there is room (room, offer); otherwise they stay
// in the upstream queue, which keeps filling until upstream closes the
// client with ErrSlowConsumer; the session is then disconnected and
// counted (house style C9). The producers belong to one session, so
// waiting blocks nobody else. After finish, items are dropped.
//
// The zero value is not usable; create one with newOutQueue. An outQueue is
// safe for concurrent use.
type outQueue struct {
	maxItems, maxBytes int
	ready              chan struct{} // cap 1: signalled when items arrive

	mu      sync.Mutex
	items   []outItem
	bytes   int       // of items and held
	holding bool      // a request is being handled: events wait in held
	held    []outItem // events that arrived while holding
	ended   bool
	space   chan struct{} // closed (and replaced) when room is made
}

func newOutQueue(maxItems, maxBytes int) *outQueue {
	return &outQueue{maxItems: maxItems, maxBytes: maxBytes, ready: make(chan struct{}, 1), space: make(chan struct{})}
}

// put appends items in order, waiting for room while the queue is full,
// until ctx ends (its cause is returned) or abort closes (errAborted).
// While a request is being handled (hold), events are set aside and follow
// its reply (release). An item larger than maxBytes is admitted into an
// empty queue, so one big reply can always be sent.
func (q *outQueue) put(ctx context.Context, abort <-chan struct{}, items ...outItem) error {
	for len(items) > 0 {
		q.mu.Lock()
		if q.ended {
			q.mu.Unlock()
			return nil
		}
		dst := &q.items
		if q.holding && items[0].kind == outEvent {
			dst = &q.held
		}
		n := 0
		for n < len(items) && q.fits(len(items[n].b)) {
			*dst = append(*dst, items[n])
			q.bytes += len(items[n].b)
			n++
		}
		space := q.space
		q.mu.Unlock()
		if n > 0 {
			if dst == &q.items {
				q.signal()
			}
			items = items[n:]
			continue
		}
		select {
		case <-space:
		case <-abort:
			return errAborted
		case <-ctx.Done():
			return context.Cause(ctx)
		}
	}
	return nil
}

// offer is put without waiting, for the writer's own event pump: it
// appends the leading items that fit and returns how many it took.
func (q *outQueue) offer(items []outItem) int {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.ended {
		return len(items) // dropped, as put drops them
	}
	dst := &q.items
	if q.holding {
		dst = &q.held
	}
	n := 0
	for n < len(items) && q.fits(len(items[n].b)) {
		*dst = append(*dst, items[n])
		q.bytes += len(items[n].b)
		n++
	}
	return n
}

// room returns how many more items the queue takes before it is full by
// count (the byte bound is checked by offer).
func (q *outQueue) room() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.ended {
		return 0
	}
	return max(q.maxItems-len(q.items)-len(q.held), 0)
}

// fits reports whether an item of size bytes may be added. q.mu must be
// held.
func (q *outQueue) fits(size int) bool {
	n := len(q.items) + len(q.held)
	return n == 0 || (n < q.maxItems && q.bytes+size <= q.maxBytes)
}

// hold sets events aside from now on, until release: a request is being
// handled, and Asterisk writes events only between replies. Without it an
// event the PBX sent after a reply (the OriginateResponse after
// "Originate successfully queued") could overtake it.
func (q *outQueue) hold() {
	q.mu.Lock()
	q.holding = true
	q.mu.Unlock()
}

// release queues the replies of the requests being handled (none, one,
// or a batch's, in order), then the events set aside meanwhile, and stops
// holding. It waits for room like put; replies larger than the bounds
// are admitted into an empty queue, so they can always be sent.
func (q *outQueue) release(ctx context.Context, replies ...outItem) error {
	size := 0
	for _, it := range replies {
		size += len(it.b)
	}
	for {
		q.mu.Lock()
		if q.ended {
			q.holding, q.held = false, nil
			q.mu.Unlock()
			return nil
		}
		if len(replies) == 0 || len(q.items) == 0 || (len(q.items)+len(replies) <= q.maxItems && q.bytes+size <= q.maxBytes) {
			q.items = append(q.items, replies...)
			q.bytes += size
			q.items = append(q.items, q.held...)
			clear(q.held)
			q.held = q.held[:0]
			q.holding = false
			q.wake()
			q.mu.Unlock()
			q.signal()
			return nil
		}
		space := q.space
		q.mu.Unlock()
		select {
		case <-space:
		case <-ctx.Done():
			return context.Cause(ctx)
		}
	}
}

// wake tells producers waiting for room to look again. q.mu must be held.
func (q *outQueue) wake() {
	close(q.space)
	q.space = make(chan struct{})
}

// finish queues final (if any) and the end marker, whatever the bounds,
// and drops every later item. It is idempotent.
func (q *outQueue) finish(final []byte) {
	q.mu.Lock()
	if q.ended {
		q.mu.Unlock()
		return
	}
	q.ended = true
	q.holding, q.held = false, nil
	if len(final) > 0 {
		q.items = append(q.items, outItem{kind: outData, b: final})
	}
	q.items = append(q.items, outItem{kind: outEnd})
	q.mu.Unlock()
	q.signal()
}

// isEnded reports whether finish was called.
func (q *outQueue) isEnded() bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.ended
}

// len returns the number of queued items.
func (q *outQueue) len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.items)
}

func (q *outQueue) signal() {
	select {
	case q.ready <- struct{}{}:
	default:
	}
}

// take moves every queued item to dst[:0] without waiting and wakes the
// producers waiting for room.
func (q *outQueue) take(dst []outItem) []outItem {
	dst = dst[:0]
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.items) == 0 {
		return dst
	}
	for _, it := range q.items {
		q.bytes -= len(it.b)
	}
	dst = append(dst, q.items...)
	clear(q.items)
	q.items = q.items[:0]
	if cap(q.items) > 4*q.maxItems/3+64 { // let a burst's backing array go
		q.items = nil
	}
	q.wake()
	return dst
}
