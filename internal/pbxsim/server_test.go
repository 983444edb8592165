package pbxsim

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/amiproxy/amiproxy/rawman"
)

func TestLoginFailDelayDefaultIsOneSecond(t *testing.T) {
	t.Parallel()
	s, err := New(Config{}) // the default, as Asterisk's sleep(1)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	c := dial(t, s.Addr())
	start := time.Now()
	c.send("Action", "Login", "ActionID", "bad", "Username", "admin", "Secret", "wrong")
	m := c.read(5 * time.Second)
	if d := time.Since(start); d < 900*time.Millisecond {
		t.Errorf("failed Login answered after %v, want about 1s", d)
	}
	if m.Get("Message") != "Authentication failed" || m.Response() != "Error" {
		t.Errorf("failed Login reply = %v", m)
	}
	c.expectClosed(2 * time.Second)
}

func TestConfigValidation(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		cfg  Config
		ok   bool
	}{
		{"zero value", Config{}, true},
		{"CR in banner", Config{Banner: "1.0\r\nEvent: x"}, false},
		{"unnamed user", Config{Users: []User{{Secret: "x"}}}, false},
		{"general is not a user", Config{Users: []User{{Name: "general"}}}, false},
		{"bad filter skipped like Asterisk", Config{Users: []User{{Name: "u", EventFilters: []string{"eventfilter(bogus) = x"}}}}, true},
		{"regex Go cannot mimic", Config{Users: []User{{Name: "u", EventFilters: []string{`eventfilter = (a)\1`}}}}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := New(tt.cfg)
			if (err == nil) != tt.ok {
				t.Fatalf("New(%s) error = %v, want ok=%v", tt.name, err, tt.ok)
			}
			if s != nil {
				_ = s.Close()
			}
		})
	}
}

func TestStall(t *testing.T) {
	t.Parallel()
	s := startServer(t, Config{})
	c := dial(t, s.Addr())
	c.login("admin", "adminpass", "Events", "user")
	s.Stall(true)
	c.send("Action", "Ping", "ActionID", "p1")
	if m, err := c.tryRead(200 * time.Millisecond); err == nil {
		t.Fatalf("stalled server answered: %v", m)
	}
	// Writes still flow while stalled.
	s.Emit(rawman.New("Event", "UserEvent", "Privilege", "user,all", "UserEvent", "stalled"))
	if m := c.read(2 * time.Second); m.Get("UserEvent") != "stalled" {
		t.Errorf("event while stalled = %v", m)
	}
	s.Stall(false)
	if m := c.response("p1", 2*time.Second); m.Get("Ping") != "Pong" {
		t.Errorf("Ping after Stall(false) = %v", m)
	}
}

func TestSetReplyDelay(t *testing.T) {
	t.Parallel()
	s := startServer(t, Config{})
	c := dial(t, s.Addr())
	c.login("admin", "adminpass", "Events", "off")
	s.SetReplyDelay(150 * time.Millisecond)
	start := time.Now()
	c.send("Action", "Ping", "ActionID", "p")
	c.response("p", 3*time.Second)
	if d := time.Since(start); d < 150*time.Millisecond {
		t.Errorf("Ping answered after %v with a 150ms reply delay", d)
	}
	s.SetReplyDelay(0)
}

func TestDropAll(t *testing.T) {
	t.Parallel()
	s := startServer(t, Config{})
	a, b := dial(t, s.Addr()), dial(t, s.Addr())
	a.login("admin", "adminpass")
	waitFor(func() bool { return s.Sessions() == 2 }, 2*time.Second)
	s.DropAll()
	if n := s.Sessions(); n != 0 {
		t.Errorf("Sessions() after DropAll = %d, want 0", n)
	}
	a.expectClosed(2 * time.Second)
	b.expectClosed(2 * time.Second)
	c := dial(t, s.Addr()) // still listening
	c.login("admin", "adminpass")
}

func TestRestartOnSameAddress(t *testing.T) {
	t.Parallel()
	s := startServer(t, Config{TimeScale: 0.05})
	addr := s.Addr()
	c := dial(t, addr)
	c.login("admin", "adminpass", "Events", "off")
	c.send("Action", "Originate", "ActionID", "o", "Channel", "Local/200@lab", "Application", "Wait", "Data", "30", "Async", "yes")
	c.response("o", 2*time.Second)

	done := make(chan error, 1)
	go func() { done <- s.Restart(300 * time.Millisecond) }()
	c.expectClosed(2 * time.Second)
	time.Sleep(50 * time.Millisecond)
	if conn, err := net.DialTimeout("tcp", addr.String(), time.Second); err == nil {
		conn.Close()
		t.Error("connection accepted while the server is down")
	}
	if err := <-done; err != nil {
		t.Fatalf("Restart: %v", err)
	}
	if s.Addr().String() != addr.String() {
		t.Errorf("Addr after Restart = %v, want %v", s.Addr(), addr)
	}
	c2 := dial(t, addr)
	c2.login("admin", "adminpass", "Events", "off")
	c2.send("Action", "CoreShowChannels", "ActionID", "csc")
	c2.response("csc", 2*time.Second)
	if m := c2.read(2 * time.Second); m.Event() != "CoreShowChannelsComplete" || m.Get("ListItems") != "0" {
		t.Errorf("calls survived the restart: %v", m)
	}
}

