package redisstore

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/amiproxy/amiproxy/auth"
	"github.com/amiproxy/amiproxy/internal/redistest"
)

// replica is one proxy's Minter on its own Store, with a channel that
// receives every OnChange.
type replica struct {
	store   *Store
	minter  *auth.Minter
	changes chan struct{}
	mu      sync.Mutex
	errs    []error // ReportError
}

func newReplica(t *testing.T, addr string, key []byte, o Options) *replica {
	return newReplicaPoll(t, addr, key, o, 0)
}

// newReplicaPoll is newReplica with a poll interval (0: the default 1 s).
func newReplicaPoll(t *testing.T, addr string, key []byte, o Options, poll time.Duration) *replica {
	t.Helper()
	r := &replica{store: newStore(t, addr, o), changes: make(chan struct{}, 64)}
	m, err := auth.NewMinter(auth.MinterConfig{
		Store: r.store, Key: key, PollInterval: poll,
		ReportError: func(err error) { r.mu.Lock(); r.errs = append(r.errs, err); r.mu.Unlock() },
	}) // default 1 s poll
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Close() }) // before the Store's cleanup (LIFO)
	m.OnChange(func() {
		select {
		case r.changes <- struct{}{}:
		default:
		}
	})
	r.minter = m
	return r
}

// waitFor waits (event-driven, on OnChange) until cond holds.
func (r *replica) waitFor(t *testing.T, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	deadline := time.After(10 * time.Second) // generous: the poll is 1 s
	for !cond() {
		select {
		case <-r.changes:
		case <-deadline:
			t.Fatalf("%s: not seen within 10s", what)
		}
	}
	return time.Since(start)
}

func newKey(t *testing.T) []byte {
	key := make([]byte, auth.MintKeySize)
	if _, err := rand.Read(key); err != nil {
		t.Fatal(err)
	}
	return key
}

func oidcPrincipal(user string) auth.Principal {
	return auth.Principal{Subject: "oidc|" + user, Username: user, Groups: []string{"ops"}, Method: auth.MethodOIDC,
		Claims: map[string]any{"extension": "1001"}, AuthTime: time.Now(), Expires: time.Now().Add(time.Hour)}
}

// TestTwoMinters: a secret minted on replica A authenticates on replica B
// after B's poll, and RevokeUser on A ends it, and the user's older
// sessions, on B.
func TestTwoMinters(t *testing.T) {
	ctx := context.Background()
	srv := startRedis(t)
	key := newKey(t)
	a := newReplica(t, srv.Addr, key, Options{})
	b := newReplica(t, srv.Addr, key, Options{})

	oidcSession := oidcPrincipal("Alice") // signed in on B before the revocation
	minted, err := a.minter.Mint(ctx, oidcPrincipal("Alice"), time.Hour, "softphone")
	if err != nil {
		t.Fatal(err)
	}
	creds := auth.Credentials{Username: "alice", Secret: minted.Secret}
	var onB auth.Principal
	seen := b.waitFor(t, "mint on A, login on B", func() bool {
		p, err := b.minter.Authenticate(ctx, creds)
		onB = p
		return err == nil
	})
	t.Logf("B accepted A's minted secret %v after the mint", seen.Round(time.Millisecond))
	if onB.SecretID != minted.ID || onB.Method != auth.MethodMinted || onB.Subject != "oidc|Alice" || onB.Claims["extension"] != "1001" {
		t.Fatalf("B's principal = %+v, want the minting identity with secret %s", onB, minted.ID)
	}
	// The MD5 challenge works on B too.
	list, err := b.minter.List(ctx, "ALICE")
	if err != nil || len(list) != 1 || list[0].ID != minted.ID {
		t.Fatalf("B lists %v, %v", list, err)
	}
	// A wrong secret fails on B.
	if _, err := b.minter.Authenticate(ctx, auth.Credentials{Username: "alice", Secret: auth.Secret(auth.SecretPrefix + strings.Repeat("b", 32))}); !errors.Is(err, auth.ErrAuthFailed) {
		t.Fatalf("wrong secret on B = %v", err)
	}

	time.Sleep(5 * time.Millisecond) // the revocation must come after the sessions' AuthTime
	start := time.Now()
	n, err := a.minter.RevokeUser(ctx, "alice")
	if err != nil || n != 1 {
		t.Fatalf("RevokeUser on A = %d, %v", n, err)
	}
	ended := b.waitFor(t, "revocation on A ends B's sessions", func() bool {
		return errors.Is(b.minter.Validate(ctx, onB), auth.ErrRevoked)
	})
	t.Logf("B's minted session failed Validate %v after A's RevokeUser (poll 1s)", ended.Round(time.Millisecond))
	if err := b.minter.Validate(ctx, oidcSession); !errors.Is(err, auth.ErrRevoked) {
		t.Fatalf("B: Validate of an OIDC session from before the revocation = %v, want ErrRevoked", err)
	}
	if _, err := b.minter.Authenticate(ctx, creds); err == nil {
		t.Fatal("B still accepts the revoked secret")
	}
	if !b.minter.RevokedAt("alice").After(oidcSession.AuthTime) || time.Since(start) < 0 {
		t.Fatal("B does not know the revocation time")
	}
	// Signing in again after the revocation works on both, and the new
	// secret minted on B authenticates on A.
	again, err := b.minter.Mint(ctx, oidcPrincipal("alice"), 0, "")
	if err != nil {
		t.Fatal(err)
	}
	a.waitFor(t, "mint on B, login on A", func() bool {
		_, err := a.minter.Authenticate(ctx, auth.Credentials{Username: "alice", Secret: again.Secret})
		return err == nil
	})
	for _, r := range []*replica{a, b} {
		r.mu.Lock()
		if len(r.errs) > 0 {
			t.Errorf("background errors: %v", r.errs)
		}
		r.mu.Unlock()
	}
}

