package policy

import (
	"errors"
	"regexp/syntax"
	"slices"
	"strings"
	"testing"
)

func TestStrHash(t *testing.T) {
	// Values printed by Asterisk's ast_str_hash compiled with gcc on x86-64.
	tests := []struct {
		in   string
		want uint32
	}{
		{"", 5381},
		{"a", 177604}, // 5381*33 ^ 'a'
		{"Hangup", 1236341824},
		{"HangupRequest", 1679088753},
		{"Newchannel", 1754218554},
		{"VarSet", 1153490974},
		{"Local", 218167656},
		{"é", 5859471},          // bytes 0xc3 0xa9, sign-extended
		{"McepAez", 1236341824}, // collides with Hangup (raw hash negated, then abs)
		{"MRwcDlf", 1236341824}, // collides with Hangup (same raw hash)
		{"mGFfAVX", 0},          // raw hash 0
		{"cCXAAjw", 2147483648}, // raw hash INT_MIN: abs(INT_MIN) stays INT_MIN
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			if got := strHash(tt.in); got != tt.want {
				t.Errorf("strHash(%q) = %d, want %d", tt.in, got, tt.want)
			}
		})
	}
}

// filterWant describes a successfully parsed filter.
type filterWant struct {
	exclude bool
	method  Method
	name    string
	header  string
	pattern string
}

