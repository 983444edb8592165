package proxy

import (
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/amiproxy/amiproxy/auth"
	"github.com/amiproxy/amiproxy/policy"
	"github.com/amiproxy/amiproxy/rawman"
	"github.com/amiproxy/amiproxy/upstream"
)

// session is one client's AMI session, independent of the transport: the
// login state, the session PBX, the event mask, the session's own Filter
// additions and its upstream.Client. A front door feeds it requests with
// handle and events with deliver, and writes what they return; the native
// AMI door (amiConn) and the HTTP manager drive the same type.
//
// handle may run concurrently with deliver and shutdownEvent; the state is
// guarded by mu (never held across I/O or upstream calls) and the event
// path reads an immutable eventView through an atomic pointer.
type session struct {
	g      *Gateway
	id     uint64
	remote netip.AddrPort
	door   string           // "ami", "ami-tls" (audit)
	sni    string           // TLS server name the client asked for; set before any request
	client *upstream.Client // subscriber handle; closed by close

	loginMu sync.Mutex // serializes Login attempts (HTTP requests may overlap)

	mu        sync.Mutex
	challenge string
	authed    bool
	principal auth.Principal
	engine    *policy.Engine // the engine subj comes from
	subj      *policy.Subject
	pbx       string       // the session PBX
	granted   []string     // PBXs the subject may use that the pool has, sorted
	mask      policy.Class // requested event mask: Login Events, Events action
	servers   []string     // PBXs whose events are subscribed
	tag       bool         // Servers was given: events carry a Server header
	filters   policy.FilterSet
	ended     string       // why continuous authorisation ended it ("": live)
	ender     sessionEnder // the front door's part of ending it; set at creation

	view atomic.Pointer[eventView] // nil until logged in, and once ended
}

// eventView is what the event path needs, rebuilt on every change (Login,
// Events, Filter) and read without locks.
type eventView struct {
	subj    *policy.Subject
	pbx     string           // session PBX
	mask    policy.Class     // requested mask
	subs    []viewSub        // the subscribed PBXs (usually few: a slice beats a map)
	index   map[string]int   // subs by PBX, only when there are many
	filters policy.FilterSet // the session's own Filter additions
	tag     bool
}

// viewSub is what the event path needs about one subscribed PBX.
type viewSub struct {
	pbx  string
	send policy.Class // ReadMask ∩ mask
	fkey any          // policy.Subject.FilterKey: nil when the roles have no eventfilters on it
}

// sub returns the subscription of pbx, if the view has one.
func (v *eventView) sub(pbx string) (viewSub, bool) {
	if v.index != nil {
		i, ok := v.index[pbx]
		if !ok {
			return viewSub{}, false
		}
		return v.subs[i], true
	}
	for _, vs := range v.subs {
		if vs.pbx == pbx {
			return vs, true
		}
	}
	return viewSub{}, false
}

// deliverCache remembers, for one session writer, the read-rule decisions of
// policy.Subject.DeliversClass, a function of the PBX, the event's
// Privilege value and the send mask: the few Privilege values of a PBX
// (call,all; dialplan,all ...) are decided once per view instead of once
// per event. (The role eventfilters, which read the text, are decided once
// per event and filter set instead: upstream.Event.Memo.) The zero value is
// ready to use; it is not safe for concurrent use.
type deliverCache struct {
	view *eventView
	ok   map[deliverKey]bool
}

type deliverKey struct{ pbx, privilege string }

// maxDeliverCache bounds a deliverCache: Privilege values are few, but a
// PBX could send arbitrary ones.
const maxDeliverCache = 256

// result is what handle returns to the front door.
type result struct {
	out     []byte    // the complete reply: write it at once
	wait    *waitReq  // WaitEvent: the front door waits (out is empty)
	close   bool      // end the session after writing out
	login   bool      // this request logged the session in
	expires time.Time // with login: when the Principal expires (zero: never)
}

// waitReq is a WaitEvent in progress.
type waitReq struct {
	actionID string
	timeout  time.Duration // < 0: until an event or the next request
}

func newSession(g *Gateway, remote netip.AddrPort, door string) *session {
	return &session{
		g:      g,
		id:     g.nextID.Add(1),
		remote: remote,
		door:   door,
		client: g.pool.NewClient(),
		mask:   policy.All,
	}
}

// close releases the upstream subscription and leaves the live set. It is
// idempotent.
func (s *session) close() {
	s.client.Close()
	s.g.unregister(s)
}

func (s *session) loggedIn() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.authed
}

