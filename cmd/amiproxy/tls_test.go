package main

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"gopkg.in/yaml.v3"
)

// tlsLogBuffer collects log output written from several goroutines.
type tlsLogBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *tlsLogBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *tlsLogBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func newTLSTestLogger() (*slog.Logger, *tlsLogBuffer) {
	buf := &tlsLogBuffer{}
	return slog.New(slog.NewTextHandler(buf, &slog.HandlerOptions{Level: slog.LevelDebug})), buf
}

// serveTLSForTest accepts TLS connections with cfg on 127.0.0.1, completes
// each handshake and writes "ok". Server-side handshake errors are sent on
// the returned channel (dropped if nobody reads). The listener and its
// goroutine are gone when the test ends.
func serveTLSForTest(t *testing.T, cfg *tls.Config) (addr string, hsErr <-chan error) {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	errs := make(chan error, 16)
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			tc := c.(*tls.Conn)
			_ = tc.SetDeadline(time.Now().Add(5 * time.Second))
			if err := tc.Handshake(); err != nil {
				select {
				case errs <- err:
				default:
				}
			} else {
				_, _ = io.WriteString(tc, "ok")
			}
			_ = tc.Close()
		}
	})
	t.Cleanup(func() {
		_ = ln.Close()
		wg.Wait()
	})
	return ln.Addr().String(), errs
}

