package policy

import (
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestParsePerm(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want Class
	}{
		// Every row of ami-spec.md §4.2.
		{"normal", "system,call", System | Call},
		{"blank before last token", "system, call", System},
		{"prefix of non-last token", "sys,call", System | Call},
		{"last token must be exact", "call,sys", Call},
		{"prefix matches several", "c,log", Call | Command | ConfigClass | CDR | CC | Log},
		{"empty middle token", "system,,call", All},
		{"empty first token", ",call", All},
		{"case-sensitive", "System,call", Call},
		{"numbers are not masks", "7", 0},
		{"all", "all", All},
		{"none", "none", 0},
		// More of ast_instring.
		{"empty", "", 0},
		{"single", "call", Call},
		{"trailing comma ends the scan", "call,", Call},
		{"prefix before trailing comma", "co,", Command | ConfigClass},
		{"comma only", ",", All},
		{"prefix a matches all", "a,call", All},
		{"prefix al matches all only", "al,x", All},
		{"non-prefix token", "calls,x", 0},
		{"every class by name", "system,call,log,verbose,command,agent,user,config,dtmf,reporting,cdr,dialplan,originate,agi,cc,aoc,test,security,message", All &^ HookResponse &^ 0x3ff80000}, // no name for bit 14 and bits 19-29,
		{"all and none", "none,all", All},
		{"hookresponse has no name", "hookresponse", 0},
		{"NUL ends the value", "call\x00,system", Call},
		{"dtmf exact", "dtmf", DTMF},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ParsePerm(tt.in); got != tt.want {
				t.Errorf("ParsePerm(%q) = %#x (%v), want %#x (%v)", tt.in, uint32(got), got, uint32(tt.want), tt.want)
			}
		})
	}
}

func TestParseEventMask(t *testing.T) {
	tests := []struct {
		name   string
		in     string
		want   Class
		wantOK bool
	}{
		// Every rule of ami-spec.md §4.3.
		{"empty is invalid", "", 0, false},
		{"digits: 1 is system, not on", "1", System, true},
		{"digits: 0", "0", 0, true},
		{"digits: 7", "7", System | Call | Log, true},
		{"digits: leading zeros", "0064", User, true},
		{"digits: INT_MAX", "2147483647", All, true},
		{"digits: INT_MAX+1 is negative", "2147483648", 0, false},
		{"digits: 2^32-1 is -1", "4294967295", 0, false},
		{"digits: 2^32 truncates to 0", "4294967296", 0, true},
		{"digits: 2^32+2 truncates to call", "4294967298", Call, true},
		{"digits: saturate at LONG_MAX, then -1", "99999999999999999999", 0, false},
		{"digits: LONG_MAX", "9223372036854775807", 0, false},
		{"false: no", "no", 0, true},
		{"false: false", "false", 0, true},
		{"false: n", "n", 0, true},
		{"false: f", "f", 0, true},
		{"false: off", "off", 0, true},
		{"false: OFF", "OFF", 0, true},
		{"false: Off", "Off", 0, true},
		{"true: yes", "yes", All, true},
		{"true: true", "true", All, true},
		{"true: y", "y", All, true},
		{"true: t", "t", All, true},
		{"true: on", "on", All, true},
		{"true: ON", "ON", All, true},
		{"true: Yes", "Yes", All, true},
		{"perm list", "system,call", System | Call, true},
		{"perm: user", "user", User, true},
		{"perm quirks: trailing blank", "on ", 0, true},
		{"perm quirks: case", "System", 0, true},
		{"perm quirks: prefix", "sys,call", System | Call, true},
		{"perm quirks: empty token", ",call", All, true},
		{"minus is not a digit", "-1", 0, true},
		{"unicode folding is not ASCII folding", "yeſ", 0, true},
		{"NUL ends the value", "\x00on", 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := ParseEventMask(tt.in)
			if got != tt.want || ok != tt.wantOK {
				t.Errorf("ParseEventMask(%q) = %v, %v, want %v, %v", tt.in, got, ok, tt.want, tt.wantOK)
			}
		})
	}
}