func TestParseFilter(t *testing.T) {
	tests := []struct {
		name    string
		key     string
		value   string
		want    filterWant
		reason  FilterReason // 0: success
		crashes bool
	}{
		// The parsing_filter_tests of Asterisk's main/manager.c.
		{"asterisk: legacy", "eventfilter", "XXX", filterWant{method: MethodRegex, pattern: "XXX"}, 0, false},
		{"asterisk: legacy exclude", "eventfilter", "!XXX", filterWant{exclude: true, method: MethodRegex, pattern: "XXX"}, 0, false},
		{"asterisk: name none", "eventfilter(name(VarSet),method(none))", "", filterWant{method: MethodNone, name: "VarSet"}, 0, false},
		{"asterisk: name regex", "eventfilter(name(Newchannel),method(regex))", "X[XYZ]X", filterWant{method: MethodRegex, name: "Newchannel", pattern: "X[XYZ]X"}, 0, false},
		{"asterisk: exclude name regex", "eventfilter(action(exclude),name(Newchannel),method(regex))", "X[XYZ]X", filterWant{exclude: true, method: MethodRegex, name: "Newchannel", pattern: "X[XYZ]X"}, 0, false},
		{"asterisk: starts_with", "eventfilter(action(include),name(VarSet),header(Channel),method(starts_with))", "AB", filterWant{method: MethodStartsWith, name: "VarSet", header: "Channel:", pattern: "AB"}, 0, false},
		{"asterisk: ends_with", "eventfilter(action(include),name(VarSet),header(Channel),method(ends_with))", "BC", filterWant{method: MethodEndsWith, name: "VarSet", header: "Channel:", pattern: "BC"}, 0, false},
		{"asterisk: exact", "eventfilter(action(include),name(VarSet),header(Channel),method(exact))", "ABC", filterWant{method: MethodExact, name: "VarSet", header: "Channel:", pattern: "ABC"}, 0, false},
		{"asterisk: ! makes exclude", "eventfilter(name(VarSet),header(Channel),method(exact))", "!ZZZ", filterWant{exclude: true, method: MethodExact, name: "VarSet", header: "Channel:", pattern: "ZZZ"}, 0, false},
		{"asterisk: action(exclude)", "eventfilter(action(exclude),name(VarSet),header(Channel),method(exact))", "ZZZ", filterWant{exclude: true, method: MethodExact, name: "VarSet", header: "Channel:", pattern: "ZZZ"}, 0, false},
		{"asterisk: action(include) beats !", "eventfilter(action(include),name(VarSet),header(Someheader),method(exact))", "!XXX", filterWant{method: MethodExact, name: "VarSet", header: "Someheader:", pattern: "XXX"}, 0, false},
		{"asterisk: action only", "eventfilter(action(include)", "", filterWant{}, ReasonNoNameOrHeader, false},
		{"asterisk: misspelt action", "eventfilter(action(inlude)", "", filterWant{}, ReasonUnknownAction, false},
		{"asterisk: unknown option", "eventfilter(nnnn(yyy)", "XXX", filterWant{}, ReasonUnknownOption, false},
		{"asterisk: eader", "eventfilter(eader(VarSet)", "XXX", filterWant{}, ReasonUnknownOption, false},
		{"asterisk: ethod", "eventfilter(ethod(contains)", "XXX", filterWant{}, ReasonUnknownOption, false},
		{"asterisk: unknown first option", "eventfilter(nnnn(yyy),header(VarSet),method(contains)", "XXX", filterWant{}, ReasonUnknownOption, false},
		{"asterisk: heder", "eventfilter(name(yyy),heder(VarSet),method(contains)", "XXX", filterWant{}, ReasonUnknownOption, false},
		{"asterisk: mehod", "eventfilter(name(yyy),header(VarSet),mehod(contains)", "XXX", filterWant{}, ReasonUnknownOption, false},
		{"asterisk: coains", "eventfilter(name(yyy),header(VarSet),method(coains)", "XXX", filterWant{}, ReasonUnknownMethod, false},
		{"asterisk: method yyy", "eventfilter(method(yyy))", "XXX", filterWant{}, ReasonUnknownMethod, false},
		{"asterisk: legacy empty", "eventfilter", "", filterWant{}, ReasonLegacyNoPattern, false},
		{"asterisk: legacy bang only", "eventfilter", "!", filterWant{}, ReasonLegacyNoPattern, false},
		{"asterisk: empty parens", "eventfilter()", "XXX", filterWant{}, ReasonNoOptions, false},
		{"asterisk: legacy bad regex", "eventfilter", "XX[X", filterWant{}, ReasonRegexCompile, false},
		{"asterisk: advanced bad regex", "eventfilter(method(regex))", "XX[X", filterWant{}, ReasonRegexCompile, false},

		// The lab's manager.conf.
		{"lab: legacy include", "eventfilter", "Event: Newchannel", filterWant{method: MethodRegex, pattern: "Event: Newchannel"}, 0, false},
		{"lab: legacy exclude", "eventfilter", "!Channel: Local/200@", filterWant{exclude: true, method: MethodRegex, pattern: "Channel: Local/200@"}, 0, false},
		{"lab: name include", "eventfilter(action(include),name(Hangup))", "", filterWant{method: MethodNone, name: "Hangup"}, 0, false},
		{"lab: header exclude", "eventfilter(action(exclude),header(Channel),method(starts_with))", "Local/200@", filterWant{exclude: true, method: MethodStartsWith, header: "Channel:", pattern: "Local/200@"}, 0, false},

		// The key.
		{"key: prefix is enough", "eventfilter-2", "x", filterWant{method: MethodRegex, pattern: "x"}, 0, false},
		{"key: prefix, advanced", "eventfilter_2(name(X))", "", filterWant{method: MethodNone, name: "X"}, 0, false},
		{"key: options after the first (", "eventfilter_a(b(name(X))", "", filterWant{}, ReasonUnknownOption, false},

		// Tokens.
		{"tokens: spaces around commas are fine", "eventfilter(name(X), header(Y))", "", filterWant{method: MethodNone, name: "X", header: "Y:"}, 0, false},
		{"tokens: prefix actionable", "eventfilter(actionable(exclude),name(X))", "", filterWant{exclude: true, method: MethodNone, name: "X"}, 0, false},
		{"tokens: prefix names", "eventfilter(names(X))", "", filterWant{method: MethodNone, name: "X"}, 0, false},
		{"tokens: last name wins", "eventfilter(name(X),name(Y))", "", filterWant{method: MethodNone, name: "Y"}, 0, false},
		{"tokens: trailing tab trimmed", "eventfilter(name(X\t))", "", filterWant{method: MethodNone, name: "X"}, 0, false},
		{"tokens: leading tab kept", "eventfilter(name(\tX))", "", filterWant{method: MethodNone, name: "\tX"}, 0, false},
		{"tokens: value after first (", "eventfilter(name(a(b))", "", filterWant{method: MethodNone, name: "a(b"}, 0, false},
		{"tokens: unbalanced but ends in )", "eventfilter(name(X)", "", filterWant{method: MethodNone, name: "X"}, 0, false},
		{"tokens: header keeps its colon", "eventfilter(header(Channel:))", "", filterWant{method: MethodNone, header: "Channel:"}, 0, false},
		{"tokens: header alone", "eventfilter(header(Channel))", "", filterWant{method: MethodNone, header: "Channel:"}, 0, false},
		{"tokens: leading tab token is unknown", "eventfilter(\tname(X))", "", filterWant{}, ReasonUnknownOption, false},

		// ! and action().
		{"bang: empty advanced pattern", "eventfilter(name(X))", "!", filterWant{exclude: true, method: MethodNone, name: "X"}, 0, false},
		{"bang: action(include) wins", "eventfilter(action(include),name(X))", "!", filterWant{method: MethodNone, name: "X"}, 0, false},
		{"bang: only the first", "eventfilter", "!!x", filterWant{exclude: true, method: MethodRegex, pattern: "!x"}, 0, false},

		// Every validation error of §5.3.
		{"error: options not closed", "eventfilter(name(X)x", "", filterWant{}, ReasonOptionsFormat, false},
		{"error: options empty", "eventfilter(", "", filterWant{}, ReasonOptionsFormat, false},
		{"error: options blank", "eventfilter( \t", "", filterWant{}, ReasonOptionsFormat, false},
		{"error: action without (", "eventfilter(action)", "x", filterWant{}, ReasonActionFormat, false},
		{"error: action empty", "eventfilter(action(),name(X))", "", filterWant{}, ReasonUnknownAction, false},
		{"error: action case", "eventfilter(action(Include),name(X))", "", filterWant{}, ReasonUnknownAction, false},
		{"error: name without ( crashes Asterisk", "eventfilter(name)", "", filterWant{}, ReasonNameFormat, true},
		{"error: name, space, (", "eventfilter(name (Newchannel))", "", filterWant{}, ReasonNameFormat, true},
		{"error: name empty", "eventfilter(name())", "", filterWant{}, ReasonNameFormat, false},
		{"error: name split by spaces", "eventfilter(name( X ))", "", filterWant{}, ReasonNameFormat, false},
		{"error: header without ( crashes Asterisk", "eventfilter(header)", "x", filterWant{}, ReasonHeaderFormat, true},
		{"error: header empty", "eventfilter(header())", "x", filterWant{}, ReasonHeaderFormat, false},
		{"error: method without ( crashes Asterisk", "eventfilter(name(X),method)", "x", filterWant{}, ReasonMethodFormat, true},
		{"error: method empty", "eventfilter(name(X),method())", "x", filterWant{}, ReasonMethodFormat, false},
		{"error: method case", "eventfilter(name(X),method(Regex))", "x", filterWant{}, ReasonUnknownMethod, false},
		{"error: method as the XML docs spell it", "eventfilter(name(X),method(startsWith))", "x", filterWant{}, ReasonUnknownMethod, false},
		{"error: method needs a pattern", "eventfilter(name(X),method(exact))", "", filterWant{}, ReasonPatternRequired, false},
		{"error: regex needs a pattern", "eventfilter(name(X),method(regex))", "!", filterWant{}, ReasonPatternRequired, false},
		{"error: none with a pattern", "eventfilter(name(X))", "abc", filterWant{}, ReasonPatternNotAllowed, false},
		{"error: explicit none with a pattern", "eventfilter(name(X),method(none))", "abc", filterWant{}, ReasonPatternNotAllowed, false},
		{"error: no name or header", "eventfilter(action(exclude))", "", filterWant{}, ReasonNoNameOrHeader, false},
		{"error: method none alone", "eventfilter(method(none))", "", filterWant{}, ReasonNoNameOrHeader, false},
		{"error: regex compile", "eventfilter(name(X),method(regex))", "(a", filterWant{}, ReasonRegexCompile, false},
		{"error: regex repeat", "eventfilter", "*Hangup", filterWant{}, ReasonRegexCompile, false},
		{"error: regex back-reference unsupported", "eventfilter", `(a)\1`, filterWant{}, ReasonRegexUnsupported, false},
		{"error: regex word edge unsupported", "eventfilter", `\<Hangup\>`, filterWant{}, ReasonRegexUnsupported, false},

		// Methods on the whole event.
		{"whole text: contains", "eventfilter(method(contains),name(X))", "y", filterWant{method: MethodContains, name: "X", pattern: "y"}, 0, false},
		{"whole text: regex without name", "eventfilter(method(regex))", "y", filterWant{method: MethodRegex, pattern: "y"}, 0, false},

		// C strings.
		{"NUL ends the value", "eventfilter", "x\x00y", filterWant{method: MethodRegex, pattern: "x"}, 0, false},
		{"NUL ends the key", "eventfilter\x00(name(X))", "x", filterWant{method: MethodRegex, pattern: "x"}, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := ParseFilter(tt.key, tt.value)
			if tt.reason != 0 {
				checkFilterError(t, "ParseFilter", tt.key, tt.value, err, tt.reason, tt.crashes)
				return
			}
			if err != nil {
				t.Fatalf("ParseFilter(%q, %q) = %v, want success", tt.key, tt.value, err)
			}
			got := filterWant{f.Exclude(), f.Method(), f.Name(), f.Header(), f.Pattern()}
			if got != tt.want {
				t.Errorf("ParseFilter(%q, %q) = %+v, want %+v", tt.key, tt.value, got, tt.want)
			}
		})
	}
}

