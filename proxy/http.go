package proxy

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"

	"github.com/amiproxy/amiproxy/rawman"
)

// Defaults applied by NewHTTPManager to zero fields of an HTTPConfig.
const (
	DefaultHTTPTimeout      = 60 * time.Second // Asterisk's httptimeout
	DefaultMaxHTTPSessions  = 10000
	DefaultHTTPSessionQueue = 1000
	DefaultRealm            = "asterisk"
	DefaultServerHeader     = "Asterisk"
)

const (
	// unauthLifetime is how long a session that is not logged in lives
	// after its last request (Asterisk: 5 s, or httptimeout if lower).
	unauthLifetime = 5 * time.Second
	// waitEventMargin: a WaitEvent waits at most until 10 s before the
	// session would expire (httptimeout - 10 s after a request).
	waitEventMargin = 10 * time.Second
	// nonceLifetime: a digest nonce is stale 62 s after it was issued.
	nonceLifetime = 62 * time.Second
	// sweepInterval is how often the sweeper moves the events waiting in
	// idle sessions' upstream queues into their HTTP queues.
	sweepInterval = 100 * time.Millisecond
	// expireEvery: the sweeper purges expired sessions every 10th sweep.
	expireEvery = 10
	// maxPendingSessions bounds the sessions kept while not logged in
	// (those that hold a Challenge), apart from MaxSessions.
	maxPendingSessions = 1024
)

// EventEventsDropped is the event that heads a WaitEvent batch when the
// session's HTTP queue overflowed since the previous WaitEvent: "Event:
// ProxyEventsDropped", "Privilege: system,all", "Dropped: <n>" (the
// number of oldest events discarded).
const EventEventsDropped = "ProxyEventsDropped"

// HTTPConfig tunes an HTTPManager. Zero fields take the defaults.
type HTTPConfig struct {
	// HTTPTimeout is Asterisk's httptimeout: a logged-in session expires
	// this long after its last request, the cookie's Max-Age, and a
	// WaitEvent waits at most HTTPTimeout - 10 s. Default 60 s.
	HTTPTimeout time.Duration
	// MaxSessions bounds the logged-in sessions (cookie and digest); one
	// more evicts the least recently used, whose pending WaitEvent ends
	// and whose cookie then yields a new session. It also bounds the
	// digest nonces kept. Default 10000.
	MaxSessions int
	// SessionQueue is how many events one session keeps between
	// WaitEvents. When it is full the oldest event is dropped and
	// counted; the next WaitEvent batch starts with "Event:
	// ProxyEventsDropped" and "Dropped: <n>". Default 1000.
	SessionQueue int
	// Realm is the HTTP Digest realm (Asterisk: systemname, else
	// "asterisk"). Default "asterisk".
	Realm string
	// ServerHeader is the Server header and the address line of error
	// pages. Default "Asterisk".
	ServerHeader string
	// Digest gives the digest URIs (/arawman, /amxml, /amanager) the
	// HA1 of an account. Nil: every digest request is answered 401.
	// NewDigestAccounts builds one from the local accounts;
	// HTTPManager.SetDigest replaces it on a reload.
	Digest DigestSecrets
}

// HTTPStats is a snapshot of an HTTPManager's counters.
type HTTPStats struct {
	Sessions        int    // logged-in sessions kept now (cookie and digest)
	Pending         int    // sessions kept while not logged in (they hold a Challenge)
	Created         uint64 // sessions logged in
	Expired         uint64 // purged after their lifetime
	Evicted         uint64 // evicted by MaxSessions
	UnknownCookies  uint64 // requests with a cookie that named no live session
	EventsDropped   uint64 // events discarded by full session queues
	Refused         uint64 // requests refused for CR, LF or NUL (or a bad name) in a parameter
	DigestChallenge uint64 // 401 answers
	DigestFailed    uint64 // digest responses that did not verify
	DigestStale     uint64 // valid digest responses with a stale, unknown or replayed nonce
}

type httpCounters struct {
	created, expired, evicted, unknown, dropped, refused atomic.Uint64
	challenge, digestFailed, stale                       atomic.Uint64
}

