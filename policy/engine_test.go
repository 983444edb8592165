package policy

import (
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/amiproxy/amiproxy/rawman"
)

var testPBXs = []string{"west", "east"}

// testConfig binds each role to a user of the same name, plus a few users
// holding several roles.
func testConfig() Config {
	c := Config{
		Roles: []Role{
			{Name: "operator", Read: "call", Write: "call", PBXs: []string{"east"}},
			{Name: "reporter", Read: "reporting", Write: "reporting", PBXs: []string{"*"}},
			{Name: "configurer", Write: "config", PBXs: []string{"east"}, Rules: Rules{ConfigFiles: []string{"extensions*.conf"}}},
			{Name: "admin", Read: "all", Write: "all", PBXs: []string{"*"},
				DenyActions: []string{"Command"}, Rules: Rules{ConfigFiles: []string{"*"}}},
			{Name: "ops", Write: "system", PBXs: []string{"east"}, DenyActions: []string{"moduleload"}},
			{Name: "queues", Write: "agent", PBXs: []string{"east"},
				AllowActions: []string{"QueueReset", "MyModuleAction", "Originate"}},
			{Name: "filterer", Write: "call", PBXs: []string{"east"}, AllowActions: []string{"Filter"}},
			{Name: "originator", Write: "originate", PBXs: []string{"east"}},
			{Name: "agioriginator", Write: "originate,agi", PBXs: []string{"east"}},
			{Name: "hangups", Read: "call", PBXs: []string{"east"}, EventFilters: []string{"Event: Hangup"}},
			{Name: "newchans", Read: "call", PBXs: []string{"east"},
				EventFilters: []string{"eventfilter(name(Newchannel)) =", "!Channel: Local/"}},
			{Name: "sysuser", Read: "system,user", PBXs: []string{"east"}},
			{Name: "sysonly", Read: "system", PBXs: []string{"east"}},
			{Name: "useronly", Read: "user", PBXs: []string{"east"}},
			{Name: "denyonwest", PBXs: []string{"west"}, DenyActions: []string{"Hangup"}},
			{Name: "nothing", Read: "none", Write: "none", PBXs: []string{"east"}},
		},
		Users: map[string][]string{
			"adminops":        {"admin", "ops"},
			"splitread":       {"useronly", "sysonly"},
			"twofilters":      {"hangups", "newchans"},
			"operatorwest":    {"operator", "denyonwest"},
			"operatorwestall": {"operator", "denyonwest", "reporter"},
		},
		Groups: map[string][]string{
			"admins":    {"admin"},
			"reporters": {"reporter"},
		},
	}
	for _, r := range c.Roles {
		c.Users[r.Name] = []string{r.Name}
	}
	return c
}

func mustCompile(t testing.TB) *Engine {
	t.Helper()
	e, err := Compile(testConfig(), testPBXs)
	if err != nil {
		t.Fatalf("Compile(testConfig) = %v", err)
	}
	return e
}

func action(name string, kv ...string) rawman.Message {
	if name == "" {
		return rawman.New(kv...)
	}
	return rawman.New(append([]string{"Action", name}, kv...)...)
}

