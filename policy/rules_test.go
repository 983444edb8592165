package policy

import (
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/amiproxy/amiproxy/rawman"
)

func TestGlob(t *testing.T) {
	tests := []struct {
		pattern string
		fold    bool
		yes, no []string
	}{
		{"PJSIP/100", false, []string{"PJSIP/100"}, []string{"PJSIP/1000", "pjsip/100", "", "PJSIP/10"}},
		{"PJSIP/100", true, []string{"PJSIP/100", "pjsip/100"}, []string{"PJSIP/1000"}},
		{"PJSIP/100-*", false, []string{"PJSIP/100-", "PJSIP/100-0000002a"}, []string{"PJSIP/1000-1", "PJSIP/100"}},
		{"*", false, []string{"", "anything", "/re/"}, nil},
		{"*@lab", false, []string{"@lab", "100@lab"}, []string{"100@lab2", "100@la"}},
		{"a*b*c", false, []string{"abc", "aXbYc", "abbc", "abcbc"}, []string{"ab", "acb", "abcX", "Xabc"}},
		{"*ab*ab", false, []string{"abab", "xabyab"}, []string{"ab", "aba"}},
		{"sales-*", false, []string{"sales-", "sales-east"}, []string{"Sales-east", "sale"}},
		{"x**y", false, []string{"xy", "x-y"}, []string{"x"}},
	}
	for _, tt := range tests {
		p, err := compilePattern(tt.pattern, true)
		if err != nil {
			t.Fatalf("compilePattern(%q) = %v", tt.pattern, err)
		}
		g := p.expand("u", nil, tt.fold)
		for _, s := range tt.yes {
			if !g.match(s) {
				t.Errorf("%q (fold %v).match(%q) = false, want true", tt.pattern, tt.fold, s)
			}
		}
		for _, s := range tt.no {
			if g.match(s) {
				t.Errorf("%q (fold %v).match(%q) = true, want false", tt.pattern, tt.fold, s)
			}
		}
	}
	var none *glob
	if none.match("") || none.match("x") {
		t.Error("nil glob matches")
	}
}

func TestPatternTemplates(t *testing.T) {
	claims := map[string]any{
		"extension": "100",
		"num":       float64(42),
		"frac":      1.5,
		"star":      "*",
		"empty":     "",
		"list":      []any{"1", "2"},
		"ctl":       "1\r\n2",
		"int":       7,
	}
	tests := []struct {
		pattern  string
		username string
		yes, no  []string
	}{
		{"PJSIP/{{.claims.extension}}", "alice", []string{"PJSIP/100"}, []string{"PJSIP/1000", "PJSIP/"}},
		{"PJSIP/{{ .claims.extension }}-*", "alice", []string{"PJSIP/100-1"}, []string{"PJSIP/101-1"}},
		{"PJSIP/{{.username}}-*", "alice", []string{"PJSIP/alice-00000001"}, []string{"PJSIP/bob-1", "PJSIP/alice"}},
		{"{{.claims.num}}", "", []string{"42"}, []string{"42.0", ""}},
		{"{{.claims.int}}", "", []string{"7"}, []string{"8"}},
		// A claim holding a pattern metacharacter matches literally.
		{"PJSIP/{{.claims.star}}", "", []string{"PJSIP/*"}, []string{"PJSIP/100", "PJSIP/"}},
		// Missing, empty, fractional, non-scalar and control-character
		// claims, and an empty username, match nothing at all.
		{"PJSIP/{{.claims.missing}}*", "", nil, []string{"PJSIP/", "PJSIP/100", ""}},
		{"PJSIP/{{.claims.empty}}*", "", nil, []string{"PJSIP/", "PJSIP/100"}},
		{"{{.claims.frac}}*", "", nil, []string{"1.5", "1"}},
		{"{{.claims.list}}*", "", nil, []string{"1", "[1 2]"}},
		{"{{.claims.ctl}}*", "", nil, []string{"1\r\n2", "1"}},
		{"*{{.username}}*", "", nil, []string{"", "x"}},
	}
	for _, tt := range tests {
		p, err := compilePattern(tt.pattern, true)
		if err != nil {
			t.Fatalf("compilePattern(%q) = %v", tt.pattern, err)
		}
		g := p.expand(tt.username, claims, false)
		for _, s := range tt.yes {
			if !g.match(s) {
				t.Errorf("%q with user %q: match(%q) = false, want true", tt.pattern, tt.username, s)
			}
		}
		for _, s := range tt.no {
			if g.match(s) {
				t.Errorf("%q with user %q: match(%q) = true, want false", tt.pattern, tt.username, s)
			}
		}
	}
}

