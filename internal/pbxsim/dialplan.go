package pbxsim

import (
	"strconv"
	"strings"
	"time"

	"github.com/amiproxy/amiproxy/policy"
)

// step is one priority of an extension.
type step struct {
	app, data string
	line      int // line in extensions.conf, for "dialplan show"
}

type extension struct {
	exten string
	steps []step
}

// labContext is context [lab] of testdata/transcripts/config/extensions.conf.
var labContext = []extension{
	{"100", []step{{"Answer", "", 9}, {"Set", "FOO=bar", 10}, {"Wait", "1", 11}, {"Hangup", "", 12}}},
	{"200", []step{{"Answer", "", 15}, {"Set", "FOO=long", 16}, {"Wait", "30", 17}, {"Hangup", "", 18}}},
	{"300", []step{{"Answer", "", 21}, {"Queue", "labq,,,,20", 22}, {"Hangup", "", 23}}},
	{"400", []step{{"Answer", "", 26}, {"Dial", "Local/200@lab,20", 27}, {"Hangup", "", 28}}},
	{"500", []step{{"Answer", "", 31}, {"UserEvent", "LabEvent,Foo: bar,Baz: qux", 32}, {"Wait", "1", 33}, {"Hangup", "", 34}}},
	{"600", []step{{"Ringing", "", 37}, {"Wait", "60", 38}, {"Hangup", "", 39}}},
}

// findExten returns the extension exten@context, or nil. Only context lab
// exists.
func findExten(context, exten string) *extension {
	if context != "lab" {
		return nil
	}
	for i := range labContext {
		if labContext[i].exten == exten {
			return &labContext[i]
		}
	}
	return nil
}

// splitLocal splits "100@lab/n" into exten and context ("default" when
// absent), dropping options.
func splitLocal(data string) (exten, context string) {
	if i := strings.IndexByte(data, '/'); i >= 0 {
		data = data[:i]
	}
	exten, context, ok := strings.Cut(data, "@")
	if !ok || context == "" {
		context = "default"
	}
	return exten, context
}

// startPBX makes c run the dialplan from its context, exten and priority.
func (p *pbx) startPBX(c *channel) {
	c.inPBX = true
	p.processed++
	p.execStep(c)
}

// execStep runs the priority c is at.
func (p *pbx) execStep(c *channel) {
	if c.dead {
		return
	}
	ext := findExten(c.context, c.exten)
	if ext == nil || c.prio < 1 || c.prio > len(ext.steps) {
		// Off the end of the dialplan (or sent nowhere): Asterisk hangs up.
		p.hangup(c, 0)
		return
	}
	st := ext.steps[c.prio-1]
	c.app, c.data = st.app, st.data
	c.lastApp, c.lastData = st.app, st.data
	p.chanEvent("Newexten", policy.Dialplan, c, "Extension", c.exten, "Application", st.app, "AppData", st.data)
	p.runApp(c, st.app, st.data)
}

// next continues c after d: the next priority in the dialplan, or the
// hangup of an Originate's channel whose application finished.
func (p *pbx) next(c *channel, d time.Duration) {
	tok := c.tok
	cont := func() {
		if c.dead || c.tok != tok {
			return
		}
		if !c.inPBX {
			p.hangup(c, 0)
			return
		}
		c.prio++
		p.execStep(c)
	}
	if d <= 0 && p.depth < 64 {
		// Applications that return at once run in the same step, as
		// their events reach clients in one burst.
		p.depth++
		cont()
		p.depth--
		return
	}
	p.after(d, cont)
}

// runApp runs one dialplan application on c.
func (p *pbx) runApp(c *channel, app, data string) {
	switch asciiLower(app) {
	case "answer":
		if c.state != stateUp {
			p.answer(c)
			p.next(c, 500*time.Millisecond) // __ast_answer waits up to 500 ms for media
			return
		}
		p.next(c, 0)
	case "set":
		name, value, _ := strings.Cut(data, "=")
		p.setVar(c, name, value)
		p.next(c, 0)
	case "wait":
		secs, _ := strconv.ParseFloat(strings.TrimSpace(data), 64)
		p.next(c, time.Duration(secs*float64(time.Second)))
	case "hangup":
		cause := 16
		if n, err := strconv.Atoi(strings.TrimSpace(data)); err == nil && n > 0 {
			cause = n
		}
		p.chanEvent("SoftHangupRequest", policy.Call, c, "Cause", strconv.Itoa(cause))
		p.hangup(c, cause)
	case "ringing":
		p.ringing(c)
		p.next(c, 0)
	case "userevent":
		args := strings.Split(data, ",")
		e := p.cfg.newEvent("UserEvent", policy.User)
		snap(&e.frame, c, "")
		e.add("UserEvent", args[0])
		for _, line := range args[1:] {
			e.raw(line)
		}
		p.emit(e)
		p.next(c, 0)
	case "queue":
		p.appQueue(c, data)
	case "dial":
		p.appDial(c, data)
	case "noop", "verbose", "log":
		p.next(c, 0)
	case "playback":
		p.next(c, time.Second)
	case "echo", "musiconhold":
		// Until hung up.
	default:
		p.srv.log.Debug("pbxsim: application not simulated, hanging up", "app", app, "channel", c.name)
		p.hangup(c, 0)
	}
}

