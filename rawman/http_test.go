package rawman_test

import (
	"bytes"
	"errors"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/amiproxy/amiproxy/internal/transcript"
	"github.com/amiproxy/amiproxy/rawman"
)

// hdrs builds the expected header list from key/value pairs.
func hdrs(kv ...string) []rawman.Header {
	var h []rawman.Header
	for i := 0; i < len(kv); i += 2 {
		h = append(h, rawman.Header{Key: kv[i], Value: kv[i+1]})
	}
	return h
}

func TestParseQuery(t *testing.T) {
	many := func(n int, item string) string {
		return strings.TrimSuffix(strings.Repeat(item+"&", n), "&")
	}
	tests := []struct {
		name    string
		query   string
		want    []rawman.Header
		dropped int
		err     error // sentinel inside the *ParamError
		index   int   // ParamError.Index when err != nil
	}{
		{"empty query", "", nil, 0, nil, 0},
		{"login", "action=login&username=admin&secret=adminpass",
			hdrs("action", "login", "username", "admin", "secret", "adminpass"), 0, nil, 0},
		{"plus is space", "action=command&command=core+show+version",
			hdrs("action", "command", "command", "core show version"), 0, nil, 0},
		{"percent escapes", "a=%41%62%2B%26%3D%25",
			hdrs("a", "Ab+&=%"), 0, nil, 0},
		{"name is decoded too", "Act%69on=ping", hdrs("Action", "ping"), 0, nil, 0},
		{"item without equals has empty value", "action=ping&events",
			hdrs("action", "ping", "events", ""), 0, nil, 0},
		{"split on the first equals only", "variable=A=1&variable=B=2",
			hdrs("variable", "A=1", "variable", "B=2"), 0, nil, 0},
		{"order, duplicates and case kept", "ACTION=Ping&action=Logoff&ActionID=x",
			hdrs("ACTION", "Ping", "action", "Logoff", "ActionID", "x"), 0, nil, 0},
		{"stray ampersands skipped", "&&action=ping&&", hdrs("action", "ping"), 0, nil, 0},
		{"lone equals skipped", "=&action=ping", hdrs("action", "ping"), 0, nil, 0},
		{"leading blanks of values dropped as astman_get_header does", "action=+%20%09Ping+",
			hdrs("action", "Ping "), 0, nil, 0},
		{"blanks in names kept", "action+=ping&+x=1", hdrs("action ", "ping", " x", "1"), 0, nil, 0},

		// sscanf("%2x") quirks of ast_uri_decode.
		{"malformed %4g is 0x04 and swallows g", "a=x%4gz", hdrs("a", "x\x04z"), 0, nil, 0},
		{"%g4 stays", "a=%g4", hdrs("a", "%g4"), 0, nil, 0},
		{"percent at the end stays", "a=x%", hdrs("a", "x%"), 0, nil, 0},
		{"percent and one digit at the end stays", "a=%4&b=%f", hdrs("a", "%4", "b", "%f"), 0, nil, 0},
		{"percent and one digit at the end of a name stays", "x%4=1", hdrs("x%4", "1"), 0, nil, 0},
		{"white space skipped by sscanf", "a=% 41x", hdrs("a", "A1x"), 0, nil, 0},
		{"sign read by sscanf", "a=%-1z&b=x%+4&c=x%+41y", hdrs("a", "\xffz", "b", "x\x04", "c", "x\x041y"), 0, nil, 0},
		{"leading control bytes are blanks", "a=%+4x", hdrs("a", "x"), 0, nil, 0},
		{"high bytes pass", "a=%C3%A9%ff", hdrs("a", "\u00e9\xff"), 0, nil, 0},
		{"other control bytes pass", "a=x%01%09y%7f", hdrs("a", "x\x01\ty\x7f"), 0, nil, 0},

		// Refusals (Asterisk would accept these).
		{"CRLF injection in value", "action=ping&actionid=1%0d%0aEvent:+Fake", nil, 0, rawman.ErrInjection, 1},
		{"LF injection in value", "action=userevent&userevent=x%0AFoo:%20bar", nil, 0, rawman.ErrInjection, 1},
		{"CR alone in value", "a=%0D", nil, 0, rawman.ErrInjection, 0},
		{"CRLF injection in name", "action=ping&x%0d%0aAction:+Logoff=1", nil, 0, rawman.ErrInjection, 1},
		{"NUL in value", "action=ping%00&b=1", nil, 0, rawman.ErrInjection, 0},
		{"NUL in name", "act%00ion=ping", nil, 0, rawman.ErrInjection, 0},
		{"raw NUL", "action=pi\x00ng", nil, 0, rawman.ErrInjection, 0},
		{"raw LF", "action=ping&a=\n", nil, 0, rawman.ErrInjection, 1},
		{"0x prefix yields NUL", "a=%0x41", nil, 0, rawman.ErrInjection, 0},
		{"colon in name", "action:=ping", nil, 0, rawman.ErrBadName, 0},
		{"encoded colon in name", "a=1&Action%3A=Logoff", nil, 0, rawman.ErrBadName, 1},
		{"empty name with a value", "action=ping&=x", nil, 0, rawman.ErrBadName, 1},

		// The 128 limit.
		{"128 parameters kept", many(128, "v=1"), hdrs(slices.Repeat([]string{"v", "1"}, 128)...), 0, nil, 0},
		{"129th parameter dropped silently", many(128, "v=1") + "&action=ping",
			hdrs(slices.Repeat([]string{"v", "1"}, 128)...), 1, nil, 0},
		{"empty items count towards 128 as in Asterisk", many(129, "") + "action=ping", nil, 1, nil, 0},
		{"injection in a dropped item still refused", many(200, "v=1") + "&x=%0a", nil, 0, rawman.ErrInjection, 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, parse := range []struct {
				name string
				fn   func(string) (rawman.Message, int, error)
			}{
				{"ParseQuery", rawman.ParseQuery},
				{"ParseForm", func(s string) (rawman.Message, int, error) { return rawman.ParseForm([]byte(s)) }},
			} {
				m, dropped, err := parse.fn(tt.query)
				if tt.err != nil {
					var pe *rawman.ParamError
					if !errors.Is(err, tt.err) || !errors.As(err, &pe) || pe.Index != tt.index {
						t.Errorf("%s(%q) = %v, want *ParamError{Index: %d} wrapping %v", parse.name, tt.query, err, tt.index, tt.err)
					}
					if m.Len() != 0 || dropped != 0 {
						t.Errorf("%s(%q) returned %d headers and dropped %d with an error, want nothing", parse.name, tt.query, m.Len(), dropped)
					}
					continue
				}
				if err != nil {
					t.Errorf("%s(%q) error = %v, want nil", parse.name, tt.query, err)
					continue
				}
				if got := m.Headers(); !slices.Equal(got, tt.want) || dropped != tt.dropped {
					t.Errorf("%s(%q) = %q dropped %d, want %q dropped %d", parse.name, tt.query, got, dropped, tt.want, tt.dropped)
				}
			}
		})
	}
}

