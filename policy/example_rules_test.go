package policy_test

import (
	"fmt"
	"net/netip"

	"github.com/amiproxy/amiproxy/policy"
	"github.com/amiproxy/amiproxy/rawman"
)

// A role that may click-to-dial from the caller's own phone into one
// context, from the office network only.
func ExampleEngine_SubjectFor() {
	cfg := policy.Config{
		Roles: []policy.Role{{
			Name:      "agent",
			Write:     "originate,call",
			PBXLabels: map[string]string{"site": "paris"},
			Permit:    []string{"10.0.0.0/8"},
			Rules: policy.Rules{
				Contexts:          []string{"from-crm"},
				OriginateChannels: []string{"PJSIP/{{.claims.extension}}"},
				Channels:          []string{"PJSIP/{{.claims.extension}}-*"},
			},
		}},
		Users: map[string][]string{"alice": {"agent"}},
	}
	eng, err := policy.CompilePBXs(cfg, []policy.PBX{{Name: "paris1", Labels: map[string]string{"site": "paris"}}})
	if err != nil {
		fmt.Println(err)
		return
	}
	alice := eng.SubjectFor(policy.Identity{
		Username: "alice",
		Claims:   map[string]any{"extension": "100"},
		Addr:     netip.MustParseAddr("10.1.2.3"),
	})
	fmt.Println(alice.MayUse("paris1"))
	fmt.Println(alice.Decide("paris1", rawman.New("Action", "Originate", "Channel", "PJSIP/100", "Context", "from-crm", "Exten", "123")))
	fmt.Println(alice.Decide("paris1", rawman.New("Action", "Originate", "Channel", "PJSIP/101", "Context", "from-crm", "Exten", "123")))
	fmt.Println(alice.Decide("paris1", rawman.New("Action", "Hangup", "Channel", "/.*/")))
	fmt.Println(alice.AllowsAddr(netip.MustParseAddr("192.0.2.1")))
	// Output:
	// allow (role agent: pbx_labels {site=paris})
	// allow (role agent: write class originate; rules originate_channels "PJSIP/{{.claims.extension}}", contexts)
	// deny (role agent: rules.originate_channels: Channel PJSIP/101 does not match)
	// deny (role agent: rules.channels: Channel regex /.*/ needs the pattern "*")
	// deny (role agent: permit list excludes 192.0.2.1)
}
