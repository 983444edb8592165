// Package policy decides what an AMI user may do and see. Its base
// reproduces Asterisk's own rules exactly, quirks included, so that the
// simulated Asterisk (internal/pbxsim) and the proxy's policy engine agree
// with a real PBX byte for byte. The Asterisk semantics follow Asterisk 22.10
// (ami-spec.md sections 4 and 5) and were checked against the recorded
// transcripts and, for regexes, against glibc itself.
//
// The main types and functions:
//
//   - [Class] is a set of permission classes (system, call, ...). ParsePerm
//     reads manager.conf read=/write= values like get_perm, ParseEventMask
//     reads Events/EventMask headers like strings_to_mask, String prints the
//     Privilege header like authority_to_str and ParsePrivilege reads it
//     back. CanWrite authorises an action (any overlapping bit); CanRead, or
//     Delivers, decides whether an event's class reaches a session (all bits
//     needed).
//   - [ActionInfo], [LookupAction] and [Actions] give the class of every
//     action registered in Asterisk HEAD, generated from ami-actions.tsv;
//     [LegacyActions] lists those only older branches have.
//   - [Filter] is one eventfilter, legacy (a POSIX regex) or advanced
//     (action/name/header/method), parsed from manager.conf by [ParseFilter]
//     or from a Filter action by [ParseFilterAction]; [FilterSet] combines a
//     session's filters the way should_send_event does. Refusals are
//     [*FilterError] values wrapping ErrFilterFormat, ErrFilterCompile or
//     ErrFilterUnsupported.
//
// On top of these primitives sits the proxy's decision engine, pure and
// deny by default; every [Decision] names the rule that made it:
//
//   - [Config] (roles, users, groups) is the policy part of amiproxy's
//     YAML configuration. [Config.Validate] reports every problem at once
//     and changes nothing; [ParseClasses] reads its read/write class lists
//     strictly, [ParseFilterLine] its eventfilters (a legacy value such as
//     "!Channel: Local/" or a whole line "eventfilter(name(Hangup)) =").
//   - [Compile] builds an immutable [Engine]. [Engine.Subject] gives the
//     [Subject] of a user: the union of the roles bound to the username and
//     to each of its groups. A user without roles denies everything.
//   - A Role grants its classes, allow_actions, deny_actions and
//     eventfilters on its pbxs ("*": all). For one PBX, a Subject holds the
//     union of the roles that grant it: read and write masks are OR-ed, and
//     the eventfilters form one set as if they were the lines of one
//     manager.conf user (includes of several roles widen each other,
//     excludes of any role apply, a role without filters lifts nothing).
//
// Subject.Decide applies these rules to an action, in order:
//
//  1. The PBX is granted by no role of the subject: deny
//     ("pbx west: not granted").
//  2. No action name (rawman.Message.Action, the first non-empty Action):
//     deny ("default: missing action").
//  3. A role granting the PBX lists the action in deny_actions: deny; deny
//     wins over everything ("role ops: deny_actions Command").
//  4. A role granting the PBX lists it in allow_actions: allow
//     ("role ops: allow_actions QueueReset").
//  5. The action is in LookupAction or LookupLegacyAction. Class 0: allowed
//     if it changes no state (Ping, ListCommands, Events, WaitEvent, Logoff,
//     Login, Challenge, BridgeList, BridgeInfo, BridgeTechnologyList,
//     QueueStatus, QueueSummary, QueueRule, DAHDIShowChannels,
//     DAHDIShowStatus, PRIShowSpans, Queues, DataGet), denied otherwise
//     (BridgeKick, QueueReset, DAHDIHangup ... ami-spec.md §4.11). Any other
//     class: allowed iff the write mask overlaps it, as Asterisk does (§4.4:
//     GetConfig, system|config, with write=config alone), naming the first
//     role that overlaps ("role operator: write class call"); else denied
//     ("default: GetConfig needs write class system or config").
//  6. Not in either table: deny ("default: action Foo is not in the action
//     table"). Actions of custom modules need allow_actions.
//  7. An allow of rule 4 or 5 then passes the confused-deputy checks of
//     §4.10, which compare the end user's write mask (Asterisk sees only the
//     proxy's service account): Originate with an Application containing
//     agi, dbdeltree, exec, externalivr, mixmonitor, originate, reload or
//     system (ASCII case-insensitive), or with Data containing CURL, DB,
//     EVAL, FILE, ODBC, REALTIME or SHELL, or with a Variable naming a
//     function ("CALLERID(num)=..."), needs write system; Queue with an
//     AGI argument needs agi or system; Getvar's Variable and Status's
//     Variables containing SHELL or EVAL need system; Filter needs system.
//     allow_actions does not lift these ("asterisk: Originate Application
//     System needs write system").
//
// Subject.DeliverEvent applies Asterisk's read rule to a queued event: the
// class of its Privilege header must be a subset of the read mask and of
// the session's send mask (§4.6), then the eventfilters must allow its
// text (§5). Responses and list items are never passed to it.
//
// Concurrency: every type is immutable after construction and safe for
// concurrent use; FilterSet.With returns a new set. The package does no I/O,
// starts no goroutines, keeps no mutable package state and reads no clock.
//
// Non-goals, for now: parameter rules beyond the confused-deputy checks,
// rate limits and time-based rules (which will take an injected clock).
// Nothing here talks to a PBX, logs, or reads configuration files; callers
// hand over decoded values. The version-specific behaviour of Asterisk
// before 22.1 (the case-insensitive "eventfilter" key, basic regexes before
// 13) is not modelled.
package policy
