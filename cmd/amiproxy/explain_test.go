package main

import (
	"context"
	"errors"
	"flag"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// explainConfig is a configuration with PBX labels, network rules and
// parameter rules; %s is the address of the PBX "east".
const explainConfig = `listen:
  ami: 127.0.0.1:0
proxy:
  default_pbx: east
  login_fail_delay: 0s
pbxs:
  - name: east
    labels: {site: paris}
    address: %s
    username: amiproxy
    auth_md5: true
    secret: {value: svc}
  - name: west
    labels: {site: lyon}
    address: 127.0.0.1:1
    username: amiproxy
    secret: {value: svc}
accounts:
  - username: alice
    secret: {value: alicepass}
  - username: bob
    secret: {value: bobpass}
  - username: eve
    secret: {value: evepass}
    groups: [remote]
policy:
  roles:
    - name: dialer
      read: call
      write: call,originate
      pbx_labels: {site: paris}
      permit: [127.0.0.0/8, 10.0.0.0/8]
      deny: [10.66.0.0/16]
      rules:
        contexts: [lab]
        extensions: ["1*", "2*"]
        originate_channels: ["Local/*@lab", "PJSIP/{{.claims.extension}}"]
        channels: ["Local/*@lab-*"]
    - name: cli
      write: command,reporting
      pbxs: ["*"]
      rules:
        commands: [core show version]
    - name: viewer
      read: call
      pbxs: ["*"]
    - name: offsite
      pbxs: ["*"]
      deny: [127.0.0.0/8, "::1"]
  users:
    alice: [dialer, cli]
    bob: [viewer]
    eve: [viewer]
  groups:
    ops: [cli]
    remote: [offsite]
`

func writeExplainConfig(t *testing.T, pbxAddr string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "amiproxy.yaml")
	if err := os.WriteFile(path, []byte(strings.Replace(explainConfig, "%s", pbxAddr, 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func runExplainArgs(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out, errs syncBuffer
	err := run(context.Background(), append([]string{"explain"}, args...), strings.NewReader(""), &out, &errs)
	return out.String() + errs.String(), err
}

func TestExplain(t *testing.T) {
	path := writeExplainConfig(t, "127.0.0.1:2")
	tests := []struct {
		name  string
		args  []string
		allow bool
		want  []string // substrings of the output
	}{
		{"originate allowed", []string{"--user", "alice", "--pbx", "east", "--action", "Originate",
			"--header", "Channel: Local/100@lab", "--header", "Context: lab", "--header", "Exten: 100", "--header", "Priority: 1"},
			true, []string{"roles:     dialer, cli", "use pbx:   allow (role dialer: pbx_labels {site=paris})",
				`decide:    allow (role dialer: write class originate; rules originate_channels "Local/*@lab", contexts)`, "result:    allow"}},
		{"originate elsewhere", []string{"--user", "alice", "--action", "Originate",
			"--header", "Channel: Local/100@lab", "--header", "Context: default", "--header", "Exten: 100"},
			false, []string{"pbx:       east", "decide:    deny (role dialer: rules.contexts: Context default is not listed)",
				"client:    Response: Error, Message: Permission denied", "result:    deny"}},
		{"claim template", []string{"--user", "alice", "--claim", "extension=2001", "--action", "Originate",
			"--header", "Channel: PJSIP/2001", "--header", "Context: lab", "--header", "Exten: 200"},
			true, []string{"claims:    extension=2001", `rules originate_channels "PJSIP/{{.claims.extension}}"`}},
		{"claim missing", []string{"--user", "alice", "--action", "Originate",
			"--header", "Channel: PJSIP/2001", "--header", "Context: lab", "--header", "Exten: 200"},
			false, []string{"decide:    deny (role dialer: rules.originate_channels: Channel PJSIP/2001 does not match)"}},
		{"west by label: not granted to dialer", []string{"--user", "alice", "--pbx", "west", "--action", "Originate"},
			false, []string{"use pbx:   allow (role cli: pbxs *)", "decide:    deny (default: Originate needs write class originate)"}},
		{"network refused", []string{"--user", "alice", "--addr", "10.66.1.2"},
			false, []string{"network:   deny (role dialer: deny 10.66.0.0/16)", "use pbx:   deny (role dialer: deny 10.66.0.0/16)", "result:    deny"}},
		{"network ok", []string{"--user", "alice", "--addr", "::ffff:10.1.2.3"},
			true, []string{"network:   allow (role dialer: permit 10.0.0.0/8)", "result:    allow"}},
		{"group role", []string{"--user", "carol", "--group", "ops", "--action", "Command", "--header", "Command: core show version"},
			true, []string{"roles:     cli", `note:      no local account "carol"`, `rules commands "core show version"`}},
		{"command shell", []string{"--user", "alice", "--action", "Command", "--header", "Command: !id"},
			false, []string{"rules.commands: Command holds a forbidden character"}},
		{"no roles", []string{"--user", "mallory", "--action", "Ping"},
			false, []string{"roles:     none", "use pbx:   deny (pbx east: not granted)"}},
		{"server header ignored", []string{"--user", "alice", "--action", "Ping", "--header", "Server: west"},
			true, []string{"action:    Action: Ping\n", "decide:    allow (default: Ping needs no class)"}},
		{"first header wins", []string{"--user", "alice", "--action", "Originate", "--header", "Channel: Local/100@lab",
			"--header", "context: default", "--header", "Context: lab", "--header", "Exten: 1"},
			false, []string{"rules.contexts: Context default is not listed"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := runExplainArgs(t, append([]string{"-config", path}, tt.args...)...)
			if tt.allow && err != nil {
				t.Errorf("explain = %v, want allow (nil)\n%s", err, out)
			}
			if !tt.allow && !errors.Is(err, errExplainDenied) {
				t.Errorf("explain = %v, want errExplainDenied\n%s", err, out)
			}
			for _, w := range tt.want {
				if !strings.Contains(out, w) {
					t.Errorf("explain output lacks %q:\n%s", w, out)
				}
			}
		})
	}

	// Bad flags are usage errors (exit status 2), with a message.
	for _, args := range [][]string{
		{"-config", path},
		{"-config", path, "--user", "a", "--claim", "novalue"},
		{"-config", path, "--user", "a", "--addr", "not-an-ip"},
		{"-config", path, "--user", "a", "--header", "X: y"},
		{"-config", path, "--user", "a", "--action", "Ping", "--header", "no colon"},
		{"-config", path, "--user", "a", "extra"},
	} {
		out, err := runExplainArgs(t, args...)
		if !errors.Is(err, flag.ErrHelp) || !strings.Contains(out, "amiproxy explain:") {
			t.Errorf("explain %q = %v, want a usage error with a message\n%s", args, err, out)
		}
	}
	// A broken configuration is an error, not a decision.
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	if err := os.WriteFile(bad, []byte("policy:\n  roles:\n    - name: x\n      pbx_labels: {site: nowhere}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := runExplainArgs(t, "-config", bad, "--user", "a"); err == nil || errors.Is(err, errExplainDenied) ||
		!strings.Contains(err.Error(), "matches no configured pbx") {
		t.Errorf("explain(bad config) = %v\n%s", err, out)
	}
}

// TestExplainMatchesProxy runs the proxy on the same configuration, in
// front of a simulated PBX, and checks that every action explain allows
// passes the proxy and every action it denies gets "Permission denied".
func TestExplainMatchesProxy(t *testing.T) {
	sim := newLabSim(t)
	path := writeExplainConfig(t, sim.Addr().String())
	f, err := loadConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	addrs := startServe(t, f)
	ami := addrs["ami"].String()

	cases := []struct {
		user, secret string
		headers      []string // after the Action line
		action       string
	}{
		{"alice", "alicepass", []string{"Channel: Local/100@lab", "Context: lab", "Exten: 100", "Priority: 1", "Async: true"}, "Originate"},
		{"alice", "alicepass", []string{"Channel: Local/100@lab", "Context: default", "Exten: 100", "Priority: 1", "Async: true"}, "Originate"},
		{"alice", "alicepass", []string{"Channel: Local/100@default", "Context: lab", "Exten: 100", "Priority: 1", "Async: true"}, "Originate"},
		{"alice", "alicepass", []string{"Channel: Local/100@lab", "Context: lab", "Exten: 999", "Priority: 1", "Async: true"}, "Originate"},
		{"alice", "alicepass", []string{"Command: core show version"}, "Command"},
		{"alice", "alicepass", []string{"Command: core show channels"}, "Command"},
		{"alice", "alicepass", []string{"Channel: /.*/"}, "Hangup"},
		{"alice", "alicepass", []string{"Channel: SIP/x-1"}, "Hangup"},
		{"alice", "alicepass", []string{"Filename: manager.conf"}, "GetConfig"},
		{"bob", "bobpass", []string{}, "Ping"},
		{"bob", "bobpass", []string{"Command: core show version"}, "Command"},
	}
	// Network rules: eve's group role refuses loopback clients, which the
	// proxy learns only after authentication (the role comes with a group).
	for _, u := range []struct {
		user, secret string
		groups       []string
	}{{"eve", "evepass", []string{"remote"}}, {"bob", "bobpass", nil}} {
		args := []string{"-config", path, "--user", u.user, "--addr", "127.0.0.1"}
		for _, g := range u.groups {
			args = append(args, "--group", g)
		}
		out, err := runExplainArgs(t, args...)
		if err != nil && !errors.Is(err, errExplainDenied) {
			t.Fatalf("explain %v: %v\n%s", args, err, out)
		}
		got := amiExchange(t, func() (net.Conn, error) { return net.Dial("tcp", ami) },
			"Action: Login\r\nUsername: "+u.user+"\r\nSecret: "+u.secret+"\r\nEvents: off\r\n\r\nAction: Logoff\r\n\r\n")
		accepted := strings.Contains(got, "Message: Authentication accepted")
		if (err == nil) != accepted {
			t.Errorf("%s from 127.0.0.1: explain allow=%v, proxy login accepted=%v\nexplain:\n%s\nproxy:\n%s", u.user, err == nil, accepted, out, got)
		}
	}
	// A local account's groups come from the configuration, as in the
	// proxy; --group replaces them.
	if out, err := runExplainArgs(t, "-config", path, "--user", "EVE", "--addr", "127.0.0.1"); !errors.Is(err, errExplainDenied) ||
		!strings.Contains(out, "user:      eve\ngroups:    remote (from accounts)") ||
		!strings.Contains(out, "network:   deny (role offsite: deny 127.0.0.0/8)") {
		t.Errorf("explain EVE from loopback = %v:\n%s", err, out)
	}

	for _, c := range cases {
		args := []string{"-config", path, "--user", c.user, "--action", c.action}
		for _, h := range c.headers {
			args = append(args, "--header", h)
		}
		out, err := runExplainArgs(t, args...)
		if err != nil && !errors.Is(err, errExplainDenied) {
			t.Fatalf("explain %v: %v\n%s", args, err, out)
		}
		explained := err == nil

		send := "Action: Login\r\nUsername: " + c.user + "\r\nSecret: " + c.secret + "\r\nEvents: off\r\n\r\n" +
			"Action: " + c.action + "\r\nActionID: q\r\n"
		for _, h := range c.headers {
			send += h + "\r\n"
		}
		send += "\r\nAction: Logoff\r\n\r\n"
		got := amiExchange(t, func() (net.Conn, error) { return net.Dial("tcp", ami) }, send)
		if !strings.Contains(got, "Message: Authentication accepted") {
			t.Fatalf("login as %s failed:\n%s", c.user, got)
		}
		proxied := !strings.Contains(got, "ActionID: q\r\nMessage: Permission denied\r\n")
		if explained != proxied {
			t.Errorf("%s %s %v: explain says allow=%v, the proxy allow=%v\nexplain:\n%s\nproxy:\n%s", c.user, c.action, c.headers, explained, proxied, out, got)
		}
	}
}
