package policy

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

func TestParseClasses(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    Class
		wantErr string // substring; "" means no error
	}{
		{"empty is none", "", 0, ""},
		{"blank is none", "  ", 0, ""},
		{"single", "call", Call, ""},
		{"several", "call,reporting", Call | Reporting, ""},
		{"blanks around commas", "system , call,\tuser ", System | Call | User, ""},
		{"case-insensitive", "System,CALL", System | Call, ""},
		{"config", "config", ConfigClass, ""},
		{"all", "all", All, ""},
		{"ALL", "ALL", All, ""},
		{"none", "none", 0, ""},
		{"prefix is not a name", "sys", 0, `unknown class "sys"`},
		{"unknown named", "call,bogus", 0, `unknown class "bogus"`},
		{"every unknown named", "foo,bar", 0, `unknown class "bar"`},
		{"empty item", "call,,user", 0, "empty class name"},
		{"trailing comma", "call,", 0, "empty class name"},
		{"all with others", "all,call", 0, `"all" must stand alone`},
		{"none with others", "call,none", 0, `"none" must stand alone`},
		{"number", "7", 0, `unknown class "7"`},
		{"hookresponse has no name", "hookresponse", 0, "unknown class"},
		{"non-ASCII fold", "\u212aall", 0, "unknown class"}, // Kelvin sign is not k
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseClasses(tt.in)
			if tt.wantErr == "" {
				if err != nil || got != tt.want {
					t.Errorf("ParseClasses(%q) = %v, %v, want %v, nil", tt.in, got, err, tt.want)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("ParseClasses(%q) = %v, %v, want error containing %q", tt.in, got, err, tt.wantErr)
			}
			if !strings.HasPrefix(err.Error(), "policy: ") {
				t.Errorf("ParseClasses(%q) error %q does not start with \"policy: \"", tt.in, err)
			}
		})
	}
}

func TestParseFilterLine(t *testing.T) {
	hangup := "Event: Hangup\r\nPrivilege: call,all\r\nChannel: Local/200@lab-00000001;1\r\n\r\n"
	newchan := "Event: Newchannel\r\nPrivilege: call,all\r\nChannel: PJSIP/100-00000001\r\n\r\n"
	tests := []struct {
		name        string
		line        string
		wantErr     error
		wantExclude bool
		wantMethod  Method
		matches     []string
		misses      []string
	}{
		{name: "legacy include", line: "Event: Hangup", wantMethod: MethodRegex, matches: []string{hangup}, misses: []string{newchan}},
		{name: "legacy blanks trimmed", line: "  Event: Hangup\t", wantMethod: MethodRegex, matches: []string{hangup}},
		{name: "legacy exclude", line: "!Channel: Local/200@", wantExclude: true, wantMethod: MethodRegex, matches: []string{hangup}, misses: []string{newchan}},
		{name: "legacy whole line", line: "eventfilter = !Channel: Local/", wantExclude: true, wantMethod: MethodRegex, matches: []string{hangup}},
		{name: "advanced name", line: "eventfilter(name(Hangup)) =", wantMethod: MethodNone, matches: []string{hangup}, misses: []string{newchan}},
		{name: "advanced with pattern", line: "eventfilter(action(exclude),header(Channel),method(starts_with)) = Local/", wantExclude: true, wantMethod: MethodStartsWith, matches: []string{hangup}, misses: []string{newchan}},
		{name: "advanced =>", line: "eventfilter(name(Newchannel))=>", wantMethod: MethodNone, matches: []string{newchan}},
		{name: "blank before paren", line: "eventfilter (name(Hangup)) =", wantMethod: MethodNone, matches: []string{hangup}},
		{name: "pattern keeps its =", line: "eventfilter(header(Channel),method(contains)) = a=b", wantMethod: MethodContains, misses: []string{hangup}},
		{name: "legacy empty", line: "", wantErr: ErrFilterFormat},
		{name: "legacy bang only", line: "!", wantErr: ErrFilterFormat},
		{name: "advanced without =", line: "eventfilter(name(Hangup))", wantErr: ErrFilterFormat},
		{name: "advanced crash form", line: "eventfilter(name) =", wantErr: ErrFilterFormat},
		{name: "capitalised key", line: "EventFilter(name(Hangup)) =", wantErr: ErrNotFilterKey},
		{name: "bad regex", line: "Event: (", wantErr: ErrFilterCompile},
		{name: "NUL", line: "Event: Hangup\x00", wantErr: ErrFilterFormat},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := ParseFilterLine(tt.line)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Errorf("ParseFilterLine(%q) = %v, %v, want error %v", tt.line, f, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseFilterLine(%q) = %v, want nil error", tt.line, err)
			}
			if f.Exclude() != tt.wantExclude || f.Method() != tt.wantMethod {
				t.Errorf("ParseFilterLine(%q) = exclude %v method %v, want %v %v", tt.line, f.Exclude(), f.Method(), tt.wantExclude, tt.wantMethod)
			}
			for _, ev := range tt.matches {
				if !f.Match(ev) {
					t.Errorf("ParseFilterLine(%q).Match(%q) = false, want true", tt.line, ev)
				}
			}
			for _, ev := range tt.misses {
				if f.Match(ev) {
					t.Errorf("ParseFilterLine(%q).Match(%q) = true, want false", tt.line, ev)
				}
			}
		})
	}
}

