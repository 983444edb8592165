package upstream

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/amiproxy/amiproxy/rawman"
)

func TestValidate(t *testing.T) {
	good := testConfig("127.0.0.1:5038")
	tests := []struct {
		name  string
		edit  func(*Config)
		wants []string // substrings of the joined error; none means valid
	}{
		{"valid", func(*Config) {}, nil},
		{"zero config reports every problem", func(c *Config) { *c = Config{} },
			[]string{"name is empty", "address", "username is empty", "secret is empty"}},
		{"bad port", func(c *Config) { c.Address = "pbx:99999" }, []string{"port must be 1-65535"}},
		{"no host", func(c *Config) { c.Address = ":5038" }, []string{"has no host"}},
		{"CRLF in username", func(c *Config) { c.Username = "a\r\nAction: Command" }, []string{"username contains CR"}},
		{"tls fields without tls", func(c *Config) { c.TLS.CAFile = "/x" }, []string{"tls is not enabled"}},
		{"insecure with ca", func(c *Config) { c.TLS = TLS{Enabled: true, CAFile: "/x", InsecureSkipVerify: true} },
			[]string{"contradict"}},
		{"negative durations", func(c *Config) { c.PingTimeout = -1; c.DialTimeout = -1 },
			[]string{"ping timeout is negative", "dial timeout is negative"}},
		{"min above max", func(c *Config) { c.ReconnectMin, c.ReconnectMax = time.Second, time.Millisecond },
			[]string{"exceeds reconnect max"}},
		{"negative queue", func(c *Config) { c.SubscriberQueue = -1 }, []string{"subscriber queue is negative"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := good
			tt.edit(&c)
			before := c
			err := c.Validate()
			if c != before {
				t.Errorf("Validate changed the config: %+v, want %+v", c, before)
			}
			if len(tt.wants) == 0 {
				if err != nil {
					t.Errorf("Validate() = %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate() = nil, want errors %q", tt.wants)
			}
			for _, w := range tt.wants {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Validate() = %q, want it to mention %q", err, w)
				}
			}
		})
	}
}

func TestNewPoolRejects(t *testing.T) {
	a := testConfig("127.0.0.1:1")
	if _, err := NewPool([]Config{a, a}, Options{}); err == nil || !strings.Contains(err.Error(), "duplicate name") {
		t.Errorf("NewPool(duplicates) = %v, want duplicate name error", err)
	}
	b := a
	b.TLS = TLS{Enabled: true, CAFile: t.TempDir() + "/missing.pem"}
	if _, err := NewPool([]Config{b}, Options{}); err == nil || !strings.Contains(err.Error(), "ca file") {
		t.Errorf("NewPool(missing CA) = %v, want ca file error", err)
	}
}

func TestSecretNeverPrinted(t *testing.T) {
	cfg := testConfig("127.0.0.1:5038")
	cfg.Secret = "s3cr3t-value"
	var logs bytes.Buffer
	slog.New(slog.NewJSONHandler(&logs, nil)).Info("cfg", "cfg", cfg, "secret", cfg.Secret)
	for _, out := range []string{
		fmt.Sprintf("%v", cfg), fmt.Sprintf("%+v", cfg), fmt.Sprintf("%#v", cfg),
		fmt.Sprint(cfg.Secret), logs.String(),
	} {
		if strings.Contains(out, "s3cr3t") {
			t.Errorf("secret printed: %s", out)
		}
	}
}

func TestLoginPlainLearnsVersions(t *testing.T) {
	checkLeaks(t)
	f := newFake(t)
	f.received = make(chan rawman.Message, 16)
	_, c := startPool(t, testConfig(f.addr), Options{}, true)
	if ast, ami := c.Versions(); ast != "22.10.1" || ami != "11.0.0" {
		t.Errorf("Versions() = %q, %q, want 22.10.1, 11.0.0", ast, ami)
	}
	if s := c.State(); s != StateUp {
		t.Errorf("State() = %v, want up", s)
	}
	login := <-f.received
	if login.Action() != "Login" || login.Get("Secret") != "adminpass" || login.Get("Username") != "admin" {
		t.Errorf("first request = %q, want plain Login", login)
	}
	if cs := <-f.received; cs.Action() != "CoreSettings" {
		t.Errorf("second request = %q, want CoreSettings", cs)
	}
	if st := c.Stats(); st.Skipped != 2 {
		t.Errorf("Stats().Skipped = %d, want 2 (FullyBooted and SuccessfulAuth of the proxy's own login)", st.Skipped)
	}
}