// HTTPManager is Asterisk's HTTP manager front door: /rawman, /mxml and
// /manager with mansession_id cookie sessions, and /arawman, /amxml and
// /amanager with HTTP Digest, at the root (the Gateway's default PBX
// choice) and under /pbx/<name>/ (that PBX). See the package
// documentation for what clients see.
//
// Create one with Gateway.NewHTTPManager; the zero value is not usable. An
// HTTPManager is an http.Handler, safe for concurrent use. It runs one
// goroutine, the sweeper, until Close. Close (or Gateway.Close) ends the
// pending WaitEvents, waits for the requests in progress and drops every
// session; later requests get 503. It is idempotent. The http.Server that
// serves it belongs to the caller, who should set its ReadHeaderTimeout
// and IdleTimeout.
type HTTPManager struct {
	g   *Gateway
	cfg HTTPConfig
	ids *idGen

	sessions *lru.Cache[uint32, *httpSession] // logged in: cookie and digest
	pending  *lru.Cache[uint32, *httpSession] // not logged in, holding a Challenge
	nonces   *lru.Cache[uint32, *nonceRecord] // digest nonces issued
	nonceMu  sync.Mutex                       // nonce record fields
	digest   atomic.Pointer[digestHolder]     // HTTPConfig.Digest, swapped by SetDigest

	bearers  *lru.Cache[[sha256.Size]byte, *httpSession] // bearer sessions by token hash (also in sessions)
	bearerMu sync.Mutex                                  // serializes bearer session creation

	ctx    context.Context // ends at Close
	cancel context.CancelFunc

	mu        sync.Mutex
	closed    bool
	wg        sync.WaitGroup // the sweeper and every request in progress
	closeOnce sync.Once

	stats httpCounters
}