func checkFilterError(t *testing.T, fn, a, b string, err error, reason FilterReason, crashes bool) {
	t.Helper()
	var fe *FilterError
	if !errors.As(err, &fe) {
		t.Fatalf("%s(%q, %q) = %v, want a *FilterError (%v)", fn, a, b, err, reason)
	}
	if fe.Reason != reason || fe.AsteriskCrashes != crashes {
		t.Errorf("%s(%q, %q) = %v (crashes %v), want %v (crashes %v)", fn, a, b, fe.Reason, fe.AsteriskCrashes, reason, crashes)
	}
	want := ErrFilterFormat
	switch reason {
	case ReasonRegexCompile:
		want = ErrFilterCompile
	case ReasonRegexUnsupported:
		want = ErrFilterUnsupported
	}
	for _, sentinel := range []error{ErrFilterFormat, ErrFilterCompile, ErrFilterUnsupported} {
		if got := errors.Is(err, sentinel); got != (sentinel == want) {
			t.Errorf("errors.Is(%v, %v) = %v", err, sentinel, got)
		}
	}
	if !strings.HasPrefix(err.Error(), "policy: ") {
		t.Errorf("error %q does not start with the package name", err)
	}
}

func TestParseFilterNotAFilterKey(t *testing.T) {
	for _, key := range []string{"EventFilter", "Eventfilter(name(X))", "event_filter", "", " eventfilter"} {
		t.Run(key, func(t *testing.T) {
			_, err := ParseFilter(key, "x")
			if !errors.Is(err, ErrNotFilterKey) {
				t.Errorf("ParseFilter(%q, %q) = %v, want %v", key, "x", err, ErrNotFilterKey)
			}
		})
	}
}

