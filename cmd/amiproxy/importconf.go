package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/amiproxy/amiproxy/auth"
	"github.com/amiproxy/amiproxy/internal/managerconf"
	"github.com/amiproxy/amiproxy/policy"
)

// Secret modes of import-manager-conf.
const (
	secretsBcrypt    = "bcrypt"    // secret_hash; plain Login only
	secretsEnv       = "env"       // secret: {env: AMIPROXY_SECRET_<USER>}; the file holds no secret
	secretsPlaintext = "plaintext" // secret: {value: ...}; needs -secrets plaintext
)

// runImportManagerConf reads an Asterisk manager.conf and prints an
// amiproxy configuration fragment (accounts and policy) with the same
// users, classes, eventfilters and networks. Warnings (what Asterisk
// ignores, what cannot be carried over) go to stderr and, as comments,
// to the top of the fragment.
func runImportManagerConf(_ context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("import-manager-conf", flag.ContinueOnError)
	fs.SetOutput(stderr)
	secrets := fs.String("secrets", secretsBcrypt, "how to write secrets: bcrypt (secret_hash; Challenge/MD5 logins will not work), env (secret: {env: AMIPROXY_SECRET_<USER>}; set the variables yourself) or plaintext (secret: {value: ...} in the output: keep it private)")
	cost := fs.Int("cost", 12, "bcrypt cost (10-14) for -secrets bcrypt")
	pbxs := fs.String("pbxs", "*", "comma-separated PBX names the imported roles apply to (\"*\": every PBX)")
	out := fs.String("o", "", "write the fragment to this file (mode 0600) instead of standard output")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "Usage: amiproxy import-manager-conf [-secrets bcrypt|env|plaintext] [-pbxs P,...] [-o FILE] manager.conf")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return flag.ErrHelp
	}
	switch *secrets {
	case secretsBcrypt, secretsEnv, secretsPlaintext:
	default:
		fmt.Fprintf(stderr, "amiproxy import-manager-conf: -secrets %q: want bcrypt, env or plaintext\n", *secrets)
		return flag.ErrHelp
	}
	src, err := os.ReadFile(fs.Arg(0))
	if err != nil {
		return fmt.Errorf("import-manager-conf: %w", err)
	}
	var pbxList []string
	for p := range strings.SplitSeq(*pbxs, ",") {
		if p = strings.TrimSpace(p); p != "" {
			pbxList = append(pbxList, p)
		}
	}
	doc, warns, err := importManagerConf(src, importOptions{secrets: *secrets, cost: *cost, pbxs: pbxList})
	if err != nil {
		return err
	}
	for _, w := range warns {
		fmt.Fprintln(stderr, "warning:", w)
	}
	if *out == "" {
		_, err = stdout.Write(doc)
		return err
	}
	if err := os.WriteFile(*out, doc, 0o600); err != nil {
		return fmt.Errorf("import-manager-conf: %w", err)
	}
	return nil
}

type importOptions struct {
	secrets string
	cost    int
	pbxs    []string
}

// The fragment's shape: the keys of File, accounts and policy, with
// omitempty so that it stays short and decodes strictly.
type importDoc struct {
	Accounts []importAccount `yaml:"accounts"`
	Policy   importPolicy    `yaml:"policy"`
}

type importAccount struct {
	Username   string        `yaml:"username"`
	SecretHash string        `yaml:"secret_hash,omitempty"`
	Secret     *importSecret `yaml:"secret,omitempty"`
}

type importSecret struct {
	Env   string `yaml:"env,omitempty"`
	Value string `yaml:"value,omitempty"`
}

type importPolicy struct {
	Roles []importRole        `yaml:"roles"`
	Users map[string][]string `yaml:"users"`
}

type importRole struct {
	Name         string   `yaml:"name"`
	Read         string   `yaml:"read"`
	Write        string   `yaml:"write"`
	PBXs         []string `yaml:"pbxs,flow"`
	EventFilters []string `yaml:"eventfilters,omitempty"`
	Permit       []string `yaml:"permit,omitempty,flow"`
	Deny         []string `yaml:"deny,omitempty,flow"`
}

