package pbxsim

import (
	"crypto/md5"
	"encoding/hex"
	"errors"
	"math/rand/v2"
	"strconv"
	"strings"
	"time"

	"github.com/amiproxy/amiproxy/policy"
	"github.com/amiproxy/amiproxy/rawman"
)

// handler runs one action and writes its reply. false ends the session.
type handler func(c *session, m rawman.Message) bool

// handlers are the actions pbxsim simulates, by lowercase name. Every other
// action the lab registers passes the permission check and then gets the
// unknown-command reply.
var handlers = map[string]handler{
	"login":            (*session).actLogin,
	"logoff":           (*session).actLogoff,
	"challenge":        (*session).actChallenge,
	"ping":             (*session).actPing,
	"events":           (*session).actEvents,
	"waitevent":        (*session).actWaitEvent,
	"listcommands":     (*session).actListCommands,
	"coresettings":     (*session).actCoreSettings,
	"corestatus":       (*session).actCoreStatus,
	"filter":           (*session).actFilter,
	"userevent":        (*session).actUserEvent,
	"command":          (*session).actCommand,
	"dbput":            (*session).actDBPut,
	"dbget":            (*session).actDBGet,
	"dbdel":            (*session).actDBDel,
	"dbdeltree":        (*session).actDBDelTree,
	"dbgettree":        (*session).actDBGetTree,
	"originate":        (*session).actOriginate,
	"hangup":           (*session).actHangup,
	"coreshowchannels": (*session).actCoreShowChannels,
	"status":           (*session).actStatus,
	"redirect":         (*session).actRedirect,
	"getvar":           (*session).actGetvar,
	"setvar":           (*session).actSetvar,
	"queuestatus":      (*session).actQueueStatus,
	"queuesummary":     (*session).actQueueSummary,
	"absolutetimeout":  (*session).actAbsoluteTimeout,
	"mixmonitor":       (*session).actMixMonitor,
	"stopmixmonitor":   (*session).actStopMixMonitor,
}

// labIndex maps lowercase action names to labActions.
var labIndex = func() map[string]int {
	m := make(map[string]int, len(labActions))
	for i, a := range labActions {
		m[asciiLower(a.name)] = i
	}
	return m
}()

// actionClass returns the write class of a registered action.
func actionClass(name string) policy.Class {
	info, _ := policy.LookupAction(name)
	return info.Class
}

// dispatch is Asterisk's process_message.
func (c *session) dispatch(m rawman.Message) bool {
	action := m.Action()
	id := m.ActionID()
	if h := c.srv.cfg.OnAction; h != nil {
		h(c.username(), action)
	}
	if action == "" {
		c.reportSecurity("RequestBadFormat", "Error", 1, c.username(), "RequestType", "Action: NONE")
		return c.writeRaw(ack("Error", id, "Missing action in request")) == nil
	}
	lower := asciiLower(action)
	if !c.isAuthed() && lower != "login" && lower != "logoff" && lower != "challenge" {
		c.reportSecurity("RequestNotAllowed", "Error", 1, "", "RequestType", "Action: "+action)
		return c.writeRaw(ack("Error", id, "Permission denied")) == nil
	}
	i, registered := labIndex[lower]
	if !registered {
		return c.unknown(m, action)
	}
	c.mu.Lock()
	write := c.write
	c.mu.Unlock()
	if !write.CanWrite(actionClass(labActions[i].name)) {
		c.reportSecurity("RequestNotAllowed", "Error", 1, c.username(), "RequestType", "Action: "+action)
		return c.writeRaw(ack("Error", id, "Permission denied")) == nil
	}
	h := handlers[lower]
	if h == nil {
		// Registered in the lab but not simulated.
		c.srv.log.Debug("pbxsim: action not simulated", "action", action)
		return c.unknown(m, action)
	}
	return h(c, m)
}

func (c *session) unknown(m rawman.Message, action string) bool {
	c.reportSecurity("RequestBadFormat", "Error", 1, c.username(), "RequestType", "Action: "+action)
	return c.writeRaw(ack("Error", m.ActionID(),
		"Invalid/unknown command: "+action+". Use Action: ListCommands to show available commands.")) == nil
}

func (c *session) username() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.user
}