func TestDecide(t *testing.T) {
	e := mustCompile(t)
	tests := []struct {
		name   string
		user   string
		pbx    string
		msg    rawman.Message
		want   Effect
		rule   string // exact, if not ""
		reason string // exact, if not ""
	}{
		// Default deny.
		{"unknown user", "nobody", "east", action("Ping"), Deny, "pbx east: not granted", "Permission denied"},
		{"user without pbx", "operator", "west", action("Ping"), Deny, "pbx west: not granted", ""},
		{"unknown pbx", "admin", "north", action("Ping"), Deny, "pbx north: not granted", ""},
		{"pbx name is not a pattern", "admin", "*", action("Ping"), Deny, "pbx *: not granted", ""},
		{"missing action", "operator", "east", action("", "ActionID", "1"), Deny, "default: missing action", "Missing action in request"},
		{"empty action then real one", "operator", "east", action("", "Action", "", "Action", "Hangup"), Allow, "role operator: write class call", ""},
		{"unknown action", "admin", "east", action("Foo"), Deny, "default: action Foo is not in the action table", "Permission denied"},
		{"unknown action quoted", "admin", "east", action("Foo Bar"), Deny, `default: action "Foo Bar" is not in the action table`, ""},
		{"class none write none", "nothing", "east", action("Hangup"), Deny, "default: Hangup needs write class system or call", ""},
		{"class mismatch", "operator", "east", action("Command"), Deny, "default: Command needs write class command", ""},
		{"class-0 state-changing", "operator", "east", action("BridgeKick"), Deny, "default: BridgeKick changes state and needs no class in Asterisk; allow it with allow_actions", ""},
		{"class-0 state-changing for admin", "admin", "east", action("QueueReset"), Deny, "", ""},
		{"class-0 DAHDIHangup", "admin", "east", action("DAHDIHangup"), Deny, "", ""},
		{"class-0 PRIDebugSet", "admin", "east", action("PRIDebugSet"), Deny, "", ""},
		// Class-0 read-only actions.
		{"ping", "nothing", "east", action("Ping"), Allow, "default: Ping needs no class", ""},
		{"queue status", "nothing", "east", action("QueueStatus"), Allow, "default: QueueStatus needs no class", ""},
		{"bridge list", "nothing", "east", action("bridgelist"), Allow, "default: BridgeList needs no class", ""},
		{"legacy Queues", "nothing", "east", action("Queues"), Allow, "default: Queues needs no class", ""},
		// Intersection semantics (ami-spec.md §4.4).
		{"GetConfig with write=config", "configurer", "east", action("GetConfig", "Filename", "extensions.conf"), Allow, `role configurer: write class config; rules config_files "extensions*.conf"`, ""},
		{"Status with write=reporting", "reporter", "west", action("Status"), Allow, "role reporter: write class reporting", ""},
		{"admin names the overlap", "admin", "east", action("GetConfig", "Filename", "sip.conf"), Allow, `role admin: write class system,config; rules config_files "*"`, ""},
		{"legacy Monitor", "operator", "east", action("Monitor"), Allow, "role operator: write class call", ""},
		{"legacy SIPpeers", "reporter", "east", action("SIPpeers"), Allow, "role reporter: write class reporting", ""},
		{"GetConfig needs one of", "operator", "east", action("GetConfig"), Deny, "default: GetConfig needs write class system or config", ""},
		// Case-insensitive names.
		{"lower case", "operator", "east", action("hangup"), Allow, "role operator: write class call", ""},
		{"mixed case", "operator", "east", action("hAnGuP"), Allow, "", ""},
		{"mixed case denied", "operator", "east", action("cOmMaNd"), Deny, "", ""},
		// Deny wins.
		{"deny_actions", "admin", "east", action("Command"), Deny, "role admin: deny_actions Command", "Permission denied"},
		{"deny_actions any case", "admin", "east", action("COMMAND"), Deny, "role admin: deny_actions Command", ""},
		{"deny of another role", "adminops", "east", action("ModuleLoad"), Deny, "role ops: deny_actions moduleload", ""},
		{"deny applies only on its pbxs", "adminops", "west", action("ModuleLoad"), Allow, "role admin: write class system", ""},
		{"deny on west only", "operatorwestall", "west", action("Hangup"), Deny, "role denyonwest: deny_actions Hangup", ""},
		{"deny on west only, east", "operatorwest", "east", action("Hangup"), Allow, "role operator: write class call", ""},
		// allow_actions.
		{"allow class-0 state-changing", "queues", "east", action("QueueReset"), Allow, "role queues: allow_actions QueueReset", ""},
		{"allow custom action", "queues", "east", action("mymoduleaction"), Allow, "role queues: allow_actions MyModuleAction", ""},
		{"allow only on its pbxs", "queues", "west", action("QueueReset"), Deny, "pbx west: not granted", ""},
		{"allow does not lift Filter", "filterer", "east", action("Filter", "Operation", "Add", "Filter", "Event: Hangup"), Deny, "asterisk: Filter needs write system", ""},
		{"Filter needs system", "operator", "east", action("Filter"), Deny, "default: Filter needs write class system", ""},
		{"Filter with system", "admin", "east", action("Filter", "Operation", "Add", "Filter", "x"), Allow, "role admin: write class system", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := e.Subject(tt.user, nil)
			d := s.Decide(tt.pbx, tt.msg)
			if d.Effect != tt.want {
				t.Errorf("Decide(%s, %s, %q) = %v, want %v", tt.user, tt.pbx, tt.msg.Action(), d, tt.want)
			}
			if tt.rule != "" && d.Rule != tt.rule {
				t.Errorf("Decide(%s, %s, %q).Rule = %q, want %q", tt.user, tt.pbx, tt.msg.Action(), d.Rule, tt.rule)
			}
			if d.Rule == "" {
				t.Errorf("Decide(%s, %s, %q).Rule is empty", tt.user, tt.pbx, tt.msg.Action())
			}
			if tt.reason != "" && d.Reason != tt.reason {
				t.Errorf("Decide(%s, %s, %q).Reason = %q, want %q", tt.user, tt.pbx, tt.msg.Action(), d.Reason, tt.reason)
			}
			if d.Allowed() != (d.Effect == Allow) || d.Allowed() != (d.Reason == "") {
				t.Errorf("Decide(...) = %+v: Allowed and Reason disagree", d)
			}
		})
	}
}

