package main

import (
	"bytes"
	"context"
	"encoding/json"
	"math"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/amiproxy/amiproxy/internal/loadgen"
)

// buildAmiproxy builds this command without the race detector, as it
// ships, and returns the binary's path.
func buildAmiproxy(t testing.TB) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "amiproxy")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// TestBenchSmoke runs `amiproxy bench -quick` as a process and checks that
// it produces a complete table of plausible numbers. It asserts no
// performance target: those are for the full run on a quiet machine.
func TestBenchSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the quick bench (about a minute)")
	}
	bin := buildAmiproxy(t)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "bench", "-quick", "-json")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	if err := cmd.Run(); err != nil {
		t.Fatalf("amiproxy bench -quick: %v\nstderr:\n%s", err, stderr.String())
	}
	t.Logf("amiproxy bench -quick took %v", time.Since(start).Round(time.Second))
	var tab loadgen.Table
	if err := json.Unmarshal(stdout.Bytes(), &tab); err != nil {
		t.Fatalf("bench -json output is not a table: %v\n%s", err, stdout.String())
	}
	if !strings.Contains(tab.Machine, "logical CPUs") {
		t.Errorf("machine line = %q, want the CPU count", tab.Machine)
	}
	byName := map[string]loadgen.Row{}
	for _, r := range tab.Rows {
		byName[r.Measure] = r
		for _, v := range []struct {
			path string
			v    *float64
		}{{"direct", r.Direct}, {"relay", r.Relay}, {"proxied", r.Proxied}} {
			// An RSS delta may come out slightly negative if the runtime
			// returned memory meanwhile; every other figure is a count.
			if v.v != nil && (math.IsNaN(*v.v) || math.IsInf(*v.v, 0) || *v.v < 0 && r.Unit != "KiB") {
				t.Errorf("%s: %s = %v, want a finite non-negative number", r.Measure, v.path, *v.v)
			}
		}
		if r.Proxied == nil {
			t.Errorf("%s: no proxied value", r.Measure)
		}
	}
	// Every measure group is there, with the paths it compares.
	three := func(name string) loadgen.Row {
		t.Helper()
		r, ok := byName[name]
		if !ok {
			t.Errorf("no row %q; rows: %v", name, rowNames(tab.Rows))
			return r
		}
		for _, v := range []*float64{r.Direct, r.Relay, r.Proxied} {
			if v == nil || *v <= 0 {
				t.Errorf("%s: want positive direct, relay and proxied values, got %v %v %v", name, r.Direct, r.Relay, r.Proxied)
				break
			}
		}
		return r
	}
	for _, n := range []string{"1 connection", "50 connections"} {
		for _, action := range []string{"Ping", "CoreStatus"} {
			p50 := three(action + " round trip p50, " + n)
			p99 := three(action + " round trip p99, " + n)
			if p50.Relay != nil && p99.Relay != nil && *p99.Relay < *p50.Relay {
				t.Errorf("%s over %s: relay p99 %v < p50 %v", action, n, *p99.Relay, *p50.Relay)
			}
		}
	}
	three("actions/s, CoreStatus, 50 connections × 8 in flight")
	for _, subs := range []string{"1 subscriber", "10 subscribers", "100 subscribers"} {
		for _, f := range []string{"no eventfilters", "3 eventfilters per user"} {
			r := three("event deliveries/s, " + subs + ", " + f)
			if !strings.Contains(r.Note, "silent ") {
				t.Errorf("%s: note %q does not report silent loss", r.Measure, r.Note)
			}
		}
	}
	for _, name := range []string{
		"RSS per idle TCP client, 500 clients",
		"RSS per idle HTTP session, 500 sessions",
		"RSS with 300 HTTP sessions long-polling WaitEvent",
		"all 20 PBX links back after a mass restart",
		"connection attempts per PBX during the mass restart",
	} {
		r, ok := byName[name]
		if !ok {
			t.Errorf("no row %q; rows: %v", name, rowNames(tab.Rows))
			continue
		}
		if r.Proxied == nil || r.Goal == loadgen.NoTarget || r.Unit != "KiB" && *r.Proxied <= 0 {
			t.Errorf("%s: proxied %v goal %v, want a value with a target (positive unless an RSS delta)", name, r.Proxied, r.Goal)
		}
	}
	if r, ok := byName["RSS with 300 HTTP sessions long-polling WaitEvent"]; ok && r.Proxied != nil && *r.Proxied > 10_000 {
		t.Errorf("WaitEvent RSS = %v MB: not a plausible RSS", *r.Proxied)
	}
	if r, ok := byName["all 20 PBX links back after a mass restart"]; ok && r.Proxied != nil && *r.Proxied < 0.5 {
		t.Errorf("mass restart: back after %vs, but the PBXs were down for 0.5s", *r.Proxied)
	}
}

