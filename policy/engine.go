package policy

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/amiproxy/amiproxy/rawman"
)

// Effect is the outcome of a decision. The zero value is Deny.
type Effect int

// The effects. Deny is the zero value, so a forgotten Decision denies.
const (
	Deny Effect = iota
	Allow
)

// String returns "deny" or "allow".
func (e Effect) String() string {
	switch e {
	case Deny:
		return "deny"
	case Allow:
		return "allow"
	}
	return "Effect(" + strconv.Itoa(int(e)) + ")"
}

// Decision is the answer of the engine, with the rule that produced it.
//
// The zero value denies, with an empty Rule. A Decision is plain data.
type Decision struct {
	Effect Effect
	// Rule names the rule that decided, for the audit log, e.g.
	// "role operator: write class call", "role ops: deny_actions Command",
	// "default: action \"Foo\" is not in the action table", "pbx west: not
	// granted". It may quote client input (clipped to 64 bytes, quoted with
	// strconv.Quote when not a plain token): log it, never send it.
	Rule string
	// Reason is short public-safe text for the client when Effect is
	// Deny: "Permission denied", or "Missing action in request". It is
	// empty when Effect is Allow.
	Reason string
}

// Allowed reports whether d allows.
func (d Decision) Allowed() bool { return d.Effect == Allow }

// String returns the effect and the rule: "deny (pbx west: not granted)".
func (d Decision) String() string { return d.Effect.String() + " (" + d.Rule + ")" }

const (
	reasonDenied        = "Permission denied"
	reasonMissingAction = "Missing action in request"
)

func allow(rule string) Decision { return Decision{Effect: Allow, Rule: rule} }

func deny(rule string) Decision {
	return Decision{Effect: Deny, Rule: rule, Reason: reasonDenied}
}

// Engine is a compiled, immutable policy. Build it with CompilePBXs or
// Compile.
//
// The zero value holds no role and no PBX: every Subject it returns denies
// everything. An Engine is safe for concurrent use and owns no goroutines;
// to change the policy, compile a new Engine and swap the pointer.
type Engine struct {
	roles  []*role
	users  map[string][]int // username -> indexes into roles
	groups map[string][]int
	pbxs   []string // sorted, unique

	// views caches what SubjectFor derives from a set of held roles
	// alone, so the sessions of users holding the same roles share it:
	// less memory per session, and one FilterSet (by pointer) per role set
	// that callers may use to evaluate an event once for many sessions.
	// Bounded by maxViews; the Engine stays immutable in meaning.
	viewsMu sync.Mutex
	views   map[string]*roleView
}

// maxViews bounds Engine.views. Distinct role sets are few in practice
// (one per combination of roles users actually hold); past the bound,
// views are built per Subject and not kept.
const maxViews = 4096

// roleView is the part of a Subject that depends only on its role set.
// It is shared and read-only.
type roleView struct {
	roles  []*role    // config order
	names  []string   // their names
	nets   []roleNets // roles with network rules, config order
	pbxs   []string   // sorted: PBXs some role grants
	grants map[string]*grant
}

// role is a compiled Role.
type role struct {
	name        string
	read, write Class
	allPBXs     bool
	pbxs        map[string]string // granted pbx -> how: "pbxs east", "pbx_labels {site=paris}"
	allow       map[string]string // lowercase action -> spelling in the config
	deny        map[string]string
	filters     []Filter
	nets        *networks // nil: no network rules
	rules       *compiledRules
	bound       *boundRules // rules bound once, when no pattern has a template
}

func (r *role) grants(pbx string) bool { return r.allPBXs || r.pbxs[pbx] != "" }

// Compile is CompilePBXs for PBXs without labels, named pbxs.
func Compile(c Config, pbxs []string) (*Engine, error) {
	return CompilePBXs(c, pbxList(pbxs))
}

