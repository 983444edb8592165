package proxy

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/amiproxy/amiproxy/auth"
	"github.com/amiproxy/amiproxy/policy"
	"github.com/amiproxy/amiproxy/rawman"
)

// roundTrips sends action b.N times on conn and waits for each reply.
func roundTrips(b *testing.B, conn net.Conn, br *bufio.Reader, action string) {
	req := []byte("Action: " + action + "\r\nActionID: bench\r\n\r\n")
	b.ResetTimer()
	for range b.N {
		if _, err := conn.Write(req); err != nil {
			b.Fatal(err)
		}
		for {
			l, err := br.ReadSlice('\n')
			if err != nil {
				b.Fatal(err)
			}
			if len(l) == 2 {
				break
			}
		}
	}
}

// rawLogin dials addr, reads the banner and logs in with events off.
func rawLogin(b *testing.B, addr string) (net.Conn, *bufio.Reader) {
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = conn.Close() })
	br := bufio.NewReader(conn)
	if _, err := br.ReadString('\n'); err != nil {
		b.Fatal(err)
	}
	fmt.Fprintf(conn, "Action: Login\r\nUsername: admin\r\nSecret: adminpass\r\nEvents: off\r\n\r\n")
	for {
		l, err := br.ReadString('\n')
		if err != nil {
			b.Fatal(err)
		}
		if l == "\r\n" {
			break
		}
	}
	return conn, br
}

// Ping is answered by the proxy itself; CoreSettings is forwarded to the
// PBX and back. "direct" talks to pbxsim without the proxy.
func BenchmarkRoundTrip(b *testing.B) {
	checkLeaks(b)
	e := newEnv(b, envOpts{})
	for _, action := range []string{"Ping", "CoreSettings"} {
		for _, via := range []string{"proxy", "direct"} {
			b.Run(action+"/"+via, func(b *testing.B) {
				addr := e.addr
				if via == "direct" {
					addr = e.sims["east"].Addr().String()
				}
				conn, br := rawLogin(b, addr)
				roundTrips(b, conn, br, action)
			})
		}
	}
}

// BenchmarkFanout100 measures events from one PBX delivered through the
// proxy to 100 TCP clients, each reading on its own goroutine. Events are
// emitted in windows of 500 (a window waits until every client has the
// previous one), so the figure is sustained throughput.
func BenchmarkFanout100(b *testing.B) { fanout100(b, "admin", "adminpass") }

// BenchmarkFanout100Filtered is BenchmarkFanout100 for a user whose role
// has an eventfilter (which every event passes).
func BenchmarkFanout100Filtered(b *testing.B) { fanout100(b, "filtered", "filteredpass") }

func fanout100(b *testing.B, user, secret string) {
	checkLeaks(b)
	const clients, window = 100, 500
	e := newEnv(b, envOpts{})
	received := make([]atomic.Int64, clients)
	newchannel := []byte("Event: Newchannel\r\n")
	var wg sync.WaitGroup
	conns := make([]net.Conn, clients)
	for i := range clients {
		conn, err := net.Dial("tcp", e.addr)
		if err != nil {
			b.Fatal(err)
		}
		conns[i] = conn
		br := bufio.NewReaderSize(conn, 64<<10)
		if _, err := br.ReadString('\n'); err != nil {
			b.Fatal(err)
		}
		fmt.Fprintf(conn, "Action: Login\r\nUsername: %s\r\nSecret: %s\r\nEvents: call\r\n\r\n", user, secret)
		for {
			l, err := br.ReadString('\n')
			if err != nil {
				b.Fatal(err)
			}
			if l == "\r\n" {
				break
			}
		}
		wg.Go(func() {
			for {
				l, err := br.ReadSlice('\n')
				if err != nil {
					return
				}
				if bytes.HasPrefix(l, newchannel) {
					received[i].Add(1)
				}
			}
		})
	}
	ev := rawman.New("Event", "Newchannel", "Privilege", "call,all",
		"Channel", "Local/100@lab-00000008;1", "ChannelState", "0", "ChannelStateDesc", "Down",
		"CallerIDNum", "<unknown>", "CallerIDName", "<unknown>", "ConnectedLineNum", "<unknown>",
		"ConnectedLineName", "<unknown>", "Language", "en", "AccountCode", "", "Context", "lab",
		"Exten", "100", "Priority", "1", "Uniqueid", "1795364811.16", "Linkedid", "1795364811.16")
	sim := e.sims["east"]
	b.ResetTimer()
	start := time.Now()
	for sent := 0; sent < b.N; {
		n := min(window, b.N-sent)
		for range n {
			sim.Emit(ev)
		}
		sent += n
		deadline := time.Now().Add(30 * time.Second)
		for i := range clients {
			for received[i].Load() < int64(sent) {
				if time.Now().After(deadline) {
					b.Fatalf("client %d has %d of %d events; %+v", i, received[i].Load(), sent, e.gw.Stats())
				}
				time.Sleep(50 * time.Microsecond)
			}
		}
	}
	elapsed := time.Since(start)
	b.StopTimer()
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "events/s")
	b.ReportMetric(float64(b.N*clients)/elapsed.Seconds(), "deliveries/s")
	for _, c := range conns {
		_ = c.Close()
	}
	wg.Wait()
}

// BenchmarkRevalidate measures one Revalidate over 1000 live sessions:
// "validator" with an unchanged engine (the sweep's steady state: one
// Validate per session), "new engine" with the engine swapped before each
// run (a Subject recomputed per session, as after a reload).
func BenchmarkRevalidate(b *testing.B) {
	rv := newRevoker()
	e := newEnv(b, envOpts{cfg: Config{Validator: rv, RevalidateInterval: MaxRevalidateInterval}})
	const n = 1000
	for i := range n {
		s := newSession(e.gw, netip.MustParseAddrPort("127.0.0.1:1"), "bench")
		s.loginMu.Lock()
		_, _, cause := s.establish(context.Background(), auth.Principal{Subject: "b", Username: "admin", Method: auth.MethodPassword},
			rawman.New("Action", "Login", "ActionID", strconv.Itoa(i)), "admin", time.Now())
		s.loginMu.Unlock()
		if cause != "" {
			b.Fatal(cause)
		}
		b.Cleanup(s.close)
	}
	engines := []*policy.Engine{mustCompile(b, testPolicy()), mustCompile(b, testPolicy())}
	b.Run("validator", func(b *testing.B) {
		for b.Loop() {
			e.gw.Revalidate()
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/session")
	})
	b.Run("new engine", func(b *testing.B) {
		i := 0
		for b.Loop() {
			e.gw.engine.Store(engines[i%2])
			i++
			e.gw.Revalidate()
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/session")
	})
	if s := e.gw.Stats(); s.EndedRevoked+s.EndedRemoved+s.EndedExpired != 0 {
		b.Fatalf("sessions ended: %+v", s)
	}
}
