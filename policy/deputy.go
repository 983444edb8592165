package policy

import (
	"strings"

	"github.com/amiproxy/amiproxy/rawman"
)

// The confused-deputy checks (ami-spec.md §4.10). Asterisk checks these
// against the write mask of the session that sends the action, which behind
// the proxy is the proxy's own service account; so the proxy must check them
// against the end user's write mask, or any user allowed to Originate could
// run System(). Only checks that are cheap and certain are made here. Where
// Asterisk's parsing is intricate the check over-approximates: it may deny
// what Asterisk would allow, never the reverse.

// originateAppTerms are the application names of is_originate_app_permitted
// that need write system: a case-insensitive substring of Application.
var originateAppTerms = [...]string{"agi", "dbdeltree", "exec", "externalivr", "mixmonitor", "originate", "reload", "system"}

// originateDataTerms are the words of Data that need write system: a
// case-sensitive substring (dialplan functions that reach the shell, files
// or databases).
var originateDataTerms = [...]string{"CURL", "DB", "EVAL", "FILE", "ODBC", "REALTIME", "SHELL"}

// varDangerTerms are the words that make Getvar's Variable and Status's
// Variables need write system (AST-2012-004), case-sensitive.
var varDangerTerms = [...]string{"SHELL", "EVAL"}

// checkDeputy applies the checks to an action that the other rules allow.
// key is the lowercase action name and write the subject's write mask on
// the PBX. It returns the denial and true if a check refuses the action.
//
// Unlike Asterisk, which lets the first matching deny-list entry decide,
// every matching entry must be satisfied: stricter, and independent of the
// list's order.
func checkDeputy(key string, a rawman.Message, write Class) (Decision, bool) {
	hasSystem := write&System != 0
	switch key {
	case "originate":
		if hasSystem {
			return Decision{}, false
		}
		// Asterisk reads the first Application and Data (astman_get_header)
		// and checks only when Application is not empty.
		if app := a.Get("Application"); app != "" {
			lower := asciiLower(app)
			for _, t := range originateAppTerms {
				if strings.Contains(lower, t) {
					return deny("asterisk: Originate Application " + clip(app) + " needs write system"), true
				}
			}
			data := a.Get("Data")
			for _, t := range originateDataTerms {
				if strings.Contains(data, t) {
					return deny("asterisk: Originate Data with " + t + " needs write system"), true
				}
			}
			if strings.Contains(lower, "queue") && write&AGI == 0 && queueAGIArg(data) {
				return deny("asterisk: Originate Application " + clip(app) + " with an AGI argument needs write agi or system"), true
			}
		}
		// Variable: FUNC(args)=value writes through a dialplan function,
		// possibly on an Async thread that is not escalation-inhibited.
		for _, v := range a.Values("Variable") {
			if variableNamesFunction(v) {
				return deny("asterisk: Originate Variable naming a function needs write system"), true
			}
		}
	case "getvar", "status":
		if hasSystem {
			return Decision{}, false
		}
		header, action := "Variable", "Getvar"
		if key == "status" {
			header, action = "Variables", "Status"
		}
		// Asterisk reads the first header; every one is checked here.
		for _, v := range a.Values(header) {
			for _, t := range varDangerTerms {
				if strings.Contains(v, t) {
					return deny("asterisk: " + action + " " + header + " with " + t + " needs write system"), true
				}
			}
		}
	case "updateconfig":
		// Reload: yes reloads every module, Reload: <module> one, with
		// write config only (ami-spec.md §4.10): a proxy hardening, not an
		// Asterisk check.
		if r := a.Get("Reload"); !hasSystem && r != "" && !astFalse(r) {
			return deny("default: UpdateConfig with Reload needs write system"), true
		}
	case "filter":
		// Filter can widen the eventfilters of the configuration (§5.5).
		if !hasSystem {
			return deny("asterisk: Filter needs write system"), true
		}
	}
	return Decision{}, false
}

// queueAGIArg reports whether the 6th argument of Queue's data (the AGI
// to run) may be non-empty. Without quotes, brackets or backslashes
// Asterisk's ast_app_separate_args is a plain split on commas and the answer
// is exact (a blank argument counts as non-empty); otherwise it is true
// whenever some byte other than a comma follows the 5th comma, which covers
// every way Asterisk could read a non-empty 6th argument.
func queueAGIArg(data string) bool {
	if !strings.ContainsAny(data, "\"'()[]{}\\") {
		args := strings.Split(data, ",")
		return len(args) >= 6 && args[5] != ""
	}
	rest := data
	for range 5 {
		i := strings.IndexByte(rest, ',')
		if i < 0 {
			return false
		}
		rest = rest[i+1:]
	}
	return strings.Trim(rest, ",") != ""
}

// variableNamesFunction reports whether an Originate Variable header may
// set a dialplan function: whether some comma-separated item has "(" in the
// name before its first "=". Splitting on every comma, quotes ignored,
// finds every name Asterisk's argument parser could see, and more.
func variableNamesFunction(v string) bool {
	for item := range strings.SplitSeq(v, ",") {
		name, _, _ := strings.Cut(item, "=")
		if strings.Contains(name, "(") {
			return true
		}
	}
	return false
}
