package policy

import "net/netip"

// Identity is what policy knows of an authenticated client: enough to
// bind roles (Username, Groups), to expand templates in parameter rules
// (Claims) and to check network rules (Addr). Engine.SubjectFor turns it
// into a Subject; Subject.AllowsAddr (network.go) checks an address.
//
// The zero value is an anonymous identity with no role. An Identity is
// plain data; Claims is treated as read-only.
type Identity struct {
	Username string
	Groups   []string
	// Claims are the identity provider's claims, or nil. Parameter rules
	// refer to them as {{.claims.<name>}}.
	Claims map[string]any
	// Addr is the client's address; the zero Addr skips network rules.
	Addr netip.Addr
}
