package proxy

import (
	"net"
	"strings"
	"testing"
	"time"

	"github.com/amiproxy/amiproxy/policy"
)

// netPolicy adds to testPolicy: "blocked" (a user-bound role that denies
// loopback), "grp" (allowed by its user role, denied by the role of its
// group "ops"), "permitted" (a role that permits loopback only).
func netPolicy() policy.Config {
	pc := testPolicy()
	pc.Roles = append(pc.Roles,
		policy.Role{Name: "noloop", Read: "all", Write: "all", PBXs: []string{"*"}, Deny: []string{"127.0.0.0/8", "::1"}},
		policy.Role{Name: "looponly", Read: "all", Write: "all", PBXs: []string{"*"}, Permit: []string{"127.0.0.0/8"}},
	)
	pc.Users["blocked"] = []string{"noloop"}
	pc.Users["grp"] = []string{"admin"}
	pc.Users["permitted"] = []string{"looponly"}
	pc.Groups = map[string][]string{"ops": {"noloop"}}
	return pc
}

func TestNetworkRulesAtLogin(t *testing.T) {
	checkLeaks(t)
	ta := newTokenAuth()
	ta.secrets["blocked"] = "blockedpass"
	ta.secrets["grp"] = "grppass"
	ta.secrets["permitted"] = "permittedpass"
	ta.groups = map[string][]string{"grp": {"ops"}}
	logs := &syncBuffer{}
	pc := netPolicy()
	e := newEnv(t, envOpts{authn: ta, policy: &pc, logs: logs})

	// Refused before the Authenticator is called, like a bad secret.
	c := e.connect()
	if m := c.call("Action", "Login", "Username", "blocked", "Secret", "blockedpass"); m != "Response: Error\r\nMessage: Authentication failed\r\n\r\n" {
		t.Errorf("blocked Login = %q", m)
	}
	c.expectEOF()
	if n := ta.callCount(); n != 0 {
		t.Errorf("Authenticate called %d times for a refused network", n)
	}
	if !strings.Contains(logs.String(), `"reason":"network: role noloop: deny 127.0.0.0/8"`) {
		t.Errorf("audit lacks the network rule:\n%s", logs.String())
	}

	// The group's role is known after authentication only.
	c = e.connect()
	if m := c.call("Action", "Login", "Username", "grp", "Secret", "grppass"); header(m, "Message") != msgAuthFailed {
		t.Errorf("grp Login = %q", m)
	}
	c.expectEOF()
	if n := ta.callCount(); n != 1 {
		t.Errorf("Authenticate calls = %d, want 1", n)
	}

	// Permit lists the client's network.
	p := e.login("permitted", "permittedpass")
	if m := p.call("Action", "Ping"); header(m, "Ping") != "Pong" {
		t.Errorf("permitted ping = %q", m)
	}
	// A reload that denies a live user's network ends its session.
	pc2 := netPolicy()
	for i := range pc2.Roles {
		if pc2.Roles[i].Name == "looponly" {
			pc2.Roles[i].Permit = nil
			pc2.Roles[i].Deny = []string{"127.0.0.1"}
		}
	}
	eng, err := policy.Compile(pc2, []string{"east"})
	if err != nil {
		t.Fatal(err)
	}
	e.gw.SetPolicy(eng)
	expectNotice(t, p, ReasonRemoved, "east")
}

// The HTTP Login and the digest URIs check the network rules before the
// credentials too.
func TestNetworkRulesHTTP(t *testing.T) {
	checkLeaks(t)
	pc := testPolicy()
	pc.Roles = append(pc.Roles, policy.Role{Name: "noloop", Read: "all", Write: "all", PBXs: []string{"*"}, Deny: []string{"127.0.0.0/8"}})
	pc.Users["admin"] = []string{"admin", "noloop"}
	logs := &syncBuffer{}
	h := newHTTPEnv(t, envOpts{policy: &pc, logs: logs}, HTTPConfig{})
	r := h.get("/rawman?action=login&username=admin&secret=adminpass", "")
	if !strings.Contains(r.body, "Message: Authentication failed") {
		t.Errorf("HTTP Login = %q", r.body)
	}
	r = h.get("/rawman?action=login&username=limited&secret=limitedpass", "")
	if !strings.Contains(r.body, "Authentication accepted") {
		t.Errorf("HTTP Login of another user = %q", r.body)
	}
	before := h.hm.Stats().DigestFailed
	nonce := nonceOf(h.get("/arawman?action=ping", ""))
	r = h.do("GET /arawman?action=ping HTTP/1.1\r\nHost: x\r\nAuthorization: " +
		digestHeader("admin", "adminpass", "asterisk", nonce, "GET", "/arawman?action=ping", "00000001") + "\r\n\r\n")
	if r.status != "HTTP/1.1 401 Unauthorized" || h.hm.Stats().DigestFailed != before+1 {
		t.Errorf("digest from a denied network = %s, DigestFailed %d", r.status, h.hm.Stats().DigestFailed)
	}
	if n := strings.Count(logs.String(), `"door":"http-digest","remote":`); n != 1 ||
		!strings.Contains(logs.String(), `"method":"digest","reason":"network: role noloop: deny 127.0.0.0/8"`) {
		t.Errorf("digest refusal not audited with the network rule before the credentials:\n%s", logs.String())
	}
}

// An HTTP session (cookie or bearer) used from another address than the
// one it logged in from: that address must pass the network rules too.
func TestNetworkRulesFollowHTTPRequests(t *testing.T) {
	checkLeaks(t)
	ta := newTokenAuth()
	ta.add("tok.net.rules", "admin", time.Time{})
	pc := testPolicy()
	pc.Roles = append(pc.Roles, policy.Role{Name: "only1", Read: "all", Write: "all", PBXs: []string{"*"}, Permit: []string{"127.0.0.1"}})
	pc.Users["admin"] = []string{"admin", "only1"}
	h := newHTTPEnv(t, envOpts{authn: ta, policy: &pc}, HTTPConfig{})
	from := func(ip net.IP, req string) rawResp {
		t.Helper()
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: ip}}
		conn, err := d.Dial("tcp", h.addr)
		if err != nil {
			t.Skipf("cannot bind %v: %v", ip, err)
		}
		defer conn.Close()
		c := &rawConn{t: t, conn: conn, br: bufioReader(conn)}
		c.send(req)
		return c.read(10 * time.Second)
	}
	local, other := net.IPv4(127, 0, 0, 1), net.IPv4(127, 0, 0, 2)
	id := h.loginHTTP("", "admin", "adminpass")
	ping := "GET /rawman?action=ping&actionid=n1 HTTP/1.1\r\nHost: x\r\nCookie: mansession_id=\"" + id + "\"\r\n\r\n"
	if r := from(other, ping); r.body != "Response: Error\r\nActionID: n1\r\nMessage: Permission denied\r\n\r\n" {
		t.Errorf("cookie from another address = %q", r.body)
	}
	if r := from(local, ping); !strings.Contains(r.body, "Ping: Pong") {
		t.Errorf("cookie from its own address = %q", r.body)
	}
	bearer := "GET /rawman?action=ping HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer tok.net.rules\r\n\r\n"
	if r := from(local, bearer); !strings.Contains(r.body, "Ping: Pong") {
		t.Errorf("bearer from 127.0.0.1 = %q", r.body)
	}
	if r := from(other, bearer); !strings.Contains(r.body, "Message: Permission denied") {
		t.Errorf("the token's session from another address = %q", r.body)
	}
}
