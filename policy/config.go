package policy

import (
	"errors"
	"fmt"
	"slices"
	"strings"
)

// Config is the policy part of amiproxy's configuration: roles, and which
// AMI users and identity groups hold them. The config loader in cmd decodes
// it strictly (unknown keys are errors); Validate checks the meaning and
// Compile turns it into an Engine.
//
// The zero value is a valid configuration that grants nothing. A Config is
// plain data: it is not safe to modify concurrently with Validate or
// Compile, and Compile copies what it keeps, so changing a Config later does
// not change an Engine built from it.
type Config struct {
	// Roles are the named bundles of permissions. Names are unique and
	// case-sensitive.
	Roles []Role `yaml:"roles"`
	// Users maps an AMI username (as the auth package reports it, matched
	// exactly) to the names of its roles.
	Users map[string][]string `yaml:"users"`
	// Groups maps an identity group (OIDC groups, later) to the names of
	// the roles every member holds.
	Groups map[string][]string `yaml:"groups"`
}

// Role is one named set of permissions, granted on some PBXs. A subject
// holding several roles holds their union, except that deny_actions of any
// role wins (see Subject.Decide).
//
// The zero value grants nothing. A Role is plain data.
type Role struct {
	// Name identifies the role in users, groups and in the Rule of every
	// decision it makes. Required and unique.
	Name string `yaml:"name"`
	// Read is the read mask, as parsed by ParseClasses: "call,reporting",
	// "all" or "none". Empty means none.
	Read string `yaml:"read"`
	// Write is the write mask, as parsed by ParseClasses.
	Write string `yaml:"write"`
	// PBXs are the names of the PBXs this role applies to; "*" means every
	// configured PBX. A role with neither PBXs nor PBXLabels would grant
	// nothing and is an error.
	PBXs []string `yaml:"pbxs"`
	// PBXLabels selects PBXs by their labels: the role also applies to
	// every PBX that has all of these labels with these values (exact,
	// case-sensitive), e.g. {site: paris}. A selector that matches no
	// configured PBX is an error, like an unknown name in PBXs: a typo
	// would otherwise grant nothing, silently.
	PBXLabels map[string]string `yaml:"pbx_labels"`
	// Permit and Deny are the role's network rules (see ParsePrefix):
	// prefixes such as "10.0.0.0/8" or "2001:db8::/32", or single
	// addresses. A client inside any Deny prefix is refused; if Permit is
	// not empty, a client outside every Permit prefix is refused too. A
	// subject's client must pass the rules of every role it holds (see
	// Subject.AllowsAddr).
	Permit []string `yaml:"permit"`
	Deny   []string `yaml:"deny"`
	// Rules are the parameter rules: what the headers of the actions this
	// role allows may say.
	Rules Rules `yaml:"rules"`
	// AllowActions are actions allowed although their class is not in
	// Write, or although they are not in the action table (actions of
	// custom modules), or although they are class-0 actions that change
	// state (ami-spec.md §4.11). Matched case-insensitively. Any name
	// without blanks or control characters is accepted. The confused-deputy
	// checks still apply.
	AllowActions []string `yaml:"allow_actions"`
	// DenyActions are actions this role forbids on its PBXs, whatever any
	// role allows. Each must be a known action (LookupAction or
	// LookupLegacyAction) or listed in some role's allow_actions: a typo
	// here would otherwise fail open, silently.
	DenyActions []string `yaml:"deny_actions"`
	// EventFilters are manager.conf eventfilters, one per entry, parsed by
	// ParseFilterLine: either the value of a legacy line ("Event: Hangup",
	// "!Channel: Local/200@") or a whole line with its key,
	// "eventfilter(name(Hangup)) =" or "eventfilter(action(exclude),header(Channel),method(starts_with)) = Local/".
	EventFilters []string `yaml:"eventfilters"`
}

