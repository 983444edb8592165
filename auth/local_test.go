package auth

import (
	"context"
	"encoding/base64"
	"errors"
	"os"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"

	"golang.org/x/crypto/bcrypt"
)

const (
	adminPass = "adminpass" // the secret of the recorded MD5 transcript
	svcPass   = "svc-Secret-7"
	opsPass   = "ops-Secret-9"
)

// Cost-10 bcrypt hashes of adminPass and opsPass, made once with
// bcrypt.GenerateFromPassword so tests need not spend time making them.
const (
	adminHash = "$2a$10$ITzV9ONTW8f.KonAZW8g0ux38ifuvZAlmJ/TJ.CAFD.2j2dRJ3Spm"
	opsHash   = "$2y$10$jvj81Lp0jYrUBrDzrIF8puS021/hVsagfFDtsmWrF0mBdvAk8NNZm"
)

// fastHashes maps each cost-10 hash used by testLocal to a hash of the same
// secret at bcrypt.MinCost (4), 64 times cheaper. NewLocal refuses cost 4,
// so testLocal validates the real hashes and then swaps in these; the code
// paths are unchanged and the tests stay fast under -race. TestRealCost
// covers the unswapped Local.
var fastHashes = sync.OnceValue(func() map[string][]byte {
	gen := func(secret, prefix string) []byte {
		h, err := bcrypt.GenerateFromPassword([]byte(secret), bcrypt.MinCost)
		if err != nil {
			panic(err)
		}
		return append([]byte(prefix), h[4:]...)
	}
	return map[string][]byte{
		adminHash:                      gen(adminPass, "$2a$"),
		opsHash:                        gen(opsPass, "$2y$"),
		dummyHashes[MinBcryptCost]:     gen("no such secret", "$2a$"),
		dummyHashes[DefaultBcryptCost]: gen("no such secret either", "$2a$"),
	}
})

// testLocal has one account of each kind, with fast hashes:
//
//	admin: hash and plaintext (plain Login uses the hash, MD5 the plaintext)
//	Svc:   plaintext only
//	ops:   hash only, with the $2y$ prefix
func testLocal(t *testing.T) *Local {
	t.Helper()
	l, err := NewLocal([]Account{
		{Username: "admin", SecretHash: adminHash, Secret: adminPass, Groups: []string{"admins", "ops"}},
		{Username: "Svc", Secret: svcPass, Groups: []string{"services"}},
		{Username: "ops", SecretHash: opsHash},
	})
	if err != nil {
		t.Fatalf("NewLocal() error = %v", err)
	}
	fast := fastHashes()
	for _, a := range l.users {
		if a.hash != nil {
			a.hash = fast[string(a.hash)]
		}
	}
	if l.dummyHash = fast[string(l.dummyHash)]; l.dummyHash == nil {
		t.Fatal("testLocal: no fast dummy hash")
	}
	return l
}

// transcriptMD5 returns the challenge and key that the real Asterisk
// accepted for secret adminpass in the recorded transcript (connection c2),
// and the rejected key of connection c1 with its challenge.
func transcriptMD5(t *testing.T) (goodChallenge, goodKey, badChallenge, badKey string) {
	t.Helper()
	raw, err := os.ReadFile("../testdata/transcripts/tcp-challenge-md5-login.txt")
	if err != nil {
		t.Fatalf("reading transcript: %v", err)
	}
	challenges := regexp.MustCompile(`(?m)^Challenge: (\d+)\r$`).FindAllSubmatch(raw, -1)
	keys := regexp.MustCompile(`(?m)^Key: ([0-9a-f]{32})\r$`).FindAllSubmatch(raw, -1)
	if len(challenges) != 2 || len(keys) != 2 {
		t.Fatalf("transcript has %d challenges and %d keys, want 2 and 2", len(challenges), len(keys))
	}
	return string(challenges[1][1]), string(keys[1][1]), string(challenges[0][1]), string(keys[0][1])
}

