package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"slices"
	"strings"

	"github.com/amiproxy/amiproxy/policy"
	"github.com/amiproxy/amiproxy/rawman"
)

// errExplainDenied is what explain returns when the decision is deny, so
// that the exit status is 1.
var errExplainDenied = errors.New("explain: denied")

// listFlag is a repeatable string flag.
type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ", ") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

// runExplain prints what the policy of a configuration decides for one
// user, client address, PBX and action, with the rule behind each step. It
// loads and validates the file with the loader serve uses and compiles the
// policy the same way (File.compilePolicy), then asks the questions the
// gateway asks, in its order:
//
//  1. with --addr: Subject(user, nil).AllowsAddr, the check before
//     authentication (roles bound to the username only);
//  2. SubjectFor(user, groups, claims, addr), then with --addr its
//     AllowsAddr, the check after authentication (every role);
//  3. MayUse(pbx);
//  4. with --action: Decide(pbx, action), the action framed by
//     rawman.Reader as a client's would be, without its Server header (the
//     gateway removes it before deciding).
//
// For a local account, the username takes its configured spelling and,
// without --group, the account's groups, as authentication reports them.
// The first denial decides. It returns nil when everything asked is
// allowed and errExplainDenied otherwise (exit status 1); errors loading
// the configuration exit with status 1 too, with their message.
// Secrets are not resolved: explain needs no PBX or account secret.
func runExplain(_ context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("explain", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", "amiproxy.yaml", "configuration file")
	user := fs.String("user", "", "username, as authentication reports it (required)")
	pbx := fs.String("pbx", "", "the PBX the action is for (default: proxy.default_pbx, else the first PBX granted)")
	addr := fs.String("addr", "", "client IP address, to check the roles' network rules")
	act := fs.String("action", "", "action name, e.g. Originate (without it, only the network and PBX are checked)")
	var groups, claims, headers listFlag
	fs.Var(&groups, "group", "identity group (repeatable)")
	fs.Var(&claims, "claim", "identity claim NAME=VALUE, for rule templates (repeatable)")
	fs.Var(&headers, "header", "action header 'Key: Value' (repeatable)")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "Usage: amiproxy explain -config FILE --user U [--group G]... [--claim k=v]... [--addr IP] [--pbx P] [--action A [--header 'K: V']...]")
		fmt.Fprintln(stderr, "Exit status: 0 allow, 1 deny (or an unusable configuration), 2 bad flags.")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	// Bad flags exit with status 2, as flag errors do; main prints no
	// message for them, so badFlag does.
	badFlag := func(format string, a ...any) error {
		msg := fmt.Sprintf(format, a...)
		fmt.Fprintln(stderr, "amiproxy explain:", msg)
		return fmt.Errorf("explain: %s: %w", msg, flag.ErrHelp)
	}
	if fs.NArg() > 0 {
		return badFlag("unexpected argument %q", fs.Arg(0))
	}
	if *user == "" {
		return badFlag("--user is required")
	}
	id := policy.Identity{Username: *user, Groups: groups}
	for _, c := range claims {
		k, v, ok := strings.Cut(c, "=")
		if !ok || k == "" {
			return badFlag("--claim %q: want NAME=VALUE", c)
		}
		if id.Claims == nil {
			id.Claims = map[string]any{}
		}
		id.Claims[k] = v
	}
	if *addr != "" {
		a, err := netip.ParseAddr(*addr)
		if err != nil {
			return badFlag("--addr %q: want an IP address", *addr)
		}
		id.Addr = a
	}
	var msg rawman.Message
	if *act != "" {
		m, err := explainMessage(*act, headers)
		if err != nil {
			return badFlag("%v", err)
		}
		msg = m
	} else if len(headers) > 0 {
		return badFlag("--header needs --action")
	}

	f, err := loadConfig(*path)
	if err != nil {
		return fmt.Errorf("explain: %w", err)
	}
	if err := f.Validate(); err != nil {
		return fmt.Errorf("explain: %s: invalid configuration (run amiproxy check): %w", *path, err)
	}
	eng, err := f.compilePolicy()
	if err != nil {
		return fmt.Errorf("explain: %w", err)
	}
	return explain(stdout, f, eng, id, *pbx, msg, *act != "")
}

