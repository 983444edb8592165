package main

import (
	"bufio"
	"context"
	"crypto/md5"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/amiproxy/amiproxy/internal/dextest"
)

// signinLab is a proxy with oidc and minted sections, serving a simulated
// PBX, signed in through a real Dex.
type signinLab struct {
	t        *testing.T
	dex      *dextest.Dex
	base     string // https://127.0.0.1:<port>
	cacert   string // PEM file of the proxy's certificate
	roots    *x509.CertPool
	yaml     string
	stateDir string
	logs     *syncBuf
}

// syncBuf is an io.Writer safe for concurrent use, for captured logs.
type syncBuf struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func newSigninLab(t *testing.T) *signinLab {
	t.Helper()
	sim := newLabSim(t)
	port := freeLoopbackPort(t)
	l := &signinLab{t: t, base: fmt.Sprintf("https://127.0.0.1:%d", port), stateDir: filepath.Join(t.TempDir(), "state"), logs: &syncBuf{}}
	l.dex = dextest.Start(t, dextest.Options{RedirectURIs: []string{l.base + "/login/callback"}})

	tcfg, stop, err := newTLS(context.Background(), TLS{Mode: TLSSelfSigned}, nil)
	if err != nil {
		t.Fatal(err)
	}
	stop()
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	writeCertPair(t, certFile, keyFile, &tcfg.Certificates[0], &tcfg.Certificates[0])
	l.cacert = certFile
	l.roots = x509.NewCertPool()
	l.roots.AddCert(tcfg.Certificates[0].Leaf)
	secretFile := filepath.Join(dir, "client-secret")
	if err := os.WriteFile(secretFile, []byte(l.dex.ClientSecret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	l.yaml = fmt.Sprintf(`
listen:
  ami: 127.0.0.1:0
  https: 127.0.0.1:%d
tls: {mode: files, cert_file: %s, key_file: %s}
proxy: {login_fail_delay: 1ms}
pbxs:
- {name: east, address: %s, username: amiproxy, auth_md5: true, secret: {value: %s}}
policy:
  roles:
  - {name: ops-role, read: all, write: all, pbxs: [east]}
  - {name: operator-role, read: call, write: call, pbxs: [east]}
  groups:
    ops: [ops-role]
    ami-operators: [operator-role]
oidc:
  issuer: %s
  client_id: %s
  client_secret: {file: %s}
  cli_client_id: %s
  public_url: %s
minted:
  state_dir: %s
  default_ttl: 2h
  max_ttl: 12h
  admin_groups: [ami-admins]
`, port, certFile, keyFile, sim.Addr(), svcSecret, l.dex.Issuer(), l.dex.ClientID, secretFile, l.dex.CLIClientID, l.base, l.stateDir)
	return l
}

// start runs the proxy on the lab's config and returns its addresses and
// a function that stops it and waits.
func (l *signinLab) start() (map[string]net.Addr, func()) {
	t := l.t
	t.Helper()
	f, err := decodeConfig(strings.NewReader(l.yaml))
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
	logger, audit, closeLogs, err := newLoggers(Log{Level: "debug"}, l.logs)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan map[string]net.Addr, 1)
	done := make(chan error, 1)
	go func() {
		done <- serveConfig(ctx, f, rc, serveOptions{logger: logger, audit: audit, ready: func(a map[string]net.Addr) { ready <- a }})
	}()
	var once sync.Once
	stopFn := func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("serve: %v", err)
			}
			closeLogs()
		})
	}
	t.Cleanup(stopFn)
	select {
	case a := <-ready:
		return a, stopFn
	case err := <-done:
		done <- err
		t.Fatalf("serve: %v", err)
	case <-time.After(20 * time.Second):
		t.Fatal("serve did not start within 20s")
	}
	return nil, nil
}

func (l *signinLab) transport() *http.Transport {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = &tls.Config{RootCAs: l.roots}
	return tr
}

