package rawman_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"testing"

	"github.com/amiproxy/amiproxy/rawman"
)

// recordedManagerHead is the /manager page start as Asterisk 22.10.1 sent
// it (copied from http-manager-waitevent.txt, not from render.go).
const recordedManagerHead = "<title>Asterisk&trade; Manager Interface</title><body bgcolor=\"#ffffff\"><table align=center bgcolor=\"#f1f1f1\" width=\"500\">\r\n" +
	"<tr><td colspan=\"2\" bgcolor=\"#f1f1ff\"><h1>Manager Tester</h1></td></tr>\r\n" +
	"<tr><td colspan=\"2\" bgcolor=\"#f1f1ff\"><form action=\"manager\" method=\"post\">\n" +
	"\tAction: <select name=\"action\">\n" +
	"\t\t<option value=\"\">-----&gt;</option>\n" +
	"\t\t<option value=\"login\">login</option>\n" +
	"\t\t<option value=\"command\">Command</option>\n" +
	"\t\t<option value=\"waitevent\">waitevent</option>\n" +
	"\t\t<option value=\"listcommands\">listcommands</option>\n" +
	"\t</select>\n" +
	"\tor <input name=\"action\"><br/>\n" +
	"\tCLI Command <input name=\"command\"><br>\n" +
	"\tuser <input name=\"username\"> pass <input type=\"password\" name=\"secret\"><br>\n" +
	"\t<input type=\"submit\">\n" +
	"</form>\n" +
	"</td></tr>\r\n"

const (
	recordedManagerTail = "</table></body>\r\n"
	htmlRuleRow         = "<tr><td colspan=\"2\"><hr></td></tr>\r\n"
)

var htmlTags = strings.NewReplacer("<tr>", "", "</tr>", "", "<td>", "", "</td>", "", "<td colspan=\"2\">", "", "<hr>", "", "<br>", "")

var xmlUnescaper = strings.NewReplacer("&lt;", "<", "&gt;", ">", "&quot;", `"`, "&apos;", "'", "&amp;", "&")

// amiRebuilder turns rendered rows back into AMI text. A name ending in
// "-N" is taken as the N-th repetition of its base name when the base has
// been seen N-1 times in the block, which undoes the renderer's suffixes.
type amiRebuilder struct {
	out  []byte
	seen map[string]int
}

func (a *amiRebuilder) field(name, value, opaqueName, opaqueSep string) {
	if i := strings.LastIndexByte(name, '-'); i > 0 {
		if n, err := strconv.Atoi(name[i+1:]); err == nil && n > 1 && a.seen[name[:i]] == n-1 {
			name = name[:i]
		}
	}
	if a.seen == nil {
		a.seen = map[string]int{}
	}
	a.seen[name]++
	if name == opaqueName {
		for _, l := range strings.Split(value, opaqueSep) {
			a.out = append(a.out, l+"\r\n"...)
		}
		return
	}
	a.out = append(a.out, name+": "+value+"\r\n"...)
}

func (a *amiRebuilder) endBlock() {
	a.out = append(a.out, "\r\n"...)
	clear(a.seen)
}

// xmlToAMI parses an mxml body (default ajaxdest and ajaxobjtype) back into
// AMI text.
func xmlToAMI(body []byte) ([]byte, error) {
	s, ok := strings.CutPrefix(string(body), "<ajax-response>\n")
	if s, ok = strings.CutSuffix(s, "</ajax-response>\n"); !ok {
		return nil, errors.New("not an ajax-response")
	}
	var a amiRebuilder
	for s != "" {
		if s, ok = strings.CutPrefix(s, "<response type='object' id='unknown'><generic"); !ok {
			return nil, fmt.Errorf("bad element start at %.40q", s)
		}
		for {
			if rest, ok := strings.CutPrefix(s, " /></response>\n"); ok {
				s = rest
				break
			}
			name, rest, ok1 := strings.Cut(strings.TrimPrefix(s, " "), "='")
			value, rest, ok2 := strings.Cut(rest, "'")
			if !ok1 || !ok2 || !strings.HasPrefix(s, " ") {
				return nil, fmt.Errorf("bad attribute at %.40q", s)
			}
			a.field(name, xmlUnescaper.Replace(value), "opaque_data", "\n")
			s = rest
		}
		a.endBlock()
	}
	return a.out, nil
}