func TestCompilePatternErrors(t *testing.T) {
	for _, src := range []string{
		"", "a\x00b", "PJSIP/{{.claims.ext}", "PJSIP/}}", "{{.claims.}}", "{{.claims.a.b}}",
		"{{.Username}}", "{{ printf \"x\" }}", "{{.claims.ext|html}}", "{{}}", "a\nb",
	} {
		if _, err := compilePattern(src, true); err == nil {
			t.Errorf("compilePattern(%q) = nil error, want one", src)
		}
	}
	if _, err := compilePattern("x{{.username}}", false); err == nil {
		t.Error("compilePattern with templates off accepted a template")
	}
}

// rulesConfig has roles with parameter rules, each bound to a user of the
// same name.
func rulesConfig() Config {
	c := Config{
		Roles: []Role{
			{Name: "agent", Write: "originate,call", PBXs: []string{"east"}, Rules: Rules{
				Contexts:          []string{"from-crm", "sales-*", "user-{{.username}}"},
				Extensions:        []string{"1*", "+33*"},
				OriginateChannels: []string{"PJSIP/{{.claims.extension}}"},
				Channels:          []string{"PJSIP/{{.claims.extension}}-*"},
			}},
			{Name: "apps", Write: "originate", PBXs: []string{"east"}, Rules: Rules{
				Applications: []string{"Playback", "Echo"},
			}},
			{Name: "anychan", Write: "call", PBXs: []string{"east"}, Rules: Rules{Channels: []string{"*"}}},
			{Name: "cli", Write: "command", PBXs: []string{"east"}, Rules: Rules{
				Commands: []string{"core show channels", "pjsip show endpoints", "Core Show Version"},
			}},
			{Name: "cliallowed", Write: "none", PBXs: []string{"east"}, AllowActions: []string{"Command"}},
			{Name: "files", Write: "config", PBXs: []string{"east"}, Rules: Rules{
				ConfigFiles: []string{"extensions*.conf", "queues.conf"},
			}},
			{Name: "sysfiles", Write: "system,config", PBXs: []string{"east"}, Rules: Rules{ConfigFiles: []string{"*"}}},
			{Name: "free", Write: "originate,call", PBXs: []string{"east"}},
			{Name: "bridges", PBXs: []string{"east"}, AllowActions: []string{"BridgeKick"}},
		},
		Users: map[string][]string{
			"agent+free": {"agent", "free"},
		},
	}
	c.Users = map[string][]string{"agent+free": {"agent", "free"}}
	for _, r := range c.Roles {
		c.Users[r.Name] = []string{r.Name}
	}
	return c
}

