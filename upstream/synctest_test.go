package upstream

import (
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/amiproxy/amiproxy/rawman"
)

func maxJitter(n int64) int64 { return n - 1 }

func TestBackoff(t *testing.T) {
	lo, hi := 100*time.Millisecond, time.Second
	tests := []struct {
		attempt int
		want    time.Duration // ceiling; maxJitter returns ceiling-1
	}{
		{0, 100 * time.Millisecond},
		{1, 200 * time.Millisecond},
		{3, 800 * time.Millisecond},
		{4, time.Second},
		{62, time.Second},
		{1000, time.Second},
	}
	for _, tt := range tests {
		if got := backoff(tt.attempt, lo, hi, maxJitter); got != tt.want-1 {
			t.Errorf("backoff(%d) = %v, want %v", tt.attempt, got, tt.want-1)
		}
		if got := backoff(tt.attempt, lo, hi, func(int64) int64 { return 0 }); got != 0 {
			t.Errorf("backoff(%d) with zero jitter = %v, want 0 (full jitter)", tt.attempt, got)
		}
	}
}

// pipePBX is a minimal scripted PBX on one end of a net.Pipe, for tests
// inside a synctest bubble.
type pipePBX struct {
	upFor      time.Duration // close the session this long after login (0: never)
	stallAfter int           // stop answering after this many Pings (0: never)
}

func (pp pipePBX) serve(nc net.Conn) {
	defer nc.Close()
	var wmu sync.Mutex
	write := func(s string) bool {
		wmu.Lock()
		defer wmu.Unlock()
		_, err := io.WriteString(nc, s)
		return err == nil
	}
	if !write(recs.banner) {
		return
	}
	r := rawman.NewReader(nc)
	pings := 0
	for {
		m, err := r.ReadMessage()
		if err != nil {
			return
		}
		id := m.ActionID()
		ok := true
		switch m.Action() {
		case "Login":
			ok = write(recs.login.with(id))
		case "CoreSettings":
			ok = write(reply("Success", id, "AMIversion", "11.0.0", "AsteriskVersion", "22.10.1"))
			if pp.upFor > 0 {
				time.AfterFunc(pp.upFor, func() { _ = nc.Close() })
			}
		case "Ping":
			if pings++; pp.stallAfter == 0 || pings <= pp.stallAfter {
				ok = write(recs.ping.with(id))
			}
		case "Originate":
			ok = write(recs.origAck.with(id)) // the OriginateResponse never comes
		case "Logoff":
			write(recs.bye.with(id))
			return
		}
		if !ok {
			return
		}
	}
}

// dialScript returns a Dial hook that records when it is called and serves
// attempt n with script(n): a pipePBX, or an error.
func dialScript(script func(n int) (pipePBX, error)) (func(context.Context, string, string) (net.Conn, error), *counter) {
	var dials counter
	return func(ctx context.Context, _, _ string) (net.Conn, error) {
		dials.add()
		pp, err := script(len(dials.times()) - 1)
		if err != nil {
			return nil, err
		}
		c, s := net.Pipe()
		go pp.serve(s)
		return c, nil
	}, &dials
}

func gaps(ts []time.Time) []time.Duration {
	var out []time.Duration
	for i := 1; i < len(ts); i++ {
		out = append(out, ts[i].Sub(ts[i-1]))
	}
	return out
}

func pipeConfig() Config {
	return Config{
		Name: "east", Address: "pbx.invalid:5038", Username: "admin", Secret: "adminpass",
		ReconnectMin: 100 * time.Millisecond, ReconnectMax: time.Second,
		PingInterval: time.Hour, PingTimeout: 3 * time.Second,
	}
}

