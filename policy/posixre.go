package policy

import (
	"errors"
	"fmt"
	"regexp"
	"regexp/syntax"
	"strconv"
	"strings"
	"unicode/utf8"
)

// This file turns the POSIX extended regular expressions of eventfilters
// into Go regexps with the same meaning. Asterisk compiles them with glibc's
// regcomp(REG_EXTENDED | REG_NOSUB), so the syntax accepted, and the meaning
// of what is accepted, is glibc's RE_SYNTAX_POSIX_EXTENDED, which differs
// from RE2's in ways a filter author can easily hit:
//
//   - An escape of an ordinary character is that character: `\d` is "d",
//     `\n` is "n", `\t` is "t". RE2 reads digit, newline, tab.
//   - GNU operators: `\w` `\W` `\s` `\S` (ASCII word and space classes; RE2's
//     `\s` lacks `\v`), `\b` `\B`, and "\`" / `\'` (start and end of the
//     text). `\<` and `\>` (start and end of a word) have no RE2 equivalent.
//   - `\1` ... `\9` are back-references, which RE2 cannot express.
//   - Inside brackets a backslash is an ordinary character: `[\d]` is "\"
//     or "d". A "]" first in the list is literal, "-" first or last is
//     literal; [:class:], [=c=] and [.c.] are POSIX forms.
//   - Intervals are strict: `a{`, `a{x}`, `a{2,1}` and `a{1,2,3}` are
//     errors where RE2 reads some of them as literal text; `a{,3}` means
//     `a{0,3}` and `a{,}` means `a*`. The bound is 32767 (RE2: 1000).
//   - Repeating a repetition is allowed (`a**`, `a+?` is "a+" repeated
//     0 or 1 times, not a lazy `+`); repeating an anchor (`^*`) is an error.
//   - An unmatched ")" is an ordinary character.
//   - `(?...)`, `\pL`, `\Q...\E`, `\z`, `\x41` and the other RE2
//     extensions do not exist: their characters mean what POSIX says.
//   - Without REG_NEWLINE, "." and negated brackets match CR and LF (RE2's
//     (?s) flag), and "^" and "$" match at the start and end of the whole
//     text, not at line breaks: "^Channel:" never matches an event. Except
//     for a glibc quirk: its DFA enters the "after newline" context on every
//     newline the match itself consumes, so a "^" right after a consumed
//     newline, and a "$" right before one, match too:
//     "Event: Newchannel.*^Channel: PJSIP/" does match. The translation
//     writes "^" as \A when the match cannot have consumed anything before
//     it, as RE2's multi-line "^" when it always has, and refuses the mixed
//     case (such as "x*^y"); likewise "$" by what may follow it.
//   - REG_NOSUB only asks whether there is a match, so POSIX's
//     leftmost-longest rule and RE2's leftmost-first rule cannot differ.
//
// The translation assumes the C locale, the default of a C program that does
// not call setlocale, where glibc matches bytes, not UTF-8 characters: "." and "[^a]" consume one byte of "é", and "é*" repeats its
// last byte only. To keep that, every byte of 0x80 and above becomes the
// rune of the same value (Latin-1) in the translated pattern, and in the
// text before it is matched (ereRegexp.match), which costs nothing for ASCII
// text.
//
// What the translation cannot reproduce is refused with errUnsupported
// rather than approximated: back-references, `\<`, `\>`, bounds above
// 1000, the mixed "^"/"$" case above and expressions too large for RE2.
// testdata/posix-ere-glibc.txt holds glibc's own answers for the
// translation to be checked against.

// errUnsupported marks a pattern that glibc accepts but that has no exact
// RE2 translation.
var errUnsupported = errors.New("no exact RE2 equivalent")

// ereError is a glibc regcomp error (unsupported == false) or a construct
// the translation refuses (unsupported == true).
type ereError struct {
	unsupported bool
	msg         string // glibc's REG_* code and explanation, or what is unsupported
	pos         int    // byte offset in the pattern
	cause       error  // the RE2 compile error, if any
}

