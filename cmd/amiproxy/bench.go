package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/metrics"
	"runtime/pprof"
	"strings"
	"sync"
	"time"

	"github.com/amiproxy/amiproxy/internal/loadgen"
	"github.com/amiproxy/amiproxy/internal/pbxsim"
)

// benchMeasures are the measure groups of `amiproxy bench`, in run order.
var benchMeasures = []string{"ping", "actions", "fanout", "memory", "waitevent", "restart"}

// benchOptions are the flags of `amiproxy bench`.
type benchOptions struct {
	quick    bool
	only     map[string]bool
	clients  int
	duration time.Duration
	json     bool
	exe      string // the amiproxy binary run as relay and proxy children
	profile  string // directory for the proxy children's CPU profiles
	logLevel string // the proxy children's log level
	stderr   io.Writer
	command  string
}

// sizes are the lengths of one run: -quick or full.
type benchSizes struct {
	pings, pingRounds, pingsPerConn   int
	actionsTime                       time.Duration
	fanoutSubs                        []int
	fanoutDeliveries, fanoutMinEvents int64
	idleClients, idleSessions         int
	waitSessions                      int
	waitTime                          time.Duration
	restartPBXs                       int
	restartDown                       time.Duration
}

func (o *benchOptions) sizes() benchSizes {
	if o.quick {
		return benchSizes{pings: 1500, pingRounds: 3, pingsPerConn: 60, actionsTime: 1500 * time.Millisecond,
			fanoutSubs: []int{1, 10, 100}, fanoutDeliveries: 60_000, fanoutMinEvents: 2000,
			idleClients: 500, idleSessions: 500, waitSessions: 300, waitTime: 2 * time.Second,
			restartPBXs: 20, restartDown: 500 * time.Millisecond}
	}
	return benchSizes{pings: 30000, pingRounds: 10, pingsPerConn: 600, actionsTime: o.duration,
		fanoutSubs: []int{1, 10, 100, 1000}, fanoutDeliveries: 2_000_000, fanoutMinEvents: 5000,
		idleClients: 10000, idleSessions: 10000, waitSessions: 10000, waitTime: 2 * o.duration,
		restartPBXs: 200, restartDown: 2 * time.Second}
}

// runBench is `amiproxy bench`: the load harness. Its hidden children
// "bench relay" and "bench serve" are the relay and proxy processes it
// starts.
func runBench(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 {
		switch args[0] {
		case "relay":
			return runBenchRelay(ctx, args[1:], stdout, stderr)
		case "serve":
			return runBenchServe(ctx, args[1:], stdout, stderr)
		}
	}
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	o := benchOptions{stderr: stderr}
	fs.BoolVar(&o.quick, "quick", false, "a short smoke run (under a minute) instead of the full one")
	only := fs.String("only", strings.Join(benchMeasures, ","), "measures to run, comma-separated")
	fs.IntVar(&o.clients, "clients", 50, "concurrent connections for the concurrent Ping and the actions/s measures")
	fs.DurationVar(&o.duration, "duration", 10*time.Second, "length of each sustained measure (actions/s per path; WaitEvent runs twice as long)")
	fs.BoolVar(&o.json, "json", false, "print the table as JSON instead of Markdown")
	fs.StringVar(&o.exe, "exe", "", "amiproxy binary to run as relay and proxy (default: this program)")
	fs.StringVar(&o.profile, "profile-dir", "", "write a CPU profile of each amiproxy child, and heap profiles at the memory measures, into this directory")
	fs.StringVar(&o.logLevel, "proxy-log", "error", "log level of the amiproxy children (their log goes to standard error)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("bench: unexpected arguments %q", fs.Args())
	}
	o.only = map[string]bool{}
	for _, m := range strings.Split(*only, ",") {
		m = strings.TrimSpace(m)
		if m == "" {
			continue
		}
		known := false
		for _, k := range benchMeasures {
			known = known || k == m
		}
		if !known {
			return fmt.Errorf("bench: -only: unknown measure %q (want some of %s)", m, strings.Join(benchMeasures, ","))
		}
		o.only[m] = true
	}
	if o.clients < 1 {
		return fmt.Errorf("bench: -clients: want at least 1, got %d", o.clients)
	}
	if o.duration <= 0 {
		return fmt.Errorf("bench: -duration: want a positive duration, got %v", o.duration)
	}
	if o.exe == "" {
		exe, err := os.Executable()
		if err != nil {
			return fmt.Errorf("bench: finding this program for the child processes: %w", err)
		}
		o.exe = exe
	}
	o.command = "amiproxy bench " + strings.Join(args, " ")
	if _, err := loadgen.RaiseNoFile(); err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	t, err := runBenchMeasures(ctx, &o)
	if err != nil {
		return err
	}
	if o.json {
		return t.WriteJSON(stdout)
	}
	return t.WriteMarkdown(stdout)
}