// TestWatch: with Watch calling Sync, B sees A's mint and revocation
// without any poll (B's poll is an hour).
func TestWatch(t *testing.T) {
	ctx := context.Background()
	srv := startRedis(t)
	key := newKey(t)
	a := newReplica(t, srv.Addr, key, Options{})
	b := newReplicaPoll(t, srv.Addr, key, Options{}, time.Hour)
	wctx, cancel := context.WithCancel(ctx)
	watched := make(chan error, 1)
	go func() { watched <- b.store.Watch(wctx, func() { _ = b.minter.Sync(wctx) }) }()
	defer func() {
		cancel()
		if err := <-watched; err != nil {
			t.Errorf("Watch = %v, want nil after cancel", err)
		}
	}()
	// Wait until the subscription is live (setup, not an assertion).
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		subs, err := a.store.rdb.PubSubNumSub(ctx, a.store.ch).Result()
		if err == nil && subs[a.store.ch] == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Watch did not subscribe within 10s: %v", err)
		}
	}
	minted, err := a.minter.Mint(ctx, oidcPrincipal("bob"), time.Hour, "")
	if err != nil {
		t.Fatal(err)
	}
	b.waitFor(t, "mint on A", func() bool {
		_, err := b.minter.Authenticate(ctx, auth.Credentials{Username: "bob", Secret: minted.Secret})
		return err == nil
	})
	p := oidcPrincipal("bob")
	time.Sleep(5 * time.Millisecond)
	start := time.Now()
	if _, err := a.minter.RevokeUser(ctx, "bob"); err != nil {
		t.Fatal(err)
	}
	b.waitFor(t, "revocation with Watch", func() bool { return b.minter.Validate(ctx, p) != nil })
	t.Logf("with Watch, B saw A's revocation %v after A's RevokeUser began", time.Since(start).Round(time.Microsecond))
}