// htmlToAMI parses a /manager body back into AMI text.
func htmlToAMI(body []byte) ([]byte, error) {
	s, ok := strings.CutPrefix(string(body), recordedManagerHead)
	if s, ok = strings.CutSuffix(s, recordedManagerTail); !ok {
		return nil, errors.New("not a Manager Tester page")
	}
	var a amiRebuilder
	for s != "" {
		if rest, ok := strings.CutPrefix(s, htmlRuleRow); ok {
			a.endBlock()
			s = rest
			continue
		}
		row, rest, ok1 := strings.Cut(s, "</td></tr>\n")
		row, ok2 := strings.CutPrefix(row, "<tr><td>")
		name, value, ok3 := strings.Cut(row, "</td><td>")
		if !ok1 || !ok2 || !ok3 {
			return nil, fmt.Errorf("bad row at %.40q", s)
		}
		a.field(xmlUnescaper.Replace(name), xmlUnescaper.Replace(value), "Opaque-data", "<br>\n")
		s = rest
	}
	return a.out, nil
}

// recordedBodyToAMI returns the AMI text behind a recorded 200 body.
func recordedBodyToAMI(t testing.TB, where string, f rawman.Format, body []byte) []byte {
	t.Helper()
	var ami []byte
	var err error
	switch f {
	case rawman.FormatRaw:
		ami = body
	case rawman.FormatXML:
		ami, err = xmlToAMI(body)
	case rawman.FormatHTML:
		ami, err = htmlToAMI(body)
	default:
		err = errors.New("no format")
	}
	if err != nil {
		t.Fatalf("%s: parsing the recorded %v body: %v", where, f, err)
	}
	return ami
}

// reencodeReplies reads AMI text as a PBX's output and writes it back.
func reencodeReplies(ami []byte) ([]byte, int, error) {
	r := rawman.NewReplyReader(bytes.NewReader(ami))
	var out []byte
	n := 0
	for {
		m, err := r.ReadMessage()
		if err == io.EOF {
			return out, n, nil
		}
		if err != nil {
			return nil, n, err
		}
		if out, err = rawman.Append(out, m); err != nil {
			return nil, n, err
		}
		n++
	}
}

func diffAt(got, want []byte) string {
	i := 0
	for i < len(got) && i < len(want) && got[i] == want[i] {
		i++
	}
	lo := max(0, i-40)
	return fmt.Sprintf("first difference at byte %d: got %q, want %q", i, got[lo:min(len(got), i+40)], want[lo:min(len(want), i+40)])
}

// TestRenderRecordedBodies is the golden test: every 200 body recorded from
// Asterisk is parsed back (rawman with the reply Reader, mxml and manager
// by their rows), rendered again and compared byte for byte.
func TestRenderRecordedBodies(t *testing.T) {
	exact := map[rawman.Format]int{}
	other := 0
	for _, name := range httpRecordings {
		t.Run(name, func(t *testing.T) {
			for _, x := range loadHTTPExchanges(t, name) {
				f, digest, ok := rawman.ParseFormat(x.path)
				switch {
				case !ok:
					if x.status != 404 {
						t.Errorf("%s: ParseFormat(%q) refused a path Asterisk answered %d", x.where, x.path, x.status)
					}
					other++
					continue
				case x.status == 401 && digest:
					other++ // Digest challenge: not a rendered body
					continue
				case x.status != 200:
					t.Errorf("%s: status %d on %s", x.where, x.status, x.path)
					continue
				}
				if got := x.responseHeader("Content-type"); got != f.ContentType() {
					t.Errorf("%s: Content-type %q, want %q", x.where, got, f.ContentType())
				}
				params, _, err := rawman.ParseQuery(x.query)
				if err != nil {
					t.Fatalf("%s: %v", x.where, err)
				}
				ami := recordedBodyToAMI(t, x.where, f, x.body)
				again, n, err := reencodeReplies(ami)
				if err != nil || !bytes.Equal(again, ami) {
					t.Errorf("%s: reply Reader + Append changed the AMI text (%d messages, %v): %s", x.where, n, err, diffAt(again, ami))
				}
				got := rawman.Render(nil, f, digest, ami, params)
				if !bytes.Equal(got, x.body) {
					t.Errorf("%s: Render(%v) differs from the recording: %s", x.where, f, diffAt(got, x.body))
					continue
				}
				exact[f]++
			}
		})
	}
	t.Logf("byte-exact bodies: rawman %d, mxml %d, manager %d; %d 401/404 answers", exact[rawman.FormatRaw], exact[rawman.FormatXML], exact[rawman.FormatHTML], other)
	if exact[rawman.FormatRaw] != 29 || exact[rawman.FormatXML] != 10 || exact[rawman.FormatHTML] != 9 || other != 4 {
		t.Errorf("byte-exact bodies: rawman %d, mxml %d, manager %d, other %d; want 29, 10, 9, 4",
			exact[rawman.FormatRaw], exact[rawman.FormatXML], exact[rawman.FormatHTML], other)
	}
}

