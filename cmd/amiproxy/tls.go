package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"net/mail"
	"net/netip"
	"net/url"
	"os"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/certmagic"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// TLSMode says where certificates come from.
type TLSMode string

// TLS modes.
const (
	TLSSelfSigned TLSMode = "self_signed"
	TLSFiles      TLSMode = "files"
	TLSACME       TLSMode = "acme"
)

// UnmarshalText accepts only the known modes.
func (m *TLSMode) UnmarshalText(b []byte) error {
	switch v := TLSMode(b); v {
	case TLSSelfSigned, TLSFiles, TLSACME, "":
		*m = v
		return nil
	}
	return fmt.Errorf("unknown tls mode %q (want self_signed, files or acme)", b)
}

// TLS configures the certificate of the TLS listeners.
type TLS struct {
	Mode TLSMode `yaml:"mode"`
	// Names are the DNS names the certificate covers (self_signed, acme).
	// In self_signed mode they may also be IP addresses and default to
	// localhost, 127.0.0.1 and ::1. In acme mode they are required, and
	// the first one is served to clients that send no server name (SNI).
	// Internationalized names are given in their ASCII (punycode) form.
	Names []string `yaml:"names"`
	// CertFile and KeyFile are PEM files (files mode). The certificate file
	// holds the leaf first, then its intermediates. Both are reloaded, without
	// a restart, when either changes; a pair that does not load is logged and
	// the previous certificate stays in service.
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	// ACME configures acme mode.
	ACME ACME `yaml:"acme"`
}

// ACME configures certificates obtained and renewed automatically from an
// ACME CA (Let's Encrypt, or a private CA such as step-ca or Pebble).
//
// The CA proves control of each name with the HTTP-01 challenge (a plain
// HTTP request to port 80 of the name) or the TLS-ALPN-01 challenge (a TLS
// handshake on port 443). amiproxy answers them on a short-lived listener
// of its own, on port 80 and 443 or on AltHTTPPort and AltTLSALPNPort when
// those are set (then forward 80 and 443 to them). DNS-01 is not offered,
// so wildcard names are not possible.
type ACME struct {
	// CA is the URL of the ACME directory, for example
	// https://acme-staging-v02.api.letsencrypt.org/directory.
	// Empty means Let's Encrypt production.
	CA string `yaml:"ca"`
	// Email is the contact of the ACME account. It is required: without
	// it the ACME library would ask for one on the terminal.
	Email string `yaml:"email"`
	// Agreed accepts the CA's subscriber agreement; it must be true.
	Agreed bool `yaml:"agreed"`
	// TrustedRootsFile is a PEM file of the CA certificates trusted for
	// the HTTPS connection to CA (for a private ACME CA). Empty means
	// the system roots.
	TrustedRootsFile string `yaml:"trusted_roots_file"`
	// Storage is the folder that keeps the account key, certificates and
	// locks across restarts. It is required and must be writable only by
	// amiproxy.
	Storage string `yaml:"storage"`
	// ListenHost is the IP address the challenge listeners bind to.
	// Unset means all addresses.
	ListenHost netip.Addr `yaml:"listen_host"`
	// AltHTTPPort and AltTLSALPNPort replace ports 80 and 443 for the
	// challenge listeners; the CA still connects to 80 and 443, so those
	// must be forwarded to these ports.
	AltHTTPPort    int `yaml:"alt_http_port"`
	AltTLSALPNPort int `yaml:"alt_tls_alpn_port"`
	// DisableHTTPChallenge and DisableTLSALPNChallenge turn one challenge
	// type off; at least one must stay on.
	DisableHTTPChallenge    bool `yaml:"disable_http_challenge"`
	DisableTLSALPNChallenge bool `yaml:"disable_tls_alpn_challenge"`
	// StartupTimeout bounds obtaining (or loading) every certificate at
	// startup; amiproxy does not start without them. Default 2m.
	StartupTimeout Duration `yaml:"startup_timeout"`
}

// defaultACMEStartupTimeout is ACME.StartupTimeout when it is not set.
const defaultACMEStartupTimeout = 2 * time.Minute

// selfSignedValidity is the lifetime of a self_signed certificate.
const selfSignedValidity = 30 * 24 * time.Hour

