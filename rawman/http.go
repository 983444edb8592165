package rawman

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// MaxFormBody is the largest POST body Asterisk's HTTP server reads
// (MAX_CONTENT_LENGTH); a longer one is answered 413 and never parsed.
const MaxFormBody = 40960

// Errors reported by ParseQuery and ParseForm. Each one comes wrapped in a
// *ParamError that names the parameter, except ErrFormTooLarge.
var (
	// ErrInjection: a name or value holds CR, LF or NUL after URL
	// decoding (or raw). Asterisk keeps CR and LF inside the header string
	// and truncates at NUL, which lets a client inject AMI lines into its
	// own response and, through UserEvent or an async Originate, into
	// other sessions' events; amiproxy refuses the whole request.
	ErrInjection = errors.New("rawman: CR, LF or NUL in HTTP parameter")
	// ErrBadName: a name that holds a colon (it would move the split
	// between header name and value) or an empty name with a value
	// (Asterisk would build the line ": value", which no lookup can find
	// but UserEvent copies into its event).
	ErrBadName = errors.New("rawman: invalid HTTP parameter name")
	// ErrFormTooLarge: a POST body longer than MaxFormBody. Asterisk
	// answers 413 Request Entity Too Large.
	ErrFormTooLarge = errors.New("rawman: form body too large")
)

// ParamError reports the HTTP parameter that made ParseQuery or ParseForm
// refuse a request. It never carries the parameter's value, which may be a
// secret.
type ParamError struct {
	Name  string // decoded name; may hold the very CR or LF refused
	Index int    // position among the '&'-separated items, from 0
	Err   error  // ErrInjection or ErrBadName
}

func (e *ParamError) Error() string {
	name := e.Name
	if len(name) > 64 {
		name = name[:64] + "..."
	}
	return "rawman: http parameter " + strconv.Itoa(e.Index) + " " + strconv.Quote(name) + ": " +
		strings.TrimPrefix(e.Err.Error(), "rawman: ")
}

func (e *ParamError) Unwrap() error { return e.Err }

// ParseQuery turns the raw query string of a GET (or HEAD) request to the
// HTTP manager, without the '?', into the Message Asterisk would process,
// the way handle_uri and astman_append_headers build it:
//
//   - the query is split on '&' and each item on its first '='; an item
//     without '=' is a name with an empty value;
//   - both sides are URL-decoded by ast_uri_decode: '+' is a space, and '%'
//     followed by at least two more bytes is replaced by the byte that
//     sscanf("%2x") reads there, after which those two bytes are skipped
//     whatever sscanf consumed. So "%41" is "A", "%4g" is 0x04 (the 'g' is
//     swallowed), "%g4" stays "%g4", a '%' with fewer than two bytes after
//     it ("%", "%4" at the end) stays as it is, and glibc's sscanf quirks
//     apply: leading white space is skipped ("% 41x" is "A" then "1x"), a
//     sign is read ("%-1" is 0xFF, "%+4" is 0x04) and "0x" is a prefix
//     ("%0x" is NUL, refused below);
//   - names are kept as they are (lookups ignore case anyway), order and
//     duplicates are kept;
//   - values lose their leading bytes below 0x21, which astman_get_header
//     skips on every lookup, so the Message holds what actions read and
//     encodes to the same AMI text a TCP client would send;
//   - only the first MaxHeaders items are used; the rest are dropped
//     silently, as Asterisk does (over TCP it would refuse the message).
//     dropped reports how many.
//
// Items whose name and value are both empty ("a=1&&b=2", a trailing '&',
// a lone "=") are skipped: Asterisk turns them into inert ": " lines. They
// still count towards the MaxHeaders items, as in Asterisk.
//
// Unlike Asterisk, ParseQuery refuses, with a *ParamError and no Message,
// a request in which any item (even a dropped one) decodes to a name or
// value holding CR, LF or NUL (ErrInjection), or to a name holding a colon
// or an empty name with a value (ErrBadName).
//
// The empty string yields an empty Message: Asterisk answers "Missing
// action in request".
func ParseQuery(rawQuery string) (m Message, dropped int, err error) {
	return parseParams(rawQuery)
}

// ParseForm is ParseQuery for the body of a POST request whose
// Content-Type passes IsFormContentType. Asterisk then ignores the query
// string entirely. A body longer than MaxFormBody is refused with
// ErrFormTooLarge; an empty body yields an empty Message.
func ParseForm(body []byte) (m Message, dropped int, err error) {
	if len(body) > MaxFormBody {
		return Message{}, 0, fmt.Errorf("%w: %d bytes, limit %d", ErrFormTooLarge, len(body), MaxFormBody)
	}
	return parseParams(string(body))
}

// IsFormContentType reports whether a POST with this Content-Type header
// value has its body parsed as parameters. Asterisk takes the first
// Content-Type header, cuts it at the first ';' and compares the rest with
// "application/x-www-form-urlencoded" ignoring ASCII case, so
// "Application/X-WWW-Form-URLEncoded; charset=UTF-8" qualifies but a space
// before the ';' does not. Any other POST is run with no parameters at all
// ("Missing action in request"). Pass the header as net/http returns it
// (surrounding white space removed, which Asterisk does too).
func IsFormContentType(contentType string) bool {
	t, _, _ := strings.Cut(contentType, ";")
	return asciiEqualFold(t, "application/x-www-form-urlencoded")
}