// ParseClasses parses a class list of amiproxy's configuration, strictly:
// class names as Asterisk prints them (system, call, log, verbose, command,
// agent, user, config, dtmf, reporting, cdr, dialplan, originate, agi, cc,
// aoc, test, security, message) separated by commas, blanks around names
// allowed, ASCII case-insensitive. "all" (Asterisk's all: every bit 0-30)
// and "none" must stand alone. The empty string is none. Every unknown or
// empty name is an error naming it.
//
// This is not Asterisk's get_perm (see ParsePerm) and has none of its
// quirks: "sys" and "system, call" mean what a reader expects, or are
// refused.
func ParseClasses(s string) (Class, error) {
	if strings.Trim(s, " \t") == "" {
		return 0, nil
	}
	items := strings.Split(s, ",")
	var c Class
	var errs []error
	for _, item := range items {
		name := strings.Trim(item, " \t")
		switch {
		case name == "":
			errs = append(errs, fmt.Errorf("policy: classes %q: empty class name", s))
		case asciiEqualFold(name, "all"), asciiEqualFold(name, "none"):
			if len(items) > 1 {
				errs = append(errs, fmt.Errorf("policy: classes %q: %q must stand alone", s, name))
			} else if asciiEqualFold(name, "all") {
				c = All
			}
		default:
			n, ok := classByName(name)
			if !ok {
				errs = append(errs, fmt.Errorf("policy: classes %q: unknown class %q", s, name))
			}
			c |= n
		}
	}
	if len(errs) > 0 {
		return 0, errors.Join(errs...)
	}
	return c, nil
}

// ParseFilterLine parses one entry of a role's eventfilters list. Blanks
// around the entry are removed, as Asterisk's config parser does.
//
// An entry that begins with "eventfilter" followed (after optional blanks)
// by "(" or "=" is a whole manager.conf line: it is split at its first "="
// (a following ">" is skipped, as for Asterisk's "=>") and handed to
// ParseFilter as key and value, so
//
//	eventfilter(name(Hangup)) =
//	eventfilter(action(exclude),header(Channel),method(starts_with)) = Local/
//	eventfilter = !Channel: Local/
//
// are an advanced include, an advanced exclude and a legacy exclude filter.
// Any other entry is the value of a legacy line: a POSIX extended regex,
// "!" in front for an exclude filter ("Event: Hangup", "!Channel: Local/").
// An entry beginning "EventFilter(" or another spelling of the key is
// refused: Asterisk 22.1 and later silently ignore such keys. A NUL byte is
// refused.
func ParseFilterLine(line string) (Filter, error) {
	if strings.IndexByte(line, 0) >= 0 {
		return Filter{}, fmt.Errorf("policy: eventfilter %q: NUL byte: %w", line, ErrFilterFormat)
	}
	s := trimBlanksRight(skipBlanks(line))
	const key = "eventfilter"
	if len(s) >= len(key) && asciiEqualFold(s[:len(key)], key) {
		if r := skipBlanks(s[len(key):]); strings.HasPrefix(r, "(") || strings.HasPrefix(r, "=") {
			if s[:len(key)] != key {
				return Filter{}, fmt.Errorf("policy: eventfilter %q: the key must begin with lowercase %q (Asterisk 22.1 and later ignore other spellings): %w", line, key, ErrNotFilterKey)
			}
			k, v, ok := strings.Cut(s, "=")
			if !ok {
				return Filter{}, fmt.Errorf("policy: eventfilter %q: no \"=\" after the key (write %q): %w", line, s+" =", ErrFilterFormat)
			}
			v = strings.TrimPrefix(v, ">")
			return ParseFilter(trimBlanksRight(k), skipBlanks(v))
		}
	}
	return ParseFilter(key, s)
}

// PBX is a configured PBX as the policy sees it: its name and labels.
// The zero value is an unnamed PBX, which Validate refuses. A PBX is plain
// data.
type PBX struct {
	Name   string
	Labels map[string]string
}

// pbxList turns names into PBXs without labels.
func pbxList(names []string) []PBX {
	out := make([]PBX, len(names))
	for i, n := range names {
		out[i] = PBX{Name: n}
	}
	return out
}