// defaultSelfSignedNames are the names of a self_signed certificate when
// TLS.Names is empty.
var defaultSelfSignedNames = []string{"localhost", "127.0.0.1", "::1"}

// validate reports the problems of the TLS section; it changes nothing and
// reads no files.
func (t TLS) validate() []error {
	var errs []error
	add := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }

	if t.Mode == "" {
		return nil // the caller reports a missing mode where one is needed
	}
	if t.Mode != TLSFiles {
		if t.CertFile != "" || t.KeyFile != "" {
			add("tls: cert_file and key_file are used only in files mode, not %s", t.Mode)
		}
	}
	if t.Mode != TLSACME && t.ACME != (ACME{}) {
		add("tls.acme: used only in acme mode, not %s", t.Mode)
	}

	switch t.Mode {
	case TLSSelfSigned:
		for i, n := range t.Names {
			if _, err := netip.ParseAddr(n); err == nil {
				continue
			}
			if !validHostname(strings.TrimPrefix(n, "*.")) {
				add("tls.names[%d]: %q is not a DNS name or IP address", i, n)
			}
		}
	case TLSFiles:
		if t.CertFile == "" || t.KeyFile == "" {
			add("tls: files mode needs cert_file and key_file")
		}
		if len(t.Names) > 0 {
			add("tls.names: not used in files mode (the certificate's own names apply)")
		}
	case TLSACME:
		if len(t.Names) == 0 {
			add("tls.names: acme mode needs at least one DNS name")
		}
		for i, n := range t.Names {
			switch _, err := netip.ParseAddr(n); {
			case err == nil:
				add("tls.names[%d]: %q: acme mode takes DNS names, not IP addresses", i, n)
			case strings.HasPrefix(n, "*."):
				add("tls.names[%d]: %q: wildcards need the DNS-01 challenge, which amiproxy does not offer", i, n)
			case !validHostname(n):
				add("tls.names[%d]: %q is not a DNS name", i, n)
			}
		}
		errs = append(errs, t.ACME.validate()...)
	}
	return errs
}

// validate reports the problems of the tls.acme section.
func (a ACME) validate() []error {
	var errs []error
	add := func(format string, v ...any) { errs = append(errs, fmt.Errorf(format, v...)) }

	if a.CA != "" {
		u, err := url.Parse(a.CA)
		if err != nil || u.Scheme != "https" || u.Host == "" {
			add("tls.acme.ca: %q is not an https:// ACME directory URL", a.CA)
		}
	}
	if a.Email == "" {
		add("tls.acme.email: required (the contact of the ACME account)")
	} else if addr, err := mail.ParseAddress(a.Email); err != nil || addr.Address != a.Email {
		add("tls.acme.email: %q is not a plain email address", a.Email)
	}
	if !a.Agreed {
		add("tls.acme.agreed: must be true to accept the CA's subscriber agreement")
	}
	if a.Storage == "" {
		add("tls.acme.storage: required (a folder for the ACME account and certificates)")
	}
	for _, p := range []struct {
		key  string
		port int
	}{{"alt_http_port", a.AltHTTPPort}, {"alt_tls_alpn_port", a.AltTLSALPNPort}} {
		if p.port < 0 || p.port > 65535 {
			add("tls.acme.%s: %d is not a port number", p.key, p.port)
		}
	}
	if a.AltHTTPPort != 0 && a.AltHTTPPort == a.AltTLSALPNPort {
		add("tls.acme: alt_http_port and alt_tls_alpn_port must differ")
	}
	if a.DisableHTTPChallenge && a.DisableTLSALPNChallenge {
		add("tls.acme: disable_http_challenge and disable_tls_alpn_challenge leave no challenge to prove the names")
	}
	if a.StartupTimeout != 0 && time.Duration(a.StartupTimeout) < 10*time.Second {
		add("tls.acme.startup_timeout: %s is too short to obtain a certificate (at least 10s)", time.Duration(a.StartupTimeout))
	}
	return errs
}

