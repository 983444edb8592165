package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/amiproxy/amiproxy/internal/pbxsim"
	"github.com/amiproxy/amiproxy/policy"
)

func httpGet(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestAdminEndpoints(t *testing.T) {
	sim, err := pbxsim.New(pbxsim.Config{LoginFailDelay: -1,
		Users: append(pbxsim.DefaultUsers(), pbxsim.User{Name: "amiproxy", Secret: "svc", Read: "all", Write: "all"})})
	if err != nil {
		t.Fatal(err)
	}
	defer sim.Close()
	pbxAddr, err := sim.Start("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &File{
		PBXs:     []PBX{{Name: "lab", Address: pbxAddr.String(), Username: "amiproxy", Secret: SecretSource{Value: "svc"}}},
		Accounts: []Account{{Username: "ops", Secret: SecretSource{Value: "ops-secret"}}},
		Policy: policy.Config{
			Roles: []policy.Role{{Name: "r", Read: "all", Write: "all", PBXs: []string{"*"}}},
			Users: map[string][]string{"ops": {"r"}},
		},
		Proxy: Proxy{LoginFailDelay: Duration(time.Millisecond)},
	}
	_ = f.Listen.AMI.UnmarshalText([]byte("127.0.0.1:0"))
	_ = f.Listen.Admin.UnmarshalText([]byte("127.0.0.1:0"))
	rc, err := f.build(osEnv, os.ReadFile)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan map[string]net.Addr, 1)
	done := make(chan error, 1)
	go func() {
		done <- serveConfig(ctx, f, rc, serveOptions{ready: func(a map[string]net.Addr) { ready <- a }})
	}()
	addrs := <-ready
	base := "http://" + addrs["admin"].String()

	if code, body := httpGet(t, base+"/healthz"); code != 200 || body != "ok\n" {
		t.Errorf("/healthz = %d %q", code, body)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		code, body := httpGet(t, base+"/readyz")
		if code == 200 && body == "ready\n" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/readyz never became ready: %d %q", code, body)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// One good and one bad login show up in the counters.
	for _, secret := range []string{"ops-secret", "wrong"} {
		conn, err := net.Dial("tcp", addrs["ami"].String())
		if err != nil {
			t.Fatal(err)
		}
		_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
		fmt.Fprintf(conn, "Action: Login\r\nUsername: ops\r\nSecret: %s\r\nEvents: off\r\n\r\nAction: Logoff\r\n\r\n", secret)
		_, _ = io.ReadAll(conn)
		conn.Close()
	}
	_, metrics := httpGet(t, base+"/metrics")
	for _, want := range []string{
		`amiproxy_upstream_up{pbx="lab"} 1`,
		`amiproxy_logins_total{result="ok"} 1`,
		`amiproxy_logins_total{result="failed"} 1`,
		`amiproxy_upstream_info{pbx="lab",asterisk_version="22.10.1",ami_version="11.0.0"} 1`,
		"# TYPE amiproxy_actions_total counter",
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %q:\n%s", want, metrics)
		}
	}
	// The PBX goes away: not ready any more, and the gauge says so.
	sim.Close()
	deadline = time.Now().Add(10 * time.Second)
	for {
		code, body := httpGet(t, base+"/readyz")
		if code == http.StatusServiceUnavailable && strings.Contains(body, "lab") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/readyz still %d %q after the PBX stopped", code, body)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if _, metrics := httpGet(t, base+"/metrics"); !strings.Contains(metrics, `amiproxy_upstream_up{pbx="lab"} 0`) {
		t.Errorf("/metrics after the PBX stopped:\n%s", metrics)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("serve: %v", err)
	}
}
