package auth

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// testIssuer is a real, minimal OIDC issuer on loopback: discovery and a
// JWKS whose keys the test controls, so that tests can sign tokens Dex
// would never issue.
type testIssuer struct {
	srv   *httptest.Server
	url   string
	rsa   *rsa.PrivateKey
	ec    *ecdsa.PrivateKey
	other *rsa.PrivateKey // never published

	down        atomic.Bool // discovery answers 503
	rotated     atomic.Bool // the JWKS also holds other, as "rsa2"
	hugeJWKS    atomic.Bool // the JWKS answer exceeds its size limit
	wrongIss    atomic.Bool // discovery names another issuer
	discoveries atomic.Int32
	jwksFetches atomic.Int32
}

const testClientID = "amiproxy"

var (
	oidcKeyOnce           sync.Once
	oidcRSA, oidcOtherRSA *rsa.PrivateKey
	oidcEC                *ecdsa.PrivateKey
)

func oidcTestKeys(t testing.TB) {
	oidcKeyOnce.Do(func() {
		var err error
		if oidcRSA, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
			panic(err)
		}
		if oidcOtherRSA, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
			panic(err)
		}
		if oidcEC, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
			panic(err)
		}
	})
}

func newTestIssuer(t testing.TB) *testIssuer {
	t.Helper()
	oidcTestKeys(t)
	ti := &testIssuer{rsa: oidcRSA, ec: oidcEC, other: oidcOtherRSA}
	mux := http.NewServeMux()
	mux.HandleFunc("/.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		ti.discoveries.Add(1)
		if ti.down.Load() {
			http.Error(w, "identity provider down for maintenance", http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{
			"issuer":                                map[bool]string{false: ti.url, true: ti.url + "/"}[ti.wrongIss.Load()],
			"authorization_endpoint":                ti.url + "/auth",
			"token_endpoint":                        ti.url + "/token",
			"device_authorization_endpoint":         ti.url + "/device/code",
			"jwks_uri":                              ti.url + "/keys",
			"id_token_signing_alg_values_supported": []string{"RS256", "ES256", "HS256", "none"},
		})
	})
	mux.HandleFunc("/keys", func(w http.ResponseWriter, r *http.Request) {
		ti.jwksFetches.Add(1)
		w.Header().Set("Content-Type", "application/json")
		set := jose.JSONWebKeySet{Keys: []jose.JSONWebKey{
			{Key: ti.rsa.Public(), KeyID: "rsa1", Algorithm: "RS256", Use: "sig"},
			{Key: ti.ec.Public(), KeyID: "ec1", Algorithm: "ES256", Use: "sig"},
			// Never usable: an encryption key, and a symmetric key.
			{Key: ti.other.Public(), KeyID: "enc1", Algorithm: "RSA-OAEP", Use: "enc"},
			{Key: []byte("0123456789abcdef0123456789abcdef"), KeyID: "oct1", Algorithm: "HS256", Use: "sig"},
		}}
		if ti.rotated.Load() {
			set.Keys = append(set.Keys, jose.JSONWebKey{Key: ti.other.Public(), KeyID: "rsa2", Algorithm: "RS256", Use: "sig"})
		}
		if ti.hugeJWKS.Load() {
			for range 3000 {
				set.Keys = append(set.Keys, set.Keys[0])
			}
		}
		_ = json.NewEncoder(w).Encode(set)
	})
	ti.srv = httptest.NewServer(mux)
	ti.url = ti.srv.URL
	t.Cleanup(ti.srv.Close)
	return ti
}

// claims returns valid claims for user "alice" at now, changed by kv
// pairs (a nil value deletes the claim).
func (ti *testIssuer) claims(now time.Time, kv ...any) map[string]any {
	c := map[string]any{
		"iss":                ti.url,
		"sub":                "CiQwOGE4Njg0Yi1kYjg4",
		"aud":                testClientID,
		"exp":                now.Add(time.Hour).Unix(),
		"iat":                now.Unix(),
		"preferred_username": "alice",
		"groups":             []string{"ami-admins", "ops"},
		"email":              "alice@example.com",
		"extension":          1001,
	}
	for i := 0; i+1 < len(kv); i += 2 {
		k := kv[i].(string)
		if kv[i+1] == nil {
			delete(c, k)
		} else {
			c[k] = kv[i+1]
		}
	}
	return c
}