// runBenchMeasures runs the selected measures and returns the table.
func runBenchMeasures(ctx context.Context, o *benchOptions) (*loadgen.Table, error) {
	t := &loadgen.Table{Machine: loadgen.Machine(), Command: strings.TrimSpace(o.command)}
	sz := o.sizes()
	steps := []struct {
		name string
		run  func(context.Context, *benchOptions, benchSizes, *loadgen.Table) error
	}{
		{"ping", benchPing}, {"actions", benchActions}, {"fanout", benchFanout},
		{"memory", benchMemory}, {"waitevent", benchWaitEvent}, {"restart", benchRestart},
	}
	for _, s := range steps {
		if !o.only[s.name] {
			continue
		}
		start := time.Now()
		fmt.Fprintf(o.stderr, "bench: %s...\n", s.name)
		if err := s.run(ctx, o, sz, t); err != nil {
			return nil, fmt.Errorf("bench: %s: %w", s.name, err)
		}
		fmt.Fprintf(o.stderr, "bench: %s done in %v\n", s.name, time.Since(start).Round(100*time.Millisecond))
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("bench: %w", err)
		}
	}
	return t, nil
}

// Accounts of the bench. The secrets are throwaway values for loopback
// processes the bench starts and stops itself.
const (
	benchSvcUser   = "amiproxy"
	benchSvcSecret = "bench-svc"
	benchUser      = "bench"
	benchSecret    = "bench"
	benchFiltUser  = "benchf"
	benchFiltSec   = "benchf"
)

// benchEventFilters are the per-user eventfilters of the "with
// eventfilters" fan-out: every bench event passes them, so both variants
// deliver the same events and the difference is the cost of filtering.
var benchEventFilters = []string{
	"eventfilter(action(include),name(UserEvent)) =",
	"eventfilter(action(exclude),header(Channel),method(starts_with)) = Local/200@",
	"!Channel: SIP/",
}

// newBenchSim starts a simulated PBX with the bench's users on 127.0.0.1:0.
// Its queues are large and its write timeout long, so that the direct path
// is limited by speed, not by Asterisk's slow-client rules.
func newBenchSim() (*pbxsim.Server, error) {
	sim, err := pbxsim.New(pbxsim.Config{
		LoginFailDelay: -1, AuthLimit: 1000, MaxQueuedEvents: 1 << 20, WriteTimeout: 10 * time.Second,
		Users: []pbxsim.User{
			{Name: benchSvcUser, Secret: benchSvcSecret, Read: "all", Write: "all"},
			{Name: benchUser, Secret: benchSecret, Read: "all", Write: "all"},
			{Name: benchFiltUser, Secret: benchFiltSec, Read: "all", Write: "all", EventFilters: simFilterLines(benchEventFilters)},
		},
	})
	if err != nil {
		return nil, err
	}
	if _, err := sim.Start("127.0.0.1:0"); err != nil {
		sim.Close()
		return nil, err
	}
	return sim, nil
}

// simFilterLines turns policy eventfilter entries into manager.conf lines.
func simFilterLines(entries []string) []string {
	out := make([]string, 0, len(entries))
	for _, e := range entries {
		if strings.HasPrefix(e, "eventfilter") {
			out = append(out, e)
			continue
		}
		out = append(out, "eventfilter = "+e)
	}
	return out
}

// child is a process the bench started: a relay or a proxy.
type child struct {
	cmd  *exec.Cmd
	done chan struct{} // closed when Wait returned
}

// startChild runs exe with args; lines of its stdout go to lines.
func startChild(o *benchOptions, lines chan<- string, args ...string) (*child, error) {
	cmd := exec.Command(o.exe, args...)
	cmd.Stderr = o.stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s %s: %w", o.exe, args[0], err)
	}
	c := &child{cmd: cmd, done: make(chan struct{})}
	go func() { // childWait: ends when the process exits
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if lines != nil {
				select {
				case lines <- sc.Text():
				default:
				}
			}
		}
		_ = cmd.Wait()
		close(c.done)
	}()
	return c, nil
}

