package clientstests

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// The call every library originates: the lab's extension 100 answers,
// runs 1 s and hangs up; the ;1 leg runs Wait(1).
const (
	originateChannel = "Local/100@lab"
	originateApp     = "Wait"
	originateData    = "1"
)

// libraryTimeout bounds one library's whole run, flowTimeout one flow.
const (
	libraryTimeout = 20 * time.Second
	flowTimeout    = 6 * time.Second
)

// endpoint is the AMI endpoint under test, set by TestMain.
var endpoint struct {
	addr, user, secret string
}

func TestMain(m *testing.M) {
	flag.Parse()
	os.Exit(run(m))
}

func run(m *testing.M) int {
	endpoint.user = envOr("AMI_USER", "admin")
	endpoint.secret = envOr("AMI_SECRET", "adminpass")
	if os.Getenv("AMI_HOST") != "" || os.Getenv("AMI_PORT") != "" {
		endpoint.addr = net.JoinHostPort(envOr("AMI_HOST", "127.0.0.1"), envOr("AMI_PORT", "5038"))
		return m.Run()
	}
	addr, stop, err := startSimulator()
	if err != nil {
		fmt.Fprintf(os.Stderr, "clientstests: AMI_HOST/AMI_PORT unset and no simulator: %v\n", err)
		return 1
	}
	defer stop()
	endpoint.addr = addr
	return m.Run()
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

var listeningRE = regexp.MustCompile(`is listening on (\S+)`)

// startSimulator runs `amiproxy simulate` on a free loopback port and
// returns its address. The binary is $AMIPROXY_BIN, or is built from the
// repository root three levels up; nothing of the product module is
// imported, so this module stays decoupled from it.
func startSimulator() (addr string, stop func(), err error) {
	bin := os.Getenv("AMIPROXY_BIN")
	tmp := ""
	if bin == "" {
		tmp, err = os.MkdirTemp("", "clientstests-")
		if err != nil {
			return "", nil, err
		}
		bin = filepath.Join(tmp, "amiproxy")
		root, err := filepath.Abs(filepath.Join("..", "..", ".."))
		if err != nil {
			return "", nil, err
		}
		build := exec.Command("go", "-C", root, "build", "-o", bin, "./cmd/amiproxy")
		if out, err := build.CombinedOutput(); err != nil {
			os.RemoveAll(tmp)
			return "", nil, fmt.Errorf("go build ./cmd/amiproxy: %w\n%s", err, out)
		}
	}
	args := []string{"simulate", "-listen", "127.0.0.1:0", "-login-fail-delay", "0",
		"-events-per-second", envOr("AMI_SIM_EVENTS_PER_SECOND", "0")}
	cmd := exec.Command(bin, args...)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return "", nil, err
	}
	if err := cmd.Start(); err != nil {
		return "", nil, err
	}
	stop = func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if tmp != "" {
			os.RemoveAll(tmp)
		}
	}
	found := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if m := listeningRE.FindStringSubmatch(sc.Text()); m != nil {
				found <- m[1]
				break
			}
		}
		_, _ = io.Copy(io.Discard, out) // never let the simulator block on stdout
	}()
	select {
	case addr = <-found:
		return addr, stop, nil
	case <-time.After(10 * time.Second):
		stop()
		return "", nil, errors.New("simulate printed no \"is listening on\" line within 10s")
	}
}

// flow is one step of a library's conversation, run as a subtest named
// after it (login, ping, list, originate, event, logoff), so that
// `go test -v` prints one "--- PASS/FAIL/SKIP: TestLib/flow" line per flow.
// A flow that cannot be done with the library calls t.Skip("N/A: why").
type flow struct {
	name     string
	required bool // when it fails, the flows after it are not run
	run      func(t *testing.T)
}

func runFlows(t *testing.T, flows []flow) {
	t.Helper()
	notRun := ""
	for _, f := range flows {
		ok := t.Run(f.name, func(t *testing.T) {
			if notRun != "" {
				t.Fatalf("not run: %s", notRun)
			}
			f.run(t)
		})
		if !ok && f.required && notRun == "" {
			notRun = f.name + " failed"
		}
	}
}

// recorder keeps every message a library hands over, in order, so that a
// flow can wait for a message however it interleaves with others.
type recorder[T any] struct {
	mu      sync.Mutex
	msgs    []T
	changed chan struct{}
}

func newRecorder[T any]() *recorder[T] {
	return &recorder[T]{changed: make(chan struct{})}
}

func (r *recorder[T]) add(m T) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.msgs = append(r.msgs, m)
	close(r.changed)
	r.changed = make(chan struct{})
}

func (r *recorder[T]) snapshot() ([]T, <-chan struct{}) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]T(nil), r.msgs...), r.changed
}

// wait returns the first recorded message, old or new, for which match is
// true, or an error naming what when ctx or flowTimeout ends first.
func (r *recorder[T]) wait(ctx context.Context, what string, match func(T) bool) (T, error) {
	ctx, cancel := context.WithTimeout(ctx, flowTimeout)
	defer cancel()
	for {
		msgs, changed := r.snapshot()
		for _, m := range msgs {
			if match(m) {
				return m, nil
			}
		}
		select {
		case <-changed:
		case <-ctx.Done():
			var zero T
			return zero, fmt.Errorf("no %s among %d messages received: %w", what, len(msgs), ctx.Err())
		}
	}
}

// filter returns the recorded messages for which match is true.
func (r *recorder[T]) filter(match func(T) bool) []T {
	msgs, _ := r.snapshot()
	var out []T
	for _, m := range msgs {
		if match(m) {
			out = append(out, m)
		}
	}
	return out
}

// isOurChannel tells whether a channel name belongs to the call the tests
// originate (Local/100@lab-XXXXXXXX;1 or ;2).
func isOurChannel(name string) bool {
	return strings.HasPrefix(name, originateChannel+"-")
}
