package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// syncBuffer is a bytes.Buffer safe for a writer goroutine and a reader.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// startCommand runs a subcommand in the background and returns its output
// buffer and a stop function that cancels it and waits for it to return.
func startCommand(t *testing.T, args ...string) (*syncBuffer, func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	out, errs := &syncBuffer{}, &syncBuffer{}
	done := make(chan error, 1)
	go func() { done <- run(ctx, args, out, errs) }()
	var once sync.Once
	var err error
	stop := func() error {
		once.Do(func() {
			cancel()
			select {
			case err = <-done:
			case <-time.After(10 * time.Second):
				err = fmt.Errorf("%v did not stop within 10s", args)
			}
		})
		return err
	}
	t.Cleanup(func() { _ = stop() })
	return out, stop
}

// waitFor polls out until re matches, and returns the submatches.
func waitFor(t *testing.T, out *syncBuffer, re *regexp.Regexp) []string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if m := re.FindStringSubmatch(out.String()); m != nil {
			return m
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("output never matched %v:\n%s", re, out.String())
	return nil
}

var listeningRE = regexp.MustCompile(`is listening on (127\.0\.0\.1:\d+)`)

// TestREADMEOneLiner runs the exact nc one-liner from README.md against
// `amiproxy simulate`, so the README cannot drift from what works.
func TestREADMEOneLiner(t *testing.T) {
	ncPath, err := exec.LookPath("nc")
	if err != nil {
		t.Fatal("nc not found: install netcat-openbsd (.ci/run does)")
	}
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	var line string
	for l := range strings.Lines(string(readme)) {
		if strings.HasPrefix(l, "printf 'Action: Login") && strings.Contains(l, "| nc ") {
			line = strings.TrimSpace(l)
			break
		}
	}
	if !strings.HasPrefix(line, oneLiner+" ") {
		t.Fatalf("README one-liner %q does not start with the one simulate prints (%q)", line, oneLiner)
	}
	out, stop := startCommand(t, "simulate", "-listen", "127.0.0.1:0", "-events-per-second", "-1")
	addr := waitFor(t, out, listeningRE)[1]
	host, port, _ := net.SplitHostPort(addr)
	line = strings.Replace(line, "127.0.0.1 5038", host+" "+port, 1)
	if !strings.Contains(out.String(), oneLiner+" "+host+" "+port) {
		t.Errorf("simulate did not print the one-liner for its address:\n%s", out.String())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "sh", "-c", line)
	cmd.Env = append(os.Environ(), "PATH="+strings.TrimSuffix(ncPath, "/nc")+":"+os.Getenv("PATH"))
	got, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s: %v\n%s", line, err, got)
	}
	want := "Asterisk Call Manager/11.0.0\r\n" +
		"Response: Success\r\nMessage: Authentication accepted\r\n\r\n"
	if !strings.HasPrefix(string(got), want) {
		t.Errorf("one-liner output starts %q, want %q", got, want)
	}
	for _, s := range []string{"Response: Success\r\nPing: Pong\r\nTimestamp: ", "Response: Goodbye\r\nMessage: Thanks for all the fish.\r\n\r\n"} {
		if !strings.Contains(string(got), s) {
			t.Errorf("one-liner output %q lacks %q", got, s)
		}
	}
	if err := stop(); err != nil {
		t.Errorf("simulate: %v", err)
	}
	if !strings.Contains(out.String(), "stopping") {
		t.Errorf("simulate did not say it was stopping:\n%s", out.String())
	}
}

// TestDemoPreview starts the demo on free ports and logs in to both PBXs.
func TestDemoPreview(t *testing.T) {
	out, stop := startCommand(t, "demo", "-east", "127.0.0.1:0", "-west", "127.0.0.1:0", "-events-per-second", "50")
	m := waitFor(t, out, regexp.MustCompile(`east\s+(127\.0\.0\.1:\d+)\s+west\s+(127\.0\.0\.1:\d+)`))
	for i, name := range []string{"east", "west"} {
		conn, err := net.DialTimeout("tcp", m[i+1], 5*time.Second)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
		fmt.Fprintf(conn, "Action: Login\r\nUsername: admin\r\nSecret: adminpass\r\n\r\n")
		br := bufio.NewReader(conn)
		// Sample traffic flows: expect a call event from this PBX, carrying
		// its SystemName, within a few seconds.
		found := false
		for !found {
			line, err := br.ReadString('\n')
			if err != nil {
				t.Fatalf("%s: no SystemName-tagged event in the traffic: %v", name, err)
			}
			found = line == "SystemName: "+name+"\r\n"
		}
		conn.Close()
	}
	if err := stop(); err != nil {
		t.Error(err)
	}
}

func TestRunUsage(t *testing.T) {
	var out, errs syncBuffer
	if err := run(context.Background(), []string{"nonsense"}, &out, &errs); err == nil || !strings.Contains(err.Error(), "unknown command") {
		t.Errorf("run(nonsense) = %v, want an unknown command error", err)
	}
	if err := run(context.Background(), []string{"version"}, &out, &errs); err != nil || !strings.Contains(out.String(), "amiproxy") {
		t.Errorf("run(version) = %v, output %q", err, out.String())
	}
	if err := run(context.Background(), []string{"simulate", "-listen", "256.0.0.1:1"}, &out, &errs); err == nil {
		t.Error("simulate on an impossible address returned nil")
	}
}
