// Package managerconf reads Asterisk's manager.conf, so that amiproxy can
// import the users of an existing PBX (amiproxy import-manager-conf).
//
// [Parse] reads the configuration syntax of Asterisk's main/config.c:
// sections, templates and inheritance, "=", "=>" and "+=" lines, ";"
// comments and ";-- --;" block comments; #include and #exec are reported,
// not followed. [File.Users] interprets the sections as __init_manager
// does (ami-spec.md §2.11): secret, read, write, eventfilter, permit,
// deny, acl, setvar, displayconnects, allowmultiplelogin, writetimeout.
// [ParseACL] reads permit/deny values like ast_append_ha, and [Translate]
// turns Asterisk's ordered, last-match-wins ACL into amiproxy's permit and
// deny lists (deny wins; a non-empty permit means "only these"), exactly
// for the families the rules name.
//
// Everything here is pure: no I/O beyond the bytes handed to Parse, no
// goroutines, no global state; every type is plain data.
//
// Non-goals: following #include (the caller imports each file), named
// ACLs of acl.conf, and the [general] keys, which have their own place in
// amiproxy's configuration.
package managerconf
