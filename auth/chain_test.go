package auth

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/amiproxy/amiproxy/internal/dextest"
	"golang.org/x/crypto/bcrypt"
)

// stubMinted is a SecretAuthenticator that accepts one secret and records
// what it was asked; the real Minter is tested with its own files.
type stubMinted struct {
	mu        sync.Mutex
	auths     []Credentials
	validated []Principal
	valErr    error
}

const stubSecret = "minted-ABCDEFGH"

func (s *stubMinted) Authenticate(ctx context.Context, c Credentials) (Principal, error) {
	s.mu.Lock()
	s.auths = append(s.auths, c)
	s.mu.Unlock()
	if c.Secret != stubSecret || isMD5(c.AuthType) {
		return failed(errors.New("minted: wrong secret"))
	}
	return Principal{Subject: "minted:" + c.Username, Username: c.Username, Method: "minted", SecretID: "s1"}, nil
}

func (s *stubMinted) Validate(ctx context.Context, p Principal) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.validated = append(s.validated, p)
	return s.valErr
}

func (s *stubMinted) calls() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.auths)
}

// TestChainRouting runs the Chain over local accounts, a real Dex and a
// stub minted authenticator.
func TestChainRouting(t *testing.T) {
	d := dextest.Start(t, dextest.Options{})
	o := newDexOIDC(t, d, nil)
	local := testLocal(t) // accounts admin, Svc, ops; Dex also has an "admin"
	var bcrypts int
	var mu sync.Mutex
	local.compare = func(hash, secret []byte) error {
		mu.Lock()
		bcrypts++
		mu.Unlock()
		return bcrypt.CompareHashAndPassword(hash, secret)
	}
	minted := &stubMinted{}
	clock := time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)
	c := NewChain(ChainConfig{Local: local, OIDC: o, Minted: minted, Now: func() time.Time { return clock }})

	adminJWT := d.PasswordToken(t, "admin", dextest.Password)
	operatorJWT := d.PasswordToken(t, "operator", dextest.Password)
	tests := []struct {
		name        string
		c           Credentials
		wantSubject string // "" = failure
		wantMethod  string
		wantMinted  int // calls to minted
		wantBcrypt  int
	}{
		{"local password", Credentials{Username: "admin", Secret: adminPass}, "local:admin", MethodPassword, 0, 1},
		{"local MD5", Credentials{Username: "svc", AuthType: "MD5", Challenge: "7", Key: md5Key("7", svcPass)}, "local:Svc", MethodMD5, 0, 0},
		{"local wrong secret", Credentials{Username: "admin", Secret: "nope"}, "", "", 0, 1},
		// A token for Dex's "admin" cannot open the local admin account.
		{"local name with a JWT secret", Credentials{Username: "admin", Secret: Secret(adminJWT)}, "", "", 0, 1},
		{"JWT login", Credentials{Username: "operator", Secret: Secret(operatorJWT)}, "oidc:", MethodOIDC, 0, 0},
		{"JWT login, wrong username", Credentials{Username: "nobody", Secret: Secret(operatorJWT)}, "", "", 0, 1},
		{"bearer token", Credentials{Token: Secret(operatorJWT)}, "oidc:", MethodOIDC, 0, 0},
		{"bearer token for a local name", Credentials{Token: Secret(adminJWT)}, "oidc:", MethodOIDC, 0, 0},
		{"bad bearer token", Credentials{Token: "not-a-jwt"}, "", "", 0, 0},
		{"minted", Credentials{Username: "carol", Secret: stubSecret}, "minted:carol", "minted", 1, 0},
		{"minted wrong secret", Credentials{Username: "carol", Secret: "guess"}, "", "", 1, 1},
		{"minted MD5", Credentials{Username: "carol", AuthType: "MD5", Challenge: "1", Key: "k"}, "", "", 1, 0},
		{"empty username", Credentials{Secret: "x"}, "", "", 1, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := minted.calls()
			mu.Lock()
			bcrypts = 0
			mu.Unlock()
			p, err := c.Authenticate(context.Background(), tc.c)
			if tc.wantSubject == "" {
				if err == nil || !errors.Is(err, ErrAuthFailed) {
					t.Fatalf("Authenticate = %+v, %v; want ErrAuthFailed", p, err)
				}
				assertNoToken(t, err.Error(), tc.c.Secret.Reveal())
				assertNoToken(t, err.Error(), tc.c.Token.Reveal())
			} else {
				if err != nil {
					t.Fatalf("Authenticate: %v", err)
				}
				if !strings.HasPrefix(p.Subject, tc.wantSubject) || p.Method != tc.wantMethod || !p.AuthTime.Equal(clock) {
					t.Errorf("Subject, Method, AuthTime = %q, %q, %v; want %s..., %s, %v", p.Subject, p.Method, p.AuthTime, tc.wantSubject, tc.wantMethod, clock)
				}
			}
			if got := minted.calls() - before; got != tc.wantMinted {
				t.Errorf("minted authenticator called %d times, want %d", got, tc.wantMinted)
			}
			mu.Lock()
			defer mu.Unlock()
			if bcrypts != tc.wantBcrypt {
				t.Errorf("%d bcrypt comparisons, want %d", bcrypts, tc.wantBcrypt)
			}
		})
	}
}

