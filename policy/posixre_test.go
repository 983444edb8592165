package policy

import (
	"bufio"
	"errors"
	"os"
	"strconv"
	"strings"
	"testing"
)

// TestTranslateEREAgainstGlibc replays glibc's own answers (recorded by
// testdata/glibc/oracle.c) for a few hundred patterns and ~90 subjects: a
// pattern glibc refuses must be refused as a compile error; a pattern glibc
// accepts must either be refused as unsupported or match exactly the
// subjects glibc's regexec matches.
func TestTranslateEREAgainstGlibc(t *testing.T) {
	f, err := os.Open("testdata/posix-ere-glibc.txt")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	cases, unsupported := 0, map[string]bool{}
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") {
			continue
		}
		fields := strings.Split(line, "\t")
		if len(fields) != 3 {
			t.Fatalf("bad line %q", line)
		}
		pattern, err1 := strconv.Unquote(fields[0])
		subject, err2 := strconv.Unquote(fields[1])
		if err1 != nil || err2 != nil {
			t.Fatalf("bad line %q: %v %v", line, err1, err2)
		}
		want := fields[2]
		cases++
		re, err := compileERE(pattern)
		switch {
		case strings.HasPrefix(want, "error"):
			var ee *ereError
			if err == nil || !errors.As(err, &ee) || ee.unsupported {
				t.Errorf("compileERE(%q) = %v, want a compile error (glibc: %s)", pattern, err, want)
			}
		case err != nil:
			if !errors.Is(err, errUnsupported) {
				t.Errorf("compileERE(%q) = %v, glibc compiles it", pattern, err)
			} else if strings.HasPrefix(err.Error(), "RE2: ") && !isRE2Limit(err) {
				t.Errorf("compileERE(%q): translation is not valid RE2: %v", pattern, err)
			}
			unsupported[pattern] = true
		default:
			if got := re.match(subject); got != (want == "match") {
				expr, _ := translateERE(pattern)
				t.Errorf("compileERE(%q) (RE2 %q).MatchString(%q) = %v, want %s", pattern, expr, subject, got, want)
			}
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if cases < 10000 {
		t.Fatalf("only %d cases", cases)
	}
	t.Logf("%d cases, unsupported patterns: %q", cases, keys(unsupported))
}

func keys(m map[string]bool) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

// TestCompileERENesting guards against analysis or recursion that grows
// faster than the pattern: glibc accepts "a**...*", so a Filter action can
// send one.
func TestCompileERENesting(t *testing.T) {
	tests := []struct {
		name        string
		pattern     string
		unsupported bool
	}{
		{"999 stars", "a" + strings.Repeat("*", 999), false},
		{"5000 stars", "a" + strings.Repeat("*", 5000), true},
		{"5000 groups", strings.Repeat("(", 5000) + "a" + strings.Repeat(")", 5000), true},
		{"many repeated groups", strings.Repeat("(a|b*)*", 2000), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := compileERE(tt.pattern)
			if got := errors.Is(err, errUnsupported); got != tt.unsupported || (err != nil && !got) {
				t.Errorf("compileERE(%d bytes) = %v, want unsupported %v", len(tt.pattern), err, tt.unsupported)
			}
		})
	}
}
