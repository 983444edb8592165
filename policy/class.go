package policy

import "strings"

// Class is a set of Asterisk manager permission classes: the read and write
// masks of a manager.conf user, the class an action is registered with, or
// the class of an event. The bits are those of Asterisk's EVENT_FLAG_*
// macros (include/asterisk/manager.h).
//
// The zero value is the empty set ("none"). A Class is a plain integer and
// safe for concurrent use.
type Class uint32

// The permission classes, in the order of Asterisk's perms[] table
// (main/manager.c), which is also the order String prints them in.
const (
	System       Class = 1 << 0  // "system"
	Call         Class = 1 << 1  // "call"
	Log          Class = 1 << 2  // "log"
	Verbose      Class = 1 << 3  // "verbose"
	Command      Class = 1 << 4  // "command"
	Agent        Class = 1 << 5  // "agent"
	User         Class = 1 << 6  // "user"
	ConfigClass  Class = 1 << 7  // "config"; not "Config", which names the policy configuration
	DTMF         Class = 1 << 8  // "dtmf"
	Reporting    Class = 1 << 9  // "reporting"
	CDR          Class = 1 << 10 // "cdr"
	Dialplan     Class = 1 << 11 // "dialplan"
	Originate    Class = 1 << 12 // "originate"
	AGI          Class = 1 << 13 // "agi"
	HookResponse Class = 1 << 14 // EVENT_FLAG_HOOKRESPONSE: internal, has no name
	CC           Class = 1 << 15 // "cc"
	AOC          Class = 1 << 16 // "aoc"
	Test         Class = 1 << 17 // "test"
	Security     Class = 1 << 18 // "security" (Asterisk 12 and later)
	Message      Class = 1 << 30 // "message"

	// All is INT_MAX, Asterisk's "all": every bit from 0 to 30, including
	// HookResponse and the unnamed bits 19 to 29.
	All Class = 0x7fffffff
)

// shutdownClass is EVENT_FLAG_SHUTDOWN (-1), the internal class of the
// pseudo-event that ends sessions at shutdown.
const shutdownClass Class = 0xffffffff

// perms is Asterisk's perms[] table in its exact order. The order matters:
// ParsePerm tests every label against the input, and String prints the
// labels of the set bits in this order.
var perms = [...]struct {
	num   Class
	label string
}{
	{System, "system"},
	{Call, "call"},
	{Log, "log"},
	{Verbose, "verbose"},
	{Command, "command"},
	{Agent, "agent"},
	{User, "user"},
	{ConfigClass, "config"},
	{DTMF, "dtmf"},
	{Reporting, "reporting"},
	{CDR, "cdr"},
	{Dialplan, "dialplan"},
	{Originate, "originate"},
	{AGI, "agi"},
	{CC, "cc"},
	{AOC, "aoc"},
	{Test, "test"},
	{Security, "security"},
	{Message, "message"},
	{All, "all"},
	{0, "none"},
}

// ParsePerm parses a manager.conf read= or write= value exactly like
// Asterisk's get_perm: every label of the perms table ("system" ...
// "message", "all", "none") is tested against the comma-separated value with
// ast_instring, and the classes of the labels that match are OR-ed.
//
// ast_instring is odd, and ParsePerm keeps every oddity:
//
//   - A token followed by a comma matches every label it is a prefix of:
//     "sys,call" is System|Call, "c,log" is Call|Command|ConfigClass|CDR|CC|Log.
//   - The last token must equal a label exactly: "call,sys" is Call only,
//     and "system, call" is System only (" call" is not "call").
//   - An empty token before a comma is a prefix of every label, "all"
//     included: "system,,call" and ",call" are All.
//   - A trailing comma ends the scan: "call," is Call.
//   - Labels are case-sensitive ("System" matches nothing) and numbers are
//     not masks ("7" is 0).
//
// As in C, a NUL byte ends the value.
func ParsePerm(s string) Class {
	s = cString(s)
	var c Class
	for _, p := range perms {
		if instring(s, p.label) {
			c |= p.num
		}
	}
	return c
}

// instring is Asterisk's ast_instring(bigstr, smallstr, ','), a do/while loop
// in which "continue" jumps to the loop condition:
//
//	do {
//		if ((next = strchr(val, delim))) {
//			if (!strncmp(val, smallstr, (next - val))) return 1;
//			else continue;
//		} else {
//			return !strcmp(smallstr, val);
//		}
//	} while (*(val = (next + 1)));
//	return 0;
//
// strncmp(val, small, n) == 0 with n the token length holds exactly when the
// token is a prefix of small (a shorter small stops at its NUL and differs).
func instring(big, small string) bool {
	val := big
	for {
		next := strings.IndexByte(val, ',')
		if next < 0 {
			return small == val
		}
		if strings.HasPrefix(small, val[:next]) {
			return true
		}
		val = val[next+1:]
		if val == "" {
			return false
		}
	}
}

