package policy

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

// Patterns of parameter rules. A pattern is text in which "*" matches any
// run of bytes, the empty run included; every other byte matches itself.
// There is no "?", no character class and no escape: a rule that needs a
// literal "*" cannot be written, which no channel, context or file name
// needs.
//
// A pattern may hold templates, expanded for each Subject:
//
//	{{.username}}       the username of the Identity
//	{{.claims.NAME}}    the claim NAME of the Identity (NAME: letters, digits, '_', '-')
//
// Blanks inside the braces are allowed ("{{ .username }}"). Nothing else
// between "{{" and "}}" is accepted. An expanded value is matched
// literally, so a claim holding "*" matches only a "*". A template whose
// value is missing, empty, not a string or a whole number, or holds a
// control character makes the whole pattern match nothing: a missing claim
// never widens a rule.

type tokenKind uint8

const (
	tokLit   tokenKind = iota // literal text
	tokStar                   // "*"
	tokUser                   // {{.username}}
	tokClaim                  // {{.claims.NAME}}
)

type token struct {
	kind tokenKind
	text string // literal text, or the claim name
}

// pattern is a compiled pattern, before expansion.
type pattern struct {
	src  string
	toks []token
	vars bool // holds a template
}

// compilePattern compiles src. templates says whether {{...}} is allowed.
func compilePattern(src string, templates bool) (pattern, error) {
	p := pattern{src: src}
	if src == "" {
		return p, fmt.Errorf("policy: pattern is empty")
	}
	if strings.ContainsFunc(src, isControl) {
		return p, fmt.Errorf("policy: pattern %q has a control character", src)
	}
	lit := func(s string) {
		for {
			i := strings.IndexByte(s, '*')
			if i < 0 {
				break
			}
			if i > 0 {
				p.toks = append(p.toks, token{kind: tokLit, text: s[:i]})
			}
			if n := len(p.toks); n == 0 || p.toks[n-1].kind != tokStar {
				p.toks = append(p.toks, token{kind: tokStar})
			}
			s = s[i+1:]
		}
		if s != "" {
			p.toks = append(p.toks, token{kind: tokLit, text: s})
		}
	}
	rest := src
	for rest != "" {
		open := strings.Index(rest, "{{")
		if close := strings.Index(rest, "}}"); close >= 0 && (open < 0 || close < open) {
			return p, fmt.Errorf("policy: pattern %q: \"}}\" without \"{{\"", src)
		}
		if open < 0 {
			lit(rest)
			break
		}
		if !templates {
			return p, fmt.Errorf("policy: pattern %q: templates ({{...}}) are not allowed here", src)
		}
		lit(rest[:open])
		end := strings.Index(rest[open:], "}}")
		if end < 0 {
			return p, fmt.Errorf("policy: pattern %q: \"{{\" without \"}}\"", src)
		}
		expr := strings.Trim(rest[open+2:open+end], " \t")
		rest = rest[open+end+2:]
		switch {
		case expr == ".username":
			p.toks = append(p.toks, token{kind: tokUser})
		case strings.HasPrefix(expr, ".claims.") && validClaimName(expr[len(".claims."):]):
			p.toks = append(p.toks, token{kind: tokClaim, text: expr[len(".claims."):]})
		default:
			return p, fmt.Errorf("policy: pattern %q: unknown template {{%s}} (want {{.username}} or {{.claims.NAME}})", src, expr)
		}
		p.vars = true
	}
	return p, nil
}

func validClaimName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// claimString turns a claim value into text, or reports that it has none
// usable: strings (non-empty, no control character) and whole numbers
// (JSON numbers decode as float64) only.
func claimString(v any) (string, bool) {
	var s string
	switch v := v.(type) {
	case string:
		s = v
	case float64:
		if v != math.Trunc(v) || math.IsInf(v, 0) || math.Abs(v) > 1<<53 {
			return "", false
		}
		s = strconv.FormatFloat(v, 'f', -1, 64)
	case int:
		s = strconv.Itoa(v)
	case int64:
		s = strconv.FormatInt(v, 10)
	default:
		return "", false
	}
	if s == "" || strings.ContainsFunc(s, isControl) {
		return "", false
	}
	return s, true
}

