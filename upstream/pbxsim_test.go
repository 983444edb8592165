package upstream

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/amiproxy/amiproxy/internal/pbxsim"
	"github.com/amiproxy/amiproxy/rawman"
)

// Integration tests against the simulated Asterisk (internal/pbxsim), the
// sanctioned faithful stand-in for a real PBX.

func startSim(t testing.TB, cfg pbxsim.Config) (*pbxsim.Server, string) {
	t.Helper()
	if cfg.LoginFailDelay == 0 {
		cfg.LoginFailDelay = -1
	}
	if cfg.TimeScale == 0 {
		cfg.TimeScale = 0.01
	}
	srv, err := pbxsim.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	addr, err := srv.Start("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	return srv, addr.String()
}

func TestPbxsimLogin(t *testing.T) {
	checkLeaks(t)
	_, addr := startSim(t, pbxsim.Config{AsteriskVersion: "20.21.0", Banner: "9.0.0"})
	for _, md5 := range []bool{false, true} {
		t.Run(fmt.Sprintf("md5=%v", md5), func(t *testing.T) {
			cfg := testConfig(addr)
			cfg.AuthMD5 = md5
			_, c := startPool(t, cfg, Options{}, true)
			if ast, ami := c.Versions(); ast != "20.21.0" || ami != "9.0.0" {
				t.Errorf("Versions() = %q, %q, want 20.21.0, 9.0.0", ast, ami)
			}
		})
	}
}

// Two clients both using ActionID "0" run list actions (DBGet) and Pings
// concurrently; each gets exactly its own values.
func TestPbxsimActionIDIsolation(t *testing.T) {
	checkLeaks(t)
	_, addr := startSim(t, pbxsim.Config{})
	p, c := startPool(t, testConfig(addr), Options{}, true)
	const n = 150
	clients := map[string]*Client{"a": p.NewClient(), "b": p.NewClient()}
	for who, cl := range clients {
		defer cl.Close()
		for i := range n {
			if _, err := do(t, c, cl, "Action", "DBPut", "ActionID", "0", "Family", who, "Key", fmt.Sprint(i), "Val", fmt.Sprintf("%s-%d", who, i)); err != nil {
				t.Fatal(err)
			}
		}
	}
	var wg sync.WaitGroup
	errs := make(chan error, 4*n)
	for who, cl := range clients {
		for i := range n {
			wg.Go(func() {
				got, err := do(t, c, cl, "Action", "DBGet", "ActionID", "0", "Family", who, "Key", fmt.Sprint(i))
				if err != nil {
					errs <- err
					return
				}
				if len(got) != 3 || !got[0].IsListStart() || !got[2].IsListComplete() ||
					got[1].Get("Val") != fmt.Sprintf("%s-%d", who, i) {
					errs <- fmt.Errorf("DBGet %s/%d = %q", who, i, concat(got))
				}
				for _, m := range got {
					if m.ActionID() != "0" || m.Count("ActionID") != 1 {
						errs <- fmt.Errorf("DBGet %s/%d: message with ActionID %q", who, i, m.Values("ActionID"))
					}
				}
			})
			wg.Go(func() {
				got, err := do(t, c, cl, "Action", "Ping", "ActionID", "0")
				if err != nil || len(got) != 1 || got[0].ActionID() != "0" || got[0].Get("Ping") != "Pong" {
					errs <- fmt.Errorf("Ping = %q, %v", concat(got), err)
				}
			})
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if st := c.Stats(); st.Strays != 0 || st.Pending != 0 {
		t.Errorf("Stats() strays %d pending %d, want 0, 0", st.Strays, st.Pending)
	}
}

// Calls, lists and Originate against the simulated lab dialplan.
func TestPbxsimListsAndOriginate(t *testing.T) {
	checkLeaks(t)
	_, addr := startSim(t, pbxsim.Config{})
	p, c := startPool(t, testConfig(addr), Options{}, true)
	a, b := p.NewClient(), p.NewClient()
	defer a.Close()
	defer b.Close()
	for _, cl := range []*Client{a, b} {
		if err := c.Subscribe(cl); err != nil {
			t.Fatal(err)
		}
	}
	// Local/200@lab waits 30 simulated seconds (0.3 s here).
	got, err := do(t, c, a, "Action", "Originate", "ActionID", "orig-1", "Channel", "Local/200@lab",
		"Application", "Wait", "Data", "30", "Async", "true")
	if err != nil || len(got) != 1 || got[0].Get("Message") != "Originate successfully queued" || got[0].ActionID() != "orig-1" {
		t.Fatalf("Originate = %q, %v", concat(got), err)
	}
	// a gets its OriginateResponse with its ActionID; b never does.
	for {
		ev := nextMsg(t, a)
		if ev.Msg.Event() == "OriginateResponse" {
			if !ev.Reply || ev.Msg.ActionID() != "orig-1" || ev.Msg.Get("Response") != "Success" {
				t.Errorf("a's OriginateResponse = %q (reply %v)", ev.Raw, ev.Reply)
			}
			break
		}
	}
	t.Run("list with items", func(t *testing.T) {
		got, err := do(t, c, a, "Action", "CoreShowChannels", "ActionID", "csc-1")
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 4 || !got[3].IsListComplete() || got[3].Get("ListItems") != "2" {
			t.Fatalf("CoreShowChannels = %q, want start, 2 items, complete", concat(got))
		}
		for _, m := range got {
			if m.ActionID() != "csc-1" {
				t.Errorf("message %q has ActionID %q, want csc-1", m.String(), m.ActionID())
			}
		}
	})
	t.Run("list without ActionID", func(t *testing.T) {
		got, err := do(t, c, a, "Action", "CoreShowChannels")
		if err != nil || len(got) != 4 {
			t.Fatalf("CoreShowChannels = %d messages, %v", len(got), err)
		}
		for _, m := range got {
			if _, ok := m.Lookup("ActionID"); ok {
				t.Errorf("message %q carries an ActionID; the client sent none", m.String())
			}
		}
	})
	t.Run("hangup by regex, then an empty list", func(t *testing.T) {
		got, err := do(t, c, a, "Action", "Hangup", "ActionID", "hup-1", "Channel", `/^Local\/200@lab-.*;1$/`)
		if err != nil || len(got) < 2 || !got[len(got)-1].IsListComplete() {
			t.Fatalf("Hangup = %q, %v", concat(got), err)
		}
		waitFor(t, "calls gone", func() bool {
			got, err := do(t, c, a, "Action", "CoreShowChannels", "ActionID", "csc-2")
			return err == nil && len(got) == 2 && got[1].Get("ListItems") == "0" && got[1].ActionID() == "csc-2"
		})
	})
	t.Run("sync Originate does not block the session", func(t *testing.T) {
		done := make(chan []rawman.Message, 1)
		go func() {
			got, _ := do(t, c, a, "Action", "Originate", "ActionID", "sync", "Channel", "Local/600@lab",
				"Application", "Wait", "Data", "1", "Timeout", "20000") // 200 ms at TimeScale 0.01
			done <- got
		}()
		// While the sync Originate waits for its (unanswered) call, other
		// actions on the shared session are answered.
		waitFor(t, "originate pending", func() bool { return c.Stats().Pending == 1 })
		if _, err := do(t, c, b, "Action", "Ping"); err != nil {
			t.Errorf("Ping during sync Originate: %v", err)
		}
		select {
		case got := <-done:
			t.Fatalf("sync Originate answered before the Ping: %q", concat(got))
		default:
		}
		got := <-done
		if len(got) != 1 || got[0].Response() != "Error" || got[0].Get("Message") != "Originate failed" || got[0].ActionID() != "sync" {
			t.Errorf("sync Originate to a ringing-only extension = %q, want Originate failed", concat(got))
		}
	})
	for _, ev := range b.Drain(nil) {
		if ev.Reply || ev.Msg.Event() == "OriginateResponse" {
			t.Errorf("b received %q, which belongs to a", ev.Raw)
		}
	}
}

func TestPbxsimKilledMidAction(t *testing.T) {
	checkLeaks(t)
	srv, addr := startSim(t, pbxsim.Config{})
	p, c := startPool(t, testConfig(addr), Options{}, true)
	cl := p.NewClient()
	defer cl.Close()
	if err := c.Subscribe(cl); err != nil {
		t.Fatal(err)
	}
	srv.SetReplyDelay(10 * time.Second)
	res := make(chan error, 1)
	var got []rawman.Message
	go func() {
		var err error
		got, err = do(t, c, cl, "Action", "Ping", "ActionID", "p-1")
		res <- err
	}()
	waitFor(t, "pending action", func() bool { return c.Stats().Pending == 1 })
	srv.SetReplyDelay(0)
	killed := time.Now()
	srv.DropAll()
	err := <-res
	if d := time.Since(killed); d > time.Second {
		t.Errorf("Do failed %v after the drop, want at once", d)
	}
	var le *LinkError
	if !errors.As(err, &le) || !le.Sent {
		t.Fatalf("Do = %v, want a LinkError", err)
	}
	if want := "Response: Error\r\nActionID: p-1\r\nMessage: PBX east went away: action aborted\r\n\r\n"; concat(got) != want {
		t.Errorf("client got %q, want %q", concat(got), want)
	}
	if ev := nextLink(t, cl); ev.Link != LinkDown {
		t.Errorf("link change = %v, want down", ev.Link)
	}
	if ev := nextLink(t, cl); ev.Link != LinkUp {
		t.Errorf("link change = %v, want up", ev.Link)
	}
}

func TestPbxsimRestartAndStall(t *testing.T) {
	checkLeaks(t)
	srv, addr := startSim(t, pbxsim.Config{})
	cfg := testConfig(addr)
	cfg.PingInterval, cfg.PingTimeout = 100*time.Millisecond, 100*time.Millisecond
	p, c := startPool(t, cfg, Options{}, true)
	cl := p.NewClient()
	defer cl.Close()
	if err := c.Subscribe(cl); err != nil {
		t.Fatal(err)
	}
	t.Run("restart", func(t *testing.T) {
		if err := srv.Restart(300 * time.Millisecond); err != nil {
			t.Fatal(err)
		}
		if ev := nextLink(t, cl); ev.Link != LinkDown {
			t.Fatalf("link change = %v, want down", ev.Link)
		}
		if ev := nextLink(t, cl); ev.Link != LinkUp {
			t.Fatalf("link change = %v, want up", ev.Link)
		}
		if st := c.Stats(); st.Reconnects != 1 || st.State != StateUp {
			t.Errorf("Stats() reconnects %d state %v, want 1, up", st.Reconnects, st.State)
		}
	})
	t.Run("stall", func(t *testing.T) {
		srv.Stall(true)
		stalled := time.Now()
		ev := nextLink(t, cl)
		took := time.Since(stalled)
		srv.Stall(false)
		if ev.Link != LinkDown || !errors.Is(ev.Err, ErrPingTimeout) {
			t.Fatalf("link change = %v (%v), want down by keepalive", ev.Link, ev.Err)
		}
		if limit := cfg.PingInterval + cfg.PingTimeout + 100*time.Millisecond; took > limit {
			t.Errorf("stall detected after %v, want within %v", took, limit)
		}
		if ev := nextLink(t, cl); ev.Link != LinkUp {
			t.Errorf("link change = %v, want up", ev.Link)
		}
	})
}

func TestPbxsimSlowSubscriber(t *testing.T) {
	checkLeaks(t)
	srv, addr := startSim(t, pbxsim.Config{})
	cfg := testConfig(addr)
	cfg.SubscriberQueue = 64
	p, c := startPool(t, cfg, Options{}, true)
	fast, slow := p.NewClient(), p.NewClient()
	defer fast.Close()
	defer slow.Close()
	for _, cl := range []*Client{fast, slow} {
		if err := c.Subscribe(cl); err != nil {
			t.Fatal(err)
		}
	}
	const n = 1000
	var seen atomic.Int64
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		var buf []*Event
		for seen.Load() < n {
			evs, err := fast.NextBatch(ctx, buf)
			if err != nil {
				done <- err
				return
			}
			for _, ev := range evs {
				if ev.Link == LinkNone {
					if want := fmt.Sprint(seen.Load()); ev.Msg.Get("Seq") != want {
						done <- fmt.Errorf("event Seq %q, want %s", ev.Msg.Get("Seq"), want)
						return
					}
					seen.Add(1)
				}
			}
			buf = evs
		}
		done <- nil
	}()
	for i := range n {
		srv.Emit(rawman.New("Event", "UserEvent", "Privilege", "user,all", "UserEvent", "load", "Seq", fmt.Sprint(i)))
		if i%20 == 19 {
			waitFor(t, "fast subscriber", func() bool { return seen.Load() > int64(i) || fast.Err() != nil })
		}
	}
	if err := <-done; err != nil {
		t.Fatalf("fast subscriber: %v", err)
	}
	if !errors.Is(slow.Err(), ErrSlowConsumer) {
		t.Errorf("slow.Err() = %v, want ErrSlowConsumer", slow.Err())
	}
	if st := c.Stats(); st.SlowDisconnects != 1 || st.Dropped != 1 {
		t.Errorf("Stats() slow %d dropped %d, want 1, 1", st.SlowDisconnects, st.Dropped)
	}
}

func TestPbxsimLoginFailureBacksOff(t *testing.T) {
	checkLeaks(t)
	_, addr := startSim(t, pbxsim.Config{})
	cfg := testConfig(addr)
	cfg.Secret = "wrong"
	cfg.ReconnectMin, cfg.ReconnectMax = 20*time.Millisecond, 160*time.Millisecond
	var dials atomic.Int32
	var d net.Dialer
	dial := func(ctx context.Context, network, address string) (net.Conn, error) {
		dials.Add(1)
		return d.DialContext(ctx, network, address)
	}
	_, c := startPool(t, cfg, Options{Rand: maxJitter, Dial: dial}, false)
	time.Sleep(time.Second)
	if n := dials.Load(); n < 5 || n > 11 {
		t.Errorf("%d connection attempts in 1 s, want 5-11", n)
	}
	var ae *ActionError
	if !errors.As(c.LastError(), &ae) || ae.Message != "Authentication failed" {
		t.Errorf("LastError() = %v, want Authentication failed", c.LastError())
	}
}

func TestPbxsimClose(t *testing.T) {
	checkLeaks(t)
	srv, addr := startSim(t, pbxsim.Config{})
	p, _ := startPool(t, testConfig(addr), Options{}, true)
	if n := srv.Sessions(); n != 1 {
		t.Fatalf("Sessions() = %d, want 1", n)
	}
	_ = p.Close()
	waitFor(t, "session gone", func() bool { return srv.Sessions() == 0 })
}

// A scaled-down mass restart: 200 PBXs go down for 1 s at once. With
// ReconnectMax 1 s every link is back within about 2 s, each PBX sees a
// handful of connection attempts (full jitter spreads them), not a storm.
// The production target (200 PBXs back within 30 s) follows from the
// default ReconnectMax of 15 s.
func TestPbxsimMassRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("starts 200 simulated PBXs")
	}
	checkLeaks(t)
	const n = 200
	srvs := make([]*pbxsim.Server, n)
	cfgs := make([]Config, n)
	for i := range n {
		var addr string
		srvs[i], addr = startSim(t, pbxsim.Config{})
		cfgs[i] = testConfig(addr)
		cfgs[i].Name = fmt.Sprintf("pbx%03d", i)
		cfgs[i].ReconnectMin, cfgs[i].ReconnectMax = 50*time.Millisecond, time.Second
	}
	var dials atomic.Int64
	var d net.Dialer
	dial := func(ctx context.Context, network, address string) (net.Conn, error) {
		dials.Add(1)
		return d.DialContext(ctx, network, address)
	}
	p, err := NewPool(cfgs, Options{Dial: dial})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	allUp := func(reconnects uint64) bool {
		for _, st := range p.Stats() {
			if st.State != StateUp || st.Reconnects != reconnects {
				return false
			}
		}
		return true
	}
	waitFor(t, "all links up", func() bool { return allUp(0) })
	before := dials.Load()
	start := time.Now()
	var wg sync.WaitGroup
	for _, srv := range srvs {
		wg.Go(func() {
			if err := srv.Restart(time.Second); err != nil {
				t.Error(err)
			}
		})
	}
	waitFor(t, "all links back", func() bool { return allUp(1) })
	took := time.Since(start)
	wg.Wait()
	attempts := dials.Load() - before
	t.Logf("%d PBXs back %v after the restart began, %d connection attempts (%.1f per PBX)",
		n, took.Round(time.Millisecond), attempts, float64(attempts)/n)
	if took > 3500*time.Millisecond {
		t.Errorf("links back after %v, want within down (1 s) + ReconnectMax (1 s) + slack", took)
	}
	if attempts > 12*n {
		t.Errorf("%d connection attempts for %d PBXs: a reconnect storm", attempts, n)
	}
}
