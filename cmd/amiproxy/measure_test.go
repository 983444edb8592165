package main

// Measurements, not tests: run with
//
//	go test -run=^$ -bench=Measure -benchtime=1x ./cmd/amiproxy
//
// The proxy runs as its own process (the built amiproxy binary with a
// generated config), as in production, so its RSS can be read from /proc.
// Every comparison is made in one run on the same machine: direct to the
// simulated PBX, through a bare byte relay (a goroutine pair copying bytes:
// the floor any proxy can reach), and through amiproxy.

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/amiproxy/amiproxy/internal/pbxsim"
	"github.com/amiproxy/amiproxy/rawman"
)

// proxyProcess is amiproxy serve running as a child process.
type proxyProcess struct {
	cmd   *exec.Cmd
	ami   string
	admin string
}

func startProxyProcess(b *testing.B, pbxAddr string) *proxyProcess {
	b.Helper()
	dir := b.TempDir()
	bin := filepath.Join(dir, "amiproxy")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		b.Fatalf("go build: %v\n%s", err, out)
	}
	ami, admin := freeAddr(b), freeAddr(b)
	cfg := fmt.Sprintf(`listen:
  ami: %s
  admin: %s
proxy:
  client_queue: 4096
pbxs:
  - name: lab
    address: %s
    username: amiproxy
    secret: {env: MEASURE_SVC}
accounts:
  - username: bench
    secret: {env: MEASURE_BENCH}
policy:
  roles:
    - {name: all, read: all, write: all, pbxs: ["*"]}
  users:
    bench: [all]
log:
  level: error
  audit: %s
`, ami, admin, pbxAddr, filepath.Join(dir, "audit.log"))
	path := filepath.Join(dir, "amiproxy.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		b.Fatal(err)
	}
	cmd := exec.Command(bin, "serve", "-config", path)
	cmd.Env = append(os.Environ(), "MEASURE_SVC=svc", "MEASURE_BENCH=bench")
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	p := &proxyProcess{cmd: cmd, ami: ami, admin: admin}
	b.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		_ = cmd.Wait()
	})
	deadline := time.Now().Add(20 * time.Second)
	for {
		if resp, err := httpClient.Get("http://" + admin + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return p
			}
		}
		if time.Now().After(deadline) {
			b.Fatal("amiproxy serve never became ready")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (p *proxyProcess) rssKiB(b *testing.B) int {
	b.Helper()
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid))
	if err != nil {
		b.Fatal(err)
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
			n, _ := strconv.Atoi(f[1])
			return n
		}
	}
	b.Fatal("no VmRSS")
	return 0
}

func freeAddr(b *testing.B) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// relay is a bare byte relay: it parses nothing.
func relay(b *testing.B, target string) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				u, err := net.Dial("tcp", target)
				if err != nil {
					c.Close()
					return
				}
				go func() { _, _ = io.Copy(u, c); u.Close() }()
				_, _ = io.Copy(c, u)
				c.Close()
			}()
		}
	}()
	return ln.Addr().String()
}

// amiClient is a minimal synchronous AMI client for the measurements.
type amiClient struct {
	c  net.Conn
	br *bufio.Reader
}

func dialAMI(b *testing.B, addr, user, secret string, events bool) *amiClient {
	b.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		b.Fatal(err)
	}
	a := &amiClient{c: c, br: bufio.NewReaderSize(c, 64<<10)}
	if _, err := a.br.ReadString('\n'); err != nil {
		b.Fatal(err)
	}
	ev := "off"
	if events {
		ev = "on"
	}
	fmt.Fprintf(c, "Action: Login\r\nUsername: %s\r\nSecret: %s\r\nEvents: %s\r\nActionID: login\r\n\r\n", user, secret, ev)
	if m := a.readUntil(b, "ActionID: login"); !strings.Contains(m, "Authentication accepted") {
		b.Fatalf("login to %s: %q", addr, m)
	}
	return a
}

// readUntil reads messages until one contains marker and returns it.
func (a *amiClient) readUntil(b *testing.B, marker string) string {
	var msg strings.Builder
	for {
		line, err := a.br.ReadString('\n')
		if err != nil {
			b.Fatalf("read: %v", err)
		}
		if line == "\r\n" {
			if strings.Contains(msg.String(), marker) {
				return msg.String()
			}
			msg.Reset()
			continue
		}
		msg.WriteString(line)
	}
}