// sign signs claims with key under alg and kid using go-jose.
func signJWT(t testing.TB, alg jose.SignatureAlgorithm, key any, kid string, claims map[string]any) string {
	t.Helper()
	payload, err := json.Marshal(claims)
	if err != nil {
		t.Fatal(err)
	}
	opts := (&jose.SignerOptions{}).WithType("JWT")
	if kid != "" {
		opts = opts.WithHeader("kid", kid)
	}
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: key}, opts)
	if err != nil {
		t.Fatal(err)
	}
	jws, err := s.Sign(payload)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := jws.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

func (ti *testIssuer) token(t testing.TB, claims map[string]any) string {
	return signJWT(t, jose.RS256, ti.rsa, "rsa1", claims)
}

func b64JSON(v any) string {
	b, _ := json.Marshal(v)
	return base64.RawURLEncoding.EncodeToString(b)
}

// unsigned builds an "alg": "none" token.
func unsignedJWT(claims map[string]any) string {
	return b64JSON(map[string]any{"alg": "none", "typ": "JWT"}) + "." + b64JSON(claims) + "."
}

// hmacWithPublicKey builds the algorithm-confusion forgery: HS256 keyed
// with the provider's public RSA key (PEM, as naive verifiers read it).
func hmacWithPublicKey(t testing.TB, pub crypto.PublicKey, claims map[string]any) string {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	secret := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	input := b64JSON(map[string]any{"alg": "HS256", "typ": "JWT", "kid": "rsa1"}) + "." + b64JSON(claims)
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(input))
	return input + "." + base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// oidcClock is a settable clock for Now.
type oidcClock struct{ ns atomic.Int64 }

func newOIDCClock(t time.Time) *oidcClock {
	c := &oidcClock{}
	c.ns.Store(t.UnixNano())
	return c
}
func (c *oidcClock) Now() time.Time      { return time.Unix(0, c.ns.Load()) }
func (c *oidcClock) Add(d time.Duration) { c.ns.Add(int64(d)) }
func (c *oidcClock) Set(t time.Time)     { c.ns.Store(t.UnixNano()) }

func newTestOIDC(t testing.TB, ti *testIssuer, mod func(*OIDCConfig)) *OIDC {
	t.Helper()
	cfg := OIDCConfig{Issuer: ti.url, ClientID: testClientID}
	if mod != nil {
		mod(&cfg)
	}
	o, err := NewOIDC(context.Background(), cfg)
	if err != nil {
		t.Fatalf("NewOIDC: %v", err)
	}
	return o
}

// assertNoToken fails if msg contains the token or any long segment of it.
func assertNoToken(t testing.TB, msg, raw string) {
	t.Helper()
	if raw == "" {
		return
	}
	if strings.Contains(msg, raw) {
		t.Fatalf("error text contains the token: %s", msg)
	}
	for seg := range strings.SplitSeq(raw, ".") {
		if len(seg) > 7 && strings.Contains(msg, seg) {
			t.Fatalf("error text contains a token segment: %s", msg)
		}
	}
}

func TestOIDCVerifyValid(t *testing.T) {
	ti := newTestIssuer(t)
	now := time.Now()
	clk := newOIDCClock(now)
	o := newTestOIDC(t, ti, func(c *OIDCConfig) { c.Now = clk.Now })
	for _, tc := range []struct {
		name string
		raw  string
	}{
		{"RS256", ti.token(t, ti.claims(now))},
		{"ES256", signJWT(t, jose.ES256, ti.ec, "ec1", ti.claims(now))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := o.Verify(context.Background(), tc.raw)
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if p.Subject != "oidc:CiQwOGE4Njg0Yi1kYjg4" || p.Username != "alice" || p.Method != MethodOIDC {
				t.Errorf("Subject, Username, Method = %q, %q, %q; want oidc:CiQwOGE4Njg0Yi1kYjg4, alice, oidc", p.Subject, p.Username, p.Method)
			}
			if !slices.Equal(p.Groups, []string{"ami-admins", "ops"}) {
				t.Errorf("Groups = %v, want [ami-admins ops]", p.Groups)
			}
			if want := time.Unix(now.Add(time.Hour).Unix(), 0); !p.Expires.Equal(want) {
				t.Errorf("Expires = %v, want %v", p.Expires, want)
			}
			if !p.AuthTime.Equal(clk.Now()) {
				t.Errorf("AuthTime = %v, want now %v", p.AuthTime, clk.Now())
			}
			if p.Claims["email"] != "alice@example.com" || p.Claims["extension"] != json.Number("1001") {
				t.Errorf("Claims email, extension = %#v, %#v; want alice@example.com, json.Number(1001)", p.Claims["email"], p.Claims["extension"])
			}
		})
	}
}

