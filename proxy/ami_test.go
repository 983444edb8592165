package proxy

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/amiproxy/amiproxy/auth"
	"github.com/amiproxy/amiproxy/internal/pbxsim"
	"github.com/amiproxy/amiproxy/policy"
	"github.com/amiproxy/amiproxy/rawman"
	"github.com/amiproxy/amiproxy/upstream"
)

func userEvent(name string) rawman.Message {
	return rawman.New("Event", "UserEvent", "Privilege", "user,all", "UserEvent", name)
}

// recListener records every Write of the connections it accepts and can
// make them stop accepting writes, like a client whose TCP window is shut.
type recListener struct {
	net.Listener
	mu    sync.Mutex
	conns []*recConn
}

type recConn struct {
	net.Conn
	mu       sync.Mutex
	writes   [][]byte
	deadline time.Time
	stuck    atomic.Bool
	closed   chan struct{}
	once     sync.Once
}

func (l *recListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	rc := &recConn{Conn: c, closed: make(chan struct{})}
	l.mu.Lock()
	l.conns = append(l.conns, rc)
	l.mu.Unlock()
	return rc, nil
}

func (l *recListener) conn(i int) *recConn {
	l.mu.Lock()
	defer l.mu.Unlock()
	if i < len(l.conns) {
		return l.conns[i]
	}
	return nil
}

func (c *recConn) Write(p []byte) (int, error) {
	if c.stuck.Load() {
		c.mu.Lock()
		d := c.deadline
		c.mu.Unlock()
		var timeout <-chan time.Time
		if !d.IsZero() {
			t := time.NewTimer(time.Until(d))
			defer t.Stop()
			timeout = t.C
		}
		select {
		case <-c.closed:
			return 0, net.ErrClosed
		case <-timeout:
			return 0, os.ErrDeadlineExceeded
		}
	}
	c.mu.Lock()
	c.writes = append(c.writes, bytes.Clone(p))
	c.mu.Unlock()
	return c.Conn.Write(p)
}

func (c *recConn) SetWriteDeadline(t time.Time) error {
	c.mu.Lock()
	c.deadline = t
	c.mu.Unlock()
	return c.Conn.SetWriteDeadline(t)
}

func (c *recConn) SetDeadline(t time.Time) error {
	c.mu.Lock()
	c.deadline = t
	c.mu.Unlock()
	return c.Conn.SetDeadline(t)
}

func (c *recConn) Close() error {
	c.once.Do(func() { close(c.closed) })
	return c.Conn.Close()
}

func (c *recConn) Writes() [][]byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([][]byte(nil), c.writes...)
}

// The banner is a write of its own; the Login reply and FullyBooted share
// one (goami2 breaks on a split Login reply; TESTING.md).
func TestWritesAreWhole(t *testing.T) {
	checkLeaks(t)
	var rl *recListener
	e := newEnv(t, envOpts{wrap: func(ln net.Listener) net.Listener { rl = &recListener{Listener: ln}; return rl }})
	c := e.login("admin", "adminpass")
	c.call("Action", "Ping")
	w := rl.conn(0).Writes()
	if len(w) < 3 {
		t.Fatalf("writes = %q", w)
	}
	if string(w[0]) != "Asterisk Call Manager/11.0.0\r\n" {
		t.Errorf("first write = %q, want the banner alone", w[0])
	}
	if !bytes.HasPrefix(w[1], []byte("Response: Success\r\nMessage: Authentication accepted\r\n\r\nEvent: FullyBooted\r\n")) ||
		!bytes.HasSuffix(w[1], []byte("Status: Fully Booted\r\n\r\n")) {
		t.Errorf("second write = %q, want the Login reply and FullyBooted", w[1])
	}
}

// Clients such as asterisk-ami-client send Login before the banner.
func TestBytesBeforeBanner(t *testing.T) {
	checkLeaks(t)
	e := newEnv(t, envOpts{})
	c := e.dial()
	c.write("Action: Login\r\nActionID: early\r\nUsername: admin\r\nSecret: adminpass\r\nEvents: off\r\n\r\nAction: Ping\r\nActionID: p\r\n\r\n")
	if b := c.line(); b != "Asterisk Call Manager/11.0.0\r\n" {
		t.Fatalf("banner = %q", b)
	}
	if m := c.readMsg(); m != "Response: Success\r\nActionID: early\r\nMessage: Authentication accepted\r\n\r\n" {
		t.Errorf("login reply = %q", m)
	}
	if m := c.readMsg(); header(m, "Ping") != "Pong" || header(m, "ActionID") != "p" {
		t.Errorf("ping reply = %q", m)
	}
}

func TestHandshakeTimeout(t *testing.T) {
	checkLeaks(t)
	e := newEnv(t, envOpts{cfg: Config{HandshakeTimeout: 300 * time.Millisecond}})
	idle := e.connect()
	loggedIn := e.login("admin", "adminpass", "Events", "off")
	start := time.Now()
	idle.expectEOF()
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("closed after %v, want about 300ms", d)
	}
	time.Sleep(200 * time.Millisecond)
	if m := loggedIn.call("Action", "Ping"); header(m, "Ping") != "Pong" {
		t.Errorf("logged-in session after the handshake timeout: %q", m)
	}
	if s := e.gw.Stats(); s.HandshakeTimeouts != 1 {
		t.Errorf("HandshakeTimeouts = %d, want 1", s.HandshakeTimeouts)
	}
}

