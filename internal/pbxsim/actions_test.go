package pbxsim

import (
	"crypto/md5"
	"encoding/hex"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/amiproxy/amiproxy/policy"
	"github.com/amiproxy/amiproxy/rawman"
)

// call sends an action and returns its response and, for a list, its items
// and completion event.
func (c *client) call(kv ...string) (rawman.Message, []rawman.Message) {
	c.t.Helper()
	id := "id-" + kv[1]
	c.send(append(kv, "ActionID", id)...)
	resp := c.response(id, 5*time.Second)
	if !resp.IsListStart() {
		return resp, nil
	}
	var items []rawman.Message
	for {
		m := c.read(5 * time.Second)
		if m.ActionID() != id || !m.IsEvent() {
			continue
		}
		items = append(items, m)
		if m.IsListComplete() {
			return resp, items
		}
	}
}

func wantMsg(t *testing.T, what string, m rawman.Message, kv ...string) {
	t.Helper()
	for i := 0; i+1 < len(kv); i += 2 {
		if got := m.Get(kv[i]); got != kv[i+1] {
			t.Errorf("%s: %s = %q, want %q (message %v)", what, kv[i], got, kv[i+1], m.Headers())
		}
	}
}

func TestEveryLabActionIsInPolicy(t *testing.T) {
	t.Parallel()
	for _, a := range labActions {
		if _, ok := policy.LookupAction(a.name); !ok {
			t.Errorf("policy.LookupAction(%q) not found", a.name)
		}
	}
	for name := range handlers {
		if _, ok := labIndex[name]; !ok {
			t.Errorf("handler %q is not a lab action", name)
		}
	}
}

func TestBeforeLogin(t *testing.T) {
	t.Parallel()
	s := startServer(t, Config{})
	c := dial(t, s.Addr())
	if c.banner != "Asterisk Call Manager/11.0.0" {
		t.Errorf("banner = %q", c.banner)
	}
	c.conn.Write([]byte("\r\n"))
	wantMsg(t, "blank line", c.read(time.Second), "Response", "Error", "Message", "Missing action in request")
	m, _ := c.call("Action", "NoSuchAction")
	wantMsg(t, "unknown before login", m, "Response", "Error", "Message", "Permission denied")
	c.conn.Write([]byte("Action: Ping\r\nActionID: long\r\nX: " + strings.Repeat("y", 1100) + "\r\n\r\n"))
	wantMsg(t, "line too long", c.read(time.Second), "Response", "Error", "Message", "Failed to parse message: line too long")
	m, _ = c.call("Action", "Logoff")
	wantMsg(t, "logoff before login", m, "Response", "Goodbye", "Message", "Thanks for all the fish.")
	c.expectClosed(time.Second)
}

func TestChallengeMD5(t *testing.T) {
	t.Parallel()
	s := startServer(t, Config{})
	c := dial(t, s.Addr())
	m, _ := c.call("Action", "Challenge")
	wantMsg(t, "no AuthType", m, "Response", "Error", "Message", "Must specify AuthType")
	m1, _ := c.call("Action", "Challenge", "AuthType", "md5")
	m2, _ := c.call("Action", "Challenge", "AuthType", "MD5")
	ch := m1.Get("Challenge")
	if ch == "" || len(ch) > 9 || ch != m2.Get("Challenge") {
		t.Fatalf("challenges %q, %q: want the same 1-9 digits twice", ch, m2.Get("Challenge"))
	}
	sum := md5.Sum([]byte(ch + "adminpass"))
	key := hex.EncodeToString(sum[:])

	upper := dial(t, s.Addr())
	m, _ = upper.call("Action", "Challenge", "AuthType", "MD5")
	sum2 := md5.Sum([]byte(m.Get("Challenge") + "adminpass"))
	m, _ = upper.call("Action", "Login", "AuthType", "MD5", "Username", "admin", "Key", strings.ToUpper(hex.EncodeToString(sum2[:])))
	wantMsg(t, "upper-case key", m, "Message", "Authentication failed")
	upper.expectClosed(time.Second)

	m, _ = c.call("Action", "Login", "AuthType", "MD5", "Username", "ADMIN", "Key", key, "Events", "off")
	wantMsg(t, "md5 login", m, "Response", "Success", "Message", "Authentication accepted")
}