func parseParams(q string) (Message, int, error) {
	if q == "" {
		return Message{}, 0, nil
	}
	n := strings.Count(q, "&") + 1
	kept := min(n, MaxHeaders)
	h := make([]Header, 0, kept)
	for i := 0; q != ""; i++ {
		item, rest, _ := strings.Cut(q, "&")
		q = rest
		rawName, rawValue, _ := strings.Cut(item, "=")
		name, value := uriDecode(rawName), uriDecode(rawValue)
		switch {
		case strings.ContainsAny(name, "\r\n\x00"), strings.ContainsAny(value, "\r\n\x00"):
			return Message{}, 0, &ParamError{Name: name, Index: i, Err: ErrInjection}
		case strings.IndexByte(name, ':') >= 0, name == "" && value != "":
			return Message{}, 0, &ParamError{Name: name, Index: i, Err: ErrBadName}
		}
		if i >= MaxHeaders || name == "" {
			continue
		}
		h = append(h, Header{Key: name, Value: skipBlanks(value)})
	}
	if len(h) == 0 {
		h = nil
	}
	return Message{h: h}, n - kept, nil
}

// skipBlanks drops leading bytes below 0x21, as ast_skip_blanks does.
func skipBlanks(s string) string {
	i := 0
	for i < len(s) && s[i] < 0x21 {
		i++
	}
	return s[i:]
}

// uriDecode is ast_uri_decode with ast_uri_http_legacy. A raw NUL is kept
// (and then refused by the caller) instead of ending the string.
func uriDecode(s string) string {
	if strings.IndexByte(s, '%') < 0 && strings.IndexByte(s, '+') < 0 {
		return s
	}
	b := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '+':
			b = append(b, ' ')
		case c == '%' && i+2 < len(s) && s[i+1] != 0 && s[i+2] != 0:
			if v, ok := scanHex2(s[i+1:]); ok {
				b = append(b, v)
				i += 2
				continue
			}
			b = append(b, c)
		default:
			b = append(b, c)
		}
	}
	return string(b)
}

// scanHex2 is glibc's sscanf(s, "%2x", &v) == 1, truncated to a byte: white
// space skipped first, then an optional sign, an optional "0x" prefix and
// hexadecimal digits, at most two bytes counting sign and prefix. A NUL
// ends the input as in C.
func scanHex2(s string) (byte, bool) {
	at := func(i int) byte {
		if i < len(s) {
			return s[i]
		}
		return 0
	}
	i := 0
	for isCSpace(at(i)) {
		i++
	}
	width := 2
	neg := false
	if c := at(i); c == '+' || c == '-' {
		neg = c == '-'
		width--
		i++
	}
	digits := 0
	var v uint32
	if width > 0 && at(i) == '0' {
		width--
		digits++
		i++
		if width > 0 && at(i)|0x20 == 'x' {
			width--
			i++
		}
	}
	for ; width > 0; width-- {
		d, ok := hexDigit(at(i))
		if !ok {
			break
		}
		v = v<<4 | uint32(d)
		digits++
		i++
	}
	if digits == 0 {
		return 0, false
	}
	if neg {
		v = -v
	}
	return byte(v), true
}

func isCSpace(c byte) bool { return c == ' ' || '\t' <= c && c <= '\r' }

func hexDigit(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// Format is an output format of Asterisk's HTTP manager. The zero Format is
// not a format.
type Format int

// Output formats, one per URI pair (§6.1 of the AMI notes).
const (
	FormatRaw  Format = iota + 1 // /rawman, /arawman: the AMI text unchanged
	FormatXML                    // /mxml, /amxml: <ajax-response> XML
	FormatHTML                   // /manager, /amanager: the "Manager Tester" page
)

// Content types Asterisk sends, in a header spelled "Content-type" with no
// charset.
const (
	ContentTypeRaw  = "text/plain"
	ContentTypeXML  = "text/xml"
	ContentTypeHTML = "text/html"
)

// ContentType returns the Content-type Asterisk sends for f, or "" for an
// invalid Format.
func (f Format) ContentType() string {
	switch f {
	case FormatRaw:
		return ContentTypeRaw
	case FormatXML:
		return ContentTypeXML
	case FormatHTML:
		return ContentTypeHTML
	}
	return ""
}

func (f Format) String() string {
	switch f {
	case FormatRaw:
		return "rawman"
	case FormatXML:
		return "mxml"
	case FormatHTML:
		return "manager"
	}
	return "Format(" + strconv.Itoa(int(f)) + ")"
}

// ParseFormat maps a request path, after any configured prefix and before
// URL decoding (Asterisk matches the raw path and decodes afterwards), to
// its output format: "/rawman", "/mxml" and "/manager" with cookie
// sessions, "/arawman", "/amxml" and "/amanager" with HTTP Digest (digest
// is true). Like handle_uri it ignores ASCII case and tolerates one
// trailing '/'; anything else, including sub-paths, "//" and percent-
// encoded letters, is not served (404).
func ParseFormat(path string) (f Format, digest bool, ok bool) {
	p, found := strings.CutPrefix(path, "/")
	if !found {
		return 0, false, false
	}
	p = strings.TrimSuffix(p, "/")
	for _, u := range [...]struct {
		name   string
		f      Format
		digest bool
	}{
		{"rawman", FormatRaw, false},
		{"mxml", FormatXML, false},
		{"manager", FormatHTML, false},
		{"arawman", FormatRaw, true},
		{"amxml", FormatXML, true},
		{"amanager", FormatHTML, true},
	} {
		if asciiEqualFold(p, u.name) {
			return u.f, u.digest, true
		}
	}
	return 0, false, false
}
