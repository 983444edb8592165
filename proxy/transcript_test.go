package proxy

import (
	"crypto/md5"
	"encoding/hex"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/amiproxy/amiproxy/internal/transcript"
)

// The recordings of a real Asterisk 22.10.1 (testdata/transcripts) replayed
// against the proxy in front of pbxsim: the proxy must answer with the same
// bytes, apart from volatile values (timestamps, uptimes) and the
// SuccessfulAuth event, which the proxy does not emit (see doc.go).

func loadTranscript(t *testing.T, name string) *transcript.File {
	t.Helper()
	f, err := transcript.Load(filepath.Join("..", "testdata", "transcripts", name))
	if err != nil {
		t.Fatal(err)
	}
	return f
}

var volatile = []struct {
	re   *regexp.Regexp
	repl string
}{
	{regexp.MustCompile(`Timestamp: \d+\.\d{6}`), "Timestamp: <t>"},
	{regexp.MustCompile(`Uptime: \d+`), "Uptime: <n>"},
	{regexp.MustCompile(`LastReload: \d+`), "LastReload: <n>"},
	{regexp.MustCompile(`Challenge: \d{1,9}\r`), "Challenge: <n>\r"},
}

func normalize(s string) string {
	for _, v := range volatile {
		s = v.re.ReplaceAllString(s, v.repl)
	}
	return s
}

// splitMessages cuts recorded server bytes into the banner line and
// messages (each with its blank line).
func splitMessages(data string) []string {
	var out []string
	if strings.HasPrefix(data, "Asterisk Call Manager/") {
		i := strings.Index(data, "\r\n") + 2
		out = append(out, data[:i])
		data = data[i:]
	}
	for data != "" {
		i := strings.Index(data, "\r\n\r\n")
		if i < 0 {
			out = append(out, data)
			break
		}
		out = append(out, data[:i+4])
		data = data[i+4:]
	}
	return out
}

// replayOpts tailors a replay.
type replayOpts struct {
	conn string                      // connection label ("" for single-connection files)
	skip func(msg string) bool       // recorded messages the proxy does not send
	stop func(transcript.Block) bool // stop before this block
	edit func(msg string) string     // what the proxy sends instead of a recorded message
}

func skipSuccessfulAuth(msg string) bool { return strings.HasPrefix(msg, "Event: SuccessfulAuth\r\n") }

// replay plays the client side of one connection of f against the proxy
// and compares each message the proxy sends with the recording.
func replay(t *testing.T, e *env, f *transcript.File, o replayOpts) {
	t.Helper()
	c := e.dial()
	for _, b := range f.Blocks {
		if b.Conn != o.conn && (b.Dir == "C->S" || b.Dir == "S->C" || b.Dir == "CLOSE") {
			continue
		}
		if o.stop != nil && o.stop(b) {
			return
		}
		switch b.Dir {
		case "C->S":
			c.write(string(b.Data))
		case "S->C":
			for _, want := range splitMessages(string(b.Data)) {
				if o.skip != nil && o.skip(want) {
					continue
				}
				if o.edit != nil {
					want = o.edit(want)
				}
				var got string
				if strings.HasPrefix(want, "Asterisk Call Manager/") {
					got = c.line()
				} else {
					got = c.readMsg()
				}
				if normalize(got) != normalize(want) {
					t.Fatalf("%s block %d:\n got %q\nwant %q", f.Name, b.Index, got, want)
				}
			}
		case "CLOSE":
			c.expectEOF()
			return
		}
	}
}

func TestTranscriptLoginPing(t *testing.T) {
	checkLeaks(t)
	e := newEnv(t, envOpts{})
	replay(t, e, loadTranscript(t, "tcp-login-ping.txt"), replayOpts{skip: skipSuccessfulAuth})
}

func TestTranscriptUnknownAction(t *testing.T) {
	checkLeaks(t)
	e := newEnv(t, envOpts{})
	// The admin role allows NoSuchAction, so pbxsim's "Invalid/unknown
	// command" passes through; the missing Action and the odd casing are
	// the proxy's own.
	replay(t, e, loadTranscript(t, "tcp-unknown-action.txt"), replayOpts{})
}

func TestTranscriptRelogin(t *testing.T) {
	checkLeaks(t)
	e := newEnv(t, envOpts{})
	replay(t, e, loadTranscript(t, "tcp-relogin.txt"), replayOpts{
		// "manager show connected" lists pbxsim's own sessions.
		stop: func(b transcript.Block) bool { return strings.Contains(string(b.Data), "manager show connected") },
	})
}

func TestTranscriptPermissionDenied(t *testing.T) {
	checkLeaks(t)
	e := newEnv(t, envOpts{})
	replay(t, e, loadTranscript(t, "tcp-permission-denied.txt"), replayOpts{
		stop: func(b transcript.Block) bool { return b.Dir == "NOTE" },
	})
}

func TestTranscriptBadPassword(t *testing.T) {
	checkLeaks(t)
	e := newEnv(t, envOpts{cfg: Config{LoginFailDelay: 150 * time.Millisecond}})
	f := loadTranscript(t, "tcp-login-bad-password.txt")
	for _, conn := range []string{"c1", "c2", "c3"} {
		t.Run(conn, func(t *testing.T) {
			start := time.Now()
			replay(t, e, f, replayOpts{conn: conn})
			if conn != "c3" {
				if d := time.Since(start); d < 150*time.Millisecond {
					t.Errorf("failed login answered after %v, want at least LoginFailDelay", d)
				}
			}
		})
	}
	if s := e.gw.Stats(); s.LoginsFailed != 2 || s.LoginsOK != 1 {
		t.Errorf("Stats logins ok/failed = %d/%d, want 1/2", s.LoginsOK, s.LoginsFailed)
	}
}

