package main

import (
	"fmt"
	"log/slog"
	"os"
	"reflect"
	"regexp"
	"sync"

	"github.com/amiproxy/amiproxy/auth"
	"github.com/amiproxy/amiproxy/proxy"
)

// reloader applies a changed configuration file to a running serve, on
// SIGHUP: the local accounts and the policy change at once, and every live
// session is revalidated against them (a removed user, or one left with no
// role, is told and disconnected within a second). Everything else
// (listeners, TLS, PBXs, proxy and limits settings, oidc, minted, log)
// needs a restart: a change there is logged and ignored.
//
// A reloader is safe for concurrent use; reloads are serialized.
type reloader struct {
	path     string
	env      func(string) (string, bool)
	read     func(string) ([]byte, error)
	logger   *slog.Logger
	gw       *proxy.Gateway
	chain    *auth.Chain
	hm       *proxy.HTTPManager // nil without an HTTP listener
	identity *identity          // the sign-in page's view of the policy; may be nil

	mu      sync.Mutex
	running *File // the configuration in force
}

// reload re-reads, validates and builds the configuration file and, when
// all of that succeeds, swaps the accounts and the policy. On any error
// nothing changes; the error lists every problem and holds no secret.
func (r *reloader) reload() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	f, err := loadConfig(r.path)
	if err != nil {
		// The YAML decoder quotes offending values (a secret typed in the
		// wrong place): keep its line numbers, not the values.
		return fmt.Errorf("reload: %s: %s", r.path, redactQuoted(err.Error()))
	}
	if err := f.Validate(); err != nil {
		return fmt.Errorf("reload: %s: invalid configuration (amiproxy check lists every problem):\n%w", r.path, err)
	}
	rc, err := f.build(r.env, r.read)
	if err != nil {
		return fmt.Errorf("reload: %s: %w", r.path, err)
	}
	local, err := auth.NewLocal(rc.accounts)
	if err != nil {
		return fmt.Errorf("reload: %s: %w", r.path, err)
	}
	if r.running != nil {
		if ignored := restartOnly(r.running, f); len(ignored) > 0 {
			r.logger.Warn("reload: these sections changed and need a restart; their old values stay in force", "sections", ignored)
		}
	}
	// Accounts first, then the policy: SetPolicy revalidates every live
	// session against both.
	r.chain.SetLocal(local)
	if r.hm != nil {
		r.hm.SetDigest(proxy.NewDigestAccounts(rc.accounts))
	}
	if r.identity != nil {
		r.identity.setPolicy(rc.engine)
	}
	r.gw.SetPolicy(rc.engine)
	r.running = f
	before := r.gw.Stats()
	r.logger.Info("reload: configuration applied", "path", r.path, "accounts", len(rc.accounts),
		"sessions", before.Sessions, "http_sessions", before.HTTPSessions)
	return nil
}

// restartOnly names the sections of next that differ from cur and that a
// reload does not apply.
func restartOnly(cur, next *File) []string {
	var out []string
	for _, s := range []struct {
		name string
		a, b any
	}{
		{"listen", cur.Listen, next.Listen},
		{"tls", cur.TLS, next.TLS},
		{"proxy", cur.Proxy, next.Proxy},
		{"limits", cur.Limits, next.Limits},
		{"pbxs", cur.PBXs, next.PBXs},
		{"log", cur.Log, next.Log},
		{"oidc", cur.OIDC, next.OIDC},
		{"minted", cur.Minted, next.Minted},
	} {
		if !reflect.DeepEqual(s.a, s.b) {
			out = append(out, s.name)
		}
	}
	return out
}

// handleReloads reloads on every value of sig until done closes, logging
// the outcome; a failed reload leaves the running configuration alone.
// reloaded, when set, is told each outcome (tests).
func (r *reloader) handleReloads(sig <-chan os.Signal, done <-chan struct{}, reloaded func(error)) {
	for {
		select {
		case <-done:
			return
		case <-sig:
		}
		err := r.reload()
		if err != nil {
			r.logger.Error("reload failed; the running configuration stays in force", "err", err)
		}
		if reloaded != nil {
			reloaded(err)
		}
	}
}

// quotedRE matches the backquoted values yaml.v3 puts in its errors.
var quotedRE = regexp.MustCompile("`[^`]*`")

// redactQuoted replaces every backquoted value of a decoder error.
func redactQuoted(s string) string { return quotedRE.ReplaceAllString(s, "`REDACTED`") }