// CompilePBXs validates c (see Config.ValidatePBXs) and builds an Engine
// for the PBXs pbxs. It returns the error of ValidatePBXs unchanged.
// CompilePBXs copies what it keeps from c and pbxs; label selectors are
// resolved here, once.
func CompilePBXs(c Config, pbxs []PBX) (*Engine, error) {
	if err := c.ValidatePBXs(pbxs); err != nil {
		return nil, err
	}
	e := &Engine{
		users:  make(map[string][]int, len(c.Users)),
		groups: make(map[string][]int, len(c.Groups)),
	}
	for _, p := range pbxs {
		e.pbxs = append(e.pbxs, p.Name)
	}
	e.pbxs = slices.Compact(slices.Sorted(slices.Values(e.pbxs)))
	index := make(map[string]int, len(c.Roles))
	for i, r := range c.Roles {
		cr := &role{
			name:  r.Name,
			pbxs:  map[string]string{},
			allow: map[string]string{},
			deny:  map[string]string{},
		}
		cr.read, _ = ParseClasses(r.Read)
		cr.write, _ = ParseClasses(r.Write)
		for _, p := range r.PBXs {
			if p == "*" {
				cr.allPBXs = true
			} else if cr.pbxs[p] == "" {
				cr.pbxs[p] = "pbxs " + p
			}
		}
		if len(r.PBXLabels) > 0 {
			sel := formatLabels(r.PBXLabels)
			for _, p := range pbxs {
				if p.matchesLabels(r.PBXLabels) && cr.pbxs[p.Name] == "" {
					cr.pbxs[p.Name] = "pbx_labels " + sel
				}
			}
		}
		for _, a := range r.AllowActions {
			if _, dup := cr.allow[asciiLower(a)]; !dup {
				cr.allow[asciiLower(a)] = a
			}
		}
		for _, a := range r.DenyActions {
			if _, dup := cr.deny[asciiLower(a)]; !dup {
				cr.deny[asciiLower(a)] = a
			}
		}
		for _, line := range r.EventFilters {
			f, err := ParseFilterLine(line)
			if err != nil { // Validate has seen it; be safe anyway
				return nil, fmt.Errorf("policy: role %q: %w", r.Name, err)
			}
			cr.filters = append(cr.filters, f)
		}
		var err error
		if cr.nets, err = compileNetworks(r.Permit, r.Deny); err != nil {
			return nil, fmt.Errorf("policy: role %q: %w", r.Name, err)
		}
		var errs []error
		if cr.rules, errs = compileRules(fmt.Sprintf("policy: role %q", r.Name), &r.Rules); len(errs) > 0 {
			return nil, errors.Join(errs...)
		}
		if !cr.rules.vars {
			cr.bound = cr.rules.bind("", nil)
		}
		index[r.Name] = i
		e.roles = append(e.roles, cr)
	}
	bind := func(dst map[string][]int, src map[string][]string) {
		for k, names := range src {
			idx := make([]int, 0, len(names))
			for _, n := range names {
				idx = append(idx, index[n])
			}
			dst[k] = idx
		}
	}
	bind(e.users, c.Users)
	bind(e.groups, c.Groups)
	return e, nil
}

// PBXs returns the sorted names of the PBXs e was compiled for.
func (e *Engine) PBXs() []string {
	if e == nil {
		return nil
	}
	return slices.Clone(e.pbxs)
}

// Subject returns what the user username, member of groups, may do: the
// union of the roles bound to username in Config.Users and to each group in
// Config.Groups. Unknown groups are ignored. A user with no role gets a
// Subject that denies everything. Subject never returns nil.
//
// It is SubjectFor(Identity{Username: username, Groups: groups}): claim
// templates match nothing and network rules are not applied to decisions
// (AllowsAddr still reports them).
func (e *Engine) Subject(username string, groups []string) *Subject {
	return e.SubjectFor(Identity{Username: username, Groups: groups})
}