func TestChainWithout(t *testing.T) {
	local := testLocal(t)
	ti := newTestIssuer(t)
	raw := ti.token(t, ti.claims(time.Now()))
	t.Run("no OIDC", func(t *testing.T) {
		c := NewChain(ChainConfig{Local: local, Minted: &stubMinted{}})
		for _, cr := range []Credentials{{Token: Secret(raw)}, {Username: "alice", Secret: Secret(raw)}} {
			_, err := c.Authenticate(context.Background(), cr)
			if !errors.Is(err, ErrAuthFailed) || !strings.Contains(err.Error(), "OIDC is not configured") {
				t.Errorf("Authenticate = %v, want ErrAuthFailed naming the missing OIDC", err)
			}
		}
	})
	t.Run("no minted", func(t *testing.T) {
		c := NewChain(ChainConfig{Local: local})
		_, err := c.Authenticate(context.Background(), Credentials{Username: "carol", Secret: "x"})
		if !errors.Is(err, ErrAuthFailed) || !strings.Contains(err.Error(), "unknown username") {
			t.Errorf("Authenticate = %v, want ErrAuthFailed naming the unknown username", err)
		}
		if p, err := c.Authenticate(context.Background(), Credentials{Username: "svc", Secret: svcPass}); err != nil || p.Username != "Svc" {
			t.Errorf("local Login = %q, %v", p.Username, err)
		}
	})
	t.Run("nothing", func(t *testing.T) {
		c := NewChain(ChainConfig{})
		if _, err := c.Authenticate(context.Background(), Credentials{Username: "admin", Secret: adminPass}); !errors.Is(err, ErrAuthFailed) {
			t.Errorf("Authenticate on an empty Chain = %v, want ErrAuthFailed", err)
		}
	})
	t.Run("done context", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		c := NewChain(ChainConfig{Local: local})
		if _, err := c.Authenticate(ctx, Credentials{Username: "svc", Secret: svcPass}); !errors.Is(err, context.Canceled) || !errors.Is(err, ErrAuthFailed) {
			t.Errorf("Authenticate with a done context = %v", err)
		}
	})
}