func TestDecideConfusedDeputy(t *testing.T) {
	e := mustCompile(t)
	orig := func(kv ...string) rawman.Message {
		return action("Originate", append([]string{"Channel", "PJSIP/100"}, kv...)...)
	}
	tests := []struct {
		name string
		user string
		msg  rawman.Message
		want Effect
		rule string
	}{
		{"exten originate", "originator", orig("Exten", "100", "Context", "lab", "Priority", "1"), Allow, "role originator: write class originate"},
		{"harmless app", "originator", orig("Application", "Playback", "Data", "hello-world"), Allow, "role originator: write class originate"},
		{"System", "originator", orig("Application", "System", "Data", "id"), Deny, "asterisk: Originate Application System needs write system"},
		{"system any case", "originator", orig("Application", "sYsTeM"), Deny, "asterisk: Originate Application sYsTeM needs write system"},
		{"TrySystem substring", "originator", orig("Application", "TrySystem"), Deny, ""},
		{"Exec", "originator", orig("Application", "Exec", "Data", "Playback(x)"), Deny, ""},
		{"AGI", "originator", orig("Application", "AGI", "Data", "agi://h/"), Deny, ""},
		{"EAGI", "agioriginator", orig("Application", "EAGI"), Deny, ""},
		{"MixMonitor", "originator", orig("Application", "MixMonitor", "Data", "x.wav"), Deny, ""},
		{"ExternalIVR", "originator", orig("Application", "ExternalIVR"), Deny, ""},
		{"DBdeltree", "originator", orig("Application", "DBdeltree"), Deny, ""},
		{"Originate in Originate", "originator", orig("Application", "Originate"), Deny, ""},
		{"Reload", "originator", orig("Application", "Reload"), Deny, ""},
		{"Data SHELL", "originator", orig("Application", "Playback", "Data", "${SHELL(id)}"), Deny, "asterisk: Originate Data with SHELL needs write system"},
		{"Data DB", "originator", orig("Application", "Set", "Data", "x=${DB(a/b)}"), Deny, "asterisk: Originate Data with DB needs write system"},
		{"Data lowercase shell is case-sensitive", "originator", orig("Application", "Playback", "Data", "${shell(id)}"), Allow, ""},
		{"Data without Application unchecked", "originator", orig("Exten", "1", "Data", "SHELL"), Allow, ""},
		{"first Application counts", "originator", orig("Application", "Playback", "Application", "System"), Allow, ""},
		{"system may", "admin", orig("Application", "System", "Data", "${SHELL(id)}", "Variable", "CALLERID(num)=1"), Allow, "role admin: write class originate"},
		{"Queue with AGI", "originator", orig("Application", "Queue", "Data", "support,t,,,60,agi://h/"), Deny, "asterisk: Originate Application Queue with an AGI argument needs write agi or system"},
		{"Queue with AGI, agi granted", "agioriginator", orig("Application", "Queue", "Data", "support,t,,,60,agi://h/"), Allow, ""},
		{"Queue without AGI", "originator", orig("Application", "Queue", "Data", "support,t,,,60,,gosub"), Allow, ""},
		{"Queue short", "originator", orig("Application", "Queue", "Data", "support"), Allow, ""},
		{"Queue quoted over-approximates", "originator", orig("Application", "Queue", "Data", `support,"t",,,60,,gosub`), Deny, ""},
		{"Variable function", "originator", orig("Exten", "1", "Variable", "CALLERID(num)=100"), Deny, "asterisk: Originate Variable naming a function needs write system"},
		{"Variable function in list", "originator", orig("Exten", "1", "Variable", "A=1,FILE(/tmp/x)=y"), Deny, ""},
		{"second Variable header", "originator", orig("Exten", "1", "Variable", "A=1", "variable", "SHELL(x)=1"), Deny, ""},
		{"Variable paren in value", "originator", orig("Exten", "1", "Variable", "A=f(x,y)"), Allow, ""},
		{"allow_actions does not lift", "queues", orig("Application", "System"), Deny, "asterisk: Originate Application System needs write system"},
		{"allow_actions Originate", "queues", orig("Application", "Playback"), Allow, "role queues: allow_actions Originate"},
		{"checks are per action name", "queues", action("MyModuleAction", "Application", "System"), Allow, ""},
		{"Getvar SHELL", "operator", action("Getvar", "Variable", "SHELL(id)"), Deny, "asterisk: Getvar Variable with SHELL needs write system"},
		{"Getvar EVAL", "operator", action("Getvar", "Variable", "EVAL(${x})"), Deny, "asterisk: Getvar Variable with EVAL needs write system"},
		{"Getvar harmless", "operator", action("Getvar", "Variable", "CHANNEL(name)"), Allow, "role operator: write class call"},
		{"Getvar system", "admin", action("getvar", "Variable", "SHELL(id)"), Allow, ""},
		{"Status Variables", "reporter", action("Status", "Variables", "SHELL(id)"), Deny, "asterisk: Status Variables with SHELL needs write system"},
		{"Status harmless", "reporter", action("Status", "Variables", "CDR(src)"), Allow, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := e.Subject(tt.user, nil).Decide("east", tt.msg)
			if d.Effect != tt.want {
				t.Errorf("Decide(%s, %q) = %v, want %v", tt.user, tt.msg.String(), d, tt.want)
			}
			if tt.rule != "" && d.Rule != tt.rule {
				t.Errorf("Decide(%s, %q).Rule = %q, want %q", tt.user, tt.msg.String(), d.Rule, tt.rule)
			}
		})
	}
}