func TestMD5KeyMatchesAsterisk(t *testing.T) {
	goodC, goodK, badC, badK := transcriptMD5(t)
	if got := md5Key(goodC, adminPass); got != goodK {
		t.Errorf("md5Key(%q, adminpass) = %q, want %q (accepted by Asterisk)", goodC, got, goodK)
	}
	if got := md5Key(badC, adminPass); got == badK {
		t.Errorf("md5Key(%q, adminpass) = %q, which Asterisk rejected", badC, got)
	}
}

func TestAuthenticate(t *testing.T) {
	l := testLocal(t)
	goodC, goodK, badC, badK := transcriptMD5(t)
	long := Secret(strings.Repeat("x", 73))

	tests := []struct {
		name    string
		c       Credentials
		want    Principal // zero: failure expected
		wantErr error     // the wrapped cause, besides ErrAuthFailed
	}{
		// Plain Login.
		{"hash ok", Credentials{Username: "admin", Secret: adminPass},
			Principal{Subject: "local:admin", Username: "admin", Groups: []string{"admins", "ops"}, Method: MethodPassword}, nil},
		{"hash wrong secret", Credentials{Username: "admin", Secret: "adminpas"}, Principal{}, errWrongSecret},
		{"secret is case-sensitive", Credentials{Username: "admin", Secret: "AdminPass"}, Principal{}, errWrongSecret},
		{"empty secret", Credentials{Username: "admin"}, Principal{}, errWrongSecret},
		{"secret with trailing space", Credentials{Username: "admin", Secret: adminPass + " "}, Principal{}, errWrongSecret},
		{"bcrypt 72-byte truncation refused", Credentials{Username: "admin", Secret: long}, Principal{}, errSecretTooLong},
		{"username is case-insensitive", Credentials{Username: "ADMIN", Secret: adminPass},
			Principal{Subject: "local:admin", Username: "admin", Groups: []string{"admins", "ops"}, Method: MethodPassword}, nil},
		{"canonical case from config", Credentials{Username: "sVC", Secret: svcPass},
			Principal{Subject: "local:Svc", Username: "Svc", Groups: []string{"services"}, Method: MethodPassword}, nil},
		{"plaintext wrong secret", Credentials{Username: "svc", Secret: "svc-secret-7"}, Principal{}, errWrongSecret},
		{"plaintext prefix refused", Credentials{Username: "svc", Secret: "svc-Secret-"}, Principal{}, errWrongSecret},
		{"$2y$ hash ok", Credentials{Username: "ops", Secret: opsPass},
			Principal{Subject: "local:ops", Username: "ops", Method: MethodPassword}, nil},
		{"unknown user", Credentials{Username: "nobody", Secret: adminPass}, Principal{}, errUnknownUser},
		{"empty username", Credentials{Secret: adminPass}, Principal{}, errEmptyUsername},
		{"username with trailing space", Credentials{Username: "admin ", Secret: adminPass}, Principal{}, errUnknownUser},
		{"non-ASCII fold refused", Credentials{Username: "\u212Aadmin", Secret: adminPass}, Principal{}, errUnknownUser},
		{"other AuthType is plain", Credentials{Username: "admin", Secret: adminPass, AuthType: "plain"},
			Principal{Subject: "local:admin", Username: "admin", Groups: []string{"admins", "ops"}, Method: MethodPassword}, nil},
		{"'MD5 ' is not MD5", Credentials{Username: "admin", Secret: adminPass, AuthType: "MD5 ", Challenge: goodC, Key: goodK},
			Principal{Subject: "local:admin", Username: "admin", Groups: []string{"admins", "ops"}, Method: MethodPassword}, nil},

		// MD5, with the key a real Asterisk accepted.
		{"md5 recorded vector", Credentials{Username: "admin", AuthType: "MD5", Challenge: goodC, Key: goodK},
			Principal{Subject: "local:admin", Username: "admin", Groups: []string{"admins", "ops"}, Method: MethodMD5}, nil},
		{"md5 AuthType is case-insensitive", Credentials{Username: "Admin", AuthType: "md5", Challenge: goodC, Key: goodK},
			Principal{Subject: "local:admin", Username: "admin", Groups: []string{"admins", "ops"}, Method: MethodMD5}, nil},
		{"md5 plaintext-only account", Credentials{Username: "svc", AuthType: "Md5", Challenge: "1", Key: md5Key("1", svcPass)},
			Principal{Subject: "local:Svc", Username: "Svc", Groups: []string{"services"}, Method: MethodMD5}, nil},
		{"md5 recorded bad key", Credentials{Username: "admin", AuthType: "MD5", Challenge: badC, Key: badK}, Principal{}, errWrongKey},
		{"md5 key for another challenge", Credentials{Username: "admin", AuthType: "MD5", Challenge: badC, Key: goodK}, Principal{}, errWrongKey},
		{"md5 upper-case key refused", Credentials{Username: "admin", AuthType: "MD5", Challenge: goodC, Key: strings.ToUpper(goodK)}, Principal{}, errWrongKey},
		{"md5 key with trailing space", Credentials{Username: "admin", AuthType: "MD5", Challenge: goodC, Key: goodK + " "}, Principal{}, errWrongKey},
		{"md5 missing challenge", Credentials{Username: "admin", AuthType: "MD5", Key: goodK}, Principal{}, errNoChallenge},
		{"md5 missing key", Credentials{Username: "admin", AuthType: "MD5", Challenge: goodC}, Principal{}, errNoKey},
		{"md5 secret ignored", Credentials{Username: "admin", AuthType: "MD5", Challenge: goodC, Secret: adminPass}, Principal{}, errNoKey},
		{"md5 hash-only account", Credentials{Username: "ops", AuthType: "MD5", Challenge: "7", Key: md5Key("7", opsPass)}, Principal{}, errNoPlaintext},
		{"md5 unknown user", Credentials{Username: "nobody", AuthType: "MD5", Challenge: goodC, Key: goodK}, Principal{}, errUnknownUser},
		{"md5 empty username", Credentials{AuthType: "MD5", Challenge: goodC, Key: goodK}, Principal{}, errEmptyUsername},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := l.Authenticate(context.Background(), tt.c)
			if tt.wantErr == nil {
				if err != nil {
					t.Fatalf("Authenticate(%s) error = %v, want nil", tt.name, err)
				}
				if !equalPrincipal(got, tt.want) {
					t.Errorf("Authenticate(%s) = %+v, want %+v", tt.name, got, tt.want)
				}
				return
			}
			if !errors.Is(err, ErrAuthFailed) || !errors.Is(err, tt.wantErr) {
				t.Fatalf("Authenticate(%s) error = %v, want ErrAuthFailed wrapping %q", tt.name, err, tt.wantErr)
			}
			if !equalPrincipal(got, Principal{}) {
				t.Errorf("Authenticate(%s) = %+v on failure, want zero Principal", tt.name, got)
			}
			assertNoCredentials(t, err.Error(), tt.c)
		})
	}
}

