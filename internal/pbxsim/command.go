package pbxsim

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/amiproxy/amiproxy/rawman"
)

func itoa(n int) string { return strconv.Itoa(n) }

// actCommand is action_command. Output is in the Asterisk >= 14 format
// (one Output header per line) unless LegacyCommandOutput is set.
func (c *session) actCommand(m rawman.Message) bool {
	id := m.ActionID()
	cmd := m.Get("Command")
	if cmd == "" {
		return c.writeRaw(ack("Error", id, "No command provided")) == nil
	}
	words := strings.Fields(cmd)
	if len(words) >= 2 {
		first2 := asciiLower(words[0] + " " + words[1])
		if first2 == "module load" || first2 == "module unload" || first2 == "restart gracefully" {
			return c.writeRaw(ack("Error", id, "Command blacklisted")) == nil
		}
	}
	out, ok := c.cli(words)
	if c.srv.cfg.LegacyCommandOutput {
		f := &frame{}
		f.add("Response", "Follows").add("Privilege", "Command").id(id)
		f.b = append(f.b, out...)
		f.b = append(f.b, "--END COMMAND--\r\n\r\n"...)
		return c.writeRaw(f.b) == nil
	}
	result := "Success"
	if !ok {
		result = "Error"
	}
	f := response(result, id).add("Message", "Command output follows")
	out = strings.TrimSuffix(out, "\n")
	for line := range strings.SplitSeq(out, "\n") {
		f.add("Output", line)
	}
	return c.writeRaw(f.end().b) == nil
}

// cli runs a CLI command and returns its output and whether it succeeded.
func (c *session) cli(words []string) (string, bool) {
	lw := make([]string, len(words))
	for i, w := range words {
		lw[i] = asciiLower(w)
	}
	is := func(prefix ...string) bool {
		if len(lw) < len(prefix) {
			return false
		}
		for i, w := range prefix {
			if lw[i] != w {
				return false
			}
		}
		return true
	}
	p := c.srv.pbx
	switch {
	case is("core", "show", "version") && len(lw) == 3:
		return "Asterisk " + c.srv.cfg.AsteriskVersion + " built by root @ vm on a x86_64 running Linux on 2026-11-22 16:10:27 UTC\n", true
	case is("core", "show", "uptime") && len(lw) <= 4:
		up := c.srv.uptime()
		if len(lw) == 4 && lw[3] == "seconds" {
			return fmt.Sprintf("System uptime: %d\nLast reload: %d\n", int(up/time.Second), int(up/time.Second)), true
		}
		return "System uptime: " + humanDuration(up) + "\nLast reload: " + humanDuration(up) + "\n", true
	case is("core", "show", "channels") && len(lw) <= 4:
		p.lock()
		defer p.unlock()
		return p.showChannels(lw[3:]), true
	case is("manager", "show", "users") && len(lw) == 3:
		var b strings.Builder
		b.WriteString("\nusername\n--------\n")
		for _, u := range c.srv.cfg.users {
			b.WriteString(u.name + "\n")
		}
		fmt.Fprintf(&b, "-------------------\n%d manager users configured.\n", len(c.srv.cfg.users))
		return b.String(), true
	case is("manager", "show", "connected") && len(lw) == 3:
		return c.srv.showConnected(), true
	case is("dialplan", "show") && len(lw) <= 3:
		arg := ""
		if len(words) == 3 {
			arg = words[2]
		}
		return dialplanShow(arg)
	case is("channel", "request", "hangup") && len(lw) == 4:
		p.lock()
		defer p.unlock()
		if lw[3] == "all" {
			for _, ch := range p.listOrder() {
				p.softHangup(ch, 0)
			}
			return "", true
		}
		ch := p.findChannel(words[3])
		if ch == nil {
			return words[3] + " is not a known channel\n", false
		}
		p.softHangup(ch, 0)
		return "Requested Hangup on channel '" + ch.name + "'\n", true
	case is("database", "show") && len(lw) <= 4:
		prefix := "/"
		if len(words) >= 3 {
			prefix = "/" + words[2]
			if len(words) == 4 {
				prefix += "/" + words[3]
			}
		}
		p.lock()
		defer p.unlock()
		return p.dbShow(prefix), true
	case is("queue", "show") && len(lw) <= 3:
		if len(lw) == 3 && words[2] != "labq" {
			return "No such queue: " + words[2] + ".\n", false
		}
		p.lock()
		defer p.unlock()
		return p.queueShow(), true
	}
	joined := strings.Join(words, " ")
	return "No such command '" + joined + "' (type 'core show help " + findBest(lw) + "' for other possible commands)\n", false
}