func TestTranscriptEventsAction(t *testing.T) {
	checkLeaks(t)
	e := newEnv(t, envOpts{})
	f := loadTranscript(t, "tcp-events-eventmask.txt")
	// The replies to Events, byte for byte; the event stream is checked in
	// TestEventsMask.
	c := e.dial()
	for _, b := range f.Blocks {
		if b.Dir != "C->S" {
			continue
		}
		req := string(b.Data)
		if !strings.Contains(req, "Action: Events") && !strings.Contains(req, "Action: Login") {
			continue
		}
		c.write(req)
	}
	c.send("Action", "Logoff")
	var got []string
	for _, m := range append([]string{c.line()}, c.until("Goodbye")...) {
		if !strings.HasPrefix(m, "Event: ") {
			got = append(got, m)
		}
	}
	var want []string
	for _, b := range f.Blocks {
		if b.Dir != "S->C" {
			continue
		}
		for _, m := range splitMessages(string(b.Data)) {
			if !strings.HasPrefix(m, "Event: ") && !strings.HasPrefix(m, "Response: Goodbye") {
				want = append(want, m)
			}
		}
	}
	want = append(want, "Response: Goodbye\r\nMessage: Thanks for all the fish.\r\n\r\n")
	if len(got) != len(want) {
		t.Fatalf("got %d replies %q, want %d %q", len(got), got, len(want), want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("reply %d = %q, want %q", i, got[i], want[i])
		}
	}
}

func TestTranscriptChallengeMD5(t *testing.T) {
	checkLeaks(t)
	e := newEnv(t, envOpts{})
	f := loadTranscript(t, "tcp-challenge-md5-login.txt")
	// c1: a bad key is refused and the connection closed. The challenge is
	// random, so the recorded key is wrong for the proxy's challenge too.
	replay(t, e, f, replayOpts{conn: "c1"})

	// c2: the key computed over the proxy's challenge is accepted.
	c := e.connect()
	ch := c.call("Action", "Challenge", "ActionID", "ch-2", "AuthType", "MD5")
	if !regexp.MustCompile(`^Response: Success\r\nActionID: ch-2\r\nChallenge: \d{1,9}\r\n\r\n$`).MatchString(ch) {
		t.Fatalf("Challenge = %q", ch)
	}
	if again := c.call("Action", "Challenge", "AuthType", "md5"); header(again, "Challenge") != header(ch, "Challenge") {
		t.Errorf("second Challenge = %q, want the same challenge as %q", again, ch)
	}
	if m := c.call("Action", "Challenge", "ActionID", "x"); m != "Response: Error\r\nActionID: x\r\nMessage: Must specify AuthType\r\n\r\n" {
		t.Errorf("Challenge without AuthType = %q", m)
	}
	c.send("Action", "Login", "ActionID", "md5-good", "AuthType", "MD5", "Username", "admin", "Key", md5hex(header(ch, "Challenge")+"adminpass"))
	got := c.readMsg() + c.readMsg()
	want := "Response: Success\r\nActionID: md5-good\r\nMessage: Authentication accepted\r\n\r\n" +
		"Event: FullyBooted\r\nPrivilege: system,all\r\nUptime: <n>\r\nLastReload: <n>\r\nStatus: Fully Booted\r\n\r\n"
	if normalize(got) != want {
		t.Errorf("MD5 login = %q, want %q", got, want)
	}
}

// ListCommands: the proxy passes pbxsim's list (the recording's bytes)
// minus the actions the user may not run. For limited that is the
// recording's list for limited; for both users the policy engine also
// denies the class-0 actions that change state unless a role allows them
// by name (ami-spec.md §4.11), so their lines go too.
func TestTranscriptListCommands(t *testing.T) {
	checkLeaks(t)
	e := newEnv(t, envOpts{})
	f := loadTranscript(t, "tcp-listcommands.txt")
	stateChanging := map[string]bool{
		"BridgeDestroy": true, "BridgeKick": true, "BridgeTechnologySuspend": true,
		"BridgeTechnologyUnsuspend": true, "QueueChangePriorityCaller": true, "QueueReload": true,
		"QueueReset": true, "QueueWithdrawCaller": true,
	}
	for _, user := range []string{"admin", "limited"} {
		removed := 0
		replay(t, e, f, replayOpts{conn: user, edit: func(m string) string {
			if !strings.Contains(m, "Ping: Keepalive command.") {
				return m
			}
			var keep []string
			for _, l := range strings.SplitAfter(m, "\r\n") {
				if name, _, _ := strings.Cut(l, ":"); stateChanging[name] {
					removed++
					continue
				}
				keep = append(keep, l)
			}
			return strings.Join(keep, "")
		}})
		if removed != len(stateChanging) {
			t.Errorf("%s: removed %d lines from the recorded list, want %d", user, removed, len(stateChanging))
		}
	}
}

func md5hex(s string) string {
	sum := md5.Sum([]byte(s))
	return hex.EncodeToString(sum[:])
}
