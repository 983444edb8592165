package managerconf

import (
	"encoding/binary"
	"fmt"
	"math/bits"
	"net/netip"
	"strconv"
	"strings"
)

// ACLRule is one entry of a permit= or deny= line, as Asterisk's
// ast_append_ha reads it: an address with an optional mask, "!" in front
// inverting the line's sense.
type ACLRule struct {
	Permit bool
	Prefix netip.Prefix // masked; IPv4 for IPv4 rules
	Num    int
}

// ParseACL reads permit and deny lines (Line.Key "permit" or "deny") like
// ast_append_ha: each value is a comma-separated list of "addr",
// "addr/bits" or "addr/dotted.netmask" (IPv4 only), brackets around IPv6
// addresses allowed, "!" in front of an item inverting its sense; host
// bits are masked off. An item Asterisk would refuse (a bad address, a
// non-contiguous netmask) is an error: Asterisk then deletes the user.
func ParseACL(lines []Line) ([]ACLRule, error) {
	var out []ACLRule
	for _, l := range lines {
		permit := strings.EqualFold(l.Key, "permit")
		for item := range strings.SplitSeq(l.Value, ",") {
			item = strings.TrimSpace(item)
			sense := permit
			if strings.HasPrefix(item, "!") {
				sense = !sense
				item = strings.TrimSpace(item[1:])
			}
			p, err := parseACLItem(item)
			if err != nil {
				return nil, fmt.Errorf("managerconf: line %d: %s = %s: %w", l.Num, l.Key, l.Value, err)
			}
			out = append(out, ACLRule{Permit: sense, Prefix: p, Num: l.Num})
		}
	}
	return out, nil
}

func parseACLItem(item string) (netip.Prefix, error) {
	addrText, mask, hasMask := strings.Cut(item, "/")
	addrText = strings.TrimSuffix(strings.TrimPrefix(addrText, "["), "]")
	addr, err := netip.ParseAddr(addrText)
	if err != nil || addr.Zone() != "" {
		return netip.Prefix{}, fmt.Errorf("%q is not an IP address", addrText)
	}
	addr = addr.Unmap()
	bitsLen := addr.BitLen()
	if hasMask {
		if n, err := strconv.Atoi(mask); err == nil {
			if n < 0 || n > addr.BitLen() {
				return netip.Prefix{}, fmt.Errorf("mask /%s out of range", mask)
			}
			bitsLen = n
		} else {
			m, err := netip.ParseAddr(mask)
			if err != nil || !m.Is4() || !addr.Is4() {
				return netip.Prefix{}, fmt.Errorf("mask %q: want a prefix length or an IPv4 netmask", mask)
			}
			v := binary.BigEndian.Uint32(m.AsSlice())
			ones := bits.LeadingZeros32(^v)
			if v<<ones != 0 {
				return netip.Prefix{}, fmt.Errorf("netmask %s is not contiguous", mask)
			}
			bitsLen = ones
		}
	}
	return netip.PrefixFrom(addr, bitsLen).Masked(), nil
}

// Networks is an ACL translated into amiproxy's network rules: deny wins,
// and a non-empty Permit means "only these".
type Networks struct {
	Permit, Deny []netip.Prefix
	// Notes explain what the translation changed.
	Notes []string
}

