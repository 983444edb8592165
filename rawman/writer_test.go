package rawman

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

// countingWriter records each Write call separately.
type countingWriter struct{ writes [][]byte }

func (w *countingWriter) Write(p []byte) (int, error) {
	w.writes = append(w.writes, append([]byte(nil), p...))
	return len(p), nil
}

func TestWriterOneWritePerMessage(t *testing.T) {
	cw := &countingWriter{}
	w := NewWriter(cw)
	if err := w.WriteBanner("11.0.0"); err != nil {
		t.Fatal(err)
	}
	m := New("Response", "Success", "ActionID", "login-1", "Message", "Authentication accepted")
	if err := w.WriteMessage(m); err != nil {
		t.Fatal(err)
	}
	want := []string{
		"Asterisk Call Manager/11.0.0\r\n",
		"Response: Success\r\nActionID: login-1\r\nMessage: Authentication accepted\r\n\r\n",
	}
	if len(cw.writes) != len(want) {
		t.Fatalf("%d writes, want %d", len(cw.writes), len(want))
	}
	for i := range want {
		if string(cw.writes[i]) != want[i] {
			t.Errorf("write %d = %q, want %q", i, cw.writes[i], want[i])
		}
	}
}

func TestWriterRefusesInjection(t *testing.T) {
	tests := []struct {
		name string
		m    Message
		want error
	}{
		{"CRLF in value", Message{h: []Header{{"Action", "Ping"}, {"ActionID", "x\r\nAction: Command"}}}, ErrInvalidValue},
		{"LF in value", Message{h: []Header{{"ActionID", "x\nEvent: Fake"}}}, ErrInvalidValue},
		{"CR in value", Message{h: []Header{{"ActionID", "x\r"}}}, ErrInvalidValue},
		{"NUL in value", Message{h: []Header{{"ActionID", "x\x00"}}}, ErrInvalidValue},
		{"colon in key", Message{h: []Header{{"Action: Command\r\nX", "y"}}}, ErrInvalidKey},
		{"LF in key", Message{h: []Header{{"X\nY", "y"}}}, ErrInvalidKey},
		{"LF in bare line", Message{h: []Header{{"", "a\nb"}}}, ErrInvalidValue},
		{"NUL in body", Message{h: []Header{{"Response", "Follows"}}, body: "a\x00"}, ErrInvalidValue},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cw := &countingWriter{}
			err := NewWriter(cw).WriteMessage(tt.m)
			if !errors.Is(err, tt.want) {
				t.Errorf("WriteMessage() = %v, want %v", err, tt.want)
			}
			if len(cw.writes) != 0 {
				t.Errorf("WriteMessage() wrote %q despite the error", cw.writes)
			}
			if dst, err := Append([]byte("keep"), tt.m); err == nil || string(dst) != "keep" {
				t.Errorf("Append() = %q, %v; want dst unchanged and an error", dst, err)
			}
		})
	}
	if err := NewWriter(&countingWriter{}).WriteBanner("1.0\r\nEvent: x"); !errors.Is(err, ErrInvalidValue) {
		t.Errorf("WriteBanner(injection) = %v, want ErrInvalidValue", err)
	}
}

func TestMessageEditing(t *testing.T) {
	var m Message
	for _, kv := range [][2]string{{"Action", "Originate"}, {"Variable", "a=1"}, {"variable", "b=2"}, {"ActionID", "1"}} {
		if err := m.Add(kv[0], kv[1]); err != nil {
			t.Fatal(err)
		}
	}
	if got := m.Values("VARIABLE"); len(got) != 2 || got[0] != "a=1" || got[1] != "b=2" {
		t.Errorf("Values(VARIABLE) = %q, want [a=1 b=2]", got)
	}
	c := m.Clone()
	if err := m.Set("actionid", "proxy.1"); err != nil {
		t.Fatal(err)
	}
	if m.ActionID() != "proxy.1" || c.ActionID() != "1" {
		t.Errorf("after Set: ActionID %q, clone %q; want proxy.1 and 1", m.ActionID(), c.ActionID())
	}
	if n := m.Del("Variable"); n != 2 || m.Len() != 2 {
		t.Errorf("Del(Variable) = %d, Len() = %d; want 2 and 2", n, m.Len())
	}
	if err := m.Insert(1, "Channel", "Local/100@lab"); err != nil || m.At(1).Key != "Channel" {
		t.Errorf("Insert: %v, %v", err, m.Headers())
	}
	if err := m.Add("Bad", "x\r\ny"); !errors.Is(err, ErrInvalidValue) {
		t.Errorf("Add(CRLF) = %v, want ErrInvalidValue", err)
	}
	if err := m.Set("", "x"); !errors.Is(err, ErrInvalidKey) {
		t.Errorf("Set(empty key) = %v, want ErrInvalidKey", err)
	}
	if m.Get("\u212aey") != "" { // Kelvin sign must not fold to k
		t.Error("Get matched a non-ASCII key")
	}
	if err := m.Set("Key", "v"); err != nil || m.Get("\u212aEY") != "" || m.Get("KEY") != "v" {
		t.Errorf("Get folding: %q %q", m.Get("\u212aEY"), m.Get("KEY"))
	}
}