// validHostname reports whether s is a DNS name in ASCII form: dot-separated
// labels of letters, digits and inner hyphens, without a trailing dot.
func validHostname(s string) bool {
	if s == "" || len(s) > 253 {
		return false
	}
	for _, label := range strings.Split(s, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, c := range []byte(label) {
			if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-') {
				return false
			}
		}
	}
	return true
}

// newTLS builds the server TLS config for the AMI-over-TLS and HTTPS listeners.
// It returns a stop function (stops certmagic maintenance / file watching) that the caller defers.
//
// t must have passed validate. The config has MinVersion TLS 1.2 and Go's
// default cipher suites. In acme mode newTLS blocks until every name has a
// certificate (loaded from t.ACME.Storage or obtained from the CA), at most
// t.ACME.StartupTimeout; renewals then run in the background until stop.
// In acme mode NextProtos holds "acme-tls/1" unless the TLS-ALPN challenge
// is disabled; an HTTPS server should Clone the config and append its own
// protocols after it. stop is idempotent and safe to call at any time.
func newTLS(ctx context.Context, t TLS, logger *slog.Logger) (*tls.Config, func(), error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	switch t.Mode {
	case TLSSelfSigned:
		names := t.Names
		if len(names) == 0 {
			names = defaultSelfSignedNames
		}
		cert, err := selfSignedCert(names, time.Now())
		if err != nil {
			return nil, nil, err
		}
		cfg := &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}}
		return cfg, func() {}, nil
	case TLSFiles:
		fc := &certFiles{certFile: t.CertFile, keyFile: t.KeyFile, logger: logger}
		if err := fc.load(); err != nil {
			return nil, nil, err
		}
		cfg := &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: fc.getCertificate}
		return cfg, func() {}, nil
	case TLSACME:
		return newACME(ctx, t, logger)
	}
	return nil, nil, fmt.Errorf("tls: mode %q cannot build a certificate", t.Mode)
}

// selfSignedCert makes an ECDSA P-256 certificate for names (DNS names or
// IP addresses) valid from an hour before now for selfSignedValidity.
func selfSignedCert(names []string, now time.Time) (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("tls: self_signed: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("tls: self_signed: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: names[0], Organization: []string{"amiproxy self-signed"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(selfSignedValidity),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
	}
	for _, n := range names {
		if ip, err := netip.ParseAddr(n); err == nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, net.IP(ip.AsSlice()))
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, n)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("tls: self_signed: %w", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("tls: self_signed: %w", err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, nil
}

// certFingerprint returns the SHA-256 fingerprint of the certificate cfg
// serves to a client without SNI, as colon-separated upper-case hex (the
// format of `openssl x509 -fingerprint -sha256`), or "" if it has none.
func certFingerprint(cfg *tls.Config) string {
	var cert *tls.Certificate
	switch {
	case cfg == nil:
		return ""
	case len(cfg.Certificates) > 0:
		cert = &cfg.Certificates[0]
	case cfg.GetCertificate != nil:
		c, err := cfg.GetCertificate(&tls.ClientHelloInfo{Conn: loopbackConn{}})
		if err != nil || c == nil {
			return ""
		}
		cert = c
	}
	if cert == nil || len(cert.Certificate) == 0 {
		return ""
	}
	sum := sha256.Sum256(cert.Certificate[0])
	var b strings.Builder
	for i, c := range sum {
		if i > 0 {
			b.WriteByte(':')
		}
		fmt.Fprintf(&b, "%02X", c)
	}
	return b.String()
}

// loopbackConn stands in for the connection of a ClientHelloInfo made
// outside a handshake: certmagic reads the addresses of hello.Conn.
type loopbackConn struct{ net.Conn }

func (loopbackConn) LocalAddr() net.Addr  { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)} }
func (loopbackConn) RemoteAddr() net.Addr { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)} }

// certFiles serves the certificate of a PEM cert/key pair and reloads it
// when either file changes (another inode, size or modification time; so a
// rename over the file and an in-place rewrite are both seen). The check
// costs two stat calls per handshake and needs no goroutine. A pair that
// fails to load is logged once and the previous certificate stays in
// service until the files change again. It is safe for concurrent use.
type certFiles struct {
	certFile, keyFile string
	logger            *slog.Logger

	mu             sync.Mutex
	cert           *tls.Certificate
	certFI, keyFI  os.FileInfo // the versions last tried
	lastStatFailed bool
}