// browserSignIn signs in at /login as user with a cookie jar and returns
// the client and the page.
func (l *signinLab) browserSignIn(user dextest.User) (*http.Client, string) {
	t := l.t
	t.Helper()
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Transport: l.transport(), Jar: jar, Timeout: 30 * time.Second}
	resp, err := c.Get(l.base + "/login")
	if err != nil {
		t.Fatal(err)
	}
	out, err := dextest.SubmitLogin(context.Background(), c, resp, user.Email, user.Password)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(out.Body)
	out.Body.Close()
	if out.Request.URL.Path != "/login/callback" || !strings.Contains(string(b), `id="signed-in"`) {
		t.Fatalf("sign-in ended at %s: %.400s", out.Request.URL.Redacted(), b)
	}
	resp, err = c.Get(l.base + "/me")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ = io.ReadAll(resp.Body)
	return c, string(b)
}

// signinAMI is a raw AMI client connection.
type signinAMI struct {
	t    *testing.T
	conn net.Conn
	r    *bufio.Reader
}

func dialSigninAMI(t *testing.T, addr net.Addr) *signinAMI {
	t.Helper()
	conn, err := net.Dial("tcp", addr.String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	_ = conn.SetDeadline(time.Now().Add(30 * time.Second))
	a := &signinAMI{t: t, conn: conn, r: bufio.NewReader(conn)}
	if line, err := a.r.ReadString('\n'); err != nil || !strings.HasPrefix(line, "Asterisk Call Manager/") {
		t.Fatalf("banner: %q, %v", line, err)
	}
	return a
}

// do sends one action and reads messages until the one with its ActionID.
func (a *signinAMI) do(action string) (map[string]string, error) {
	id := fmt.Sprintf("t%d", time.Now().UnixNano())
	if _, err := io.WriteString(a.conn, action+"ActionID: "+id+"\r\n\r\n"); err != nil {
		return nil, err
	}
	for {
		m, err := a.read()
		if err != nil {
			return nil, err
		}
		if m["ActionID"] == id {
			return m, nil
		}
	}
}

func (a *signinAMI) read() (map[string]string, error) {
	m := map[string]string{}
	for {
		line, err := a.r.ReadString('\n')
		if err != nil {
			return m, err
		}
		line = strings.TrimRight(line, "\r\n")
		if line == "" {
			if len(m) > 0 {
				return m, nil
			}
			continue
		}
		if k, v, ok := strings.Cut(line, ": "); ok {
			if _, dup := m[k]; !dup {
				m[k] = v
			}
		}
	}
}

func (a *signinAMI) loginPlain(user, secret string) map[string]string {
	a.t.Helper()
	m, err := a.do("Action: Login\r\nUsername: " + user + "\r\nSecret: " + secret + "\r\n")
	if err != nil {
		a.t.Fatalf("Login: %v", err)
	}
	return m
}

func (a *signinAMI) loginMD5(user, secret string) map[string]string {
	a.t.Helper()
	ch, err := a.do("Action: Challenge\r\nAuthType: MD5\r\n")
	if err != nil || ch["Response"] != "Success" || ch["Challenge"] == "" {
		a.t.Fatalf("Challenge: %v %v", ch, err)
	}
	sum := md5.Sum([]byte(ch["Challenge"] + secret))
	m, err := a.do("Action: Login\r\nAuthType: MD5\r\nUsername: " + user + "\r\nKey: " + hex.EncodeToString(sum[:]) + "\r\n")
	if err != nil {
		a.t.Fatalf("MD5 Login: %v", err)
	}
	return m
}

var (
	pageSecretRe = regexp.MustCompile(`<code id="new-secret">([^<]+)</code>`)
	pageCSRFRe   = regexp.MustCompile(`name="csrf" value="([^"]+)"`)
)

// TestSignInMintAndRevoke is the scripted path: code + PKCE sign-in
// through the proxy's /login against Dex, the page shows identity, roles
// and PBXs, a minted secret works for plain and MD5 AMI logins, `amiproxy
// revoke` revokes it and ends the live session, and nothing secret is
// logged.
func TestSignInMintAndRevoke(t *testing.T) {
	l := newSigninLab(t)
	addrs, _ := l.start()

	c, page := l.browserSignIn(dextest.Admin)
	for _, want := range []string{`<dd id="user">admin</dd>`, `<dd id="roles">ops-role</dd>`, `<dd id="pbxs">east</dd>`} {
		if !strings.Contains(page, want) {
			t.Errorf("page lacks %q:\n%s", want, page)
		}
	}
	csrf := pageCSRFRe.FindStringSubmatch(page)
	if csrf == nil {
		t.Fatalf("no CSRF token on the page:\n%s", page)
	}
	req, _ := http.NewRequest(http.MethodPost, l.base+"/me/secrets", strings.NewReader(url.Values{"csrf": {csrf[1]}, "ttl": {"1h"}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", l.base)
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	m := pageSecretRe.FindStringSubmatch(string(b))
	if resp.StatusCode != http.StatusOK || m == nil {
		t.Fatalf("mint: %s:\n%s", resp.Status, b)
	}
	secret := m[1]

	if r := dialSigninAMI(t, addrs["ami"]).loginPlain("admin", secret); r["Response"] != "Success" {
		t.Fatalf("plain Login with the minted secret: %v", r)
	}
	live := dialSigninAMI(t, addrs["ami"])
	if r := live.loginMD5("admin", secret); r["Response"] != "Success" {
		t.Fatalf("MD5 Login with the minted secret: %v", r)
	}
	if r, err := live.do("Action: Ping\r\n"); err != nil || r["Response"] != "Success" {
		t.Fatalf("Ping on the minted session: %v %v", r, err)
	}
	if r := dialSigninAMI(t, addrs["ami"]).loginPlain("admin", secret+"x"); r["Response"] != "Error" {
		t.Fatalf("Login with a wrong secret: %v", r)
	}

	// amiproxy revoke, as an administrator with an ID token in a file.
	tokFile := filepath.Join(t.TempDir(), "token")
	adminTok := l.dex.PasswordToken(t, "admin", dextest.Password)
	if err := os.WriteFile(tokFile, []byte(adminTok), 0o600); err != nil {
		t.Fatal(err)
	}
	var out, errOut strings.Builder
	if err := run(context.Background(), []string{"revoke", "--server", l.base, "--cacert", l.cacert, "--user", "admin", "--token-file", tokFile}, nil, &out, &errOut); err != nil {
		t.Fatalf("amiproxy revoke: %v\n%s", err, errOut.String())
	}
	if !strings.Contains(out.String(), "revoked admin: 1 minted secrets") {
		t.Fatalf("amiproxy revoke printed %q", out.String())
	}
	// The live session is ended: it reads a ProxySessionEnd notice, then EOF.
	var ended bool
	for {
		ev, err := live.read()
		if ev["Event"] == "ProxySessionEnd" {
			ended = true
		}
		if err != nil {
			break
		}
	}
	if !ended {
		t.Error("the live session opened with the revoked secret got no ProxySessionEnd notice")
	}
	if r := dialSigninAMI(t, addrs["ami"]).loginPlain("admin", secret); r["Response"] != "Error" {
		t.Fatalf("Login with the revoked secret: %v", r)
	}
	// The web session was ended too.
	resp, err = c.Get(l.base + "/me")
	if err != nil {
		t.Fatal(err)
	}
	b, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(b), `id="signin"`) {
		t.Errorf("the web session survived the revocation:\n%s", b)
	}
	// A non-admin may not revoke.
	opTok := l.dex.PasswordToken(t, "operator", dextest.Password)
	if err := os.WriteFile(tokFile, []byte(opTok), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := run(context.Background(), []string{"revoke", "--server", l.base, "--cacert", l.cacert, "--user", "admin", "--token-file", tokFile}, nil, &out, &errOut); err == nil || !strings.Contains(err.Error(), "not an administrator") {
		t.Fatalf("revoke by a non-admin: %v", err)
	}
	checkNoSecrets(t, l.logs.String(), secret, adminTok, opTok)
}

// checkNoSecrets fails when a secret, a token or anything shaped like one
// is in the logs.
func checkNoSecrets(t *testing.T, logs string, secrets ...string) {
	t.Helper()
	for _, s := range secrets {
		if s != "" && strings.Contains(logs, s) {
			t.Error("a secret or token reached the logs")
		}
	}
	if m := regexp.MustCompile(`eyJ[A-Za-z0-9_-]{10,}|amp_[a-z2-7]{8,}`).FindString(logs); m != "" {
		t.Errorf("the logs hold a token or minted secret (%.8s…)", m)
	}
}

// TestLoginDeviceFlow runs `amiproxy login` against the proxy and Dex:
// the device flow (approved by a scripted user), the secret written to
// --out with mode 0600, usable for an AMI Login, and still usable after a
// proxy restart (the store and its key are kept in minted.state_dir).
func TestLoginDeviceFlow(t *testing.T) {
	l := newSigninLab(t)
	addrs, stop := l.start()

	outFile := filepath.Join(t.TempDir(), "ami-secret")
	stdout, stderr, err := runWithDevice(t, dextest.Operator, "login", "--server", l.base, "--cacert", l.cacert, "--out", outFile, "--ttl", "90m", "--label", "ci")
	if err != nil {
		t.Fatalf("amiproxy login: %v\n%s", err, stderr)
	}
	if stdout != "" {
		t.Errorf("amiproxy login --out also wrote to stdout: %q", stdout)
	}
	fi, err := os.Stat(outFile)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("--out file mode %v, want 0600", fi.Mode().Perm())
	}
	b, _ := os.ReadFile(outFile)
	fields := map[string]string{}
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, ": "); ok {
			fields[k] = v
		}
	}
	if fields["Username"] != "operator" || !strings.HasPrefix(fields["Secret"], "amp_") {
		t.Fatalf("--out file holds %q", fields["Username"])
	}
	if exp, err := time.Parse(time.RFC3339, fields["Expires"]); err != nil || time.Until(exp) > 91*time.Minute || time.Until(exp) < 85*time.Minute {
		t.Errorf("Expires %q, want about 90m from now (%v)", fields["Expires"], err)
	}
	if r := dialSigninAMI(t, addrs["ami"]).loginPlain("operator", fields["Secret"]); r["Response"] != "Success" {
		t.Fatalf("Login with the secret from amiproxy login: %v", r)
	}

	// Restart: the secret survives, encrypted at rest.
	stop()
	checkNoGoroutine(t, "auth.(*Minter).loop")
	raw, err := os.ReadFile(filepath.Join(l.stateDir, "minted.json"))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(raw), fields["Secret"]) || strings.Contains(string(raw), strings.TrimPrefix(fields["Secret"], "amp_")) {
		t.Fatal("the minted secret is stored in clear text")
	}
	addrs, _ = l.start()
	if r := dialSigninAMI(t, addrs["ami"]).loginMD5("operator", fields["Secret"]); r["Response"] != "Success" {
		t.Fatalf("MD5 Login with the secret after a restart: %v", r)
	}

	// amiproxy revoke with the device flow, as an administrator: the
	// revocation holds, and is kept across restarts too.
	out, stderr, err := runWithDevice(t, dextest.Admin, "revoke", "--server", l.base, "--cacert", l.cacert, "--user", "operator")
	if err != nil || !strings.Contains(out, "revoked operator: 1 minted secrets") {
		t.Fatalf("amiproxy revoke: %v %q\n%s", err, out, stderr)
	}
	if r := dialSigninAMI(t, addrs["ami"]).loginPlain("operator", fields["Secret"]); r["Response"] != "Error" {
		t.Fatalf("Login with the revoked secret: %v", r)
	}
	checkNoSecrets(t, l.logs.String(), fields["Secret"])
}