// reportSecurity broadcasts one of the security events of manager.c's
// report_* functions: common fields, the event's own fields (kv pairs),
// then SessionTV.
func (c *session) reportSecurity(name, severity string, version int, account string, kv ...string) {
	now := c.srv.cfg.Now()
	e := c.srv.cfg.newEvent(name, policy.Security)
	e.add("EventTV", securityTV(now))
	e.add("Severity", severity)
	e.add("Service", "AMI")
	e.addInt("EventVersion", version)
	e.add("AccountID", account)
	e.add("SessionID", c.sessionID)
	e.add("LocalAddress", c.local)
	e.add("RemoteAddress", c.remote)
	for i := 0; i+1 < len(kv); i += 2 {
		e.add(kv[i], kv[i+1])
	}
	c.mu.Lock()
	start := c.loginTime
	c.mu.Unlock()
	if start.IsZero() {
		start = time.Unix(0, 0).In(now.Location())
	}
	e.add("SessionTV", securityTV(start))
	c.srv.broadcast(e.done())
}

// actLogin is action_login and authenticate.
func (c *session) actLogin(m rawman.Message) bool {
	id := m.ActionID()
	if c.isAuthed() {
		return c.writeRaw(ack("Success", id, "Already authenticated")) == nil
	}
	acct := c.authenticate(m)
	if acct == nil {
		if d := c.srv.cfg.LoginFailDelay; d > 0 {
			if c.sleep(d) != nil {
				return false
			}
		}
		_ = c.writeRaw(ack("Error", id, "Authentication failed"))
		return false
	}
	c.mu.Lock()
	c.authed = true
	c.acct = acct
	c.user = m.Get("Username")
	if len(c.user) > 79 { // char username[80]
		c.user = c.user[:79]
	}
	user := c.user
	c.read, c.write = acct.read, acct.write
	c.loginTime = c.srv.cfg.Now()
	if mask, ok := policy.ParseEventMask(m.Get("Events")); ok {
		c.send = mask // else unchanged: every bit, for a TCP session
	}
	send := c.send
	c.mu.Unlock()
	c.srv.loggedIn()
	c.filters = acct.filters
	c.srv.log.Debug("pbxsim: login", "session", c.id, "user", acct.name)
	c.reportSecurity("SuccessfulAuth", "Informational", 1, user, "UsingPassword", "0")
	resp := ack("Success", id, "Authentication accepted")
	// Asterisk 22.10: FullyBooted when both the send mask and the read mask
	// hold system; written straight to the session, never filtered.
	if send&policy.System != 0 && acct.read&policy.System != 0 {
		up := int(c.srv.uptime() / time.Second)
		f := frame{b: resp}
		f.add("Event", "FullyBooted").add("Privilege", policy.System.String()).
			addInt("Uptime", up).addInt("LastReload", up).add("Status", "Fully Booted").end()
		resp = f.b
	}
	return c.writeRaw(resp) == nil
}

// authenticate checks a Login like Asterisk's authenticate and raises the
// security event of a failure. It returns nil on failure.
func (c *session) authenticate(m rawman.Message) *account {
	username := m.Get("Username")
	if username == "" {
		return nil
	}
	acct := c.srv.cfg.lookupUser(username)
	if acct == nil {
		c.reportSecurity("InvalidAccountID", "Error", 1, username)
		return nil
	}
	if asciiEqualFold(m.Get("AuthType"), "MD5") {
		key := m.Get("Key")
		if key == "" || c.challenge == "" || acct.secret == "" {
			return nil
		}
		sum := md5.Sum([]byte(c.challenge + acct.secret))
		expected := hex.EncodeToString(sum[:])
		if key == expected {
			return acct
		}
		// Asterisk takes the AccountID from the session, which has no
		// user yet.
		c.reportSecurity("ChallengeResponseFailed", "Error", 1, "",
			"Challenge", c.challenge, "Response", key, "ExpectedResponse", expected)
		return nil
	}
	if acct.secret == "" {
		return nil // no secret= line: never over TCP
	}
	if m.Get("Secret") == acct.secret {
		return acct
	}
	c.reportSecurity("InvalidPassword", "Error", 2, username)
	return nil
}

func (c *session) actLogoff(m rawman.Message) bool {
	_ = c.writeRaw(response("Goodbye", m.ActionID()).add("Message", "Thanks for all the fish.").end().b)
	return false
}

