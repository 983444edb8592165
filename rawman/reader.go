package rawman

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
)

// Limits of Asterisk's AMI input side (main/manager.c), which a Reader in
// request mode reproduces exactly.
const (
	// MaxLineLen is the usable size of Asterisk's per-session input buffer
	// (char inbuf[1025]). A line is accepted when its LF arrives within the
	// first MaxLineLen buffered bytes: at most 1022 bytes before CRLF, or
	// 1023 before a bare LF.
	MaxLineLen = 1024
	// MaxHeaders is AST_MAX_MANHEADERS: a request with more lines fails.
	MaxHeaders = 128
	// MaxRequestLine is the longest line Asterisk accepts when it ends in
	// CRLF, as every line amiproxy sends does. The strict Reader refuses a
	// line whose canonical form ("Key: Value") would be longer, so that
	// re-encoding a request can never make Asterisk split it differently.
	MaxRequestLine = MaxLineLen - 2
	// DefaultMaxMessage bounds one message read from a PBX. Asterisk puts
	// no limit on its output lines; the bound only keeps memory finite.
	DefaultMaxMessage = 16 << 20
)

// Framing errors. A Reader returns them wrapped in a *FrameError after it
// has consumed the whole offending message, so the stream stays in step
// with the way Asterisk splits it.
var (
	// ErrLineTooLong: a line did not end within MaxLineLen bytes. Asterisk
	// answers "Failed to parse message: line too long".
	ErrLineTooLong = errors.New("rawman: line too long")
	// ErrTooManyLines: more than MaxHeaders lines. Asterisk answers "Too
	// many lines in message or allocation failure" and runs nothing.
	ErrTooManyLines = errors.New("rawman: too many lines in message")
	// ErrNUL: a NUL byte inside a line. Asterisk silently truncates the
	// line there (and a line starting with NUL ends the message), so the
	// request is ambiguous.
	ErrNUL = errors.New("rawman: NUL byte in line")
	// ErrBareCR: a CR not followed by LF inside a line. Asterisk keeps it
	// in the value, which other parsers read as a line break.
	ErrBareCR = errors.New("rawman: bare CR in line")
	// ErrMessageTooLarge: a message from the PBX exceeded MaxMessage bytes.
	ErrMessageTooLarge = errors.New("rawman: message too large")
	// ErrBanner: the first line from a PBX was not an AMI banner.
	ErrBanner = errors.New("rawman: not an AMI banner")
)

// FrameError reports a message that was read but cannot be used as is.
// Message holds the lines collected before the error (at most MaxHeaders),
// so a reply can echo its ActionID the way Asterisk does.
type FrameError struct {
	Err     error
	Message Message
}

func (e *FrameError) Error() string {
	if id := e.Message.ActionID(); id != "" {
		return fmt.Sprintf("%v (ActionID %q)", e.Err, id)
	}
	return e.Err.Error()
}

func (e *FrameError) Unwrap() error { return e.Err }

// Reply is the Message text Asterisk (or, for the hazards Asterisk does not
// detect, amiproxy) sends in the "Response: Error" for this error.
func (e *FrameError) Reply() string {
	switch {
	case errors.Is(e.Err, ErrTooManyLines):
		return "Too many lines in message or allocation failure"
	case errors.Is(e.Err, ErrLineTooLong):
		return "Failed to parse message: line too long"
	case errors.Is(e.Err, ErrNUL):
		return "Failed to parse message: NUL byte in line"
	case errors.Is(e.Err, ErrBareCR):
		return "Failed to parse message: bare CR in line"
	case errors.Is(e.Err, ErrMessageTooLarge):
		return "Failed to parse message: message too large"
	}
	return "Failed to parse message"
}

// Mode selects which side of the AMI conversation a Reader parses.
type Mode int

const (
	// Requests parses what a client sends to Asterisk, with Asterisk's
	// input rules: 1024-byte line window, 128 lines, values with leading
	// bytes below 0x21 skipped, NUL and bare CR reported.
	Requests Mode = iota
	// Replies parses what Asterisk sends: a banner, responses and events
	// with lines of any length, values after exactly one optional space,
	// bare lines kept, and "Response: Follows" bodies up to
	// "--END COMMAND--" (Asterisk 13 and older).
	Replies
)

