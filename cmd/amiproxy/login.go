package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/oauth2"
)

// cliConfig is the proxy's answer at /api/v1/login-config (auth.WebCLI).
type cliConfig struct {
	Issuer        string   `json:"issuer"`
	ClientID      string   `json:"client_id"`
	Scopes        []string `json:"scopes"`
	DeviceAuthURL string   `json:"device_authorization_endpoint"`
	TokenURL      string   `json:"token_endpoint"`
}

// mintedSecret is the proxy's answer to POST /api/v1/secrets
// (auth.MintResult).
type mintedSecret struct {
	ID       string    `json:"id"`
	Username string    `json:"username"`
	Secret   string    `json:"secret"`
	Expires  time.Time `json:"expires"`
	Label    string    `json:"label"`
}

// maxAPIBody bounds what the CLI reads from the proxy.
const maxAPIBody = 1 << 20

// serverFlags are the flags shared by login and revoke.
type serverFlags struct {
	server, cacert string
}

func (s *serverFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&s.server, "server", "", "the proxy's HTTPS listener, e.g. https://ami.example.com:8089")
	fs.StringVar(&s.cacert, "cacert", "", "PEM file with extra CA certificates to trust (for the proxy and the identity provider)")
}

// client returns the server's base URL and an HTTP client trusting the
// system roots plus --cacert.
func (s *serverFlags) client() (string, *http.Client, error) {
	u, err := url.Parse(s.server)
	if err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
		return "", nil, fmt.Errorf("--server %q: want https://host[:port]", s.server)
	}
	if u.Scheme == "http" && !isLoopbackHost(u.Hostname()) {
		return "", nil, fmt.Errorf("--server %q: plain http is only allowed to a loopback address (a minted secret would cross the network in clear text)", s.server)
	}
	pool, err := x509.SystemCertPool()
	if err != nil || pool == nil {
		pool = x509.NewCertPool()
	}
	if s.cacert != "" {
		pem, err := os.ReadFile(s.cacert)
		if err != nil {
			return "", nil, fmt.Errorf("--cacert: %w", err)
		}
		if !pool.AppendCertsFromPEM(pem) {
			return "", nil, fmt.Errorf("--cacert %s: no PEM certificate found", s.cacert)
		}
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	return u.Scheme + "://" + u.Host, &http.Client{Transport: tr, Timeout: 30 * time.Second}, nil
}

func isLoopbackHost(h string) bool {
	return h == "localhost" || strings.HasPrefix(h, "127.") || h == "::1"
}

// apiCall sends a JSON request to the proxy and decodes a JSON answer into
// out; a non-2xx answer is an error carrying the proxy's message.
func apiCall(ctx context.Context, c *http.Client, method, u, bearer string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		return err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxAPIBody))
	if err != nil {
		return fmt.Errorf("%s %s: read answer: %w", method, req.URL.Path, err)
	}
	if resp.StatusCode/100 != 2 {
		var e struct {
			Error string `json:"error"`
		}
		if json.Unmarshal(b, &e) == nil && e.Error != "" {
			return fmt.Errorf("%s %s: %s: %s", method, req.URL.Path, resp.Status, e.Error)
		}
		return fmt.Errorf("%s %s: %s", method, req.URL.Path, resp.Status)
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			return fmt.Errorf("%s %s: bad answer: %w", method, req.URL.Path, err)
		}
	}
	return nil
}

// deviceSignIn runs the OAuth 2.0 device authorization grant with the
// parameters the proxy publishes and returns the ID token. It tells the
// user what to open on stderr.
func deviceSignIn(ctx context.Context, c *http.Client, base string, stderr io.Writer) (string, error) {
	var lc cliConfig
	if err := apiCall(ctx, c, http.MethodGet, base+"/api/v1/login-config", "", nil, &lc); err != nil {
		return "", fmt.Errorf("login config: %w", err)
	}
	if lc.ClientID == "" || lc.DeviceAuthURL == "" || lc.TokenURL == "" {
		return "", errors.New("login config: the proxy publishes no device flow (oidc.cli_client_id and the provider's device endpoint are needed)")
	}
	oc := oauth2.Config{ClientID: lc.ClientID, Scopes: lc.Scopes,
		Endpoint: oauth2.Endpoint{DeviceAuthURL: lc.DeviceAuthURL, TokenURL: lc.TokenURL}}
	octx := context.WithValue(ctx, oauth2.HTTPClient, c)
	da, err := oc.DeviceAuth(octx)
	if err != nil {
		return "", fmt.Errorf("device authorization at %s: %w", lc.DeviceAuthURL, err)
	}
	fmt.Fprintf(stderr, "To sign in, open %s and enter the code %s\n", da.VerificationURI, da.UserCode)
	if da.VerificationURIComplete != "" {
		fmt.Fprintf(stderr, "(or open %s)\n", da.VerificationURIComplete)
	}
	fmt.Fprintln(stderr, "Waiting for you to sign in...")
	tok, err := oc.DeviceAccessToken(octx, da)
	if err != nil {
		return "", fmt.Errorf("device sign-in: %w", err)
	}
	raw, _ := tok.Extra("id_token").(string)
	if raw == "" {
		return "", errors.New("device sign-in: the identity provider returned no ID token (is the openid scope granted?)")
	}
	return raw, nil
}

// runLogin is `amiproxy login`: sign in with the device flow, then mint a
// short-lived AMI secret and print it (or write it to --out).
func runLogin(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("login", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var sf serverFlags
	sf.register(fs)
	out := fs.String("out", "", "write the username and secret to this file (mode 0600) instead of standard output")
	ttl := fs.Duration("ttl", 0, "lifetime of the secret (default: the proxy's minted.default_ttl)")
	label := fs.String("label", "", "a label to recognise the secret by on the sign-in page")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("login: unexpected argument %q", fs.Arg(0))
	}
	if *ttl < 0 {
		return errors.New("login: --ttl must be positive")
	}
	base, c, err := sf.client()
	if err != nil {
		return fmt.Errorf("login: %w", err)
	}
	idToken, err := deviceSignIn(ctx, c, base, stderr)
	if err != nil {
		return fmt.Errorf("login: %w", err)
	}
	req := struct {
		TTL   string `json:"ttl,omitempty"`
		Label string `json:"label,omitempty"`
	}{Label: *label}
	if *ttl > 0 {
		req.TTL = ttl.String()
	}
	var m mintedSecret
	if err := apiCall(ctx, c, http.MethodPost, base+"/api/v1/secrets", idToken, req, &m); err != nil {
		return fmt.Errorf("login: mint: %w", err)
	}
	text := fmt.Sprintf("Username: %s\nSecret: %s\nExpires: %s\nID: %s\n", m.Username, m.Secret, m.Expires.UTC().Format(time.RFC3339), m.ID)
	if *out == "" {
		_, err := io.WriteString(stdout, text)
		return err
	}
	if err := writePrivate(*out, []byte(text)); err != nil {
		return fmt.Errorf("login: --out: %w", err)
	}
	fmt.Fprintf(stderr, "Wrote username and secret for %s to %s (expires %s)\n", m.Username, *out, m.Expires.UTC().Format(time.RFC3339))
	return nil
}

// writePrivate writes data to path with mode 0600, replacing the file
// atomically, so the secret is never readable by others even for a moment.
func writePrivate(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".amiproxy-login-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // after a successful rename this fails harmlessly
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