// A client that floods requests before Login and reads nothing is still
// closed at the handshake timeout, freeing its authlimit slot.
func TestHandshakeTimeoutWhileStuck(t *testing.T) {
	checkLeaks(t)
	var rl *recListener
	e := newEnv(t, envOpts{
		cfg:  Config{HandshakeTimeout: 300 * time.Millisecond, ClientQueue: 4},
		wrap: func(ln net.Listener) net.Listener { rl = &recListener{Listener: ln}; return rl },
	})
	c := e.connect()
	rl.conn(0).stuck.Store(true)
	go func() {
		for range 200 {
			if _, err := io.WriteString(c.conn, "Action: Ping\r\n\r\n"); err != nil {
				return
			}
		}
	}()
	waitFor(t, "the handshake timeout", func() bool {
		s := e.gw.Stats()
		return s.HandshakeTimeouts == 1 && s.Sessions == 0 && s.Unauthenticated == 0
	})
}

// A logged-in client whose socket accepts nothing for WriteTimeout is
// disconnected as slow.
func TestWriteTimeout(t *testing.T) {
	checkLeaks(t)
	var rl *recListener
	e := newEnv(t, envOpts{
		cfg:  Config{WriteTimeout: 200 * time.Millisecond},
		wrap: func(ln net.Listener) net.Listener { rl = &recListener{Listener: ln}; return rl },
	})
	c := e.login("admin", "adminpass", "Events", "off")
	rl.conn(0).stuck.Store(true)
	start := time.Now()
	c.send("Action", "Ping")
	c.expectEOF()
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("disconnected after %v, want about 200ms", d)
	}
	if s := e.gw.Stats(); s.SlowDisconnects != 1 {
		t.Errorf("SlowDisconnects = %d, want 1", s.SlowDisconnects)
	}
}

func TestMaxUnauthenticated(t *testing.T) {
	checkLeaks(t)
	e := newEnv(t, envOpts{cfg: Config{MaxUnauthenticated: 2}})
	c1 := e.connect()
	e.connect()
	third := e.dial()
	third.expectEOF() // no banner
	if s := e.gw.Stats(); s.Rejected != 1 || s.Unauthenticated != 2 {
		t.Errorf("Stats rejected/unauthenticated = %d/%d, want 1/2", s.Rejected, s.Unauthenticated)
	}
	// A login frees a slot.
	if m := c1.call("Action", "Login", "Username", "admin", "Secret", "adminpass", "Events", "off"); header(m, "Message") != "Authentication accepted" {
		t.Fatalf("login: %q", m)
	}
	e.connect()
}

func TestBeforeLogin(t *testing.T) {
	checkLeaks(t)
	e := newEnv(t, envOpts{})
	c := e.connect()
	for _, tc := range []struct{ req, want string }{
		{"Action: Command\r\nActionID: 1\r\nCommand: core show version\r\n\r\n", "Response: Error\r\nActionID: 1\r\nMessage: Permission denied\r\n\r\n"},
		{"Action: NoSuchAction\r\n\r\n", "Response: Error\r\nMessage: Permission denied\r\n\r\n"},
		{"\r\n", "Response: Error\r\nMessage: Missing action in request\r\n\r\n"},
		{"ActionID: 2\r\nFoo: bar\r\n\r\n", "Response: Error\r\nActionID: 2\r\nMessage: Missing action in request\r\n\r\n"},
		{"Action: Events\r\nEventMask: on\r\n\r\n", "Response: Error\r\nMessage: Permission denied\r\n\r\n"},
	} {
		c.write(tc.req)
		if got := c.readMsg(); got != tc.want {
			t.Errorf("%q: got %q, want %q", tc.req, got, tc.want)
		}
	}
	c.write("Action: Logoff\r\n\r\n")
	if got := c.readMsg(); got != "Response: Goodbye\r\nMessage: Thanks for all the fish.\r\n\r\n" {
		t.Errorf("Logoff = %q", got)
	}
	c.expectEOF()
}

// Framing errors get Asterisk's reply with the ActionID, and the session
// reads on.
func TestFramingErrors(t *testing.T) {
	checkLeaks(t)
	e := newEnv(t, envOpts{})
	c := e.login("admin", "adminpass", "Events", "off")
	c.write("Action: Ping\r\nActionID: long\r\nX-Pad: " + strings.Repeat("x", 2000) + "\r\n\r\n")
	if m := c.readMsg(); m != "Response: Error\r\nActionID: long\r\nMessage: Failed to parse message: line too long\r\n\r\n" {
		t.Errorf("long line: %q", m)
	}
	c.write("Action: Ping\r\nActionID: nul\r\nX: a\x00b\r\n\r\n")
	if m := c.readMsg(); header(m, "Response") != "Error" || header(m, "ActionID") != "nul" {
		t.Errorf("NUL: %q", m)
	}
	if m := c.call("Action", "Ping", "ActionID", "after"); header(m, "Ping") != "Pong" {
		t.Errorf("ping after framing errors: %q", m)
	}
	if s := e.gw.Stats(); s.FrameErrors != 2 {
		t.Errorf("FrameErrors = %d, want 2", s.FrameErrors)
	}
}

func TestNoPBXOrBadServerAtLogin(t *testing.T) {
	checkLeaks(t)
	e := newEnv(t, envOpts{pbxs: []string{"east", "west"}})
	for _, tc := range []struct {
		name string
		kv   []string
	}{
		{"user without role", []string{"Username", "nobody", "Secret", "nobodypass"}},
		{"ungranted Server", []string{"Username", "eastonly", "Secret", "eastonlypass", "Server", "west"}},
		{"unknown Server", []string{"Username", "admin", "Secret", "adminpass", "Server", "north"}},
		{"ungranted Servers", []string{"Username", "eastonly", "Secret", "eastonlypass", "Servers", "east,west"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := e.connect()
			c.send(append([]string{"Action", "Login", "ActionID", "l"}, tc.kv...)...)
			if m := c.readMsg(); m != "Response: Error\r\nActionID: l\r\nMessage: Authentication failed\r\n\r\n" {
				t.Errorf("login = %q", m)
			}
			c.expectEOF()
		})
	}
}

