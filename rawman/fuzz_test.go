package rawman

import (
	"bytes"
	"errors"
	"io"
	"testing"
)

// maxFuzzInput keeps inputs small enough for the byte-at-a-time reference
// (its rescans are O(n×1024), like the C) while covering every limit: the
// 1024-byte window, 128 lines and the 4096-byte MaxMessage used below.
const maxFuzzInput = 32 << 10

func addRecordedSeeds(f *testing.F, dir string) {
	for _, rec := range loadRecordings(f, "tcp-") {
		for _, conn := range rec.Conns() {
			raw := rec.Stream(dir, conn)
			if dir == "S->C" {
				// Skip the banner line: the reply fuzzer reads messages only.
				if i := bytes.IndexByte(raw, '\n'); i >= 0 {
					raw = raw[i+1:]
				}
			}
			f.Add(raw, uint8(7))
		}
	}
}

// FuzzReadRequest is the differential test the smuggling defence rests on:
// on any input the Reader must split messages, report errors and answer
// header lookups exactly like the port of Asterisk's own code.
func FuzzReadRequest(f *testing.F) {
	addRecordedSeeds(f, "C->S")
	f.Add([]byte("Action: Ping\r\nX: "+string(bytes.Repeat([]byte("x"), 1020))+"\r\nAction: Command\r\n\r\n"), uint8(0))
	f.Add([]byte("Action: Ping\r\n\x00Action: Command\r\n\r\n"), uint8(3))
	f.Fuzz(func(t *testing.T, raw []byte, chunk uint8) {
		if len(raw) > maxFuzzInput {
			return
		}
		checkAgainstReference(t, raw, int(chunk))
	})
}

// FuzzRequestRoundTrip: a request the Reader accepts must re-encode and
// read back to the same lines, so forwarding the canonical form can never
// change what Asterisk sees.
func FuzzRequestRoundTrip(f *testing.F) {
	addRecordedSeeds(f, "C->S")
	f.Add([]byte(":Action: Command\r\nAction: Ping\r\n\r\n"), uint8(0))
	f.Fuzz(func(t *testing.T, raw []byte, _ uint8) {
		if len(raw) > maxFuzzInput {
			return
		}
		r := NewReader(bytes.NewReader(raw))
		for range 1000 {
			m, err := r.ReadMessage()
			if err != nil {
				var fe *FrameError
				if errors.As(err, &fe) {
					continue
				}
				return
			}
			enc, err := AppendRequest(nil, m)
			if err != nil {
				t.Fatalf("AppendRequest(accepted request %q) = %v", m.String(), err)
			}
			back, err := NewReader(bytes.NewReader(enc)).ReadMessage()
			if err != nil {
				t.Fatalf("re-reading %q: %v", enc, err)
			}
			if back.Len() != m.Len() {
				t.Fatalf("round trip of %q: %d lines, want %d", enc, back.Len(), m.Len())
			}
			for i := range m.Len() {
				if back.At(i) != m.At(i) {
					t.Fatalf("round trip line %d = %q, want %q", i, back.At(i), m.At(i))
				}
			}
			// Asterisk must read the canonical bytes as the proxy did.
			ref := &refSession{in: enc}
			res, ok := ref.doMessage()
			if !ok || res.errText != "" {
				t.Fatalf("Asterisk would refuse the canonical form %q: %q", enc, res.errText)
			}
			if a, w := m.Action(), refGetHeader(res.lines, "Action", true); a != w {
				t.Fatalf("canonical form: Asterisk reads Action %q, proxy checked %q", w, a)
			}
			if a, w := m.ActionID(), refGetHeader(res.lines, "ActionID", false); a != w {
				t.Fatalf("canonical form: Asterisk reads ActionID %q, proxy used %q", w, a)
			}
		}
	})
}

// FuzzReadReply: PBX output of any shape never panics or loops, and what
// is read re-encodes to bytes that read back the same.
func FuzzReadReply(f *testing.F) {
	addRecordedSeeds(f, "S->C")
	f.Add([]byte("Response: Follows\r\nPrivilege: Command\r\nout\n--END COMMAND--\r\n\r\n"), uint8(0))
	f.Fuzz(func(t *testing.T, raw []byte, _ uint8) {
		if len(raw) > maxFuzzInput {
			return
		}
		r := NewReplyReader(bytes.NewReader(raw))
		r.MaxMessage = 4096
		for range 10000 {
			m, err := r.ReadMessage()
			if err == io.EOF || errors.Is(err, io.ErrUnexpectedEOF) {
				return
			}
			if err != nil {
				var fe *FrameError
				if !errors.As(err, &fe) {
					t.Fatalf("ReadMessage() = %v, want a *FrameError or EOF", err)
				}
				continue
			}
			enc, err := Append(nil, m)
			if err != nil {
				continue // values with NUL or CR: the Writer refuses them
			}
			back, err := NewReplyReader(bytes.NewReader(enc)).ReadMessage()
			if err != nil {
				t.Fatalf("re-reading %q: %v", enc, err)
			}
			if back.Len() != m.Len() || back.Body() != m.Body() {
				t.Fatalf("round trip of %q: %d lines body %q, want %d lines body %q", enc, back.Len(), back.Body(), m.Len(), m.Body())
			}
			for i := range m.Len() {
				if back.At(i) != m.At(i) {
					t.Fatalf("round trip line %d = %q, want %q (encoded %q)", i, back.At(i), m.At(i), enc)
				}
			}
		}
		t.Fatal("ReadMessage() did not reach the end of a finite input")
	})
}
