package loadgen

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/amiproxy/amiproxy/internal/pbxsim"
	"github.com/amiproxy/amiproxy/rawman"
)

// checkGoroutines fails the test if goroutines started during it are
// still running once it ends (after a grace period).
func checkGoroutines(t *testing.T) {
	t.Helper()
	before := runtime.NumGoroutine()
	t.Cleanup(func() {
		deadline := time.Now().Add(5 * time.Second)
		for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		if n := runtime.NumGoroutine(); n > before {
			buf := make([]byte, 1<<16)
			t.Errorf("%d goroutines leaked:\n%s", n-before, buf[:runtime.Stack(buf, true)])
		}
	})
}

func TestPercentile(t *testing.T) {
	var l Latencies
	if got := l.Percentile(.5); got != 0 {
		t.Errorf("empty Percentile(.5) = %v, want 0", got)
	}
	for i := 100; i >= 1; i-- { // added out of order
		l.Add(time.Duration(i) * time.Microsecond)
	}
	tests := []struct {
		q    float64
		want time.Duration
	}{
		{0, 1 * time.Microsecond},
		{.01, 1 * time.Microsecond},
		{.5, 50 * time.Microsecond},
		{.501, 51 * time.Microsecond},
		{.99, 99 * time.Microsecond},
		{1, 100 * time.Microsecond},
		{2, 100 * time.Microsecond},
	}
	for _, tt := range tests {
		if got := l.Percentile(tt.q); got != tt.want {
			t.Errorf("Percentile(%v) = %v, want %v", tt.q, got, tt.want)
		}
	}
	var m Latencies
	m.Add(time.Millisecond)
	l.Merge(&m)
	if got := l.Percentile(1); got != time.Millisecond || l.Len() != 101 {
		t.Errorf("after Merge: max %v len %d, want 1ms and 101", got, l.Len())
	}
}

func TestMarkerCounterSplits(t *testing.T) {
	marker := []byte("Event: UserEvent\r\n")
	stream := bytes.Repeat([]byte("Event: UserEvent\r\nSeq: 1\r\n\r\nEvent: Other\r\n\r\n"), 50)
	want := int64(bytes.Count(stream, marker))
	for size := 1; size <= 40; size++ {
		mc := MarkerCounter{Marker: marker}
		var got int64
		for p := stream; len(p) > 0; {
			k := min(size, len(p))
			got += mc.Count(p[:k])
			p = p[k:]
		}
		if got != want {
			t.Errorf("pieces of %d: Count = %d, want %d", size, got, want)
		}
	}
}

// FuzzMarkerCounter checks the counter against bytes.Count over the whole
// stream for every way of cutting it in two or three pieces.
func FuzzMarkerCounter(f *testing.F) {
	f.Add([]byte("Event: UserEvent\r\nEvent: UserEvent\r\n"), uint8(5), uint8(20))
	f.Add([]byte("xxEvent: UserEventEvent: UserEvent\r\n\r\n"), uint8(0), uint8(1))
	f.Fuzz(func(t *testing.T, stream []byte, a, b uint8) {
		marker := []byte("Event: UserEvent\r\n") // does not overlap itself
		i := min(int(a), len(stream))
		j := min(max(int(b), i), len(stream))
		mc := MarkerCounter{Marker: marker}
		got := mc.Count(stream[:i]) + mc.Count(stream[i:j]) + mc.Count(stream[j:])
		if want := int64(bytes.Count(stream, marker)); got != want {
			t.Fatalf("Count in pieces [:%d][%d:%d][%d:] = %d, want %d", i, i, j, j, got, want)
		}
	})
}

func TestParseKiBField(t *testing.T) {
	status := []byte("Name:\tamiproxy\nVmPeak:\t  200 kB\nVmRSS:\t   12345 kB\nThreads:\t7\n")
	if got, err := ParseKiBField(status, "VmRSS:"); err != nil || got != 12345 {
		t.Errorf("ParseKiBField(VmRSS:) = %d, %v, want 12345", got, err)
	}
	for _, bad := range []string{"VmRSS: 12 MB\n", "VmRSS: -4 kB\n", "VmRSS:\n", "Other: 1 kB\n", "VmRSS: x kB\n"} {
		if got, err := ParseKiBField([]byte(bad), "VmRSS:"); err == nil {
			t.Errorf("ParseKiBField(%q) = %d, nil, want an error", bad, got)
		}
	}
}

func FuzzParseKiBField(f *testing.F) {
	f.Add([]byte("Rss:  100 kB\n"))
	f.Add([]byte("VmRSS:\t9223372036854775807 kB\n"))
	f.Fuzz(func(t *testing.T, raw []byte) {
		n, err := ParseKiBField(raw, "Rss:")
		if err == nil && n < 0 {
			t.Fatalf("ParseKiBField(%q) = %d, a negative size", raw, n)
		}
	})
}

