package clientstests

import (
	"context"
	"crypto/md5"
	"encoding/hex"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/heltonmarx/goami/ami"
)

// TestGoami drives github.com/heltonmarx/goami. The library is strictly
// synchronous: each call writes an action and takes the NEXT message read
// as its reply, so any event that arrives before a reply (FullyBooted
// right after an "Events: On" login, call traffic…) is taken for the reply
// and breaks it. The action session therefore logs in with "Events: Off",
// as the library's own README does. Events are received the only way the
// library allows, on a second session that logs in with events on and
// then only reads (ami.Events) and never sends.
//
// Being synchronous, the library originates synchronously (no Async): the
// reply comes once the call is answered, as Asterisk does and as the proxy
// emulates. The call's Newchannel is then expected on the event session.
// (An async Originate's OriginateResponse would not do: Asterisk
// broadcasts it to every session, but amiproxy routes it only to the
// session that asked, and an "Events: Off" session receives no events.)
func TestGoami(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), libraryTimeout)
	defer cancel()

	var (
		actions, events *ami.Socket
		evs             = newRecorder[ami.Response]()
		originated      ami.Response
	)
	defer func() {
		for _, s := range []*ami.Socket{actions, events} {
			if s != nil {
				_ = s.Close(ctx)
			}
		}
	}()
	id := func() string {
		u, err := ami.GetUUID()
		if err != nil {
			t.Fatal(err)
		}
		return u
	}
	// fctx bounds one flow: the library waits for a reply as long as its
	// context lets it.
	fctx := func(t *testing.T) context.Context {
		c, cancel := context.WithTimeout(ctx, flowTimeout)
		t.Cleanup(cancel)
		return c
	}
	dial := func(t *testing.T, eventsMode string) *ami.Socket {
		t.Helper()
		s, err := ami.NewSocket(ctx, endpoint.addr)
		if err != nil {
			t.Fatal(err)
		}
		if ok, err := ami.Connect(fctx(t), s); !ok {
			_ = s.Close(ctx)
			t.Fatalf("banner: %v", err)
		}
		if err := ami.Login(fctx(t), s, endpoint.user, endpoint.secret, eventsMode, id()); err != nil {
			_ = s.Close(ctx)
			t.Fatalf("login (Events: %s): %v", eventsMode, err)
		}
		return s
	}

	runFlows(t, []flow{
		{name: "login", required: true, run: func(t *testing.T) {
			actions = dial(t, "Off")
			events = dial(t, "On")
			go func() {
				for {
					ev, err := ami.Events(ctx, events)
					if err != nil {
						return
					}
					evs.add(ev)
				}
			}()
		}},
		{name: "ping", run: func(t *testing.T) {
			if err := ami.Ping(fctx(t), actions, id()); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "originate", run: func(t *testing.T) {
			aid := id()
			r, err := ami.Originate(fctx(t), actions, aid, ami.OriginateData{
				Channel:     originateChannel,
				Application: originateApp,
				Data:        originateData,
			})
			if err != nil {
				t.Fatal(err)
			}
			if r.Get("Response") != "Success" || r.Get("ActionID") != aid || r.Get("Message") != "Originate successfully queued" {
				t.Fatalf("Originate reply %v", r)
			}
			// The answered call's first Local channel, seen on the event
			// session; its name is what the list must show.
			ev, err := evs.wait(ctx, "Newchannel of the originated call on the event session", func(m ami.Response) bool {
				return m.Get("Event") == "Newchannel" && isOurChannel(m.Get("Channel")) && strings.HasSuffix(m.Get("Channel"), ";1")
			})
			if err != nil {
				t.Fatal(err)
			}
			originated = ev
		}},
		{name: "event", run: func(t *testing.T) {
			if originated == nil {
				t.Fatal("no originated call to follow")
			}
			// The second leg of the same Local channel pair follows.
			ch := strings.TrimSuffix(originated.Get("Channel"), ";1") + ";2"
			if _, err := evs.wait(ctx, "Newchannel for "+ch, func(m ami.Response) bool {
				return m.Get("Event") == "Newchannel" && m.Get("Channel") == ch
			}); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "list", run: func(t *testing.T) {
			// CoreShowChannels collects the CoreShowChannel events up to
			// CoreShowChannelsComplete, which it drops (with ListItems).
			items, err := ami.CoreShowChannels(fctx(t), actions, id())
			if err != nil {
				t.Fatal(err)
			}
			for _, it := range items {
				if it.Get("Event") != "CoreShowChannel" || it.Get("Channel") == "" {
					t.Fatalf("list item %v", it)
				}
			}
			if originated != nil {
				assertListed(t, originated.Get("Channel"), len(items), func(i int) string { return items[i].Get("Channel") })
			}
		}},
		{name: "logoff", run: func(t *testing.T) {
			// Recv answers io.EOF both when the server closes and when c
			// ends: tell them apart by c.
			c := fctx(t)
			err := ami.Logoff(c, actions, id())
			switch {
			case errors.Is(err, io.EOF) && c.Err() == nil:
				// Asterisk closes right after Goodbye, and Socket.Recv selects
				// at random between its line channel and its error channel
				// once both are ready, so Logoff may see the close before the
				// Goodbye lines it already read. A library race, seen
				// against Asterisk too: what remains to check is the close.
				t.Log("goami: Logoff saw the close before the Goodbye (library race)")
				return
			case err != nil:
				t.Fatal(err)
			}
			rest, err := actions.Recv(c)
			if c.Err() != nil {
				t.Fatalf("the server did not close the connection after Goodbye within %v", flowTimeout)
			}
			if err == nil || strings.TrimSpace(rest) != "" {
				t.Fatalf("after Goodbye the connection should close; read %q, %v", rest, err)
			}
		}},
		{name: "md5", run: func(t *testing.T) {
			// Challenge is a helper of the library; Login has no AuthType,
			// so the MD5 Login goes through the library's raw Send/Recv.
			s, err := ami.NewSocket(ctx, endpoint.addr)
			if err != nil {
				t.Fatal(err)
			}
			defer func() { _ = s.Close(ctx) }()
			if ok, err := ami.Connect(fctx(t), s); !ok {
				t.Fatalf("banner: %v", err)
			}
			ch, err := ami.Challenge(fctx(t), s, id())
			if err != nil || ch.Get("Response") != "Success" || ch.Get("Challenge") == "" {
				t.Fatalf("Challenge: %v %v", ch, err)
			}
			sum := md5.Sum([]byte(ch.Get("Challenge") + endpoint.secret))
			if err := s.Send("Action: Login\r\nActionID: " + id() + "\r\nAuthType: MD5\r\nUsername: " + endpoint.user +
				"\r\nKey: " + hex.EncodeToString(sum[:]) + "\r\nEvents: Off\r\n\r\n"); err != nil {
				t.Fatal(err)
			}
			var reply strings.Builder
			c := fctx(t)
			for !strings.HasSuffix(reply.String(), "\r\n\r\n") {
				line, err := s.Recv(c)
				if err != nil {
					t.Fatalf("MD5 Login reply: %v (read %q)", err, reply.String())
				}
				reply.WriteString(line)
			}
			if !strings.Contains(reply.String(), "Response: Success") {
				t.Fatalf("MD5 Login refused: %q", reply.String())
			}
			if err := ami.Ping(fctx(t), s, id()); err != nil {
				t.Fatalf("Ping after MD5 Login: %v", err)
			}
		}},
	})
}