func TestLoginMD5(t *testing.T) {
	checkLeaks(t)
	f := newFake(t)
	f.received = make(chan rawman.Message, 16)
	cfg := testConfig(f.addr)
	cfg.AuthMD5 = true
	_, c := startPool(t, cfg, Options{}, true)
	if ch := <-f.received; ch.Action() != "Challenge" || ch.Get("AuthType") != "MD5" {
		t.Fatalf("first request = %q, want Challenge/MD5", ch)
	}
	login := <-f.received
	sum := md5.Sum([]byte("357042681adminpass"))
	if login.Get("Key") != hex.EncodeToString(sum[:]) || login.Get("AuthType") != "MD5" {
		t.Errorf("Login = %q, want AuthType MD5 and Key md5(challenge+secret)", login)
	}
	if _, ok := login.Lookup("Secret"); ok {
		t.Errorf("MD5 Login carries the Secret: %q", login)
	}
	if c.State() != StateUp {
		t.Errorf("State() = %v, want up", c.State())
	}
}

// Two clients that both use ActionID "0" (as Nami does) run hundreds of
// actions at once; each sees only its own replies, with "0" restored.
func TestActionIDIsolation(t *testing.T) {
	checkLeaks(t)
	f := newFake(t)
	f.received = make(chan rawman.Message, 2000)
	p, c := startPool(t, testConfig(f.addr), Options{}, true)
	const perClient = 300
	var wg sync.WaitGroup
	errs := make(chan error, 2*perClient)
	for _, who := range []string{"a", "b"} {
		cl := p.NewClient()
		defer cl.Close()
		for i := range perClient {
			wg.Go(func() {
				v := fmt.Sprintf("%s-%d", who, i)
				got, err := do(t, c, cl, "Action", "Getvar", "ActionID", "0", "Variable", v)
				switch {
				case err != nil:
					errs <- err
				case len(got) != 1:
					errs <- fmt.Errorf("%s: got %d replies, want 1", v, len(got))
				case got[0].ActionID() != "0" || got[0].Get("Variable") != v || got[0].Count("ActionID") != 1:
					errs <- fmt.Errorf("%s: reply %q, want ActionID 0 and Variable %s", v, got[0], v)
				}
			})
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	// What the PBX saw: only proxy ActionIDs, all distinct, short.
	seen := map[string]bool{}
	for len(f.received) > 0 {
		m := <-f.received
		id := m.ActionID()
		if id == "0" || len(id) > 64 || seen[id] || m.Count("ActionID") != 1 {
			t.Errorf("PBX saw ActionID %q (count %d); want unique proxy ids of at most 64 bytes", id, m.Count("ActionID"))
		}
		seen[id] = true
	}
	if st := c.Stats(); st.Pending != 0 || st.Strays != 0 {
		t.Errorf("Stats() pending %d strays %d, want 0 and 0", st.Pending, st.Strays)
	}
}

// List replies are routed whole and byte-for-byte like Asterisk's, with the
// client's ActionID wherever Asterisk put it (second in CoreShowChannel,
// last in ChannelHungup).
func TestListReplies(t *testing.T) {
	checkLeaks(t)
	f := newFake(t)
	p, c := startPool(t, testConfig(f.addr), Options{}, true)
	cl := p.NewClient()
	defer cl.Close()
	tests := []struct {
		name     string
		channels int
		kv       []string
		want     string
		n        int
	}{
		{"CoreShowChannels with two calls", 2, []string{"Action", "CoreShowChannels", "ActionID", "csc-1"}, recs.csc2.with("csc-1"), 4},
		{"CoreShowChannels with no calls", 0, []string{"Action", "CoreShowChannels", "ActionID", "csc-2"}, recs.csc0.with("csc-2"), 2},
		{"Hangup by regex, ActionID last in items", 0, []string{"Action", "Hangup", "ActionID", "hup-1", "Channel", `/^Local\/200@lab-.*;1$/`}, recs.hangup.with("hup-1"), 3},
		{"client ActionID is restored byte for byte", 2, []string{"Action", "CoreShowChannels", "ActionID", "  x y\t"}, recs.csc2.with("  x y\t"), 4},
		{"no ActionID: replies carry none", 2, []string{"Action", "CoreShowChannels"}, recs.csc2.with(""), 4},
		{"empty ActionID counts as none", 0, []string{"Action", "CoreShowChannels", "ActionID", "", "ActionID", "5"}, recs.csc0.with(""), 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f.setChannels(tt.channels)
			got, err := do(t, c, cl, tt.kv...)
			if err != nil {
				t.Fatalf("Do: %v", err)
			}
			if len(got) != tt.n {
				t.Errorf("Do delivered %d messages, want %d", len(got), tt.n)
			}
			if s := concat(got); s != tt.want {
				t.Errorf("Do delivered\n%q\nwant\n%q", s, tt.want)
			}
		})
	}
	if ev := cl.Drain(nil); len(ev) != 0 {
		t.Errorf("list items leaked into the event queue: %d items", len(ev))
	}
}

func TestPingWithoutActionID(t *testing.T) {
	checkLeaks(t)
	f := newFake(t)
	_, c := startPool(t, testConfig(f.addr), Options{}, true)
	got, err := do(t, c, nil, "Action", "Ping")
	if err != nil {
		t.Fatal(err)
	}
	if want := recs.ping.with(""); len(got) != 1 || concat(got) != want {
		t.Errorf("Ping without ActionID = %q, want %q", concat(got), want)
	}
}

// The OriginateResponse of an async Originate reaches the originator only,
// with its ActionID; other subscribers still get the call's events.
func TestAsyncOriginateResponseOnlyToOriginator(t *testing.T) {
	checkLeaks(t)
	f := newFake(t)
	p, c := startPool(t, testConfig(f.addr), Options{}, true)
	a, b := p.NewClient(), p.NewClient()
	defer a.Close()
	defer b.Close()
	for _, cl := range []*Client{a, b} {
		if err := c.Subscribe(cl); err != nil {
			t.Fatal(err)
		}
	}
	got, err := do(t, c, a, "Action", "Originate", "ActionID", "orig-async-1", "Channel", "Local/100@lab",
		"Application", "Wait", "Data", "2", "Async", "true")
	if err != nil {
		t.Fatal(err)
	}
	if concat(got) != recs.origAck.text {
		t.Errorf("Originate reply = %q, want %q", concat(got), recs.origAck.text)
	}
	// a: Newchannel (broadcast) then its OriginateResponse (reply).
	ev := nextMsg(t, a)
	if ev.Msg.Event() != "Newchannel" || ev.Reply || string(ev.Raw) != recs.newchannel {
		t.Errorf("a's first event = %q (reply %v), want the shared Newchannel", ev.Raw, ev.Reply)
	}
	ev = nextMsg(t, a)
	if !ev.Reply || string(ev.Raw) != recs.origResp.text || ev.PBX != "east" {
		t.Errorf("a's second event = %q (reply %v), want the recorded OriginateResponse", ev.Raw, ev.Reply)
	}
	// b: Newchannel only.
	if ev := nextMsg(t, b); ev.Msg.Event() != "Newchannel" {
		t.Errorf("b's event = %q, want Newchannel", ev.Raw)
	}
	f.emit(recs.newchannel) // a marker: nothing else may precede it
	if ev := nextMsg(t, b); ev.Msg.Event() != "Newchannel" {
		t.Errorf("b got %q, want only Newchannel events", ev.Raw)
	}
	if st := c.Stats(); st.LateReplies != 0 || st.Strays != 0 {
		t.Errorf("Stats() late %d strays %d, want 0 and 0", st.LateReplies, st.Strays)
	}
}

// A synchronous Originate would block the shared session; it goes out as
// async and Do answers as Asterisk's synchronous Originate would.
func TestSyncOriginateIsSentAsync(t *testing.T) {
	checkLeaks(t)
	f := newFake(t)
	f.received = make(chan rawman.Message, 16)
	p, c := startPool(t, testConfig(f.addr), Options{}, true)
	cl := p.NewClient()
	defer cl.Close()
	for _, tt := range []struct {
		exten, want string
	}{
		{"100", "Response: Success\r\nActionID: s1\r\nMessage: Originate successfully queued\r\n\r\n"},
		{"999", "Response: Error\r\nActionID: s1\r\nMessage: Originate failed\r\n\r\n"},
	} {
		got, err := do(t, c, cl, "Action", "Originate", "ActionID", "s1", "Channel", "Local/"+tt.exten+"@lab",
			"Exten", tt.exten, "Async", "no")
		if err != nil {
			t.Fatal(err)
		}
		if concat(got) != tt.want {
			t.Errorf("sync Originate to %s = %q, want %q", tt.exten, concat(got), tt.want)
		}
	}
	for len(f.received) > 0 {
		if m := <-f.received; m.Action() == "Originate" && (m.Get("Async") != "true" || m.Count("Async") != 1) {
			t.Errorf("PBX got Originate with Async %q, want exactly one Async: true", m.Values("Async"))
		}
	}
}

// ModuleLoad may answer twice (AMI spec 3.6): the extra response reaches
// the client's queue as a reply.
func TestExtraResponseReachesClient(t *testing.T) {
	checkLeaks(t)
	f := newFake(t)
	p, c := startPool(t, testConfig(f.addr), Options{}, true)
	cl := p.NewClient()
	defer cl.Close()
	got, err := do(t, c, cl, "Action", "ModuleLoad", "ActionID", "ml")
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].Get("Message") != "Incomplete ModuleLoad action." {
		t.Fatalf("Do = %q, want the first response", concat(got))
	}
	ev := nextEvent(t, cl)
	if want := "Response: Error\r\nActionID: ml\r\nMessage: Need module name\r\n\r\n"; !ev.Reply || string(ev.Raw) != want {
		t.Errorf("queued %q (reply %v), want %q", ev.Raw, ev.Reply, want)
	}
}