func TestDecideParameterRules(t *testing.T) {
	e, err := Compile(rulesConfig(), []string{"east"})
	if err != nil {
		t.Fatal(err)
	}
	claims := map[string]any{"extension": "100"}
	subject := func(user string) *Subject {
		return e.SubjectFor(Identity{Username: user, Claims: claims})
	}
	tests := []struct {
		name string
		user string
		msg  rawman.Message
		want Effect
		rule string // exact when it does not end in "*", else a prefix
	}{
		// Originate into listed contexts, from the caller's own phone.
		{"originate ok", "agent", action("Originate", "Channel", "PJSIP/100", "Context", "from-crm", "Exten", "123", "Priority", "1"),
			Allow, `role agent: write class originate; rules originate_channels "PJSIP/{{.claims.extension}}", contexts`},
		{"originate glob context", "agent", action("Originate", "Channel", "pjsip/100", "Context", "sales-east", "Exten", "+331"), Allow, "role agent: *"},
		{"originate username context", "agent", action("Originate", "Channel", "PJSIP/100", "Context", "user-agent", "Exten", "1"), Allow, "role agent: *"},
		{"originate other context", "agent", action("Originate", "Channel", "PJSIP/100", "Context", "admin", "Exten", "1"),
			Deny, `role agent: rules.contexts: Context admin is not listed`},
		{"originate context case", "agent", action("Originate", "Channel", "PJSIP/100", "Context", "From-CRM", "Exten", "1"), Deny, "role agent: rules.contexts: *"},
		{"originate no context", "agent", action("Originate", "Channel", "PJSIP/100", "Exten", "1"), Deny, "role agent: rules.contexts: *"},
		{"originate first context wins", "agent", action("Originate", "Channel", "PJSIP/100", "context", "admin", "Context", "from-crm", "Exten", "1"), Deny, "role agent: rules.contexts: *"},
		{"originate bad exten", "agent", action("Originate", "Channel", "PJSIP/100", "Context", "from-crm", "Exten", "9"), Deny, "role agent: rules.extensions: Exten 9 is not listed"},
		{"originate other phone", "agent", action("Originate", "Channel", "PJSIP/101", "Context", "from-crm", "Exten", "1"),
			Deny, "role agent: rules.originate_channels: Channel PJSIP/101 does not match"},
		{"originate phone prefix", "agent", action("Originate", "Channel", "PJSIP/1000", "Context", "from-crm", "Exten", "1"), Deny, "role agent: rules.originate_channels: *"},
		{"local slash readings", "agent", action("Originate", "Channel", "Local/100/n@admin", "Context", "from-crm", "Exten", "1"), Deny, "role agent: rules.originate_channels: *"},
		{"originate local into other context", "agent", action("Originate", "Channel", "Local/s@admin", "Context", "from-crm", "Exten", "1"), Deny, "role agent: rules.originate_channels: *"},
		{"originate app without applications", "agent", action("Originate", "Channel", "PJSIP/100", "Application", "Playback", "Data", "x"),
			Deny, "role agent: rules.applications: none listed, Originate Application is denied"},
		// Applications only.
		{"app listed", "apps", action("Originate", "Channel", "PJSIP/200", "Application", "playback", "Data", "hello"), Allow, "role apps: write class originate; rules applications Playback"},
		{"app not listed", "apps", action("Originate", "Channel", "PJSIP/200", "Application", "Dial"), Deny, "role apps: rules.applications: Dial is not listed"},
		{"app role, exten originate", "apps", action("Originate", "Channel", "PJSIP/200", "Context", "x", "Exten", "1"), Deny, "role apps: rules.contexts: none listed, Context x is denied"},
		{"app role, local channel", "apps", action("Originate", "Channel", "Local/1@secret/n", "Application", "Echo"), Deny, "role apps: rules.contexts: none listed, Local channel into secret is denied"},
		{"deputy still applies", "apps", action("Originate", "Channel", "PJSIP/200", "Application", "Playback", "Data", "${SHELL(id)}"), Deny, "asterisk: Originate Data with SHELL needs write system"},
		// Union of roles: the unconstrained role allows, and is named.
		{"union allows", "agent+free", action("Originate", "Channel", "PJSIP/999", "Context", "admin", "Exten", "1"), Allow, "role free: write class originate"},
		{"union first allower", "agent+free", action("Originate", "Channel", "PJSIP/100", "Context", "from-crm", "Exten", "1"), Allow, "role agent: *"},
		// Channel actions.
		{"hangup own", "agent", action("Hangup", "Channel", "PJSIP/100-0000002a"), Allow, "role agent: write class call; rules channels"},
		{"hangup own case", "agent", action("Hangup", "Channel", "pjsip/100-0000002A"), Allow, "role agent: *"},
		{"hangup other", "agent", action("Hangup", "Channel", "PJSIP/101-0000002a"), Deny, "role agent: rules.channels: Channel PJSIP/101-0000002a does not match"},
		{"hangup regex", "agent", action("Hangup", "Channel", "/PJSIP/100-.*/"), Deny, `role agent: rules.channels: Channel regex /PJSIP/100-.*/ needs the pattern "*"`},
		{"hangup regex all channels", "anychan", action("Hangup", "Channel", "/.*/"), Allow, "role anychan: write class call; rules channels"},
		{"hangup no channel", "agent", action("Hangup"), Deny, "role agent: rules.channels: *"},
		{"redirect both", "agent", action("Redirect", "Channel", "PJSIP/100-1", "Context", "from-crm", "Exten", "1",
			"ExtraChannel", "PJSIP/100-2", "ExtraContext", "sales-a", "ExtraExten", "12"), Allow, "role agent: write class call; rules channels, contexts"},
		{"redirect extra channel", "agent", action("Redirect", "Channel", "PJSIP/100-1", "Context", "from-crm", "Exten", "1", "ExtraChannel", "PJSIP/7-2",
			"ExtraContext", "from-crm", "ExtraExten", "1"), Deny, "role agent: rules.channels: ExtraChannel PJSIP/7-2 does not match"},
		{"redirect extra context missing", "agent", action("Redirect", "Channel", "PJSIP/100-1", "Context", "from-crm", "Exten", "1", "ExtraChannel", "PJSIP/100-2"),
			Deny, `role agent: rules.contexts: ExtraContext "" is not listed`},
		{"redirect to admin", "agent", action("Redirect", "Channel", "PJSIP/100-1", "Context", "admin", "Exten", "1"), Deny, "role agent: rules.contexts: Context admin is not listed"},
		{"blindtransfer", "agent", action("BlindTransfer", "Channel", "PJSIP/100-1", "Context", "from-crm", "Exten", "1"), Allow, "role agent: *"},
		{"atxfer elsewhere", "agent", action("Atxfer", "Channel", "PJSIP/100-1", "Context", "x", "Exten", "1"), Deny, "role agent: rules.contexts: *"},
		{"setvar on own channel", "agent", action("Setvar", "Channel", "PJSIP/100-1", "Variable", "X", "Value", "1"), Allow, "role agent: *"},
		{"setvar global", "agent", action("Setvar", "Variable", "X", "Value", "1"), Deny, "role agent: rules.channels: Channel is missing (a global variable)"},
		{"getvar global empty", "agent", action("Getvar", "Channel", "", "Variable", "X"), Deny, "role agent: rules.channels: Channel is missing (a global variable)"},
		{"playdtmf other", "agent", action("PlayDTMF", "Channel", "PJSIP/2-1", "Digit", "1"), Deny, "role agent: rules.channels: *"},
		{"bridge", "anychan", action("Bridge", "Channel1", "a", "Channel2", "b"), Allow, "role anychan: *"},
		{"bridge other", "agent", action("Bridge", "Channel1", "PJSIP/100-1", "Channel2", "PJSIP/5-1"), Deny, "role agent: rules.channels: Channel2 PJSIP/5-1 does not match"},
		{"confbridge all", "agent", action("ConfbridgeKick", "Conference", "1", "Channel", "all"), Deny, "role agent: rules.channels: *"},
		{"unconstrained role", "free", action("Hangup", "Channel", "/.*/"), Allow, "role free: write class call"},
		// Command: listed prefixes of whole words only.
		{"command listed", "cli", action("Command", "Command", "core show channels"), Allow, `role cli: write class command; rules commands "core show channels"`},
		{"command longer", "cli", action("Command", "Command", "  core   SHOW channels concise"), Allow, "role cli: *"},
		{"command case entry", "cli", action("Command", "Command", "core show version"), Allow, "role cli: *"},
		{"command partial word", "cli", action("Command", "Command", "core show channel"), Deny, `role cli: rules.commands: "core show channel" is not listed`},
		{"command other", "cli", action("Command", "Command", "core stop now"), Deny, "role cli: rules.commands: *"},
		{"command shell", "cli", action("Command", "Command", "!sh -c id"), Deny, "role cli: rules.commands: Command holds a forbidden character"},
		{"command bang later", "cli", action("Command", "Command", "core show channels !id"), Deny, "role cli: rules.commands: Command holds a forbidden character"},
		{"command quotes", "cli", action("Command", "Command", `core show "channels"`), Deny, "role cli: rules.commands: Command holds a forbidden character"},
		{"command nbsp is not a blank", "cli", action("Command", "Command", "core\u00a0show channels"), Deny, "role cli: rules.commands: *"},
		{"command tab", "cli", action("Command", "Command", "core\tshow\tchannels"), Deny, "role cli: rules.commands: Command holds a forbidden character"},
		{"command empty", "cli", action("Command", "Command", " "), Deny, "role cli: rules.commands: empty Command"},
		{"command none listed", "cliallowed", action("Command", "Command", "core show version"), Deny, "role cliallowed: rules.commands: none listed, Command is denied"},
		// Config files.
		{"getconfig listed", "files", action("GetConfig", "Filename", "extensions.conf"), Allow, `role files: write class config; rules config_files "extensions*.conf"`},
		{"getconfigjson glob", "files", action("GetConfigJSON", "Filename", "extensions_custom.conf"), Allow, "role files: *"},
		{"getconfig other", "files", action("GetConfig", "Filename", "manager.conf"), Deny, "role files: rules.config_files: Filename manager.conf is not listed"},
		{"getconfig case", "files", action("GetConfig", "Filename", "Queues.conf"), Deny, "role files: *"},
		{"getconfig traversal", "sysfiles", action("GetConfig", "Filename", "../../etc/passwd"), Deny, `role sysfiles: rules.config_files: Filename ../../etc/passwd holds a path separator`},
		{"getconfig absolute", "sysfiles", action("GetConfig", "Filename", "/etc/shadow"), Deny, "role sysfiles: *"},
		{"getconfig dotdot", "sysfiles", action("GetConfig", "Filename", "..conf"), Deny, "role sysfiles: rules.config_files: Filename ..conf holds \"..\""},
		{"getconfig backslash", "sysfiles", action("GetConfig", "Filename", `..\x`), Deny, "role sysfiles: *"},
		{"getconfig missing", "files", action("GetConfig"), Deny, `role files: rules.config_files: Filename "" is empty`},
		{"updateconfig both", "files", action("UpdateConfig", "SrcFilename", "queues.conf", "DstFilename", "extensions.conf"), Allow, `role files: write class config; rules config_files "queues.conf", "extensions*.conf"`},
		{"updateconfig dst", "files", action("UpdateConfig", "SrcFilename", "queues.conf", "DstFilename", "manager.conf"), Deny, "role files: rules.config_files: DstFilename manager.conf is not listed"},
		{"updateconfig reload", "files", action("UpdateConfig", "SrcFilename", "queues.conf", "DstFilename", "queues.conf", "Reload", "yes"), Deny, "default: UpdateConfig with Reload needs write system"},
		{"updateconfig reload no", "files", action("UpdateConfig", "SrcFilename", "queues.conf", "DstFilename", "queues.conf", "Reload", "no"), Allow, "role files: *"},
		{"updateconfig reload system", "sysfiles", action("UpdateConfig", "SrcFilename", "queues.conf", "DstFilename", "queues.conf", "Reload", "app_queue"), Allow, "role sysfiles: *"},
		{"createconfig", "files", action("CreateConfig", "Filename", "extensions_new.conf"), Allow, "role files: *"},
		{"listcategories", "files", action("ListCategories", "Filename", "sip.conf"), Deny, "role files: *"},
		// Class-0 actions that change state need allow_actions (§4.11).
		{"bridgekick needs allow", "agent", action("BridgeKick", "BridgeUniqueid", "x"), Deny, "default: BridgeKick changes state*"},
		{"bridgekick allowed", "bridges", action("BridgeKick", "BridgeUniqueid", "x"), Allow, "role bridges: allow_actions BridgeKick"},
		{"queuereset", "bridges", action("QueueReset"), Deny, "default: QueueReset changes state*"},
		{"bridgelist needs nothing", "bridges", action("BridgeList"), Allow, "default: BridgeList needs no class"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := subject(tt.user).Decide("east", tt.msg)
			if d.Effect != tt.want {
				t.Fatalf("Decide(%s, %q) = %v, want %v", tt.user, tt.msg.String(), d, tt.want)
			}
			if prefix, ok := strings.CutSuffix(tt.rule, "*"); ok {
				if !strings.HasPrefix(d.Rule, prefix) {
					t.Errorf("Decide(%s).Rule = %q, want prefix %q", tt.user, d.Rule, prefix)
				}
			} else if d.Rule != tt.rule {
				t.Errorf("Decide(%s).Rule = %q, want %q", tt.user, d.Rule, tt.rule)
			}
			if (d.Reason == "") != d.Allowed() {
				t.Errorf("Decide(%s) = %+v: Reason and Effect disagree", tt.user, d)
			}
		})
	}

	// Without the claim, the claim patterns match nothing: no phone at all.
	anon := e.SubjectFor(Identity{Username: "agent"})
	for _, m := range []rawman.Message{
		action("Originate", "Channel", "PJSIP/", "Context", "from-crm", "Exten", "1"),
		action("Hangup", "Channel", "PJSIP/-1"),
		action("Hangup", "Channel", "PJSIP/100-1"),
	} {
		if d := anon.Decide("east", m); d.Allowed() {
			t.Errorf("without claims: Decide(%q) = %v, want deny", m.String(), d)
		}
	}
	// Subject(user, groups) has no claims either.
	if d := e.Subject("agent", nil).Decide("east", action("Hangup", "Channel", "PJSIP/100-1")); d.Allowed() {
		t.Errorf("Subject without claims allowed a claim-bound channel: %v", d)
	}
	// A claim that is a glob matches literally.
	star := e.SubjectFor(Identity{Username: "agent", Claims: map[string]any{"extension": "*"}})
	if d := star.Decide("east", action("Hangup", "Channel", "PJSIP/100-1")); d.Allowed() {
		t.Errorf("claim \"*\" widened the pattern: %v", d)
	}
	if d := star.Decide("east", action("Hangup", "Channel", "PJSIP/*-1")); !d.Allowed() {
		t.Errorf("claim \"*\" does not match itself: %v", d)
	}
}