func TestLimitedUser(t *testing.T) {
	checkLeaks(t)
	e := newEnv(t, envOpts{})
	lim := e.login("limited", "limitedpass")
	adm := e.login("admin", "adminpass")
	for _, action := range []string{"Command", "Originate", "CoreShowChannels"} {
		if m := lim.call("Action", action, "ActionID", "x-"+action); m != "Response: Error\r\nActionID: x-"+action+"\r\nMessage: Permission denied\r\n\r\n" {
			t.Errorf("%s as limited = %q", action, m)
		}
	}
	if m := lim.call("Action", "Ping", "ActionID", "p"); header(m, "Ping") != "Pong" {
		t.Errorf("Ping as limited = %q", m)
	}
	// Read classes: limited (read=call) gets only call events.
	sim := e.sims["east"]
	sim.Emit(rawman.New("Event", "Newexten", "Privilege", "dialplan,all", "Channel", "Local/100@lab-1;1"))
	sim.Emit(rawman.New("Event", "Cdr", "Privilege", "cdr,all", "Channel", "Local/100@lab-1;1"))
	sim.Emit(rawman.New("Event", "Reload", "Privilege", "system,all", "Module", "x"))
	sim.Emit(rawman.New("Event", "Newchannel", "Privilege", "call,all", "Channel", "Local/100@lab-1;1"))
	sim.Emit(userEvent("end"))
	sim.Emit(rawman.New("Event", "Hangup", "Privilege", "call,all", "Channel", "end"))
	got := lim.until("Channel: end")
	if len(got) != 2 || !strings.HasPrefix(got[0], "Event: Newchannel\r\n") {
		t.Errorf("limited got %q, want Newchannel and Hangup only", got)
	}
	var names []string
	for _, m := range adm.until("Channel: end") {
		names = append(names, header(m, "Event"))
	}
	if want := "Newexten Cdr Reload Newchannel UserEvent Hangup"; strings.Join(names, " ") != want {
		t.Errorf("admin got %v, want %s", names, want)
	}
}

func TestEventsMask(t *testing.T) {
	checkLeaks(t)
	e := newEnv(t, envOpts{})
	c := e.login("admin", "adminpass")
	sim := e.sims["east"]
	if m := c.call("Action", "Events", "ActionID", "off", "EventMask", "off"); m != "Response: Success\r\nActionID: off\r\nEvents: Off\r\n\r\n" {
		t.Fatalf("Events off = %q", m)
	}
	sim.Emit(userEvent("while-off"))
	time.Sleep(50 * time.Millisecond)
	c.send("Action", "Ping", "ActionID", "p1")
	if m := c.readMsg(); header(m, "ActionID") != "p1" {
		t.Errorf("after Events off got %q, want the Ping reply", m)
	}
	if m := c.call("Action", "Events", "EventMask", "user"); m != "Response: Success\r\nEvents: On\r\n\r\n" {
		t.Fatalf("Events user = %q", m)
	}
	sim.Emit(rawman.New("Event", "Newchannel", "Privilege", "call,all"))
	sim.Emit(userEvent("on"))
	if m := c.readMsg(); header(m, "UserEvent") != "on" {
		t.Errorf("with EventMask user got %q, want the UserEvent only", m)
	}
	if m := c.call("Action", "Events", "ActionID", "e"); m != "Response: Error\r\nActionID: e\r\nMessage: Invalid event mask\r\n\r\n" {
		t.Errorf("Events without mask = %q", m)
	}
	// Login with Events: off gets no FullyBooted and no events.
	quiet := e.connect()
	quiet.send("Action", "Login", "Username", "admin", "Secret", "adminpass", "Events", "off")
	if m := quiet.readMsg(); m != "Response: Success\r\nMessage: Authentication accepted\r\n\r\n" {
		t.Errorf("login events off = %q", m)
	}
	sim.Emit(userEvent("x"))
	time.Sleep(50 * time.Millisecond)
	if m := quiet.call("Action", "Ping", "ActionID", "q"); header(m, "ActionID") != "q" {
		t.Errorf("quiet session got %q", m)
	}
}

func TestFilterAction(t *testing.T) {
	checkLeaks(t)
	e := newEnv(t, envOpts{})
	c := e.login("admin", "adminpass")
	sim := e.sims["east"]
	for _, tc := range []struct {
		kv   []string
		want string
	}{
		{[]string{"Operation", "Add", "Filter", "Event: UserEvent"}, "Response: Success\r\nActionID: f\r\nMessage: Success\r\n\r\n"},
		{[]string{"Operation", "Add", "Filter", "("}, "Response: Error\r\nActionID: f\r\nMessage: Filter did not compile.  Check the syntax of the filter given.\r\n\r\n"},
		{[]string{"Operation", "Add", "Filter", "x", "MatchCriteria", "name"}, "Response: Error\r\nActionID: f\r\nMessage: Filter was formatted incorrectly.  Check the syntax of the filter given.\r\n\r\n"},
		{[]string{"Operation", "Remove", "Filter", "x"}, "Response: Error\r\nActionID: f\r\nMessage: Unknown operation\r\n\r\n"},
	} {
		if m := c.call(append([]string{"Action", "Filter", "ActionID", "f"}, tc.kv...)...); m != tc.want {
			t.Errorf("Filter %q = %q, want %q", tc.kv, m, tc.want)
		}
	}
	sim.Emit(rawman.New("Event", "Newchannel", "Privilege", "call,all"))
	sim.Emit(userEvent("passes"))
	if m := c.readMsg(); header(m, "UserEvent") != "passes" {
		t.Errorf("after Filter got %q, want the UserEvent", m)
	}
	lim := e.login("limited", "limitedpass")
	if m := lim.call("Action", "Filter", "Operation", "Add", "Filter", "x"); m != "Response: Error\r\nMessage: Permission denied\r\n\r\n" {
		t.Errorf("Filter as limited = %q", m)
	}
	// The role of "filtered" lets only Newchannel through; the session's
	// own include filter narrows that further and cannot widen it.
	f := e.login("filtered", "filteredpass")
	if m := f.call("Action", "Filter", "Operation", "Add", "Filter", "Event: UserEvent"); header(m, "Response") != "Success" {
		t.Fatalf("Filter = %q", m)
	}
	sim.Emit(userEvent("blocked-by-role"))
	sim.Emit(rawman.New("Event", "Newchannel", "Privilege", "call,all", "Channel", "blocked-by-session"))
	time.Sleep(50 * time.Millisecond)
	if m := f.call("Action", "Ping", "ActionID", "p"); header(m, "ActionID") != "p" {
		t.Errorf("filtered session got %q", m)
	}
}

