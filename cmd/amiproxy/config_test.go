package main

import (
	"errors"
	"os"
	"strings"
	"testing"
)

func fakeEnv(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

func TestExampleConfigIsValid(t *testing.T) {
	f, err := loadConfig("../../examples/amiproxy.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Validate(); err != nil {
		t.Fatalf("examples/amiproxy.yaml: Validate() = %v", err)
	}
	files := map[string]string{"/run/secrets/amiproxy-lyon": "lyon-secret\n"}
	readFile := func(p string) ([]byte, error) {
		if v, ok := files[p]; ok {
			return []byte(v), nil
		}
		return nil, os.ErrNotExist
	}
	rc, err := f.build(fakeEnv(map[string]string{"AMIPROXY_PARIS_SECRET": "paris-secret", "AMIPROXY_CRM_SECRET": "crm",
		"AMIPROXY_OIDC_SECRET": "oidc", "AMIPROXY_MINTED_KEY": "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="}), readFile)
	if err != nil {
		t.Fatalf("build(example) = %v", err)
	}
	if len(rc.pbxs) != 2 || rc.pbxs[1].Secret != "lyon-secret" || rc.pbxs[0].Secret != "paris-secret" {
		t.Errorf("build: pbxs = %+v", rc.pbxs)
	}
	if s := rc.engine.Subject("crm", nil); len(s.PBXs()) != 1 || s.PBXs()[0] != "paris" {
		t.Errorf("crm may reach %v, want [paris]", s.PBXs())
	}
	// Labels select PBXs: noc (tier: prod) reaches both.
	if s := rc.engine.Subject("someone", []string{"noc"}); len(s.PBXs()) != 2 {
		t.Errorf("noc may reach %v, want paris and lyon", s.PBXs())
	}
	// Missing secrets are reported, all of them.
	_, err = f.build(fakeEnv(nil), readFile)
	if err == nil || !strings.Contains(err.Error(), "AMIPROXY_PARIS_SECRET") || !strings.Contains(err.Error(), "AMIPROXY_CRM_SECRET") {
		t.Errorf("build without env = %v, want both missing variables named", err)
	}
}

func TestConfigStrictDecode(t *testing.T) {
	_, err := decodeConfig(strings.NewReader("listen:\n  ami: 127.0.0.1:5038\n  amii: 1\n"))
	if err == nil || !strings.Contains(err.Error(), "amii") {
		t.Errorf("unknown key: decodeConfig() = %v, want an error naming amii", err)
	}
	_, err = decodeConfig(strings.NewReader("listen:\n  ami: localhost:5038\n"))
	if err == nil || !strings.Contains(err.Error(), "explicit IP") {
		t.Errorf("host name address: decodeConfig() = %v, want an explicit-IP error", err)
	}
	_, err = decodeConfig(strings.NewReader("tls:\n  mode: magic\n"))
	if err == nil || !strings.Contains(err.Error(), "unknown tls mode") {
		t.Errorf("bad tls mode: decodeConfig() = %v", err)
	}
	_, err = decodeConfig(strings.NewReader("proxy:\n  handshake_timeout: soon\n"))
	if err == nil {
		t.Error("bad duration accepted")
	}
	if _, err := decodeConfig(strings.NewReader("")); err == nil {
		t.Error("empty document accepted")
	}
	// A secret pasted where a number belongs must not reach the error
	// text, which is printed and logged.
	_, err = decodeConfig(strings.NewReader("proxy:\n  client_queue: hunter2-s3cret\n"))
	if err == nil || strings.Contains(err.Error(), "hunter2") || !strings.Contains(err.Error(), "line 2") {
		t.Errorf("misplaced secret: decodeConfig() = %v, want a line number and no value", err)
	}
}

func TestConfigValidateReportsEverything(t *testing.T) {
	const doc = `
listen:
  ami: 0.0.0.0:5038
  ami_tls: 0.0.0.0:5039
proxy:
  default_pbx: nowhere
pbxs:
  - name: east
    address: 127.0.0.1:5038
    username: amiproxy
  - name: east
    address: ""
    username: ""
    secret: {env: A, file: /b}
accounts:
  - username: bob
  - username: BOB
    secret_hash: x
policy:
  roles:
    - name: r
      read: call,bogus
      pbxs: [mars]
  users:
    bob: [missing-role]
log:
  level: loud
`
	f, err := decodeConfig(strings.NewReader(doc))
	if err != nil {
		t.Fatal(err)
	}
	before := *f
	err = f.Validate()
	if err == nil {
		t.Fatal("Validate() = nil for a broken config")
	}
	for _, want := range []string{
		"plaintext AMI on non-loopback", "tls.mode: required", "default_pbx", "duplicate name",
		"address is required", "username (the proxy's", "secret is required", "one of env, file or value",
		"accounts[0] (bob): secret_hash or secret", "duplicate username", "bogus", "mars", "missing-role", "log.level",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Validate() does not report %q:\n%v", want, err)
		}
	}
	if f.Proxy != before.Proxy || len(f.PBXs) != len(before.PBXs) {
		t.Error("Validate() changed the config")
	}
	var joined interface{ Unwrap() []error }
	if !errors.As(err, &joined) || len(joined.Unwrap()) < 10 {
		t.Errorf("Validate() should join every problem, got %v", err)
	}
}