// handle runs one request and returns the reply. It blocks while an
// action is forwarded to a PBX; a Login failure also sleeps LoginFailDelay
// first. Both end early when ctx ends.
func (s *session) handle(ctx context.Context, req rawman.Message) result {
	res, f := s.plan(ctx, req)
	if f == nil {
		return res
	}
	p := f.conn.Send(ctx, s.client, []rawman.Message{f.out})
	return s.finishForward(ctx, f, &p[0])
}

// handleBatch runs requests as handle would run them one after the
// other, but sends the forwarded ones to their PBXs together, in order
// (one write per PBX), before reading their replies: a client that
// pipelines gets the PBX's pipelining too. Only requests for which
// batchable is true may be in reqs after the first.
func (s *session) handleBatch(ctx context.Context, reqs []rawman.Message) []result {
	if len(reqs) == 1 {
		return []result{s.handle(ctx, reqs[0])}
	}
	res := make([]result, len(reqs))
	fs := make([]*forwarding, len(reqs))
	var conns []*upstream.Conn
	for i, req := range reqs {
		res[i], fs[i] = s.plan(ctx, req)
		if fs[i] != nil && !slices.Contains(conns, fs[i].conn) {
			conns = append(conns, fs[i].conn)
		}
	}
	pend := make([]upstream.Pending, len(reqs))
	var msgs []rawman.Message
	var idx []int
	for _, conn := range conns {
		msgs, idx = msgs[:0], idx[:0]
		for i, f := range fs {
			if f != nil && f.conn == conn {
				msgs = append(msgs, f.out)
				idx = append(idx, i)
			}
		}
		for k, p := range conn.Send(ctx, s.client, msgs) {
			pend[idx[k]] = p
		}
	}
	for i, f := range fs {
		if f != nil {
			res[i] = s.finishForward(ctx, f, &pend[i])
		}
	}
	return res
}

// batchable reports whether a request may join a batch (handleBatch):
// anything but the session-scoped actions (Login, Logoff, Challenge,
// Events, Filter, WaitEvent), whose effects the requests after them
// depend on.
func batchable(req rawman.Message) bool {
	name := req.Action()
	return name != "" && !upstream.SessionScoped(name)
}

// plan runs a request up to the point where it must be forwarded: it
// returns the complete result of everything else, or the forwarding to
// send.
func (s *session) plan(ctx context.Context, req rawman.Message) (result, *forwarding) {
	start := s.g.now()
	name := req.Action()
	id := req.ActionID()
	if reason := s.checkEnded(); reason != "" {
		// Continuous authorisation ended the session: nothing runs.
		return s.endedResult(req, reason), nil
	}
	if dup := repeatedControlKey(req); dup != "" {
		// Asterisk would read the first and the PBX might read another
		// (house style C11): refused, never forwarded.
		s.g.stats.frameErrors.Add(1)
		s.deny(start, name, id, "", "framing: repeated "+dup+" header")
		return result{out: errorReply(id, "Failed to parse message: repeated "+dup+" header")}, nil
	}
	if name == "" {
		// Asterisk answers this before it looks at authentication.
		return result{out: errorReply(id, msgMissingAction)}, nil
	}
	key := strings.ToLower(name)
	if !s.loggedIn() {
		switch key {
		case "login":
			return s.login(ctx, req, start), nil
		case "logoff":
			s.auditAction(start, name, id, "", "allow", "session: logoff", "", "")
			s.g.stats.allowed.Add(1)
			return s.logoff(id), nil
		case "challenge":
			return s.doChallenge(req, start), nil
		}
		s.deny(start, name, id, "", "session: not logged in")
		return result{out: errorReply(id, msgPermissionDenied)}, nil
	}
	switch key {
	case "login":
		s.allow(start, name, id, s.sessionPBX(), "session: already authenticated")
		return result{out: appendAck(nil, "Success", id, "Already authenticated")}, nil
	case "logoff":
		s.allow(start, name, id, s.sessionPBX(), "session: logoff")
		return s.logoff(id), nil
	}
	pbx, ok := s.target(req)
	if !ok {
		s.deny(start, name, id, req.Get("Server"), "pbx "+clipLog(req.Get("Server"))+": not granted")
		return result{out: errorReply(id, msgPermissionDenied)}, nil
	}
	if limited, ok := s.g.cfg.ActionLimits.Allow(s.userName(), name); !ok {
		s.g.stats.actionsThrottled.Add(1)
		s.deny(start, name, id, pbx, "rate limit "+limited)
		return result{out: errorReply(id, rateLimitMessage(limited))}, nil
	}
	switch key {
	case "challenge":
		return s.doChallenge(req, start), nil
	case "events":
		return s.doEvents(req, start), nil
	case "waitevent":
		s.allow(start, name, id, pbx, "session: waitevent")
		timeout := time.Duration(-1)
		if n := parseTimeout(req.Get("Timeout")); n >= 0 {
			timeout = time.Duration(n) * time.Second
		}
		return result{wait: &waitReq{actionID: id, timeout: timeout}}, nil
	case "ping":
		s.allow(start, name, id, pbx, "session: ping")
		b := appendResponse(nil, "Success", id)
		b = appendHeader(b, "Ping", "Pong")
		b = appendHeader(b, "Timestamp", epochMicro(s.g.now()))
		return result{out: append(b, "\r\n"...)}, nil
	case "filter":
		return s.doFilter(req, pbx, start), nil
	}
	return s.prepareForward(req, pbx, start)
}

