package policy

//go:generate go run ./internal/gentable -in ../../shared/ami-actions.tsv -out actions_table.go

// ActionInfo describes one AMI action as Asterisk registers it.
//
// The zero value describes no action. ActionInfo is plain data, safe to copy
// and to use concurrently.
type ActionInfo struct {
	// Name is the action name with Asterisk's spelling, e.g. "GetConfig".
	Name string
	// Class is the write class the action is registered with; 0 means any
	// logged-in user may run it. Authorise with Class.CanWrite: one
	// overlapping bit is enough.
	Class Class
	// Source is the file of the Asterisk tree that registers the action,
	// e.g. "main/manager.c".
	Source string
}

// LookupAction returns the action of Asterisk HEAD named name, matched
// ASCII case-insensitively like Asterisk's action_find (strcasecmp). The
// table is generated from ami-actions.tsv (ami-spec.md §4.8). Whether an
// action exists on a given PBX also depends on the modules it loaded.
// Actions that only older branches have are in LegacyActions, not here.
func LookupAction(name string) (ActionInfo, bool) {
	if i := actionIndex(asciiLower(name)); i >= 0 {
		return actionTable[i], true
	}
	return ActionInfo{}, false
}

// Actions returns every action of Asterisk HEAD in canonical order, the
// order of ami-actions.tsv (alphabetical, ignoring case). The slice is a new
// copy on every call.
func Actions() []ActionInfo {
	return append([]ActionInfo(nil), actionTable[:]...)
}

// legacyActionTable lists the actions of ami-spec.md §4.9: registered by
// supported older branches but no longer in HEAD.
var legacyActionTable = [...]ActionInfo{
	// res_monitor, removed in Asterisk 21.
	{Name: "Monitor", Class: Call, Source: "res/res_monitor.c"},
	{Name: "StopMonitor", Class: Call, Source: "res/res_monitor.c"},
	{Name: "ChangeMonitor", Class: Call, Source: "res/res_monitor.c"},
	{Name: "PauseMonitor", Class: Call, Source: "res/res_monitor.c"},
	{Name: "UnpauseMonitor", Class: Call, Source: "res/res_monitor.c"},
	// chan_sip, removed in Asterisk 21.
	{Name: "SIPpeers", Class: System | Reporting, Source: "channels/chan_sip.c"},
	{Name: "SIPshowpeer", Class: System | Reporting, Source: "channels/chan_sip.c"},
	{Name: "SIPqualifypeer", Class: System | Reporting, Source: "channels/chan_sip.c"},
	{Name: "SIPshowregistry", Class: System | Reporting, Source: "channels/chan_sip.c"},
	{Name: "SIPnotify", Class: System, Source: "channels/chan_sip.c"},
	{Name: "SIPpeerstatus", Class: System, Source: "channels/chan_sip.c"},
	// chan_skinny, removed in Asterisk 21.
	{Name: "SKINNYdevices", Class: System | Reporting, Source: "channels/chan_skinny.c"},
	{Name: "SKINNYshowdevice", Class: System | Reporting, Source: "channels/chan_skinny.c"},
	{Name: "SKINNYlines", Class: System | Reporting, Source: "channels/chan_skinny.c"},
	{Name: "SKINNYshowline", Class: System | Reporting, Source: "channels/chan_skinny.c"},
	// Asterisk 14 and earlier.
	{Name: "Queues", Class: 0, Source: "apps/app_queue.c"},
	{Name: "DataGet", Class: 0, Source: "main/data.c"},
}

// LegacyActions returns the actions that supported older Asterisk branches
// register but HEAD does not (ami-spec.md §4.9): Monitor, StopMonitor,
// ChangeMonitor, PauseMonitor and UnpauseMonitor (class call, up to 20);
// the chan_sip actions SIPpeers, SIPshowpeer, SIPqualifypeer and
// SIPshowregistry (system,reporting) and SIPnotify and SIPpeerstatus
// (system), up to 20; the chan_skinny actions SKINNYdevices,
// SKINNYshowdevice, SKINNYlines and SKINNYshowline (system,reporting), up to
// 20; and Queues and DataGet (no class), up to 14. A proxy in front of such a
// PBX needs their classes to authorise them. The slice is a new copy on
// every call.
func LegacyActions() []ActionInfo {
	return append([]ActionInfo(nil), legacyActionTable[:]...)
}

// LookupLegacyAction is LookupAction for the table of LegacyActions.
func LookupLegacyAction(name string) (ActionInfo, bool) {
	for _, a := range legacyActionTable {
		if asciiEqualFold(a.Name, name) {
			return a, true
		}
	}
	return ActionInfo{}, false
}

// asciiLower lowercases ASCII letters only, allocating only when s has an
// uppercase letter.
func asciiLower(s string) string {
	for i := 0; i < len(s); i++ {
		if 'A' <= s[i] && s[i] <= 'Z' {
			b := []byte(s)
			for j := i; j < len(b); j++ {
				b[j] = lowerASCII(b[j])
			}
			return string(b)
		}
	}
	return s
}