// TestRenderTwinRecordings renders rawman bodies as mxml and manager pages
// and compares them with the same request recorded on /mxml and /manager,
// where the answer holds nothing that changes between runs.
func TestRenderTwinRecordings(t *testing.T) {
	flows := [3][]httpExchange{
		loadHTTPExchanges(t, "http-rawman-waitevent.txt"),
		loadHTTPExchanges(t, "http-mxml-waitevent.txt"),
		loadHTTPExchanges(t, "http-manager-waitevent.txt"),
	}
	cookies := loadHTTPExchanges(t, "http-no-cookie-invalid-cookie.txt")
	type twin struct{ raw, xml, html httpExchange }
	twins := []twin{
		{flows[0][0], flows[1][0], flows[2][0]}, // login
		{flows[0][5], flows[1][5], flows[2][5]}, // logoff
		{flows[0][6], flows[1][6], flows[2][6]}, // ping with a dead cookie
		{cookies[0], cookies[2], cookies[4]},    // no cookie
		{cookies[1], cookies[3], cookies[5]},    // unknown cookie
	}
	for _, tw := range twins {
		if tw.raw.query != tw.xml.query || tw.raw.query != tw.html.query {
			t.Fatalf("%s, %s, %s: not the same request", tw.raw.where, tw.xml.where, tw.html.where)
		}
		if got := rawman.AppendXML(nil, tw.raw.body, "", ""); !bytes.Equal(got, tw.xml.body) {
			t.Errorf("AppendXML(%s) vs %s: %s", tw.raw.where, tw.xml.where, diffAt(got, tw.xml.body))
		}
		if got := rawman.AppendHTML(nil, tw.raw.body); !bytes.Equal(got, tw.html.body) {
			t.Errorf("AppendHTML(%s) vs %s: %s", tw.raw.where, tw.html.where, diffAt(got, tw.html.body))
		}
	}
}

// TestRenderKickedWaitEvent: a WaitEvent kicked by a newer one produces no
// AMI text at all (http-rawman-waitevent-idle-and-concurrent.txt, [A]).
func TestRenderKickedWaitEvent(t *testing.T) {
	var kicked *httpExchange
	for _, x := range loadHTTPExchanges(t, "http-rawman-waitevent-idle-and-concurrent.txt") {
		if strings.Contains(x.query, "actionid=A") {
			kicked = &x
		}
	}
	if kicked == nil || len(kicked.body) != 0 || kicked.responseHeader("Content-Length") != "0" {
		t.Fatalf("recording: kicked WaitEvent %+v, want an empty body", kicked)
	}
	tests := []struct {
		f      rawman.Format
		digest bool
		want   string
	}{
		{rawman.FormatRaw, false, ""},
		{rawman.FormatXML, false, "<ajax-response>\n</ajax-response>\n"},
		{rawman.FormatHTML, false, recordedManagerHead + recordedManagerTail},
		{rawman.FormatXML, true, "<ajax-response>\n</ajax-response>\n"},
	}
	for _, tt := range tests {
		if got := rawman.Render(nil, tt.f, tt.digest, kicked.body, rawman.Message{}); string(got) != tt.want {
			t.Errorf("Render(%v, digest %v, empty) = %q, want %q", tt.f, tt.digest, got, tt.want)
		}
	}
}