func TestQueueAGIArg(t *testing.T) {
	tests := []struct {
		data string
		want bool
	}{
		{"", false},
		{"q", false},
		{"q,,,,,", false},
		{"q,,,,,a", true},
		{"q,,,,, ", true}, // a blank argument counts
		{"q,,,,,,gosub", false},
		{"q,(a,b),,,,", false},
		{"q,(a,b),,,,x", true}, // Asterisk: 6th is x
		{"q,(a,b),,,x", true},  // over-approximation: Asterisk sees 5 args
		{`q,",",,,,`, false},
		{`q,"a,b",u,a,t,x`, true},
		{`q,"a",,,`, false},
	}
	for _, tt := range tests {
		if got := queueAGIArg(tt.data); got != tt.want {
			t.Errorf("queueAGIArg(%q) = %v, want %v", tt.data, got, tt.want)
		}
	}
}

// TestClassZeroActionsClassified checks that every class-0 action of the
// tables is either in statelessClassless or one of the state-changing
// actions of ami-spec.md §4.11, so a regenerated table cannot slip a new
// one through unnoticed.
func TestClassZeroActionsClassified(t *testing.T) {
	stateChanging := []string{
		"BridgeDestroy", "BridgeKick", "BridgeTechnologySuspend", "BridgeTechnologyUnsuspend",
		"DAHDIDialOffhook", "DAHDIDNDoff", "DAHDIDNDon", "DAHDIHangup", "DAHDIRestart", "DAHDITransfer",
		"PRIDebugFileUnset", "PRIDebugSet",
		"QueueChangePriorityCaller", "QueueReload", "QueueReset", "QueueWithdrawCaller",
	}
	var got []string
	for _, a := range append(Actions(), LegacyActions()...) {
		if a.Class != 0 {
			if statelessClassless[asciiLower(a.Name)] {
				t.Errorf("statelessClassless holds %s, of class %v", a.Name, a.Class)
			}
			continue
		}
		if !statelessClassless[asciiLower(a.Name)] {
			got = append(got, a.Name)
		}
	}
	if !slices.Equal(got, stateChanging) {
		t.Errorf("class-0 actions denied by default = %v, want %v", got, stateChanging)
	}
	for k := range statelessClassless {
		if a, ok := lookupAnyAction(k); !ok || a.Class != 0 {
			t.Errorf("statelessClassless key %q: LookupAction = %+v, %v, want a class-0 action", k, a, ok)
		}
	}
}

