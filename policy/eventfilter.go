package policy

import (
	"errors"
	"fmt"
	"strings"
)

// Errors of ParseFilter and ParseFilterAction. A *FilterError wraps exactly
// one of ErrFilterFormat, ErrFilterCompile and ErrFilterUnsupported.
var (
	// ErrNotFilterKey reports a manager.conf key that does not begin with
	// "eventfilter" (case-sensitive). Asterisk 22.1 and later ignore such a
	// line silently, including the "EventFilter" spelling older versions
	// accepted.
	ErrNotFilterKey = errors.New("policy: not an eventfilter key")

	// ErrFilterFormat is Asterisk's FILTER_FORMAT_ERROR. The Filter action
	// answers it with "Filter was formatted incorrectly.  Check the syntax of
	// the filter given."
	ErrFilterFormat = errors.New("policy: eventfilter formatted incorrectly")

	// ErrFilterCompile is Asterisk's FILTER_COMPILE_FAIL: glibc's regcomp
	// refuses the pattern. The Filter action answers it with "Filter did not
	// compile.  Check the syntax of the filter given."
	ErrFilterCompile = errors.New("policy: eventfilter regex did not compile")

	// ErrFilterUnsupported reports a regex that Asterisk accepts but whose
	// meaning this package cannot reproduce exactly in Go (a back-reference,
	// \< or \>, a bound above 1000; see posixre.go). Refusing is the safe choice for a proxy; a simulator
	// should say it cannot mimic the PBX here.
	ErrFilterUnsupported = errors.New("policy: eventfilter regex has no exact Go equivalent")
)

// FilterReason says which of Asterisk's checks (manager_add_filter) refused
// a filter.
type FilterReason uint8

// The checks of manager_add_filter, in the order Asterisk runs them.
const (
	// ReasonLegacyNoPattern: a legacy filter (key without "(") has an empty
	// pattern, or a pattern that was only "!". Also an empty Filter header
	// in the Filter action.
	ReasonLegacyNoPattern FilterReason = iota + 1
	// ReasonOptionsFormat: the text after the first "(" of the key is
	// empty or does not end in ")".
	ReasonOptionsFormat
	// ReasonActionFormat: an action token has no "(".
	ReasonActionFormat
	// ReasonUnknownAction: action(...) is neither "include" nor "exclude".
	ReasonUnknownAction
	// ReasonNameFormat: a name token has no "(" (Asterisk crashes) or an
	// empty name.
	ReasonNameFormat
	// ReasonHeaderFormat: a header token has no "(" (Asterisk crashes) or
	// an empty header name.
	ReasonHeaderFormat
	// ReasonMethodFormat: a method token has no "(" (Asterisk crashes) or
	// an empty method.
	ReasonMethodFormat
	// ReasonUnknownMethod: method(...) is not regex, exact, starts_with,
	// ends_with, contains or none.
	ReasonUnknownMethod
	// ReasonUnknownOption: a token that begins with none of action, name,
	// header and method.
	ReasonUnknownOption
	// ReasonNoOptions: the parentheses hold no token at all.
	ReasonNoOptions
	// ReasonPatternRequired: a method other than none with an empty
	// pattern.
	ReasonPatternRequired
	// ReasonPatternNotAllowed: method none (the default for advanced
	// filters) with a non-empty pattern.
	ReasonPatternNotAllowed
	// ReasonNoNameOrHeader: method none and neither name(...) nor
	// header(...): the filter would match every event.
	ReasonNoNameOrHeader
	// ReasonRegexCompile: glibc's regcomp refuses the regex
	// (ErrFilterCompile).
	ReasonRegexCompile
	// ReasonRegexUnsupported: glibc accepts the regex but it has no exact
	// Go equivalent (ErrFilterUnsupported).
	ReasonRegexUnsupported
)

var reasonText = [...]string{
	ReasonLegacyNoPattern:   "legacy filter with no filter pattern",
	ReasonOptionsFormat:     "filter options not formatted correctly",
	ReasonActionFormat:      "'action' parameter not formatted correctly",
	ReasonUnknownAction:     "'action' option is unknown",
	ReasonNameFormat:        "'name' parameter not formatted correctly",
	ReasonHeaderFormat:      "'header' parameter not formatted correctly",
	ReasonMethodFormat:      "'method' parameter not formatted correctly",
	ReasonUnknownMethod:     "'method' option is unknown",
	ReasonUnknownOption:     "filter option is unknown",
	ReasonNoOptions:         "no action, name, header, or method option found",
	ReasonPatternRequired:   "method needs a filter pattern",
	ReasonPatternNotAllowed: "method can't be 'none' with a filter pattern",
	ReasonNoNameOrHeader:    "no name or header option found and no filter pattern",
	ReasonRegexCompile:      "unable to compile regex filter",
	ReasonRegexUnsupported:  "regex filter has no exact Go equivalent",
}