// dialTLSForTest connects, reads the server's "ok" and returns the
// connection state.
func dialTLSForTest(addr string, cfg *tls.Config) (tls.ConnectionState, error) {
	d := &net.Dialer{Timeout: 5 * time.Second}
	c, err := tls.DialWithDialer(d, "tcp", addr, cfg)
	if err != nil {
		return tls.ConnectionState{}, err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	b, err := io.ReadAll(c)
	if err != nil {
		return tls.ConnectionState{}, err
	}
	if string(b) != "ok" {
		return tls.ConnectionState{}, fmt.Errorf("read %q, want \"ok\"", b)
	}
	return c.ConnectionState(), nil
}

// checkNoGoroutine fails if a goroutine whose stack mentions fn is still
// running shortly after the test body.
func checkNoGoroutine(t *testing.T, fn string) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for {
		buf := make([]byte, 1<<20)
		stacks := string(buf[:runtime.Stack(buf, true)])
		if !strings.Contains(stacks, fn) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("goroutine %s still running:\n%s", fn, stacks)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestTLSSelfSigned(t *testing.T) {
	cfg, stop, err := newTLS(t.Context(), TLS{Mode: TLSSelfSigned}, nil)
	if err != nil {
		t.Fatalf("newTLS(self_signed) error: %v", err)
	}
	defer stop()
	if cfg.MinVersion != tls.VersionTLS12 {
		t.Errorf("MinVersion = %#x, want TLS 1.2", cfg.MinVersion)
	}
	leaf := cfg.Certificates[0].Leaf
	if k, ok := leaf.PublicKey.(*ecdsa.PublicKey); !ok || k.Curve != elliptic.P256() {
		t.Errorf("key = %T, want ECDSA P-256", leaf.PublicKey)
	}
	if got := leaf.NotAfter.Sub(time.Now()); got < 30*24*time.Hour-time.Minute || got > 30*24*time.Hour+time.Minute {
		t.Errorf("certificate valid for another %v, want 30 days", got)
	}
	var ips []string
	for _, ip := range leaf.IPAddresses {
		ips = append(ips, ip.String())
	}
	if got := fmt.Sprint(leaf.DNSNames, ips); got != "[localhost] [127.0.0.1 ::1]" {
		t.Errorf("SANs = %s, want [localhost] [127.0.0.1 ::1]", got)
	}
	sum := sha256.Sum256(leaf.Raw)
	want := strings.ToUpper(hex.EncodeToString(sum[:]))
	if got := strings.ReplaceAll(certFingerprint(cfg), ":", ""); got != want || len(certFingerprint(cfg)) != 95 {
		t.Errorf("certFingerprint = %s, want colon-separated %s", certFingerprint(cfg), want)
	}

	addr, hsErr := serveTLSForTest(t, cfg)
	_, port, _ := net.SplitHostPort(addr)
	roots := x509.NewCertPool()
	roots.AddCert(leaf)

	for _, tc := range []struct{ name, addr, serverName string }{
		{"by name", net.JoinHostPort("127.0.0.1", port), "localhost"},
		{"by IPv4 address", net.JoinHostPort("127.0.0.1", port), ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st, err := dialTLSForTest(tc.addr, &tls.Config{RootCAs: roots, ServerName: tc.serverName})
			if err != nil {
				t.Fatalf("handshake: %v", err)
			}
			if st.Version < tls.VersionTLS12 {
				t.Errorf("version = %#x", st.Version)
			}
		})
	}

	t.Run("TLS 1.1 refused", func(t *testing.T) {
		_, err := dialTLSForTest(addr, &tls.Config{
			RootCAs: roots, ServerName: "localhost",
			MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS11,
		})
		if err == nil {
			t.Fatal("a TLS 1.1 client completed the handshake")
		}
		select {
		case err := <-hsErr:
			if !strings.Contains(err.Error(), "unsupported versions") {
				t.Errorf("server handshake error = %v, want unsupported versions", err)
			}
		case <-time.After(5 * time.Second):
			t.Error("the server reported no handshake error")
		}
	})

	t.Run("names", func(t *testing.T) {
		cfg, stop, err := newTLS(t.Context(), TLS{Mode: TLSSelfSigned, Names: []string{"pbx.example", "10.1.2.3", "*.ami.example"}}, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer stop()
		leaf := cfg.Certificates[0].Leaf
		if got := fmt.Sprintf("%v %v %s", leaf.DNSNames, leaf.IPAddresses, leaf.Subject.CommonName); got != "[pbx.example *.ami.example] [10.1.2.3] pbx.example" {
			t.Errorf("SANs = %s", got)
		}
	})
}

// writeCertPair writes cert's chain and key as PEM to certPath and
// keyPath, each through a temporary file and a rename, as certbot and
// most deploy tools do. A nil cert part skips that file.
func writeCertPair(t *testing.T, certPath, keyPath string, cert *tls.Certificate, key *tls.Certificate) {
	t.Helper()
	if cert != nil {
		writeFileAtomic(t, certPath, certPEM(cert))
	}
	if key != nil {
		writeFileAtomic(t, keyPath, keyPEM(t, key))
	}
}

func certPEM(c *tls.Certificate) []byte {
	var b []byte
	for _, der := range c.Certificate {
		b = append(b, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})...)
	}
	return b
}