func TestListCommandsWithRules(t *testing.T) {
	e, err := Compile(rulesConfig(), []string{"east"})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		user, action string
		want         bool
	}{
		{"cli", "Command", true},
		{"cliallowed", "Command", false},
		{"files", "GetConfig", true},
		{"free", "GetConfig", false},
		{"agent", "Originate", true},
		{"agent", "Hangup", true},
	}
	for _, tt := range tests {
		if got := e.Subject(tt.user, nil).ListCommandsAllowed("east", tt.action); got != tt.want {
			t.Errorf("ListCommandsAllowed(%s, %s) = %v, want %v", tt.user, tt.action, got, tt.want)
		}
	}
}

func TestPBXLabels(t *testing.T) {
	pbxs := []PBX{
		{Name: "paris1", Labels: map[string]string{"site": "paris", "tier": "prod"}},
		{Name: "paris2", Labels: map[string]string{"site": "paris", "tier": "test"}},
		{Name: "lyon", Labels: map[string]string{"site": "lyon", "tier": "prod"}},
		{Name: "bare"},
	}
	c := Config{
		Roles: []Role{
			{Name: "paris", Write: "call", PBXLabels: map[string]string{"site": "paris"}},
			{Name: "prod-paris", Write: "call", PBXLabels: map[string]string{"site": "paris", "tier": "prod"}},
			{Name: "mixed", Write: "call", PBXs: []string{"bare"}, PBXLabels: map[string]string{"site": "lyon"}},
		},
		Users: map[string][]string{"paris": {"paris"}, "prod-paris": {"prod-paris"}, "mixed": {"mixed"}},
	}
	e, err := CompilePBXs(c, pbxs)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		user string
		want []string
	}{
		{"paris", []string{"paris1", "paris2"}},
		{"prod-paris", []string{"paris1"}},
		{"mixed", []string{"bare", "lyon"}},
	}
	for _, tt := range tests {
		s := e.Subject(tt.user, nil)
		if got := s.PBXs(); strings.Join(got, ",") != strings.Join(tt.want, ",") {
			t.Errorf("Subject(%s).PBXs() = %v, want %v", tt.user, got, tt.want)
		}
	}
	if d := e.Subject("paris", nil).MayUse("paris2"); d.Rule != "role paris: pbx_labels {site=paris}" {
		t.Errorf("MayUse(paris2).Rule = %q", d.Rule)
	}
	if d := e.Subject("mixed", nil).MayUse("bare"); d.Rule != "role mixed: pbxs bare" {
		t.Errorf("MayUse(bare).Rule = %q", d.Rule)
	}
	if d := e.Subject("prod-paris", nil).Decide("paris2", action("Ping")); d.Allowed() {
		t.Errorf("prod-paris on the test pbx: %v", d)
	}

	// A selector that matches no PBX is an error, and so are empty ones.
	bad := Config{Roles: []Role{
		{Name: "typo", PBXLabels: map[string]string{"site": "pariss"}},
		{Name: "empty", PBXLabels: map[string]string{}},
		{Name: "badkey", PBXLabels: map[string]string{"": "x"}},
	}}
	err = bad.ValidatePBXs(pbxs)
	for _, want := range []string{
		`roles[0] "typo": pbx_labels {site=pariss} matches no configured pbx`,
		`roles[1] "empty": pbx_labels: empty selector`,
		`roles[2] "badkey": pbx_labels: label "": keys must be non-empty`,
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ValidatePBXs(bad labels) = %v, want %q", err, want)
		}
	}
	// Compile (names only) sees no labels, so any selector matches nothing.
	if _, err := Compile(c, []string{"paris1", "paris2", "lyon", "bare"}); err == nil {
		t.Error("Compile without labels accepted label selectors")
	}
}

