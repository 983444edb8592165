package conformance

import (
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// result is one row of the kit's table.
type result struct {
	group, flow, user string
	verdict           string // PASS, FAIL or N/A
	note              string
}

type kit struct {
	s       *setup
	mu      sync.Mutex
	results []result
	// originated are the channels of the guide's Originates, in order.
	originated []string
}

// flow runs fn as a subtest named group/flow[/user] and records its verdict.
// fn fails the subtest with the exchange that differed.
func (k *kit) flow(t *testing.T, group, flow, user string, fn func(t *testing.T)) bool {
	return k.flowNote(t, group, flow, user, "", fn)
}

// flowNote is flow with a note for the table (how the flow passed).
func (k *kit) flowNote(t *testing.T, group, flow, user, note string, fn func(t *testing.T)) bool {
	name := group + "/" + flow
	if user != "" {
		name += "/" + user
	}
	ok := t.Run(name, fn)
	v := "PASS"
	if !ok {
		v = "FAIL"
	}
	k.add(result{group, flow, user, v, note})
	return ok
}

// notApplicable records a flow the client cannot do, with why.
func (k *kit) notApplicable(group, flow, user, why string) {
	k.add(result{group, flow, user, "N/A", why})
}

func (k *kit) add(r result) {
	k.mu.Lock()
	k.results = append(k.results, r)
	k.mu.Unlock()
}

// table prints the results and the closing count.
func (k *kit) table() string {
	k.mu.Lock()
	defer k.mu.Unlock()
	var b strings.Builder
	fmt.Fprintf(&b, "\n%-20s %-48s %-8s %-7s %s\n", "group", "flow", "user", "verdict", "note")
	n := map[string]int{}
	for _, r := range k.results {
		n[r.verdict]++
		fmt.Fprintf(&b, "%-20s %-48s %-8s %-7s %s\n", r.group, r.flow, r.user, r.verdict, r.note)
	}
	fmt.Fprintf(&b, "\nconformance: %d passed, %d failed, %d skipped (not applicable)\n", n["PASS"], n["FAIL"], n["N/A"])
	return b.String()
}

// TestKit is the conformance kit: `go test ./test/conformance -run Kit -v`.
func TestKit(t *testing.T) {
	if testing.Short() {
		t.Skip("the conformance kit runs real clients and a proxy process; not in -short")
	}
	k := &kit{s: newSetup(t)}
	defer func() { fmt.Fprint(os.Stdout, k.table()) }()

	// KIT_GROUPS=actions,book,scripts,libraries,reconnect runs a subset.
	groups := os.Getenv("KIT_GROUPS")
	for _, g := range []struct {
		name string
		run  func(*testing.T)
	}{
		{"actions", k.guideActions},
		{"book", k.book},
		{"scripts", k.guideScripts},
		{"libraries", k.libraries},
		{"reconnect", k.reconnect}, // last: it restarts the proxy
	} {
		if groups == "" || slices.Contains(strings.Split(groups, ","), g.name) {
			t0 := time.Now()
			g.run(t)
			t.Logf("kit group %s: %v", g.name, time.Since(t0).Round(10*time.Millisecond))
		}
	}
}