// matchesLabels reports whether p has every label of sel.
func (p PBX) matchesLabels(sel map[string]string) bool {
	for k, v := range sel {
		if got, ok := p.Labels[k]; !ok || got != v {
			return false
		}
	}
	return true
}

// Validate is ValidatePBXs for PBXs without labels. pbxs are the names of
// the configured PBXs.
func (c *Config) Validate(pbxs []string) error {
	return c.ValidatePBXs(pbxList(pbxs))
}

// ValidatePBXs reports every problem of c, joined with errors.Join, or
// nil. pbxs are the configured PBXs. ValidatePBXs does not modify c.
//
// It checks: role names (non-empty, without control characters, unique);
// read and write (ParseClasses); pbxs (non-empty, each "*" or a configured
// PBX); allow_actions (names without blanks or control characters);
// deny_actions (known actions, or names some role allows); eventfilters
// (ParseFilterLine); pbx_labels (non-empty keys without control
// characters, matching some PBX); permit and deny (ParsePrefix; not an
// explicitly empty list); rules (see Rules); users and groups (non-empty
// keys, known roles, no two usernames that differ only in case); and the
// PBXs themselves (non-empty names, not "*", label keys non-empty and
// without control characters).
func (c *Config) ValidatePBXs(pbxs []PBX) error {
	if c == nil {
		return nil
	}
	var errs []error
	add := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf(format, args...))
	}

	known := make(map[string]bool, len(pbxs))
	for i, p := range pbxs {
		switch {
		case p.Name == "":
			add("policy: pbxs[%d]: empty pbx name", i)
		case p.Name == "*":
			add("policy: pbxs[%d]: pbx name \"*\" is reserved (it means every pbx)", i)
		}
		for _, k := range sortedLabelKeys(p.Labels) {
			if k == "" || strings.ContainsFunc(k, isControl) || strings.ContainsFunc(p.Labels[k], isControl) {
				add("policy: pbxs[%d] %q: label %q: keys must be non-empty, keys and values without control characters", i, p.Name, k)
			}
		}
		known[p.Name] = true
	}

	allowed := map[string]bool{} // lowercase names in any allow_actions
	for _, r := range c.Roles {
		for _, a := range r.AllowActions {
			allowed[asciiLower(a)] = true
		}
	}

	roles := make(map[string]bool, len(c.Roles))
	for i, r := range c.Roles {
		where := fmt.Sprintf("policy: roles[%d] %q", i, r.Name)
		switch {
		case r.Name == "":
			add("policy: roles[%d]: empty name", i)
		case strings.ContainsFunc(r.Name, isControl):
			add("%s: name has a control character", where)
		case roles[r.Name]:
			add("%s: duplicate role name", where)
		}
		roles[r.Name] = true
		if _, err := ParseClasses(r.Read); err != nil {
			errs = append(errs, fmt.Errorf("%s: read: %w", where, err))
		}
		if _, err := ParseClasses(r.Write); err != nil {
			errs = append(errs, fmt.Errorf("%s: write: %w", where, err))
		}
		if len(r.PBXs) == 0 && len(r.PBXLabels) == 0 {
			add("%s: pbxs is empty and there are no pbx_labels, the role would grant nothing (\"*\" means every pbx)", where)
		}
		if r.PBXLabels != nil && len(r.PBXLabels) == 0 {
			add("%s: pbx_labels: empty selector (it would select every pbx; write pbxs: [\"*\"] for that)", where)
		}
		if len(r.PBXLabels) > 0 {
			bad := false
			for _, k := range sortedLabelKeys(r.PBXLabels) {
				if k == "" || strings.ContainsFunc(k, isControl) || strings.ContainsFunc(r.PBXLabels[k], isControl) {
					add("%s: pbx_labels: label %q: keys must be non-empty, keys and values without control characters", where, k)
					bad = true
				}
			}
			if !bad && !slices.ContainsFunc(pbxs, func(p PBX) bool { return p.matchesLabels(r.PBXLabels) }) {
				add("%s: pbx_labels %s matches no configured pbx", where, formatLabels(r.PBXLabels))
			}
		}
		if r.Permit != nil && len(r.Permit) == 0 {
			add("%s: permit: empty list; remove the key or list prefixes", where)
		}
		if r.Deny != nil && len(r.Deny) == 0 {
			add("%s: deny: empty list; remove the key or list prefixes", where)
		}
		for j, s := range r.Permit {
			if _, err := ParsePrefix(s); err != nil {
				errs = append(errs, fmt.Errorf("%s: permit[%d]: %w", where, j, err))
			}
		}
		for j, s := range r.Deny {
			if _, err := ParsePrefix(s); err != nil {
				errs = append(errs, fmt.Errorf("%s: deny[%d]: %w", where, j, err))
			}
		}
		errs = append(errs, validateRules(where, &r.Rules)...)
		for j, p := range r.PBXs {
			if p != "*" && !known[p] {
				add("%s: pbxs[%d]: unknown pbx %q", where, j, p)
			}
		}
		for j, a := range r.AllowActions {
			if !validActionName(a) {
				add("%s: allow_actions[%d]: invalid action name %q", where, j, a)
			}
		}
		for j, a := range r.DenyActions {
			switch {
			case !validActionName(a):
				add("%s: deny_actions[%d]: invalid action name %q", where, j, a)
			case !knownAction(a) && !allowed[asciiLower(a)]:
				add("%s: deny_actions[%d]: unknown action %q (not in the action table nor in any allow_actions)", where, j, a)
			}
		}
		for j, line := range r.EventFilters {
			if _, err := ParseFilterLine(line); err != nil {
				errs = append(errs, fmt.Errorf("%s: eventfilters[%d]: %w", where, j, err))
			}
		}
	}

	folded := map[string]string{}
	for _, u := range sortedKeys(c.Users) {
		if u == "" {
			add("policy: users: empty username")
		}
		if prev, ok := folded[asciiLower(u)]; ok {
			add("policy: users: %q and %q differ only in case", prev, u)
		}
		folded[asciiLower(u)] = u
		for _, name := range c.Users[u] {
			if !roles[name] || name == "" {
				add("policy: users %q: unknown role %q", u, name)
			}
		}
	}
	for _, g := range sortedKeys(c.Groups) {
		if g == "" {
			add("policy: groups: empty group name")
		}
		for _, name := range c.Groups[g] {
			if !roles[name] || name == "" {
				add("policy: groups %q: unknown role %q", g, name)
			}
		}
	}
	return errors.Join(errs...)
}

