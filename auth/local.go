package auth

import (
	"context"
	"crypto/md5"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// Account is one local AMI login for a service or a person, as configured.
// Username is matched case-insensitively (ASCII, like Asterisk's
// strcasecmp); the configured spelling is the canonical one reported in
// Principal.Username.
//
// At least one of SecretHash and Secret must be set. A plain Login is
// checked against SecretHash when it is set, otherwise against Secret. The
// MD5 Challenge needs the plaintext Secret, because the proxy must compute
// md5(challenge + secret) itself; an account with only a SecretHash cannot
// log in with AuthType MD5. Asterisk-Java and AsterNET always use MD5. When
// both are set they must be the same secret; NewLocal does not check this
// (it would cost one bcrypt comparison per account at start-up).
//
// Permit and Deny restrict the client addresses the account may log in
// from, as Asterisk's per-user permit=/deny= do, and are checked, like
// Asterisk's, after the username lookup and before the secret. Each entry
// is a CIDR prefix ("10.0.0.0/8", "2001:db8::/32") or a single address;
// host bits must be zero, and IPv4-mapped IPv6 forms are refused (write
// the IPv4 form; a mapped client address is matched as IPv4). A Login is
// refused when its address matches any Deny entry, or when Permit is
// non-empty and the address matches no Permit entry. Unlike Asterisk
// (last matching rule wins, IPv4 rules ignore IPv6 clients), order does not
// matter and a Permit list of IPv4 prefixes refuses every IPv6 client. A
// Login whose address is unknown is refused by any rule.
//
// The zero value is not a valid account. NewLocal copies what it needs, so
// an Account may be changed or discarded after the call.
type Account struct {
	Username   string   `yaml:"username"`
	SecretHash string   `yaml:"secret_hash"` // bcrypt hash ($2a$/$2b$/$2y$), cost 10-14; plain Login only
	Secret     Secret   `yaml:"-"`           // plaintext, resolved by cmd from {env:..} / {file:..}; needed for Challenge/MD5
	Groups     []string `yaml:"groups"`
	Permit     []string `yaml:"permit"` // CIDR prefixes or addresses; empty: any address
	Deny       []string `yaml:"deny"`   // CIDR prefixes or addresses, checked first
}

// Credentials is what a client presented in an AMI Login (or the HTTP
// manager's equivalent), plus the session facts Authenticate needs. Key is
// not a Secret but is as sensitive for the life of its challenge: do not
// log a Credentials value.
type Credentials struct {
	Username  string
	Secret    Secret         // plain Login
	AuthType  string         // "MD5" (case-insensitive) selects challenge auth
	Key       string         // MD5 key from the client
	Challenge string         // the challenge this session issued ("" if none)
	Remote    netip.AddrPort // client address
	// Token is a bearer token presented outside an AMI Login (the HTTP
	// manager's "Authorization: Bearer <JWT>"); Username may then be
	// empty. A JWT sent as the Secret of a Login arrives in Secret.
	Token Secret
}

// Methods reported in Principal.Method.
const (
	MethodPassword = "password" // plain Login, Secret compared with SecretHash or Secret
	MethodMD5      = "md5"      // Challenge, then Login with AuthType MD5 and Key
)

// Principal is an authenticated identity. It says who the client is, never
// what it may do; package policy decides that from Subject and Groups.
// A Principal is a plain value; its Groups slice is the caller's own copy.
type Principal struct {
	Subject  string    // stable id, "local:<username>"
	Username string    // the AMI username as configured (canonical case)
	Groups   []string  // copied from the account
	Method   string    // MethodPassword, MethodMD5, MethodOIDC, ...
	Expires  time.Time // zero: no expiry (local accounts)
	// Claims are the identity's claims for policy templates (e.g.
	// "extension" for a Channel pattern "PJSIP/{{.claims.extension}}"):
	// the verified ID token's claims, or those kept with a minted secret.
	// Nil for local accounts. Treat as read-only.
	Claims map[string]any
	// SecretID names the minted secret that authenticated this Principal
	// ("" otherwise), so revoking it can end the sessions it opened.
	SecretID string
	// AuthTime is when this Principal was authenticated (zero if the
	// authenticator does not say). Revoking a user ends the sessions
	// authenticated before the revocation.
	AuthTime time.Time
}

// ErrAuthFailed is returned, wrapped, for every failed authentication.
// Callers map it to Asterisk's "Authentication failed" and must not send
// Error() to the client: the wrapped cause (unknown username, wrong secret,
// wrong key, ...) is for the log only. Causes never contain a secret, key or
// hash.
var ErrAuthFailed = errors.New("auth: authentication failed")

// Failure causes, wrapped together with ErrAuthFailed. Their text is for
// logs only.
var (
	errEmptyUsername = errors.New("empty username")
	errUnknownUser   = errors.New("unknown username")
	errWrongSecret   = errors.New("wrong secret")
	errSecretTooLong = errors.New("secret longer than bcrypt's 72-byte limit")
	errHashUnusable  = errors.New("stored secret_hash is unusable")
	errNoChallenge   = errors.New("md5: no challenge was issued on this session")
	errNoKey         = errors.New("md5: empty key")
	errWrongKey      = errors.New("md5: wrong key")
	errNoPlaintext   = errors.New("md5: account has only a secret_hash; challenge auth needs the plaintext secret")
	errNotPermitted  = errors.New("address not permitted")
)

func failed(cause error) (Principal, error) {
	return Principal{}, fmt.Errorf("%w: %w", ErrAuthFailed, cause)
}

// Local authenticates against a fixed set of local accounts.
//
// Timing: when any account has a SecretHash, a plain Login always costs
// exactly one bcrypt comparison, whether the username exists or not and
// whether the account has a SecretHash or only a plaintext Secret: without a
// real hash to check, Local compares against a dummy hash of the highest
// cost configured, so response time does not reveal which usernames exist.
// When no account has a hash, no path runs bcrypt (every path is one
// constant-time comparison), which keeps plaintext-only deployments fast. An MD5 Login never runs bcrypt: it always computes one MD5, against
// a dummy secret when the username is unknown or the account has no
// plaintext. Comparisons of secrets and keys are constant-time.
//
// Cost: bcrypt is deliberately slow (about 250 ms of CPU at cost 12), and
// Local keeps no cache of successful comparisons. Services that open one AMI
// connection per task pay that on every connection, and unauthenticated
// clients can make the proxy spend it; the front door's pre-auth rate
// limits bound this. Services that log in often should use MD5 with a
// plaintext Secret, or an account hashed at MinBcryptCost.
//
// The zero value (and a nil *Local) has no accounts and refuses every
// login; create one with NewLocal. A Local is immutable and safe for
// concurrent use. It holds no goroutines and needs no Close.
type Local struct {
	users     map[string]*account // key: asciiLower(username)
	dummyHash []byte
	// compare is bcrypt.CompareHashAndPassword; tests replace it to
	// observe that every plain Login runs exactly one comparison.
	compare func(hash, secret []byte) error
}

// account is the validated, private copy of an Account.
type account struct {
	username string
	hash     []byte // nil: no SecretHash
	secret   Secret // "": no plaintext
	groups   []string
	permit   []netip.Prefix // empty: any address
	deny     []netip.Prefix
}

// NewLocal validates accounts and returns a Local serving them. It reports
// every problem at once, joined with errors.Join: empty, malformed or
// duplicate usernames (compared case-insensitively, as Asterisk looks them
// up), malformed bcrypt hashes or costs outside 10-14, accounts without any
// credential, empty group names, and malformed permit/deny entries. Errors
// never quote a secret or a hash.
// An empty list is valid and gives a Local that refuses everyone.
func NewLocal(accounts []Account) (*Local, error) {
	var errs []error
	users := make(map[string]*account, len(accounts))
	firstIndex := make(map[string]int, len(accounts))
	maxCost := 0
	for i, a := range accounts {
		where := fmt.Sprintf("auth: accounts[%d]", i)
		if a.Username != "" {
			where = fmt.Sprintf("%s (%q)", where, a.Username)
		}
		acct := &account{
			username: a.Username,
			secret:   a.Secret,
			groups:   slices.Clone(a.Groups),
		}
		if err := checkUsername(a.Username); err != nil {
			errs = append(errs, fmt.Errorf("%s: username: %w", where, err))
		} else {
			key := asciiLower(a.Username)
			if j, dup := firstIndex[key]; dup {
				errs = append(errs, fmt.Errorf("%s: username: duplicate of accounts[%d] (usernames are case-insensitive)", where, j))
			} else {
				firstIndex[key] = i
				users[key] = acct
			}
		}
		if a.SecretHash == "" && a.Secret == "" {
			errs = append(errs, fmt.Errorf("%s: needs secret_hash or a secret", where))
		}
		if a.SecretHash != "" {
			cost, err := checkHash(a.SecretHash)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: secret_hash: %w", where, err))
			} else {
				acct.hash = []byte(a.SecretHash)
				maxCost = max(maxCost, cost)
			}
		}
		if a.Secret == redacted {
			errs = append(errs, fmt.Errorf("%s: secret is the placeholder %q; was it copied from redacted output?", where, redacted))
		}
		for j, g := range a.Groups {
			if g == "" {
				errs = append(errs, fmt.Errorf("%s: groups[%d]: empty group name", where, j))
			}
		}
		var perr []error
		acct.permit, perr = parsePrefixes(where+": permit", a.Permit)
		errs = append(errs, perr...)
		acct.deny, perr = parsePrefixes(where+": deny", a.Deny)
		errs = append(errs, perr...)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	l := &Local{users: users}
	if maxCost > 0 {
		l.dummyHash = []byte(dummyHashes[maxCost])
	}
	return l, nil
}

// checkUsername rejects usernames that a client could not send in an AMI
// Username header, or that would only be matched by a confusing spelling.
func checkUsername(u string) error {
	if u == "" {
		return errors.New("empty")
	}
	if u[0] == ' ' || u[len(u)-1] == ' ' {
		return errors.New("leading or trailing space")
	}
	for i := 0; i < len(u); i++ {
		if c := u[i]; c < 0x20 || c == 0x7f {
			return fmt.Errorf("control character at offset %d", i)
		}
	}
	return nil
}

// asciiLower folds A-Z only, matching strcasecmp in the C locale. Unicode
// folding (strings.EqualFold) would let, for example, the Kelvin sign
// match "k", which Asterisk would not.
func asciiLower(s string) string {
	for i := 0; i < len(s); i++ {
		if 'A' <= s[i] && s[i] <= 'Z' {
			b := []byte(s)
			for j := i; j < len(b); j++ {
				if 'A' <= b[j] && b[j] <= 'Z' {
					b[j] += 'a' - 'A'
				}
			}
			return string(b)
		}
	}
	return s
}

// Lookup reports whether username names a configured account, ignoring
// case as Asterisk does. It is cheap and does not equalise timing: do not
// expose its answer to unauthenticated clients.
func (l *Local) Lookup(username string) bool {
	return l.lookup(username) != nil
}

func (l *Local) lookup(username string) *account {
	if l == nil || username == "" {
		return nil
	}
	return l.users[asciiLower(username)]
}

// Authenticate checks c against the local accounts, following Asterisk's
// authenticate(): an empty username fails; AuthType "MD5" (any case)
// selects challenge auth, which needs c.Challenge, c.Key and the account's
// plaintext Secret and compares c.Key case-sensitively with the lower-case
// hex MD5 of challenge+secret; any other AuthType is a plain Login that
// compares c.Secret exactly. Before either, c.Remote is checked against
// the account's Permit and Deny lists (cause "address not permitted", at
// the cost of an unknown username). See Local for the timing guarantees.
//
// Every failure returns an error wrapping ErrAuthFailed; a context that is
// already done also fails, wrapping its cause as well. Authenticate does
// not log and does not sleep: the caller applies Asterisk's 1 s failure
// delay and records the audit event.
func (l *Local) Authenticate(ctx context.Context, c Credentials) (Principal, error) {
	if ctx.Err() != nil {
		return failed(context.Cause(ctx))
	}
	if c.Username == "" {
		return failed(errEmptyUsername)
	}
	if isMD5(c.AuthType) {
		return l.authenticateMD5(c)
	}
	return l.authenticatePlain(c)
}

// authenticatePlain runs exactly one bcrypt comparison on every path.
func (l *Local) authenticatePlain(c Credentials) (Principal, error) {
	a := l.lookup(c.Username)
	given := []byte(c.Secret.Reveal())
	switch {
	case a == nil:
		_ = equalSecret(dummySecret, c.Secret)
		l.spendDummy(given)
		return failed(errUnknownUser)
	case !a.permits(c.Remote):
		// Checked before the secret, at an unknown username's cost.
		_ = equalSecret(dummySecret, c.Secret)
		l.spendDummy(given)
		return failed(errNotPermitted)
	case a.hash == nil:
		ok := equalSecret(a.secret, c.Secret)
		l.spendDummy(given)
		if !ok {
			return failed(errWrongSecret)
		}
	case len(given) > maxBcryptSecret:
		// bcrypt would ignore everything after byte 72.
		l.spendDummy(given)
		return failed(errSecretTooLong)
	default:
		if err := l.compareHash(a.hash, given); err != nil {
			if errors.Is(err, bcrypt.ErrMismatchedHashAndPassword) {
				return failed(errWrongSecret)
			}
			return failed(errHashUnusable)
		}
	}
	return a.principal(MethodPassword), nil
}

// dummySecret stands in for a missing plaintext so that an MD5 Login
// always hashes the same amount of data, whatever the outcome.
const dummySecret Secret = "amiproxy-no-such-account"

// authenticateMD5 computes exactly one MD5 on every path that reaches the
// account lookup.
func (l *Local) authenticateMD5(c Credentials) (Principal, error) {
	if c.Challenge == "" {
		return failed(errNoChallenge)
	}
	if c.Key == "" {
		return failed(errNoKey)
	}
	a := l.lookup(c.Username)
	secret, cause := dummySecret, error(nil)
	switch {
	case a == nil:
		cause = errUnknownUser
	case !a.permits(c.Remote):
		cause = errNotPermitted
	case a.secret == "":
		cause = errNoPlaintext
	default:
		secret = a.secret
	}
	want := md5Key(c.Challenge, secret)
	ok := subtle.ConstantTimeCompare([]byte(c.Key), []byte(want)) == 1
	if cause != nil {
		return failed(cause)
	}
	if !ok {
		return failed(errWrongKey)
	}
	return a.principal(MethodMD5), nil
}

func (l *Local) compareHash(hash, secret []byte) error {
	if l != nil && l.compare != nil {
		return l.compare(hash, secret)
	}
	return bcrypt.CompareHashAndPassword(hash, secret)
}

// spendDummy runs the bcrypt comparison a hashed account would cost, when
// any account has a hash (see Local on timing).
func (l *Local) spendDummy(given []byte) {
	if l == nil || l.dummyHash == nil {
		return
	}
	_ = l.compareHash(l.dummyHash, given)
}

// parsePrefixes parses an Account's Permit or Deny list (see Account).
func parsePrefixes(where string, list []string) ([]netip.Prefix, []error) {
	var out []netip.Prefix
	var errs []error
	for i, s := range list {
		p, err := parsePrefix(s)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s[%d]: %w", where, i, err))
			continue
		}
		out = append(out, p)
	}
	return out, errs
}