func xmlDoc(responses ...string) string {
	return "<ajax-response>\n" + strings.Join(responses, "") + "</ajax-response>\n"
}

func xmlResp(attrs string) string {
	return "<response type='object' id='unknown'><generic" + attrs + " /></response>\n"
}

func TestAppendXML(t *testing.T) {
	tests := []struct {
		name string
		ami  string
		want string
	}{
		{"empty", "", xmlDoc()},
		{"one message", "Response: Success\r\nMessage: Authentication accepted\r\n\r\n",
			xmlDoc(xmlResp(" response='Success' message='Authentication accepted'"))},
		{"two messages", "Response: Success\r\n\r\nEvent: X\r\n\r\n",
			xmlDoc(xmlResp(" response='Success'"), xmlResp(" event='X'"))},
		{"names lower-cased, non-alphanumeric to _", "Event: X\r\nChanVariable(Local/1-0;1): A=b\r\nX-Y.Z: 1\r\n\r\n",
			xmlDoc(xmlResp(" event='X' chanvariable_local_1_0_1_='A=b' x_y_z='1'"))},
		{"leading digit gets _", "1abc: x\r\n42: y\r\n\r\n", xmlDoc(xmlResp(" _1abc='x' _42='y'"))},
		{"high bytes in names become _ each", "K\xc3\xa9y: v\xc3\xa9\r\n\r\n", xmlDoc(xmlResp(" k__y='v\xc3\xa9'"))},
		{"values escape five characters only", "CallerID: \"A&B\" <100> it's\x01\xff!\r\n\r\n",
			xmlDoc(xmlResp(" callerid='&quot;A&amp;B&quot; &lt;100&gt; it&apos;s\x01\xff!'"))},
		{"duplicates numbered per exact key", "Output: a\r\nOutput: b\r\noutput: c\r\nOutput: d\r\n\r\nOutput: e\r\n\r\n",
			xmlDoc(xmlResp(" output='a' output-2='b' output='c' output-3='d'"), xmlResp(" output='e'"))},
		{"blanks trimmed around key and value", "Key \t:  value  \t\r\n Lead: x\r\n\r\n",
			xmlDoc(xmlResp(" key='value' _lead='x'"))},
		{"empty value and empty key", "Key:\r\n: v\r\n\r\n", xmlDoc(xmlResp(" key='' ='v'"))},
		{"only the first colon splits", "Message: a: b\r\n\r\n", xmlDoc(xmlResp(" message='a: b'"))},
		{"opaque line", "Response: Success\r\nNo categories found\r\n\r\n",
			xmlDoc(xmlResp(" response='Success' opaque_data='No categories found'"))},
		{"opaque lines", "Response: Follows\r\nPrivilege: Command\r\nline <1>\r\nkey: not a key\r\n--END COMMAND--\r\n\r\n",
			xmlDoc(xmlResp(" response='Follows' privilege='Command' opaque_data='line &lt;1&gt;\nkey: not a key\n--END COMMAND--'"))},
		{"opaque after an Opaque-data key", "Opaque-data: x\r\nbare\r\n\r\n",
			xmlDoc(xmlResp(" opaque_data='x' opaque_data-2='bare'"))},
		{"opaque line at the very end", "Response: Success\r\nbare\r\n",
			xmlDoc(xmlResp(" response='Success' opaque_data='bare'"))},
		{"opaque lines at the very end are closed (Asterisk leaves the quote open)", "a\r\nb\r\n",
			xmlDoc(xmlResp(" opaque_data='a\nb'"))},
		{"last line without line end", "Response: Success\r\nMessage: x", xmlDoc(xmlResp(" response='Success' message='x'"))},
		{"bare last line without line end (Asterisk crashes)", "bare", xmlDoc(xmlResp(" opaque_data='bare'"))},
		{"extra blank lines add nothing", "\r\n\r\nResponse: Success\r\n\r\n\r\n  \r\n", xmlDoc(xmlResp(" response='Success'"))},
		{"blank-only line ends a block", "A: 1\r\n \t\r\nB: 2\r\n\r\n", xmlDoc(xmlResp(" a='1'"), xmlResp(" b='2'"))},
		{"bare LF lines", "A: 1\nB: 2\n\n", xmlDoc(xmlResp(" a='1' b='2'"))},
		{"LF LF is one line end (Asterisk quirk)", "A: 1\n\nB: 2\n\n", xmlDoc(xmlResp(" a='1' b='2'"))},
		{"CR ends a line too", "A: 1\rB: 2\r\r", xmlDoc(xmlResp(" a='1' b='2'"))},
		{"LF CR is two line ends", "A: 1\n\rB: 2\r\n\r\n", xmlDoc(xmlResp(" a='1'"), xmlResp(" b='2'"))},
		{"NUL ends the input", "A: 1\r\n\r\nB: 2\x00\r\n\r\n", xmlDoc(xmlResp(" a='1'"), xmlResp(" b='2'"))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := string(rawman.AppendXML(nil, []byte(tt.ami), "", "")); got != tt.want {
				t.Errorf("AppendXML(%q) =\n%q\nwant\n%q", tt.ami, got, tt.want)
			}
		})
	}
}