func (e *ereError) Error() string {
	return fmt.Sprintf("%s at offset %d", e.msg, e.pos)
}

func (e *ereError) Unwrap() []error {
	if e.unsupported {
		return []error{errUnsupported, e.cause}
	}
	return nil
}

// ereRegexp is a compiled POSIX extended regular expression with glibc's
// C-locale meaning. It is safe for concurrent use.
type ereRegexp struct {
	re      *regexp.Regexp // over text whose bytes >= 0x80 are Latin-1 runes
	literal string         // the whole regex, if it is a plain string
	isLit   bool
}

// match reports whether the regex matches anywhere in s, like regexec
// without flags.
func (r *ereRegexp) match(s string) bool {
	if r.isLit {
		return strings.Contains(bytesAsRunes(s), r.literal)
	}
	return r.re.MatchString(bytesAsRunes(s))
}

// bytesAsRunes returns s with every byte of 0x80 and above replaced by the
// UTF-8 encoding of the rune of the same value, so that RE2 sees one
// character per byte. ASCII text is returned as is.
func bytesAsRunes(s string) string {
	i := 0
	for ; i+8 <= len(s); i += 8 { // the common case: ASCII, 8 bytes at a time
		if (s[i]|s[i+1]|s[i+2]|s[i+3]|s[i+4]|s[i+5]|s[i+6]|s[i+7])&0x80 != 0 {
			break
		}
	}
	for i < len(s) && s[i] < utf8.RuneSelf {
		i++
	}
	if i == len(s) {
		return s
	}
	b := make([]byte, i, len(s)+len(s)/2)
	copy(b, s[:i])
	for ; i < len(s); i++ {
		b = utf8.AppendRune(b, rune(s[i]))
	}
	return string(b)
}

// compileERE translates a POSIX extended regular expression and compiles
// the result. Errors are *ereError values; Go compile failures of a
// translated pattern (too large, nested too deeply) count as unsupported.
func compileERE(pattern string) (*ereRegexp, error) {
	expr, err := translateERE(pattern)
	if err != nil {
		return nil, err
	}
	re, err := regexp.Compile(expr)
	if err != nil {
		return nil, &ereError{unsupported: true, msg: "RE2: " + err.Error(), pos: 0, cause: err}
	}
	r := &ereRegexp{re: re}
	r.literal, r.isLit = literalOf(pattern)
	return r, nil
}

// literalOf reports whether pattern is a plain string (ordinary characters
// and escaped ones only), and returns it in the Latin-1 rune form that match
// searches.
func literalOf(pattern string) (string, bool) {
	var b []byte
	for i := 0; i < len(pattern); i++ {
		c := pattern[i]
		if strings.IndexByte(`\^$.[]|()*+?{}`, c) >= 0 {
			if c != '\\' || i+1 >= len(pattern) {
				return "", false
			}
			i++
			c = pattern[i]
			// Escaped punctuation is literal, except the GNU operators
			// \< \> \` \'; escaped letters and digits may be operators or
			// back-references.
			if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
				c >= utf8.RuneSelf || strings.IndexByte("<>`'", c) >= 0 {
				return "", false
			}
		}
		b = utf8.AppendRune(b, rune(c))
	}
	return string(b), true
}

// The tokens of glibc's peek_token for RE_SYNTAX_POSIX_EXTENDED.
type tokKind uint8

const (
	tEnd       tokKind = iota
	tChar              // an ordinary character (one byte)
	tAlt               // |
	tOpen              // (
	tClose             // )
	tStar              // *
	tPlus              // +
	tQuest             // ?
	tOpenDup           // {
	tCloseDup          // }
	tBracket           // [
	tPeriod            // .
	tBegin             // ^
	tEnd0              // $
	tAssert            // \b \B \` \'  (text holds the RE2 form)
	tWordEdge          // \< \>
	tClass             // \w \W \s \S (text holds the RE2 form)
	tBackref           // \1 ... \9
	tBackslash         // a backslash at the end of the pattern
)

