package clientstests

import (
	"context"
	"errors"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/staskobzar/goami2"
)

// TestGoami2 drives github.com/staskobzar/goami2. Its Login sends no
// ActionID and takes ONE conn.Read as the whole Login reply: an endpoint
// that splits the reply over two TCP segments makes the login fail with
// "unexpected end of input", which is what the login flow asserts. The
// library has no request/response or list helpers: everything goes
// through Send and AllMessages, correlated here by ActionID. It drops a
// message it cannot hand over within 10 ms, so a goroutine drains
// AllMessages and Err all the time.
func TestGoami2(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), libraryTimeout)
	defer cancel()

	var (
		client *goami2.Client
		msgs   = newRecorder[*goami2.Message]()
		errs   = newRecorder[error]()
	)
	defer func() {
		if client != nil {
			client.Close()
		}
	}()

	send := func(t *testing.T, action *goami2.Message) string {
		t.Helper()
		action.AddActionID()
		if err := client.MustSend(action.Byte()); err != nil {
			t.Fatalf("send %s: %v", action.Field("Action"), err)
		}
		return action.ActionID()
	}
	response := func(t *testing.T, id string) *goami2.Message {
		t.Helper()
		m, err := msgs.wait(ctx, "response with ActionID "+id, func(m *goami2.Message) bool {
			return m.IsResponse() && m.ActionID() == id
		})
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	var originated *goami2.Message

	runFlows(t, []flow{
		{name: "login", required: true, run: func(t *testing.T) {
			conn, err := net.DialTimeout("tcp", endpoint.addr, 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			client, err = goami2.NewClientWithContext(ctx, conn, endpoint.user, endpoint.secret)
			if err != nil {
				conn.Close()
				hint := ""
				if strings.Contains(err.Error(), "login response") {
					hint = " (goami2 takes one Read as the whole Login reply: the endpoint must send it in one TCP segment)"
				}
				t.Fatalf("login: %v%s", err, hint)
			}
			all, errc := client.AllMessages(), client.Err()
			go func() {
				for m := range all {
					msgs.add(m)
				}
			}()
			go func() {
				for err := range errc {
					errs.add(err)
				}
			}()
		}},
		{name: "ping", run: func(t *testing.T) {
			r := response(t, send(t, goami2.NewAction("Ping")))
			if !r.IsSuccess() || r.Field("Ping") != "Pong" {
				t.Fatalf("Ping reply %q", r.String())
			}
		}},
		{name: "originate", run: func(t *testing.T) {
			a := goami2.NewAction("Originate")
			a.AddField("Channel", originateChannel)
			a.AddField("Application", originateApp)
			a.AddField("Data", originateData)
			a.AddField("Async", "true")
			id := send(t, a)
			if r := response(t, id); !r.IsSuccess() {
				t.Fatalf("Originate reply %q", r.String())
			}
			ev, err := msgs.wait(ctx, "OriginateResponse with ActionID "+id, func(m *goami2.Message) bool {
				return m.Field("Event") == "OriginateResponse" && m.ActionID() == id
			})
			if err != nil {
				t.Fatal(err)
			}
			if ev.Field("Response") != "Success" || !isOurChannel(ev.Field("Channel")) {
				t.Fatalf("OriginateResponse %q", ev.String())
			}
			originated = ev
		}},
		{name: "event", run: func(t *testing.T) {
			if originated == nil {
				t.Fatal("no OriginateResponse to correlate with")
			}
			ch := originated.Field("Channel")
			if _, err := msgs.wait(ctx, "Newchannel for "+ch, func(m *goami2.Message) bool {
				return m.Field("Event") == "Newchannel" && m.Field("Channel") == ch
			}); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "list", run: func(t *testing.T) {
			id := send(t, goami2.NewAction("CoreShowChannels"))
			r := response(t, id)
			if !r.IsSuccess() || r.Field("EventList") != "start" {
				t.Fatalf("CoreShowChannels reply %q", r.String())
			}
			done, err := msgs.wait(ctx, "CoreShowChannelsComplete", func(m *goami2.Message) bool {
				return m.Field("Event") == "CoreShowChannelsComplete" && m.ActionID() == id
			})
			if err != nil {
				t.Fatal(err)
			}
			items := msgs.filter(func(m *goami2.Message) bool {
				return m.Field("Event") == "CoreShowChannel" && m.ActionID() == id
			})
			if strconv.Itoa(len(items)) != done.Field("ListItems") {
				t.Fatalf("ListItems %q, but %d CoreShowChannel events", done.Field("ListItems"), len(items))
			}
			if originated != nil {
				assertListed(t, originated.Field("Channel"), len(items), func(i int) string { return items[i].Field("Channel") })
			}
		}},
		{name: "logoff", run: func(t *testing.T) {
			r := response(t, send(t, goami2.NewAction("Logoff")))
			if r.Field("Response") != "Goodbye" {
				t.Fatalf("Logoff reply %q", r.String())
			}
			if _, err := errs.wait(ctx, "end of connection", func(err error) bool {
				return errors.Is(err, goami2.ErrEOF)
			}); err != nil {
				t.Fatalf("after Goodbye: %v", err)
			}
		}},
		{name: "md5", run: func(t *testing.T) {
			t.Skip("N/A: goami2's NewClient logs in by itself with Username/Secret; it has no Challenge/MD5 login")
		}},
	})
	for _, err := range errs.filter(func(err error) bool { return !errors.Is(err, goami2.ErrEOF) }) {
		// goami2 parses each Read as whole messages: when a burst of events
		// is coalesced and one straddles its read buffer, it reports
		// "invalid input" and drops that event. Real Asterisk triggers it
		// too under bursts, so it is a known library defect, logged here;
		// the flows above still have to pass. Anything else fails.
		if strings.Contains(err.Error(), "AMI proto: invalid input") {
			t.Logf("goami2 framing defect (known, tolerated): %v", err)
			continue
		}
		t.Errorf("goami2 reported: %v", err)
	}
}

// assertListed fails t unless the originated channel (or its other leg) is
// among the n channel names that name(i) returns: the call lasts about
// 1 s after its OriginateResponse, so a list taken right then shows it.
func assertListed(t *testing.T, channel string, n int, name func(int) string) {
	t.Helper()
	base := channel
	if i := len(base) - 2; i > 0 && base[i] == ';' {
		base = base[:i]
	}
	for i := 0; i < n; i++ {
		if c := name(i); c == base+";1" || c == base+";2" {
			return
		}
	}
	t.Errorf("the list of %d channels does not show the originated call %s", n, base)
}
