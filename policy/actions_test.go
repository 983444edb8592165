package policy

import (
	"bufio"
	"os"
	"strings"
	"testing"
)

// TestActionTableMatchesTSV re-parses testdata/ami-actions.tsv, a copy of
// ../shared/ami-actions.tsv, and checks that the generated table holds
// exactly its rows, in its order. If it fails, copy the new TSV into
// testdata and run "go generate".
func TestActionTableMatchesTSV(t *testing.T) {
	f, err := os.Open("testdata/ami-actions.tsv")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var want []ActionInfo
	sc := bufio.NewScanner(f)
	for line := 1; sc.Scan(); line++ {
		if line == 1 {
			continue // header
		}
		fields := strings.Split(sc.Text(), "\t")
		if len(fields) != 3 {
			t.Fatalf("line %d: %q", line, sc.Text())
		}
		var c Class
		if fields[1] != "none" {
			for name := range strings.SplitSeq(fields[1], ",") {
				n, ok := classByName(name)
				if !ok {
					t.Fatalf("line %d: unknown class %q", line, name)
				}
				c |= n
			}
		}
		want = append(want, ActionInfo{Name: fields[0], Class: c, Source: fields[2]})
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	got := Actions()
	if len(got) != len(want) {
		t.Fatalf("len(Actions()) = %d, want %d", len(got), len(want))
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("Actions()[%d] = %+v, want %+v", i, got[i], want[i])
		}
		if a, ok := LookupAction(want[i].Name); !ok || a != want[i] {
			t.Errorf("LookupAction(%q) = %+v, %v, want %+v, true", want[i].Name, a, ok, want[i])
		}
	}
	if len(want) != 154 {
		t.Errorf("%d actions in the TSV, ami-spec.md §4.8 lists 154", len(want))
	}
}

func TestLookupAction(t *testing.T) {
	tests := []struct {
		name   string
		in     string
		want   ActionInfo
		wantOK bool
	}{
		{"exact", "GetConfig", ActionInfo{"GetConfig", System | ConfigClass, "main/manager.c"}, true},
		{"lower case", "getconfig", ActionInfo{"GetConfig", System | ConfigClass, "main/manager.c"}, true},
		{"upper case", "PING", ActionInfo{"Ping", 0, "main/manager.c"}, true},
		{"status", "Status", ActionInfo{"Status", System | Call | Reporting, "main/manager.c"}, true},
		{"pjsip", "pjsipshowendpoints", ActionInfo{"PJSIPShowEndpoints", System, "res/res_pjsip/pjsip_configuration.c"}, true},
		{"unknown", "Frobnicate", ActionInfo{}, false},
		{"empty", "", ActionInfo{}, false},
		{"prefix is not enough", "GetConf", ActionInfo{}, false},
		{"blank is not trimmed", "Ping ", ActionInfo{}, false},
		{"no Unicode folding (Kelvin sign)", "Bridge\u212Aick", ActionInfo{}, false},
		{"legacy actions are separate", "Monitor", ActionInfo{}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := LookupAction(tt.in)
			if got != tt.want || ok != tt.wantOK {
				t.Errorf("LookupAction(%q) = %+v, %v, want %+v, %v", tt.in, got, ok, tt.want, tt.wantOK)
			}
		})
	}
}

func TestLegacyActions(t *testing.T) {
	tests := []struct {
		in   string
		want Class
	}{
		{"Monitor", Call},
		{"stopmonitor", Call},
		{"ChangeMonitor", Call},
		{"PauseMonitor", Call},
		{"UnpauseMonitor", Call},
		{"SIPpeers", System | Reporting},
		{"SIPshowpeer", System | Reporting},
		{"SIPqualifypeer", System | Reporting},
		{"SIPshowregistry", System | Reporting},
		{"SIPnotify", System},
		{"SIPpeerstatus", System},
		{"SKINNYdevices", System | Reporting},
		{"SKINNYshowdevice", System | Reporting},
		{"SKINNYlines", System | Reporting},
		{"SKINNYshowline", System | Reporting},
		{"Queues", 0},
		{"DataGet", 0},
	}
	if n := len(LegacyActions()); n != len(tests) {
		t.Errorf("len(LegacyActions()) = %d, want %d", n, len(tests))
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			a, ok := LookupLegacyAction(tt.in)
			if !ok || a.Class != tt.want {
				t.Errorf("LookupLegacyAction(%q) = %+v, %v, want class %v", tt.in, a, ok, tt.want)
			}
			if _, inHead := LookupAction(tt.in); inHead {
				t.Errorf("LookupAction(%q) found a legacy action", tt.in)
			}
		})
	}
	if _, ok := LookupLegacyAction("Ping"); ok {
		t.Errorf("LookupLegacyAction(%q) found a HEAD action", "Ping")
	}
}

func TestActionsReturnsCopies(t *testing.T) {
	a := Actions()
	a[0].Class = All
	if Actions()[0].Class == All {
		t.Error("Actions() shares its storage")
	}
	l := LegacyActions()
	l[0].Class = All
	if LegacyActions()[0].Class == All {
		t.Error("LegacyActions() shares its storage")
	}
}