type tok struct {
	kind tokKind
	text string // tChar: the byte; tAssert, tClass: RE2 form
	n    int    // tBackref: group number
	pos  int
}

// The parsed expression. Groups need no node: REG_NOSUB captures nothing.
type nodeOp uint8

const (
	nEmpty  nodeOp = iota // matches ""
	nAtom                 // consumes one byte; text is the RE2 atom
	nBegin                // ^
	nEnd                  // $
	nAssert               // other zero-width assertions; text is the RE2 form
	nConcat
	nAlt
	nRepeat // subs[0] repeated min to max times, max -1 for no bound
)

type node struct {
	op       nodeOp
	text     string
	subs     []*node
	min, max int
	pos      int
	seen     uint8   // nBegin: what the match may have consumed before it; nEnd: after it
	xf       [2]xfer // transfer functions, backward and forward, once computed
	xfDone   [2]bool
}

// The states of the anchor analysis: has the match consumed text so far
// (before an anchor), or will it consume more (after it)?
const (
	stEmpty    uint8 = 1 << iota // nothing
	stNonEmpty                   // at least one byte
)

type ereParser struct {
	s           string
	i           int
	nsub        int    // groups opened so far (glibc re_nsub)
	completed   uint32 // bit n: group n+1 is closed (glibc completed_bkref_map)
	unsupported error  // the first construct with no RE2 equivalent
	depth       int    // groups and repetitions around the current token
}

// maxDepth bounds the nesting of groups and repetitions, as RE2 does (its
// parser refuses trees more than 1000 deep), which also bounds recursion.
const maxDepth = 1000

func (p *ereParser) tooDeep(pos int) error {
	return &ereError{unsupported: true, pos: pos, msg: "groups and repetitions nested more than 1000 deep"}
}

// translateERE returns the RE2 syntax, flags included, of a POSIX extended
// regular expression as glibc compiles it without REG_ICASE or REG_NEWLINE,
// in the C locale, for text given to RE2 through bytesAsRunes.
func translateERE(pattern string) (string, error) {
	p := &ereParser{s: pattern}
	t := p.fetch()
	root, err := p.regExp(&t, 0)
	if err != nil {
		return "", err // glibc stops at the first syntax error
	}
	if p.unsupported != nil {
		return "", p.unsupported
	}
	// glibc without REG_NEWLINE still lets "^" match after a newline, and
	// "$" before one, when the match itself consumes that newline (its DFA
	// enters the newline context on every '\n' transition). "^" with nothing
	// consumed before it can only match at the start of the text; with
	// something consumed, it behaves like RE2's multi-line "^". The same
	// holds for "$" and what follows it.
	analyze(root, stEmpty, true)
	analyze(root, stEmpty, false)
	var b strings.Builder
	b.WriteString("(?s)")
	if err := emit(&b, root); err != nil {
		return "", err
	}
	return b.String(), nil
}

func (p *ereParser) errorf(pos int, format string, args ...any) error {
	return &ereError{msg: fmt.Sprintf(format, args...), pos: pos}
}

// unsupportedAt records the first construct that has no RE2 equivalent;
// parsing goes on, since a later syntax error is what glibc reports.
func (p *ereParser) unsupportedAt(pos int, what string) {
	if p.unsupported == nil {
		p.unsupported = &ereError{unsupported: true, msg: what, pos: pos}
	}
}

