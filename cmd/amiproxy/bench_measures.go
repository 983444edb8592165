package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/amiproxy/amiproxy/internal/loadgen"
	"github.com/amiproxy/amiproxy/internal/pbxsim"
	"github.com/amiproxy/amiproxy/rawman"
)

var benchLogin = loadgen.Login{User: benchUser, Secret: benchSecret}

// dialMany logs n clients in to addr, 16 at a time.
func dialMany(ctx context.Context, addr string, l loadgen.Login, n int) ([]*loadgen.Client, error) {
	out := make([]*loadgen.Client, n)
	var firstErr error
	var mu sync.Mutex
	var wg sync.WaitGroup
	sem := make(chan struct{}, 16)
	for i := range n {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			dctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			defer cancel()
			c, err := loadgen.Dial(dctx, addr, l)
			mu.Lock()
			defer mu.Unlock()
			if err != nil && firstErr == nil {
				firstErr = fmt.Errorf("client %d of %d: %w", i+1, n, err)
			}
			out[i] = c
		})
	}
	wg.Wait()
	if firstErr != nil {
		closeAll(out)
		return nil, firstErr
	}
	return out, nil
}

func closeAll(cs []*loadgen.Client) {
	for _, c := range cs {
		if c != nil {
			_ = c.Close()
		}
	}
}

func micros(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }

// benchPing measures round trips of Ping (answered by amiproxy itself)
// and CoreStatus (forwarded to the PBX) over one connection and over
// -clients concurrent connections. The paths take turns in rounds so
// that a noisy neighbour hurts them alike.
func benchPing(ctx context.Context, o *benchOptions, sz benchSizes, t *loadgen.Table) error {
	ps, err := startPaths(ctx, o, "ping")
	if err != nil {
		return err
	}
	defer ps.stop()
	paths := ps.list()
	for _, action := range []string{"Ping", "CoreStatus"} {
		goal1, goal2 := loadgen.AtMostXRelay, loadgen.AtMostXRelay
		note := ""
		if action != "Ping" {
			goal1, goal2 = loadgen.NoTarget, loadgen.NoTarget
			note = "forwarded to the PBX; amiproxy answers Ping itself"
		}
		// One connection.
		single := make([]*loadgen.Client, len(paths))
		for i, p := range paths {
			cs, err := dialMany(ctx, p.addr, benchLogin, 1)
			if err != nil {
				closeAll(single)
				return fmt.Errorf("%s: %w", p.name, err)
			}
			single[i] = cs[0]
		}
		var lat [3]loadgen.Latencies
		var warm loadgen.Latencies
		for i := range paths {
			if err := single[i].RoundTrips(ctx, action, 200, &warm); err != nil {
				closeAll(single)
				return fmt.Errorf("%s: %w", paths[i].name, err)
			}
		}
		per := max(sz.pings/sz.pingRounds, 1)
		for r := range sz.pingRounds {
			for k := range paths {
				i := (k + r) % len(paths)
				if err := single[i].RoundTrips(ctx, action, per, &lat[i]); err != nil {
					closeAll(single)
					return fmt.Errorf("%s: %w", paths[i].name, err)
				}
			}
		}
		closeAll(single)
		for _, q := range []struct {
			name string
			q    float64
			goal loadgen.Goal
			tgt  float64
		}{{"p50", .5, goal1, 1.05}, {"p99", .99, goal2, 1.10}} {
			t.Add(loadgen.Row{Measure: fmt.Sprintf("%s round trip %s, 1 connection", action, q.name), Unit: "µs",
				Direct: loadgen.V(micros(lat[0].Percentile(q.q))), Relay: loadgen.V(micros(lat[1].Percentile(q.q))),
				Proxied: loadgen.V(micros(lat[2].Percentile(q.q))), Goal: q.goal, Target: q.tgt, Note: note})
		}

		// -clients connections at once, each one action at a time.
		conc := make([][]*loadgen.Client, len(paths))
		for i, p := range paths {
			if conc[i], err = dialMany(ctx, p.addr, benchLogin, o.clients); err != nil {
				for _, cs := range conc {
					closeAll(cs)
				}
				return fmt.Errorf("%s: %w", p.name, err)
			}
		}
		var clat [3]loadgen.Latencies
		perConn := max(sz.pingsPerConn/sz.pingRounds, 1)
		var runErr error
		for r := range sz.pingRounds + 1 { // round 0 warms up
			for k := range paths {
				i := (k + r) % len(paths)
				lats := make([]loadgen.Latencies, o.clients)
				errs := make([]error, o.clients)
				var wg sync.WaitGroup
				for j, c := range conc[i] {
					wg.Go(func() { errs[j] = c.RoundTrips(ctx, action, perConn, &lats[j]) })
				}
				wg.Wait()
				if err := errors.Join(errs...); err != nil && runErr == nil {
					runErr = fmt.Errorf("%s: %w", paths[i].name, err)
				}
				if r > 0 {
					for j := range lats {
						clat[i].Merge(&lats[j])
					}
				}
			}
		}
		for _, cs := range conc {
			closeAll(cs)
		}
		if runErr != nil {
			return runErr
		}
		for _, q := range []struct {
			name string
			q    float64
			goal loadgen.Goal
			tgt  float64
		}{{"p50", .5, goal1, 1.05}, {"p99", .99, goal2, 1.10}} {
			t.Add(loadgen.Row{Measure: fmt.Sprintf("%s round trip %s, %d connections", action, q.name, o.clients), Unit: "µs",
				Direct: loadgen.V(micros(clat[0].Percentile(q.q))), Relay: loadgen.V(micros(clat[1].Percentile(q.q))),
				Proxied: loadgen.V(micros(clat[2].Percentile(q.q))), Goal: q.goal, Target: q.tgt, Note: note})
		}
	}
	return nil
}

