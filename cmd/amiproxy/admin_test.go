package main

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

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
	sim := newLabSim(t)
	f := &File{
		PBXs:     []PBX{labPBX("lab", sim)},
		Accounts: []Account{{Username: "ops", Secret: SecretSource{Value: "ops-secret"}}},
		Policy: policy.Config{
			Roles: []policy.Role{{Name: "r", Read: "all", Write: "all", PBXs: []string{"*"}}},
			Users: map[string][]string{"ops": {"r"}},
		},
		Proxy: Proxy{LoginFailDelay: Duration(time.Millisecond)},
	}
	_ = f.Listen.AMI.UnmarshalText([]byte("127.0.0.1:0"))
	_ = f.Listen.Admin.UnmarshalText([]byte("127.0.0.1:0"))
	addrs := startServe(t, f)
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
		`amiproxy_sessions_ended_total{reason="revoked"} 0`,
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
}