// TestRedisDown: errors name the server and the operation, contain no
// password, and never panic; the Minters keep their last snapshot and
// recover when Redis is back.
func TestRedisDown(t *testing.T) {
	ctx := context.Background()
	const password = "s3cret-redis-password"
	srv := redistest.Start(t, redistest.Options{Password: password})

	// Wrong password and no server at all: New fails clearly.
	if _, err := New(ctx, Options{Addr: srv.Addr, Password: "wrong-" + password}); err == nil || strings.Contains(err.Error(), password) ||
		!strings.Contains(err.Error(), srv.Addr) || !strings.Contains(err.Error(), "WRONGPASS") {
		t.Fatalf("New with a wrong password = %v, want WRONGPASS naming the server", err)
	}
	dead := freeAddr(t)
	if _, err := New(ctx, Options{Addr: dead, Password: password, DialTimeout: time.Second}); err == nil ||
		!strings.Contains(err.Error(), dead) || !strings.Contains(err.Error(), "connection refused") {
		t.Fatalf("New without a server = %v, want connection refused naming the server", err)
	}

	key := newKey(t)
	a := newReplica(t, srv.Addr, key, Options{Password: password})
	minted, err := a.minter.Mint(ctx, oidcPrincipal("carol"), time.Hour, "")
	if err != nil {
		t.Fatal(err)
	}
	srv.Kill()
	for name, call := range map[string]func() error{
		"version": func() error { _, err := a.store.Version(ctx); return err },
		"load":    func() error { _, err := a.store.Load(ctx); return err },
		"put":     func() error { _, err := a.store.Put(ctx, record("dddd", "dave", time.Now())); return err },
		"delete":  func() error { _, _, err := a.store.Delete(ctx, []string{"dddd"}); return err },
		"revoke":  func() error { _, _, err := a.store.RevokeUser(ctx, "dave", time.Now()); return err },
		"mint":    func() error { _, err := a.minter.Mint(ctx, oidcPrincipal("dave"), 0, ""); return err },
		"sync":    func() error { return a.minter.Sync(ctx) },
	} {
		err := call()
		if err == nil {
			t.Errorf("%s with Redis down succeeded", name)
			continue
		}
		if !strings.Contains(err.Error(), srv.Addr) || strings.Contains(err.Error(), password) {
			t.Errorf("%s error %q: want the server named and no password", name, err)
		}
	}
	// The Minter still authenticates from memory.
	if _, err := a.minter.Authenticate(ctx, auth.Credentials{Username: "carol", Secret: minted.Secret}); err != nil {
		t.Fatalf("Authenticate with Redis down = %v, want the cached secret accepted", err)
	}
	// A restart here loses the data (no persistence): the Minter reloads
	// the empty store and the secret is gone, on every replica alike.
	srv.Restart()
	a.waitFor(t, "reload after the restart", func() bool {
		_, err := a.minter.Authenticate(ctx, auth.Credentials{Username: "carol", Secret: minted.Secret})
		return err != nil
	})
	if _, err := a.minter.Mint(ctx, oidcPrincipal("carol"), 0, ""); err != nil {
		t.Fatalf("Mint after Redis is back = %v", err)
	}
}

// TestRedisRestartWipes: after Redis loses its data, the version starts
// far above the old one, both replicas drop every secret and revocation,
// and the Store logs a warning.
func TestRedisRestartWipes(t *testing.T) {
	ctx := context.Background()
	srv := startRedis(t)
	key := newKey(t)
	var logs syncBuffer
	logger := slog.New(slog.NewTextHandler(&logs, nil))
	a := newReplica(t, srv.Addr, key, Options{Logger: logger})
	b := newReplica(t, srv.Addr, key, Options{})
	minted, err := a.minter.Mint(ctx, oidcPrincipal("erin"), time.Hour, "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.minter.RevokeUser(ctx, "frank"); err != nil {
		t.Fatal(err)
	}
	creds := auth.Credentials{Username: "erin", Secret: minted.Secret}
	var onB auth.Principal
	b.waitFor(t, "mint on A", func() bool {
		var err error
		onB, err = b.minter.Authenticate(ctx, creds)
		return err == nil && !b.minter.RevokedAt("frank").IsZero()
	})
	before, _ := a.store.Version(ctx)

	srv.Restart()
	for _, r := range []*replica{a, b} {
		r.waitFor(t, "the wipe", func() bool {
			_, err := r.minter.Authenticate(ctx, creds)
			return err != nil && r.minter.RevokedAt("frank").IsZero()
		})
	}
	if err := b.minter.Validate(ctx, onB); !errors.Is(err, auth.ErrRevoked) {
		t.Fatalf("B: Validate of a session whose secret was wiped = %v, want ErrRevoked", err)
	}
	after, err := a.store.Version(ctx)
	if err != nil || after <= before {
		t.Fatalf("version after the wipe = %d, %v; want above %d", after, err, before)
	}
	if !strings.Contains(logs.String(), "was wiped") {
		t.Fatalf("no warning logged; logs:\n%s", logs.String())
	}
}

