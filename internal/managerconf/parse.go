package managerconf

import (
	"bufio"
	"bytes"
	"fmt"
	"strings"
)

// MaxSize bounds the input Parse accepts (manager.conf files are a few
// kilobytes; 4 MiB is generous).
const MaxSize = 4 << 20

// Line is one "key = value" line of a section.
type Line struct {
	Key   string
	Value string
	// Object is true for "key => value" (Asterisk's object syntax, which
	// manager.conf treats like "=").
	Object bool
	// Append is true for "key += value".
	Append bool
	// Num is the 1-based line number in the file.
	Num int
}

// Section is one "[name]" section, in file order.
type Section struct {
	Name string
	// Template is true for "[name](!)": a template, not a user.
	Template bool
	// AppendTo is true for "[name](+)", which adds lines to the earlier
	// section of that name.
	AppendTo bool
	// Inherits names the templates of "[name](a,b)", in order.
	Inherits []string
	Lines    []Line
	Num      int
}

// Warning is a problem that does not stop the parse: something Asterisk
// ignores, or that amiproxy cannot translate faithfully.
type Warning struct {
	Num int // line number; 0 for the file as a whole
	Msg string
}

func (w Warning) String() string {
	if w.Num == 0 {
		return w.Msg
	}
	return fmt.Sprintf("line %d: %s", w.Num, w.Msg)
}

// File is a parsed manager.conf.
//
// The zero value is an empty file. A File is plain data.
type File struct {
	Sections []Section
	Warnings []Warning
}

