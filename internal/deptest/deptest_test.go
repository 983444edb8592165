// Package deptest holds the house rules on imports and package docs with
// tests, in the style of tailscale's deptest: the layout stays clean as the
// project grows because breaking it fails CI.
package deptest

import (
	"bytes"
	"encoding/json"
	"go/parser"
	"go/token"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

const module = "github.com/amiproxy/amiproxy"

type pkg struct {
	ImportPath string
	Dir        string
	Deps       []string
	GoFiles    []string
}

func listPackages(t *testing.T) []pkg {
	t.Helper()
	cmd := exec.Command("go", "list", "-deps=false", "-json", module+"/...")
	cmd.Dir = "../.."
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	var pkgs []pkg
	dec := json.NewDecoder(bytes.NewReader(out))
	for dec.More() {
		var p pkg
		if err := dec.Decode(&p); err != nil {
			t.Fatal(err)
		}
		pkgs = append(pkgs, p)
	}
	// Deps lists the transitive non-test imports of each package.
	for i := range pkgs {
		cmd := exec.Command("go", "list", "-f", "{{join .Deps \"\\n\"}}", pkgs[i].ImportPath)
		cmd.Dir = "../.."
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("go list deps of %s: %v", pkgs[i].ImportPath, err)
		}
		pkgs[i].Deps = strings.Fields(string(out))
	}
	return pkgs
}

// forbidden maps a package (relative to the module) to import-path
// prefixes it must not depend on, directly or not.
var forbidden = map[string][]string{
	"rawman":   {module + "/"},
	"upstream": {module + "/policy", module + "/auth", module + "/proxy"},
	"policy":   {module + "/upstream", module + "/auth", module + "/proxy"},
	"auth":     {module + "/upstream", module + "/policy", module + "/proxy"},
}

func TestImportRules(t *testing.T) {
	pkgs := listPackages(t)
	if len(pkgs) < 6 {
		t.Fatalf("go list found %d packages, want the whole layout", len(pkgs))
	}
	seen := map[string]bool{}
	for _, p := range pkgs {
		rel := strings.TrimPrefix(strings.TrimPrefix(p.ImportPath, module), "/")
		seen[rel] = true
		for _, d := range p.Deps {
			for _, bad := range forbidden[rel] {
				if strings.HasPrefix(d, bad) {
					t.Errorf("%s imports %s; the layout forbids it", rel, d)
				}
			}
			if strings.HasPrefix(d, "github.com/caddyserver/certmagic") && rel != "cmd/amiproxy" {
				t.Errorf("%s imports certmagic; only cmd/amiproxy may", rel)
			}
			if strings.HasPrefix(d, "github.com/redis/") && rel != "auth/redisstore" && rel != "cmd/amiproxy" {
				t.Errorf("%s imports the Redis client; only auth/redisstore (and cmd/amiproxy) may", rel)
			}
			if rel == "rawman" && !isStdlib(d) {
				t.Errorf("rawman imports %s; it must use the standard library only", d)
			}
		}
	}
	for _, want := range []string{"rawman", "upstream", "policy", "auth", "proxy", "cmd/amiproxy", "internal/pbxsim"} {
		if !seen[want] {
			t.Errorf("package %s is missing from the layout", want)
		}
	}
}

func isStdlib(path string) bool {
	first, _, _ := strings.Cut(path, "/")
	return !strings.Contains(first, ".")
}

// TestPackageDocs fails any package without a doc.go carrying a package
// comment (STYLE C17).
func TestPackageDocs(t *testing.T) {
	for _, p := range listPackages(t) {
		path := filepath.Join(p.Dir, "doc.go")
		if _, err := os.Stat(path); err != nil {
			t.Errorf("%s has no doc.go", p.ImportPath)
			continue
		}
		f, err := parser.ParseFile(token.NewFileSet(), path, nil, parser.ParseComments|parser.PackageClauseOnly)
		if err != nil {
			t.Errorf("%s: %v", path, err)
			continue
		}
		if f.Doc == nil || len(strings.TrimSpace(f.Doc.Text())) < 40 {
			t.Errorf("%s: doc.go has no real package comment", p.ImportPath)
		}
	}
}
