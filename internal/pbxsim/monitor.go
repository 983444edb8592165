package pbxsim

import (
	"strings"

	"github.com/amiproxy/amiproxy/policy"
	"github.com/amiproxy/amiproxy/rawman"
)

// monitorDir is ast_config_AST_MONITOR_DIR of the stock layout: where
// MixMonitor puts a recording whose file name is not absolute.
const monitorDir = "/var/spool/asterisk/monitor"

// actMixMonitor is app_mixmonitor's manager_mixmonitor of Asterisk 22:
// Channel, File, Options, Command. It records nothing; it sets
// MIXMONITOR_FILENAME on the channel, publishes MixMonitorStart and
// answers a bare "Response: Success" (no Message), as Asterisk does.
// Monitor and StopMonitor (res_monitor) are gone since Asterisk 21: the
// lab does not register them, so they get the unknown-command reply.
func (c *session) actMixMonitor(m rawman.Message) bool {
	id := m.ActionID()
	name := m.Get("Channel")
	if name == "" {
		return c.writeRaw(ack("Error", id, "No channel specified")) == nil
	}
	p := c.srv.pbx
	p.lock()
	ch := p.findChannel(name)
	if ch == nil {
		p.unlock()
		return c.writeRaw(ack("Error", id, "No such channel")) == nil
	}
	file := m.Get("File")
	// mixmonitor_exec refuses a call with neither a file nor an
	// r()/t() option naming one.
	opts := m.Get("Options")
	if file == "" && !strings.Contains(opts, "r(") && !strings.Contains(opts, "t(") {
		p.unlock()
		return c.writeRaw(ack("Error", id, "Could not start monitoring channel")) == nil
	}
	if file != "" && !strings.HasPrefix(file, "/") {
		file = monitorDir + "/" + file
	}
	if file != "" {
		p.setVar(ch, "MIXMONITOR_FILENAME", file)
	}
	ch.mixmon++
	p.chanEvent("MixMonitorStart", policy.Call, ch)
	p.unlock()
	return c.writeRaw(response("Success", id).end().b) == nil
}

// actStopMixMonitor is manager_stop_mixmonitor: it stops the channel's
// (first) MixMonitor, publishes MixMonitorStop and answers a bare
// "Response: Success"; without a MixMonitor on the channel it answers
// "Could not stop monitoring channel".
func (c *session) actStopMixMonitor(m rawman.Message) bool {
	id := m.ActionID()
	name := m.Get("Channel")
	if name == "" {
		return c.writeRaw(ack("Error", id, "No channel specified")) == nil
	}
	p := c.srv.pbx
	p.lock()
	ch := p.findChannel(name)
	if ch == nil {
		p.unlock()
		return c.writeRaw(ack("Error", id, "No such channel")) == nil
	}
	if ch.mixmon == 0 {
		p.unlock()
		return c.writeRaw(ack("Error", id, "Could not stop monitoring channel")) == nil
	}
	ch.mixmon--
	p.chanEvent("MixMonitorStop", policy.Call, ch)
	p.unlock()
	return c.writeRaw(response("Success", id).end().b) == nil
}