// String returns a short description of the check, after Asterisk's log
// message for it.
func (r FilterReason) String() string {
	if int(r) < len(reasonText) && reasonText[r] != "" {
		return reasonText[r]
	}
	return fmt.Sprintf("FilterReason(%d)", uint8(r))
}

// FilterError is a filter that Asterisk refuses, or that this package cannot
// reproduce. errors.Is matches it against ErrFilterFormat, ErrFilterCompile
// or ErrFilterUnsupported according to Reason. It is plain data; ParseFilter
// and ParseFilterAction return it as a pointer.
type FilterError struct {
	Criteria string       // the key as parsed, e.g. "eventfilter(name(Hangup))"
	Pattern  string       // the value as given, "!" included
	Reason   FilterReason // the check that failed
	Detail   string       // the offending token or value, if any
	// AsteriskCrashes is set where Asterisk does not return an error but
	// dereferences a NULL pointer: a name, header or method token without
	// "(" (for example MatchCriteria "name" or "name (Hangup)"). A proxy
	// must refuse such a Filter action instead of forwarding it.
	AsteriskCrashes bool
	Err             error // the regex error, for the two regex reasons
}

func (e *FilterError) sentinel() error {
	switch e.Reason {
	case ReasonRegexCompile:
		return ErrFilterCompile
	case ReasonRegexUnsupported:
		return ErrFilterUnsupported
	}
	return ErrFilterFormat
}

func (e *FilterError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "policy: eventfilter %q = %q: %s", e.Criteria, e.Pattern, e.Reason)
	if e.Detail != "" {
		fmt.Fprintf(&b, " (%q)", e.Detail)
	}
	if e.AsteriskCrashes {
		b.WriteString(" (Asterisk would crash)")
	}
	if e.Err != nil {
		b.WriteString(": ")
		b.WriteString(e.Err.Error())
	}
	return b.String()
}

// Unwrap returns the sentinel for Reason and, for regex errors, the cause.
func (e *FilterError) Unwrap() []error {
	if e.Err != nil {
		return []error{e.sentinel(), e.Err}
	}
	return []error{e.sentinel()}
}

// Method is how a filter compares its pattern with the event text or a
// header value. All methods are case-sensitive.
type Method uint8

// The matching methods of advanced filters. Legacy filters use MethodRegex.
const (
	MethodNone       Method = iota // always matches; the pattern must be empty
	MethodRegex                    // POSIX extended regex, searched anywhere
	MethodExact                    // strcmp
	MethodStartsWith               // ast_begins_with
	MethodEndsWith                 // ast_ends_with
	MethodContains                 // strstr
)

var methodNames = [...]string{
	MethodNone:       "none",
	MethodRegex:      "regex",
	MethodExact:      "exact",
	MethodStartsWith: "starts_with",
	MethodEndsWith:   "ends_with",
	MethodContains:   "contains",
}

// String returns the method's name in the eventfilter syntax.
func (m Method) String() string {
	if int(m) < len(methodNames) {
		return methodNames[m]
	}
	return fmt.Sprintf("Method(%d)", uint8(m))
}

// Filter is one Asterisk eventfilter: a manager.conf "eventfilter..." line
// or one Filter action, in the legacy (regex) or the advanced syntax of
// Asterisk 22.1 and later (also 18.26, 20.11, 21.6 and 23).
//
// The zero value is an include filter that matches every event. A Filter is
// immutable and safe for concurrent use; copies share its compiled regex,
// which is safe.
type Filter struct {
	criteria string // key as given
	value    string // value as given
	exclude  bool
	method   Method
	name     string
	hasName  bool
	nameHash uint32 // ast_str_hash(name); 0 disables the name check, as in Asterisk
	header   string // "X:" or ""
	pattern  string // without the leading "!"
	re       *ereRegexp
}

