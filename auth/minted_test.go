package auth

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// mintKey is the tests' store key.
var mintKey = bytes.Repeat([]byte{0x5a}, MintKeySize)

// mintClock is a settable clock, safe for concurrent use.
type mintClock struct {
	mu sync.Mutex
	t  time.Time
}

func newMintClock() *mintClock {
	return &mintClock{t: time.Date(2026, 3, 1, 9, 0, 0, 123456789, time.UTC)}
}

func (c *mintClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *mintClock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// openMintStore opens a FileStore in dir and closes it at the end of the
// test.
func openMintStore(t testing.TB, dir string) *FileStore {
	t.Helper()
	s, err := OpenFileStore(dir)
	if err != nil {
		t.Fatalf("OpenFileStore() error = %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// newTestMinter returns a Minter over store without a background loop
// (tests call Sync), closed at the end of the test.
func newTestMinter(t testing.TB, store Store, clock *mintClock, mod ...func(*MinterConfig)) *Minter {
	t.Helper()
	cfg := MinterConfig{Store: store, Key: mintKey, Now: clock.now, PollInterval: -1}
	for _, f := range mod {
		f(&cfg)
	}
	m, err := NewMinter(cfg)
	if err != nil {
		t.Fatalf("NewMinter() error = %v", err)
	}
	t.Cleanup(func() { _ = m.Close() })
	return m
}

// alice is an OIDC-like principal, signed in at the clock's start.
func alice(clock *mintClock) Principal {
	return Principal{
		Subject:  "oidc:https://idp.example#a1b2",
		Username: "alice",
		Groups:   []string{"ops", "phones"},
		Method:   "oidc",
		Expires:  clock.now().Add(time.Hour),
		Claims:   map[string]any{"extension": "1001", "email": "alice@example.com", "level": 3, "tags": []any{"x", "<y>"}},
		AuthTime: clock.now(),
	}
}

func mustMint(t testing.TB, m *Minter, p Principal, ttl time.Duration, label string) Minted {
	t.Helper()
	got, err := m.Mint(context.Background(), p, ttl, label)
	if err != nil {
		t.Fatalf("Mint(%s) error = %v", p.Username, err)
	}
	return got
}

// clientKey computes an MD5 Login key as an AMI client does.
func clientKey(challenge string, secret Secret) string {
	sum := md5.Sum([]byte(challenge + secret.Reveal()))
	return hex.EncodeToString(sum[:])
}

func plainLogin(user string, s Secret) Credentials {
	return Credentials{Username: user, Secret: s}
}

func md5Login(user, challenge string, s Secret) Credentials {
	return Credentials{Username: user, AuthType: "MD5", Challenge: challenge, Key: clientKey(challenge, s)}
}

// assertNoSecret fails if err's text contains any of the secrets, or any
// 12-character piece of one.
func assertNoSecret(t *testing.T, err error, secrets ...Secret) {
	t.Helper()
	if err == nil {
		return
	}
	msg := err.Error()
	for _, s := range secrets {
		r := s.Reveal()
		for i := 0; i+12 <= len(r); i += 6 {
			if strings.Contains(msg, r[i:i+12]) {
				t.Errorf("error text %q contains part of a secret", msg)
				return
			}
		}
	}
}

func claimsJSON(t *testing.T, c map[string]any) string {
	t.Helper()
	b, err := json.Marshal(c)
	if err != nil {
		t.Fatalf("json.Marshal(claims) error = %v", err)
	}
	return string(b)
}

func TestMintPlainAndMD5Login(t *testing.T) {
	clock := newMintClock()
	m := newTestMinter(t, openMintStore(t, t.TempDir()), clock)
	p := alice(clock)
	got := mustMint(t, m, p, 0, "softphone")

	s := got.Secret.Reveal()
	if !strings.HasPrefix(s, SecretPrefix) || len(s) != len(SecretPrefix)+32 {
		t.Fatalf("secret has the form %q...(%d chars), want %q + 32 characters", s[:4], len(s), SecretPrefix)
	}
	for _, c := range s[len(SecretPrefix):] {
		if !strings.ContainsRune("abcdefghijklmnopqrstuvwxyz234567", c) {
			t.Fatalf("secret contains %q, outside lower-case base32", c)
		}
	}
	if err := checkID(got.ID); err != nil || len(got.ID) != 13 {
		t.Errorf("ID %q: %v, want 13 characters of a-z2-7", got.ID, err)
	}
	wantInfo := Info{ID: got.ID, Username: "alice", Label: "softphone", Created: clock.now(), Expires: clock.now().Add(DefaultMintTTL)}
	if !reflect.DeepEqual(got.Info, wantInfo) {
		t.Errorf("Mint() Info = %+v, want %+v", got.Info, wantInfo)
	}

	clock.advance(time.Minute)
	for _, c := range []Credentials{
		plainLogin("alice", got.Secret),
		plainLogin("ALICE", got.Secret),
		md5Login("alice", "123456789", got.Secret),
		md5Login("Alice", "7", got.Secret),
		{Username: "alice", AuthType: "md5", Challenge: "55", Key: clientKey("55", got.Secret)},
	} {
		pr, err := m.Authenticate(context.Background(), c)
		if err != nil {
			t.Fatalf("Authenticate(%s, AuthType %q) error = %v", c.Username, c.AuthType, err)
		}
		want := Principal{
			Subject: p.Subject, Username: "alice", Groups: p.Groups, Method: MethodMinted,
			Expires: got.Expires, SecretID: got.ID, AuthTime: clock.now(),
		}
		if !equalPrincipal(pr, want) || pr.SecretID != want.SecretID || !pr.AuthTime.Equal(want.AuthTime) {
			t.Errorf("Authenticate() = %+v, want %+v", pr, want)
		}
		if a, b := claimsJSON(t, pr.Claims), claimsJSON(t, p.Claims); a != b {
			t.Errorf("Principal.Claims = %s, want %s", a, b)
		}
		if err := m.Validate(context.Background(), pr); err != nil {
			t.Errorf("Validate(fresh minted principal) = %v, want nil", err)
		}
	}

	// The Principal's Groups are the caller's own copy.
	pr, _ := m.Authenticate(context.Background(), plainLogin("alice", got.Secret))
	pr.Groups[0] = "admins"
	pr2, _ := m.Authenticate(context.Background(), plainLogin("alice", got.Secret))
	if pr2.Groups[0] != "ops" {
		t.Errorf("changing one Principal's Groups changed the next one's: %v", pr2.Groups)
	}
}

func TestMintLoginFailures(t *testing.T) {
	clock := newMintClock()
	m := newTestMinter(t, openMintStore(t, t.TempDir()), clock)
	a := mustMint(t, m, alice(clock), 0, "")
	bob := alice(clock)
	bob.Username, bob.Subject = "bob", "oidc:https://idp.example#b0b"
	b := mustMint(t, m, bob, 0, "")
	wrong := Secret(SecretPrefix + strings.Repeat("b", 32))

	tests := []struct {
		name  string
		c     Credentials
		cause error
	}{
		{"wrong secret", plainLogin("alice", wrong), errWrongSecret},
		{"other user's secret", plainLogin("alice", b.Secret), errWrongSecret},
		{"secret for unknown user", plainLogin("carol", a.Secret), errUserHoldsNone},
		{"not a minted secret", plainLogin("alice", "hunter2"), errNotMinted},
		{"secret with trailing space", plainLogin("alice", a.Secret+" "), errWrongSecret},
		{"upper-case secret", plainLogin("alice", Secret(strings.ToUpper(a.Secret.Reveal()))), errNotMinted},
		{"empty username", plainLogin("", a.Secret), errEmptyUsername},
		{"md5 wrong secret", md5Login("alice", "1", wrong), errWrongKey},
		{"md5 other user's secret", md5Login("alice", "1", b.Secret), errWrongKey},
		{"md5 key for another challenge", Credentials{Username: "alice", AuthType: "MD5", Challenge: "2", Key: clientKey("1", a.Secret)}, errWrongKey},
		{"md5 upper-case key", Credentials{Username: "alice", AuthType: "MD5", Challenge: "1", Key: strings.ToUpper(clientKey("1", a.Secret))}, errWrongKey},
		{"md5 no challenge", Credentials{Username: "alice", AuthType: "MD5", Key: clientKey("", a.Secret)}, errNoChallenge},
		{"md5 no key", Credentials{Username: "alice", AuthType: "MD5", Challenge: "1", Secret: a.Secret}, errNoKey},
		{"md5 unknown user", md5Login("carol", "1", a.Secret), errUserHoldsNone},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := m.Authenticate(context.Background(), tt.c)
			if !errors.Is(err, ErrAuthFailed) || !errors.Is(err, tt.cause) {
				t.Fatalf("Authenticate(%s) error = %v, want ErrAuthFailed wrapping %q", tt.name, err, tt.cause)
			}
			if !reflect.DeepEqual(p, Principal{}) {
				t.Errorf("Authenticate(%s) = %+v on failure, want zero Principal", tt.name, p)
			}
			assertNoSecret(t, err, a.Secret, b.Secret, wrong, Secret(tt.c.Key))
		})
	}

	t.Run("context done", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if _, err := m.Authenticate(ctx, plainLogin("alice", a.Secret)); !errors.Is(err, ErrAuthFailed) || !errors.Is(err, context.Canceled) {
			t.Errorf("Authenticate(cancelled ctx) error = %v, want ErrAuthFailed wrapping context.Canceled", err)
		}
	})
}

func TestMintExpiry(t *testing.T) {
	clock := newMintClock()
	m := newTestMinter(t, openMintStore(t, t.TempDir()), clock)
	var changes atomic.Int32
	m.OnChange(func() { changes.Add(1) })
	got := mustMint(t, m, alice(clock), 30*time.Minute, "short")
	if n := changes.Load(); n != 1 {
		t.Errorf("OnChange calls after Mint = %d, want 1", n)
	}
	p, err := m.Authenticate(context.Background(), plainLogin("alice", got.Secret))
	if err != nil {
		t.Fatalf("Authenticate() error = %v", err)
	}

	clock.advance(30*time.Minute - time.Nanosecond)
	if _, err := m.Authenticate(context.Background(), md5Login("alice", "9", got.Secret)); err != nil {
		t.Fatalf("Authenticate(1 ns before expiry) error = %v", err)
	}
	clock.advance(time.Nanosecond)
	for _, c := range []Credentials{plainLogin("alice", got.Secret), md5Login("alice", "9", got.Secret)} {
		_, err := m.Authenticate(context.Background(), c)
		if !errors.Is(err, ErrAuthFailed) || !errors.Is(err, ErrExpired) {
			t.Errorf("Authenticate(expired, AuthType %q) error = %v, want ErrAuthFailed wrapping ErrExpired", c.AuthType, err)
		}
		assertNoSecret(t, err, got.Secret)
	}
	if err := m.Validate(context.Background(), p); !errors.Is(err, ErrExpired) {
		t.Errorf("Validate(expired) = %v, want ErrExpired", err)
	}
	if l, _ := m.List(context.Background(), "alice"); len(l) != 0 {
		t.Errorf("List() after expiry = %v, want none", l)
	}

	// The sweep deletes it from the store, and says so.
	if err := m.Sync(context.Background()); err != nil {
		t.Fatalf("Sync() error = %v", err)
	}
	if n := changes.Load(); n != 2 {
		t.Errorf("OnChange calls after the expiry sweep = %d, want 2", n)
	}
	snap, err := m.store.Load(context.Background())
	if err != nil || len(snap.Records) != 0 {
		t.Errorf("store after sweep: %d records, %v; want 0", len(snap.Records), err)
	}
	if err := m.Validate(context.Background(), p); !errors.Is(err, ErrExpired) {
		t.Errorf("Validate(expired and swept) = %v, want ErrExpired", err)
	}
	if err := m.Sync(context.Background()); err != nil || changes.Load() != 2 {
		t.Errorf("Sync() with nothing to do: %v, %d OnChange calls, want nil, still 2", err, changes.Load())
	}
}

func TestMintTTLAndLimits(t *testing.T) {
	clock := newMintClock()
	m := newTestMinter(t, openMintStore(t, t.TempDir()), clock, func(c *MinterConfig) {
		c.MaxTTL = 24 * time.Hour
		c.MaxPerUser = 3
	})
	p := alice(clock)
	ctx := context.Background()

	if got := mustMint(t, m, p, 24*time.Hour, ""); !got.Expires.Equal(clock.now().Add(24 * time.Hour)) {
		t.Errorf("Mint(ttl = MaxTTL) expires %v, want %v", got.Expires, clock.now().Add(24*time.Hour))
	}
	for _, ttl := range []time.Duration{24*time.Hour + 1, -time.Second} {
		if _, err := m.Mint(ctx, p, ttl, ""); err == nil {
			t.Errorf("Mint(ttl %v) error = nil, want refusal", ttl)
		}
	}
	for _, label := range []string{strings.Repeat("x", 101), "a\nb", "tab\there", "\xff"} {
		if _, err := m.Mint(ctx, p, 0, label); err == nil {
			t.Errorf("Mint(label %q) error = nil, want refusal", label)
		}
	}
	bad := p
	bad.Claims = map[string]any{"f": func() {}}
	if _, err := m.Mint(ctx, bad, 0, ""); err == nil {
		t.Error("Mint(claims not JSON) error = nil, want refusal")
	}
	bad = p
	bad.Username = ""
	if _, err := m.Mint(ctx, bad, 0, ""); err == nil {
		t.Error("Mint(empty username) error = nil, want refusal")
	}
	// Records the store could not read back are refused when minted, so
	// a huge identity cannot make the store file unreadable at restart.
	for name, mod := range map[string]func(*Principal){
		"huge subject": func(p *Principal) { p.Subject = strings.Repeat("s", maxSubjectLen+1) },
		"huge claims":  func(p *Principal) { p.Claims = map[string]any{"x": strings.Repeat("c", maxClaimsLen)} },
		"many groups":  func(p *Principal) { p.Groups = make([]string, maxGroups+1) },
		"empty group":  func(p *Principal) { p.Groups = []string{""} },
		"groups > 64 KiB": func(p *Principal) {
			p.Groups = nil
			for i := range maxGroups {
				p.Groups = append(p.Groups, fmt.Sprintf("%0255d", i))
			}
		},
	} {
		bad := p
		mod(&bad)
		if _, err := m.Mint(ctx, bad, 0, ""); err == nil {
			t.Errorf("Mint(%s) error = nil, want refusal", name)
		}
	}
	if snap, err := m.store.Load(ctx); err != nil || len(snap.Records) != 1 {
		t.Errorf("store after refused mints: %d records, %v; want 1", len(snap.Records), err)
	}

	// A session opened with a minted secret cannot mint another.
	first := mustMint(t, m, p, time.Hour, "")
	mp, err := m.Authenticate(ctx, plainLogin("alice", first.Secret))
	if err != nil {
		t.Fatalf("Authenticate() error = %v", err)
	}
	if _, err := m.Mint(ctx, mp, 0, ""); err == nil {
		t.Error("Mint(minted principal) error = nil, want refusal")
	}

	// MaxPerUser: 3 live secrets; the fourth is refused until one expires.
	mustMint(t, m, p, 2*time.Hour, "")
	_, err = m.Mint(ctx, p, 0, "")
	if !errors.Is(err, ErrTooManySecrets) {
		t.Fatalf("Mint(4th) error = %v, want ErrTooManySecrets", err)
	}
	bob := p
	bob.Username = "bob"
	mustMint(t, m, bob, 0, "") // another user is not affected
	clock.advance(time.Hour)   // first expires
	mustMint(t, m, p, 0, "")
	if l, _ := m.List(ctx, "ALICE"); len(l) != 3 {
		t.Errorf("List(ALICE) = %d secrets, want 3", len(l))
	}
	all, _ := m.ListAll(ctx)
	if len(all) != 4 || all[0].Username != "alice" || all[3].Username != "bob" {
		t.Errorf("ListAll() = %+v, want 3 of alice's then bob's", all)
	}
}

func TestNewMinterConfig(t *testing.T) {
	store := openMintStore(t, t.TempDir())
	for name, cfg := range map[string]MinterConfig{
		"no store":           {Key: mintKey},
		"short key":          {Store: store, Key: mintKey[:16]},
		"default over max":   {Store: store, Key: mintKey, DefaultTTL: 2 * time.Hour, MaxTTL: time.Hour},
		"max per user huge":  {Store: store, Key: mintKey, MaxPerUser: MaxMaxPerUser + 1},
		"negative ttl":       {Store: store, Key: mintKey, MaxTTL: -1},
		"negative max users": {Store: store, Key: mintKey, MaxPerUser: -1},
	} {
		if m, err := NewMinter(cfg); err == nil {
			_ = m.Close()
			t.Errorf("NewMinter(%s) error = nil, want refusal", name)
		}
	}
}

func TestMintRevoke(t *testing.T) {
	clock := newMintClock()
	m := newTestMinter(t, openMintStore(t, t.TempDir()), clock)
	ctx := context.Background()
	var changes atomic.Int32
	m.OnChange(func() { changes.Add(1) })
	p := alice(clock)
	one := mustMint(t, m, p, 0, "one")
	two := mustMint(t, m, p, 0, "two")
	bob := p
	bob.Username = "bob"
	b := mustMint(t, m, bob, 0, "")
	p1, err := m.Authenticate(ctx, plainLogin("alice", one.Secret))
	if err != nil {
		t.Fatalf("Authenticate() error = %v", err)
	}

	if err := m.Revoke(ctx, "bob", one.ID); !errors.Is(err, ErrUnknownSecret) {
		t.Errorf("Revoke(another user's id) = %v, want ErrUnknownSecret", err)
	}
	if err := m.Revoke(ctx, "alice", "nosuchid"); !errors.Is(err, ErrUnknownSecret) {
		t.Errorf("Revoke(unknown id) = %v, want ErrUnknownSecret", err)
	}
	err = m.Revoke(ctx, "alice", one.Secret.Reveal()) // a secret pasted as an ID
	if !errors.Is(err, ErrUnknownSecret) {
		t.Errorf("Revoke(secret as id) = %v, want ErrUnknownSecret", err)
	}
	assertNoSecret(t, err, one.Secret)
	before := changes.Load()
	if err := m.Revoke(ctx, "ALICE", one.ID); err != nil {
		t.Fatalf("Revoke(own id) error = %v", err)
	}
	if changes.Load() != before+1 {
		t.Errorf("OnChange calls after Revoke = %d, want %d", changes.Load(), before+1)
	}
	for _, c := range []Credentials{plainLogin("alice", one.Secret), md5Login("alice", "3", one.Secret)} {
		if _, err := m.Authenticate(ctx, c); !errors.Is(err, ErrAuthFailed) {
			t.Errorf("Authenticate(revoked, AuthType %q) error = %v, want ErrAuthFailed", c.AuthType, err)
		}
	}
	if err := m.Validate(ctx, p1); !errors.Is(err, ErrRevoked) {
		t.Errorf("Validate(revoked secret's principal) = %v, want ErrRevoked", err)
	}
	if _, err := m.Authenticate(ctx, plainLogin("alice", two.Secret)); err != nil {
		t.Errorf("Authenticate(other secret) error = %v, want nil", err)
	}
	if err := m.Revoke(ctx, "alice", one.ID); !errors.Is(err, ErrUnknownSecret) {
		t.Errorf("Revoke(twice) = %v, want ErrUnknownSecret", err)
	}
	if l, _ := m.List(ctx, "alice"); len(l) != 1 || l[0].ID != two.ID {
		t.Errorf("List(alice) = %+v, want only %s", l, two.ID)
	}

	// The administrators' form revokes any user's secret.
	if err := m.RevokeID(ctx, b.ID); err != nil {
		t.Fatalf("RevokeID() error = %v", err)
	}
	if _, err := m.Authenticate(ctx, plainLogin("bob", b.Secret)); !errors.Is(err, ErrAuthFailed) {
		t.Errorf("Authenticate(after RevokeID) error = %v, want ErrAuthFailed", err)
	}

	// A Principal whose secret ID belongs to another user is not valid.
	forged := p1
	forged.SecretID = two.ID
	forged.Username = "bob"
	if err := m.Validate(ctx, forged); !errors.Is(err, ErrRevoked) {
		t.Errorf("Validate(secret id of another user) = %v, want ErrRevoked", err)
	}
}

func TestMintRevokeUser(t *testing.T) {
	clock := newMintClock()
	m := newTestMinter(t, openMintStore(t, t.TempDir()), clock)
	ctx := context.Background()
	p := alice(clock)
	a1 := mustMint(t, m, p, 0, "")
	a2 := mustMint(t, m, p, 0, "")
	bob := p
	bob.Username = "bob"
	b := mustMint(t, m, bob, 0, "")
	mp, err := m.Authenticate(ctx, md5Login("alice", "1", a2.Secret))
	if err != nil {
		t.Fatalf("Authenticate() error = %v", err)
	}
	local := Principal{Subject: "local:alice", Username: "alice", Method: MethodPassword, AuthTime: clock.now()}

	clock.advance(time.Minute)
	var changes atomic.Int32
	m.OnChange(func() { changes.Add(1) })
	n, err := m.RevokeUser(ctx, "Alice")
	if err != nil || n != 2 {
		t.Fatalf("RevokeUser(Alice) = %d, %v, want 2, nil", n, err)
	}
	if changes.Load() != 1 {
		t.Errorf("OnChange calls after RevokeUser = %d, want 1", changes.Load())
	}
	revokedAt := clock.now()
	if got := m.RevokedAt("ALICE"); !got.Equal(revokedAt) {
		t.Errorf("RevokedAt(ALICE) = %v, want %v", got, revokedAt)
	}
	if got := m.RevokedAt("bob"); !got.IsZero() {
		t.Errorf("RevokedAt(bob) = %v, want zero", got)
	}
	for _, s := range []Secret{a1.Secret, a2.Secret} {
		if _, err := m.Authenticate(ctx, plainLogin("alice", s)); !errors.Is(err, ErrAuthFailed) {
			t.Errorf("Authenticate(alice after RevokeUser) error = %v, want ErrAuthFailed", err)
		}
	}
	if _, err := m.Authenticate(ctx, plainLogin("bob", b.Secret)); err != nil {
		t.Errorf("Authenticate(bob) error = %v, want nil", err)
	}
	if l, _ := m.List(ctx, "alice"); len(l) != 0 {
		t.Errorf("List(alice) = %v, want none", l)
	}
	for name, pr := range map[string]Principal{"oidc": p, "minted": mp, "local": local} {
		if err := m.Validate(ctx, pr); !errors.Is(err, ErrRevoked) {
			t.Errorf("Validate(%s principal authenticated before RevokeUser) = %v, want ErrRevoked", name, err)
		}
	}
	noTime := p
	noTime.AuthTime = time.Time{}
	if err := m.Validate(ctx, noTime); !errors.Is(err, ErrRevoked) {
		t.Errorf("Validate(no AuthTime) = %v, want ErrRevoked", err)
	}
	at := p
	at.AuthTime = revokedAt
	if err := m.Validate(ctx, at); !errors.Is(err, ErrRevoked) {
		t.Errorf("Validate(AuthTime = revocation time) = %v, want ErrRevoked", err)
	}
	if _, err := m.Mint(ctx, p, 0, ""); !errors.Is(err, ErrRevoked) {
		t.Errorf("Mint(principal from before the revocation) = %v, want ErrRevoked", err)
	}

	// Signing in again afterwards works, and may mint.
	clock.advance(time.Second)
	fresh := alice(clock)
	if err := m.Validate(ctx, fresh); err != nil {
		t.Errorf("Validate(signed in after RevokeUser) = %v, want nil", err)
	}
	a3 := mustMint(t, m, fresh, 0, "")
	if _, err := m.Authenticate(ctx, plainLogin("alice", a3.Secret)); err != nil {
		t.Errorf("Authenticate(secret minted after RevokeUser) error = %v", err)
	}

	// An earlier revocation time never replaces a later one.
	if _, _, err := m.store.RevokeUser(ctx, "alice", revokedAt.Add(-time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := m.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if got := m.RevokedAt("alice"); !got.Equal(revokedAt) {
		t.Errorf("RevokedAt after an older revocation = %v, want %v", got, revokedAt)
	}
	if _, err := m.RevokeUser(ctx, ""); err == nil {
		t.Error("RevokeUser(\"\") error = nil, want refusal")
	}
}

func TestMintRestart(t *testing.T) {
	dir := t.TempDir()
	clock := newMintClock()
	ctx := context.Background()
	store, err := OpenFileStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	m1, err := NewMinter(MinterConfig{Store: store, Key: mintKey, Now: clock.now, PollInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	p := alice(clock)
	keep := mustMint(t, m1, p, 0, "keep")
	gone := mustMint(t, m1, p, 0, "gone")
	if err := m1.Revoke(ctx, "alice", gone.ID); err != nil {
		t.Fatal(err)
	}
	bob := p
	bob.Username = "bob"
	mustMint(t, m1, bob, 0, "")
	clock.advance(time.Second)
	if _, err := m1.RevokeUser(ctx, "bob"); err != nil {
		t.Fatal(err)
	}
	_ = m1.Close()
	// A second process cannot open the same directory while the first holds it.
	if s2, err := OpenFileStore(dir); err == nil {
		_ = s2.Close()
		t.Error("OpenFileStore(directory in use) error = nil, want refusal")
	}
	_ = store.Close()

	m2 := newTestMinter(t, openMintStore(t, dir), clock)
	pr, err := m2.Authenticate(ctx, md5Login("alice", "4", keep.Secret))
	if err != nil {
		t.Fatalf("Authenticate(after restart) error = %v", err)
	}
	if pr.SecretID != keep.ID || pr.Subject != p.Subject || claimsJSON(t, pr.Claims) != claimsJSON(t, p.Claims) {
		t.Errorf("Authenticate(after restart) = %+v, want the minted identity", pr)
	}
	if _, err := m2.Authenticate(ctx, plainLogin("alice", gone.Secret)); !errors.Is(err, ErrAuthFailed) {
		t.Errorf("Authenticate(revoked before restart) error = %v, want ErrAuthFailed", err)
	}
	if got := m2.RevokedAt("bob"); !got.Equal(clock.now()) {
		t.Errorf("RevokedAt(bob) after restart = %v, want %v", got, clock.now())
	}
	l, _ := m2.List(ctx, "alice")
	if len(l) != 1 || l[0] != keep.Info {
		t.Errorf("List(alice) after restart = %+v, want [%+v]", l, keep.Info)
	}
}

func TestMintAtRest(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	clock := newMintClock()
	m := newTestMinter(t, openMintStore(t, dir), clock)
	var secrets []Secret
	for i := range 5 {
		p := alice(clock)
		p.Username = fmt.Sprintf("user%d", i)
		secrets = append(secrets, mustMint(t, m, p, 0, "label").Secret)
	}
	path := filepath.Join(dir, storeFileName)
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if perm := fi.Mode().Perm(); perm != 0o600 {
		t.Errorf("%s mode = %04o, want 0600", storeFileName, perm)
	}
	if di, err := os.Stat(dir); err != nil || di.Mode().Perm() != 0o700 {
		t.Errorf("store directory mode = %v, %v, want 0700", di.Mode().Perm(), err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(data, []byte(`"user3"`)) {
		t.Fatal("store file does not contain the records (test is not looking at the right file)")
	}
	for _, s := range secrets {
		random := s.Reveal()[len(SecretPrefix):]
		raw, _ := b32.DecodeString(random)
		for _, needle := range [][]byte{
			[]byte(random[:16]), []byte(random[16:]), []byte(strings.ToUpper(random[:16])), raw,
			[]byte(base64.StdEncoding.EncodeToString([]byte(s.Reveal()))[:20]),
		} {
			if bytes.Contains(data, needle) {
				t.Fatalf("store file contains (part of) a secret in plaintext")
			}
		}
	}
	if bytes.Contains(data, []byte(SecretPrefix)) {
		t.Error("store file contains the secret prefix: a secret in plaintext?")
	}
	tmps, _ := filepath.Glob(filepath.Join(dir, ".*.tmp"))
	if len(tmps) != 0 {
		t.Errorf("temporary files left behind: %v", tmps)
	}
}

// editStoreFile rewrites dir's minted.json through f, which changes the
// decoded JSON in place.
func editStoreFile(t *testing.T, dir string, f func(records []map[string]any)) {
	t.Helper()
	path := filepath.Join(dir, storeFileName)
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var sf struct {
		Format      string           `json:"format"`
		Version     int              `json:"version"`
		Generation  uint64           `json:"generation"`
		Records     []map[string]any `json:"records"`
		Revocations map[string]any   `json:"revocations"`
	}
	if err := json.Unmarshal(data, &sf); err != nil {
		t.Fatal(err)
	}
	f(sf.Records)
	out, err := json.Marshal(sf)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, out, 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestMintTamperedRecordsRefused(t *testing.T) {
	setup := func(t *testing.T) (dir string, clock *mintClock) {
		dir = t.TempDir()
		clock = newMintClock()
		s, err := OpenFileStore(dir)
		if err != nil {
			t.Fatal(err)
		}
		m, err := NewMinter(MinterConfig{Store: s, Key: mintKey, Now: clock.now, PollInterval: -1})
		if err != nil {
			t.Fatal(err)
		}
		p := alice(clock)
		mustMint(t, m, p, 0, "a")
		p.Username = "bob"
		p.Groups = []string{"nobody"}
		mustMint(t, m, p, 0, "b")
		_ = m.Close()
		_ = s.Close()
		return dir, clock
	}
	// find returns the record of username.
	find := func(records []map[string]any, username string) map[string]any {
		for _, r := range records {
			if r["username"] == username {
				return r
			}
		}
		panic("no record for " + username)
	}
	tests := []struct {
		name string
		edit func(records []map[string]any)
	}{
		{"flipped ciphertext bit", func(rs []map[string]any) {
			b, _ := base64.StdEncoding.DecodeString(rs[0]["sealed"].(string))
			b[len(b)-20] ^= 1
			rs[0]["sealed"] = base64.StdEncoding.EncodeToString(b)
		}},
		{"swapped sealed secrets", func(rs []map[string]any) {
			rs[0]["sealed"], rs[1]["sealed"] = rs[1]["sealed"], rs[0]["sealed"]
		}},
		{"swapped IDs", func(rs []map[string]any) { rs[0]["id"], rs[1]["id"] = rs[1]["id"], rs[0]["id"] }},
		{"username changed", func(rs []map[string]any) { find(rs, "bob")["username"] = "alice" }},
		{"groups escalated", func(rs []map[string]any) { find(rs, "bob")["groups"] = []string{"admins"} }},
		{"claims changed", func(rs []map[string]any) {
			find(rs, "alice")["claims"].(map[string]any)["extension"] = "1002"
		}},
		{"expiry extended", func(rs []map[string]any) {
			find(rs, "alice")["expires"] = time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
		}},
		{"subject changed", func(rs []map[string]any) { find(rs, "alice")["subject"] = "local:admin" }},
		{"label changed", func(rs []map[string]any) { find(rs, "alice")["label"] = "x" }},
		{"unknown seal version", func(rs []map[string]any) {
			b, _ := base64.StdEncoding.DecodeString(rs[0]["sealed"].(string))
			b[0] = 2
			rs[0]["sealed"] = base64.StdEncoding.EncodeToString(b)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir, clock := setup(t)
			editStoreFile(t, dir, tt.edit)
			s := openMintStore(t, dir)
			m, err := NewMinter(MinterConfig{Store: s, Key: mintKey, Now: clock.now, PollInterval: -1})
			if err == nil {
				_ = m.Close()
				t.Fatalf("NewMinter(%s) error = nil, want refusal", tt.name)
			}
			if !strings.Contains(err.Error(), "cannot be decrypted") {
				t.Errorf("NewMinter(%s) error = %v, want it to say the records cannot be decrypted", tt.name, err)
			}
		})
	}

	t.Run("untouched file loads", func(t *testing.T) {
		dir, clock := setup(t)
		editStoreFile(t, dir, func([]map[string]any) {}) // a re-encoding changes nothing that matters
		newTestMinter(t, openMintStore(t, dir), clock)
	})

	t.Run("wrong key", func(t *testing.T) {
		dir, clock := setup(t)
		other := bytes.Repeat([]byte{1}, MintKeySize)
		m, err := NewMinter(MinterConfig{Store: openMintStore(t, dir), Key: other, Now: clock.now, PollInterval: -1})
		if err == nil {
			_ = m.Close()
			t.Fatal("NewMinter(wrong key) error = nil, want refusal")
		}
		if !strings.Contains(err.Error(), "2 stored record(s)") {
			t.Errorf("NewMinter(wrong key) error = %v, want both records named", err)
		}
	})
}

// TestMintReplicas runs two Minters on one Store, as two proxy replicas
// on a shared store: each sees the other's mints and revocations at its
// next Sync, and tells its OnChange functions.
func TestMintReplicas(t *testing.T) {
	clock := newMintClock()
	store := openMintStore(t, t.TempDir())
	a := newTestMinter(t, store, clock)
	b := newTestMinter(t, store, clock)
	ctx := context.Background()
	var bChanges atomic.Int32
	b.OnChange(func() { bChanges.Add(1) })

	got := mustMint(t, a, alice(clock), 0, "")
	if _, err := b.Authenticate(ctx, plainLogin("alice", got.Secret)); !errors.Is(err, ErrAuthFailed) {
		t.Fatalf("replica B before Sync: error = %v, want ErrAuthFailed (not seen yet)", err)
	}
	if err := b.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if bChanges.Load() != 1 {
		t.Errorf("replica B OnChange calls after seeing a mint = %d, want 1", bChanges.Load())
	}
	pr, err := b.Authenticate(ctx, md5Login("alice", "8", got.Secret))
	if err != nil {
		t.Fatalf("replica B after Sync: error = %v", err)
	}

	// B mints too; A, which has not synced, mints again: versions interleave.
	mustMint(t, b, alice(clock), 0, "")
	mustMint(t, a, alice(clock), 0, "")
	if err := a.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if l, _ := a.List(ctx, "alice"); len(l) != 3 {
		t.Errorf("replica A List after Sync = %d secrets, want 3", len(l))
	}

	if err := a.Revoke(ctx, "alice", got.ID); err != nil {
		t.Fatal(err)
	}
	if err := b.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if err := b.Validate(ctx, pr); !errors.Is(err, ErrRevoked) {
		t.Errorf("replica B Validate(after A revoked) = %v, want ErrRevoked", err)
	}
	clock.advance(time.Second)
	if _, err := a.RevokeUser(ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	if err := b.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if !b.RevokedAt("alice").Equal(clock.now()) {
		t.Errorf("replica B RevokedAt = %v, want %v", b.RevokedAt("alice"), clock.now())
	}
	if l, _ := b.ListAll(ctx); len(l) != 0 {
		t.Errorf("replica B ListAll after RevokeUser on A = %v, want none", l)
	}
}

// TestMintConcurrent mints, authenticates, validates, revokes and syncs in
// parallel on two Minters sharing a Store; run it with -race.
func TestMintConcurrent(t *testing.T) {
	clock := newMintClock()
	store := openMintStore(t, t.TempDir())
	ms := []*Minter{newTestMinter(t, store, clock), newTestMinter(t, store, clock)}
	ctx := context.Background()
	var changes atomic.Int32
	for _, m := range ms {
		m.OnChange(func() { changes.Add(1) })
	}
	victim := alice(clock)
	victim.Username = "victim"
	for range 3 {
		mustMint(t, ms[1], victim, 0, "")
	}
	clock.advance(time.Millisecond)
	const workers, rounds = 4, 12
	var wg sync.WaitGroup
	errs := make(chan error, workers*rounds*4)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			m := ms[w%2]
			p := alice(clock)
			p.Username = fmt.Sprintf("user%d", w)
			for i := range rounds {
				got, err := m.Mint(ctx, p, 0, "")
				if err != nil {
					errs <- err
					return
				}
				pr, err := m.Authenticate(ctx, md5Login(p.Username, "1", got.Secret))
				if err != nil {
					errs <- fmt.Errorf("authenticate own fresh secret: %w", err)
					return
				}
				if err := m.Validate(ctx, pr); err != nil {
					errs <- fmt.Errorf("validate: %w", err)
				}
				_, _ = ms[(w+1)%2].Authenticate(ctx, plainLogin(p.Username, got.Secret))
				_ = ms[(w+1)%2].Sync(ctx)
				_, _ = m.List(ctx, p.Username)
				if i%2 == 0 {
					if err := m.Revoke(ctx, p.Username, got.ID); err != nil {
						errs <- fmt.Errorf("revoke: %w", err)
					}
					if _, err := m.Authenticate(ctx, plainLogin(p.Username, got.Secret)); err == nil {
						errs <- errors.New("revoked secret still authenticates")
					}
				}
				if i == rounds/2 && w == 0 {
					if n, err := m.RevokeUser(ctx, "victim"); err != nil || n != 3 {
						errs <- fmt.Errorf("RevokeUser(victim) = %d, %v, want 3, nil", n, err)
					}
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	for _, m := range ms {
		if err := m.Sync(ctx); err != nil {
			t.Error(err)
		}
	}
	a, _ := ms[0].ListAll(ctx)
	b, _ := ms[1].ListAll(ctx)
	if !reflect.DeepEqual(a, b) {
		t.Errorf("replicas disagree after Sync: %d vs %d secrets", len(a), len(b))
	}
	if len(a) != workers*rounds/2 {
		t.Errorf("live secrets = %d, want %d (every other one revoked, the victim's all)", len(a), workers*rounds/2)
	}
	for i, m := range ms {
		if err := m.Validate(ctx, victim); !errors.Is(err, ErrRevoked) {
			t.Errorf("replica %d: Validate(victim) = %v, want ErrRevoked", i, err)
		}
	}
	if changes.Load() < workers*rounds {
		t.Errorf("OnChange calls = %d, want at least %d", changes.Load(), workers*rounds)
	}
}

// TestMinterBackgroundLoop checks that the loop started by NewMinter syncs
// by itself and that Close stops it.
func TestMinterBackgroundLoop(t *testing.T) {
	before := runtime.NumGoroutine()
	clock := newMintClock()
	store := openMintStore(t, t.TempDir())
	a := newTestMinter(t, store, clock)
	b := newTestMinter(t, store, clock, func(c *MinterConfig) { c.PollInterval = 5 * time.Millisecond })
	seen := make(chan struct{}, 10)
	b.OnChange(func() { seen <- struct{}{} })
	got := mustMint(t, a, alice(clock), 0, "")
	select {
	case <-seen:
	case <-time.After(30 * time.Second):
		t.Fatal("the background loop did not report the other Minter's mint")
	}
	if _, err := b.Authenticate(context.Background(), plainLogin("alice", got.Secret)); err != nil {
		t.Errorf("Authenticate() after the background Sync: %v", err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Authenticate(context.Background(), plainLogin("alice", got.Secret)); !errors.Is(err, ErrAuthFailed) {
		t.Errorf("Authenticate() after Close error = %v, want ErrAuthFailed", err)
	}
	if _, err := b.Mint(context.Background(), alice(clock), 0, ""); !errors.Is(err, ErrMinterClosed) {
		t.Errorf("Mint() after Close error = %v, want ErrMinterClosed", err)
	}
	if err := b.Close(); err != nil {
		t.Errorf("second Close() = %v", err)
	}
	// Close waited for the loop: no goroutine is left behind.
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); runtime.NumGoroutine() > before; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("goroutine leak: %d before, %d after Close:\n%s", before, runtime.NumGoroutine(), buf[:runtime.Stack(buf, true)])
		}
	}
}

func TestMintClaimsRoundTrip(t *testing.T) {
	dir := t.TempDir()
	clock := newMintClock()
	p := alice(clock)
	p.Claims = map[string]any{
		"int": 1001, "big": int64(1) << 60, "float": 1.5, "neg": -3, "bool": true, "null": nil,
		"html": "<a&b>", "unicode": "Zürich ☎", "nested": map[string]any{"list": []any{1, "two", 3.25}},
	}
	var secret Secret
	func() {
		s, err := OpenFileStore(dir)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		m, err := NewMinter(MinterConfig{Store: s, Key: mintKey, Now: clock.now, PollInterval: -1})
		if err != nil {
			t.Fatal(err)
		}
		defer m.Close()
		secret = mustMint(t, m, p, 0, "").Secret
	}()
	m := newTestMinter(t, openMintStore(t, dir), clock)
	pr, err := m.Authenticate(context.Background(), plainLogin("alice", secret))
	if err != nil {
		t.Fatalf("Authenticate() after restart: %v", err)
	}
	if got, want := claimsJSON(t, pr.Claims), claimsJSON(t, p.Claims); got != want {
		t.Errorf("claims after restart = %s, want %s", got, want)
	}
}

func TestMintKeyFiles(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "mint.key")
	if err := GenerateKeyFile(path); err != nil {
		t.Fatalf("GenerateKeyFile() error = %v", err)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode = %v, %v, want 0600", fi.Mode().Perm(), err)
	}
	k1, err := LoadKey(path)
	if err != nil || len(k1) != MintKeySize {
		t.Fatalf("LoadKey() = %d bytes, %v, want %d", len(k1), err, MintKeySize)
	}
	if err := GenerateKeyFile(path); err == nil {
		t.Error("GenerateKeyFile(existing) error = nil, want refusal")
	}
	if k2, _ := LoadKey(path); !bytes.Equal(k1, k2) {
		t.Error("GenerateKeyFile(existing) changed the key")
	}
	other := filepath.Join(dir, "other.key")
	if err := GenerateKeyFile(other); err != nil {
		t.Fatal(err)
	}
	if k3, _ := LoadKey(other); bytes.Equal(k1, k3) {
		t.Error("two generated keys are equal")
	}

	raw := filepath.Join(dir, "raw.key")
	if err := os.WriteFile(raw, mintKey, 0o400); err != nil {
		t.Fatal(err)
	}
	if k, err := LoadKey(raw); err != nil || !bytes.Equal(k, mintKey) {
		t.Errorf("LoadKey(32 raw bytes, 0400) = %x, %v, want the bytes", k, err)
	}

	open := filepath.Join(dir, "open.key")
	if err := os.WriteFile(open, []byte(base64.StdEncoding.EncodeToString(mintKey)), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(open, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadKey(open); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Errorf("LoadKey(mode 0644) error = %v, want a refusal saying chmod 600", err)
	}

	for _, s := range []string{
		base64.StdEncoding.EncodeToString(mintKey),
		"  " + base64.RawURLEncoding.EncodeToString(mintKey) + "\n",
		base64.URLEncoding.EncodeToString(mintKey),
		hex.EncodeToString(mintKey), // openssl rand -hex 32
		strings.ToUpper(hex.EncodeToString(mintKey)),
	} {
		if k, err := ParseKey(s); err != nil || !bytes.Equal(k, mintKey) {
			t.Errorf("ParseKey(%q) = %x, %v, want the key", s, k, err)
		}
	}
	for _, s := range []string{"", "%%zz-not-b64-zz%%", base64.StdEncoding.EncodeToString(mintKey[:16]), hex.EncodeToString(mintKey[:31]) + "zz"} {
		k, err := ParseKey(s)
		if err == nil {
			t.Errorf("ParseKey(%q) = %x, want an error", s, k)
			continue
		}
		if len(s) > 8 && strings.Contains(err.Error(), s[:8]) {
			t.Errorf("ParseKey error %q quotes its input", err)
		}
	}
}

// TestMintSyncReportsBadRecords runs a replica whose key differs from the
// one that minted: the record it cannot open is left out and reported
// (through ReportError, by the background loop), the rest still applies,
// and a closed store is reported too.
func TestMintSyncReportsBadRecords(t *testing.T) {
	clock := newMintClock()
	store, err := OpenFileStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	reports := make(chan error, 100)
	b := newTestMinter(t, store, clock, func(c *MinterConfig) {
		c.Key = bytes.Repeat([]byte{7}, MintKeySize)
		c.PollInterval = 5 * time.Millisecond
		c.ReportError = func(err error) { reports <- err }
	})
	a := newTestMinter(t, store, clock)
	got := mustMint(t, a, alice(clock), 0, "")
	select {
	case err := <-reports:
		if !strings.Contains(err.Error(), "1 record(s) ignored") || !strings.Contains(err.Error(), got.ID) {
			t.Errorf("reported error = %v, want the record %s named as ignored", err, got.ID)
		}
		assertNoSecret(t, err, got.Secret)
	case <-time.After(30 * time.Second):
		t.Fatal("no error reported for a record that does not decrypt")
	}
	if _, err := b.Authenticate(context.Background(), plainLogin("alice", got.Secret)); !errors.Is(err, ErrAuthFailed) {
		t.Errorf("Authenticate(record the replica cannot open) error = %v, want ErrAuthFailed", err)
	}
	// The revocation in the same store still applies.
	clock.advance(time.Second)
	if _, err := a.RevokeUser(context.Background(), "bob"); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(30 * time.Second); b.RevokedAt("bob").IsZero(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("replica did not apply a revocation next to a record it cannot open")
		}
	}
	_ = a.Close()
	_ = store.Close()
	for deadline := time.Now().Add(30 * time.Second); ; {
		select {
		case err := <-reports:
			if errors.Is(err, ErrStoreClosed) {
				return
			}
		case <-time.After(time.Until(deadline)):
			t.Fatal("a closed store was not reported")
		}
	}
}
