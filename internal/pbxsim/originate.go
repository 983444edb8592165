package pbxsim

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/amiproxy/amiproxy/policy"
	"github.com/amiproxy/amiproxy/rawman"
)

// origin is one Originate in progress (fast_originate for Async, else
// the session waits on result).
type origin struct {
	actionID        string
	async           bool
	requested       string // the Channel header, "Local/100@lab"
	app, appData    string
	context, exten  string
	prio            int
	timeout         time.Duration
	cidNum, cidName string
	hasCID          bool
	account         string
	vars            []kv // in header order
	chanID, otherID string
	result          chan bool // sync: true once answered, false on failure
	done            bool
	rang            bool
}

// actOriginate is action_originate.
func (c *session) actOriginate(m rawman.Message) bool {
	id := m.ActionID()
	name := m.Get("Channel")
	if name == "" {
		return c.writeRaw(ack("Error", id, "Channel not specified")) == nil
	}
	o := &origin{actionID: id, requested: name, app: m.Get("Application"), appData: m.Get("Data"),
		context: m.Get("Context"), exten: m.Get("Exten"), prio: 1, timeout: 30 * time.Second,
		account: m.Get("Account"), chanID: m.Get("ChannelId"), otherID: m.Get("OtherChannelId")}
	if pr := m.Get("Priority"); pr != "" {
		n, ok := scanfInt(pr)
		if !ok || n < 1 {
			return c.writeRaw(ack("Error", id, "Invalid priority")) == nil
		}
		o.prio = n
	}
	if to := m.Get("Timeout"); to != "" {
		n, err := strconv.Atoi(strings.TrimSpace(to))
		if err != nil {
			return c.writeRaw(ack("Error", id, "Invalid timeout")) == nil
		}
		o.timeout = time.Duration(n) * time.Millisecond
	}
	if !strings.Contains(name, "/") {
		return c.writeRaw(ack("Error", id, "Invalid channel")) == nil
	}
	if cid := m.Get("CallerID"); cid != "" {
		o.hasCID = true
		o.cidName, o.cidNum = parseCallerID(cid)
	}
	c.mu.Lock()
	write := c.write
	c.mu.Unlock()
	if o.app != "" && !originateAppPermitted(o.app, o.appData, write) {
		return c.writeRaw(ack("Error", id, "Originate Access Forbidden: app or data blacklisted")) == nil
	}
	if o.app == "" && (o.exten == "" || o.context == "") {
		return c.writeRaw(ack("Error", id, "Originate failed")) == nil
	}
	for _, v := range m.Values("Variable") {
		for item := range strings.SplitSeq(v, ",") {
			k, val, ok := strings.Cut(item, "=")
			if ok && k != "" {
				o.vars = append(o.vars, kv{k, val})
			}
		}
	}
	async := m.Get("Async")
	o.async = isTrue(async)
	if o.async {
		p := c.srv.pbx
		p.lock()
		p.after(0, func() { p.originate(o) })
		p.unlock()
		return c.writeRaw(ack("Success", id, "Originate successfully queued")) == nil
	}
	// Synchronous: the session is blocked until the call answers or fails.
	o.result = make(chan bool, 1)
	p := c.srv.pbx
	p.lock()
	p.originate(o)
	p.unlock()
	select {
	case ok := <-o.result:
		if ok {
			return c.writeRaw(ack("Success", id, "Originate successfully queued")) == nil
		}
		return c.writeRaw(ack("Error", id, "Originate failed")) == nil
	case <-c.done:
		return false
	case <-c.srv.done:
		return false
	}
}

// isTrue is ast_true.
func isTrue(s string) bool {
	switch asciiLower(s) {
	case "yes", "true", "y", "t", "1", "on":
		return true
	}
	return false
}

// originateAppPermitted is is_originate_app_permitted of Asterisk 22.
func originateAppPermitted(app, data string, write policy.Class) bool {
	if write&policy.System != 0 {
		return true
	}
	la := asciiLower(app)
	for _, bad := range []string{"agi", "dbdeltree", "exec", "externalivr", "mixmonitor", "originate", "reload", "system"} {
		if strings.Contains(la, bad) {
			return false
		}
	}
	if strings.Contains(la, "queue") {
		args := strings.Split(data, ",")
		if len(args) > 5 && args[5] != "" && write&policy.AGI == 0 {
			return false
		}
	}
	for _, bad := range []string{"CURL", "DB", "EVAL", "FILE", "ODBC", "REALTIME", "SHELL"} {
		if strings.Contains(data, bad) {
			return false
		}
	}
	return true
}

