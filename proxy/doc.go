// Package proxy is the client side of amiproxy: the [Gateway] that takes a
// request from an authenticated client through policy to the right PBX and
// back, shared by both front doors — the native AMI server (TCP and TLS)
// and the HTTP manager (/rawman, /mxml, /manager and their digest
// variants), which drive the same per-session logic.
//
// # Types
//
//   - [Config] tunes the Gateway (banner, default PBX, handshake timeout,
//     authlimit, login failure delay, per-client queue bound, write
//     timeout, loggers, clock, [Validator], revalidation interval); zero
//     fields take the Default* values.
//   - [Gateway], built by [NewGateway] from an upstream.Pool, a compiled
//     policy.Engine and an [Authenticator] (*auth.Local and *auth.Chain
//     satisfy it). [Gateway.ServeAMI] and [Gateway.ServeAMITLS] serve
//     listeners, [Gateway.Close] shuts everything down (they then return
//     [ErrClosed]), [Gateway.Stats] feeds metrics. [Gateway.SetPolicy],
//     [Gateway.SetAuthenticator], [Gateway.Revalidate] and
//     [Gateway.EndUserSessions] serve continuous authorisation (below).
//   - The unexported session type holds the AMI semantics of one client
//     independently of the transport: Login, the emulated session actions,
//     PBX selection, policy, forwarding, and the filtering of events. The
//     native door feeds it requests and events and writes what it returns.
//
// # What a client sees
//
// Unmodified AMI clients cannot tell the native door from Asterisk 22
// (testdata/transcripts/tcp-*.txt): the banner "Asterisk Call
// Manager/<version>" goes out in its own write at once (bytes the client
// sent before it are kept and read afterwards); requests are read with
// Asterisk's exact framing (rawman strict mode; framing errors get
// Asterisk's "Response: Error" with the ActionID, and reading goes on); a
// blank request gets "Missing action in request"; before Login only Login,
// Logoff and Challenge run, anything else gets "Permission denied" and the
// session stays open. Every reply is written whole, in one write, in the
// order of the requests; events never interleave with a reply.
//
// Where Asterisk would read the first of repeated headers and another
// reader might read another, the proxy refuses: a request that repeats
// Action, ActionID, Username, Secret, AuthType, Key, Server or Servers
// gets "Response: Error" / "Message: Failed to parse message: repeated
// <Key> header", is counted in Stats.FrameErrors, audited as a deny, and
// is never forwarded (over HTTP too, for repeated parameters).
//
// Limits (limit.go): Config.Limits throttles every Login before its
// credentials are checked (a refusal is a failed Login that never reached
// the Authenticator); MaxUnauthenticatedPerAddress caps the connections
// one address (IPv6 /64) holds before logging in; Config.ActionLimits
// answers an action over its per-user rate with "Rate limit exceeded for
// <Action>, retry later". Every limiter table is bounded.
//
// Login checks the credentials with the Authenticator (plain Secret, or
// AuthType MD5 with the Key computed over the session's Challenge; a JWT
// or minted secret in Secret is the Authenticator's business, and a Secret
// may fill the AMI line up to its 1023 bytes) and asks the policy engine
// what the user may do, with policy.Engine.SubjectFor over the Principal's
// username, groups and claims and the client's address. Before the
// Authenticator is called, the network rules (permit/deny) of the roles
// bound to the username alone are checked against the client's address
// (policy.Subject.AllowsAddr); after it, those of every role. A refusal
// is answered exactly like a wrong secret (the Authenticator is then not
// called) and audited with the rule. A failure of any kind (unknown
// user, bad secret or key, no PBX granted, a Server or Servers header
// naming a PBX the user may not use) waits LoginFailDelay, answers
// "Authentication failed" and closes the connection, as Asterisk does. On
// success the reply "Authentication accepted" and, when the session's event
// mask (Events header, Asterisk's strings_to_mask) and the user's read mask
// on the session PBX both hold system, an "Event: FullyBooted" block are
// written in one write. Its Uptime and LastReload are both the seconds
// since the Gateway was created (the proxy's own; it cannot know when the
// PBX booted without asking every login). SuccessfulAuth is not emitted:
// the proxy has no Asterisk session id or addresses to put in it, and no
// client depends on it. A second Login answers "Already authenticated".
//
// # Continuous authorisation
//
// A logged-in session stays authorised only while its credentials and its
// policy do. [Gateway.Revalidate] checks every live session (native and
// HTTP): Principal.Expires, then the [Validator] (Config.Validator, else
// the Authenticator when it implements Validate, as auth.Chain does:
// revoked tokens and minted secrets, removed accounts), then, when the
// policy engine changed, the user's roles, network rules and session PBX
// under the new engine. It runs on every SetPolicy and SetAuthenticator,
// and every Config.RevalidateInterval (default 250 ms, at most 500 ms)
// from a sweeper goroutine, so a session whose credentials are revoked or
// whose user is removed ends within a second without any notification.
// Sessions whose user keeps roles get their Subject recomputed at once:
// changed rights apply to their next action and event, and PBXs no longer
// granted stop sending events. [Gateway.EndUserSessions] ends a user's
// sessions on an administrator's request.
//
// An ended session first receives a notice, whatever its event mask and
// read rights:
//
//	Event: ProxySessionEnd
//	Privilege: system,all
//	Reason: revoked|expired|removed
//	Server: <session PBX>
//
// On the native door it follows what is already queued (a pending
// WaitEvent completes first), then the connection closes. An HTTP session
// delivers it to its pending WaitEvent (with the queued events), or else
// to its next request, which runs nothing and gets "Response: Error" /
// "Message: Session ended (<reason>)" and the notice (a WaitEvent: its
// usual completion around it); the session is then gone, and the cookie
// names nothing. A Validator error wrapping auth.ErrExpired gives
// "expired", auth.ErrRemoved "removed", anything else "revoked"; a context
// error ends nothing (retried at the next sweep). A request on a session
// whose Principal.Expires has passed ends it first, whatever the sweep's
// timing. Each end is counted in Stats.EndedRevoked, EndedExpired or
// EndedRemoved and audited ("session.end": reason, session, door, remote,
// user, principal, method, pbx, detail).
//
// # PBXs
//
// The session PBX is the user's only PBX; else the PBX named by a Server
// header on Login; else Config.DefaultPBX if the user may use it; else the
// first granted PBX in sorted order. Any later action may carry "Server:
// <name>" to address another granted PBX; the header is removed before the
// action is forwarded, and no action is ever sent to more than one PBX. A
// Server header naming a PBX the user may not use, or that does not exist,
// gets "Permission denied".
//
// By default a session receives the events of its session PBX only,
// byte for byte as the PBX sent them. A "Servers" header on Login or on the
// Events action — "*" for every granted PBX, or a comma-separated list —
// subscribes the session to those PBXs instead, and every event (and late
// reply) then carries "Server: <name>" right after its Privilege line (the
// first line that a client's first-match lookup finds, before any body
// header). Eventfilters see the event as the PBX sent it.
//
// # Actions
//
// The session-scoped actions are emulated and never forwarded: Login,
// Logoff ("Response: Goodbye", then close), Challenge (AuthType MD5; one
// challenge per session, reused), Events (EventMask as in Asterisk: "Events:
// On|Off", "Invalid event mask"), Filter (needs what the policy says, which
// is write system as in Asterisk; exact replies of ami-spec.md §5.5; at most
// 128 per session), WaitEvent (Asterisk's TCP semantics, see Events) and Ping,
// which the proxy answers itself ("Ping: Pong" and its own Timestamp): it
// is the client's keepalive towards the proxy, costs the shared PBX session
// nothing, and the proxy keeps its own keepalive with each PBX.
//
// Every other action goes to policy.Subject.Decide for the target PBX.
// The engine denies by default: an action it does not know (where
// Asterisk would answer "Invalid/unknown command") and the class-0
// actions that change state are refused unless a role lists them in
// allow_actions. A denial is answered exactly as Asterisk answers one, "Response: Error"
// with the client's ActionID and "Message: Permission denied" (or the
// engine's other public Reason): clients compare that text, so the
// reference of house style C4 goes to the audit log only, together with the
// rule and the client's ActionID, by which an operator finds it. An allowed
// action is sent with upstream.Conn.Do, which gives the client's ActionID
// back byte for byte; the whole reply (a list with all its items) is
// collected and written at once. A native client that pipelines has the
// requests it already sent (up to 64, stopping before a session-scoped
// action) run as a batch: each is checked in order as above, the
// forwarded ones go to their PBX together (upstream.Conn.Send, one write),
// and the replies are written together, in order, then the events that
// arrived meanwhile. Asterisk runs the shared session's actions in order,
// so the client sees what it would see one request at a time. ListCommands replies lose the lines of
// actions the user may not run (policy.Subject.ListCommandsAllowed). When
// the PBX link is down or drops, the client gets upstream's "Response:
// Error" naming the PBX and keeps its session. Failures that Asterisk has no
// text for get "Message: Action failed (ref <ref>)".
//
// # Events
//
// Each session has one upstream.Client subscribed to the PBXs it watches.
// Events pass, in order: Asterisk's read rule and the role eventfilters
// (policy.Subject.DeliverEvent, with the send mask = read mask ∩ Events
// mask), then the session's own Filter additions. The read rule is decided
// once per Privilege value per session view (DeliversClass), and the role
// filters once per event per filter set (Subject.FilterKey, shared by
// sessions of the same roles; upstream.Event.Memo), not once per session. Role filters are the
// administrator's limit: a Filter action can narrow what they let through
// but, unlike in Asterisk, never widen it. Events are written between
// replies, never inside one: while a request is being handled, events wait
// and follow its reply, as in Asterisk's session thread (so the
// OriginateResponse of an async Originate always follows "Originate
// successfully queued"). The async Originate's OriginateResponse reaches
// only the client that originated (upstream routes it), through the same
// checks. When a watched PBX link goes down or comes back the client gets
// "Event: ProxyUpstreamDown" or "Event: ProxyUpstreamUp" with "Privilege:
// system,all" and "Server: <name>", delivered like any system event.
// [Gateway.Close] sends Asterisk's own "Event: Shutdown" (Shutdown:
// Cleanly, Restart: False) to sessions that read system events, then
// closes them.
//
// WaitEvent follows Asterisk's TCP semantics (tcp-waitevent.txt): nothing
// is written until an event passes the checks, the Timeout (seconds;
// missing or -1: no limit; 0: at once) expires, or the client sends its
// next request; then "Response: Success" / "Message: Waiting for Event
// completed.", the events that ended the wait, and "Event:
// WaitEventComplete" with the ActionID, in one write.
//
// # HTTP manager
//
// [Gateway.NewHTTPManager] returns the HTTP door, an http.Handler serving
// /rawman, /mxml and /manager (mansession_id cookie sessions) and the
// digest variants /arawman, /amxml and /amanager, at the root (the session
// PBX chosen as for a TCP Login) and under /pbx/<name>/ (the request
// addresses that PBX: its Server parameter is replaced; a Login there
// makes it the session PBX; a PBX the user may not use, or one that does
// not exist, gets what the native door answers: "Permission denied", or
// "Authentication failed" for a Login). Answers match the recordings
// (testdata/transcripts/http-*.txt) byte for byte in status line, header
// set and body, with these exceptions: net/http writes the headers in
// sorted order (Cache-Control, Content-Length, Content-type, Date, Pragma,
// Server, Set-Cookie) where Asterisk writes Server, Date, Cache-Control,
// Content-type, Set-Cookie, Pragma, Content-Length; a Login answer carries
// no FullyBooted (as Asterisk over HTTP) and no SuccessfulAuth is queued
// (as on TCP), so the first WaitEvent after a Login has no backlog; and
// malformed HTTP (bad request line, oversized headers) gets Go's own 400
// or 431.
//
// Every AMI outcome is HTTP 200. A missing, unknown, expired or malformed
// cookie silently means a new session that is not logged in, with a fresh
// cookie (Set-Cookie: mansession_id="<8 hex>"; Version=1;
// Max-Age=<httptimeout>, and Pragma: SuppressEvents). Such a session is
// kept only if it holds a Challenge (at most 1024 of them, 5 s each);
// otherwise its cookie names nothing and the next request starts afresh,
// which a client cannot tell apart. Logged-in sessions live HTTPTimeout
// after their last request, at most MaxSessions of them (least recently
// used evicted); Logoff and a failed Login destroy the session. Ids are
// 32-bit as in Asterisk but never reused and unpredictable (see idGen).
// A parameter holding CR, LF or NUL after decoding (or a bad name) is
// refused: HTTP 200 with "Response: Error" / "Message: Invalid HTTP
// parameter: CR, LF or NUL is not allowed" in the request's format, and
// nothing is run or forwarded. Other methods than GET, HEAD and POST get
// 501, unknown URIs 404, form bodies over 40960 bytes 413, requests after
// Close 503, all with Asterisk's error page. HEAD runs the action like GET
// and sends the headers only.
//
// Events are queued per session from Login on, filtered exactly as for a
// TCP session, in a ring of SessionQueue events: when it is full the
// oldest is dropped, counted (HTTPStats.EventsDropped, Stats.EventsDropped)
// and logged, and the next WaitEvent batch starts with "Event:
// ProxyEventsDropped" / "Privilege: system,all" / "Dropped: <n>". No
// goroutine runs per session: a pending WaitEvent drains its session's
// upstream queue itself, and one sweeper goroutine per manager drains the
// others every 100 ms (and purges expired sessions every second).
// WaitEvent returns the queued events at once (one batch per call);
// otherwise it waits up to its Timeout, capped at the session's expiry
// minus 10 s (httptimeout - 10 s), for the first event that passes the
// filters (Asterisk also wakes on events its filters then drop). A second
// WaitEvent on the session ends the first with an empty answer (empty
// body in rawman, the recorded empty forms in mxml and manager), as do
// the session's end and the client leaving. A session logged in with
// Events off gets all classes at its first WaitEvent, as in Asterisk.
// Close answers pending WaitEvents with what is queued plus Asterisk's
// Shutdown event (for sessions that read system events).
//
// A request to a cookie URI (/rawman, /mxml, /manager, at the root or
// under /pbx/<name>/) with "Authorization: Bearer <token>" is
// authenticated on every request by the Authenticator with
// auth.Credentials.Token (the auth side caches verification) and runs on
// a server-side session keyed by the token's SHA-256: its events and
// WaitEvent belong to it, no cookie is read or set. The session logs in
// as for a Login (the path's PBX becomes the session PBX) and ends with
// the notice when the token expires or is revoked; Logoff ends it too.
// A cookie, nonce or token is not bound to an address, so a request of a
// logged-in HTTP session that comes from another address than its Login
// must pass the user's network rules too, or is answered "Permission
// denied" (and audited with the rule) without running.
// A malformed (not RFC 6750 b64token, over 16 KiB, several Authorization
// headers), unknown, refused or expired token, or one whose user may use
// no PBX, gets 401 with `WWW-Authenticate: Bearer error="invalid_token"`
// and an error page without detail, after LoginFailDelay; Config.Limits
// throttles them like failed digest requests.
//
// The digest URIs answer 401 with Asterisk's challenge (WWW-authenticate:
// Digest algorithm=MD5, realm, nonce, qop="auth", opaque). HA1 comes from
// HTTPConfig.Digest (NewDigestAccounts: the local accounts' plaintext
// secrets; an account with only a bcrypt hash cannot use digest and gets
// 401). Unlike Asterisk, only nonces the manager issued are accepted, for
// 62 s, with nc strictly increasing (a request without qop uses its nonce
// once), so a captured header cannot be replayed; the digest uri must be
// the request's own URI; a valid response with an unknown, stale or
// reused nonce gets 401 with a new nonce and stale=true (the new nonce
// keeps the session); a wrong response waits LoginFailDelay. A verified
// request runs its action directly, answered without Set-Cookie or
// Pragma. Each digest session (its events, its WaitEvent) belongs to its
// nonce and the nonces that renewed it, never to a cookie; Logoff ends it
// and revokes the nonce.
//
// # Limits
//
// HandshakeTimeout bounds TLS, banner and Login from accept (authtimeout;
// closed without a word, whatever the client is doing). MaxUnauthenticated
// bounds the connections not yet logged in (authlimit; the excess is closed
// before the banner). Credentials that expire (Principal.Expires) end the
// session with the ProxySessionEnd notice.
//
// A client's outgoing buffer has two bounded stages: its upstream.Client
// queue (upstream.Config.SubscriberQueue per PBX), which the PBX readers
// fill without ever blocking, and the proxy's queue of ClientQueue replies
// and events (at most 64 MiB), which the session's writer drains. The
// writer moves events from the first stage to the second only while the
// second has room; when it is full the session's reader stops reading
// requests too. When the upstream queue overflows (the session then ends
// at once, even while its writer is blocked), or a write makes no progress
// for WriteTimeout (Asterisk's writetimeout), the client is disconnected
// and counted in Stats.SlowDisconnects. Nothing a client does slows
// another client or the PBX link.
//
// # Logging
//
// Config.Audit gets one line per Login ("auth.login", result
// success|failure; bearer requests that fail too), one per session ended
// by continuous authorisation ("session.end"), and one per action ("ami.action": session, door, remote,
// user, principal, pbx, action, action_id, result allow|deny|error, rule,
// response, latency, ref). Config.Logger gets operational events. Neither
// ever sees a Secret, Key or bearer token value, or any header but the
// action name and ActionID; the attack suite (attack_test.go) scans them
// for every secret it uses.
//
// # Concurrency
//
// A Gateway is safe for concurrent use. Goroutines, owners and exits:
//
//   - the accept loop of each listener runs on the caller of ServeAMI and
//     ends when the listener closes, its ctx ends or Close is called; it
//     then shuts its sessions down and waits for them;
//   - two goroutines per native connection: amiConn.serve, owned by its
//     ServeAMI and the Gateway (Close waits for it), runs readLoop itself
//     and starts writeLoop, and returns when both have exited. writeLoop
//     is the only writer to the connection, and also moves the session's
//     events from its upstream.Client into the outgoing queue (filtering
//     them on the way). It parks on one channel, which the queue, the
//     upstream.Client (UseReady) and the session's end all signal; an
//     upstream.Client.OnClose hook ends the session at once when its
//     upstream queue overflows or the Pool closes. Each recovers from
//     panics, logs the stack and ends its own session only. A request
//     before Login runs on a short-lived goroutine of its own (the
//     Authenticator and policy go deep; the reader's stack stays small).
//     An idle session holds no read buffer: readLoop waits on a 512-byte
//     buffer and takes a pooled rawman.Reader only while bytes are
//     buffered (lazyreader.go), and parks with little on its stack (the
//     handshake and the running of requests have frames of their own), so
//     the runtime can shrink that stack back after a burst.
//   - one sweeper per HTTPManager, owned by it, ending at its Close
//     (which Gateway.Close calls); HTTP requests run on net/http's
//     goroutines, and Close waits for the ones in progress.
//   - one revalidation sweeper per Gateway, started with the first
//     logged-in session and ended by Close (which waits for it).
//     Revalidate calls are serialized; ending a session never blocks (the
//     front door writes the notice from its own goroutines).
//   - SetPolicy, SetAuthenticator and HTTPManager.SetDigest swap atomic
//     pointers: a Login in progress uses one engine and one
//     Authenticator throughout.
//
// Non-goals: certificate management (cmd/amiproxy hands in a *tls.Config),
// ActionID rewriting (done by upstream), closing the upstream.Pool (its
// owner does, after Close), reading configuration files (cmd/amiproxy
// reloads and calls the setters), and verifying tokens (package auth).
package proxy
