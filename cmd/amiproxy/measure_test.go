package main

// Measurements, not tests: run with
//
//	go test -run=^$ -bench=Measure -benchtime=1x ./cmd/amiproxy
//
// Each sub-benchmark is one measure group of `amiproxy bench` (bench.go,
// internal/loadgen) at its -quick size: direct to the simulated PBX,
// through a bare byte relay (the floor any proxy can reach) and through
// amiproxy running as its own process, all in one run. The full-length run
// is `amiproxy bench`; see README.

import (
	"context"
	"strings"
	"testing"
	"unicode"

	"github.com/amiproxy/amiproxy/internal/loadgen"
)

func BenchmarkMeasure(b *testing.B) {
	bin := buildAmiproxy(b)
	if _, err := loadgen.RaiseNoFile(); err != nil {
		b.Fatal(err)
	}
	for _, m := range benchMeasures {
		b.Run(m, func(b *testing.B) {
			var w strings.Builder
			o := &benchOptions{quick: true, only: map[string]bool{m: true}, clients: 50, exe: bin,
				logLevel: "error", stderr: &w, command: "go test -bench=Measure/" + m}
			for b.Loop() {
				tab, err := runBenchMeasures(context.Background(), o)
				if err != nil {
					b.Fatalf("%v\n%s", err, w.String())
				}
				var md strings.Builder
				_ = tab.WriteMarkdown(&md)
				b.Logf("\n%s", md.String())
				for _, r := range tab.Rows {
					if r.Proxied == nil {
						continue
					}
					if r.Relay != nil && *r.Relay != 0 {
						b.ReportMetric(*r.Proxied / *r.Relay, slug(r.Measure)+"-x-relay")
						continue
					}
					unit := slug(r.Unit)
					if unit == "" {
						unit = "count"
					}
					b.ReportMetric(*r.Proxied, slug(r.Measure)+"-"+unit)
				}
			}
		})
	}
}

// slug turns a measure name into a benchmark unit (no spaces).
func slug(s string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case unicode.IsLetter(r), unicode.IsDigit(r), r == '/' || r == '-':
			return r
		}
		return '-'
	}, s)
}
