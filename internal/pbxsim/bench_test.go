package pbxsim

import (
	"fmt"
	"io"
	"net"
	"testing"
	"time"

	"github.com/amiproxy/amiproxy/rawman"
)

// BenchmarkEmit measures the fan-out of one event to 20 logged-in
// sessions that read everything.
func BenchmarkEmit(b *testing.B) {
	s := startServer(b, Config{MaxQueuedEvents: 1 << 20, WriteTimeout: 10 * time.Second})
	for range 20 {
		conn, err := net.Dial("tcp", s.Addr().String())
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { conn.Close() })
		fmt.Fprintf(conn, "Action: Login\r\nUsername: admin\r\nSecret: adminpass\r\n\r\n")
		go func() { _, _ = io.Copy(io.Discard, conn) }() // ends when Cleanup closes conn
	}
	waitFor(func() bool { return s.Sessions() == 20 }, 5*time.Second)
	ev := rawman.New("Event", "Newstate", "Privilege", "call,all", "Channel", "Local/100@lab-00000000;1",
		"ChannelState", "6", "ChannelStateDesc", "Up", "Uniqueid", "1795364117.0")
	b.ReportAllocs()
	for b.Loop() {
		s.Emit(ev)
	}
}