// TestAppendXMLManyKeys covers blocks with more distinct keys than the
// renderer counts without a map.
func TestAppendXMLManyKeys(t *testing.T) {
	var ami, want strings.Builder
	for round := 1; round <= 3; round++ {
		for i := range 40 {
			fmt.Fprintf(&ami, "K%d: v\r\n", i)
			fmt.Fprintf(&want, " k%d", i)
			if round > 1 {
				fmt.Fprintf(&want, "-%d", round)
			}
			want.WriteString("='v'")
		}
	}
	ami.WriteString("\r\nK1: again\r\n\r\n")
	w := xmlDoc(xmlResp(want.String()), xmlResp(" k1='again'"))
	if got := string(rawman.AppendXML(nil, []byte(ami.String()), "", "")); got != w {
		t.Errorf("AppendXML(3 x 40 keys) = %q, want %q", got, w)
	}
}

func TestAppendXMLObjTypeAndDest(t *testing.T) {
	const ami = "Response: Success\r\n\r\n"
	tests := []struct {
		objType, dest string
		wantStart     string
	}{
		{"", "", "<response type='object' id='unknown'><generic "},
		{"item", "status_div", "<response type='object' id='status_div'><item "},
		{"a-1.b_C", "x y", "<response type='object' id='x y'><a-1.b_C "},
		// Asterisk inserts both unescaped; amiproxy does not.
		{"x onload='alert(1)'", "'><script>", "<response type='object' id='&apos;&gt;&lt;script&gt;'><x_onload__alert_1__ "},
		{"1x", "a&b", "<response type='object' id='a&amp;b'><_1x "},
		{"-", "\"", "<response type='object' id='&quot;'><_- "},
	}
	for _, tt := range tests {
		got := string(rawman.AppendXML(nil, []byte(ami), tt.objType, tt.dest))
		if body := strings.TrimPrefix(got, "<ajax-response>\n"); !strings.HasPrefix(body, tt.wantStart) {
			t.Errorf("AppendXML(%q, %q, %q) = %q, want it to start %q", ami, tt.objType, tt.dest, got, tt.wantStart)
		}
	}
}

