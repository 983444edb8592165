package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/amiproxy/amiproxy/auth"
	"github.com/amiproxy/amiproxy/auth/redisstore"
	"github.com/amiproxy/amiproxy/internal/dextest"
	"github.com/amiproxy/amiproxy/internal/redistest"
)

// fleetReplica is one `amiproxy serve` child process.
type fleetReplica struct {
	name             string
	ami, http, admin string // 127.0.0.1:port
	logs             *syncBuf
	cmd              *exec.Cmd
	exited           chan struct{}
}

// startFleetReplica writes a config and starts `amiproxy serve` on it,
// waiting until /readyz answers 200. It retries with new ports if the
// process exits at start (a port taken meanwhile).
func startFleetReplica(t *testing.T, bin, name, configFmt string) *fleetReplica {
	t.Helper()
	for attempt := 0; ; attempt++ {
		r := &fleetReplica{name: name, logs: &syncBuf{}, exited: make(chan struct{})}
		r.ami = fmt.Sprintf("127.0.0.1:%d", freeLoopbackPort(t))
		r.http = fmt.Sprintf("127.0.0.1:%d", freeLoopbackPort(t))
		r.admin = fmt.Sprintf("127.0.0.1:%d", freeLoopbackPort(t))
		path := filepath.Join(t.TempDir(), name+".yaml")
		if err := os.WriteFile(path, []byte(fmt.Sprintf(configFmt, r.ami, r.http, r.admin)), 0o600); err != nil {
			t.Fatal(err)
		}
		r.cmd = exec.Command(bin, "serve", "-config", path)
		r.cmd.Stdout, r.cmd.Stderr = r.logs, r.logs
		if err := r.cmd.Start(); err != nil {
			t.Fatal(err)
		}
		go func() { _ = r.cmd.Wait(); close(r.exited) }()
		t.Cleanup(r.stop)
		if r.waitReady(t) {
			return r
		}
		if attempt == 2 {
			t.Fatalf("replica %s exited at start:\n%s", name, r.logs.String())
		}
		t.Logf("replica %s exited at start, retrying:\n%s", name, r.logs.String())
	}
}

// waitReady polls /readyz until 200 (true) or the process exits (false).
func (r *fleetReplica) waitReady(t *testing.T) bool {
	t.Helper()
	hc := &http.Client{Timeout: 5 * time.Second}
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := hc.Get("http://" + r.admin + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return true
			}
		}
		select {
		case <-r.exited:
			return false
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("replica %s not ready within 60s:\n%s", r.name, r.logs.String())
		}
	}
}

// addrOf resolves a host:port for dialSigninAMI.
func addrOf(t *testing.T, hostport string) net.Addr {
	t.Helper()
	a, err := net.ResolveTCPAddr("tcp", hostport)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// stop sends SIGTERM, waits up to 15 s, then kills.
func (r *fleetReplica) stop() {
	select {
	case <-r.exited:
		return
	default:
	}
	_ = r.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-r.exited:
	case <-time.After(15 * time.Second):
		_ = r.cmd.Process.Kill()
		<-r.exited
	}
}

