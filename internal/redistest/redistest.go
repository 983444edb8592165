package redistest

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Options configure Start.
type Options struct {
	// Password, when set, is required of the default user (requirepass).
	Password string
	// Args are further redis-server arguments, e.g. "--user", "svc",
	// "on", ">pw", "~amiproxy:*", "+@all".
	Args []string
	// TLSCertFile and TLSKeyFile, when set, make the server speak TLS only
	// (no plain port; clients need no certificate). The certificate must
	// be valid for 127.0.0.1: the readiness probe verifies it.
	TLSCertFile, TLSKeyFile string
}

// Server is a running redis-server.
type Server struct {
	// Addr is host:port on 127.0.0.1.
	Addr string

	t    testing.TB
	bin  string
	dir  string
	opts Options

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan error // receives cmd.Wait's result
	logs   *syncBuffer
}

// Binary returns the redis-server binary to run, or an error saying how
// to install it.
func Binary() (string, error) {
	if p := os.Getenv("REDIS_SERVER_BIN"); p != "" {
		return p, nil
	}
	if _, err := os.Stat("/usr/bin/redis-server"); err == nil {
		return "/usr/bin/redis-server", nil
	}
	if p, err := exec.LookPath("redis-server"); err == nil {
		return p, nil
	}
	return "", errors.New("redis-server not found (apt-get install redis-server, or set REDIS_SERVER_BIN)")
}

// Start runs a redis-server and stops it when the test ends.
func Start(t testing.TB, opts Options) *Server {
	t.Helper()
	bin, err := Binary()
	if err != nil {
		t.Fatalf("redistest: %v", err)
	}
	s := &Server{t: t, bin: bin, dir: t.TempDir(), opts: opts}
	t.Cleanup(s.Kill)
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		port, err := freePort()
		if err != nil {
			t.Fatalf("redistest: %v", err)
		}
		s.Addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		if lastErr = s.start(); lastErr == nil {
			return s
		}
	}
	t.Fatalf("redistest: %v", lastErr)
	return nil
}

// Kill stops the server (SIGKILL) and waits for it. Idempotent.
func (s *Server) Kill() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.killLocked()
}

func (s *Server) killLocked() {
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Kill()
	<-s.exited
	s.cmd = nil
}

// Restart kills the server and starts a new, empty one on the same
// address. It fails the test if the new one does not come up.
func (s *Server) Restart() {
	s.t.Helper()
	s.Kill()
	var err error
	for attempt := 0; attempt < 5; attempt++ {
		if err = s.start(); err == nil {
			return
		}
		time.Sleep(200 * time.Millisecond) // the port may linger briefly
	}
	s.t.Fatalf("redistest: restart: %v", err)
}

// Logs returns what the current server process wrote so far.
func (s *Server) Logs() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.logs == nil {
		return ""
	}
	return s.logs.String()
}

// start runs redis-server on s.Addr and waits for PING.
func (s *Server) start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, port, _ := net.SplitHostPort(s.Addr)
	portArgs := []string{"--port", port}
	if s.opts.TLSCertFile != "" {
		portArgs = []string{"--port", "0", "--tls-port", port, "--tls-cert-file", s.opts.TLSCertFile,
			"--tls-key-file", s.opts.TLSKeyFile, "--tls-auth-clients", "no"}
	}
	args := []string{
		"--bind", "127.0.0.1", "--dir", s.dir,
		"--save", "", "--appendonly", "no", "--daemonize", "no",
		"--logfile", "", "--databases", "16",
	}
	args = append(args, portArgs...)
	if s.opts.Password != "" {
		args = append(args, "--requirepass", s.opts.Password)
	}
	args = append(args, s.opts.Args...)
	cmd := exec.Command(s.bin, args...)
	logs := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = logs, logs
	dieWithParent(cmd)
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", s.bin, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	deadline := time.Now().Add(15 * time.Second)
	for {
		if err := ping(s.Addr, s.opts.TLSCertFile); err == nil {
			break
		} else if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			<-exited
			return fmt.Errorf("redis-server on %s did not answer PING within 15s: %v; output:\n%s", s.Addr, err, logs.String())
		}
		select {
		case err := <-exited:
			return fmt.Errorf("redis-server on %s exited: %v; output:\n%s", s.Addr, err, logs.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
	// The goroutine above owns cmd.Wait; killLocked waits on exited.
	s.cmd, s.exited, s.logs = cmd, exited, logs
	return nil
}

// ping sends an inline PING and accepts +PONG, or the NOAUTH error of a
// password-protected server (it is up). With certFile it speaks TLS,
// trusting that certificate.
func ping(addr, certFile string) error {
	var c net.Conn
	var err error
	if certFile != "" {
		pem, rerr := os.ReadFile(certFile)
		if rerr != nil {
			return rerr
		}
		roots := x509.NewCertPool()
		if !roots.AppendCertsFromPEM(pem) {
			return fmt.Errorf("%s: no PEM certificate", certFile)
		}
		c, err = tls.DialWithDialer(&net.Dialer{Timeout: time.Second}, "tcp", addr, &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12})
	} else {
		c, err = net.DialTimeout("tcp", addr, time.Second)
	}
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if strings.HasPrefix(line, "+PONG") || strings.HasPrefix(line, "-NOAUTH") {
		return nil
	}
	return fmt.Errorf("unexpected reply %q", strings.TrimSpace(line))
}

// freePort asks the kernel for an unused loopback port.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// syncBuffer is a bytes.Buffer safe for the process's concurrent writes.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
