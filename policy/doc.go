// Package policy decides what an AMI user may do and see. This part of it
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
// Concurrency: every type is immutable after construction and safe for
// concurrent use; FilterSet.With returns a new set. The package does no I/O,
// starts no goroutines and keeps no mutable package state.
//
// Non-goals, for now: roles, per-PBX access, action and parameter rules and
// confused-deputy checks (the deny-by-default engine of the proxy) come later
// in this package, on top of these primitives. Nothing here talks to a PBX,
// logs, or reads configuration files; callers hand over strings. The
// version-specific behaviour of Asterisk before 22.1 (the case-insensitive
// "eventfilter" key, basic regexes before 13) is not modelled.
package policy