// apiJSON calls the proxy's JSON API with a bearer token.
func apiJSON(t *testing.T, method, url, token string, body any, out any) int {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := (&http.Client{Timeout: 15 * time.Second}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if out != nil && resp.StatusCode < 300 {
		if err := json.Unmarshal(raw, out); err != nil {
			t.Fatalf("%s %s: %v: %s", method, url, err, raw)
		}
	}
	return resp.StatusCode
}

// TestFleet runs two proxy processes sharing one Redis (over TLS) in
// front of one PBX: a secret minted on replica A logs in on replica B over native AMI,
// and `amiproxy revoke` against A ends B's live session (final notice,
// then EOF).
func TestFleet(t *testing.T) {
	if testing.Short() {
		t.Skip("builds amiproxy and runs two processes, Dex and Redis")
	}
	bin := buildAmiproxy(t)
	sim := newLabSim(t)
	dex := dextest.Start(t, dextest.Options{})
	const redisPassword = "fleet-redis-password"
	cert, certKey, _ := redistest.SelfSignedCert(t)
	rds := redistest.Start(t, redistest.Options{Password: redisPassword, TLSCertFile: cert, TLSKeyFile: certKey})
	dir := t.TempDir()
	keyFile, pwFile := filepath.Join(dir, "minted.key"), filepath.Join(dir, "redis.pw")
	if err := auth.GenerateKeyFile(keyFile); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(pwFile, []byte(redisPassword+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// %%s: the replica's ami, http and admin addresses.
	config := fmt.Sprintf(`
listen: {ami: "%%s", http: "%%s", admin: "%%s"}
proxy: {login_fail_delay: 1ms}
log: {level: debug}
pbxs:
- {name: east, address: %s, username: amiproxy, auth_md5: true, secret: {value: %s}}
policy:
  roles: [{name: ops-role, read: all, write: all, pbxs: [east]}]
  groups: {ops: [ops-role]}
oidc: {issuer: "%s", client_id: %s, cli_client_id: %s}
minted:
  key: {file: %s}
  admin_groups: [ami-admins]
  store: {redis: {address: "%s", password: {file: %s}, key_prefix: "fleet:", tls: true, ca_file: %s}}
`, sim.Addr(), svcSecret, dex.Issuer(), dex.ClientID, dex.CLIClientID, keyFile, rds.Addr, pwFile, cert)
	a := startFleetReplica(t, bin, "A", config)
	b := startFleetReplica(t, bin, "B", config)

	token := dex.PasswordToken(t, "admin", dextest.Password)
	var minted struct {
		ID     string `json:"id"`
		Secret string `json:"secret"`
	}
	if code := apiJSON(t, http.MethodPost, "http://"+a.http+"/api/v1/secrets", token, map[string]string{"ttl": "1h", "label": "fleet"}, &minted); code != http.StatusCreated || minted.Secret == "" {
		t.Fatalf("mint on A: status %d, %+v\nA's log:\n%s", code, minted, a.logs.String())
	}
	// B learns of it through Redis (Pub/Sub at once, or its 1 s poll):
	// wait on B's own list, which costs no failed login.
	deadline := time.Now().Add(15 * time.Second)
	for {
		var list struct {
			Secrets []struct {
				ID string `json:"id"`
			} `json:"secrets"`
		}
		apiJSON(t, http.MethodGet, "http://"+b.http+"/api/v1/secrets", token, nil, &list)
		if len(list.Secrets) == 1 && list.Secrets[0].ID == minted.ID {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("B does not list the secret minted on A after 15s: %+v\nB's log:\n%s", list, b.logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	live := dialSigninAMI(t, addrOf(t, b.ami))
	if r := live.loginPlain("admin", minted.Secret); r["Response"] != "Success" {
		t.Fatalf("Login on B with the secret minted on A: %v\nB's log:\n%s", r, b.logs.String())
	}
	if r, err := live.do("Action: Ping\r\n"); err != nil || r["Response"] != "Success" {
		t.Fatalf("Ping on B: %v %v", r, err)
	}
	md5 := dialSigninAMI(t, addrOf(t, a.ami))
	if r := md5.loginMD5("admin", minted.Secret); r["Response"] != "Success" {
		t.Fatalf("MD5 Login on A: %v", r)
	}

	// An administrator revokes the user on A.
	tokFile := filepath.Join(dir, "token")
	if err := os.WriteFile(tokFile, []byte(token), 0o600); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, "revoke", "--server", "http://"+a.http, "--user", "admin", "--token-file", tokFile).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "revoked admin: 1 minted secrets") {
		t.Fatalf("amiproxy revoke on A: %v\n%s", err, out)
	}
	// B's live session reads the final notice, then EOF.
	var notice map[string]string
	for {
		m, err := live.read()
		if m["Event"] == "ProxySessionEnd" {
			notice = m
		}
		if err != nil {
			break
		}
	}
	took := time.Since(start)
	if notice == nil || notice["Reason"] != "revoked" {
		t.Fatalf("B's session ended without a revoked ProxySessionEnd notice (got %v)\nB's log:\n%s", notice, b.logs.String())
	}
	t.Logf("B's live session got the notice and EOF %v after `amiproxy revoke` on A started", took.Round(time.Millisecond))
	if took > 10*time.Second { // the Minter's poll alone bounds it by ~1 s
		t.Errorf("B's session ended %v after the revocation on A, want about a second", took)
	}
	if r := dialSigninAMI(t, addrOf(t, b.ami)).loginPlain("admin", minted.Secret); r["Response"] != "Error" {
		t.Fatalf("Login on B with the revoked secret: %v", r)
	}
	for _, r := range []*fleetReplica{a, b} {
		checkNoSecrets(t, r.logs.String(), minted.Secret, token, redisPassword)
	}
}

func TestMintedStoreValidate(t *testing.T) {
	const oidc = "oidc: {issuer: \"https://idp.example.com\", client_id: a}\n"
	tests := []struct {
		name  string
		extra string
		want  []string // substrings of the error; none: valid
	}{
		{"valid", `minted: {key: {env: K}, store: {redis: {address: "127.0.0.1:6379", password: {file: /run/pw}, db: 2, key_prefix: "x:"}}}`, nil},
		{"valid tls", `minted: {key: {file: /k}, store: {redis: {address: "redis.example.com:6380", username: amiproxy, password: {env: P}, tls: true, ca_file: /ca.pem}}}`, nil},
		{"no key", `minted: {store: {redis: {address: "127.0.0.1:6379"}}}`, []string{"minted.key: required with minted.store.redis"}},
		{"state_dir too", `minted: {state_dir: /x, key: {env: K}, store: {redis: {address: "127.0.0.1:6379"}}}`, []string{"give one"}},
		{"plain off loopback", `minted: {key: {env: K}, store: {redis: {address: "redis.example.com:6379"}}}`, []string{"tls is required"}},
		{"bad address", `minted: {key: {env: K}, store: {redis: {address: "127.0.0.1"}}}`, []string{"want host:port"}},
		{"inline password", `minted: {key: {env: K}, store: {redis: {address: "127.0.0.1:6379", password: {value: p}}}}`, []string{"password: give it as env or file"}},
		{"username without password", `minted: {key: {env: K}, store: {redis: {address: "127.0.0.1:6379", username: u}}}`, []string{"needs a password"}},
		{"ca without tls, negative db", `minted: {key: {env: K}, store: {redis: {address: "127.0.0.1:6379", ca_file: /c, db: -1}}}`, []string{"ca_file: needs tls", "db: negative"}},
		{"fields without address", `minted: {state_dir: /x, store: {redis: {db: 3}}}`, []string{"address is required"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := decodeConfig(strings.NewReader(identityBase + oidc + tt.extra + "\n"))
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

// TestMintedStoreRedisDown: serve fails at start, naming Redis, when the
// shared store does not answer; the password is not in the error.
func TestMintedStoreRedisDown(t *testing.T) {
	sim := newLabSim(t)
	dex := dextest.Start(t, dextest.Options{})
	dir := t.TempDir()
	keyFile, pwFile := filepath.Join(dir, "minted.key"), filepath.Join(dir, "redis.pw")
	if err := auth.GenerateKeyFile(keyFile); err != nil {
		t.Fatal(err)
	}
	const pw = "unreachable-redis-password"
	if err := os.WriteFile(pwFile, []byte(pw), 0o600); err != nil {
		t.Fatal(err)
	}
	dead := fmt.Sprintf("127.0.0.1:%d", freeLoopbackPort(t))
	f, err := decodeConfig(strings.NewReader(fmt.Sprintf(`
listen: {ami: 127.0.0.1:0}
pbxs:
- {name: east, address: %s, username: amiproxy, auth_md5: true, secret: {value: %s}}
policy:
  roles: [{name: ops-role, read: all, write: all, pbxs: [east]}]
  groups: {ops: [ops-role]}
oidc: {issuer: "%s", client_id: %s}
minted: {key: {file: %s}, store: {redis: {address: "%s", password: {file: %s}}}}
`, sim.Addr(), svcSecret, dex.Issuer(), dex.ClientID, keyFile, dead, pwFile)))
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Validate(); err != nil {
		t.Fatal(err)
	}
	rc, err := f.build(osEnv, os.ReadFile)
	if err != nil {
		t.Fatal(err)
	}
	if rc.identity.redisPassword.Reveal() != pw {
		t.Fatal("the redis password file was not resolved")
	}
	logs := &syncBuf{}
	logger, audit, closeLogs, err := newLoggers(Log{Level: "debug"}, logs)
	if err != nil {
		t.Fatal(err)
	}
	defer closeLogs()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	err = serveConfig(ctx, f, rc, serveOptions{logger: logger, audit: audit})
	if err == nil || !strings.Contains(err.Error(), dead) || strings.Contains(err.Error(), pw) {
		t.Fatalf("serve with Redis down = %v, want an error naming %s without the password", err, dead)
	}
	checkNoSecrets(t, logs.String(), pw)
}

// TestSharedStoreWatch: the watcher syncs the Minter on another replica's
// change (the Minter never polls here), and without the channel
// permission it warns once and stops cleanly on Close.
func TestSharedStoreWatch(t *testing.T) {
	ctx := context.Background()
	key := make([]byte, auth.MintKeySize)
	open := func(addr string, o redisstore.Options) (*sharedStore, *syncBuf) {
		t.Helper()
		o.Addr = addr
		s, err := redisstore.New(ctx, o)
		if err != nil {
			t.Fatal(err)
		}
		logs := &syncBuf{}
		return &sharedStore{Store: s, logger: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))}, logs
	}
	rds := redistest.Start(t, redistest.Options{})
	b, _ := open(rds.Addr, redisstore.Options{})
	minter, err := auth.NewMinter(auth.MinterConfig{Store: b, Key: key, PollInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	changed := make(chan struct{}, 8)
	minter.OnChange(func() { changed <- struct{}{} })
	startWatch(b, minter)
	a, _ := open(rds.Addr, redisstore.Options{})
	defer a.Close()
	// Until the subscription is up a change may go unnoticed: repeat.
	deadline := time.After(20 * time.Second)
	for at := time.Now(); ; {
		at = at.Add(time.Second)
		if _, _, err := a.RevokeUser(ctx, "someone", at); err != nil {
			t.Fatal(err)
		}
		select {
		case <-changed:
		case <-time.After(200 * time.Millisecond):
			continue
		case <-deadline:
			t.Fatal("the watcher never synced the Minter")
		}
		break
	}
	if minter.RevokedAt("someone").IsZero() {
		t.Fatal("OnChange fired but the Minter does not know the revocation")
	}
	_ = minter.Close()
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}

	noPubSub := redistest.Start(t, redistest.Options{Args: []string{
		"--user", "default", "off",
		"--user", "amiproxy", "on", ">pw", "~amiproxy:*", "resetchannels", "+@all", "-@dangerous",
	}})
	c, logs := open(noPubSub.Addr, redisstore.Options{Username: "amiproxy", Password: "pw"})
	m2, err := auth.NewMinter(auth.MinterConfig{Store: c, Key: key, PollInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	startWatch(c, m2)
	for deadline := time.Now().Add(20 * time.Second); !strings.Contains(logs.String(), "change notices unavailable"); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no warning without the channel permission; logs:\n%s", logs.String())
		}
	}
	_ = m2.Close()
	done := make(chan error, 1)
	go func() { done <- c.Close() }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not stop the watcher within 10s")
	}
	if n := strings.Count(logs.String(), "level=WARN"); n != 1 {
		t.Errorf("%d warnings, want 1:\n%s", n, logs.String())
	}
}
