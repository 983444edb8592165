package proxy

import (
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/amiproxy/amiproxy/auth"
	"github.com/amiproxy/amiproxy/policy"
	"github.com/amiproxy/amiproxy/rawman"
)

// Validator tells whether an authenticated Principal still holds: its
// token or minted secret not revoked, its user not removed. A nil error
// means yes. An error ends the sessions of that Principal; errors wrapping
// auth.ErrExpired or auth.ErrRemoved give the notice those reasons, any
// other the reason "revoked", except context errors (the check could not
// run: it is retried at the next revalidation). The error text goes to
// the audit log only and must not hold a secret.
//
// Validate is called for every live session on every revalidation (every
// RevalidateInterval and on every Revalidate call), so it must be cheap
// and must not block on the network.
type Validator interface {
	Validate(ctx context.Context, p auth.Principal) error
}

// ValidatorFunc adapts a function to a Validator.
type ValidatorFunc func(ctx context.Context, p auth.Principal) error

// Validate calls f.
func (f ValidatorFunc) Validate(ctx context.Context, p auth.Principal) error { return f(ctx, p) }

// Reasons a live session is ended with, as carried by the Reason header of
// its ProxySessionEnd notice and counted in Stats.Ended*.
const (
	ReasonRevoked = "revoked" // token, minted secret or user revoked
	ReasonExpired = "expired" // credentials expired
	ReasonRemoved = "removed" // user removed, lost every role, or refused from its address
)

// EventSessionEnd is the notice a client receives right before the proxy
// ends its logged-in session for continuous authorisation: "Event:
// ProxySessionEnd", "Privilege: system,all", "Reason: <reason>", "Server:
// <session PBX>". It is sent whatever the session's event mask and read
// rights, since the client must learn why it is cut off.
const EventSessionEnd = "ProxySessionEnd"

// validateTimeout bounds the Validate calls of one Revalidate pass.
const validateTimeout = 2 * time.Second

// authnHolder lets an interface value live in an atomic.Pointer.
type authnHolder struct{ a Authenticator }

// policyEngine returns the current policy engine.
func (g *Gateway) policyEngine() *policy.Engine { return g.engine.Load() }

// authenticator returns the current Authenticator.
func (g *Gateway) authenticator() Authenticator { return g.authn.Load().a }

// validator returns Config.Validator, else the Authenticator when it is a
// Validator, else nil.
func (g *Gateway) validator() Validator {
	if g.cfg.Validator != nil {
		return g.cfg.Validator
	}
	if v, ok := g.authenticator().(Validator); ok {
		return v
	}
	return nil
}

// SetPolicy makes e the policy engine of every new Login and action, and
// revalidates every live session at once (Revalidate): a session whose
// user has no role left, or may no longer use its session PBX or reach
// the proxy from its address, ends with Reason "removed"; the others get
// their rights recomputed from e, effective for their next action and
// event. A nil e is ignored. Safe for concurrent use.
func (g *Gateway) SetPolicy(e *policy.Engine) {
	if e == nil {
		return
	}
	g.engine.Store(e)
	g.Revalidate()
}

// SetAuthenticator makes a the Authenticator of every new Login (and the
// Validator, when a implements it and Config.Validator is nil), and
// revalidates every live session at once. A nil a is ignored. Safe for
// concurrent use.
func (g *Gateway) SetAuthenticator(a Authenticator) {
	if a == nil {
		return
	}
	g.authn.Store(&authnHolder{a})
	g.Revalidate()
}

// EndUserSessions ends every live session of username (matched ignoring
// ASCII case, as Login matches it), each with a ProxySessionEnd notice
// carrying reason (ReasonRevoked, ReasonExpired or ReasonRemoved; any
// other value is sent as ReasonRevoked). It returns the number of sessions
// ended. It does not stop the user from logging in again: revoke the
// credentials too.
func (g *Gateway) EndUserSessions(username, reason string) int {
	switch reason {
	case ReasonRevoked, ReasonExpired, ReasonRemoved:
	default:
		reason = ReasonRevoked
	}
	n := 0
	for _, s := range g.liveSessions() {
		if strings.EqualFold(s.userName(), username) && g.endSession(s, reason, "admin: sessions ended") {
			n++
		}
	}
	return n
}

// Revalidate checks every live session now, against the credentials
// (Principal.Expires, then the Validator) and the current policy engine;
// sessions that fail end within the call's return, each after a
// ProxySessionEnd notice. Sessions whose user still has roles under a new
// engine get their rights recomputed from it. Calls are serialized; each
// costs one Validate per session, plus one Subject per session when the
// engine changed. The Gateway also calls it every RevalidateInterval.
func (g *Gateway) Revalidate() {
	g.revalMu.Lock()
	defer g.revalMu.Unlock()
	eng := g.policyEngine()
	val := g.validator()
	// One deadline for the pass: Validate must not block, and one that
	// does only delays the sessions after it to the next pass.
	ctx, cancel := context.WithTimeout(context.Background(), validateTimeout)
	defer cancel()
	deferred := 0
	var lastErr error
	for _, s := range g.liveSessions() {
		if err := g.revalidateSession(ctx, s, eng, val); err != nil {
			deferred++
			lastErr = err
		}
	}
	if deferred > 0 {
		g.log.Warn("proxy: revalidation could not check some sessions; retried at the next pass",
			"sessions", deferred, "err", lastErr)
	}
}