func equalPrincipal(a, b Principal) bool {
	return a.Subject == b.Subject && a.Username == b.Username && a.Method == b.Method &&
		a.Expires.Equal(b.Expires) && slices.Equal(a.Groups, b.Groups)
}

// assertNoCredentials fails if msg contains any credential material.
func assertNoCredentials(t *testing.T, msg string, c Credentials) {
	t.Helper()
	for _, s := range []string{c.Secret.Reveal(), c.Key, adminPass, svcPass, opsPass, adminHash, adminHash[7:29], opsHash[7:29]} {
		if len(s) >= 4 && strings.Contains(msg, s) {
			t.Errorf("error text %q contains credential material %q", msg, s)
		}
	}
	if !strings.HasPrefix(msg, "auth: authentication failed") {
		t.Errorf("error text %q, want prefix %q", msg, "auth: authentication failed")
	}
}

// TestBcryptPerLogin checks the timing defence deterministically: every
// plain Login runs exactly one bcrypt comparison, a dummy one of the
// highest configured cost when there is no real hash to check, and MD5
// logins run none.
func TestBcryptPerLogin(t *testing.T) {
	l := testLocal(t)
	h := string(l.users["admin"].hash)
	var calls [][]byte
	l.compare = func(hash, secret []byte) error {
		calls = append(calls, hash)
		return bcrypt.CompareHashAndPassword(hash, secret)
	}
	dummy := string(l.dummyHash) // stands for dummyHashes[10]: testLocal's hashes are all cost 10
	tests := []struct {
		name      string
		c         Credentials
		wantHash  string // "" when no comparison may run
		wantCalls int
	}{
		{"hashed ok", Credentials{Username: "admin", Secret: adminPass}, h, 1},
		{"hashed wrong", Credentials{Username: "admin", Secret: "x"}, h, 1},
		{"unknown user", Credentials{Username: "nobody", Secret: "x"}, dummy, 1},
		{"plaintext ok", Credentials{Username: "svc", Secret: svcPass}, dummy, 1},
		{"plaintext wrong", Credentials{Username: "svc", Secret: "x"}, dummy, 1},
		{"secret too long", Credentials{Username: "admin", Secret: Secret(strings.Repeat("y", 100))}, dummy, 1},
		{"md5 ok", Credentials{Username: "svc", AuthType: "MD5", Challenge: "1", Key: md5Key("1", svcPass)}, "", 0},
		{"md5 unknown user", Credentials{Username: "nobody", AuthType: "MD5", Challenge: "1", Key: "k"}, "", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			calls = nil
			_, _ = l.Authenticate(context.Background(), tt.c)
			if len(calls) != tt.wantCalls {
				t.Fatalf("Authenticate(%s) ran %d bcrypt comparisons, want %d", tt.name, len(calls), tt.wantCalls)
			}
			if tt.wantCalls > 0 && string(calls[0]) != tt.wantHash {
				t.Errorf("Authenticate(%s) compared against %.7s..., want %.7s...", tt.name, calls[0], tt.wantHash)
			}
		})
	}

	t.Run("dummy cost follows the highest configured cost", func(t *testing.T) {
		l, err := NewLocal([]Account{
			{Username: "a", SecretHash: adminHash},
			{Username: "b", SecretHash: dummyHashes[13]},
		})
		if err != nil {
			t.Fatalf("NewLocal() error = %v", err)
		}
		if got, want := string(l.dummyHash), dummyHashes[13]; got != want {
			t.Errorf("dummyHash = %.7s..., want %.7s...", got, want)
		}
	})

	// Without any hashed account no path runs bcrypt: every plain Login is
	// one constant-time comparison, so timing still reveals nothing.
	t.Run("no bcrypt when no account has a hash", func(t *testing.T) {
		l, err := NewLocal([]Account{{Username: "c", Secret: "p"}})
		if err != nil {
			t.Fatalf("NewLocal() error = %v", err)
		}
		n := 0
		l.compare = func(hash, secret []byte) error { n++; return bcrypt.CompareHashAndPassword(hash, secret) }
		for _, c := range []Credentials{{Username: "c", Secret: "p"}, {Username: "c", Secret: "x"}, {Username: "nobody", Secret: "p"}} {
			_, _ = l.Authenticate(context.Background(), c)
		}
		if n != 0 {
			t.Errorf("plaintext-only accounts ran %d bcrypt comparisons, want 0", n)
		}
		if _, err := l.Authenticate(context.Background(), Credentials{Username: "C", Secret: "p"}); err != nil {
			t.Errorf("Authenticate(plaintext ok) = %v", err)
		}
	})
}