// TestOIDCVerifyRejects is the attack corpus: tokens Dex would never
// issue, each refused with ErrAuthFailed and an error free of the token.
func TestOIDCVerifyRejects(t *testing.T) {
	ti := newTestIssuer(t)
	now := time.Now().Truncate(time.Second)
	clk := newOIDCClock(now)
	o := newTestOIDC(t, ti, func(c *OIDCConfig) {
		c.Now = clk.Now
		c.CacheSize = -1
	})
	// A second issuer with the same keys: right signature, wrong iss.
	other := newTestIssuer(t)
	tests := []struct {
		name    string
		raw     string
		want    string // substring of the error
		expired bool
	}{
		{"expired", ti.token(t, ti.claims(now, "exp", now.Add(-time.Second).Unix(), "iat", now.Add(-time.Hour).Unix())), "expired", true},
		{"expires exactly now", ti.token(t, ti.claims(now, "exp", now.Unix())), "expired", true},
		{"no exp", ti.token(t, ti.claims(now, "exp", nil)), "expired", true},
		{"nbf in the future", ti.token(t, ti.claims(now, "nbf", now.Add(2*time.Minute).Unix())), "not valid yet", false},
		{"nbf not a number", ti.token(t, ti.claims(now, "nbf", "soon")), "", false},
		{"iat in the future", ti.token(t, ti.claims(now, "iat", now.Add(2*time.Minute).Unix())), "issued in the future", false},
		{"wrong audience", ti.token(t, ti.claims(now, "aud", "someone-else")), "audience", false},
		{"audience list without us", ti.token(t, ti.claims(now, "aud", []string{"a", "b"})), "audience", false},
		{"wrong issuer", ti.token(t, other.claims(now)), "different provider", false},
		{"alg none", unsignedJWT(ti.claims(now)), "", false},
		{"alg none with a signature", strings.TrimSuffix(unsignedJWT(ti.claims(now)), ".") + ".c2ln", "", false},
		{"unknown key, known kid", signJWT(t, jose.RS256, ti.other, "rsa1", ti.claims(now)), "", false},
		{"unknown key, unknown kid", signJWT(t, jose.RS256, ti.other, "rsa9", ti.claims(now)), "", false},
		{"HS256 keyed with the public key", hmacWithPublicKey(t, ti.rsa.Public(), ti.claims(now)), "", false},
		{"RS384 not in the allow-list", signJWT(t, jose.RS384, ti.rsa, "rsa1", ti.claims(now)), "", false},
		{"PS256 not in the allow-list", signJWT(t, jose.PS256, ti.rsa, "rsa1", ti.claims(now)), "", false},
		{"payload swapped", func() string {
			good := strings.Split(ti.token(t, ti.claims(now)), ".")
			evil := strings.Split(ti.token(t, ti.claims(now, "preferred_username", "admin")), ".")
			return good[0] + "." + evil[1] + "." + good[2]
		}(), "", false},
		{"no sub", ti.token(t, ti.claims(now, "sub", nil)), "sub", false},
		{"no username claim", ti.token(t, ti.claims(now, "preferred_username", nil)), "username claim", false},
		{"username not a string", ti.token(t, ti.claims(now, "preferred_username", 7)), "username claim", false},
		{"username with CRLF", ti.token(t, ti.claims(now, "preferred_username", "alice\r\nAction: Command")), "username claim", false},
		{"groups not strings", ti.token(t, ti.claims(now, "groups", []any{"ops", 3})), "groups claim", false},
		{"groups an object", ti.token(t, ti.claims(now, "groups", map[string]any{"a": "b"})), "groups claim", false},
		{"not a JWT", "hunter2-is-my-password", "not a JWT", false},
		{"too long", strings.Repeat("a", MaxTokenLen+1), "longer than", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, err := o.Verify(context.Background(), tc.raw)
			if err == nil {
				t.Fatalf("Verify accepted it: %+v", p)
			}
			if !errors.Is(err, ErrAuthFailed) {
				t.Errorf("error %v does not wrap ErrAuthFailed", err)
			}
			if errors.Is(err, ErrExpired) != tc.expired {
				t.Errorf("errors.Is(%v, ErrExpired) = %v, want %v", err, !tc.expired, tc.expired)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not mention %q", err, tc.want)
			}
			assertNoToken(t, err.Error(), tc.raw)
			t.Logf("refused: %v", err)
			if p.Subject != "" || p.Username != "" || p.Groups != nil || p.Claims != nil {
				t.Errorf("failed Verify returned a non-zero Principal: %+v", p)
			}
		})
	}
}

