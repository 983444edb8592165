package main

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/amiproxy/amiproxy/internal/dextest"
)

// TestBrowserSignIn drives headless Chromium (test/browser/signin.js,
// playwright-core) through the sign-in page against Dex: click "Sign in",
// log in at Dex, land on the page, mint a secret, and log in with it from
// nami. Outside CI it is skipped when Chromium or the npm packages are
// missing; in CI (CI=true) it must run.
func TestBrowserSignIn(t *testing.T) {
	inCI := os.Getenv("CI") == "true"
	chromium := os.Getenv("CHROMIUM")
	if chromium == "" {
		chromium = "/usr/bin/chromium"
	}
	dir := filepath.Join(repoRoot(t), "test", "browser")
	_, errBrowser := os.Stat(chromium)
	_, errModules := os.Stat(filepath.Join(dir, "node_modules", "playwright-core"))
	node, errNode := exec.LookPath("node")
	if err := firstErr(errBrowser, errModules, errNode); err != nil {
		if inCI {
			t.Fatalf("browser test cannot run in CI: %v (apt-get install chromium; npm ci --prefix test/browser)", err)
		}
		t.Skipf("browser test skipped: %v", err)
	}

	l := newSigninLab(t)
	addrs, _ := l.start()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, "signin.js")
	cmd.Dir = dir
	host, port, _ := strings.Cut(addrs["ami"].String(), ":")
	cmd.Env = append(os.Environ(),
		"BASE_URL="+l.base, "DEX_USER="+dextest.Admin.Email, "DEX_PASSWORD="+dextest.Password,
		"AMI_HOST="+host, "AMI_PORT="+port, "CHROMIUM="+chromium)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("signin.js: %v\n%s", err, stderr.String())
	}
	var res struct {
		User, Roles, PBXs, Username, Ping string
		SecretLength                      int
		Listed                            int
		Headers                           struct{ CSP, Frame, Cache string }
	}
	if err := json.Unmarshal(out, &res); err != nil {
		t.Fatalf("signin.js output %q: %v", out, err)
	}
	if res.User != "admin" || res.Roles != "ops-role" || res.PBXs != "east" {
		t.Errorf("page showed user %q roles %q PBXs %q, want admin, ops-role, east", res.User, res.Roles, res.PBXs)
	}
	if res.Username != "admin" || res.SecretLength < 30 || res.Listed != 1 {
		t.Errorf("minted username %q, secret length %d, listed %d", res.Username, res.SecretLength, res.Listed)
	}
	if res.Ping != "Success/Pong" {
		t.Errorf("nami Ping with the minted secret: %q, want Success/Pong", res.Ping)
	}
	if !strings.Contains(res.Headers.CSP, "default-src 'self'") || res.Headers.Frame != "DENY" || res.Headers.Cache != "no-store" {
		t.Errorf("security headers: %+v", res.Headers)
	}
	checkNoSecrets(t, l.logs.String())
}

func firstErr(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}