func TestParseFilterAction(t *testing.T) {
	tests := []struct {
		name     string
		filter   string
		criteria string
		want     filterWant
		reason   FilterReason
		crashes  bool
	}{
		{"legacy", "Event: Hangup", "", filterWant{method: MethodRegex, pattern: "Event: Hangup"}, 0, false},
		{"legacy exclude", "!Event: Hangup", "", filterWant{exclude: true, method: MethodRegex, pattern: "Event: Hangup"}, 0, false},
		{"empty Filter is a format error", "", "", filterWant{}, ReasonLegacyNoPattern, false},
		{"name", "", "name(Hangup)", filterWant{method: MethodNone, name: "Hangup"}, 0, false},
		{"name, missing )", "", "name(Hangup", filterWant{method: MethodNone, name: "Hangup"}, 0, false},
		{"header starts_with", "Local/200@", "action(exclude),header(Channel),method(starts_with)", filterWant{exclude: true, method: MethodStartsWith, header: "Channel:", pattern: "Local/200@"}, 0, false},
		{"crash: bare name", "", "name", filterWant{}, ReasonNameFormat, true},
		{"crash: name (Hangup)", "", "name (Hangup)", filterWant{}, ReasonNameFormat, true},
		{"crash: bare header", "x", "header", filterWant{}, ReasonHeaderFormat, true},
		{"crash: bare method", "x", "name(X),method", filterWant{}, ReasonMethodFormat, true},
		{"bare action is an error", "x", "action", filterWant{}, ReasonActionFormat, false},
		{"docs spelling", "x", "method(startsWith),header(Channel)", filterWant{}, ReasonUnknownMethod, false},
		{"exclude everything is refused", "", "action(exclude)", filterWant{}, ReasonNoNameOrHeader, false},
		{"compile", "XX[X", "", filterWant{}, ReasonRegexCompile, false},
		{"stray ( after the criteria", "", "name(X))(", filterWant{}, ReasonUnknownOption, false},
		{"blank criteria", "", " ", filterWant{}, ReasonNoOptions, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := ParseFilterAction(tt.filter, tt.criteria)
			if tt.reason != 0 {
				checkFilterError(t, "ParseFilterAction", tt.filter, tt.criteria, err, tt.reason, tt.crashes)
				return
			}
			if err != nil {
				t.Fatalf("ParseFilterAction(%q, %q) = %v, want success", tt.filter, tt.criteria, err)
			}
			got := filterWant{f.Exclude(), f.Method(), f.Name(), f.Header(), f.Pattern()}
			if got != tt.want {
				t.Errorf("ParseFilterAction(%q, %q) = %+v, want %+v", tt.filter, tt.criteria, got, tt.want)
			}
		})
	}
}

const (
	// The test events of Asterisk's eventfilter_test_creation.
	asteriskNewchannel = "Event: Newchannel\r\nChannel: XXX\r\nSomeheader: YYY\r\n"
	asteriskVarSet     = "Event: VarSet\r\nChannel: ABC\r\nSomeheader: XXX\r\n"

	evNewchannel = "Event: Newchannel\r\nPrivilege: call,all\r\nChannel: Local/200@lab-0000000b;1\r\n" +
		"DestChannel: Local/300@lab-0000000c;1\r\nAccountCode: \r\nExten:    100\r\nCallerIDName: Zo\xc3\xab\r\n" +
		"Value: 42 \r\n\r\n"
	evDigits = "Event: UserEvent\r\nPrivilege: user,all\r\nValue: 42\r\n\r\n"
	evLetter = "Event: UserEvent\r\nPrivilege: user,all\r\nUserEvent: digits\r\n\r\n"
	evHangup = "Event: Hangup\r\nPrivilege: call,all\r\nChannel: Local/100@lab-00000001;2\r\n\r\n"
	evOddKey = "Event: McepAez\r\nPrivilege: call,all\r\n\r\n"
)