func TestAllowsAddr(t *testing.T) {
	c := Config{
		Roles: []Role{
			{Name: "office", Write: "call", PBXs: []string{"east"}, Permit: []string{"10.0.0.0/8", "2001:db8::/32"}, Deny: []string{"10.9.0.0/16"}},
			{Name: "nohome", Write: "reporting", PBXs: []string{"east"}, Deny: []string{"192.0.2.0/24"}},
			{Name: "host", Write: "reporting", PBXs: []string{"east"}, Permit: []string{"10.1.2.3"}},
			{Name: "open", Write: "reporting", PBXs: []string{"east"}},
		},
		Users: map[string][]string{
			"office": {"office"}, "nohome": {"nohome"}, "open": {"open"}, "host": {"host"},
			"office+nohome": {"office", "nohome"}, "office+open": {"office", "open"},
		},
		Groups: map[string][]string{"g": {"host"}},
	}
	e, err := Compile(c, []string{"east"})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		user   string
		groups []string
		addr   string
		want   Effect
		rule   string
	}{
		{"office", nil, "10.1.2.3", Allow, "role office: permit 10.0.0.0/8"},
		{"office", nil, "::ffff:10.1.2.3", Allow, "role office: permit 10.0.0.0/8"},
		{"office", nil, "10.9.1.1", Deny, "role office: deny 10.9.0.0/16"},
		{"office", nil, "192.168.1.1", Deny, "role office: permit list excludes 192.168.1.1"},
		{"office", nil, "2001:db8::1", Allow, "role office: permit 2001:db8::/32"},
		{"office", nil, "fe80::1%eth0", Deny, "role office: permit list excludes fe80::1"},
		{"office", nil, "", Deny, "default: no client address, and role office has network rules"},
		{"nohome", nil, "203.0.113.9", Allow, "role nohome: no permit list"},
		{"nohome", nil, "192.0.2.7", Deny, "role nohome: deny 192.0.2.0/24"},
		{"office+nohome", nil, "10.1.1.1", Allow, "role office: permit 10.0.0.0/8 (and 1 more roles with network rules)"},
		{"office+nohome", nil, "192.0.2.7", Deny, "role office: permit list excludes 192.0.2.7"},
		{"office+open", nil, "192.0.2.7", Deny, "role office: *"}, // a role without rules lifts nothing
		{"open", nil, "192.0.2.7", Allow, "default: no network rules"},
		{"open", nil, "", Allow, "default: no network rules"},
		{"nobody", nil, "192.0.2.7", Allow, "default: no network rules"},
		{"open", []string{"g"}, "10.1.2.4", Deny, "role host: permit list excludes 10.1.2.4"},
		{"open", []string{"g"}, "10.1.2.3", Allow, "role host: permit 10.1.2.3/32"},
	}
	for _, tt := range tests {
		var addr netip.Addr
		if tt.addr != "" {
			addr = netip.MustParseAddr(tt.addr)
		}
		d := e.Subject(tt.user, tt.groups).AllowsAddr(addr)
		if d.Effect != tt.want {
			t.Errorf("Subject(%s, %v).AllowsAddr(%s) = %v, want %v", tt.user, tt.groups, tt.addr, d, tt.want)
			continue
		}
		if prefix, ok := strings.CutSuffix(tt.rule, "*"); ok && !strings.HasPrefix(d.Rule, prefix) || !ok && d.Rule != tt.rule {
			t.Errorf("Subject(%s).AllowsAddr(%s).Rule = %q, want %q", tt.user, tt.addr, d.Rule, tt.rule)
		}
		// SubjectFor with the address applies it to every decision.
		s := e.SubjectFor(Identity{Username: tt.user, Groups: tt.groups, Addr: addr})
		if tt.addr == "" {
			continue // the zero Addr skips network rules in SubjectFor
		}
		for name, got := range map[string]Decision{
			"MayUse":       s.MayUse("east"),
			"Decide":       s.Decide("east", action("Ping")),
			"DeliverEvent": s.DeliverEvent("east", rawman.New("Event", "X", "Privilege", "call,all"), "Event: X\r\nPrivilege: call,all\r\n\r\n", All),
		} {
			if tt.want == Deny && (got.Allowed() || got.Rule != d.Rule) {
				t.Errorf("SubjectFor(%s, %s).%s = %v, want the network denial %q", tt.user, tt.addr, name, got, d.Rule)
			}
		}
		if tt.want == Deny && (s.ReadMask("east") != 0 || s.WriteMask("east") != 0) {
			t.Errorf("SubjectFor(%s, %s): masks not empty for a refused address", tt.user, tt.addr)
		}
		if tt.want == Allow && s.HasRoles() && !s.MayUse("east").Allowed() {
			t.Errorf("SubjectFor(%s, %s).MayUse(east) denied an allowed address", tt.user, tt.addr)
		}
	}
}

