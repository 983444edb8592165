package pbxsim

import (
	"context"
	"math/rand/v2"
	"testing"
	"time"
)

// TestTrafficEventsPerCall keeps the event counts of trafficMix, which
// pace StartTraffic, true to what each kind of call emits.
func TestTrafficEventsPerCall(t *testing.T) {
	t.Parallel()
	for _, k := range trafficMix {
		s := startServer(t, Config{TimeScale: 0.01})
		p := s.pbx
		rng := rand.New(rand.NewPCG(1, 2))
		n := 0
		one := []trafficCall{k}
		p.trafficCallFrom(one, rng, &n)
		waitFor(func() bool { p.lock(); defer p.unlock(); return len(p.channels) == 0 }, 5*time.Second)
		// The last events (Cdr, device state) may trail the hangup under
		// load: wait until the expected count is reached (or time runs
		// out), then let it settle so a surplus shows too.
		waitFor(func() bool { p.lock(); defer p.unlock(); return float64(p.emitted) >= k.events }, 3*time.Second)
		time.Sleep(50 * time.Millisecond)
		p.lock()
		got := p.emitted
		p.unlock()
		if float64(got) != k.events {
			t.Errorf("call %s %s(%s) cid=%v vars=%d emits %d events, trafficMix says %v", k.channel, k.app, k.data, k.cid, k.vars, got, k.events)
		}
	}
}

func TestStartTrafficRate(t *testing.T) {
	t.Parallel()
	s := startServer(t, Config{TimeScale: 0.2})
	c := dial(t, s.Addr())
	c.login("admin", "adminpass")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	const rate = 400
	s.StartTraffic(ctx, rate)
	// Count what one admin session receives during a window after warm-up.
	time.Sleep(300 * time.Millisecond)
	n := 0
	start := time.Now()
	for time.Since(start) < 1500*time.Millisecond {
		if _, err := c.tryRead(time.Second); err != nil {
			t.Fatalf("read: %v", err)
		}
		n++
	}
	got := float64(n) / time.Since(start).Seconds()
	if got < rate/2 || got > rate*2 {
		t.Errorf("StartTraffic(%d): %.0f events/s delivered, want roughly %d", rate, got, rate)
	}
	t.Logf("StartTraffic(%d): %.0f events/s delivered", rate, got)
}