func TestSessionActionsRefused(t *testing.T) {
	checkLeaks(t)
	f := newFake(t)
	f.received = make(chan rawman.Message, 16)
	_, c := startPool(t, testConfig(f.addr), Options{}, true)
	for len(f.received) > 0 {
		<-f.received // handshake
	}
	for _, name := range []string{"Login", "logoff", "CHALLENGE", "Events", "Filter", "WaitEvent"} {
		t.Run(name, func(t *testing.T) {
			called := false
			err := c.Do(context.Background(), nil, rawman.New("Action", name, "ActionID", "1"), func(rawman.Message) { called = true })
			if !errors.Is(err, ErrSessionAction) || called {
				t.Errorf("Do(%s) = %v (fn called %v), want ErrSessionAction and no reply", name, err, called)
			}
		})
	}
	if err := c.Do(context.Background(), nil, rawman.New("ActionID", "1"), nil); !errors.Is(err, ErrMissingAction) {
		t.Errorf("Do(no action) = %v, want ErrMissingAction", err)
	}
	if _, err := do(t, c, nil, "Action", "Ping"); err != nil {
		t.Fatal(err)
	}
	if m := <-f.received; m.Action() != "Ping" {
		t.Errorf("PBX received %q, want only the Ping", m)
	}
}

// When the PBX dies mid-action the pending Do fails at once with a
// Response: Error naming the PBX; clients hear the link go and come back.
func TestPBXKilledMidAction(t *testing.T) {
	checkLeaks(t)
	f := newFake(t)
	f.received = make(chan rawman.Message, 16)
	p, c := startPool(t, testConfig(f.addr), Options{}, true)
	cl := p.NewClient()
	defer cl.Close()
	if err := c.Subscribe(cl); err != nil {
		t.Fatal(err)
	}
	for len(f.received) > 0 {
		<-f.received
	}
	type result struct {
		got []rawman.Message
		err error
		at  time.Time
	}
	res := make(chan result, 1)
	go func() {
		got, err := do(t, c, cl, "Action", "Hold", "ActionID", "h-1")
		res <- result{got, err, time.Now()}
	}()
	<-f.received
	waitFor(t, "pending action", func() bool { return c.Stats().Pending == 1 })
	killed := time.Now()
	f.dropAll()
	r := <-res
	if d := r.at.Sub(killed); d > time.Second {
		t.Errorf("Do failed %v after the PBX died, want at once", d)
	}
	var le *LinkError
	if !errors.As(r.err, &le) || !le.Sent || le.PBX != "east" {
		t.Fatalf("Do = %v, want a *LinkError for a sent action on east", r.err)
	}
	want := "Response: Error\r\nActionID: h-1\r\nMessage: PBX east went away: action aborted\r\n\r\n"
	if concat(r.got) != want {
		t.Errorf("client got %q, want %q", concat(r.got), want)
	}
	if ev := nextLink(t, cl); ev.Link != LinkDown || ev.Err == nil {
		t.Errorf("first link change = %v (%v), want down with a cause", ev.Link, ev.Err)
	}
	if ev := nextLink(t, cl); ev.Link != LinkUp {
		t.Errorf("second link change = %v, want up", ev.Link)
	}
	if st := c.Stats(); st.Reconnects != 1 || st.State != StateUp || st.Pending != 0 {
		t.Errorf("Stats() = reconnects %d state %v pending %d, want 1, up, 0", st.Reconnects, st.State, st.Pending)
	}
}

