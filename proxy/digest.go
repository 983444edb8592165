package proxy

import (
	"context"
	"crypto/md5"
	"crypto/subtle"
	"encoding/hex"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/amiproxy/amiproxy/auth"
	"github.com/amiproxy/amiproxy/rawman"
)

// DigestSecrets gives the HTTP manager's digest URIs what they need to
// check an HTTP Digest response (RFC 2617, MD5, qop auth), which is
// computed over HA1 = MD5(username:realm:secret) and so needs the
// plaintext secret or HA1 itself: a bcrypt hash cannot serve.
type DigestSecrets interface {
	// DigestHA1 returns the lower-case hex HA1 of the account username
	// names (matched as Login matches it) for realm, computed with the
	// account's configured username as Asterisk does, and the Principal
	// that account logs in as. ok is false for an unknown account and for
	// one without a plaintext secret.
	DigestHA1(username, realm string) (ha1 string, p auth.Principal, ok bool)
}

// DigestAccounts serves DigestHA1 from local accounts, the same ones
// given to auth.NewLocal: accounts with a plaintext Secret can use the
// digest URIs; accounts with only a SecretHash cannot (their digest
// requests are answered 401). The Principal is the one auth.Local
// returns for the account, with Method "digest".
//
// The zero value has no accounts. A DigestAccounts is immutable and safe
// for concurrent use.
type DigestAccounts struct {
	users map[string]digestAccount // key: ASCII-lower username
}

type digestAccount struct {
	username string
	secret   auth.Secret
	groups   []string
}

var _ DigestSecrets = (*DigestAccounts)(nil)

// NewDigestAccounts copies what it needs from accounts. Accounts without a
// plaintext Secret are left out; a later duplicate (ignoring case) is
// ignored, as auth.NewLocal would refuse it anyway.
func NewDigestAccounts(accounts []auth.Account) *DigestAccounts {
	d := &DigestAccounts{users: map[string]digestAccount{}}
	for _, a := range accounts {
		if a.Secret == "" || a.Username == "" {
			continue
		}
		k := asciiLowerString(a.Username)
		if _, dup := d.users[k]; dup {
			continue
		}
		d.users[k] = digestAccount{username: a.Username, secret: a.Secret, groups: slices.Clone(a.Groups)}
	}
	return d
}

// DigestHA1 implements DigestSecrets.
func (d *DigestAccounts) DigestHA1(username, realm string) (string, auth.Principal, bool) {
	if d == nil {
		return "", auth.Principal{}, false
	}
	a, ok := d.users[asciiLowerString(username)]
	if !ok {
		return "", auth.Principal{}, false
	}
	return md5Hex(a.username + ":" + realm + ":" + a.secret.Reveal()), auth.Principal{
		Subject:  "local:" + a.username,
		Username: a.username,
		Groups:   slices.Clone(a.groups),
		Method:   methodDigest,
	}, true
}

// methodDigest is the Principal.Method of a digest login.
const methodDigest = "digest"

func asciiLowerString(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}

func md5Hex(s string) string {
	sum := md5.Sum([]byte(s))
	return hex.EncodeToString(sum[:])
}

// nonceRecord is one digest nonce the manager issued. Its fields are
// guarded by HTTPManager.nonceMu.
type nonceRecord struct {
	issued  time.Time
	user    string // the account that used it first ("" until then)
	lastNC  uint64 // highest nc accepted
	used    bool
	revoked bool   // Logoff ended its session
	sessID  uint32 // the digest session (0: none yet)
}

// digestAuth is a parsed "Authorization: Digest" header.
type digestAuth struct {
	username, realm, nonce, uri, response, algorithm, cnonce, nc, qop string
}

// parseDigestAuth parses an Authorization header of scheme Digest. It
// refuses a header with a repeated or missing required parameter.
func parseDigestAuth(h string) (digestAuth, bool) {
	var d digestAuth
	scheme, rest, ok := strings.Cut(strings.TrimSpace(h), " ")
	if !ok || !strings.EqualFold(scheme, "Digest") {
		return d, false
	}
	seen := map[string]bool{}
	for {
		rest = strings.TrimLeft(rest, " \t,")
		if rest == "" {
			break
		}
		eq := strings.IndexByte(rest, '=')
		if eq <= 0 {
			return d, false
		}
		key := strings.ToLower(strings.TrimSpace(rest[:eq]))
		rest = strings.TrimLeft(rest[eq+1:], " \t")
		var val string
		if strings.HasPrefix(rest, `"`) {
			var b strings.Builder
			i := 1
			for ; i < len(rest) && rest[i] != '"'; i++ {
				if rest[i] == '\\' && i+1 < len(rest) {
					i++
				}
				b.WriteByte(rest[i])
			}
			if i >= len(rest) {
				return d, false // unterminated
			}
			val, rest = b.String(), rest[i+1:]
		} else {
			end := strings.IndexByte(rest, ',')
			if end < 0 {
				end = len(rest)
			}
			val, rest = strings.TrimSpace(rest[:end]), rest[end:]
		}
		if seen[key] {
			return d, false
		}
		seen[key] = true
		switch key {
		case "username":
			d.username = val
		case "realm":
			d.realm = val
		case "nonce":
			d.nonce = val
		case "uri":
			d.uri = val
		case "response":
			d.response = val
		case "algorithm":
			d.algorithm = val
		case "cnonce":
			d.cnonce = val
		case "nc":
			d.nc = val
		case "qop":
			d.qop = val
		}
	}
	if !seen["username"] || !seen["realm"] || !seen["nonce"] || !seen["uri"] || !seen["response"] {
		return d, false
	}
	if d.algorithm != "" && !strings.EqualFold(d.algorithm, "MD5") {
		return d, false
	}
	if d.qop != "" && (d.qop != "auth" || d.nc == "" || d.cnonce == "") {
		return d, false
	}
	return d, true
}