// Parse reads a manager.conf in Asterisk's configuration syntax
// (main/config.c):
//
//   - ";" starts a comment to the end of the line, unless escaped as "\;"
//     (which stands for ";"); ";--" starts a block comment that "--;"
//     ends, and block comments nest;
//   - blanks around lines, keys and values are removed;
//   - "[name]" starts a section, "[name](!)" a template, "[name](tmpl,...)"
//     a section that inherits the lines of the named earlier sections,
//     "[name](+)" adds to the earlier section of that name; options
//     combine ("[name](!,tmpl)");
//   - "key = value", "key => value" and "key += value" are lines;
//   - "#include", "#tryinclude" and "#exec" are directives: not followed,
//     reported as warnings.
//
// A line without "=" is skipped with a warning, as Asterisk does. A
// parameter before the first section, an unterminated "[", an unknown
// template, "(+)" on a section never seen, a NUL byte, or more than
// MaxSize bytes is an error: Asterisk refuses to load such a file.
func Parse(src []byte) (*File, error) {
	if len(src) > MaxSize {
		return nil, fmt.Errorf("managerconf: file is larger than %d bytes", MaxSize)
	}
	if bytes.IndexByte(src, 0) >= 0 {
		return nil, fmt.Errorf("managerconf: NUL byte in file")
	}
	f := &File{}
	warn := func(n int, format string, a ...any) {
		f.Warnings = append(f.Warnings, Warning{Num: n, Msg: fmt.Sprintf(format, a...)})
	}
	var cur *Section
	depth := 0 // block comment nesting
	sc := bufio.NewScanner(bytes.NewReader(src))
	sc.Buffer(make([]byte, 0, 4096), MaxSize+1)
	num := 0
	for sc.Scan() {
		num++
		var line string
		line, depth = stripComments(sc.Text(), depth)
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		switch line[0] {
		case '[':
			s, err := parseHeader(line, num)
			if err != nil {
				return nil, err
			}
			if s.AppendTo {
				i := f.find(s.Name)
				if i < 0 {
					return nil, fmt.Errorf("managerconf: line %d: [%s](+) adds to a section that does not exist", num, s.Name)
				}
				cur = &f.Sections[i]
				continue
			}
			for _, t := range s.Inherits {
				i := f.find(t)
				if i < 0 {
					return nil, fmt.Errorf("managerconf: line %d: [%s] inherits from %q, which is not an earlier section", num, s.Name, t)
				}
				// Asterisk copies the template's lines as they are now.
				s.Lines = append(s.Lines, f.Sections[i].Lines...)
			}
			f.Sections = append(f.Sections, s)
			cur = &f.Sections[len(f.Sections)-1]
		case '#':
			directive, arg, _ := strings.Cut(line[1:], " ")
			switch strings.ToLower(directive) {
			case "include", "tryinclude", "exec":
				warn(num, "#%s %s is not followed: import that file separately and merge", directive, strings.TrimSpace(arg))
			default:
				warn(num, "unknown directive #%s ignored", directive)
			}
		default:
			eq := strings.IndexByte(line, '=')
			if eq < 0 {
				warn(num, "no \"=\" in line, ignored (as Asterisk does)")
				continue
			}
			if cur == nil {
				return nil, fmt.Errorf("managerconf: line %d: parameter outside any section", num)
			}
			l := Line{Num: num}
			key, value := line[:eq], line[eq+1:]
			if strings.HasPrefix(value, ">") {
				l.Object = true
				value = value[1:]
			}
			if strings.HasSuffix(key, "+") {
				l.Append = true
				key = key[:len(key)-1]
			}
			l.Key, l.Value = strings.TrimSpace(key), strings.TrimSpace(value)
			if l.Key == "" {
				warn(num, "empty key, ignored")
				continue
			}
			cur.Lines = append(cur.Lines, l)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("managerconf: %w", err)
	}
	if depth > 0 {
		warn(num, "block comment \";--\" not closed at the end of the file")
	}
	return f, nil
}

// find returns the index of the last section named name, or -1. Section
// names compare exactly, as Asterisk's category lookup does.
func (f *File) find(name string) int {
	for i := len(f.Sections) - 1; i >= 0; i-- {
		if f.Sections[i].Name == name {
			return i
		}
	}
	return -1
}

// parseHeader parses "[name]" with its options.
func parseHeader(line string, num int) (Section, error) {
	end := strings.IndexByte(line, ']')
	if end < 0 {
		return Section{}, fmt.Errorf("managerconf: line %d: no closing ']' in %q", num, line)
	}
	s := Section{Name: line[1:end], Num: num}
	rest := strings.TrimSpace(line[end+1:])
	if rest == "" {
		return s, nil
	}
	if rest[0] != '(' {
		return s, nil // Asterisk ignores text after ']'
	}
	close := strings.IndexByte(rest, ')')
	if close < 0 {
		return Section{}, fmt.Errorf("managerconf: line %d: no closing ')' in %q", num, line)
	}
	for opt := range strings.SplitSeq(rest[1:close], ",") {
		opt = strings.TrimSpace(opt)
		switch opt {
		case "":
		case "!":
			s.Template = true
		case "+":
			s.AppendTo = true
		default:
			s.Inherits = append(s.Inherits, opt)
		}
	}
	return s, nil
}

// stripComments removes the comments of one line, given the block comment
// depth before it, and returns the depth after it.
func stripComments(line string, depth int) (string, int) {
	var b strings.Builder
	for i := 0; i < len(line); i++ {
		if depth > 0 {
			if strings.HasPrefix(line[i:], "--;") {
				depth--
				i += 2
			} else if strings.HasPrefix(line[i:], ";--") {
				depth++
				i += 2
			}
			continue
		}
		c := line[i]
		switch {
		case c == '\\' && i+1 < len(line) && line[i+1] == ';':
			b.WriteByte(';')
			i++
		case c == ';' && strings.HasPrefix(line[i:], ";--"):
			depth++
			i += 2
		case c == ';':
			return b.String(), depth
		default:
			b.WriteByte(c)
		}
	}
	return b.String(), depth
}

// String prints f back in manager.conf syntax: comments are gone,
// inheritance is already applied (each section lists every line it
// holds), templates keep "(!)".
func (f *File) String() string {
	var b strings.Builder
	for _, s := range f.Sections {
		b.WriteString("[" + escape(s.Name) + "]")
		if s.Template {
			b.WriteString("(!)")
		}
		b.WriteString("\n")
		for _, l := range s.Lines {
			op := "="
			switch {
			case l.Append:
				op = "+="
			case l.Object:
				op = "=>"
			}
			b.WriteString(escape(l.Key) + " " + op + " " + escape(l.Value) + "\n")
		}
	}
	return b.String()
}

func escape(s string) string { return strings.ReplaceAll(s, ";", `\;`) }