// NewHTTPManager checks cfg, applies its defaults and returns the HTTP
// manager door of g. Gateway.Close closes it too.
func (g *Gateway) NewHTTPManager(cfg HTTPConfig) (*HTTPManager, error) {
	var errs []error
	if cfg.HTTPTimeout < 0 {
		errs = append(errs, fmt.Errorf("proxy: negative http timeout %v", cfg.HTTPTimeout))
	}
	if cfg.MaxSessions < 0 {
		errs = append(errs, fmt.Errorf("proxy: negative max http sessions %d", cfg.MaxSessions))
	}
	if cfg.SessionQueue < 0 {
		errs = append(errs, fmt.Errorf("proxy: negative http session queue %d", cfg.SessionQueue))
	}
	if strings.ContainsAny(cfg.Realm, "\"\\\r\n\x00") {
		errs = append(errs, errors.New("proxy: realm contains a quote, backslash, CR, LF or NUL"))
	}
	if strings.ContainsAny(cfg.ServerHeader, "\r\n\x00<>&") {
		errs = append(errs, errors.New("proxy: server header contains CR, LF, NUL or an HTML special character"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if cfg.HTTPTimeout == 0 {
		cfg.HTTPTimeout = DefaultHTTPTimeout
	}
	if cfg.MaxSessions == 0 {
		cfg.MaxSessions = DefaultMaxHTTPSessions
	}
	if cfg.SessionQueue == 0 {
		cfg.SessionQueue = DefaultHTTPSessionQueue
	}
	if cfg.Realm == "" {
		cfg.Realm = DefaultRealm
	}
	if cfg.ServerHeader == "" {
		cfg.ServerHeader = DefaultServerHeader
	}
	m := &HTTPManager{g: g, cfg: cfg, ids: newIDGen()}
	m.digest.Store(&digestHolder{cfg.Digest})
	var err error
	// The eviction callbacks run outside the caches' locks (lru.Cache
	// calls them after unlocking) and only mark the session and release
	// its upstream subscription, which never blocks.
	if m.sessions, err = lru.NewWithEvict(cfg.MaxSessions, m.onEvict(whereSessions)); err != nil {
		return nil, fmt.Errorf("proxy: http sessions: %w", err)
	}
	if m.pending, err = lru.NewWithEvict(min(cfg.MaxSessions, maxPendingSessions), m.onEvict(wherePending)); err != nil {
		return nil, fmt.Errorf("proxy: http pending sessions: %w", err)
	}
	if m.nonces, err = lru.New[uint32, *nonceRecord](cfg.MaxSessions); err != nil {
		return nil, fmt.Errorf("proxy: digest nonces: %w", err)
	}
	if m.bearers, err = lru.New[[sha256.Size]byte, *httpSession](cfg.MaxSessions); err != nil {
		return nil, fmt.Errorf("proxy: bearer sessions: %w", err)
	}
	m.ctx, m.cancel = context.WithCancel(context.Background())
	g.mu.Lock()
	if g.closed {
		g.mu.Unlock()
		m.cancel()
		return nil, ErrClosed
	}
	g.managers[m] = struct{}{}
	g.mu.Unlock()
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		m.sweep()
	}()
	return m, nil
}

// Close ends the pending WaitEvents (they answer with what is queued and,
// for sessions that read system events, "Event: Shutdown"), waits for the
// requests in progress and the sweeper, and drops every session. It is
// idempotent and returns nil.
func (m *HTTPManager) Close() error {
	m.closeOnce.Do(func() {
		m.mu.Lock()
		m.closed = true
		m.mu.Unlock()
		m.cancel()
	})
	m.wg.Wait()
	m.sessions.Purge()
	m.pending.Purge()
	m.nonces.Purge()
	m.bearers.Purge()
	m.g.mu.Lock()
	delete(m.g.managers, m)
	m.g.mu.Unlock()
	return nil
}

// Stats returns a snapshot of the manager's counters.
func (m *HTTPManager) Stats() HTTPStats {
	s := &m.stats
	return HTTPStats{
		Sessions:        m.sessions.Len(),
		Pending:         m.pending.Len(),
		Created:         s.created.Load(),
		Expired:         s.expired.Load(),
		Evicted:         s.evicted.Load(),
		UnknownCookies:  s.unknown.Load(),
		EventsDropped:   s.dropped.Load(),
		Refused:         s.refused.Load(),
		DigestChallenge: s.challenge.Load(),
		DigestFailed:    s.digestFailed.Load(),
		DigestStale:     s.stale.Load(),
	}
}

// httpRequest is one parsed request to a manager URI.
type httpRequest struct {
	w      http.ResponseWriter
	r      *http.Request
	format rawman.Format
	digest bool
	pbx    string         // from /pbx/<name>/, else ""
	params rawman.Message // the parameters as the action
	perr   error          // a *rawman.ParamError: refuse the action
	remote netip.AddrPort
	start  time.Time
}

// ServeHTTP serves one request (see the package documentation).
func (m *HTTPManager) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		m.writeError(w, http.StatusServiceUnavailable, "Service Unavailable", "Shutdown in progress")
		return
	}
	m.wg.Add(1)
	m.mu.Unlock()
	defer m.wg.Done()
	defer func() {
		if v := recover(); v != nil {
			if v == http.ErrAbortHandler {
				panic(v)
			}
			m.g.stats.panics.Add(1)
			m.g.log.Error("proxy: http handler panicked", "panic", v, "stack", string(debug.Stack()))
			panic(http.ErrAbortHandler) // net/http closes this connection only, quietly
		}
	}()

	switch r.Method {
	case http.MethodGet, http.MethodHead, http.MethodPost:
	default:
		m.writeError(w, http.StatusNotImplemented, "Not Implemented", "Attempt to use unimplemented / unsupported method")
		return
	}
	pbx, uri, ok := splitPBX(r.URL.EscapedPath())
	var f rawman.Format
	var digest bool
	if ok {
		f, digest, ok = rawman.ParseFormat(uri)
	}
	if !ok {
		m.writeError(w, http.StatusNotFound, "Not Found", "The requested URL was not found on this server.")
		return
	}
	req := &httpRequest{w: w, r: r, format: f, digest: digest, pbx: pbx, start: time.Now()}
	if ap, err := netip.ParseAddrPort(r.RemoteAddr); err == nil {
		req.remote = ap
	}
	if r.Method == http.MethodPost {
		// Asterisk reads the body only for a form; the query string is
		// ignored on POST either way.
		if rawman.IsFormContentType(r.Header.Get("Content-Type")) {
			if r.ContentLength > rawman.MaxFormBody {
				m.writeError(w, http.StatusRequestEntityTooLarge, "Request Entity Too Large", "Body too large")
				return
			}
			body, err := io.ReadAll(io.LimitReader(r.Body, rawman.MaxFormBody+1))
			if err != nil {
				m.writeError(w, http.StatusBadRequest, "Bad Request", "Error reading request body")
				return
			}
			if len(body) > rawman.MaxFormBody {
				m.writeError(w, http.StatusRequestEntityTooLarge, "Request Entity Too Large", "Body too large")
				return
			}
			req.params, _, req.perr = rawman.ParseForm(body)
		}
	} else {
		req.params, _, req.perr = rawman.ParseQuery(r.URL.RawQuery)
	}
	if req.perr == nil && pbx != "" {
		// /pbx/<name>/ addresses that PBX whatever the parameters say.
		req.params = req.params.Clone()
		req.params.Del("Server")
		if err := req.params.Add("Server", pbx); err != nil {
			req.perr = err
		}
	}
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	stop := context.AfterFunc(m.ctx, cancel)
	defer stop()
	if digest {
		m.serveDigest(ctx, req)
		return
	}
	if token, ok := bearerToken(r); ok {
		m.serveBearer(ctx, req, token)
		return
	}
	m.serveCookie(ctx, req)
}