func TestChainValidate(t *testing.T) {
	local := testLocal(t)
	minted := &stubMinted{}
	now := time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)
	c := NewChain(ChainConfig{Local: local, Minted: minted, Now: func() time.Time { return now }})
	ctx := context.Background()

	adminP, err := c.Authenticate(ctx, Credentials{Username: "admin", Secret: adminPass})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(ctx, adminP); err != nil {
		t.Fatalf("Validate(local admin) = %v, want nil", err)
	}
	// Reload without admin: its sessions end as removed; Svc stays.
	reloaded, err := NewLocal([]Account{{Username: "svc", Secret: svcPass}})
	if err != nil {
		t.Fatal(err)
	}
	c.SetLocal(reloaded)
	if c.Local() != reloaded {
		t.Fatal("Local() is not the Local given to SetLocal")
	}
	if err := c.Validate(ctx, adminP); !errors.Is(err, ErrRemoved) {
		t.Errorf("Validate(admin after reload) = %v, want ErrRemoved", err)
	}
	if err := c.Validate(ctx, Principal{Subject: "local:Svc", Username: "Svc", Method: MethodMD5}); err != nil {
		t.Errorf("Validate(Svc after reload) = %v, want nil", err)
	}
	if _, err := c.Authenticate(ctx, Credentials{Username: "admin", Secret: adminPass}); err == nil {
		t.Error("removed local account still logs in")
	}

	oidcP := Principal{Subject: "oidc:x", Username: "alice", Method: MethodOIDC, Expires: now.Add(time.Minute)}
	if err := c.Validate(ctx, oidcP); err != nil {
		t.Errorf("Validate(live OIDC) = %v, want nil", err)
	}
	if len(minted.validated) != 1 || minted.validated[0].Subject != "oidc:x" {
		t.Errorf("minted Validate saw %v, want the OIDC Principal (user revocation)", minted.validated)
	}
	oidcP.Expires = now
	if err := c.Validate(ctx, oidcP); !errors.Is(err, ErrExpired) {
		t.Errorf("Validate(OIDC at exp) = %v, want ErrExpired", err)
	}
	minted.valErr = fmt.Errorf("minted: secret s1 revoked: %w", ErrRevoked)
	mintedP := Principal{Subject: "minted:carol", Username: "carol", Method: "minted", SecretID: "s1"}
	if err := c.Validate(ctx, mintedP); !errors.Is(err, ErrRevoked) {
		t.Errorf("Validate(revoked minted) = %v, want ErrRevoked", err)
	}
	oidcP.Expires = now.Add(time.Hour)
	if err := c.Validate(ctx, oidcP); !errors.Is(err, ErrRevoked) {
		t.Errorf("Validate(OIDC of a revoked user) = %v, want ErrRevoked", err)
	}

	bare := NewChain(ChainConfig{Local: local, Now: func() time.Time { return now }})
	if err := bare.Validate(ctx, mintedP); !errors.Is(err, ErrRemoved) {
		t.Errorf("Validate(minted) without a minted authenticator = %v, want ErrRemoved", err)
	}
	if err := bare.Validate(ctx, Principal{Subject: "oidc:x", Method: MethodOIDC, Expires: now.Add(time.Hour)}); err != nil {
		t.Errorf("Validate(live OIDC) without a minted authenticator = %v, want nil", err)
	}
}

// TestChainSetLocalConcurrent swaps the accounts while Logins run (for
// the race detector).
func TestChainSetLocalConcurrent(t *testing.T) {
	a, err := NewLocal([]Account{{Username: "svc", Secret: svcPass}})
	if err != nil {
		t.Fatal(err)
	}
	b, err := NewLocal([]Account{{Username: "svc", Secret: "other"}})
	if err != nil {
		t.Fatal(err)
	}
	c := NewChain(ChainConfig{Local: a})
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for range 200 {
				p, err := c.Authenticate(context.Background(), Credentials{Username: "svc", Secret: svcPass})
				if err != nil && !errors.Is(err, ErrAuthFailed) {
					t.Errorf("Authenticate = %v, want nil or ErrAuthFailed", err)
				}
				if err == nil && p.Username != "svc" {
					t.Errorf("Authenticate = %q, want svc", p.Username)
				}
			}
		})
	}
	wg.Go(func() {
		for j := range 200 {
			if j%2 == 0 {
				c.SetLocal(b)
			} else {
				c.SetLocal(a)
			}
		}
	})
	wg.Wait()
	c.SetLocal(a)
	if _, err := c.Authenticate(context.Background(), Credentials{Username: "svc", Secret: svcPass}); err != nil {
		t.Fatalf("after the swaps: %v", err)
	}
}

