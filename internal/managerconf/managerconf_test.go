package managerconf

import (
	"math/rand/v2"
	"net/netip"
	"os"
	"reflect"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	src := `; comment
[general]
enabled = yes ; trailing comment
port=5038

;-- a block comment
[ignored]
secret = x
;-- nested --;
still comment --;

[agents](!)            ; a template
read = call
write = call,originate
eventfilter = !Channel: Local/

[alice](agents)
secret = pa\;ss
eventfilter(name(Hangup)) =>
permit = 10.0.0.0/255.0.0.0
setvar = A=1

[alice](+)
writetimeout += 00

[bob](agents,!)
no equal sign here
#include "users.conf"
#exec /bin/echo
`
	f, err := Parse([]byte(src))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range f.Sections {
		names = append(names, s.Name)
	}
	if got := strings.Join(names, ","); got != "general,agents,alice,bob" {
		t.Fatalf("sections = %s", got)
	}
	alice := f.Sections[2]
	want := []Line{
		{Key: "read", Value: "call", Num: 13},
		{Key: "write", Value: "call,originate", Num: 14},
		{Key: "eventfilter", Value: "!Channel: Local/", Num: 15},
		{Key: "secret", Value: "pa;ss", Num: 18},
		{Key: "eventfilter(name(Hangup))", Value: "", Object: true, Num: 19},
		{Key: "permit", Value: "10.0.0.0/255.0.0.0", Num: 20},
		{Key: "setvar", Value: "A=1", Num: 21},
		{Key: "writetimeout", Value: "00", Append: true, Num: 24},
	}
	if !reflect.DeepEqual(alice.Lines, want) {
		t.Errorf("alice lines =\n%+v\nwant\n%+v", alice.Lines, want)
	}
	if !f.Sections[1].Template || f.Sections[2].Template || !f.Sections[3].Template {
		t.Errorf("template flags wrong: %+v", f.Sections)
	}
	var warns []string
	for _, w := range f.Warnings {
		warns = append(warns, w.String())
	}
	for _, w := range []string{"line 27: no \"=\"", "line 28: #include \"users.conf\" is not followed", "line 29: #exec /bin/echo is not followed"} {
		if !strings.Contains(strings.Join(warns, "\n"), w) {
			t.Errorf("warnings %q lack %q", warns, w)
		}
	}

	users, uw := f.Users()
	if len(users) != 1 || users[0].Name != "alice" {
		t.Fatalf("Users() = %+v, want alice only (templates and general are not users)", users)
	}
	u := users[0]
	if u.Secret != "pa;ss" || !u.HasSecret || u.Read != "call" || u.Write != "call,originate" || len(u.EventFilters) != 2 ||
		len(u.ACL) != 1 || len(u.Setvars) != 1 || u.WriteTimeout != "00" {
		t.Errorf("alice = %+v", u)
	}
	if len(uw) != 0 {
		t.Errorf("Users() warnings = %v", uw)
	}
}

func TestParseErrors(t *testing.T) {
	for _, src := range []string{
		"secret = x\n",            // outside a section
		"[a\nsecret = x\n",        // no ]
		"[a](tmpl)\n",             // unknown template
		"[a](+)\n",                // append to nothing
		"[a]\nsecret = x\x00y\n",  // NUL
		"[a](!\nsecret = x\n",     // no )
		"[b]\n[a](b,c)\nread=x\n", // c unknown
	} {
		if f, err := Parse([]byte(src)); err == nil {
			t.Errorf("Parse(%q) = %+v, want an error", src, f)
		}
	}
}

func TestUsersQuirks(t *testing.T) {
	src := "[Alice]\nsecret=a\nEventFilter = Event: X\nread=call\nread=system\n[alice]\nsecret=b\n[GENERAL]\nsecret=g\n"
	f, err := Parse([]byte(src))
	if err != nil {
		t.Fatal(err)
	}
	users, warns := f.Users()
	if len(users) != 1 || users[0].Secret != "b" || users[0].Name != "alice" {
		t.Errorf("Users() = %+v, want the later alice only", users)
	}
	joined := ""
	for _, w := range warns {
		joined += w.String() + "\n"
	}
	for _, w := range []string{"EventFilter: Asterisk 22.1 and later ignore", "[alice] repeats user [Alice]"} {
		if !strings.Contains(joined, w) {
			t.Errorf("warnings lack %q:\n%s", w, joined)
		}
	}
	f, _ = Parse([]byte("[a]\nread=call\nread=system\n"))
	if users, _ := f.Users(); users[0].Read != "system" {
		t.Errorf("repeated read = %q, want the last one", users[0].Read)
	}
}

