package pbxsim

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/amiproxy/amiproxy/policy"
	"github.com/amiproxy/amiproxy/rawman"
)

// queueState is queue labq of testdata/transcripts/config/queues.conf:
// strategy ringall, member timeout 15 s, one static member Local/600@lab
// named Agent600 (which only rings).
type queueState struct {
	name, strategy  string
	memberTimeout   time.Duration
	retry           time.Duration
	member, memName string
	callers         []*queueCaller
	completed       int
	abandoned       int
	loginWall       time.Time
}

type queueCaller struct {
	c      *channel
	joined time.Duration
	left   bool
	ring   *channel // member channel being rung (;1)
}

func newQueueState() *queueState {
	return &queueState{name: "labq", strategy: "ringall", memberTimeout: 15 * time.Second,
		retry: 5 * time.Second, member: "Local/600@lab", memName: "Agent600"}
}

// appQueue is Queue(labq,,,,<timeout>).
func (p *pbx) appQueue(c *channel, data string) {
	args := strings.Split(data, ",")
	q := p.queue
	if args[0] != q.name {
		p.setVar(c, "QUEUESTATUS", "UNKNOWN")
		p.next(c, 0)
		return
	}
	timeout := 0
	if len(args) > 4 {
		timeout, _ = strconv.Atoi(strings.TrimSpace(args[4]))
	}
	qc := &queueCaller{c: c, joined: p.vt}
	q.callers = append(q.callers, qc)
	p.chanEvent("QueueCallerJoin", policy.Agent, c, "Queue", q.name,
		"Position", strconv.Itoa(len(q.callers)), "Count", strconv.Itoa(len(q.callers)))
	c.cancel = func() { p.queueLeave(qc, "") } // hangup or Redirect: abandon
	if timeout > 0 {
		tok := c.tok
		p.after(time.Duration(timeout)*time.Second, func() {
			if qc.left || c.dead || c.tok != tok {
				return
			}
			c.cancel = nil
			p.queueLeave(qc, "TIMEOUT")
			p.next(c, 0)
		})
	}
	p.queueRing(qc)
}

// queueRing rings the member for qc.
func (p *pbx) queueRing(qc *queueCaller) {
	q := p.queue
	if qc.left || qc.c.dead {
		return
	}
	exten, context := splitLocal(strings.TrimPrefix(q.member, "Local/"))
	m1, m2 := p.newLocalPair(exten, context, qc.c.linked, qc.c.acct)
	qc.ring = m1
	p.chanEvent("Newchannel", policy.Call, m1)
	p.chanEvent("Newchannel", policy.Call, m2)
	m1.app, m1.data = "AppQueue", "(Outgoing Line)"
	m1.lastApp, m1.lastData = m1.app, m1.data
	p.chanEvent("Newexten", policy.Dialplan, m1, "Extension", m1.exten, "Application", m1.app, "AppData", m1.data)
	p.localBridgeEvent(m1, m2)
	e := p.cfg.newEvent("AgentCalled", policy.Agent)
	snap(&e.frame, qc.c, "")
	snap(&e.frame, m1, "Dest")
	e.add("Queue", q.name).add("Interface", q.member).add("MemberName", q.memName)
	p.emit(e)
	e = p.cfg.newEvent("DialBegin", policy.Call)
	snap(&e.frame, qc.c, "")
	snap(&e.frame, m1, "Dest")
	e.add("DialString", exten+"@"+context)
	p.emit(e)
	qd := &queueDial{qc: qc}
	m1.dialer = qd
	p.after(q.memberTimeout, func() {
		if qd.done || m1.dead || qc.left {
			return
		}
		qd.done = true
		m1.dialer = nil
		e := p.cfg.newEvent("AgentRingNoAnswer", policy.Agent)
		snap(&e.frame, qc.c, "")
		snap(&e.frame, m1, "Dest")
		e.add("Queue", q.name).add("Interface", q.member).add("MemberName", q.memName)
		e.addInt("RingTime", int(q.memberTimeout/time.Millisecond))
		p.emit(e)
		p.dialEnd(qc.c, m1, "NOANSWER")
		qc.ring = nil
		p.hangup(m1, 0)
		p.after(q.retry, func() { p.queueRing(qc) })
	})
	p.startPBX(m2)
}

