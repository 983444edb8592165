// Package transcript reads the byte-exact recordings of a real Asterisk kept
// in testdata/ (copied from ../shared/asterisk-transcripts).
//
// A recording is a sequence of blocks, each a marker line
// "#### <dir> +<seconds>s <n> bytes" followed by exactly n raw bytes and one
// LF separator. dir is "C->S" or "S->C", optionally with a connection label
// ("C->S[admin]"). "#### NOTE" and "#### CLOSE" lines are kept as blocks too.
// Lines starting with "# " before the first block are the file's comments.
//
// Only tests use this package. It is safe for concurrent use (no state).
package transcript
