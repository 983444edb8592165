package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"os"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/amiproxy/amiproxy/auth"
	"github.com/amiproxy/amiproxy/policy"
	"github.com/amiproxy/amiproxy/proxy"
	"github.com/amiproxy/amiproxy/upstream"
)

// File is the amiproxy configuration document. It is decoded strictly (an
// unknown key is an error), checked by Validate without side effects, and
// turned into runtime objects by build.
type File struct {
	Listen   Listen        `yaml:"listen"`
	TLS      TLS           `yaml:"tls"`
	Proxy    Proxy         `yaml:"proxy"`
	Limits   Limits        `yaml:"limits"`
	PBXs     []PBX         `yaml:"pbxs"`
	Accounts []Account     `yaml:"accounts"`
	Policy   policy.Config `yaml:"policy"`
	Log      Log           `yaml:"log"`
	// OIDC and Minted configure sign-in with an identity provider and
	// minted AMI secrets (identity.go).
	OIDC   OIDC   `yaml:"oidc"`
	Minted Minted `yaml:"minted"`
}

// Listen names the client-facing endpoints. An empty address is off.
type Listen struct {
	// AMITLS is the native AMI door over TLS, e.g. "0.0.0.0:5039".
	AMITLS Addr `yaml:"ami_tls"`
	// AMI is the native AMI door in plain text. It is refused on a
	// non-loopback address unless InsecurePlaintext is set.
	AMI Addr `yaml:"ami"`
	// HTTPS is the HTTP manager (/rawman, /mxml, /manager and the digest
	// variants /arawman, /amxml, /amanager; also under /pbx/<name>/) over
	// TLS, e.g. "0.0.0.0:8089".
	HTTPS Addr `yaml:"https"`
	// HTTP is the HTTP manager in plain text; loopback only unless
	// InsecurePlaintext is set.
	HTTP Addr `yaml:"http"`
	// Admin serves /healthz, /readyz and Prometheus /metrics over plain
	// HTTP, e.g. "127.0.0.1:9038". Off when empty.
	Admin Addr `yaml:"admin"`
	// InsecurePlaintext allows AMI and HTTP on a non-loopback address
	// without TLS.
	// It MUST NOT be set where the network is not fully trusted: logins,
	// minted secrets and every event then cross it in clear text.
	InsecurePlaintext bool `yaml:"insecure_plaintext"`
}

// Addr is an IP:port with an explicit IP address.
type Addr struct{ netip.AddrPort }

// UnmarshalText parses "127.0.0.1:5038" or "[::1]:5038".
func (a *Addr) UnmarshalText(b []byte) error {
	if len(b) == 0 {
		*a = Addr{}
		return nil
	}
	ap, err := netip.ParseAddrPort(string(b))
	if err != nil {
		return fmt.Errorf("address %q: want an explicit IP and port, e.g. 127.0.0.1:5038", b)
	}
	a.AddrPort = ap
	return nil
}

// Set reports whether the address was given.
func (a Addr) Set() bool { return a.IsValid() }

// Proxy tunes the front doors.
type Proxy struct {
	Banner             string   `yaml:"banner"`
	DefaultPBX         string   `yaml:"default_pbx"`
	HandshakeTimeout   Duration `yaml:"handshake_timeout"`
	MaxUnauthenticated int      `yaml:"max_unauthenticated"`
	LoginFailDelay     Duration `yaml:"login_fail_delay"`
	ClientQueue        int      `yaml:"client_queue"`
	// HTTPTimeout is Asterisk's httptimeout: HTTP manager sessions expire
	// after this much idleness and WaitEvent waits at most 10 s less.
	// Default 60s.
	HTTPTimeout Duration `yaml:"http_timeout"`
	// HTTPMaxSessions bounds the HTTP manager sessions kept (least
	// recently used evicted first). Default 10000.
	HTTPMaxSessions int `yaml:"http_max_sessions"`
}