func TestParseFormTooLarge(t *testing.T) {
	body := []byte("action=ping&x=" + strings.Repeat("a", rawman.MaxFormBody))
	if _, _, err := rawman.ParseForm(body); !errors.Is(err, rawman.ErrFormTooLarge) {
		t.Errorf("ParseForm(%d bytes) = %v, want ErrFormTooLarge", len(body), err)
	}
	body = body[:rawman.MaxFormBody]
	if m, _, err := rawman.ParseForm(body); err != nil || m.Action() != "ping" {
		t.Errorf("ParseForm(%d bytes) = %v, %v; want action ping", len(body), m, err)
	}
}

func TestParamErrorText(t *testing.T) {
	_, _, err := rawman.ParseQuery("action=login&username=x&secret=hunter2%0d%0aAction:+Logoff")
	if err == nil {
		t.Fatal("ParseQuery accepted an injected secret")
	}
	msg := err.Error()
	if strings.Contains(msg, "hunter2") || strings.ContainsAny(msg, "\r\n") {
		t.Errorf("Error() = %q, want no value and no line break", msg)
	}
	if want := `rawman: http parameter 2 "secret": CR, LF or NUL in HTTP parameter`; msg != want {
		t.Errorf("Error() = %q, want %q", msg, want)
	}
	_, _, err = rawman.ParseQuery("a%0d%0ab=1")
	if msg := err.Error(); strings.ContainsAny(msg, "\r\n") || !strings.Contains(msg, `"a\r\nb"`) {
		t.Errorf("Error() = %q, want the name quoted", msg)
	}
}

