package rawman

import (
	"bytes"
	"strconv"
)

// The renderers below turn the AMI text an action produced (what Asterisk
// writes to its temporary file: CRLF lines and a blank line after each
// message, as Append makes them, possibly several messages back to back)
// into the body of an HTTP manager response, byte for byte as Asterisk
// 22's process_output and xml_translate do. The input is read as a C string
// would be: it ends at the first NUL byte.
//
// For the XML and HTML formats the input is cut into lines at every CR or
// LF, where a LF right after the end of a line is skipped (so CRLF ends one
// line, and so does LF LF: a bare-LF blank line after a bare-LF line is
// lost, as in Asterisk). Each line loses its trailing bytes below 0x21; a
// line left empty ends the current block. Within a block, "Key: value"
// lines become an attribute or a table row: the key keeps what precedes
// the first colon, minus trailing bytes below 0x21, the value what follows
// it, minus leading bytes below 0x21. A line without a colon switches the
// rest of the block to "opaque" mode: that line and every following one
// become the single value "Opaque-data" ("opaque_data" in XML), joined by
// "\n" (XML) or "<br>\n" (HTML). A key that repeats within a block (exact,
// case-sensitive match on the trimmed key) gets "-2", "-3"... appended.

// Fixed parts of the pages.
const (
	xmlHead = "<ajax-response>\n"
	xmlTail = "</ajax-response>\n"

	// htmlHead is generic_http_callback's page start for /manager.
	htmlHead = "<title>Asterisk&trade; Manager Interface</title>" +
		"<body bgcolor=\"#ffffff\"><table align=center bgcolor=\"#f1f1f1\" width=\"500\">\r\n" +
		"<tr><td colspan=\"2\" bgcolor=\"#f1f1ff\"><h1>Manager Tester</h1></td></tr>\r\n" +
		"<tr><td colspan=\"2\" bgcolor=\"#f1f1ff\">" +
		"<form action=\"manager\" method=\"post\">\n" +
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
	htmlTail = "</table></body>\r\n"

	// digestHTMLHead is auth_http_callback's page start for /amanager.
	digestHTMLHead = "<!DOCTYPE HTML PUBLIC \"-//IETF//DTD HTML 2.0//EN\">\r\n" +
		"<html><head>\r\n" +
		"<title>Asterisk&trade; Manager Interface</title>\r\n" +
		"</head><body style=\"background-color: #ffffff;\">\r\n" +
		"<form method=\"POST\">\r\n" +
		"<table align=\"center\" style=\"background-color: #f1f1f1;\" width=\"500\">\r\n" +
		"<tr><th colspan=\"2\" style=\"background-color: #f1f1ff;\"><h1>Manager Tester</h1></th></tr>\r\n" +
		"<tr><th colspan=\"2\" style=\"background-color: #f1f1ff;\">Action: <input name=\"action\" /> Cmd: <input name=\"command\" /><br>" +
		"<input type=\"submit\" value=\"Send request\" /></th></tr>\r\n"
	digestHTMLTail = "</table></form></body></html>\r\n"

	htmlRule = "<tr><td colspan=\"2\"><hr></td></tr>\r\n"
)

// Defaults of the ajaxobjtype and ajaxdest parameters: the mxml element
// name and the id of each <response>.
const (
	DefaultXMLObjType = "generic"
	DefaultXMLDest    = "unknown"
)

// Render appends to dst the body Asterisk sends for ami in format f:
// AppendRaw, AppendXML with the ajaxobjtype and ajaxdest of params (see
// XMLOptions), or AppendHTML (AppendDigestHTML when digest is set, for
// /amanager). params are the request's parameters as ParseQuery or
// ParseForm returned them. An invalid f appends nothing.
//
// An empty ami, which is what a WaitEvent kicked by a newer one on the same
// session produces, renders as an empty body (raw), an empty
// <ajax-response> element (XML) or a page with no rows (HTML).
func Render(dst []byte, f Format, digest bool, ami []byte, params Message) []byte {
	switch f {
	case FormatRaw:
		return AppendRaw(dst, ami)
	case FormatXML:
		objType, dest := XMLOptions(params)
		return AppendXML(dst, ami, objType, dest)
	case FormatHTML:
		if digest {
			return AppendDigestHTML(dst, ami)
		}
		return AppendHTML(dst, ami)
	}
	return dst
}

// AppendRaw appends the rawman body for ami: the text unchanged, up to its
// first NUL byte (Asterisk copies it as a C string).
func AppendRaw(dst, ami []byte) []byte {
	if i := bytes.IndexByte(ami, 0); i >= 0 {
		ami = ami[:i]
	}
	return append(dst, ami...)
}