func TestFilterMatch(t *testing.T) {
	tests := []struct {
		name  string
		key   string
		value string
		event string
		want  bool
	}{
		// Asterisk's own expectations (should_send_event of one filter).
		{"asterisk: legacy", "eventfilter", "XXX", asteriskNewchannel, true},
		{"asterisk: name regex", "eventfilter(name(Newchannel),method(regex))", "X[XYZ]X", asteriskNewchannel, true},
		{"asterisk: name regex no match", "eventfilter(name(Newchannel),method(regex))", "X[abc]X", asteriskNewchannel, false},
		{"asterisk: name none", "eventfilter(name(VarSet),method(none))", "", asteriskVarSet, true},
		{"asterisk: starts_with", "eventfilter(action(include),name(VarSet),header(Channel),method(starts_with))", "AB", asteriskVarSet, true},
		{"asterisk: ends_with", "eventfilter(action(include),name(VarSet),header(Channel),method(ends_with))", "BC", asteriskVarSet, true},
		{"asterisk: exact", "eventfilter(action(include),name(VarSet),header(Channel),method(exact))", "ABC", asteriskVarSet, true},
		{"asterisk: exact no match", "eventfilter(action(include),name(VarSet),header(Channel),method(exact))", "XXX", asteriskVarSet, false},
		{"asterisk: other header", "eventfilter(action(include),name(VarSet),header(Someheader),method(exact))", "!XXX", asteriskVarSet, true},

		// Legacy regexes over the whole text (§5.2).
		{"legacy: substring", "eventfilter", "Event: Newchannel", evNewchannel, true},
		{"legacy: whitespace matters", "eventfilter", "Event:Newchannel", evNewchannel, false},
		{"legacy: ^ is the start of the text", "eventfilter", "^Channel:", evNewchannel, false},
		{"legacy: ^ at the start", "eventfilter", "^Event: Newchannel", evNewchannel, true},
		{"legacy: . crosses lines", "eventfilter", "Event: Newchannel.*Channel: Local/", evNewchannel, true},
		{"legacy: $ is the end of the text", "eventfilter", "Newchannel$", evNewchannel, false},
		{"legacy: case-sensitive", "eventfilter", "event: newchannel", evNewchannel, false},
		{"legacy: Hangup also matches HangupRequest", "eventfilter", "Event: Hangup", "Event: HangupRequest\r\n\r\n", true},
		{"legacy: \\r is the letter r", "eventfilter", `Event: Hangup\r`, "Event: Hangup\r\n\r\n", false},
		{"legacy: \\r is the letter r (match)", "eventfilter", `Event: Hangup\r`, "Event: Hangupr\r\n\r\n", true},
		{"legacy: \\d is the letter d", "eventfilter", `\d`, evLetter, true},
		{"legacy: \\d is not a digit", "eventfilter", `\d`, evDigits, false},
		{"legacy: [[:digit:]]", "eventfilter", `Value: [[:digit:]]+`, evDigits, true},
		{"legacy: \\b", "eventfilter", `\bHangup\b`, evHangup, true},
		{"legacy: consumed newline satisfies ^", "eventfilter", `call,all..^Channel: Local/200`, evNewchannel, true},
		{"legacy: unconsumed newline does not", "eventfilter", `call,all.^Channel`, evNewchannel, false},
		{"legacy: ! exclude still matches", "eventfilter", "!Channel: Local/200@", evNewchannel, true},
		{"legacy: DestChannel contains Channel", "eventfilter", "Channel: Local/300@", evNewchannel, true},

		// Advanced filters (§5.3).
		{"name: exact name", "eventfilter(name(Newchannel))", "", evNewchannel, true},
		{"name: case-sensitive", "eventfilter(name(newchannel))", "", evNewchannel, false},
		{"name: no prefix match", "eventfilter(name(Hangup))", "", "Event: HangupRequest\r\n\r\n", false},
		{"name: hash collision matches", "eventfilter(name(McepAez))", "", evHangup, true},
		{"name: hash collision, other way", "eventfilter(name(Hangup))", "", evOddKey, true},
		{"name: hash 0 disables the check", "eventfilter(name(mGFfAVX))", "", evNewchannel, true},
		{"name: INT_MIN hash is checked", "eventfilter(name(cCXAAjw))", "", evNewchannel, false},
		{"name: leading blank kept", "eventfilter(name(\tNewchannel))", "", evNewchannel, false},
		{"header: starts_with", "eventfilter(header(Channel),method(starts_with))", "Local/200@", evNewchannel, true},
		{"header: DestChannel is not Channel", "eventfilter(header(Channel),method(exact))", "Local/300@lab-0000000c;1", evNewchannel, false},
		{"header: DestChannel", "eventfilter(header(DestChannel),method(exact))", "Local/300@lab-0000000c;1", evNewchannel, true},
		{"header: blanks after the colon skipped", "eventfilter(header(Exten),method(exact))", "100", evNewchannel, true},
		{"header: trailing blank kept", "eventfilter(header(Value),method(exact))", "42", evNewchannel, false},
		{"header: trailing blank kept (match)", "eventfilter(header(Value),method(ends_with))", "2 ", evNewchannel, true},
		{"header: empty value skipped", "eventfilter(header(AccountCode))", "", evNewchannel, false},
		{"header: present", "eventfilter(header(CallerIDName))", "", evNewchannel, true},
		{"header: missing", "eventfilter(header(Cause))", "", evNewchannel, false},
		{"header: case-sensitive", "eventfilter(header(channel))", "", evNewchannel, false},
		{"header: regex anchored to the value", "eventfilter(header(Exten),method(regex))", "^100$", evNewchannel, true},
		{"header: regex . is one byte", "eventfilter(header(CallerIDName),method(regex))", "^Zo.$", evNewchannel, false},
		{"header: regex .. is two bytes", "eventfilter(header(CallerIDName),method(regex))", "^Zo..$", evNewchannel, true},
		{"header: with name", "eventfilter(name(Newchannel),header(Channel),method(contains))", "200", evNewchannel, true},
		{"header: with other name", "eventfilter(name(Hangup),header(Channel),method(contains))", "200", evNewchannel, false},
		{"header: second line matches", "eventfilter(header(X),method(exact))", "2", "Event: E\r\nX: 1\r\nX: 2\r\n\r\n", true},
		{"header: bare LF lines", "eventfilter(header(X),method(exact))", "2", "Event: E\nX: 1\nX: 2\n\n", true},
		{"header: CR kept before CR LF", "eventfilter(header(X),method(exact))", "2", "Event: E\r\nX: 2\r\r\n\r\n", false},
		{"header: last line without LF loses CR", "eventfilter(header(X),method(exact))", "2", "Event: E\r\nX: 2\r", true},
		{"whole: contains", "eventfilter(name(Newchannel),method(contains))", "Local/200", evNewchannel, true},
		{"whole: starts_with", "eventfilter(name(Newchannel),method(starts_with))", "Event: New", evNewchannel, true},
		{"whole: ends_with sees the blank line", "eventfilter(name(Newchannel),method(ends_with))", "42 \r\n\r\n", evNewchannel, true},
		{"whole: exact", "eventfilter(name(Hangup),method(exact))", evHangup, evHangup, true},
		{"NUL ends the event", "eventfilter", "Exten", "Event: X\r\n\x00Exten: 1\r\n\r\n", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := ParseFilter(tt.key, tt.value)
			if err != nil {
				t.Fatalf("ParseFilter(%q, %q) = %v", tt.key, tt.value, err)
			}
			if got := f.Match(tt.event); got != tt.want {
				t.Errorf("ParseFilter(%q, %q).Match(%q) = %v, want %v", tt.key, tt.value, tt.event, got, tt.want)
			}
		})
	}
}