func TestRSSOfThisProcess(t *testing.T) {
	rss, err := RSS(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if rss < 1<<20 || rss > 64<<30 {
		t.Errorf("RSS(self) = %d bytes, want between 1 MiB and 64 GiB", rss)
	}
	if _, err := RSS(1 << 30); err == nil {
		t.Error("RSS(no such pid) = nil error, want one")
	}
}

func TestMachine(t *testing.T) {
	m := Machine()
	if !strings.Contains(m, runtime.Version()) || !strings.Contains(m, "logical CPUs") {
		t.Errorf("Machine() = %q, want the Go version and the CPU count", m)
	}
	if got := cpuModel(strings.NewReader("processor\t: 0\nmodel name\t: Test CPU @ 2.0GHz\n")); got != "Test CPU @ 2.0GHz" {
		t.Errorf("cpuModel = %q, want the model name", got)
	}
}

func TestParseMetrics(t *testing.T) {
	raw := []byte(`# HELP amiproxy_sessions AMI client connections open now.
# TYPE amiproxy_sessions gauge
amiproxy_sessions 3
amiproxy_client_events_total{outcome="delivered"} 1e+06
amiproxy_client_events_total{outcome="dropped"} 7
amiproxy_upstream_info{pbx="a}b",asterisk_version="22.10.1"} 1
`)
	m, err := ParseMetrics(raw)
	if err != nil {
		t.Fatal(err)
	}
	for k, want := range map[string]float64{
		"amiproxy_sessions":                               3,
		"amiproxy_client_events_total":                    1e6 + 7,
		`amiproxy_client_events_total{outcome="dropped"}`: 7,
		"amiproxy_upstream_info":                          1,
	} {
		if got := m[k]; got != want {
			t.Errorf("m[%s] = %v, want %v", k, got, want)
		}
	}
	for _, bad := range []string{"x{a=\"b\" 1\n", "x\n", "x{} 1 2 3\n", "x abc\n"} {
		if _, err := ParseMetrics([]byte(bad)); err == nil {
			t.Errorf("ParseMetrics(%q) = nil error, want one", bad)
		}
	}
}

func FuzzParseMetrics(f *testing.F) {
	f.Add([]byte("a 1\nb{x=\"1\"} 2\nb{x=\"2\"} 3\n"))
	f.Add([]byte("a{x=\"\\\"}\"} 1\n"))
	f.Fuzz(func(t *testing.T, raw []byte) {
		m, err := ParseMetrics(raw)
		if err != nil {
			return
		}
		// Every series belongs to a family present in the map.
		for k := range m {
			if i := strings.IndexByte(k, '{'); i > 0 {
				if _, ok := m[k[:i]]; !ok {
					t.Fatalf("series %q without its family", k)
				}
			}
		}
	})
}

func TestCountWaitEvent(t *testing.T) {
	body := []byte("Response: Success\r\nMessage: Waiting for Event completed.\r\n\r\n" +
		"Event: ProxyEventsDropped\r\nPrivilege: system,all\r\nDropped: 12\r\n\r\n" +
		"Event: UserEvent\r\nSeq: 1\r\n\r\nEvent: UserEvent\r\nSeq: 2\r\n\r\n" +
		"Event: WaitEventComplete\r\n\r\n")
	got := CountWaitEvent(body, []byte("Event: UserEvent\r\n"))
	if got != (WaitResult{Events: 2, Dropped: 12}) {
		t.Errorf("CountWaitEvent = %+v, want 2 events and 12 dropped", got)
	}
}

func TestTable(t *testing.T) {
	tab := Table{Machine: "test machine"}
	tab.Add(Row{Measure: "Ping p50", Unit: "µs", Direct: V(50), Relay: V(100), Proxied: V(104), Goal: AtMostXRelay, Target: 1.05})
	tab.Add(Row{Measure: "actions/s", Unit: "/s", Direct: V(90000), Relay: V(60000), Proxied: V(30000), Goal: AtLeastXRelay, Target: 1})
	tab.Add(Row{Measure: "RSS | idle", Unit: "KiB", Proxied: V(3.5), Goal: AtMost, Target: 4, Note: "n=10"})
	tab.Add(Row{Measure: "info", Proxied: V(12)})
	var b strings.Builder
	if err := tab.WriteMarkdown(&b); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{
		"Machine: test machine",
		"| Ping p50 | 50.0 µs | 100 µs | 104 µs | 2.08× | 1.04× | ≤ 1.05× relay | yes |",
		"| actions/s | 90,000 /s | 60,000 /s | 30,000 /s | 0.33× | 0.50× | ≥ 1× relay | **no** |",
		`| RSS \| idle (n=10) | — | — | 3.50 KiB | — | — | ≤ 4.00 KiB | yes |`,
		"| info | — | — | 12.0 | — | — |  |  |",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("WriteMarkdown lacks %q; got:\n%s", want, out)
		}
	}
	var j strings.Builder
	if err := tab.WriteJSON(&j); err != nil || !strings.Contains(j.String(), `"proxied": 104`) {
		t.Errorf("WriteJSON = %v:\n%s", err, j.String())
	}
}