func TestXMLOptions(t *testing.T) {
	tests := []struct {
		name          string
		params        rawman.Message
		objType, dest string
	}{
		{"none", rawman.New("Action", "Ping"), "generic", "unknown"},
		{"set", rawman.New("Action", "Ping", "ajaxdest", "d", "ajaxobjtype", "o"), "o", "d"},
		{"name case ignored", rawman.New("AjaxDest", "d", "AJAXOBJTYPE", "o"), "o", "d"},
		{"last one wins", rawman.New("ajaxdest", "d1", "ajaxdest", "d2"), "generic", "d2"},
		{"empty last one means the default", rawman.New("ajaxdest", "d1", "ajaxdest", ""), "generic", "unknown"},
	}
	for _, tt := range tests {
		if objType, dest := rawman.XMLOptions(tt.params); objType != tt.objType || dest != tt.dest {
			t.Errorf("XMLOptions(%s) = %q, %q; want %q, %q", tt.name, objType, dest, tt.objType, tt.dest)
		}
	}
	m, _, _ := rawman.ParseQuery("action=ping&ajaxdest=out&ajaxobjtype=row")
	got := string(rawman.Render(nil, rawman.FormatXML, false, []byte("Response: Success\r\n\r\n"), m))
	if want := xmlDoc("<response type='object' id='out'><row response='Success' /></response>\n"); got != want {
		t.Errorf("Render(FormatXML, ajaxdest=out, ajaxobjtype=row) = %q, want %q", got, want)
	}
}

func htmlRow(k, v string) string { return "<tr><td>" + k + "</td><td>" + v + "</td></tr>\n" }

func TestAppendHTML(t *testing.T) {
	tests := []struct {
		name string
		ami  string
		rows string
	}{
		{"empty", "", ""},
		{"keys keep their case", "Response: Success\r\nActionID: p-1\r\n\r\n",
			htmlRow("Response", "Success") + htmlRow("ActionID", "p-1") + htmlRuleRow},
		{"keys and values escaped", "<b>: \"x\" & 'y'\r\n\r\n", htmlRow("&lt;b&gt;", "&quot;x&quot; &amp; &apos;y&apos;") + htmlRuleRow},
		{"duplicates numbered", "Output: a\r\nOutput: b\r\n\r\n", htmlRow("Output", "a") + htmlRow("Output-2", "b") + htmlRuleRow},
		{"opaque lines", "Response: Follows\r\nline 1\r\nline 2\r\n\r\nEvent: X\r\n\r\n",
			htmlRow("Response", "Follows") + "<tr><td>Opaque-data</td><td>line 1<br>\nline 2</td></tr>\n" + htmlRuleRow +
				htmlRow("Event", "X") + htmlRuleRow},
		{"opaque lines at the very end are closed", "a\r\nb",
			"<tr><td>Opaque-data</td><td>a<br>\nb</td></tr>\n" + htmlRuleRow},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			want := recordedManagerHead + tt.rows + recordedManagerTail
			if got := string(rawman.AppendHTML(nil, []byte(tt.ami))); got != want {
				t.Errorf("AppendHTML(%q) =\n%q\nwant\n%q", tt.ami, got, want)
			}
		})
	}
}

// TestAppendDigestHTML: no recording shows /amanager; the page is the one
// in auth_http_callback (Asterisk 22).
func TestAppendDigestHTML(t *testing.T) {
	want := "<!DOCTYPE HTML PUBLIC \"-//IETF//DTD HTML 2.0//EN\">\r\n" +
		"<html><head>\r\n" +
		"<title>Asterisk&trade; Manager Interface</title>\r\n" +
		"</head><body style=\"background-color: #ffffff;\">\r\n" +
		"<form method=\"POST\">\r\n" +
		"<table align=\"center\" style=\"background-color: #f1f1f1;\" width=\"500\">\r\n" +
		"<tr><th colspan=\"2\" style=\"background-color: #f1f1ff;\"><h1>Manager Tester</h1></th></tr>\r\n" +
		"<tr><th colspan=\"2\" style=\"background-color: #f1f1ff;\">Action: <input name=\"action\" /> Cmd: <input name=\"command\" /><br>" +
		"<input type=\"submit\" value=\"Send request\" /></th></tr>\r\n" +
		htmlRow("Response", "Success") + htmlRow("Ping", "Pong") + htmlRuleRow +
		"</table></form></body></html>\r\n"
	ami := []byte("Response: Success\r\nPing: Pong\r\n\r\n")
	if got := string(rawman.Render(nil, rawman.FormatHTML, true, ami, rawman.Message{})); got != want {
		t.Errorf("Render(FormatHTML, digest) =\n%q\nwant\n%q", got, want)
	}
}

