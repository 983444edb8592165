package rawman

import (
	"errors"
	"fmt"
	"strings"
)

// Header is one line of a Message.
//
// A line that carried no colon (which Asterisk itself emits in a few places,
// for example "No categories found" from GetConfig) is kept with an empty Key
// and the whole line in Value; such a "bare" line is never matched by Get and
// is written back exactly as it was.
type Header struct {
	Key   string
	Value string
}

// Bare reports whether h is a line without a colon.
func (h Header) Bare() bool { return h.Key == "" }

// Message is one AMI packet: ordered "Key: Value" lines, duplicates kept in
// order. Lookups match keys case-insensitively and return the first match,
// exactly as Asterisk's astman_get_header does.
//
// The zero value is an empty message ready to use. A Message is a value with
// an internal slice: copy it with Clone before changing a copy that another
// goroutine may read. Methods that change a Message need a pointer.
type Message struct {
	// A message read from the wire keeps its lines as offsets into one
	// string (src, sp): no pointers per line, so parsing costs two
	// allocations and nothing for the garbage collector to scan. The first
	// edit turns them into h.
	src  string
	sp   []span
	h    []Header
	body string // raw output of a "Response: Follows" reply (Asterisk <= 13)
}

// span locates one line in Message.src; k1 == bareSpan marks a bare line.
type span struct{ k0, k1, v0, v1 uint32 }

const bareSpan = ^uint32(0)

func (m *Message) n() int {
	if m.sp != nil {
		return len(m.sp)
	}
	return len(m.h)
}

func (m *Message) line(i int) Header {
	if m.sp != nil {
		s := m.sp[i]
		if s.k1 == bareSpan {
			return Header{Value: m.src[s.v0:s.v1]}
		}
		return Header{Key: m.src[s.k0:s.k1], Value: m.src[s.v0:s.v1]}
	}
	return m.h[i]
}

// key returns the key of line i without building a Header.
func (m *Message) key(i int) string {
	if m.sp != nil {
		s := m.sp[i]
		if s.k1 == bareSpan {
			return ""
		}
		return m.src[s.k0:s.k1]
	}
	return m.h[i].Key
}

// materialize turns spans into headers before an edit.
func (m *Message) materialize() {
	if m.sp == nil {
		return
	}
	h := make([]Header, len(m.sp), len(m.sp)+2)
	for i := range m.sp {
		h[i] = m.line(i)
	}
	m.h, m.sp, m.src = h, nil, ""
}

// Errors returned when building messages.
var (
	// ErrInvalidKey reports a header name that cannot be sent: empty, or
	// containing a colon, CR, LF or NUL.
	ErrInvalidKey = errors.New("rawman: invalid header name")
	// ErrInvalidValue reports a header value containing CR, LF or NUL,
	// which would let it inject lines into the AMI stream.
	ErrInvalidValue = errors.New("rawman: invalid header value")
)

// New builds a message from key/value pairs. It panics if kv has an odd
// length or a pair is invalid; it is meant for literals in code and tests.
func New(kv ...string) Message {
	if len(kv)%2 != 0 {
		panic("rawman: New needs key/value pairs")
	}
	m := Message{h: make([]Header, 0, len(kv)/2)}
	for i := 0; i < len(kv); i += 2 {
		if err := m.Add(kv[i], kv[i+1]); err != nil {
			panic(err)
		}
	}
	return m
}

// Len returns the number of lines in m.
func (m Message) Len() int { return m.n() }

// At returns the i-th line of m. It panics if i is out of range.
func (m Message) At(i int) Header { return m.line(i) }

// Headers returns a copy of m's lines.
func (m Message) Headers() []Header {
	out := make([]Header, m.n())
	for i := range out {
		out[i] = m.line(i)
	}
	return out
}

// All returns an iterator over m's lines in order.
func (m Message) All() func(yield func(int, Header) bool) {
	return func(yield func(int, Header) bool) {
		for i := range m.n() {
			if !yield(i, m.line(i)) {
				return
			}
		}
	}
}

// Body returns the raw output carried by a "Response: Follows" reply
// (Asterisk 13 and older), without the "--END COMMAND--" marker.
func (m Message) Body() string { return m.body }

// SetBody sets the raw output of a "Response: Follows" reply. It is written
// after the headers and followed by "--END COMMAND--".
func (m *Message) SetBody(b string) { m.body = b }

// Get returns the value of the first line whose key equals key, ignoring
// case, or "" if there is none. Like Asterisk, it returns the first match
// even if that value is empty.
func (m Message) Get(key string) string {
	v, _ := m.Lookup(key)
	return v
}

// Lookup is like Get and also reports whether a matching line exists.
func (m Message) Lookup(key string) (string, bool) {
	if key == "" {
		return "", false
	}
	for i := range m.n() {
		if asciiEqualFold(m.key(i), key) {
			return m.line(i).Value, true
		}
	}
	return "", false
}

// Values returns the values of every line whose key equals key, ignoring
// case, in order (Variable, Output, ChanVariable …).
func (m Message) Values(key string) []string {
	var vs []string
	for i := range m.n() {
		if key != "" && asciiEqualFold(m.key(i), key) {
			vs = append(vs, m.line(i).Value)
		}
	}
	return vs
}

// Count returns how many lines have the key, ignoring case.
func (m Message) Count(key string) int {
	n := 0
	for i := range m.n() {
		if key != "" && asciiEqualFold(m.key(i), key) {
			n++
		}
	}
	return n
}

// Action returns the action name the way Asterisk picks it: the value of
// the first Action line whose value is not empty.
func (m Message) Action() string {
	for i := range m.n() {
		if asciiEqualFold(m.key(i), "Action") {
			if v := m.line(i).Value; v != "" {
				return v
			}
		}
	}
	return ""
}

