package pbxsim

import (
	"cmp"
	"container/heap"
	"fmt"
	"math/rand/v2"
	"runtime/debug"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/amiproxy/amiproxy/policy"
)

// pbx is the simulated Asterisk core: channels, the lab dialplan, the
// queue, AstDB and global variables.
//
// All of its state is guarded by mu. Timed steps (the end of a Wait, the
// media wait of Answer, timeouts) run on one scheduler goroutine owned by
// the Server, under mu. Time is "simulated": every step carries the
// simulated instant it was scheduled for (vt), and durations reported to
// clients are differences of those instants; real delays are vt times
// Config.TimeScale.
//
// The events of one step are collected in batch and broadcast together
// when the step ends (unlock), still under mu, so every session sees the
// steps in the same order and WaitEvent returns a whole burst.
type pbx struct {
	srv *Server
	cfg *settings

	smu   sync.Mutex // guards the task heap and t0
	t0    time.Time  // real start of the simulated clock (monotonic)
	tasks taskHeap
	tseq  uint64
	wake  chan struct{} // cap 1

	mu        sync.Mutex
	boot      time.Time     // wall clock at start: CoreStartup, Uptime, Uniqueid epoch
	down      bool          // Restart in progress: no traffic
	gen       int           // incremented by reset
	vt        time.Duration // simulated instant of the running step
	batch     []event
	emitted   uint64 // events emitted by the PBX, for traffic pacing
	uidSeq    int
	localSeq  int
	bridgeSeq int
	channels  []*channel // live, in creation order
	processed int
	globals   []kv
	db        map[string]string // "family/key" -> value
	queue     *queueState
	depth     int // nesting of synchronous dialplan steps
}

type kv struct{ k, v string }

func newPBX(s *Server) *pbx {
	p := &pbx{
		srv:  s,
		cfg:  &s.cfg,
		t0:   time.Now(),
		wake: make(chan struct{}, 1),
		db:   map[string]string{},
		boot: s.cfg.Now(),
	}
	p.queue = newQueueState()
	return p
}

// --- scheduler ---

type task struct {
	real time.Duration // since t0
	vt   time.Duration
	seq  uint64
	gen  int // pbx.gen when scheduled; a Restart drops older tasks
	fn   func()
}

type taskHeap []*task

func (h taskHeap) Len() int { return len(h) }
func (h taskHeap) Less(i, j int) bool {
	if h[i].real != h[j].real {
		return h[i].real < h[j].real
	}
	return h[i].seq < h[j].seq
}
func (h taskHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *taskHeap) Push(x any)   { *h = append(*h, x.(*task)) }
func (h *taskHeap) Pop() any {
	old := *h
	t := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	return t
}

// after runs fn under mu once d of simulated time has passed since the
// current step. Called with mu held.
func (p *pbx) after(d time.Duration, fn func()) {
	vt := p.vt + max(d, 0)
	p.smu.Lock()
	defer p.smu.Unlock()
	p.tseq++
	heap.Push(&p.tasks, &task{real: p.cfg.scale(vt), vt: vt, seq: p.tseq, gen: p.gen, fn: fn})
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// runScheduler runs timed steps until the server closes. Due steps are
// taken from the queue only under mu (see catchUp), so an action that
// enters the PBX never sees a step that is due but not yet run.
func (p *pbx) runScheduler() {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		p.mu.Lock()
		p.smu.Lock()
		now := time.Since(p.t0)
		p.smu.Unlock()
		p.catchUp(now)
		p.unlock()
		next := time.Hour
		p.smu.Lock()
		if len(p.tasks) > 0 {
			next = p.tasks[0].real - time.Since(p.t0)
		}
		p.smu.Unlock()
		if next <= 0 {
			continue
		}
		timer.Reset(next)
		select {
		case <-p.srv.done:
			return
		case <-p.wake:
		case <-timer.C:
		}
	}
}