// queueDial waits for the member channel.
type queueDial struct {
	qc   *queueCaller
	done bool
}

func (d *queueDial) answered(p *pbx, m1 *channel) {
	if d.done {
		return
	}
	d.done = true
	q, qc := p.queue, d.qc
	p.dialEnd(qc.c, m1, "ANSWER")
	e := p.cfg.newEvent("AgentConnect", policy.Agent)
	snap(&e.frame, qc.c, "")
	snap(&e.frame, m1, "Dest")
	e.add("Queue", q.name).add("Interface", q.member).add("MemberName", q.memName)
	e.addInt("HoldTime", int(p.since(qc.joined)/time.Second))
	e.addInt("RingTime", 0)
	p.emit(e)
	qc.ring = nil
	p.queueRemove(qc)
	q.completed++
	c := qc.c
	c.cancel = func() {
		if !c.dead {
			p.next(c, 0)
		}
	}
	m1.cancel = func() {
		if !m1.dead {
			p.hangup(m1, 0)
		}
	}
	p.bridgeCalls(c, m1)
}

func (d *queueDial) ringing(p *pbx, m1 *channel) {
	e := p.cfg.newEvent("DialState", policy.Call)
	snap(&e.frame, d.qc.c, "")
	snap(&e.frame, m1, "Dest")
	e.add("DialStatus", "RINGING")
	p.emit(e)
}

func (d *queueDial) gone(p *pbx, m1 *channel) {
	if d.done {
		return
	}
	d.done = true
	d.qc.ring = nil
	p.dialEnd(d.qc.c, m1, "NOANSWER")
	p.after(p.queue.retry, func() { p.queueRing(d.qc) })
}

// queueLeave takes qc out of the queue: QueueCallerLeave after a timeout
// (status set), QueueCallerAbandon when the caller went away.
func (p *pbx) queueLeave(qc *queueCaller, status string) {
	if qc.left {
		return
	}
	q := p.queue
	if m1 := qc.ring; m1 != nil && !m1.dead {
		if d, ok := m1.dialer.(*queueDial); ok {
			d.done = true
		}
		m1.dialer = nil
		p.dialEnd(qc.c, m1, "CANCEL")
		p.hangup(m1, 0)
	}
	qc.ring = nil
	pos := p.queueRemove(qc)
	if status == "" {
		q.abandoned++
		p.chanEvent("QueueCallerAbandon", policy.Agent, qc.c, "Queue", q.name,
			"Position", strconv.Itoa(pos), "OriginalPosition", strconv.Itoa(pos),
			"HoldTime", strconv.Itoa(int(p.since(qc.joined)/time.Second)))
	}
	p.chanEvent("QueueCallerLeave", policy.Agent, qc.c, "Queue", q.name,
		"Count", strconv.Itoa(len(q.callers)), "Position", strconv.Itoa(pos))
	if status != "" && !qc.c.dead {
		p.setVar(qc.c, "QUEUESTATUS", status)
	}
}

func (p *pbx) queueRemove(qc *queueCaller) int {
	q := p.queue
	qc.left = true
	for i, x := range q.callers {
		if x == qc {
			q.callers = append(q.callers[:i], q.callers[i+1:]...)
			return i + 1
		}
	}
	return 0
}

