package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
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
	out, _, stop := startCommandErr(t, args...)
	return out, stop
}

// startCommandErr is startCommand that also returns the stderr buffer.
func startCommandErr(t *testing.T, args ...string) (*syncBuffer, *syncBuffer, func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	out, errs := &syncBuffer{}, &syncBuffer{}
	done := make(chan error, 1)
	go func() { done <- run(ctx, args, strings.NewReader(""), out, errs) }()
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
	return out, errs, stop
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
		if strings.HasPrefix(l, oneLiner+" ") {
			line = strings.TrimSpace(l)
			break
		}
	}
	if line == "" {
		t.Fatalf("README.md has no line with the one-liner simulate prints (%q)", oneLiner)
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

// amiExchange sends raw AMI text on a fresh connection to addr and returns
// everything received until the server closes the connection.
func amiExchange(t *testing.T, dial func() (net.Conn, error), send string) string {
	t.Helper()
	conn, err := dial()
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(15 * time.Second))
	if _, err := io.WriteString(conn, send); err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(conn)
	if err != nil {
		t.Fatalf("reading the reply to %q: %v (got %q)", send, err, got)
	}
	return string(got)
}

// TestDemo runs `amiproxy demo` on free ports and uses it the way its
// printed instructions say: through the real proxy to two simulated PBXs.
func TestDemo(t *testing.T) {
	out, errs, stop := startCommandErr(t, "demo", "-ami", "127.0.0.1:0", "-ami-tls", "127.0.0.1:0", "-admin", "127.0.0.1:0", "-http", "127.0.0.1:0", "-https", "127.0.0.1:0", "-events-per-second", "100", "-login-fail-delay", "0")
	m := waitFor(t, out, regexp.MustCompile(`AMI \(plaintext, loopback\)\s+(127\.0\.0\.1:\d+)\s+AMI over TLS\s+(127\.0\.0\.1:\d+)`))
	plain, secure := m[1], m[2]
	tcp := func() (net.Conn, error) { return net.DialTimeout("tcp", plain, 5*time.Second) }

	// admin: Ping on east, CoreSettings on west via the Server header.
	got := amiExchange(t, tcp, "Action: Login\r\nUsername: admin\r\nSecret: adminpass\r\nEvents: off\r\n\r\n"+
		"Action: Ping\r\nActionID: 1\r\n\r\nAction: CoreSettings\r\nActionID: 2\r\nServer: west\r\n\r\nAction: Logoff\r\n\r\n")
	for _, want := range []string{"Asterisk Call Manager/11.0.0\r\n", "Message: Authentication accepted\r\n",
		"ActionID: 1\r\nPing: Pong\r\n", "ActionID: 2\r\nAMIversion: ", "Response: Goodbye\r\n"} {
		if !strings.Contains(got, want) {
			t.Errorf("admin session lacks %q:\n%s", want, got)
		}
	}
	// operator: Command is denied, exactly as Asterisk words it; west is not granted.
	got = amiExchange(t, tcp, "Action: Login\r\nUsername: operator\r\nSecret: operatorpass\r\nEvents: off\r\n\r\n"+
		"Action: Command\r\nActionID: c\r\nCommand: core show version\r\n\r\n"+
		"Action: Ping\r\nActionID: w\r\nServer: west\r\n\r\nAction: Logoff\r\n\r\n")
	for _, want := range []string{"Response: Error\r\nActionID: c\r\nMessage: Permission denied\r\n\r\n",
		"Response: Error\r\nActionID: w\r\nMessage: Permission denied\r\n\r\n"} {
		if !strings.Contains(got, want) {
			t.Errorf("operator session lacks %q:\n%s", want, got)
		}
	}
	// admin may run the listed CLI commands only; operator may call only
	// through the lab dialplan.
	got = amiExchange(t, tcp, "Action: Login\r\nUsername: admin\r\nSecret: adminpass\r\nEvents: off\r\n\r\n"+
		"Action: Command\r\nActionID: v\r\nCommand: core show version\r\n\r\n"+
		"Action: Command\r\nActionID: r\r\nCommand: core restart now\r\n\r\nAction: Logoff\r\n\r\n")
	if !strings.Contains(got, "ActionID: v\r\n") || strings.Contains(got, "Response: Error\r\nActionID: v\r\n") ||
		!strings.Contains(got, "Response: Error\r\nActionID: r\r\nMessage: Permission denied\r\n") {
		t.Errorf("admin Command: want core show version answered and core restart denied:\n%s", got)
	}
	got = amiExchange(t, tcp, "Action: Login\r\nUsername: operator\r\nSecret: operatorpass\r\nEvents: off\r\n\r\n"+
		"Action: Originate\r\nActionID: o\r\nChannel: Local/100@lab\r\nContext: default\r\nExten: 100\r\nPriority: 1\r\nAsync: true\r\n\r\n"+
		"Action: Logoff\r\n\r\n")
	if !strings.Contains(got, "Response: Error\r\nActionID: o\r\nMessage: Permission denied\r\n") {
		t.Errorf("operator Originate into context default: want Permission denied:\n%s", got)
	}
	// A wrong password is refused and the connection closed.
	got = amiExchange(t, tcp, "Action: Login\r\nUsername: viewer\r\nSecret: nope\r\n\r\n")
	if !strings.Contains(got, "Response: Error\r\nMessage: Authentication failed\r\n\r\n") {
		t.Errorf("bad password: got %q", got)
	}
	// viewer over TLS sees east's call events (read call) and nothing of class system.
	conn, err := tls.Dial("tcp", secure, &tls.Config{InsecureSkipVerify: true}) // the demo's cert is self-signed
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(15 * time.Second))
	fmt.Fprint(conn, "Action: Login\r\nUsername: viewer\r\nSecret: viewerpass\r\n\r\n")
	br := bufio.NewReader(conn)
	events := 0
	for events < 5 {
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatalf("viewer over TLS: %v after %d events", err, events)
		}
		if strings.HasPrefix(line, "Privilege: ") {
			if line != "Privilege: call,all\r\n" {
				t.Errorf("viewer (read call) got an event with %q", strings.TrimSpace(line))
			}
			events++
		}
	}
	// The HTTP manager with a cookie jar, as the demo prints it.
	hm := waitFor(t, out, regexp.MustCompile(`HTTP manager\s+http://(127\.0\.0\.1:\d+)/rawman[^\n]*\n\s+HTTP manager over TLS\s+https://(127\.0\.0\.1:\d+)/rawman`))
	jar, _ := cookiejar.New(nil)
	web := &http.Client{Jar: jar, Timeout: 20 * time.Second}
	get := func(url string) string {
		t.Helper()
		resp, err := web.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 {
			t.Fatalf("GET %s = %d %q", url, resp.StatusCode, b)
		}
		return string(b)
	}
	base := "http://" + hm[1]
	if got := get(base + "/rawman?action=login&username=admin&secret=adminpass"); got != "Response: Success\r\nMessage: Authentication accepted\r\n\r\n" {
		t.Errorf("HTTP login = %q", got)
	}
	if got := get(base + "/rawman?action=ping&actionid=p"); !strings.HasPrefix(got, "Response: Success\r\nActionID: p\r\nPing: Pong\r\n") {
		t.Errorf("HTTP ping = %q", got)
	}
	if got := get(base + "/mxml?action=waitevent&timeout=10"); !strings.Contains(got, "<ajax-response>") || !strings.Contains(got, "event='WaitEventComplete'") || !strings.Contains(got, "privilege='") {
		t.Errorf("HTTP WaitEvent with call traffic = %q", got)
	}
	if got := get(base + "/rawman?action=logoff"); !strings.Contains(got, "Response: Goodbye") {
		t.Errorf("HTTP logoff = %q", got)
	}
	// Digest over HTTPS with the real curl, as printed.
	curlOut, err := exec.Command("curl", "-sk", "--digest", "-u", "admin:adminpass", "https://"+hm[2]+"/arawman?action=ping").CombinedOutput()
	if err != nil || !strings.Contains(string(curlOut), "Ping: Pong") {
		t.Errorf("curl --digest over HTTPS: %v %q", err, curlOut)
	}

	if err := stop(); err != nil {
		t.Error(err)
	}
	// The walkthrough promises one audit line per action, naming the rule.
	if a := errs.String(); !strings.Contains(a, `"action":"Command"`) || !strings.Contains(a, `"rule":"pbx west: not granted"`) {
		t.Errorf("audit log lacks the operator's denials:\n%s", a)
	}
	if strings.Contains(errs.String(), "operatorpass") || strings.Contains(errs.String(), "adminpass") {
		t.Error("a secret appears in the demo's logs")
	}
	if !strings.Contains(out.String(), "amiproxy demo: stopped") {
		t.Errorf("demo did not report stopping:\n%s", out.String())
	}
}

func TestRunUsage(t *testing.T) {
	var out, errs syncBuffer
	if err := run(context.Background(), []string{"nonsense"}, strings.NewReader(""), &out, &errs); err == nil || !strings.Contains(err.Error(), "unknown command") {
		t.Errorf("run(nonsense) = %v, want an unknown command error", err)
	}
	if err := run(context.Background(), []string{"version"}, strings.NewReader(""), &out, &errs); err != nil || !strings.Contains(out.String(), "amiproxy") {
		t.Errorf("run(version) = %v, output %q", err, out.String())
	}
	if err := run(context.Background(), []string{"simulate", "-listen", "256.0.0.1:1"}, strings.NewReader(""), &out, &errs); err == nil {
		t.Error("simulate on an impossible address returned nil")
	}
}