// startSim starts a simulated PBX for the client tests.
func startSim(t *testing.T) *pbxsim.Server {
	t.Helper()
	sim, err := pbxsim.New(pbxsim.Config{LoginFailDelay: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sim.Close() })
	if _, err := sim.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	return sim
}

var admin = Login{User: "admin", Secret: "adminpass"}

// serveInBackground runs serve on a fresh listener until the test ends.
func serveInBackground(t *testing.T, serve func(context.Context, net.Listener) error) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	return ln.Addr().String()
}

func TestClientAgainstPBX(t *testing.T) {
	checkGoroutines(t)
	sim := startSim(t)
	ctx := context.Background()
	c, err := Dial(ctx, sim.Addr().String(), admin)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	first, err := c.Do("Ping")
	if err != nil || string(first) != "Response: Success\r" {
		t.Errorf("Do(Ping) = %q, %v, want Response: Success", first, err)
	}
	var lat Latencies
	if err := c.RoundTrips(ctx, "CoreStatus", 50, &lat); err != nil || lat.Len() != 50 {
		t.Errorf("RoundTrips = %v with %d samples, want 50", err, lat.Len())
	}
	if lat.Percentile(.5) <= 0 {
		t.Errorf("p50 = %v, want positive", lat.Percentile(.5))
	}
	var done atomic.Int64
	pctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	if err := c.Pipeline(pctx, "Ping", 4, &done); err != nil {
		t.Errorf("Pipeline: %v", err)
	}
	if done.Load() < 10 {
		t.Errorf("Pipeline: %d replies in 300ms, want at least 10", done.Load())
	}

	if _, err := Dial(ctx, sim.Addr().String(), Login{User: "admin", Secret: "wrong"}); err == nil || strings.Contains(err.Error(), "wrong") {
		t.Errorf("Dial with a bad secret = %v, want a refusal that does not echo the secret", err)
	}
}