// benchActionWindow is how many actions each connection keeps in flight.
const benchActionWindow = 8

// pipelineRate runs -clients pipelined connections to addr for d and
// returns the replies per second and their number.
func pipelineRate(ctx context.Context, o *benchOptions, addr string, l loadgen.Login, action string, d time.Duration) (float64, int64, error) {
	cs, err := dialMany(ctx, addr, l, o.clients)
	if err != nil {
		return 0, 0, err
	}
	defer closeAll(cs)
	var done atomic.Int64
	errs := make([]error, len(cs))
	rctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	start := time.Now()
	var wg sync.WaitGroup
	for i, c := range cs {
		wg.Go(func() { errs[i] = c.Pipeline(rctx, action, benchActionWindow, &done) })
	}
	wg.Wait()
	el := time.Since(start)
	if err := errors.Join(errs...); err != nil {
		return 0, 0, err
	}
	return float64(done.Load()) / el.Seconds(), done.Load(), nil
}

// benchActions measures sustained actions/s through one PBX: -clients
// connections, each with a window of actions in flight, CoreStatus
// (forwarded by amiproxy). The driver's own ceiling is measured against
// an in-process echo server.
func benchActions(ctx context.Context, o *benchOptions, sz benchSizes, t *loadgen.Table) error {
	ceiling, err := echoCeiling(ctx, o, sz.actionsTime/2)
	if err != nil {
		return fmt.Errorf("driver ceiling: %w", err)
	}
	ps, err := startPaths(ctx, o, "actions")
	if err != nil {
		return err
	}
	defer ps.stop()
	paths := ps.list()
	var rate [3]float64
	var proxyCPU time.Duration
	var proxied int64
	const rounds = 2
	for r := range rounds {
		for k := range paths {
			i := (k + r) % len(paths)
			cpu0, _ := loadgen.CPUTime(ps.proxy.pid())
			v, n, err := pipelineRate(ctx, o, paths[i].addr, benchLogin, "CoreStatus", sz.actionsTime/rounds)
			if err != nil {
				return fmt.Errorf("%s: %w", paths[i].name, err)
			}
			rate[i] += v / rounds
			if paths[i].name == "proxied" {
				cpu1, _ := loadgen.CPUTime(ps.proxy.pid())
				proxyCPU += cpu1 - cpu0
				proxied += n
			}
		}
	}
	t.Add(loadgen.Row{Measure: fmt.Sprintf("actions/s, CoreStatus, %d connections × %d in flight", o.clients, benchActionWindow),
		Unit: "/s", Direct: loadgen.V(rate[0]), Relay: loadgen.V(rate[1]), Proxied: loadgen.V(rate[2]),
		Goal: loadgen.AtLeastXRelay, Target: 1,
		Note: fmt.Sprintf("driver alone %s; amiproxy CPU %s per action", fmtRate(ceiling), perItem(proxyCPU, proxied))})
	return nil
}

