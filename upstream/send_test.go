package upstream

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/amiproxy/amiproxy/internal/pbxsim"
	"github.com/amiproxy/amiproxy/rawman"
)

// Send pipelines a client's actions: a DBPut and the DBGet of the same
// key in one batch read back the value (the PBX ran them in order), every
// reply has its own ActionID, and an action that cannot be sent reports
// its error at its own Await without disturbing the others.
func TestPbxsimSendPipelined(t *testing.T) {
	checkLeaks(t)
	_, addr := startSim(t, pbxsim.Config{})
	p, c := startPool(t, testConfig(addr), Options{}, true)
	cl := p.NewClient()
	defer cl.Close()
	var actions []rawman.Message
	for i := range 20 {
		actions = append(actions,
			rawman.New("Action", "DBPut", "ActionID", fmt.Sprint("put", i), "Family", "send", "Key", fmt.Sprint(i), "Val", fmt.Sprint("v", i)),
			rawman.New("Action", "DBGet", "ActionID", fmt.Sprint("get", i), "Family", "send", "Key", fmt.Sprint(i)))
	}
	actions = append(actions, rawman.New("Action", "Events", "ActionID", "bad"), rawman.New("Action", "Ping"))
	ctx := context.Background()
	ps := c.Send(ctx, cl, actions)
	if len(ps) != len(actions) {
		t.Fatalf("Send returned %d pendings for %d actions", len(ps), len(actions))
	}
	for i := range ps {
		var got []rawman.Message
		err := ps[i].Await(ctx, func(m rawman.Message) { got = append(got, m) })
		switch {
		case i == len(ps)-2:
			if !errors.Is(err, ErrSessionAction) || len(got) != 0 {
				t.Errorf("Events in a Send: %v, %d messages; want ErrSessionAction and none", err, len(got))
			}
		case i == len(ps)-1:
			if err != nil || len(got) != 1 || got[0].Get("Ping") != "Pong" || got[0].Count("ActionID") != 0 {
				t.Errorf("Ping = %q, %v", concat(got), err)
			}
		case i%2 == 0:
			if err != nil || len(got) != 1 || got[0].Response() != "Success" || got[0].ActionID() != fmt.Sprint("put", i/2) {
				t.Errorf("DBPut %d = %q, %v", i/2, concat(got), err)
			}
		default:
			if err != nil || len(got) != 3 || got[1].Get("Val") != fmt.Sprint("v", i/2) {
				t.Errorf("DBGet %d = %q, %v", i/2, concat(got), err)
			}
			for _, m := range got {
				if m.ActionID() != fmt.Sprint("get", i/2) {
					t.Errorf("DBGet %d: ActionID %q", i/2, m.ActionID())
				}
			}
		}
	}
	if st := c.Stats(); st.Strays != 0 || st.Pending != 0 {
		t.Errorf("Stats() strays %d pending %d, want 0, 0", st.Strays, st.Pending)
	}
	// A Send whose ctx has ended writes nothing and fails every action.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	ps = c.Send(cctx, cl, actions[:2])
	for i := range ps {
		if err := ps[i].Await(ctx, nil); !errors.Is(err, context.Canceled) {
			t.Errorf("Await after a cancelled Send = %v, want context.Canceled", err)
		}
	}
	if st := c.Stats(); st.Pending != 0 {
		t.Errorf("Stats().Pending = %d after a cancelled Send, want 0", st.Pending)
	}
}

// DrainUpTo takes at most its max, and OnClose reports an overflow once,
// with ErrSlowConsumer, on the delivering goroutine.
func TestPbxsimDrainUpToAndOnClose(t *testing.T) {
	checkLeaks(t)
	sim, addr := startSim(t, pbxsim.Config{})
	cfg := testConfig(addr)
	cfg.SubscriberQueue = 5
	p, c := startPool(t, cfg, Options{}, true)
	cl := p.NewClient()
	closed := make(chan error, 2)
	cl.OnClose(func(cause error) { closed <- cause })
	if err := c.Subscribe(cl); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		sim.Emit(rawman.New("Event", "UserEvent", "Privilege", "user,all", "UserEvent", fmt.Sprint("e", i)))
	}
	waitFor(t, "3 queued events", func() bool { return cl.Stats().Queued == 3 })
	if evs := cl.DrainUpTo(nil, 0); len(evs) != 0 {
		t.Errorf("DrainUpTo(0) = %d events", len(evs))
	}
	evs := cl.DrainUpTo(nil, 2)
	if len(evs) != 2 || evs[0].Msg.Get("UserEvent") != "e0" || evs[1].Msg.Get("UserEvent") != "e1" {
		t.Fatalf("DrainUpTo(2) = %d events", len(evs))
	}
	if q := cl.Stats().Queued; q != 1 {
		t.Errorf("Queued = %d after DrainUpTo(2), want 1", q)
	}
	for i := range 6 {
		sim.Emit(rawman.New("Event", "UserEvent", "Privilege", "user,all", "UserEvent", fmt.Sprint("f", i)))
	}
	if cause := <-closed; !errors.Is(cause, ErrSlowConsumer) {
		t.Errorf("OnClose cause = %v, want ErrSlowConsumer", cause)
	}
	cl.Close()
	select {
	case cause := <-closed:
		t.Errorf("OnClose called again with %v", cause)
	default:
	}
}
