package rawman

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"
)

// readAll reads every message of a request stream, recording each result
// as the reply Asterisk would give: "" for a message it would process, or
// the error text.
type readResult struct {
	msg Message
	err string
}

func readAllRequests(t testing.TB, raw []byte, compat bool) []readResult {
	r := NewReader(bytes.NewReader(raw))
	r.Compat = compat
	var out []readResult
	for i := 0; i < 100000; i++ {
		m, err := r.ReadMessage()
		if err == io.EOF || errors.Is(err, io.ErrUnexpectedEOF) {
			return out
		}
		var fe *FrameError
		switch {
		case errors.As(err, &fe):
			out = append(out, readResult{msg: fe.Message, err: fe.Reply()})
		case err != nil:
			t.Fatalf("ReadMessage: unexpected error %v", err)
		default:
			out = append(out, readResult{msg: m})
		}
	}
	t.Fatal("ReadMessage: no end of input after 100000 messages")
	return nil
}

func TestReadRequestFraming(t *testing.T) {
	long := func(n int) string { return strings.Repeat("x", n) }
	type want struct {
		action, actionID, err string
	}
	tests := []struct {
		name   string
		in     string
		compat bool
		want   []want
	}{
		{"crlf", "Action: Ping\r\nActionID: 1\r\n\r\n", false, []want{{"Ping", "1", ""}}},
		{"bare LF ends lines (hazard 1)", "X: a\nAction: Command\nActionID: 2\n\n", false, []want{{"Command", "2", ""}}},
		{"mixed line ends", "Action: Ping\nActionID: 3\r\n\n", false, []want{{"Ping", "3", ""}}},
		{"no space after colon", "Action:Ping\r\nActionID:nospace\r\n\r\n", false, []want{{"Ping", "nospace", ""}}},
		{"tab and control bytes skipped", "Action:\t\x01 Ping\r\n\r\n", false, []want{{"Ping", "", ""}}},
		{"trailing blanks kept", "Action: Ping \r\n\r\n", false, []want{{"Ping ", "", ""}}},
		{"space before colon is another key", "Action : Command\r\nAction: Ping\r\n\r\n", false, []want{{"Ping", "", ""}}},
		{"first non-empty action (hazard 4)", "Action:\r\nAction: Ping\r\nAction: Command\r\n\r\n", false, []want{{"Ping", "", ""}}},
		{"empty first ActionID wins", "Action: Ping\r\nActionID:\r\nActionID: 5\r\n\r\n", false, []want{{"Ping", "", ""}}},
		{"case-insensitive keys", "aCtIoN: Ping\r\nactionid: 6\r\n\r\n", false, []want{{"Ping", "6", ""}}},
		{"ActionID is not Action", "ActionID: 7\r\nAction: Ping\r\n\r\n", false, []want{{"Ping", "7", ""}}},
		{"extra blank lines are empty requests", "\r\n\r\nAction: Ping\r\n\r\n\r\n", false,
			[]want{{"", "", ""}, {"", "", ""}, {"Ping", "", ""}, {"", "", ""}}},
		{"pipelined", "Action: Ping\r\nActionID: p1\r\n\r\nAction: Ping\r\nActionID: p2\r\n\r\n", false,
			[]want{{"Ping", "p1", ""}, {"Ping", "p2", ""}}},
		{"NUL-first line ends the message (hazard 2)", "Action: Ping\r\n\x00Action: Command\r\nActionID: 8\r\n\r\n", true,
			[]want{{"Ping", "", ""}, {"", "8", ""}}},
		{"NUL refused when strict", "Action: Ping\x00Command\r\nActionID: 9\r\n\r\n", false,
			[]want{{"Ping", "9", "Failed to parse message: NUL byte in line"}}},
		{"NUL truncates when compat", "Action: Ping\x00Command\r\n\r\n", true, []want{{"Ping", "", ""}}},
		{"bare CR refused when strict", "Action: Ping\rX\r\n\r\n", false, []want{{"Ping\rX", "", "Failed to parse message: bare CR in line"}}},
		{"bare CR kept when compat", "Action: Ping\rX\r\n\r\n", true, []want{{"Ping\rX", "", ""}}},
		{"CR CR LF keeps one CR", "Action: Ping\r\r\n\r\n", true, []want{{"Ping\r", "", ""}}},
		{"1022 bytes + CRLF fit", "Action: Ping\r\nX: " + long(1019) + "\r\n\r\n", false, []want{{"Ping", "", ""}}},
		{"1023 bytes + LF fit Asterisk", "Action: Ping\r\nX: " + long(1020) + "\n\n", true, []want{{"Ping", "", ""}}},
		{"1023 bytes + LF refused: CRLF re-encoding would split the request", "Action: Ping\r\nX: " + long(1020) + "\nAction: Command\n\n", false,
			[]want{{"Ping", "", "Failed to parse message: line too long"}}},
		{"1022 bytes Key:Value refused: the added space would split it", "Action: Ping\r\nX:" + long(1020) + "\r\n\r\n", false,
			[]want{{"Ping", "", "Failed to parse message: line too long"}}},
		{"1022 bytes Key:Value fits Asterisk", "Action: Ping\r\nX:" + long(1020) + "\r\n\r\n", true, []want{{"Ping", "", ""}}},
		{"1023 bytes + CRLF split the request (hazard 3)",
			"Action: Ping\r\nX: " + long(1020) + "\r\nAction: Command\r\nActionID: smuggled\r\n\r\n", false,
			[]want{{"Ping", "", "Failed to parse message: line too long"}, {"Command", "smuggled", ""}}},
		{"1024 bytes + LF too long, remainder is a line",
			"Action: Ping\r\nActionID: a\r\nX: " + long(1021) + "\nAction: Command\r\n\r\n", false,
			[]want{{"Ping", "a", "Failed to parse message: line too long"}}},
		{"very long line", "Action: Ping\r\nX: " + long(5000) + "\r\n\r\nAction: Ping\r\nActionID: next\r\n\r\n", false,
			[]want{{"Ping", "", "Failed to parse message: line too long"}, {"Ping", "next", ""}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := readAllRequests(t, []byte(tt.in), tt.compat)
			if len(got) != len(tt.want) {
				t.Fatalf("read %d messages %v, want %d", len(got), got, len(tt.want))
			}
			for i, w := range tt.want {
				g := got[i]
				if a := g.msg.Action(); a != w.action {
					t.Errorf("message %d: Action() = %q, want %q", i, a, w.action)
				}
				if id := g.msg.ActionID(); id != w.actionID {
					t.Errorf("message %d: ActionID() = %q, want %q", i, id, w.actionID)
				}
				if g.err != w.err {
					t.Errorf("message %d: error %q, want %q", i, g.err, w.err)
				}
			}
			// The reference port of Asterisk must agree on every message.
			checkAgainstReference(t, []byte(tt.in), 0)
		})
	}
}