// perItem formats the CPU time spent per item.
func perItem(cpu time.Duration, n int64) string {
	if n <= 0 {
		return "n/a"
	}
	per := cpu / time.Duration(n)
	if per < 10*time.Microsecond {
		return strconv.FormatFloat(float64(cpu)/float64(n), 'f', 0, 64) + " ns"
	}
	return strconv.FormatFloat(float64(cpu)/float64(n)/1000, 'f', 1, 64) + " µs"
}

func fmtRate(v float64) string { return strconv.FormatFloat(v/1000, 'f', 0, 64) + "k/s" }

// echoCeiling is the driver's actions/s against loadgen.ServeEcho.
func echoCeiling(ctx context.Context, o *benchOptions, d time.Duration) (float64, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	sctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { _ = loadgen.ServeEcho(sctx, ln) })
	defer func() { cancel(); wg.Wait() }()
	v, _, err := pipelineRate(ctx, o, ln.Addr().String(), benchLogin, "CoreStatus", d)
	return v, err
}

// benchEvent is a typical call-sized event (20 headers, about 450 bytes),
// as a UserEvent so that every read=all session receives it.
func benchEvent(i int) rawman.Message {
	return rawman.New(
		"Event", "UserEvent", "Privilege", "user,all", "UserEvent", "bench", "Seq", strconv.Itoa(i),
		"Channel", "Local/100@lab-00000000;1", "ChannelState", "6", "ChannelStateDesc", "Up",
		"CallerIDNum", "5551234", "CallerIDName", "Lab Caller", "ConnectedLineNum", "<unknown>",
		"ConnectedLineName", "<unknown>", "Language", "en", "AccountCode", "", "Context", "lab",
		"Exten", "100", "Priority", "1", "Uniqueid", "1795364117.0", "Linkedid", "1795364117.0",
		"Tenantid", "", "Note", "measurement")
}

var benchMarker = []byte("Event: UserEvent\r\n")

// fanoutResult is one fan-out run on one path.
type fanoutResult struct {
	rate         float64 // deliveries/s
	delivered    int64
	elapsed      time.Duration
	lost         int64 // deliveries that never arrived
	disconnected int   // subscribers the path closed (signalled loss)
	silent       int64 // deliveries lost on subscribers that stayed connected
}

// fanoutWindow bounds how far the producer runs ahead of the slowest
// subscriber: below every queue on the way (amiproxy's client queue and
// upstream subscriber queue, 4096 by default), so a path that keeps up
// loses nothing and the rate measured is a sustainable one.
const fanoutWindow = 1500

// runFanout emits events into sim and counts what subs subscribers on addr
// receive.
func runFanout(ctx context.Context, addr string, l loadgen.Login, subs int, events int64, emit func(int)) (fanoutResult, error) {
	cs, err := dialMany(ctx, addr, l, subs)
	if err != nil {
		return fanoutResult{}, err
	}
	defer closeAll(cs)
	got := make([]atomic.Int64, subs)
	eof := make([]atomic.Bool, subs) // read by the producer while the readers run
	errs := make([]error, subs)
	rctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	start := time.Now()
	for i, c := range cs {
		wg.Go(func() {
			err := c.CountEvents(rctx, benchMarker, events, &got[i])
			if errors.Is(err, io.EOF) {
				eof[i].Store(true)
				return
			}
			errs[i] = err
		})
	}
	emitted := int64(0)
	const chunk = 100
	for emitted < events && rctx.Err() == nil {
		slowest := int64(-1)
		for i := range got {
			if eof[i].Load() {
				continue
			}
			if g := got[i].Load(); slowest < 0 || g < slowest {
				slowest = g
			}
		}
		if slowest >= 0 && emitted-slowest > fanoutWindow {
			time.Sleep(50 * time.Microsecond)
			continue
		}
		for range min(chunk, events-emitted) {
			emit(int(emitted))
			emitted++
		}
	}
	wg.Wait()
	el := time.Since(start)
	if err := errors.Join(errs...); err != nil {
		return fanoutResult{}, err
	}
	var r fanoutResult
	total := int64(0)
	for i := range got {
		g := got[i].Load()
		total += g
		if eof[i].Load() {
			r.disconnected++
		} else {
			r.silent += events - g
		}
	}
	r.lost = events*int64(subs) - total
	r.delivered, r.elapsed = total, el
	r.rate = float64(total) / el.Seconds()
	return r, nil
}