func TestWaitEvent(t *testing.T) {
	checkLeaks(t)
	e := newEnv(t, envOpts{})
	c := e.login("admin", "adminpass", "Events", "user")
	sim := e.sims["east"]

	c.send("Action", "WaitEvent", "ActionID", "w0", "Timeout", "0")
	if got := c.readMsg() + c.readMsg(); got != "Response: Success\r\nActionID: w0\r\nMessage: Waiting for Event completed.\r\n\r\nEvent: WaitEventComplete\r\nActionID: w0\r\n\r\n" {
		t.Errorf("WaitEvent 0 = %q", got)
	}

	c.send("Action", "WaitEvent", "ActionID", "w1", "Timeout", "5")
	if m, err := c.tryRead(150 * time.Millisecond); err == nil {
		t.Fatalf("WaitEvent answered before any event: %q", m)
	}
	c.br.Reset(c.conn)
	sim.Emit(userEvent("wake"))
	got := []string{c.readMsg(), c.readMsg(), c.readMsg()}
	if got[0] != "Response: Success\r\nActionID: w1\r\nMessage: Waiting for Event completed.\r\n\r\n" ||
		header(got[1], "UserEvent") != "wake" ||
		got[2] != "Event: WaitEventComplete\r\nActionID: w1\r\n\r\n" {
		t.Errorf("WaitEvent with event = %q", got)
	}

	start := time.Now()
	c.send("Action", "WaitEvent", "Timeout", "1")
	if got := c.readMsg() + c.readMsg(); got != "Response: Success\r\nMessage: Waiting for Event completed.\r\n\r\nEvent: WaitEventComplete\r\n\r\n" {
		t.Errorf("WaitEvent timeout = %q", got)
	}
	if d := time.Since(start); d < 900*time.Millisecond {
		t.Errorf("WaitEvent Timeout 1 returned after %v", d)
	}

	// Another request ends the wait first.
	c.send("Action", "WaitEvent", "ActionID", "w3")
	c.send("Action", "Ping", "ActionID", "p")
	got = []string{c.readMsg(), c.readMsg(), c.readMsg()}
	if header(got[0], "ActionID") != "w3" || got[1] != "Event: WaitEventComplete\r\nActionID: w3\r\n\r\n" || header(got[2], "ActionID") != "p" {
		t.Errorf("WaitEvent then Ping = %q", got)
	}
}