// parseCallerID is ast_callerid_parse for the usual forms:
// `"Name" <num>`, `Name <num>`, `<num>`, `num`, `Name`.
func parseCallerID(s string) (name, num string) {
	s = strings.TrimSpace(s)
	if lt := strings.LastIndexByte(s, '<'); lt >= 0 {
		if gt := strings.IndexByte(s[lt:], '>'); gt >= 0 {
			num = s[lt+1 : lt+gt]
			name = strings.Trim(strings.TrimSpace(s[:lt]), `"`)
			return name, num
		}
	}
	if s != "" && strings.Trim(s, "0123456789+*#") == "" {
		return "", s
	}
	return strings.Trim(s, `"`), ""
}

// originate places the call of o (pbx_outgoing_attempt), with the event
// sequence of tcp-originate-async-events.txt.
func (p *pbx) originate(o *origin) {
	tech, data, _ := strings.Cut(o.requested, "/")
	if !asciiEqualFold(tech, "Local") {
		p.originateFailed(o, 0)
		return
	}
	exten, context := splitLocal(data)
	c1, c2 := p.newLocalPair(exten, context, "", o.account)
	if o.chanID != "" {
		c1.uid, c1.linked, c2.linked = o.chanID, o.chanID, o.chanID
		c2.uid = o.otherID
		if c2.uid == "" {
			c2.uid = o.chanID + ";2"
		}
	}
	p.chanEvent("Newchannel", policy.Call, c1)
	p.chanEvent("Newchannel", policy.Call, c2)
	if findExten(context, exten) == nil {
		c1.noCdr, c2.noCdr = true, true
		hangupEv := func(x *channel) {
			p.chanEvent("Hangup", policy.Call, x, "Cause", "0", "Cause-txt", causeText(0))
		}
		hangupEv(c2)
		hangupEv(c1)
		p.destroy(c2)
		p.destroy(c1)
		p.originateFailed(o, 0)
		p.deviceStateChanged(c1.device)
		p.deviceStateChanged(c2.device)
		return
	}
	c1.app, c1.data = "AppDial2", "(Outgoing Line)"
	c1.lastApp, c1.lastData = c1.app, c1.data
	p.chanEvent("Newexten", policy.Dialplan, c1, "Extension", c1.exten, "Application", c1.app, "AppData", c1.data)
	for i := len(o.vars) - 1; i >= 0; i-- {
		p.setVar(c1, o.vars[i].k, o.vars[i].v)
	}
	if o.hasCID {
		p.setCallerID(c1, o.cidName, o.cidNum, false)
	}
	for _, v := range o.vars {
		p.setVar(c2, v.k, v.v)
	}
	if o.hasCID {
		p.setCallerID(c2, o.cidName, o.cidNum, true)
	}
	p.localBridgeEvent(c1, c2)
	e := p.cfg.newEvent("DialBegin", policy.Call)
	snap(&e.frame, c1, "Dest")
	e.add("DialString", data)
	p.emit(e)
	c1.dialer = o
	p.after(o.timeout, func() {
		if o.done || c1.dead || c1.dialer != o {
			return
		}
		o.done = true
		c1.dialer = nil
		p.dialEnd(nil, c1, "NOANSWER")
		p.hangup(c1, 0)
		reason := 3 // AST_CONTROL_RINGING: no answer
		p.originateFailed(o, reason)
	})
	p.startPBX(c2)
}

// setCallerID sets the caller ID (and the connected line) of c and emits
// NewCallerid and NewConnectedLine in the order the recording shows: the
// ;1 half publishes its caller ID before its connected line, the ;2 half
// gets both at once.
func (p *pbx) setCallerID(c *channel, name, num string, both bool) {
	c.cidName, c.cidNum = name, num
	if both {
		c.connName, c.connNum = name, num
	}
	p.chanEvent("NewCallerid", policy.Call, c, "CID-CallingPres", "0 (Presentation Allowed, Not Screened)")
	c.connName, c.connNum = name, num
	p.chanEvent("NewConnectedLine", policy.Call, c)
}