func rowNames(rows []loadgen.Row) []string {
	var out []string
	for _, r := range rows {
		out = append(out, r.Measure)
	}
	return out
}

func TestBenchFlags(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"unknown measure", []string{"-only", "ping,latency"}, `unknown measure "latency"`},
		{"no clients", []string{"-clients", "0"}, "-clients: want at least 1"},
		{"negative duration", []string{"-duration", "-1s"}, "-duration: want a positive duration"},
		{"stray argument", []string{"now"}, "unexpected arguments"},
		{"relay without target", []string{"relay"}, "-target is required"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			err := run(context.Background(), append([]string{"bench"}, tt.args...), nil, &out, &errOut)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("bench %q = %v, want an error containing %q", tt.args, err, tt.want)
			}
		})
	}
}

func TestBenchRestartQuickInProcess(t *testing.T) {
	// The restart measure needs no child but the proxy: run it in this
	// process against the built binary, to check the table it adds.
	if testing.Short() {
		t.Skip("starts amiproxy")
	}
	bin := buildAmiproxy(t)
	var out, errOut bytes.Buffer
	if err := run(context.Background(), []string{"bench", "-quick", "-only", "restart", "-exe", bin}, nil, &out, &errOut); err != nil {
		t.Fatalf("bench -only restart: %v\n%s", err, errOut.String())
	}
	for _, want := range []string{"| measure | direct | relay | proxied | ×direct | ×relay | target | met? |",
		"| all 20 PBX links back after a mass restart", "Machine: "} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
	if strings.Contains(out.String(), "Ping") {
		t.Errorf("-only restart ran other measures:\n%s", out.String())
	}
}

// TestBenchDriversInProcess runs the bench's drivers against a simulated
// PBX in this process (under the race detector in CI) and checks what
// they count.
func TestBenchDriversInProcess(t *testing.T) {
	sim, err := newBenchSim()
	if err != nil {
		t.Fatal(err)
	}
	defer sim.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	o := &benchOptions{clients: 4}

	rate, n, err := pipelineRate(ctx, o, sim.Addr().String(), benchLogin, "CoreStatus", 300*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if n <= 0 || rate <= 0 {
		t.Errorf("pipelineRate = %v/s over %d replies, want some", rate, n)
	}

	ev := benchEvent(0)
	for _, l := range []loadgen.Login{
		{User: benchUser, Secret: benchSecret, Events: true},
		{User: benchFiltUser, Secret: benchFiltSec, Events: true}, // the filters let bench events through
	} {
		const subs, events = 5, 3000 // more than fanoutWindow: the producer must pace itself
		r, err := runFanout(ctx, sim.Addr().String(), l, subs, events, func(int) { sim.Emit(ev) })
		if err != nil {
			t.Fatal(err)
		}
		if r.delivered != subs*events || r.lost != 0 || r.silent != 0 || r.disconnected != 0 {
			t.Errorf("runFanout(%s) = %+v, want %d deliveries and no loss", l.User, r, subs*events)
		}
	}

	// A subscriber the PBX drops is counted as disconnected, not silent.
	var once sync.Once
	r, err := runFanout(ctx, sim.Addr().String(), loadgen.Login{User: benchUser, Secret: benchSecret, Events: true}, 3, 2000,
		func(i int) {
			if i == 500 {
				once.Do(sim.DropAll)
			}
			sim.Emit(ev)
		})
	if err != nil {
		t.Fatal(err)
	}
	if r.disconnected != 3 || r.silent != 0 || r.lost <= 0 {
		t.Errorf("runFanout with a PBX that drops everyone = %+v, want 3 disconnected, lost > 0, silent 0", r)
	}

	if v, err := echoCeiling(ctx, o, 200*time.Millisecond); err != nil || v <= 0 {
		t.Errorf("echoCeiling = %v, %v", v, err)
	}
	if v, err := blastCeiling(ctx, 3, 1000); err != nil || v <= 0 {
		t.Errorf("blastCeiling = %v, %v", v, err)
	}
}

func TestSimFilterLines(t *testing.T) {
	got := simFilterLines([]string{"!Channel: SIP/", "eventfilter(name(Hangup)) ="})
	want := []string{"eventfilter = !Channel: SIP/", "eventfilter(name(Hangup)) ="}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("simFilterLines = %q, want %q", got, want)
	}
}
