// Command gentable generates policy/actions_table.go from ami-actions.tsv,
// the list of AMI actions registered in Asterisk HEAD (ami-spec.md §4.8).
//
// It is run by "go generate" in package policy:
//
//	go run ./internal/gentable -in ../../shared/ami-actions.tsv -out actions_table.go
//
// The TSV has a header line "action<TAB>privileges<TAB>source_file" and one
// line per action. privileges is "none" (class 0) or a comma-separated list
// of class names (system, call, ...). The output keeps the file's order and
// is gofmt'ed. gentable refuses unknown class names, duplicate action names
// (compared ASCII case-insensitively, as Asterisk's action_find does) and
// malformed lines, so a bad input never produces a table.
package main
