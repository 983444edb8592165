package conformance

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// The six client libraries of test/clients, through the proxy.

func clientsDir(t testing.TB) string {
	dir, err := filepath.Abs("../clients")
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

// ensureNode installs the Node client libraries from their lockfile when
// they are missing (npm ci: the registry is needed once, not at run time).
func ensureNode(t testing.TB) {
	t.Helper()
	dir := filepath.Join(clientsDir(t), "node")
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "asterisk-ami-client")); err == nil {
		return
	}
	cmd := exec.Command("npm", "ci", "--prefix", dir, "--no-audit", "--no-fund")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("npm ci --prefix %s: %v\n%s", dir, err, out)
	}
}

func (k *kit) libraries(t *testing.T) {
	const group = "client libraries"
	ensureNode(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", filepath.Join(clientsDir(t), "run.sh"), "--target", k.s.ami)
	cmd.Env = append(os.Environ(), creds("admin")...)
	cmd.Env = append(cmd.Env, "AMIPROXY_BIN="+k.s.bin)
	outb, err := cmd.CombinedOutput()
	out := string(outb)
	seen := 0
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		// "PASS nami ping", "FAIL goami2 list: why", "N/A nami md5: why"
		f := strings.SplitN(sc.Text(), " ", 4)
		if len(f) < 3 || (f[0] != "PASS" && f[0] != "FAIL" && f[0] != "N/A") {
			continue
		}
		seen++
		lib, flow, why := f[1], strings.TrimSuffix(f[2], ":"), ""
		if len(f) == 4 {
			why = f[3]
		}
		if lib == "goami" {
			lib = "heltonmarx/goami"
		}
		if f[0] == "N/A" {
			if why == "" {
				why = naWhy[lib+" "+flow]
			}
			k.notApplicable(group, lib+" "+flow, "admin", why)
			continue
		}
		pass := f[0] == "PASS"
		k.flow(t, group, lib+" "+flow, "admin", func(t *testing.T) {
			if !pass {
				t.Fatalf("%s %s failed; the harness's output (test/clients/run.sh):\n%s", lib, flow, indent(out))
			}
		})
	}
	if seen == 0 || err != nil && !strings.Contains(out, "FAIL") {
		k.flow(t, group, "test/clients/run.sh", "admin", func(t *testing.T) {
			t.Fatalf("run.sh: %v, %d verdicts\n%s", err, seen, indent(out))
		})
	}
}

// naWhy are the reasons the Go tests give in their t.Skip (run.sh prints
// the Go verdicts without them).
var naWhy = map[string]string{
	"amigo md5":  "amigo logs in by itself with Username/Secret; no Challenge/MD5 login",
	"goami2 md5": "goami2's NewClient logs in by itself with Username/Secret; no Challenge/MD5 login",
}

// reconnect is the reconnect flow of the six libraries: they log in
// through the proxy (test/clients/node/reconnect.js and the Go module's
// TestReconnect), and once all six say READY the proxy process is stopped
// and started again on the same ports. Each must be logged in again within
// 45 s: by itself ("auto"), or by the flow giving it a new connection, as
// its users must ("manual").
func (k *kit) reconnect(t *testing.T) {
	const group = "client libraries"
	ensureNode(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	host, port, _ := net.SplitHostPort(k.s.ami)
	env := append(os.Environ(), "AMI_HOST="+host, "AMI_PORT="+port, "AMI_RECONNECT=1")
	env = append(env, creds("admin")...)
	lines := make(chan string, 64)
	var logs sync.Map // name -> *bytes.Buffer of the whole output
	var wg sync.WaitGroup
	start := func(name string, cmd *exec.Cmd) {
		cmd.Env = env
		pr, pw := io.Pipe()
		cmd.Stdout, cmd.Stderr = pw, pw
		var buf bytes.Buffer
		logs.Store(name, &buf)
		if err := cmd.Start(); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		wg.Add(2)
		go func() { defer wg.Done(); _ = cmd.Wait(); pw.Close() }()
		go func() {
			defer wg.Done()
			sc := bufio.NewScanner(pr)
			for sc.Scan() {
				buf.WriteString(sc.Text() + "\n")
				lines <- sc.Text()
			}
		}()
	}
	dir := clientsDir(t)
	start("node reconnect.js", exec.CommandContext(ctx, "node", filepath.Join(dir, "node", "reconnect.js")))
	start("go test -run TestReconnect", exec.CommandContext(ctx, "go", "-C", filepath.Join(dir, "go"), "test", "-count=1", "-v",
		"-parallel", "3", "-timeout", "100s", "-run", "^TestReconnect$", "./..."))
	go func() { wg.Wait(); close(lines) }()

	libs := []string{"nami", "asterisk-manager", "asterisk-ami-client", "amigo", "goami", "goami2"}
	ready := map[string]bool{}
	verdicts := map[string][2]string{}
	restarted := false
	for line := range lines {
		f := strings.SplitN(line, " ", 4)
		switch {
		case len(f) == 2 && f[0] == "READY":
			ready[f[1]] = true
			if len(ready) == len(libs) && !restarted {
				restarted = true
				k.s.restart()
			}
		case len(f) >= 3 && (f[0] == "PASS" || f[0] == "FAIL") && f[2] == "reconnect:":
			how := ""
			if len(f) == 4 {
				how = f[3]
			}
			verdicts[f[1]] = [2]string{f[0], how}
		}
	}
	var all strings.Builder
	logs.Range(func(k, v any) bool {
		all.WriteString("---- " + k.(string) + "\n" + v.(*bytes.Buffer).String())
		return true
	})
	for _, lib := range libs {
		v := verdicts[lib]
		name := lib
		if lib == "goami" {
			name = "heltonmarx/goami"
		}
		note := v[1]
		if i := strings.Index(note, ":"); v[0] == "PASS" && i > 0 {
			note = note[:i] // auto or manual
		}
		k.flowNote(t, group, name+" reconnect after proxy restart", "admin", note, func(t *testing.T) {
			switch {
			case !restarted:
				t.Fatalf("not every library logged in (READY: %v), so the proxy was not restarted\n%s", ready, indent(all.String()))
			case v[0] != "PASS":
				t.Fatalf("%s: %s\n%s", lib, v[1], indent(all.String()))
			}
		})
	}
}
