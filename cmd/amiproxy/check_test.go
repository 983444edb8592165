package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/bcrypt"
)

func TestCheckCommand(t *testing.T) {
	t.Setenv("AMIPROXY_PARIS_SECRET", "p")
	t.Setenv("AMIPROXY_CRM_SECRET", "c")
	t.Setenv("AMIPROXY_OIDC_SECRET", "o")
	t.Setenv("AMIPROXY_MINTED_KEY", "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=")
	dir := t.TempDir()
	lyon := filepath.Join(dir, "lyon")
	if err := os.WriteFile(lyon, []byte("l\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	example, err := os.ReadFile("../../examples/amiproxy.yaml")
	if err != nil {
		t.Fatal(err)
	}
	good := filepath.Join(dir, "good.yaml")
	if err := os.WriteFile(good, []byte(strings.ReplaceAll(string(example), "/run/secrets/amiproxy-lyon", lyon)), 0o600); err != nil {
		t.Fatal(err)
	}
	var out, errs syncBuffer
	if err := run(context.Background(), []string{"check", "-config", good}, strings.NewReader(""), &out, &errs); err != nil {
		t.Fatalf("check(example) = %v\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), ": ok (2 PBXs, 2 accounts, 3 roles)") {
		t.Errorf("check output = %q", out.String())
	}

	// A broken file: every problem listed, one per line, and an error.
	bad := filepath.Join(dir, "bad.yaml")
	doc := "listen:\n  ami: 0.0.0.0:5038\npbxs:\n  - name: a\n    address: 127.0.0.1:5038\n    username: u\n    secret: {env: NOPE_NOT_SET}\n"
	if err := os.WriteFile(bad, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	out = syncBuffer{}
	err = run(context.Background(), []string{"check", "-config", bad}, strings.NewReader(""), &out, &errs)
	if err == nil {
		t.Fatal("check(bad) = nil")
	}
	if !strings.Contains(out.String(), "  - listen.ami: plaintext AMI on non-loopback") {
		t.Errorf("check(bad) output lacks the listener problem:\n%s", out.String())
	}
	// Secrets are checked too once the file is otherwise valid.
	doc = strings.Replace(doc, "0.0.0.0", "127.0.0.1", 1)
	if err := os.WriteFile(bad, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	out = syncBuffer{}
	if err := run(context.Background(), []string{"check", "-config", bad}, strings.NewReader(""), &out, &errs); err == nil || !strings.Contains(out.String(), "NOPE_NOT_SET is not set") {
		t.Errorf("check(missing secret) = %v\n%s", err, out.String())
	}
}

func TestHashSecretCommand(t *testing.T) {
	var out, errs syncBuffer
	if err := run(context.Background(), []string{"hash-secret", "-cost", "10"}, strings.NewReader("s3cret pass\n"), &out, &errs); err != nil {
		t.Fatal(err)
	}
	hash := strings.TrimSpace(out.String())
	if err := bcrypt.CompareHashAndPassword([]byte(hash), []byte("s3cret pass")); err != nil {
		t.Errorf("hash-secret output %q does not verify: %v", hash, err)
	}
	if cost, _ := bcrypt.Cost([]byte(hash)); cost != 10 {
		t.Errorf("bcrypt cost = %d, want 10", cost)
	}
	if err := run(context.Background(), []string{"hash-secret"}, strings.NewReader(""), &out, &errs); err == nil {
		t.Error("hash-secret with no input = nil error")
	}
}