// catchUp runs, in order, every step due at real time now (since t0),
// including the steps those schedule for no later than now. Called with
// mu held.
func (p *pbx) catchUp(now time.Duration) {
	for {
		p.smu.Lock()
		if len(p.tasks) == 0 || p.tasks[0].real > now {
			p.smu.Unlock()
			return
		}
		t := heap.Pop(&p.tasks).(*task)
		p.smu.Unlock()
		p.runTask(t)
	}
}

// runTask runs one step under mu.
func (p *pbx) runTask(t *task) {
	defer func() {
		if r := recover(); r != nil {
			p.srv.log.Error("pbxsim: pbx step panic", "panic", r, "stack", string(debug.Stack()))
		}
	}()
	if t.gen != p.gen {
		return
	}
	// The step's own instant, even if an action moved the clock on while
	// the scheduler lagged: chains of steps keep exact simulated timing.
	p.vt = t.vt
	t.fn()
}

// lock enters the PBX from an action or a query: the steps already due run
// first (even when the scheduler goroutine lags behind on a loaded
// machine, the action sees the state the simulated clock implies), then
// the simulated clock is real time since the start, scaled.
func (p *pbx) lock() {
	p.mu.Lock()
	p.smu.Lock()
	elapsed := time.Since(p.t0)
	p.smu.Unlock()
	p.catchUp(elapsed)
	p.vt = time.Duration(float64(elapsed) / p.cfg.TimeScale)
}

// bootTime returns when the PBX (re)started.
func (p *pbx) bootTime() time.Time {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.boot
}

func (p *pbx) setDown(down bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = down
}

func (p *pbx) isDown() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.down
}

// reset is a PBX restart: calls vanish without events, pending steps are
// dropped, counters and the clock start over. AstDB is kept.
func (p *pbx) reset() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.channels {
		c.dead = true
		c.tok++
		c.dialer, c.cancel, c.bridge = nil, nil, nil
	}
	p.channels = nil
	for _, qc := range p.queue.callers {
		qc.left = true
	}
	p.queue = newQueueState()
	p.globals = nil
	p.batch = nil
	p.uidSeq, p.localSeq, p.processed = 0, 0, 0
	p.smu.Lock()
	p.tasks = nil
	p.t0 = time.Now()
	p.smu.Unlock()
	p.vt = 0
	p.gen++
	p.boot = p.cfg.Now()
}

// unlock broadcasts the events of the step and leaves the PBX.
func (p *pbx) unlock() {
	if len(p.batch) > 0 {
		b := p.batch
		p.batch = nil
		p.emitted += uint64(len(b))
		p.srv.broadcast(b...)
	}
	p.mu.Unlock()
}

// since is the simulated time elapsed since instant t, never negative.
func (p *pbx) since(t time.Duration) time.Duration { return max(p.vt-t, 0) }

// wall is the wall-clock time of simulated instant vt.
func (p *pbx) wall(vt time.Duration) time.Time { return p.boot.Add(vt) }

func (p *pbx) emit(e *eventBuilder) { p.batch = append(p.batch, e.done()) }

// --- channels ---

// Channel states (ast_state_type) and their descriptions.
const (
	stateDown    = 0
	stateRing    = 4
	stateRinging = 5
	stateUp      = 6
)

func stateDesc(s int) string {
	switch s {
	case 0:
		return "Down"
	case 1:
		return "Rsrvd"
	case 2:
		return "OffHook"
	case 3:
		return "Dialing"
	case 4:
		return "Ring"
	case 5:
		return "Ringing"
	case 6:
		return "Up"
	case 7:
		return "Busy"
	case 8:
		return "Dialing Offhook"
	case 9:
		return "Pre-ring"
	}
	return "Unknown"
}

// causeText is ast_cause2str for the causes the simulation uses.
func causeText(c int) string {
	switch c {
	case 0:
		return "Unknown"
	case 1:
		return "Unallocated (unassigned) number"
	case 16:
		return "Normal Clearing"
	case 17:
		return "User busy"
	case 18:
		return "No user responding"
	case 19:
		return "User alerting, no answer"
	case 21:
		return "Call Rejected"
	case 34:
		return "Circuit/channel congestion"
	}
	return "Unknown"
}