// splitPBX cuts "/pbx/<name>" off the raw path. The name is not checked
// against the pool: an unknown PBX is refused like one the user may not
// use, so that the URI space does not reveal which PBXs exist.
func splitPBX(path string) (pbx, rest string, ok bool) {
	after, found := cutPrefixFold(path, "/pbx/")
	if !found {
		return "", path, true
	}
	name, rest, found := strings.Cut(after, "/")
	if !found || name == "" || len(name) > 64 {
		return "", "", false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return "", "", false
		}
	}
	return name, "/" + rest, true
}

func cutPrefixFold(s, prefix string) (string, bool) {
	if len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix) {
		return s[len(prefix):], true
	}
	return s, false
}

// serveCookie serves /rawman, /mxml and /manager.
func (m *HTTPManager) serveCookie(ctx context.Context, req *httpRequest) {
	now := time.Now()
	id := cookieID(req.r)
	hs := m.lookup(id, now)
	if hs == nil {
		if id != 0 {
			m.stats.unknown.Add(1)
		}
		hs = m.newHTTPSession(req.remote, "http", false)
	}
	out, outcome := m.run(ctx, hs, req)
	m.release(hs, outcome)
	if outcome.abandoned {
		return // the client left; nobody reads the answer
	}
	m.write(req, http.StatusOK, out, hs.id)
}

// outcome is what a request did to its session.
type outcome struct {
	close     bool // Logoff, a failed Login, or the end notice delivered: destroy the session
	login     bool // the request logged the session in
	abandoned bool // the client went away
}

// run executes the request's action on hs and returns the AMI text to
// render.
func (m *HTTPManager) run(ctx context.Context, hs *httpSession, req *httpRequest) ([]byte, outcome) {
	if req.perr != nil {
		m.stats.refused.Add(1)
		m.g.stats.frameErrors.Add(1)
		m.g.log.Debug("proxy: http parameter refused", "session", hs.sess.id, "remote", req.remote.String(), "err", req.perr)
		return errorReply("", refusalText(req.perr)), outcome{}
	}
	if d, ok := hs.sess.allowsFrom(req.remote.Addr()); !ok {
		// A session used from another address than the one it logged in
		// from: that address must pass the user's network rules too.
		hs.sess.deny(req.start, req.params.Action(), req.params.ActionID(), "", "network: "+d.Rule)
		return errorReply(req.params.ActionID(), msgPermissionDenied), outcome{}
	}
	res := hs.sess.handle(ctx, req.params)
	o := outcome{close: res.close, login: res.login}
	if res.login {
		// Over HTTP Asterisk 22 answers a Login with the response alone
		// (http-*-waitevent.txt): FullyBooted is not sent.
		if i := bytes.Index(res.out, []byte("\r\n\r\n")); i >= 0 {
			res.out = res.out[:i+4]
		}
	}
	if res.wait != nil {
		out, ok := m.waitEvent(ctx, hs, *res.wait)
		o.abandoned = !ok && ctx.Err() != nil && m.ctx.Err() == nil
		o.close = hs.endDelivered()
		return out, o
	}
	return res.out, o
}

