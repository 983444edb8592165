package proxy

import (
	"strconv"
	"strings"
	"time"
)

// Replies the proxy writes itself, byte for byte as Asterisk's
// astman_send_response_full and friends write them: "Key: Value" CRLF lines
// in Asterisk's order, ActionID second and only when the request carried a
// non-empty one, and a blank line.

// appendHeader appends "key: value\r\n". Values come from parsed requests,
// which cannot hold CR, LF or NUL; anything else is replaced defensively
// so that no value can ever start a line of its own.
func appendHeader(b []byte, key, value string) []byte {
	b = append(b, key...)
	b = append(b, ": "...)
	if strings.ContainsAny(value, "\r\n\x00") {
		value = strings.Map(func(r rune) rune {
			if r == '\r' || r == '\n' || r == 0 {
				return ' '
			}
			return r
		}, value)
	}
	b = append(b, value...)
	return append(b, "\r\n"...)
}

// appendResponse starts a response: "Response: <resp>" and the ActionID.
func appendResponse(b []byte, resp, actionID string) []byte {
	b = appendHeader(b, "Response", resp)
	if actionID != "" {
		b = appendHeader(b, "ActionID", actionID)
	}
	return b
}

// appendAck appends a whole "Response / ActionID / Message" reply.
func appendAck(b []byte, resp, actionID, message string) []byte {
	b = appendResponse(b, resp, actionID)
	b = appendHeader(b, "Message", message)
	return append(b, "\r\n"...)
}

// errorReply is "Response: Error" with the ActionID and message.
func errorReply(actionID, message string) []byte {
	return appendAck(nil, "Error", actionID, message)
}

// epochMicro formats t as Asterisk's "%ld.%06lu" timestamps.
func epochMicro(t time.Time) string {
	us := t.UnixMicro()
	sec, frac := us/1e6, us%1e6
	if frac < 0 {
		sec, frac = sec-1, frac+1e6
	}
	s := strconv.FormatInt(frac, 10)
	return strconv.FormatInt(sec, 10) + "." + strings.Repeat("0", 6-len(s)) + s
}

// Fixed texts of Asterisk (ami-spec.md §3.5).
const (
	msgPermissionDenied = "Permission denied"
	msgMissingAction    = "Missing action in request"
	msgAuthFailed       = "Authentication failed"
)

// shutdownEventText is Asterisk's own Shutdown event, sent by Close.
const shutdownEventText = "Event: Shutdown\r\nPrivilege: system,all\r\nShutdown: Cleanly\r\nRestart: False\r\n\r\n"

// Names of the events the proxy synthesizes when the link to a PBX goes
// down or comes back (class system, with a Server header).
const (
	EventUpstreamDown = "ProxyUpstreamDown"
	EventUpstreamUp   = "ProxyUpstreamUp"
)

// insertServer returns a copy of the encoded message raw with
// "Server: <pbx>" inserted after its Privilege line (the second line of
// every queued event), or after its first line when the second is not a
// Privilege line.
func insertServer(raw []byte, pbx string) []byte {
	at := lineEnd(raw, 0)
	if at < len(raw) && hasPrefixFold(raw[at:], "Privilege:") {
		at = lineEnd(raw, at)
	}
	out := make([]byte, 0, len(raw)+len(pbx)+10)
	out = append(out, raw[:at]...)
	out = appendHeader(out, "Server", pbx)
	return append(out, raw[at:]...)
}

// lineEnd returns the index just after the LF that ends the line starting
// at i, or len(b).
func lineEnd(b []byte, i int) int {
	for ; i < len(b); i++ {
		if b[i] == '\n' {
			return i + 1
		}
	}
	return len(b)
}

func hasPrefixFold(b []byte, prefix string) bool {
	return len(b) >= len(prefix) && strings.EqualFold(string(b[:len(prefix)]), prefix)
}

// parseTimeout reads a WaitEvent Timeout like Asterisk's sscanf("%30i"):
// optional blanks and sign, then decimal, 0x hex or 0 octal digits up to the
// first other byte. It returns -1 (wait as long as allowed) for a missing or
// unreadable value and for anything below -1.
func parseTimeout(s string) int {
	s = strings.TrimLeft(s, " \t\r\n\v\f")
	neg := false
	if s != "" && (s[0] == '+' || s[0] == '-') {
		neg = s[0] == '-'
		s = s[1:]
	}
	base := 10
	switch {
	case len(s) > 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X') && digitVal(s[2]) < 16:
		base, s = 16, s[2:]
	case len(s) > 0 && s[0] == '0':
		base = 8
	}
	n, any := 0, false
	for i := 0; i < len(s) && i < 30; i++ {
		d := digitVal(s[i])
		if d >= base {
			break
		}
		any = true
		if n < 1<<30 {
			n = n*base + d
		}
	}
	if !any {
		return -1
	}
	if neg {
		n = -n
	}
	return max(n, -1)
}

func digitVal(c byte) int {
	switch {
	case c >= '0' && c <= '9':
		return int(c - '0')
	case c >= 'a' && c <= 'f':
		return int(c-'a') + 10
	case c >= 'A' && c <= 'F':
		return int(c-'A') + 10
	}
	return 99
}