func humanDuration(d time.Duration) string {
	s := int(d / time.Second)
	var parts []string
	add := func(n int, unit string) {
		if n == 1 {
			parts = append(parts, "1 "+unit)
		} else if n > 1 {
			parts = append(parts, fmt.Sprintf("%d %ss", n, unit))
		}
	}
	add(s/86400, "day")
	add(s/3600%24, "hour")
	add(s/60%60, "minute")
	if s%60 > 0 || len(parts) == 0 {
		parts = append(parts, fmt.Sprintf("%d second", s%60))
		if s%60 != 1 {
			parts[len(parts)-1] += "s"
		}
	}
	return strings.Join(parts, ", ")
}

// showChannels is "core show channels [concise|verbose|count]" (the
// default layout only; concise and count are supported too).
func (p *pbx) showChannels(opts []string) string {
	var b strings.Builder
	chans := p.listOrder()
	mode := ""
	if len(opts) > 0 {
		mode = opts[0]
	}
	switch mode {
	case "concise":
		for _, ch := range chans {
			fmt.Fprintf(&b, "%s!%s!%s!%d!%s!%s!%s!%s!%s!%s!%d!%s!%s!%s\n", ch.name, ch.context, ch.exten, ch.prio,
				stateDesc(ch.state), ch.app, ch.data, ch.cidNum, ch.acct, "", 3, itoa(int(p.since(ch.created)/time.Second)), "(None)", ch.uid)
		}
		return b.String()
	case "", "count":
	default:
		return ""
	}
	if mode == "" {
		fmt.Fprintf(&b, "%-64.64s %-32.32s %-7.7s %-30.30s\n", "Channel", "Location", "State", "Application(Data)")
		for _, ch := range chans {
			loc := fmt.Sprintf("%s@%s:%d", ch.exten, ch.context, ch.prio)
			appdata := ch.app + "(" + ch.data + ")"
			fmt.Fprintf(&b, "%-64.64s %-32.32s %-7.7s %-30.30s\n", ch.name, loc, stateDesc(ch.state), appdata)
		}
	}
	plural := func(n int, word string) string {
		if n == 1 {
			return fmt.Sprintf("%d %s", n, word)
		}
		return fmt.Sprintf("%d %ss", n, word)
	}
	calls := 0
	for _, ch := range chans {
		if ch.half != 2 {
			calls++
		}
	}
	fmt.Fprintf(&b, "%s\n%s\n%s processed\n", plural(len(chans), "active channel"), plural(calls, "active call"), plural(p.processed, "call"))
	return b.String()
}

// showConnected is "manager show connected" (handle_showmanconn).
func (s *Server) showConnected() string {
	var b strings.Builder
	const f1 = "  %-15.15s  %-55.55s  %-10.10s  %-10.10s  %-8.8s  %-8.8s  %-10.10s  %-10.10s\n"
	const f2 = "  %-15.15s  %-55.55s  %-10d  %-10d  %-8d  %-8d  %-10d  %-10d\n"
	fmt.Fprintf(&b, f1, "Username", "IP Address", "Start", "Elapsed", "FileDes", "HttpCnt", "ReadPerms", "WritePerms")
	now := s.cfg.Now().Unix()
	sessions := s.snapshotSessions()
	for _, c := range sessions {
		c.mu.Lock()
		user, start, read, write := "", int64(0), uint32(c.read), uint32(c.write)
		if c.acct != nil {
			user, start = c.user, c.loginTime.Unix()
		}
		c.mu.Unlock()
		fmt.Fprintf(&b, f2, user, c.remoteIP, start, now-start, 10+int(c.id), 0, read, write)
	}
	fmt.Fprintf(&b, "%d users connected.\n", len(sessions))
	return b.String()
}

// dialplanShow is "dialplan show [[exten@]context]" for the lab context.
func dialplanShow(arg string) (string, bool) {
	exten, context := "", ""
	if arg != "" {
		if e, ctx, ok := strings.Cut(arg, "@"); ok {
			exten, context = e, ctx
		} else {
			context = arg
		}
	}
	if context != "" && context != "lab" {
		return "There is no existence of '" + context + "' context\n", false
	}
	var exts []extension
	for _, e := range labContext {
		if exten == "" || e.exten == exten {
			exts = append(exts, e)
		}
	}
	if exten != "" && len(exts) == 0 {
		if context != "" {
			return "There is no existence of " + exten + "@" + context + " extension\n", false
		}
		return "There is no existence of '" + exten + "' extension in all contexts\n", false
	}
	var b strings.Builder
	b.WriteString("[ Context 'lab' created by 'pbx_config' ]\n")
	prios := 0
	for _, e := range exts {
		for i, st := range e.steps {
			left := ""
			if i == 0 {
				left = "'" + e.exten + "' =>"
			}
			fmt.Fprintf(&b, "  %-17s %-45s [%s]\n", left, fmt.Sprintf("%d. %s(%s)", i+1, st.app, st.data),
				fmt.Sprintf("extensions.conf:%d", st.line))
			prios++
		}
	}
	b.WriteString("\n")
	word := func(n int, one, many string) string {
		if n == 1 {
			return one
		}
		return many
	}
	fmt.Fprintf(&b, "-= %d %s (%d %s) in 1 context. =-\n", len(exts), word(len(exts), "extension", "extensions"),
		prios, word(prios, "priority", "priorities"))
	return b.String(), true
}