// roundTrips returns sorted latencies of n sequential actions.
func roundTrips(b *testing.B, a *amiClient, action string, n int) []time.Duration {
	out := make([]time.Duration, 0, n)
	for i := range n {
		id := "m" + strconv.Itoa(i)
		start := time.Now()
		fmt.Fprintf(a.c, "Action: %s\r\nActionID: %s\r\n\r\n", action, id)
		a.readUntil(b, "ActionID: "+id+"\r\n")
		out = append(out, time.Since(start))
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

func pct(d []time.Duration, p float64) time.Duration { return d[int(float64(len(d)-1)*p)] }

func BenchmarkMeasureLatency(b *testing.B) {
	sim := measureSim(b)
	direct := sim.Addr().String()
	proxied := startProxyProcess(b, direct).ami
	relayed := relay(b, direct)
	const n = 3000
	for _, action := range []string{"Ping", "CoreStatus"} {
		res := map[string][]time.Duration{}
		for _, via := range []struct{ name, addr, user, secret string }{
			{"direct", direct, "amiproxy", "svc"},
			{"relay", relayed, "amiproxy", "svc"},
			{"amiproxy", proxied, "bench", "bench"},
		} {
			a := dialAMI(b, via.addr, via.user, via.secret, false)
			roundTrips(b, a, action, 300) // warm up
			res[via.name] = roundTrips(b, a, action, n)
			a.c.Close()
		}
		for _, via := range []string{"direct", "relay", "amiproxy"} {
			d := res[via]
			b.Logf("%-10s %-8s p50 %6.1fµs  p99 %6.1fµs", action, via, us(pct(d, .5)), us(pct(d, .99)))
		}
		p, r, d := res["amiproxy"], res["relay"], res["direct"]
		b.Logf("%-10s amiproxy/direct p50 %.2f× p99 %.2f×; amiproxy/relay p50 %.2f× p99 %.2f×", action,
			ratio(p, d, .5), ratio(p, d, .99), ratio(p, r, .5), ratio(p, r, .99))
		b.ReportMetric(ratio(p, d, .5), action+"-p50-x-direct")
		b.ReportMetric(ratio(p, r, .5), action+"-p50-x-relay")
		b.ReportMetric(ratio(p, r, .99), action+"-p99-x-relay")
	}
}

func us(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }

func ratio(a, b []time.Duration, p float64) float64 { return float64(pct(a, p)) / float64(pct(b, p)) }

func measureSim(b *testing.B) *pbxsim.Server { return newLabSim(b) }

// BenchmarkMeasureIdleSessions reports the proxy process's RSS growth per
// idle, logged-in TCP client (events on, no traffic).
func BenchmarkMeasureIdleSessions(b *testing.B) {
	sim := measureSim(b)
	p := startProxyProcess(b, sim.Addr().String())
	const n = 2000
	warm := make([]*amiClient, 0, 50)
	for range 50 {
		warm = append(warm, dialAMI(b, p.ami, "bench", "bench", true))
	}
	time.Sleep(300 * time.Millisecond)
	before := p.rssKiB(b)
	clients := make([]*amiClient, 0, n)
	for range n {
		clients = append(clients, dialAMI(b, p.ami, "bench", "bench", true))
	}
	time.Sleep(time.Second)
	after := p.rssKiB(b)
	per := float64(after-before) / n
	b.Logf("%d idle TCP sessions: RSS %d KiB -> %d KiB, %.1f KiB per session", n, before, after, per)
	b.ReportMetric(per, "KiB/idle-session")
	for _, c := range append(warm, clients...) {
		c.c.Close()
	}
}

// BenchmarkMeasureFanout reports events/s delivered through the proxy to
// 100 TCP clients, counting what each client really reads.
func BenchmarkMeasureFanout(b *testing.B) {
	sim := measureSim(b)
	p := startProxyProcess(b, sim.Addr().String())
	const clients = 100
	const events = 2000
	counts := make(chan int, clients)
	ready := make(chan struct{}, clients)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for range clients {
		a := dialAMI(b, p.ami, "bench", "bench", true)
		go func() {
			defer a.c.Close()
			ready <- struct{}{}
			n := 0
			for n < events {
				line, err := a.br.ReadString('\n')
				if err != nil || ctx.Err() != nil {
					break
				}
				if strings.HasPrefix(line, "Event: UserEvent") {
					n++
				}
			}
			counts <- n
		}()
	}
	for range clients {
		<-ready
	}
	start := time.Now()
	for i := range events {
		sim.Emit(rawEvent(i))
	}
	total := 0
	for range clients {
		total += <-counts
	}
	el := time.Since(start)
	b.Logf("%d events to %d clients: %d deliveries in %v = %.0f deliveries/s, %.0f events/s",
		events, clients, total, el, float64(total)/el.Seconds(), float64(events)/el.Seconds())
	if total != events*clients {
		b.Errorf("lost deliveries: %d of %d", total, events*clients)
	}
	b.ReportMetric(float64(total)/el.Seconds(), "deliveries/s")
}

var httpClient = &http.Client{Timeout: 5 * time.Second}

// rawEvent is a typical 20-header call-class-sized event, as UserEvent so
// every client with read=all gets it.
func rawEvent(i int) rawman.Message {
	return rawman.New(
		"Event", "UserEvent", "Privilege", "user,all", "UserEvent", "bench", "Seq", strconv.Itoa(i),
		"Channel", "Local/100@lab-00000000;1", "ChannelState", "6", "ChannelStateDesc", "Up",
		"CallerIDNum", "5551234", "CallerIDName", "Lab Caller", "ConnectedLineNum", "<unknown>",
		"ConnectedLineName", "<unknown>", "Language", "en", "AccountCode", "", "Context", "lab",
		"Exten", "100", "Priority", "1", "Uniqueid", "1795364117.0", "Linkedid", "1795364117.0",
		"Tenantid", "", "Note", "measurement")
}