// pid returns the child's process id.
func (c *child) pid() int { return c.cmd.Process.Pid }

// stop interrupts the child and waits for it, killing it after 10 s.
func (c *child) stop() {
	_ = c.cmd.Process.Signal(os.Interrupt)
	select {
	case <-c.done:
	case <-time.After(10 * time.Second):
		_ = c.cmd.Process.Kill()
		<-c.done
	}
}

// startRelay starts `amiproxy bench relay` towards target and returns it
// with its listening address.
func startRelay(ctx context.Context, o *benchOptions, target string) (*child, string, error) {
	lines := make(chan string, 4)
	c, err := startChild(o, lines, "bench", "relay", "-target", target)
	if err != nil {
		return nil, "", err
	}
	select {
	case l := <-lines:
		if addr, ok := strings.CutPrefix(l, "relay listening on "); ok {
			return c, addr, nil
		}
		c.stop()
		return nil, "", fmt.Errorf("relay: unexpected first line %q", l)
	case <-c.done:
		return nil, "", errors.New("relay exited before listening")
	case <-time.After(20 * time.Second):
		c.stop()
		return nil, "", errors.New("relay did not start within 20s")
	case <-ctx.Done():
		c.stop()
		return nil, "", ctx.Err()
	}
}

// runBenchRelay is the hidden `amiproxy bench relay -target ADDR`: a bare
// byte relay on 127.0.0.1:0 that prints its address and runs until
// interrupted.
func runBenchRelay(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("bench relay", flag.ContinueOnError)
	fs.SetOutput(stderr)
	target := fs.String("target", "", "address to relay to")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *target == "" {
		return errors.New("bench relay: -target is required")
	}
	if _, err := loadgen.RaiseNoFile(); err != nil {
		return fmt.Errorf("bench relay: %w", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("bench relay: %w", err)
	}
	fmt.Fprintf(stdout, "relay listening on %s\n", ln.Addr())
	return loadgen.ServeRelay(ctx, ln, *target)
}

// runBenchServe is the hidden `amiproxy bench serve -config FILE`: serve
// with RLIMIT_NOFILE raised and, optionally, a CPU profile of the whole
// run.
func runBenchServe(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("bench serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", "", "configuration file")
	cpuprofile := fs.String("cpuprofile", "", "write a CPU profile to this file")
	heapAddr := fs.String("heap-addr", "", "serve a heap profile at http://ADDR/heap (loopback only)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if _, err := loadgen.RaiseNoFile(); err != nil {
		return fmt.Errorf("bench serve: %w", err)
	}
	f, err := loadConfig(*path)
	if err != nil {
		return fmt.Errorf("bench serve: %w", err)
	}
	if err := f.Validate(); err != nil {
		return fmt.Errorf("bench serve: %w", err)
	}
	rc, err := f.build(osEnv, os.ReadFile)
	if err != nil {
		return fmt.Errorf("bench serve: %w", err)
	}
	logger, audit, closeLogs, err := newLoggers(f.Log, stderr)
	if err != nil {
		return err
	}
	defer closeLogs()
	if *cpuprofile != "" {
		pf, err := os.Create(*cpuprofile)
		if err != nil {
			return fmt.Errorf("bench serve: %w", err)
		}
		if err := pprof.StartCPUProfile(pf); err != nil {
			pf.Close()
			return fmt.Errorf("bench serve: %w", err)
		}
		defer func() { pprof.StopCPUProfile(); _ = pf.Close() }()
	}
	if *heapAddr != "" {
		runtime.MemProfileRate = 4096 // fine enough to tell per-session costs apart
		stop, err := serveHeapProfile(*heapAddr)
		if err != nil {
			return fmt.Errorf("bench serve: %w", err)
		}
		defer stop()
	}
	return serveConfig(ctx, f, rc, serveOptions{logger: logger, audit: audit, stdout: stdout})
}

// serveHeapProfile serves GET /heap (a garbage collection, then the heap
// profile) on a loopback address, with runtime/pprof only: nothing is
// registered on http.DefaultServeMux.
func serveHeapProfile(addr string) (stop func(), err error) {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil || !ap.Addr().IsLoopback() {
		return nil, fmt.Errorf("-heap-addr %q: want a loopback IP:port", addr)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /heap", func(w http.ResponseWriter, _ *http.Request) {
		runtime.GC()
		_ = pprof.Lookup("heap").WriteTo(w, 0)
	})
	mux.HandleFunc("GET /goroutines", func(w http.ResponseWriter, _ *http.Request) {
		s := []metrics.Sample{{Name: "/memory/classes/heap/stacks:bytes"}, {Name: "/memory/classes/heap/objects:bytes"}}
		metrics.Read(s)
		var stacks, heap uint64
		if s[0].Value.Kind() == metrics.KindUint64 {
			stacks = s[0].Value.Uint64()
		}
		if s[1].Value.Kind() == metrics.KindUint64 {
			heap = s[1].Value.Uint64()
		}
		fmt.Fprintln(w, runtime.NumGoroutine(), stacks, heap)
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(ln) }() // ends when Close closes ln
	return func() { _ = srv.Close(); <-done }, nil
}

// proxyChild is amiproxy running as a child process of the bench.
type proxyChild struct {
	*child
	ami, http, admin string
	heap             string // address of the heap profile, "" when off
	hc               *http.Client
}

// runtimeStats is what the child's Go runtime reports.
type runtimeStats struct {
	goroutines          int
	stackBytes, objects uint64 // goroutine stacks; live and unswept heap objects
}

// runtimeStats reads the child's runtime figures; ok is false when
// profiles are off or they cannot be read.
func (p *proxyChild) runtimeStats() (st runtimeStats, ok bool) {
	if p.heap == "" {
		return st, false
	}
	resp, err := p.hc.Get("http://" + p.heap + "/goroutines")
	if err != nil {
		return st, false
	}
	defer resp.Body.Close()
	if _, err := fmt.Fscan(resp.Body, &st.goroutines, &st.stackBytes, &st.objects); err != nil {
		return st, false
	}
	return st, true
}

// saveHeap writes the child's heap profile to dir/amiproxy-<name>.heap
// when profiles were asked for.
func (p *proxyChild) saveHeap(o *benchOptions, name string) error {
	if p.heap == "" {
		return nil
	}
	resp, err := p.hc.Get("http://" + p.heap + "/heap")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	f, err := os.Create(filepath.Join(o.profile, "amiproxy-"+name+".heap"))
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// benchFreeAddr returns a loopback address that was free a moment ago.
func benchFreeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// startProxy writes a config for the given PBX addresses into a temporary
// directory and starts `amiproxy bench serve` on it; it returns once
// /readyz answers 200 (every PBX link up). The listen addresses were free
// a moment before amiproxy binds them; if another process took one
// meanwhile, amiproxy exits and startProxy tries again with new ones.
func startProxy(ctx context.Context, o *benchOptions, label string, pbxAddrs []string) (*proxyChild, func(), error) {
	var err error
	for range 3 {
		var p *proxyChild
		var stop func()
		p, stop, err = startProxyOnce(ctx, o, label, pbxAddrs)
		if err == nil || !errors.Is(err, errExitedAtStart) {
			return p, stop, err
		}
	}
	return nil, nil, err
}

// errExitedAtStart is amiproxy exiting before it was ready.
var errExitedAtStart = errors.New("amiproxy exited at start (its error is above)")

func startProxyOnce(ctx context.Context, o *benchOptions, label string, pbxAddrs []string) (*proxyChild, func(), error) {
	dir, err := os.MkdirTemp("", "amiproxy-bench-")
	if err != nil {
		return nil, nil, err
	}
	var addrs [4]string
	for i := range addrs {
		if addrs[i], err = benchFreeAddr(); err != nil {
			os.RemoveAll(dir)
			return nil, nil, err
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, `listen:
  ami: %s
  http: %s
  admin: %s
proxy:
  default_pbx: pbx1
  max_unauthenticated: 1000
  http_timeout: 300s
  http_max_sessions: 20000
limits:
  insecure_no_login_limits: true
  unauthenticated_per_address: 1000
log:
  level: %s
  audit: /dev/null
accounts:
  - {username: %s, secret: {value: %s}}
  - {username: %s, secret: {value: %s}}
policy:
  roles:
    - {name: all, read: all, write: all, pbxs: ["*"]}
    - name: filtered
      read: all
      write: all
      pbxs: ["*"]
      eventfilters:
`, addrs[0], addrs[1], addrs[2], o.logLevel, benchUser, benchSecret, benchFiltUser, benchFiltSec)
	for _, f := range benchEventFilters {
		fmt.Fprintf(&b, "        - %q\n", f)
	}
	fmt.Fprintf(&b, "  users:\n    %s: [all]\n    %s: [filtered]\npbxs:\n", benchUser, benchFiltUser)
	for i, a := range pbxAddrs {
		fmt.Fprintf(&b, "  - {name: pbx%d, address: %q, username: %s, secret: {value: %s}}\n", i+1, a, benchSvcUser, benchSvcSecret)
	}
	path := filepath.Join(dir, "amiproxy.yaml")
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		os.RemoveAll(dir)
		return nil, nil, err
	}
	args := []string{"bench", "serve", "-config", path}
	if o.profile != "" {
		args = append(args, "-cpuprofile", filepath.Join(o.profile, "amiproxy-"+label+".pprof"), "-heap-addr", addrs[3])
	}
	c, err := startChild(o, nil, args...)
	if err != nil {
		os.RemoveAll(dir)
		return nil, nil, err
	}
	p := &proxyChild{child: c, ami: addrs[0], http: addrs[1], admin: addrs[2],
		hc: &http.Client{Timeout: 30 * time.Second}}
	if o.profile != "" {
		p.heap = addrs[3]
	}
	cleanup := func() { c.stop(); os.RemoveAll(dir) }
	deadline := time.Now().Add(60 * time.Second)
	for {
		if p.ready() {
			return p, cleanup, nil
		}
		select {
		case <-c.done:
			cleanup()
			return nil, nil, errExitedAtStart
		case <-ctx.Done():
			cleanup()
			return nil, nil, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			cleanup()
			return nil, nil, errors.New("amiproxy not ready within 60s")
		}
	}
}

// ready reports whether /readyz answers 200.
func (p *proxyChild) ready() bool {
	resp, err := p.hc.Get("http://" + p.admin + "/readyz")
	if err != nil {
		return false
	}
	loadgen.Discard(resp.Body)
	return resp.StatusCode == http.StatusOK
}

// metrics reads /metrics.
func (p *proxyChild) metrics() (loadgen.Metrics, error) {
	resp, err := p.hc.Get("http://" + p.admin + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	return loadgen.ParseMetrics(raw)
}

// rss returns the proxy's resident set size in bytes.
func (p *proxyChild) rss() (int64, error) { return loadgen.RSS(p.pid()) }

// benchPaths is the direct PBX, the relay and the proxy, each started.
// The proxy has a simulated PBX of its own, identical to the one behind
// the direct and relay paths, so that events emitted for one path never
// load another (the proxy's link would otherwise read every event of the
// direct and relay runs, and replay the backlog into the next run).
type benchPaths struct {
	sim      *pbxsim.Server // behind direct and relay
	proxySim *pbxsim.Server // behind the proxy
	relay    string
	proxy    *proxyChild
	stop     func()
}

// path is one way to a PBX with the same client code.
type benchPath struct {
	name string
	addr string
	sim  *pbxsim.Server // the PBX at the end of the path
}

func (b *benchPaths) list() []benchPath {
	return []benchPath{{"direct", b.sim.Addr().String(), b.sim}, {"relay", b.relay, b.sim},
		{"proxied", b.proxy.ami, b.proxySim}}
}

// startPaths starts two simulated PBXs, a relay to one and a proxy to the
// other.
func startPaths(ctx context.Context, o *benchOptions, label string) (*benchPaths, error) {
	sim, err := newBenchSim()
	if err != nil {
		return nil, err
	}
	psim, err := newBenchSim()
	if err != nil {
		sim.Close()
		return nil, err
	}
	rc, raddr, err := startRelay(ctx, o, sim.Addr().String())
	if err != nil {
		sim.Close()
		psim.Close()
		return nil, err
	}
	p, pstop, err := startProxy(ctx, o, label, []string{psim.Addr().String()})
	if err != nil {
		rc.stop()
		sim.Close()
		psim.Close()
		return nil, err
	}
	var once sync.Once
	return &benchPaths{sim: sim, proxySim: psim, relay: raddr, proxy: p, stop: func() {
		once.Do(func() { pstop(); rc.stop(); sim.Close(); psim.Close() })
	}}, nil
}