func TestPermissions(t *testing.T) {
	t.Parallel()
	s := startServer(t, Config{})
	c := dial(t, s.Addr())
	c.login("limited", "limitedpass")
	for _, a := range []string{"Command", "Originate", "CoreShowChannels", "DBPut", "Filter", "UserEvent"} {
		m, _ := c.call("Action", a)
		wantMsg(t, a, m, "Response", "Error", "Message", "Permission denied")
	}
	m, _ := c.call("Action", "qUeUeStAtUs") // class 0
	wantMsg(t, "QueueStatus", m, "Response", "Success")
	m, _ = c.call("Action", "PJSIPShowEndpoints") // not loaded in the lab
	wantMsg(t, "unknown", m, "Message", "Invalid/unknown command: PJSIPShowEndpoints. Use Action: ListCommands to show available commands.")
}

func TestCommands(t *testing.T) {
	t.Parallel()
	s := startServer(t, Config{})
	c := dial(t, s.Addr())
	c.login("admin", "adminpass", "Events", "off")
	m, _ := c.call("Action", "Command", "Command", "dialplan show 999@lab")
	wantMsg(t, "missing extension", m, "Response", "Error", "Output", "There is no existence of 999@lab extension")
	m, _ = c.call("Action", "Command", "Command", "core show channels")
	if out := m.Values("Output"); len(out) != 4 || out[1] != "0 active channels" {
		t.Errorf("core show channels = %q", out)
	}
	m, _ = c.call("Action", "Command", "Command", "module load chan_sip.so")
	wantMsg(t, "blacklisted", m, "Response", "Error", "Message", "Command blacklisted")
	m, _ = c.call("Action", "Command", "Command", "core foo bar")
	wantMsg(t, "unknown", m, "Output", "No such command 'core foo bar' (type 'core show help core foo bar' for other possible commands)")
	m, _ = c.call("Action", "Command", "Command", "frobnicate the pbx")
	wantMsg(t, "unknown", m, "Output", "No such command 'frobnicate the pbx' (type 'core show help frobnicate the' for other possible commands)")

	legacy := startServer(t, Config{LegacyCommandOutput: true, Banner: "2.10.6", AsteriskVersion: "13.38.3"})
	l := dial(t, legacy.Addr())
	if l.banner != "Asterisk Call Manager/2.10.6" {
		t.Errorf("banner = %q", l.banner)
	}
	l.login("admin", "adminpass", "Events", "off")
	m, _ = l.call("Action", "Command", "Command", "core show version")
	wantMsg(t, "legacy", m, "Response", "Follows", "Privilege", "Command")
	if !strings.HasPrefix(m.Body(), "Asterisk 13.38.3 built by") {
		t.Errorf("legacy body = %q", m.Body())
	}
	m, _ = l.call("Action", "CoreSettings")
	wantMsg(t, "CoreSettings", m, "AMIversion", "2.10.6", "AsteriskVersion", "13.38.3")
}

