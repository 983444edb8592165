package upstream

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/amiproxy/amiproxy/internal/pbxsim"
	"github.com/amiproxy/amiproxy/rawman"
)

// idleConn returns a Conn that never connects, to drive its routing
// directly.
func idleConn(b *testing.B, queue int) (*Pool, *Conn) {
	b.Helper()
	cfg := testConfig("pbx.invalid:5038")
	cfg.SubscriberQueue = queue
	dial := func(ctx context.Context, _, _ string) (net.Conn, error) {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	p, err := NewPool([]Config{cfg}, Options{Dial: dial})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = p.Close() })
	c, _ := p.Get("east")
	return p, c
}

// fanout starts n subscribers that drain their queues in batches and
// returns the running total of deliveries received.
func fanout(b *testing.B, p *Pool, c *Conn, n int) (*atomic.Int64, func()) {
	var got atomic.Int64
	var wg sync.WaitGroup
	ctx, cancel := context.WithCancel(context.Background())
	for range n {
		cl := p.NewClient()
		if err := c.Subscribe(cl); err != nil {
			b.Fatal(err)
		}
		wg.Go(func() {
			var buf []*Event
			for {
				evs, err := cl.NextBatch(ctx, buf)
				got.Add(int64(len(evs)))
				if err != nil {
					return
				}
				buf = evs
			}
		})
	}
	return &got, func() { cancel(); wg.Wait() }
}

// BenchmarkFanout100 measures the reader's delivery of one event to 100
// subscribers: encode once, share the bytes, never block. The producer is
// paced so that no queue overflows: every delivery is a real one.
func BenchmarkFanout100(b *testing.B) {
	const subs = 100
	p, c := idleConn(b, 1<<14)
	got, stop := fanout(b, p, c, subs)
	defer stop()
	r := rawman.NewReplyReader(strings.NewReader(
		"Event: Newchannel\r\nPrivilege: call,all\r\nChannel: Local/100@lab-00000001;1\r\nChannelState: 0\r\n" +
			"ChannelStateDesc: Down\r\nCallerIDNum: <unknown>\r\nCallerIDName: <unknown>\r\nContext: lab\r\n" +
			"Exten: 100\r\nPriority: 1\r\nUniqueid: 1795364790.2\r\nLinkedid: 1795364790.2\r\n\r\n"))
	m, err := r.ReadMessage()
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	for i := range b.N {
		c.route(m)
		if i%1024 == 1023 {
			for int64(i+1)*subs-got.Load() > 4096*subs {
				time.Sleep(10 * time.Microsecond)
			}
		}
	}
	for got.Load() < int64(b.N)*subs {
		time.Sleep(10 * time.Microsecond)
	}
	elapsed := time.Since(start)
	b.StopTimer()
	if st := c.Stats(); st.Dropped != 0 {
		b.Fatalf("%d deliveries dropped", st.Dropped)
	}
	b.ReportMetric(float64(b.N)*subs/elapsed.Seconds(), "deliveries/s")
}

// BenchmarkFanout100TCP is the same path end to end: a PBX writing events
// over TCP as fast as it can, the reader parsing and fanning out to 100
// subscribers.
func BenchmarkFanout100TCP(b *testing.B) {
	const subs = 100
	loadRecordings(b)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	blast := make(chan int, 1)
	var srvWG sync.WaitGroup
	srvWG.Go(func() {
		nc, err := ln.Accept()
		if err != nil {
			return
		}
		defer nc.Close()
		io.WriteString(nc, recs.banner)
		r := rawman.NewReader(nc)
		for range 2 { // Login, CoreSettings
			m, err := r.ReadMessage()
			if err != nil {
				return
			}
			io.WriteString(nc, reply("Success", m.ActionID(), "AsteriskVersion", "22.10.1"))
		}
		n := <-blast
		ev := []byte(recs.newchannel)
		batch := make([]byte, 0, 256*len(ev))
		for range 256 {
			batch = append(batch, ev...)
		}
		for sent := 0; sent < n; sent += 256 {
			k := min(256, n-sent)
			if _, err := nc.Write(batch[:k*len(ev)]); err != nil {
				return
			}
		}
		_, _ = io.Copy(io.Discard, nc)
	})
	cfg := testConfig(ln.Addr().String())
	cfg.SubscriberQueue = b.N + 1 // measure throughput, not the overflow policy
	p, err := NewPool([]Config{cfg}, Options{})
	if err != nil {
		b.Fatal(err)
	}
	c, _ := p.Get("east")
	if err := c.WaitUp(context.Background()); err != nil {
		b.Fatal(err)
	}
	got, stop := fanout(b, p, c, subs)
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	blast <- b.N
	for got.Load() < int64(b.N)*subs {
		time.Sleep(50 * time.Microsecond)
	}
	elapsed := time.Since(start)
	b.StopTimer()
	b.ReportMetric(float64(b.N)*subs/elapsed.Seconds(), "deliveries/s")
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "events/s")
	stop()
	_ = p.Close()
	srvWG.Wait()
}

