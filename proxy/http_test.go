package proxy

import (
	"fmt"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/amiproxy/amiproxy/internal/transcript"
)

// The HTTP recordings of Asterisk 22.10.1 replayed against the HTTP
// manager: the recorded request bytes are sent on real connections (with
// the proxy's cookie values and digest nonces substituted), and each
// answer is compared with the recording: the status line exactly, the
// header set exactly after normalizing Date, the cookie value and the
// nonce (the order is Go's: net/http writes header names sorted, while
// Asterisk writes Server, Date, Cache-Control, Content-type, Set-Cookie,
// Pragma, Content-Length), Content-Length against the body, and the body
// byte for byte after normalizing Ping timestamps and removing
// SuccessfulAuth, which the proxy does not emit. The bodies of WaitEvents
// that carry a call's events are compared by their event names (the
// simulated call is pbxsim's).

type httpReplayOpts struct {
	stop       func(b transcript.Block) bool
	edit       func(req string) string // what the client sends instead
	beforeSend func(req string)
	afterSend  func(req string)
	byNames    func(req string) bool // compare this request's answer by event names
	dropNames  []string              // recorded event names the proxy does not deliver
}

type digestState struct {
	nonces map[string]string // recorded nonce -> ours
}

func replayHTTP(t *testing.T, h *httpEnv, name string, o httpReplayOpts) {
	t.Helper()
	replayHTTPFile(t, h, loadTranscript(t, name), o)
}

func replayHTTPFile(t *testing.T, h *httpEnv, f *transcript.File, o httpReplayOpts) {
	t.Helper()
	name := f.Name
	conns := map[string]*rawConn{}
	reqs := map[string]string{}
	cookies := map[string]string{} // recorded id -> ours
	ds := digestState{nonces: map[string]string{}}
	var gotNames, wantNames []string
	for _, b := range f.Blocks {
		if o.stop != nil && o.stop(b) {
			break
		}
		switch b.Dir {
		case "C->S":
			req := string(b.Data)
			for rec, ours := range cookies {
				req = strings.ReplaceAll(req, `mansession_id="`+rec+`"`, `mansession_id="`+ours+`"`)
			}
			req = ds.rewrite(t, req)
			if o.edit != nil {
				req = o.edit(req)
			}
			if o.beforeSend != nil {
				o.beforeSend(req)
			}
			c := h.dialHTTP()
			conns[b.Conn] = c
			reqs[b.Conn] = req
			c.send(req)
			if o.afterSend != nil {
				o.afterSend(req)
			}
		case "S->C":
			c := conns[b.Conn]
			got := c.read(20 * time.Second)
			_ = c.conn.Close()
			want := parseRecorded(t, string(b.Data))
			req := reqs[b.Conn]
			reqLine, _, _ := strings.Cut(req, "\r\n")
			if rec, ours := cookieOf(want), cookieOf(got); rec != "" && ours != "" {
				cookies[rec] = ours
			}
			if rec, ours := nonceOf(want), nonceOf(got); rec != "" && ours != "" {
				ds.nonces[rec] = ours
			}
			if got.status != want.status {
				t.Fatalf("%s block %d (%s): status %q, want %q\nbody %q", name, b.Index, reqLine, got.status, want.status, got.body)
			}
			if g, w := headerSet(got), headerSet(want); !slices.Equal(g, w) {
				t.Errorf("%s block %d (%s): headers\n got %q\nwant %q", name, b.Index, reqLine, g, w)
			}
			if cl := got.header("Content-Length"); cl != fmt.Sprint(len(got.body)) {
				t.Errorf("%s block %d: Content-Length %s for a %d-byte body", name, b.Index, cl, len(got.body))
			}
			if o.byNames != nil && o.byNames(req) {
				gotNames = append(gotNames, eventNames(got.body)...)
				for _, n := range eventNames(want.body) {
					if !slices.Contains(o.dropNames, n) {
						wantNames = append(wantNames, n)
					}
				}
				continue
			}
			if g, w := normHTTP(got.body), normHTTP(dropSuccessfulAuth(want.body)); g != w {
				t.Errorf("%s block %d (%s): body\n got %q\nwant %q", name, b.Index, reqLine, g, w)
			}
		}
	}
	// Asterisk's own order varies between runs (compare the three
	// recordings); the multiset must match.
	slices.Sort(gotNames)
	slices.Sort(wantNames)
	if !slices.Equal(gotNames, wantNames) {
		t.Errorf("%s: events\n got %q\nwant %q", name, gotNames, wantNames)
	}
}

var nonceRE = regexp.MustCompile(`nonce="([0-9a-f]{8})"`)

func nonceOf(r rawResp) string {
	m := nonceRE.FindStringSubmatch(r.header("WWW-authenticate"))
	if m == nil {
		return ""
	}
	return m[1]
}

var authRE = regexp.MustCompile(`(?m)^Authorization: Digest (.*)\r$`)

// rewrite replaces a recorded Digest Authorization header by one computed
// over the proxy's nonce, with the recorded password (adminpass) when the
// recorded response verifies with it, else a wrong one.
func (ds digestState) rewrite(t *testing.T, req string) string {
	m := authRE.FindStringSubmatch(req)
	if m == nil {
		return req
	}
	d, ok := parseDigestAuth("Digest " + m[1])
	if !ok {
		t.Fatalf("recorded Authorization unreadable: %q", m[1])
	}
	method, _, _ := strings.Cut(req, " ")
	pass := "wrongpass"
	if d.expected(md5Hex(d.username+":"+d.realm+":adminpass"), method) == d.response {
		pass = "adminpass"
	}
	ours, ok := ds.nonces[d.nonce]
	if !ok {
		t.Fatalf("recorded nonce %s was never mapped", d.nonce)
	}
	return strings.Replace(req, m[0], "Authorization: "+digestHeader(d.username, pass, "asterisk", ours, method, d.uri, d.nc)+"\r", 1)
}