func TestOIDCLeeway(t *testing.T) {
	ti := newTestIssuer(t)
	now := time.Now().Truncate(time.Second)
	o := newTestOIDC(t, ti, func(c *OIDCConfig) { c.Now = func() time.Time { return now } })
	// nbf and iat within ClockSkew (default 1 min) are fine.
	raw := ti.token(t, ti.claims(now, "nbf", now.Add(30*time.Second).Unix(), "iat", now.Add(30*time.Second).Unix()))
	if _, err := o.Verify(context.Background(), raw); err != nil {
		t.Fatalf("Verify with nbf, iat 30 s ahead: %v", err)
	}
}

func TestOIDCGroupsForms(t *testing.T) {
	ti := newTestIssuer(t)
	now := time.Now()
	o := newTestOIDC(t, ti, func(c *OIDCConfig) { c.GroupsClaim = "roles"; c.UsernameClaim = "email" })
	for _, tc := range []struct {
		name  string
		roles any
		want  []string
	}{
		{"absent", nil, nil},
		{"one string", "ops", []string{"ops"}},
		{"list with an empty name", []string{"a", "", "b"}, []string{"a", "b"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := o.Verify(context.Background(), ti.token(t, ti.claims(now, "roles", tc.roles)))
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(p.Groups, tc.want) || p.Username != "alice@example.com" {
				t.Errorf("Groups, Username = %v, %q; want %v, alice@example.com", p.Groups, p.Username, tc.want)
			}
		})
	}
}

func TestOIDCAudiences(t *testing.T) {
	ti := newTestIssuer(t)
	now := time.Now()
	o := newTestOIDC(t, ti, func(c *OIDCConfig) { c.Audiences = []string{"amiproxy-cli"} })
	for _, aud := range []any{"amiproxy-cli", []string{"x", "amiproxy"}, testClientID} {
		if _, err := o.Verify(context.Background(), ti.token(t, ti.claims(now, "aud", aud))); err != nil {
			t.Errorf("Verify with aud %v: %v", aud, err)
		}
	}
	if _, err := o.Verify(context.Background(), ti.token(t, ti.claims(now, "aud", "amiproxy-cli2"))); err == nil {
		t.Error("Verify accepted aud amiproxy-cli2")
	}
}

