package policy

import (
	"bytes"
	"testing"

	"github.com/amiproxy/amiproxy/rawman"
)

// FuzzDecide feeds client input, framed by rawman.Reader as the proxy
// frames it, to a fixed engine. Decide must not panic, must name a rule,
// must never allow anything to a subject without roles, and must keep the
// invariants of deny_actions and per-PBX grants.
func FuzzDecide(f *testing.F) {
	for _, seed := range []string{
		"Action: Ping\r\n\r\n",
		"Action: Originate\r\nChannel: PJSIP/100\r\nApplication: System\r\nData: id\r\n\r\n",
		"Action: Originate\r\nApplication: Queue\r\nData: q,t,,,60,agi://h/\r\nVariable: CALLERID(num)=1\r\n\r\n",
		"Action: Getvar\r\nVariable: SHELL(id)\r\n\r\n",
		"action: COMMAND\r\ncommand: core show version\r\n\r\n",
		"Action:\r\nAction: BridgeKick\r\n\r\n",
		"Action: Filter\nOperation: Add\nFilter: !Channel: Local/\n\n",
	} {
		f.Add([]byte(seed))
	}
	e, err := Compile(testConfig(), testPBXs)
	if err != nil {
		f.Fatal(err)
	}
	nobody := e.Subject("nobody", []string{"nogroup"})
	admin := e.Subject("admin", nil)
	operator := e.Subject("operator", nil)
	subjects := []*Subject{nobody, admin, operator, e.Subject("originator", nil), e.Subject("queues", nil), nil}
	f.Fuzz(func(t *testing.T, raw []byte) {
		r := rawman.NewReader(bytes.NewReader(raw))
		for range 4 {
			m, err := r.ReadMessage()
			if err != nil {
				return
			}
			name := m.Action()
			for _, s := range subjects {
				for _, pbx := range []string{"east", "west", "north", ""} {
					d := s.Decide(pbx, m)
					if d.Rule == "" || (d.Allowed() == (d.Reason != "")) {
						t.Fatalf("Decide(%q) = %+v: no rule, or reason and effect disagree", m.String(), d)
					}
					if !d.Allowed() {
						continue
					}
					if !s.HasRoles() {
						t.Fatalf("subject without roles: Decide(%s, %q) = %v", pbx, m.String(), d)
					}
					if !s.MayUse(pbx).Allowed() {
						t.Fatalf("Decide(%s, %q) = %v on a pbx MayUse denies", pbx, m.String(), d)
					}
					if s == admin && asciiEqualFold(name, "Command") {
						t.Fatalf("deny_actions Command lost: Decide(%q) = %v", m.String(), d)
					}
					if s == operator && m.Get("Application") != "" && asciiEqualFold(name, "Originate") {
						t.Fatalf("operator (no originate) allowed Originate: %v", d)
					}
				}
				_ = s.DeliverEvent("east", m, m.String(), All)
				if s.ListCommandsAllowed("east", name) && s == nobody {
					t.Fatalf("ListCommandsAllowed(%q) = true for a subject without roles", name)
				}
			}
		}
	})
}