// BenchmarkChainOIDCCached is a JWT Login through the Chain with the token
// already in the OIDC cache: routing (local lookup, JWT sniffing) plus a
// cache hit.
func BenchmarkChainOIDCCached(b *testing.B) {
	ti := newTestIssuer(b)
	o := newTestOIDC(b, ti, nil)
	local, err := NewLocal([]Account{{Username: "svc", Secret: svcPass}})
	if err != nil {
		b.Fatal(err)
	}
	c := NewChain(ChainConfig{Local: local, OIDC: o})
	cr := Credentials{Username: "alice", Secret: Secret(ti.token(b, ti.claims(time.Now())))}
	if _, err := c.Authenticate(context.Background(), cr); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.Authenticate(context.Background(), cr); err != nil {
			b.Fatal(err)
		}
	}
}

// TestChainEndToEnd runs the whole identity path with real parts: a Dex
// token opens a session through the Chain, the Minter mints a secret for
// that identity, the secret opens a second session, and revoking the
// user ends both at the next Validate.
func TestChainEndToEnd(t *testing.T) {
	d := dextest.Start(t, dextest.Options{})
	o := newDexOIDC(t, d, nil)
	store, err := OpenFileStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	m, err := NewMinter(MinterConfig{Store: store, Key: mintKey, PollInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Close() })
	c := NewChain(ChainConfig{Local: testLocal(t), OIDC: o, Minted: m})
	ctx := context.Background()

	tokP, err := c.Authenticate(ctx, Credentials{Username: "operator", Secret: Secret(d.PasswordToken(t, "operator", dextest.Password))})
	if err != nil {
		t.Fatalf("JWT Login: %v", err)
	}
	minted, err := m.Mint(ctx, tokP, time.Hour, "e2e")
	if err != nil {
		t.Fatalf("Mint: %v", err)
	}
	if LooksLikeJWT(minted.Secret.Reveal()) {
		t.Fatal("a minted secret looks like a JWT; the Chain would send it to OIDC")
	}
	mintP, err := c.Authenticate(ctx, Credentials{Username: "Operator", Secret: minted.Secret})
	if err != nil {
		t.Fatalf("minted Login: %v", err)
	}
	if mintP.SecretID != minted.ID || mintP.Username != "operator" || mintP.Subject != tokP.Subject {
		t.Errorf("minted Principal %q %q %q, want secret %s of %s", mintP.SecretID, mintP.Username, mintP.Subject, minted.ID, tokP.Subject)
	}
	for _, p := range []Principal{tokP, mintP} {
		if err := c.Validate(ctx, p); err != nil {
			t.Fatalf("Validate(%s) before revocation = %v", p.Method, err)
		}
	}
	// The wall clock must move past the sessions' AuthTime.
	for !time.Now().After(mintP.AuthTime) {
		time.Sleep(time.Millisecond)
	}
	if _, err := m.RevokeUser(ctx, "operator"); err != nil {
		t.Fatal(err)
	}
	for _, p := range []Principal{tokP, mintP} {
		if err := c.Validate(ctx, p); !errors.Is(err, ErrRevoked) {
			t.Errorf("Validate(%s) after RevokeUser = %v, want ErrRevoked", p.Method, err)
		}
	}
	// A fresh token logs in again: revocation ends sessions, not the user.
	again, err := c.Authenticate(ctx, Credentials{Token: Secret(d.PasswordToken(t, "operator", dextest.Password))})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(ctx, again); err != nil {
		t.Errorf("Validate(new session after revocation) = %v, want nil", err)
	}
}