func TestIsFormContentType(t *testing.T) {
	tests := []struct {
		ct   string
		want bool
	}{
		{"application/x-www-form-urlencoded", true},
		{"Application/X-WWW-Form-URLEncoded", true},
		{"application/x-www-form-urlencoded; charset=UTF-8", true},
		{"application/x-www-form-urlencoded;charset=UTF-8", true},
		{"application/x-www-form-urlencoded;", true},
		{"application/x-www-form-urlencoded ; charset=UTF-8", false},
		{"application/x-www-form-urlencoded ", false},
		{"multipart/form-data; boundary=x", false},
		{"application/json", false},
		{"text/plain", false},
		{"", false},
		{"application/x-www-form-urlencode\u212a", false}, // Kelvin sign is not K
	}
	for _, tt := range tests {
		if got := rawman.IsFormContentType(tt.ct); got != tt.want {
			t.Errorf("IsFormContentType(%q) = %v, want %v", tt.ct, got, tt.want)
		}
	}
}

func TestParseFormat(t *testing.T) {
	tests := []struct {
		path   string
		f      rawman.Format
		digest bool
		ok     bool
	}{
		{"/rawman", rawman.FormatRaw, false, true},
		{"/mxml", rawman.FormatXML, false, true},
		{"/manager", rawman.FormatHTML, false, true},
		{"/arawman", rawman.FormatRaw, true, true},
		{"/amxml", rawman.FormatXML, true, true},
		{"/amanager", rawman.FormatHTML, true, true},
		{"/RawMan", rawman.FormatRaw, false, true},
		{"/AMXML/", rawman.FormatXML, true, true},
		{"/manager/", rawman.FormatHTML, false, true},
		{"/rawmanx", 0, false, false},
		{"/rawman/x", 0, false, false},
		{"/rawman//", 0, false, false},
		{"//rawman", 0, false, false},
		{"rawman", 0, false, false},
		{"/raw%6dan", 0, false, false},
		{"/", 0, false, false},
		{"", 0, false, false},
		{"/static/index.html", 0, false, false},
	}
	for _, tt := range tests {
		f, digest, ok := rawman.ParseFormat(tt.path)
		if f != tt.f || digest != tt.digest || ok != tt.ok {
			t.Errorf("ParseFormat(%q) = %v, %v, %v; want %v, %v, %v", tt.path, f, digest, ok, tt.f, tt.digest, tt.ok)
		}
	}
	for f, want := range map[rawman.Format]string{rawman.FormatRaw: "text/plain", rawman.FormatXML: "text/xml", rawman.FormatHTML: "text/html", 0: ""} {
		if got := f.ContentType(); got != want {
			t.Errorf("%v.ContentType() = %q, want %q", f, got, want)
		}
	}
}

// httpRecordings are the HTTP manager recordings with one request per
// connection (http-curl-i-rawman.txt has another format).
var httpRecordings = []string{
	"http-rawman-waitevent.txt",
	"http-mxml-waitevent.txt",
	"http-manager-waitevent.txt",
	"http-no-cookie-invalid-cookie.txt",
	"http-rawman-login-errors.txt",
	"http-expired-cookie.txt",
	"http-rawman-waitevent-idle-and-concurrent.txt",
	"http-arawman-digest.txt",
}

// httpExchange is one recorded request and Asterisk's response to it.
type httpExchange struct {
	where  string // file and request number, for messages
	method string
	path   string
	query  string
	status int
	header []rawman.Header // response headers, names as sent
	body   []byte
}

func (x httpExchange) responseHeader(name string) string {
	for _, h := range x.header {
		if h.Key == name {
			return h.Value
		}
	}
	return ""
}