// SubjectFor returns what the identity id may do: the roles of
// Subject(id.Username, id.Groups), with the parameter rules' templates
// expanded with id.Username and id.Claims (kept, read-only, in the
// Subject). When id.Addr is valid and AllowsAddr(id.Addr) denies it, every
// decision of the Subject (MayUse, Decide, DeliverEvent, ...) denies with
// that rule, so a caller that forgets to call AllowsAddr still fails
// closed. SubjectFor never returns nil.
func (e *Engine) SubjectFor(id Identity) *Subject {
	s := &Subject{username: id.Username, claims: id.Claims}
	if e == nil {
		return s
	}
	held := make([]byte, (len(e.roles)+7)/8) // a bit per role: the cache key
	any := false
	for _, i := range e.users[id.Username] {
		held[i/8] |= 1 << (i % 8)
		any = true
	}
	for _, g := range id.Groups {
		for _, i := range e.groups[g] {
			held[i/8] |= 1 << (i % 8)
			any = true
		}
	}
	if any {
		v := e.view(held)
		s.roles, s.nets, s.pbxs, s.grants = v.names, v.nets, v.pbxs, v.grants
		for _, r := range v.roles {
			b := r.bound
			if b == nil {
				b = r.rules.bind(id.Username, id.Claims)
			}
			if s.bound == nil {
				s.bound = make(map[*role]*boundRules, len(v.roles))
			}
			s.bound[r] = b
		}
	}
	if id.Addr.IsValid() {
		if d := s.AllowsAddr(id.Addr); !d.Allowed() {
			s.addrDenial = &d
		}
	}
	return s
}

// view returns the shared roleView of the role set held (a bitmap over
// e.roles), building and caching it on first use.
func (e *Engine) view(held []byte) *roleView {
	key := string(held)
	e.viewsMu.Lock()
	v := e.views[key]
	e.viewsMu.Unlock()
	if v != nil {
		return v
	}
	v = &roleView{}
	for i, r := range e.roles {
		if held[i/8]&(1<<(i%8)) == 0 {
			continue
		}
		v.roles = append(v.roles, r)
		v.names = append(v.names, r.name)
		if !r.nets.empty() {
			v.nets = append(v.nets, roleNets{role: r.name, nets: r.nets})
		}
	}
	for _, pbx := range e.pbxs {
		g := &grant{deny: map[string]*role{}}
		var filters []Filter
		for _, r := range v.roles {
			if !r.grants(pbx) {
				continue
			}
			g.roles = append(g.roles, r)
			g.read |= r.read
			g.write |= r.write
			for k := range r.deny {
				if g.deny[k] == nil {
					g.deny[k] = r
				}
			}
			filters = append(filters, r.filters...)
		}
		if len(g.roles) == 0 {
			continue
		}
		g.filters = NewFilterSet(filters...)
		if v.grants == nil {
			v.grants = map[string]*grant{}
		}
		v.grants[pbx] = g
		v.pbxs = append(v.pbxs, pbx)
	}
	e.viewsMu.Lock()
	defer e.viewsMu.Unlock()
	if old := e.views[key]; old != nil {
		return old // built concurrently: keep one, so FilterSets are shared
	}
	if len(e.views) < maxViews {
		if e.views == nil {
			e.views = map[string]*roleView{}
		}
		e.views[key] = v
	}
	return v
}

// Subject is what one authenticated user may do: the union of its roles,
// per PBX. Get one from Engine.Subject.
//
// The zero value, and a nil *Subject, hold no role and deny everything. A
// Subject is immutable and safe for concurrent use; it does not follow a
// later Engine.
type Subject struct {
	username   string
	claims     map[string]any // read-only
	roles      []string
	pbxs       []string          // sorted
	grants     map[string]*grant // by PBX; only PBXs some role grants
	nets       []roleNets        // roles with network rules, config order
	bound      map[*role]*boundRules
	addrDenial *Decision // the client address is refused: every decision
}

// grant is the union of the roles of a subject that grant one PBX.
type grant struct {
	roles       []*role // config order
	read, write Class
	deny        map[string]*role // lowercase action -> first role denying it
	filters     FilterSet
}

// Username returns the username the Subject was made for.
func (s *Subject) Username() string {
	if s == nil {
		return ""
	}
	return s.username
}

// Roles returns the names of the subject's roles, in config order. The
// slice is a new copy.
func (s *Subject) Roles() []string {
	if s == nil {
		return nil
	}
	return slices.Clone(s.roles)
}