// TestOIDCCacheNeverOutlivesExp: a cached token is refused from its exp
// on, although the cache entry is younger than the cache's maximum age.
func TestOIDCCacheNeverOutlivesExp(t *testing.T) {
	ti := newTestIssuer(t)
	now := time.Now().Truncate(time.Second)
	clk := newOIDCClock(now)
	o := newTestOIDC(t, ti, func(c *OIDCConfig) { c.Now = clk.Now })
	raw := ti.token(t, ti.claims(now, "exp", now.Add(60*time.Second).Unix()))
	if _, err := o.Verify(context.Background(), raw); err != nil {
		t.Fatal(err)
	}
	if o.cache.Len() != 1 {
		t.Fatalf("cache holds %d tokens after one Verify, want 1", o.cache.Len())
	}
	// Stop the issuer: a cache hit needs no network, a miss would fail
	// differently (keys are cached by go-oidc, so also prove the hit by
	// the AuthTime and the unchanged cache).
	clk.Add(59 * time.Second)
	p, err := o.Verify(context.Background(), raw)
	if err != nil {
		t.Fatalf("Verify 1 s before exp: %v", err)
	}
	if !p.AuthTime.Equal(clk.Now()) {
		t.Errorf("cached AuthTime = %v, want now %v", p.AuthTime, clk.Now())
	}
	// The hit's Principal is a copy: changing it does not change the cache.
	p.Groups[0] = "changed"
	p.Claims["email"] = "changed"
	p2, err := o.Verify(context.Background(), raw)
	if err != nil || p2.Groups[0] != "ami-admins" || p2.Claims["email"] != "alice@example.com" {
		t.Fatalf("cache entry changed through a returned Principal: %v, %v, %v", err, p2.Groups, p2.Claims["email"])
	}
	clk.Add(time.Second) // exactly exp
	_, err = o.Verify(context.Background(), raw)
	if !errors.Is(err, ErrExpired) || !errors.Is(err, ErrAuthFailed) {
		t.Fatalf("Verify at exp = %v, want ErrExpired and ErrAuthFailed", err)
	}
	if o.cache.Len() != 0 {
		t.Errorf("expired token still cached (%d entries)", o.cache.Len())
	}
}

// TestOIDCCacheMaxAge: a long-lived token is verified again after the
// cache's maximum age, so a key withdrawn from the JWKS stops working.
func TestOIDCCacheMaxAge(t *testing.T) {
	ti := newTestIssuer(t)
	now := time.Now().Truncate(time.Second)
	clk := newOIDCClock(now)
	o := newTestOIDC(t, ti, func(c *OIDCConfig) { c.Now = clk.Now })
	raw := ti.token(t, ti.claims(now, "exp", now.Add(24*time.Hour).Unix()))
	if _, err := o.Verify(context.Background(), raw); err != nil {
		t.Fatal(err)
	}
	k := sha256.Sum256([]byte(raw))
	e, ok := o.cache.Peek(k)
	if !ok || !e.until.Equal(now.Add(cacheMaxAge)) {
		t.Fatalf("cache entry until = %v (present %v), want %v", e.until, ok, now.Add(cacheMaxAge))
	}
	clk.Add(cacheMaxAge)
	if _, err := o.Verify(context.Background(), raw); err != nil {
		t.Fatalf("re-verify after max age: %v", err)
	}
	if e, _ := o.cache.Peek(k); !e.until.Equal(clk.Now().Add(cacheMaxAge)) {
		t.Errorf("entry not refreshed by the re-verification: until %v", e.until)
	}
}

// TestOIDCLazyDiscovery: the provider is down when the OIDC is built; it
// is built anyway, refuses tokens with ErrUnavailable, retries at most
// once per 10 s, and works once the provider is back.
func TestOIDCLazyDiscovery(t *testing.T) {
	ti := newTestIssuer(t)
	ti.down.Store(true)
	now := time.Now()
	clk := newOIDCClock(now)
	o := newTestOIDC(t, ti, func(c *OIDCConfig) { c.Now = clk.Now })
	if o.DiscoveryError() == nil {
		t.Fatal("DiscoveryError() = nil with the provider down")
	}
	if n := ti.discoveries.Load(); n != 1 {
		t.Fatalf("%d discovery requests at start, want 1", n)
	}
	raw := ti.token(t, ti.claims(now))
	_, err := o.Verify(context.Background(), raw)
	if !errors.Is(err, ErrUnavailable) || !errors.Is(err, ErrAuthFailed) {
		t.Fatalf("Verify while down = %v, want ErrUnavailable and ErrAuthFailed", err)
	}
	if _, err := o.Endpoint(); err == nil {
		t.Fatal("Endpoint() succeeded without discovery")
	}
	ti.down.Store(false)
	// Within 10 s of the last attempt: no new request, still refused.
	clk.Add(9 * time.Second)
	if _, err := o.Verify(context.Background(), raw); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Verify 9 s later = %v, want ErrUnavailable (no retry yet)", err)
	}
	if n := ti.discoveries.Load(); n != 1 {
		t.Fatalf("%d discovery requests within 10 s, want 1", n)
	}
	clk.Add(time.Second)
	p, err := o.Verify(context.Background(), raw)
	if err != nil {
		t.Fatalf("Verify once the provider is back: %v", err)
	}
	if p.Username != "alice" || ti.discoveries.Load() != 2 || o.DiscoveryError() != nil {
		t.Errorf("Username %q, %d discoveries, DiscoveryError %v; want alice, 2, nil", p.Username, ti.discoveries.Load(), o.DiscoveryError())
	}
	ep, err := o.Endpoint()
	if err != nil || ep.AuthURL != ti.url+"/auth" || ep.TokenURL != ti.url+"/token" || ep.DeviceAuthURL != ti.url+"/device/code" {
		t.Errorf("Endpoint() = %+v, %v", ep, err)
	}
}