func TestClassString(t *testing.T) {
	tests := []struct {
		name string
		in   Class
		want string
	}{
		{"none", 0, "<none>"},
		{"call", Call, "call,all"},
		{"system", System, "system,all"},
		{"VoicemailPasswordChange", System | User, "system,user,all"},
		{"security", Security, "security,all"},
		{"dialplan", Dialplan, "dialplan,all"},
		{"cdr", CDR, "cdr,all"},
		{"reporting", Reporting, "reporting,all"},
		{"table order", Message | System | DTMF, "system,dtmf,message,all"},
		{"hookresponse has no name", HookResponse, "all"},
		{"unnamed bit 20", 1 << 20, "all"},
		{"all", All, "system,call,log,verbose,command,agent,user,config,dtmf,reporting,cdr,dialplan,originate,agi,cc,aoc,test,security,message,all"},
		{"bit 31 alone overlaps nothing", 1 << 31, "<none>"},
		{"shutdown class", 0xffffffff, "<none>"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.in.String(); got != tt.want {
				t.Errorf("Class(%#x).String() = %q, want %q", uint32(tt.in), got, tt.want)
			}
		})
	}
}

// TestPrivilegeInTranscripts checks String and ParsePrivilege against every
// Privilege header Asterisk 22.10.1 sent in the recorded events.
func TestPrivilegeInTranscripts(t *testing.T) {
	seen := map[string]bool{}
	for _, ev := range loadAllEvents(t) {
		for rest := ev; rest != ""; {
			var line string
			line, rest = cutLine(rest)
			if v, ok := strings.CutPrefix(line, "Privilege: "); ok {
				seen[v] = true
			}
		}
	}
	for _, want := range []string{"system,all", "security,all", "dialplan,all", "call,all", "cdr,all", "user,all"} {
		if !seen[want] {
			t.Errorf("no event with Privilege: %s in testdata", want)
		}
	}
	for v := range seen {
		t.Run(v, func(t *testing.T) {
			c := ParsePrivilege(v)
			if c == 0 || c == All {
				t.Fatalf("ParsePrivilege(%q) = %v", v, c)
			}
			if got := c.String(); got != v {
				t.Errorf("ParsePrivilege(%q).String() = %q, want %q", v, got, v)
			}
		})
	}
}

func TestParsePrivilege(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want Class
	}{
		{"event", "call,all", Call},
		{"list item capital", "Call", Call},
		{"two classes", "system,user,all", System | User},
		{"upper case", "SYSTEM,ALL", System},
		{"blanks", " call , all ", Call},
		{"none", "<none>", 0},
		{"empty", "", 0},
		{"all alone is an unnamed class", "all", All},
		{"unknown class", "frobnicate,all", All},
		{"unknown next to a known one", "call,frobnicate,all", All},
		{"no unicode folding", "ſystem,all", All},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ParsePrivilege(tt.in); got != tt.want {
				t.Errorf("ParsePrivilege(%q) = %v, want %v", tt.in, got, tt.want)
			}
		})
	}
}

func TestCanWrite(t *testing.T) {
	tests := []struct {
		name   string
		write  string // manager.conf write=
		action string
		want   bool
	}{
		{"GetConfig with config only", "config", "GetConfig", true},
		{"GetConfig with system only", "system", "GetConfig", true},
		{"GetConfig with call", "call", "GetConfig", false},
		{"Status with reporting only", "reporting", "Status", true},
		{"Status with call only", "call", "Status", true},
		{"Status with config", "config", "Status", false},
		{"Ping needs nothing", "", "Ping", true},
		{"BridgeKick needs nothing", "none", "BridgeKick", true},
		{"limited: Command", "call", "Command", false},
		{"limited: Originate", "call", "Originate", false},
		{"limited: CoreShowChannels", "call", "CoreShowChannels", false},
		{"limited: Hangup", "call", "Hangup", true},
		{"all: Command", "all", "Command", true},
		{"Filter needs system", "call,config", "Filter", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, ok := LookupAction(tt.action)
			if !ok {
				t.Fatalf("LookupAction(%q) not found", tt.action)
			}
			if got := ParsePerm(tt.write).CanWrite(a.Class); got != tt.want {
				t.Errorf("ParsePerm(%q).CanWrite(%v) = %v, want %v", tt.write, a.Class, got, tt.want)
			}
		})
	}
}