// Reader reads AMI messages from a byte stream.
//
// Create one with NewReader or NewReplyReader. A Reader is not safe for
// concurrent use; it owns no goroutines. It never panics on any input and
// never holds more than one message (bounded by MaxLineLen×MaxHeaders in
// Requests mode and MaxMessage in Replies mode) in memory.
type Reader struct {
	// Compat, in Requests mode, accepts NUL and bare CR exactly as Asterisk
	// does (truncating at NUL, keeping the CR) instead of reporting
	// ErrNUL and ErrBareCR. The simulated PBX uses it; the proxy must not.
	Compat bool
	// MaxMessage bounds a message in Replies mode. Zero means
	// DefaultMaxMessage.
	MaxMessage int

	mode    Mode
	br      *bufio.Reader
	tooLong bool // Asterisk's s->parsing == MESSAGE_LINE_TOO_LONG; survives a too-many-lines reply
	buf     []byte
	offs    []int32 // per line: start of key, end of key (or -1), start of value, end of value
}

// opaqueReader hides a caller's *bufio.Reader so bufio.NewReaderSize cannot
// reuse a buffer of another size: the window size is part of the framing.
type opaqueReader struct{ io.Reader }

// NewReader returns a Reader in Requests mode, for what clients send.
func NewReader(r io.Reader) *Reader {
	return &Reader{mode: Requests, br: bufio.NewReaderSize(opaqueReader{r}, MaxLineLen)}
}

// NewReplyReader returns a Reader in Replies mode, for what a PBX sends.
func NewReplyReader(r io.Reader) *Reader {
	return &Reader{mode: Replies, br: bufio.NewReaderSize(opaqueReader{r}, 64<<10)}
}

// Buffered returns the number of bytes read from the stream but not yet
// consumed.
func (r *Reader) Buffered() int { return r.br.Buffered() }

// ReadBanner reads the first line a PBX sends ("Asterisk Call
// Manager/11.0.0") and returns it without its line ending.
func (r *Reader) ReadBanner() (string, error) {
	line, err := r.readLongLine(4096)
	if err != nil {
		if errors.Is(err, ErrMessageTooLarge) {
			return "", fmt.Errorf("%w: first line longer than 4096 bytes", ErrBanner)
		}
		return "", err
	}
	s := string(line)
	if !strings.Contains(s, "/") {
		return "", fmt.Errorf("%w: %q", ErrBanner, s)
	}
	return s, nil
}

// ReadMessage reads the next message. It returns io.EOF at a clean end of
// stream and io.ErrUnexpectedEOF inside a message. A *FrameError means the
// message was consumed but must be refused; reading may go on.
//
// In Requests mode a blank line with no lines before it yields an empty
// Message and no error: Asterisk answers it with "Missing action in
// request".
func (r *Reader) ReadMessage() (Message, error) {
	if r.mode == Replies {
		return r.readReply()
	}
	return r.readRequest()
}

func (r *Reader) readRequest() (Message, error) {
	r.buf = r.buf[:0]
	r.offs = r.offs[:0]
	var hazard error
	lost := false // Asterisk's hdr_loss
	n := 0
	for {
		line, err := r.br.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			// No LF among MaxLineLen buffered bytes: Asterisk throws
			// them away but the last, which starts the next line.
			_ = r.br.UnreadByte()
			r.tooLong = true
			continue
		}
		if err != nil {
			if err == io.EOF && n == 0 && len(line) == 0 && !r.tooLong {
				return Message{}, io.EOF
			}
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return Message{}, err
		}
		line = line[:len(line)-1]
		if k := len(line) - 1; k >= 0 && line[k] == '\r' {
			line = line[:k]
		}
		if i := bytes.IndexByte(line, 0); i >= 0 {
			if !r.Compat && hazard == nil {
				hazard = ErrNUL
			}
			line = line[:i]
		}
		if len(line) == 0 {
			break
		}
		if !r.Compat && hazard == nil && bytes.IndexByte(line, '\r') >= 0 {
			hazard = ErrBareCR
		}
		if n >= MaxHeaders {
			lost = true
			continue
		}
		n++
		r.addLine(line, true)
		if !r.Compat && hazard == nil && r.canonicalLen() > MaxRequestLine {
			hazard = errCanonicalTooLong
		}
	}
	m := r.build()
	switch {
	case lost:
		// Asterisk leaves the too-long state set in this case, so the next
		// message fails as well; keep that quirk.
		return Message{}, &FrameError{Err: ErrTooManyLines, Message: m}
	case r.tooLong:
		r.tooLong = false
		return Message{}, &FrameError{Err: ErrLineTooLong, Message: m}
	case hazard != nil:
		return Message{}, &FrameError{Err: hazard, Message: m}
	}
	return m, nil
}