func (o *origin) answered(p *pbx, c1 *channel) {
	if o.done {
		return
	}
	o.done = true
	p.dialEnd(nil, c1, "ANSWER")
	if o.async {
		p.originateResponse(o, "Success", c1.name, 4, c1.uid)
	} else {
		o.result <- true
	}
	if o.app != "" {
		c1.app, c1.data = o.app, o.appData
		c1.lastApp, c1.lastData = o.app, o.appData
		p.runApp(c1, o.app, o.appData)
		return
	}
	c1.context, c1.exten, c1.prio = o.context, o.exten, o.prio
	p.startPBX(c1)
}

func (o *origin) ringing(*pbx, *channel) { o.rang = true }

func (o *origin) gone(p *pbx, c1 *channel) {
	if o.done {
		return
	}
	o.done = true
	p.dialEnd(nil, c1, "NOANSWER")
	p.originateFailed(o, 1) // AST_CONTROL_HANGUP
}

// originateFailed reports a failed Originate: the OriginateResponse event
// of an async one, the error reply of a sync one.
func (p *pbx) originateFailed(o *origin, reason int) {
	o.done = true
	if !o.async {
		o.result <- false
		return
	}
	p.originateResponse(o, "Failure", o.requested, reason, orUnknown(o.chanID))
}

// originateResponse emits the OriginateResponse event of fast_originate,
// broadcast to every session that reads class call.
func (p *pbx) originateResponse(o *origin, result, channel string, reason int, uid string) {
	e := p.cfg.newEvent("OriginateResponse", policy.Call)
	e.id(o.actionID)
	e.add("Response", result)
	e.add("Channel", channel)
	if o.app != "" {
		e.add("Application", o.app)
		e.add("Data", o.appData)
	} else {
		e.add("Context", o.context)
		e.add("Exten", o.exten)
	}
	e.addInt("Reason", reason)
	e.add("Uniqueid", uid)
	e.add("CallerIDNum", orUnknown(o.cidNum))
	e.add("CallerIDName", orUnknown(o.cidName))
	p.emit(e)
}

// actHangup is manager_hangup: one channel by name, or every channel
// matching /regex/ with a list reply.
func (c *session) actHangup(m rawman.Message) bool {
	id := m.ActionID()
	target := m.Get("Channel")
	if target == "" {
		return c.writeRaw(ack("Error", id, "No channel specified")) == nil
	}
	cause := 0
	if cs := m.Get("Cause"); cs != "" {
		n, err := strconv.Atoi(strings.TrimSpace(cs))
		if err != nil || n < 0 || n > 127 {
			return c.writeRaw(ack("Error", id, "Invalid cause code")) == nil
		}
		cause = n
	}
	p := c.srv.pbx
	if target[0] != '/' {
		p.lock()
		ch := p.findChannel(target)
		if ch != nil {
			p.softHangup(ch, cause)
		}
		p.unlock()
		if ch == nil {
			return c.writeRaw(ack("Error", id, "No such channel")) == nil
		}
		return c.writeRaw(ack("Success", id, "Channel Hungup")) == nil
	}
	if len(target) < 2 || target[len(target)-1] != '/' {
		return c.writeRaw(ack("Error", id, "Regex format invalid, Channel param should be /regex/")) == nil
	}
	pattern := target[1 : len(target)-1]
	re, err := regexp.Compile(pattern)
	if err != nil {
		return c.writeRaw(ack("Error", id, "Unable to compile regex: "+pattern)) == nil
	}
	f := listAck(id, "Channels hung up will follow")
	n := 0
	p.lock()
	for _, ch := range p.listOrder() {
		if !re.MatchString(ch.name) {
			continue
		}
		p.softHangup(ch, cause)
		f.add("Event", "ChannelHungup").add("Channel", ch.name).id(id).end()
		n++
	}
	p.unlock()
	f.listComplete("ChannelsHungupListComplete", id, n).end()
	return c.writeRaw(f.b) == nil
}

// hhmmss formats a duration like CoreShowChannel's Duration.
func hhmmss(d time.Duration) string {
	s := int(d / time.Second)
	return fmt.Sprintf("%02d:%02d:%02d", s/3600, s/60%60, s%60)
}

