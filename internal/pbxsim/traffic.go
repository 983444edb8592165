package pbxsim

import (
	"context"
	"fmt"
	"math/rand/v2"
	"time"
)

// trafficCall is one kind of synthetic call and its share of the mix.
type trafficCall struct {
	weight  int
	events  float64 // events one call emits (measured, see TestTrafficEventsPerCall)
	channel string
	app     string // "" for an Exten originate to lab,100
	data    string
	cid     bool
	vars    int
}

// trafficMix is the synthetic call mix: short answered calls (Newchannel,
// VarSet, NewCallerid, LocalBridge, DialBegin/End, Newstate, Newexten,
// OriginateResponse, Hangup, Cdr, DeviceStateChange…), calls that raise a
// UserEvent, calls through the dialplan on both legs, and failures.
var trafficMix = []trafficCall{
	{weight: 55, events: 31, channel: "Local/100@lab", app: "Wait", data: "1", cid: true, vars: 2},
	{weight: 15, events: 23, channel: "Local/100@lab", app: "Wait", data: "1"},
	{weight: 15, events: 28, channel: "Local/500@lab", app: "Wait", data: "2", cid: true},
	{weight: 10, events: 33, channel: "Local/100@lab", cid: true},
	{weight: 5, events: 7, channel: "Local/999@lab", app: "Wait", data: "1"},
}

func trafficEventsPerCall() float64 {
	var w, e float64
	for _, c := range trafficMix {
		w += float64(c.weight)
		e += float64(c.weight) * c.events
	}
	return e / w
}

// StartTraffic places synthetic calls (async Originates of the lab
// extensions, with their full event streams and OriginateResponses with
// ActionIDs "traffic-N") until ctx ends or the server closes: about
// eventsPerSecond events per second in total, or, for 0, a gentle call
// every 3 seconds; a negative rate starts nothing. Calls pause while
// Restart has the PBX down. The goroutine is owned by the server.
func (s *Server) StartTraffic(ctx context.Context, eventsPerSecond int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || eventsPerSecond < 0 {
		return
	}
	s.wg.Go(func() { s.pbx.runTraffic(ctx, eventsPerSecond) })
}

// runTraffic paces calls so that calls/s × events/call ≈ eventsPerSecond.
func (p *pbx) runTraffic(ctx context.Context, eventsPerSecond int) {
	callsPerSec := 1.0 / 3
	if eventsPerSecond > 0 {
		callsPerSec = float64(eventsPerSecond) / trafficEventsPerCall()
	}
	const tick = 10 * time.Millisecond
	t := time.NewTicker(tick)
	defer t.Stop()
	start := time.Now()
	started := 0
	rng := rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))
	if eventsPerSecond == 0 {
		p.trafficCall(rng, &started) // something to see at once
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-p.srv.done:
			return
		case <-t.C:
		}
		due := int(time.Since(start).Seconds()*callsPerSec) + boolInt(eventsPerSecond == 0)
		if p.isDown() {
			started = due // a restarting PBX places no calls
		}
		for started < due {
			p.trafficCall(rng, &started)
		}
	}
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

var trafficNames = []string{"Alice", "Bob", "Carol", "Dave", "Eve", "Mallory", "Peggy", "Trent", "Victor", "Walter"}

func (p *pbx) trafficCall(rng *rand.Rand, started *int) {
	p.trafficCallFrom(trafficMix, rng, started)
}

func (p *pbx) trafficCallFrom(mix []trafficCall, rng *rand.Rand, started *int) {
	total := 0
	for _, c := range mix {
		total += c.weight
	}
	pick := rng.IntN(total)
	var k trafficCall
	for _, c := range mix {
		if pick < c.weight {
			k = c
			break
		}
		pick -= c.weight
	}
	*started++
	o := &origin{actionID: fmt.Sprintf("traffic-%d", *started), async: true, requested: k.channel,
		app: k.app, appData: k.data, context: "lab", exten: "100", prio: 1, timeout: 30 * time.Second}
	if k.cid {
		o.hasCID = true
		o.cidName = trafficNames[rng.IntN(len(trafficNames))]
		o.cidNum = fmt.Sprintf("555%04d", rng.IntN(10000))
	}
	for i := range k.vars {
		o.vars = append(o.vars, kv{fmt.Sprintf("TRAFFIC%d", i+1), fmt.Sprintf("%d", rng.IntN(1000000))})
	}
	p.lock()
	p.originate(o)
	p.unlock()
}
