package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
)

// runRevoke is `amiproxy revoke`: an administrator (a member of
// minted.admin_groups) revokes every minted secret of a user and ends the
// user's AMI and web sessions, through the proxy's admin API. The
// administrator signs in with the device flow, as for login, unless an ID
// token is given in the environment variable AMIPROXY_ID_TOKEN or with
// --token-file (for scripts).
func runRevoke(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("revoke", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var sf serverFlags
	sf.register(fs)
	user := fs.String("user", "", "the user whose secrets and sessions to revoke")
	tokenFile := fs.String("token-file", "", "read the administrator's ID token from this file instead of signing in")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("revoke: unexpected argument %q", fs.Arg(0))
	}
	if strings.TrimSpace(*user) == "" {
		return errors.New("revoke: --user is required")
	}
	base, c, err := sf.client()
	if err != nil {
		return fmt.Errorf("revoke: %w", err)
	}
	token := os.Getenv("AMIPROXY_ID_TOKEN")
	if *tokenFile != "" {
		b, err := os.ReadFile(*tokenFile)
		if err != nil {
			return fmt.Errorf("revoke: --token-file: %w", err)
		}
		token = strings.TrimSpace(string(b))
	}
	if token == "" {
		if token, err = deviceSignIn(ctx, c, base, stderr); err != nil {
			return fmt.Errorf("revoke: %w", err)
		}
	}
	var res struct {
		User        string `json:"user"`
		Secrets     int    `json:"secrets_revoked"`
		AMISessions int    `json:"ami_sessions_ended"`
		WebSessions int    `json:"web_sessions_ended"`
	}
	if err := apiCall(ctx, c, http.MethodPost, base+"/api/v1/admin/revoke", token, map[string]string{"user": *user}, &res); err != nil {
		return fmt.Errorf("revoke: %w", err)
	}
	fmt.Fprintf(stdout, "revoked %s: %d minted secrets, %d AMI sessions, %d web sessions ended\n", res.User, res.Secrets, res.AMISessions, res.WebSessions)
	return nil
}