func keyPEM(t *testing.T, c *tls.Certificate) []byte {
	der, err := x509.MarshalPKCS8PrivateKey(c.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
}

func writeFileAtomic(t *testing.T, path string, data []byte) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func TestTLSFilesHotReload(t *testing.T) {
	dir := t.TempDir()
	certPath, keyPath := filepath.Join(dir, "fullchain.pem"), filepath.Join(dir, "privkey.pem")
	var pairs [4]tls.Certificate
	roots := x509.NewCertPool()
	for i := range pairs {
		c, err := selfSignedCert([]string{"localhost"}, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		pairs[i] = c
		roots.AddCert(c.Leaf)
	}
	a, b, c, d := &pairs[0], &pairs[1], &pairs[2], &pairs[3]

	writeCertPair(t, certPath, keyPath, a, a)
	logger, logs := newTLSTestLogger()
	cfg, stop, err := newTLS(t.Context(), TLS{Mode: TLSFiles, CertFile: certPath, KeyFile: keyPath}, logger)
	if err != nil {
		t.Fatalf("newTLS(files) error: %v", err)
	}
	defer stop()
	if cfg.MinVersion != tls.VersionTLS12 {
		t.Errorf("MinVersion = %#x, want TLS 1.2", cfg.MinVersion)
	}
	addr, _ := serveTLSForTest(t, cfg)

	served := func(t *testing.T) *tls.Certificate {
		t.Helper()
		st, err := dialTLSForTest(addr, &tls.Config{RootCAs: roots, ServerName: "localhost"})
		if err != nil {
			t.Fatalf("handshake: %v", err)
		}
		for i := range pairs {
			if st.PeerCertificates[0].Equal(pairs[i].Leaf) {
				return &pairs[i]
			}
		}
		t.Fatal("served an unknown certificate")
		return nil
	}
	name := func(p *tls.Certificate) string { return fmt.Sprintf("pair %c", 'A'+index(pairs[:], p)) }
	expect := func(t *testing.T, want *tls.Certificate) {
		t.Helper()
		if got := served(t); got != want {
			t.Fatalf("served %s, want %s", name(got), name(want))
		}
	}

	expect(t, a)
	if fp := certFingerprint(cfg); fp == "" {
		t.Error("certFingerprint(files) is empty")
	}

	// Renamed over the old files: a new inode.
	writeCertPair(t, certPath, keyPath, b, b)
	expect(t, b)

	// Rewritten in place, the certificate before its key: the mismatched
	// pair is refused once and B stays in service until the key follows.
	// Real rotations are seconds apart; Chtimes gives the in-place writes
	// distinct modification times on file systems with coarse clocks.
	base := time.Now().Add(time.Minute)
	rewrite := func(path string, data []byte, at time.Time) {
		t.Helper()
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(path, at, at); err != nil {
			t.Fatal(err)
		}
	}
	rewrite(certPath, certPEM(c), base)
	expect(t, b)
	expect(t, b)
	if n := strings.Count(logs.String(), "reloading the certificate failed"); n != 1 {
		t.Errorf("the mismatched pair was logged %d times, want once:\n%s", n, logs)
	}
	rewrite(keyPath, keyPEM(t, c), base.Add(time.Second))
	expect(t, c)

	// Files gone for a moment: keep serving C.
	if err := os.Remove(certPath); err != nil {
		t.Fatal(err)
	}
	expect(t, c)
	expect(t, c)
	writeCertPair(t, certPath, keyPath, d, d)
	expect(t, d)
	if n := strings.Count(logs.String(), "files unreadable"); n != 1 {
		t.Errorf("the missing file was logged %d times, want once:\n%s", n, logs)
	}
	if !strings.Contains(logs.String(), "certificate reloaded") {
		t.Errorf("no reload logged:\n%s", logs)
	}
}

func index(ps []tls.Certificate, p *tls.Certificate) int {
	for i := range ps {
		if &ps[i] == p {
			return i
		}
	}
	return -1
}

func TestTLSNewErrors(t *testing.T) {
	dir := t.TempDir()
	junk := filepath.Join(dir, "junk.pem")
	if err := os.WriteFile(junk, []byte("not pem"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := selfSignedCert([]string{"localhost"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	other, err := selfSignedCert([]string{"localhost"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	certPath, keyPath := filepath.Join(dir, "c.pem"), filepath.Join(dir, "k.pem")
	writeCertPair(t, certPath, keyPath, &c, &other)

	for _, tc := range []struct {
		name string
		t    TLS
		want string
	}{
		{"files missing", TLS{Mode: TLSFiles, CertFile: filepath.Join(dir, "nope.pem"), KeyFile: junk}, "no such file"},
		{"files not PEM", TLS{Mode: TLSFiles, CertFile: junk, KeyFile: junk}, "tls: files"},
		{"files mismatched", TLS{Mode: TLSFiles, CertFile: certPath, KeyFile: keyPath}, "does not match"},
		{"acme roots not PEM", TLS{Mode: TLSACME, Names: []string{"a.example"}, ACME: ACME{TrustedRootsFile: junk}}, "no PEM certificate"},
		{"no mode", TLS{}, "cannot build"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, stop, err := newTLS(t.Context(), tc.t, nil)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("newTLS() error = %v, want it to mention %q", err, tc.want)
			}
			if cfg != nil || stop != nil {
				t.Error("newTLS() returned a config or stop function with an error")
			}
		})
	}
}

func TestTLSValidate(t *testing.T) {
	goodACME := ACME{
		CA: "https://acme-staging-v02.api.letsencrypt.org/directory", Email: "ops@example.com", Agreed: true,
		Storage: "/var/lib/amiproxy/acme", ListenHost: netip.MustParseAddr("192.0.2.10"),
		AltHTTPPort: 8080, AltTLSALPNPort: 8443, StartupTimeout: Duration(time.Minute),
	}
	acme := func(edit func(*ACME)) TLS {
		a := goodACME
		edit(&a)
		return TLS{Mode: TLSACME, Names: []string{"ami.example.com"}, ACME: a}
	}
	tests := []struct {
		name string
		t    TLS
		want []string // substrings, one per expected error; none means valid
	}{
		{"unset mode is left to the caller", TLS{}, nil},
		{"self_signed defaults", TLS{Mode: TLSSelfSigned}, nil},
		{"self_signed names and IPs", TLS{Mode: TLSSelfSigned, Names: []string{"pbx.example", "10.0.0.1", "::1", "*.ami.example"}}, nil},
		{"files", TLS{Mode: TLSFiles, CertFile: "/c.pem", KeyFile: "/k.pem"}, nil},
		{"acme complete", acme(func(*ACME) {}), nil},
		{"acme minimal", TLS{Mode: TLSACME, Names: []string{"ami.example.com"}, ACME: ACME{Email: "a@b.example", Agreed: true, Storage: "acme"}}, nil},

		{"files without key", TLS{Mode: TLSFiles, CertFile: "/c.pem"}, []string{"needs cert_file and key_file"}},
		{"files without anything", TLS{Mode: TLSFiles}, []string{"needs cert_file and key_file"}},
		{"files with names", TLS{Mode: TLSFiles, CertFile: "/c", KeyFile: "/k", Names: []string{"a.example"}}, []string{"tls.names: not used in files mode"}},
		{"files with acme", TLS{Mode: TLSFiles, CertFile: "/c", KeyFile: "/k", ACME: ACME{Email: "a@b.example"}}, []string{"tls.acme: used only in acme mode"}},
		{"self_signed with files", TLS{Mode: TLSSelfSigned, CertFile: "/c"}, []string{"used only in files mode"}},
		{"self_signed with acme", TLS{Mode: TLSSelfSigned, ACME: ACME{Agreed: true}}, []string{"tls.acme: used only in acme mode"}},
		{"self_signed bad name", TLS{Mode: TLSSelfSigned, Names: []string{"bad name", "x..y", "-a.example"}}, []string{"names[0]", "names[1]", "names[2]"}},
		{"acme with files", TLS{Mode: TLSACME, Names: []string{"a.example"}, CertFile: "/c", KeyFile: "/k", ACME: goodACME}, []string{"used only in files mode"}},
		{"acme without names", TLS{Mode: TLSACME, ACME: goodACME}, []string{"tls.names: acme mode needs"}},
		{"acme IP name", TLS{Mode: TLSACME, Names: []string{"192.0.2.1"}, ACME: goodACME}, []string{"not IP addresses"}},
		{"acme wildcard", TLS{Mode: TLSACME, Names: []string{"*.example.com"}, ACME: goodACME}, []string{"DNS-01"}},
		{"acme bad name", TLS{Mode: TLSACME, Names: []string{"ok.example", "under_score.example", "trailing.dot."}, ACME: goodACME}, []string{"names[1]", "names[2]"}},
		{"acme plain http CA", acme(func(a *ACME) { a.CA = "http://ca.example/directory" }), []string{"tls.acme.ca"}},
		{"acme CA not a URL", acme(func(a *ACME) { a.CA = "ca.example" }), []string{"tls.acme.ca"}},
		{"acme without email", acme(func(a *ACME) { a.Email = "" }), []string{"tls.acme.email: required"}},
		{"acme display-name email", acme(func(a *ACME) { a.Email = "Ops <ops@example.com>" }), []string{"not a plain email"}},
		{"acme not agreed", acme(func(a *ACME) { a.Agreed = false }), []string{"tls.acme.agreed"}},
		{"acme without storage", acme(func(a *ACME) { a.Storage = "" }), []string{"tls.acme.storage"}},
		{"acme ports out of range", acme(func(a *ACME) { a.AltHTTPPort, a.AltTLSALPNPort = -1, 70000 }), []string{"alt_http_port: -1", "alt_tls_alpn_port: 70000"}},
		{"acme same ports", acme(func(a *ACME) { a.AltHTTPPort, a.AltTLSALPNPort = 8443, 8443 }), []string{"must differ"}},
		{"acme no challenge", acme(func(a *ACME) { a.DisableHTTPChallenge, a.DisableTLSALPNChallenge = true, true }), []string{"leave no challenge"}},
		{"acme short timeout", acme(func(a *ACME) { a.StartupTimeout = Duration(time.Second) }), []string{"startup_timeout"}},
		{"acme everything wrong at once", TLS{Mode: TLSACME, ACME: ACME{CA: "ftp://x", AltHTTPPort: 1e6}}, []string{
			"tls.names", "tls.acme.ca", "tls.acme.email", "tls.acme.agreed", "tls.acme.storage", "alt_http_port",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := fmt.Sprintf("%#v", tt.t)
			errs := tt.t.validate()
			if after := fmt.Sprintf("%#v", tt.t); after != before {
				t.Errorf("validate changed the config: %s", after)
			}
			if len(errs) != len(tt.want) {
				t.Fatalf("validate() = %v (%d errors), want %d errors mentioning %q", errs, len(errs), len(tt.want), tt.want)
			}
			for _, w := range tt.want {
				joined := errors.Join(errs...).Error()
				if !strings.Contains(joined, w) {
					t.Errorf("validate() = %v, want an error mentioning %q", errs, w)
				}
			}
		})
	}
}

func TestTLSConfigYAML(t *testing.T) {
	const doc = `
tls:
  mode: acme
  names: [ami.example.com, ami2.example.com]
  acme:
    ca: https://acme-staging-v02.api.letsencrypt.org/directory
    email: ops@example.com
    agreed: true
    trusted_roots_file: /etc/amiproxy/ca.pem
    storage: /var/lib/amiproxy/acme
    listen_host: "::1"
    alt_http_port: 8080
    alt_tls_alpn_port: 8443
    disable_tls_alpn_challenge: true
    startup_timeout: 90s
`
	var f struct {
		TLS TLS `yaml:"tls"`
	}
	dec := yaml.NewDecoder(strings.NewReader(doc))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil {
		t.Fatalf("decode: %v", err)
	}
	want := ACME{
		CA: "https://acme-staging-v02.api.letsencrypt.org/directory", Email: "ops@example.com", Agreed: true,
		TrustedRootsFile: "/etc/amiproxy/ca.pem", Storage: "/var/lib/amiproxy/acme",
		ListenHost: netip.MustParseAddr("::1"), AltHTTPPort: 8080, AltTLSALPNPort: 8443,
		DisableTLSALPNChallenge: true, StartupTimeout: Duration(90 * time.Second),
	}
	if f.TLS.ACME != want {
		t.Errorf("decoded acme = %+v, want %+v", f.TLS.ACME, want)
	}
	if errs := f.TLS.validate(); len(errs) != 0 {
		t.Errorf("validate() = %v", errs)
	}
	bad := strings.Replace(doc, `"::1"`, "not-an-ip", 1)
	dec = yaml.NewDecoder(strings.NewReader(bad))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err == nil {
		t.Error("listen_host: not-an-ip was accepted")
	}
}

func TestTLSZapToSlog(t *testing.T) {
	logger, logs := newTLSTestLogger()
	zl := zap.New(slogCore{h: logger.Handler()}).Named("certmagic").With(zap.String("issuer", "pebble"))
	zl.Debug("dbg", zap.Strings("names", []string{"a", "b"}))
	zl.Info("obtained", zap.Error(errors.New("boom")), zap.Int("n", 3))
	zl.Error("failed")
	got := logs.String()
	for _, want := range []string{
		`level=DEBUG msg=dbg issuer=pebble logger=certmagic names="[a b]"`,
		`level=INFO msg=obtained issuer=pebble logger=certmagic error=boom n=3`,
		`level=ERROR msg=failed issuer=pebble logger=certmagic`,
	} {
		if !strings.Contains(got, want) {
			t.Errorf("log lacks %q:\n%s", want, got)
		}
	}
	quiet := zap.New(slogCore{h: slog.NewTextHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelWarn})})
	if quiet.Core().Enabled(zap.InfoLevel) || !quiet.Core().Enabled(zap.WarnLevel) {
		t.Error("the slog handler's level does not filter zap entries")
	}
}

// ---- ACME against a real Pebble ----

// pebbleVersion is the Pebble the ACME test runs against.
const pebbleVersion = "v2.10.1"

// pebbleBin returns the path of a Pebble binary, in this order:
//   - $PEBBLE_BIN, if set;
//   - <repo>/.tools/bin/pebble, if it exists (.ci/run installs it there);
//   - otherwise it builds that binary once with
//     GOBIN=<repo>/.tools/bin go install github.com/letsencrypt/pebble/v2/cmd/pebble@v2.10.1
//     which needs the Go module proxy (about 15 s cold), so that
//     `go test ./...` needs nothing installed beforehand.
//
// It fails the test, never skips it, when no binary can be had.
func pebbleBin(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("PEBBLE_BIN"); p != "" {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("PEBBLE_BIN=%s: %v", p, err)
		}
		return p
	}
	root := repoRoot(t)
	gobin := filepath.Join(root, ".tools", "bin")
	bin := filepath.Join(gobin, "pebble")
	if _, err := os.Stat(bin); err == nil {
		return bin
	}
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("no pebble binary: set PEBBLE_BIN, or put pebble in %s, or put the go command on PATH so the test can build it: %v", gobin, err)
	}
	pkg := "github.com/letsencrypt/pebble/v2/cmd/pebble@" + pebbleVersion
	t.Logf("building %s into %s", pkg, gobin)
	cmd := exec.CommandContext(t.Context(), goTool, "install", pkg)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "GOBIN="+gobin)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("cannot build pebble (needed by the ACME test): GOBIN=%s go install %s: %v\n%s\n"+
			"Install it by hand, or set PEBBLE_BIN to a pebble %s binary.", gobin, pkg, err, out, pebbleVersion)
	}
	return bin
}