// TestDummyHashes checks that each dummy hash is well-formed, so a dummy
// comparison really runs the full bcrypt key schedule instead of failing
// fast on a parse error (bcrypt.Cost parses the prefix and cost; the salt
// must decode in bcrypt's base64 alphabet). One is compared for real.
func TestDummyHashes(t *testing.T) {
	b64 := base64.NewEncoding("./ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789").WithPadding(base64.NoPadding)
	for cost := MinBcryptCost; cost <= MaxBcryptCost; cost++ {
		h, ok := dummyHashes[cost]
		if !ok {
			t.Errorf("dummyHashes[%d] missing", cost)
			continue
		}
		if got, err := checkHash(h); err != nil || got != cost {
			t.Errorf("checkHash(dummyHashes[%d]) = %d, %v, want %d, nil", cost, got, err, cost)
		}
		if salt, err := b64.DecodeString(h[7:29]); err != nil || len(salt) != 16 {
			t.Errorf("dummyHashes[%d] salt decodes to %d bytes, %v, want 16, nil", cost, len(salt), err)
		}
	}
	if err := bcrypt.CompareHashAndPassword([]byte(dummyHashes[MinBcryptCost]), []byte(adminPass)); !errors.Is(err, bcrypt.ErrMismatchedHashAndPassword) {
		t.Errorf("CompareHashAndPassword(dummyHashes[10]) = %v, want ErrMismatchedHashAndPassword", err)
	}
}