func (c *session) actCoreShowChannels(m rawman.Message) bool {
	id := m.ActionID()
	f := listAck(id, "Channels will follow")
	p := c.srv.pbx
	p.lock()
	chans := p.listOrder()
	for _, ch := range chans {
		f.add("Event", "CoreShowChannel").id(id)
		snap(f, ch, "")
		bridgeID := ""
		if ch.bridge != nil {
			bridgeID = ch.bridge.id
		}
		f.add("Application", ch.app).add("ApplicationData", ch.data).
			add("Duration", hhmmss(p.since(ch.created))).add("BridgeId", bridgeID).end()
	}
	p.unlock()
	f.listComplete("CoreShowChannelsComplete", id, len(chans)).end()
	return c.writeRaw(f.b) == nil
}

// actStatus is action_status: every channel, or one.
func (c *session) actStatus(m rawman.Message) bool {
	id := m.ActionID()
	name := m.Get("Channel")
	if vars := m.Get("Variables"); (strings.Contains(vars, "SHELL") || strings.Contains(vars, "EVAL")) && !c.canWriteSystem() {
		return c.writeRaw(ack("Error", id, "Status Access Forbidden: Variables")) == nil
	}
	p := c.srv.pbx
	p.lock()
	var chans []*channel
	if name != "" && !asciiEqualFold(name, "all") {
		ch := p.findChannel(name)
		if ch == nil {
			p.unlock()
			return c.writeRaw(ack("Error", id, "No such channel")) == nil
		}
		chans = []*channel{ch}
	} else {
		chans = p.listOrder()
	}
	f := listAck(id, "Channel status will follow")
	varNames := strings.Split(m.Get("Variables"), ",")
	for _, ch := range chans {
		f.add("Event", "Status").add("Privilege", "Call")
		snap(f, ch, "")
		bridgeID := ""
		if ch.bridge != nil {
			bridgeID = ch.bridge.id
		}
		f.add("Type", "Local").add("DNID", "").
			add("EffectiveConnectedLineNum", orUnknown(ch.connNum)).
			add("EffectiveConnectedLineName", orUnknown(ch.connName)).
			add("TimeToHangup", "0").add("BridgeID", bridgeID).
			add("Application", ch.app).add("Data", ch.data).
			add("Nativeformats", "(slin)").add("Readformat", "slin").add("Readtrans", "").
			add("Writeformat", "slin").add("Writetrans", "").
			add("Callgroup", "0").add("Pickupgroup", "0").
			addInt("Seconds", int(p.since(ch.created)/time.Second))
		for _, v := range varNames {
			if v = strings.TrimSpace(v); v != "" {
				val, _ := getKV(ch.vars, v)
				f.add("Variable", v+"="+val)
			}
		}
		f.id(id).end()
	}
	p.unlock()
	f.listComplete("StatusComplete", id, len(chans)).addInt("Items", len(chans)).end()
	return c.writeRaw(f.b) == nil
}

func (c *session) canWriteSystem() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.write&policy.System != 0
}

// actRedirect is action_redirect: one channel, or two at once with
// ExtraChannel (to ExtraContext/ExtraExten/ExtraPriority when ExtraContext
// is given, else to the same place as Channel), with Asterisk's checks in
// Asterisk's order and its replies ("Redirect successful", "Dual Redirect
// successful", "ExtraChannel does not exist: <name>").
func (c *session) actRedirect(m rawman.Message) bool {
	id := m.ActionID()
	name, context, exten, prio := m.Get("Channel"), m.Get("Context"), m.Get("Exten"), m.Get("Priority")
	name2, context2, exten2, prio2 := m.Get("ExtraChannel"), m.Get("ExtraContext"), m.Get("ExtraExten"), m.Get("ExtraPriority")
	switch {
	case name == "":
		return c.writeRaw(ack("Error", id, "Channel not specified")) == nil
	case context == "":
		return c.writeRaw(ack("Error", id, "Context not specified")) == nil
	case exten == "":
		return c.writeRaw(ack("Error", id, "Exten not specified")) == nil
	case prio == "":
		return c.writeRaw(ack("Error", id, "Priority not specified")) == nil
	}
	pi, ok := scanfInt(prio)
	if !ok || pi < 1 {
		return c.writeRaw(ack("Error", id, "Priority is invalid")) == nil
	}
	pi2 := 0
	if name2 != "" && context2 != "" {
		switch {
		case exten2 == "":
			return c.writeRaw(ack("Error", id, "ExtraExten not specified")) == nil
		case prio2 == "":
			return c.writeRaw(ack("Error", id, "ExtraPriority not specified")) == nil
		}
		if pi2, ok = scanfInt(prio2); !ok || pi2 < 1 {
			return c.writeRaw(ack("Error", id, "ExtraPriority is invalid")) == nil
		}
	}
	p := c.srv.pbx
	p.lock()
	defer p.unlock()
	ch := p.findChannel(name)
	if ch == nil {
		return c.writeRaw(ack("Error", id, "Channel does not exist: "+name)) == nil
	}
	if name2 == "" {
		p.redirect(ch, context, exten, pi)
		return c.writeRaw(ack("Success", id, "Redirect successful")) == nil
	}
	ch2 := p.findChannel(name2)
	if ch2 == nil {
		return c.writeRaw(ack("Error", id, "ExtraChannel does not exist: "+name2)) == nil
	}
	p.redirect(ch, context, exten, pi)
	if context2 != "" {
		p.redirect(ch2, context2, exten2, pi2)
	} else {
		p.redirect(ch2, context, exten, pi)
	}
	return c.writeRaw(ack("Success", id, "Dual Redirect successful")) == nil
}