// TestOIDCUnreachableAtStart: nothing listens at the issuer; NewOIDC
// still returns promptly with a usable value.
func TestOIDCUnreachableAtStart(t *testing.T) {
	ti := newTestIssuer(t)
	url := ti.url
	ti.srv.Close()
	o, err := NewOIDC(context.Background(), OIDCConfig{Issuer: url, ClientID: testClientID, DiscoveryTimeout: 2 * time.Second})
	if err != nil {
		t.Fatalf("NewOIDC with the provider unreachable: %v", err)
	}
	derr := o.DiscoveryError()
	if derr == nil || !strings.Contains(derr.Error(), "discovery") {
		t.Fatalf("DiscoveryError() = %v, want a discovery failure", derr)
	}
	raw := ti.token(t, ti.claims(time.Now()))
	_, err = o.Verify(context.Background(), raw)
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Verify = %v, want ErrUnavailable", err)
	}
	assertNoToken(t, err.Error(), raw)
}

func TestOIDCAuthenticate(t *testing.T) {
	ti := newTestIssuer(t)
	now := time.Now()
	o := newTestOIDC(t, ti, nil)
	raw := ti.token(t, ti.claims(now))
	tests := []struct {
		name  string
		c     Credentials
		cause string // "" = success
	}{
		{"bearer", Credentials{Token: Secret(raw)}, ""},
		{"bearer with the matching username", Credentials{Token: Secret(raw), Username: "ALICE"}, ""},
		{"bearer with another username", Credentials{Token: Secret(raw), Username: "bob"}, "does not match"},
		{"login", Credentials{Username: "alice", Secret: Secret(raw)}, ""},
		{"login, username in another case", Credentials{Username: "Alice", Secret: Secret(raw)}, ""},
		{"login, username mismatch", Credentials{Username: "admin", Secret: Secret(raw)}, "does not match"},
		{"login, empty username", Credentials{Secret: Secret(raw)}, "empty username"},
		{"login, Kelvin sign is not k", Credentials{Username: "alice\u212a", Secret: Secret(raw)}, "does not match"},
		{"MD5 login", Credentials{Username: "alice", AuthType: "md5", Key: raw, Challenge: "123"}, "MD5"},
		{"MD5 login with the token as secret", Credentials{Username: "alice", AuthType: "MD5", Secret: Secret(raw)}, "MD5"},
		{"nothing", Credentials{Username: "alice"}, "no token"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, err := o.Authenticate(context.Background(), tc.c)
			if tc.cause == "" {
				if err != nil || p.Username != "alice" {
					t.Fatalf("Authenticate = %q, %v; want alice, nil", p.Username, err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Authenticate accepted it as %q", p.Username)
			}
			if !errors.Is(err, ErrAuthFailed) || !strings.Contains(err.Error(), tc.cause) {
				t.Errorf("Authenticate = %v, want ErrAuthFailed mentioning %q", err, tc.cause)
			}
			assertNoToken(t, err.Error(), raw)
		})
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := o.Authenticate(ctx, Credentials{Token: Secret(raw)}); !errors.Is(err, ErrAuthFailed) || !errors.Is(err, context.Canceled) {
		t.Errorf("Authenticate with a done context = %v", err)
	}
}

func TestOIDCVerifyIDTokenNonce(t *testing.T) {
	ti := newTestIssuer(t)
	now := time.Now()
	o := newTestOIDC(t, ti, nil)
	raw := ti.token(t, ti.claims(now, "nonce", "n-0S6_WzA2Mj"))
	if p, err := o.VerifyIDToken(context.Background(), raw, "n-0S6_WzA2Mj"); err != nil || p.Username != "alice" {
		t.Fatalf("VerifyIDToken with the right nonce = %q, %v", p.Username, err)
	}
	for _, nonce := range []string{"", "n-0S6_WzA2Mk"} {
		if _, err := o.VerifyIDToken(context.Background(), raw, nonce); !errors.Is(err, ErrAuthFailed) {
			t.Errorf("VerifyIDToken(nonce %q) = %v, want ErrAuthFailed", nonce, err)
		}
	}
	if _, err := o.VerifyIDToken(context.Background(), ti.token(t, ti.claims(now)), "x"); err == nil {
		t.Error("VerifyIDToken accepted a token without nonce")
	}
	if _, err := o.VerifyIDToken(context.Background(), unsignedJWT(ti.claims(now, "nonce", "x")), "x"); err == nil {
		t.Error("VerifyIDToken accepted an unsigned token")
	}
}

func TestNewOIDCValidation(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  OIDCConfig
		want string
	}{
		{"no issuer", OIDCConfig{ClientID: "x"}, "issuer is empty"},
		{"http not on loopback", OIDCConfig{Issuer: "http://idp.example.com", ClientID: "x"}, "loopback"},
		{"ftp", OIDCConfig{Issuer: "ftp://idp.example.com", ClientID: "x"}, "https"},
		{"relative", OIDCConfig{Issuer: "/dex", ClientID: "x"}, "absolute"},
		{"user info", OIDCConfig{Issuer: "https://u:p@idp.example.com", ClientID: "x"}, "user info"},
		{"no client", OIDCConfig{Issuer: "https://idp.example.com"}, "client id"},
		{"alg none", OIDCConfig{Issuer: "https://idp.example.com", ClientID: "x", Algorithms: []string{"none"}}, `"none" not allowed`},
		{"alg HS256", OIDCConfig{Issuer: "https://idp.example.com", ClientID: "x", Algorithms: []string{"RS256", "HS256"}}, `"HS256" not allowed`},
		{"empty audience", OIDCConfig{Issuer: "https://idp.example.com", ClientID: "x", Audiences: []string{""}}, "audiences[0]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := NewOIDC(context.Background(), tc.cfg)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("NewOIDC = %v, want an error mentioning %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "u:p") {
				t.Errorf("NewOIDC error shows the issuer's password: %v", err)
			}
		})
	}
}