// Two clients both using ActionID 0 never see each other's replies.
func TestActionIDIsolation(t *testing.T) {
	checkLeaks(t)
	e := newEnv(t, envOpts{})
	clients := map[string]*client{
		"a": e.login("admin", "adminpass", "Events", "off"),
		"b": e.login("admin", "adminpass", "Events", "off"),
	}
	const n = 60
	var wg sync.WaitGroup
	errs := make(chan error, 2*n)
	for who, c := range clients {
		wg.Go(func() {
			for i := range n {
				val := fmt.Sprintf("%s-%d", who, i)
				fmt.Fprintf(c.conn, "Action: DBPut\r\nActionID: 0\r\nFamily: iso\r\nKey: %s\r\nVal: %s\r\n\r\n", who, val)
				m, err := c.tryRead(5 * time.Second)
				if err != nil || header(m, "Response") != "Success" || header(m, "ActionID") != "0" {
					errs <- fmt.Errorf("%s DBPut: %q %v", who, m, err)
					return
				}
				fmt.Fprintf(c.conn, "Action: DBGet\r\nActionID: 0\r\nFamily: iso\r\nKey: %s\r\n\r\n", who)
				got := ""
				for {
					m, err := c.tryRead(5 * time.Second)
					if err != nil {
						errs <- fmt.Errorf("%s DBGet: %v", who, err)
						return
					}
					if header(m, "ActionID") != "0" {
						errs <- fmt.Errorf("%s: message without ActionID 0: %q", who, m)
					}
					if header(m, "Event") == "DBGetResponse" {
						got = header(m, "Val")
					}
					if header(m, "Event") == "DBGetComplete" {
						break
					}
				}
				if got != val {
					errs <- fmt.Errorf("%s: DBGet = %q, want %q", who, got, val)
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// A list reply passes through complete, each item with the ActionID.
func TestListPassesThrough(t *testing.T) {
	checkLeaks(t)
	e := newEnv(t, envOpts{})
	c := e.login("admin", "adminpass", "Events", "off")
	for i := range 2 {
		m := c.call("Action", "Originate", "ActionID", fmt.Sprint("o", i), "Channel", "Local/200@lab", "Application", "Wait", "Data", "30")
		if header(m, "Message") != "Originate successfully queued" {
			t.Fatalf("Originate = %q", m)
		}
	}
	c.send("Action", "CoreShowChannels", "ActionID", "csc")
	msgs := c.until("EventList: Complete")
	if header(msgs[0], "EventList") != "start" || header(msgs[0], "Response") != "Success" {
		t.Errorf("first = %q", msgs[0])
	}
	items := msgs[1 : len(msgs)-1]
	for _, m := range msgs {
		if header(m, "ActionID") != "csc" {
			t.Errorf("message without the ActionID: %q", m)
		}
	}
	last := msgs[len(msgs)-1]
	if header(last, "Event") != "CoreShowChannelsComplete" || header(last, "ListItems") != fmt.Sprint(len(items)) || len(items) != 4 {
		t.Errorf("%d items, complete = %q", len(items), last)
	}
}

// The OriginateResponse of an async Originate reaches the originator only.
func TestAsyncOriginateResponse(t *testing.T) {
	checkLeaks(t)
	e := newEnv(t, envOpts{})
	a := e.login("admin", "adminpass", "Events", "call,user")
	b := e.login("admin", "adminpass", "Events", "call,user")
	m := a.call("Action", "Originate", "ActionID", "0", "Channel", "Local/100@lab", "Application", "Wait", "Data", "1", "Async", "true")
	if m != "Response: Success\r\nActionID: 0\r\nMessage: Originate successfully queued\r\n\r\n" {
		t.Fatalf("Originate = %q", m)
	}
	msgs := a.until("Event: OriginateResponse")
	if or := msgs[len(msgs)-1]; header(or, "ActionID") != "0" || header(or, "Response") != "Success" {
		t.Errorf("OriginateResponse = %q", or)
	}
	e.sims["east"].Emit(userEvent("marker"))
	for who, c := range map[string]*client{"originator": a, "other": b} {
		n := 0
		for _, m := range c.until("UserEvent: marker") {
			if strings.HasPrefix(m, "Event: OriginateResponse\r\n") {
				n++
			}
		}
		if n != 0 { // the originator's one was read above
			t.Errorf("%s saw %d (more) OriginateResponse events", who, n)
		}
	}
}

func twoPBXs(name string, c *pbxsim.Config) {
	if name == "west" {
		c.AsteriskVersion = "20.21.0"
	}
}

func TestServerHeader(t *testing.T) {
	checkLeaks(t)
	e := newEnv(t, envOpts{pbxs: []string{"east", "west"}, sim: twoPBXs, cfg: Config{DefaultPBX: "east"}})
	version := func(c *client, kv ...string) string {
		t.Helper()
		m := c.call(append([]string{"Action", "CoreSettings", "ActionID", "cs"}, kv...)...)
		if v := header(m, "AsteriskVersion"); v != "" {
			return v
		}
		return m
	}
	adm := e.login("admin", "adminpass", "Events", "off")
	if v := version(adm); v != "22.10.1" {
		t.Errorf("default PBX: %q", v)
	}
	if v := version(adm, "Server", "west"); v != "20.21.0" {
		t.Errorf("Server west: %q", v)
	}
	if v := version(adm, "Server", "north"); v != "Response: Error\r\nActionID: cs\r\nMessage: Permission denied\r\n\r\n" {
		t.Errorf("Server north: %q", v)
	}
	east := e.login("eastonly", "eastonlypass", "Events", "off")
	if v := version(east); v != "22.10.1" {
		t.Errorf("eastonly: %q", v)
	}
	if v := version(east, "Server", "west"); v != "Response: Error\r\nActionID: cs\r\nMessage: Permission denied\r\n\r\n" {
		t.Errorf("eastonly, Server west: %q", v)
	}
	if m := east.call("Action", "Ping", "Server", "west"); header(m, "Message") != "Permission denied" {
		t.Errorf("eastonly Ping to west: %q", m)
	}
	west := e.login("admin", "adminpass", "Events", "off", "Server", "west")
	if v := version(west); v != "20.21.0" {
		t.Errorf("Login Server west: %q", v)
	}
}

func TestMultiPBXEvents(t *testing.T) {
	checkLeaks(t)
	e := newEnv(t, envOpts{pbxs: []string{"east", "west"}, sim: twoPBXs})
	both := e.login("admin", "adminpass", "Events", "user", "Servers", "*")
	one := e.login("admin", "adminpass", "Events", "user")
	e.sims["west"].Emit(userEvent("w"))
	e.sims["east"].Emit(userEvent("e"))
	got := map[string]string{}
	for range 2 {
		m := both.readMsg()
		got[header(m, "UserEvent")] = m
	}
	for srv, key := range map[string]string{"east": "e", "west": "w"} {
		if want := "Event: UserEvent\r\nPrivilege: user,all\r\nServer: " + srv + "\r\nUserEvent: " + key + "\r\n\r\n"; got[key] != want {
			t.Errorf("Servers *: %q, want %q", got[key], want)
		}
	}
	if m := one.readMsg(); m != "Event: UserEvent\r\nPrivilege: user,all\r\nUserEvent: e\r\n\r\n" {
		t.Errorf("session PBX only: %q", m)
	}
	// Events can switch the set.
	if m := one.call("Action", "Events", "EventMask", "user", "Servers", "west"); m != "Response: Success\r\nEvents: On\r\n\r\n" {
		t.Fatalf("Events Servers west = %q", m)
	}
	e.sims["east"].Emit(userEvent("e2"))
	e.sims["west"].Emit(userEvent("w2"))
	if m := one.readMsg(); m != "Event: UserEvent\r\nPrivilege: user,all\r\nServer: west\r\nUserEvent: w2\r\n\r\n" {
		t.Errorf("after Events Servers west: %q", m)
	}
	lim := e.login("eastonly", "eastonlypass", "Events", "off")
	if m := lim.call("Action", "Events", "EventMask", "on", "Servers", "west"); m != "Response: Error\r\nMessage: Permission denied\r\n\r\n" {
		t.Errorf("Events Servers west as eastonly = %q", m)
	}
}

// A PBX that dies mid-action: the client gets an error naming the PBX,
// is told the link went down and came back, and keeps its session.
func TestPBXDiesMidAction(t *testing.T) {
	checkLeaks(t)
	e := newEnv(t, envOpts{pbxs: []string{"east", "west"}, sim: twoPBXs})
	c := e.login("admin", "adminpass", "Events", "system")
	east := e.sims["east"]
	east.Stall(true)
	c.send("Action", "CoreSettings", "ActionID", "k1")
	time.Sleep(100 * time.Millisecond)
	east.DropAll()
	var reply, down string
	for _, m := range c.until("ActionID: k1") {
		if header(m, "Event") == EventUpstreamDown {
			down = m
		}
		reply = m
	}
	if reply != "Response: Error\r\nActionID: k1\r\nMessage: PBX east went away: action aborted\r\n\r\n" {
		t.Errorf("reply = %q", reply)
	}
	if down == "" {
		for _, m := range c.until("Event: " + EventUpstreamDown) {
			down = m
		}
	}
	if down != "Event: ProxyUpstreamDown\r\nPrivilege: system,all\r\nServer: east\r\n\r\n" {
		t.Errorf("link down event = %q", down)
	}
	if m := c.call("Action", "Ping", "ActionID", "p"); header(m, "Ping") != "Pong" {
		t.Errorf("Ping = %q", m)
	}
	if m := c.call("Action", "CoreSettings", "ActionID", "k2"); m != "Response: Error\r\nActionID: k2\r\nMessage: PBX east is not connected\r\n\r\n" {
		t.Errorf("while down = %q", m)
	}
	if m := c.call("Action", "CoreSettings", "Server", "west"); header(m, "AsteriskVersion") != "20.21.0" {
		t.Errorf("west while east is down = %q", m)
	}
	east.Stall(false)
	c.until("Event: " + EventUpstreamUp)
	if m := c.call("Action", "CoreSettings", "ActionID", "k3"); header(m, "AsteriskVersion") != "22.10.1" {
		t.Errorf("after reconnect = %q", m)
	}
	if s := e.gw.Stats(); s.ActionsFailed != 2 {
		t.Errorf("ActionsFailed = %d, want 2", s.ActionsFailed)
	}
}

// One client stops reading: it is disconnected and counted once its
// outgoing queue (ClientQueue, then the upstream SubscriberQueue) is full;
// the others receive every event.
func TestSlowClient(t *testing.T) {
	checkLeaks(t)
	var rl *recListener
	e := newEnv(t, envOpts{
		cfg:      Config{ClientQueue: 100},
		upstream: func(c *upstream.Config) { c.SubscriberQueue = 1000 },
		wrap:     func(ln net.Listener) net.Listener { rl = &recListener{Listener: ln}; return rl },
	})
	fast := []*client{e.login("admin", "adminpass", "Events", "user"), e.login("admin", "adminpass", "Events", "user")}
	slow := e.login("admin", "adminpass", "Events", "user")
	rl.conn(2).stuck.Store(true)
	const n = 3000
	var wg sync.WaitGroup
	counts := make([]int, len(fast))
	for i, c := range fast {
		wg.Go(func() {
			for counts[i] < n {
				m, err := c.tryRead(5 * time.Second)
				if err != nil {
					return
				}
				if strings.HasPrefix(m, "Event: UserEvent\r\n") {
					counts[i]++
				}
			}
		})
	}
	sim := e.sims["east"]
	for i := range n {
		sim.Emit(userEvent(fmt.Sprint("ev", i)))
		if i%20 == 19 { // about 20000 events/s
			time.Sleep(time.Millisecond)
		}
	}
	wg.Wait()
	for i, got := range counts {
		if got != n {
			t.Errorf("fast client %d got %d events, want %d; gateway %+v; pool %+v", i, got, n, e.gw.Stats(), e.pool.Stats())
		}
	}
	waitFor(t, "the slow client's disconnection", func() bool { return e.gw.Stats().SlowDisconnects == 1 })
	if s := e.gw.Stats(); s.EventsDropped == 0 {
		t.Errorf("EventsDropped = 0")
	}
	_ = slow.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadAll(slow.br); err != nil {
		t.Errorf("slow client: %v, want EOF", err)
	}
}

func selfSigned(t *testing.T) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "amiproxy test"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		DNSNames:              []string{"localhost"},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: cert}, pool
}

func TestTLS(t *testing.T) {
	checkLeaks(t)
	e := newEnv(t, envOpts{})
	cert, roots := selfSigned(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		done <- e.gw.ServeAMITLS(context.Background(), ln, &tls.Config{Certificates: []tls.Certificate{cert}})
	}()
	t.Cleanup(func() {
		_ = e.gw.Close()
		if err := <-done; !errors.Is(err, ErrClosed) {
			t.Errorf("ServeAMITLS = %v, want ErrClosed", err)
		}
	})
	conn, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{RootCAs: roots, ServerName: "127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if v := conn.ConnectionState().Version; v < tls.VersionTLS12 {
		t.Errorf("TLS version %x", v)
	}
	c := &client{t: t, conn: conn, br: bufioReader(conn)}
	if b := c.line(); b != "Asterisk Call Manager/11.0.0\r\n" {
		t.Fatalf("banner = %q", b)
	}
	if m := c.call("Action", "Login", "Username", "admin", "Secret", "adminpass", "Events", "off"); header(m, "Message") != "Authentication accepted" {
		t.Fatalf("login = %q", m)
	}
	if m := c.call("Action", "Ping"); header(m, "Ping") != "Pong" {
		t.Errorf("Ping = %q", m)
	}
	// A client that does not speak TLS is refused.
	plain, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	_, _ = io.WriteString(plain, "Action: Login\r\n\r\n")
	_ = plain.SetReadDeadline(time.Now().Add(5 * time.Second))
	if b, _ := io.ReadAll(plain); bytes.Contains(b, []byte("Asterisk Call Manager")) {
		t.Errorf("plain client got %q", b)
	}
}

// The TLS server name picks the session PBX among the granted ones:
// "west.ami.test" selects west, a Server header still wins, and a name that
// matches an ungranted PBX grants nothing.
func TestSNISelectsPBX(t *testing.T) {
	checkLeaks(t)
	e := newEnv(t, envOpts{pbxs: []string{"east", "west"}, sim: twoPBXs, cfg: Config{DefaultPBX: "east"}})
	cert, _ := selfSigned(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		done <- e.gw.ServeAMITLS(context.Background(), ln, &tls.Config{Certificates: []tls.Certificate{cert}})
	}()
	t.Cleanup(func() {
		_ = e.gw.Close()
		<-done
	})
	login := func(sni, user, secret string, extra ...string) *client {
		t.Helper()
		conn, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{InsecureSkipVerify: true, ServerName: sni})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		c := &client{t: t, conn: conn, br: bufioReader(conn)}
		c.line() // banner
		kv := append([]string{"Action", "Login", "Username", user, "Secret", secret, "Events", "off"}, extra...)
		if m := c.call(kv...); header(m, "Message") != "Authentication accepted" {
			t.Fatalf("login %s via %q = %q", user, sni, m)
		}
		return c
	}
	version := func(c *client) string {
		return header(c.call("Action", "CoreSettings", "ActionID", "cs"), "AsteriskVersion")
	}
	tests := []struct {
		sni, user, secret string
		extra             []string
		want              string
	}{
		{"west.ami.test", "admin", "adminpass", nil, "20.21.0"},
		{"WEST", "admin", "adminpass", nil, "20.21.0"},
		{"east.ami.test", "admin", "adminpass", nil, "22.10.1"},
		{"ami.test", "admin", "adminpass", nil, "22.10.1"},                             // no PBX named: default
		{"west.ami.test", "admin", "adminpass", []string{"Server", "east"}, "22.10.1"}, // Server wins
		{"west.ami.test", "eastonly", "eastonlypass", nil, "22.10.1"},                  // west not granted
	}
	for _, tt := range tests {
		if got := version(login(tt.sni, tt.user, tt.secret, tt.extra...)); got != tt.want {
			t.Errorf("SNI %q, user %s, %v: AsteriskVersion %q, want %q", tt.sni, tt.user, tt.extra, got, tt.want)
		}
	}
}

// Secrets and keys never appear in any log; audit lines carry the facts.
func TestAuditLog(t *testing.T) {
	checkLeaks(t)
	logs := &syncBuffer{}
	e := newEnv(t, envOpts{logs: logs})
	adm := e.login("admin", "adminpass", "Events", "off")
	adm.call("Action", "Command", "Command", "core show version", "ActionID", "cmd")
	adm.call("Action", "Ping")
	lim := e.login("limited", "limitedpass", "Events", "off")
	lim.call("Action", "Command", "Command", "core show version", "ActionID", "denied-1")
	bad := e.connect()
	bad.call("Action", "Login", "Username", "admin", "Secret", "wrong-Secret-42")
	bad.expectEOF()
	md := e.connect()
	ch := header(md.call("Action", "Challenge", "AuthType", "MD5"), "Challenge")
	key := md5hex(ch + "adminpass")
	md.call("Action", "Login", "Username", "admin", "AuthType", "MD5", "Key", key, "Events", "off")
	md.call("Action", "Logoff")
	md.expectEOF()
	// A wrong key on another session.
	md2 := e.connect()
	ch2 := header(md2.call("Action", "Challenge", "AuthType", "MD5"), "Challenge")
	badKey := md5hex(ch2 + "not-the-secret")
	md2.call("Action", "Login", "Username", "admin", "AuthType", "MD5", "Key", badKey)
	md2.expectEOF()

	out := logs.String()
	for _, secret := range []string{"adminpass", "limitedpass", "wrong-Secret-42", key, badKey} {
		if strings.Contains(out, secret) {
			t.Errorf("log output contains the secret %q", secret)
		}
	}
	var sawDeny, sawLoginFail bool
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("log line is not JSON: %q", line)
		}
		if rec["log"] != "audit" {
			continue
		}
		switch {
		case rec["msg"] == "ami.action" && rec["action_id"] == "denied-1":
			sawDeny = true
			for k, want := range map[string]any{"result": "deny", "user": "limited", "pbx": "east", "action": "Command", "door": "ami"} {
				if rec[k] != want {
					t.Errorf("deny audit %s = %v, want %v", k, rec[k], want)
				}
			}
			for _, k := range []string{"rule", "ref", "remote", "latency", "session"} {
				if rec[k] == nil || rec[k] == "" {
					t.Errorf("deny audit line lacks %s: %v", k, rec)
				}
			}
		case rec["msg"] == "auth.login" && rec["result"] == "failure":
			sawLoginFail = true
			if rec["ref"] == nil || rec["user"] != "admin" {
				t.Errorf("login failure audit = %v", rec)
			}
		}
	}
	if !sawDeny || !sawLoginFail {
		t.Errorf("audit lacks the deny (%v) or the failed login (%v):\n%s", sawDeny, sawLoginFail, out)
	}
}

// The real local accounts of package auth behind the proxy.
func TestRealAuth(t *testing.T) {
	checkLeaks(t)
	hash, err := auth.HashSecret(auth.Secret("limitedpass"), auth.MinBcryptCost)
	if err != nil {
		t.Fatal(err)
	}
	local, err := auth.NewLocal([]auth.Account{
		{Username: "admin", Secret: auth.Secret("adminpass")},
		{Username: "limited", SecretHash: hash},
	})
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, envOpts{authn: local})
	e.login("admin", "adminpass", "Events", "off")
	e.login("limited", "limitedpass", "Events", "off")
	c := e.connect()
	ch := header(c.call("Action", "Challenge", "AuthType", "MD5"), "Challenge")
	if m := c.call("Action", "Login", "Username", "ADMIN", "AuthType", "MD5", "Key", md5hex(ch+"adminpass"), "Events", "off"); header(m, "Message") != "Authentication accepted" {
		t.Errorf("MD5 login = %q", m)
	}
	bad := e.connect()
	if m := bad.call("Action", "Login", "Username", "limited", "Secret", "adminpass"); header(m, "Message") != "Authentication failed" {
		t.Errorf("bad login = %q", m)
	}
	bad.expectEOF()
}

