package policy

import (
	"testing"

	"github.com/amiproxy/amiproxy/rawman"
)

// Sessions of users holding the same roles share the role-derived part of
// their Subject, but never the part bound to their own claims.
func TestSubjectsShareRoleViews(t *testing.T) {
	e, err := Compile(Config{
		Roles: []Role{
			{Name: "dial", Read: "call", Write: "originate", PBXs: []string{"east"},
				EventFilters: []string{"Event: Hangup"},
				Rules:        Rules{OriginateChannels: []string{"PJSIP/{{.claims.extension}}"}}},
			{Name: "watch", Read: "call", PBXs: []string{"*"}},
		},
		Groups: map[string][]string{"agents": {"dial"}, "ops": {"watch"}},
	}, []string{"east", "west"})
	if err != nil {
		t.Fatal(err)
	}
	a := e.SubjectFor(Identity{Username: "a", Groups: []string{"agents"}, Claims: map[string]any{"extension": "2001"}})
	b := e.SubjectFor(Identity{Username: "b", Groups: []string{"agents"}, Claims: map[string]any{"extension": "2002"}})
	c := e.SubjectFor(Identity{Username: "c", Groups: []string{"agents", "ops"}})
	if a.grants["east"] == nil || a.grants["east"] != b.grants["east"] {
		t.Errorf("same roles: grants not shared (%p, %p)", a.grants["east"], b.grants["east"])
	}
	if c.grants["east"] == a.grants["east"] {
		t.Error("different role sets share a grant")
	}
	if got := c.PBXs(); len(got) != 2 {
		t.Errorf("c.PBXs() = %v, want east and west", got)
	}
	originate := func(ch string) rawman.Message {
		var m rawman.Message
		_ = m.Add("Action", "Originate")
		_ = m.Add("Channel", ch)
		_ = m.Add("Exten", "100")
		return m
	}
	// Each keeps its own claims: a may dial from 2001 only, b from 2002 only.
	for _, tc := range []struct {
		s    *Subject
		ch   string
		want bool
	}{{a, "PJSIP/2001", true}, {a, "PJSIP/2002", false}, {b, "PJSIP/2002", true}, {b, "PJSIP/2001", false}} {
		if got := tc.s.Decide("east", originate(tc.ch)).Allowed(); got != tc.want {
			t.Errorf("%s Originate %s: allowed = %v, want %v", tc.s.Username(), tc.ch, got, tc.want)
		}
	}
	// The cache is bounded: past maxViews, subjects are still right.
	e.viewsMu.Lock()
	for i := len(e.views); i < maxViews; i++ {
		e.views[string(rune(0x10000+i))] = &roleView{}
	}
	e.viewsMu.Unlock()
	d := e.SubjectFor(Identity{Username: "d", Groups: []string{"ops"}})
	if len(d.PBXs()) != 2 || d.Decide("west", originate("PJSIP/1")).Allowed() {
		t.Errorf("uncached subject: PBXs %v, Originate on west allowed", d.PBXs())
	}
	if len(e.views) != maxViews {
		t.Errorf("views grew past maxViews: %d", len(e.views))
	}
}
