package dextest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// Password is the password of every built-in static user.
const Password = "password"

// passwordHash is a bcrypt hash (cost 10) of Password, so that Start
// spends no bcrypt on the built-in users.
const passwordHash = "$2a$10$2b2cU8CPhOTaGrs1HRQuAueS7JTT5ZHsHSzYiFPm1leZck7Mc8T4W"

// User is one of Dex's static users. Dex's password login and the
// password grant take the Email (not the Username); ID tokens carry
// Username as "preferred_username" and "name" (profile scope), Groups as
// "groups" (groups scope), Email as "email" (email scope) and an opaque
// "sub" derived from UserID.
type User struct {
	Username string
	Email    string
	Password string
	Groups   []string
	UserID   string
}

// Built-in static users, all with the password "password".
var (
	Admin    = User{Username: "admin", Email: "admin@example.com", Password: Password, Groups: []string{"ami-admins", "ops"}, UserID: "08a8684b-db88-4b73-90a9-3cd1661f5466"}
	Operator = User{Username: "operator", Email: "operator@example.com", Password: Password, Groups: []string{"ami-operators"}, UserID: "3c1e4f0a-6a3b-4a8e-9d0c-2f5b7e9a1c11"}
	Nobody   = User{Username: "nobody", Email: "nobody@example.com", Password: Password, UserID: "9b2d7c55-0e41-4f6a-8c3d-5a1e2b4c6d22"}
)

// Client ids and the web client's secret.
const (
	WebClientID     = "amiproxy"
	WebClientSecret = "amiproxy-secret"
	CLIClientID     = "amiproxy-cli"
)

// Options configure Start. The zero value is fine.
type Options struct {
	// RedirectURIs are the web (confidential) client's redirect URIs.
	// Default: "http://127.0.0.1/callback" only.
	RedirectURIs []string
	// CLIRedirectURIs are added to the public CLI client's redirect URIs,
	// which always include "/device/callback" for the device flow.
	CLIRedirectURIs []string
	// IDTokenExpiry is the lifetime of ID tokens. Default 10 minutes.
	// Dex counts in whole seconds.
	IDTokenExpiry time.Duration
	// Users are static users added to Admin, Operator and Nobody. An
	// empty Password means "password".
	Users []User
	// Port is the port to listen on, on 127.0.0.1. Default: a free one.
	Port int
}

// Dex is a running Dex server on loopback, stopped by the test's cleanup.
type Dex struct {
	// ClientID and ClientSecret are the confidential web client's.
	ClientID     string
	ClientSecret string
	// CLIClientID is the public client used for the device flow.
	CLIClientID string
	// RedirectURIs are the web client's redirect URIs.
	RedirectURIs []string
	// Users are every static user Dex knows.
	Users []User

	issuer string
	addr   string
	logs   *lockedBuffer
}

// Issuer returns the issuer URL, "http://127.0.0.1:<port>/dex".
func (d *Dex) Issuer() string { return d.issuer }

// Addr returns Dex's listen address, "127.0.0.1:<port>".
func (d *Dex) Addr() string { return d.addr }

// Logs returns what Dex has written to stdout and stderr so far.
func (d *Dex) Logs() string { return d.logs.String() }

// Start runs Dex with memory storage, the password database, the static
// clients and users described on Dex, User and Options, and waits until
// its discovery document and signing keys are served. It finds the
// binary at $DEX_BIN or <module root>/.tools/bin/dex, building it from
// tools/dex when missing or built from another tools/dex/go.sum (under a
// file lock, so parallel test binaries build it once; a cold build takes
// minutes). Dex is killed by t.Cleanup; its output is logged when the
// test failed.
func Start(t testing.TB, opts Options) *Dex {
	t.Helper()
	bin, err := Binary()
	if err != nil {
		t.Fatalf("dextest: %v", err)
	}
	users := []User{Admin, Operator, Nobody}
	for _, u := range opts.Users {
		if u.Password == "" {
			u.Password = Password
		}
		users = append(users, u)
	}
	d := &Dex{
		ClientID:     WebClientID,
		ClientSecret: WebClientSecret,
		CLIClientID:  CLIClientID,
		RedirectURIs: opts.RedirectURIs,
		Users:        users,
	}
	if len(d.RedirectURIs) == 0 {
		d.RedirectURIs = []string{"http://127.0.0.1/callback"}
	}
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		port := opts.Port
		if port == 0 {
			if port, err = freePort(); err != nil {
				t.Fatalf("dextest: %v", err)
			}
		}
		d.addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		d.issuer = "http://" + d.addr + "/dex"
		if lastErr = d.run(t, bin, opts); lastErr == nil {
			return d
		}
		if opts.Port != 0 {
			break
		}
	}
	t.Fatalf("dextest: %v", lastErr)
	return nil
}