// sessionPBX returns the session PBX ("" before login).
func (s *session) sessionPBX() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.pbx
}

// target returns the PBX an action addresses: its Server header, which
// must name a PBX the user may use, or the session PBX.
func (s *session) target(req rawman.Message) (string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	srv := req.Get("Server")
	if srv == "" {
		return s.pbx, true
	}
	if _, found := slices.BinarySearch(s.granted, srv); !found {
		return "", false
	}
	return srv, true
}

func (s *session) logoff(id string) result {
	b := appendResponse(nil, "Goodbye", id)
	b = appendHeader(b, "Message", "Thanks for all the fish.")
	return result{out: append(b, "\r\n"...), close: true}
}

// doChallenge is action_challenge: one challenge per session, reused.
func (s *session) doChallenge(req rawman.Message, start time.Time) result {
	id := req.ActionID()
	pbx := s.sessionPBX()
	if !strings.EqualFold(req.Get("AuthType"), "MD5") {
		s.allow(start, "Challenge", id, pbx, "session: challenge")
		return result{out: errorReply(id, "Must specify AuthType")}
	}
	s.mu.Lock()
	ch := s.challenge
	s.mu.Unlock()
	if ch == "" {
		var err error
		if ch, err = auth.NewChallenge(); err != nil {
			ref := newRef()
			s.g.log.Error("proxy: challenge", "session", s.id, "ref", ref, "err", err)
			s.fail(start, "Challenge", id, pbx, "", ref)
			return result{out: errorReply(id, "Action failed (ref "+ref+")")}
		}
		s.mu.Lock()
		if s.challenge == "" {
			s.challenge = ch
		}
		ch = s.challenge
		s.mu.Unlock()
	}
	s.allow(start, "Challenge", id, pbx, "session: challenge")
	b := appendResponse(nil, "Success", id)
	b = appendHeader(b, "Challenge", ch)
	return result{out: append(b, "\r\n"...)}
}

// login is action_login. The Principal comes from the Authenticator, what
// it may do from the policy engine.
func (s *session) login(ctx context.Context, req rawman.Message, start time.Time) result {
	s.loginMu.Lock()
	defer s.loginMu.Unlock()
	id := req.ActionID()
	if s.loggedIn() { // another request logged in meanwhile
		s.allow(start, "Login", id, s.sessionPBX(), "session: already authenticated")
		return result{out: appendAck(nil, "Success", id, "Already authenticated")}
	}
	user := req.Get("Username")
	s.mu.Lock()
	challenge := s.challenge
	s.mu.Unlock()
	creds := auth.Credentials{
		Username:  user,
		Secret:    auth.Secret(req.Get("Secret")),
		AuthType:  req.Get("AuthType"),
		Key:       req.Get("Key"),
		Challenge: challenge,
		Remote:    s.remote,
	}
	lim := s.g.cfg.Limits
	if lim != nil {
		// Before any credential is checked (house style §5).
		if d := lim.Allow(s.remote.Addr(), user); !d.OK {
			s.g.stats.loginsThrottled.Add(1)
			return s.loginFailed(ctx, start, id, user, "", throttledCause(d))
		}
	}
	// Network rules of the roles bound to the username, before any
	// credential is checked; the group roles are checked after.
	if d := s.g.policyEngine().Subject(user, nil).AllowsAddr(s.addr()); !d.Allowed() {
		return s.loginFailed(ctx, start, id, user, "", "network: "+d.Rule)
	}
	p, err := s.g.authenticator().Authenticate(ctx, creds)
	if err != nil {
		if lim != nil {
			lim.Failed(s.remote.Addr(), user)
		}
		return s.loginFailed(ctx, start, id, user, "", err.Error())
	}
	if lim != nil {
		// The credentials are right, whatever the policy says next.
		lim.Succeeded(s.remote.Addr(), user)
	}
	out, name, cause := s.establish(ctx, p, req, user, start)
	if cause != "" {
		return s.loginFailed(ctx, start, id, name, p.Method, cause)
	}
	return result{out: out, login: true, expires: p.Expires}
}