// actQueueStatus is manager_queues_status for labq.
func (c *session) actQueueStatus(m rawman.Message) bool {
	id := m.ActionID()
	want := m.Get("Queue")
	member := m.Get("Member")
	p := c.srv.pbx
	f := listAck(id, "Queue status will follow")
	n := 0
	p.lock()
	q := p.queue
	if want == "" || want == q.name {
		f.add("Event", "QueueParams").add("Queue", q.name).add("Max", "0").add("Strategy", q.strategy).
			addInt("Calls", len(q.callers)).add("Holdtime", "0").add("TalkTime", "0").
			addInt("Completed", q.completed).addInt("Abandoned", q.abandoned).
			add("ServiceLevel", "0").add("ServicelevelPerf", "0.0").add("ServicelevelPerf2", "0.0").
			add("Weight", "0").id(id).end()
		n++
		if member == "" || member == q.member || member == q.memName {
			status, inCall := 1, 0 // AST_DEVICE_NOT_INUSE
			if p.deviceState(q.member) == "INUSE" {
				status, inCall = 2, 1
			}
			f.add("Event", "QueueMember").add("Queue", q.name).add("Name", q.memName).
				add("Location", q.member).add("StateInterface", q.member).add("Membership", "static").
				add("Penalty", "0").add("CallsTaken", "0").add("LastCall", "0").add("LastPause", "0").
				addInt("LoginTime", int(p.boot.Unix())).addInt("InCall", inCall).
				addInt("Status", status).add("Paused", "0").add("PausedReason", "").
				add("Wrapuptime", "0").id(id).end()
			n++
		}
		for i, qc := range q.callers {
			ch := qc.c
			f.add("Event", "QueueEntry").add("Queue", q.name).addInt("Position", i+1).
				add("Channel", ch.name).add("Uniqueid", ch.uid).
				add("CallerIDNum", orUnknown(ch.cidNum)).add("CallerIDName", orUnknown(ch.cidName)).
				add("ConnectedLineNum", orUnknown(ch.connNum)).add("ConnectedLineName", orUnknown(ch.connName)).
				addInt("Wait", int(p.since(qc.joined)/time.Second)).add("Priority", "0").id(id).end()
			n++
		}
	}
	p.unlock()
	f.listComplete("QueueStatusComplete", id, n).end()
	return c.writeRaw(f.b) == nil
}

// actQueueSummary is manager_queues_summary for labq.
func (c *session) actQueueSummary(m rawman.Message) bool {
	id := m.ActionID()
	want := m.Get("Queue")
	p := c.srv.pbx
	f := listAck(id, "Queue summary will follow")
	n := 0
	p.lock()
	q := p.queue
	if want == "" || want == q.name {
		longest := 0
		for _, qc := range q.callers {
			longest = max(longest, int(p.since(qc.joined)/time.Second))
		}
		available := 1
		if p.deviceState(q.member) == "INUSE" {
			available = 0
		}
		f.add("Event", "QueueSummary").add("Queue", q.name).add("LoggedIn", "1").
			addInt("Available", available).addInt("Callers", len(q.callers)).
			add("HoldTime", "0").add("TalkTime", "0").addInt("LongestHoldTime", longest).id(id).end()
		n++
	}
	p.unlock()
	f.listComplete("QueueSummaryComplete", id, n).end()
	return c.writeRaw(f.b) == nil
}

// queueShow is "queue show" output for labq.
func (p *pbx) queueShow() string {
	q := p.queue
	var b strings.Builder
	fmt.Fprintf(&b, "%s has %d calls (max unlimited) in '%s' strategy (0s holdtime, 0s talktime), W:0, C:%d, A:%d, SL:0.0%%, SL2:0.0%% within 0s\n",
		q.name, len(q.callers), q.strategy, q.completed, q.abandoned)
	state := "Not in use"
	if p.deviceState(q.member) == "INUSE" {
		state = "In use"
	}
	fmt.Fprintf(&b, "   Members: \n      %s (%s from %s) (ringinuse enabled) (%s) has taken no calls yet\n", q.memName, q.member, q.member, state)
	if len(q.callers) == 0 {
		b.WriteString("   No Callers\n")
	} else {
		b.WriteString("   Callers: \n")
		for i, qc := range q.callers {
			w := int(p.since(qc.joined) / time.Second)
			fmt.Fprintf(&b, "      %d. %s (wait: %d:%02d, prio: 0)\n", i+1, qc.c.name, w/60, w%60)
		}
	}
	b.WriteString("\n")
	return b.String()
}