func parsePrefix(s string) (netip.Prefix, error) {
	var p netip.Prefix
	if strings.Contains(s, "/") {
		var err error
		if p, err = netip.ParsePrefix(s); err != nil {
			return netip.Prefix{}, fmt.Errorf("%q is not a CIDR prefix like 10.0.0.0/8 or 2001:db8::/32", s)
		}
	} else {
		a, err := netip.ParseAddr(s)
		if err != nil || a.Zone() != "" {
			return netip.Prefix{}, fmt.Errorf("%q is not an IP address or CIDR prefix", s)
		}
		p = netip.PrefixFrom(a, a.BitLen())
	}
	if p.Addr().Is4In6() {
		return netip.Prefix{}, fmt.Errorf("%q is an IPv4-mapped IPv6 prefix; write the IPv4 form", s)
	}
	if p != p.Masked() {
		return netip.Prefix{}, fmt.Errorf("%q has host bits set; did you mean %s?", s, p.Masked())
	}
	return p, nil
}

// permits applies the account's Permit and Deny lists to a client
// address (see Account). An IPv4-mapped IPv6 address is matched as IPv4.
func (a *account) permits(remote netip.AddrPort) bool {
	if len(a.permit) == 0 && len(a.deny) == 0 {
		return true
	}
	addr := remote.Addr().Unmap().WithZone("")
	if !addr.IsValid() {
		return false
	}
	for _, p := range a.deny {
		if p.Contains(addr) {
			return false
		}
	}
	if len(a.permit) == 0 {
		return true
	}
	for _, p := range a.permit {
		if p.Contains(addr) {
			return true
		}
	}
	return false
}

func (a *account) principal(method string) Principal {
	return Principal{
		Subject:  "local:" + a.username,
		Username: a.username,
		Groups:   slices.Clone(a.groups),
		Method:   method,
	}
}

// isMD5 reports whether authType is "MD5" in any ASCII case, exactly as
// Asterisk's strcasecmp (trailing spaces make it a plain Login there too).
func isMD5(authType string) bool {
	return len(authType) == 3 && asciiLower(authType) == "md5"
}

// md5Key is the key Asterisk expects for an MD5 Login: the lower-case hex
// MD5 of the challenge immediately followed by the secret.
func md5Key(challenge string, secret Secret) string {
	sum := md5.Sum([]byte(challenge + secret.Reveal()))
	return hex.EncodeToString(sum[:])
}

// equalSecret compares two secrets in time independent of their contents
// and lengths, by comparing fixed-size digests.
func equalSecret(want, got Secret) bool {
	w := sha256.Sum256([]byte(want.Reveal()))
	g := sha256.Sum256([]byte(got.Reveal()))
	return subtle.ConstantTimeCompare(w[:], g[:]) == 1
}