// redirect is ast_async_goto: c leaves what it is doing and runs the
// dialplan from context,exten,prio.
func (p *pbx) redirect(c *channel, context, exten string, prio int) {
	c.tok++
	if b := c.bridge; b != nil {
		c.cancel = nil
		p.bridgeLeave(b, c)
	} else if f := c.cancel; f != nil {
		c.cancel = nil
		f()
	}
	c.context, c.exten, c.prio = context, exten, prio
	if !c.inPBX {
		c.inPBX = true
		p.processed++
	}
	tok := c.tok
	p.after(0, func() {
		if !c.dead && c.tok == tok {
			p.execStep(c)
		}
	})
}

// actGetvar is action_getvar.
func (c *session) actGetvar(m rawman.Message) bool {
	id := m.ActionID()
	name := m.Get("Variable")
	if name == "" {
		return c.writeRaw(ack("Error", id, "No variable specified")) == nil
	}
	if (strings.Contains(name, "SHELL") || strings.Contains(name, "EVAL")) && !c.canWriteSystem() {
		return c.writeRaw(ack("Error", id, "GetVar Access Forbidden: Variable")) == nil
	}
	p := c.srv.pbx
	p.lock()
	var value string
	chName := m.Get("Channel")
	if chName != "" {
		ch := p.findChannel(chName)
		if ch == nil {
			p.unlock()
			return c.writeRaw(ack("Error", id, "No such channel")) == nil
		}
		value = p.readVar(ch, name)
	} else {
		value = p.readVar(nil, name)
	}
	p.unlock()
	return c.writeRaw(response("Success", id).add("Variable", name).add("Value", value).end().b) == nil
}

// readVar reads a variable or one of the few functions pbxsim knows.
func (p *pbx) readVar(c *channel, name string) string {
	if c != nil {
		switch name {
		case "CALLERID(num)":
			return c.cidNum
		case "CALLERID(name)":
			return c.cidName
		case "CHANNEL(name)", "CHANNEL":
			return c.name
		case "UNIQUEID":
			return c.uid
		case "CONTEXT":
			return c.context
		case "EXTEN":
			return c.exten
		case "PRIORITY":
			return strconv.Itoa(c.prio)
		}
		if v, ok := getKV(c.vars, name); ok {
			return v
		}
	}
	v, _ := getKV(p.globals, name)
	return v
}

func (c *session) actSetvar(m rawman.Message) bool {
	id := m.ActionID()
	name := m.Get("Variable")
	if name == "" {
		return c.writeRaw(ack("Error", id, "No variable specified")) == nil
	}
	p := c.srv.pbx
	p.lock()
	var ch *channel
	if chName := m.Get("Channel"); chName != "" {
		ch = p.findChannel(chName)
		if ch == nil {
			p.unlock()
			return c.writeRaw(ack("Error", id, "No such channel")) == nil
		}
	}
	p.setVar(ch, name, m.Get("Value"))
	p.unlock()
	return c.writeRaw(ack("Success", id, "Variable Set")) == nil
}