// TestKeyPrefixIsolation: two prefixes in one Redis are two stores.
func TestKeyPrefixIsolation(t *testing.T) {
	ctx := context.Background()
	srv := startRedis(t)
	s1 := newStore(t, srv.Addr, Options{KeyPrefix: "one:"})
	s2 := newStore(t, srv.Addr, Options{KeyPrefix: "two:", DB: 0})
	if _, err := s1.Put(ctx, record("abc", "u", time.Now())); err != nil {
		t.Fatal(err)
	}
	if _, err := s2.Put(ctx, record("abc", "u", time.Now())); err != nil {
		t.Fatalf("the same ID under another prefix: %v", err)
	}
	s3 := newStore(t, srv.Addr, Options{KeyPrefix: "one:", DB: 1})
	if snap, err := s3.Load(ctx); err != nil || len(snap.Records) != 0 {
		t.Fatalf("another database sees %d records, %v", len(snap.Records), err)
	}
}

// TestCorruptRecord: a record altered in Redis fails Load with its ID
// named and its content not quoted.
func TestCorruptRecord(t *testing.T) {
	ctx := context.Background()
	srv := startRedis(t)
	s := newStore(t, srv.Addr, Options{})
	if _, err := s.Put(ctx, record("good", "u", time.Now())); err != nil {
		t.Fatal(err)
	}
	if err := s.rdb.HSet(ctx, DefaultKeyPrefix+keyRecords, "evil", `{"id":"evil","secret":"amp_leakme"}`).Err(); err != nil {
		t.Fatal(err)
	}
	_, err := s.Load(ctx)
	if err == nil || !strings.Contains(err.Error(), "evil") || strings.Contains(err.Error(), "leakme") {
		t.Fatalf("Load of a corrupt record = %v", err)
	}
	if err := s.rdb.HSet(ctx, DefaultKeyPrefix+keyRecords, "evil", encoded(t, record("other", "u", time.Now()))).Err(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Load(ctx); err == nil || !strings.Contains(err.Error(), "another ID") {
		t.Fatalf("Load of a record under the wrong ID = %v", err)
	}
}

// TestACLUser: a restricted ACL user (the one the package doc suggests)
// can run everything, and cannot touch other keys.
func TestACLUser(t *testing.T) {
	ctx := context.Background()
	srv := redistest.Start(t, redistest.Options{Args: []string{
		"--user", "default", "off",
		"--user", "amiproxy", "on", ">acl-pw", "~amiproxy:*", "&amiproxy:*", "+@read", "+@write", "+@scripting", "+@pubsub", "-@dangerous", "+ping",
	}})
	s := newStore(t, srv.Addr, Options{Username: "amiproxy", Password: "acl-pw"})
	if _, err := s.Put(ctx, record("acl1", "u", time.Now())); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.RevokeUser(ctx, "u", time.Now()); err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	if err := s.Watch(wctx, func() {}); err != nil {
		t.Fatalf("Watch as the ACL user = %v", err)
	}
	if err := s.rdb.Set(ctx, "other:key", "x", 0).Err(); err == nil {
		t.Fatal("the ACL user may write outside its prefix; the suggested ACL is too wide")
	}
	// A user without the channel: Watch fails clearly (the Minter's poll
	// still works).
	noPubSub := redistest.Start(t, redistest.Options{Args: []string{
		"--user", "default", "off",
		"--user", "amiproxy", "on", ">acl-pw", "~amiproxy:*", "resetchannels", "+@read", "+@write", "+@scripting", "+@pubsub", "-@dangerous", "+ping",
	}})
	np := newStore(t, noPubSub.Addr, Options{Username: "amiproxy", Password: "acl-pw"})
	if err := np.Watch(ctx, func() {}); err == nil || !strings.Contains(err.Error(), "subscribe") {
		t.Fatalf("Watch without channel permission = %v, want a subscribe error", err)
	}
	if _, err := np.Put(ctx, record("acl2", "u", time.Now())); err != nil {
		t.Fatalf("Put without channel permission = %v (PUBLISH from a script needs no channel ACL)", err)
	}
	other := newStore(t, srv.Addr, Options{Username: "amiproxy", Password: "acl-pw", KeyPrefix: "other:"})
	if _, err := other.Version(ctx); err == nil || !strings.Contains(err.Error(), "NOPERM") {
		t.Fatalf("Version under a prefix the ACL forbids = %v, want NOPERM", err)
	}
}

func TestClosed(t *testing.T) {
	srv := startRedis(t)
	s := newStore(t, srv.Addr, Options{})
	_ = s.Close()
	if _, err := s.Version(context.Background()); !errors.Is(err, auth.ErrStoreClosed) {
		t.Fatalf("Version after Close = %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal("second Close:", err)
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// TestWatchSurvivesRestart: after Redis restarts, Watch resubscribes by
// itself and B (which never polls) sees A's next change.
func TestWatchSurvivesRestart(t *testing.T) {
	ctx := context.Background()
	srv := startRedis(t)
	key := newKey(t)
	b := newReplicaPoll(t, srv.Addr, key, Options{}, time.Hour)
	wctx, cancel := context.WithCancel(ctx)
	watched := make(chan error, 1)
	go func() { watched <- b.store.Watch(wctx, func() { _ = b.minter.Sync(wctx) }) }()
	defer func() {
		cancel()
		if err := <-watched; err != nil {
			t.Errorf("Watch = %v, want nil after cancel", err)
		}
	}()
	a := newStore(t, srv.Addr, Options{})
	subscribed := func() {
		t.Helper()
		for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			subs, err := a.rdb.PubSubNumSub(ctx, a.ch).Result()
			if err == nil && subs[a.ch] == 1 {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("Watch not subscribed within 20s: %v", err)
			}
		}
	}
	subscribed()
	srv.Restart()
	subscribed() // go-redis resubscribed on its own
	am, err := auth.NewMinter(auth.MinterConfig{Store: a, Key: key, PollInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer am.Close()
	minted, err := am.Mint(ctx, oidcPrincipal("gina"), time.Hour, "")
	if err != nil {
		t.Fatal(err)
	}
	b.waitFor(t, "a mint after the restart, through Watch alone", func() bool {
		_, err := b.minter.Authenticate(ctx, auth.Credentials{Username: "gina", Secret: minted.Secret})
		return err == nil
	})
}

// TestTLS: a TLS-only Redis works with Options.TLS trusting its
// certificate, and refuses a plain client and an untrusting one.
func TestTLS(t *testing.T) {
	ctx := context.Background()
	cert, key, roots := redistest.SelfSignedCert(t)
	srv := redistest.Start(t, redistest.Options{TLSCertFile: cert, TLSKeyFile: key, Password: "tls-pw"})
	s := newStore(t, srv.Addr, Options{Password: "tls-pw", TLS: &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}})
	if _, err := s.Put(ctx, record("tls1", "u", time.Now())); err != nil {
		t.Fatal(err)
	}
	if snap, err := s.Load(ctx); err != nil || len(snap.Records) != 1 {
		t.Fatalf("Load over TLS = %d records, %v", len(snap.Records), err)
	}
	if _, err := New(ctx, Options{Addr: srv.Addr, Password: "tls-pw", DialTimeout: time.Second, IOTimeout: time.Second}); err == nil {
		t.Fatal("a plain client connected to a TLS-only Redis")
	}
	_, err := New(ctx, Options{Addr: srv.Addr, Password: "tls-pw", TLS: &tls.Config{MinVersion: tls.VersionTLS12}})
	if err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("New with untrusted certificate = %v, want a certificate error", err)
	}
}