// errCanonicalTooLong: a line Asterisk accepts as sent (1023 bytes before a
// bare LF, or "Key:Value" without a space) but whose canonical CRLF form is
// too long for it, so forwarding it would split the request.
var errCanonicalTooLong = fmt.Errorf("%w: canonical form longer than %d bytes", ErrLineTooLong, MaxRequestLine)

// canonicalLen is the length of the last recorded line as Append writes it.
func (r *Reader) canonicalLen() int {
	o := r.offs[len(r.offs)-4:]
	if o[1] < 0 {
		return int(o[3] - o[2])
	}
	return int(o[1]-o[0]) + 2 + int(o[3]-o[2])
}

// addLine records one line: key before the first colon, value after it.
// In request mode leading bytes below 0x21 of the value are skipped, as
// astman_get_header does; in reply mode one optional space is.
func (r *Reader) addLine(line []byte, request bool) {
	start := int32(len(r.buf))
	r.buf = append(r.buf, line...)
	c := bytes.IndexByte(line, ':')
	if c <= 0 {
		// No colon, or an empty key (":Action: x"): no lookup can match it,
		// so keep the whole line as a bare line. Splitting ":Action: x"
		// into an empty key would re-encode it as "Action: x".
		r.offs = append(r.offs, start, -1, start, int32(len(r.buf)))
		return
	}
	v := c + 1
	if request {
		for v < len(line) && line[v] < 0x21 {
			v++
		}
	} else if v < len(line) && line[v] == ' ' {
		v++
	}
	r.offs = append(r.offs, start, start+int32(c), start+int32(v), int32(len(r.buf)))
}

// build turns the collected lines into a Message with two allocations: one
// string holding every line and one header slice.
func (r *Reader) build() Message {
	if len(r.offs) == 0 {
		return Message{}
	}
	return r.buildFrom(string(r.buf))
}

// buildFrom makes a Message whose lines are the spans recorded in r.offs
// over s.
func (r *Reader) buildFrom(s string) Message {
	sp := make([]span, len(r.offs)/4)
	for i := range sp {
		o := r.offs[i*4 : i*4+4]
		if o[1] < 0 {
			sp[i] = span{k1: bareSpan, v0: uint32(o[2]), v1: uint32(o[3])}
			continue
		}
		sp[i] = span{k0: uint32(o[0]), k1: uint32(o[1]), v0: uint32(o[2]), v1: uint32(o[3])}
	}
	return Message{src: s, sp: sp}
}

func (r *Reader) maxMessage() int {
	if r.MaxMessage > 0 {
		return r.MaxMessage
	}
	return DefaultMaxMessage
}