// ActionID returns the first ActionID value, which may be empty.
func (m Message) ActionID() string { return m.Get("ActionID") }

// Add appends a line. It refuses a key that is empty or holds a colon, CR,
// LF or NUL, and a value that holds CR, LF or NUL.
func (m *Message) Add(key, value string) error {
	if err := checkHeader(key, value); err != nil {
		return err
	}
	m.materialize()
	m.h = append(m.h, Header{Key: key, Value: value})
	return nil
}

// AddBare appends a line without a colon, such as the "No categories
// found" line of GetConfig. The line may not contain CR, LF or NUL.
func (m *Message) AddBare(line string) error {
	if strings.ContainsAny(line, "\r\n\x00") {
		return fmt.Errorf("%w: %q", ErrInvalidValue, line)
	}
	m.materialize()
	m.h = append(m.h, Header{Value: line})
	return nil
}

// Set replaces the value of the first line with the key (ignoring case)
// and removes every later line with the same key; without such a line it
// appends one.
func (m *Message) Set(key, value string) error {
	if err := checkHeader(key, value); err != nil {
		return err
	}
	m.materialize()
	found := false
	out := m.h[:0]
	for _, h := range m.h {
		if asciiEqualFold(h.Key, key) {
			if found {
				continue
			}
			found = true
			h.Value = value
		}
		out = append(out, h)
	}
	m.h = out
	if !found {
		m.h = append(m.h, Header{Key: key, Value: value})
	}
	return nil
}

// Insert puts a line at index i, shifting later lines. It panics if i is
// out of range [0, Len()].
func (m *Message) Insert(i int, key, value string) error {
	if err := checkHeader(key, value); err != nil {
		return err
	}
	m.materialize()
	m.h = append(m.h, Header{})
	copy(m.h[i+1:], m.h[i:])
	m.h[i] = Header{Key: key, Value: value}
	return nil
}

// Del removes every line with the key, ignoring case, and reports how many
// it removed.
func (m *Message) Del(key string) int {
	if m.Count(key) == 0 {
		return 0
	}
	m.materialize()
	n := 0
	out := m.h[:0]
	for _, h := range m.h {
		if key != "" && asciiEqualFold(h.Key, key) {
			n++
			continue
		}
		out = append(out, h)
	}
	clear(m.h[len(out):])
	m.h = out
	return n
}

// Clone returns a deep copy of m that shares no memory with it.
func (m Message) Clone() Message {
	return Message{src: m.src, sp: append([]span(nil), m.sp...), h: append([]Header(nil), m.h...), body: m.body}
}

// Kind tells what a message is, from its first line, the way clients and
// Asterisk itself classify messages (an OriginateResponse event also
// carries a Response header further down; only the first line counts).
type Kind int

// Message kinds.
const (
	KindOther    Kind = iota // neither a response nor an event
	KindResponse             // first line is "Response: …"
	KindEvent                // first line is "Event: …"
	KindAction               // first non-empty Action line present (a request)
)

// Kind classifies m by its first line.
func (m Message) Kind() Kind {
	if m.n() == 0 {
		return KindOther
	}
	switch k := m.key(0); {
	case asciiEqualFold(k, "Response"):
		return KindResponse
	case asciiEqualFold(k, "Event"):
		return KindEvent
	}
	if m.Action() != "" {
		return KindAction
	}
	return KindOther
}

// IsResponse reports whether m's first line is a Response line.
func (m Message) IsResponse() bool { return m.Kind() == KindResponse }

// IsEvent reports whether m's first line is an Event line.
func (m Message) IsEvent() bool { return m.Kind() == KindEvent }

// Response returns the value of the first line when it is a Response line
// ("Success", "Error", "Goodbye", "Follows"), or "".
func (m Message) Response() string {
	if m.Kind() != KindResponse {
		return ""
	}
	return m.line(0).Value
}

// Event returns the event name when m is an event, or "".
func (m Message) Event() string {
	if m.Kind() != KindEvent {
		return ""
	}
	return m.line(0).Value
}

// IsListStart reports whether m is the acknowledgement that opens a list
// reply ("EventList: start"; FAXSessions says "Start", so case is ignored).
func (m Message) IsListStart() bool {
	return m.IsResponse() && asciiEqualFold(m.Get("EventList"), "start")
}

// IsListComplete reports whether m is the event that closes a list reply
// ("EventList: Complete").
func (m Message) IsListComplete() bool {
	return m.IsEvent() && asciiEqualFold(m.Get("EventList"), "complete")
}

// ListItems returns the ListItems count of a list-complete event and
// whether it was present and numeric.
func (m Message) ListItems() (int, bool) {
	v, ok := m.Lookup("ListItems")
	if !ok || v == "" {
		return 0, false
	}
	n := 0
	for i := 0; i < len(v); i++ {
		c := v[i]
		if c < '0' || c > '9' || n > (1<<31)/10 {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	return n, true
}

// String renders m as AMI text (CRLF lines and a final blank line), for
// logs and tests. It does not validate; use Writer or Append to send.
func (m Message) String() string {
	b, _ := appendMessage(nil, m, false)
	return string(b)
}

func checkHeader(key, value string) error {
	if !validKey(key) {
		return fmt.Errorf("%w: %q", ErrInvalidKey, key)
	}
	if strings.ContainsAny(value, "\r\n\x00") {
		return fmt.Errorf("%w for %s: %q", ErrInvalidValue, key, value)
	}
	return nil
}

func validKey(k string) bool {
	if k == "" {
		return false
	}
	for i := 0; i < len(k); i++ {
		switch k[i] {
		case ':', '\r', '\n', 0:
			return false
		}
	}
	return true
}