// TestRealCost runs Authenticate without swapped hashes or hooks: a
// cost-10 hash accepts its secret, and an unknown user is refused after a
// full dummy comparison.
func TestRealCost(t *testing.T) {
	l, err := NewLocal([]Account{{Username: "admin", SecretHash: adminHash}})
	if err != nil {
		t.Fatalf("NewLocal() error = %v", err)
	}
	if _, err := l.Authenticate(context.Background(), Credentials{Username: "Admin", Secret: adminPass}); err != nil {
		t.Errorf("Authenticate(admin, right secret) error = %v, want nil", err)
	}
	if _, err := l.Authenticate(context.Background(), Credentials{Username: "root", Secret: adminPass}); !errors.Is(err, errUnknownUser) {
		t.Errorf("Authenticate(unknown) error = %v, want %v", err, errUnknownUser)
	}
}

func TestAuthenticateContextDone(t *testing.T) {
	l := testLocal(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := l.Authenticate(ctx, Credentials{Username: "admin", Secret: adminPass})
	if !errors.Is(err, ErrAuthFailed) || !errors.Is(err, context.Canceled) {
		t.Errorf("Authenticate(cancelled ctx) error = %v, want ErrAuthFailed and context.Canceled", err)
	}
}

func TestZeroLocalRefuses(t *testing.T) {
	goodC, goodK, _, _ := transcriptMD5(t)
	md5c := Credentials{Username: "admin", AuthType: "MD5", Challenge: goodC, Key: goodK}
	var compares int
	zero := &Local{compare: func(hash, _ []byte) error {
		compares++
		if string(hash) != dummyHashes[DefaultBcryptCost] {
			t.Errorf("zero Local compared against %.7s..., want dummyHashes[12]", hash)
		}
		return bcrypt.ErrMismatchedHashAndPassword
	}}
	var nilLocal *Local
	for name, l := range map[string]*Local{"zero": zero, "nil": nilLocal} {
		if _, err := l.Authenticate(context.Background(), md5c); !errors.Is(err, errUnknownUser) {
			t.Errorf("%s Local: Authenticate(md5) error = %v, want %v", name, err, errUnknownUser)
		}
		if l.Lookup("admin") {
			t.Errorf("%s Local: Lookup(admin) = true, want false", name)
		}
	}
	if _, err := zero.Authenticate(context.Background(), Credentials{Username: "admin", Secret: "x"}); !errors.Is(err, errUnknownUser) {
		t.Errorf("zero Local: Authenticate(plain) error = %v, want %v", err, errUnknownUser)
	}
	if compares != 0 {
		t.Errorf("zero Local (no hashed accounts) ran %d bcrypt comparisons, want 0", compares)
	}
	nilLocal.spendDummy([]byte("x")) // must not panic
}

func TestLookup(t *testing.T) {
	l := testLocal(t)
	tests := []struct {
		user string
		want bool
	}{
		{"admin", true},
		{"ADMIN", true},
		{"svc", true},
		{"SVC", true},
		{"nobody", false},
		{"", false},
		{"admin ", false},
	}
	for _, tt := range tests {
		if got := l.Lookup(tt.user); got != tt.want {
			t.Errorf("Lookup(%q) = %v, want %v", tt.user, got, tt.want)
		}
	}
}

func TestLocalIsolatedFromCallers(t *testing.T) {
	accounts := []Account{{Username: "svc", Secret: svcPass, Groups: []string{"services"}}}
	l, err := NewLocal(accounts)
	if err != nil {
		t.Fatalf("NewLocal() error = %v", err)
	}
	l.compare = func(_, _ []byte) error { return bcrypt.ErrMismatchedHashAndPassword } // skip the slow dummy
	accounts[0].Groups[0] = "admins"
	accounts[0].Secret = "changed"
	c := Credentials{Username: "svc", Secret: svcPass}
	p, err := l.Authenticate(context.Background(), c)
	if err != nil {
		t.Fatalf("Authenticate() error = %v, want nil", err)
	}
	if got, want := p.Groups, []string{"services"}; !slices.Equal(got, want) {
		t.Errorf("Groups after changing the Account = %v, want %v", got, want)
	}
	p.Groups[0] = "admins"
	p, _ = l.Authenticate(context.Background(), c)
	if got, want := p.Groups, []string{"services"}; !slices.Equal(got, want) {
		t.Errorf("Groups after changing a Principal = %v, want %v", got, want)
	}
}

func TestAuthenticateConcurrent(t *testing.T) {
	l := testLocal(t)
	l.compare = func(_, _ []byte) error { return bcrypt.ErrMismatchedHashAndPassword }
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			c := Credentials{Username: "svc", Secret: svcPass}
			if i%2 == 1 {
				c = Credentials{Username: "SVC", AuthType: "MD5", Challenge: "42", Key: md5Key("42", svcPass)}
			}
			if _, err := l.Authenticate(context.Background(), c); err != nil {
				t.Errorf("Authenticate(%d) error = %v, want nil", i, err)
			}
		})
	}
	wg.Wait()
}