// PBX is one Asterisk the proxy keeps a session with.
type PBX struct {
	Name string `yaml:"name"`
	// Labels are free key/value pairs that roles select PBXs by
	// (policy pbx_labels), e.g. {site: paris, tier: prod}.
	Labels   map[string]string `yaml:"labels"`
	Address  string            `yaml:"address"`
	Username string            `yaml:"username"`
	Secret   SecretSource      `yaml:"secret"`
	AuthMD5  bool              `yaml:"auth_md5"`
	TLS      PBXTLS            `yaml:"tls"`
	// PingInterval and PingTimeout tune the keepalive (defaults 20s, 5s).
	PingInterval Duration `yaml:"ping_interval"`
	PingTimeout  Duration `yaml:"ping_timeout"`
}

// PBXTLS is TLS towards one PBX.
type PBXTLS struct {
	Enabled    bool   `yaml:"enabled"`
	CAFile     string `yaml:"ca_file"`
	ServerName string `yaml:"server_name"`
	// InsecureSkipVerify disables verification of the PBX certificate.
	// It MUST NOT be used for PBXs reached over networks you do not
	// control.
	InsecureSkipVerify bool `yaml:"insecure_skip_verify"`
}

// Account is a local account for a person or a service.
type Account struct {
	Username string `yaml:"username"`
	// SecretHash is a bcrypt hash (amiproxy hash-secret); plain Login only.
	SecretHash string `yaml:"secret_hash"`
	// Secret is needed for Challenge/MD5 logins, which need the plain text.
	Secret SecretSource `yaml:"secret"`
	Groups []string     `yaml:"groups"`
	// Permit and Deny are CIDR prefixes checked before the secret, as
	// Asterisk checks a manager user's permit/deny: deny wins, and a
	// non-empty Permit admits only the addresses it lists.
	Permit []string `yaml:"permit"`
	Deny   []string `yaml:"deny"`
}

// Log configures operational and audit logs.
type Log struct {
	Level string `yaml:"level"` // debug, info, warn, error; default info
	// Audit is where the one-JSON-line-per-action audit log goes: "stderr"
	// (default), "stdout", or a file path.
	Audit string `yaml:"audit"`
}

// SecretSource reads a secret from an environment variable or a file; a
// secret is never required inline (but "value" is accepted for tests and
// demos, and Validate flags it).
type SecretSource struct {
	Env   string `yaml:"env"`
	File  string `yaml:"file"`
	Value string `yaml:"value"`
}

// IsZero reports whether no source is given.
func (s SecretSource) IsZero() bool { return s.Env == "" && s.File == "" && s.Value == "" }

func (s SecretSource) check(where string) error {
	n := 0
	for _, v := range []string{s.Env, s.File, s.Value} {
		if v != "" {
			n++
		}
	}
	if n > 1 {
		return fmt.Errorf("%s: give one of env, file or value", where)
	}
	return nil
}

// resolve reads the secret. A file's trailing newline is dropped.
func (s SecretSource) resolve(env func(string) (string, bool), readFile func(string) ([]byte, error)) (string, error) {
	switch {
	case s.Env != "":
		v, ok := env(s.Env)
		if !ok || v == "" {
			return "", fmt.Errorf("environment variable %s is not set", s.Env)
		}
		return v, nil
	case s.File != "":
		b, err := readFile(s.File)
		if err != nil {
			return "", fmt.Errorf("secret file: %w", err)
		}
		return strings.TrimRight(string(b), "\r\n"), nil
	}
	return s.Value, nil
}

// Duration is a time.Duration written as "30s" or "1m".
type Duration time.Duration

// UnmarshalText parses a Go duration string.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return fmt.Errorf("duration %q: %w", b, err)
	}
	if v < 0 {
		return fmt.Errorf("duration %q is negative", b)
	}
	*d = Duration(v)
	return nil
}

// decodeConfig decodes a YAML document strictly.
func decodeConfig(r io.Reader) (*File, error) {
	dec := yaml.NewDecoder(r)
	dec.KnownFields(true)
	var f File
	if err := dec.Decode(&f); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, errors.New("config: empty document")
		}
		// yaml.v3 quotes offending values in backquotes; one may be a
		// secret typed in the wrong place, and this error is printed and
		// logged: keep the line numbers, drop the values.
		return nil, fmt.Errorf("config: %s", redactQuoted(err.Error()))
	}
	return &f, nil
}

