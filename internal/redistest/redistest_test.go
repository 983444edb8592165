package redistest

import (
	"bufio"
	"net"
	"strings"
	"testing"
	"time"
)

// roundTrip sends inline commands and returns the first reply line of the
// last one.
func roundTrip(t *testing.T, addr string, cmds ...string) string {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	r := bufio.NewReader(c)
	var line string
	for _, cmd := range cmds {
		if _, err := c.Write([]byte(cmd + "\r\n")); err != nil {
			t.Fatal(err)
		}
		if line, err = r.ReadString('\n'); err != nil {
			t.Fatal(err)
		}
		if strings.HasPrefix(line, "$") && !strings.HasPrefix(line, "$-1") {
			if line, err = r.ReadString('\n'); err != nil {
				t.Fatal(err)
			}
		}
	}
	return strings.TrimSpace(line)
}

func TestStartRestartKill(t *testing.T) {
	s := Start(t, Options{Password: "pw"})
	if got := roundTrip(t, s.Addr, "PING"); !strings.HasPrefix(got, "-NOAUTH") {
		t.Fatalf("PING without AUTH = %q, want NOAUTH", got)
	}
	if got := roundTrip(t, s.Addr, "AUTH pw", "SET k v", "GET k"); got != "v" {
		t.Fatalf("GET k = %q, want v", got)
	}
	s.Restart()
	if got := roundTrip(t, s.Addr, "AUTH pw", "EXISTS k"); got != ":0" {
		t.Fatalf("after Restart, EXISTS k = %q, want :0 (no persistence)", got)
	}
	s.Kill()
	if c, err := net.DialTimeout("tcp", s.Addr, time.Second); err == nil {
		c.Close()
		t.Fatal("server still accepts connections after Kill")
	}
	s.Kill() // idempotent
}

func TestTLS(t *testing.T) {
	cert, key, _ := SelfSignedCert(t)
	s := Start(t, Options{TLSCertFile: cert, TLSKeyFile: key})
	if err := ping(s.Addr, cert); err != nil {
		t.Fatalf("TLS PING: %v", err)
	}
	if err := ping(s.Addr, ""); err == nil {
		t.Fatal("plain PING to a TLS-only server succeeded")
	}
}