// revalidateSession checks one session and ends it if it fails. It
// returns the Validator's context error when the check could not run.
func (g *Gateway) revalidateSession(ctx context.Context, s *session, eng *policy.Engine, val Validator) error {
	s.mu.Lock()
	p, sEng, ended := s.principal, s.engine, s.ended
	s.mu.Unlock()
	if ended != "" {
		return nil
	}
	if !p.Expires.IsZero() && !g.now().Before(p.Expires) {
		g.endSession(s, ReasonExpired, "credentials expired")
		return nil
	}
	var deferred error // the Validator could not run: the policy is still checked
	if val != nil {
		vp := p
		if vp.Method == methodDigest {
			// A digest login is a local account's password login (the
			// Validator knows the auth package's methods only).
			vp.Method = auth.MethodPassword
		}
		err := val.Validate(ctx, vp)
		switch {
		case err == nil:
		case errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled):
			deferred = err
		default:
			g.endSession(s, reasonOf(err), "validator: "+err.Error())
			return nil
		}
	}
	if sEng == eng {
		return deferred
	}
	subj := eng.SubjectFor(s.identity(p))
	if !subj.HasRoles() {
		g.endSession(s, ReasonRemoved, "policy: no role")
		return nil
	}
	if d := subj.AllowsAddr(s.addr()); !d.Allowed() {
		g.endSession(s, ReasonRemoved, "network: "+d.Rule)
		return nil
	}
	granted := g.grantedPBXs(subj)
	if !s.applySubject(eng, subj, granted) {
		g.endSession(s, ReasonRemoved, "policy: session pbx no longer granted")
		return nil
	}
	return deferred
}

// reasonOf maps a Validator error to a notice reason.
func reasonOf(err error) string {
	switch {
	case errors.Is(err, auth.ErrExpired):
		return ReasonExpired
	case errors.Is(err, auth.ErrRemoved):
		return ReasonRemoved
	}
	return ReasonRevoked
}

// grantedPBXs returns the sorted PBXs of the pool that subj may use.
func (g *Gateway) grantedPBXs(subj *policy.Subject) []string {
	var granted []string
	for _, pbx := range subj.PBXs() {
		if g.pbxs[pbx] && subj.MayUse(pbx).Allowed() {
			granted = append(granted, pbx)
		}
	}
	slices.Sort(granted)
	return granted
}

// applySubject gives a live session the rights of subj, computed from
// eng: the PBXs it watches shrink to those still granted (the session PBX
// must stay granted, else it reports false and changes nothing), and the
// event view is rebuilt so the next event is judged by the new rights.
func (s *session) applySubject(eng *policy.Engine, subj *policy.Subject, granted []string) bool {
	s.mu.Lock()
	if s.ended != "" {
		s.mu.Unlock()
		return true
	}
	if _, ok := slices.BinarySearch(granted, s.pbx); !ok {
		s.mu.Unlock()
		return false
	}
	var remove []string
	servers := s.servers[:0:0]
	for _, p := range s.servers {
		if _, ok := slices.BinarySearch(granted, p); ok {
			servers = append(servers, p)
		} else {
			remove = append(remove, p)
		}
	}
	s.engine, s.subj, s.granted, s.servers = eng, subj, granted, servers
	s.rebuildViewLocked()
	s.mu.Unlock()
	for _, p := range remove {
		if c, ok := s.g.pool.Get(p); ok {
			c.Unsubscribe(s.client)
		}
	}
	return true
}

// register adds a logged-in session to the set Revalidate checks and
// starts the sweeper with the first one.
func (g *Gateway) register(s *session) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return
	}
	select {
	case <-s.client.Done():
		return // closed meanwhile: close has unregistered it already
	default:
	}
	g.live[s] = struct{}{}
	if !g.sweeping {
		g.sweeping = true
		g.wg.Add(1)
		go func() {
			defer g.wg.Done()
			g.sweepLoop()
		}()
	}
}

// unregister removes s from the live set; it is idempotent.
func (g *Gateway) unregister(s *session) {
	g.mu.Lock()
	delete(g.live, s)
	g.mu.Unlock()
}

// liveSessions returns a snapshot of the logged-in sessions.
func (g *Gateway) liveSessions() []*session {
	g.mu.Lock()
	defer g.mu.Unlock()
	out := make([]*session, 0, len(g.live))
	for s := range g.live {
		out = append(out, s)
	}
	return out
}

// sweepLoop revalidates every RevalidateInterval until Close, so that the
// one-second bound holds without notifications (a token that expires, a
// revocation list that changed). It recovers from panics: a sweep that
// panics is logged and the next one runs.
func (g *Gateway) sweepLoop() {
	t := time.NewTicker(g.cfg.RevalidateInterval)
	defer t.Stop()
	for {
		select {
		case <-g.done:
			return
		case <-t.C:
		}
		g.sweepOnce()
	}
}

