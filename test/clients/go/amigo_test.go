package clientstests

import (
	"context"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ivahaev/amigo"
)

// TestAmigo drives github.com/ivahaev/amigo. It connects in the
// background (and would reconnect forever), logs in without an ActionID,
// reads the Login reply with a bufio.Reader it then throws away (events
// read with it are lost), writes headers in random map order with an
// extra "AmigoConnID:" header and UUIDv4 ActionIDs. Action returns the
// Response only; every message, Responses included, also goes to the
// channel set with SetEventChannel, which is where lists and
// OriginateResponse are collected.
func TestAmigo(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), libraryTimeout)
	defer cancel()

	host, port, err := net.SplitHostPort(endpoint.addr)
	if err != nil {
		t.Fatal(err)
	}
	a := amigo.New(&amigo.Settings{
		Username:      endpoint.user,
		Password:      endpoint.secret,
		Host:          host,
		Port:          port,
		ActionTimeout: flowTimeout,
	})
	msgs := newRecorder[map[string]string]()
	notes := newRecorder[string]() // amigo's own "connect" and "error" notices
	a.On("connect", func(banner string) { notes.add("connect: " + banner) })
	a.On("error", func(msg string) { notes.add("error: " + msg) })
	all := make(chan map[string]string, 1024)
	a.SetEventChannel(all)
	go func() {
		for {
			select {
			case m := <-all:
				msgs.add(m)
			case <-ctx.Done():
				return
			}
		}
	}()
	connected := false
	defer func() {
		if connected {
			a.Close()
		}
	}()

	action := func(t *testing.T, req map[string]string) map[string]string {
		t.Helper()
		r, err := a.Action(req)
		if err != nil {
			t.Fatalf("%s: %v", req["Action"], err)
		}
		if r["Error"] == "Timeout" {
			t.Fatalf("%s: no reply within %v", req["Action"], flowTimeout)
		}
		return r
	}
	var originated map[string]string

	runFlows(t, []flow{
		{name: "login", required: true, run: func(t *testing.T) {
			a.Connect()
			connected = true
			n, err := notes.wait(ctx, "connect or error notice", func(string) bool { return true })
			if err != nil {
				t.Fatal(err)
			}
			if !strings.HasPrefix(n, "connect: ") {
				t.Fatalf("amigo: %s", n)
			}
			if !strings.HasPrefix(n, "connect: Asterisk Call Manager/") {
				t.Errorf("banner as amigo read it: %q", n)
			}
			for deadline := time.Now().Add(flowTimeout); !a.Connected(); time.Sleep(10 * time.Millisecond) {
				if time.Now().After(deadline) {
					t.Fatal("amigo never reported Connected()")
				}
			}
		}},
		{name: "ping", run: func(t *testing.T) {
			r := action(t, map[string]string{"Action": "Ping"})
			if r["Response"] != "Success" || r["Ping"] != "Pong" {
				t.Fatalf("Ping reply %v", r)
			}
		}},
		{name: "originate", run: func(t *testing.T) {
			r := action(t, map[string]string{
				"Action":      "Originate",
				"Channel":     originateChannel,
				"Application": originateApp,
				"Data":        originateData,
				"Async":       "true",
			})
			if r["Response"] != "Success" {
				t.Fatalf("Originate reply %v", r)
			}
			id := r["ActionID"]
			ev, err := msgs.wait(ctx, "OriginateResponse with ActionID "+id, func(m map[string]string) bool {
				return m["Event"] == "OriginateResponse" && m["ActionID"] == id
			})
			if err != nil {
				t.Fatal(err)
			}
			if ev["Response"] != "Success" || !isOurChannel(ev["Channel"]) {
				t.Fatalf("OriginateResponse %v", ev)
			}
			originated = ev
		}},
		{name: "event", run: func(t *testing.T) {
			if originated == nil {
				t.Fatal("no OriginateResponse to correlate with")
			}
			ch := originated["Channel"]
			if _, err := msgs.wait(ctx, "Newchannel for "+ch, func(m map[string]string) bool {
				return m["Event"] == "Newchannel" && m["Channel"] == ch
			}); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "list", run: func(t *testing.T) {
			r := action(t, map[string]string{"Action": "CoreShowChannels"})
			if r["Response"] != "Success" || r["EventList"] != "start" {
				t.Fatalf("CoreShowChannels reply %v", r)
			}
			id := r["ActionID"]
			done, err := msgs.wait(ctx, "CoreShowChannelsComplete", func(m map[string]string) bool {
				return m["Event"] == "CoreShowChannelsComplete" && m["ActionID"] == id
			})
			if err != nil {
				t.Fatal(err)
			}
			items := msgs.filter(func(m map[string]string) bool {
				return m["Event"] == "CoreShowChannel" && m["ActionID"] == id
			})
			if strconv.Itoa(len(items)) != done["ListItems"] {
				t.Fatalf("ListItems %q, but %d CoreShowChannel events", done["ListItems"], len(items))
			}
			if originated != nil {
				assertListed(t, originated["Channel"], len(items), func(i int) string { return items[i]["Channel"] })
			}
		}},
		{name: "logoff", run: func(t *testing.T) {
			before, _ := notes.snapshot()
			r := action(t, map[string]string{"Action": "Logoff"})
			if r["Response"] != "Goodbye" {
				t.Fatalf("Logoff reply %v", r)
			}
			// amigo reports the server's close as an "AMI TCP ERROR: EOF" notice.
			if _, err := notes.wait(ctx, "notice of the server closing the connection", func(n string) bool {
				return strings.HasPrefix(n, "error: AMI TCP ERROR") && !contains(before, n)
			}); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "md5", run: func(t *testing.T) {
			t.Skip("N/A: amigo logs in by itself with Username/Secret; it has no Challenge/MD5 login")
		}},
	})
}

func contains[T comparable](s []T, v T) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}
