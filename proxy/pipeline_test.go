package proxy

import (
	"fmt"
	"strings"
	"testing"
)

// A client that pipelines gets every reply, whole and in request order,
// whether its requests are forwarded (batched to the PBX), answered by
// the proxy (Ping), denied, or session-scoped (which ends a batch): a
// DBGet right after the DBPut of the same key reads the value back, as
// one request at a time would.
func TestPipelinedRequests(t *testing.T) {
	checkLeaks(t)
	e := newEnv(t, envOpts{})
	c := e.login("admin", "adminpass", "Events", "off")
	var b strings.Builder
	var want []string // ActionID of each reply message, in order
	for round := range 2 {
		for i := range 10 {
			fmt.Fprintf(&b, "Action: DBPut\r\nActionID: p%d.%d\r\nFamily: pipe\r\nKey: k%d\r\nVal: v%d.%d\r\n\r\n", round, i, i, round, i)
			fmt.Fprintf(&b, "Action: DBGet\r\nActionID: g%d.%d\r\nFamily: pipe\r\nKey: k%d\r\n\r\n", round, i, i)
			want = append(want, fmt.Sprintf("p%d.%d", round, i), fmt.Sprintf("g%d.%d", round, i), fmt.Sprintf("g%d.%d", round, i), fmt.Sprintf("g%d.%d", round, i))
		}
		fmt.Fprintf(&b, "Action: Ping\r\nActionID: ping%d\r\n\r\n", round)
		fmt.Fprintf(&b, "Action: NoSuchAction2\r\nActionID: deny%d\r\n\r\n", round)
		fmt.Fprintf(&b, "Action: Events\r\nActionID: ev%d\r\nEventMask: off\r\n\r\n", round)
		fmt.Fprintf(&b, "Action: CoreStatus\r\nActionID: core%d\r\n\r\n", round)
		want = append(want, fmt.Sprint("ping", round), fmt.Sprint("deny", round), fmt.Sprint("ev", round), fmt.Sprint("core", round))
	}
	c.write(b.String())
	for i, id := range want {
		m := c.readMsg()
		if got := header(m, "ActionID"); got != id {
			t.Fatalf("reply %d has ActionID %q, want %q: %q", i, got, id, m)
		}
		switch {
		case strings.HasPrefix(id, "g") && strings.HasPrefix(m, "Event: DBGetResponse\r\n"):
			var round, k int
			fmt.Sscanf(id, "g%d.%d", &round, &k)
			if v := header(m, "Val"); v != fmt.Sprintf("v%d.%d", round, k) {
				t.Errorf("DBGet %s read %q, want the value of the DBPut before it", id, v)
			}
		case strings.HasPrefix(id, "ping"):
			if header(m, "Ping") != "Pong" {
				t.Errorf("Ping reply %q", m)
			}
		case strings.HasPrefix(id, "deny"):
			if header(m, "Message") != "Permission denied" {
				t.Errorf("denied action reply %q", m)
			}
		case strings.HasPrefix(id, "core"), strings.HasPrefix(id, "p"):
			if header(m, "Response") != "Success" {
				t.Errorf("reply %q", m)
			}
		}
	}
	if s := e.gw.Stats(); s.ActionsDenied != 2 {
		t.Errorf("ActionsDenied = %d, want 2", s.ActionsDenied)
	}
}

// A pipelined batch spans PBXs (Server headers) and stops at a Logoff:
// each PBX sees its own actions in order, and nothing after the Logoff
// runs (the DBPut after it never reaches the PBX).
func TestPipelinedAcrossPBXsAndLogoff(t *testing.T) {
	checkLeaks(t)
	e := newEnv(t, envOpts{pbxs: []string{"east", "west"}})
	c := e.login("admin", "adminpass", "Events", "off")
	var b strings.Builder
	for i := range 5 {
		for _, pbx := range []string{"east", "west"} {
			fmt.Fprintf(&b, "Action: DBPut\r\nServer: %s\r\nActionID: p-%s-%d\r\nFamily: x\r\nKey: k%d\r\nVal: %s%d\r\n\r\n", pbx, pbx, i, i, pbx, i)
		}
		for _, pbx := range []string{"west", "east"} {
			fmt.Fprintf(&b, "Action: DBGet\r\nServer: %s\r\nActionID: g-%s-%d\r\nFamily: x\r\nKey: k%d\r\n\r\n", pbx, pbx, i, i)
		}
	}
	b.WriteString("Action: Logoff\r\nActionID: bye\r\n\r\n")
	b.WriteString("Action: DBPut\r\nActionID: late\r\nFamily: x\r\nKey: late\r\nVal: ran\r\n\r\n")
	c.write(b.String())
	for i := range 5 {
		for _, pbx := range []string{"east", "west"} {
			if m := c.readMsg(); header(m, "ActionID") != fmt.Sprintf("p-%s-%d", pbx, i) || header(m, "Response") != "Success" {
				t.Fatalf("DBPut %s %d: %q", pbx, i, m)
			}
		}
		for _, pbx := range []string{"west", "east"} {
			id := fmt.Sprintf("g-%s-%d", pbx, i)
			var val string
			for range 3 { // response, DBGetResponse, DBGetComplete
				m := c.readMsg()
				if header(m, "ActionID") != id {
					t.Fatalf("DBGet %s: got %q", id, m)
				}
				if strings.HasPrefix(m, "Event: DBGetResponse\r\n") {
					val = header(m, "Val")
				}
			}
			if want := fmt.Sprintf("%s%d", pbx, i); val != want {
				t.Errorf("DBGet %s = %q, want %q (its own PBX's value)", id, val, want)
			}
		}
	}
	if m := c.readMsg(); header(m, "Response") != "Goodbye" || header(m, "ActionID") != "bye" {
		t.Fatalf("Logoff: %q", m)
	}
	c.expectEOF()
	// The request after the Logoff never ran.
	d := e.login("admin", "adminpass", "Events", "off")
	if m := d.call("Action", "DBGet", "ActionID", "check", "Family", "x", "Key", "late"); header(m, "Response") != "Error" {
		t.Errorf("DBGet of the key written after Logoff = %q, want an error (no such key)", m)
	}
}
