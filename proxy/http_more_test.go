package proxy

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/amiproxy/amiproxy/rawman"
)

// loginHTTP logs user in on /rawman and returns the cookie id.
func (h *httpEnv) loginHTTP(prefix, user, secret string) string {
	h.t.Helper()
	r := h.get(prefix+"/rawman?action=login&username="+user+"&secret="+secret, "")
	if r.body != "Response: Success\r\nMessage: Authentication accepted\r\n\r\n" {
		h.t.Fatalf("login %s: %q", user, r.body)
	}
	return cookieOf(r)
}

const permissionDenied = "Response: Error\r\nMessage: Permission denied\r\n\r\n"

// monitorPBX logs in on pbxsim directly (not through the proxy) and
// returns a reader of everything the PBX sends that session.
func monitorPBX(t *testing.T, e *env, pbx string) *client {
	t.Helper()
	conn, err := net.Dial("tcp", e.sims[pbx].Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	c := &client{t: t, conn: conn, br: bufio.NewReader(conn)}
	c.line() // banner
	if m := c.call("Action", "Login", "Username", "admin", "Secret", "adminpass"); !strings.Contains(m, "Authentication accepted") {
		t.Fatalf("pbxsim login: %q", m)
	}
	return c
}

// CR, LF or NUL in a parameter: the request is refused with HTTP 200 and
// "Response: Error" in the request's format, and nothing reaches the PBX.
func TestHTTPInjectionRefused(t *testing.T) {
	checkLeaks(t)
	h := newHTTPEnv(t, envOpts{}, HTTPConfig{})
	mon := monitorPBX(t, h.env, "east")
	id := h.loginHTTP("", "admin", "adminpass")
	const want = "Response: Error\r\nMessage: Invalid HTTP parameter: CR, LF or NUL is not allowed\r\n\r\n"
	for _, q := range []string{
		"action=UserEvent&userevent=Injected&x=a%0D%0AEvent:%20Fake",
		"action=UserEvent&userevent=Injected%0A",
		"action=UserEvent&userevent=Injected&x=%00",
		"action=UserEvent&user%0Devent=Injected",
	} {
		if r := h.get("/rawman?"+q, id); r.status != "HTTP/1.1 200 OK" || r.body != want {
			t.Errorf("GET %s = %s %q, want 200 %q", q, r.status, r.body, want)
		}
	}
	// POST form bodies are refused alike, in the request's format.
	resp, err := h.client.Post("http://"+h.addr+"/mxml", "application/x-www-form-urlencoded",
		strings.NewReader("action=UserEvent&userevent=Injected&x=%0D%0AEvent:%20Fake"))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	wantXML := "<ajax-response>\n<response type='object' id='unknown'><generic response='Error' message='Invalid HTTP parameter: CR, LF or NUL is not allowed' /></response>\n</ajax-response>\n"
	if resp.StatusCode != 200 || string(body) != wantXML {
		t.Errorf("POST /mxml = %d %q, want 200 %q", resp.StatusCode, body, wantXML)
	}
	// A clean UserEvent afterwards reaches the PBX: the monitor sees it,
	// and nothing injected before it.
	if r := h.get("/rawman?action=UserEvent&userevent=Clean", id); !strings.HasPrefix(r.body, "Response: Success") {
		t.Fatalf("clean UserEvent = %q", r.body)
	}
	for _, m := range mon.until("UserEvent: Clean") {
		if strings.Contains(m, "Injected") || strings.Contains(m, "Fake") {
			t.Errorf("pbxsim saw %q", m)
		}
	}
	if s := h.hm.Stats(); s.Refused != 5 {
		t.Errorf("Stats.Refused = %d, want 5", s.Refused)
	}
}

// More logged-in sessions than MaxSessions: the least recently used is
// evicted, its cookie then yields a new unauthenticated session.
func TestHTTPSessionLRU(t *testing.T) {
	checkLeaks(t)
	h := newHTTPEnv(t, envOpts{}, HTTPConfig{MaxSessions: 3})
	var ids []string
	for range 3 {
		ids = append(ids, h.loginHTTP("", "admin", "adminpass"))
	}
	// Touch the first so that the second is the least recently used.
	if r := h.get("/rawman?action=ping", ids[0]); !strings.Contains(r.body, "Ping: Pong") {
		t.Fatalf("ping = %q", r.body)
	}
	ids = append(ids, h.loginHTTP("", "admin", "adminpass"))
	r := h.get("/rawman?action=ping", ids[1])
	if r.body != permissionDenied || cookieOf(r) == ids[1] {
		t.Errorf("evicted session: %q cookie %s, want Permission denied and a new cookie", r.body, cookieOf(r))
	}
	for _, i := range []int{0, 2, 3} {
		if r := h.get("/rawman?action=ping", ids[i]); !strings.Contains(r.body, "Ping: Pong") || cookieOf(r) != ids[i] {
			t.Errorf("session %d: %q cookie %s", i, r.body, cookieOf(r))
		}
	}
	if s := h.hm.Stats(); s.Evicted != 1 || s.Sessions != 3 {
		t.Errorf("Stats = %+v, want Evicted 1, Sessions 3", s)
	}
	if s := h.gw.Stats(); s.HTTPSessions != 3 {
		t.Errorf("Gateway Stats.HTTPSessions = %d, want 3", s.HTTPSessions)
	}
	// Logoff destroys the session.
	if r := h.get("/rawman?action=logoff", ids[0]); r.body != "Response: Goodbye\r\nMessage: Thanks for all the fish.\r\n\r\n" {
		t.Errorf("logoff = %q", r.body)
	}
	if r := h.get("/rawman?action=ping", ids[0]); r.body != permissionDenied {
		t.Errorf("ping after logoff = %q", r.body)
	}
}

// A not-logged-in session that holds a Challenge lives min(5 s,
// httptimeout); MD5 login over HTTP works through it.
func TestHTTPChallengeLogin(t *testing.T) {
	checkLeaks(t)
	h := newHTTPEnv(t, envOpts{}, HTTPConfig{HTTPTimeout: time.Second})
	r := h.get("/rawman?action=challenge&authtype=md5", "")
	id, ch := cookieOf(r), header(r.body, "Challenge")
	r = h.get("/rawman?action=login&authtype=md5&username=admin&key="+md5hex(ch+"adminpass"), id)
	if r.body != "Response: Success\r\nMessage: Authentication accepted\r\n\r\n" || cookieOf(r) != id {
		t.Fatalf("md5 login = %q (cookie %s, want %s)", r.body, cookieOf(r), id)
	}
	r = h.get("/rawman?action=challenge&authtype=md5", "")
	id = cookieOf(r)
	time.Sleep(1200 * time.Millisecond)
	if r := h.get("/rawman?action=ping", id); cookieOf(r) == id {
		t.Errorf("pending session outlived its lifetime")
	}
}

// WaitEvent: a second WaitEvent ends the first with the recorded empty
// forms; without Timeout the wait is capped at httptimeout - 10 s.
func TestHTTPWaitEventKickAndCap(t *testing.T) {
	checkLeaks(t)
	h := newHTTPEnv(t, envOpts{}, HTTPConfig{HTTPTimeout: 11 * time.Second})
	for _, tc := range []struct{ uri, empty string }{
		{"/rawman", ""},
		{"/mxml", "<ajax-response>\n</ajax-response>\n"},
		{"/manager", strings.TrimSuffix(string(rawman.AppendHTML(nil, nil)), "")},
	} {
		id := h.loginHTTP("", "admin", "adminpass")
		first := h.dialHTTP()
		first.send("GET " + tc.uri + "?action=waitevent&timeout=30 HTTP/1.1\r\nHost: x\r\nCookie: mansession_id=\"" + id + "\"\r\n\r\n")
		time.Sleep(100 * time.Millisecond)
		second := h.dialHTTP()
		second.send("GET " + tc.uri + "?action=waitevent&timeout=0&actionid=B HTTP/1.1\r\nHost: x\r\nCookie: mansession_id=\"" + id + "\"\r\n\r\n")
		if r := first.read(5 * time.Second); r.status != "HTTP/1.1 200 OK" || r.body != tc.empty {
			t.Errorf("%s kicked WaitEvent = %s %q, want 200 %q", tc.uri, r.status, r.body, tc.empty)
		}
		if r := second.read(5 * time.Second); !strings.Contains(r.body, "WaitEventComplete") {
			t.Errorf("%s second WaitEvent = %q", tc.uri, r.body)
		}
	}
	id := h.loginHTTP("", "admin", "adminpass")
	start := time.Now()
	r := h.get("/rawman?action=waitevent&actionid=C", id)
	d := time.Since(start)
	want := "Response: Success\r\nActionID: C\r\nMessage: Waiting for Event completed.\r\n\r\nEvent: WaitEventComplete\r\nActionID: C\r\n\r\n"
	if r.body != want || d < 800*time.Millisecond || d > 3*time.Second {
		t.Errorf("idle WaitEvent = %q after %v, want %q after about 1 s", r.body, d, want)
	}
}

// A full session queue drops its oldest events and says so at the head of
// the next WaitEvent batch.
func TestHTTPQueueDropsOldest(t *testing.T) {
	checkLeaks(t)
	h := newHTTPEnv(t, envOpts{}, HTTPConfig{SessionQueue: 3})
	id := h.loginHTTP("", "admin", "adminpass")
	for i := 1; i <= 5; i++ {
		h.sims["east"].Emit(rawman.New("Event", "UserEvent", "Privilege", "user,all", "UserEvent", fmt.Sprint("n", i)))
	}
	waitFor(t, "the sweeper to queue the events", func() bool { return h.hm.Stats().EventsDropped == 2 })
	r := h.get("/rawman?action=waitevent&timeout=0", id)
	want := "Response: Success\r\nMessage: Waiting for Event completed.\r\n\r\n" +
		"Event: ProxyEventsDropped\r\nPrivilege: system,all\r\nDropped: 2\r\n\r\n" +
		"Event: UserEvent\r\nPrivilege: user,all\r\nUserEvent: n3\r\n\r\n" +
		"Event: UserEvent\r\nPrivilege: user,all\r\nUserEvent: n4\r\n\r\n" +
		"Event: UserEvent\r\nPrivilege: user,all\r\nUserEvent: n5\r\n\r\n" +
		"Event: WaitEventComplete\r\n\r\n"
	if r.body != want {
		t.Errorf("WaitEvent =\n%q\nwant\n%q", r.body, want)
	}
	// The notice is given once.
	if r := h.get("/rawman?action=waitevent&timeout=0", id); strings.Contains(r.body, "ProxyEventsDropped") {
		t.Errorf("second WaitEvent repeats the notice: %q", r.body)
	}
}

// Digest: no replay (same nc twice), no foreign nonce, wrong passwords and
// hash-only accounts refused, the uri must be the request's.
func TestHTTPDigest(t *testing.T) {
	checkLeaks(t)
	h := newHTTPEnvAccounts(t, envOpts{}, HTTPConfig{}, testAccounts(t, true))
	withAuth := func(uri, auth string) rawResp {
		return h.do("GET " + uri + " HTTP/1.1\r\nHost: x\r\nAuthorization: " + auth + "\r\n\r\n")
	}
	r := h.get("/arawman?action=ping", "")
	n := nonceOf(r)
	if r.status != "HTTP/1.1 401 Unauthorized" || n == "" || strings.Contains(r.header("WWW-authenticate"), "stale") {
		t.Fatalf("challenge = %s %q", r.status, r.headers)
	}
	ping := "/arawman?action=ping"
	ok := func(r rawResp) bool {
		return r.status == "HTTP/1.1 200 OK" && strings.Contains(r.body, "Ping: Pong") && r.header("Set-Cookie") == "" && r.header("Pragma") == ""
	}
	stale := func(r rawResp) bool {
		return r.status == "HTTP/1.1 401 Unauthorized" && strings.HasSuffix(r.header("WWW-authenticate"), ", stale=true")
	}
	plain401 := func(r rawResp) bool {
		return r.status == "HTTP/1.1 401 Unauthorized" && !strings.Contains(r.header("WWW-authenticate"), "stale")
	}
	if r := withAuth(ping, digestHeader("admin", "adminpass", "asterisk", n, "GET", ping, "00000001")); !ok(r) {
		t.Fatalf("digest nc 1 = %s %q %q", r.status, r.headers, r.body)
	}
	if r := withAuth(ping, digestHeader("admin", "adminpass", "asterisk", n, "GET", ping, "00000001")); !stale(r) {
		t.Errorf("replayed nc = %s %q", r.status, r.headers)
	}
	if r := withAuth(ping, digestHeader("admin", "adminpass", "asterisk", n, "GET", ping, "00000002")); !ok(r) {
		t.Errorf("digest nc 2 = %s %q", r.status, r.body)
	}
	never := "12345678"
	if never == n {
		never = "87654321"
	}
	if r := withAuth(ping, digestHeader("admin", "adminpass", "asterisk", never, "GET", ping, "00000001")); !stale(r) {
		t.Errorf("nonce never issued = %s %q", r.status, r.headers)
	}
	for name, auth := range map[string]string{
		"wrong password": digestHeader("admin", "nope", "asterisk", n, "GET", ping, "00000003"),
		"hash only":      digestHeader("hashonly", "hashpass", "asterisk", n, "GET", ping, "00000004"),
		"unknown user":   digestHeader("nosuch", "x", "asterisk", n, "GET", ping, "00000005"),
		"other uri":      digestHeader("admin", "adminpass", "asterisk", n, "GET", "/arawman?action=command&command=x", "00000006"),
		"not digest":     "Basic YWRtaW46YWRtaW5wYXNz",
	} {
		if r := withAuth(ping, auth); !plain401(r) {
			t.Errorf("%s = %s %q", name, r.status, r.headers)
		}
	}
	// Events queue per nonce from the digest session's creation.
	h.sims["east"].Emit(rawman.New("Event", "UserEvent", "Privilege", "user,all", "UserEvent", "digest"))
	we := "/arawman?action=waitevent&timeout=5"
	if r := withAuth(we, digestHeader("admin", "adminpass", "asterisk", n, "GET", we, "00000007")); !strings.Contains(r.body, "UserEvent: digest") {
		t.Errorf("digest WaitEvent = %q", r.body)
	}
	// A cookie equal to the nonce does not reach the digest session.
	if r := h.get("/rawman?action=ping", n); r.body != permissionDenied {
		t.Errorf("cookie = nonce: %q", r.body)
	}
	// Logoff ends the session and revokes the nonce.
	lo := "/arawman?action=logoff"
	if r := withAuth(lo, digestHeader("admin", "adminpass", "asterisk", n, "GET", lo, "00000008")); !strings.Contains(r.body, "Goodbye") {
		t.Errorf("digest logoff = %q", r.body)
	}
	if r := withAuth(ping, digestHeader("admin", "adminpass", "asterisk", n, "GET", ping, "00000009")); r.status != "HTTP/1.1 401 Unauthorized" {
		t.Errorf("after logoff = %s", r.status)
	}
}

// Methods, URIs, HEAD, POST and the /pbx/<name>/ prefix.
func TestHTTPRequests(t *testing.T) {
	checkLeaks(t)
	h := newHTTPEnv(t, envOpts{pbxs: []string{"east", "west"}}, HTTPConfig{})
	if r := h.do("PUT /rawman?action=ping HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"); r.status != "HTTP/1.1 501 Not Implemented" || !strings.Contains(r.body, "<title>501 Not Implemented</title>") {
		t.Errorf("PUT = %s %q", r.status, r.body)
	}
	for _, p := range []string{"/rawmanx", "/rawman/x", "/pbx//rawman", "/pbx/a%20b/rawman", "/rawm%61n"} {
		if r := h.get(p+"?action=ping", ""); r.status != "HTTP/1.1 404 Not Found" {
			t.Errorf("GET %s = %s", p, r.status)
		}
	}
	for _, p := range []string{"/RAWMAN", "/rawman/", "/Pbx/east/RawMan/"} {
		if r := h.get(p+"?action=ping", ""); r.status != "HTTP/1.1 200 OK" || r.body != permissionDenied {
			t.Errorf("GET %s = %s %q", p, r.status, r.body)
		}
	}
	// HEAD: the headers of the GET, no body.
	c := h.dialHTTP()
	c.send("HEAD /rawman?action=ping HTTP/1.1\r\nHost: x\r\n\r\n")
	if r := c.read(5 * time.Second); r.status != "HTTP/1.1 200 OK" || r.header("Content-Length") != fmt.Sprint(len(permissionDenied)) || r.header("Content-type") != "text/plain" {
		t.Errorf("HEAD = %s %q", r.status, r.headers)
	}
	// POST: the form body counts, the query string is ignored.
	post := func(uri, ctype, body string) rawResp {
		return h.do(fmt.Sprintf("POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: %s\r\nContent-Length: %d\r\n\r\n%s", uri, ctype, len(body), body))
	}
	r := post("/rawman?action=logoff", "application/x-www-form-urlencoded; charset=UTF-8", "action=login&username=admin&secret=adminpass")
	if r.body != "Response: Success\r\nMessage: Authentication accepted\r\n\r\n" {
		t.Errorf("POST login = %q", r.body)
	}
	if r := post("/rawman", "text/plain", "action=ping"); r.body != "Response: Error\r\nMessage: Missing action in request\r\n\r\n" {
		t.Errorf("POST text/plain = %q", r.body)
	}
	if r := post("/rawman", "application/x-www-form-urlencoded", "action=ping&x="+strings.Repeat("a", rawman.MaxFormBody)); r.status != "HTTP/1.1 413 Request Entity Too Large" {
		t.Errorf("big POST = %s", r.status)
	}
	// /pbx/<name>/: the session PBX at login, and a PBX per request.
	id := h.loginHTTP("/pbx/east", "eastonly", "eastonlypass")
	if r := h.get("/pbx/east/rawman?action=ping", id); !strings.Contains(r.body, "Ping: Pong") {
		t.Errorf("eastonly on east = %q", r.body)
	}
	if r := h.get("/pbx/west/rawman?action=ping", id); r.body != permissionDenied {
		t.Errorf("eastonly on west = %q", r.body)
	}
	if r := h.get("/pbx/nosuch/rawman?action=ping", id); r.body != permissionDenied {
		t.Errorf("eastonly on an unknown pbx = %q", r.body)
	}
	if r := h.get("/pbx/west/rawman?action=login&username=eastonly&secret=eastonlypass", ""); r.body != "Response: Error\r\nMessage: Authentication failed\r\n\r\n" {
		t.Errorf("eastonly login on west = %q", r.body)
	}
	aid := h.loginHTTP("/pbx/west", "admin", "adminpass")
	if r := h.get("/pbx/west/rawman?action=command&command=core+show+version", aid); !strings.Contains(r.body, "Command output follows") {
		t.Errorf("admin command on west = %q", r.body)
	}
	// The Server parameter cannot override the path.
	if r := h.get("/pbx/east/rawman?action=ping&server=west", id); !strings.Contains(r.body, "Ping: Pong") {
		t.Errorf("eastonly on east with server=west = %q", r.body)
	}
}

// Gateway.Close ends pending WaitEvents (with Asterisk's Shutdown event for
// sessions that read system events); later requests get 503.
func TestHTTPCloseEndsWaitEvent(t *testing.T) {
	checkLeaks(t)
	h := newHTTPEnv(t, envOpts{}, HTTPConfig{})
	id := h.loginHTTP("", "admin", "adminpass")
	c := h.dialHTTP()
	c.send("GET /rawman?action=waitevent&timeout=30 HTTP/1.1\r\nHost: x\r\nCookie: mansession_id=\"" + id + "\"\r\n\r\n")
	time.Sleep(100 * time.Millisecond)
	done := make(chan struct{})
	go func() { _ = h.gw.Close(); close(done) }()
	r := c.read(5 * time.Second)
	want := "Response: Success\r\nMessage: Waiting for Event completed.\r\n\r\n" + shutdownEventText + "Event: WaitEventComplete\r\n\r\n"
	if r.body != want {
		t.Errorf("WaitEvent at Close = %q, want %q", r.body, want)
	}
	<-done
	if r := h.get("/rawman?action=ping", id); r.status != "HTTP/1.1 503 Service Unavailable" {
		t.Errorf("after Close = %s", r.status)
	}
}

// curl with a cookie jar, and curl --digest, as http-curl-i-rawman.txt.
func TestHTTPCurl(t *testing.T) {
	checkLeaks(t)
	curl, err := exec.LookPath("curl")
	if err != nil {
		t.Fatalf("curl is needed for this test: %v", err)
	}
	h := newHTTPEnv(t, envOpts{}, HTTPConfig{})
	jar := filepath.Join(t.TempDir(), "cookies.txt")
	run := func(args ...string) string {
		t.Helper()
		out, err := exec.Command(curl, append([]string{"-s", "--max-time", "10"}, args...)...).Output()
		if err != nil {
			t.Fatalf("curl %q: %v", args, err)
		}
		return string(out)
	}
	base := "http://" + h.addr
	if got := run("-c", jar, "-b", jar, base+"/rawman?action=login&username=admin&secret=adminpass"); got != "Response: Success\r\nMessage: Authentication accepted\r\n\r\n" {
		t.Errorf("curl login = %q", got)
	}
	if got := run("-c", jar, "-b", jar, base+"/rawman?action=ping"); !strings.Contains(got, "Ping: Pong") {
		t.Errorf("curl ping = %q", got)
	}
	jarText, _ := os.ReadFile(jar)
	// As recorded: curl keeps the quotes as part of the value.
	if !regexp.MustCompile("\tmansession_id\t\"[0-9a-f]{8}\"\n").Match(jarText) {
		t.Errorf("cookie jar = %q", jarText)
	}
	if got := run("-c", jar, "-b", jar, base+"/rawman?action=logoff"); got != "Response: Goodbye\r\nMessage: Thanks for all the fish.\r\n\r\n" {
		t.Errorf("curl logoff = %q", got)
	}
	if got := run("-c", jar, "-b", jar, base+"/rawman?action=ping"); got != permissionDenied {
		t.Errorf("curl ping after logoff = %q", got)
	}
	if got := run("--digest", "-u", "admin:adminpass", base+"/arawman?action=ping"); !strings.HasPrefix(got, "Response: Success\r\nPing: Pong\r\n") {
		t.Errorf("curl --digest = %q", got)
	}
	if got := run("-i", "--digest", "-u", "admin:wrong", base+"/arawman?action=ping"); !strings.Contains(got, "401 Unauthorized") {
		t.Errorf("curl --digest wrong password = %q", got)
	}
}

// The net/http client with a cookie jar: Asterisk's quoted cookie value
// round-trips.
func TestHTTPStdlibClient(t *testing.T) {
	checkLeaks(t)
	h := newHTTPEnv(t, envOpts{}, HTTPConfig{})
	get := func(q string) string {
		t.Helper()
		resp, err := h.client.Get("http://" + h.addr + "/rawman?" + q)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/plain" {
			t.Errorf("%s: %d %q", q, resp.StatusCode, resp.Header)
		}
		return string(b)
	}
	jar := &simpleJar{}
	h.client.Jar = jar
	if got := get("action=login&username=admin&secret=adminpass"); !strings.Contains(got, "Authentication accepted") {
		t.Fatalf("login = %q", got)
	}
	if got := get("action=ping"); !strings.Contains(got, "Ping: Pong") {
		t.Errorf("ping = %q", got)
	}
	if got := get("action=logoff"); !strings.Contains(got, "Goodbye") {
		t.Errorf("logoff = %q", got)
	}
}