// blastCeiling is the driver's deliveries/s for subs subscribers of
// loadgen.ServeBlast.
func blastCeiling(ctx context.Context, subs int, events int64) (float64, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	ev, err := rawman.Encode(benchEvent(0))
	if err != nil {
		return 0, err
	}
	sctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { _ = loadgen.ServeBlast(sctx, ln, ev, int(events)) })
	defer func() { cancel(); wg.Wait() }()
	r, err := runFanout(ctx, ln.Addr().String(), benchLogin, subs, events, func(int) {})
	return r.rate, err
}

// benchFanout measures events/s from one PBX fanned out to 1, 10, 100
// (and 1000) subscribers, with and without per-user eventfilters.
func benchFanout(ctx context.Context, o *benchOptions, sz benchSizes, t *loadgen.Table) error {
	ps, err := startPaths(ctx, o, "fanout")
	if err != nil {
		return err
	}
	defer ps.stop()
	paths := ps.list()
	ev := benchEvent(0) // one message: the producer's cost stays out of the measure
	m0, err := ps.proxy.metrics()
	if err != nil {
		return err
	}
	for _, subs := range sz.fanoutSubs {
		events := min(max(sz.fanoutDeliveries/int64(subs), sz.fanoutMinEvents), 200_000)
		for _, filtered := range []bool{false, true} {
			l, what := benchLogin, "no eventfilters"
			if filtered {
				l, what = loadgen.Login{User: benchFiltUser, Secret: benchFiltSec}, "3 eventfilters per user"
			}
			// Two rounds of half the events each, the paths taking turns,
			// so that a noisy neighbour hurts them alike.
			var res [3]fanoutResult
			var proxyCPU time.Duration
			const rounds = 2
			for r := range rounds {
				for k := range paths {
					i := (k + r) % len(paths)
					p := paths[i]
					l := l
					l.Events = true
					emit := func(int) { p.sim.Emit(ev) }
					cpu0, _ := loadgen.CPUTime(ps.proxy.pid())
					got, err := runFanout(ctx, p.addr, l, subs, events/rounds, emit)
					if err != nil {
						return fmt.Errorf("%s, %d subscribers: %w", p.name, subs, err)
					}
					if p.name == "proxied" {
						cpu1, _ := loadgen.CPUTime(ps.proxy.pid())
						proxyCPU += cpu1 - cpu0
					}
					res[i].delivered += got.delivered
					res[i].elapsed += got.elapsed
					res[i].lost += got.lost
					res[i].disconnected += got.disconnected
					res[i].silent += got.silent
				}
			}
			for i := range res {
				res[i].rate = float64(res[i].delivered) / res[i].elapsed.Seconds()
			}
			note := fmt.Sprintf("%d events; lost direct/relay/proxied %d/%d/%d, disconnected %d/%d/%d, silent %d/%d/%d; amiproxy CPU %s per delivery",
				events, res[0].lost, res[1].lost, res[2].lost, res[0].disconnected, res[1].disconnected, res[2].disconnected,
				res[0].silent, res[1].silent, res[2].silent, perItem(proxyCPU, res[2].delivered))
			goal := loadgen.NoTarget
			if subs == 100 {
				goal = loadgen.AtLeast
				if !filtered {
					ceiling, err := blastCeiling(ctx, subs, events)
					if err != nil {
						return fmt.Errorf("driver ceiling: %w", err)
					}
					note += "; driver alone " + fmtRate(ceiling)
				}
			}
			t.Add(loadgen.Row{Measure: fmt.Sprintf("event deliveries/s, %s, %s", plural(subs, "subscriber"), what), Unit: "/s",
				Direct: loadgen.V(res[0].rate), Relay: loadgen.V(res[1].rate), Proxied: loadgen.V(res[2].rate),
				Goal: goal, Target: 1e6, Note: note})
		}
	}
	m1, err := ps.proxy.metrics()
	if err != nil {
		return err
	}
	dropped := m1[`amiproxy_client_events_total{outcome="dropped"}`] - m0[`amiproxy_client_events_total{outcome="dropped"}`]
	slow := m1["amiproxy_slow_client_disconnects_total"] - m0["amiproxy_slow_client_disconnects_total"]
	upDropped := m1["amiproxy_upstream_events_dropped_total"] - m0["amiproxy_upstream_events_dropped_total"]
	t.Add(loadgen.Row{Measure: "fan-out drops amiproxy counted (all runs above)", Unit: "",
		Proxied: loadgen.V(dropped + upDropped), Goal: loadgen.NoTarget,
		Note: fmt.Sprintf("client queue %v, upstream %v, slow-client disconnects %v", dropped, upDropped, slow)})
	return nil
}