func TestReadRequestLineLimits(t *testing.T) {
	msg := func(n int) string {
		var b strings.Builder
		b.WriteString("Action: Ping\r\nActionID: lim\r\n")
		for i := 2; i < n; i++ {
			b.WriteString("X: y\r\n")
		}
		b.WriteString("\r\n")
		return b.String()
	}
	tests := []struct {
		lines   int
		wantErr string
	}{
		{127, ""},
		{128, ""},
		{129, "Too many lines in message or allocation failure"},
		{1000, "Too many lines in message or allocation failure"},
	}
	for _, tt := range tests {
		got := readAllRequests(t, []byte(msg(tt.lines)+"Action: Ping\r\n\r\n"), false)
		if len(got) != 2 || got[0].err != tt.wantErr || got[1].err != "" {
			t.Errorf("%d lines: got %v, want first error %q then a good Ping", tt.lines, got, tt.wantErr)
			continue
		}
		if tt.wantErr != "" {
			if n := got[0].msg.Len(); n != MaxHeaders {
				t.Errorf("%d lines: error message keeps %d lines, want %d", tt.lines, n, MaxHeaders)
			}
			if id := got[0].msg.ActionID(); id != "lim" {
				t.Errorf("%d lines: error keeps ActionID %q, want lim", tt.lines, id)
			}
		}
		checkAgainstReference(t, []byte(msg(tt.lines)), 0)
	}
}

// Asterisk leaves its "line too long" state set when the same message also
// had too many lines, so the next message fails too. The Reader keeps that.
func TestReadRequestTooLongStateCarriesOver(t *testing.T) {
	var b strings.Builder
	b.WriteString("Action: Ping\r\nX: " + strings.Repeat("z", 2000) + "\r\n")
	for range 200 {
		b.WriteString("X: y\r\n")
	}
	b.WriteString("\r\nAction: Ping\r\nActionID: after\r\n\r\nAction: Ping\r\n\r\n")
	got := readAllRequests(t, []byte(b.String()), false)
	want := []string{"Too many lines in message or allocation failure", "Failed to parse message: line too long", ""}
	if len(got) != len(want) {
		t.Fatalf("got %d messages, want %d", len(got), len(want))
	}
	for i := range want {
		if got[i].err != want[i] {
			t.Errorf("message %d: error %q, want %q", i, got[i].err, want[i])
		}
	}
	checkAgainstReference(t, []byte(b.String()), 0)
}