// A panic in one session closes that session only.
func TestSessionPanic(t *testing.T) {
	checkLeaks(t)
	a := newTestAuth()
	a.panicOn = "boom"
	e := newEnv(t, envOpts{authn: a})
	ok := e.login("admin", "adminpass", "Events", "off")
	c := e.connect()
	c.send("Action", "Login", "Username", "boom", "Secret", "x")
	c.expectEOF()
	if m := ok.call("Action", "Ping"); header(m, "Ping") != "Pong" {
		t.Errorf("other session after a panic: %q", m)
	}
	if s := e.gw.Stats(); s.Panics != 1 {
		t.Errorf("Panics = %d, want 1", s.Panics)
	}
}

func TestCredentialsExpire(t *testing.T) {
	checkLeaks(t)
	a := newTestAuth()
	a.secrets["temp"] = "temppass"
	a.expires["temp"] = time.Now().Add(300 * time.Millisecond)
	pc := testPolicy()
	pc.Users["temp"] = []string{"admin"}
	e := newEnv(t, envOpts{authn: a, policy: &pc})
	c := e.login("temp", "temppass", "Events", "off")
	// The notice goes out whatever the event mask (Events off here).
	if m := c.readMsg(); header(m, "Event") != EventSessionEnd || header(m, "Reason") != ReasonExpired {
		t.Errorf("expiry notice = %q", m)
	}
	c.expectEOF()
	if s := e.gw.Stats(); s.EndedExpired != 1 {
		t.Errorf("EndedExpired = %d, want 1", s.EndedExpired)
	}
}