// Translate turns Asterisk ACL rules into amiproxy's permit/deny lists.
//
// Asterisk applies the rules of the client's family in order, the last
// match deciding, with "allow" when none matches; IPv4 rules never apply
// to IPv6 clients (ami-spec.md §2.7). Translate computes, per family, the
// exact set of addresses the rules allow (by interval arithmetic) and
// writes it as whichever of "deny these" or "permit only these" is
// shorter, so for the family that has rules the result is exact.
//
// One deliberate difference: when the rules name only one family, Asterisk
// lets every client of the other family in (a classic manager.conf with
// "deny=0.0.0.0/0.0.0.0" and "permit=10.0.0.0/8" does not block IPv6);
// Translate refuses that family instead and says so in Notes.
func Translate(rules []ACLRule) Networks {
	var n Networks
	if len(rules) == 0 {
		return n
	}
	var sets [2]ivset  // 0: IPv4, 1: IPv6; the allowed addresses
	var holes [2]ivset // the deny rules narrower than a whole family
	var has [2]bool
	for f := range sets {
		sets[f] = ivset{{lo: u128{}, hi: maxOf(f)}}
	}
	for _, r := range rules {
		f := family(r.Prefix.Addr())
		has[f] = true
		lo, hi := prefixRange(r.Prefix)
		if r.Permit {
			sets[f] = sets[f].add(lo, hi)
		} else {
			sets[f] = sets[f].sub(lo, hi)
			if r.Prefix.Bits() > 0 {
				holes[f] = holes[f].add(lo, hi)
			}
		}
	}
	names := [2]string{"IPv4", "IPv6"}
	for f := range sets {
		if !has[f] {
			sets[f] = nil
			n.Notes = append(n.Notes, fmt.Sprintf("the rules name no %s network: Asterisk would let every %s client in; amiproxy refuses them (add %s to permit to keep Asterisk's behaviour)", names[f], names[f], fullPrefix(f)))
		}
	}
	// Candidate 1: deny the complement of each family's allowed set.
	var deny []netip.Prefix
	for f := range sets {
		deny = append(deny, toPrefixes(sets[f].complement(maxOf(f)), f)...)
	}
	// Candidate 2: permit the allowed sets.
	var permit []netip.Prefix
	for f := range sets {
		permit = append(permit, toPrefixes(sets[f], f)...)
	}
	// Candidate 3: permit the allowed sets with the holes filled, and deny
	// the holes: (A ∪ H) \ (H \ A) = A, exactly.
	var permit3, deny3 []netip.Prefix
	for f := range sets {
		filled := sets[f]
		for _, h := range holes[f] {
			filled = filled.add(h.lo, h.hi)
		}
		permit3 = append(permit3, toPrefixes(filled, f)...)
		rest := holes[f]
		for _, a := range sets[f] {
			rest = rest.sub(a.lo, a.hi)
		}
		deny3 = append(deny3, toPrefixes(rest, f)...)
	}
	switch {
	case len(permit) == 0:
		// Nothing is allowed at all: a permit list cannot say so.
		n.Deny = []netip.Prefix{fullPrefix(0), fullPrefix(1)}
	case len(deny) <= len(permit) && len(deny) <= len(permit3)+len(deny3):
		n.Deny = deny
	case len(permit) <= len(permit3)+len(deny3):
		n.Permit = permit
	default:
		n.Permit, n.Deny = permit3, deny3
	}
	return n
}

func family(a netip.Addr) int {
	if a.Is4() {
		return 0
	}
	return 1
}

func fullPrefix(f int) netip.Prefix {
	if f == 0 {
		return netip.PrefixFrom(netip.IPv4Unspecified(), 0)
	}
	return netip.PrefixFrom(netip.IPv6Unspecified(), 0)
}

// u128 is an address as a 128-bit number; IPv4 addresses use the low 32
// bits.
type u128 struct{ hi, lo uint64 }

func (a u128) cmp(b u128) int {
	switch {
	case a.hi < b.hi:
		return -1
	case a.hi > b.hi:
		return 1
	case a.lo < b.lo:
		return -1
	case a.lo > b.lo:
		return 1
	}
	return 0
}

func (a u128) add1() u128 {
	lo, carry := bits.Add64(a.lo, 1, 0)
	return u128{a.hi + carry, lo}
}

func (a u128) sub1() u128 {
	lo, borrow := bits.Sub64(a.lo, 1, 0)
	return u128{a.hi - borrow, lo}
}

// ones returns the number with the low n bits set.
func ones(n int) u128 {
	switch {
	case n <= 0:
		return u128{}
	case n < 64:
		return u128{0, 1<<n - 1}
	case n == 64:
		return u128{0, ^uint64(0)}
	case n < 128:
		return u128{1<<(n-64) - 1, ^uint64(0)}
	}
	return u128{^uint64(0), ^uint64(0)}
}