// establish logs the session in as p, who presented the Login (or, for
// the HTTP manager's digest URIs, the synthetic Login) req: it asks the
// policy engine what p may do, picks the session PBX, subscribes to the
// PBXs whose events the session receives and audits the success. It
// returns the reply (with FullyBooted when due) and the canonical user
// name, or a cause for the log when the login must fail; the caller then
// answers the failure. s.loginMu must be held.
func (s *session) establish(ctx context.Context, p auth.Principal, req rawman.Message, user string, start time.Time) (out []byte, name, cause string) {
	id := req.ActionID()
	name = p.Username
	if name == "" {
		name = user
	}
	eng := s.g.policyEngine()
	pid := p
	pid.Username = name
	subj := eng.SubjectFor(s.identity(pid))
	if d := subj.AllowsAddr(s.addr()); !d.Allowed() {
		return nil, name, "network: " + d.Rule
	}
	granted := s.g.grantedPBXs(subj)
	if len(granted) == 0 {
		return nil, name, "policy: no pbx granted"
	}
	pbx := granted[0]
	if srv := req.Get("Server"); srv != "" {
		if _, ok := slices.BinarySearch(granted, srv); !ok {
			return nil, name, "policy: pbx " + clipLog(srv) + " not granted"
		}
		pbx = srv
	} else if p := sniPBX(s.sni, granted); p != "" {
		pbx = p
	} else if d := s.g.cfg.DefaultPBX; d != "" && slices.Contains(granted, d) {
		pbx = d
	}
	mask := policy.All
	if ev := req.Get("Events"); ev != "" {
		if m, ok := policy.ParseEventMask(ev); ok {
			mask = m // else unchanged, as Asterisk's set_eventmask
		}
	}
	servers, tag := []string{pbx}, false
	if v := req.Get("Servers"); strings.TrimSpace(v) != "" {
		list, bad := parseServers(v, granted)
		if bad != "" {
			return nil, name, "policy: pbx " + clipLog(bad) + " not granted"
		}
		servers, tag = list, true
	}
	for _, srv := range servers {
		c, _ := s.g.pool.Get(srv)
		if err := c.Subscribe(s.client); err != nil {
			// Only a closed client fails: the Gateway or Pool is closing.
			ref := newRef()
			s.g.log.Warn("proxy: subscribe", "session", s.id, "pbx", srv, "ref", ref, "err", err)
			return nil, name, "subscribe: " + err.Error()
		}
	}

	s.mu.Lock()
	s.authed = true
	s.principal = p
	s.principal.Username = name
	s.engine = eng
	s.subj = subj
	s.pbx = pbx
	s.granted = granted
	s.mask = mask
	s.servers = servers
	s.tag = tag
	s.rebuildViewLocked()
	s.mu.Unlock()
	s.g.register(s)

	s.g.stats.loginsOK.Add(1)
	s.g.audit.LogAttrs(ctx, slog.LevelInfo, "auth.login",
		slog.String("result", "success"),
		slog.Uint64("session", s.id),
		slog.String("door", s.door),
		slog.String("remote", s.remote.String()),
		slog.String("user", name),
		slog.String("principal", p.Subject),
		slog.String("method", p.Method),
		slog.String("pbx", pbx),
		slog.String("action_id", clipLog(id)),
		slog.Duration("latency", s.g.now().Sub(start)),
	)
	b := appendAck(nil, "Success", id, "Authentication accepted")
	// Asterisk 22.10 (action_login): FullyBooted right after the reply,
	// in the same write, when the send mask and the read mask hold system.
	if (mask & subj.ReadMask(pbx) & policy.System) != 0 {
		up := strconv.FormatInt(int64(s.g.now().Sub(s.g.start)/time.Second), 10)
		b = appendHeader(b, "Event", "FullyBooted")
		b = appendHeader(b, "Privilege", policy.System.String())
		b = appendHeader(b, "Uptime", up)
		b = appendHeader(b, "LastReload", up)
		b = appendHeader(b, "Status", "Fully Booted")
		b = append(b, "\r\n"...)
	}
	return b, name, ""
}