// Close tells clients that read system events, like Asterisk, and closes
// every session.
func TestCloseSendsShutdown(t *testing.T) {
	checkLeaks(t)
	e := newEnv(t, envOpts{})
	adm := e.login("admin", "adminpass")
	lim := e.login("limited", "limitedpass")
	pending := e.connect()
	if err := e.gw.Close(); err != nil {
		t.Fatal(err)
	}
	if m := adm.readMsg(); m != shutdownEventText {
		t.Errorf("admin got %q", m)
	}
	adm.expectEOF()
	lim.expectEOF()
	pending.expectEOF()
	if s := e.gw.Stats(); s.Sessions != 0 {
		t.Errorf("Sessions after Close = %d", s.Sessions)
	}
}

func TestNewGatewayErrors(t *testing.T) {
	if _, err := NewGateway(Config{}, nil, nil, nil); err == nil {
		t.Error("NewGateway(nil...) = nil error")
	}
}

// Sessions of the same roles share one eventfilter verdict per event
// (upstream.Event.Memo keyed by policy.Subject.FilterKey); sessions of
// other filters, or none, still get their own.
func TestRoleFiltersSharedVerdict(t *testing.T) {
	checkLeaks(t)
	pc := testPolicy()
	pc.Roles = append(pc.Roles, policy.Role{Name: "hangups", Read: "all", Write: "all", PBXs: []string{"*"}, EventFilters: []string{"Event: Hangup"}})
	pc.Users["hangups"] = []string{"hangups"}
	a := newTestAuth()
	a.secrets["hangups"] = "hangupspass"
	e := newEnv(t, envOpts{policy: &pc, authn: a})
	sim := e.sims["east"]
	f1 := e.login("filtered", "filteredpass")
	f2 := e.login("filtered", "filteredpass")
	h := e.login("hangups", "hangupspass")
	all := e.login("admin", "adminpass")
	for _, name := range []string{"A", "B", "C", "D"} {
		ev := "Newchannel"
		if name == "B" || name == "D" {
			ev = "Hangup"
		}
		sim.Emit(rawman.New("Event", ev, "Privilege", "call,all", "Channel", name))
	}
	for _, tc := range []struct {
		who  string
		c    *client
		want []string
	}{
		{"filtered 1", f1, []string{"A", "C"}},
		{"filtered 2", f2, []string{"A", "C"}},
		{"hangups", h, []string{"B", "D"}},
		{"admin", all, []string{"A", "B", "C", "D"}},
	} {
		for _, w := range tc.want {
			if m := tc.c.readMsg(); header(m, "Channel") != w {
				t.Errorf("%s got %q, want the event of channel %s", tc.who, m, w)
			}
		}
	}
}