func (a u128) or(b u128) u128 { return u128{a.hi | b.hi, a.lo | b.lo} }

func (a u128) trailingZeros() int {
	if a.lo != 0 {
		return bits.TrailingZeros64(a.lo)
	}
	if a.hi != 0 {
		return 64 + bits.TrailingZeros64(a.hi)
	}
	return 128
}

func maxOf(f int) u128 {
	if f == 0 {
		return ones(32)
	}
	return ones(128)
}

func toU128(a netip.Addr) u128 {
	if a.Is4() {
		b := a.As4()
		return u128{0, uint64(binary.BigEndian.Uint32(b[:]))}
	}
	b := a.As16()
	return u128{binary.BigEndian.Uint64(b[:8]), binary.BigEndian.Uint64(b[8:])}
}

func fromU128(v u128, f int) netip.Addr {
	if f == 0 {
		var b [4]byte
		binary.BigEndian.PutUint32(b[:], uint32(v.lo))
		return netip.AddrFrom4(b)
	}
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], v.hi)
	binary.BigEndian.PutUint64(b[8:], v.lo)
	return netip.AddrFrom16(b)
}

func prefixRange(p netip.Prefix) (lo, hi u128) {
	p = p.Masked()
	lo = toU128(p.Addr())
	return lo, lo.or(ones(p.Addr().BitLen() - p.Bits()))
}

// iv is a closed interval of addresses.
type iv struct{ lo, hi u128 }

// ivset is a sorted list of disjoint, non-adjacent intervals.
type ivset []iv

func (s ivset) add(lo, hi u128) ivset {
	var out ivset
	placed := false
	for _, x := range s {
		switch {
		case x.hi.cmp(lo) < 0 && x.hi.add1().cmp(lo) < 0: // x entirely before, not adjacent
			out = append(out, x)
		case hi.cmp(x.lo) < 0 && hi.add1().cmp(x.lo) < 0: // x entirely after
			if !placed {
				out = append(out, iv{lo, hi})
				placed = true
			}
			out = append(out, x)
		default: // overlapping or adjacent: merge into [lo, hi]
			if x.lo.cmp(lo) < 0 {
				lo = x.lo
			}
			if x.hi.cmp(hi) > 0 {
				hi = x.hi
			}
		}
	}
	if !placed {
		out = append(out, iv{lo, hi})
	}
	return out
}

func (s ivset) sub(lo, hi u128) ivset {
	var out ivset
	for _, x := range s {
		if x.hi.cmp(lo) < 0 || x.lo.cmp(hi) > 0 {
			out = append(out, x)
			continue
		}
		if x.lo.cmp(lo) < 0 {
			out = append(out, iv{x.lo, lo.sub1()})
		}
		if x.hi.cmp(hi) > 0 {
			out = append(out, iv{hi.add1(), x.hi})
		}
	}
	return out
}

func (s ivset) complement(max u128) ivset {
	var out ivset
	next := u128{}
	for _, x := range s {
		if x.lo.cmp(next) > 0 {
			out = append(out, iv{next, x.lo.sub1()})
		}
		if x.hi.cmp(max) >= 0 {
			return out
		}
		next = x.hi.add1()
	}
	return append(out, iv{next, max})
}

// toPrefixes covers s exactly with the fewest aligned prefixes.
func toPrefixes(s ivset, f int) []netip.Prefix {
	width := 32
	if f == 1 {
		width = 128
	}
	var out []netip.Prefix
	for _, x := range s {
		lo := x.lo
		for {
			// The largest block that starts at lo and ends at or before x.hi.
			k := min(lo.trailingZeros(), width)
			for k > 0 && lo.or(ones(k)).cmp(x.hi) > 0 {
				k--
			}
			out = append(out, netip.PrefixFrom(fromU128(lo, f), width-k))
			end := lo.or(ones(k))
			if end.cmp(x.hi) >= 0 {
				break
			}
			lo = end.add1()
		}
	}
	return out
}