// importManagerConf does the work of import-manager-conf: it returns the
// YAML fragment and the warnings, already in the fragment as comments.
func importManagerConf(src []byte, o importOptions) ([]byte, []string, error) {
	f, err := managerconf.Parse(src)
	if err != nil {
		return nil, nil, fmt.Errorf("import-manager-conf: %w", err)
	}
	var warns []string
	for _, w := range f.Warnings {
		warns = append(warns, w.String())
	}
	users, uw := f.Users()
	for _, w := range uw {
		warns = append(warns, w.String())
	}
	if g := f.General(); len(g) > 0 {
		warns = append(warns, generalNotes(g)...)
	}
	if len(o.pbxs) == 0 {
		o.pbxs = []string{"*"}
	}
	doc := importDoc{Policy: importPolicy{Users: map[string][]string{}}}
	md5Lost := false
	for _, u := range users {
		at := fmt.Sprintf("line %d: [%s]", u.Num, u.Name)
		if !u.HasSecret || u.Secret == "" {
			warns = append(warns, at+": no secret, so Asterisk never lets it log in over TCP; not imported")
			continue
		}
		if strings.ContainsFunc(u.Name, func(r rune) bool { return r < ' ' || r == 0x7f }) {
			warns = append(warns, at+": the name has a control character; not imported")
			continue
		}
		role := importRole{Name: u.Name, PBXs: o.pbxs}
		role.Read, warns = importClasses(at, "read", u.Read, warns)
		role.Write, warns = importClasses(at, "write", u.Write, warns)
		var unsupported bool
		role.EventFilters, unsupported, warns = importFilters(at, u.EventFilters, warns)
		if unsupported {
			role.Read = "none"
		}
		rules, err := managerconf.ParseACL(u.ACL)
		if err != nil {
			warns = append(warns, fmt.Sprintf("%s: %v; Asterisk deletes a user with an invalid ACL line: not imported", at, err))
			continue
		}
		nets := managerconf.Translate(rules)
		for _, p := range nets.Permit {
			role.Permit = append(role.Permit, p.String())
		}
		for _, p := range nets.Deny {
			role.Deny = append(role.Deny, p.String())
		}
		for _, n := range nets.Notes {
			warns = append(warns, at+": "+n)
		}
		if len(u.NamedACLs) > 0 {
			role.Permit, role.Deny = nil, []string{"0.0.0.0/0", "::/0"}
			warns = append(warns, at+": acl= names an ACL of acl.conf, which is not read; the role refuses every address until you write its permit/deny")
		}
		for _, l := range u.Setvars {
			// The variable's name only: its value may be sensitive.
			name, _, _ := strings.Cut(l.Value, "=")
			warns = append(warns, fmt.Sprintf("line %d: [%s] setvar %s is not supported by amiproxy; dropped", l.Num, u.Name, strings.TrimSpace(name)))
		}
		if u.WriteTimeout != "" {
			warns = append(warns, at+": writetimeout has no per-user equivalent (amiproxy bounds every client's queue: proxy.client_queue); dropped")
		}
		if u.AllowMultipleLogin != "" {
			warns = append(warns, at+": allowmultiplelogin is not carried over; dropped")
		}
		for _, l := range u.Other {
			warns = append(warns, fmt.Sprintf("line %d: [%s] unknown key %q ignored (Asterisk ignores it too)", l.Num, u.Name, l.Key))
		}
		// displayconnects only changes Asterisk's verbose log: amiproxy
		// audits every login anyway.

		acct := importAccount{Username: u.Name}
		switch o.secrets {
		case secretsBcrypt:
			h, err := auth.HashSecret(auth.Secret(u.Secret), o.cost)
			if err != nil {
				return nil, nil, fmt.Errorf("import-manager-conf: [%s]: %w", u.Name, err)
			}
			acct.SecretHash = h
			md5Lost = true
		case secretsEnv:
			acct.Secret = &importSecret{Env: secretEnvName(u.Name)}
		case secretsPlaintext:
			acct.Secret = &importSecret{Value: u.Secret}
		}
		doc.Accounts = append(doc.Accounts, acct)
		doc.Policy.Roles = append(doc.Policy.Roles, role)
		doc.Policy.Users[u.Name] = []string{u.Name}
	}
	if md5Lost && len(doc.Accounts) > 0 {
		warns = append(warns, "secrets are bcrypt hashes: clients that log in with Challenge/MD5 (Asterisk-Java, AsterNET) need the plaintext; use -secrets env for those accounts")
	}
	if o.secrets == secretsEnv && len(doc.Accounts) > 0 {
		var names []string
		for _, a := range doc.Accounts {
			names = append(names, a.Secret.Env)
		}
		warns = append(warns, "set these environment variables to the users' secrets before amiproxy starts: "+strings.Join(names, ", "))
	}

	var body bytes.Buffer
	enc := yaml.NewEncoder(&body)
	enc.SetIndent(2)
	if err := enc.Encode(doc); err != nil {
		return nil, nil, fmt.Errorf("import-manager-conf: %w", err)
	}
	if err := enc.Close(); err != nil {
		return nil, nil, fmt.Errorf("import-manager-conf: %w", err)
	}
	var b strings.Builder
	b.WriteString("# Imported from manager.conf by amiproxy import-manager-conf.\n")
	b.WriteString("# Merge these accounts and policy sections into your configuration,\n")
	b.WriteString("# then run: amiproxy check -config FILE\n")
	if o.secrets == secretsPlaintext {
		b.WriteString("# This file holds plaintext secrets: keep it private.\n")
	}
	for _, w := range warns {
		b.WriteString("# warning: " + strings.ReplaceAll(w, "\n", " ") + "\n")
	}
	b.Write(body.Bytes())
	return []byte(b.String()), warns, nil
}