// actChallenge is action_challenge: one challenge per session, reused.
func (c *session) actChallenge(m rawman.Message) bool {
	if !asciiEqualFold(m.Get("AuthType"), "MD5") {
		return c.writeRaw(ack("Error", m.ActionID(), "Must specify AuthType")) == nil
	}
	if c.challenge == "" {
		ch := strconv.FormatInt(rand.Int64N(1<<31), 10) // ast_random()
		if len(ch) > 9 {
			ch = ch[:9] // char challenge[10]
		}
		c.challenge = ch
	}
	return c.writeRaw(response("Success", m.ActionID()).add("Challenge", c.challenge).end().b) == nil
}

func (c *session) actPing(m rawman.Message) bool {
	f := response("Success", m.ActionID()).add("Ping", "Pong").add("Timestamp", epochMicro(c.srv.cfg.Now())).end()
	return c.writeRaw(f.b) == nil
}

// actEvents is action_events of Asterisk 22.10 (brokeneventsaction=no).
func (c *session) actEvents(m rawman.Message) bool {
	mask, ok := policy.ParseEventMask(m.Get("EventMask"))
	if !ok {
		return c.writeRaw(ack("Error", m.ActionID(), "Invalid event mask")) == nil
	}
	c.mu.Lock()
	c.send = mask
	c.mu.Unlock()
	state := "On"
	if mask == 0 {
		state = "Off"
	}
	return c.writeRaw(response("Success", m.ActionID()).add("Events", state).end().b) == nil
}

// actWaitEvent is action_waitevent for a TCP session: it waits until any
// event is broadcast, the client sends something, or Timeout seconds
// (scaled by TimeScale) pass, then answers with the pending events and
// WaitEventComplete. Asterisk polls once a second; pbxsim wakes at once.
func (c *session) actWaitEvent(m rawman.Message) bool {
	timeout := -1
	if v := m.Get("Timeout"); v != "" {
		if n, ok := scanfInt(v); ok {
			timeout = max(n, -1)
		}
	}
	var timer <-chan time.Time
	if timeout > 0 {
		t := time.NewTimer(c.srv.cfg.scale(time.Duration(timeout) * time.Second))
		defer t.Stop()
		timer = t.C
	}
wait:
	for timeout != 0 && !c.hasUnseen() {
		in := c.in
		stalled, stallCh := c.srv.stallState()
		if stalled {
			in = nil
		}
		select {
		case <-c.notify:
		case <-stallCh:
		case it := <-in:
			c.pending = &it
			break wait
		case <-timer:
			break wait
		case <-c.done:
			return false
		}
	}
	f := frame{b: ack("Success", m.ActionID(), "Waiting for Event completed.")}
	f.b = c.drain(f.b)
	f.add("Event", "WaitEventComplete").id(m.ActionID()).end()
	return c.writeRaw(f.b) == nil
}

// scanfInt is sscanf("%30i"): optional sign, then decimal, 0x hex or 0
// octal digits, stopping at the first other byte.
func scanfInt(s string) (int, bool) {
	s = strings.TrimLeft(s, " \t\r\n\v\f")
	neg := false
	if s != "" && (s[0] == '+' || s[0] == '-') {
		neg = s[0] == '-'
		s = s[1:]
	}
	base := 10
	switch {
	case len(s) > 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X') && isDigit(s[2], 16):
		base, s = 16, s[2:]
	case len(s) > 1 && s[0] == '0':
		base = 8
	}
	n, any := 0, false
	for i := 0; i < len(s) && isDigit(s[i], base); i++ {
		n = n*base + digitVal(s[i])
		any = true
		if n > 1<<31 {
			n = 1 << 31
		}
	}
	if !any {
		return 0, false
	}
	if neg {
		n = -n
	}
	return n, true
}

func isDigit(b byte, base int) bool {
	switch {
	case b >= '0' && b <= '9':
		return int(b-'0') < base
	case base == 16 && (b >= 'a' && b <= 'f' || b >= 'A' && b <= 'F'):
		return true
	}
	return false
}

func digitVal(b byte) int {
	switch {
	case b >= '0' && b <= '9':
		return int(b - '0')
	case b >= 'a' && b <= 'f':
		return int(b-'a') + 10
	}
	return int(b-'A') + 10
}