// knownAction reports whether name is in the action table of HEAD or of
// the older branches.
func knownAction(name string) bool {
	_, ok := lookupAnyAction(name)
	return ok
}

func lookupAnyAction(name string) (ActionInfo, bool) {
	if a, ok := LookupAction(name); ok {
		return a, true
	}
	return LookupLegacyAction(name)
}

// validActionName accepts a non-empty name of printable ASCII without
// blanks or colons.
func validActionName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] >= 0x7f || s[i] == ':' {
			return false
		}
	}
	return true
}

func isControl(r rune) bool { return r < ' ' || r == 0x7f }

func sortedLabelKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// formatLabels prints a label selector as "{a=1, b=2}", sorted.
func formatLabels(m map[string]string) string {
	var b strings.Builder
	b.WriteByte('{')
	for i, k := range sortedLabelKeys(m) {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(k + "=" + m[k])
	}
	b.WriteByte('}')
	return b.String()
}

// FormatClasses prints c so that ParseClasses reads it back: "all" for
// All, "none" for 0, else the names of its named classes in Asterisk's
// order, joined by commas ("system,call"). Bits without a name, other
// than in All, are dropped: ParseClasses could not read them.
func FormatClasses(c Class) string {
	switch {
	case c == All:
		return "all"
	case c&All == All:
		return "all"
	}
	var names []string
	for _, p := range perms[:len(perms)-2] {
		if c&p.num != 0 {
			names = append(names, p.label)
		}
	}
	if len(names) == 0 {
		return "none"
	}
	return strings.Join(names, ",")
}

func sortedKeys(m map[string][]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