func TestMessageKinds(t *testing.T) {
	tests := []struct {
		name     string
		m        Message
		kind     Kind
		start    bool
		complete bool
	}{
		{"response", New("Response", "Success", "Message", "x"), KindResponse, false, false},
		{"event", New("Event", "Newchannel", "Privilege", "call,all"), KindEvent, false, false},
		{"OriginateResponse is an event", New("Event", "OriginateResponse", "Response", "Success"), KindEvent, false, false},
		{"list start", New("Response", "Success", "EventList", "start"), KindResponse, true, false},
		{"FAXSessions Start", New("Response", "Success", "EventList", "Start"), KindResponse, true, false},
		{"list complete", New("Event", "CoreShowChannelsComplete", "EventList", "Complete", "ListItems", "2"), KindEvent, false, true},
		{"action", New("id", "0", "Action", "Ping"), KindAction, false, false},
		{"empty", Message{}, KindOther, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if k := tt.m.Kind(); k != tt.kind {
				t.Errorf("Kind() = %v, want %v", k, tt.kind)
			}
			if s := tt.m.IsListStart(); s != tt.start {
				t.Errorf("IsListStart() = %v, want %v", s, tt.start)
			}
			if c := tt.m.IsListComplete(); c != tt.complete {
				t.Errorf("IsListComplete() = %v, want %v", c, tt.complete)
			}
		})
	}
	if n, ok := New("Event", "X", "ListItems", "42").ListItems(); n != 42 || !ok {
		t.Errorf("ListItems() = %d, %v; want 42, true", n, ok)
	}
	if _, ok := New("Event", "X", "ListItems", "4x").ListItems(); ok {
		t.Error("ListItems() accepted 4x")
	}
}

func TestStringMatchesAppend(t *testing.T) {
	m := New("Response", "Success", "Ping", "Pong")
	b, _ := Encode(m)
	if m.String() != string(b) || !bytes.HasSuffix(b, []byte("\r\n\r\n")) || strings.Count(m.String(), "\r\n") != 3 {
		t.Errorf("String() = %q, Encode = %q", m.String(), b)
	}
}

func TestAppendRequestLimits(t *testing.T) {
	long := strings.Repeat("v", MaxRequestLine-len("X: "))
	ok := New("Action", "Ping", "X", long)
	if _, err := AppendRequest(nil, ok); err != nil {
		t.Errorf("AppendRequest(1022-byte line) = %v, want nil", err)
	}
	tooLong := New("Action", "Ping", "X", long+"v")
	if dst, err := AppendRequest([]byte("k"), tooLong); !errors.Is(err, ErrLineTooLong) || string(dst) != "k" {
		t.Errorf("AppendRequest(1023-byte line) = %q, %v; want dst unchanged, ErrLineTooLong", dst, err)
	}
	var many Message
	for range MaxHeaders + 1 {
		_ = many.Add("X", "y")
	}
	if _, err := AppendRequest(nil, many); !errors.Is(err, ErrTooManyLines) {
		t.Errorf("AppendRequest(129 lines) = %v, want ErrTooManyLines", err)
	}
	// A reply may have any number of lines of any length.
	if _, err := Append(nil, many); err != nil {
		t.Errorf("Append(129 lines) = %v, want nil", err)
	}
}