// dialCall is the Dial application waiting for its callee.
type dialCall struct {
	caller *channel
	done   bool
}

// appDial is Dial(Local/<exten>@<context>[,timeout]).
func (p *pbx) appDial(c *channel, data string) {
	args := strings.Split(data, ",")
	target := args[0]
	timeout := 0
	if len(args) > 1 {
		timeout, _ = strconv.Atoi(strings.TrimSpace(args[1]))
	}
	tech, dest, _ := strings.Cut(target, "/")
	if !asciiEqualFold(tech, "Local") {
		p.setVar(c, "DIALSTATUS", "CHANUNAVAIL")
		p.next(c, 0)
		return
	}
	exten, context := splitLocal(dest)
	b1, b2 := p.newLocalPair(exten, context, c.linked, c.acct)
	p.chanEvent("Newchannel", policy.Call, b1)
	p.chanEvent("Newchannel", policy.Call, b2)
	if findExten(context, exten) == nil {
		b1.noCdr, b2.noCdr = true, true
		p.hangup(b2, 0)
		p.setVar(c, "DIALSTATUS", "CHANUNAVAIL")
		p.next(c, 0)
		return
	}
	b1.app, b1.data = "AppDial", "(Outgoing Line)"
	b1.lastApp, b1.lastData = b1.app, b1.data
	p.chanEvent("Newexten", policy.Dialplan, b1, "Extension", b1.exten, "Application", b1.app, "AppData", b1.data)
	p.localBridgeEvent(b1, b2)
	e := p.cfg.newEvent("DialBegin", policy.Call)
	snap(&e.frame, c, "")
	snap(&e.frame, b1, "Dest")
	e.add("DialString", dest)
	p.emit(e)
	d := &dialCall{caller: c}
	b1.dialer = d
	tok := c.tok
	c.cancel = func() { // the caller left (hangup, Redirect): drop the callee
		d.done = true
		if !b1.dead {
			b1.dialer = nil
			p.hangup(b1, 0)
		}
	}
	if timeout > 0 {
		p.after(time.Duration(timeout)*time.Second, func() {
			if d.done || b1.dead || c.dead || c.tok != tok {
				return
			}
			d.done = true
			b1.dialer = nil
			p.dialEnd(c, b1, "NOANSWER")
			c.cancel = nil
			p.hangup(b1, 0)
			p.setVar(c, "DIALSTATUS", "NOANSWER")
			p.next(c, 0)
		})
	}
	p.startPBX(b2)
}

func (p *pbx) dialEnd(caller, callee *channel, status string) {
	e := p.cfg.newEvent("DialEnd", policy.Call)
	if caller != nil {
		snap(&e.frame, caller, "")
	}
	snap(&e.frame, callee, "Dest")
	e.add("DialStatus", status)
	p.emit(e)
}

func (d *dialCall) answered(p *pbx, b1 *channel) {
	if d.done {
		return
	}
	d.done = true
	c := d.caller
	p.dialEnd(c, b1, "ANSWER")
	p.setVar(c, "DIALSTATUS", "ANSWER")
	// The bridge ends when either side hangs up; then the caller goes on
	// with its dialplan and the callee is hung up.
	c.cancel = func() {
		if !c.dead {
			p.next(c, 0)
		}
	}
	b1.cancel = func() {
		if !b1.dead {
			p.hangup(b1, 0)
		}
	}
	p.bridgeCalls(c, b1)
}

func (d *dialCall) ringing(p *pbx, b1 *channel) {
	e := p.cfg.newEvent("DialState", policy.Call)
	snap(&e.frame, d.caller, "")
	snap(&e.frame, b1, "Dest")
	e.add("DialStatus", "RINGING")
	p.emit(e)
}

func (d *dialCall) gone(p *pbx, b1 *channel) {
	if d.done {
		return
	}
	d.done = true
	c := d.caller
	c.cancel = nil
	p.dialEnd(c, b1, "NOANSWER")
	p.setVar(c, "DIALSTATUS", "NOANSWER")
	p.next(c, 0)
}

// localBridgeEvent is the LocalBridge event of a new Local pair.
func (p *pbx) localBridgeEvent(c1, c2 *channel) {
	e := p.cfg.newEvent("LocalBridge", policy.Call)
	snap(&e.frame, c1, "LocalOne")
	snap(&e.frame, c2, "LocalTwo")
	e.add("Context", c1.context)
	e.add("Exten", c1.exten)
	e.add("LocalOptimization", "Yes")
	p.emit(e)
}