func TestServeOwnListenerAcrossRestart(t *testing.T) {
	t.Parallel()
	s, err := New(Config{LoginFailDelay: -1})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- s.Serve(ln) }()
	waitFor(func() bool { return s.Addr() != nil }, time.Second)
	dial(t, ln.Addr()).login("admin", "adminpass")
	if err := s.Restart(10 * time.Millisecond); err != nil {
		t.Fatalf("Restart: %v", err)
	}
	dial(t, ln.Addr()).login("limited", "limitedpass")
	select {
	case err := <-served:
		t.Fatalf("Serve returned during Restart: %v", err)
	default:
	}
	_ = s.Close()
	if err := <-served; !errors.Is(err, ErrServerClosed) {
		t.Errorf("Serve after Close = %v, want ErrServerClosed", err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close = %v", err)
	}
	if _, err := s.Start("127.0.0.1:0"); !errors.Is(err, ErrServerClosed) {
		t.Errorf("Start after Close = %v, want ErrServerClosed", err)
	}
}

func TestSlowClientIsDisconnected(t *testing.T) {
	t.Parallel()
	s := startServer(t, Config{MaxQueuedEvents: 100, WriteTimeout: 50 * time.Millisecond})
	slow := dial(t, s.Addr())
	slow.login("admin", "adminpass")
	fast := dial(t, s.Addr())
	fast.login("admin", "adminpass", "Events", "user")
	big := strings.Repeat("x", 4000)
	for i := 0; i < 5000 && s.Sessions() == 2; i++ {
		s.Emit(rawman.New("Event", "Flood", "Privilege", "system,all", "Data", big))
	}
	if !waitFor(func() bool { return s.Sessions() == 1 }, 5*time.Second) {
		t.Fatalf("a client that never reads is still connected (%d sessions)", s.Sessions())
	}
	// The reading client is not held up.
	fast.send("Action", "Ping", "ActionID", "p")
	fast.response("p", 2*time.Second)
}