func TestDBAndVariables(t *testing.T) {
	t.Parallel()
	s := startServer(t, Config{TimeScale: 0.1})
	c := dial(t, s.Addr())
	c.login("admin", "adminpass", "Events", "off")
	m, _ := c.call("Action", "DBPut", "Family", "fam", "Key", "k", "Val", "v 1")
	wantMsg(t, "DBPut", m, "Message", "Updated database successfully")
	m, items := c.call("Action", "DBGet", "Family", "fam", "Key", "k")
	wantMsg(t, "DBGet", m, "EventList", "start", "Message", "Result will follow")
	if len(items) != 2 || items[0].Get("Val") != "v 1" || items[0].At(items[0].Len()-1).Key != "ActionID" {
		t.Errorf("DBGet items = %v", items)
	}
	m, _ = c.call("Action", "DBDel", "Family", "fam", "Key", "k")
	wantMsg(t, "DBDel", m, "Response", "Success")
	m, _ = c.call("Action", "DBGet", "Family", "fam", "Key", "k")
	wantMsg(t, "DBGet gone", m, "Response", "Error", "Message", "Database entry not found")

	m, _ = c.call("Action", "Setvar", "Variable", "GLOBALX", "Value", "g")
	wantMsg(t, "Setvar global", m, "Message", "Variable Set")
	m, _ = c.call("Action", "Getvar", "Variable", "GLOBALX")
	wantMsg(t, "Getvar global", m, "Variable", "GLOBALX", "Value", "g")
	m, _ = c.call("Action", "Getvar", "Variable", "X", "Channel", "nope")
	wantMsg(t, "Getvar no channel", m, "Message", "No such channel")

	m, _ = c.call("Action", "Originate", "Channel", "Local/200@lab", "Application", "Wait", "Data", "30")
	wantMsg(t, "sync Originate", m, "Message", "Originate successfully queued")
	_, items = c.call("Action", "Status")
	if len(items) != 3 || items[0].Get("Privilege") != "Call" {
		t.Fatalf("Status items = %v", items)
	}
	var two string
	for _, it := range items {
		if strings.HasSuffix(it.Get("Channel"), ";2") {
			two = it.Get("Channel")
		}
	}
	if !waitFor(func() bool {
		m, _ := c.call("Action", "Getvar", "Channel", two, "Variable", "FOO")
		return m.Get("Value") == "long"
	}, 2*time.Second) {
		t.Error("Getvar FOO on lab,200 never returned long")
	}
	m, _ = c.call("Action", "Setvar", "Channel", two, "Variable", "BAR", "Value", "baz")
	wantMsg(t, "Setvar", m, "Response", "Success")
	m, _ = c.call("Action", "Getvar", "Channel", two, "Variable", "BAR")
	wantMsg(t, "Getvar BAR", m, "Value", "baz")
	m, _ = c.call("Action", "Redirect", "Channel", two, "Context", "lab", "Exten", "100", "Priority", "1")
	wantMsg(t, "Redirect", m, "Message", "Redirect successful")
	m, _ = c.call("Action", "Hangup", "Channel", "Local/none")
	wantMsg(t, "Hangup unknown", m, "Message", "No such channel")
	// lab,100 hangs up after 1.5 simulated seconds.
	if !waitFor(func() bool {
		_, items := c.call("Action", "CoreShowChannels")
		return len(items) == 1
	}, 3*time.Second) {
		t.Error("redirected call did not end")
	}
}

func TestDialAndQueue(t *testing.T) {
	t.Parallel()
	s := startServer(t, Config{TimeScale: 0.02})
	c := dial(t, s.Addr())
	c.login("admin", "adminpass")
	c.call("Action", "Originate", "Channel", "Local/400@lab", "Application", "Wait", "Data", "60", "Async", "1")
	for _, ev := range []string{"DialBegin", "DialEnd", "DialBegin", "DialEnd", "BridgeCreate", "BridgeEnter", "BridgeEnter", "BridgeLeave", "BridgeLeave", "BridgeDestroy", "Hangup"} {
		c.event(ev, 5*time.Second)
	}
	c.call("Action", "Originate", "Channel", "Local/300@lab", "Application", "Wait", "Data", "60", "Async", "1")
	join := c.event("QueueCallerJoin", 5*time.Second)
	wantMsg(t, "QueueCallerJoin", join, "Privilege", "agent,all", "Queue", "labq", "Position", "1")
	wantMsg(t, "AgentCalled", c.event("AgentCalled", 5*time.Second), "MemberName", "Agent600", "Interface", "Local/600@lab")
	_, items := c.call("Action", "QueueStatus", "Queue", "labq")
	if len(items) != 4 || items[0].Event() != "QueueParams" || items[1].Event() != "QueueMember" || items[2].Event() != "QueueEntry" {
		t.Errorf("QueueStatus items = %v", items)
	}
	_, items = c.call("Action", "QueueSummary")
	if len(items) != 2 || items[0].Get("Callers") != "1" {
		t.Errorf("QueueSummary items = %v", items)
	}
	wantMsg(t, "QueueCallerLeave", c.event("QueueCallerLeave", 5*time.Second), "Count", "0")
}