func TestNewLocalValidation(t *testing.T) {
	h := adminHash
	tail := h[7:] // 53 valid salt+hash characters
	plaintextInHashField := strings.Repeat("p", 60)
	accounts := []Account{
		{Username: "ok", SecretHash: h},                                       // 0 valid
		{Username: "", Secret: "s"},                                           // 1 empty username
		{Username: "OK", Secret: "s"},                                         // 2 duplicate of 0
		{Username: "nocred"},                                                  // 3 no credential
		{Username: "short", SecretHash: "$2a$10$abc"},                         // 4 wrong length
		{Username: "md5crypt", SecretHash: "$1$" + tail + "1234"},             // 5 wrong prefix
		{Username: "cost9", SecretHash: "$2a$09$" + tail},                     // 6 cost too low
		{Username: "cost15", SecretHash: "$2b$15$" + tail},                    // 7 cost too high
		{Username: "badchar", SecretHash: "$2a$10$" + tail[:52] + "!"},        // 8 bad alphabet
		{Username: "plain", SecretHash: plaintextInHashField},                 // 9 plaintext in the wrong field
		{Username: "bad\r\nname", Secret: "s"},                                // 10 control characters
		{Username: " lead", Secret: "s"},                                      // 11 leading space
		{Username: "groups", Secret: "s", Groups: []string{"a", ""}},          // 12 empty group
		{Username: "placeholder", Secret: "REDACTED"},                         // 13 redacted placeholder
		{Username: "nocost", SecretHash: "$2a$1x$" + tail},                    // 14 malformed cost
		{Username: "two", Secret: "s", SecretHash: "$2y$" + h[4:]},            // 15 valid
		{Username: "fourteen", SecretHash: dummyHashes[14]},                   // 16 valid
		{Username: "twob", SecretHash: "$2b$" + h[4:], Groups: []string{"a"}}, // 17 valid
	}
	_, err := NewLocal(accounts)
	if err == nil {
		t.Fatal("NewLocal() error = nil, want the problems listed")
	}
	wants := []string{
		"accounts[1]: username: empty",
		`accounts[2] ("OK"): username: duplicate of accounts[0]`,
		`accounts[3] ("nocred"): needs secret_hash or a secret`,
		`accounts[4] ("short"): secret_hash: not a bcrypt hash: 10 characters`,
		`accounts[5] ("md5crypt"): secret_hash: not a bcrypt hash: want prefix`,
		`accounts[6] ("cost9"): secret_hash: bcrypt cost 9 outside the accepted range 10-14`,
		`accounts[7] ("cost15"): secret_hash: bcrypt cost 15 outside`,
		`accounts[8] ("badchar"): secret_hash: malformed bcrypt hash: invalid character at offset 59`,
		`accounts[9] ("plain"): secret_hash: not a bcrypt hash: want prefix`,
		`accounts[10] ("bad\r\nname"): username: control character at offset 3`,
		`accounts[11] (" lead"): username: leading or trailing space`,
		`accounts[12] ("groups"): groups[1]: empty group name`,
		`accounts[13] ("placeholder"): secret is the placeholder "REDACTED"`,
		`accounts[14] ("nocost"): secret_hash: malformed bcrypt hash: want two cost digits`,
	}
	msg := err.Error()
	for _, w := range wants {
		if !strings.Contains(msg, "auth: "+w) {
			t.Errorf("NewLocal() error is missing %q; got:\n%s", w, msg)
		}
	}
	joined, ok := err.(interface{ Unwrap() []error })
	if !ok {
		t.Fatalf("NewLocal() error is %T, want an errors.Join result", err)
	}
	if got, want := len(joined.Unwrap()), len(wants); got != want {
		t.Errorf("NewLocal() reported %d problems, want %d:\n%s", got, want, msg)
	}
	for _, secretish := range []string{plaintextInHashField, tail, h} {
		if strings.Contains(msg, secretish) {
			t.Errorf("NewLocal() error quotes hash material %.10q...", secretish)
		}
	}

	valid := []Account{accounts[0], accounts[15], accounts[16], accounts[17]}
	if _, err := NewLocal(valid); err != nil {
		t.Errorf("NewLocal(valid accounts) error = %v, want nil", err)
	}
	if _, err := NewLocal(nil); err != nil {
		t.Errorf("NewLocal(nil) error = %v, want nil", err)
	}
}

