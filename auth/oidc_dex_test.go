package auth

import (
	"context"
	"errors"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/amiproxy/amiproxy/internal/dextest"
)

// These tests run a real Dex (internal/dextest) on loopback.

func newDexOIDC(t *testing.T, d *dextest.Dex, mod func(*OIDCConfig)) *OIDC {
	t.Helper()
	cfg := OIDCConfig{Issuer: d.Issuer(), ClientID: d.ClientID}
	if mod != nil {
		mod(&cfg)
	}
	o, err := NewOIDC(context.Background(), cfg)
	if err != nil {
		t.Fatalf("NewOIDC: %v", err)
	}
	if err := o.DiscoveryError(); err != nil {
		t.Fatalf("discovery against a running Dex: %v", err)
	}
	return o
}

func TestOIDCDexTokens(t *testing.T) {
	d := dextest.Start(t, dextest.Options{})
	o := newDexOIDC(t, d, func(c *OIDCConfig) { c.Audiences = []string{d.CLIClientID} })
	for _, u := range []dextest.User{dextest.Admin, dextest.Operator, dextest.Nobody} {
		t.Run(u.Username, func(t *testing.T) {
			raw := d.PasswordToken(t, u.Username, u.Password)
			p, err := o.Verify(context.Background(), raw)
			if err != nil {
				t.Fatalf("Verify(Dex token of %s): %v", u.Username, err)
			}
			if p.Username != u.Username || p.Method != MethodOIDC || !strings.HasPrefix(p.Subject, "oidc:") || len(p.Subject) < 10 {
				t.Errorf("Username, Method, Subject = %q, %q, %q; want %s, oidc, oidc:<sub>", p.Username, p.Method, p.Subject, u.Username)
			}
			if !slices.Equal(p.Groups, u.Groups) && (len(p.Groups) != 0 || len(u.Groups) != 0) {
				t.Errorf("Groups = %v, want %v", p.Groups, u.Groups)
			}
			if p.Claims["email"] != u.Email || p.Claims["iss"] != d.Issuer() {
				t.Errorf("Claims email, iss = %v, %v", p.Claims["email"], p.Claims["iss"])
			}
			if until := time.Until(p.Expires); until < 5*time.Minute || until > 11*time.Minute {
				t.Errorf("Expires in %v, want about 10 minutes", until)
			}
			// The same token as a Login secret, and as a bearer token.
			if _, err := o.Authenticate(context.Background(), Credentials{Username: strings.ToUpper(u.Username), Secret: Secret(raw)}); err != nil {
				t.Errorf("Login with the token: %v", err)
			}
			if _, err := o.Authenticate(context.Background(), Credentials{Username: "operator2", Secret: Secret(raw)}); !errors.Is(err, ErrAuthFailed) {
				t.Errorf("Login as another user with the token = %v, want ErrAuthFailed", err)
			}
		})
	}
	t.Run("public CLI client", func(t *testing.T) {
		tok, err := d.PasswordGrant(context.Background(), d.CLIClientID, "operator", dextest.Password, dextest.DefaultScopes...)
		if err != nil {
			t.Skipf("Dex refuses the password grant for the public client: %v", err)
		}
		if _, err := o.Verify(context.Background(), tok.IDToken); err != nil {
			t.Errorf("Verify(CLI client token) with Audiences [amiproxy-cli]: %v", err)
		}
		strict := newDexOIDC(t, d, nil)
		if _, err := strict.Verify(context.Background(), tok.IDToken); !errors.Is(err, ErrAuthFailed) || !strings.Contains(err.Error(), "audience") {
			t.Errorf("Verify(CLI client token) without Audiences = %v, want an audience failure", err)
		}
	})
	t.Run("no profile scope, no username", func(t *testing.T) {
		raw := d.PasswordToken(t, "admin", dextest.Password, "openid", "groups")
		if _, err := o.Verify(context.Background(), raw); err == nil || !strings.Contains(err.Error(), "username claim") {
			t.Errorf("Verify(token without preferred_username) = %v, want a username claim failure", err)
		}
	})
	t.Run("other Dex", func(t *testing.T) {
		other := dextest.Start(t, dextest.Options{})
		raw := other.PasswordToken(t, "admin", dextest.Password)
		_, err := o.Verify(context.Background(), raw)
		if !errors.Is(err, ErrAuthFailed) {
			t.Fatalf("Verify(token of another Dex) = %v, want ErrAuthFailed", err)
		}
		assertNoToken(t, err.Error(), raw)
	})
}

// TestOIDCDexExpiry: a token verified (and cached) while valid is refused
// from its exp on.
func TestOIDCDexExpiry(t *testing.T) {
	d := dextest.Start(t, dextest.Options{IDTokenExpiry: 4 * time.Second})
	o := newDexOIDC(t, d, nil)
	raw := d.PasswordToken(t, "admin", dextest.Password)
	p, err := o.Verify(context.Background(), raw)
	if err != nil {
		if errors.Is(err, ErrExpired) {
			t.Skipf("the machine is too slow for a 4 s token: %v", err)
		}
		t.Fatalf("Verify(fresh token): %v", err)
	}
	if o.cache.Len() != 1 {
		t.Fatalf("cache holds %d tokens, want 1", o.cache.Len())
	}
	// Wait until exp has passed, then ask again: the cached entry must
	// not be used.
	for !time.Now().After(p.Expires) {
		time.Sleep(time.Until(p.Expires) + 10*time.Millisecond)
	}
	_, err = o.Verify(context.Background(), raw)
	if !errors.Is(err, ErrExpired) || !errors.Is(err, ErrAuthFailed) {
		t.Fatalf("Verify after exp = %v, want ErrExpired", err)
	}
	assertNoToken(t, err.Error(), raw)
}

// TestOIDCDexDownAtStart: the proxy starts before its IdP; tokens work
// once Dex is up and the retry interval has passed.
func TestOIDCDexDownAtStart(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	issuer := "http://127.0.0.1:" + strconv.Itoa(port) + "/dex"
	var offset atomic.Int64
	now := func() time.Time { return time.Now().Add(time.Duration(offset.Load())) }
	o, err := NewOIDC(context.Background(), OIDCConfig{Issuer: issuer, ClientID: dextest.WebClientID, Now: now})
	if err != nil {
		t.Fatalf("NewOIDC with Dex down: %v", err)
	}
	if o.DiscoveryError() == nil {
		t.Fatal("DiscoveryError() = nil with nothing listening")
	}
	d := dextest.Start(t, dextest.Options{Port: port})
	if d.Issuer() != issuer {
		t.Fatalf("Dex issuer %s, want %s", d.Issuer(), issuer)
	}
	raw := d.PasswordToken(t, "operator", dextest.Password)
	if _, err := o.Verify(context.Background(), raw); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Verify before the retry interval = %v, want ErrUnavailable", err)
	}
	offset.Store(int64(rediscoverInterval))
	p, err := o.Verify(context.Background(), raw)
	if err != nil {
		t.Fatalf("Verify once Dex is up: %v", err)
	}
	if p.Username != "operator" || !slices.Equal(p.Groups, []string{"ami-operators"}) {
		t.Errorf("Principal %q %v, want operator [ami-operators]", p.Username, p.Groups)
	}
	ep, err := o.Endpoint()
	if err != nil || ep.AuthURL != issuer+"/auth" || ep.TokenURL != issuer+"/token" || ep.DeviceAuthURL != issuer+"/device/code" {
		t.Errorf("Endpoint() = %+v, %v", ep, err)
	}
}