func TestAuthLimitAndTimeout(t *testing.T) {
	t.Parallel()
	s := startServer(t, Config{AuthLimit: 2, AuthTimeout: 300 * time.Millisecond})
	a, b := dial(t, s.Addr()), dial(t, s.Addr())
	conn, err := net.Dial("tcp", s.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetReadDeadline(time.Now().Add(2 * time.Second))
	if n, err := conn.Read(make([]byte, 64)); err == nil {
		t.Errorf("third unauthenticated connection got %d bytes, want close before the banner", n)
	}
	a.login("admin", "adminpass")
	time.Sleep(400 * time.Millisecond)
	b.expectClosed(2 * time.Second) // authtimeout
	a.send("Action", "Ping", "ActionID", "p")
	a.response("p", 2*time.Second) // no timeout once logged in
}

func TestEmitDelivery(t *testing.T) {
	t.Parallel()
	s := startServer(t, Config{TimestampEvents: true, SystemName: "east"})
	admin := dial(t, s.Addr())
	admin.login("admin", "adminpass", "Events", "call,system")
	admin.event("FullyBooted", time.Second)
	limited := dial(t, s.Addr())
	limited.login("limited", "limitedpass")
	filtered := dial(t, s.Addr())
	filtered.login("filtered", "filteredpass")
	filtered.event("FullyBooted", time.Second)       // not filtered
	admin.send("Action", "Ping", "ActionID", "sync") // skip the other logins' SuccessfulAuth
	admin.response("sync", time.Second)
	off := dial(t, s.Addr())
	off.login("admin", "adminpass", "Events", "off")

	s.Emit(rawman.New("Event", "Newchannel", "Privilege", "call,all", "Channel", "Local/1@lab-00000000;1"))
	s.Emit(rawman.New("Event", "Reload", "Privilege", "system,all", "Module", "x"))
	s.Emit(rawman.New("Event", "Both", "Privilege", "call,user,all"))
	s.Emit(rawman.New("Event", "Newchannel", "Privilege", "call,all", "Channel", "Local/200@lab-00000000;1"))
	s.Emit(rawman.New("Event", "UserEvent", "Privilege", "user,all", "UserEvent", "end"))

	// events returns what c receives before the reply to a Ping.
	events := func(c *client) string {
		c.send("Action", "Ping", "ActionID", "end")
		var got []string
		for {
			m := c.read(2 * time.Second)
			if m.IsResponse() && m.ActionID() == "end" {
				return strings.Join(got, ",")
			}
			if m.Event() == "Newchannel" && m.At(2).Key != "Timestamp" || m.Get("SystemName") != "east" {
				t.Errorf("event headers = %v, want Timestamp then SystemName after Privilege", m.Headers())
			}
			got = append(got, m.Event()+" "+m.Get("Channel"))
		}
	}
	// admin reads call and system (send mask), not user: Both needs call AND user.
	if got, want := events(admin), "Newchannel Local/1@lab-00000000;1,Reload ,Newchannel Local/200@lab-00000000;1"; got != want {
		t.Errorf("admin (Events call,system) got %v, want %v", got, want)
	}
	if got, want := events(limited), "Newchannel Local/1@lab-00000000;1,Newchannel Local/200@lab-00000000;1"; got != want {
		t.Errorf("limited (read=call) got %v, want %v", got, want)
	}
	// filtered: include Newchannel (and Hangup), exclude Local/200@.
	if got, want := events(filtered), "Newchannel Local/1@lab-00000000;1"; got != want {
		t.Errorf("filtered got %v, want %v", got, want)
	}
	off.send("Action", "Ping", "ActionID", "p")
	if m := off.read(2 * time.Second); !m.IsResponse() {
		t.Errorf("Events off session got %v", m)
	}
}

// panicLogger panics while logging one message, to exercise a session's
// panic recovery.
type panicHandler struct{ slog.Handler }

func (h panicHandler) Enabled(context.Context, slog.Level) bool { return true }

func (h panicHandler) Handle(ctx context.Context, r slog.Record) error {
	if r.Message == "pbxsim: action not simulated" {
		panic("boom")
	}
	return nil
}

func TestSessionPanicClosesOnlyThatSession(t *testing.T) {
	t.Parallel()
	log := slog.New(panicHandler{slog.DiscardHandler})
	s := startServer(t, Config{Logger: log})
	victim, other := dial(t, s.Addr()), dial(t, s.Addr())
	victim.login("admin", "adminpass", "Events", "off")
	other.login("admin", "adminpass", "Events", "off")
	victim.send("Action", "BridgeList", "ActionID", "b") // registered, not simulated: logs, panics
	victim.expectClosed(2 * time.Second)
	other.send("Action", "Ping", "ActionID", "p")
	other.response("p", 2*time.Second)

	// A panic in a PBX step is logged and the PBX goes on.
	s.pbx.lock()
	s.pbx.after(0, func() { panic("step") })
	s.pbx.unlock()
	other.send("Action", "Originate", "ActionID", "o", "Channel", "Local/100@lab", "Application", "Wait", "Data", "1")
	if m := other.response("o", 3*time.Second); m.Response() != "Success" {
		t.Errorf("Originate after a PBX panic = %v", m)
	}
}

// TestConcurrentUse hammers one server from many clients while traffic
// runs and events are injected, then checks that Close leaves nothing
// behind (run with -race).
func TestConcurrentUse(t *testing.T) {
	checkLeaks(t)
	s, err := New(Config{TimeScale: 0.05, LoginFailDelay: -1})
	if err != nil {
		t.Fatal(err)
	}
	addr, err := s.Start("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s.StartTraffic(ctx, 2000)
	var wg sync.WaitGroup
	for i := range 12 {
		wg.Go(func() {
			conn, err := net.Dial("tcp", addr.String())
			if err != nil {
				t.Error(err)
				return
			}
			defer conn.Close()
			users := []string{"admin", "limited", "filtered", "filtadv"}
			u := users[i%len(users)]
			fmt.Fprintf(conn, "Action: Login\r\nUsername: %s\r\nSecret: %spass\r\n\r\n", u, u)
			for j := range 20 {
				fmt.Fprintf(conn, "Action: Ping\r\nActionID: %d\r\n\r\n", j)
				fmt.Fprintf(conn, "Action: Originate\r\nChannel: Local/%d@lab\r\nApplication: Wait\r\nData: 1\r\nAsync: %v\r\n\r\n", []int{100, 200, 300, 400, 500, 600, 999}[j%7], j%2 == 0)
				fmt.Fprintf(conn, "Action: CoreShowChannels\r\n\r\nAction: QueueStatus\r\n\r\nAction: Status\r\n\r\n")
				if j%5 == 0 {
					fmt.Fprintf(conn, "Action: Hangup\r\nChannel: /Local/\r\n\r\n")
				}
			}
			_ = conn.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
			_, _ = io.Copy(io.Discard, conn)
		})
	}
	for i := range 200 {
		s.Emit(rawman.New("Event", "Test", "Privilege", "call,all", "N", fmt.Sprint(i)))
	}
	s.Stall(true)
	s.SetReplyDelay(time.Millisecond)
	s.Stall(false)
	wg.Wait()
	if err := s.Restart(time.Millisecond); err != nil {
		t.Errorf("Restart: %v", err)
	}
	s.DropAll()
	if err := s.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
}