// load reads the pair for the first time; it fails if the pair does not load.
func (c *certFiles) load() error {
	certFI, err1 := os.Stat(c.certFile)
	keyFI, err2 := os.Stat(c.keyFile)
	if err := errors.Join(err1, err2); err != nil {
		return fmt.Errorf("tls: files: %w", err)
	}
	cert, err := c.read()
	if err != nil {
		return err
	}
	c.cert, c.certFI, c.keyFI = cert, certFI, keyFI
	return nil
}

// read loads and checks the pair.
func (c *certFiles) read() (*tls.Certificate, error) {
	certPEM, err := os.ReadFile(c.certFile)
	if err != nil {
		return nil, fmt.Errorf("tls: files: %w", err)
	}
	keyPEM, err := os.ReadFile(c.keyFile)
	if err != nil {
		return nil, fmt.Errorf("tls: files: %w", err)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("tls: files: %s and %s: %w", c.certFile, c.keyFile, err)
	}
	if cert.Leaf != nil && time.Now().After(cert.Leaf.NotAfter) {
		c.logger.Warn("tls: the certificate has expired", "cert_file", c.certFile, "not_after", cert.Leaf.NotAfter)
	}
	return &cert, nil
}

// getCertificate is tls.Config.GetCertificate: it reloads the pair if it
// changed and returns the certificate in service.
func (c *certFiles) getCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.reloadIfChanged()
	return c.cert, nil
}

// reloadIfChanged must be called with c.mu held.
func (c *certFiles) reloadIfChanged() {
	certFI, err1 := os.Stat(c.certFile)
	keyFI, err2 := os.Stat(c.keyFile)
	if err := errors.Join(err1, err2); err != nil {
		if !c.lastStatFailed {
			c.logger.Warn("tls: certificate files unreadable; serving the previous certificate", "error", err)
		}
		c.lastStatFailed = true
		return
	}
	c.lastStatFailed = false
	if sameVersion(certFI, c.certFI) && sameVersion(keyFI, c.keyFI) {
		return
	}
	c.certFI, c.keyFI = certFI, keyFI
	cert, err := c.read()
	if err != nil {
		c.logger.Warn("tls: reloading the certificate failed; serving the previous one", "error", err)
		return
	}
	c.cert = cert
	attrs := []any{"cert_file", c.certFile}
	if cert.Leaf != nil {
		attrs = append(attrs, "subject", cert.Leaf.Subject.String(), "not_after", cert.Leaf.NotAfter)
	}
	c.logger.Info("tls: certificate reloaded", attrs...)
}

// sameVersion reports whether a and b describe the same version of a file.
func sameVersion(a, b os.FileInfo) bool {
	return a != nil && b != nil && os.SameFile(a, b) && a.Size() == b.Size() && a.ModTime().Equal(b.ModTime())
}