// PBXs returns the sorted names of the PBXs some role of s grants. The
// slice is a new copy.
func (s *Subject) PBXs() []string {
	if s == nil {
		return nil
	}
	return slices.Clone(s.pbxs)
}

// Claim returns the claim name of the identity the Subject was made for,
// as parameter rules' templates read it (see the package documentation):
// ok is false when the claim is missing or unusable.
func (s *Subject) Claim(name string) (string, bool) {
	if s == nil {
		return "", false
	}
	return claimString(s.claims[name])
}

// lookup returns the grant for pbx, or nil and the denial.
func (s *Subject) lookup(pbx string) (*grant, Decision) {
	if s != nil && s.addrDenial != nil {
		return nil, *s.addrDenial
	}
	if s != nil {
		if g := s.grants[pbx]; g != nil {
			return g, Decision{}
		}
	}
	return nil, deny("pbx " + clip(pbx) + ": not granted")
}

// MayUse decides whether s may address pbx at all (rule 1 of Decide).
func (s *Subject) MayUse(pbx string) Decision {
	g, d := s.lookup(pbx)
	if g == nil {
		return d
	}
	r := g.roles[0]
	if how := r.pbxs[pbx]; how != "" {
		return allow("role " + r.name + ": " + how)
	}
	return allow("role " + r.name + ": pbxs *")
}

// ReadMask returns the union of the read classes of the roles of s that
// grant pbx, or 0 if none does.
func (s *Subject) ReadMask(pbx string) Class {
	if g, _ := s.lookup(pbx); g != nil {
		return g.read
	}
	return 0
}

// WriteMask returns the union of the write classes of the roles of s that
// grant pbx, or 0 if none does.
func (s *Subject) WriteMask(pbx string) Class {
	if g, _ := s.lookup(pbx); g != nil {
		return g.write
	}
	return 0
}

// Filters returns the eventfilters of s on pbx: the filters of every role
// that grants pbx, in one set, as if they were the eventfilter lines of one
// manager.conf user. Include filters of several roles therefore widen each
// other (an event passes if it matches any of them), exclude filters of any
// role apply to all, and a role without filters adds nothing: it does not
// lift another role's filters. The empty set allows every event.
func (s *Subject) Filters(pbx string) FilterSet {
	if g, _ := s.lookup(pbx); g != nil {
		return g.filters
	}
	return FilterSet{}
}

// FilterKey returns an identity of Filters(pbx), for callers that decide
// one event for many sessions and want to run each distinct filter set
// once: subjects of the same role set share one set and one key (until
// the Engine is replaced, or past its cache of role sets, where keys
// differ but stay correct). Equal non-nil keys mean the same filters; nil
// means no filters (or pbx not granted). Keys are comparable; compare them
// with ==, and never rely on their type.
func (s *Subject) FilterKey(pbx string) any {
	if g, _ := s.lookup(pbx); g != nil && g.filters.Len() > 0 {
		return g
	}
	return nil
}

// DeliversClass is DeliverEvent without its filter step and its reason:
// whether an event whose Privilege header is privilege (ok false: none)
// passes the read rule of s on pbx and sendMask. For every event,
//
//	DeliverEvent(pbx, ev, text, send).Allowed() ==
//		DeliversClass(pbx, priv, ok, send) && Filters(pbx).Allows(text)
//
// where priv, ok = ev.Lookup("Privilege"). It depends only on its
// arguments, so callers may cache it per (pbx, privilege, sendMask), and it
// does not allocate.
func (s *Subject) DeliversClass(pbx, privilege string, ok bool, sendMask Class) bool {
	g, _ := s.lookup(pbx)
	if g == nil || !ok {
		return false
	}
	class := ParsePrivilege(privilege)
	return class != 0 && class&^g.read == 0 && class&^sendMask == 0
}

// HasRoles reports whether s holds at least one role.
func (s *Subject) HasRoles() bool { return s != nil && len(s.roles) > 0 }