func TestActionWhileDown(t *testing.T) {
	checkLeaks(t)
	f := newFake(t)
	_, c := startPool(t, testConfig(f.addr), Options{}, true)
	f.mu.Lock()
	ln := f.ln
	f.mu.Unlock()
	_ = ln.Close()
	f.dropAll()
	waitFor(t, "link down", func() bool { return c.State() != StateUp })
	got, err := do(t, c, nil, "Action", "Ping", "ActionID", "p")
	var le *LinkError
	if !errors.As(err, &le) || le.Sent || !errors.Is(err, ErrNotConnected) {
		t.Fatalf("Do while down = %v, want LinkError{Sent: false, ErrNotConnected}", err)
	}
	if want := "Response: Error\r\nActionID: p\r\nMessage: PBX east is not connected\r\n\r\n"; concat(got) != want {
		t.Errorf("client got %q, want %q", concat(got), want)
	}
}

func TestContextEndsPendingAction(t *testing.T) {
	checkLeaks(t)
	f := newFake(t)
	_, c := startPool(t, testConfig(f.addr), Options{}, true)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	err := c.Do(ctx, nil, rawman.New("Action", "Hold"), nil)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Do = %v, want DeadlineExceeded", err)
	}
	if n := c.Stats().Pending; n != 0 {
		t.Errorf("Pending = %d after ctx ended, want 0", n)
	}
}

