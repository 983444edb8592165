package loadgen

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
)

// Goal is how a Row's proxied value is judged against its target.
type Goal int

// The goals a target can have.
const (
	NoTarget      Goal = iota // informational row
	AtMostXRelay              // proxied / relay <= Target
	AtLeastXRelay             // proxied / relay >= Target
	AtMost                    // proxied <= Target
	AtLeast                   // proxied >= Target
)

// Row is one measure of the table. Values are nil where a path does not
// apply (the PBX has no HTTP manager, memory is measured in amiproxy only).
type Row struct {
	Measure string   `json:"measure"`
	Unit    string   `json:"unit"`
	Direct  *float64 `json:"direct"`
	Relay   *float64 `json:"relay"`
	Proxied *float64 `json:"proxied"`
	Goal    Goal     `json:"goal"`
	Target  float64  `json:"target"`
	// Note adds what the numbers alone do not say (drops, counts).
	Note string `json:"note,omitempty"`
}

// V returns a pointer to v, for Row values.
func V(v float64) *float64 { return &v }

// Met reports whether the proxied value reaches the target, and whether
// the row has a target that could be judged at all.
func (r Row) Met() (met, judged bool) {
	if r.Proxied == nil {
		return false, false
	}
	p := *r.Proxied
	switch r.Goal {
	case AtMostXRelay, AtLeastXRelay:
		if r.Relay == nil || *r.Relay == 0 {
			return false, false
		}
		x := p / *r.Relay
		if r.Goal == AtMostXRelay {
			return x <= r.Target, true
		}
		return x >= r.Target, true
	case AtMost:
		return p <= r.Target, true
	case AtLeast:
		return p >= r.Target, true
	}
	return false, false
}

// Table is the result of one bench run.
type Table struct {
	Machine string `json:"machine"`
	Command string `json:"command"`
	Rows    []Row  `json:"rows"`
}

// Add appends a row.
func (t *Table) Add(r Row) { t.Rows = append(t.Rows, r) }

// WriteJSON writes t as indented JSON.
func (t *Table) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(t)
}

// WriteMarkdown writes t as a Markdown table preceded by the machine line.
func (t *Table) WriteMarkdown(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "Machine: %s\n", t.Machine)
	if t.Command != "" {
		fmt.Fprintf(&b, "Command: `%s`\n", t.Command)
	}
	b.WriteString("\n| measure | direct | relay | proxied | ×direct | ×relay | target | met? |\n")
	b.WriteString("|---|---:|---:|---:|---:|---:|---|:-:|\n")
	for _, r := range t.Rows {
		measure := r.Measure
		if r.Note != "" {
			measure += " (" + r.Note + ")"
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s | %s | %s |\n", escapeCell(measure),
			formatValue(r.Direct, r.Unit), formatValue(r.Relay, r.Unit), formatValue(r.Proxied, r.Unit),
			formatRatio(r.Proxied, r.Direct), formatRatio(r.Proxied, r.Relay), r.targetText(), r.metText())
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func escapeCell(s string) string { return strings.ReplaceAll(s, "|", `\|`) }

func (r Row) targetText() string {
	v := trimFloat(r.Target)
	switch r.Goal {
	case AtMostXRelay:
		return "≤ " + v + "× relay"
	case AtLeastXRelay:
		return "≥ " + v + "× relay"
	case AtMost:
		return "≤ " + formatNumber(r.Target, r.Unit)
	case AtLeast:
		return "≥ " + formatNumber(r.Target, r.Unit)
	}
	return ""
}

func (r Row) metText() string {
	met, judged := r.Met()
	switch {
	case !judged:
		return ""
	case met:
		return "yes"
	}
	return "**no**"
}

func formatRatio(a, b *float64) string {
	if a == nil || b == nil || *b == 0 {
		return "—"
	}
	return strconv.FormatFloat(*a / *b, 'f', 2, 64) + "×"
}

func formatValue(v *float64, unit string) string {
	if v == nil {
		return "—"
	}
	return formatNumber(*v, unit)
}

// formatNumber prints v with a precision that suits its size, and unit.
func formatNumber(v float64, unit string) string {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return "n/a"
	}
	var s string
	switch a := math.Abs(v); {
	case a >= 1000:
		s = thousands(int64(math.Round(v)))
	case a >= 100:
		s = strconv.FormatFloat(v, 'f', 0, 64)
	case a >= 10:
		s = strconv.FormatFloat(v, 'f', 1, 64)
	default:
		s = strconv.FormatFloat(v, 'f', 2, 64)
	}
	if unit == "" {
		return s
	}
	return s + " " + unit
}

func trimFloat(v float64) string { return strconv.FormatFloat(v, 'f', -1, 64) }

// thousands prints n with a comma between groups of three digits.
func thousands(n int64) string {
	s := strconv.FormatInt(n, 10)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteString(",")
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}