func TestReadRequestPartialReads(t *testing.T) {
	in := "Action: Ping\r\nActionID: split\r\n\r\nAction: Ping\nActionID: two\n\n"
	r := NewReader(iotest.OneByteReader(strings.NewReader(in)))
	for _, want := range []string{"split", "two"} {
		m, err := r.ReadMessage()
		if err != nil || m.ActionID() != want {
			t.Fatalf("ReadMessage() = %v, %v; want ActionID %q", m, err, want)
		}
	}
	if _, err := r.ReadMessage(); err != io.EOF {
		t.Errorf("ReadMessage() at end = %v, want io.EOF", err)
	}
}

func TestReadRequestEOF(t *testing.T) {
	r := NewReader(strings.NewReader("Action: Ping\r\nActionID: x\r\n"))
	if _, err := r.ReadMessage(); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("ReadMessage() on a cut message = %v, want io.ErrUnexpectedEOF", err)
	}
}

// The recorded client streams must read the way Asterisk read them.
func TestReadRecordedRequests(t *testing.T) {
	for _, f := range loadRecordings(t, "tcp-") {
		for _, conn := range f.Conns() {
			raw := f.Stream("C->S", conn)
			got := readAllRequests(t, raw, false)
			if len(got) == 0 {
				t.Errorf("%s[%s]: no requests read", f.Name, conn)
			}
			for i, g := range got {
				if g.err != "" {
					t.Errorf("%s[%s]: request %d refused: %s", f.Name, conn, i, g.err)
				}
			}
			checkAgainstReference(t, raw, 7)
		}
	}
}

// Re-encoding what Asterisk sent must give back its bytes exactly: the
// encoder and the reply reader are golden-tested against every recording.
func TestRecordedRepliesRoundTrip(t *testing.T) {
	for _, f := range loadRecordings(t, "tcp-") {
		for _, conn := range f.Conns() {
			raw := f.Stream("S->C", conn)
			r := NewReplyReader(bytes.NewReader(raw))
			banner, err := r.ReadBanner()
			if err != nil || banner != "Asterisk Call Manager/11.0.0" {
				t.Errorf("%s[%s]: ReadBanner() = %q, %v", f.Name, conn, banner, err)
				continue
			}
			out := []byte(banner + "\r\n")
			n := 0
			for {
				m, err := r.ReadMessage()
				if err == io.EOF {
					break
				}
				if err != nil {
					t.Fatalf("%s[%s]: ReadMessage() after %d messages: %v", f.Name, conn, n, err)
				}
				if out, err = Append(out, m); err != nil {
					t.Fatalf("%s[%s]: Append(message %d) = %v", f.Name, conn, n, err)
				}
				n++
			}
			if !bytes.Equal(out, raw) {
				i := firstDiff(out, raw)
				t.Errorf("%s[%s]: re-encoded %d messages differ at byte %d:\n got %q\nwant %q",
					f.Name, conn, n, i, clip(out, i), clip(raw, i))
			}
		}
	}
}

func TestReadReplyFollows(t *testing.T) {
	raw := "Response: Follows\r\nPrivilege: Command\r\nActionID: c1\r\n" +
		"Asterisk 13.38.3 built by root\nline two: with colon\n\nafter blank\n--END COMMAND--\r\n\r\n" +
		"Response: Follows\r\nPrivilege: Command\r\nno newline at end--END COMMAND--\r\n\r\n" +
		"Response: Success\r\nPing: Pong\r\n\r\n"
	r := NewReplyReader(strings.NewReader(raw))
	m, err := r.ReadMessage()
	if err != nil {
		t.Fatal(err)
	}
	if got, want := m.Body(), "Asterisk 13.38.3 built by root\nline two: with colon\n\nafter blank\n"; got != want {
		t.Errorf("Body() = %q, want %q", got, want)
	}
	if m.ActionID() != "c1" || m.Get("Privilege") != "Command" || m.Response() != "Follows" {
		t.Errorf("headers = %v", m.Headers())
	}
	m2, err := r.ReadMessage()
	if err != nil || m2.Body() != "no newline at end" {
		t.Fatalf("second Follows: Body() = %q, %v", m2.Body(), err)
	}
	m3, err := r.ReadMessage()
	if err != nil || m3.Get("Ping") != "Pong" {
		t.Fatalf("message after Follows = %v, %v", m3, err)
	}
	var out []byte
	for _, mm := range []Message{m, m2, m3} {
		if out, err = Append(out, mm); err != nil {
			t.Fatal(err)
		}
	}
	if string(out) != raw {
		t.Errorf("re-encoded Follows replies:\n got %q\nwant %q", out, raw)
	}
}

