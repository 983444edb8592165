package main

import (
	"context"
	"flag"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/bcrypt"

	"github.com/amiproxy/amiproxy/internal/pbxsim"
	"github.com/amiproxy/amiproxy/policy"
	"github.com/amiproxy/amiproxy/rawman"
)

// importBase completes an imported fragment into a whole configuration.
const importBase = `listen:
  ami: 127.0.0.1:0
pbxs:
  - name: east
    address: 127.0.0.1:1
    username: amiproxy
    secret: {value: svc}
`

// loadImported runs import-manager-conf on path with args, then loads the
// fragment with the real loader: strict decoding, Validate and build.
func loadImported(t *testing.T, path string, env map[string]string, args ...string) (*File, *runtimeConfig, string, string) {
	t.Helper()
	var out, errs syncBuffer
	if err := run(context.Background(), append(append([]string{"import-manager-conf"}, args...), path), strings.NewReader(""), &out, &errs); err != nil {
		t.Fatalf("import-manager-conf: %v\n%s", err, errs.String())
	}
	f, err := decodeConfig(strings.NewReader(importBase + out.String()))
	if err != nil {
		t.Fatalf("decode(imported) = %v\n%s", err, out.String())
	}
	if err := f.Validate(); err != nil {
		t.Fatalf("Validate(imported) = %v\n%s", err, out.String())
	}
	rc, err := f.build(fakeEnv(env), os.ReadFile)
	if err != nil {
		t.Fatalf("build(imported) = %v\n%s", err, out.String())
	}
	return f, rc, out.String(), errs.String()
}

func TestImportManagerConf(t *testing.T) {
	env := map[string]string{}
	for _, u := range []string{"CRM", "WALLBOARD", "AGENT1", "AGENT2", "ADMIN", "REPORTS", "NAMED", "OLDFILTER"} {
		env["AMIPROXY_SECRET_"+u] = "x"
	}
	f, rc, doc, stderr := loadImported(t, "testdata/manager.conf", env, "-secrets", "env")
	eng := rc.engine

	var names []string
	for _, a := range f.Accounts {
		names = append(names, a.Username)
		if a.Secret.Env == "" || a.SecretHash != "" || a.Secret.Value != "" {
			t.Errorf("account %s: secret %+v, want only an env source", a.Username, a.Secret)
		}
	}
	if got, want := strings.Join(names, ","), "crm,wallboard,agent1,agent2,admin,reports,named,oldfilter"; got != want {
		t.Errorf("accounts = %s, want %s", got, want)
	}
	for _, secret := range []string{"crm-S3cret!", "ChangeMe", "r3p0rts", "ACCOUNTCODE=admin"} {
		if strings.Contains(doc, secret) || strings.Contains(stderr, secret) {
			t.Errorf("the fragment or the warnings hold the secret %q with -secrets env", secret)
		}
	}

	// Classes, read exactly as Asterisk's get_perm reads them.
	masks := []struct {
		user        string
		read, write policy.Class
	}{
		{"crm", policy.Call | policy.Originate, policy.Call | policy.Originate},
		{"wallboard", policy.Agent | policy.Reporting, 0},
		{"agent1", policy.Call | policy.Agent | policy.User, policy.Call | policy.Agent}, // from the template
		{"agent2", policy.Call | policy.Agent, policy.Call | policy.Agent},               // read overridden
		{"admin", policy.All, policy.All},
		{"reports", policy.Reporting, policy.System | policy.Reporting}, // "reporting, cdr"; "sys,"
	}
	for _, m := range masks {
		s := eng.Subject(m.user, nil)
		if r, w := s.ReadMask("east"), s.WriteMask("east"); r != m.read || w != m.write {
			t.Errorf("%s: read %v write %v, want %v and %v", m.user, r, w, m.read, m.write)
		}
	}

	// Networks: Asterisk's last-match-wins ACLs, IPv6 refused when the
	// rules name only IPv4 (and said so).
	nets := []struct {
		user, addr string
		want       bool
	}{
		{"crm", "10.1.2.3", true},
		{"crm", "10.66.1.1", false},
		{"crm", "127.0.0.1", true},
		{"crm", "127.0.0.2", false},
		{"crm", "192.168.1.1", false},
		{"crm", "2001:db8::1", false},
		{"wallboard", "192.168.5.9", true},
		{"wallboard", "2001:db8:5::9", true},
		{"wallboard", "2001:db8:6::9", true}, // Asterisk's IPv6 default: no IPv6 deny
		{"wallboard", "192.168.6.9", false},
		{"agent1", "10.20.3.4", true},
		{"agent1", "10.21.3.4", false},
		{"admin", "127.0.0.200", true},
		{"admin", "127.0.1.1", false},
		{"reports", "203.0.113.1", true}, // no ACL at all
		{"named", "127.0.0.1", false},    // acl= could not be read: refuse all
	}
	for _, n := range nets {
		d := eng.Subject(n.user, nil).AllowsAddr(netip.MustParseAddr(n.addr))
		if d.Allowed() != n.want {
			t.Errorf("%s from %s: %v, want allowed=%v", n.user, n.addr, d, n.want)
		}
	}

	// Eventfilters, legacy and advanced.
	event := func(lines ...string) (rawman.Message, string) {
		m := rawman.New(lines...)
		return m, m.String()
	}
	evs := []struct {
		user string
		kv   []string
		want bool
	}{
		{"crm", []string{"Event", "Newchannel", "Privilege", "call,all", "Channel", "PJSIP/1-1"}, true},
		{"crm", []string{"Event", "Newchannel", "Privilege", "call,all", "Channel", "Local/1@x-1;1"}, false},
		{"crm", []string{"Event", "Newstate", "Privilege", "call,all", "Channel", "PJSIP/1-1"}, false},
		{"wallboard", []string{"Event", "QueueMemberStatus", "Privilege", "agent,all", "Queue", "sales"}, true},
		{"wallboard", []string{"Event", "QueueMemberStatus", "Privilege", "agent,all", "Queue", "test-1"}, false},
		{"wallboard", []string{"Event", "AgentCalled", "Privilege", "agent,all", "Queue", "sales"}, false},
		{"oldfilter", []string{"Event", "Newchannel", "Privilege", "call,all"}, true}, // EventFilter ignored
	}
	for _, e := range evs {
		m, text := event(e.kv...)
		d := eng.Subject(e.user, nil).DeliverEvent("east", m, text, policy.All)
		if d.Allowed() != e.want {
			t.Errorf("%s gets %v: %v, want %v", e.user, e.kv, d, e.want)
		}
	}

	for _, w := range []string{
		"#include \"manager_custom.conf\" is not followed",
		"[disabled]: no secret",
		"[broken]: managerconf: line",
		"Asterisk deletes a user with an invalid ACL line",
		"[named]: acl= names an ACL",
		"[admin] setvar ACCOUNTCODE is not supported",
		"[agent1]: writetimeout has no per-user equivalent",
		"[reports]: read = reporting, cdr: Asterisk reads this as \"reporting\"",
		"[crm]: the rules name no IPv6 network",
		"[general] authtimeout = 30: not imported; in amiproxy see proxy.handshake_timeout",
		"EventFilter: Asterisk 22.1 and later ignore",
		"set these environment variables to the users' secrets before amiproxy starts: AMIPROXY_SECRET_CRM,",
	} {
		if !strings.Contains(stderr, w) {
			t.Errorf("stderr lacks %q:\n%s", w, stderr)
		}
		if !strings.Contains(doc, "# warning: ") || !strings.Contains(doc, w) {
			t.Errorf("the fragment's comments lack %q", w)
		}
	}
}