func TestValidateReportsEveryProblem(t *testing.T) {
	c := Config{
		Roles: []Role{
			{Name: "ok", Read: "call", Write: "call", PBXs: []string{"east"}, AllowActions: []string{"MyModuleAction"}},
			{Name: "ok", Read: "call", PBXs: []string{"*"}},                              // duplicate
			{Name: "", PBXs: []string{"east"}},                                           // empty name
			{Name: "badclass", Read: "cal", Write: "system, bogus", PBXs: []string{"*"}}, // two bad class strings
			{Name: "badpbx", PBXs: []string{"east", "north"}},                            // unknown pbx
			{Name: "nopbx"}, // grants nothing
			{Name: "badactions", PBXs: []string{"*"},
				AllowActions: []string{"", "Foo Bar"},
				DenyActions:  []string{"Comand", "mymoduleaction", "Command", "Originate:"}},
			{Name: "badfilters", PBXs: []string{"*"}, EventFilters: []string{"Event: Hangup", "Event: (", "eventfilter(name) ="}},
		},
		Users: map[string][]string{
			"alice": {"ok", "ghost"},
			"Alice": {"ok"},
			"":      {"ok"},
		},
		Groups: map[string][]string{"ops": {"phantom"}},
	}
	before := cloneConfig(c)
	err := c.Validate([]string{"east", "west", "*"})
	if !reflect.DeepEqual(c, before) {
		t.Errorf("Validate modified the config")
	}
	if err == nil {
		t.Fatal("Validate(bad config) = nil, want errors")
	}
	want := []string{
		`pbxs[2]: pbx name "*" is reserved`,
		`roles[1] "ok": duplicate role name`,
		`roles[2]: empty name`,
		`roles[3] "badclass": read: policy: classes "cal": unknown class "cal"`,
		`roles[3] "badclass": write: policy: classes "system, bogus": unknown class "bogus"`,
		`roles[4] "badpbx": pbxs[1]: unknown pbx "north"`,
		`roles[5] "nopbx": pbxs is empty`,
		`roles[6] "badactions": allow_actions[0]: invalid action name ""`,
		`roles[6] "badactions": allow_actions[1]: invalid action name "Foo Bar"`,
		`roles[6] "badactions": deny_actions[0]: unknown action "Comand"`,
		`roles[6] "badactions": deny_actions[3]: invalid action name "Originate:"`,
		`roles[7] "badfilters": eventfilters[1]: policy: eventfilter "eventfilter" = "Event: (": unable to compile regex filter`,
		`roles[7] "badfilters": eventfilters[2]:`,
		`users: empty username`,
		`users: "Alice" and "alice" differ only in case`,
		`users "alice": unknown role "ghost"`,
		`groups "ops": unknown role "phantom"`,
	}
	msg := err.Error()
	for _, w := range want {
		if !strings.Contains(msg, w) {
			t.Errorf("Validate() error lacks %q", w)
		}
	}
	var joined interface{ Unwrap() []error }
	if !errors.As(err, &joined) {
		t.Fatalf("Validate() error is not an errors.Join: %T", err)
	}
	if got := len(joined.Unwrap()); got != len(want) {
		t.Errorf("Validate() reported %d problems, want %d:\n%s", got, len(want), msg)
	}
	for _, e := range joined.Unwrap() {
		if !strings.HasPrefix(e.Error(), "policy: ") {
			t.Errorf("error %q does not start with \"policy: \"", e)
		}
	}
	if !errors.Is(err, ErrFilterCompile) {
		t.Errorf("errors.Is(Validate(), ErrFilterCompile) = false, want true (wrapped with %%w)")
	}
	if _, err := Compile(c, []string{"east", "west"}); err == nil {
		t.Errorf("Compile(bad config) = nil error, want the errors of Validate")
	}
}

func TestValidateAcceptsGoodConfig(t *testing.T) {
	c := testConfig()
	if err := c.Validate(testPBXs); err != nil {
		t.Errorf("Validate(testConfig) = %v, want nil", err)
	}
	var zero Config
	if err := zero.Validate(nil); err != nil {
		t.Errorf("Validate(zero Config) = %v, want nil", err)
	}
	var nilConfig *Config
	if err := nilConfig.Validate(nil); err != nil {
		t.Errorf("(*Config)(nil).Validate = %v, want nil", err)
	}
}

func cloneConfig(c Config) Config {
	out := Config{Roles: make([]Role, len(c.Roles))}
	for i, r := range c.Roles {
		r.PBXs = append([]string(nil), r.PBXs...)
		r.AllowActions = append([]string(nil), r.AllowActions...)
		r.DenyActions = append([]string(nil), r.DenyActions...)
		r.EventFilters = append([]string(nil), r.EventFilters...)
		out.Roles[i] = r
	}
	cp := func(m map[string][]string) map[string][]string {
		if m == nil {
			return nil
		}
		n := make(map[string][]string, len(m))
		for k, v := range m {
			n[k] = append([]string(nil), v...)
		}
		return n
	}
	out.Users, out.Groups = cp(c.Users), cp(c.Groups)
	return out
}