func TestMaxPending(t *testing.T) {
	checkLeaks(t)
	f := newFake(t)
	cfg := testConfig(f.addr)
	cfg.MaxPending = 1
	_, c := startPool(t, cfg, Options{}, true)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Do(ctx, nil, rawman.New("Action", "Hold"), nil) }()
	waitFor(t, "pending action", func() bool { return c.Stats().Pending == 1 })
	if _, err := do(t, c, nil, "Action", "Ping"); !errors.Is(err, ErrTooManyPending) {
		t.Errorf("second Do = %v, want ErrTooManyPending", err)
	}
	cancel()
	<-done
}

func TestRestartReconnects(t *testing.T) {
	checkLeaks(t)
	f := newFake(t)
	p, c := startPool(t, testConfig(f.addr), Options{}, true)
	cl := p.NewClient()
	defer cl.Close()
	if err := c.Subscribe(cl); err != nil {
		t.Fatal(err)
	}
	before := f.accepts.Load()
	f.restart(300 * time.Millisecond)
	if ev := nextLink(t, cl); ev.Link != LinkDown {
		t.Fatalf("link change = %v, want down", ev.Link)
	}
	if ev := nextLink(t, cl); ev.Link != LinkUp {
		t.Fatalf("link change = %v, want up", ev.Link)
	}
	if _, err := do(t, c, cl, "Action", "Ping"); err != nil {
		t.Errorf("Ping after reconnect: %v", err)
	}
	st := c.Stats()
	// Full jitter can make single waits near zero, so the count varies;
	// the exact schedule is pinned by the synctest tests. Here it only has
	// to be backoff, not a storm: refused loopback dials without backoff
	// would number in the thousands over 300 ms.
	if st.Reconnects != 1 || st.ConnectFailures == 0 || st.ConnectFailures > 60 {
		t.Errorf("Stats() reconnects %d connect failures %d, want 1 and backoff-paced failures (at most 60 over 300 ms)",
			st.Reconnects, st.ConnectFailures)
	}
	if got := f.accepts.Load() - before; got != 1 {
		t.Errorf("PBX accepted %d connections after restart, want 1", got)
	}
}

// A PBX that stops answering is detected by the keepalive within
// PingInterval+PingTimeout even though its events still flow.
func TestKeepaliveDetectsStall(t *testing.T) {
	checkLeaks(t)
	f := newFake(t)
	cfg := testConfig(f.addr)
	cfg.PingInterval, cfg.PingTimeout = 100*time.Millisecond, 100*time.Millisecond
	p, c := startPool(t, cfg, Options{}, true)
	cl := p.NewClient()
	defer cl.Close()
	if err := c.Subscribe(cl); err != nil {
		t.Fatal(err)
	}
	time.Sleep(250 * time.Millisecond) // a few healthy pings
	if c.State() != StateUp {
		t.Fatalf("healthy link went %v: %v", c.State(), c.LastError())
	}
	f.stall(true)
	stalled := time.Now()
	ev := nextLink(t, cl)
	took := time.Since(stalled)
	f.stall(false)
	if ev.Link != LinkDown || !errors.Is(ev.Err, ErrPingTimeout) {
		t.Fatalf("link change = %v (%v), want down with ErrPingTimeout", ev.Link, ev.Err)
	}
	if limit := cfg.PingInterval + cfg.PingTimeout + 100*time.Millisecond; took > limit {
		t.Errorf("stall detected after %v, want within %v", took, limit)
	}
	if ev := nextLink(t, cl); ev.Link != LinkUp {
		t.Errorf("link change = %v, want up again", ev.Link)
	}
}

