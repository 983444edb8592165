// Package rawman is the Asterisk Manager Interface wire format in all its
// encodings, built on the standard library alone.
//
// A [Message] is one AMI packet: ordered "Key: Value" lines with duplicates
// kept, looked up case-insensitively by first match exactly like Asterisk's
// astman_get_header. A [Reader] splits a byte stream into messages with
// Asterisk's exact framing rules for client input (the 1024-byte line
// window, 128 lines, bare LF, NUL, blank lines; see FrameError) or for PBX
// output (lines of any length and "Response: Follows" bodies). A [Writer]
// emits canonical CRLF frames, one Write per message, and refuses CR, LF or
// NUL inside a key or value so no value can inject a line.
//
// The HTTP side turns a GET query or POST form into a Message the way
// Asterisk's HTTP manager does, but refuses decoded CR, LF and NUL, and
// renders AMI text as rawman (text), mxml (XML) and manager (HTML), byte for
// byte like Asterisk.
//
// Concurrency: Message values are plain data; Reader and Writer are not safe
// for concurrent use and own no goroutines. Non-goals: no network I/O, no
// policy, no logging.
package rawman