// repoRoot is the folder of the go.mod above the working directory.
func repoRoot(t *testing.T) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("no go.mod above the working directory")
		}
		dir = parent
	}
}

// freeLoopbackPort returns a TCP port that was free on 127.0.0.1 a moment ago.
func freeLoopbackPort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// pebbleServer is a running Pebble ACME CA.
type pebbleServer struct {
	Directory     string            // ACME directory URL
	ListenerCerts string            // PEM file of Pebble's HTTPS listener certificate
	Root          *x509.Certificate // the root the issued certificates chain to
	Stop          func()            // kills Pebble early; idempotent
}

// startPebble runs Pebble on free loopback ports until the test ends. It
// retries with other ports if one was taken in the meantime.
func startPebble(t *testing.T) *pebbleServer {
	t.Helper()
	bin := pebbleBin(t)
	dir := t.TempDir()

	// Pebble's own HTTPS listener certificate.
	lc, err := selfSignedCert([]string{"localhost", "127.0.0.1"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile := filepath.Join(dir, "listener.pem"), filepath.Join(dir, "listener-key.pem")
	writeCertPair(t, certFile, keyFile, &lc, &lc)
	pool := x509.NewCertPool()
	pool.AddCert(lc.Leaf)
	client := &http.Client{
		Timeout:   5 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}},
	}
	t.Cleanup(client.CloseIdleConnections)

	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		acmePort, mgmtPort := freeLoopbackPort(t), freeLoopbackPort(t)
		var conf struct {
			Pebble map[string]any `json:"pebble"`
		}
		conf.Pebble = map[string]any{
			"listenAddress":           fmt.Sprintf("127.0.0.1:%d", acmePort),
			"managementListenAddress": fmt.Sprintf("127.0.0.1:%d", mgmtPort),
			"certificate":             certFile,
			"privateKey":              keyFile,
			// The VA never connects: PEBBLE_VA_ALWAYS_VALID=1.
			"httpPort":                       5002,
			"tlsPort":                        5001,
			"ocspResponderURL":               "",
			"externalAccountBindingRequired": false,
			"retryAfter":                     map[string]int{"authz": 0, "order": 0},
			"keyAlgorithm":                   "ecdsa",
			"profiles": map[string]any{
				"default": map[string]any{"description": "amiproxy test", "validityPeriod": 7776000},
			},
		}
		confFile := filepath.Join(dir, fmt.Sprintf("pebble-%d.json", attempt))
		b, err := json.Marshal(conf)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(confFile, b, 0o600); err != nil {
			t.Fatal(err)
		}

		out := &tlsLogBuffer{}
		cmd := exec.Command(bin, "-config", confFile)
		cmd.Env = append(os.Environ(),
			"PEBBLE_VA_ALWAYS_VALID=1", "PEBBLE_VA_NOSLEEP=1", "PEBBLE_WFE_NONCEREJECT=0", "PEBBLE_AUTHZREUSE=0")
		cmd.Stdout, cmd.Stderr = out, out
		if err := cmd.Start(); err != nil {
			t.Fatalf("start pebble %s: %v", bin, err)
		}
		exited := make(chan struct{})
		go func() { _ = cmd.Wait(); close(exited) }()
		stopPebble := sync.OnceFunc(func() {
			_ = cmd.Process.Kill()
			<-exited
		})

		base := fmt.Sprintf("https://127.0.0.1:%d", acmePort)
		mgmt := fmt.Sprintf("https://127.0.0.1:%d", mgmtPort)
		root, err := waitForPebble(client, base+"/dir", mgmt+"/roots/0", exited)
		if err != nil {
			stopPebble()
			lastErr = fmt.Errorf("%w\npebble output:\n%s", err, out)
			continue
		}
		t.Cleanup(func() {
			stopPebble()
			if t.Failed() {
				t.Logf("pebble output:\n%s", out)
			}
		})
		return &pebbleServer{Directory: base + "/dir", ListenerCerts: certFile, Root: root, Stop: stopPebble}
	}
	t.Fatalf("pebble did not start: %v", lastErr)
	return nil
}