// rssSettled reads the RSS of pid after letting it settle.
func rssSettled(p *proxyChild) (int64, error) {
	time.Sleep(time.Second)
	return p.rss()
}

// benchMemory measures amiproxy's RSS growth per idle TCP client and per
// idle HTTP session.
func benchMemory(ctx context.Context, o *benchOptions, sz benchSizes, t *loadgen.Table) error {
	sim, err := newBenchSim()
	if err != nil {
		return err
	}
	defer sim.Close()
	addr := sim.Addr().String()

	// TCP: logged-in clients with events on, no traffic.
	p, stop, err := startProxy(ctx, o, "memory-tcp", []string{addr})
	if err != nil {
		return err
	}
	l := benchLogin
	l.Events = true
	warm, err := dialMany(ctx, p.ami, l, 50)
	if err != nil {
		stop()
		return err
	}
	before, err := rssSettled(p)
	if err != nil {
		stop()
		return err
	}
	g0, ok0 := p.runtimeStats()
	cs, err := dialMany(ctx, p.ami, l, sz.idleClients)
	if err != nil {
		closeAll(warm)
		stop()
		return err
	}
	after, err := rssSettled(p)
	if err == nil {
		err = p.saveHeap(o, "idle-tcp")
	}
	g1, ok1 := p.runtimeStats()
	closeAll(cs)
	closeAll(warm)
	stop()
	if err != nil {
		return err
	}
	note := fmt.Sprintf("RSS %d → %d MiB", before>>20, after>>20)
	if ok0 && ok1 {
		n := float64(sz.idleClients)
		note += fmt.Sprintf("; per client %.1f goroutines, %.1f KiB stacks, %.1f KiB heap objects",
			float64(g1.goroutines-g0.goroutines)/n, (float64(g1.stackBytes)-float64(g0.stackBytes))/n/1024,
			(float64(g1.objects)-float64(g0.objects))/n/1024)
	}
	t.Add(loadgen.Row{Measure: fmt.Sprintf("RSS per idle TCP client, %d clients", sz.idleClients), Unit: "KiB",
		Proxied: loadgen.V(float64(after-before) / float64(sz.idleClients) / 1024), Goal: loadgen.AtMost, Target: 16,
		Note: note})

	// HTTP: logged-in /rawman sessions, their connections closed.
	p, stop, err = startProxy(ctx, o, "memory-http", []string{addr})
	if err != nil {
		return err
	}
	defer stop()
	base := "http://" + p.http
	if _, err := httpLogins(ctx, base, 50, 16); err != nil {
		return err
	}
	before, err = rssSettled(p)
	if err != nil {
		return err
	}
	h0, ok0 := p.runtimeStats()
	if _, err := httpLogins(ctx, base, sz.idleSessions, 16); err != nil {
		return err
	}
	after, err = rssSettled(p)
	if err != nil {
		return err
	}
	if err := p.saveHeap(o, "idle-http"); err != nil {
		return err
	}
	note = fmt.Sprintf("RSS %d → %d MiB; connections closed", before>>20, after>>20)
	if h1, ok1 := p.runtimeStats(); ok0 && ok1 {
		n := float64(sz.idleSessions)
		note += fmt.Sprintf("; per session %.1f goroutines, %.1f KiB heap objects",
			float64(h1.goroutines-h0.goroutines)/n, (float64(h1.objects)-float64(h0.objects))/n/1024)
	}
	t.Add(loadgen.Row{Measure: fmt.Sprintf("RSS per idle HTTP session, %d sessions", sz.idleSessions), Unit: "KiB",
		Proxied: loadgen.V(float64(after-before) / float64(sz.idleSessions) / 1024), Goal: loadgen.AtMost, Target: 4,
		Note: note})
	return nil
}