func TestZeroValues(t *testing.T) {
	var f Filter
	if !f.Match(evNewchannel) || f.Exclude() {
		t.Errorf("zero Filter: Match = %v, Exclude = %v, want true, false", f.Match(evNewchannel), f.Exclude())
	}
	var s FilterSet
	if !s.Allows(evNewchannel) || s.Len() != 0 {
		t.Errorf("zero FilterSet: Allows = %v, Len = %d, want true, 0", s.Allows(evNewchannel), s.Len())
	}
}

func TestFilterSetAllows(t *testing.T) {
	incA := mustFilter(t, "eventfilter(name(A))", "")
	incB := mustFilter(t, "eventfilter(name(B))", "")
	excX := mustFilter(t, "eventfilter(header(X),method(exact))", "!1")
	excC := mustFilter(t, "eventfilter", "!Event: C")
	const (
		a  = "Event: A\r\nX: 0\r\n\r\n"
		aX = "Event: A\r\nX: 1\r\n\r\n"
		b  = "Event: B\r\nX: 0\r\n\r\n"
		bX = "Event: B\r\nX: 1\r\n\r\n"
		c  = "Event: C\r\nX: 0\r\n\r\n"
	)
	tests := []struct {
		name    string
		filters []Filter
		want    map[string]bool
	}{
		{"no filters: everything", nil, map[string]bool{a: true, aX: true, b: true, bX: true, c: true}},
		{"include only: any include", []Filter{incA, incB}, map[string]bool{a: true, aX: true, b: true, bX: true, c: false}},
		{"one include", []Filter{incA}, map[string]bool{a: true, aX: true, b: false, bX: false, c: false}},
		{"exclude only: no exclude", []Filter{excX, excC}, map[string]bool{a: true, aX: false, b: true, bX: false, c: false}},
		{"both: an include and no exclude", []Filter{incA, excX}, map[string]bool{a: true, aX: false, b: false, bX: false, c: false}},
		{"both, more", []Filter{excC, incB, excX, incA}, map[string]bool{a: true, aX: false, b: true, bX: false, c: false}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Order never matters.
			for _, filters := range [][]Filter{tt.filters, reversed(tt.filters)} {
				s := NewFilterSet(filters...)
				for ev, want := range tt.want {
					if got := s.Allows(ev); got != want {
						t.Errorf("NewFilterSet(%v).Allows(%q) = %v, want %v", filters, ev, got, want)
					}
				}
			}
		})
	}
}