func TestParsePrefix(t *testing.T) {
	good := map[string]string{
		"10.0.0.0/8":          "10.0.0.0/8",
		"10.1.2.3":            "10.1.2.3/32",
		"2001:db8::/32":       "2001:db8::/32",
		"::1":                 "::1/128",
		"::ffff:10.0.0.0/104": "10.0.0.0/8",
		"::ffff:10.1.2.3":     "10.1.2.3/32",
		"0.0.0.0/0":           "0.0.0.0/0",
	}
	for in, want := range good {
		p, err := ParsePrefix(in)
		if err != nil || p.String() != want {
			t.Errorf("ParsePrefix(%q) = %v, %v, want %s", in, p, err, want)
		}
	}
	for _, in := range []string{"", "10.1.2.3/8", "10.0.0.0/255.0.0.0", "host.example", "fe80::1%eth0", "10.0.0.0/33", "::ffff:0:0/80"} {
		if p, err := ParsePrefix(in); err == nil {
			t.Errorf("ParsePrefix(%q) = %v, want an error", in, p)
		}
	}
}

func TestValidateRules(t *testing.T) {
	c := Config{Roles: []Role{
		{Name: "r", PBXs: []string{"east"},
			Permit: []string{"10.1.2.3/8"}, Deny: []string{},
			Rules: Rules{
				Contexts:          []string{},
				Extensions:        []string{"{{.claims.ext"},
				Applications:      []string{"Play back"},
				OriginateChannels: []string{"PJSIP/{{.user}}"},
				Channels:          []string{""},
				Commands:          []string{"!sh", "core show channels", " "},
				ConfigFiles:       []string{"../x.conf", "/etc/*.conf", "{{.username}}.conf", "ok*.conf"},
			}},
	}}
	err := c.Validate([]string{"east"})
	if err == nil {
		t.Fatal("Validate(bad rules) = nil")
	}
	want := []string{
		`roles[0] "r": permit[0]: policy: network "10.1.2.3/8" has host bits set; write 10.0.0.0/8`,
		`roles[0] "r": deny: empty list`,
		`roles[0] "r": rules.contexts: empty list`,
		`roles[0] "r": rules.extensions[0]: policy: pattern "{{.claims.ext": "{{" without "}}"`,
		`roles[0] "r": rules.applications[0]: invalid application name "Play back"`,
		`roles[0] "r": rules.originate_channels[0]: policy: pattern "PJSIP/{{.user}}": unknown template {{.user}}`,
		`roles[0] "r": rules.channels[0]: policy: pattern is empty`,
		`roles[0] "r": rules.commands[0]: "!sh" holds one of`,
		`roles[0] "r": rules.commands[2]: empty command`,
		`roles[0] "r": rules.config_files[0]: "../x.conf" holds a path separator`,
		`roles[0] "r": rules.config_files[1]: "/etc/*.conf" holds a path separator`,
		`roles[0] "r": rules.config_files[2]: policy: pattern "{{.username}}.conf": templates ({{...}}) are not allowed here`,
	}
	var joined interface{ Unwrap() []error }
	if !errors.As(err, &joined) || len(joined.Unwrap()) != len(want) {
		t.Errorf("Validate reported %v problems, want %d:\n%v", len(joined.Unwrap()), len(want), err)
	}
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("Validate() error lacks %q", w)
		}
	}
}