// fetch reads the next token outside brackets.
func (p *ereParser) fetch() tok {
	pos := p.i
	if p.i >= len(p.s) {
		return tok{kind: tEnd, pos: pos}
	}
	c := p.s[p.i]
	if c == '\\' {
		if p.i+1 >= len(p.s) {
			p.i++
			return tok{kind: tBackslash, pos: pos}
		}
		c2 := p.s[p.i+1 : p.i+2]
		p.i += 2
		switch c2 {
		case "1", "2", "3", "4", "5", "6", "7", "8", "9":
			return tok{kind: tBackref, n: int(c2[0] - '0'), pos: pos}
		case "<", ">":
			return tok{kind: tWordEdge, text: c2, pos: pos}
		case "b":
			return tok{kind: tAssert, text: `\b`, pos: pos}
		case "B":
			return tok{kind: tAssert, text: `\B`, pos: pos}
		case "`":
			return tok{kind: tAssert, text: `\A`, pos: pos}
		case "'":
			return tok{kind: tAssert, text: `\z`, pos: pos}
		case "w":
			return tok{kind: tClass, text: `[0-9A-Za-z_]`, pos: pos}
		case "W":
			return tok{kind: tClass, text: `[^0-9A-Za-z_]`, pos: pos}
		case "s":
			return tok{kind: tClass, text: `[\t\n\v\f\r ]`, pos: pos}
		case "S":
			return tok{kind: tClass, text: `[^\t\n\v\f\r ]`, pos: pos}
		}
		return tok{kind: tChar, text: c2, pos: pos}
	}
	p.i++
	switch c {
	case '|':
		return tok{kind: tAlt, pos: pos}
	case '*':
		return tok{kind: tStar, pos: pos}
	case '+':
		return tok{kind: tPlus, pos: pos}
	case '?':
		return tok{kind: tQuest, pos: pos}
	case '{':
		return tok{kind: tOpenDup, pos: pos}
	case '}':
		return tok{kind: tCloseDup, text: "}", pos: pos}
	case '(':
		return tok{kind: tOpen, pos: pos}
	case ')':
		return tok{kind: tClose, text: ")", pos: pos}
	case '[':
		return tok{kind: tBracket, pos: pos}
	case '.':
		return tok{kind: tPeriod, pos: pos}
	case '^':
		return tok{kind: tBegin, pos: pos}
	case '$':
		return tok{kind: tEnd0, pos: pos}
	}
	return tok{kind: tChar, text: p.s[pos:p.i], pos: pos}
}

// regExp is glibc's parse_reg_exp: branches separated by "|".
func (p *ereParser) regExp(t *tok, nest int) (*node, error) {
	initial := p.completed
	first, err := p.branch(t, nest)
	if err != nil {
		return nil, err
	}
	if t.kind != tAlt {
		return first, nil
	}
	alt := &node{op: nAlt, subs: []*node{first}}
	for t.kind == tAlt {
		*t = p.fetch()
		br := &node{op: nEmpty}
		if t.kind != tAlt && t.kind != tEnd && (nest == 0 || t.kind != tClose) {
			accumulated := p.completed
			p.completed = initial
			br, err = p.branch(t, nest)
			if err != nil {
				return nil, err
			}
			p.completed |= accumulated
		}
		alt.subs = append(alt.subs, br)
	}
	return alt, nil
}

// branch is glibc's parse_branch: a concatenation of expressions.
func (p *ereParser) branch(t *tok, nest int) (*node, error) {
	cat := &node{op: nConcat}
	for {
		expr, err := p.expression(t, nest)
		if err != nil {
			return nil, err
		}
		if expr != nil {
			cat.subs = append(cat.subs, expr)
		}
		if t.kind == tAlt || t.kind == tEnd || (nest != 0 && t.kind == tClose) {
			return cat, nil
		}
	}
}