func TestFilterSetWith(t *testing.T) {
	incA := mustFilter(t, "eventfilter(name(A))", "")
	incB := mustFilter(t, "eventfilter(name(B))", "")
	const a, b = "Event: A\r\n\r\n", "Event: B\r\n\r\n"
	base := NewFilterSet()
	narrowed := base.With(incA)
	widened := narrowed.With(incB)
	if !base.Allows(b) || base.Len() != 0 {
		t.Errorf("base changed: Allows(B) = %v, Len = %d", base.Allows(b), base.Len())
	}
	if narrowed.Allows(b) || !narrowed.Allows(a) || narrowed.Len() != 1 {
		t.Errorf("first include narrows: Allows(A) = %v, Allows(B) = %v", narrowed.Allows(a), narrowed.Allows(b))
	}
	if !widened.Allows(b) || !widened.Allows(a) || widened.Len() != 2 {
		t.Errorf("second include widens: Allows(A) = %v, Allows(B) = %v", widened.Allows(a), widened.Allows(b))
	}
	// Sibling sets built from one parent must not share storage.
	x := narrowed.With(incB)
	y := narrowed.With(mustFilter(t, "eventfilter(name(C))", ""))
	if !x.Allows(b) || y.Allows(b) {
		t.Errorf("sibling sets share storage: x.Allows(B) = %v, y.Allows(B) = %v", x.Allows(b), y.Allows(b))
	}
	if got := widened.Filters(); len(got) != 2 || got[0].Name() != "A" || got[1].Name() != "B" {
		t.Errorf("Filters() = %v", got)
	}
}

// labFilters holds the eventfilter lines of the lab's manager.conf
// (../shared/asterisk-transcripts/config/manager.conf).
var labFilters = map[string][][2]string{
	"filtered": {
		{"eventfilter", "Event: Newchannel"},
		{"eventfilter", "Event: Hangup"},
		{"eventfilter", "!Channel: Local/200@"},
	},
	"filtadv": {
		{"eventfilter(action(include),name(Newchannel))", ""},
		{"eventfilter(action(include),name(Hangup))", ""},
		{"eventfilter(action(exclude),header(Channel),method(starts_with))", "Local/200@"},
	},
}

// TestEventfilterTranscripts replays tcp-eventfilter-legacy.txt and
// tcp-eventfilter-advanced.txt. The input is the complete event stream of
// an async Originate of Local/100@lab recorded for admin
// (tcp-originate-async-events.txt, the same scenario); Asterisk delivered to
// 'filtered' exactly Newchannel x2, HangupRequest, Hangup x2 and to 'filtadv'
// Newchannel x2, Hangup x2, and nothing for the Local/200@lab call. The
// events they actually received must all pass, and FullyBooted, which
// Asterisk writes straight to the session, would not have.
func TestEventfilterTranscripts(t *testing.T) {
	stream := loadEvents(t, "originate-local100-admin.txt")
	if EventName(stream[0]) != "FullyBooted" {
		t.Fatalf("first event is %q, want FullyBooted", EventName(stream[0]))
	}
	stream = stream[1:] // written directly after Login, never filtered
	var local200 []string
	for _, ev := range stream {
		local200 = append(local200, strings.ReplaceAll(ev, "Local/100@lab", "Local/200@lab"))
	}
	tests := []struct {
		user      string
		delivered string
		want      []string
	}{
		{"filtered", "filtered-delivered.txt", []string{"Newchannel", "Newchannel", "HangupRequest", "Hangup", "Hangup"}},
		{"filtadv", "filtadv-delivered.txt", []string{"Newchannel", "Newchannel", "Hangup", "Hangup"}},
	}
	for _, tt := range tests {
		t.Run(tt.user, func(t *testing.T) {
			var filters []Filter
			for _, kv := range labFilters[tt.user] {
				filters = append(filters, mustFilter(t, kv[0], kv[1]))
			}
			set := NewFilterSet(filters...)
			var got []string
			for _, ev := range stream {
				if set.Allows(ev) {
					got = append(got, EventName(ev))
				}
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("%s receives %q, Asterisk delivered %q", tt.user, got, tt.want)
			}
			for _, ev := range local200 {
				if set.Allows(ev) {
					t.Errorf("%s receives %s for Local/200@lab, Asterisk delivered nothing", tt.user, EventName(ev))
				}
			}
			var names []string
			for _, ev := range loadEvents(t, tt.delivered) {
				names = append(names, EventName(ev))
				if !set.Allows(ev) {
					t.Errorf("%s: Allows(%s) = false, but Asterisk delivered:\n%s", tt.user, EventName(ev), ev)
				}
			}
			if !slices.Equal(names, tt.want) {
				t.Errorf("%s: testdata holds %q, want %q", tt.delivered, names, tt.want)
			}
			for _, ev := range loadEvents(t, "filtered-fullybooted.txt") {
				if set.Allows(ev) {
					t.Errorf("%s: Allows(FullyBooted) = true; Asterisk bypasses the filters for it, it does not pass them", tt.user)
				}
			}
		})
	}
}