func TestSubjectWithoutRolesDeniesEverything(t *testing.T) {
	e := mustCompile(t)
	subjects := map[string]*Subject{
		"unknown user":  e.Subject("nobody", nil),
		"unknown group": e.Subject("nobody", []string{"nogroup"}),
		"zero Subject":  {},
		"nil Subject":   nil,
		"zero Engine":   (&Engine{}).Subject("admin", []string{"admins"}),
		"nil Engine":    (*Engine)(nil).Subject("admin", nil),
	}
	ev, text := event("Event", "Hangup", "Privilege", "call,all")
	for name, s := range subjects {
		if s != nil && s.HasRoles() {
			t.Errorf("%s: HasRoles() = true, want false", name)
		}
		if got := s.PBXs(); len(got) != 0 {
			t.Errorf("%s: PBXs() = %v, want none", name, got)
		}
		for _, pbx := range testPBXs {
			if d := s.MayUse(pbx); d.Allowed() {
				t.Errorf("%s: MayUse(%s) = %v, want deny", name, pbx, d)
			}
			if r, w := s.ReadMask(pbx), s.WriteMask(pbx); r != 0 || w != 0 {
				t.Errorf("%s: ReadMask, WriteMask(%s) = %v, %v, want 0, 0", name, pbx, r, w)
			}
			if d := s.DeliverEvent(pbx, ev, text, All); d.Allowed() {
				t.Errorf("%s: DeliverEvent(%s) = %v, want deny", name, pbx, d)
			}
			for _, a := range append(Actions(), LegacyActions()...) {
				if d := s.Decide(pbx, action(a.Name)); d.Allowed() || d.Rule == "" {
					t.Errorf("%s: Decide(%s, %s) = %v, want deny with a rule", name, pbx, a.Name, d)
				}
				if s.ListCommandsAllowed(pbx, a.Name) {
					t.Errorf("%s: ListCommandsAllowed(%s, %s) = true, want false", name, pbx, a.Name)
				}
			}
		}
	}
}