// loadHTTPExchanges pairs every recorded request with the next response on
// the same connection label and splits both.
func loadHTTPExchanges(t testing.TB, name string) []httpExchange {
	t.Helper()
	f, err := transcript.Load("../testdata/transcripts/" + name)
	if err != nil {
		t.Fatal(err)
	}
	pending := map[string][]transcript.Block{}
	var out []httpExchange
	for _, b := range f.Blocks {
		switch {
		case b.FromClient():
			pending[b.Conn] = append(pending[b.Conn], b)
		case b.FromServer():
			q := pending[b.Conn]
			if len(q) == 0 {
				t.Fatalf("%s: response block %d without a request", name, b.Index)
			}
			pending[b.Conn] = q[1:]
			out = append(out, splitHTTPExchange(t, name+"#"+strconv.Itoa(len(out)), q[0].Data, b.Data))
		}
	}
	for conn, q := range pending {
		if len(q) > 0 {
			t.Fatalf("%s: %d requests on %q without a response", name, len(q), conn)
		}
	}
	return out
}

func splitHTTPExchange(t testing.TB, where string, req, resp []byte) httpExchange {
	t.Helper()
	x := httpExchange{where: where}
	line, _, ok := bytes.Cut(req, []byte("\r\n"))
	fields := strings.Fields(string(line))
	if !ok || len(fields) != 3 || !bytes.HasSuffix(req, []byte("\r\n\r\n")) {
		t.Fatalf("%s: bad request %q", where, req)
	}
	x.method = fields[0]
	x.path, x.query, _ = strings.Cut(fields[1], "?")

	head, body, ok := bytes.Cut(resp, []byte("\r\n\r\n"))
	if !ok {
		t.Fatalf("%s: response without end of headers", where)
	}
	lines := strings.Split(string(head), "\r\n")
	status := strings.Fields(lines[0])
	if len(status) < 2 || status[0] != "HTTP/1.1" {
		t.Fatalf("%s: bad status line %q", where, lines[0])
	}
	x.status, _ = strconv.Atoi(status[1])
	for _, l := range lines[1:] {
		k, v, ok := strings.Cut(l, ": ")
		if !ok {
			t.Fatalf("%s: bad header line %q", where, l)
		}
		x.header = append(x.header, rawman.Header{Key: k, Value: v})
	}
	n, err := strconv.Atoi(x.responseHeader("Content-Length"))
	if err != nil || n != len(body) {
		t.Fatalf("%s: Content-Length %q, body %d bytes: want them equal (one response per block)", where, x.responseHeader("Content-Length"), len(body))
	}
	x.body = body
	return x
}

// refDecodeQuery is an independent decoder for well-formed queries: split,
// then net/url's unescaping. The recorded requests are all well-formed.
func refDecodeQuery(q string) ([]rawman.Header, error) {
	var h []rawman.Header
	if q == "" {
		return nil, nil
	}
	for _, item := range strings.Split(q, "&") {
		k, v, _ := strings.Cut(item, "=")
		k, err := url.QueryUnescape(k)
		if err != nil {
			return nil, err
		}
		v, err = url.QueryUnescape(v)
		if err != nil {
			return nil, err
		}
		h = append(h, rawman.Header{Key: k, Value: v})
	}
	return h, nil
}

