package proxy

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/amiproxy/amiproxy/auth"
)

// httpEnv is an env (pbxsim, pool, Gateway with the real auth.Local) plus
// an HTTPManager served by a net/http server on 127.0.0.1:0.
type httpEnv struct {
	*env
	hm     *HTTPManager
	addr   string // host:port of the HTTP server
	client *http.Client
}

// testAccounts are the recordings' users with plaintext secrets (so
// digest works). withHash adds "hashonly", which has only a bcrypt hash;
// with it every plain Login costs a bcrypt comparison (auth.Local's timing
// rule), which is slow under -race, so only the tests that need it do.
func testAccounts(t testing.TB, withHash bool) []auth.Account {
	t.Helper()
	accts := []auth.Account{
		{Username: "admin", Secret: "adminpass"},
		{Username: "limited", Secret: "limitedpass"},
		{Username: "eastonly", Secret: "eastonlypass"},
		{Username: "filtered", Secret: "filteredpass"},
	}
	if withHash {
		hash, err := auth.HashSecret("hashpass", 10)
		if err != nil {
			t.Fatal(err)
		}
		accts = append(accts, auth.Account{Username: "hashonly", SecretHash: hash})
	}
	return accts
}

func newHTTPEnv(t testing.TB, o envOpts, hc HTTPConfig) *httpEnv {
	t.Helper()
	return newHTTPEnvAccounts(t, o, hc, testAccounts(t, false))
}

func newHTTPEnvAccounts(t testing.TB, o envOpts, hc HTTPConfig, accts []auth.Account) *httpEnv {
	t.Helper()
	local, err := auth.NewLocal(accts)
	if err != nil {
		t.Fatal(err)
	}
	if o.authn == nil {
		o.authn = local
	}
	if o.policy == nil {
		pc := testPolicy()
		pc.Users["hashonly"] = []string{"admin"}
		o.policy = &pc
	}
	e := newEnv(t, o)
	if hc.Digest == nil {
		hc.Digest = NewDigestAccounts(accts)
	}
	hm, err := e.gw.NewHTTPManager(hc)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: hm, ReadHeaderTimeout: 5 * time.Second}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	tr := &http.Transport{}
	h := &httpEnv{env: e, hm: hm, addr: ln.Addr().String(), client: &http.Client{Transport: tr, Timeout: 20 * time.Second}}
	t.Cleanup(func() {
		// cmd's order: end the sessions (pending WaitEvents answer), then
		// shut the server down.
		_ = hm.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("http Shutdown: %v", err)
		}
		if err := <-done; !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("http Serve = %v", err)
		}
		tr.CloseIdleConnections()
	})
	return h
}

// rawResp is an HTTP response as it crossed the wire.
type rawResp struct {
	status  string   // status line without CRLF
	headers []string // "Key: value" lines, in order, as sent
	body    string
}

func (r rawResp) header(key string) string {
	for _, l := range r.headers {
		k, v, _ := strings.Cut(l, ": ")
		if k == key {
			return v
		}
	}
	return ""
}

// rawConn is one HTTP/1.1 connection driven byte by byte.
type rawConn struct {
	t    testing.TB
	conn net.Conn
	br   *bufio.Reader
	head bool // the request was HEAD
}

func (h *httpEnv) dialHTTP() *rawConn {
	h.t.Helper()
	c, err := net.Dial("tcp", h.addr)
	if err != nil {
		h.t.Fatal(err)
	}
	h.t.Cleanup(func() { _ = c.Close() })
	return &rawConn{t: h.t, conn: c, br: bufio.NewReader(c)}
}

func (c *rawConn) send(req string) {
	c.t.Helper()
	c.head = strings.HasPrefix(req, "HEAD ")
	if _, err := io.WriteString(c.conn, req); err != nil {
		c.t.Fatal(err)
	}
}