// loadConfig reads and decodes the file at path.
func loadConfig(path string) (*File, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return decodeConfig(bytes.NewReader(b))
}

// policyPBXs returns the configured PBXs, with their labels, as the
// policy engine sees them.
func (f *File) policyPBXs() []policy.PBX {
	out := make([]policy.PBX, 0, len(f.PBXs))
	for _, p := range f.PBXs {
		out = append(out, policy.PBX{Name: p.Name, Labels: p.Labels})
	}
	return out
}

// compilePolicy builds the policy engine exactly as serve does; explain
// uses it too, so that both give the same answers.
func (f *File) compilePolicy() (*policy.Engine, error) {
	return policy.CompilePBXs(f.Policy, f.policyPBXs())
}

// pbxNames returns the configured PBX names in order.
func (f *File) pbxNames() []string {
	names := make([]string, 0, len(f.PBXs))
	for _, p := range f.PBXs {
		names = append(names, p.Name)
	}
	return names
}

// Validate reports every problem in f at once. It changes nothing and
// reads no files or environment variables.
func (f *File) Validate() error {
	var errs []error
	add := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }

	l := f.Listen
	if !l.AMI.Set() && !l.AMITLS.Set() && !l.HTTP.Set() && !l.HTTPS.Set() {
		add("listen: no listener (set ami_tls or https, or ami or http on a loopback address)")
	}
	if l.AMI.Set() && !l.AMI.Addr().IsLoopback() && !l.InsecurePlaintext {
		add("listen.ami: plaintext AMI on non-loopback %s needs insecure_plaintext: true (or use ami_tls)", l.AMI)
	}
	if l.HTTP.Set() && !l.HTTP.Addr().IsLoopback() && !l.InsecurePlaintext {
		add("listen.http: plaintext HTTP on non-loopback %s needs insecure_plaintext: true (or use https)", l.HTTP)
	}
	if l.AMITLS.Set() || l.HTTPS.Set() {
		if f.TLS.Mode == "" {
			add("tls.mode: required by listen.ami_tls and listen.https (self_signed, files or acme)")
		}
		errs = append(errs, f.TLS.validate()...)
	}

	seen := map[string]bool{}
	if len(f.PBXs) == 0 {
		add("pbxs: at least one PBX is required")
	}
	for i, p := range f.PBXs {
		where := fmt.Sprintf("pbxs[%d]", i)
		if p.Name != "" {
			where = fmt.Sprintf("pbxs[%d] (%s)", i, p.Name)
		}
		switch {
		case p.Name == "":
			add("%s: name is required", where)
		case strings.ContainsAny(p.Name, " /:\r\n\t"):
			add("%s: name may not contain spaces, '/' or ':'", where)
		case seen[p.Name]:
			add("%s: duplicate name", where)
		}
		seen[p.Name] = true
		if p.Address == "" {
			add("%s: address is required", where)
		}
		if p.Username == "" {
			add("%s: username (the proxy's manager.conf account) is required", where)
		}
		if p.Secret.IsZero() {
			add("%s: secret is required (env or file)", where)
		}
		if err := p.Secret.check(where + ".secret"); err != nil {
			errs = append(errs, err)
		}
	}
	if d := f.Proxy.DefaultPBX; d != "" && !seen[d] {
		add("proxy.default_pbx: unknown PBX %q", d)
	}

	users := map[string]bool{}
	for i, a := range f.Accounts {
		where := fmt.Sprintf("accounts[%d]", i)
		if a.Username != "" {
			where = fmt.Sprintf("accounts[%d] (%s)", i, a.Username)
		}
		if a.Username == "" {
			add("%s: username is required", where)
		}
		if k := strings.ToLower(a.Username); users[k] {
			add("%s: duplicate username (usernames are case-insensitive, as in Asterisk)", where)
		}
		users[strings.ToLower(a.Username)] = true
		if a.SecretHash == "" && a.Secret.IsZero() {
			add("%s: secret_hash or secret is required", where)
		}
		if err := a.Secret.check(where + ".secret"); err != nil {
			errs = append(errs, err)
		}
	}
	if err := f.Policy.ValidatePBXs(f.policyPBXs()); err != nil {
		errs = append(errs, fmt.Errorf("policy: %w", err))
	}
	errs = append(errs, f.Limits.validate()...)
	errs = append(errs, f.validateIdentity()...)
	switch strings.ToLower(f.Log.Level) {
	case "", "debug", "info", "warn", "error":
	default:
		add("log.level: unknown level %q", f.Log.Level)
	}
	return errors.Join(errs...)
}