// glob is an expanded pattern: parts separated by stars. A nil *glob
// matches nothing.
type glob struct {
	src   string   // the pattern as written
	quote string   // src quoted, for rules
	parts []string // literal parts; a star sits between consecutive parts
	lead  bool     // a star before the first part
	trail bool     // a star after the last part
	fold  bool     // ASCII case-insensitive; parts are lowercase
}

// expand binds the templates of p to an identity. It returns nil when a
// template has no usable value.
func (p *pattern) expand(username string, claims map[string]any, fold bool) *glob {
	g := &glob{src: p.src, quote: strconv.Quote(p.src), fold: fold}
	var cur strings.Builder
	inLit := false
	flush := func() {
		s := cur.String()
		if fold {
			s = asciiLower(s)
		}
		g.parts = append(g.parts, s)
		cur.Reset()
		inLit = false
	}
	for i, t := range p.toks {
		switch t.kind {
		case tokStar:
			if i == 0 {
				g.lead = true
				continue
			}
			flush()
			if i == len(p.toks)-1 {
				g.trail = true
			}
			continue
		case tokLit:
			cur.WriteString(t.text)
		case tokUser:
			if username == "" || strings.ContainsFunc(username, isControl) {
				return nil
			}
			cur.WriteString(username)
		case tokClaim:
			v, ok := claimString(claims[t.text])
			if !ok {
				return nil
			}
			cur.WriteString(v)
		}
		inLit = true
	}
	if inLit || len(g.parts) == 0 && !g.lead {
		flush()
	}
	return g
}

// all reports whether g is "*", matching every string.
func (g *glob) all() bool { return g != nil && g.lead && len(g.parts) == 0 }

// match reports whether s matches g. Stars match leftmost-first, which is
// exact for patterns whose only wildcard is "*".
func (g *glob) match(s string) bool {
	if g == nil {
		return false
	}
	if len(g.parts) == 0 {
		return g.lead || s == ""
	}
	parts := g.parts
	if !g.lead {
		if !hasPrefixFold(s, parts[0], g.fold) {
			return false
		}
		s = s[len(parts[0]):]
		parts = parts[1:]
		if len(parts) == 0 {
			return g.trail || s == ""
		}
	}
	last := len(parts) - 1
	for _, p := range parts[:last] {
		i := indexFold(s, p, g.fold)
		if i < 0 {
			return false
		}
		s = s[i+len(p):]
	}
	if g.trail {
		return indexFold(s, parts[last], g.fold) >= 0
	}
	return len(s) >= len(parts[last]) && hasPrefixFold(s[len(s)-len(parts[last]):], parts[last], g.fold)
}

// hasPrefixFold is strings.HasPrefix, ASCII case-insensitive when fold is
// set (prefix is lowercase then).
func hasPrefixFold(s, prefix string, fold bool) bool {
	if len(s) < len(prefix) {
		return false
	}
	if !fold {
		return s[:len(prefix)] == prefix
	}
	for i := 0; i < len(prefix); i++ {
		if lowerASCII(s[i]) != prefix[i] {
			return false
		}
	}
	return true
}

// indexFold is strings.Index, ASCII case-insensitive when fold is set
// (sub is lowercase then).
func indexFold(s, sub string, fold bool) int {
	if !fold {
		return strings.Index(s, sub)
	}
	for i := 0; i+len(sub) <= len(s); i++ {
		if hasPrefixFold(s[i:], sub, true) {
			return i
		}
	}
	return -1
}

// globs is a list of expanded patterns, matched in order.
type globs []*glob

// match returns the first pattern matching s, or nil.
func (gs globs) match(s string) *glob {
	for _, g := range gs {
		if g.match(s) {
			return g
		}
	}
	return nil
}

// all reports whether some pattern is "*".
func (gs globs) all() bool {
	for _, g := range gs {
		if g.all() {
			return true
		}
	}
	return false
}