// loginFailed audits a failed Login, waits LoginFailDelay and answers
// "Authentication failed"; the session then ends (Asterisk closes).
func (s *session) loginFailed(ctx context.Context, start time.Time, id, user, method, cause string) result {
	ref := newRef()
	s.g.stats.loginsFailed.Add(1)
	s.g.audit.LogAttrs(ctx, slog.LevelWarn, "auth.login",
		slog.String("result", "failure"),
		slog.Uint64("session", s.id),
		slog.String("door", s.door),
		slog.String("remote", s.remote.String()),
		slog.String("user", clipLog(user)),
		slog.String("method", method),
		slog.String("reason", cause),
		slog.String("ref", ref),
		slog.String("action_id", clipLog(id)),
		slog.Duration("latency", s.g.now().Sub(start)),
	)
	if d := s.g.cfg.LoginFailDelay; d > 0 {
		t := time.NewTimer(d)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
		}
	}
	return result{out: errorReply(id, msgAuthFailed), close: true}
}

// throttledCause is the log cause of a Login refused by the login limiter.
func throttledCause(d auth.Decision) string {
	return "throttled: " + d.Reason + ", retry after " + d.RetryAfter.Round(time.Millisecond).String()
}

// parseServers reads a Servers header: "*" (every granted PBX) or a comma
// separated list of PBX names, blanks around names ignored. It returns the
// sorted, unique list, or the first name that is not granted.
func parseServers(v string, granted []string) (list []string, bad string) {
	for _, item := range strings.Split(v, ",") {
		item = strings.TrimSpace(item)
		switch {
		case item == "":
			continue
		case item == "*":
			list = append(list, granted...)
		default:
			if _, ok := slices.BinarySearch(granted, item); !ok {
				return nil, item
			}
			list = append(list, item)
		}
	}
	slices.Sort(list)
	list = slices.Compact(list)
	if len(list) == 0 {
		return nil, v
	}
	return list, ""
}

// doEvents is action_events, plus the proxy's Servers header that changes
// which PBXs' events the session receives.
func (s *session) doEvents(req rawman.Message, start time.Time) result {
	id := req.ActionID()
	mask, maskOK := policy.ParseEventMask(req.Get("EventMask"))
	srvHeader := strings.TrimSpace(req.Get("Servers"))
	if !maskOK && srvHeader == "" {
		s.allow(start, "Events", id, s.sessionPBX(), "session: events")
		return result{out: errorReply(id, "Invalid event mask")}
	}
	s.mu.Lock()
	var add, remove []string
	if srvHeader != "" {
		list, bad := parseServers(srvHeader, s.granted)
		if bad != "" {
			pbx := s.pbx
			s.mu.Unlock()
			s.deny(start, "Events", id, pbx, "pbx "+clipLog(bad)+": not granted")
			return result{out: errorReply(id, msgPermissionDenied)}
		}
		for _, p := range list {
			if !slices.Contains(s.servers, p) {
				add = append(add, p)
			}
		}
		for _, p := range s.servers {
			if !slices.Contains(list, p) {
				remove = append(remove, p)
			}
		}
		s.servers, s.tag = list, true
	}
	if maskOK {
		s.mask = mask
	}
	on := s.mask != 0
	pbx := s.pbx
	s.rebuildViewLocked()
	s.mu.Unlock()
	for _, p := range add {
		if c, ok := s.g.pool.Get(p); ok {
			_ = c.Subscribe(s.client) // fails only when closing
		}
	}
	for _, p := range remove {
		if c, ok := s.g.pool.Get(p); ok {
			c.Unsubscribe(s.client)
		}
	}
	s.allow(start, "Events", id, pbx, "session: events")
	state := "Off"
	if on {
		state = "On"
	}
	b := appendResponse(nil, "Success", id)
	b = appendHeader(b, "Events", state)
	return result{out: append(b, "\r\n"...)}
}

// doFilter is action_filter: the filter joins the session's own set. It
// needs what Asterisk needs (write system), decided by the policy.
func (s *session) doFilter(req rawman.Message, pbx string, start time.Time) result {
	id := req.ActionID()
	s.mu.Lock()
	subj := s.subj
	s.mu.Unlock()
	if d := subj.Decide(pbx, req); !d.Allowed() {
		s.deny(start, "Filter", id, pbx, d.Rule)
		return result{out: errorReply(id, publicReason(d))}
	}
	reply := func(resp, msg string) result {
		s.allow(start, "Filter", id, pbx, "session: filter")
		return result{out: appendAck(nil, resp, id, msg)}
	}
	if !strings.EqualFold(req.Get("Operation"), "Add") {
		return reply("Error", "Unknown operation")
	}
	f, err := policy.ParseFilterAction(req.Get("Filter"), req.Get("MatchCriteria"))
	switch {
	case errors.Is(err, policy.ErrFilterCompile):
		return reply("Error", "Filter did not compile.  Check the syntax of the filter given.")
	case errors.Is(err, policy.ErrFilterFormat):
		return reply("Error", "Filter was formatted incorrectly.  Check the syntax of the filter given.")
	case err != nil:
		// A regex Asterisk accepts but Go cannot match the same way.
		return reply("Error", "Internal Error. Failed adding filter.")
	}
	s.mu.Lock()
	if s.filters.Len() >= maxSessionFilters {
		s.mu.Unlock()
		return reply("Error", "Internal Error. Failed adding filter.")
	}
	s.filters = s.filters.With(f)
	s.rebuildViewLocked()
	s.mu.Unlock()
	return reply("Success", "Success")
}