func TestCanRead(t *testing.T) {
	tests := []struct {
		name  string
		read  Class
		event Class
		want  bool
	}{
		{"system|user event needs both", System, System | User, false},
		{"system|user event, user only", User, System | User, false},
		{"system|user event, both", System | User, System | User, true},
		{"call event, call", Call, Call, true},
		{"call event, all", All, Call, true},
		{"dialplan event, call", Call, Dialplan, false},
		{"class 0 event", 0, 0, true},
		{"hookresponse needs all", Call, HookResponse, false},
		{"nothing read", 0, Call, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.read.CanRead(tt.event); got != tt.want {
				t.Errorf("%v.CanRead(%v) = %v, want %v", tt.read, tt.event, got, tt.want)
			}
			if got := tt.read.Delivers(tt.event); got != tt.want {
				t.Errorf("%v.Delivers(%v) = %v, want %v", tt.read, tt.event, got, tt.want)
			}
		})
	}
}

// TestLimitedUserTranscript replays tcp-permission-denied.txt: user limited
// (read=call) received only call-class events, and none of the dialplan, cdr,
// system and security events an admin saw for the same kind of call.
func TestLimitedUserTranscript(t *testing.T) {
	read := ParsePerm("call")
	for i, ev := range loadEvents(t, "limited-delivered.txt") {
		if c := ParsePrivilege(privilegeOf(ev)); !read.CanRead(c) {
			t.Errorf("event %d (%s): Call.CanRead(%v) = false, but Asterisk delivered it", i, EventName(ev), c)
		}
	}
	dropped := map[string]bool{}
	for _, ev := range loadEvents(t, "originate-local100-admin.txt") {
		c := ParsePrivilege(privilegeOf(ev))
		if !read.CanRead(c) {
			dropped[c.String()] = true
		} else if c != Call {
			t.Errorf("%s (%v) readable with read=call", EventName(ev), c)
		}
	}
	got := slices.Sorted(maps.Keys(dropped))
	want := []string{"cdr,all", "dialplan,all", "security,all", "system,all"}
	if !slices.Equal(got, want) {
		t.Errorf("classes withheld from read=call = %q, want %q", got, want)
	}
}

// TestEventMaskTranscript replays tcp-events-eventmask.txt: after
// "EventMask: user" only the UserEvent arrives.
func TestEventMaskTranscript(t *testing.T) {
	read := ParsePerm("all")
	tests := []struct {
		mask string
		want []string // event names delivered from the admin stream plus the UserEvent
	}{
		{"off", nil},
		{"user", []string{"UserEvent"}},
		{"on", nil}, // filled below: everything
	}
	stream := append(loadEvents(t, "originate-local100-admin.txt"), loadEvents(t, "eventmask-user-delivered.txt")...)
	for _, ev := range stream {
		tests[2].want = append(tests[2].want, EventName(ev))
	}
	for _, tt := range tests {
		t.Run(tt.mask, func(t *testing.T) {
			m, ok := ParseEventMask(tt.mask)
			if !ok {
				t.Fatalf("ParseEventMask(%q) invalid", tt.mask)
			}
			send := read & m
			var got []string
			for _, ev := range stream {
				if send.Delivers(ParsePrivilege(privilegeOf(ev))) {
					got = append(got, EventName(ev))
				}
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("delivered with EventMask %q = %q, want %q", tt.mask, got, tt.want)
			}
		})
	}
}

// loadEvents splits a testdata/events file into event texts, each ending in
// the blank line Asterisk sends.
func loadEvents(t *testing.T, name string) []string {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("testdata", "events", name))
	if err != nil {
		t.Fatal(err)
	}
	var evs []string
	for _, part := range strings.SplitAfter(string(raw), "\r\n\r\n") {
		if part != "" {
			evs = append(evs, part)
		}
	}
	if len(evs) == 0 {
		t.Fatalf("%s: no events", name)
	}
	return evs
}

func loadAllEvents(t *testing.T) []string {
	t.Helper()
	names, err := filepath.Glob(filepath.Join("testdata", "events", "*.txt"))
	if err != nil || len(names) == 0 {
		t.Fatalf("no event files: %v", err)
	}
	var all []string
	for _, n := range names {
		all = append(all, loadEvents(t, filepath.Base(n))...)
	}
	return all
}

func privilegeOf(ev string) string {
	for rest := ev; rest != ""; {
		var line string
		line, rest = cutLine(rest)
		if v, ok := strings.CutPrefix(line, "Privilege: "); ok {
			return v
		}
	}
	return ""
}
