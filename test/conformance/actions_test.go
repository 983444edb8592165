package conformance

import (
	"strings"
	"testing"
	"time"

	"github.com/amiproxy/amiproxy/rawman"
)

// The 15 actions of the ViciStack-style AMI commands guide, sent through
// the proxy by an allowed user (admin: read all, write all) and by a
// denied user (viewer: read call, write none), with the headers the guide
// shows (channel names are the lab's Local channels).

const unknownFmt = "Invalid/unknown command: %s. Use Action: ListCommands to show available commands."

// guideAction is one action of the guide.
type guideAction struct {
	flow string
	kv   func(x, y string) []string // x, y: two live channels
	// check judges the allowed user's reply; "" is a pass.
	check func(k *kit, c *amiConn, resp rawman.Message, items []rawman.Message) string
	// open: Asterisk registers the action with no write class (Events in
	// manager.c, QueueStatus in app_queue.c), so a user without write
	// rights may run it: the denied user gets the allowed user's answer.
	open bool
}

func listOf(event string, atLeast int) func(*kit, *amiConn, rawman.Message, []rawman.Message) string {
	return func(_ *kit, _ *amiConn, resp rawman.Message, items []rawman.Message) string {
		if d := want(resp, "Response", "Success", "EventList", "start"); d != "" {
			return d
		}
		if len(items) < atLeast+1 {
			return "list too short"
		}
		last := items[len(items)-1]
		if d := want(last, "Event", event, "EventList", "Complete"); d != "" {
			return d
		}
		if n, _ := last.ListItems(); n != len(items)-1 {
			return "ListItems does not count the items"
		}
		return ""
	}
}

func ackOf(kv ...string) func(*kit, *amiConn, rawman.Message, []rawman.Message) string {
	return func(_ *kit, _ *amiConn, resp rawman.Message, _ []rawman.Message) string { return want(resp, kv...) }
}

// bare checks a "Response: Success" with nothing but the ActionID, as
// MixMonitor and StopMixMonitor answer.
func bare(_ *kit, _ *amiConn, resp rawman.Message, _ []rawman.Message) string {
	if resp.Get("Response") != "Success" || resp.Len() != 2 {
		return "want Response: Success and ActionID alone"
	}
	return ""
}