// Decide decides whether s may send the action a to pbx. The rules, in
// order (see the package documentation for the details):
//
//  1. pbx is not granted by any role of s, or the client address is
//     refused (SubjectFor): deny.
//  2. a has no action name (rawman.Message.Action): deny.
//  3. a role granting pbx lists the action in deny_actions: deny.
//  4. the action is neither in the action table (LookupAction,
//     LookupLegacyAction) nor in the allow_actions of a role granting
//     pbx: deny. A class-0 action that changes no state is allowed
//     (ami-spec.md §4.11), with no parameter rule.
//  5. a role granting pbx allows the action (allow_actions, or its write
//     classes overlap the action's class, §4.4; a class-0 action that
//     changes state needs allow_actions) and the role's parameter rules
//     (Rules) accept a's headers: allow, naming the first such role in
//     config order. If roles allow the action but their rules refuse it:
//     deny, naming the first refusal. If no role allows it: deny.
//  6. an allow is checked once more by the confused-deputy checks of
//     §4.10, which may turn it into a deny.
//
// Action names match ASCII case-insensitively, as in Asterisk; headers are
// looked up as Asterisk does (first match, case-insensitive).
func (s *Subject) Decide(pbx string, a rawman.Message) Decision {
	return s.decide(pbx, a, false)
}

func (s *Subject) decide(pbx string, a rawman.Message, bare bool) Decision {
	g, d := s.lookup(pbx)
	if g == nil {
		return d
	}
	name := a.Action()
	if name == "" {
		return Decision{Effect: Deny, Rule: "default: missing action", Reason: reasonMissingAction}
	}
	key := asciiLower(name)
	if r := g.deny[key]; r != nil {
		return deny("role " + r.name + ": deny_actions " + r.deny[key])
	}
	info, known := lookupAnyAction(name)
	if known && info.Class == 0 && statelessClassless[asciiLower(info.Name)] {
		d = allow("default: " + info.Name + " needs no class")
	} else {
		var refusal string
		listed := false
		for _, r := range g.roles {
			var why string
			if n := r.allow[key]; n != "" {
				why = "allow_actions " + n
			} else if c := r.write & info.Class; known && c != 0 {
				why = "write class " + classNames(c, ",")
			} else {
				continue
			}
			listed = true
			var applied []string
			var no string
			if bare {
				no = r.rules.bareRefusal(key)
			} else {
				applied, no = s.bound[r].check(key, a)
			}
			if no != "" {
				if refusal == "" {
					refusal = "role " + r.name + ": " + no
				}
				continue
			}
			rule := "role " + r.name + ": " + why
			if len(applied) > 0 {
				rule += "; rules " + strings.Join(applied, ", ")
			}
			d = allow(rule)
			break
		}
		switch {
		case d.Allowed():
		case refusal != "":
			return deny(refusal)
		case listed:
			return deny("default: no role allows " + clip(name)) // not reached
		case !known:
			return deny("default: action " + clip(name) + " is not in the action table")
		case info.Class == 0:
			return deny("default: " + info.Name + " changes state and needs no class in Asterisk; allow it with allow_actions")
		default:
			return deny("default: " + info.Name + " needs write class " + classNames(info.Class, " or "))
		}
	}
	if dd, refused := checkDeputy(key, a, g.write); refused {
		return dd
	}
	return d
}

// ListCommandsAllowed reports whether action may be listed in the
// ListCommands reply s receives from pbx: whether some message holding
// "Action: <action>" could be allowed. The confused-deputy checks and the
// parameter rules, which look at other headers, do not apply to a bare
// name, except the rules that deny an action whatever its headers say
// (Command and the config-file actions for a role listing none).
func (s *Subject) ListCommandsAllowed(pbx, action string) bool {
	if action == "" {
		return false
	}
	m := rawman.Message{}
	if err := m.Add("Action", action); err != nil {
		return false
	}
	return s.decide(pbx, m, true).Allowed()
}