func TestSubject(t *testing.T) {
	e := mustCompile(t)
	tests := []struct {
		name      string
		user      string
		groups    []string
		roles     []string
		pbxs      []string
		readEast  Class
		writeEast Class
		writeWest Class
	}{
		{"one role", "operator", nil, []string{"operator"}, []string{"east"}, Call, Call, 0},
		{"star pbx", "reporter", nil, []string{"reporter"}, []string{"east", "west"}, Reporting, Reporting, Reporting},
		{"group only", "someone", []string{"admins"}, []string{"admin"}, []string{"east", "west"}, All, All, All},
		{"user and groups, config order, no duplicates", "operator", []string{"reporters", "unknown", "reporters"},
			[]string{"operator", "reporter"}, []string{"east", "west"}, Call | Reporting, Call | Reporting, Reporting},
		{"union of masks", "adminops", nil, []string{"admin", "ops"}, []string{"east", "west"}, All, All, All},
		{"usernames are exact", "Operator", nil, nil, nil, 0, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := e.Subject(tt.user, tt.groups)
			if s == nil {
				t.Fatal("Subject() = nil")
			}
			if got := s.Username(); got != tt.user {
				t.Errorf("Username() = %q, want %q", got, tt.user)
			}
			if got := s.Roles(); !slices.Equal(got, tt.roles) {
				t.Errorf("Roles() = %v, want %v", got, tt.roles)
			}
			if got := s.PBXs(); !slices.Equal(got, tt.pbxs) {
				t.Errorf("PBXs() = %v, want %v", got, tt.pbxs)
			}
			if got := s.ReadMask("east"); got != tt.readEast {
				t.Errorf("ReadMask(east) = %v, want %v", got, tt.readEast)
			}
			if got := s.WriteMask("east"); got != tt.writeEast {
				t.Errorf("WriteMask(east) = %v, want %v", got, tt.writeEast)
			}
			if got := s.WriteMask("west"); got != tt.writeWest {
				t.Errorf("WriteMask(west) = %v, want %v", got, tt.writeWest)
			}
		})
	}
}

func TestMayUse(t *testing.T) {
	e := mustCompile(t)
	tests := []struct {
		user, pbx string
		want      Effect
		rule      string
	}{
		{"operator", "east", Allow, "role operator: pbxs east"},
		{"operator", "west", Deny, "pbx west: not granted"},
		{"reporter", "west", Allow, "role reporter: pbxs *"},
		{"reporter", "", Deny, `pbx "": not granted`},
		{"nobody", "east", Deny, "pbx east: not granted"},
	}
	for _, tt := range tests {
		d := e.Subject(tt.user, nil).MayUse(tt.pbx)
		if d.Effect != tt.want || d.Rule != tt.rule {
			t.Errorf("MayUse(%s, %q) = %v %q, want %v %q", tt.user, tt.pbx, d.Effect, d.Rule, tt.want, tt.rule)
		}
	}
}

// event builds an event message and its text as Asterisk queues it.
func event(kv ...string) (rawman.Message, string) {
	var b strings.Builder
	for i := 0; i < len(kv); i += 2 {
		b.WriteString(kv[i] + ": " + kv[i+1] + "\r\n")
	}
	b.WriteString("\r\n")
	return rawman.New(kv...), b.String()
}