func TestLooksLikeJWT(t *testing.T) {
	ti := newTestIssuer(t)
	good := ti.token(t, ti.claims(time.Now()))
	for _, tc := range []struct {
		s    string
		want bool
	}{
		{good, true},
		{unsignedJWT(map[string]any{"sub": "x"}), true},
		{"", false},
		{"password", false},
		{"a.b", false},
		{"a.b.c.d", false},
		{b64JSON(map[string]any{"typ": "JWT"}) + ".e30.c2ln", false},    // no alg
		{b64JSON(map[string]any{"alg": ""}) + ".e30.c2ln", false},       // empty alg
		{b64JSON(map[string]any{"alg": 256}) + ".e30.c2ln", false},      // alg not a string
		{b64JSON([]string{"alg"}) + ".e30.c2ln", false},                 // header not an object
		{b64JSON(map[string]any{"alg": "RS256"}) + "..c2ln", false},     // empty payload
		{b64JSON(map[string]any{"alg": "RS256"}) + ".e30=.c2ln", false}, // padding
		{b64JSON(map[string]any{"alg": "RS256"}) + ".e3+/.c2ln", false}, // std alphabet
		{"eyJhbGciOiJSUzI1NiJ9.e30.c2ln", true},
		{"eyJhbGciOiJSUzI1NiJ9.e30.c2ln" + strings.Repeat("A", MaxTokenLen), false},
	} {
		if got := LooksLikeJWT(tc.s); got != tc.want {
			t.Errorf("LooksLikeJWT(%.40q) = %v, want %v", tc.s, got, tc.want)
		}
	}
}