func TestAppendRaw(t *testing.T) {
	tests := []struct{ ami, want string }{
		{"", ""},
		{"Response: Success\r\n\r\n", "Response: Success\r\n\r\n"},
		{"A: 1\r\n\r\nB: 2\x00C: 3\r\n\r\n", "A: 1\r\n\r\nB: 2"},
	}
	for _, tt := range tests {
		if got := string(rawman.AppendRaw([]byte("x"), []byte(tt.ami))); got != "x"+tt.want {
			t.Errorf("AppendRaw(\"x\", %q) = %q, want %q", tt.ami, got, "x"+tt.want)
		}
	}
}

func FuzzAppendXML(f *testing.F) {
	for _, name := range httpRecordings {
		for _, x := range loadHTTPExchanges(f, name) {
			if fm, _, _ := rawman.ParseFormat(x.path); fm == rawman.FormatRaw && x.status == 200 {
				f.Add(x.body, "", "")
			}
		}
	}
	f.Add([]byte("Response: Follows\r\nline\r\nmore\r\n"), "x'y", "<a>")
	f.Fuzz(func(t *testing.T, ami []byte, objType, dest string) {
		out := string(rawman.AppendXML([]byte("prefix"), ami, objType, dest))
		body, ok := strings.CutPrefix(out, "prefix<ajax-response>\n")
		if body, ok = strings.CutSuffix(body, "</ajax-response>\n"); !ok {
			t.Fatalf("AppendXML(%q, %q, %q) = %q, not an <ajax-response>", ami, objType, dest, out)
		}
		for body != "" {
			elem, rest, ok := strings.Cut(body, " /></response>\n")
			if !ok || !strings.HasPrefix(elem, "<response type='object' id='") {
				t.Fatalf("AppendXML(%q, %q, %q): unclosed or bad element %q", ami, objType, dest, body)
			}
			// Only the element's own markup may hold < and >, and every
			// attribute value is closed.
			if strings.Count(elem, "<") != 2 || strings.Count(elem, ">") != 1 || strings.Count(elem, "'")%2 != 0 {
				t.Fatalf("AppendXML(%q, %q, %q): element %q has stray markup", ami, objType, dest, elem)
			}
			body = rest
		}
		html := string(rawman.AppendHTML(nil, ami))
		rows, ok := strings.CutPrefix(html, recordedManagerHead)
		if rows, ok = strings.CutSuffix(rows, recordedManagerTail); !ok {
			t.Fatalf("AppendHTML(%q) = %q, not a Manager Tester page", ami, html)
		}
		if strings.Count(rows, "<tr>") != strings.Count(rows, "</tr>") || strings.Count(rows, "<td") != strings.Count(rows, "</td>") {
			t.Fatalf("AppendHTML(%q): unbalanced rows %q", ami, rows)
		}
		if stray := htmlTags.Replace(rows); strings.ContainsAny(stray, "<>") {
			t.Fatalf("AppendHTML(%q): stray markup in %q", ami, rows)
		}
	})
}

func BenchmarkAppendXML(b *testing.B) {
	ev := rawman.New(
		"Event", "Newchannel", "Privilege", "call,all", "Channel", "Local/100@lab-00000013;1",
		"ChannelState", "0", "ChannelStateDesc", "Down", "CallerIDNum", "<unknown>",
		"CallerIDName", "<unknown>", "ConnectedLineNum", "<unknown>", "ConnectedLineName", "<unknown>",
		"Language", "en", "AccountCode", "", "Context", "lab", "Exten", "100", "Priority", "1",
		"Uniqueid", "1795364886.38", "Linkedid", "1795364886.38", "Variable", "A=1", "Variable", "B=2",
		"SystemName", "pbx1", "ActionID", "we-2")
	ami, err := rawman.Encode(ev)
	if err != nil || ev.Len() != 20 {
		b.Fatal(err, ev.Len())
	}
	b.SetBytes(int64(len(ami)))
	b.ReportAllocs()
	var buf []byte
	for b.Loop() {
		buf = rawman.AppendXML(buf[:0], ami, "", "")
	}
}