// runWithDevice runs an amiproxy subcommand that signs in with the device
// flow, approving it at Dex as user, and returns its stdout and stderr.
func runWithDevice(t *testing.T, user dextest.User, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	pr, pw := io.Pipe()
	var out strings.Builder
	done := make(chan error, 1)
	rctx, rcancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer rcancel()
	go func() {
		err := run(rctx, args, nil, &out, pw)
		pw.CloseWithError(io.EOF)
		done <- err
	}()
	codeRe := regexp.MustCompile(`open (\S+) and enter the code (\S+)`)
	sc := bufio.NewScanner(pr)
	var approved bool
	var errText strings.Builder
	for sc.Scan() {
		errText.WriteString(sc.Text() + "\n")
		if m := codeRe.FindStringSubmatch(sc.Text()); m != nil && !approved {
			approved = true
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			aerr := dextest.ApproveDevice(ctx, http.DefaultClient, m[1], m[2], user.Email, user.Password)
			cancel()
			if aerr != nil {
				t.Errorf("approve the device: %v", aerr)
				rcancel() // stop the polling instead of waiting for the code to expire
			}
		}
	}
	err = <-done
	if !approved && err == nil {
		t.Errorf("amiproxy %s printed no verification URL and code:\n%s", args[0], errText.String())
	}
	return out.String(), errText.String(), err
}