func TestUserEventFilterWaitEvent(t *testing.T) {
	t.Parallel()
	s := startServer(t, Config{})
	a := dial(t, s.Addr())
	a.login("admin", "adminpass", "Events", "user")
	b := dial(t, s.Addr())
	b.login("admin", "adminpass", "Events", "off")

	m, _ := a.call("Action", "Filter", "Operation", "Add", "Filter", "UserEvent: keep")
	wantMsg(t, "Filter", m, "Message", "Success")
	m, _ = a.call("Action", "Filter", "Operation", "Add", "Filter", "(")
	wantMsg(t, "Filter bad regex", m, "Message", "Filter did not compile.  Check the syntax of the filter given.")
	m, _ = a.call("Action", "Filter", "Operation", "Add", "MatchCriteria", "bogus(x)")
	wantMsg(t, "Filter bad criteria", m, "Message", "Filter was formatted incorrectly.  Check the syntax of the filter given.")
	m, _ = a.call("Action", "Filter", "Operation", "Remove")
	wantMsg(t, "Filter remove", m, "Message", "Unknown operation")

	m, _ = b.call("Action", "UserEvent", "UserEvent", "drop", "Foo", "1")
	wantMsg(t, "UserEvent", m, "Message", "Event Sent")
	m, _ = b.call("Action", "UserEvent", "UserEvent", "keep", "Foo", "2", "Privilege", "system,all")
	got := a.event("UserEvent", 2*time.Second)
	if got.Get("UserEvent") != "keep" || got.Values("Privilege")[1] != "system,all" || got.Get("ActionID") != "id-UserEvent" {
		t.Errorf("UserEvent = %v", got.Headers())
	}

	// WaitEvent: Timeout 0 returns at once; otherwise the next event ends it.
	m, _ = a.call("Action", "WaitEvent", "Timeout", "0")
	wantMsg(t, "WaitEvent 0", m, "Message", "Waiting for Event completed.")
	wantMsg(t, "WaitEventComplete", a.read(time.Second), "Event", "WaitEventComplete", "ActionID", "id-WaitEvent")
	a.send("Action", "WaitEvent", "ActionID", "w")
	time.Sleep(50 * time.Millisecond)
	b.call("Action", "UserEvent", "UserEvent", "keep")
	a.response("w", 2*time.Second)
	wantMsg(t, "event in WaitEvent", a.read(time.Second), "Event", "UserEvent")
	wantMsg(t, "WaitEventComplete", a.read(time.Second), "Event", "WaitEventComplete", "ActionID", "w")
}