// explainMessage frames the action as the native AMI door would read it.
func explainMessage(action string, headers []string) (rawman.Message, error) {
	var b strings.Builder
	b.WriteString("Action: " + action + "\r\n")
	for _, h := range headers {
		if strings.ContainsAny(h, "\r\n") || !strings.Contains(h, ":") {
			return rawman.Message{}, fmt.Errorf("--header %q: want one 'Key: Value' line", h)
		}
		b.WriteString(h + "\r\n")
	}
	if strings.ContainsAny(action, "\r\n") {
		return rawman.Message{}, fmt.Errorf("--action %q: one line only", action)
	}
	b.WriteString("\r\n")
	m, err := rawman.NewReader(strings.NewReader(b.String())).ReadMessage()
	if err != nil {
		return rawman.Message{}, fmt.Errorf("the action as a client would send it: %w", err)
	}
	if _, ok := m.Lookup("Server"); ok { // the gateway strips it before Decide
		m = m.Clone()
		m.Del("Server")
	}
	return m, nil
}

// explain asks the engine and prints the answers.
func explain(w io.Writer, f *File, eng *policy.Engine, id policy.Identity, pbx string, msg rawman.Message, withAction bool) error {
	// A local account authenticates as its configured name, with its
	// configured groups, as auth.Local reports them to the gateway.
	typed := id.Username
	i := slices.IndexFunc(f.Accounts, func(a Account) bool { return strings.EqualFold(a.Username, id.Username) })
	groupsFrom := ""
	if i >= 0 {
		id.Username = f.Accounts[i].Username
		if id.Groups == nil && len(f.Accounts[i].Groups) > 0 {
			id.Groups = f.Accounts[i].Groups
			groupsFrom = " (from accounts)"
		}
	}
	subj := eng.SubjectFor(id)
	fmt.Fprintf(w, "user:      %s\n", id.Username)
	if len(id.Groups) > 0 {
		fmt.Fprintf(w, "groups:    %s%s\n", strings.Join(id.Groups, ", "), groupsFrom)
	}
	if roles := subj.Roles(); len(roles) > 0 {
		fmt.Fprintf(w, "roles:     %s\n", strings.Join(roles, ", "))
	} else {
		fmt.Fprintf(w, "roles:     none (every decision denies)\n")
	}
	if len(id.Claims) > 0 {
		var names []string
		for k := range id.Claims {
			names = append(names, k)
		}
		slices.Sort(names)
		var kv []string
		for _, k := range names {
			v, _ := subj.Claim(k)
			kv = append(kv, k+"="+v)
		}
		fmt.Fprintf(w, "claims:    %s\n", strings.Join(kv, ", "))
	}
	if i < 0 {
		fmt.Fprintf(w, "note:      no local account %q; the user must sign in another way (give its --group flags)\n", id.Username)
	}

	denied := false
	step := func(label string, d policy.Decision) {
		fmt.Fprintf(w, "%-10s %s\n", label+":", d)
		if !d.Allowed() {
			denied = true
		}
	}
	if id.Addr.IsValid() {
		step("network", eng.Subject(typed, nil).AllowsAddr(id.Addr))
		fmt.Fprintf(w, "           (before login: the roles bound to the username)\n")
		step("network", subj.AllowsAddr(id.Addr))
		fmt.Fprintf(w, "           (after login: every role)\n")
	}
	if pbx == "" {
		granted := subj.PBXs()
		switch {
		case f.Proxy.DefaultPBX != "" && slices.Contains(granted, f.Proxy.DefaultPBX):
			pbx = f.Proxy.DefaultPBX
		case len(granted) > 0:
			pbx = granted[0]
		case f.Proxy.DefaultPBX != "":
			pbx = f.Proxy.DefaultPBX
		case len(f.PBXs) > 0:
			pbx = f.PBXs[0].Name
		}
	}
	fmt.Fprintf(w, "pbx:       %s\n", pbx)
	step("use pbx", subj.MayUse(pbx))
	if withAction {
		fmt.Fprintf(w, "action:    %s\n", strings.ReplaceAll(strings.TrimRight(msg.String(), "\r\n"), "\r\n", " | "))
		d := subj.Decide(pbx, msg)
		step("decide", d)
		if !d.Allowed() {
			fmt.Fprintf(w, "client:    Response: Error, Message: %s\n", d.Reason)
		}
	}
	if denied {
		fmt.Fprintln(w, "result:    deny")
		return errExplainDenied
	}
	fmt.Fprintln(w, "result:    allow")
	return nil
}
