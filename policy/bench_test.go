package policy

import (
	"os"
	"strings"
	"testing"

	"github.com/amiproxy/amiproxy/rawman"
)

// BenchmarkDeliverEvent measures one DeliverEvent decision over the
// events Asterisk sent in a recorded Originate, for a subject whose two
// roles carry 10 eventfilters: legacy regexes and advanced filters mixed
// ("mixed10"), advanced only ("advanced10"), and none ("none", the class
// checks alone).
func BenchmarkDeliverEvent(b *testing.B) {
	raw, err := os.ReadFile("testdata/events/originate-local100-admin.txt")
	if err != nil {
		b.Fatal(err)
	}
	type ev struct {
		m    rawman.Message
		text string
	}
	var evs []ev
	for _, block := range strings.SplitAfter(string(raw), "\r\n\r\n") {
		if block == "" {
			continue
		}
		m, err := rawman.NewReplyReader(strings.NewReader(block)).ReadMessage()
		if err != nil || !m.IsEvent() {
			continue
		}
		evs = append(evs, ev{m, block})
	}
	if len(evs) < 5 {
		b.Fatalf("only %d events in the recording", len(evs))
	}
	sets := []struct {
		name         string
		first, other []string
	}{
		{"mixed10", []string{
			"Event: (Newchannel|Hangup|Newstate)",
			"eventfilter(name(DialBegin)) =",
			"eventfilter(name(DialEnd)) =",
			"eventfilter(action(include),header(Channel),method(starts_with)) = PJSIP/",
			"!Channel: Local/200@",
			"eventfilter(action(exclude),header(Context),method(exact)) = secret",
		}, []string{
			"Event: VarSet.*Variable: CALLERID",
			"eventfilter(name(OriginateResponse)) =",
			"!Uniqueid: 999",
			"eventfilter(action(exclude),header(Exten),method(regex)) = ^9[0-9]+$",
		}},
		{"advanced10", []string{
			"eventfilter(name(Newchannel)) =",
			"eventfilter(name(Hangup)) =",
			"eventfilter(name(Newstate)) =",
			"eventfilter(name(DialBegin)) =",
			"eventfilter(name(DialEnd)) =",
			"eventfilter(action(exclude),header(Context),method(exact)) = secret",
		}, []string{
			"eventfilter(name(VarSet)) =",
			"eventfilter(name(OriginateResponse)) =",
			"eventfilter(action(exclude),header(Uniqueid),method(exact)) = 999",
			"eventfilter(action(exclude),header(Channel),method(starts_with)) = Local/200@",
		}},
		{"none", nil, nil},
	}
	for _, set := range sets {
		b.Run(set.name, func(b *testing.B) {
			c := Config{
				Roles: []Role{
					{Name: "wallboard", Read: "all", PBXs: []string{"east"}, EventFilters: set.first},
					{Name: "more", Read: "call", PBXs: []string{"east"}, EventFilters: set.other},
				},
				Users: map[string][]string{"w": {"wallboard", "more"}},
			}
			e, err := Compile(c, []string{"east"})
			if err != nil {
				b.Fatal(err)
			}
			s := e.Subject("w", nil)
			if n, want := s.Filters("east").Len(), len(set.first)+len(set.other); n != want {
				b.Fatalf("subject has %d filters, want %d", n, want)
			}
			delivered := 0
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; b.Loop(); i++ {
				x := &evs[i%len(evs)]
				if s.DeliverEvent("east", x.m, x.text, All).Allowed() {
					delivered++
				}
			}
			if delivered == 0 {
				b.Fatal("no event delivered: the benchmark measures only denials")
			}
		})
	}
}

// BenchmarkDecideRules measures one Decide for a subject whose role has
// parameter rules with claim templates, over an allowed Originate, a
// denied Originate, a Hangup and a Command.
func BenchmarkDecideRules(b *testing.B) {
	e, err := Compile(rulesConfig(), []string{"east"})
	if err != nil {
		b.Fatal(err)
	}
	claims := map[string]any{"extension": "100"}
	agent := e.SubjectFor(Identity{Username: "agent", Claims: claims})
	cli := e.SubjectFor(Identity{Username: "cli"})
	cases := []struct {
		s     *Subject
		m     rawman.Message
		allow bool
	}{
		{agent, action("Originate", "Channel", "PJSIP/100", "Context", "sales-east", "Exten", "+331234", "Priority", "1", "CallerID", "CRM <100>", "Async", "true"), true},
		{agent, action("Originate", "Channel", "PJSIP/100", "Context", "admin", "Exten", "1", "Priority", "1"), false},
		{agent, action("Hangup", "Channel", "PJSIP/100-0000002a"), true},
		{cli, action("Command", "Command", "core show channels concise"), true},
	}
	for _, c := range cases {
		if got := c.s.Decide("east", c.m).Allowed(); got != c.allow {
			b.Fatalf("Decide(%q) = %v, want %v", c.m.String(), got, c.allow)
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		c := &cases[i%len(cases)]
		_ = c.s.Decide("east", c.m)
	}
}

// BenchmarkSubjectFor measures building a Subject whose rules have claim
// templates (once per login).
func BenchmarkSubjectFor(b *testing.B) {
	e, err := Compile(rulesConfig(), []string{"east"})
	if err != nil {
		b.Fatal(err)
	}
	id := Identity{Username: "agent+free", Claims: map[string]any{"extension": "100"}}
	b.ReportAllocs()
	for b.Loop() {
		_ = e.SubjectFor(id)
	}
}
