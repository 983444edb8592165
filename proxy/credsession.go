package proxy

import (
	"context"
	"time"

	"github.com/amiproxy/amiproxy/auth"
	"github.com/amiproxy/amiproxy/rawman"
)

// reuse marks hs busy and returns true if it is still a live session of
// username: the credential-keyed doors (digest, bearer) then run the
// request on it instead of logging in again.
func (hs *httpSession) reuse(now time.Time, username string) bool {
	hs.mu.Lock()
	defer hs.mu.Unlock()
	if hs.dead || hs.expiredLocked(now) || hs.sess.userName() != username {
		return false
	}
	hs.busy++
	return true
}

// loginSession creates a server-side session for the door named door,
// logs it in as p on the request's PBX, and registers it, marked busy, in
// m.sessions. Digest and bearer requests carry their credentials with
// every request, so their sessions are made here rather than by an AMI
// Login. Exactly one of digest and bearer is set. It returns nil and the policy's cause when p is refused.
func (m *HTTPManager) loginSession(ctx context.Context, req *httpRequest, p auth.Principal, door string, digest, bearer bool) (*httpSession, string) {
	hs := m.newHTTPSession(req.remote, door, digest)
	hs.bearer = bearer // before the session is reachable: cookies must never find it
	login := rawman.New("Action", "Login", "Username", p.Username)
	if req.pbx != "" {
		_ = login.Add("Server", req.pbx) // the path was checked by splitPBX
	}
	hs.sess.loginMu.Lock()
	_, _, cause := hs.sess.establish(ctx, p, login, p.Username, req.start)
	hs.sess.loginMu.Unlock()
	if cause != "" {
		hs.kill()
		return nil, cause
	}
	m.stats.created.Add(1)
	hs.mu.Lock()
	hs.where = whereSessions
	hs.mu.Unlock()
	m.sessions.Add(hs.id, hs)
	return hs, ""
}