// simpleJar keeps the last mansession_id (net/http/cookiejar would also do;
// this one shows what is stored).
type simpleJar struct {
	mu sync.Mutex
	c  []*http.Cookie
}

func (j *simpleJar) SetCookies(_ *url.URL, cs []*http.Cookie) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.c = cs
}

func (j *simpleJar) Cookies(*url.URL) []*http.Cookie {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.c
}

// BenchmarkHTTPSessionMemory measures the heap held per idle logged-in
// HTTP session: 10,000 logins, then HeapInuse delta / 10,000. Run with
// -benchtime=1x.
func BenchmarkHTTPSessionMemory(b *testing.B) {
	const n = 10000
	for range b.N {
		b.StopTimer()
		h := newHTTPEnv(b, envOpts{}, HTTPConfig{})
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		b.StartTimer()
		for range n {
			w := httptest.NewRecorder()
			h.hm.ServeHTTP(w, httptest.NewRequest("GET", "/rawman?action=login&username=admin&secret=adminpass", nil))
			if w.Code != 200 {
				b.Fatalf("login: %d", w.Code)
			}
		}
		b.StopTimer()
		runtime.GC()
		runtime.ReadMemStats(&after)
		if s := h.hm.Stats(); s.Sessions != n {
			b.Fatalf("Sessions = %d, want %d", s.Sessions, n)
		}
		b.ReportMetric(float64(int64(after.HeapInuse)-int64(before.HeapInuse))/n, "B/session")
		b.ReportMetric(float64(after.NumGC-before.NumGC), "GCs")
	}
}
