package conformance

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/amiproxy/amiproxy/rawman"
)

// The AMI chapter of "Asterisk: The Definitive Guide" (Quick Start): its
// telnet session on the native port, and its HTTP sessions (book/*.sh).
// The kit's proxy has the book's account, hello / world.

// nextResponse reads until the next response (the book's session sends no
// ActionIDs).
func (c *amiConn) nextResponse() (rawman.Message, error) {
	deadline := time.Now().Add(10 * time.Second)
	for {
		m, err := c.next(time.Until(deadline))
		if err != nil {
			return m, err
		}
		if m.IsResponse() {
			c.record(m)
			return m, nil
		}
		c.other++
	}
}

// telnetSession is the book's session typed into telnet: telnet sends each
// line as it is typed, ended by CRLF, and the blank line submits the action.
// Reproduces the book's "telnet localhost 5038" with host and port changed.
func (k *kit) telnetSession(t *testing.T) {
	c := dialAMI(t, k.s.ami)
	if !strings.HasPrefix(c.banner, "Asterisk Call Manager/") {
		t.Fatalf("banner %q, want Asterisk Call Manager/...", c.banner)
	}
	typeLines := func(lines ...string) {
		for _, l := range lines {
			c.sendRaw(l + "\r\n")
		}
	}
	steps := []struct {
		lines []string
		want  []string
	}{
		{[]string{"Action: Login", "Username: hello", "Secret: world", ""}, []string{"Response", "Success", "Message", "Authentication accepted"}},
		{[]string{"Action: Ping", ""}, []string{"Response", "Success", "Ping", "Pong"}},
		{[]string{"Action: Logoff", ""}, []string{"Response", "Goodbye", "Message", "Thanks for all the fish."}},
	}
	for _, s := range steps {
		typeLines(s.lines...)
		m, err := c.nextResponse()
		if err != nil {
			t.Fatalf("%v\nexchange:\n%s", err, c.exchange())
		}
		if d := want(m, s.want...); d != "" {
			t.Fatalf("%s\nexchange:\n%s", d, c.exchange())
		}
		if s.lines[0] == "Action: Ping" && m.Get("Timestamp") == "" {
			t.Fatalf("Ping reply without Timestamp\nexchange:\n%s", c.exchange())
		}
	}
	if !c.closed(5 * time.Second) {
		t.Fatalf("the connection stayed open after Goodbye (\"Connection closed by foreign host.\" in the book)\nexchange:\n%s", c.exchange())
	}
}

// sections splits a script's output on its "== name" lines.
func sections(out string) map[string]string {
	m := map[string]string{}
	name := ""
	for _, line := range strings.SplitAfter(out, "\n") {
		if n, ok := strings.CutPrefix(strings.TrimRight(line, "\r\n"), "== "); ok {
			name = n
			continue
		}
		m[name] += line
	}
	return m
}

// script runs a kit script and checks that each named section holds every
// wanted string; a failure prints the whole exchange the script printed.
func (k *kit) script(t *testing.T, env []string, expect map[string][]string, name string, args ...string) string {
	t.Helper()
	out, err := k.s.run(context.Background(), env, name, args...)
	sec := sections(out)
	var diffs []string
	for s, wants := range expect {
		for _, w := range wants {
			if !strings.Contains(sec[s], w) {
				diffs = append(diffs, "section "+s+": missing "+strqq(w))
			}
		}
	}
	if err != nil {
		diffs = append(diffs, "exit: "+err.Error())
	}
	if len(diffs) > 0 {
		t.Fatalf("%s %s: %s\nexchange (the script's output):\n%s", filepath.Base(name), strings.Join(args, " "),
			strings.Join(diffs, "; "), indent(out))
	}
	return out
}

func strqq(s string) string { return "\"" + strings.ReplaceAll(s, "\r\n", `\r\n`) + "\"" }

func (k *kit) book(t *testing.T) {
	const group = "book (AMI chapter)"
	k.flow(t, group, "telnet session: login, ping, logoff", "hello", k.telnetSession)
	bookDir, _ := filepath.Abs("book")
	wget := filepath.Join(bookDir, "wget-rawman.sh")
	k.flow(t, group, "wget /rawman with a cookie file", "hello", func(t *testing.T) {
		k.script(t, nil, map[string][]string{
			"login":        {"Response: Success\r\nMessage: Authentication accepted\r\n"},
			"ping":         {"Response: Success\r\nPing: Pong\r\nTimestamp: "},
			"logoff":       {"Response: Goodbye\r\nMessage: Thanks for all the fish.\r\n"},
			"after logoff": {"Message: Permission denied"},
		}, wget, "rawman")
	})
	k.flow(t, group, "wget /manager with a cookie file", "hello", func(t *testing.T) {
		k.script(t, nil, map[string][]string{
			"login":  {"<title>Asterisk&trade; Manager Interface</title>", "<tr><td>Message</td><td>Authentication accepted</td></tr>"},
			"ping":   {"<tr><td>Ping</td><td>Pong</td></tr>"},
			"logoff": {"<tr><td>Message</td><td>Thanks for all the fish.</td></tr>"},
		}, wget, "manager")
	})
	k.flow(t, group, "wget /mxml with a cookie file", "hello", func(t *testing.T) {
		k.script(t, nil, map[string][]string{
			"login":  {"<ajax-response>", "response='Success'", "message='Authentication accepted'"},
			"ping":   {"ping='Pong'"},
			"logoff": {"response='Goodbye'"},
		}, wget, "mxml")
	})
	wait := filepath.Join(bookDir, "wget-waitevent.sh")
	k.flow(t, group, "WaitEvent over HTTP (/rawman)", "hello", func(t *testing.T) {
		out := k.script(t, nil, map[string][]string{
			"login":     {"Authentication accepted"},
			"waitevent": {"Response: Success\r\nMessage: Waiting for Event completed.\r\n", "Event: WaitEventComplete\r\n"},
			"logoff":    {"Response: Goodbye"},
		}, wait, "rawman")
		if strings.Count(sections(out)["waitevent"], "Event: ") < 2 {
			t.Fatalf("WaitEvent returned no event although the PBX has call traffic\nexchange:\n%s", indent(out))
		}
	})
	k.flow(t, group, "WaitEvent over HTTP (/mxml)", "hello", func(t *testing.T) {
		k.script(t, nil, map[string][]string{
			"login":     {"Authentication accepted"},
			"waitevent": {"message='Waiting for Event completed.'", "event='WaitEventComplete'"},
			"logoff":    {"response='Goodbye'"},
		}, wait, "mxml")
	})
	digest := filepath.Join(bookDir, "curl-digest.sh")
	for _, d := range []struct{ path, pong, status string }{
		{"arawman", "Ping: Pong", "Response: Success"},
		{"amanager", "Pong", "CoreCurrentCalls"},
		{"amxml", "ping='Pong'", "corecurrentcalls="},
	} {
		k.flow(t, group, "curl --digest /"+d.path, "hello", func(t *testing.T) {
			k.script(t, nil, map[string][]string{
				"ping":         {d.pong},
				"corestatus":   {d.status},
				"wrong secret": {"401"},
			}, digest, d.path)
		})
	}
}