func TestReadReplyLimits(t *testing.T) {
	huge := "Response: Success\r\nJSON: " + strings.Repeat("j", 200000) + "\r\n\r\n"
	r := NewReplyReader(strings.NewReader(huge + "Response: Success\r\nActionID: ok\r\n\r\n"))
	m, err := r.ReadMessage()
	if err != nil || len(m.Get("JSON")) != 200000 {
		t.Fatalf("long reply line: len %d, %v; want 200000 bytes, no error", len(m.Get("JSON")), err)
	}
	r = NewReplyReader(strings.NewReader(huge + "Response: Success\r\nActionID: ok\r\n\r\n"))
	r.MaxMessage = 1000
	_, err = r.ReadMessage()
	if !errors.Is(err, ErrMessageTooLarge) {
		t.Fatalf("ReadMessage() over MaxMessage = %v, want ErrMessageTooLarge", err)
	}
	m, err = r.ReadMessage()
	if err != nil || m.ActionID() != "ok" {
		t.Errorf("message after an oversized one = %v, %v; want ActionID ok", m, err)
	}
	bare := "Response: Success\r\nNo categories found\r\n\r\n"
	m, err = NewReplyReader(strings.NewReader(bare)).ReadMessage()
	if err != nil || m.Len() != 2 || !m.At(1).Bare() || m.At(1).Value != "No categories found" {
		t.Fatalf("bare line: %v, %v", m.Headers(), err)
	}
	if out, _ := Encode(m); string(out) != bare {
		t.Errorf("Encode(bare) = %q, want %q", out, bare)
	}
	if _, err := NewReplyReader(strings.NewReader("HTTP/1.1 400 Bad\r\n")).ReadBanner(); err != nil {
		// A slash is enough for ReadBanner; it is the caller's job to check the product.
		t.Logf("ReadBanner(HTTP) = %v", err)
	}
	if _, err := NewReplyReader(strings.NewReader("garbage\r\n")).ReadBanner(); !errors.Is(err, ErrBanner) {
		t.Errorf("ReadBanner(garbage) = %v, want ErrBanner", err)
	}
}

// checkAgainstReference reads raw with the Reader (Compat, as Asterisk) and
// with the reference port, and fails on any difference in framing, errors
// or header lookups.
func checkAgainstReference(t testing.TB, raw []byte, chunk int) {
	t.Helper()
	ref := &refSession{in: raw, chunk: chunk}
	got := readAllRequests(t, raw, true)
	for i := 0; ; i++ {
		want, ok := ref.doMessage()
		if !ok {
			if i != len(got) {
				t.Fatalf("Reader read %d messages, Asterisk %d", len(got), i)
			}
			return
		}
		if i >= len(got) {
			t.Fatalf("Reader read %d messages, Asterisk more", len(got))
		}
		g := got[i]
		if g.err != want.errText {
			t.Fatalf("message %d: Reader error %q, Asterisk %q", i, g.err, want.errText)
		}
		if g.msg.Len() != len(want.lines) {
			t.Fatalf("message %d: Reader kept %d lines, Asterisk %d", i, g.msg.Len(), len(want.lines))
		}
		if a, w := g.msg.Action(), refGetHeader(want.lines, "Action", true); a != w {
			t.Fatalf("message %d: Action() = %q, Asterisk reads %q", i, a, w)
		}
		keys := []string{"ActionID", "Username", "Secret", "Events", "Channel", "Command", "Application", "Data", "Variable", "X"}
		for _, line := range want.lines {
			if k, _, ok := strings.Cut(line, ":"); ok && k != "" {
				keys = append(keys, k, strings.ToUpper(k))
			}
		}
		for _, k := range keys {
			if !validKey(k) {
				continue
			}
			if v, w := g.msg.Get(k), refGetHeader(want.lines, k, false); v != w {
				t.Fatalf("message %d: Get(%q) = %q, Asterisk reads %q", i, k, v, w)
			}
		}
	}
}

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

func clip(b []byte, i int) []byte {
	lo := max(0, i-40)
	return b[lo:min(len(b), i+40)]
}