// The reconnect schedule is capped exponential: with the largest jitter
// the waits are 100, 200, 400, 800 ms, then 1 s.
func TestReconnectSchedule(t *testing.T) {
	loadRecordings(t)
	tests := []struct {
		name   string
		script func(n int) (pipePBX, error)
		want   []time.Duration
	}{
		{
			"dial failures back off",
			func(int) (pipePBX, error) { return pipePBX{}, errors.New("connection refused") },
			[]time.Duration{100, 200, 400, 800, 1000, 1000},
		},
		{
			// A link that drops right after login does not reset the
			// backoff, so a PBX that accepts and drops is not stormed.
			"flapping link keeps backing off",
			func(int) (pipePBX, error) { return pipePBX{upFor: time.Millisecond}, nil },
			[]time.Duration{101, 201, 401, 801, 1001, 1001},
		},
		{
			// A link that stayed up at least ReconnectMax starts over.
			"stable link resets the backoff",
			func(n int) (pipePBX, error) {
				if n == 0 {
					return pipePBX{upFor: 5 * time.Second}, nil
				}
				return pipePBX{}, errors.New("connection refused")
			},
			[]time.Duration{5100, 200, 400, 800, 1000},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				dial, dials := dialScript(tt.script)
				p, err := NewPool([]Config{pipeConfig()}, Options{Dial: dial, Rand: maxJitter})
				if err != nil {
					t.Fatal(err)
				}
				var total time.Duration
				for _, w := range tt.want {
					total += w * time.Millisecond
				}
				time.Sleep(total)
				synctest.Wait()
				_ = p.Close()
				got := gaps(dials.times())
				if len(got) < len(tt.want) {
					t.Fatalf("gaps between dials = %v, want %d gaps", got, len(tt.want))
				}
				for i, w := range tt.want {
					// maxJitter returns ceiling-1ns; round to ms.
					if g := got[i].Round(time.Millisecond); g != w*time.Millisecond {
						t.Errorf("gap %d = %v, want %v (all gaps %v)", i, got[i], w*time.Millisecond, got)
					}
				}
			})
		})
	}
}

// With a fake clock the keepalive's detection time is exact: pings at
// 10 s, 20 s, 30 s are answered, the one at 40 s is not, and the link
// goes down at 43 s (PingInterval+PingTimeout after the last good ping).
func TestKeepaliveTiming(t *testing.T) {
	loadRecordings(t)
	synctest.Test(t, func(t *testing.T) {
		dial, _ := dialScript(func(n int) (pipePBX, error) {
			if n == 0 {
				return pipePBX{stallAfter: 3}, nil
			}
			return pipePBX{}, errors.New("connection refused")
		})
		cfg := pipeConfig()
		cfg.PingInterval, cfg.PingTimeout = 10*time.Second, 3*time.Second
		p, err := NewPool([]Config{cfg}, Options{Dial: dial, Rand: maxJitter})
		if err != nil {
			t.Fatal(err)
		}
		defer p.Close()
		c, _ := p.Get("east")
		cl := p.NewClient()
		if err := c.Subscribe(cl); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		for {
			ev, err := cl.Next(ctx)
			if err != nil {
				t.Fatalf("Next: %v", err)
			}
			if ev.Link == LinkDown {
				if d := time.Since(start); d != 43*time.Second {
					t.Errorf("link down after %v, want 43s", d)
				}
				if !errors.Is(ev.Err, ErrPingTimeout) {
					t.Errorf("cause = %v, want ErrPingTimeout", ev.Err)
				}
				return
			}
		}
	})
}

// Late-reply registrations of async Originates are bounded: a cap refuses
// new ones, and they expire after LateReplyTTL plus the Originate Timeout.
func TestLateRepliesBounded(t *testing.T) {
	loadRecordings(t)
	synctest.Test(t, func(t *testing.T) {
		dial, _ := dialScript(func(int) (pipePBX, error) { return pipePBX{}, nil })
		cfg := pipeConfig()
		cfg.PingInterval = 10 * time.Second
		cfg.MaxLateReplies = 2
		cfg.LateReplyTTL = time.Minute
		p, err := NewPool([]Config{cfg}, Options{Dial: dial, Rand: maxJitter})
		if err != nil {
			t.Fatal(err)
		}
		defer p.Close()
		c, _ := p.Get("east")
		if err := c.WaitUp(context.Background()); err != nil {
			t.Fatal(err)
		}
		cl := p.NewClient()
		originate := func() error {
			return c.Do(context.Background(), cl, rawman.New("Action", "Originate", "Channel", "Local/100@lab",
				"Application", "Wait", "Async", "yes", "Timeout", "20000"), nil)
		}
		for range 2 {
			if err := originate(); err != nil {
				t.Fatalf("Originate: %v", err)
			}
		}
		if err := originate(); !errors.Is(err, ErrTooManyPending) {
			t.Errorf("third async Originate = %v, want ErrTooManyPending", err)
		}
		if n := c.Stats().LateReplies; n != 2 {
			t.Errorf("LateReplies = %d, want 2", n)
		}
		time.Sleep(time.Minute + 20*time.Second + 10*time.Second) // TTL + Timeout + one keepalive
		synctest.Wait()
		if n := c.Stats().LateReplies; n != 0 {
			t.Errorf("LateReplies = %d after expiry, want 0", n)
		}
		if err := originate(); err != nil {
			t.Errorf("Originate after expiry: %v", err)
		}
	})
}