// dialer is whoever waits for an outgoing channel to answer: an
// Originate, the Dial application or the queue.
type dialer interface {
	answered(p *pbx, c *channel)
	ringing(p *pbx, c *channel)
	// gone is called when the channel hangs up before it answered.
	gone(p *pbx, c *channel)
}

type channel struct {
	name, uid, linked string
	state             int
	cidNum, cidName   string
	connNum, connName string
	acct              string
	context, exten    string
	prio              int
	app, data         string
	vars              []kv
	device            string // "Local/100@lab"

	created, answered, ended time.Duration // simulated instants
	wasAnswered              bool

	peer *channel // other half of a Local pair
	half int      // 1 or 2 for a Local pair

	dead     bool
	tok      int  // bumped to cancel the pending step
	inPBX    bool // runs dialplan (else an Originate's application)
	lastApp  string
	lastData string
	dialer   dialer // set on an outgoing channel until it answers or fails
	cancel   func() // leaves the application in progress (Queue, Dial)
	bridge   *bridge
	noCdr    bool
	absTO    int // AbsoluteTimeout generation
	mixmon   int // MixMonitors running on the channel
}

// newUID returns the next Uniqueid: "<epoch>.<n>", with SystemName first.
func (p *pbx) newUID() string {
	id := strconv.FormatInt(p.wall(p.vt).Unix(), 10) + "." + strconv.Itoa(p.uidSeq)
	p.uidSeq++
	if p.cfg.SystemName != "" {
		id = p.cfg.SystemName + "-" + id
	}
	return id
}

// newLocalPair creates the two halves of Local/<exten>@<context>. linked
// is the Linkedid to use ("" starts a new call).
func (p *pbx) newLocalPair(exten, context, linked, acct string) (*channel, *channel) {
	base := fmt.Sprintf("Local/%s@%s-%08x", exten, context, p.localSeq)
	p.localSeq++
	c1 := &channel{name: base + ";1", state: stateDown, context: context, exten: exten, prio: 1,
		acct: acct, device: "Local/" + exten + "@" + context, created: p.vt, half: 1}
	c2 := &channel{name: base + ";2", state: stateRing, context: context, exten: exten, prio: 1,
		acct: acct, device: c1.device, created: p.vt, half: 2}
	c1.uid = p.newUID()
	c2.uid = p.newUID()
	if linked == "" {
		linked = c1.uid
	}
	c1.linked, c2.linked = linked, linked
	c1.peer, c2.peer = c2, c1
	p.channels = append(p.channels, c1, c2)
	return c1, c2
}

func orUnknown(s string) string {
	if s == "" {
		return "<unknown>"
	}
	return s
}

// snap adds a channel snapshot (ast_manager_build_channel_state_string).
func snap(f *frame, c *channel, prefix string) {
	f.add(prefix+"Channel", c.name)
	f.addInt(prefix+"ChannelState", c.state)
	f.add(prefix+"ChannelStateDesc", stateDesc(c.state))
	f.add(prefix+"CallerIDNum", orUnknown(c.cidNum))
	f.add(prefix+"CallerIDName", orUnknown(c.cidName))
	f.add(prefix+"ConnectedLineNum", orUnknown(c.connNum))
	f.add(prefix+"ConnectedLineName", orUnknown(c.connName))
	f.add(prefix+"Language", "en")
	f.add(prefix+"AccountCode", c.acct)
	f.add(prefix+"Context", c.context)
	f.add(prefix+"Exten", c.exten)
	f.addInt(prefix+"Priority", c.prio)
	f.add(prefix+"Uniqueid", c.uid)
	f.add(prefix+"Linkedid", c.linked)
}

// chanEvent emits an event made of a channel snapshot and kv pairs.
func (p *pbx) chanEvent(name string, class policy.Class, c *channel, kvs ...string) {
	e := p.cfg.newEvent(name, class)
	snap(&e.frame, c, "")
	for i := 0; i+1 < len(kvs); i += 2 {
		e.add(kvs[i], kvs[i+1])
	}
	p.emit(e)
}

func (p *pbx) newstate(c *channel, state int) {
	c.state = state
	p.chanEvent("Newstate", policy.Call, c)
	p.deviceStateChanged(c.device)
}