func (g *Gateway) sweepOnce() {
	defer func() {
		if v := recover(); v != nil {
			g.stats.panics.Add(1)
			g.log.Error("proxy: revalidation panicked", "panic", v)
		}
	}()
	g.Revalidate()
}

// sessionEnder is the front door's part of ending a session: deliver the
// notice, then close (native) or keep it for the next request (HTTP).
type sessionEnder interface {
	endSession(notice []byte)
}

// endSession ends the logged-in session s for continuous authorisation,
// once: it stops its events, counts and audits the end, and hands the
// notice to the front door. It reports whether this call ended it.
func (g *Gateway) endSession(s *session, reason, detail string) bool {
	s.mu.Lock()
	if !s.authed || s.ended != "" {
		s.mu.Unlock()
		return false
	}
	s.ended = reason
	p, pbx := s.principal, s.pbx
	s.view.Store(nil)
	ender := s.ender
	s.mu.Unlock()
	g.unregister(s)
	switch reason {
	case ReasonExpired:
		g.stats.endedExpired.Add(1)
	case ReasonRemoved:
		g.stats.endedRemoved.Add(1)
	default:
		g.stats.endedRevoked.Add(1)
	}
	g.audit.LogAttrs(context.Background(), slog.LevelWarn, "session.end",
		slog.String("reason", reason),
		slog.Uint64("session", s.id),
		slog.String("door", s.door),
		slog.String("remote", s.remote.String()),
		slog.String("user", p.Username),
		slog.String("principal", p.Subject),
		slog.String("method", p.Method),
		slog.String("pbx", pbx),
		slog.String("detail", clipLog(detail)),
	)
	g.log.Info("proxy: session ended", "session", s.id, "user", p.Username, "reason", reason)
	if ender != nil {
		ender.endSession(sessionEndNotice(reason, pbx))
	}
	return true
}

// sessionEndNotice is the ProxySessionEnd event.
func sessionEndNotice(reason, pbx string) []byte {
	b := appendHeader(nil, "Event", EventSessionEnd)
	b = appendHeader(b, "Privilege", policy.System.String())
	b = appendHeader(b, "Reason", reason)
	if pbx != "" {
		b = appendHeader(b, "Server", pbx)
	}
	return append(b, "\r\n"...)
}

// endedReason returns why the session was ended, or "".
func (s *session) endedReason() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ended
}

// endedResult answers any request on an ended session: a WaitEvent
// completes with the notice, anything else gets "Response: Error" and the
// notice; the session then closes. Nothing is forwarded.
func (s *session) endedResult(req rawman.Message, reason string) result {
	s.mu.Lock()
	pbx := s.pbx
	s.mu.Unlock()
	notice := sessionEndNotice(reason, pbx)
	id := req.ActionID()
	if strings.EqualFold(req.Action(), "WaitEvent") {
		w := &waiting{req: waitReq{actionID: id}, events: [][]byte{notice}}
		var b []byte
		for _, p := range w.complete(nil) {
			b = append(b, p...)
		}
		return result{out: b, close: true}
	}
	b := errorReply(id, "Session ended ("+reason+")")
	return result{out: append(b, notice...), close: true}
}

// identity is what policy knows of the session's client.
func (s *session) identity(p auth.Principal) policy.Identity {
	return policy.Identity{Username: p.Username, Groups: p.Groups, Claims: p.Claims, Addr: s.addr()}
}

// addr is the client's address, IPv4-mapped addresses unmapped.
func (s *session) addr() netip.Addr { return s.remote.Addr().Unmap() }

// checkEnded returns why the session was ended, first ending it if its
// credentials have expired (so no request runs on expired credentials,
// whatever the sweep's timing).
func (s *session) checkEnded() string {
	s.mu.Lock()
	reason, authed, exp := s.ended, s.authed, s.principal.Expires
	s.mu.Unlock()
	if reason != "" || !authed || exp.IsZero() || s.g.now().Before(exp) {
		return reason
	}
	s.g.endSession(s, ReasonExpired, "credentials expired")
	return s.endedReason()
}

var (
	_ Authenticator = (*auth.Chain)(nil)
	_ Validator     = (*auth.Chain)(nil)
)

// allowsFrom checks a request of a logged-in HTTP session that comes from
// addr, which may differ from the address the session logged in from (a
// cookie, nonce or token is not bound to an address): addr must pass the
// user's network rules. Sessions not logged in, and requests from the
// session's own address, pass.
func (s *session) allowsFrom(addr netip.Addr) (policy.Decision, bool) {
	addr = addr.Unmap()
	if addr == s.addr() {
		return policy.Decision{}, true
	}
	s.mu.Lock()
	subj, authed := s.subj, s.authed && s.ended == ""
	s.mu.Unlock()
	if !authed || subj == nil {
		return policy.Decision{}, true
	}
	d := subj.AllowsAddr(addr)
	return d, d.Allowed()
}