// forwarding is an allowed action on its way to a PBX.
type forwarding struct {
	out      rawman.Message // what is sent: the request without Server
	name, id string
	pbx      string
	rule     string // the policy rule that allowed it
	subj     *policy.Subject
	conn     *upstream.Conn
	start    time.Time
}

// prepareForward asks the policy about an action for pbx and returns the
// forwarding to send, or the result of a denial.
func (s *session) prepareForward(req rawman.Message, pbx string, start time.Time) (result, *forwarding) {
	name, id := req.Action(), req.ActionID()
	out := req
	if _, ok := req.Lookup("Server"); ok {
		out = req.Clone()
		out.Del("Server")
	}
	s.mu.Lock()
	subj := s.subj
	s.mu.Unlock()
	d := subj.Decide(pbx, out)
	if !d.Allowed() {
		s.deny(start, name, id, pbx, d.Rule)
		return result{out: errorReply(id, publicReason(d))}, nil
	}
	conn, ok := s.g.pool.Get(pbx)
	if !ok { // NewGateway and login only admit the pool's PBXs
		ref := newRef()
		s.fail(start, name, id, pbx, d.Rule, ref)
		return result{out: errorReply(id, "Action failed (ref "+ref+")")}, nil
	}
	return result{}, &forwarding{out: out, name: name, id: id, pbx: pbx, rule: d.Rule, subj: subj, conn: conn, start: start}
}

// finishForward collects the reply of a sent forwarding.
func (s *session) finishForward(ctx context.Context, f *forwarding, p *upstream.Pending) result {
	name, id, pbx := f.name, f.id, f.pbx
	listCommands := strings.EqualFold(name, "ListCommands")
	var buf []byte
	var resp string
	first := true
	err := p.Await(ctx, func(m rawman.Message) {
		if first {
			first = false
			resp = m.Response()
			if listCommands && m.IsResponse() {
				m = filterListCommands(m, f.subj, pbx)
			}
		}
		b, err := rawman.Append(buf, m)
		if err != nil { // cannot happen for a parsed message; never send half
			s.g.log.Warn("proxy: unencodable reply", "session", s.id, "pbx", pbx, "err", err)
			return
		}
		buf = b
	})
	start := f.start
	if err == nil {
		s.g.stats.allowed.Add(1)
		s.auditAction(start, name, id, pbx, "allow", f.rule, resp, "")
		return result{out: buf}
	}
	ref := newRef()
	s.fail(start, name, id, pbx, f.rule, ref)
	var le *upstream.LinkError
	switch {
	case errors.As(err, &le):
		// Do has passed us a "Response: Error" naming the PBX.
		s.g.log.Info("proxy: action failed", "session", s.id, "pbx", pbx, "action", clipLog(name), "ref", ref, "err", err)
		if len(buf) == 0 {
			buf = errorReply(id, le.Public())
		}
	case ctx.Err() != nil:
		// The session is ending; nobody reads the reply.
	default:
		s.g.log.Warn("proxy: action failed", "session", s.id, "pbx", pbx, "action", clipLog(name), "ref", ref, "err", err)
		buf = errorReply(id, "Action failed (ref "+ref+")")
	}
	return result{out: buf}
}

// filterListCommands removes from a ListCommands reply the lines of the
// actions the subject may not run on pbx (ami-spec.md §3.6), so the
// client sees what Asterisk would show that user.
func filterListCommands(m rawman.Message, subj *policy.Subject, pbx string) rawman.Message {
	var out rawman.Message
	for i, h := range m.All() {
		keep := i == 0 || h.Bare() || strings.EqualFold(h.Key, "ActionID") ||
			subj.ListCommandsAllowed(pbx, h.Key)
		if !keep {
			continue
		}
		var err error
		if h.Bare() {
			err = out.AddBare(h.Value)
		} else {
			err = out.Add(h.Key, h.Value)
		}
		if err != nil {
			return m
		}
	}
	return out
}

// publicReason is the text a client gets for a denial: the engine's
// public-safe Reason, or Asterisk's "Permission denied".
func publicReason(d policy.Decision) string {
	if d.Reason != "" {
		return d.Reason
	}
	return msgPermissionDenied
}