// readLongLine reads one line of any length up to max bytes, without its
// LF or CRLF. Past max it discards the rest of the line and reports
// ErrMessageTooLarge.
func (r *Reader) readLongLine(max int) ([]byte, error) {
	line, err := r.br.ReadSlice('\n')
	if err == nil {
		return trimEOL(line), nil
	}
	if !errors.Is(err, bufio.ErrBufferFull) {
		if err == io.EOF && len(line) > 0 {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	acc := append([]byte(nil), line...)
	over := false
	for {
		line, err = r.br.ReadSlice('\n')
		if !over {
			if len(acc)+len(line) > max {
				over = true
				acc = acc[:0]
			} else {
				acc = append(acc, line...)
			}
		}
		if err == nil {
			break
		}
		if !errors.Is(err, bufio.ErrBufferFull) {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return nil, err
		}
	}
	if over {
		return nil, ErrMessageTooLarge
	}
	return trimEOL(acc), nil
}

func trimEOL(line []byte) []byte {
	line = line[:len(line)-1]
	if k := len(line) - 1; k >= 0 && line[k] == '\r' {
		line = line[:k]
	}
	return line
}

const endCommand = "--END COMMAND--"

func (r *Reader) readReply() (Message, error) {
	if m, ok := r.fastReply(); ok {
		return m, nil
	}
	r.buf = r.buf[:0]
	r.offs = r.offs[:0]
	max := r.maxMessage()
	size := 0
	over := false
	follows := false
	for {
		line, err := r.readLongLine(max)
		if errors.Is(err, ErrMessageTooLarge) {
			over = true
			continue
		}
		if err != nil {
			if err == io.EOF && len(r.offs) == 0 && !over {
				return Message{}, io.EOF
			}
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return Message{}, err
		}
		if len(line) == 0 {
			if len(r.offs) == 0 && !over {
				continue // stray blank line between messages
			}
			break
		}
		if size += len(line) + 2; size > max {
			over = true
		}
		if over {
			continue
		}
		r.addLine(line, false)
		if len(r.offs) == 4 && isFollows(line) {
			follows = true
			break
		}
	}
	if over {
		return Message{}, &FrameError{Err: ErrMessageTooLarge, Message: r.build()}
	}
	if !follows {
		return r.build(), nil
	}
	return r.readFollows(max)
}

// fastReply parses a reply that is already whole in the read buffer, in
// place: one scan for line ends, one string for the message, headers as
// substrings of it. It declines (ok=false, nothing consumed) when the
// message is not whole yet, starts with a blank line, is a Follows reply
// or exceeds MaxMessage; readReply's general path then takes over.
func (r *Reader) fastReply() (Message, bool) {
	n := r.br.Buffered()
	if n == 0 {
		return Message{}, false
	}
	data, _ := r.br.Peek(n)
	if max := r.maxMessage(); len(data) > max {
		data = data[:max]
	}
	r.offs = r.offs[:0]
	pos := 0
	for {
		i := bytes.IndexByte(data[pos:], '\n')
		if i < 0 {
			return Message{}, false
		}
		end := pos + i
		line := data[pos:end]
		if k := len(line) - 1; k >= 0 && line[k] == '\r' {
			line = line[:k]
		}
		if len(line) == 0 {
			if len(r.offs) == 0 {
				return Message{}, false
			}
			pos = end + 1
			break
		}
		if len(r.offs) == 0 && len(line) > 9 && (line[0] == 'R' || line[0] == 'r') && isFollows(line) {
			return Message{}, false
		}
		start := int32(pos)
		c := bytes.IndexByte(line, ':')
		if c <= 0 {
			r.offs = append(r.offs, start, -1, start, start+int32(len(line)))
		} else {
			v := c + 1
			if v < len(line) && line[v] == ' ' {
				v++
			}
			r.offs = append(r.offs, start, start+int32(c), start+int32(v), start+int32(len(line)))
		}
		pos = end + 1
	}
	m := r.buildFrom(string(data[:pos]))
	_, _ = r.br.Discard(pos)
	return m, true
}

func isFollows(line []byte) bool {
	k, v, ok := bytes.Cut(line, []byte(":"))
	return ok && asciiEqualFold(string(k), "Response") &&
		asciiEqualFold(string(bytes.TrimLeft(v, " ")), "Follows")
}

// readFollows reads the rest of an Asterisk <= 13 Command reply:
// "Privilege:" and "ActionID:" lines, then raw output (LF line ends, blank
// lines allowed) ending with "--END COMMAND--" and a blank line.
func (r *Reader) readFollows(max int) (Message, error) {
	var body []byte
	inHeaders := true
	size := len(r.buf)
	over := false
	for {
		raw, err := r.br.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			err = nil
			if size += len(raw); size > max {
				over = true
			}
			if !over {
				body = append(body, raw...)
			}
			inHeaders = false
			continue
		}
		if err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return Message{}, err
		}
		if size += len(raw); size > max {
			over = true
		}
		line := trimEOL(raw)
		if inHeaders {
			k, _, ok := bytes.Cut(line, []byte(":"))
			if ok && (asciiEqualFold(string(k), "Privilege") || asciiEqualFold(string(k), "ActionID")) {
				r.addLine(line, false)
				continue
			}
			inHeaders = false
		}
		if !over {
			body = append(body, raw...)
		}
		// The marker ends a line; output without a final newline glues it
		// onto the last output line.
		if bytes.HasSuffix(line, []byte(endCommand)) {
			break
		}
	}
	// A blank line follows the marker.
	if _, err := r.readLongLine(max); err != nil && !errors.Is(err, ErrMessageTooLarge) {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return Message{}, err
	}
	m := r.build()
	if over {
		return Message{}, &FrameError{Err: ErrMessageTooLarge, Message: m}
	}
	// Drop the marker and its line ending from the body.
	i := bytes.LastIndex(body, []byte(endCommand))
	m.body = string(body[:i])
	return m, nil
}

// asciiEqualFold is strncasecmp over equal lengths: ASCII letters only,
// unlike strings.EqualFold, which also folds the Kelvin sign and long s.
func asciiEqualFold(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		x, y := a[i], b[i]
		if x == y {
			continue
		}
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}