// A subscriber that does not read is disconnected and counted; a fast one
// receives every event in order.
func TestSlowSubscriberDropped(t *testing.T) {
	checkLeaks(t)
	f := newFake(t)
	cfg := testConfig(f.addr)
	cfg.SubscriberQueue = 16
	p, c := startPool(t, cfg, Options{}, true)
	fast, slow := p.NewClient(), p.NewClient()
	defer fast.Close()
	defer slow.Close()
	for _, cl := range []*Client{fast, slow} {
		if err := c.Subscribe(cl); err != nil {
			t.Fatal(err)
		}
	}
	const n = 2000
	var seen atomic.Int64
	got := make(chan error, 1)
	go func() {
		var buf []*Event
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		for seen.Load() < n {
			evs, err := fast.NextBatch(ctx, buf)
			if err != nil {
				got <- fmt.Errorf("after %d events: %w", seen.Load(), err)
				return
			}
			for _, ev := range evs {
				if ev.Link != LinkNone {
					continue
				}
				if want := fmt.Sprintf("ev-%d", seen.Load()); ev.Msg.Get("UserEvent") != want {
					got <- fmt.Errorf("event %d = %q, want %s", seen.Load(), ev.Msg.Get("UserEvent"), want)
					return
				}
				seen.Add(1)
			}
			buf = evs
		}
		got <- nil
	}()
	// Bursts of 10 events; the fast subscriber keeps up between bursts.
	var text strings.Builder
	for i := range n {
		fmt.Fprintf(&text, "Event: UserEvent\r\nPrivilege: user,all\r\nUserEvent: ev-%d\r\n\r\n", i)
		if i%10 == 9 {
			f.emit(text.String())
			text.Reset()
			waitFor(t, "fast subscriber", func() bool { return seen.Load() > int64(i) || fast.Err() != nil })
		}
	}
	if err := <-got; err != nil {
		t.Fatalf("fast subscriber: %v", err)
	}
	if !errors.Is(slow.Err(), ErrSlowConsumer) {
		t.Errorf("slow.Err() = %v, want ErrSlowConsumer", slow.Err())
	}
	select {
	case <-slow.Done():
	default:
		t.Error("slow.Done() not closed")
	}
	st := c.Stats()
	if st.SlowDisconnects != 1 || st.Dropped != 1 || st.Subscribers != 1 {
		t.Errorf("Stats() slow %d dropped %d subscribers %d, want 1, 1, 1", st.SlowDisconnects, st.Dropped, st.Subscribers)
	}
	if st.EventsIn != n || st.Delivered != n+16 {
		t.Errorf("Stats() events in %d delivered %d, want %d and %d", st.EventsIn, st.Delivered, n, n+16)
	}
	// The slow client can still read what was queued, then the cause.
	evs, err := slow.NextBatch(context.Background(), nil)
	if len(evs) != 16 || err != nil {
		t.Errorf("slow.NextBatch = %d events, %v; want the 16 queued", len(evs), err)
	}
	if _, err := slow.Next(context.Background()); !errors.Is(err, ErrSlowConsumer) {
		t.Errorf("slow.Next after drain = %v, want ErrSlowConsumer", err)
	}
	if cs := slow.Stats(); cs.Dropped != 1 || cs.Delivered != 16 {
		t.Errorf("slow.Stats() = %+v, want 16 delivered and 1 dropped", cs)
	}
}

// A refused login is retried with backoff, not in a storm.
func TestLoginFailureBacksOff(t *testing.T) {
	checkLeaks(t)
	f := newFake(t)
	cfg := testConfig(f.addr)
	cfg.Secret = "wrong"
	cfg.ReconnectMin, cfg.ReconnectMax = 20*time.Millisecond, 160*time.Millisecond
	maxJitter := func(n int64) int64 { return n - 1 }
	_, c := startPool(t, cfg, Options{Rand: maxJitter}, false)
	time.Sleep(time.Second)
	// Waits of ~20, 40, 80, 160, 160, ... ms: about 8 attempts in 1 s.
	if n := f.badLogins.Load(); n < 5 || n > 11 {
		t.Errorf("%d login attempts in 1 s, want 5-11", n)
	}
	var ae *ActionError
	if !errors.As(c.LastError(), &ae) || ae.Action != "Login" || ae.Message != "Authentication failed" {
		t.Errorf("LastError() = %v, want the Login ActionError", c.LastError())
	}
	if s := c.State(); s == StateUp {
		t.Errorf("State() = %v, want not up", s)
	}
	if st := c.Stats(); st.ConnectFailures < 5 {
		t.Errorf("ConnectFailures = %d, want every attempt counted", st.ConnectFailures)
	}
}

