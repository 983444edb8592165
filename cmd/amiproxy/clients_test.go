package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/amiproxy/amiproxy/policy"
)

// The real AMI client libraries (test/clients: nami, asterisk-manager,
// asterisk-ami-client, amigo, heltonmarx/goami, goami2) run from here so
// that `go test ./...` is every test. They need Node and npm; the Node
// packages are installed from the lockfile when missing (.ci/run installs
// them first).

func clientsDir(t *testing.T) string {
	t.Helper()
	dir, err := filepath.Abs("../../test/clients")
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

func ensureNodeClients(t *testing.T) {
	t.Helper()
	dir := clientsDir(t)
	if _, err := os.Stat(filepath.Join(dir, "node", "node_modules", "asterisk-ami-client")); err == nil {
		return
	}
	npm, err := exec.LookPath("npm")
	if err != nil {
		t.Fatal("npm not found: the client-library tests need Node 20 and npm (.ci/run checks for them)")
	}
	cmd := exec.Command(npm, "ci", "--prefix", filepath.Join(dir, "node"), "--no-audit", "--no-fund")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("npm ci: %v\n%s", err, out)
	}
}

// runClients runs every library against addr with the given account and
// fails the test with the harness output on any failed flow.
func runClients(t *testing.T, addr, user, secret string) string {
	t.Helper()
	ensureNodeClients(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", filepath.Join(clientsDir(t), "run.sh"), "--target", addr)
	cmd.Env = append(os.Environ(), "AMI_USER="+user, "AMI_SECRET="+secret)
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), " 0 failed") {
		t.Fatalf("client libraries against %s: %v\n%s", addr, err, out)
	}
	return string(out)
}

func TestClientLibrariesAgainstSimulator(t *testing.T) {
	sim := newLabSim(t)
	sim.StartTraffic(t.Context(), 0)
	out := runClients(t, sim.Addr().String(), "admin", "adminpass")
	// 6 libraries x 7 flows: md5 passes for heltonmarx/goami and is N/A for
	// the five libraries that cannot log in with Challenge/MD5.
	if !strings.Contains(out, "clients: 37 passed, 0 failed, 5 skipped") {
		t.Errorf("want 37 flows to pass and 5 to be N/A:\n%s", out)
	}
}

// TestClientLibrariesThroughProxy is the point of the product: unmodified
// clients, through the proxy, to a PBX.
func TestClientLibrariesThroughProxy(t *testing.T) {
	sim := newLabSim(t)
	sim.StartTraffic(t.Context(), 0)

	f := &File{
		PBXs:     []PBX{labPBX("lab", sim)},
		Accounts: []Account{{Username: "crm", Secret: SecretSource{Value: "crm-secret"}}},
		Policy: policy.Config{
			Roles: []policy.Role{{Name: "full", Read: "all", Write: "all", PBXs: []string{"*"}}},
			Users: map[string][]string{"crm": {"full"}},
		},
	}
	_ = f.Listen.AMI.UnmarshalText([]byte("127.0.0.1:0"))
	runClients(t, startServe(t, f)["ami"].String(), "crm", "crm-secret")
}