func reportP50(b *testing.B, ds []time.Duration) {
	slices.Sort(ds)
	if len(ds) > 0 {
		b.ReportMetric(float64(ds[len(ds)/2].Nanoseconds()), "p50-ns")
	}
}

// BenchmarkDoPing is one Ping round trip through Do against pbxsim.
func BenchmarkDoPing(b *testing.B) {
	_, addr := startSim(b, pbxsim.Config{})
	p, err := NewPool([]Config{testConfig(addr)}, Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer p.Close()
	c, _ := p.Get("east")
	if err := c.WaitUp(context.Background()); err != nil {
		b.Fatal(err)
	}
	cl := p.NewClient()
	ping := rawman.New("Action", "Ping", "ActionID", "0")
	ctx := context.Background()
	ds := make([]time.Duration, 0, b.N)
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		t0 := time.Now()
		if err := c.Do(ctx, cl, ping, func(rawman.Message) {}); err != nil {
			b.Fatal(err)
		}
		ds = append(ds, time.Since(t0))
	}
	b.StopTimer()
	reportP50(b, ds)
}

// BenchmarkDoPingParallel pipelines Pings from many goroutines on the one
// shared session.
func BenchmarkDoPingParallel(b *testing.B) {
	_, addr := startSim(b, pbxsim.Config{})
	p, err := NewPool([]Config{testConfig(addr)}, Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer p.Close()
	c, _ := p.Get("east")
	if err := c.WaitUp(context.Background()); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		ping := rawman.New("Action", "Ping", "ActionID", "0")
		for pb.Next() {
			if err := c.Do(context.Background(), nil, ping, nil); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkPingRelay is the baseline of the Ping target: the same Ping
// through a bare byte relay (io.Copy both ways) to pbxsim.
func BenchmarkPingRelay(b *testing.B) {
	loadRecordings(b)
	_, addr := startSim(b, pbxsim.Config{})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Go(func() {
		in, err := ln.Accept()
		if err != nil {
			return
		}
		out, err := net.Dial("tcp", addr)
		if err != nil {
			in.Close()
			return
		}
		var cw sync.WaitGroup
		cw.Go(func() { io.Copy(out, in); out.Close() })
		cw.Go(func() { io.Copy(in, out); in.Close() })
		cw.Wait()
	})
	nc, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	defer nc.Close()
	r := rawman.NewReplyReader(nc)
	if _, err := r.ReadBanner(); err != nil {
		b.Fatal(err)
	}
	if _, err := io.WriteString(nc, "Action: Login\r\nUsername: admin\r\nSecret: adminpass\r\nEvents: off\r\n\r\n"); err != nil {
		b.Fatal(err)
	}
	if m, err := r.ReadMessage(); err != nil || m.Response() != "Success" {
		b.Fatalf("login: %v %v", m, err)
	}
	ping := []byte("Action: Ping\r\nActionID: 0\r\n\r\n")
	ds := make([]time.Duration, 0, b.N)
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		t0 := time.Now()
		if _, err := nc.Write(ping); err != nil {
			b.Fatal(err)
		}
		m, err := r.ReadMessage()
		if err != nil {
			b.Fatal(err)
		}
		if m.ActionID() != "0" {
			b.Fatal(errors.New(fmt.Sprint("unexpected ", m)))
		}
		ds = append(ds, time.Since(t0))
	}
	b.StopTimer()
	reportP50(b, ds)
}

// BenchmarkSubscribe10000 measures 10,000 clients subscribing to one Conn
// and then leaving in subscription order, as 10,000 HTTP sessions log in
// and expire (one op: all 10,000 of both).
func BenchmarkSubscribe10000(b *testing.B) {
	p, c := idleConn(b, 8)
	const n = 10000
	cls := make([]*Client, n)
	b.ReportAllocs()
	for b.Loop() {
		for i := range cls {
			cls[i] = p.NewClient()
			if err := c.Subscribe(cls[i]); err != nil {
				b.Fatal(err)
			}
		}
		for _, cl := range cls {
			cl.Close()
		}
	}
	if s := c.Stats().Subscribers; s != 0 {
		b.Fatalf("%d subscribers left", s)
	}
}