func (c *rawConn) read(d time.Duration) rawResp {
	c.t.Helper()
	_ = c.conn.SetReadDeadline(time.Now().Add(d))
	var r rawResp
	line := func() string {
		l, err := c.br.ReadString('\n')
		if err != nil {
			c.t.Fatalf("read response: %v (got %q, so far %+v)", err, l, r)
		}
		return strings.TrimSuffix(l, "\r\n")
	}
	r.status = line()
	for {
		l := line()
		if l == "" {
			break
		}
		r.headers = append(r.headers, l)
	}
	if c.head {
		return r
	}
	n, err := strconv.Atoi(r.header("Content-Length"))
	if err != nil {
		c.t.Fatalf("no Content-Length in %q", r.headers)
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(c.br, b); err != nil {
		c.t.Fatalf("read body: %v", err)
	}
	r.body = string(b)
	return r
}

// do sends one raw request on a new connection and reads the answer.
func (h *httpEnv) do(req string) rawResp {
	h.t.Helper()
	c := h.dialHTTP()
	c.send(req)
	r := c.read(10 * time.Second)
	_ = c.conn.Close()
	return r
}

// get is a curl-like GET of uri with an optional cookie id.
func (h *httpEnv) get(uri, cookie string) rawResp {
	h.t.Helper()
	req := "GET " + uri + " HTTP/1.1\r\nHost: 127.0.0.1:8088\r\nUser-Agent: curl/7.88.1\r\nAccept: */*\r\n"
	if cookie != "" {
		req += "Cookie: mansession_id=\"" + cookie + "\"\r\n"
	}
	return h.do(req + "\r\n")
}

var cookieRE = regexp.MustCompile(`mansession_id="([0-9a-f]{8})"`)

// cookieOf returns the session id of a Set-Cookie, or "".
func cookieOf(r rawResp) string {
	m := cookieRE.FindStringSubmatch(r.header("Set-Cookie"))
	if m == nil {
		return ""
	}
	return m[1]
}

var httpVolatile = []struct {
	re   *regexp.Regexp
	repl string
}{
	{regexp.MustCompile(`\d{10}\.\d{6}`), "<ts>"},
	{regexp.MustCompile(`mansession_id="[0-9a-f]{8}"`), `mansession_id="<id>"`},
	{regexp.MustCompile(`nonce="[0-9a-f]{8}", qop="auth", opaque="[0-9a-f]{8}"`), `nonce="<n>", qop="auth", opaque="<n>"`},
	{regexp.MustCompile(`^Date: .*`), "Date: <date>"},
}

func normHTTP(s string) string {
	for _, v := range httpVolatile {
		s = v.re.ReplaceAllString(s, v.repl)
	}
	return s
}

// headerSet is the normalized, sorted header lines without Content-Length
// (compared with the body instead).
func headerSet(r rawResp) []string {
	var out []string
	for _, l := range r.headers {
		if strings.HasPrefix(l, "Content-Length: ") {
			continue
		}
		out = append(out, normHTTP(l))
	}
	sort.Strings(out)
	return out
}

// parseRecorded parses recorded response bytes.
func parseRecorded(t testing.TB, data string) rawResp {
	t.Helper()
	head, body, ok := strings.Cut(data, "\r\n\r\n")
	if !ok {
		t.Fatalf("recorded response without header end: %q", data)
	}
	lines := strings.Split(head, "\r\n")
	return rawResp{status: lines[0], headers: lines[1:], body: body}
}

// dropSuccessfulAuth removes the SuccessfulAuth event, which the proxy
// does not emit (doc.go), from a recorded body in any format.
func dropSuccessfulAuth(body string) string {
	for _, re := range []*regexp.Regexp{
		regexp.MustCompile(`(?s)Event: SuccessfulAuth\r\n.*?\r\n\r\n`),
		regexp.MustCompile(`<response type='object' id='unknown'><generic event='SuccessfulAuth'[^\n]*\n`),
		regexp.MustCompile(`(?s)<tr><td>Event</td><td>SuccessfulAuth</td></tr>\n.*?<tr><td colspan="2"><hr></td></tr>\r\n`),
	} {
		body = re.ReplaceAllString(body, "")
	}
	return body
}

var eventNameREs = []*regexp.Regexp{
	regexp.MustCompile(`(?m)^Event: (\w+)\r$`),
	regexp.MustCompile(`event='(\w+)'`),
	regexp.MustCompile(`<tr><td>Event</td><td>(\w+)</td></tr>`),
}

// eventNames lists the events of a WaitEvent body in any format, without
// WaitEventComplete.
func eventNames(body string) []string {
	var out []string
	for _, re := range eventNameREs {
		for _, m := range re.FindAllStringSubmatch(body, -1) {
			if m[1] != "WaitEventComplete" {
				out = append(out, m[1])
			}
		}
	}
	return out
}