// response computes the expected digest response for method.
func (d digestAuth) expected(ha1, method string) string {
	ha2 := md5Hex(method + ":" + d.uri)
	if d.qop != "" {
		return md5Hex(ha1 + ":" + d.nonce + ":" + d.nc + ":" + d.cnonce + ":" + d.qop + ":" + ha2)
	}
	return md5Hex(ha1 + ":" + d.nonce + ":" + ha2)
}

// dummyHA1 stands in for an unknown account so that every path computes
// the same hashes.
var dummyHA1 = md5Hex("amiproxy-no-such-account")

// serveDigest serves /arawman, /amxml and /amanager (ami-spec.md §6.7),
// with these differences from Asterisk: only nonces the manager issued
// are accepted, each within 62 s of its issue, with nc strictly
// increasing (a nonce without qop serves once), so a captured header
// cannot be replayed; the uri parameter must be the request's own URI; a
// wrong response waits LoginFailDelay; and the session is never reachable
// through a cookie.
func (m *HTTPManager) serveDigest(ctx context.Context, req *httpRequest) {
	d, ok := parseDigestAuth(req.r.Header.Get("Authorization"))
	if !ok || d.uri != req.r.RequestURI {
		m.challenge(req, false, 0)
		return
	}
	lim := m.g.cfg.Limits
	if lim != nil {
		// Before any credential is checked. Valid digest requests spend
		// nothing (each request carries credentials); failures do.
		if dec := lim.Check(req.remote.Addr(), d.username); !dec.OK {
			m.g.stats.loginsThrottled.Add(1)
			m.digestFailed(ctx, req, d.username, throttledCause(dec))
			return
		}
	}
	// Network rules of the roles bound to the username, before any
	// credential is checked; the group roles are checked at login.
	if dec := m.g.policyEngine().Subject(d.username, nil).AllowsAddr(req.remote.Addr().Unmap()); !dec.Allowed() {
		m.digestFailed(ctx, req, d.username, "network: "+dec.Rule)
		return
	}
	ha1, p, known := "", auth.Principal{}, false
	if ds := m.digestSecrets(); ds != nil {
		ha1, p, known = ds.DigestHA1(d.username, m.cfg.Realm)
	}
	if !known {
		ha1 = dummyHA1
	}
	want := d.expected(ha1, req.r.Method)
	valid := subtle.ConstantTimeCompare([]byte(want), []byte(strings.ToLower(d.response))) == 1 && known
	if !valid {
		if lim != nil {
			lim.Charge(req.remote.Addr())
			lim.Failed(req.remote.Addr(), d.username)
		}
		m.digestFailed(ctx, req, d.username, "wrong digest response or unknown account")
		return
	}
	if lim != nil {
		lim.Succeeded(req.remote.Addr(), d.username)
	}
	var nc uint64
	if d.qop != "" {
		var err error
		if nc, err = strconv.ParseUint(d.nc, 16, 32); err != nil || nc == 0 || len(d.nc) != 8 {
			m.challenge(req, false, 0)
			return
		}
	}
	now := time.Now()
	nonce := uint32(0)
	if len(d.nonce) == 8 {
		nonce = parseHexID(d.nonce)
	}
	m.nonceMu.Lock()
	rec, found := m.nonces.Get(nonce)
	sameUser := found && (rec.user == "" || rec.user == p.Username)
	fresh := found && !rec.revoked && sameUser && now.Sub(rec.issued) <= nonceLifetime &&
		((d.qop != "" && nc > rec.lastNC) || (d.qop == "" && !rec.used))
	if !fresh {
		// The credentials are right but the nonce is not ours, too old,
		// or already used with this nc: a new nonce, stale=true, keeps
		// the session when the nonce was known.
		carry := uint32(0)
		if found && !rec.revoked && sameUser {
			carry = rec.sessID
		}
		m.nonceMu.Unlock()
		m.stats.stale.Add(1)
		m.g.log.Debug("proxy: digest nonce refused", "remote", req.remote.String(), "known", found)
		m.challenge(req, true, carry)
		return
	}
	rec.lastNC, rec.used, rec.user = nc, true, p.Username
	hs := m.digestSession(ctx, req, rec, p)
	m.nonceMu.Unlock()
	if hs == nil {
		m.digestFailed(ctx, req, p.Username, "policy: no pbx granted or pbx not granted")
		return
	}
	out, o := m.run(ctx, hs, req)
	m.release(hs, o)
	if o.close {
		m.nonceMu.Lock()
		rec.revoked = true
		m.nonceMu.Unlock()
	}
	if o.abandoned {
		return
	}
	m.write(req, http.StatusOK, out, 0)
}