// expression is glibc's parse_expression: one atom and the repetitions that
// follow it. It leaves the next token in *t and returns nil for nothing.
func (p *ereParser) expression(t *tok, nest int) (*node, error) {
	var n *node
	switch t.kind {
	case tChar, tClose, tCloseDup:
		// An unmatched ")" (nest 0 only; branch stops at ")" otherwise)
		// and a "}" are ordinary characters.
		n = &node{op: nAtom, text: quoteLiteral(t.text[0])}
	case tOpen:
		inner, err := p.subExp(t, nest+1)
		if err != nil {
			return nil, err
		}
		n = inner
	case tBracket:
		cls, err := p.bracket(t.pos)
		if err != nil {
			return nil, err
		}
		n = &node{op: nAtom, text: cls}
	case tBackref:
		if p.completed&(1<<(t.n-1)) == 0 {
			return nil, p.errorf(t.pos, "REG_ESUBREG: invalid back reference \\%d", t.n)
		}
		p.unsupportedAt(t.pos, "back-reference \\"+strconv.Itoa(t.n))
		n = &node{op: nEmpty}
	case tOpenDup, tStar, tPlus, tQuest:
		return nil, p.errorf(t.pos, "REG_BADRPT: repetition operator with nothing to repeat")
	case tBegin, tEnd0, tAssert, tWordEdge:
		// glibc returns right after an anchor, so a repetition operator
		// that follows starts a new expression and is REG_BADRPT.
		switch t.kind {
		case tBegin:
			n = &node{op: nBegin, pos: t.pos}
		case tEnd0:
			n = &node{op: nEnd, pos: t.pos}
		case tAssert:
			n = &node{op: nAssert, text: t.text}
		default:
			p.unsupportedAt(t.pos, `word edge \`+t.text)
			n = &node{op: nEmpty}
		}
		*t = p.fetch()
		return n, nil
	case tPeriod:
		n = &node{op: nAtom, text: "."}
	case tClass:
		n = &node{op: nAtom, text: t.text}
	case tAlt, tEnd:
		return nil, nil
	case tBackslash:
		return nil, p.errorf(t.pos, "REG_EESCAPE: trailing backslash")
	}
	*t = p.fetch()
	for reps := 0; t.kind == tStar || t.kind == tPlus || t.kind == tQuest || t.kind == tOpenDup; reps++ {
		if p.depth+reps >= maxDepth {
			return nil, p.tooDeep(t.pos)
		}
		lo, hi, err := p.dupOp(t)
		if err != nil {
			return nil, err
		}
		n = &node{op: nRepeat, subs: []*node{n}, min: lo, max: hi}
	}
	return n, nil
}

// subExp is glibc's parse_sub_exp; t is the "(" token.
func (p *ereParser) subExp(t *tok, nest int) (*node, error) {
	open := t.pos
	if p.depth++; p.depth >= maxDepth {
		return nil, p.tooDeep(open)
	}
	defer func() { p.depth-- }()
	cur := p.nsub
	p.nsub++
	*t = p.fetch()
	inner := &node{op: nEmpty}
	if t.kind != tClose {
		var err error
		inner, err = p.regExp(t, nest)
		if err != nil {
			return nil, err
		}
		if t.kind != tClose {
			return nil, p.errorf(open, "REG_EPAREN: unmatched (")
		}
	}
	if cur <= 8 {
		p.completed |= 1 << cur
	}
	return inner, nil
}

// dupOp is glibc's parse_dup_op. It returns the bounds (max -1 for none)
// and leaves the token after the operator in *t.
func (p *ereParser) dupOp(t *tok) (lo, hi int, err error) {
	const dupMax = 0x7fff // RE_DUP_MAX
	const re2Max = 1000
	switch t.kind {
	case tStar:
		lo, hi = 0, -1
	case tPlus:
		lo, hi = 1, -1
	case tQuest:
		lo, hi = 0, 1
	case tOpenDup:
		open := t.pos
		start, endTok := p.fetchNumber()
		if start == -1 {
			if endTok.kind == tChar && endTok.text == "," {
				start = 0 // "{,m}" is "{0,m}"
			} else {
				return 0, 0, p.errorf(open, "REG_BADBR: empty interval")
			}
		}
		end := -2
		if start != -2 {
			switch {
			case endTok.kind == tCloseDup:
				end = start
			case endTok.kind == tChar && endTok.text == ",":
				end, endTok = p.fetchNumber()
			}
		}
		if start == -2 || end == -2 {
			if endTok.kind == tEnd {
				return 0, 0, p.errorf(open, "REG_EBRACE: unmatched {")
			}
			return 0, 0, p.errorf(open, "REG_BADBR: invalid interval")
		}
		if (end != -1 && start > end) || endTok.kind != tCloseDup {
			return 0, 0, p.errorf(open, "REG_BADBR: invalid interval")
		}
		top := end
		if end == -1 {
			top = start
		}
		if top > dupMax {
			return 0, 0, p.errorf(open, "REG_ESIZE: interval bound above %d", dupMax)
		}
		if top > re2Max {
			p.unsupportedAt(open, "interval bound above 1000")
		}
		lo, hi = start, end
	}
	*t = p.fetch()
	return lo, hi, nil
}

// fetchNumber is glibc's fetch_number: it reads tokens up to a "}" or a
// "," and returns -1 if there were no digits, -2 if anything else was
// there or the pattern ended, and the number otherwise (capped at
// RE_DUP_MAX+1), with the token that stopped it.
func (p *ereParser) fetchNumber() (int, tok) {
	num := -1
	for {
		t := p.fetch()
		if t.kind == tEnd {
			return -2, t
		}
		if t.kind == tCloseDup || (t.kind == tChar && t.text == ",") {
			return num, t
		}
		switch {
		case t.kind != tChar || t.text[0] < '0' || t.text[0] > '9' || num == -2:
			num = -2
		case num == -1:
			num = int(t.text[0] - '0')
		default:
			num = min(0x7fff+1, num*10+int(t.text[0]-'0'))
		}
	}
}

// xfer maps the analysis state on entry to a node (as an index) to the
// state on exit.
type xfer [4]uint8

var identity = xfer{0, 1, 2, 3}

// transfer returns the forward (before to after) or backward (after to
// before) transfer function of n. Computing it once per node keeps the
// analysis linear however deeply repetitions nest.
func transfer(n *node, forward bool) xfer {
	dir := 0
	if forward {
		dir = 1
	}
	if !n.xfDone[dir] {
		n.xf[dir] = computeTransfer(n, forward)
		n.xfDone[dir] = true
	}
	return n.xf[dir]
}

func computeTransfer(n *node, forward bool) xfer {
	switch n.op {
	case nAtom:
		return xfer{0, stNonEmpty, stNonEmpty, stNonEmpty}
	case nConcat:
		x := identity
		for i := range n.subs {
			sub := n.subs[i]
			if !forward {
				sub = n.subs[len(n.subs)-1-i]
			}
			sx := transfer(sub, forward)
			for in := range x {
				x[in] = sx[x[in]]
			}
		}
		return x
	case nAlt:
		var x xfer
		for _, sub := range n.subs {
			sx := transfer(sub, forward)
			for in := range x {
				x[in] |= sx[in]
			}
		}
		return x
	case nRepeat:
		if n.max == 0 {
			return identity // glibc drops x{0}; RE2 matches "" for it
		}
		sx := transfer(n.subs[0], forward)
		var x xfer
		for in := range x {
			entry := repeatEntry(n, sx, uint8(in))
			x[in] = sx[entry]
			if n.min == 0 {
				x[in] |= uint8(in)
			}
		}
		return x
	}
	return identity // nEmpty, nBegin, nEnd, nAssert
}

// repeatEntry returns the states in which the operand of a repetition may
// be entered: the state before it and, if it can run more than once, the
// states after earlier iterations.
func repeatEntry(n *node, sub xfer, in uint8) uint8 {
	entry := in
	for n.max != 1 {
		next := entry | sub[entry]
		if next == entry {
			break
		}
		entry = next
	}
	return entry
}

// analyze records in every "^" node (forward) whether the match may have
// consumed nothing (stEmpty) and/or something (stNonEmpty) before it, or in
// every "$" node (backward) whether it may consume nothing and/or
// something after it, given the state in at n. It over-approximates
// (assertions are assumed to hold), which can only turn an exact
// translation into a refusal.
func analyze(n *node, in uint8, forward bool) {
	switch n.op {
	case nBegin:
		if forward {
			n.seen |= in
		}
	case nEnd:
		if !forward {
			n.seen |= in
		}
	case nConcat:
		for i := range n.subs {
			sub := n.subs[i]
			if !forward {
				sub = n.subs[len(n.subs)-1-i]
			}
			analyze(sub, in, forward)
			in = transfer(sub, forward)[in]
		}
	case nAlt:
		for _, sub := range n.subs {
			analyze(sub, in, forward)
		}
	case nRepeat:
		if n.max != 0 {
			analyze(n.subs[0], repeatEntry(n, transfer(n.subs[0], forward), in), forward)
		}
	}
}

// emit writes the RE2 form of n.
func emit(b *strings.Builder, n *node) error {
	switch n.op {
	case nAtom, nAssert:
		b.WriteString(n.text)
	case nBegin:
		switch n.seen {
		case stNonEmpty:
			b.WriteString(`(?m:^)`)
		case stEmpty | stNonEmpty:
			return &ereError{unsupported: true, pos: n.pos,
				msg: `"^" that the match may reach with or without consuming text`}
		default:
			b.WriteString(`\A`)
		}
	case nEnd:
		switch n.seen {
		case stNonEmpty:
			b.WriteString(`(?m:$)`)
		case stEmpty | stNonEmpty:
			return &ereError{unsupported: true, pos: n.pos,
				msg: `"$" that the match may leave with or without consuming more text`}
		default:
			b.WriteString(`\z`)
		}
	case nConcat:
		for _, sub := range n.subs {
			if sub.op == nAlt {
				b.WriteString("(?:")
			}
			if err := emit(b, sub); err != nil {
				return err
			}
			if sub.op == nAlt {
				b.WriteString(")")
			}
		}
	case nAlt:
		for i, sub := range n.subs {
			if i > 0 {
				b.WriteByte('|')
			}
			if err := emit(b, sub); err != nil {
				return err
			}
		}
	case nRepeat:
		sub := n.subs[0]
		if sub.op != nAtom {
			b.WriteString("(?:")
		}
		if err := emit(b, sub); err != nil {
			return err
		}
		if sub.op != nAtom {
			b.WriteString(")")
		}
		switch {
		case n.min == 0 && n.max == -1:
			b.WriteByte('*')
		case n.min == 1 && n.max == -1:
			b.WriteByte('+')
		case n.min == 0 && n.max == 1:
			b.WriteByte('?')
		case n.max == -1:
			fmt.Fprintf(b, "{%d,}", n.min)
		default:
			fmt.Fprintf(b, "{%d,%d}", n.min, n.max)
		}
	}
	return nil
}

// bracket parses a bracket expression after its "[" (glibc's
// parse_bracket_exp in the C locale) and returns an RE2 character class.
func (p *ereParser) bracket(open int) (string, error) {
	var b strings.Builder
	b.WriteByte('[')
	if p.i < len(p.s) && p.s[p.i] == '^' {
		b.WriteByte('^')
		p.i++
	}
	first := true
	for {
		if p.i >= len(p.s) {
			return "", p.errorf(open, "REG_EBRACK: unmatched [")
		}
		// A "]" ends the list, except as its first element.
		if p.s[p.i] == ']' && !first {
			p.i++
			break
		}
		start, err := p.bracketElem(open, first)
		if err != nil {
			return "", err
		}
		first = false
		if start.kind == elemClass || start.kind == elemEquiv {
			b.WriteString(start.re2)
			continue
		}
		if p.i >= len(p.s) {
			return "", p.errorf(open, "REG_EBRACK: unmatched [")
		}
		// "-" followed by "]" is an ordinary last character.
		if p.s[p.i] == '-' && p.i+1 < len(p.s) && p.s[p.i+1] != ']' {
			p.i++
			end, err := p.bracketElem(open, true)
			if err != nil {
				return "", err
			}
			if end.kind == elemClass || end.kind == elemEquiv {
				return "", p.errorf(open, "REG_ERANGE: class as a range end point")
			}
			if start.ch > end.ch {
				return "", p.errorf(open, "REG_ERANGE: range %q-%q is reversed", start.ch, end.ch)
			}
			b.WriteString(classChar(start.ch) + "-" + classChar(end.ch))
			continue
		} else if p.s[p.i] == '-' && p.i+1 >= len(p.s) {
			return "", p.errorf(open, "REG_EBRACK: unmatched [")
		}
		b.WriteString(classChar(start.ch))
	}
	b.WriteByte(']')
	return b.String(), nil
}

type elemKind uint8

const (
	elemChar  elemKind = iota // one byte, also [.c.]
	elemClass                 // [:name:]
	elemEquiv                 // [=c=]
)

type bracketElem struct {
	kind elemKind
	ch   byte   // elemChar
	re2  string // elemClass, elemEquiv
}

// bracketElem is glibc's parse_bracket_element. acceptHyphen is true for
// the first element of the list and for range end points: elsewhere a "-"
// must be the last character of the list.
func (p *ereParser) bracketElem(open int, acceptHyphen bool) (bracketElem, error) {
	c := p.s[p.i]
	if c == '[' && p.i+1 < len(p.s) {
		switch delim := p.s[p.i+1]; delim {
		case '.', '=', ':':
			p.i += 2
			name, err := p.bracketSymbol(open, delim)
			if err != nil {
				return bracketElem{}, err
			}
			switch delim {
			case ':':
				if !posixClass(name) {
					return bracketElem{}, p.errorf(open, "REG_ECTYPE: unknown class [:%s:]", name)
				}
				return bracketElem{kind: elemClass, re2: "[:" + name + ":]"}, nil
			case '=':
				if len(name) != 1 {
					return bracketElem{}, p.errorf(open, "REG_ECOLLATE: invalid equivalence class [=%s=]", name)
				}
				return bracketElem{kind: elemEquiv, re2: classChar(name[0])}, nil
			default:
				if len(name) != 1 {
					return bracketElem{}, p.errorf(open, "REG_ECOLLATE: invalid collating element [.%s.]", name)
				}
				return bracketElem{kind: elemChar, ch: name[0]}, nil
			}
		}
	}
	p.i++
	if c == '-' && !acceptHyphen {
		if p.i >= len(p.s) || p.s[p.i] != ']' {
			return bracketElem{}, p.errorf(open, "REG_ERANGE: misplaced -")
		}
	}
	return bracketElem{kind: elemChar, ch: c}, nil
}

// bracketSymbol is glibc's parse_bracket_symbol: the name up to delim and
// "]", at most 31 bytes.
func (p *ereParser) bracketSymbol(open int, delim byte) (string, error) {
	const bufSize = 32 // BRACKET_NAME_BUF_SIZE
	start := p.i
	for i := 0; ; i++ {
		if i >= bufSize || p.i+1 >= len(p.s) {
			return "", p.errorf(open, "REG_EBRACK: unterminated [%c", delim)
		}
		if p.s[p.i] == delim && p.s[p.i+1] == ']' {
			name := p.s[start:p.i]
			p.i += 2
			return name, nil
		}
		p.i++
	}
}

// posixClass reports whether glibc's build_charclass accepts a class name.
// RE2 gives each of them the same ASCII meaning as the C locale.
func posixClass(name string) bool {
	switch name {
	case "alpha", "upper", "lower", "digit", "xdigit", "space",
		"print", "punct", "graph", "cntrl", "blank", "alnum":
		return true
	}
	return false
}

// classChar spells one byte, as a Latin-1 rune, inside an RE2 character
// class.
func classChar(c byte) string {
	if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' {
		return string(c)
	}
	return `\x{` + strconv.FormatUint(uint64(c), 16) + `}`
}

// quoteLiteral spells one byte, as a Latin-1 rune, as an RE2 atom.
func quoteLiteral(c byte) string {
	if c < ' ' || c >= 0x7f {
		return `\x{` + strconv.FormatUint(uint64(c), 16) + `}`
	}
	return regexp.QuoteMeta(string(c))
}

// isRE2Limit reports whether err is RE2 refusing a translated pattern for
// its size rather than its syntax.
func isRE2Limit(err error) bool {
	var se *syntax.Error
	if errors.As(err, &se) {
		switch se.Code {
		case syntax.ErrLarge, syntax.ErrNestingDepth, syntax.ErrInvalidRepeatSize:
			return true
		}
	}
	return false
}