func TestEventName(t *testing.T) {
	tests := []struct {
		in, want string
	}{
		{evNewchannel, "Newchannel"},
		{"Event: Hangup\n\n", "Hangup"},
		{"Event:Hangup\r\n", "Hangup"},
		{"Response: Success\r\nEvent: X\r\n\r\n", "X"},
		{"UserEvent: X\r\n\r\n", ""},
		{"event: X\r\n", ""},
		{"", ""},
	}
	for _, tt := range tests {
		if got := EventName(tt.in); got != tt.want {
			t.Errorf("EventName(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestFilterString(t *testing.T) {
	f := mustFilter(t, "eventfilter(action(exclude),header(Channel),method(starts_with))", "Local/200@")
	if got, want := f.String(), "eventfilter(action(exclude),header(Channel),method(starts_with)) = Local/200@"; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
	if got := MethodStartsWith.String(); got != "starts_with" {
		t.Errorf("MethodStartsWith.String() = %q", got)
	}
	if got := ReasonNoOptions.String(); got == "" || strings.HasPrefix(got, "FilterReason(") {
		t.Errorf("ReasonNoOptions.String() = %q", got)
	}
}

func mustFilter(t testing.TB, key, value string) Filter {
	t.Helper()
	f, err := ParseFilter(key, value)
	if err != nil {
		t.Fatalf("ParseFilter(%q, %q) = %v", key, value, err)
	}
	return f
}

func reversed(fs []Filter) []Filter {
	out := slices.Clone(fs)
	slices.Reverse(out)
	return out
}

func FuzzParseFilter(f *testing.F) {
	f.Add("eventfilter", "Event: Newchannel", evNewchannel)
	f.Add("eventfilter(action(exclude),header(Channel),method(starts_with))", "Local/200@", evNewchannel)
	f.Add("eventfilter(name(Hangup))", "", evHangup)
	f.Add("eventfilter(name (Hangup))", "", evHangup)
	f.Add("eventfilter", `(a|\n)^b*{2,3}[[:alpha:]-]`, "a\nbbb-")
	f.Fuzz(func(t *testing.T, key, value, event string) {
		check := func(fl Filter, err error) {
			if err != nil {
				var fe *FilterError
				switch {
				case errors.As(err, &fe):
					var se *syntax.Error
					if fe.Reason == ReasonRegexUnsupported && errors.As(err, &se) && !isRE2Limit(err) {
						t.Fatalf("pattern %q translated to invalid RE2: %v", value, err)
					}
				case !errors.Is(err, ErrNotFilterKey):
					t.Fatalf("unexpected error type %T: %v", err, err)
				}
				return
			}
			_ = fl.Match(event)
			_ = NewFilterSet(fl, fl).Allows(event)
			_ = fl.String()
		}
		check(ParseFilter(key, value))
		check(ParseFilterAction(value, key))
		check(ParseFilter("eventfilter", value))
	})
}

// benchEvent is a typical Newchannel-sized event: 20 headers.
const benchEvent = "Event: Newchannel\r\nPrivilege: call,all\r\nChannel: PJSIP/alice-00000a1b\r\n" +
	"ChannelState: 4\r\nChannelStateDesc: Ring\r\nCallerIDNum: 2001\r\nCallerIDName: Alice\r\n" +
	"ConnectedLineNum: <unknown>\r\nConnectedLineName: <unknown>\r\nLanguage: en\r\nAccountCode: \r\n" +
	"Context: from-internal\r\nExten: 2002\r\nPriority: 1\r\nUniqueid: 1795364819.20\r\n" +
	"Linkedid: 1795364819.20\r\nSystemName: pbx1\r\nTimestamp: 1795364819.123456\r\n" +
	"Tenant: acme\r\nQueue: support\r\n\r\n"

func BenchmarkFilterSetAllows(b *testing.B) {
	for _, user := range []string{"filtered", "filtadv"} {
		b.Run(user, func(b *testing.B) {
			var filters []Filter
			for _, kv := range labFilters[user] {
				filters = append(filters, mustFilter(b, kv[0], kv[1]))
			}
			set := NewFilterSet(filters...)
			if !set.Allows(benchEvent) {
				b.Fatal("benchEvent not allowed")
			}
			b.ReportAllocs()
			for b.Loop() {
				set.Allows(benchEvent)
			}
		})
	}
}
