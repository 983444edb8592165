package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// identityBase is a valid configuration to which the tests add oidc and
// minted sections.
const identityBase = `
listen:
  ami: 127.0.0.1:5038
  http: 127.0.0.1:8088
pbxs:
- {name: east, address: 127.0.0.1:5039, username: amiproxy, secret: {env: PBX_SECRET}}
policy:
  roles:
  - {name: ops, read: all, write: all, pbxs: [east]}
  groups: {ops: [ops]}
`

func TestIdentityValidate(t *testing.T) {
	tests := []struct {
		name  string
		extra string
		want  []string // substrings of the error; none: valid
	}{
		{"valid", `
oidc: {issuer: "http://127.0.0.1:5556/dex", client_id: amiproxy, client_secret: {env: S}, cli_client_id: cli, public_url: "http://127.0.0.1:8088"}
minted: {state_dir: /var/lib/amiproxy, default_ttl: 8h, max_ttl: 24h, admin_groups: [ami-admins]}
`, nil},
		{"oidc only", `
oidc: {issuer: "https://idp.example.com", client_id: amiproxy}
`, nil},
		{"http issuer off loopback", `
oidc: {issuer: "http://idp.example.com", client_id: amiproxy}
`, []string{"oidc.issuer", "loopback"}},
		{"no client id", `
oidc: {issuer: "https://idp.example.com"}
`, []string{"oidc.client_id: required"}},
		{"oidc fields without issuer", `
oidc: {client_id: amiproxy}
`, []string{"oidc: issuer is required"}},
		{"inline client secret", `
oidc: {issuer: "https://idp.example.com", client_id: a, client_secret: {value: x}}
`, []string{"oidc.client_secret: give it as env or file"}},
		{"https public url without listen.https", `
oidc: {issuer: "https://idp.example.com", client_id: a, client_secret: {env: S}, public_url: "https://ami.example.com:8089"}
minted: {state_dir: /tmp/x}
`, []string{"needs listen.https"}},
		{"http public url off loopback", `
oidc: {issuer: "https://idp.example.com", client_id: a, client_secret: {env: S}, public_url: "http://ami.example.com"}
minted: {state_dir: /tmp/x}
`, []string{"oidc.public_url", "loopback"}},
		{"public url with a path", `
oidc: {issuer: "https://idp.example.com", client_id: a, client_secret: {env: S}, public_url: "http://127.0.0.1:8088/x"}
minted: {state_dir: /tmp/x}
`, []string{"want scheme://host[:port] only"}},
		{"sign-in without minted or client secret", `
oidc: {issuer: "https://idp.example.com", client_id: a, public_url: "http://127.0.0.1:8088"}
`, []string{"needs the minted section", "client_secret: required"}},
		{"minted without oidc", `
minted: {state_dir: /tmp/x}
`, []string{"minted: needs the oidc section"}},
		{"minted fields without state_dir", `
minted: {default_ttl: 1h}
`, []string{"minted: state_dir is required"}},
		{"default ttl over max", `
oidc: {issuer: "https://idp.example.com", client_id: a}
minted: {state_dir: /tmp/x, default_ttl: 48h, max_ttl: 24h}
`, []string{"default_ttl 48h0m0s is longer than minted.max_ttl 24h0m0s"}},
		{"inline key and negative max", `
oidc: {issuer: "https://idp.example.com", client_id: a}
minted: {state_dir: /tmp/x, key: {value: k}, max_per_user: -1, admin_groups: [""]}
`, []string{"minted.key: give it as env or file", "max_per_user: -1 outside 0-1000", "admin_groups[0]: empty"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := decodeConfig(strings.NewReader(identityBase + tt.extra))
			if err != nil {
				t.Fatal(err)
			}
			err = f.Validate()
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate() = nil, want %q", tt.want)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Validate() = %v\nwant it to contain %q", err, w)
				}
			}
		})
	}
}

func TestIdentityStrictYAML(t *testing.T) {
	for _, doc := range []string{
		identityBase + "oidc: {issuer: \"https://idp.example.com\", client_id: a, clientid: b}\n",
		identityBase + "minted: {state_dir: /x, ttl: 1h}\n",
		identityBase + "minted: {state_dir: /x, default_ttl: forever}\n",
	} {
		if _, err := decodeConfig(strings.NewReader(doc)); err == nil {
			t.Errorf("decodeConfig accepted:\n%s", doc)
		}
	}
}

// TestIdentityBuildSecrets: build resolves the client secret and the mint
// key and reports what cannot be read, without creating anything.
func TestIdentityBuildSecrets(t *testing.T) {
	dir := t.TempDir()
	goodKey := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{1}, 32))
	loose := filepath.Join(dir, "loose.key")
	if err := os.WriteFile(loose, []byte(goodKey), 0o644); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"PBX_SECRET": "p", "S": "client-secret", "GOOD_KEY": goodKey, "SHORT_KEY": "c2hvcnQ="}
	lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	state := filepath.Join(dir, "state")
	tests := []struct {
		name, key string
		want      string
	}{
		{"key from env", "{env: GOOD_KEY}", ""},
		{"default key file, not created by build", "", ""},
		{"missing env", "{env: NOPE}", "minted.key: environment variable NOPE is not set"},
		{"short key", "{env: SHORT_KEY}", "minted.key"},
		{"key file readable by others", "{file: " + loose + "}", "lets other users read"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			doc := identityBase + `
oidc: {issuer: "http://127.0.0.1:5556/dex", client_id: a, client_secret: {env: S}, public_url: "http://127.0.0.1:8088"}
minted: {state_dir: ` + state + `}
`
			if tt.key != "" {
				doc = strings.Replace(doc, "minted: {", "minted: {key: "+tt.key+", ", 1)
			}
			f, err := decodeConfig(strings.NewReader(doc))
			if err != nil {
				t.Fatal(err)
			}
			if err := f.Validate(); err != nil {
				t.Fatal(err)
			}
			rc, err := f.build(lookup, os.ReadFile)
			if tt.want == "" {
				if err != nil {
					t.Fatalf("build: %v", err)
				}
				if rc.identity.clientSecret.Reveal() != "client-secret" {
					t.Error("client secret not resolved")
				}
			} else if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("build error = %v, want %q", err, tt.want)
			}
			if err != nil && strings.Contains(err.Error(), goodKey) {
				t.Error("error text quotes the key")
			}
			if _, err := os.Stat(state); !os.IsNotExist(err) {
				t.Errorf("build created %s", state)
			}
		})
	}
}

// TestCheckReportsIdentity: amiproxy check lists oidc and minted problems.
func TestCheckReportsIdentity(t *testing.T) {
	path := filepath.Join(t.TempDir(), "amiproxy.yaml")
	doc := identityBase + `
oidc: {issuer: "http://idp.example.com", client_id: a}
minted: {state_dir: /tmp/x, default_ttl: 48h, max_ttl: 1h}
`
	if err := os.WriteFile(path, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	var out, errOut bytes.Buffer
	err := run(context.Background(), []string{"check", "-config", path}, nil, &out, &errOut)
	if err == nil {
		t.Fatal("check accepted a broken oidc/minted config")
	}
	for _, want := range []string{"oidc.issuer", "default_ttl 48h0m0s is longer"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("check output lacks %q:\n%s", want, out.String())
		}
	}
}
