package main

import (
	"bufio"
	"context"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// reloadConfig is a serve configuration for the reload tests: alice and
// bob (plaintext secrets) on one simulated PBX; without alice, her account
// is left out; without aliceRole, her account stays but has no role.
func reloadConfig(pbxAddr string, alice, aliceRole bool) string {
	s := `listen:
  ami: 127.0.0.1:0
proxy:
  login_fail_delay: 10ms
pbxs:
  - name: east
    address: ` + pbxAddr + `
    username: amiproxy
    secret: {value: ` + svcSecret + `}
    auth_md5: true
accounts:
  - username: bob
    secret: {value: bobsecret}
`
	if alice {
		s += "  - username: alice\n    secret: {value: alicesecret}\n"
	}
	s += `policy:
  roles:
    - name: ops
      read: all
      write: all
      pbxs: ["*"]
  users:
    bob: [ops]
`
	if aliceRole {
		s += "    alice: [ops]\n"
	}
	return s
}

// reloadEnv is a serve started from a config file.
type reloadEnv struct {
	path     string
	addr     string
	rl       *reloader
	reloaded chan error
}

func startReloadServe(t *testing.T) *reloadEnv {
	t.Helper()
	sim := newLabSim(t)
	re := &reloadEnv{path: filepath.Join(t.TempDir(), "amiproxy.yaml"), reloaded: make(chan error, 4)}
	pbx := sim.Addr().String()
	if err := os.WriteFile(re.path, []byte(reloadConfig(pbx, true, true)), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := loadConfig(re.path)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Validate(); err != nil {
		t.Fatal(err)
	}
	rc, err := f.build(osEnv, os.ReadFile)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan map[string]net.Addr, 1)
	done := make(chan error, 1)
	go func() {
		done <- serveConfig(ctx, f, rc, serveOptions{
			configPath: re.path,
			reloaded:   func(err error) { re.reloaded <- err },
			onReloader: func(r *reloader) { re.rl = r },
			ready:      func(a map[string]net.Addr) { ready <- a },
		})
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	select {
	case a := <-ready:
		re.addr = a["ami"].String()
	case err := <-done:
		t.Fatalf("serve: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("serve did not start within 10s")
	}
	return re
}

func (re *reloadEnv) rewrite(t *testing.T, content string) {
	t.Helper()
	if err := os.WriteFile(re.path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

// amiConn is an nc-style client: raw lines over TCP.
type amiConn struct {
	t  *testing.T
	c  net.Conn
	br *bufio.Reader
}

func dialLogin(t *testing.T, addr, user, secret string) *amiConn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	a := &amiConn{t: t, c: c, br: bufio.NewReader(c)}
	a.msg() // banner line has no blank line after it: read one line
	if _, err := io.WriteString(c, "Action: Login\r\nUsername: "+user+"\r\nSecret: "+secret+"\r\nEvents: off\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	if m := a.msg(); !strings.Contains(m, "Authentication accepted") {
		t.Fatalf("login %s: %q", user, m)
	}
	return a
}

// msg reads up to a blank line (or the banner's single line).
func (a *amiConn) msg() string {
	a.t.Helper()
	_ = a.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	var b strings.Builder
	for {
		l, err := a.br.ReadString('\n')
		b.WriteString(l)
		if err != nil {
			a.t.Fatalf("read: %v (got %q)", err, b.String())
		}
		if l == "\r\n" || strings.HasPrefix(l, "Asterisk Call Manager/") {
			return b.String()
		}
	}
}

func (a *amiConn) expectNoticeEOF(reason string) {
	a.t.Helper()
	want := "Event: ProxySessionEnd\r\nPrivilege: system,all\r\nReason: " + reason + "\r\nServer: east\r\n\r\n"
	if m := a.msg(); m != want {
		a.t.Errorf("notice = %q, want %q", m, want)
	}
	_ = a.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if rest, err := io.ReadAll(a.br); err != nil || len(rest) > 0 {
		a.t.Errorf("after the notice: %q, %v; want EOF", rest, err)
	}
}

func (a *amiConn) ping() string {
	a.t.Helper()
	if _, err := io.WriteString(a.c, "Action: Ping\r\n\r\n"); err != nil {
		a.t.Fatal(err)
	}
	return a.msg()
}

// A reload that removes a logged-in user's account ends its session with
// the notice; a reload that takes her roles away does too; a broken file
// changes nothing.
func TestReloadRemovesUser(t *testing.T) {
	re := startReloadServe(t)
	pbx := re.rl.running.PBXs[0].Address
	bob := dialLogin(t, re.addr, "bob", "bobsecret")
	alice := dialLogin(t, re.addr, "alice", "alicesecret")

	// A broken file: an error, nothing changes.
	re.rewrite(t, "listen: [this is not valid\n")
	if err := re.rl.reload(); err == nil {
		t.Fatal("reload of a broken file succeeded")
	}
	re.rewrite(t, reloadConfig(pbx, true, true)+"unknown_key: 1\n")
	if err := re.rl.reload(); err == nil {
		t.Fatal("reload with an unknown key succeeded")
	}
	// A secret typed where a mapping belongs: the decoder's error would
	// quote it; the reload error does not.
	re.rewrite(t, strings.Replace(reloadConfig(pbx, true, true), "secret: {value: bobsecret}", "secret: bobsecret", 1))
	if err := re.rl.reload(); err == nil || strings.Contains(err.Error(), "bobsecret") {
		t.Fatalf("reload with a misplaced secret = %v", err)
	}
	if m := alice.ping(); !strings.Contains(m, "Ping: Pong") {
		t.Fatalf("alice after failed reloads: %q", m)
	}

	re.rewrite(t, reloadConfig(pbx, false, true))
	start := time.Now()
	if err := re.rl.reload(); err != nil {
		t.Fatal(err)
	}
	alice.expectNoticeEOF("removed")
	t.Logf("notice and EOF %v after the reload started", time.Since(start))
	if m := bob.ping(); !strings.Contains(m, "Ping: Pong") {
		t.Errorf("bob after the reload: %q", m)
	}

	// Back with her account but no role: her new session ends at the
	// next reload that leaves her without a role.
	re.rewrite(t, reloadConfig(pbx, true, true))
	if err := re.rl.reload(); err != nil {
		t.Fatal(err)
	}
	alice = dialLogin(t, re.addr, "alice", "alicesecret")
	re.rewrite(t, reloadConfig(pbx, true, false))
	if err := re.rl.reload(); err != nil {
		t.Fatal(err)
	}
	alice.expectNoticeEOF("removed")
}

// The real signal: SIGHUP to the process runs the same reload.
func TestReloadOnSIGHUP(t *testing.T) {
	re := startReloadServe(t)
	pbx := re.rl.running.PBXs[0].Address
	alice := dialLogin(t, re.addr, "alice", "alicesecret")
	re.rewrite(t, reloadConfig(pbx, false, true))
	start := time.Now()
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-re.reloaded:
		if err != nil {
			t.Fatalf("reload: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no reload after SIGHUP")
	}
	alice.expectNoticeEOF("removed")
	t.Logf("notice and EOF %v after SIGHUP", time.Since(start))
}