func TestDeliverEvent(t *testing.T) {
	e := mustCompile(t)
	hangup := []string{"Event", "Hangup", "Privilege", "call,all", "Channel", "PJSIP/100-00000001"}
	hangupLocal := []string{"Event", "Hangup", "Privilege", "call,all", "Channel", "Local/200@lab-00000001;1"}
	newchan := []string{"Event", "Newchannel", "Privilege", "call,all", "Channel", "PJSIP/100-00000002"}
	newchanLocal := []string{"Event", "Newchannel", "Privilege", "call,all", "Channel", "Local/200@lab-00000002;1"}
	vmpass := []string{"Event", "VoicemailPasswordChange", "Privilege", "system,user,all", "Context", "default"}
	userEvent := []string{"Event", "UserEvent", "Privilege", "user,all", "UserEvent", "x"}
	tests := []struct {
		name     string
		user     string
		pbx      string
		ev       []string
		sendMask Class
		want     Effect
		rule     string
	}{
		{"read class", "operator", "east", hangup, All, Allow, "role operator: read class call"},
		{"send mask narrower but enough", "operator", "east", hangup, Call, Allow, ""},
		{"send mask off blocks", "operator", "east", hangup, 0, Deny, "session: send mask lacks class call"},
		{"read mask lacks class", "operator", "east", userEvent, All, Deny, "pbx east: read mask lacks class user"},
		{"pbx not granted", "operator", "west", hangup, All, Deny, "pbx west: not granted"},
		{"no Privilege", "operator", "east", []string{"Event", "Hangup"}, All, Deny, "default: event without Privilege header"},
		{"list item is not an event", "operator", "east", []string{"Response", "Success", "ActionID", "1"}, All, Deny, "default: event without Privilege header"},
		{"Privilege <none>", "admin", "east", []string{"Event", "X", "Privilege", "<none>"}, All, Deny, "default: event of no class"},
		{"unknown class needs all", "operator", "east", []string{"Event", "X", "Privilege", "call,newthing,all"}, All, Deny, ""},
		{"unknown class, reader of all", "admin", "east", []string{"Event", "X", "Privilege", "call,newthing,all"}, All, Allow, ""},
		// Subset: system|user needs both.
		{"system|user with both", "sysuser", "east", vmpass, All, Allow, "role sysuser: read class system,user"},
		{"system|user with user only", "useronly", "east", vmpass, All, Deny, "pbx east: read mask lacks class system"},
		{"system|user with system only", "sysonly", "east", vmpass, All, Deny, "pbx east: read mask lacks class user"},
		{"system|user from two roles", "splitread", "east", vmpass, All, Allow, "roles sysonly, useronly: read class system,user"},
		{"system|user, send mask user", "sysuser", "east", vmpass, User, Deny, "session: send mask lacks class system"},
		// Filters.
		{"include filter passes", "hangups", "east", hangup, All, Allow, "role hangups: read class call"},
		{"include filter blocks", "hangups", "east", newchan, All, Deny, "pbx east: eventfilters of roles hangups"},
		{"advanced include", "newchans", "east", newchan, All, Allow, ""},
		{"exclude", "newchans", "east", newchanLocal, All, Deny, "pbx east: eventfilters of roles newchans"},
		{"two roles: includes widen", "twofilters", "east", hangup, All, Allow, ""},
		{"two roles: includes widen 2", "twofilters", "east", newchan, All, Allow, ""},
		{"two roles: exclude applies to all", "twofilters", "east", hangupLocal, All, Deny, "pbx east: eventfilters of roles hangups, newchans"},
		{"role without filters lifts nothing", "operatorwest", "east", hangup, All, Allow, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ev, text := event(tt.ev...)
			s := e.Subject(tt.user, nil)
			d := s.DeliverEvent(tt.pbx, ev, text, tt.sendMask)
			priv, ok := ev.Lookup("Privilege")
			if got := s.DeliversClass(tt.pbx, priv, ok, tt.sendMask) && s.Filters(tt.pbx).Allows(text); got != d.Allowed() {
				t.Errorf("DeliversClass && Filters.Allows = %v, DeliverEvent allows %v", got, d.Allowed())
			}
			if d.Effect != tt.want {
				t.Errorf("DeliverEvent(%s, %s, %q, %v) = %v, want %v", tt.user, tt.pbx, text, tt.sendMask, d, tt.want)
			}
			if tt.rule != "" && d.Rule != tt.rule {
				t.Errorf("DeliverEvent(%s, %s, %q).Rule = %q, want %q", tt.user, tt.pbx, text, d.Rule, tt.rule)
			}
			if d.Rule == "" {
				t.Errorf("DeliverEvent(%s, %s, %q).Rule is empty", tt.user, tt.pbx, text)
			}
		})
	}
}

func TestFilters(t *testing.T) {
	e := mustCompile(t)
	tests := []struct {
		user, pbx string
		want      int
	}{
		{"operator", "east", 0},
		{"hangups", "east", 1},
		{"twofilters", "east", 3},
		{"twofilters", "west", 0},
		{"nobody", "east", 0},
	}
	for _, tt := range tests {
		if got := e.Subject(tt.user, nil).Filters(tt.pbx).Len(); got != tt.want {
			t.Errorf("Filters(%s, %s).Len() = %d, want %d", tt.user, tt.pbx, got, tt.want)
		}
	}
}