var guideActions = []guideAction{
	{flow: "Originate (extension)", kv: func(_, _ string) []string {
		return []string{"Action", "Originate", "Channel", "Local/200@lab", "Context", "lab", "Exten", "200", "Priority", "1",
			"CallerID", "Kit <200>", "Timeout", "30000", "Async", "true"}
	}, check: originated},
	{flow: "Originate (application)", kv: func(_, _ string) []string {
		return []string{"Action", "Originate", "Channel", "Local/200@lab", "Application", "Wait", "Data", "30", "Async", "true"}
	}, check: originated},
	{flow: "Redirect with ExtraChannel", kv: func(x, y string) []string {
		return []string{"Action", "Redirect", "Channel", x, "Context", "lab", "Exten", "200", "Priority", "1",
			"ExtraChannel", y, "ExtraContext", "lab", "ExtraExten", "200", "ExtraPriority", "1"}
	}, check: ackOf("Response", "Success", "Message", "Dual Redirect successful")},
	{flow: "Status", kv: func(x, _ string) []string { return []string{"Action", "Status", "Channel", x} },
		check: listOf("StatusComplete", 1)},
	{flow: "CoreShowChannels", kv: func(_, _ string) []string { return []string{"Action", "CoreShowChannels"} },
		check: listOf("CoreShowChannelsComplete", 2)},
	{flow: "SetVar (global)", kv: func(_, _ string) []string {
		return []string{"Action", "SetVar", "Variable", "KIT_CAMPAIGN", "Value", "spring"}
	}, check: ackOf("Response", "Success", "Message", "Variable Set")},
	{flow: "SetVar (channel)", kv: func(x, _ string) []string {
		return []string{"Action", "SetVar", "Channel", x, "Variable", "KIT_LEAD", "Value", "42"}
	}, check: ackOf("Response", "Success", "Message", "Variable Set")},
	{flow: "GetVar", kv: func(x, _ string) []string {
		return []string{"Action", "GetVar", "Channel", x, "Variable", "KIT_LEAD"}
	}, check: ackOf("Response", "Success", "Variable", "KIT_LEAD", "Value", "42")},
	{flow: "Command", kv: func(_, _ string) []string {
		return []string{"Action", "Command", "Command", "core show channels"}
	}, check: ackOf("Response", "Success", "Message", "Command output follows")},
	{flow: "QueueStatus", kv: func(_, _ string) []string { return []string{"Action", "QueueStatus"} },
		check: listOf("QueueStatusComplete", 2), open: true},
	{flow: "Monitor (gone in Asterisk 21+)", kv: func(x, _ string) []string {
		return []string{"Action", "Monitor", "Channel", x, "File", "kit-call", "Format", "wav", "Mix", "true"}
	}, check: unknownAsPBX},
	{flow: "StopMonitor (gone in Asterisk 21+)", kv: func(x, _ string) []string {
		return []string{"Action", "StopMonitor", "Channel", x}
	}, check: unknownAsPBX},
	{flow: "MixMonitor", kv: func(x, _ string) []string {
		return []string{"Action", "MixMonitor", "Channel", x, "File", "kit-call.wav", "Options", "b"}
	}, check: bare},
	{flow: "StopMixMonitor", kv: func(x, _ string) []string {
		return []string{"Action", "StopMixMonitor", "Channel", x}
	}, check: bare},
	{flow: "Hangup with Cause", kv: func(_, y string) []string {
		return []string{"Action", "Hangup", "Channel", y, "Cause", "16"}
	}, check: hungUp},
	{flow: "Events with EventMask", kv: func(_, _ string) []string {
		return []string{"Action", "Events", "EventMask", "call,agent"}
	}, check: ackOf("Response", "Success", "Events", "On"), open: true},
}

// hungUp checks the Hangup ack, then the channel's Hangup event with the
// cause asked for (16, Normal Clearing).
func hungUp(k *kit, c *amiConn, resp rawman.Message, _ []rawman.Message) string {
	if d := want(resp, "Response", "Success", "Message", "Channel Hungup"); d != "" {
		return d
	}
	k.mu.Lock()
	y := k.originated[1]
	k.mu.Unlock()
	ev, err := c.event(func(m rawman.Message) bool { return m.Event() == "Hangup" && m.Get("Channel") == y }, 10*time.Second)
	if err != nil {
		return "no Hangup event for " + y + ": " + err.Error()
	}
	return want(ev, "Cause", "16", "Cause-txt", "Normal Clearing")
}

// originated checks an async Originate: the ack, then its OriginateResponse.
func originated(k *kit, c *amiConn, resp rawman.Message, _ []rawman.Message) string {
	if d := want(resp, "Response", "Success", "Message", "Originate successfully queued"); d != "" {
		return d
	}
	id := resp.ActionID()
	ev, err := c.event(func(m rawman.Message) bool { return m.Event() == "OriginateResponse" && m.ActionID() == id }, 10*time.Second)
	if err != nil {
		return "no OriginateResponse: " + err.Error()
	}
	if d := want(ev, "Response", "Success"); d != "" {
		return d
	}
	k.mu.Lock()
	k.originated = append(k.originated, ev.Get("Channel"))
	k.mu.Unlock()
	return ""
}

