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
//     YAML configuration. [Config.ValidatePBXs] ([Config.Validate] for PBX
//     names alone) reports every problem at once and changes nothing;
//     [ParseClasses] reads its read/write class lists strictly and
//     [FormatClasses] prints them back, [ParseFilterLine] its eventfilters (a legacy value such as
//     "!Channel: Local/" or a whole line "eventfilter(name(Hangup)) =").
//   - [CompilePBXs] builds an immutable [Engine] for the configured
//     [PBX] values (names and labels); [Compile] is the same for PBX names
//     alone. [Engine.SubjectFor] gives the [Subject] of an [Identity]
//     (username, groups, claims, client address): the union of the roles
//     bound to the username and to each of its groups, with the templates
//     of their parameter rules expanded for that identity.
//     [Engine.Subject] is SubjectFor without claims or address. A user
//     without roles denies everything.
//   - A Role grants its classes, allow_actions, deny_actions, eventfilters
//     and parameter rules on its pbxs ("*": all) and on the PBXs whose
//     labels match all of its pbx_labels. For one PBX, a Subject holds the
//     union of the roles that grant it: read and write masks are OR-ed,
//     and the eventfilters form one set as if they were the lines of one
//     manager.conf user (includes of several roles widen each other,
//     excludes of any role apply, a role without filters lifts nothing).
//   - Network rules: a Role's permit and deny prefixes ([ParsePrefix]).
//     [Subject.AllowsAddr] requires every role of the subject that has
//     network rules to allow the address (deny wins; a non-empty permit
//     list means only those); roles without rules impose nothing. The
//     gateway asks it before authentication with the roles of the
//     username alone, and after it with every role; a Subject made by
//     SubjectFor with a refused Identity.Addr denies every decision.
//   - Parameter rules ([Rules]): contexts, extensions and applications
//     for the destinations of Originate, Redirect, BlindTransfer and
//     Atxfer; originate_channels for Originate's Channel; channels for
//     the channel actions ([ChannelActions]); commands for Command;
//     config_files for GetConfig, GetConfigJSON, ListCategories,
//     CreateConfig and UpdateConfig. Patterns use "*" as the only
//     wildcard and may hold {{.username}} and {{.claims.NAME}}, expanded
//     literally; a missing claim makes a pattern match nothing. Command and
//     the config-file actions are denied to a role that lists none; "!",
//     quotes and shell metacharacters in a Command, and '/', '\' or ".."
//     in a file name, are always refused.
//
// Subject.Decide applies these rules to an action, in order:
//
//  1. The PBX is granted by no role of the subject, or the client address
//     is refused: deny ("pbx west: not granted", "role noc: deny
//     10.9.0.0/16").
//  2. No action name (rawman.Message.Action, the first non-empty Action):
//     deny ("default: missing action").
//  3. A role granting the PBX lists the action in deny_actions: deny; deny
//     wins over everything ("role ops: deny_actions Command").
//  4. The action is in neither LookupAction nor LookupLegacyAction nor any
//     allow_actions: deny ("default: action Foo is not in the action
//     table"). A class-0 action that changes no state (Ping, ListCommands,
//     Events, WaitEvent, Logoff, Login, Challenge, BridgeList,
//     BridgeInfo, BridgeTechnologyList, QueueStatus, QueueSummary,
//     QueueRule, DAHDIShowChannels, DAHDIShowStatus, PRIShowSpans, Queues,
//     DataGet) is allowed ("default: Ping needs no class").
//  5. A role granting the PBX allows the action, by allow_actions or by a
//     write class overlapping the action's class (§4.4; GetConfig,
//     system|config, with write=config alone; a class-0 action that
//     changes state, BridgeKick, QueueReset, DAHDIHangup ... §4.11, needs
//     allow_actions), and that role's parameter rules accept the headers:
//     allow, naming the first such role in config order ("role operator:
//     write class call", "role agent: write class originate; rules
//     originate_channels \"PJSIP/{{.claims.extension}}\", contexts").
//     Roles that allow the action but whose rules refuse it: deny, naming
//     the first refusal ("role agent: rules.contexts: Context admin is not
//     listed"). No role allows it: deny ("default: GetConfig needs write
//     class system or config"). Roles are a union: a role without rules
//     for an action allows it whatever another role's rules say.
//  6. An allow then passes the confused-deputy checks of §4.10, which
//     compare the end user's write mask (Asterisk sees only the proxy's
//     service account): Originate with an Application containing agi,
//     dbdeltree, exec, externalivr, mixmonitor, originate, reload or
//     system (ASCII case-insensitive), or with Data containing CURL, DB,
//     EVAL, FILE, ODBC, REALTIME or SHELL, or with a Variable naming a
//     function ("CALLERID(num)=..."), needs write system; Queue with an
//     AGI argument needs agi or system; Getvar's Variable and Status's
//     Variables containing SHELL or EVAL need system; Filter needs system;
//     UpdateConfig with a Reload header (not ast_false) needs system.
//     allow_actions does not lift these ("asterisk: Originate Application
//     System needs write system").
//
// Subject.DeliverEvent applies Asterisk's read rule to a queued event: the
// class of its Privilege header must be a subset of the read mask and of
// the session's send mask (§4.6), then the eventfilters must allow its
// text (§5). Responses and list items are never passed to it. For fan-out,
// its two parts are also available alone: Subject.DeliversClass (the class
// step, a function of the Privilege value, cacheable) and Subject.Filters
// with Subject.FilterKey, an identity shared by subjects of the same roles,
// so one event's filter verdict can be computed once per filter set.
//
// Concurrency: every type is immutable after construction and safe for
// concurrent use; FilterSet.With returns a new set. The package does no I/O,
// starts no goroutines, keeps no mutable package state and reads no clock.
//
// Non-goals, for now: rate limits and time-based rules (which will take an
// injected clock); parameter rules for actions outside the lists above
// (Park's parking lot, QueueAdd's interface, MessageSend, ...); channel
// lookup by uniqueid (Asterisk finds a channel by uniqueid when no name
// matches, so a channel pattern only covers channels whose names match).
// Nothing here talks to a PBX, logs, or reads configuration files; callers
// hand over decoded values. The version-specific behaviour of Asterisk
// before 22.1 (the case-insensitive "eventfilter" key, basic regexes before
// 13) is not modelled.
package policy