// FilterKey is equal for subjects of the same roles, differs between
// different filter sets, and is nil without filters.
func TestFilterKey(t *testing.T) {
	e := mustCompile(t)
	a := e.Subject("hangups", nil).FilterKey("east")
	b := e.SubjectFor(Identity{Username: "hangups", Claims: map[string]any{"sub": "other"}}).FilterKey("east")
	if a == nil || a != b {
		t.Errorf("FilterKey of two hangups subjects: %v, %v, want equal non-nil", a, b)
	}
	if c := e.Subject("twofilters", nil).FilterKey("east"); c == nil || c == a {
		t.Errorf("FilterKey(twofilters) = %v, want non-nil and not that of hangups", c)
	}
	for _, tt := range []struct{ user, pbx string }{{"operator", "east"}, {"twofilters", "west"}, {"nobody", "east"}} {
		if k := e.Subject(tt.user, nil).FilterKey(tt.pbx); k != nil {
			t.Errorf("FilterKey(%s, %s) = %v, want nil", tt.user, tt.pbx, k)
		}
	}
}

func TestListCommandsAllowed(t *testing.T) {
	e := mustCompile(t)
	tests := []struct {
		user, pbx, action string
		want              bool
	}{
		{"operator", "east", "Hangup", true},
		{"operator", "east", "Command", false},
		{"operator", "east", "Ping", true},
		{"operator", "east", "BridgeKick", false},
		{"operator", "west", "Ping", false},
		{"originator", "east", "Originate", true},
		{"admin", "east", "Command", false},
		{"queues", "east", "MyModuleAction", true},
		{"operator", "east", "", false},
		{"operator", "east", "Bad\r\nAction", false},
	}
	for _, tt := range tests {
		if got := e.Subject(tt.user, nil).ListCommandsAllowed(tt.pbx, tt.action); got != tt.want {
			t.Errorf("ListCommandsAllowed(%s, %s, %q) = %v, want %v", tt.user, tt.pbx, tt.action, got, tt.want)
		}
	}
}

func TestCompileCopiesConfig(t *testing.T) {
	c := testConfig()
	pbxs := []string{"east", "west"}
	e, err := Compile(c, pbxs)
	if err != nil {
		t.Fatal(err)
	}
	c.Roles[0].Write = "all"
	c.Roles[0].PBXs[0] = "west"
	c.Users["operator"][0] = "admin"
	pbxs[0] = "north"
	s := e.Subject("operator", nil)
	if got := s.WriteMask("east"); got != Call {
		t.Errorf("after changing the Config, WriteMask(east) = %v, want %v", got, Call)
	}
	if got := e.PBXs(); !slices.Equal(got, []string{"east", "west"}) {
		t.Errorf("PBXs() = %v, want [east west]", got)
	}
}

func TestDecisionString(t *testing.T) {
	var zero Decision
	if zero.Allowed() || zero.Effect != Deny {
		t.Errorf("zero Decision allows")
	}
	d := Decision{Effect: Allow, Rule: "role r: write class call"}
	if got, want := d.String(), "allow (role r: write class call)"; got != want {
		t.Errorf("Decision.String() = %q, want %q", got, want)
	}
	if got, want := Effect(7).String(), "Effect(7)"; got != want {
		t.Errorf("Effect(7).String() = %q, want %q", got, want)
	}
}

func TestClip(t *testing.T) {
	long := strings.Repeat("a", 100)
	tests := []struct{ in, want string }{
		{"Foo", "Foo"},
		{"", `""`},
		{"Foo Bar", `"Foo Bar"`},
		{`a"b`, `"a\"b"`},
		{"\u00e9", `"é"`},
		{long, `"` + long[:64] + `..."`},
	}
	for _, tt := range tests {
		if got := clip(tt.in); got != tt.want {
			t.Errorf("clip(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// TestConcurrentUse runs decisions in parallel, for the race detector.
func TestConcurrentUse(t *testing.T) {
	e := mustCompile(t)
	s := e.Subject("twofilters", []string{"admins"})
	ev, text := event("Event", "Hangup", "Privilege", "call,all", "Channel", "PJSIP/1")
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 200 {
				s.Decide("east", action("Originate", "Application", "System"))
				s.DeliverEvent("east", ev, text, All)
				e.Subject("operator", []string{"reporters"}).Decide("west", action("Status"))
			}
		})
	}
	wg.Wait()
}