// unknownAsPBX: the reply Asterisk 22 gives an action it does not know,
// byte for byte as the PBX gave it on a direct session.
func unknownAsPBX(k *kit, _ *amiConn, resp rawman.Message, _ []rawman.Message) string {
	action := strings.TrimPrefix(strings.TrimSuffix(resp.Get("Message"), ". Use Action: ListCommands to show available commands."), "Invalid/unknown command: ")
	direct := dialAMI(k.s.t, k.s.sim.Addr().String())
	id := direct.action("Action", "Login", "Username", "admin", "Secret", "adminpass", "Events", "off")
	if _, _, err := direct.response(id); err != nil {
		return err.Error()
	}
	id = direct.action("Action", action)
	d, _, err := direct.response(id)
	if err != nil {
		return err.Error()
	}
	got, exp := strings.ReplaceAll(format(resp), resp.ActionID(), "<id>"), strings.ReplaceAll(format(d), id, "<id>")
	if got != exp || !strings.HasPrefix(resp.Get("Message"), "Invalid/unknown command: ") {
		return "the proxy's reply differs from the PBX's:\n" + indent(exp)
	}
	return ""
}

// guideActions runs the 15 actions as admin, then as viewer.
func (k *kit) guideActions(t *testing.T) {
	const group = "guide actions"
	c := dialAMI(t, k.s.ami)
	id := c.action("Action", "Login", "Username", "admin", "Secret", "adminpass")
	if resp, _, err := c.response(id); err != nil || resp.Get("Response") != "Success" {
		t.Fatalf("admin login through the proxy: %v\n%s", err, c.exchange())
	}
	var x, y string // the channels of the two Originates
	for _, a := range guideActions {
		note := ""
		if strings.Contains(a.flow, "Monitor (gone") {
			note = "unknown command, byte for byte as the PBX answers"
		}
		k.flowNote(t, group, a.flow, "admin", note, func(t *testing.T) {
			if (x == "" || y == "") && !strings.HasPrefix(a.flow, "Originate") {
				t.Fatalf("no live channels: the Originates failed")
			}
			id := c.action(a.kv(x, y)...)
			resp, items, err := c.response(id)
			if err == nil {
				if d := a.check(k, c, resp, items); d != "" {
					err = errString(d)
				}
			}
			if err != nil {
				t.Fatalf("%v\nexchange:\n%s", err, c.exchange())
			}
			k.mu.Lock()
			if len(k.originated) >= 2 {
				x, y = k.originated[0], k.originated[1]
			}
			k.mu.Unlock()
		})
	}
	// Leave no call behind.
	for _, ch := range []string{x, y} {
		c.action("Action", "Hangup", "Channel", ch)
	}

	v := dialAMI(t, k.s.ami)
	id = v.action("Action", "Login", "Username", "viewer", "Secret", "viewerpass")
	if resp, _, err := v.response(id); err != nil || resp.Get("Response") != "Success" {
		t.Fatalf("viewer login through the proxy: %v\n%s", err, v.exchange())
	}
	if x == "" {
		x, y = "Local/200@lab-00000000;1", "Local/200@lab-00000001;1"
	}
	for _, a := range guideActions {
		note := "Permission denied; nothing reached the PBX"
		if a.open {
			note = "allowed: Asterisk gives it no write class"
		}
		k.flowNote(t, group, a.flow, "viewer", note, func(t *testing.T) {
			kv := a.kv(x, y)
			before := k.s.reached(kv[1])
			id := v.action(kv...)
			resp, items, err := v.response(id)
			if err != nil {
				t.Fatalf("%v\nexchange:\n%s", err, v.exchange())
			}
			if a.open {
				if d := a.check(k, v, resp, items); d != "" {
					t.Fatalf("%s (%s needs no write class in Asterisk)\nexchange:\n%s", d, kv[1], v.exchange())
				}
				return
			}
			if d := want(resp, "Response", "Error", "Message", "Permission denied"); d != "" {
				t.Errorf("%s\nexchange:\n%s", d, v.exchange())
			}
			if after := k.s.reached(kv[1]); after != before {
				t.Errorf("the denied %s reached the PBX (%d times)\nexchange:\n%s", kv[1], after-before, v.exchange())
			}
		})
	}
}

type errString string

func (e errString) Error() string { return string(e) }
