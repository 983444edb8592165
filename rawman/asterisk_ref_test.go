package rawman

// A small, literal port of Asterisk's input side (main/manager.c: get_input,
// do_message, __astman_get_header), kept deliberately close to the C so the
// Reader can be fuzzed differentially against it. It is slow and simple on
// purpose; it shares no code with the Reader.

import "strings"

const (
	refOK      = 0 // MESSAGE_OKAY
	refTooLong = 1 // MESSAGE_LINE_TOO_LONG
)

type refSession struct {
	in      []byte     // what the client has still to send
	inbuf   [1025]byte // char inbuf[1025]
	inlen   int
	parsing int
	chunk   int // bytes per read(), to exercise partial reads; 0 = as many as fit
}

// getInput is get_input: it returns a line (as the C string the caller
// sees), or ok=false when it needed more input and there is none.
func (s *refSession) getInput() (line string, ok bool) {
	for {
		src := s.inbuf[:]
		for x := 0; x < s.inlen; x++ {
			cr := 0
			if src[x] == '\r' && x+1 < s.inlen && src[x+1] == '\n' {
				cr = 2
			} else if src[x] == '\n' {
				cr = 1
			} else {
				continue
			}
			out := string(src[:x])
			if i := strings.IndexByte(out, 0); i >= 0 { // C string
				out = out[:i]
			}
			x += cr
			s.inlen -= x
			copy(src, src[x:x+s.inlen])
			return out, true
		}
		maxlen := len(s.inbuf) - 1
		if s.inlen >= maxlen {
			src[0] = src[s.inlen-1]
			s.inlen = 1
			s.parsing = refTooLong
		}
		if len(s.in) == 0 {
			return "", false
		}
		n := maxlen - s.inlen
		if s.chunk > 0 && n > s.chunk {
			n = s.chunk
		}
		n = copy(src[s.inlen:s.inlen+n], s.in)
		s.in = s.in[n:]
		s.inlen += n
	}
}

type refResult struct {
	lines   []string // the stored header lines
	errText string   // "" when process_message would run
}

// doMessage is do_message up to the point where it would call
// process_message or answer a parse error. ok=false at end of input.
func (s *refSession) doMessage() (refResult, bool) {
	var m []string
	hdrLoss := false
	for {
		line, ok := s.getInput()
		if !ok {
			return refResult{}, false
		}
		if line == "" {
			if hdrLoss {
				return refResult{lines: m, errText: "Too many lines in message or allocation failure"}, true
			}
			if s.parsing == refTooLong {
				s.parsing = refOK
				return refResult{lines: m, errText: "Failed to parse message: line too long"}, true
			}
			return refResult{lines: m}, true
		}
		if len(m) < 128 {
			m = append(m, line)
		} else {
			hdrLoss = true
		}
	}
}

// refGetHeader is __astman_get_header with mode 0 (first match) or
// skipEmpty (GET_HEADER_SKIP_EMPTY, used for Action).
func refGetHeader(lines []string, name string, skipEmpty bool) string {
	l := len(name)
	for _, h := range lines {
		if len(h) > l && strncasecmp(h[:l], name) && h[l] == ':' {
			v := h[l+1:]
			for len(v) > 0 && v[0] < 33 { // ast_skip_blanks
				v = v[1:]
			}
			if skipEmpty && v == "" {
				continue
			}
			return v
		}
	}
	return ""
}

// strncasecmp compares like the C function in the C locale: only A-Z fold.
func strncasecmp(a, b string) bool {
	lower := func(c byte) byte {
		if 'A' <= c && c <= 'Z' {
			return c + 'a' - 'A'
		}
		return c
	}
	for i := 0; i < len(a); i++ {
		if lower(a[i]) != lower(b[i]) {
			return false
		}
	}
	return true
}