// ParseFilter parses a manager.conf line "key = value" of a user section as
// Asterisk 22.1 and later do (manager_add_filter). key and value are what
// Asterisk's config parser hands over: blanks around both already removed.
//
// The key must begin with "eventfilter" (case-sensitive), or ParseFilter
// returns ErrNotFilterKey. A key without "(" is a legacy filter: value is a
// POSIX extended regex searched in the whole event text. A key with "(" is an
// advanced filter whose criteria follow the first "(":
//
//	eventfilter(action(include|exclude),name(Event),header(Header),method(M)) = pattern
//
// The criteria are split on spaces, commas and ")" (C's strtok), so
// "name( X )" and "name(X), header(Y)" do not mean what they seem. Each
// token is recognised by its prefix (action, name, header, method) and its
// value is what follows its first "(", with trailing blanks removed but not
// leading ones. A leading "!" on the value is always removed and makes an
// exclude filter, unless action(...) says otherwise. header(X) matches lines
// beginning "X:". Every refusal of Asterisk is a *FilterError; a token
// without "(" is refused too, where Asterisk would crash.
//
// As in C, a NUL byte ends key and value.
func ParseFilter(key, value string) (Filter, error) {
	key, value = cString(key), cString(value)
	if !strings.HasPrefix(key, "eventfilter") {
		return Filter{}, fmt.Errorf("policy: key %q: %w", key, ErrNotFilterKey)
	}
	return parseFilter(key, value)
}

// ParseFilterAction parses the headers of a Filter action with Operation
// Add (action_filter): filter is the Filter header and matchCriteria the
// MatchCriteria header, both as astman_get_header returns them (leading
// blanks removed, "" when absent). An empty matchCriteria makes a legacy
// regex filter; otherwise the filter is parsed as the key
// "eventfilter(<matchCriteria>)". An empty filter with no matchCriteria is a
// format error, as in Asterisk 22.1 and later (older versions passed it to
// regcomp).
func ParseFilterAction(filter, matchCriteria string) (Filter, error) {
	filter, matchCriteria = cString(filter), cString(matchCriteria)
	criteria := "eventfilter"
	if matchCriteria != "" {
		criteria = "eventfilter(" + matchCriteria + ")"
	}
	return parseFilter(criteria, filter)
}

// parseFilter is manager_add_filter for a criteria beginning "eventfilter".
func parseFilter(criteria, value string) (Filter, error) {
	f := Filter{criteria: criteria, value: value}
	fail := func(r FilterReason, detail string, crashes bool, err error) (Filter, error) {
		return Filter{}, &FilterError{Criteria: criteria, Pattern: value, Reason: r,
			Detail: detail, AsteriskCrashes: crashes, Err: err}
	}
	pattern := value
	if strings.HasPrefix(pattern, "!") {
		f.exclude = true
		pattern = pattern[1:]
	}
	f.method = MethodRegex
	open := strings.IndexByte(criteria, '(')
	if open < 0 && pattern == "" {
		return fail(ReasonLegacyNoPattern, "", false, nil)
	}
	if open >= 0 {
		const (
			foundAction = 1 << iota
			foundName
			foundHeader
			foundMethod
		)
		found := 0
		f.method = MethodNone
		// ast_strip's result is discarded: trailing blanks go, leading
		// ones stay (strtok skips the spaces among them).
		options := trimBlanksRight(criteria[open+1:])
		if options == "" || !strings.HasSuffix(options, ")") {
			return fail(ReasonOptionsFormat, "", false, nil)
		}
		for _, opt := range strings.FieldsFunc(options, isOptionDelim) {
			arg, hasParen := optionArg(opt)
			switch {
			case strings.HasPrefix(opt, "action"):
				if !hasParen {
					return fail(ReasonActionFormat, opt, false, nil)
				}
				switch arg {
				case "include":
					f.exclude = false
				case "exclude":
					f.exclude = true
				default:
					return fail(ReasonUnknownAction, arg, false, nil)
				}
				found |= foundAction
			case strings.HasPrefix(opt, "name"):
				if !hasParen || arg == "" {
					return fail(ReasonNameFormat, opt, !hasParen, nil)
				}
				f.name, f.hasName, f.nameHash = arg, true, strHash(arg)
				found |= foundName
			case strings.HasPrefix(opt, "header"):
				if !hasParen || arg == "" {
					return fail(ReasonHeaderFormat, opt, !hasParen, nil)
				}
				if !strings.HasSuffix(arg, ":") {
					arg += ":"
				}
				f.header = arg
				found |= foundHeader
			case strings.HasPrefix(opt, "method"):
				if !hasParen || arg == "" {
					return fail(ReasonMethodFormat, opt, !hasParen, nil)
				}
				m, ok := parseMethod(arg)
				if !ok {
					return fail(ReasonUnknownMethod, arg, false, nil)
				}
				f.method = m
				found |= foundMethod
			default:
				return fail(ReasonUnknownOption, opt, false, nil)
			}
		}
		switch {
		case found == 0:
			return fail(ReasonNoOptions, "", false, nil)
		case pattern == "" && f.method != MethodNone:
			return fail(ReasonPatternRequired, f.method.String(), false, nil)
		case pattern != "" && f.method == MethodNone:
			return fail(ReasonPatternNotAllowed, "", false, nil)
		case found&(foundName|foundHeader) == 0 && f.method == MethodNone:
			return fail(ReasonNoNameOrHeader, "", false, nil)
		}
	}
	if pattern != "" {
		if f.method == MethodRegex {
			re, err := compileERE(pattern)
			if err != nil {
				if errors.Is(err, errUnsupported) {
					return fail(ReasonRegexUnsupported, "", false, err)
				}
				return fail(ReasonRegexCompile, "", false, err)
			}
			f.re = re
		}
		f.pattern = pattern
	}
	return f, nil
}