func TestFormatClasses(t *testing.T) {
	for _, c := range []Class{0, System, System | Call, All, Call | Message | Security, HookResponse | Call} {
		s := FormatClasses(c)
		back, err := ParseClasses(s)
		if err != nil {
			t.Errorf("ParseClasses(FormatClasses(%v)) = %v", c, err)
		}
		if want := c &^ HookResponse; back != want && c != All {
			t.Errorf("FormatClasses(%v) = %q, reads back as %v", c, s, back)
		}
	}
	if got := FormatClasses(All); got != "all" {
		t.Errorf("FormatClasses(All) = %q", got)
	}
	if got := FormatClasses(0); got != "none" {
		t.Errorf("FormatClasses(0) = %q", got)
	}
}

func TestLocalContexts(t *testing.T) {
	tests := []struct {
		channel string
		want    string
		ok      bool
	}{
		{"Local/100@lab", "lab", true},
		{"local/100@lab/n", "lab", true},
		{"Local/100", "default", true},
		{"Local/100/n@admin", "default,admin", true}, // options first: default; else admin
		{"Local/1@a@b/n", "a@b,b", true},             // first or last '@'
		{"Local/a/b@c/d", "default,c", true},         // first or last '/'
		{"PJSIP/100@lab", "", false},
		{"Loca", "", false},
	}
	for _, tt := range tests {
		got, ok := localContexts(tt.channel)
		if ok != tt.ok || strings.Join(got, ",") != tt.want {
			t.Errorf("localContexts(%q) = %q, %v, want %q, %v", tt.channel, got, ok, tt.want, tt.ok)
		}
	}
	// Every reading must be allowed.
	e, err := Compile(Config{
		Roles: []Role{{Name: "r", Write: "originate", PBXs: []string{"east"}, Rules: Rules{Contexts: []string{"lab", "default"}}}},
		Users: map[string][]string{"u": {"r"}},
	}, []string{"east"})
	if err != nil {
		t.Fatal(err)
	}
	s := e.Subject("u", nil)
	for ch, want := range map[string]bool{
		"Local/100@lab/n":   true,
		"Local/100":         true,
		"Local/100/n@admin": false,
		"Local/100@admin":   false,
	} {
		d := s.Decide("east", action("Originate", "Channel", ch, "Context", "lab", "Exten", "1"))
		if d.Allowed() != want {
			t.Errorf("Originate Channel %s: %v, want allowed=%v", ch, d, want)
		}
	}
}