// TestLoginArgs: login and revoke refuse bad arguments before any request.
func TestLoginArgs(t *testing.T) {
	bad := filepath.Join(t.TempDir(), "bad.pem")
	if err := os.WriteFile(bad, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"login"}, "--server"},
		{[]string{"login", "--server", "http://ami.example.com:8089"}, "only allowed to a loopback"},
		{[]string{"login", "--server", "ftp://x"}, "want https://"},
		{[]string{"login", "--server", "https://127.0.0.1:1", "--cacert", bad}, "no PEM certificate"},
		{[]string{"login", "--server", "https://127.0.0.1:1", "--ttl", "-1h"}, "positive"},
		{[]string{"login", "--server", "https://127.0.0.1:1", "extra"}, "unexpected argument"},
		{[]string{"revoke", "--server", "https://127.0.0.1:1"}, "--user is required"},
		// Nothing listens on port 1: the request fails, the error says where.
		{[]string{"login", "--server", "https://127.0.0.1:1"}, "login config"},
	} {
		var out, errOut strings.Builder
		err := run(context.Background(), tc.args, nil, &out, &errOut)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("amiproxy %v: error %v, want %q", tc.args, err, tc.want)
		}
	}
}

// TestSignInProviderLate: a proxy started while the identity provider is
// down serves AMI, answers 503 on the sign-in routes, and offers sign-in
// as soon as the provider answers, without a restart.
func TestSignInProviderLate(t *testing.T) {
	sim := newLabSim(t)
	dexPort := freeLoopbackPort(t)
	httpPort := freeLoopbackPort(t)
	base := fmt.Sprintf("http://127.0.0.1:%d", httpPort)
	secretFile := filepath.Join(t.TempDir(), "client-secret")
	if err := os.WriteFile(secretFile, []byte(dextest.WebClientSecret), 0o600); err != nil {
		t.Fatal(err)
	}
	l := &signinLab{t: t, base: base, logs: &syncBuf{}, stateDir: filepath.Join(t.TempDir(), "state")}
	l.yaml = fmt.Sprintf(`
listen: {ami: 127.0.0.1:0, http: 127.0.0.1:%d}
pbxs:
- {name: east, address: %s, username: amiproxy, auth_md5: true, secret: {value: %s}}
policy:
  roles: [{name: ops-role, read: all, write: all, pbxs: [east]}]
  groups: {ops: [ops-role]}
oidc: {issuer: "http://127.0.0.1:%d/dex", client_id: %s, client_secret: {file: %s}, cli_client_id: %s, public_url: "%s"}
minted: {state_dir: %s}
`, httpPort, sim.Addr(), svcSecret, dexPort, dextest.WebClientID, secretFile, dextest.CLIClientID, base, l.stateDir)
	l.start()

	get := func() int {
		resp, err := http.Get(base + "/api/v1/login-config")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := get(); code != http.StatusServiceUnavailable {
		t.Fatalf("login-config with the provider down: %d, want 503", code)
	}
	dextest.Start(t, dextest.Options{Port: dexPort, RedirectURIs: []string{base + "/login/callback"}})
	deadline := time.Now().Add(30 * time.Second)
	for get() != http.StatusOK {
		if time.Now().After(deadline) {
			t.Fatal("sign-in did not become available within 30s of the provider starting")
		}
		time.Sleep(200 * time.Millisecond)
	}
	// The browser flow works now, over plain HTTP on loopback (cookies
	// without Secure and without the __Host- prefix).
	l.roots = x509.NewCertPool()
	_, page := l.browserSignIn(dextest.Admin)
	if !strings.Contains(page, `<dd id="user">admin</dd>`) {
		t.Fatalf("page after a late provider:\n%s", page)
	}
}
