package rawman

import (
	"fmt"
	"io"
	"strings"
)

// Writer writes AMI messages as CRLF frames.
//
// Create one with NewWriter. Each WriteMessage call validates the whole
// message first and then issues exactly one Write, so a refused message
// writes nothing and a reply never reaches the peer in pieces. A Writer is
// not safe for concurrent use.
type Writer struct {
	w   io.Writer
	buf []byte
}

// NewWriter returns a Writer that writes to w.
func NewWriter(w io.Writer) *Writer { return &Writer{w: w} }

// WriteBanner writes the one-line greeting "Asterisk Call Manager/<version>"
// in its own Write, as Asterisk does before reading anything.
func (w *Writer) WriteBanner(version string) error {
	if strings.ContainsAny(version, "\r\n\x00") {
		return fmt.Errorf("%w: banner version %q", ErrInvalidValue, version)
	}
	w.buf = append(append(append(w.buf[:0], "Asterisk Call Manager/"...), version...), "\r\n"...)
	_, err := w.w.Write(w.buf)
	return err
}

// WriteMessage writes m in one Write call. It refuses, writing nothing, a
// message with CR, LF or NUL inside a key or value.
func (w *Writer) WriteMessage(m Message) error {
	b, err := Append(w.buf[:0], m)
	if err != nil {
		return err
	}
	w.buf = b
	_, err = w.w.Write(b)
	return err
}

// Write writes pre-encoded bytes (from Append) in one Write call.
func (w *Writer) Write(p []byte) (int, error) { return w.w.Write(p) }

// Append appends the AMI encoding of m to dst: "Key: Value\r\n" per line,
// bare lines as they are, a "Response: Follows" body followed by
// "--END COMMAND--", and a final "\r\n". On error it returns dst unchanged.
// Encoding once and sharing the bytes is how events are fanned out.
func Append(dst []byte, m Message) ([]byte, error) {
	return appendMessage(dst, m, true)
}

// AppendRequest is Append for a request sent to Asterisk: it also refuses,
// leaving dst unchanged, a message Asterisk's input side would read
// differently — more than MaxHeaders lines or a line longer than
// MaxRequestLine — and a Follows body, which only replies carry.
func AppendRequest(dst []byte, m Message) ([]byte, error) {
	if m.n() > MaxHeaders {
		return dst, fmt.Errorf("%w: %d lines", ErrTooManyLines, m.n())
	}
	if m.body != "" {
		return dst, fmt.Errorf("%w: a request cannot carry command output", ErrInvalidValue)
	}
	for i := range m.n() {
		h := m.line(i)
		n := len(h.Value)
		if h.Key != "" {
			n += len(h.Key) + 2
		}
		if n > MaxRequestLine {
			return dst, fmt.Errorf("%w: %d-byte line %q", ErrLineTooLong, n, h.Key)
		}
	}
	return appendMessage(dst, m, true)
}

// Encode returns the AMI encoding of m.
func Encode(m Message) ([]byte, error) { return Append(nil, m) }

func appendMessage(dst []byte, m Message, check bool) ([]byte, error) {
	if check {
		for i := range m.n() {
			h := m.line(i)
			if !cleanValue(h.Value) || (h.Key != "" && !validKey(h.Key)) {
				if h.Key == "" {
					return dst, fmt.Errorf("%w: %q", ErrInvalidValue, h.Value)
				}
				return dst, checkHeader(h.Key, h.Value)
			}
		}
		if strings.Contains(m.body, "\x00") {
			return dst, fmt.Errorf("%w: NUL in command output", ErrInvalidValue)
		}
	}
	for i := range m.n() {
		h := m.line(i)
		if h.Key != "" {
			dst = append(dst, h.Key...)
			dst = append(dst, ':', ' ')
		}
		dst = append(dst, h.Value...)
		dst = append(dst, '\r', '\n')
	}
	if m.body != "" || m.Response() == "Follows" {
		dst = append(dst, m.body...)
		dst = append(dst, endCommand...)
		dst = append(dst, '\r', '\n')
	}
	return append(dst, '\r', '\n'), nil
}

// cleanValue reports whether v has no CR, LF or NUL. A byte loop beats
// strings.ContainsAny on the short values AMI carries.
func cleanValue(v string) bool {
	for i := 0; i < len(v); i++ {
		if c := v[i]; c <= '\r' && (c == '\r' || c == '\n' || c == 0) {
			return false
		}
	}
	return true
}