func BenchmarkOIDCVerifyCached(b *testing.B) {
	ti := newTestIssuer(b)
	o := newTestOIDC(b, ti, nil)
	raw := ti.token(b, ti.claims(time.Now()))
	if _, err := o.Verify(context.Background(), raw); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := o.Verify(context.Background(), raw); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkOIDCVerifyUncached(b *testing.B) {
	ti := newTestIssuer(b)
	o := newTestOIDC(b, ti, func(c *OIDCConfig) { c.CacheSize = -1 })
	raw := ti.token(b, ti.claims(time.Now()))
	if _, err := o.Verify(context.Background(), raw); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := o.Verify(context.Background(), raw); err != nil {
			b.Fatal(err)
		}
	}
}

// TestOIDCKeyRefresh: forged tokens do not make the proxy refetch the
// provider's keys more than once per 10 s, and a key rotated in at the
// provider is picked up.
func TestOIDCKeyRefresh(t *testing.T) {
	ti := newTestIssuer(t)
	now := time.Now()
	clk := newOIDCClock(now)
	o := newTestOIDC(t, ti, func(c *OIDCConfig) { c.Now = clk.Now; c.CacheSize = -1 })
	if _, err := o.Verify(context.Background(), ti.token(t, ti.claims(now))); err != nil {
		t.Fatal(err)
	}
	if n := ti.jwksFetches.Load(); n != 1 {
		t.Fatalf("%d key fetches after the first token, want 1", n)
	}
	for i := range 50 {
		kid := fmt.Sprintf("forged%d", i)
		if _, err := o.Verify(context.Background(), signJWT(t, jose.RS256, ti.other, kid, ti.claims(now))); !errors.Is(err, ErrAuthFailed) {
			t.Fatalf("forged token: %v", err)
		}
	}
	if n := ti.jwksFetches.Load(); n != 1 {
		t.Fatalf("%d key fetches after 50 forged tokens within 10 s, want 1", n)
	}
	// The provider rotates in a new key; a token signed with it verifies
	// once the refresh interval allows a fetch.
	ti.rotated.Store(true)
	rotatedTok := signJWT(t, jose.RS256, ti.other, "rsa2", ti.claims(now))
	if _, err := o.Verify(context.Background(), rotatedTok); err == nil {
		t.Fatal("token of the rotated key verified without a fetch")
	}
	clk.Add(minKeyRefresh)
	if _, err := o.Verify(context.Background(), rotatedTok); err != nil {
		t.Fatalf("token of the rotated key after the refresh interval: %v", err)
	}
	if n := ti.jwksFetches.Load(); n != 2 {
		t.Errorf("%d key fetches, want 2", n)
	}
	// The symmetric key in the JWKS is never used, whatever the token says.
	hs := signJWT(t, jose.HS256, []byte("0123456789abcdef0123456789abcdef"), "oct1", ti.claims(now))
	if _, err := o.Verify(context.Background(), hs); err == nil {
		t.Fatal("HS256 token verified with the JWKS's symmetric key")
	}
}

func TestOIDCProviderMisbehaves(t *testing.T) {
	t.Run("huge JWKS", func(t *testing.T) {
		ti := newTestIssuer(t)
		ti.hugeJWKS.Store(true)
		o := newTestOIDC(t, ti, nil)
		_, err := o.Verify(context.Background(), ti.token(t, ti.claims(time.Now())))
		if !errors.Is(err, ErrAuthFailed) || !strings.Contains(err.Error(), "more than") {
			t.Fatalf("Verify with a 1 MiB+ JWKS = %v, want a size-limit failure", err)
		}
	})
	t.Run("issuer mismatch", func(t *testing.T) {
		ti := newTestIssuer(t)
		ti.wrongIss.Store(true)
		o := newTestOIDC(t, ti, nil)
		if err := o.DiscoveryError(); err == nil || !strings.Contains(err.Error(), "must match exactly") {
			t.Fatalf("DiscoveryError() = %v, want an issuer mismatch", err)
		}
	})
}