// XMLOptions returns the element name and id the mxml format uses for
// params: the values of the last "ajaxobjtype" and "ajaxdest" parameters
// (names compared ignoring ASCII case), each replaced by its default
// ("generic", "unknown") when missing or empty.
func XMLOptions(params Message) (objType, dest string) {
	for _, h := range params.All() {
		switch {
		case asciiEqualFold(h.Key, "ajaxdest"):
			dest = h.Value
		case asciiEqualFold(h.Key, "ajaxobjtype"):
			objType = h.Value
		}
	}
	if objType == "" {
		objType = DefaultXMLObjType
	}
	if dest == "" {
		dest = DefaultXMLDest
	}
	return objType, dest
}

// AppendXML appends the mxml body for ami:
//
//	<ajax-response>
//	<response type='object' id='DEST'><OBJTYPE key='value' ... /></response>
//	...
//	</ajax-response>
//
// with one <response> line per block. Attribute names are the keys
// lower-cased, every byte that is not an ASCII letter or digit replaced by
// '_', and '_' put before a leading digit; values escape only < > " ' &
// (as &lt; &gt; &quot; &apos; &amp;) and pass every other byte through.
// An empty objType or dest means the default.
//
// Two deliberate differences from Asterisk, which inserts objType and dest
// (client parameters) unescaped: dest is escaped like a value, and objType
// keeps only ASCII letters, digits, '_', '-' and '.', the others becoming
// '_', with '_' put first unless it starts with a letter or '_'. Both are
// unchanged for such safe values ("generic", "unknown", "a-1"). And an
// opaque value still open at the end of ami is closed with its quote,
// which Asterisk forgets (and it crashes on a last line with no colon
// and no line end).
func AppendXML(dst, ami []byte, objType, dest string) []byte {
	if objType == "" {
		objType = DefaultXMLObjType
	}
	if dest == "" {
		dest = DefaultXMLDest
	}
	dst = append(dst, xmlHead...)
	dst = translate(dst, ami, true, objType, dest)
	return append(dst, xmlTail...)
}

// AppendHTML appends the /manager ("Manager Tester") page for ami: the
// page head, one <tr><td>Key</td><td>Value</td></tr> row per line (keys
// keep their case; both cells escaped like XML values), a rule row after
// each block, and the closing tags.
func AppendHTML(dst, ami []byte) []byte {
	dst = append(dst, htmlHead...)
	dst = translate(dst, ami, false, "", "")
	return append(dst, htmlTail...)
}

// AppendDigestHTML is AppendHTML for /amanager, whose page Asterisk wraps
// in a different document with its own form. It is built from Asterisk's
// source (auth_http_callback); no recording shows it.
func AppendDigestHTML(dst, ami []byte) []byte {
	dst = append(dst, digestHTMLHead...)
	dst = translate(dst, ami, false, "", "")
	return append(dst, digestHTMLTail...)
}

// keyCount counts a key within a block.
type keyCount struct {
	key []byte
	n   int
}

// keyCounter counts keys per block: a short slice scanned linearly, and a
// map once a block has many distinct keys, so a huge block stays linear.
type keyCounter struct {
	small []keyCount
	big   map[string]int
}

func (c *keyCounter) reset() {
	c.small = c.small[:0]
	clear(c.big)
}

func (c *keyCounter) add(key []byte) int {
	if len(c.big) > 0 {
		n := c.big[string(key)] + 1
		c.big[string(key)] = n
		return n
	}
	for i := range c.small {
		if bytes.Equal(c.small[i].key, key) {
			c.small[i].n++
			return c.small[i].n
		}
	}
	if len(c.small) < 32 {
		c.small = append(c.small, keyCount{key: key, n: 1})
		return 1
	}
	if c.big == nil {
		c.big = make(map[string]int, 64)
	}
	for _, kc := range c.small {
		c.big[string(kc.key)] = kc.n
	}
	c.small = c.small[:0]
	c.big[string(key)] = 1
	return 1
}

var opaqueKey = []byte("Opaque-data")