// digestHeader builds a curl-like Digest Authorization value.
func digestHeader(user, pass, realm, nonce, method, uri, nc string) string {
	d := digestAuth{username: user, realm: realm, nonce: nonce, uri: uri, cnonce: "0a4f113b", nc: nc, qop: "auth"}
	resp := d.expected(md5Hex(user+":"+realm+":"+pass), method)
	return `Digest username="` + user + `", realm="` + realm + `", nonce="` + nonce + `", uri="` + uri +
		`", cnonce="0a4f113b", nc=` + nc + `, qop=auth, response="` + resp + `", algorithm=MD5, opaque="` + nonce + `"`
}

// originateFromTCP logs admin in on the native door and originates the
// recordings' call (Local/100@lab, Wait 1, async).
func originateFromTCP(h *httpEnv) {
	c := h.login("admin", "adminpass")
	m := c.call("Action", "Originate", "ActionID", "o1", "Channel", "Local/100@lab", "Application", "Wait", "Data", "1", "Async", "true")
	if header(m, "Message") != "Originate successfully queued" {
		h.t.Fatalf("Originate = %q", m)
	}
}

func waitEventFlow(h *httpEnv) httpReplayOpts {
	return httpReplayOpts{
		// WaitEvent #1 returns the backlog at once in Asterisk: the
		// session's own SuccessfulAuth. The proxy does not emit it, so
		// the backlog is empty and the request asks for Timeout 0 to get
		// the same (otherwise empty) answer without waiting 50 s.
		edit: func(req string) string {
			return strings.Replace(req, "actionid=we-1 ", "actionid=we-1&timeout=0 ", 1)
		},
		afterSend: func(req string) {
			if strings.Contains(req, "actionid=we-2") {
				time.Sleep(150 * time.Millisecond) // the WaitEvent is pending
				originateFromTCP(h)
			}
		},
		beforeSend: func(req string) {
			if strings.Contains(req, "actionid=we-3") {
				time.Sleep(600 * time.Millisecond) // the call ends (TimeScale 0.1)
			}
		},
		byNames: func(req string) bool {
			return strings.Contains(req, "actionid=we-2") || strings.Contains(req, "actionid=we-3")
		},
		// The OriginateResponse reaches the originator only (doc.go).
		dropNames: []string{"OriginateResponse", "SuccessfulAuth"},
	}
}

func TestHTTPTranscripts(t *testing.T) {
	for _, name := range []string{"http-rawman-waitevent.txt", "http-mxml-waitevent.txt", "http-manager-waitevent.txt"} {
		t.Run(name, func(t *testing.T) {
			checkLeaks(t)
			h := newHTTPEnv(t, envOpts{}, HTTPConfig{})
			replayHTTP(t, h, name, waitEventFlow(h))
		})
	}
	for _, name := range []string{"http-no-cookie-invalid-cookie.txt", "http-rawman-login-errors.txt"} {
		t.Run(name, func(t *testing.T) {
			checkLeaks(t)
			// limited may send NoSuchAction, so that pbxsim answers the
			// unknown action as Asterisk does.
			pc := testPolicy()
			pc.Roles[1].AllowActions = []string{"NoSuchAction"}
			pc.Users["hashonly"] = []string{"admin"}
			h := newHTTPEnv(t, envOpts{policy: &pc}, HTTPConfig{})
			replayHTTP(t, h, name, httpReplayOpts{})
		})
	}
	t.Run("http-rawman-waitevent-idle-and-concurrent.txt", func(t *testing.T) {
		checkLeaks(t)
		h := newHTTPEnv(t, envOpts{}, HTTPConfig{})
		start := time.Now()
		replayHTTP(t, h, "http-rawman-waitevent-idle-and-concurrent.txt", httpReplayOpts{
			// [C] waits httptimeout-10 = 50 s: TestHTTPWaitEventCap.
			stop: func(b transcript.Block) bool { return b.Conn == "C" },
			beforeSend: func(req string) {
				if strings.Contains(req, "actionid=B") {
					time.Sleep(300 * time.Millisecond) // [A] is pending
				}
			},
		})
		if d := time.Since(start); d < 2*time.Second {
			t.Errorf("replay took %v; [B] should have waited its Timeout of 2 s", d)
		}
	})
	t.Run("http-arawman-digest.txt", func(t *testing.T) {
		checkLeaks(t)
		h := newHTTPEnv(t, envOpts{}, HTTPConfig{})
		replayHTTP(t, h, "http-arawman-digest.txt", httpReplayOpts{})
	})
	t.Run("http-expired-cookie.txt", func(t *testing.T) {
		checkLeaks(t)
		h := newHTTPEnv(t, envOpts{}, HTTPConfig{HTTPTimeout: 1500 * time.Millisecond})
		f := loadTranscript(t, "http-expired-cookie.txt")
		// The recording's 70 s idle becomes 2 s with httptimeout 1.5 s;
		// Max-Age follows httptimeout (rounded down to seconds).
		for i := range f.Blocks {
			if f.Blocks[i].Dir == "S->C" {
				f.Blocks[i].Data = []byte(strings.ReplaceAll(string(f.Blocks[i].Data), "Max-Age=60", "Max-Age=1"))
			}
		}
		sent := 0
		replayHTTPFile(t, h, f, httpReplayOpts{beforeSend: func(string) {
			sent++
			if sent == 3 {
				time.Sleep(2 * time.Second)
			}
		}})
		if s := h.hm.Stats(); s.Expired != 1 {
			t.Errorf("Stats.Expired = %d, want 1", s.Expired)
		}
	})
}