// TestCallControlActions covers the actions of the ViciStack-style AMI
// guide that the conformance kit (test/conformance) sends: MixMonitor and
// StopMixMonitor, Monitor and StopMonitor (gone since Asterisk 21),
// Redirect with ExtraChannel, Hangup with a Cause, Events with EventMask.
func TestCallControlActions(t *testing.T) {
	t.Parallel()
	s := startServer(t, Config{TimeScale: 0.1})
	c := dial(t, s.Addr())
	c.login("admin", "adminpass")
	// Two long calls: lab,200 runs Wait(30).
	var chans []string
	for i := range 2 {
		m, _ := c.call("Action", "Originate", "Channel", "Local/200@lab", "Application", "Wait", "Data", "30", "Async", "true")
		wantMsg(t, "Originate", m, "Response", "Success")
		ev := c.event("OriginateResponse", 5*time.Second)
		chans = append(chans, ev.Get("Channel"))
		if chans[i] == "" {
			t.Fatalf("OriginateResponse without Channel: %v", ev.Headers())
		}
	}
	one, two := chans[0], chans[1]

	for _, legacy := range []string{"Monitor", "StopMonitor"} {
		m, _ := c.call("Action", legacy, "Channel", one, "File", "x")
		wantMsg(t, legacy, m, "Response", "Error",
			"Message", "Invalid/unknown command: "+legacy+". Use Action: ListCommands to show available commands.")
	}

	m, _ := c.call("Action", "MixMonitor", "Channel", one, "File", "rec.wav")
	if m.Get("Response") != "Success" || m.Len() != 2 {
		t.Errorf("MixMonitor = %v, want Response: Success and ActionID only", m.Headers())
	}
	start := c.event("MixMonitorStart", 5*time.Second)
	wantMsg(t, "MixMonitorStart", start, "Privilege", "call,all", "Channel", one)
	m, _ = c.call("Action", "Getvar", "Channel", one, "Variable", "MIXMONITOR_FILENAME")
	wantMsg(t, "MIXMONITOR_FILENAME", m, "Value", "/var/spool/asterisk/monitor/rec.wav")
	m, _ = c.call("Action", "MixMonitor", "Channel", one)
	wantMsg(t, "MixMonitor without file", m, "Response", "Error", "Message", "Could not start monitoring channel")
	m, _ = c.call("Action", "MixMonitor", "Channel", "Local/none")
	wantMsg(t, "MixMonitor no channel", m, "Response", "Error", "Message", "No such channel")
	m, _ = c.call("Action", "StopMixMonitor", "Channel", one)
	if m.Get("Response") != "Success" || m.Len() != 2 {
		t.Errorf("StopMixMonitor = %v, want Response: Success and ActionID only", m.Headers())
	}
	wantMsg(t, "MixMonitorStop", c.event("MixMonitorStop", 5*time.Second), "Channel", one)
	m, _ = c.call("Action", "StopMixMonitor", "Channel", one)
	wantMsg(t, "StopMixMonitor twice", m, "Response", "Error", "Message", "Could not stop monitoring channel")

	m, _ = c.call("Action", "Redirect", "Channel", one, "Context", "lab", "Exten", "200", "Priority", "1",
		"ExtraChannel", "Local/none")
	wantMsg(t, "Redirect bad extra", m, "Response", "Error", "Message", "ExtraChannel does not exist: Local/none")
	m, _ = c.call("Action", "Redirect", "Channel", one, "Context", "lab", "Exten", "200", "Priority", "1",
		"ExtraChannel", two, "ExtraContext", "lab")
	wantMsg(t, "Redirect no ExtraExten", m, "Response", "Error", "Message", "ExtraExten not specified")
	m, _ = c.call("Action", "Redirect", "Channel", one, "Context", "lab", "Exten", "200", "Priority", "1",
		"ExtraChannel", two, "ExtraContext", "lab", "ExtraExten", "200", "ExtraPriority", "1")
	wantMsg(t, "dual Redirect", m, "Response", "Success", "Message", "Dual Redirect successful")
	for range 2 {
		ev := c.event("Newexten", 5*time.Second)
		for ev.Get("Exten") != "200" || ev.Get("Priority") != "1" {
			ev = c.event("Newexten", 5*time.Second)
		}
	}

	m, _ = c.call("Action", "Hangup", "Channel", one, "Cause", "abc")
	wantMsg(t, "Hangup bad cause", m, "Response", "Error", "Message", "Invalid cause code")
	m, _ = c.call("Action", "Hangup", "Channel", one, "Cause", "17")
	wantMsg(t, "Hangup with cause", m, "Response", "Success", "Message", "Channel Hungup")
	wantMsg(t, "SoftHangupRequest", c.event("SoftHangupRequest", 5*time.Second), "Channel", one, "Cause", "17")
	hup := c.event("Hangup", 5*time.Second)
	for hup.Get("Channel") != one {
		hup = c.event("Hangup", 5*time.Second)
	}
	wantMsg(t, "Hangup", hup, "Cause", "17", "Cause-txt", "User busy")

	m, _ = c.call("Action", "Events", "EventMask", "call,foo")
	wantMsg(t, "Events", m, "Response", "Success", "Events", "On")
	m, _ = c.call("Action", "Events", "EventMask", "off")
	wantMsg(t, "Events off", m, "Response", "Success", "Events", "Off")
}

func TestOnAction(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var seen []string
	s := startServer(t, Config{OnAction: func(user, action string) {
		mu.Lock()
		seen = append(seen, user+":"+action)
		mu.Unlock()
	}})
	c := dial(t, s.Addr())
	c.login("admin", "adminpass", "Events", "off")
	c.call("Action", "Ping")
	c.call("Action", "NoSuchAction")
	mu.Lock()
	defer mu.Unlock()
	if want := []string{":Login", "admin:Ping", "admin:NoSuchAction"}; strings.Join(seen, " ") != strings.Join(want, " ") {
		t.Errorf("OnAction saw %q, want %q", seen, want)
	}
}