// httpLogins logs n /rawman sessions in, conc at a time, over connections
// that are closed afterwards, and returns them.
func httpLogins(ctx context.Context, base string, n, conc int) ([]*loadgen.HTTPSession, error) {
	tr := &http.Transport{MaxIdleConnsPerHost: conc, DisableCompression: true}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr, Timeout: 30 * time.Second}
	out := make([]*loadgen.HTTPSession, n)
	errs := make([]error, n)
	var next atomic.Int64
	var wg sync.WaitGroup
	for range conc {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= n || ctx.Err() != nil {
					return
				}
				out[i], errs[i] = loadgen.HTTPLogin(ctx, hc, base, benchLogin)
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return out, ctx.Err()
}

// benchWaitEventRate is the events/s the PBX emits while the WaitEvent
// sessions poll: each event answers every pending WaitEvent, so 10,000
// sessions make 10,000 HTTP requests per event; on two cores that shared
// with the driver, 2/s is about what keeps every session current.
const benchWaitEventRate = 2

// benchWaitEvent measures amiproxy's RSS with many HTTP sessions
// long-polling WaitEvent while events flow, and what they receive.
func benchWaitEvent(ctx context.Context, o *benchOptions, sz benchSizes, t *loadgen.Table) error {
	sim, err := newBenchSim()
	if err != nil {
		return err
	}
	defer sim.Close()
	p, stop, err := startProxy(ctx, o, "waitevent", []string{sim.Addr().String()})
	if err != nil {
		return err
	}
	defer stop()
	base := "http://" + p.http
	n := sz.waitSessions
	sessions, err := httpLogins(ctx, base, n, 16)
	if err != nil {
		return err
	}
	before, err := p.rss()
	if err != nil {
		return err
	}
	tr := &http.Transport{MaxIdleConnsPerHost: n + 16, DisableCompression: true}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr, Timeout: 60 * time.Second}
	// The sessions were logged in over another client; they poll over this one.
	for i, s := range sessions {
		sessions[i] = s.WithClient(hc)
	}
	pctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var received, dropped, polls, failures atomic.Int64
	var wg sync.WaitGroup
	for _, s := range sessions {
		wg.Go(func() {
			for pctx.Err() == nil {
				r, err := s.WaitEvent(pctx, 20, benchMarker)
				if err != nil {
					if pctx.Err() == nil {
						failures.Add(1)
						time.Sleep(100 * time.Millisecond)
					}
					continue
				}
				polls.Add(1)
				received.Add(r.Events)
				dropped.Add(r.Dropped)
			}
		})
	}
	// Let every session reach its first wait, then emit while sampling RSS.
	time.Sleep(2 * time.Second)
	peak := before
	start := time.Now()
	tick := time.NewTicker(time.Second / benchWaitEventRate)
	emitted := 0
	sample := time.Now()
	for time.Since(start) < sz.waitTime && ctx.Err() == nil {
		<-tick.C
		sim.Emit(benchEvent(emitted))
		emitted++
		if time.Since(sample) > 200*time.Millisecond {
			if v, err := p.rss(); err == nil {
				peak = max(peak, v)
			}
			sample = time.Now()
		}
	}
	tick.Stop()
	el := time.Since(start)
	want := int64(emitted) * int64(n)
	deadline := time.Now().Add(10 * time.Second)
	for received.Load()+dropped.Load() < want && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if v, err := p.rss(); err == nil {
		peak = max(peak, v)
	}
	if err := p.saveHeap(o, "waitevent"); err != nil {
		return err
	}
	cancel()
	wg.Wait()
	t.Add(loadgen.Row{Measure: fmt.Sprintf("RSS with %d HTTP sessions long-polling WaitEvent", n), Unit: "MB",
		Proxied: loadgen.V(float64(peak) / 1e6), Goal: loadgen.AtMost, Target: 300,
		Note: fmt.Sprintf("peak; %.0f MB before polling", float64(before)/1e6)})
	t.Add(loadgen.Row{Measure: fmt.Sprintf("WaitEvent deliveries/s, %d sessions, %d events/s emitted", n, benchWaitEventRate), Unit: "/s",
		Proxied: loadgen.V(float64(received.Load()) / el.Seconds()), Goal: loadgen.NoTarget,
		Note: fmt.Sprintf("received %d of %d, dropped and signalled %d, %d polls, %d failed requests",
			received.Load(), want, dropped.Load(), polls.Load(), failures.Load())})
	return nil
}