// ParseEventMask parses an event mask the way Asterisk's strings_to_mask does
// for the Events header of Login and the EventMask header of the Events
// action. ok is false where strings_to_mask returns a negative value, which
// Asterisk treats as "invalid, leave the send mask unchanged" (the Events
// action answers "Invalid event mask").
//
// The rules, in order:
//
//  1. "" is invalid.
//  2. A value made only of ASCII digits is a number, converted with glibc's
//     atoi on an LP64 system: strtol saturating at 2^63-1, then truncated
//     to a 32-bit int. "1" is System (not "on"), "4294967296" is 0 (off), and
//     values that end up negative, such as "2147483648" or anything of 20
//     digits or more, are invalid.
//  3. An ast_false word (no, false, n, f, 0, off; ASCII case-insensitive,
//     nothing trimmed) is 0: events off.
//  4. An ast_true word (yes, true, y, t, 1, on) is the OR of every label's
//     class, which is All.
//  5. Anything else goes through ParsePerm, with all its quirks: "on " (with
//     a trailing blank) is 0, and so is "System".
func ParseEventMask(s string) (mask Class, ok bool) {
	s = cString(s)
	if s == "" {
		return 0, false
	}
	if allDigits(s) {
		n := atoi(s)
		if n < 0 {
			return 0, false
		}
		return Class(n), true
	}
	if astFalse(s) {
		return 0, true
	}
	if astTrue(s) {
		var c Class
		for _, p := range perms {
			c |= p.num
		}
		return c, true
	}
	return ParsePerm(s), true
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// atoi is glibc's atoi, (int) strtol(s, NULL, 10), for a string of ASCII
// digits on an LP64 system: strtol saturates at LONG_MAX on overflow and the
// cast keeps the low 32 bits.
func atoi(digits string) int32 {
	const longMax = 1<<63 - 1
	var n uint64
	for i := 0; i < len(digits); i++ {
		d := uint64(digits[i] - '0')
		if n > (longMax-d)/10 {
			n = longMax
			break
		}
		n = n*10 + d
	}
	return int32(uint32(n))
}

// astTrue is Asterisk's ast_true (main/utils.c).
func astTrue(s string) bool {
	switch {
	case asciiEqualFold(s, "yes"), asciiEqualFold(s, "true"), asciiEqualFold(s, "y"),
		asciiEqualFold(s, "t"), asciiEqualFold(s, "1"), asciiEqualFold(s, "on"):
		return true
	}
	return false
}

// astFalse is Asterisk's ast_false (main/utils.c).
func astFalse(s string) bool {
	switch {
	case asciiEqualFold(s, "no"), asciiEqualFold(s, "false"), asciiEqualFold(s, "n"),
		asciiEqualFold(s, "f"), asciiEqualFold(s, "0"), asciiEqualFold(s, "off"):
		return true
	}
	return false
}

// String returns the class as Asterisk's authority_to_str prints it in the
// Privilege header of an event: the labels of every perms entry that
// overlaps c, in table order, joined by ",". Because All overlaps any
// non-empty class below bit 31, "all" is always last: "call,all",
// "system,user,all", and just "all" for HookResponse alone. A class with no
// overlapping label, and the internal shutdown class (all 32 bits), print
// "<none>".
func (c Class) String() string {
	if c == shutdownClass {
		return "<none>"
	}
	var b strings.Builder
	for _, p := range perms[:len(perms)-1] { // every entry but "none"
		if c&p.num != 0 {
			if b.Len() > 0 {
				b.WriteByte(',')
			}
			b.WriteString(p.label)
		}
	}
	if b.Len() == 0 {
		return "<none>"
	}
	return b.String()
}

// ParsePrivilege maps the value of an event's Privilege header back to
// class bits, for deciding delivery with CanRead. Labels are matched ASCII
// case-insensitively (list items of some actions carry "Privilege: Call")
// after trimming blanks; "<none>" and empty items add nothing.
//
// The trailing "all" that String always appends carries no information and
// is ignored when a named class is present. The text cannot always recover
// Asterisk's bits, so ParsePrivilege errs towards fewer readers: a value
// whose only label is "all" (an event of an unnamed class such as
// HookResponse) and a value with a label this package does not know (a
// class added by a newer Asterisk) both yield All, which only a reader
// holding every class can read.
func ParsePrivilege(s string) Class {
	var c Class
	var sawAll, unknown bool
	for item := range strings.SplitSeq(s, ",") {
		item = strings.Trim(item, " \t")
		switch {
		case item == "", item == "<none>":
		case asciiEqualFold(item, "all"):
			sawAll = true
		default:
			if n, ok := classByName(item); ok {
				c |= n
			} else {
				unknown = true
			}
		}
	}
	if unknown || (sawAll && c == 0) {
		return All
	}
	return c
}

// classByName returns the class of one named label ("none" and "all"
// excluded), matched ASCII case-insensitively.
func classByName(name string) (Class, bool) {
	for _, p := range perms[:len(perms)-2] {
		if asciiEqualFold(name, p.label) {
			return p.num, true
		}
	}
	return 0, false
}

// CanWrite reports whether a user whose write mask is c may run an action
// registered with class action. Like Asterisk's process_message it needs
// only ANY overlap, or an action of class 0: GetConfig (System|ConfigClass) is
// allowed with write=config alone, and Status (System|Call|Reporting) with
// write=reporting alone.
func (c Class) CanWrite(action Class) bool {
	return action == 0 || c&action != 0
}

// CanRead reports whether a session whose effective read mask is c (the
// read mask intersected with the send mask set by Login's Events header or
// the Events action) receives an event of class event. Asterisk needs ALL
// of the event's bits, not just one: an event of class System|User reaches
// only a reader holding both.
func (c Class) CanRead(event Class) bool {
	return c&event == event
}

// Delivers is CanRead under the name that reads better for a send mask:
// sendMask.Delivers(eventClass).
func (c Class) Delivers(event Class) bool {
	return c.CanRead(event)
}

// asciiEqualFold is strcasecmp(a, b) == 0 in the C locale. strings.EqualFold
// is not: it folds Unicode, so it equates "K" (U+212A) with "k".
func asciiEqualFold(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		if lowerASCII(a[i]) != lowerASCII(b[i]) {
			return false
		}
	}
	return true
}

func lowerASCII(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

// cString returns s up to its first NUL byte, the string C code would see.
func cString(s string) string {
	if i := strings.IndexByte(s, 0); i >= 0 {
		return s[:i]
	}
	return s
}
