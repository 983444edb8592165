package rawman

import (
	"bytes"
	"io"
	"testing"
)

// A typical 20-header event, as Asterisk 22 sends for a new Local channel.
const benchEvent = "Event: Newchannel\r\n" +
	"Privilege: call,all\r\n" +
	"Timestamp: 1795364117.123456\r\n" +
	"SystemName: east\r\n" +
	"Channel: Local/100@lab-00000000;1\r\n" +
	"ChannelState: 0\r\n" +
	"ChannelStateDesc: Down\r\n" +
	"CallerIDNum: 5551234\r\n" +
	"CallerIDName: Lab Caller\r\n" +
	"ConnectedLineNum: <unknown>\r\n" +
	"ConnectedLineName: <unknown>\r\n" +
	"Language: en\r\n" +
	"AccountCode: \r\n" +
	"Context: lab\r\n" +
	"Exten: 100\r\n" +
	"Priority: 1\r\n" +
	"Uniqueid: 1795364117.0\r\n" +
	"Linkedid: 1795364117.0\r\n" +
	"Tenantid: \r\n" +
	"ChanVariable: FOO=bar\r\n" +
	"\r\n"

const benchPing = "Response: Success\r\nActionID: ping-1\r\nPing: Pong\r\nTimestamp: 1795364757.823614\r\n\r\n"

// loopReader serves the same bytes forever without allocating.
type loopReader struct {
	data []byte
	off  int
}

func (l *loopReader) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		c := copy(p[n:], l.data[l.off:])
		n += c
		l.off = (l.off + c) % len(l.data)
	}
	return n, nil
}

func benchmarkRead(b *testing.B, msg string, headers int) {
	r := NewReplyReader(&loopReader{data: []byte(msg)})
	b.SetBytes(int64(len(msg)))
	b.ReportAllocs()
	for b.Loop() {
		m, err := r.ReadMessage()
		if err != nil || m.Len() != headers {
			b.Fatalf("ReadMessage() = %d headers, %v", m.Len(), err)
		}
	}
}

func BenchmarkReadEvent20(b *testing.B) { benchmarkRead(b, benchEvent, 20) }
func BenchmarkReadPing(b *testing.B)    { benchmarkRead(b, benchPing, 4) }

// BenchmarkReadRequest parses a client request through the exact Asterisk
// framing (1024-byte window).
func BenchmarkReadRequest(b *testing.B) {
	req := "Action: Originate\r\nActionID: 42\r\nChannel: Local/100@lab\r\nApplication: Wait\r\nData: 5\r\nAsync: true\r\nCallerID: Lab <5551234>\r\nVariable: A=1\r\nVariable: B=2\r\n\r\n"
	r := NewReader(&loopReader{data: []byte(req)})
	b.SetBytes(int64(len(req)))
	b.ReportAllocs()
	for b.Loop() {
		if m, err := r.ReadMessage(); err != nil || m.Action() != "Originate" {
			b.Fatalf("ReadMessage() = %v, %v", m, err)
		}
	}
}

func benchmarkAppend(b *testing.B, msg string) {
	m, err := NewReplyReader(bytes.NewReader([]byte(msg))).ReadMessage()
	if err != nil {
		b.Fatal(err)
	}
	buf := make([]byte, 0, 4096)
	b.SetBytes(int64(len(msg)))
	b.ReportAllocs()
	for b.Loop() {
		out, err := Append(buf[:0], m)
		if err != nil || len(out) != len(msg) {
			b.Fatalf("Append() = %d bytes, %v", len(out), err)
		}
	}
}

func BenchmarkAppendEvent20(b *testing.B) { benchmarkAppend(b, benchEvent) }
func BenchmarkAppendPing(b *testing.B)    { benchmarkAppend(b, benchPing) }

// BenchmarkWriteEvent20 includes the Writer's single Write call.
func BenchmarkWriteEvent20(b *testing.B) {
	m, _ := NewReplyReader(bytes.NewReader([]byte(benchEvent))).ReadMessage()
	w := NewWriter(io.Discard)
	b.ReportAllocs()
	for b.Loop() {
		if err := w.WriteMessage(m); err != nil {
			b.Fatal(err)
		}
	}
}