// run writes the configuration, starts Dex and waits for it. On failure
// the process is already stopped.
func (d *Dex) run(t testing.TB, bin string, opts Options) error {
	cfgPath := filepath.Join(t.TempDir(), "dex.json")
	cfg, err := d.config(opts)
	if err != nil {
		return err
	}
	if err := os.WriteFile(cfgPath, cfg, 0o600); err != nil {
		return fmt.Errorf("write config: %w", err)
	}
	d.logs = &lockedBuffer{}
	cmd := exec.Command(bin, "serve", cfgPath)
	cmd.Stdout = d.logs
	cmd.Stderr = d.logs
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", bin, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	stop := func() {
		_ = cmd.Process.Kill()
		<-exited
	}
	if err := d.waitReady(exited); err != nil {
		stop()
		return fmt.Errorf("%w; dex output:\n%s", err, d.logs.String())
	}
	t.Cleanup(func() {
		stop()
		if t.Failed() {
			t.Logf("dex output:\n%s", d.logs.String())
		}
	})
	return nil
}

// waitReady polls discovery and the key set until both answer, Dex exits
// or 60 s pass.
func (d *Dex) waitReady(exited <-chan error) error {
	c := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(60 * time.Second)
	for {
		select {
		case err := <-exited:
			return fmt.Errorf("dex exited before it was ready: %v", err)
		default:
		}
		if d.ready(c) {
			return nil
		}
		if time.Now().After(deadline) {
			return errors.New("dex not ready after 60s")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (d *Dex) ready(c *http.Client) bool {
	var disc struct {
		Issuer  string `json:"issuer"`
		JWKSURI string `json:"jwks_uri"`
	}
	if getJSON(c, d.issuer+"/.well-known/openid-configuration", &disc) != nil || disc.Issuer != d.issuer {
		return false
	}
	var keys struct {
		Keys []json.RawMessage `json:"keys"`
	}
	return getJSON(c, disc.JWKSURI, &keys) == nil && len(keys.Keys) > 0
}

func getJSON(c *http.Client, u string, v any) error {
	resp, err := c.Get(u)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", u, resp.Status)
	}
	return json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(v)
}

// config renders Dex's configuration as JSON (which Dex reads as YAML).
func (d *Dex) config(opts Options) ([]byte, error) {
	expiry := opts.IDTokenExpiry
	if expiry <= 0 {
		expiry = 10 * time.Minute
	}
	secs := max(int64(expiry/time.Second), 1)
	type password struct {
		Email             string   `json:"email"`
		Hash              string   `json:"hash"`
		Username          string   `json:"username"`
		PreferredUsername string   `json:"preferredUsername"`
		UserID            string   `json:"userID"`
		Groups            []string `json:"groups,omitempty"`
	}
	var pw []password
	for i, u := range d.Users {
		hash := passwordHash
		if u.Password != Password {
			h, err := bcrypt.GenerateFromPassword([]byte(u.Password), bcrypt.MinCost+6)
			if err != nil {
				return nil, fmt.Errorf("hash password of users[%d]: %w", i, err)
			}
			hash = string(h)
		}
		if u.Email == "" || u.Username == "" || u.UserID == "" {
			return nil, fmt.Errorf("users[%d]: Email, Username and UserID are required", i)
		}
		pw = append(pw, password{u.Email, hash, u.Username, u.Username, u.UserID, u.Groups})
	}
	cfg := map[string]any{
		"issuer":  d.issuer,
		"storage": map[string]any{"type": "memory"},
		"web":     map[string]any{"http": d.addr},
		"expiry":  map[string]any{"idTokens": strconv.FormatInt(secs, 10) + "s"},
		"oauth2": map[string]any{
			"skipApprovalScreen": true,
			"passwordConnector":  "local",
			"grantTypes": []string{"authorization_code", "refresh_token", "password",
				"urn:ietf:params:oauth:grant-type:device_code"},
		},
		"staticClients": []map[string]any{
			{"id": d.ClientID, "secret": d.ClientSecret, "name": "AMI proxy", "redirectURIs": d.RedirectURIs},
			{"id": d.CLIClientID, "name": "AMI proxy CLI", "public": true,
				"redirectURIs": append([]string{"/device/callback"}, opts.CLIRedirectURIs...)},
		},
		"enablePasswordDB": true,
		"staticPasswords":  pw,
	}
	return json.MarshalIndent(cfg, "", "  ")
}

// Tokens is a token endpoint's answer.
type Tokens struct {
	IDToken      string `json:"id_token"`
	AccessToken  string `json:"access_token"`
	RefreshToken string `json:"refresh_token"`
	TokenType    string `json:"token_type"`
	ExpiresIn    int    `json:"expires_in"`
}

// DefaultScopes are the scopes PasswordToken asks for when given none.
var DefaultScopes = []string{"openid", "profile", "email", "groups"}

// PasswordToken runs the resource-owner password grant with the web
// client and returns the ID token, failing the test on any error.
// username may be a static user's Username or its Email. Without scopes
// it asks for DefaultScopes; given scopes are sent as they are (include
// "openid").
func (d *Dex) PasswordToken(t testing.TB, username, password string, scopes ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	tok, err := d.PasswordGrant(ctx, d.ClientID, username, password, scopes...)
	if err != nil {
		t.Fatalf("dextest: password grant for %q: %v", username, err)
	}
	if tok.IDToken == "" {
		t.Fatalf("dextest: password grant for %q returned no id_token", username)
	}
	return tok.IDToken
}

// PasswordGrant runs the password grant for clientID (the web client
// authenticates with its secret; any other client id is sent as a public
// client) and returns Dex's answer or an error naming Dex's refusal.
func (d *Dex) PasswordGrant(ctx context.Context, clientID, username, password string, scopes ...string) (Tokens, error) {
	if len(scopes) == 0 {
		scopes = DefaultScopes
	}
	form := url.Values{
		"grant_type": {"password"},
		"username":   {d.email(username)},
		"password":   {password},
		"scope":      {strings.Join(scopes, " ")},
	}
	if clientID != d.ClientID {
		form.Set("client_id", clientID)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, d.issuer+"/token", strings.NewReader(form.Encode()))
	if err != nil {
		return Tokens{}, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if clientID == d.ClientID {
		req.SetBasicAuth(url.QueryEscape(d.ClientID), url.QueryEscape(d.ClientSecret))
	}
	resp, err := (&http.Client{Timeout: 20 * time.Second}).Do(req)
	if err != nil {
		return Tokens{}, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return Tokens{}, err
	}
	if resp.StatusCode != http.StatusOK {
		return Tokens{}, fmt.Errorf("token endpoint answered %s: %.300s", resp.Status, body)
	}
	var tok Tokens
	if err := json.Unmarshal(body, &tok); err != nil {
		return Tokens{}, fmt.Errorf("token response: %w", err)
	}
	return tok, nil
}

// email maps a static user's Username to its Email; anything else is
// returned unchanged.
func (d *Dex) email(username string) string {
	for _, u := range d.Users {
		if u.Username == username {
			return u.Email
		}
	}
	return username
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// lockedBuffer collects a process's output for concurrent reads.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.b.Len() > 4<<20 {
		return len(p), nil // keep the start; Dex is chatty
	}
	return b.b.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// Binary returns the path of a Dex binary built from tools/dex: $DEX_BIN
// if set, else <module root>/.tools/bin/dex, built first if it is missing
// or was built from a different tools/dex/go.sum (recorded in
// .tools/bin/dex.gosum). Builds are serialised by a lock on
// .tools/dex.lock across processes.
func Binary() (string, error) {
	if p := os.Getenv("DEX_BIN"); p != "" {
		return p, nil
	}
	root, err := moduleRoot()
	if err != nil {
		return "", err
	}
	bin := filepath.Join(root, ".tools", "bin", "dex")
	stamp := bin + ".gosum"
	sum, err := os.ReadFile(filepath.Join(root, "tools", "dex", "go.sum"))
	if err != nil {
		return "", fmt.Errorf("read tools/dex/go.sum: %w", err)
	}
	h := sha256.Sum256(sum)
	want := hex.EncodeToString(h[:])
	if upToDate(bin, stamp, want) {
		return bin, nil
	}
	if err := os.MkdirAll(filepath.Dir(bin), 0o755); err != nil {
		return "", err
	}
	lock, err := os.OpenFile(filepath.Join(root, ".tools", "dex.lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return "", fmt.Errorf("open build lock: %w", err)
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return "", fmt.Errorf("take build lock: %w", err)
	}
	defer syscall.Flock(int(lock.Fd()), syscall.LOCK_UN)
	if upToDate(bin, stamp, want) { // built while we waited
		return bin, nil
	}
	tmp := bin + ".tmp"
	cmd := exec.Command("go", "-C", filepath.Join(root, "tools", "dex"), "build", "-o", tmp, "github.com/dexidp/dex/cmd/dex")
	cmd.Env = append(os.Environ(), "GOWORK=off")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build dex from tools/dex: %w\n%s", err, out)
	}
	if err := os.Rename(tmp, bin); err != nil {
		return "", err
	}
	if err := os.WriteFile(stamp, []byte(want+"\n"), 0o644); err != nil {
		return "", err
	}
	return bin, nil
}

func upToDate(bin, stamp, want string) bool {
	if fi, err := os.Stat(bin); err != nil || fi.Mode()&0o111 == 0 {
		return false
	}
	got, err := os.ReadFile(stamp)
	return err == nil && strings.TrimSpace(string(got)) == want
}

// moduleRoot finds the directory of the amiproxy go.mod above the working
// directory (tests run in their package's directory).
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && bytes.Contains(b, []byte("module github.com/amiproxy/amiproxy\n")) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("dextest: no amiproxy go.mod above the working directory")
		}
		dir = parent
	}
}
