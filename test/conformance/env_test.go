package conformance

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/amiproxy/amiproxy/internal/pbxsim"
)

// Accounts of the kit's proxy: the demo's three users, and the book's
// hello/world (read all, write all, as in the book's manager.conf).
var accounts = []struct{ user, secret, role string }{
	{"admin", "adminpass", "admin"},
	{"operator", "operatorpass", "operator"},
	{"viewer", "viewerpass", "viewer"},
	{"hello", "world", "admin"},
}

// setup is one demo-style deployment: pbxsim in this process, the proxy
// in a child process that can be stopped and started again.
type setup struct {
	t       testing.TB
	dir     string
	bin     string
	sim     *pbxsim.Server
	cfgPath string
	logPath string
	ami     string // proxy AMI door, host:port
	http    string // proxy HTTP door, host:port
	admin   string // proxy /readyz

	mu      sync.Mutex
	actions []string // what reached the PBX, "user:Action"

	proc *exec.Cmd
	done chan struct{}
}

// buildProxy builds ./cmd/amiproxy once into dir.
func buildProxy(t testing.TB, dir string) string {
	t.Helper()
	if bin := os.Getenv("AMIPROXY_BIN"); bin != "" {
		return bin
	}
	bin := filepath.Join(dir, "amiproxy")
	cmd := exec.Command("go", "build", "-o", bin, "github.com/amiproxy/amiproxy/cmd/amiproxy")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/amiproxy: %v\n%s", err, out)
	}
	return bin
}

// freePort returns a loopback address nothing listens on right now.
func freePort(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func newSetup(t testing.TB) *setup {
	t.Helper()
	s := &setup{t: t, dir: t.TempDir()}
	s.bin = buildProxy(t, s.dir)
	users := append(pbxsim.DefaultUsers(), pbxsim.User{Name: "amiproxy", Secret: "kit-service-secret", Read: "all", Write: "all"})
	sim, err := pbxsim.New(pbxsim.Config{
		Users:          users,
		LoginFailDelay: -1,
		OnAction: func(user, action string) {
			s.mu.Lock()
			s.actions = append(s.actions, user+":"+action)
			s.mu.Unlock()
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sim.Close() })
	if _, err := sim.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	sim.StartTraffic(ctx, 0) // the demo's sample traffic: a call every few seconds
	s.sim = sim
	s.ami, s.http, s.admin = freePort(t), freePort(t), freePort(t)
	s.cfgPath = filepath.Join(s.dir, "amiproxy.yaml")
	s.logPath = filepath.Join(s.dir, "amiproxy.log")
	if err := os.WriteFile(s.cfgPath, []byte(s.config()), 0o600); err != nil {
		t.Fatal(err)
	}
	s.start()
	t.Cleanup(s.stop)
	return s
}

// config is the proxy's configuration: the demo's policy on one PBX, and
// login limits raised for the kit's many logins from 127.0.0.1.
func (s *setup) config() string {
	var b strings.Builder
	fmt.Fprintf(&b, `listen:
  ami: %s
  http: %s
  admin: %s
proxy:
  default_pbx: east
  login_fail_delay: 1s
limits:
  login_per_address: {rate: 100, per: 1s, burst: 1000}
  unauthenticated_per_address: 50
pbxs:
  - name: east
    address: %s
    username: amiproxy
    auth_md5: true
    secret: {value: kit-service-secret}
accounts:
`, s.ami, s.http, s.admin, s.sim.Addr())
	for _, a := range accounts {
		fmt.Fprintf(&b, "  - username: %s\n    secret: {value: %s}\n", a.user, a.secret)
	}
	b.WriteString(`policy:
  roles:
    # Command needs its CLI commands listed (policy rules.commands).
    - {name: admin, read: all, write: all, pbxs: ["*"], rules: {commands: ["core show"]}}
    - {name: operator, read: call, write: "call,originate", pbxs: [east]}
    - {name: viewer, read: call, write: none, pbxs: ["*"]}
  users:
`)
	for _, a := range accounts {
		fmt.Fprintf(&b, "    %s: [%s]\n", a.user, a.role)
	}
	b.WriteString("log:\n  level: warn\n  audit: " + filepath.Join(s.dir, "audit.log") + "\n")
	return b.String()
}

// start runs the proxy and waits until /readyz answers 200.
func (s *setup) start() {
	s.t.Helper()
	logf, err := os.OpenFile(s.logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		s.t.Fatal(err)
	}
	cmd := exec.Command(s.bin, "serve", "-config", s.cfgPath)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		s.t.Fatalf("start amiproxy serve: %v", err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); _ = logf.Close(); close(done) }()
	s.proc, s.done = cmd, done
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := http.Get("http://" + s.admin + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		select {
		case <-done:
			s.t.Fatalf("amiproxy serve exited at start:\n%s", s.log())
		default:
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("amiproxy serve not ready after 20 s (last error %v):\n%s", err, s.log())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// stop ends the proxy process (SIGTERM, then SIGKILL after 10 s).
func (s *setup) stop() {
	if s.proc == nil {
		return
	}
	_ = s.proc.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(10 * time.Second):
		_ = s.proc.Process.Kill()
		<-s.done
	}
	s.proc = nil
}

// restart stops the proxy and starts it again on the same ports.
func (s *setup) restart() {
	s.t.Helper()
	t0 := time.Now()
	s.stop()
	stopped := time.Since(t0)
	s.start()
	s.t.Logf("proxy restarted: stopped in %v, ready again in %v", stopped.Round(time.Millisecond), time.Since(t0).Round(time.Millisecond))
}

func (s *setup) log() string {
	b, _ := os.ReadFile(s.logPath)
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}

// reached returns how many times action (any case) reached the PBX.
func (s *setup) reached(action string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, a := range s.actions {
		_, name, _ := strings.Cut(a, ":")
		if strings.EqualFold(name, action) {
			n++
		}
	}
	return n
}

// run runs a program with the kit's environment and returns its combined
// output.
func (s *setup) run(ctx context.Context, env []string, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	host, port, _ := net.SplitHostPort(s.ami)
	cmd.Env = append(os.Environ(), "AMI_HOST="+host, "AMI_PORT="+port, "AMI_HTTP=http://"+s.http)
	cmd.Env = append(cmd.Env, env...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}