// translate is xml_translate; objType and dest are used in XML mode only.
func translate(dst, in []byte, xml bool, objType, dest string) []byte {
	if i := bytes.IndexByte(in, 0); i >= 0 {
		in = in[:i]
	}
	var small [32]keyCount
	counts := keyCounter{small: small[:0]}
	inObj := false   // inside a block
	inData := false  // opaque mode
	pending := false // an opaque value is not closed yet
	for len(in) > 0 {
		var line []byte
		if i := indexEOL(in); i >= 0 {
			line, in = in[:i], in[i+1:]
			if len(in) > 0 && in[0] == '\n' {
				in = in[1:]
			}
		} else {
			line, in = in, nil
		}
		line = trimBlanksRight(line)
		if len(line) == 0 {
			if inData {
				dst = closeValue(dst, xml)
				inData, pending = false, false
			}
			if inObj {
				dst = closeBlock(dst, xml)
				inObj = false
				counts.reset()
			}
			continue
		}
		if !inObj {
			if xml {
				dst = append(dst, "<response type='object' id='"...)
				dst = appendEscaped(dst, dest)
				dst = append(dst, '\'', '>', '<')
				dst = appendObjType(dst, objType)
			}
			inObj = true
		}
		if inData {
			if xml {
				dst = append(dst, '\n')
			} else {
				dst = append(dst, "<br>\n"...)
			}
			dst = appendEscaped(dst, line)
			continue
		}
		key, value := opaqueKey, line
		if c := bytes.IndexByte(line, ':'); c >= 0 {
			key, value = trimBlanksRight(line[:c]), skipBlanksBytes(line[c+1:])
		} else {
			inData = true
		}
		if xml {
			dst = append(dst, ' ')
		} else {
			dst = append(dst, "<tr><td>"...)
		}
		n := counts.add(key)
		if xml {
			dst = appendAttrName(dst, key)
		} else {
			dst = appendEscaped(dst, key)
		}
		if n > 1 {
			dst = append(dst, '-')
			dst = strconv.AppendInt(dst, int64(n), 10)
		}
		if xml {
			dst = append(dst, '=', '\'')
		} else {
			dst = append(dst, "</td><td>"...)
		}
		dst = appendEscaped(dst, value)
		if !inData || len(in) == 0 {
			dst = closeValue(dst, xml)
		} else {
			pending = true
		}
	}
	if inObj {
		if pending {
			dst = closeValue(dst, xml) // Asterisk leaves it open
		}
		dst = closeBlock(dst, xml)
	}
	return dst
}

// indexEOL returns the index of the first CR or LF in b, or -1.
func indexEOL(b []byte) int {
	for i, c := range b {
		if c == '\r' || c == '\n' {
			return i
		}
	}
	return -1
}

func closeValue(dst []byte, xml bool) []byte {
	if xml {
		return append(dst, '\'')
	}
	return append(dst, "</td></tr>\n"...)
}

func closeBlock(dst []byte, xml bool) []byte {
	if xml {
		return append(dst, " /></response>\n"...)
	}
	return append(dst, htmlRule...)
}

func trimBlanksRight(b []byte) []byte {
	for len(b) > 0 && b[len(b)-1] < 0x21 {
		b = b[:len(b)-1]
	}
	return b
}

func skipBlanksBytes(b []byte) []byte {
	for len(b) > 0 && b[0] < 0x21 {
		b = b[1:]
	}
	return b
}

// appendEscaped is xml_copy_escape in mode 0.
func appendEscaped[S ~string | ~[]byte](dst []byte, s S) []byte {
	start := 0
	for i := 0; i < len(s); i++ {
		var esc string
		switch s[i] {
		case '<':
			esc = "&lt;"
		case '>':
			esc = "&gt;"
		case '"':
			esc = "&quot;"
		case '\'':
			esc = "&apos;"
		case '&':
			esc = "&amp;"
		default:
			continue
		}
		dst = append(dst, s[start:i]...)
		dst = append(dst, esc...)
		start = i + 1
	}
	return append(dst, s[start:]...)
}

// appendAttrName is xml_copy_escape in mode 3 (lower-case, non-alphanumeric
// to '_', '_' before a leading digit). Bytes from 0x80 are not alphanumeric
// in the C locale.
func appendAttrName(dst, key []byte) []byte {
	for i, c := range key {
		switch {
		case '0' <= c && c <= '9':
			if i == 0 {
				dst = append(dst, '_')
			}
			dst = append(dst, c)
		case 'a' <= c && c <= 'z':
			dst = append(dst, c)
		case 'A' <= c && c <= 'Z':
			dst = append(dst, c+'a'-'A')
		default:
			dst = append(dst, '_')
		}
	}
	return dst
}

// appendObjType writes an ajaxobjtype value as a safe XML element name.
func appendObjType(dst []byte, s string) []byte {
	if c := s[0]; !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || c == '_') {
		dst = append(dst, '_')
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '_', c == '-', c == '.':
			dst = append(dst, c)
		default:
			dst = append(dst, '_')
		}
	}
	return dst
}