// deviceStateChanged emits DeviceStateChange for a Local device, as
// Asterisk does after every state change and destruction of its channels.
func (p *pbx) deviceStateChanged(device string) {
	if device == "" {
		return
	}
	e := p.cfg.newEvent("DeviceStateChange", policy.Call)
	e.add("Device", device)
	e.add("State", p.deviceState(device))
	p.emit(e)
}

// deviceState is core_local's local_devicestate.
func (p *pbx) deviceState(device string) string {
	for _, c := range p.channels {
		if c.device == device && c.half == 2 && c.inPBX {
			return "INUSE"
		}
	}
	exten, context := splitLocal(device[len("Local/"):])
	if findExten(context, exten) == nil {
		return "INVALID"
	}
	return "NOT_INUSE"
}

// setVar sets a channel variable (c != nil) or a global one and emits
// VarSet.
func (p *pbx) setVar(c *channel, name, value string) {
	if c == nil {
		p.globals = setKV(p.globals, name, value)
		e := p.cfg.newEvent("VarSet", policy.Dialplan)
		e.add("Channel", "none").add("Uniqueid", "none")
		e.add("Variable", name).add("Value", value)
		p.emit(e)
		return
	}
	c.vars = setKV(c.vars, name, value)
	p.chanEvent("VarSet", policy.Dialplan, c, "Variable", name, "Value", value)
}

func setKV(l []kv, k, v string) []kv {
	for i := range l {
		if l[i].k == k {
			l[i].v = v
			return l
		}
	}
	return append(l, kv{k, v})
}

func getKV(l []kv, k string) (string, bool) {
	for _, e := range l {
		if e.k == k {
			return e.v, true
		}
	}
	return "", false
}

// findChannel returns the live channel named name (case-insensitive, as
// ast_channel_get_by_name).
func (p *pbx) findChannel(name string) *channel {
	for _, c := range p.channels {
		if asciiEqualFold(c.name, name) {
			return c
		}
	}
	return nil
}

// listOrder returns the live channels in the order Asterisk's channel
// containers list them (CoreShowChannels, Status, Hangup by regex, core
// show channels): hash buckets of the name (ast_str_case_hash modulo
// AST_NUM_CHANNEL_BUCKETS), highest bucket first. This reproduces the
// three orders recorded from the lab; a bucket shared by two channels
// lists the newer one first.
func (p *pbx) listOrder() []*channel {
	out := make([]*channel, 0, len(p.channels))
	for i := len(p.channels) - 1; i >= 0; i-- {
		out = append(out, p.channels[i])
	}
	slices.SortStableFunc(out, func(a, b *channel) int {
		return cmp.Compare(channelBucket(b.name), channelBucket(a.name))
	})
	return out
}