// rebuildViewLocked publishes a new eventView. s.mu must be held.
func (s *session) rebuildViewLocked() {
	if s.ended != "" || !s.authed {
		s.view.Store(nil)
		return
	}
	v := &eventView{
		subj:    s.subj,
		pbx:     s.pbx,
		mask:    s.mask,
		subs:    make([]viewSub, 0, len(s.servers)),
		filters: s.filters,
		tag:     s.tag,
	}
	for _, p := range s.servers {
		v.subs = append(v.subs, viewSub{pbx: p, send: s.subj.ReadMask(p) & s.mask, fkey: s.subj.FilterKey(p)})
	}
	if len(v.subs) > 8 {
		v.index = make(map[string]int, len(v.subs))
		for i, vs := range v.subs {
			v.index[vs.pbx] = i
		}
	}
	s.view.Store(v)
}

// deliver decides whether one item of the session's upstream queue
// reaches the client and returns the bytes to write, or nil. It never
// blocks and may run concurrently with handle.
//
//   - Events of subscribed PBXs pass Asterisk's read rule and the role
//     eventfilters (Subject.DeliverEvent), then the session's own Filter
//     additions; with Servers, a Server header is inserted.
//   - Late replies addressed to this client (Event.Reply) that are events
//     (the OriginateResponse of its async Originate) pass the same checks,
//     as in Asterisk; late responses pass unfiltered, like any response.
//   - Link changes become ProxyUpstreamDown / ProxyUpstreamUp events of
//     class system, checked like events.
//
// dc, if not nil, caches read-rule decisions across calls from one
// goroutine.
func (s *session) deliver(ev *upstream.Event, dc *deliverCache) []byte {
	v := s.view.Load()
	if v == nil {
		return nil
	}
	if dc != nil && dc.view != v {
		dc.view = v
		clear(dc.ok)
	}
	switch {
	case ev.Link != upstream.LinkNone:
		if _, ok := v.sub(ev.PBX); !ok {
			return nil
		}
		name := EventUpstreamDown
		if ev.Link == upstream.LinkUp {
			name = EventUpstreamUp
		}
		msg := rawman.New("Event", name, "Privilege", policy.System.String(), "Server", ev.PBX)
		raw, err := rawman.Encode(msg)
		if err != nil {
			return nil
		}
		return v.admit(ev.PBX, msg, raw, false, nil, nil)
	case ev.Reply && !ev.Msg.IsEvent():
		if v.tag {
			return insertServer(ev.Raw, ev.PBX)
		}
		return ev.Raw
	case !ev.Reply:
		if _, ok := v.sub(ev.PBX); !ok {
			return nil // queued before an Events action unsubscribed it
		}
	}
	return v.admit(ev.PBX, ev.Msg, ev.Raw, v.tag, dc, ev)
}

// admit applies the read rule and the filters to one event.
//
// The session's own filters narrow what the role filters let through (an
// event must pass both). In Asterisk a Filter action joins the user's
// manager.conf filters into one set, where an include filter widens the
// user's includes; here the role filters are the administrator's limit and
// a client cannot widen them. Without role filters the result is
// Asterisk's.
//
// The decision is policy.Subject.DeliverEvent's, in its two documented
// parts: the read rule (DeliversClass, cached in dc) and the role filters
// (Filters(pbx).Allows), whose verdict ev, when not nil, remembers per
// filter set (FilterKey) for every session reading the same shared event.
func (v *eventView) admit(pbx string, msg rawman.Message, raw []byte, tag bool, dc *deliverCache, ev *upstream.Event) []byte {
	text := eventText(raw)
	vs, ok := v.sub(pbx)
	send := vs.send
	fkey := vs.fkey
	if !ok {
		send = v.subj.ReadMask(pbx) & v.mask
		fkey = v.subj.FilterKey(pbx)
	}
	priv, hasPriv := msg.Lookup("Privilege")
	var allowed, cached bool
	var key deliverKey
	if dc != nil && ok {
		key = deliverKey{pbx, priv} // a missing Privilege and an empty one both deny
		allowed, cached = dc.ok[key]
	}
	if !cached {
		allowed = v.subj.DeliversClass(pbx, priv, hasPriv, send)
		if key.pbx != "" && len(dc.ok) < maxDeliverCache {
			if dc.ok == nil {
				dc.ok = make(map[deliverKey]bool)
			}
			dc.ok[key] = allowed
		}
	}
	if !allowed {
		return nil
	}
	if fkey != nil {
		filtered := func() bool { return v.subj.Filters(pbx).Allows(text) }
		if ev != nil {
			allowed = ev.Memo(fkey, filtered)
		} else {
			allowed = filtered()
		}
		if !allowed {
			return nil
		}
	}
	if v.filters.Len() > 0 && !v.filters.Allows(text) {
		return nil
	}
	if tag {
		return insertServer(raw, pbx)
	}
	return raw
}