// cliCommands are the lab's CLI commands, word by word, for find_best.
// "%s" matches any word. The list is a sample of Asterisk 22's commands,
// enough to reproduce the hint of an unknown command.
var cliCommands = [][]string{
	{"!"},
	{"core", "show", "version"}, {"core", "show", "uptime"}, {"core", "show", "channels"}, {"core", "show", "channel", "%s"},
	{"core", "show", "calls"}, {"core", "show", "help"}, {"core", "show", "settings"}, {"core", "show", "sysinfo"},
	{"core", "show", "threads"}, {"core", "show", "hints"}, {"core", "show", "applications"}, {"core", "show", "functions"},
	{"core", "show", "application", "%s"}, {"core", "show", "function", "%s"}, {"core", "show", "codecs"},
	{"core", "show", "taskprocessors"}, {"core", "show", "file", "formats"}, {"core", "set", "verbose", "%s"},
	{"core", "set", "debug", "%s"}, {"core", "stop", "now"}, {"core", "stop", "gracefully"}, {"core", "restart", "now"},
	{"core", "restart", "gracefully"}, {"core", "abort", "shutdown"}, {"core", "reload"}, {"core", "waitfullybooted"},
	{"manager", "show", "commands"}, {"manager", "show", "command", "%s"}, {"manager", "show", "connected"},
	{"manager", "show", "eventq"}, {"manager", "show", "users"}, {"manager", "show", "user", "%s"},
	{"manager", "show", "settings"}, {"manager", "set", "debug"}, {"manager", "reload"},
	{"dialplan", "show", "%s"}, {"dialplan", "reload"}, {"dialplan", "save"}, {"dialplan", "show", "globals"},
	{"dialplan", "show", "chanvar", "%s"}, {"dialplan", "set", "global", "%s", "%s"},
	{"dialplan", "add", "extension", "%s", "into", "%s"}, {"dialplan", "remove", "extension", "%s"},
	{"channel", "request", "hangup", "%s"}, {"channel", "originate", "%s", "application", "%s"},
	{"channel", "redirect", "%s", "%s"},
	{"module", "show"}, {"module", "load", "%s"}, {"module", "unload", "%s"}, {"module", "reload"}, {"module", "refresh", "%s"},
	{"database", "show"}, {"database", "put", "%s", "%s", "%s"}, {"database", "get", "%s", "%s"},
	{"database", "del", "%s", "%s"}, {"database", "deltree", "%s"}, {"database", "showkey", "%s"}, {"database", "query", "%s"},
	{"queue", "show"}, {"queue", "reload", "all"}, {"queue", "add", "member", "%s", "to", "%s"},
	{"queue", "remove", "member", "%s", "from", "%s"},
	{"cdr", "show", "status"}, {"cdr", "submit"}, {"logger", "show", "channels"}, {"logger", "reload"}, {"logger", "rotate"},
	{"local", "show", "channels"}, {"bridge", "show", "all"}, {"bridge", "show", "%s"}, {"bridge", "kick", "%s", "%s"},
	{"bridge", "destroy", "%s"}, {"bridge", "technology", "show"}, {"http", "show", "status"}, {"agi", "show", "commands"},
	{"features", "show"}, {"parking", "show"},
}

// findBest is cli.c's find_best: the words of cmd up to and including the
// first one find_cli(…, -1) cannot place.
func findBest(words []string) string {
	for x := range words {
		if !findCLIPartial(words[:x+1]) {
			return strings.Join(words[:x+1], " ")
		}
	}
	return strings.Join(words, " ")
}

// findCLIPartial is find_cli with match_type -1: an entry of the same
// length whose words all match, or all but the last.
func findCLIPartial(cmd []string) bool {
	for _, e := range cliCommands {
		if len(e) != len(cmd) {
			continue
		}
		ok := true
		for i := 0; i < len(e)-1; i++ {
			if e[i] != "%s" && e[i] != cmd[i] {
				ok = false
				break
			}
		}
		if ok {
			return true
		}
	}
	return false
}