// runtimeConfig is what build makes of a File.
type runtimeConfig struct {
	pbxs     []upstream.Config
	accounts []auth.Account
	engine   *policy.Engine
	limits   limiters
	identity identitySecrets // oidc and minted secrets (identity.go)
}

// limiters are the runtime objects of the limits section.
type limiters struct {
	login   *auth.LoginLimiter   // nil: login limits off
	actions *proxy.ActionLimiter // nil: no action limited
}

// build resolves secrets and compiles the parts. It reports every problem.
func (f *File) build(env func(string) (string, bool), readFile func(string) ([]byte, error)) (*runtimeConfig, error) {
	var errs []error
	rc := &runtimeConfig{}
	for _, p := range f.PBXs {
		secret, err := p.Secret.resolve(env, readFile)
		if err != nil {
			errs = append(errs, fmt.Errorf("pbxs (%s).secret: %w", p.Name, err))
		}
		rc.pbxs = append(rc.pbxs, upstream.Config{
			Name:     p.Name,
			Address:  p.Address,
			Username: p.Username,
			Secret:   upstream.Secret(secret),
			AuthMD5:  p.AuthMD5,
			TLS: upstream.TLS{
				Enabled:            p.TLS.Enabled,
				CAFile:             p.TLS.CAFile,
				ServerName:         p.TLS.ServerName,
				InsecureSkipVerify: p.TLS.InsecureSkipVerify,
			},
			PingInterval: time.Duration(p.PingInterval),
			PingTimeout:  time.Duration(p.PingTimeout),
		})
	}
	for _, a := range f.Accounts {
		acct := auth.Account{Username: a.Username, SecretHash: a.SecretHash, Groups: a.Groups, Permit: a.Permit, Deny: a.Deny}
		if !a.Secret.IsZero() {
			s, err := a.Secret.resolve(env, readFile)
			if err != nil {
				errs = append(errs, fmt.Errorf("accounts (%s).secret: %w", a.Username, err))
			}
			acct.Secret = auth.Secret(s)
		}
		rc.accounts = append(rc.accounts, acct)
	}
	for _, c := range rc.pbxs {
		if err := c.Validate(); err != nil {
			errs = append(errs, err)
		}
	}
	if _, err := auth.NewLocal(rc.accounts); err != nil {
		errs = append(errs, err)
	}
	eng, err := f.compilePolicy()
	if err != nil {
		errs = append(errs, fmt.Errorf("policy: %w", err))
	}
	rc.engine = eng
	if rc.limits.login, rc.limits.actions, err = f.Limits.build(); err != nil {
		errs = append(errs, err)
	}
	var ierrs []error
	rc.identity, ierrs = f.buildIdentitySecrets(env, readFile)
	errs = append(errs, ierrs...)
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return rc, nil
}

// configFlags parses the -config flag of a subcommand, then loads,
// validates and builds that file with the real environment and files.
func configFlags(name string, args []string, stderr io.Writer) (*File, *runtimeConfig, string, error) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", "amiproxy.yaml", "configuration file")
	if err := fs.Parse(args); err != nil {
		return nil, nil, "", err
	}
	f, err := loadConfig(*path)
	if err != nil {
		return nil, nil, *path, err
	}
	if err := f.Validate(); err != nil {
		return f, nil, *path, err
	}
	rc, err := f.build(osEnv, os.ReadFile)
	return f, rc, *path, err
}

// osEnv and os.ReadFile are the real sources; tests pass their own.
func osEnv(k string) (string, bool) { return os.LookupEnv(k) }