// Close logs off, fails pending actions, closes clients and leaves no
// goroutine behind.
func TestCloseLogsOff(t *testing.T) {
	checkLeaks(t)
	f := newFake(t)
	p, c := startPool(t, testConfig(f.addr), Options{}, true)
	cl := p.NewClient()
	if err := c.Subscribe(cl); err != nil {
		t.Fatal(err)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	_ = p.Close() // idempotent
	if n := f.logoffs.Load(); n != 1 {
		t.Errorf("PBX saw %d Logoffs, want 1", n)
	}
	if c.State() != StateClosed {
		t.Errorf("State() = %v, want closed", c.State())
	}
	if ev := nextLink(t, cl); ev.Link != LinkDown || !errors.Is(ev.Err, ErrClosed) {
		t.Errorf("link change = %v (%v), want down with ErrClosed", ev.Link, ev.Err)
	}
	if _, err := cl.Next(context.Background()); !errors.Is(err, ErrClosed) {
		t.Errorf("client Next after Close = %v, want ErrClosed", err)
	}
	if _, err := do(t, c, nil, "Action", "Ping"); !errors.Is(err, ErrClosed) {
		t.Errorf("Do after Close = %v, want ErrClosed", err)
	}
	if cl2 := p.NewClient(); !errors.Is(cl2.Err(), ErrClosed) {
		t.Errorf("NewClient after Close: Err() = %v, want ErrClosed", cl2.Err())
	}
	waitFor(t, "PBX session gone", func() bool { return f.sessionCount() == 0 })
}

func TestClosePendingAction(t *testing.T) {
	checkLeaks(t)
	f := newFake(t)
	p, c := startPool(t, testConfig(f.addr), Options{}, true)
	res := make(chan error, 1)
	go func() {
		_, err := do(t, c, nil, "Action", "Hold")
		res <- err
	}()
	waitFor(t, "pending action", func() bool { return c.Stats().Pending == 1 })
	_ = p.Close()
	if err := <-res; !errors.Is(err, ErrClosed) {
		t.Errorf("pending Do at Close = %v, want ErrClosed", err)
	}
}

func TestUserEventWithProxyActionIDIsBroadcast(t *testing.T) {
	checkLeaks(t)
	f := newFake(t)
	p, c := startPool(t, testConfig(f.addr), Options{}, true)
	cl := p.NewClient()
	defer cl.Close()
	if err := c.Subscribe(cl); err != nil {
		t.Fatal(err)
	}
	// Asterisk copies the sender's headers, ActionID included, into the
	// UserEvent it broadcasts.
	f.emit("Event: UserEvent\r\nPrivilege: user,all\r\nUserEvent: x\r\nActionID: " + c.idPrefix + "99\r\n\r\n")
	if ev := nextMsg(t, cl); ev.Msg.Event() != "UserEvent" || ev.Reply {
		t.Errorf("got %q, want the broadcast UserEvent", ev.Raw)
	}
	// A list item nobody waits for any more is not broadcast.
	f.emit("Event: CoreShowChannel\r\nActionID: " + c.idPrefix + "98\r\nChannel: x\r\n\r\n")
	f.emit(recs.newchannel)
	if ev := nextMsg(t, cl); ev.Msg.Event() != "Newchannel" {
		t.Errorf("got %q, want the stray list item dropped", ev.Raw)
	}
	if n := c.Stats().Strays; n != 1 {
		t.Errorf("Strays = %d, want 1", n)
	}
}

func TestUnsubscribe(t *testing.T) {
	checkLeaks(t)
	f := newFake(t)
	p, c := startPool(t, testConfig(f.addr), Options{}, true)
	cl := p.NewClient()
	defer cl.Close()
	if err := c.Subscribe(cl); err != nil {
		t.Fatal(err)
	}
	if err := c.Subscribe(cl); err != nil {
		t.Fatal(err)
	}
	if n := c.Stats().Subscribers; n != 1 {
		t.Errorf("Subscribers = %d after subscribing twice, want 1", n)
	}
	c.Unsubscribe(cl)
	if n := c.Stats().Subscribers; n != 0 {
		t.Errorf("Subscribers = %d after Unsubscribe, want 0", n)
	}
	cl.Close()
	if err := c.Subscribe(cl); !errors.Is(err, ErrClosed) {
		t.Errorf("Subscribe(closed client) = %v, want ErrClosed", err)
	}
}

// Subscribing, unsubscribing and closing clients while events flow leaves
// the subscriber list consistent (run with -race).
func TestSubscribeChurn(t *testing.T) {
	checkLeaks(t)
	f := newFake(t)
	cfg := testConfig(f.addr)
	cfg.SubscriberQueue = 8
	p, c := startPool(t, cfg, Options{}, true)
	stop := make(chan struct{})
	var emitter sync.WaitGroup
	emitter.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
				f.emit(recs.newchannel)
			}
		}
	})
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for i := range 50 {
				cl := p.NewClient()
				_ = c.Subscribe(cl)
				if i%2 == 0 {
					c.Unsubscribe(cl)
					_ = c.Subscribe(cl)
				}
				cl.Drain(nil)
				cl.Close()
			}
		})
	}
	wg.Wait()
	close(stop)
	emitter.Wait()
	if n := c.Stats().Subscribers; n != 0 {
		t.Errorf("Subscribers = %d after every client closed, want 0", n)
	}
}