// waitForPebble polls the directory until it answers, then fetches the
// root from the management port (Pebble makes a new one at every start).
func waitForPebble(client *http.Client, dirURL, rootURL string, exited <-chan struct{}) (*x509.Certificate, error) {
	deadline := time.Now().Add(15 * time.Second)
	for {
		select {
		case <-exited:
			return nil, errors.New("pebble exited")
		default:
		}
		resp, err := client.Get(dirURL)
		if err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
			err = fmt.Errorf("GET %s: %s", dirURL, resp.Status)
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("pebble not answering: %w", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	for {
		root, err := fetchPEMCert(client, rootURL)
		if err == nil {
			return root, nil
		}
		if time.Now().After(deadline) {
			return nil, err
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func fetchPEMCert(client *http.Client, u string) (*x509.Certificate, error) {
	resp, err := client.Get(u)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", u, resp.Status)
	}
	block, _ := pem.Decode(body)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, fmt.Errorf("GET %s: no PEM certificate", u)
	}
	return x509.ParseCertificate(block.Bytes)
}

func TestTLSACMEPebble(t *testing.T) {
	pebble := startPebble(t)
	names := []string{"localhost", "amiproxy.test"}
	conf := TLS{
		Mode:  TLSACME,
		Names: names,
		ACME: ACME{
			CA:                      pebble.Directory,
			Email:                   "ops@amiproxy.test",
			Agreed:                  true,
			TrustedRootsFile:        pebble.ListenerCerts,
			Storage:                 t.TempDir(), // fresh per Pebble run: Pebble forgets accounts
			ListenHost:              netip.MustParseAddr("127.0.0.1"),
			AltHTTPPort:             freeLoopbackPort(t),
			DisableTLSALPNChallenge: true,
			StartupTimeout:          Duration(60 * time.Second),
		},
	}
	if errs := conf.validate(); len(errs) != 0 {
		t.Fatalf("validate() = %v", errs)
	}
	logger, logs := newTLSTestLogger()

	start := time.Now()
	cfg, stop, err := newTLS(t.Context(), conf, logger)
	if err != nil {
		t.Fatalf("newTLS(acme) error: %v\nlogs:\n%s", err, logs)
	}
	t.Logf("obtained %d certificates in %v", len(names), time.Since(start).Round(time.Millisecond))
	defer stop()
	if cfg.MinVersion != tls.VersionTLS12 {
		t.Errorf("MinVersion = %#x, want TLS 1.2", cfg.MinVersion)
	}
	if len(cfg.NextProtos) != 0 {
		t.Errorf("NextProtos = %q with the TLS-ALPN challenge disabled, want none", cfg.NextProtos)
	}
	if !strings.Contains(logs.String(), "logger=certmagic") {
		t.Errorf("no certmagic log reached the slog logger:\n%s", logs)
	}

	addr, _ := serveTLSForTest(t, cfg)
	roots := x509.NewCertPool()
	roots.AddCert(pebble.Root)
	var fingerprints []string
	for _, name := range names {
		st, err := dialTLSForTest(addr, &tls.Config{RootCAs: roots, ServerName: name})
		if err != nil {
			t.Fatalf("handshake for %s: %v", name, err)
		}
		leaf := st.PeerCertificates[0]
		if err := leaf.VerifyHostname(name); err != nil {
			t.Errorf("%s: %v", name, err)
		}
		if !strings.Contains(leaf.Issuer.CommonName, "Pebble") {
			t.Errorf("%s: issuer = %q, want a Pebble CA", name, leaf.Issuer.CommonName)
		}
		chain := st.VerifiedChains[0]
		if !chain[len(chain)-1].Equal(pebble.Root) {
			t.Errorf("%s: chain ends at %q, want Pebble's root", name, chain[len(chain)-1].Subject)
		}
		sum := sha256.Sum256(leaf.Raw)
		fingerprints = append(fingerprints, strings.ToUpper(hex.EncodeToString(sum[:])))
	}
	// A client without SNI gets the certificate of the first name.
	if got := strings.ReplaceAll(certFingerprint(cfg), ":", ""); got != fingerprints[0] {
		t.Errorf("certFingerprint(acme) = %s, want the certificate of %s (%s)", got, names[0], fingerprints[0])
	}

	stop()
	stop() // idempotent
	checkNoGoroutine(t, "certmagic.(*Cache).maintainAssets")

	// A restart finds the certificates in storage, without asking the CA.
	t.Run("restart from storage", func(t *testing.T) {
		pebble.Stop()
		start := time.Now()
		cfg, stop, err := newTLS(t.Context(), conf, logger)
		if err != nil {
			t.Fatalf("newTLS(acme) from storage: %v", err)
		}
		defer stop()
		t.Logf("loaded from storage in %v", time.Since(start).Round(time.Millisecond))
		if got := strings.ReplaceAll(certFingerprint(cfg), ":", ""); got != fingerprints[0] {
			t.Errorf("after restart the certificate changed: %s, want %s", got, fingerprints[0])
		}
	})
}
