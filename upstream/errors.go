package upstream

import (
	"errors"
	"fmt"
)

// Sentinel errors. Callers branch on them with errors.Is.
var (
	// ErrClosed reports use of a closed Pool, Conn or Client.
	ErrClosed = errors.New("upstream: closed")
	// ErrUnknownPBX reports a PBX name that is not in the pool.
	ErrUnknownPBX = errors.New("upstream: unknown pbx")
	// ErrMissingAction reports an action message without a non-empty
	// Action header. Asterisk would answer "Missing action in request".
	ErrMissingAction = errors.New("upstream: missing action in request")
	// ErrSessionAction reports a session-scoped action (Login, Logoff,
	// Challenge, Events, Filter, WaitEvent). They change or block the
	// shared upstream session, so the proxy emulates them per client and
	// Do never forwards them.
	ErrSessionAction = errors.New("upstream: session-scoped action is emulated by the proxy, not forwarded")
	// ErrTooManyPending reports that a Conn already holds its maximum of
	// pending actions or of late-reply registrations; nothing was sent.
	ErrTooManyPending = errors.New("upstream: too many pending actions")
	// ErrReplyTooLarge reports a reply the PBX sent that exceeded the
	// reader's message limit or the per-action backlog. The action is
	// aborted; the link stays up.
	ErrReplyTooLarge = errors.New("upstream: reply too large")
	// ErrSlowConsumer is the cause a Client is closed with when it fell
	// more than its queue bound behind. The proxy should disconnect the
	// client, as Asterisk does with a client that does not read.
	ErrSlowConsumer = errors.New("upstream: subscriber too slow, disconnected")
	// ErrPingTimeout is the cause of a link torn down because a keepalive
	// Ping got no reply within PingTimeout.
	ErrPingTimeout = errors.New("upstream: keepalive ping timed out")
	// ErrNotConnected is the cause in a LinkError for an action attempted
	// while the PBX link was not up.
	ErrNotConnected = errors.New("upstream: pbx not connected")
)

// LinkError reports an action that could not complete because the link to
// its PBX was not up, or went away while the action was pending. Do has
// already passed the client a synthesized "Response: Error" carrying
// Public() as its Message.
type LinkError struct {
	PBX    string // configured PBX name
	Action string // action name as the client sent it
	// Sent reports whether the action had been written to the PBX. A sent
	// action may or may not have run there.
	Sent bool
	Err  error // cause: ErrNotConnected, ErrClosed, ErrPingTimeout, an I/O error
}

func (e *LinkError) Error() string {
	if e.Sent {
		return fmt.Sprintf("upstream: pbx %s went away: %s aborted: %v", e.PBX, e.Action, e.Err)
	}
	return fmt.Sprintf("upstream: pbx %s: %s not sent: %v", e.PBX, e.Action, e.Err)
}

func (e *LinkError) Unwrap() error { return e.Err }

// Public returns the fixed text sent to the client in the Message header of
// the synthesized "Response: Error". It names the PBX and nothing else.
func (e *LinkError) Public() string {
	if e.Sent {
		return "PBX " + e.PBX + " went away: action aborted"
	}
	return "PBX " + e.PBX + " is not connected"
}

// ActionError is a "Response: Error" that a PBX returned to one of the
// proxy's own actions (Login, Challenge), which ends a connection attempt.
type ActionError struct {
	PBX, Action, Message string
}

func (e *ActionError) Error() string {
	return fmt.Sprintf("upstream: %s: %s failed: %s", e.PBX, e.Action, e.Message)
}