// After many subscribes, unsubscribes (enough to compact the list) and
// resubscribes (some revived in place, some appended again), an event
// reaches exactly the clients subscribed at the time.
func TestSubscribeListExact(t *testing.T) {
	checkLeaks(t)
	f := newFake(t)
	p, c := startPool(t, testConfig(f.addr), Options{}, true)
	const n = 300
	cls := make([]*Client, n)
	want := make([]bool, n)
	for i := range cls {
		cls[i] = p.NewClient()
		defer cls[i].Close()
		if err := c.Subscribe(cls[i]); err != nil {
			t.Fatal(err)
		}
		want[i] = true
	}
	for i := range cls {
		if i%3 != 0 {
			c.Unsubscribe(cls[i])
			want[i] = false
		}
	}
	for i := range cls {
		if i%5 == 1 || i%7 == 2 {
			if err := c.Subscribe(cls[i]); err != nil {
				t.Fatal(err)
			}
			want[i] = true
		}
	}
	c.Unsubscribe(cls[0])
	want[0] = false
	live := 0
	for _, w := range want {
		if w {
			live++
		}
	}
	if got := c.Stats().Subscribers; got != live {
		t.Errorf("Subscribers = %d, want %d", got, live)
	}
	f.emit(recs.newchannel)
	f.emit(recs.newchannel)
	for i, cl := range cls {
		if want[i] {
			nextMsg(t, cl)
			nextMsg(t, cl) // the second event: the first publish is over
		}
	}
	for i, cl := range cls {
		if q := cl.Stats().Queued; q != 0 {
			t.Errorf("client %d (subscribed %v): %d events queued, want 0", i, want[i], q)
		}
	}
}

// Memo computes once per key, remembers up to maxMemo keys, and stays
// consistent under concurrent use (run with -race).
func TestEventMemo(t *testing.T) {
	ev := &Event{PBX: "east"}
	var calls atomic.Int64
	type key struct{ n int }
	f := func(v bool) func() bool {
		return func() bool { calls.Add(1); return v }
	}
	if !ev.Memo(key{1}, f(true)) || ev.Memo(key{2}, f(false)) {
		t.Fatal("Memo did not return f's result")
	}
	if !ev.Memo(key{1}, f(false)) || ev.Memo(key{2}, f(true)) {
		t.Error("Memo did not remember the first results")
	}
	if n := calls.Load(); n != 2 {
		t.Errorf("f ran %d times for 2 keys, want 2", n)
	}
	for i := 3; i <= maxMemo+5; i++ {
		ev.Memo(key{i}, f(i%2 == 0))
	}
	calls.Store(0)
	if ev.Memo(key{maxMemo + 5}, f(true)) != true || calls.Load() != 1 {
		t.Errorf("past maxMemo: calls %d, want 1 (computed, not remembered)", calls.Load())
	}
	ev = &Event{PBX: "east"}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 200 {
				k := key{(i + g) % 6}
				if got, want := ev.Memo(k, f(k.n%3 == 0)), k.n%3 == 0; got != want {
					t.Errorf("Memo(%v) = %v, want %v", k, got, want)
				}
			}
		})
	}
	wg.Wait()
}