func TestParseACL(t *testing.T) {
	rules, err := ParseACL([]Line{
		{Key: "deny", Value: "0.0.0.0/0.0.0.0"},
		{Key: "permit", Value: "10.1.2.3/255.255.0.0, 192.168.1.7"},
		{Key: "Permit", Value: "!10.1.9.0/24,[2001:db8::1]/64"},
	})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range rules {
		s := "deny "
		if r.Permit {
			s = "permit "
		}
		got = append(got, s+r.Prefix.String())
	}
	want := "deny 0.0.0.0/0,permit 10.1.0.0/16,permit 192.168.1.7/32,deny 10.1.9.0/24,permit 2001:db8::/64"
	if strings.Join(got, ",") != want {
		t.Errorf("ParseACL = %s, want %s", strings.Join(got, ","), want)
	}
	for _, v := range []string{"10.0.0.0/255.0.255.0", "host.example", "10.0.0.0/33", "2001:db8::/255.0.0.0", "fe80::1%eth0"} {
		if _, err := ParseACL([]Line{{Key: "permit", Value: v}}); err == nil {
			t.Errorf("ParseACL(permit=%s) = nil error", v)
		}
	}
}

// asteriskAllows is ast_apply_ha: the rules of the client's family, last
// match wins, allow by default.
func asteriskAllows(rules []ACLRule, a netip.Addr) bool {
	ok := true
	for _, r := range rules {
		if r.Prefix.Contains(a) {
			ok = r.Permit
		}
	}
	return ok
}