// actListCommands lists the lab actions the session may run.
func (c *session) actListCommands(m rawman.Message) bool {
	c.mu.Lock()
	write := c.write
	c.mu.Unlock()
	f := response("Success", m.ActionID())
	for _, a := range labActions {
		class := actionClass(a.name)
		if !write.CanWrite(class) {
			continue
		}
		f.raw(a.name + ": " + a.synopsis + "  (Priv: " + class.String() + ")")
	}
	return c.writeRaw(f.end().b) == nil
}

func (c *session) actCoreSettings(m rawman.Message) bool {
	f := response("Success", m.ActionID()).
		add("AMIversion", c.srv.cfg.Banner).
		add("AsteriskVersion", c.srv.cfg.AsteriskVersion).
		add("SystemName", c.srv.cfg.SystemName).
		add("CoreMaxCalls", "0").
		add("CoreMaxLoadAvg", "0.000000").
		add("CoreRunUser", "").
		add("CoreRunGroup", "").
		add("CoreMaxFilehandles", "0").
		add("CoreRealTimeEnabled", "No").
		add("CoreCDRenabled", "Yes").
		add("CoreHTTPenabled", "Yes").
		add("SoundsSearchCustomDir", "No").
		end()
	return c.writeRaw(f.b) == nil
}

func (c *session) actCoreStatus(m rawman.Message) bool {
	start := c.srv.pbx.bootTime()
	current, processed := c.srv.pbx.callCounts()
	f := response("Success", m.ActionID()).
		add("CoreStartupDate", start.Format("2006-01-02")).
		add("CoreStartupTime", start.Format("15:04:05")).
		add("CoreReloadDate", start.Format("2006-01-02")).
		add("CoreReloadTime", start.Format("15:04:05")).
		addInt("CoreCurrentCalls", current).
		addInt("CoreProcessedCalls", processed).
		end()
	return c.writeRaw(f.b) == nil
}

// actFilter is action_filter of Asterisk 22.1 and later.
func (c *session) actFilter(m rawman.Message) bool {
	id := m.ActionID()
	if !asciiEqualFold(m.Get("Operation"), "Add") {
		return c.writeRaw(ack("Error", id, "Unknown operation")) == nil
	}
	f, err := policy.ParseFilterAction(m.Get("Filter"), m.Get("MatchCriteria"))
	switch {
	case err == nil:
		c.filters = c.filters.With(f)
		return c.writeRaw(ack("Success", id, "Success")) == nil
	case errors.Is(err, policy.ErrFilterCompile):
		return c.writeRaw(ack("Error", id, "Filter did not compile.  Check the syntax of the filter given.")) == nil
	case errors.Is(err, policy.ErrFilterFormat):
		return c.writeRaw(ack("Error", id, "Filter was formatted incorrectly.  Check the syntax of the filter given.")) == nil
	}
	// A regex Asterisk accepts but Go cannot match the same way.
	c.srv.log.Warn("pbxsim: Filter cannot be simulated", "err", err)
	return c.writeRaw(ack("Error", id, "Internal Error. Failed adding filter.")) == nil
}

// actUserEvent is action_userevent: every request line but Action: and
// UserEvent: goes into the event. pbxsim rebuilds the lines as
// "Key: Value" (Asterisk copies the raw bytes).
func (c *session) actUserEvent(m rawman.Message) bool {
	e := c.srv.cfg.newEvent("UserEvent", policy.User)
	e.add("UserEvent", m.Get("UserEvent"))
	for _, h := range m.All() {
		if h.Bare() {
			e.raw(h.Value)
			continue
		}
		if asciiEqualFold(h.Key, "UserEvent") || asciiEqualFold(h.Key, "Action") {
			continue
		}
		e.add(h.Key, h.Value)
	}
	ok := c.writeRaw(ack("Success", m.ActionID(), "Event Sent")) == nil
	c.srv.broadcast(e.done())
	return ok
}

func (c *session) actAbsoluteTimeout(m rawman.Message) bool {
	id := m.ActionID()
	name := m.Get("Channel")
	if name == "" {
		return c.writeRaw(ack("Error", id, "No channel specified")) == nil
	}
	secs, _ := strconv.Atoi(m.Get("Timeout"))
	if !c.srv.pbx.absoluteTimeout(name, secs) {
		return c.writeRaw(ack("Error", id, "No such channel")) == nil
	}
	return c.writeRaw(ack("Success", id, "Timeout Set")) == nil
}