// eventText views the encoded event as a string without copying it: the
// filters of every session read the same shared bytes, which upstream
// documents as immutable (Event.Raw MUST NOT be modified), and nothing
// keeps the string beyond the call. Copying instead would cost one
// allocation of the whole event per event per client.
func eventText(raw []byte) string {
	if len(raw) == 0 {
		return ""
	}
	return unsafe.String(unsafe.SliceData(raw), len(raw))
}

// shutdownEvent returns Asterisk's Shutdown event if this session would
// receive it (logged in, reading system events), else nil.
func (s *session) shutdownEvent() []byte {
	v := s.view.Load()
	if v == nil {
		return nil
	}
	msg := rawman.New("Event", "Shutdown", "Privilege", policy.System.String(), "Shutdown", "Cleanly", "Restart", "False")
	return v.admit(v.pbx, msg, []byte(shutdownEventText), false, nil, nil)
}

// Audit: one line per action, never a header value other than the action
// name and the client's ActionID (both clipped).

func (s *session) allow(start time.Time, action, id, pbx, rule string) {
	s.g.stats.allowed.Add(1)
	s.auditAction(start, action, id, pbx, "allow", rule, "", "")
}

func (s *session) deny(start time.Time, action, id, pbx, rule string) {
	s.g.stats.denied.Add(1)
	s.auditAction(start, action, id, pbx, "deny", rule, "", newRef())
}

func (s *session) fail(start time.Time, action, id, pbx, rule, ref string) {
	s.g.stats.failed.Add(1)
	s.auditAction(start, action, id, pbx, "error", rule, "", ref)
}

func (s *session) auditAction(start time.Time, action, id, pbx, result, rule, resp, ref string) {
	s.mu.Lock()
	user, principal := s.principal.Username, s.principal.Subject
	s.mu.Unlock()
	attrs := []slog.Attr{
		slog.String("result", result),
		slog.Uint64("session", s.id),
		slog.String("door", s.door),
		slog.String("remote", s.remote.String()),
		slog.String("user", user),
		slog.String("principal", principal),
		slog.String("pbx", pbx),
		slog.String("action", clipLog(action)),
		slog.String("action_id", clipLog(id)),
		slog.String("rule", rule),
		slog.Duration("latency", s.g.now().Sub(start)),
	}
	if resp != "" {
		attrs = append(attrs, slog.String("response", clipLog(resp)))
	}
	if ref != "" {
		attrs = append(attrs, slog.String("ref", ref))
	}
	level := slog.LevelInfo
	if result != "allow" {
		level = slog.LevelWarn
	}
	// One line per action: straight to the handler, without the caller
	// PC that Logger.LogAttrs looks up for every record (a stack walk that
	// cost as much as formatting the line); no audit handler uses it.
	ctx := context.Background()
	h := s.g.audit.Handler()
	if !h.Enabled(ctx, level) {
		return
	}
	r := slog.NewRecord(time.Now(), level, "ami.action", 0)
	r.AddAttrs(attrs...)
	_ = h.Handle(ctx, r)
}

// clipLog keeps client-supplied strings in logs short.
func clipLog(s string) string {
	const max = 80
	if len(s) > max {
		return s[:max] + "..."
	}
	return s
}

// sniPBX picks the session PBX from the TLS server name: the name itself or
// its first DNS label ("west" or "west.ami.example.com") naming a granted
// PBX, compared ignoring ASCII case as DNS does. It returns "" otherwise;
// an SNI never grants anything, it only chooses among granted PBXs.
func sniPBX(sni string, granted []string) string {
	if sni == "" {
		return ""
	}
	first, _, _ := strings.Cut(sni, ".")
	for _, g := range granted {
		if strings.EqualFold(g, sni) || strings.EqualFold(g, first) {
			return g
		}
	}
	return ""
}

// controlKeys are the single-valued headers a request may not repeat: the
// ones that pick the action, its correlation, the credentials and the PBX.
var controlKeys = [...]string{"Action", "ActionID", "Username", "Secret", "AuthType", "Key", "Server", "Servers"}

// repeatedControlKey returns the first control key req holds more than
// once (in its canonical spelling), or "".
func repeatedControlKey(req rawman.Message) string {
	var seen [len(controlKeys)]bool
	for _, h := range req.All() {
		if h.Bare() {
			continue
		}
		for i, k := range controlKeys {
			if strings.EqualFold(h.Key, k) {
				if seen[i] {
					return k
				}
				seen[i] = true
			}
		}
	}
	return ""
}
