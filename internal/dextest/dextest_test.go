package dextest

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"
)

func claimsOf(t *testing.T, jwt string) map[string]any {
	t.Helper()
	parts := strings.Split(jwt, ".")
	if len(parts) != 3 {
		t.Fatalf("id token has %d segments, want 3", len(parts))
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatalf("decode payload: %v", err)
	}
	var c map[string]any
	if err := json.Unmarshal(b, &c); err != nil {
		t.Fatalf("payload: %v", err)
	}
	return c
}

// TestStartAndPasswordToken checks the documented users, claims and
// expiry against a real Dex.
func TestStartAndPasswordToken(t *testing.T) {
	d := Start(t, Options{IDTokenExpiry: 42 * time.Second})
	if !strings.HasPrefix(d.Issuer(), "http://127.0.0.1:") || !strings.HasSuffix(d.Issuer(), "/dex") {
		t.Fatalf("Issuer() = %q, want http://127.0.0.1:<port>/dex", d.Issuer())
	}
	for _, u := range []User{Admin, Operator, Nobody} {
		t.Run(u.Username, func(t *testing.T) {
			c := claimsOf(t, d.PasswordToken(t, u.Username, u.Password))
			if c["iss"] != d.Issuer() || c["aud"] != WebClientID {
				t.Errorf("iss, aud = %v, %v; want %s, %s", c["iss"], c["aud"], d.Issuer(), WebClientID)
			}
			if c["preferred_username"] != u.Username || c["email"] != u.Email {
				t.Errorf("preferred_username, email = %v, %v; want %s, %s", c["preferred_username"], c["email"], u.Username, u.Email)
			}
			var groups []string
			if g, ok := c["groups"].([]any); ok {
				for _, x := range g {
					groups = append(groups, x.(string))
				}
			}
			if !slices.Equal(groups, u.Groups) {
				t.Errorf("groups = %v, want %v", c["groups"], u.Groups)
			}
			exp, iat := c["exp"].(float64), c["iat"].(float64)
			if exp-iat != 42 {
				t.Errorf("exp-iat = %v s, want 42", exp-iat)
			}
		})
	}
	if _, err := d.PasswordGrant(context.Background(), d.ClientID, "admin", "wrong"); err == nil {
		t.Error("password grant with a wrong password succeeded")
	}
	// Without the profile scope there is no preferred_username.
	c := claimsOf(t, d.PasswordToken(t, "admin@example.com", Password, "openid"))
	if _, ok := c["preferred_username"]; ok {
		t.Errorf("scope openid alone gave preferred_username %v", c["preferred_username"])
	}
}

// TestRedirectURIs: the web client accepts exactly Options.RedirectURIs.
func TestRedirectURIs(t *testing.T) {
	d := Start(t, Options{RedirectURIs: []string{"http://127.0.0.1:9/cb"}, CLIRedirectURIs: []string{"http://127.0.0.1:10/cli"}})
	// Follow Dex's own redirects (to the password connector), stop at
	// one that leaves Dex.
	c := &http.Client{Timeout: 10 * time.Second, CheckRedirect: func(r *http.Request, _ []*http.Request) error {
		if r.URL.Host != d.Addr() {
			return http.ErrUseLastResponse
		}
		return nil
	}}
	status := func(client, redirect string) int {
		q := url.Values{"client_id": {client}, "redirect_uri": {redirect}, "response_type": {"code"}, "scope": {"openid"}, "state": {"s"}}
		resp, err := c.Get(d.Issuer() + "/auth?" + q.Encode())
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	for _, tc := range []struct {
		client, redirect string
		ok               bool
	}{
		{WebClientID, "http://127.0.0.1:9/cb", true},
		{WebClientID, "http://127.0.0.1/callback", false},
		{WebClientID, "http://127.0.0.1:9/other", false},
		{CLIClientID, "http://127.0.0.1:10/cli", true},
	} {
		got := status(tc.client, tc.redirect)
		if ok := got < 400; ok != tc.ok {
			t.Errorf("auth request for %s with redirect %s: status %d, want ok=%v", tc.client, tc.redirect, got, tc.ok)
		}
	}
}