// amiproxyAllows is policy's network check.
func amiproxyAllows(n Networks, a netip.Addr) bool {
	for _, p := range n.Deny {
		if p.Contains(a) {
			return false
		}
	}
	if len(n.Permit) == 0 {
		return true
	}
	for _, p := range n.Permit {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

func TestTranslateExamples(t *testing.T) {
	tests := []struct {
		acl          []Line
		permit, deny string
		notes        int
	}{
		{[]Line{{Key: "deny", Value: "0.0.0.0/0.0.0.0"}, {Key: "permit", Value: "10.0.0.0/8"}, {Key: "permit", Value: "127.0.0.1"}},
			"10.0.0.0/8,127.0.0.1/32", "", 1},
		{[]Line{{Key: "deny", Value: "192.0.2.0/24"}}, "", "192.0.2.0/24,::/0", 1},
		{[]Line{{Key: "permit", Value: "10.0.0.0/8"}}, "", "::/0", 1}, // permit alone changes nothing in Asterisk
		{[]Line{{Key: "deny", Value: "0.0.0.0/0"}, {Key: "deny", Value: "::/0"}}, "", "0.0.0.0/0,::/0", 0},
		{[]Line{{Key: "deny", Value: "::/0"}, {Key: "permit", Value: "::1"}, {Key: "deny", Value: "0.0.0.0/0"}, {Key: "permit", Value: "127.0.0.0/8"}},
			"127.0.0.0/8,::1/128", "", 0},
	}
	for _, tt := range tests {
		rules, err := ParseACL(tt.acl)
		if err != nil {
			t.Fatal(err)
		}
		n := Translate(rules)
		if got := join(n.Permit); got != tt.permit {
			t.Errorf("Translate(%v).Permit = %s, want %s", tt.acl, got, tt.permit)
		}
		if got := join(n.Deny); got != tt.deny {
			t.Errorf("Translate(%v).Deny = %s, want %s", tt.acl, got, tt.deny)
		}
		if len(n.Notes) != tt.notes {
			t.Errorf("Translate(%v).Notes = %q, want %d", tt.acl, n.Notes, tt.notes)
		}
	}
	if n := Translate(nil); n.Permit != nil || n.Deny != nil {
		t.Errorf("Translate(nil) = %+v, want no rules", n)
	}
}

func join(ps []netip.Prefix) string {
	var s []string
	for _, p := range ps {
		s = append(s, p.String())
	}
	return strings.Join(s, ",")
}

// TestTranslateMatchesAsterisk checks random rule lists against the
// last-match-wins oracle at every prefix boundary and at random addresses.
func TestTranslateMatchesAsterisk(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 2000; i++ {
		rules := randomRules(r)
		checkTranslate(t, rules, probes(r, rules))
	}
}

func randomRules(r *rand.Rand) []ACLRule {
	n := 1 + r.IntN(6)
	var rules []ACLRule
	v6 := r.IntN(3) == 0
	for range n {
		var p netip.Prefix
		if v6 && r.IntN(2) == 0 {
			var b [16]byte
			b[0], b[1], b[15] = 0x20, 0x01, byte(r.IntN(4))
			b[2] = byte(r.IntN(2))
			p = netip.PrefixFrom(netip.AddrFrom16(b), []int{0, 16, 23, 64, 127, 128}[r.IntN(6)]).Masked()
		} else {
			b := [4]byte{10, byte(r.IntN(3)), byte(r.IntN(3)), byte(r.IntN(8))}
			p = netip.PrefixFrom(netip.AddrFrom4(b), []int{0, 8, 15, 16, 24, 29, 31, 32}[r.IntN(8)]).Masked()
		}
		rules = append(rules, ACLRule{Permit: r.IntN(2) == 0, Prefix: p})
	}
	return rules
}

func probes(r *rand.Rand, rules []ACLRule) []netip.Addr {
	var out []netip.Addr
	for _, ru := range rules {
		lo, hi := prefixRange(ru.Prefix)
		f := family(ru.Prefix.Addr())
		out = append(out, fromU128(lo, f), fromU128(hi, f))
		if lo.cmp(u128{}) > 0 {
			out = append(out, fromU128(lo.sub1(), f))
		}
		if hi.cmp(maxOf(f)) < 0 {
			out = append(out, fromU128(hi.add1(), f))
		}
	}
	for range 20 {
		out = append(out, netip.AddrFrom4([4]byte{10, byte(r.IntN(3)), byte(r.IntN(3)), byte(r.IntN(256))}))
	}
	return out
}

func checkTranslate(t *testing.T, rules []ACLRule, addrs []netip.Addr) {
	t.Helper()
	n := Translate(rules)
	var has [2]bool
	for _, r := range rules {
		has[family(r.Prefix.Addr())] = true
	}
	for _, a := range addrs {
		f := family(a)
		want := asteriskAllows(rules, a)
		if !has[f] {
			want = false // the documented difference: the other family is refused
		}
		if got := amiproxyAllows(n, a); got != want {
			t.Fatalf("rules %v: translated %+v: %s allowed = %v, Asterisk %v", rules, n, a, got, want)
		}
	}
}

func FuzzParse(f *testing.F) {
	for _, p := range []string{"../../testdata/transcripts/config/manager.conf", "testdata/manager.conf"} {
		if b, err := os.ReadFile(p); err == nil {
			f.Add(b)
		}
	}
	f.Add([]byte("[a](!)\nsecret=1;c\n;--x\n--;\n[b](a)\nread=call\n[b](+)\nwrite+=,x\n"))
	f.Fuzz(func(t *testing.T, src []byte) {
		file, err := Parse(src)
		if err != nil {
			return
		}
		users, _ := file.Users()
		for _, u := range users {
			if rules, err := ParseACL(u.ACL); err == nil {
				checkTranslate(t, rules, nil)
				n := Translate(rules)
				for _, r := range rules {
					lo, hi := prefixRange(r.Prefix)
					fam := family(r.Prefix.Addr())
					checkTranslate(t, rules, []netip.Addr{fromU128(lo, fam), fromU128(hi, fam)})
				}
				_ = n
			}
		}
		// Printing and parsing again gives the same sections.
		again, err := Parse([]byte(file.String()))
		if err != nil {
			t.Fatalf("Parse(String()) = %v\n%s", err, file.String())
		}
		if len(again.Sections) != len(file.Sections) {
			t.Fatalf("Parse(String()) has %d sections, want %d", len(again.Sections), len(file.Sections))
		}
		for i, s := range file.Sections {
			a := again.Sections[i]
			if a.Name != s.Name || a.Template != s.Template || len(a.Lines) != len(s.Lines) {
				t.Fatalf("section %d = %+v, want %+v", i, a, s)
			}
			for j, l := range s.Lines {
				b := a.Lines[j]
				if b.Key != l.Key || b.Value != l.Value || b.Object != l.Object || b.Append != l.Append {
					t.Fatalf("section %d line %d = %+v, want %+v", i, j, b, l)
				}
			}
		}
	})
}