// benchRestart measures how long amiproxy takes to have every PBX link
// back after all its PBXs restart at once, and how many connection
// attempts it makes meanwhile.
func benchRestart(ctx context.Context, o *benchOptions, sz benchSizes, t *loadgen.Table) error {
	n := sz.restartPBXs
	sims := make([]*pbxsim.Server, 0, n)
	defer func() {
		for _, s := range sims {
			s.Close()
		}
	}()
	addrs := make([]string, 0, n)
	for range n {
		s, err := newBenchSim()
		if err != nil {
			return err
		}
		sims = append(sims, s)
		addrs = append(addrs, s.Addr().String())
	}
	p, stop, err := startProxy(ctx, o, "restart", addrs)
	if err != nil {
		return err
	}
	defer stop()
	m0, err := p.metrics()
	if err != nil {
		return err
	}
	start := time.Now()
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i, s := range sims {
		wg.Go(func() { errs[i] = s.Restart(sz.restartDown) })
	}
	// Wait to see the links go down, then come back.
	sawDown := false
	var back time.Duration
	deadline := start.Add(120 * time.Second)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		ok := p.ready()
		if !ok {
			sawDown = true
		} else if sawDown {
			back = time.Since(start)
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	if back == 0 {
		return fmt.Errorf("the %d PBX links were not all back within 120s (saw them down: %v)", n, sawDown)
	}
	m1, err := p.metrics()
	if err != nil {
		return err
	}
	logins := m1["amiproxy_upstream_reconnects_total"] - m0["amiproxy_upstream_reconnects_total"]
	failures := m1["amiproxy_upstream_connect_failures_total"] - m0["amiproxy_upstream_connect_failures_total"]
	attempts := logins + failures
	t.Add(loadgen.Row{Measure: fmt.Sprintf("all %d PBX links back after a mass restart", n), Unit: "s",
		Proxied: loadgen.V(back.Seconds()), Goal: loadgen.AtMost, Target: 30,
		Note: fmt.Sprintf("PBXs down %v, measured from the restart", sz.restartDown)})
	t.Add(loadgen.Row{Measure: "connection attempts per PBX during the mass restart", Unit: "",
		Proxied: loadgen.V(attempts / float64(n)), Goal: loadgen.AtMost, Target: 10,
		Note: fmt.Sprintf("%.0f logins and %.0f failed attempts in all", logins, failures)})
	return nil
}

// plural returns "1 subscriber" or "n subscribers".
func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return strconv.Itoa(n) + " " + noun + "s"
}