// channelBucket is the ao2 hash bucket of a channel name.
func channelBucket(name string) uint32 {
	const buckets = 1567 // AST_NUM_CHANNEL_BUCKETS
	h := uint32(5381)
	for i := 0; i < len(name); i++ {
		c := name[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		h = h*33 ^ uint32(c)
	}
	v := int32(h)
	if v < 0 {
		v = -v
	}
	return uint32(v) % buckets
}

// answer answers c. For the ;2 half of a Local pair this answers ;1 too.
func (p *pbx) answer(c *channel) {
	if c.dead || c.state == stateUp {
		return
	}
	c.wasAnswered, c.answered = true, p.vt
	p.newstate(c, stateUp)
	if c.half == 2 && c.peer != nil && !c.peer.dead && c.peer.state != stateUp {
		o := c.peer
		o.wasAnswered, o.answered = true, p.vt
		p.newstate(o, stateUp)
		if d := o.dialer; d != nil {
			o.dialer = nil
			d.answered(p, o)
		}
	}
}

// ringing is the Ringing application on c: the dialing side of a Local
// pair sees it ring.
func (p *pbx) ringing(c *channel) {
	if c.half != 2 || c.peer == nil || c.peer.dead {
		return
	}
	o := c.peer
	if o.state == stateUp || o.state == stateRinging {
		return
	}
	p.newstate(o, stateRinging)
	if o.dialer != nil {
		o.dialer.ringing(p, o)
	}
}

// hangup hangs c up with cause and, for a Local pair, its other half,
// with the events Asterisk 22 emits in each direction (recorded in
// tcp-originate-async-events.txt and tcp-events-eventmask.txt).
func (p *pbx) hangup(c *channel, cause int) {
	if c.dead {
		return
	}
	peer := c.peer
	if peer != nil && peer.dead {
		peer = nil
	}
	hangupEv := func(x *channel) {
		p.chanEvent("Hangup", policy.Call, x, "Cause", strconv.Itoa(cause), "Cause-txt", causeText(cause))
	}
	// A channel leaves its bridge before it is hung up.
	for _, x := range []*channel{c, peer} {
		if x != nil && x.bridge != nil {
			p.bridgeLeave(x.bridge, x)
		}
	}
	switch {
	case peer == nil:
		hangupEv(c)
		p.destroy(c)
		p.cdr(c)
		p.deviceStateChanged(c.device)
		p.afterHangup(c)
	case c.half == 2:
		p.chanEvent("HangupRequest", policy.Call, peer, "Cause", strconv.Itoa(cause))
		hangupEv(peer)
		hangupEv(c)
		p.destroy(peer)
		p.destroy(c)
		p.cdr(c)
		p.cdr(peer)
		p.deviceStateChanged(c.device)
		p.deviceStateChanged(peer.device)
		p.afterHangup(peer)
		p.afterHangup(c)
	default:
		p.chanEvent("HangupRequest", policy.Call, peer, "Cause", strconv.Itoa(cause))
		hangupEv(c)
		p.chanEvent("SoftHangupRequest", policy.Call, peer, "Cause", "16")
		hangupEv(peer)
		p.destroy(c)
		p.destroy(peer)
		p.cdr(c)
		p.cdr(peer)
		p.deviceStateChanged(c.device)
		p.deviceStateChanged(peer.device)
		p.afterHangup(c)
		p.afterHangup(peer)
	}
}

// destroy removes c from the channel list and cancels what it was doing.
func (p *pbx) destroy(c *channel) {
	c.dead = true
	c.tok++
	c.ended = p.vt
	for i, x := range p.channels {
		if x == c {
			p.channels = append(p.channels[:i], p.channels[i+1:]...)
			break
		}
	}
}

// afterHangup tells whoever depended on c that it is gone.
func (p *pbx) afterHangup(c *channel) {
	if c.cancel != nil {
		f := c.cancel
		c.cancel = nil
		f()
	}
	if d := c.dialer; d != nil {
		c.dialer = nil
		d.gone(p, c)
	}
}

// cdr emits the Cdr event of c (cdr_manager).
func (p *pbx) cdr(c *channel) {
	if c.noCdr {
		return
	}
	e := p.cfg.newEvent("Cdr", policy.CDR)
	const layout = "2006-01-02 15:04:05"
	answerTime, billable, disposition := "", 0, "NO ANSWER"
	if c.wasAnswered {
		answerTime = p.wall(c.answered).Format(layout)
		billable = int(max(c.ended-c.answered, 0) / time.Second)
		disposition = "ANSWERED"
	}
	e.add("AccountCode", c.acct)
	e.add("Source", c.cidNum)
	e.add("Destination", c.exten)
	e.add("DestinationContext", c.context)
	e.add("CallerID", `"`+c.cidName+`" <`+c.cidNum+`>`)
	e.add("Channel", c.name)
	e.add("DestinationChannel", "")
	e.add("LastApplication", c.lastApp)
	e.add("LastData", c.lastData)
	e.add("StartTime", p.wall(c.created).Format(layout))
	e.add("AnswerTime", answerTime)
	e.add("EndTime", p.wall(c.ended).Format(layout))
	e.addInt("Duration", int(max(c.ended-c.created, 0)/time.Second))
	e.addInt("BillableSeconds", billable)
	e.add("Disposition", disposition)
	e.add("AMAFlags", "DOCUMENTATION")
	e.add("UniqueID", c.uid)
	e.add("UserField", "")
	p.emit(e)
}

// softHangup is a hangup requested from outside the channel (the Hangup
// action, "channel request hangup", AbsoluteTimeout): SoftHangupRequest
// now, the hangup itself as the channel's next step.
func (p *pbx) softHangup(c *channel, cause int) {
	if c.dead {
		return
	}
	p.chanEvent("SoftHangupRequest", policy.Call, c, "Cause", strconv.Itoa(cause))
	c.tok++
	tok := c.tok
	p.after(0, func() {
		if !c.dead && c.tok == tok {
			p.hangup(c, cause)
		}
	})
}

// callCounts returns the live channels and the calls processed, for
// CoreStatus.
func (p *pbx) callCounts() (current, processed int) {
	p.lock()
	defer p.unlock()
	return len(p.channels), p.processed
}

func (p *pbx) absoluteTimeout(name string, secs int) bool {
	p.lock()
	defer p.unlock()
	c := p.findChannel(name)
	if c == nil {
		return false
	}
	c.absTO++
	gen := c.absTO
	if secs > 0 {
		p.after(time.Duration(secs)*time.Second, func() {
			if !c.dead && c.absTO == gen {
				p.softHangup(c, 0)
			}
		})
	}
	return true
}

// --- bridges ---

type bridge struct {
	id    string
	chans []*channel
}

func (p *pbx) newBridgeID() string {
	p.bridgeSeq++
	r := rand.Uint64()
	return fmt.Sprintf("%08x-%04x-4%03x-a%03x-%012x", uint32(r), uint16(r>>32), p.bridgeSeq&0xfff, uint16(r>>48)&0xfff, uint64(p.bridgeSeq))
}

func (p *pbx) bridgeFields(f *frame, b *bridge) {
	f.add("BridgeUniqueid", b.id)
	f.add("BridgeType", "basic")
	f.add("BridgeTechnology", "simple_bridge")
	f.add("BridgeCreator", "Dial")
	f.add("BridgeName", b.id)
	f.addInt("BridgeNumChannels", len(b.chans))
	f.add("BridgeVideoSourceMode", "none")
}

// bridgeCalls puts a and b in a new basic bridge, as Dial does.
func (p *pbx) bridgeCalls(a, b *channel) {
	br := &bridge{id: p.newBridgeID()}
	e := p.cfg.newEvent("BridgeCreate", policy.Call)
	p.bridgeFields(&e.frame, br)
	p.emit(e)
	for _, c := range []*channel{a, b} {
		br.chans = append(br.chans, c)
		c.bridge = br
		e := p.cfg.newEvent("BridgeEnter", policy.Call)
		p.bridgeFields(&e.frame, br)
		snap(&e.frame, c, "")
		p.emit(e)
	}
}

// bridgeLeave takes c out of b; the others are pushed out too, the
// bridge is destroyed, and each of them goes on (its cancel func) in the
// next step, as its own channel thread would.
func (p *pbx) bridgeLeave(b *bridge, c *channel) {
	if c.bridge != b {
		return
	}
	p.leaveOne(b, c)
	var others []*channel
	for len(b.chans) > 0 {
		o := b.chans[0]
		p.leaveOne(b, o)
		others = append(others, o)
	}
	e := p.cfg.newEvent("BridgeDestroy", policy.Call)
	p.bridgeFields(&e.frame, b)
	p.emit(e)
	for _, o := range others {
		if f := o.cancel; f != nil {
			o.cancel = nil
			tok := o.tok
			p.after(0, func() {
				if !o.dead && o.tok == tok {
					f()
				}
			})
		}
	}
}

func (p *pbx) leaveOne(b *bridge, c *channel) {
	for i, x := range b.chans {
		if x == c {
			b.chans = append(b.chans[:i], b.chans[i+1:]...)
			break
		}
	}
	c.bridge = nil
	e := p.cfg.newEvent("BridgeLeave", policy.Call)
	p.bridgeFields(&e.frame, b)
	snap(&e.frame, c, "")
	p.emit(e)
}