// refusalText is the Message of a request refused for its parameters. It
// never repeats the parameter.
func refusalText(err error) string {
	switch {
	case errors.Is(err, rawman.ErrInjection):
		return "Invalid HTTP parameter: CR, LF or NUL is not allowed"
	case errors.Is(err, rawman.ErrBadName):
		return "Invalid HTTP parameter name"
	}
	return "Invalid HTTP parameter"
}

// cookieID returns the mansession_id of the request as Asterisk reads it:
// the last Cookie header, the last mansession_id in it (name in any case,
// value in optional double quotes), as hexadecimal. Anything unreadable is
// 0, which names no session.
func cookieID(r *http.Request) uint32 {
	vals := r.Header.Values("Cookie")
	if len(vals) == 0 {
		return 0
	}
	var id uint32
	for part := range strings.SplitSeq(vals[len(vals)-1], ";") {
		name, val, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok || !strings.EqualFold(strings.TrimSpace(name), "mansession_id") {
			continue
		}
		id = parseHexID(strings.Trim(strings.TrimSpace(val), "\""))
	}
	return id
}

// parseHexID reads 1 to 8 hex digits; anything else is 0.
func parseHexID(s string) uint32 {
	if len(s) == 0 || len(s) > 8 {
		return 0
	}
	v, err := strconv.ParseUint(s, 16, 32)
	if err != nil {
		return 0
	}
	return uint32(v)
}

func formatID(id uint32) string {
	const hexDigits = "0123456789abcdef"
	var b [8]byte
	for i := 7; i >= 0; i-- {
		b[i] = hexDigits[id&0xf]
		id >>= 4
	}
	return string(b[:])
}

// setCommon sets the headers every Asterisk HTTP answer carries. Header
// names are set as map keys so that Go keeps Asterisk's spelling
// ("Content-type"); Content-Type is set to nil so that net/http neither
// sniffs nor adds one.
func (m *HTTPManager) setCommon(h http.Header, contentType string, bodyLen int) {
	h["Server"] = []string{m.cfg.ServerHeader}
	h["Date"] = []string{time.Now().UTC().Format(http.TimeFormat)}
	h["Cache-Control"] = []string{"no-cache, no-store"}
	h["Content-Type"] = nil
	h["Content-type"] = []string{contentType}
	h["Content-Length"] = []string{strconv.Itoa(bodyLen)}
}

// write answers a manager request: the AMI text rendered in the request's
// format. cookie, when not 0, adds Set-Cookie and Pragma (cookie URIs).
func (m *HTTPManager) write(req *httpRequest, status int, ami []byte, cookie uint32) {
	body := rawman.Render(nil, req.format, req.digest, ami, req.params)
	h := req.w.Header()
	m.setCommon(h, req.format.ContentType(), len(body))
	if cookie != 0 {
		h["Set-Cookie"] = []string{`mansession_id="` + formatID(cookie) + `"; Version=1; Max-Age=` +
			strconv.FormatInt(int64(m.cfg.HTTPTimeout/time.Second), 10)}
		h["Pragma"] = []string{"SuppressEvents"}
	}
	req.w.WriteHeader(status)
	_, _ = req.w.Write(body)
}

// errorPage is Asterisk's ast_http_error page.
func (m *HTTPManager) errorPage(code int, title, text string) []byte {
	return []byte("<!DOCTYPE HTML PUBLIC \"-//IETF//DTD HTML 2.0//EN\">\r\n" +
		"<html><head>\r\n" +
		"<title>" + strconv.Itoa(code) + " " + title + "</title>\r\n" +
		"</head><body>\r\n" +
		"<h1>" + title + "</h1>\r\n" +
		"<p>" + text + "</p>\r\n" +
		"<hr />\r\n" +
		"<address>" + m.cfg.ServerHeader + "</address>\r\n" +
		"</body></html>\r\n")
}

// writeError answers with an Asterisk error page.
func (m *HTTPManager) writeError(w http.ResponseWriter, code int, title, text string) {
	body := m.errorPage(code, title, text)
	m.setCommon(w.Header(), rawman.ContentTypeHTML, len(body))
	w.WriteHeader(code)
	_, _ = w.Write(body)
}

// auditHTTP logs a refusal of the HTTP door that never reached a session.
func (m *HTTPManager) auditHTTP(ctx context.Context, level slog.Level, msg string, attrs ...slog.Attr) {
	m.g.audit.LogAttrs(ctx, level, msg, attrs...)
}