// TestParseQueryRecordedRequests decodes every recorded request and checks
// the result against an independent decoder and against what Asterisk's
// answer shows it understood.
func TestParseQueryRecordedRequests(t *testing.T) {
	total := 0
	for _, name := range httpRecordings {
		t.Run(name, func(t *testing.T) {
			for _, x := range loadHTTPExchanges(t, name) {
				total++
				m, dropped, err := rawman.ParseQuery(x.query)
				if err != nil || dropped != 0 {
					t.Errorf("%s: ParseQuery(%q) = %v dropped %d, want no error", x.where, x.query, err, dropped)
					continue
				}
				want, err := refDecodeQuery(x.query)
				if err != nil {
					t.Fatalf("%s: reference decoder: %v", x.where, err)
				}
				if got := m.Headers(); !slices.Equal(got, want) {
					t.Errorf("%s: ParseQuery(%q) = %q, want %q", x.where, x.query, got, want)
				}
				if got, want := m.Action(), m.Get("action"); got != want {
					t.Errorf("%s: Action() = %q, want %q", x.where, got, want)
				}
				if x.status != 200 || x.method != "GET" {
					continue
				}
				f, _, _ := rawman.ParseFormat(x.path)
				body := string(x.body)
				if strings.Contains(body, "Missing action in request") && m.Action() != "" {
					t.Errorf("%s: Asterisk saw no action, ParseQuery found %q", x.where, m.Action())
				}
				if _, rest, ok := strings.Cut(body, "Invalid/unknown command: "); ok {
					if got, _, _ := strings.Cut(rest, ". Use"); got != m.Action() {
						t.Errorf("%s: Asterisk saw action %q, ParseQuery found %q", x.where, got, m.Action())
					}
				}
				// Asterisk echoes the ActionID in its first reply message.
				ami := recordedBodyToAMI(t, x.where, f, x.body)
				if len(ami) == 0 {
					continue // a WaitEvent kicked by a newer one
				}
				first, err := rawman.NewReplyReader(bytes.NewReader(ami)).ReadMessage()
				if err != nil {
					t.Fatalf("%s: reading the reconstructed reply: %v", x.where, err)
				}
				if got, want := first.ActionID(), m.ActionID(); got != want {
					t.Errorf("%s: reply ActionID %q, request ActionID %q", x.where, got, want)
				}
			}
		})
	}
	if total != 52 {
		t.Errorf("decoded %d recorded requests, want 52", total)
	}
}

func FuzzParseQuery(f *testing.F) {
	for _, name := range httpRecordings {
		for _, x := range loadHTTPExchanges(f, name) {
			f.Add(x.query)
		}
	}
	f.Fuzz(func(t *testing.T, q string) {
		m, dropped, err := rawman.ParseQuery(q)
		m2, dropped2, err2 := rawman.ParseForm([]byte(q))
		if len(q) <= rawman.MaxFormBody && (!slices.Equal(m.Headers(), m2.Headers()) || dropped != dropped2 || (err == nil) != (err2 == nil)) {
			t.Fatalf("ParseForm(%q) = %q, %d, %v; ParseQuery gave %q, %d, %v", q, m2.Headers(), dropped2, err2, m.Headers(), dropped, err)
		}
		if err != nil {
			var pe *rawman.ParamError
			if !errors.As(err, &pe) || !(errors.Is(err, rawman.ErrInjection) || errors.Is(err, rawman.ErrBadName)) {
				t.Fatalf("ParseQuery(%q) error %v, want a *ParamError", q, err)
			}
			if m.Len() != 0 {
				t.Fatalf("ParseQuery(%q) returned %d headers with an error", q, m.Len())
			}
			return
		}
		if m.Len() > rawman.MaxHeaders || dropped < 0 {
			t.Fatalf("ParseQuery(%q): %d headers, %d dropped", q, m.Len(), dropped)
		}
		enc, err := rawman.Append(nil, m)
		if err != nil {
			t.Fatalf("Append(ParseQuery(%q)) = %v, want nil", q, err)
		}
		tooLong := false
		for _, line := range bytes.Split(enc, []byte("\r\n")) {
			if len(line) > rawman.MaxLineLen-2 {
				tooLong = true
			}
		}
		got, err := rawman.NewReader(bytes.NewReader(enc)).ReadMessage()
		if tooLong {
			if !errors.Is(err, rawman.ErrLineTooLong) {
				t.Fatalf("re-reading %q with a line over %d bytes: %v, want ErrLineTooLong", enc, rawman.MaxLineLen-2, err)
			}
			return
		}
		if err != nil || !slices.Equal(got.Headers(), m.Headers()) {
			t.Fatalf("decode-encode-decode of %q: %q, %v; want %q", q, got.Headers(), err, m.Headers())
		}
	})
}

func BenchmarkParseQuery(b *testing.B) {
	const q = "action=login&username=admin&secret=s3cr%21t+pass&events=off&actionid=login-1"
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := rawman.ParseQuery(q); err != nil {
			b.Fatal(err)
		}
	}
}