// isOptionDelim reports the delimiters of strtok(temp, " ,)").
func isOptionDelim(r rune) bool { return r == ' ' || r == ',' || r == ')' }

// optionArg returns what follows the first "(" of an option token, with
// trailing blanks removed, and whether there was a "(".
func optionArg(opt string) (string, bool) {
	i := strings.IndexByte(opt, '(')
	if i < 0 {
		return "", false
	}
	return trimBlanksRight(opt[i+1:]), true
}

func parseMethod(s string) (Method, bool) {
	for m, name := range methodNames {
		if s == name {
			return Method(m), true
		}
	}
	return 0, false
}

// Exclude reports whether f is an exclude filter.
func (f Filter) Exclude() bool { return f.exclude }

// Method returns how f compares its pattern.
func (f Filter) Method() Method { return f.method }

// Name returns the event name of name(...), or "".
func (f Filter) Name() string { return f.name }

// Header returns the header of header(...) with its colon ("Channel:"), or
// "" when f looks at the whole event text.
func (f Filter) Header() string { return f.header }

// Pattern returns the pattern without its leading "!".
func (f Filter) Pattern() string { return f.pattern }

// String returns the filter as written: "key = value".
func (f Filter) String() string {
	if f.criteria == "" {
		return "(zero Filter: matches every event)"
	}
	return f.criteria + " = " + f.value
}

// Match reports whether f matches an event (Asterisk's filter_cmp_fn).
// event is the full text Asterisk queues and filters:
//
//	"Event: Hangup\r\nPrivilege: call,all\r\n...\r\nCause-txt: Unknown\r\n\r\n"
//
// If f has name(...), the ast_str_hash of its name must equal that of the
// event name (see EventName); like Asterisk, Match compares hashes, not
// names, so a name with a colliding hash matches too (none of Asterisk's
// event names collide), and a name whose hash is 0 matches every event.
// Without header(...) the method applies to the whole text; with it, to
// the value of every line that begins with the header (case-sensitive, so
// "DestChannel:" is not "Channel:"), blanks after the colon skipped and empty
// values ignored, until one matches.
func (f Filter) Match(event string) bool {
	event = cString(event)
	var hash uint32
	if f.nameHash != 0 {
		hash = strHash(EventName(event))
	}
	return f.match(event, hash)
}

// match is Match with the event name's hash already computed.
func (f *Filter) match(event string, hash uint32) bool {
	if f.nameHash != 0 && hash != f.nameHash {
		return false
	}
	if f.header == "" {
		return f.matchData(event)
	}
	for rest := event; rest != ""; {
		var line string
		line, rest = cutLine(rest)
		if !strings.HasPrefix(line, f.header) {
			continue
		}
		value := skipBlanks(line[len(f.header):])
		if value == "" {
			continue
		}
		if f.matchData(value) {
			return true
		}
	}
	return false
}

// matchData is Asterisk's match_eventdata.
func (f *Filter) matchData(data string) bool {
	switch f.method {
	case MethodRegex:
		return f.re != nil && f.re.match(data)
	case MethodExact:
		return data == f.pattern
	case MethodStartsWith:
		return strings.HasPrefix(data, f.pattern)
	case MethodEndsWith:
		return strings.HasSuffix(data, f.pattern)
	case MethodContains:
		return strings.Contains(data, f.pattern)
	case MethodNone:
		return true
	}
	return false
}

// FilterSet is the eventfilters of one session: the user's manager.conf
// filters plus those added by Filter actions. Order does not matter.
//
// The zero value holds no filter and allows every event. A FilterSet is
// immutable and safe for concurrent use; With returns a new set and never
// changes the receiver.
type FilterSet struct {
	include  []Filter
	exclude  []Filter
	needHash bool // some filter has a name hash to compare
}