func TestHashSecret(t *testing.T) {
	h, err := HashSecret(svcPass, MinBcryptCost)
	if err != nil {
		t.Fatalf("HashSecret(s, 10) error = %v, want nil", err)
	}
	if err := bcrypt.CompareHashAndPassword([]byte(h), []byte(svcPass)); err != nil {
		t.Errorf("CompareHashAndPassword(HashSecret(s, 10), s) = %v, want nil", err)
	}
	if cost, err := checkHash(h); err != nil || cost != MinBcryptCost {
		t.Errorf("checkHash(HashSecret(s, 10)) = %d, %v, want 10, nil", cost, err)
	}
	if got, err := hashCost(0); err != nil || got != DefaultBcryptCost {
		t.Errorf("hashCost(0) = %d, %v, want %d, nil", got, err, DefaultBcryptCost)
	}
	if got, err := hashCost(MaxBcryptCost); err != nil || got != MaxBcryptCost {
		t.Errorf("hashCost(14) = %d, %v, want 14, nil", got, err)
	}

	bad := []struct {
		name   string
		secret Secret
		cost   int
		want   string
	}{
		{"cost 9", svcPass, 9, "cost 9 outside"},
		{"cost 15", svcPass, 15, "cost 15 outside"},
		{"negative cost", svcPass, -1, "cost -1 outside"},
		{"empty", "", 10, "empty secret"},
		{"73 bytes", Secret(strings.Repeat("z", 73)), 10, "73 bytes, longer than bcrypt's limit of 72"},
		{"leading space", " " + svcPass, 10, "starts with a space"},
		{"leading tab", "\t" + svcPass, 10, "starts with a space or control"},
		{"CRLF", svcPass + "\r\nAction: Command", 10, "CR, LF or NUL"},
		{"NUL", "a\x00b-" + svcPass, 10, "CR, LF or NUL"},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			_, err := HashSecret(tt.secret, tt.cost)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("HashSecret(%s) error = %v, want %q", tt.name, err, tt.want)
			}
			if s := tt.secret.Reveal(); len(s) > 2 && strings.Contains(err.Error(), strings.TrimSpace(s)) {
				t.Errorf("HashSecret(%s) error %q contains the secret", tt.name, err)
			}
			if !strings.HasPrefix(err.Error(), "auth: ") {
				t.Errorf("HashSecret(%s) error %q, want prefix \"auth: \"", tt.name, err)
			}
		})
	}
}