// importClasses reads a read= or write= value as Asterisk's get_perm does
// and writes it back in amiproxy's strict syntax, warning when Asterisk's
// reading is not what the text says.
func importClasses(at, key, v string, warns []string) (string, []string) {
	c := policy.ParsePerm(v)
	out := policy.FormatClasses(c)
	if strict, err := policy.ParseClasses(v); err != nil || strict != c {
		warns = append(warns, fmt.Sprintf("%s: %s = %s: Asterisk reads this as %q (get_perm quirks); imported as %q", at, key, v, out, out))
	}
	return out, warns
}

// importFilters turns eventfilter lines into role eventfilters entries.
// unsupported is true when a filter Asterisk applies cannot be matched by
// amiproxy the same way: the caller then refuses every event rather than
// deliver more than Asterisk would.
func importFilters(at string, lines []managerconf.Line, warns []string) (out []string, unsupported bool, _ []string) {
	for _, l := range lines {
		var entry string
		if strings.Contains(l.Key, "(") {
			entry = l.Key + " = " + l.Value
		} else {
			entry = l.Value
			// A legacy value that reads as a whole line cannot be written.
			if v := strings.TrimLeft(entry, " \t"); len(v) >= 11 && strings.EqualFold(v[:11], "eventfilter") {
				if r := strings.TrimLeft(v[11:], " \t"); strings.HasPrefix(r, "(") || strings.HasPrefix(r, "=") {
					unsupported = true
					warns = append(warns, fmt.Sprintf("line %d: eventfilter %q cannot be written in amiproxy's syntax; the role gets read: none until you rewrite it", l.Num, l.Value))
					continue
				}
			}
		}
		_, err := policy.ParseFilterLine(entry)
		switch {
		case err == nil:
			out = append(out, entry)
		case errors.Is(err, policy.ErrFilterUnsupported):
			unsupported = true
			warns = append(warns, fmt.Sprintf("line %d: eventfilter %q cannot be matched exactly as glibc does; the role gets read: none until you rewrite it", l.Num, entry))
		default:
			warns = append(warns, fmt.Sprintf("line %d: eventfilter %q is refused by Asterisk too (%v); dropped", l.Num, entry, err))
		}
	}
	return out, unsupported, warns
}

// secretEnvName is the environment variable for a user's secret:
// AMIPROXY_SECRET_ and the name in uppercase, other bytes than letters and
// digits as "_".
func secretEnvName(user string) string {
	b := []byte("AMIPROXY_SECRET_" + strings.ToUpper(user))
	for i := len("AMIPROXY_SECRET_"); i < len(b); i++ {
		if c := b[i]; !('A' <= c && c <= 'Z' || '0' <= c && c <= '9') {
			b[i] = '_'
		}
	}
	return string(b)
}

// generalNotes says where the [general] keys that matter go.
func generalNotes(lines []managerconf.Line) []string {
	where := map[string]string{
		"enabled":            "listen.ami / listen.ami_tls",
		"port":               "listen.ami",
		"bindaddr":           "listen.ami",
		"tlsenable":          "listen.ami_tls and tls",
		"tlsbindaddr":        "listen.ami_tls",
		"webenabled":         "listen.http / listen.https",
		"authtimeout":        "proxy.handshake_timeout",
		"authlimit":          "proxy.max_unauthenticated",
		"httptimeout":        "proxy.http_timeout",
		"allowmultiplelogin": "(not carried over)",
		"timestampevents":    "(the PBX's own setting: events pass through unchanged)",
	}
	var out []string
	for _, l := range lines {
		if dst, ok := where[strings.ToLower(l.Key)]; ok {
			out = append(out, fmt.Sprintf("line %d: [general] %s = %s: not imported; in amiproxy see %s", l.Num, l.Key, l.Value, dst))
		}
	}
	return out
}