// DeliverEvent decides whether a queued event from pbx reaches a session of
// s whose send mask is sendMask (set by Login's Events header or the Events
// action; the caller keeps it within ReadMask). It applies Asterisk's read
// rule (ami-spec.md §4.6): the class of the event's Privilege header
// (ParsePrivilege) must be a subset of ReadMask(pbx) ∩ sendMask; then
// Filters(pbx) must allow text, the exact event text as Asterisk builds it
// (CRLF lines and the final blank line) and filters it (§5.1).
//
// DeliverEvent is for queued events only. What Asterisk writes straight to
// a session (responses, list items, FullyBooted after Login,
// WaitEventComplete; ami-spec.md §4.7) has no Privilege header and is never
// filtered: the caller must not pass it here, and DeliverEvent denies it.
// An event whose Privilege names no class ("<none>") is denied too: Asterisk
// would deliver it to everyone, but no event Asterisk sends has one.
func (s *Subject) DeliverEvent(pbx string, ev rawman.Message, text string, sendMask Class) Decision {
	g, d := s.lookup(pbx)
	if g == nil {
		return d
	}
	priv, ok := ev.Lookup("Privilege")
	if !ok {
		return deny("default: event without Privilege header")
	}
	class := ParsePrivilege(priv)
	if class == 0 {
		return deny("default: event of no class")
	}
	if missing := class &^ g.read; missing != 0 {
		return deny("pbx " + clip(pbx) + ": read mask lacks class " + classNames(missing, ","))
	}
	if missing := class &^ sendMask; missing != 0 {
		return deny("session: send mask lacks class " + classNames(missing, ","))
	}
	if !g.filters.Allows(text) {
		return deny("pbx " + clip(pbx) + ": eventfilters of roles " + filterRoles(g))
	}
	for _, r := range g.roles {
		if r.read.CanRead(class) {
			return allow("role " + r.name + ": read class " + classNames(class, ","))
		}
	}
	var names []string
	for _, r := range g.roles {
		if r.read&class != 0 {
			names = append(names, r.name)
		}
	}
	return allow("roles " + strings.Join(names, ", ") + ": read class " + classNames(class, ","))
}

// filterRoles names the roles of g that have eventfilters.
func filterRoles(g *grant) string {
	var names []string
	for _, r := range g.roles {
		if len(r.filters) > 0 {
			names = append(names, r.name)
		}
	}
	return strings.Join(names, ", ")
}

// statelessClassless holds the class-0 actions (ami-spec.md §4.11) that
// change no state; any other class-0 action (BridgeDestroy, BridgeKick,
// BridgeTechnologySuspend, BridgeTechnologyUnsuspend, QueueReload,
// QueueReset, QueueChangePriorityCaller, QueueWithdrawCaller, DAHDITransfer,
// DAHDIHangup, DAHDIDialOffhook, DAHDIDNDon, DAHDIDNDoff, DAHDIRestart,
// PRIDebugSet, PRIDebugFileUnset, and any class-0 action a future table
// adds) is denied unless a role allows it by name. Keys are lowercase.
var statelessClassless = map[string]bool{
	"ping":                 true,
	"listcommands":         true,
	"events":               true,
	"waitevent":            true,
	"logoff":               true,
	"login":                true,
	"challenge":            true,
	"bridgelist":           true,
	"bridgeinfo":           true,
	"bridgetechnologylist": true,
	"queuestatus":          true,
	"queuesummary":         true,
	"queuerule":            true,
	"dahdishowchannels":    true,
	"dahdishowstatus":      true,
	"prishowspans":         true,
	"queues":               true, // legacy, Asterisk 14 and earlier
	"dataget":              true, // legacy, Asterisk 14 and earlier
}

// classNames returns the labels of the named classes in c, in Asterisk's
// order, joined by sep, without the "all" that Class.String appends. A
// class with no named bit prints as Class.String does.
func classNames(c Class, sep string) string {
	var names []string
	for _, p := range perms[:len(perms)-2] { // every named class, not all or none
		if c&p.num != 0 {
			names = append(names, p.label)
		}
	}
	if len(names) == 0 {
		return c.String()
	}
	return strings.Join(names, sep)
}

// clip makes client input safe and short for a Rule: at most 64 bytes,
// quoted unless it is a plain token of printable ASCII.
func clip(s string) string {
	const max = 64
	long := len(s) > max
	if long {
		s = s[:max] + "..."
	}
	if long || s == "" || !validActionName(s) || strings.ContainsAny(s, `"\`) {
		return strconv.Quote(s)
	}
	return s
}