func TestCountEventsFromPBX(t *testing.T) {
	checkGoroutines(t)
	sim := startSim(t)
	ctx := context.Background()
	l := admin
	l.Events = true
	c, err := Dial(ctx, sim.Addr().String(), l)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	const n = 300
	var got atomic.Int64
	done := make(chan error, 1)
	go func() { done <- c.CountEvents(ctx, []byte("Event: UserEvent\r\n"), n, &got) }()
	for i := range n {
		sim.Emit(rawman.New("Event", "UserEvent", "Privilege", "user,all", "UserEvent", "t", "Seq", string(rune('a'+i%26))))
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if got.Load() != n {
		t.Errorf("CountEvents counted %d, want %d", got.Load(), n)
	}
	// A peer that closes ends the count with io.EOF.
	go func() { done <- c.CountEvents(ctx, []byte("Event: UserEvent\r\n"), n, &got) }()
	sim.DropAll()
	if err := <-done; !errors.Is(err, io.EOF) {
		t.Errorf("CountEvents after the PBX dropped us = %v, want io.EOF", err)
	}
}

func TestRelay(t *testing.T) {
	checkGoroutines(t)
	sim := startSim(t)
	relay := serveInBackground(t, func(ctx context.Context, ln net.Listener) error {
		return ServeRelay(ctx, ln, sim.Addr().String())
	})
	ctx := context.Background()
	var wg sync.WaitGroup
	for range 5 {
		wg.Go(func() {
			c, err := Dial(ctx, relay, admin)
			if err != nil {
				t.Error(err)
				return
			}
			defer c.Close()
			if first, err := c.Do("Ping"); err != nil || !bytes.HasPrefix(first, []byte("Response: Success")) {
				t.Errorf("Ping through the relay = %q, %v", first, err)
			}
		})
	}
	wg.Wait()
	// The relay passes a PBX-side close on to the client.
	c, err := Dial(ctx, relay, admin)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	sim.DropAll()
	_ = c.Conn().SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Do("Ping"); err == nil {
		t.Error("Ping after the PBX dropped every session succeeded through the relay")
	}
	// A relay to nowhere closes the client.
	dead := serveInBackground(t, func(ctx context.Context, ln net.Listener) error {
		return ServeRelay(ctx, ln, "127.0.0.1:1")
	})
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := Dial(dctx, dead, admin); err == nil {
		t.Error("Dial through a relay whose target is down succeeded")
	}
}

func TestDriverCeilingServers(t *testing.T) {
	checkGoroutines(t)
	ctx := context.Background()
	echo := serveInBackground(t, ServeEcho)
	c, err := Dial(ctx, echo, admin)
	if err != nil {
		t.Fatal(err)
	}
	var lat Latencies
	if err := c.RoundTrips(ctx, "Ping", 100, &lat); err != nil || lat.Len() != 100 {
		t.Errorf("RoundTrips against ServeEcho = %v, %d samples", err, lat.Len())
	}
	c.Close()

	ev := []byte("Event: UserEvent\r\nPrivilege: user,all\r\nSeq: 1\r\n\r\n")
	const n = 5000
	blast := serveInBackground(t, func(ctx context.Context, ln net.Listener) error { return ServeBlast(ctx, ln, ev, n) })
	for range 3 {
		c, err := Dial(ctx, blast, admin)
		if err != nil {
			t.Fatal(err)
		}
		var got atomic.Int64
		if err := c.CountEvents(ctx, []byte("Event: UserEvent\r\n"), n, &got); err != nil || got.Load() != n {
			t.Errorf("CountEvents from ServeBlast = %d, %v, want %d", got.Load(), err, n)
		}
		c.Close()
	}
}

func TestHTTPSession(t *testing.T) {
	var waits atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		switch {
		case q.Get("action") == "login" && q.Get("secret") == "adminpass":
			w.Header().Set("Set-Cookie", `mansession_id="0a1b2c3d"; Version=1; Max-Age=60`)
			io.WriteString(w, "Response: Success\r\nMessage: Authentication accepted\r\n\r\n")
		case q.Get("action") == "login":
			io.WriteString(w, "Response: Error\r\nMessage: Authentication failed\r\n\r\n")
		case q.Get("action") == "waitevent" && strings.Contains(r.Header.Get("Cookie"), "0a1b2c3d"):
			waits.Add(1)
			io.WriteString(w, "Response: Success\r\n\r\nEvent: UserEvent\r\n\r\nEvent: WaitEventComplete\r\n\r\n")
		default:
			http.Error(w, "no session", http.StatusForbidden)
		}
	}))
	defer srv.Close()
	ctx := context.Background()
	s, err := HTTPLogin(ctx, srv.Client(), srv.URL, admin)
	if err != nil {
		t.Fatal(err)
	}
	r, err := s.WithClient(srv.Client()).WaitEvent(ctx, 5, []byte("Event: UserEvent\r\n"))
	if err != nil || r.Events != 1 || waits.Load() != 1 {
		t.Errorf("WaitEvent = %+v, %v (server saw %d), want 1 event", r, err, waits.Load())
	}
	if _, err := HTTPLogin(ctx, srv.Client(), srv.URL, Login{User: "admin", Secret: "nope"}); err == nil {
		t.Error("HTTPLogin with a bad secret succeeded")
	}
}

func TestParseStatCPU(t *testing.T) {
	line := []byte("4242 (amiproxy (x) y) S 1 4242 4242 0 -1 4194560 1000 0 0 0 150 50 0 0 20 0 9 0 100 0 0\n")
	if got, err := ParseStatCPU(line); err != nil || got != 2*time.Second {
		t.Errorf("ParseStatCPU = %v, %v, want 2s", got, err)
	}
	for _, bad := range []string{"4242 amiproxy S 1", "1 (a) S 1 2 3", "1 (a) S 1 1 1 0 -1 0 0 0 0 0 x 5"} {
		if _, err := ParseStatCPU([]byte(bad)); err == nil {
			t.Errorf("ParseStatCPU(%q) = nil error, want one", bad)
		}
	}
	busy := time.Now()
	for time.Since(busy) < 50*time.Millisecond {
	}
	if d, err := CPUTime(os.Getpid()); err != nil || d <= 0 {
		t.Errorf("CPUTime(self) = %v, %v, want positive", d, err)
	}
}

func FuzzParseStatCPU(f *testing.F) {
	f.Add([]byte("1 (a) S 1 1 1 0 -1 0 0 0 0 0 5 6 0 0\n"))
	f.Add([]byte("1 ()) S 1 1 1 0 -1 0 0 0 0 0 9223372036854775807 6\n"))
	f.Fuzz(func(t *testing.T, raw []byte) {
		if d, err := ParseStatCPU(raw); err == nil && d < 0 {
			t.Fatalf("ParseStatCPU(%q) = %v, negative", raw, d)
		}
	})
}