// NewFilterSet returns a set holding filters.
func NewFilterSet(filters ...Filter) FilterSet {
	return FilterSet{}.With(filters...)
}

// With returns a new set holding the filters of s and filters. Adding an
// include filter to a set that has none narrows delivery; adding one to a
// set that has some widens it, which is why the Filter action needs class
// system.
func (s FilterSet) With(filters ...Filter) FilterSet {
	// Full slice expressions make append copy instead of sharing storage.
	n := FilterSet{
		include:  s.include[:len(s.include):len(s.include)],
		exclude:  s.exclude[:len(s.exclude):len(s.exclude)],
		needHash: s.needHash,
	}
	for _, f := range filters {
		if f.exclude {
			n.exclude = append(n.exclude, f)
		} else {
			n.include = append(n.include, f)
		}
		if f.nameHash != 0 {
			n.needHash = true
		}
	}
	return n
}

// Len returns the number of filters in s.
func (s FilterSet) Len() int { return len(s.include) + len(s.exclude) }

// Filters returns the filters of s, include filters first. The slice is a
// new copy.
func (s FilterSet) Filters() []Filter {
	out := make([]Filter, 0, s.Len())
	out = append(out, s.include...)
	return append(out, s.exclude...)
}

// Allows reports whether Asterisk sends an event to a session with these
// filters (should_send_event). event is the full event text, as for
// Filter.Match. The rule:
//
//	no filters                        every event
//	include filters only              events matching any include filter
//	exclude filters only              events matching no exclude filter
//	include and exclude filters       events matching an include filter and no exclude filter
//
// Allows decides only the filter step. The caller checks the event's class
// first (Class.CanRead), and never filters what Asterisk writes straight to
// the session: responses, list items, FullyBooted after Login.
func (s FilterSet) Allows(event string) bool {
	if len(s.include) == 0 && len(s.exclude) == 0 {
		return true
	}
	event = cString(event)
	var hash uint32
	if s.needHash {
		hash = strHash(EventName(event))
	}
	if len(s.include) > 0 && !anyMatch(s.include, event, hash) {
		return false
	}
	return !anyMatch(s.exclude, event, hash)
}

func anyMatch(filters []Filter, event string, hash uint32) bool {
	for i := range filters {
		if filters[i].match(event, hash) {
			return true
		}
	}
	return false
}

// EventName returns the name of an event in its text: the value of the
// first line that begins "Event:", blanks after the colon skipped. Asterisk
// hashes the name it passes to manager_event, which is what it prints on the
// first line, "Event: <name>". EventName returns "" if there is no such line.
func EventName(event string) string {
	for rest := event; rest != ""; {
		var line string
		line, rest = cutLine(rest)
		if v, ok := strings.CutPrefix(line, "Event:"); ok {
			return skipBlanks(v)
		}
	}
	return ""
}

// cutLine splits off the first line of s like Asterisk's
// ast_read_line_from_buffer: up to the first LF, with one CR before it
// removed. A last line without LF loses a final CR too.
func cutLine(s string) (line, rest string) {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		line, rest = s[:i], s[i+1:]
	} else {
		line = s
	}
	if n := len(line); n > 0 && line[n-1] == '\r' {
		line = line[:n-1]
	}
	return line, rest
}

// skipBlanks is ast_skip_blanks: it drops leading bytes below 33.
func skipBlanks(s string) string {
	i := 0
	for i < len(s) && s[i] < 33 {
		i++
	}
	return s[i:]
}

// trimBlanksRight is ast_trim_blanks: it drops trailing bytes below 33.
func trimBlanksRight(s string) string {
	i := len(s)
	for i > 0 && s[i-1] < 33 {
		i--
	}
	return s[:i]
}

// strHash is Asterisk's ast_str_hash as built on x86-64 Linux, where char is
// signed:
//
//	int hash = 5381;
//	while (*str) hash = hash * 33 ^ *str++;
//	return abs(hash);
//
// Bytes of 0x80 and above are sign-extended before the XOR (an ARM build,
// where char is unsigned, hashes non-ASCII names differently), and
// abs(INT_MIN) stays INT_MIN. Asterisk stores the filter's hash as unsigned
// and compares it with the event's int hash, so comparing the 32 bits is
// exact.
func strHash(s string) uint32 {
	h := int32(5381)
	for i := 0; i < len(s); i++ {
		h = h*33 ^ int32(int8(s[i]))
	}
	if h < 0 {
		h = -h
	}
	return uint32(h)
}