// digestSession returns the session of rec, marked busy, creating and
// logging it in as p when there is none. m.nonceMu must be held (it
// serializes the creation per nonce; establishing does no I/O).
func (m *HTTPManager) digestSession(ctx context.Context, req *httpRequest, rec *nonceRecord, p auth.Principal) *httpSession {
	if rec.sessID != 0 {
		if hs, ok := m.sessions.Get(rec.sessID); ok && hs.digest && hs.reuse(time.Now(), p.Username) {
			return hs
		}
	}
	hs, cause := m.loginSession(ctx, req, p, "http-digest", true, false)
	if hs == nil {
		m.g.log.Debug("proxy: digest login refused", "cause", cause)
		return nil
	}
	rec.sessID = hs.id
	return hs
}

// SetDigest replaces the source of digest HA1s (HTTPConfig.Digest), for a
// configuration reload. Digest sessions already logged in are not
// re-checked here: the Gateway's revalidation ends those of removed users.
// A nil d refuses every digest request. Safe for concurrent use.
func (m *HTTPManager) SetDigest(d DigestSecrets) {
	m.digest.Store(&digestHolder{d})
}

// digestHolder lets an interface value live in an atomic.Pointer.
type digestHolder struct{ d DigestSecrets }

func (m *HTTPManager) digestSecrets() DigestSecrets {
	if h := m.digest.Load(); h != nil {
		return h.d
	}
	return nil
}

// userName returns the logged-in user's canonical name.
func (s *session) userName() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.principal.Username
}

// digestFailed audits a failed digest authentication, waits
// LoginFailDelay and challenges again.
func (m *HTTPManager) digestFailed(ctx context.Context, req *httpRequest, user, reason string) {
	ref := newRef()
	m.stats.digestFailed.Add(1)
	m.g.stats.loginsFailed.Add(1)
	m.auditHTTP(ctx, slog.LevelWarn, "auth.login",
		slog.String("result", "failure"),
		slog.String("door", "http-digest"),
		slog.String("remote", req.remote.String()),
		slog.String("user", clipLog(user)),
		slog.String("method", methodDigest),
		slog.String("reason", reason),
		slog.String("ref", ref),
	)
	if d := m.g.cfg.LoginFailDelay; d > 0 {
		t := time.NewTimer(d)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
		}
	}
	m.challenge(req, false, 0)
}

// challenge answers 401 with a new nonce, as Asterisk does
// (http-arawman-digest.txt), plus stale=true when asked. carry links the
// new nonce to an existing digest session.
func (m *HTTPManager) challenge(req *httpRequest, stale bool, carry uint32) {
	id := m.freshID()
	m.nonceMu.Lock()
	m.nonces.Add(id, &nonceRecord{issued: time.Now(), sessID: carry})
	m.nonceMu.Unlock()
	m.stats.challenge.Add(1)
	n := formatID(id)
	v := `Digest algorithm=MD5, realm="` + m.cfg.Realm + `", nonce="` + n + `", qop="auth", opaque="` + n + `"`
	if stale {
		v += ", stale=true"
	}
	body := m.errorPage(http.StatusUnauthorized, "Unauthorized", "")
	h := req.w.Header()
	m.setCommon(h, rawman.ContentTypeHTML, len(body))
	h["WWW-authenticate"] = []string{v}
	req.w.WriteHeader(http.StatusUnauthorized)
	_, _ = req.w.Write(body)
}

// expireNonces drops the nonces that can no longer serve even to carry a
// session (nonceLifetime + HTTPTimeout after their issue).
func (m *HTTPManager) expireNonces(now time.Time) {
	limit := nonceLifetime + m.cfg.HTTPTimeout
	for _, k := range m.nonces.Keys() {
		m.nonceMu.Lock()
		rec, ok := m.nonces.Peek(k)
		old := ok && now.Sub(rec.issued) > limit
		m.nonceMu.Unlock()
		if old {
			m.nonces.Remove(k)
		}
	}
}
