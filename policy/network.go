package policy

import (
	"fmt"
	"net/netip"
	"strings"
)

// The network rules of a role: permit and deny lists of IP prefixes. They
// are simpler than Asterisk's ACLs (last matching rule wins, IPv4 rules
// ignored for IPv6 clients, ami-spec.md §2.7), on purpose:
//
//   - deny wins: an address inside any deny prefix is refused;
//   - a non-empty permit list means "only these": an address outside every
//     permit prefix is refused;
//   - a role with neither list has no network rules.
//
// IPv4-mapped IPv6 addresses (::ffff:10.1.2.3) are matched as the IPv4
// address they carry, and the zone of an address is ignored, so one client
// cannot be read two ways.

// ParsePrefix reads one entry of a permit or deny list: a prefix in CIDR
// notation ("10.0.0.0/8", "2001:db8::/32") or a single address ("10.1.2.3",
// meaning /32 or /128). A prefix with host bits set ("10.1.2.3/8") is
// refused rather than silently masked, and so are zones.
func ParsePrefix(s string) (netip.Prefix, error) {
	if !strings.Contains(s, "/") {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("policy: network %q: want an address or a CIDR prefix such as 10.0.0.0/8", s)
		}
		if a.Zone() != "" {
			return netip.Prefix{}, fmt.Errorf("policy: network %q: zones are not allowed", s)
		}
		a = a.Unmap()
		return netip.PrefixFrom(a, a.BitLen()), nil
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("policy: network %q: want a CIDR prefix such as 10.0.0.0/8: %w", s, err)
	}
	if p != p.Masked() {
		return netip.Prefix{}, fmt.Errorf("policy: network %q has host bits set; write %s", s, p.Masked())
	}
	if p.Addr().Is4In6() {
		// ::ffff:10.0.0.0/104 is 10.0.0.0/8; store it in that form so
		// that unmapped client addresses match it.
		bits := p.Bits() - 96
		if bits < 0 {
			return netip.Prefix{}, fmt.Errorf("policy: network %q mixes IPv4-mapped and native IPv6 addresses; split it", s)
		}
		p = netip.PrefixFrom(p.Addr().Unmap(), bits)
	}
	return p, nil
}

// networks is the compiled permit/deny of one role.
type networks struct {
	permit, deny []netip.Prefix
	src          []string // the entries as written, parallel to permit then deny
}

func (n *networks) empty() bool { return n == nil || len(n.permit) == 0 && len(n.deny) == 0 }

func compileNetworks(permit, deny []string) (*networks, error) {
	if len(permit) == 0 && len(deny) == 0 {
		return nil, nil
	}
	n := &networks{}
	for _, s := range permit {
		p, err := ParsePrefix(s)
		if err != nil {
			return nil, err
		}
		n.permit = append(n.permit, p)
	}
	for _, s := range deny {
		p, err := ParsePrefix(s)
		if err != nil {
			return nil, err
		}
		n.deny = append(n.deny, p)
	}
	return n, nil
}

// check returns whether addr (already unmapped, without zone) passes n, and
// the entry that decided.
func (n *networks) check(addr netip.Addr) (bool, string) {
	for _, p := range n.deny {
		if p.Contains(addr) {
			return false, "deny " + p.String()
		}
	}
	if len(n.permit) == 0 {
		return true, "no permit list"
	}
	for _, p := range n.permit {
		if p.Contains(addr) {
			return true, "permit " + p.String()
		}
	}
	return false, "permit list excludes " + addr.String()
}

// normalAddr unmaps addr and drops its zone.
func normalAddr(addr netip.Addr) netip.Addr { return addr.Unmap().WithZone("") }

// AllowsAddr decides whether a client at addr may use the roles of s: every
// role of s that has network rules (permit, deny) must allow addr; roles
// without network rules impose nothing. A subject none of whose roles has
// network rules allows every address ("default: no network rules"),
// including the zero Addr; otherwise the zero Addr is refused.
//
// Requiring every role, not just those that grant some PBX, keeps the
// answer independent of the PBX and of the order of roles: the network
// rules of any role a user holds apply to all of the user's sessions.
//
// The gateway checks it twice: before authentication with the roles bound
// to the username (Engine.Subject(username, nil)), so a client from a
// refused network is turned away without trying its secret, and after it
// with every role (SubjectFor). A Subject made by SubjectFor with a valid
// Identity.Addr applies the same check to every decision it makes.
func (s *Subject) AllowsAddr(addr netip.Addr) Decision {
	if s == nil || len(s.nets) == 0 {
		return allow("default: no network rules")
	}
	if !addr.IsValid() {
		return deny("default: no client address, and role " + s.nets[0].role + " has network rules")
	}
	addr = normalAddr(addr)
	var first string
	for _, rn := range s.nets {
		ok, why := rn.nets.check(addr)
		if !ok {
			return deny("role " + rn.role + ": " + why)
		}
		if first == "" {
			first = "role " + rn.role + ": " + why
		}
	}
	if len(s.nets) > 1 {
		first += fmt.Sprintf(" (and %d more roles with network rules)", len(s.nets)-1)
	}
	return allow(first)
}

// roleNets names the network rules of one role of a subject.
type roleNets struct {
	role string
	nets *networks
}
