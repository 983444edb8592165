package loadgen

import (
	"bytes"
	"fmt"
	"strconv"
)

// Metrics maps a Prometheus metric name to the sum of its samples over
// all label sets, and each series, written as in the exposition
// (`name{label="value"}`), to its value.
type Metrics map[string]float64

// ParseMetrics reads the Prometheus text exposition format (version
// 0.0.4) and sums each family's samples over their labels. Comment lines
// are skipped; a malformed sample line is an error.
func ParseMetrics(raw []byte) (Metrics, error) {
	m := Metrics{}
	for line := range bytes.Lines(raw) {
		line = bytes.TrimRight(line, "\r\n")
		if len(line) == 0 || line[0] == '#' {
			continue
		}
		name := line
		rest := []byte(nil)
		if i := bytes.IndexAny(line, "{ "); i >= 0 {
			name, rest = line[:i], line[i:]
		}
		if len(name) == 0 || len(rest) == 0 {
			return nil, fmt.Errorf("loadgen: metrics: malformed line %q", line)
		}
		series := ""
		if rest[0] == '{' {
			end := labelsEnd(rest)
			if end < 0 {
				return nil, fmt.Errorf("loadgen: metrics: unterminated labels in %q", line)
			}
			series = string(name) + string(rest[:end+1])
			rest = rest[end+1:]
		}
		f := bytes.Fields(rest)
		if len(f) < 1 || len(f) > 2 {
			return nil, fmt.Errorf("loadgen: metrics: malformed line %q", line)
		}
		v, err := strconv.ParseFloat(string(f[0]), 64)
		if err != nil {
			return nil, fmt.Errorf("loadgen: metrics: value in %q: %w", line, err)
		}
		m[string(name)] += v
		if series != "" {
			m[series] = v
		}
	}
	return m, nil
}

// labelsEnd returns the index of the '}' closing the label set that
// starts at b[0], skipping quoted values with backslash escapes, or -1.
func labelsEnd(b []byte) int {
	quoted := false
	for i := 1; i < len(b); i++ {
		switch c := b[i]; {
		case quoted && c == '\\':
			i++
		case c == '"':
			quoted = !quoted
		case !quoted && c == '}':
			return i
		}
	}
	return -1
}