// newACME is newTLS for acme mode.
func newACME(ctx context.Context, t TLS, logger *slog.Logger) (*tls.Config, func(), error) {
	a := t.ACME
	if len(t.Names) == 0 {
		return nil, nil, errors.New("tls: acme: no names")
	}
	var roots *x509.CertPool
	if a.TrustedRootsFile != "" {
		pemBytes, err := os.ReadFile(a.TrustedRootsFile)
		if err != nil {
			return nil, nil, fmt.Errorf("tls: acme: trusted_roots_file: %w", err)
		}
		roots = x509.NewCertPool()
		if !roots.AppendCertsFromPEM(pemBytes) {
			return nil, nil, fmt.Errorf("tls: acme: trusted_roots_file %s holds no PEM certificate", a.TrustedRootsFile)
		}
	}
	ca := a.CA
	if ca == "" {
		ca = certmagic.LetsEncryptProductionCA
	}
	timeout := time.Duration(a.StartupTimeout)
	if timeout == 0 {
		timeout = defaultACMEStartupTimeout
	}
	listenHost := ""
	if a.ListenHost.IsValid() {
		listenHost = a.ListenHost.String()
	}

	zl := zap.New(slogCore{h: logger.Handler()})
	// The cache asks for the Config of a certificate from its maintenance
	// goroutine, which starts in NewCache, before the Config exists.
	var magic atomic.Pointer[certmagic.Config]
	cache := certmagic.NewCache(certmagic.CacheOptions{
		GetConfigForCert: func(certmagic.Certificate) (*certmagic.Config, error) {
			if c := magic.Load(); c != nil {
				return c, nil
			}
			return nil, errors.New("tls: acme: not configured yet")
		},
		Logger: zl.Named("certmagic.cache"),
	})
	var once sync.Once
	stop := func() { once.Do(cache.Stop) }

	cfg := certmagic.New(cache, certmagic.Config{
		Storage:           &certmagic.FileStorage{Path: a.Storage},
		Logger:            zl.Named("certmagic"),
		DefaultServerName: t.Names[0],
		Issuers:           []certmagic.Issuer{}, // non-nil: no default issuer from package defaults
	})
	cfg.Issuers = []certmagic.Issuer{certmagic.NewACMEIssuer(cfg, certmagic.ACMEIssuer{
		CA:                      ca,
		Email:                   a.Email,
		Agreed:                  a.Agreed,
		TrustedRoots:            roots,
		ListenHost:              listenHost,
		AltHTTPPort:             a.AltHTTPPort,
		AltTLSALPNPort:          a.AltTLSALPNPort,
		DisableHTTPChallenge:    a.DisableHTTPChallenge,
		DisableTLSALPNChallenge: a.DisableTLSALPNChallenge,
		Logger:                  zl.Named("certmagic.acme"),
	})}
	magic.Store(cfg)

	mctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if err := cfg.ManageSync(mctx, t.Names); err != nil {
		stop()
		return nil, nil, fmt.Errorf("tls: acme: %w", err)
	}

	tc := cfg.TLSConfig()
	tc.MinVersion = tls.VersionTLS12
	if a.DisableTLSALPNChallenge {
		tc.NextProtos = nil
	}
	return tc, stop, nil
}

// slogCore is a zapcore.Core that writes to a slog.Handler, so certmagic's
// zap logs reach the same sink, format and level filter as the rest of
// amiproxy. The zap logger name becomes the "logger" attribute.
type slogCore struct {
	h slog.Handler
}

var _ zapcore.Core = slogCore{}

func (c slogCore) Enabled(l zapcore.Level) bool {
	return c.h.Enabled(context.Background(), slogLevel(l))
}

func (c slogCore) With(fields []zapcore.Field) zapcore.Core {
	return slogCore{h: c.h.WithAttrs(zapAttrs(fields))}
}

func (c slogCore) Check(e zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	if c.Enabled(e.Level) {
		return ce.AddCore(e, c)
	}
	return ce
}

func (c slogCore) Write(e zapcore.Entry, fields []zapcore.Field) error {
	r := slog.NewRecord(e.Time, slogLevel(e.Level), e.Message, 0)
	if e.LoggerName != "" {
		r.AddAttrs(slog.String("logger", e.LoggerName))
	}
	r.AddAttrs(zapAttrs(fields)...)
	return c.h.Handle(context.Background(), r)
}

func (slogCore) Sync() error { return nil }

// slogLevel maps zap levels to slog levels; DPanic and above are errors.
func slogLevel(l zapcore.Level) slog.Level {
	switch {
	case l <= zapcore.DebugLevel:
		return slog.LevelDebug
	case l == zapcore.InfoLevel:
		return slog.LevelInfo
	case l == zapcore.WarnLevel:
		return slog.LevelWarn
	}
	return slog.LevelError
}

// zapAttrs turns zap fields into slog attributes, sorted by key.
func zapAttrs(fields []zapcore.Field) []slog.Attr {
	if len(fields) == 0 {
		return nil
	}
	enc := zapcore.NewMapObjectEncoder()
	for _, f := range fields {
		f.AddTo(enc)
	}
	keys := make([]string, 0, len(enc.Fields))
	for k := range enc.Fields {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	attrs := make([]slog.Attr, 0, len(keys))
	for _, k := range keys {
		attrs = append(attrs, slog.Any(k, enc.Fields[k]))
	}
	return attrs
}
