// Package upstream is the PBX side of amiproxy: one persistent, managed,
// multiplexed AMI session per PBX, logged in with the proxy's own service
// account, shared by every client of the proxy. It correlates replies by
// ActionID, collects EventList replies, routes late replies, and fans
// events out to subscribers without ever blocking the PBX reader. It never
// learns who the end user is: a client is an opaque [Client] handle.
//
// # Types
//
//   - [Config] describes one PBX (address, service account, [TLS],
//     timeouts, queue bounds). Zero fields take the Default* values in
//     [NewPool]; [Config.Validate] reports every problem and changes
//     nothing. [Secret] never prints.
//   - [Pool] holds one [Conn] per PBX ([Pool.Get]); [Options] injects the
//     logger, clock, jitter source and dialer.
//   - [Conn] is the managed session: [Conn.Do] forwards an action,
//     [Conn.Send] pipelines several actions of one client in one write
//     (each [Pending] then reads its reply as Do would),
//     [Conn.Subscribe] attaches a [Client], [Conn.State], [Conn.Versions],
//     [Conn.Stats] report on it.
//   - [Client] is a subscriber: one bounded queue of [Event] values
//     (events, replies addressed to it alone, and [LinkChange] notices),
//     read with Next/NextBatch, or Ready and Drain/DrainUpTo in a select
//     loop; [Client.OnClose] tells its owner at once when it is closed.
//
// # Lifecycle of a link
//
// The manager goroutine of each Conn dials (Options.Dial, DialTimeout),
// completes TLS if enabled (CAFile or system roots; ServerName or the host
// of Address), reads the banner, logs in (plain Login, or Challenge and an
// MD5 Key when AuthMD5 is set) and sends CoreSettings to learn
// AsteriskVersion and AMIversion, all within HandshakeTimeout. Events read
// during this handshake (FullyBooted and SuccessfulAuth of the proxy's own
// login) are not delivered; they are counted in Stats.Skipped. The link is
// then up: subscribers get a LinkUp item, actions are forwarded, a reader
// goroutine routes everything the PBX sends and a keepalive goroutine
// sends Ping every PingInterval. A Ping without a reply within PingTimeout
// (a hung PBX still emitting events is caught too), a read or write error,
// or EOF tears the link down: every pending action fails at once, and
// subscribers get a LinkDown item. The manager then waits and reconnects.
//
// Reconnect backoff is capped exponential with full jitter: before attempt
// n (from 0) it waits a uniformly random time in
// [0, min(ReconnectMax, ReconnectMin·2ⁿ)). n grows with every failed
// attempt (dial, TLS, banner, Login, CoreSettings) and with every link
// that drops less than ReconnectMax after coming up, so a PBX that accepts
// and drops, or refuses the login, is not hammered; it starts again from 0
// after a link stayed up for ReconnectMax. With the defaults (500 ms, 15 s)
// a restarted PBX is back at most about 15 s after it listens again, and
// many PBXs restarting together are spread over the jitter window.
//
// # Actions and ActionIDs
//
// [Conn.Do] forwards one action on the shared session and calls its
// callback, on the caller's goroutine, for every message of the reply.
// The client's ActionID never reaches the PBX: Do removes it and adds a
// proxy ActionID "<nonce>.<conn>.<seq>" (an 8-character random base32
// nonce per Pool, the PBX's index and a sequence number, both in base 36;
// at most 36 bytes, well under the 64 that AMI spec 3.7 allows). The nonce
// keeps the ids of two proxies, or of other AMI clients of the same
// account, apart: they all receive each other's OriginateResponse events.
// On the way back the proxy id is replaced, at the same position, by the
// client's original bytes, or removed when the client sent none or an
// empty one (Asterisk reads the first ActionID header and omits it from
// replies when it is empty). Two clients that both use ActionID "0" never
// see each other's replies.
//
// A reply is the first Response with the proxy id; if it opens a list
// ("EventList: start", case ignored) every event with the id up to the one
// with "EventList: Complete"; extra Responses with the id while the reply
// is open go to the callback too. Responses that arrive after Do returned
// (ModuleLoad answers up to three times, AMI spec 3.6) are delivered to
// the client's queue as Event.Reply for the last 64 completed actions per
// PBX. A message carrying one of this Conn's ids that nobody awaits any
// more (its Do's ctx ended, or an old list) is dropped and counted in
// Stats.Strays, never broadcast; the exception is UserEvent, which
// Asterisk builds from the sender's headers, ActionID included, and
// broadcasts to every session.
//
// Session-scoped actions (Login, Logoff, Challenge, Events, Filter,
// WaitEvent) change or block the one shared session; Do refuses them with
// [ErrSessionAction] and the proxy emulates them per client session.
//
// Originate is special twice. With "Async" true (ast_true: yes, true, y, t,
// 1, on), the OriginateResponse event that arrives later carries the proxy
// id; it is delivered only to the client that asked, with its ActionID
// restored, as Event.Reply in its queue. These late-reply registrations are
// bounded: at most MaxLateReplies per PBX (Do then fails with
// [ErrTooManyPending] before sending) and each expires after LateReplyTTL
// plus the Originate's Timeout header (30 s if absent, capped at 1 h). They
// survive reconnects, because Asterisk broadcasts OriginateResponse to
// every session, including the proxy's next one. A synchronous Originate
// would block the shared session (and every other client, and the
// keepalive) until the call is answered, so Do sends it with "Async: true"
// and answers as Asterisk's synchronous Originate would, once the
// OriginateResponse arrives: "Response: Success" / "Originate successfully
// queued", or "Response: Error" / "Originate failed".
//
// When the link is not up, or drops while an action is pending, Do passes
// the callback a synthesized "Response: Error" whose Message names the PBX
// ("PBX east went away: action aborted", "PBX east is not connected") and
// returns a [*LinkError]. At most MaxPending actions may wait for replies
// per PBX.
//
// # Events and the overflow policy
//
// The reader parses each event once, encodes it once (Event.Raw) and
// shares the same *Event with every subscriber: Msg and Raw are read-only.
// Delivery never blocks: each subscription has a budget of SubscriberQueue
// items of that PBX in the client's queue. A delivery beyond the budget
// does not wait and does not silently drop: the client is closed with
// [ErrSlowConsumer] (its Done channel closes; what was queued can still be
// read, then Next returns the cause), the drop is counted (Stats.Dropped,
// Stats.SlowDisconnects, ClientStats.Dropped) and logged at most once a
// second. The proxy then disconnects that client, as Asterisk disconnects
// a client that stops reading. A fast subscriber is unaffected. Link
// changes use the same queue, so a client learns, in order with the
// events, that a PBX went away (events were missed, pending actions
// failed) and came back.
//
// The reader walks a snapshot of the subscriber list without locks.
// Subscribe appends in place past every published snapshot (copying only to
// grow it), and Unsubscribe marks the entry dead (the reader skips it) and
// copies only when over half the list is dead, so n sessions subscribing
// and leaving cost O(n) in total. [Event.Memo] lets the readers of one
// shared Event compute a decision once per key (the proxy: once per role
// eventfilter set) instead of once per subscriber.
//
// # Concurrency
//
// Pool, Conn and Client are safe for concurrent use. Goroutines, their
// owners and exits:
//
//   - Conn.manage, one per PBX, owned by the Pool: ends when Pool.Close
//     cancels it, after its link goroutines have exited.
//   - Conn.readLoop and Conn.keepalive, one pair per link, started and
//     waited for by the manager (Conn.serve): they end when the
//     connection fails or is closed. A panic in either is logged with its
//     stack and tears down that link only, which is then reconnected.
//
// Writes to a PBX are serialized by a one-slot semaphore, so each action
// (each Send: its actions' frames together) is one Write and frames never
// interleave; Do and Send write on the caller's goroutine (no hand-off),
// and a caller blocked behind a stuck write gives up when its ctx ends,
// having written nothing. A Client's OnClose function runs on the
// goroutine that closes it (a PBX reader for an overflow), outside the
// Client's lock. The keepalive writes with a deadline of
// PingTimeout, so a PBX that stops reading is caught too. [Pool.Close]
// sends Logoff on every live link (waiting at most PingTimeout for the
// Goodbye), fails pending actions, waits for every goroutine and closes
// every Client with [ErrClosed]; it is idempotent.
//
// Time comes from Options.Now for timestamps and late-reply expiry;
// timers use the time package, so tests drive backoff and keepalive with
// testing/synctest.
//
// # Non-goals
//
// No policy (who may run what, which events a client may see: package
// policy does that with the Event values), no authentication of clients,
// no client protocol (package proxy owns the client sockets and the
// emulated session actions). One session per PBX: Asterisk runs one
// session's actions strictly in order, so a slow action delays the others
// (the keepalive included). Replies of Asterisk 11 and older list actions
// that lack "EventList: start" are not collected. Message bodies larger
// than rawman.DefaultMaxMessage fail the action with [ErrReplyTooLarge].
package upstream