func TestImportSecretsModes(t *testing.T) {
	// The recordings' own manager.conf: the users pbxsim serves.
	const recorded = "../../testdata/transcripts/config/manager.conf"
	sims := map[string]pbxsim.User{}
	for _, u := range pbxsim.DefaultUsers() {
		sims[u.Name] = u
	}

	f, rc, doc, _ := loadImported(t, recorded, nil, "-secrets", "plaintext")
	if !strings.Contains(doc, "# This file holds plaintext secrets") {
		t.Error("plaintext fragment lacks its warning")
	}
	if len(f.Accounts) != len(sims) {
		t.Errorf("imported %d accounts, pbxsim has %d users", len(f.Accounts), len(sims))
	}
	for _, a := range f.Accounts {
		u, ok := sims[a.Username]
		if !ok {
			t.Errorf("imported unknown user %s", a.Username)
			continue
		}
		if a.Secret.Value != u.Secret {
			t.Errorf("%s: imported secret differs from the recording's", a.Username)
		}
		s := rc.engine.Subject(a.Username, nil)
		if r, w := s.ReadMask("east"), s.WriteMask("east"); r != policy.ParsePerm(u.Read) || w != policy.ParsePerm(u.Write) {
			t.Errorf("%s: read %v write %v, want %v %v", a.Username, r, w, policy.ParsePerm(u.Read), policy.ParsePerm(u.Write))
		}
		if got := s.Filters("east").Len(); got != len(u.EventFilters) {
			t.Errorf("%s: %d eventfilters, want %d", a.Username, got, len(u.EventFilters))
		}
	}

	// bcrypt (the default): hashes that verify, no plaintext.
	path := filepath.Join(t.TempDir(), "manager.conf")
	if err := os.WriteFile(path, []byte("[u1]\nsecret = one\nread = call\n[u2](+)\n"), 0o600); err == nil {
		var out, errs syncBuffer
		if err := run(context.Background(), []string{"import-manager-conf", path}, strings.NewReader(""), &out, &errs); err == nil {
			t.Errorf("import of a file Asterisk refuses = nil error")
		}
	}
	if err := os.WriteFile(path, []byte("[u1]\nsecret = one\nread = call\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	f, _, doc, stderr := loadImported(t, path, nil, "-cost", "10", "-pbxs", "east")
	if strings.Contains(doc, ": one") || f.Accounts[0].SecretHash == "" {
		t.Errorf("bcrypt fragment:\n%s", doc)
	}
	if err := bcrypt.CompareHashAndPassword([]byte(f.Accounts[0].SecretHash), []byte("one")); err != nil {
		t.Errorf("imported hash does not verify: %v", err)
	}
	if !strings.Contains(stderr, "Challenge/MD5") || f.Policy.Roles[0].PBXs[0] != "east" {
		t.Errorf("stderr %q, pbxs %v", stderr, f.Policy.Roles[0].PBXs)
	}

	// -o writes a private file.
	outPath := filepath.Join(t.TempDir(), "fragment.yaml")
	var out, errs syncBuffer
	if err := run(context.Background(), []string{"import-manager-conf", "-secrets", "plaintext", "-o", outPath, path}, strings.NewReader(""), &out, &errs); err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(outPath); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("-o file: %v, %v", st, err)
	}
	for _, args := range [][]string{{}, {"-secrets", "rot13", path}, {path, path}} {
		if err := run(context.Background(), append([]string{"import-manager-conf"}, args...), strings.NewReader(""), &out, &errs); err != flag.ErrHelp {
			t.Errorf("import-manager-conf %v = %v, want flag.ErrHelp", args, err)
		}
	}
}
