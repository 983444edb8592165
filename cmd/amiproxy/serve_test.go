package main

import (
	"context"
	"net"
	"os"
	"testing"
	"time"

	"github.com/amiproxy/amiproxy/internal/pbxsim"
)

// svcSecret is the proxy's service-account secret on test PBXs.
const svcSecret = "svc"

// newLabSim starts a simulated PBX that also knows the proxy's service
// account (amiproxy / svcSecret) and stops it when the test ends.
func newLabSim(tb testing.TB) *pbxsim.Server {
	tb.Helper()
	sim, err := pbxsim.New(pbxsim.Config{LoginFailDelay: -1,
		Users: append(pbxsim.DefaultUsers(), pbxsim.User{Name: "amiproxy", Secret: svcSecret, Read: "all", Write: "all"})})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { sim.Close() })
	if _, err := sim.Start("127.0.0.1:0"); err != nil {
		tb.Fatal(err)
	}
	return sim
}

// labPBX is the PBX section for a simulated PBX made by newLabSim.
func labPBX(name string, sim *pbxsim.Server) PBX {
	return PBX{Name: name, Address: sim.Addr().String(), Username: "amiproxy", AuthMD5: true, Secret: SecretSource{Value: svcSecret}}
}

// startServe validates, builds and serves f until the test ends, and
// returns the bound listener addresses by name.
func startServe(t *testing.T, f *File) map[string]net.Addr {
	t.Helper()
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
		done <- serveConfig(ctx, f, rc, serveOptions{ready: func(a map[string]net.Addr) { ready <- a }})
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	select {
	case a := <-ready:
		return a
	case err := <-done:
		done <- err
		t.Fatalf("serve: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("serve did not start within 10s")
	}
	return nil
}
