package auth

import (
	"bytes"
	"cmp"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/md5"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base32"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"
)

// MethodMinted is the Principal.Method of a login with a minted secret,
// plain or MD5.
const MethodMinted = "minted"

// Defaults and limits of a Minter.
const (
	// DefaultMintTTL is the lifetime of a secret minted with ttl 0: a
	// working day.
	DefaultMintTTL = 8 * time.Hour
	// DefaultMaxMintTTL is the longest lifetime Mint accepts unless
	// MinterConfig.MaxTTL says otherwise: a week, long enough for a
	// legacy client over a holiday weekend, short enough that a leaked
	// secret dies by itself.
	DefaultMaxMintTTL = 7 * 24 * time.Hour
	// DefaultMaxPerUser is how many live secrets one username may hold.
	DefaultMaxPerUser = 20
	// MaxMaxPerUser bounds MinterConfig.MaxPerUser: every Authenticate
	// tries max(MaxPerUser, secrets held) candidates.
	MaxMaxPerUser = 1000
	// DefaultMintPollInterval is how often a Minter asks its Store whether
	// another process changed it, and sweeps expired secrets.
	DefaultMintPollInterval = time.Second
	// MintKeySize is the size of the key that encrypts minted secrets at
	// rest (AES-256).
	MintKeySize = 32
	// SecretPrefix starts every minted secret, so that people and secret
	// scanners recognise one.
	SecretPrefix = "amp_"
)

const (
	secretBytes = 20 // 160 bits of randomness
	idBytes     = 8  // 64 bits: IDs are public, they need only be unique
	sealVersion = 1  // first byte of Record.Sealed
	nonceSize   = 12
)

// b32 encodes secrets and IDs: lower-case RFC 4648 base32 without
// padding, safe in an AMI header, a URL and a shell word.
var b32 = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// Errors of Mint and the Revoke methods.
var (
	// ErrTooManySecrets: the user already holds MaxPerUser live secrets;
	// revoke one (or let one expire) first.
	ErrTooManySecrets = errors.New("auth: too many minted secrets for this user")
	// ErrUnknownSecret: no live secret with that ID (for that user).
	ErrUnknownSecret = errors.New("auth: no such minted secret")
	// ErrMinterClosed: the Minter was closed.
	ErrMinterClosed = errors.New("auth: minter is closed")
)

// Failure causes of Minter.Authenticate, for logs only.
var (
	errNotMinted     = errors.New("not a minted secret")
	errUserHoldsNone = errors.New("username holds no minted secret")
)

// MinterConfig configures NewMinter. Store and Key are required; zero
// values of the others select the defaults.
type MinterConfig struct {
	Store Store
	// Key encrypts the secrets in the Store: MintKeySize random bytes
	// (see GenerateKeyFile, LoadKey, ParseKey). Use it for nothing else.
	// Replicas sharing a Store share the key. Losing it makes every
	// minted secret unusable; changing it makes NewMinter fail on the
	// existing records. NewMinter copies it.
	Key []byte
	// DefaultTTL is the lifetime of Mint(..., 0, ...): DefaultMintTTL if
	// zero.
	DefaultTTL time.Duration
	// MaxTTL is the longest lifetime Mint accepts: DefaultMaxMintTTL if
	// zero.
	MaxTTL time.Duration
	// MaxPerUser bounds the live secrets of one username; Mint refuses
	// more with ErrTooManySecrets (it never evicts: that would silently
	// break a running client). DefaultMaxPerUser if zero, at most
	// MaxMaxPerUser. Replicas that mint for the same user at the same
	// moment may each let one more through.
	MaxPerUser int
	// PollInterval is how often the background loop runs Sync:
	// DefaultMintPollInterval if zero. Negative: no background loop; the
	// caller calls Sync.
	PollInterval time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// ReportError receives the errors of background Syncs (a Store that
	// cannot be read, a record that cannot be decrypted). Nil drops
	// them. It must not block for long. Errors contain no secret.
	ReportError func(error)
}

// Info describes a minted secret without the secret.
type Info struct {
	// ID names the secret in List, Revoke and Principal.SecretID. It is
	// public: 13 characters of a-z and 2-7.
	ID       string
	Username string
	Label    string
	Created  time.Time
	Expires  time.Time
}

// Minted is a secret just minted. Secret is shown to its owner once and
// then forgotten by the caller: the Minter never returns it again.
type Minted struct {
	Info
	Secret Secret
}

// Minter mints short-lived AMI secrets for people who signed in another
// way (OIDC), and authenticates legacy AMI clients that present them in a
// plain Login or with the MD5 Challenge. See the package documentation.
//
// A Minter keeps every live record of its Store in memory, with the
// secrets decrypted (encryption is at rest, in the Store); a revoked or
// swept secret's bytes are zeroed. Authenticate and Validate read only
// memory and never block on the Store. Changes made through another
// Minter on a shared Store are seen by the next Sync (background, every
// PollInterval).
//
// A Minter is safe for concurrent use. NewMinter starts one goroutine
// (unless PollInterval < 0); Close stops it. The Store is the caller's to
// close, after the Minter.
type Minter struct {
	store       Store
	aead        cipher.AEAD
	now         func() time.Time
	defaultTTL  time.Duration
	maxTTL      time.Duration
	maxPerUser  int
	reportError func(error)

	// storeMu serialises every Store change and Sync of this Minter, so
	// that a Sync never applies a snapshot older than a local change.
	storeMu sync.Mutex

	mu      sync.RWMutex // guards the fields below
	byID    map[string]*entry
	byUser  map[string][]*entry  // folded username -> entries, oldest first
	revoked map[string]time.Time // folded username -> revoked at
	version uint64               // Store version the cache reflects
	closed  bool

	hooksMu sync.Mutex
	hooks   []func()

	loopCtx   context.Context // cancelled by Close, ends a slow Store call
	cancel    context.CancelFunc
	stop      chan struct{}
	done      chan struct{}
	closeOnce sync.Once
}

// entry is one live record with its decrypted secret.
type entry struct {
	rec    Record // Sealed dropped
	folded string // asciiLower(rec.Username)
	secret []byte
	digest [sha256.Size]byte // of secret, for plain Logins
}

func (e *entry) info() Info {
	return Info{ID: e.rec.ID, Username: e.rec.Username, Label: e.rec.Label, Created: e.rec.Created, Expires: e.rec.Expires}
}

// wipe zeroes the secret. Called with Minter.mu held for writing.
func (e *entry) wipe() {
	clear(e.secret)
	clear(e.digest[:])
}

var _ SecretAuthenticator = (*Minter)(nil)

// NewMinter checks cfg, loads every record of cfg.Store and decrypts
// them, and starts the background Sync loop. It fails if the Store cannot
// be read or if any record does not decrypt with cfg.Key (a wrong key, or
// an altered record: the error names the record IDs), rather than
// starting with secrets silently missing.
func NewMinter(cfg MinterConfig) (*Minter, error) {
	var errs []error
	if cfg.Store == nil {
		errs = append(errs, errors.New("auth: minter: no store"))
	}
	if len(cfg.Key) != MintKeySize {
		errs = append(errs, fmt.Errorf("auth: minter: key is %d bytes, want %d", len(cfg.Key), MintKeySize))
	}
	if cfg.DefaultTTL < 0 || cfg.MaxTTL < 0 {
		errs = append(errs, errors.New("auth: minter: negative ttl"))
	}
	if cfg.MaxPerUser < 0 || cfg.MaxPerUser > MaxMaxPerUser {
		errs = append(errs, fmt.Errorf("auth: minter: max per user %d outside 1-%d", cfg.MaxPerUser, MaxMaxPerUser))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	m := &Minter{
		store:       cfg.Store,
		now:         cfg.Now,
		defaultTTL:  cmp.Or(cfg.DefaultTTL, DefaultMintTTL),
		maxTTL:      cmp.Or(cfg.MaxTTL, DefaultMaxMintTTL),
		maxPerUser:  cmp.Or(cfg.MaxPerUser, DefaultMaxPerUser),
		reportError: cfg.ReportError,
		byID:        map[string]*entry{},
		byUser:      map[string][]*entry{},
		revoked:     map[string]time.Time{},
	}
	if m.now == nil {
		m.now = time.Now
	}
	if m.defaultTTL > m.maxTTL {
		return nil, fmt.Errorf("auth: minter: default ttl %v exceeds max ttl %v", m.defaultTTL, m.maxTTL)
	}
	block, err := aes.NewCipher(cfg.Key) // copies the key schedule
	if err != nil {
		return nil, fmt.Errorf("auth: minter: %w", err)
	}
	if m.aead, err = cipher.NewGCM(block); err != nil {
		return nil, fmt.Errorf("auth: minter: %w", err)
	}
	ctx := context.Background()
	snap, err := m.store.Load(ctx)
	if err != nil {
		return nil, fmt.Errorf("auth: minter: load store: %w", err)
	}
	if bad := m.apply(snap); len(bad) > 0 {
		_ = m.Close() // wipes what did decrypt
		return nil, fmt.Errorf("auth: minter: %d stored record(s) cannot be decrypted with this key (wrong key, or the records were altered): %w", len(bad), joinFirst(bad, 5))
	}
	if _, err := m.sweep(ctx); err != nil {
		_ = m.Close()
		return nil, fmt.Errorf("auth: minter: %w", err)
	}
	interval := cmp.Or(cfg.PollInterval, DefaultMintPollInterval)
	if cfg.PollInterval >= 0 {
		m.stop, m.done = make(chan struct{}), make(chan struct{})
		m.loopCtx, m.cancel = context.WithCancel(context.Background())
		go m.loop(interval)
	}
	return m, nil
}

// loop runs Sync every interval until Close.
func (m *Minter) loop(interval time.Duration) {
	defer close(m.done)
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-m.stop:
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(m.loopCtx, max(10*time.Second, 5*interval))
		err := m.Sync(ctx)
		cancel()
		if err != nil && m.reportError != nil {
			m.reportError(err)
		}
	}
}

// Close stops the background loop and waits for it. Afterwards Mint and
// the Revoke methods fail with ErrMinterClosed, and Authenticate refuses
// everyone; the decrypted secrets are zeroed. Close is idempotent.
func (m *Minter) Close() error {
	m.closeOnce.Do(func() {
		if m.stop != nil {
			close(m.stop)
			m.cancel()
			<-m.done
		}
		m.storeMu.Lock()
		defer m.storeMu.Unlock()
		m.mu.Lock()
		defer m.mu.Unlock()
		m.closed = true
		for _, e := range m.byID {
			e.wipe()
		}
		m.byID, m.byUser = map[string]*entry{}, map[string][]*entry{}
	})
	return nil
}

// OnChange registers fn to be called after every change the Minter makes
// or observes: a mint, a revocation, an expiry sweep, or a change by
// another process seen by Sync. Gateways use it to re-check live sessions
// with Validate at once. fn runs on the goroutine that made the change (a
// Mint or Revoke caller, or the background loop), never under a lock of
// the Minter, so it may call Validate; it should not block for long.
func (m *Minter) OnChange(fn func()) {
	if fn == nil {
		return
	}
	m.hooksMu.Lock()
	m.hooks = append(m.hooks, fn)
	m.hooksMu.Unlock()
}

func (m *Minter) changed() {
	m.hooksMu.Lock()
	hooks := slices.Clone(m.hooks)
	m.hooksMu.Unlock()
	for _, fn := range hooks {
		fn()
	}
}

// Mint makes a new secret for p, valid for ttl (0: DefaultTTL; more than
// MaxTTL is refused), labelled label (at most 100 bytes of printable
// UTF-8, shown in List). The record keeps p's Subject (or
// "minted:<username>" if it has none), Username, Groups and Claims, so a
// Login with the secret yields the same identity for policy.
//
// Mint refuses principals that a Validate would end (p's AuthTime not
// after the user's revocation) and principals that were themselves
// authenticated by a minted secret: a secret cannot extend its own life.
// Whether p may mint at all (a local account, say) is the caller's
// decision. p.Claims must be encodable as JSON (at most 16 KiB).
//
// The secret is SecretPrefix followed by 32 characters of lower-case
// base32 (160 random bits). It is returned once, in Minted.Secret.
func (m *Minter) Mint(ctx context.Context, p Principal, ttl time.Duration, label string) (Minted, error) {
	out, err := m.mint(ctx, p, ttl, label)
	if err != nil {
		return Minted{}, err
	}
	m.changed()
	return out, nil
}

func (m *Minter) mint(ctx context.Context, p Principal, ttl time.Duration, label string) (Minted, error) {
	if err := checkUsername(p.Username); err != nil {
		return Minted{}, fmt.Errorf("auth: mint: username: %w", err)
	}
	if len(p.Username) > maxUsernameLen {
		return Minted{}, fmt.Errorf("auth: mint: username longer than %d bytes", maxUsernameLen)
	}
	if p.Method == MethodMinted || p.SecretID != "" {
		return Minted{}, errors.New("auth: mint: a session opened with a minted secret cannot mint another; sign in first")
	}
	switch {
	case ttl < 0:
		return Minted{}, fmt.Errorf("auth: mint: negative ttl %v", ttl)
	case ttl == 0:
		ttl = m.defaultTTL
	case ttl > m.maxTTL:
		return Minted{}, fmt.Errorf("auth: mint: ttl %v exceeds the maximum %v", ttl, m.maxTTL)
	}
	if err := checkLabel(label); err != nil {
		return Minted{}, fmt.Errorf("auth: mint: label: %w", err)
	}
	claims, err := normaliseClaims(p.Claims)
	if err != nil {
		return Minted{}, fmt.Errorf("auth: mint: claims: %w", err)
	}
	subject := p.Subject
	if subject == "" {
		subject = "minted:" + p.Username
	}
	folded := asciiLower(p.Username)

	m.storeMu.Lock()
	defer m.storeMu.Unlock()
	now := m.now()
	m.mu.RLock()
	closed, revokedAt := m.closed, m.revoked[folded]
	live := 0
	for _, e := range m.byUser[folded] {
		if now.Before(e.rec.Expires) {
			live++
		}
	}
	m.mu.RUnlock()
	switch {
	case closed:
		return Minted{}, ErrMinterClosed
	case !revokedAt.IsZero() && !p.AuthTime.After(revokedAt):
		return Minted{}, fmt.Errorf("auth: mint: %q signed in before the user's sessions were revoked: %w", p.Username, ErrRevoked)
	case live >= m.maxPerUser:
		return Minted{}, fmt.Errorf("%w: %q holds %d of at most %d", ErrTooManySecrets, p.Username, live, m.maxPerUser)
	}

	secret, err := newSecret()
	if err != nil {
		return Minted{}, fmt.Errorf("auth: mint: %w", err)
	}
	rec := Record{
		Subject:  subject,
		Username: p.Username,
		Groups:   slices.Clone(p.Groups),
		Claims:   claims,
		Label:    label,
		Created:  now.UTC(),
		Expires:  now.Add(ttl).UTC(),
	}
	if len(rec.Groups) == 0 {
		rec.Groups = nil
	}
	var version uint64
	for attempt := 0; ; attempt++ {
		if rec.ID, err = newID(); err != nil {
			return Minted{}, fmt.Errorf("auth: mint: %w", err)
		}
		if rec.Sealed, err = m.seal(rec, secret); err != nil {
			return Minted{}, fmt.Errorf("auth: mint: %w", err)
		}
		version, err = m.store.Put(ctx, rec)
		if errors.Is(err, ErrRecordExists) && attempt < 3 {
			continue // a 64-bit ID collision: practically never
		}
		if err != nil {
			return Minted{}, fmt.Errorf("auth: mint: %w", err)
		}
		break
	}
	e := newEntry(rec, secret)
	m.mu.Lock()
	m.add(e)
	m.advance(version)
	m.mu.Unlock()
	return Minted{Info: e.info(), Secret: Secret(secret)}, nil
}

// normaliseClaims returns claims as a JSON round trip decodes them
// (numbers as json.Number), so that the sealed record's claims re-encode
// identically after any Store. Empty claims become nil.
func normaliseClaims(claims map[string]any) (map[string]any, error) {
	if len(claims) == 0 {
		return nil, nil
	}
	b, err := json.Marshal(claims)
	if err != nil {
		return nil, errors.New("not encodable as JSON")
	}
	if len(b) > maxClaimsLen {
		return nil, fmt.Errorf("%d bytes of JSON, more than %d", len(b), maxClaimsLen)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var out map[string]any
	if err := dec.Decode(&out); err != nil {
		return nil, errors.New("not encodable as JSON")
	}
	return out, nil
}

// newSecret returns a new secret: SecretPrefix and 32 characters of
// lower-case base32 (160 random bits).
func newSecret() ([]byte, error) {
	var raw [secretBytes]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return nil, err
	}
	secret := make([]byte, len(SecretPrefix)+b32.EncodedLen(secretBytes))
	copy(secret, SecretPrefix)
	b32.Encode(secret[len(SecretPrefix):], raw[:])
	clear(raw[:])
	return secret, nil
}

// newID returns a random public ID: 13 characters of lower-case base32.
func newID() (string, error) {
	var b [idBytes]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	return b32.EncodeToString(b[:]), nil
}

func newEntry(rec Record, secret []byte) *entry {
	rec.Sealed = nil
	return &entry{rec: rec, folded: asciiLower(rec.Username), secret: secret, digest: sha256.Sum256(secret)}
}

// sealAAD is the additional data of a record's seal: every field but
// Sealed, length-prefixed, so that no field can be altered and no record
// swapped with another without Open failing.
func sealAAD(r Record) ([]byte, error) {
	var claims []byte
	if len(r.Claims) > 0 {
		var err error
		if claims, err = json.Marshal(r.Claims); err != nil {
			return nil, errors.New("claims not encodable as JSON")
		}
	}
	b := make([]byte, 0, 128+len(claims))
	b = append(b, "amiproxy minted secret v1\x00"...)
	str := func(s string) {
		b = binary.AppendUvarint(b, uint64(len(s)))
		b = append(b, s...)
	}
	str(r.ID)
	str(r.Username)
	str(r.Subject)
	str(r.Label)
	b = binary.BigEndian.AppendUint64(b, uint64(r.Created.UnixNano()))
	b = binary.BigEndian.AppendUint64(b, uint64(r.Expires.UnixNano()))
	b = binary.AppendUvarint(b, uint64(len(r.Groups)))
	for _, g := range r.Groups {
		str(g)
	}
	str(string(claims))
	return b, nil
}

// seal encrypts secret for r: version byte, random nonce, ciphertext and
// tag.
func (m *Minter) seal(r Record, secret []byte) ([]byte, error) {
	aad, err := sealAAD(r)
	if err != nil {
		return nil, err
	}
	out := make([]byte, 1+nonceSize, 1+nonceSize+len(secret)+m.aead.Overhead())
	out[0] = sealVersion
	if _, err := rand.Read(out[1:]); err != nil {
		return nil, err
	}
	return m.aead.Seal(out, out[1:1+nonceSize], secret, aad), nil
}

// open decrypts r's secret. Its error names the record, never its content.
func (m *Minter) open(r Record) ([]byte, error) {
	if len(r.Sealed) < 1+nonceSize+m.aead.Overhead() || r.Sealed[0] != sealVersion {
		return nil, fmt.Errorf("record %s: unknown seal format", r.ID)
	}
	aad, err := sealAAD(r)
	if err != nil {
		return nil, fmt.Errorf("record %s: %w", r.ID, err)
	}
	secret, err := m.aead.Open(nil, r.Sealed[1:1+nonceSize], r.Sealed[1+nonceSize:], aad)
	if err != nil {
		return nil, fmt.Errorf("record %s: does not decrypt (wrong key, or the record was altered)", r.ID)
	}
	if !bytes.HasPrefix(secret, []byte(SecretPrefix)) {
		clear(secret)
		return nil, fmt.Errorf("record %s: decrypted secret is malformed", r.ID)
	}
	return secret, nil
}

// add inserts e. Called with m.mu held for writing.
func (m *Minter) add(e *entry) {
	m.byID[e.rec.ID] = e
	list := append(slices.Clone(m.byUser[e.folded]), e)
	sortEntries(list)
	m.byUser[e.folded] = list
}

// sortEntries orders one user's entries oldest first, then by ID.
func sortEntries(list []*entry) {
	slices.SortFunc(list, func(a, b *entry) int {
		if c := a.rec.Created.Compare(b.rec.Created); c != 0 {
			return c
		}
		return strings.Compare(a.rec.ID, b.rec.ID)
	})
}

// remove drops and wipes the entries with the given IDs. Called with m.mu
// held for writing.
func (m *Minter) remove(ids []string) {
	for _, id := range ids {
		e := m.byID[id]
		if e == nil {
			continue
		}
		delete(m.byID, id)
		list := slices.DeleteFunc(slices.Clone(m.byUser[e.folded]), func(x *entry) bool { return x == e })
		if len(list) == 0 {
			delete(m.byUser, e.folded)
		} else {
			m.byUser[e.folded] = list
		}
		e.wipe()
	}
}

// advance records the Store version after a local change: if it is the
// next one, the cache is exactly the Store; otherwise another process
// changed the Store too, and the next Sync reloads. Called with m.mu held
// for writing.
func (m *Minter) advance(version uint64) {
	if version == m.version+1 {
		m.version = version
	}
}

// apply replaces the cache by snap, keeping already decrypted entries. It
// returns the records that could not be decrypted (they are left out).
// Called with m.storeMu held (or before the Minter is shared).
func (m *Minter) apply(snap Snapshot) (bad []error) {
	m.mu.RLock()
	old := m.byID
	m.mu.RUnlock()
	byID := make(map[string]*entry, len(snap.Records))
	for _, r := range snap.Records {
		if e := old[r.ID]; e != nil {
			byID[r.ID] = e // records are immutable
			continue
		}
		if _, dup := byID[r.ID]; dup {
			continue
		}
		secret, err := m.open(r)
		if err != nil {
			bad = append(bad, err)
			continue
		}
		byID[r.ID] = newEntry(r, secret)
	}
	byUser := make(map[string][]*entry)
	for _, id := range sortedIDs(byID) {
		e := byID[id]
		byUser[e.folded] = append(byUser[e.folded], e)
	}
	for _, list := range byUser {
		sortEntries(list)
	}
	m.mu.Lock()
	for id, e := range m.byID {
		if byID[id] != e {
			e.wipe()
		}
	}
	m.byID, m.byUser = byID, byUser
	m.revoked = cloneRevocations(snap.Revocations)
	m.version = snap.Version
	m.mu.Unlock()
	return bad
}

// Sync reloads the Store if another process changed it, and deletes the
// secrets that have expired or predate their user's revocation; then, if
// anything changed, it calls the OnChange functions. The background loop
// calls it every PollInterval; tests and callers that need a change seen
// at once may call it too. Records that do not decrypt are left out and
// reported in the error (the rest of the Store is still applied).
func (m *Minter) Sync(ctx context.Context) error {
	changed, err := m.sync(ctx)
	if changed {
		m.changed()
	}
	return err
}

func (m *Minter) sync(ctx context.Context) (bool, error) {
	m.storeMu.Lock()
	defer m.storeMu.Unlock()
	m.mu.RLock()
	closed, known := m.closed, m.version
	m.mu.RUnlock()
	if closed {
		return false, ErrMinterClosed
	}
	v, err := m.store.Version(ctx)
	if err != nil {
		return false, fmt.Errorf("auth: minter: sync: %w", err)
	}
	changed := false
	var errs []error
	if v != known {
		snap, err := m.store.Load(ctx)
		if err != nil {
			return false, fmt.Errorf("auth: minter: sync: %w", err)
		}
		if bad := m.apply(snap); len(bad) > 0 {
			errs = append(errs, fmt.Errorf("auth: minter: sync: %d record(s) ignored: %w", len(bad), joinFirst(bad, 5)))
		}
		changed = true
	}
	swept, err := m.sweep(ctx)
	errs = append(errs, err)
	return changed || swept, errors.Join(errs...)
}

// joinFirst joins the first n errors and counts the rest, so that a
// wrong key does not produce one line per stored record.
func joinFirst(errs []error, n int) error {
	if len(errs) <= n {
		return errors.Join(errs...)
	}
	return errors.Join(append(slices.Clip(errs[:n]), fmt.Errorf("and %d more", len(errs)-n))...)
}

// sweep deletes expired records, and records created before their user's
// revocation, from the Store and the cache. Called with m.storeMu held.
func (m *Minter) sweep(ctx context.Context) (bool, error) {
	now := m.now()
	var ids []string
	m.mu.RLock()
	for id, e := range m.byID {
		at := m.revoked[e.folded]
		if !now.Before(e.rec.Expires) || (!at.IsZero() && !e.rec.Created.After(at)) {
			ids = append(ids, id)
		}
	}
	m.mu.RUnlock()
	if len(ids) == 0 {
		return false, nil
	}
	slices.Sort(ids)
	deleted, version, err := m.store.Delete(ctx, ids)
	if err != nil {
		return false, fmt.Errorf("auth: minter: sweep expired secrets: %w", err)
	}
	m.mu.Lock()
	m.remove(ids) // deleted, or already gone from the Store
	if len(deleted) > 0 {
		m.advance(version)
	}
	m.mu.Unlock()
	return true, nil
}

// List returns the live secrets of username (case-insensitive), oldest
// first, without the secrets.
func (m *Minter) List(ctx context.Context, username string) ([]Info, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("auth: minter: list: %w", context.Cause(ctx))
	}
	now := m.now()
	m.mu.RLock()
	defer m.mu.RUnlock()
	var out []Info
	for _, e := range m.byUser[asciiLower(username)] {
		if now.Before(e.rec.Expires) {
			out = append(out, e.info())
		}
	}
	return out, nil
}

// ListAll returns every live secret of every user, by username then age,
// without the secrets: for administrators.
func (m *Minter) ListAll(ctx context.Context) ([]Info, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("auth: minter: list: %w", context.Cause(ctx))
	}
	now := m.now()
	m.mu.RLock()
	defer m.mu.RUnlock()
	var out []Info
	for _, u := range sortedIDs(m.byUser) {
		for _, e := range m.byUser[u] {
			if now.Before(e.rec.Expires) {
				out = append(out, e.info())
			}
		}
	}
	return out, nil
}

// Revoke deletes the secret id of username. It fails with an error
// wrapping ErrUnknownSecret if username holds no such secret, so that a
// user cannot probe or revoke other users' IDs.
func (m *Minter) Revoke(ctx context.Context, username, id string) error {
	return m.revoke(ctx, id, func(e *entry) bool { return e.folded == asciiLower(username) })
}

// RevokeID deletes the secret id whoever holds it: for administrators. It
// fails with an error wrapping ErrUnknownSecret if there is none.
func (m *Minter) RevokeID(ctx context.Context, id string) error {
	return m.revoke(ctx, id, func(*entry) bool { return true })
}

func (m *Minter) revoke(ctx context.Context, id string, allowed func(*entry) bool) error {
	if err := m.revokeLocked(ctx, id, allowed); err != nil {
		return err
	}
	m.changed()
	return nil
}

func (m *Minter) revokeLocked(ctx context.Context, id string, allowed func(*entry) bool) error {
	m.storeMu.Lock()
	defer m.storeMu.Unlock()
	m.mu.RLock()
	closed, e := m.closed, m.byID[id]
	m.mu.RUnlock()
	if closed {
		return ErrMinterClosed
	}
	if e == nil || !allowed(e) {
		return fmt.Errorf("%w: id %q", ErrUnknownSecret, safeID(id))
	}
	deleted, version, err := m.store.Delete(ctx, []string{id})
	if err != nil {
		return fmt.Errorf("auth: minter: revoke %s: %w", id, err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.remove([]string{id})
	if len(deleted) > 0 {
		m.advance(version)
	}
	return nil
}

// safeID returns id if it looks like an ID, for error text: a user who
// pasted a secret where an ID belongs must not find it in a log.
func safeID(id string) string {
	if checkID(id) != nil || strings.HasPrefix(id, SecretPrefix) {
		return "(malformed)"
	}
	return id
}

// RevokeUser deletes every secret of username (case-insensitive) and
// records a user revocation at now, in one Store change: from then on
// Validate fails, with ErrRevoked, for every Principal of that username
// authenticated at or before now, whatever the method (OIDC, minted,
// local), so gateways end those sessions, and Mint refuses such a
// Principal. Signing in again afterwards works. It returns how many
// secrets it deleted. Revocations are kept for good (one time per user).
func (m *Minter) RevokeUser(ctx context.Context, username string) (int, error) {
	if err := checkUsername(username); err != nil {
		return 0, fmt.Errorf("auth: minter: revoke user: username: %w", err)
	}
	n, err := m.revokeUser(ctx, username)
	if err != nil {
		return 0, err
	}
	m.changed()
	return n, nil
}

func (m *Minter) revokeUser(ctx context.Context, username string) (int, error) {
	folded := asciiLower(username)
	m.storeMu.Lock()
	defer m.storeMu.Unlock()
	m.mu.RLock()
	closed := m.closed
	m.mu.RUnlock()
	if closed {
		return 0, ErrMinterClosed
	}
	at := m.now().UTC()
	deleted, version, err := m.store.RevokeUser(ctx, folded, at)
	if err != nil {
		return 0, fmt.Errorf("auth: minter: revoke user %q: %w", username, err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	var ids []string
	for _, e := range m.byUser[folded] {
		ids = append(ids, e.rec.ID)
	}
	m.remove(append(ids, deleted...))
	if at.After(m.revoked[folded]) {
		m.revoked[folded] = at
	}
	m.advance(version)
	return len(deleted), nil
}

// RevokedAt returns the time of username's latest RevokeUser
// (case-insensitive), or the zero time.
func (m *Minter) RevokedAt(username string) time.Time {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.revoked[asciiLower(username)]
}

// Validate reports whether a Principal that authenticated earlier is
// still valid: for one authenticated by a minted secret (p.SecretID set),
// the secret must still exist, belong to p.Username and be unexpired; for
// every Principal, p.AuthTime must be after RevokedAt(p.Username) (a zero
// AuthTime counts as before). It returns nil or an error wrapping
// ErrRevoked or ErrExpired, whose text is safe to log.
func (m *Minter) Validate(ctx context.Context, p Principal) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("auth: minter: validate: %w", context.Cause(ctx))
	}
	now := m.now()
	folded := asciiLower(p.Username)
	m.mu.RLock()
	defer m.mu.RUnlock()
	if p.SecretID != "" {
		e := m.byID[p.SecretID]
		switch {
		case e != nil && e.folded == folded && !now.Before(e.rec.Expires),
			e == nil && !p.Expires.IsZero() && !now.Before(p.Expires):
			return fmt.Errorf("auth: minted secret %s: %w", safeID(p.SecretID), ErrExpired)
		case e == nil || e.folded != folded:
			return fmt.Errorf("auth: minted secret %s: %w", safeID(p.SecretID), ErrRevoked)
		}
	}
	if at := m.revoked[folded]; !at.IsZero() && !p.AuthTime.After(at) {
		return fmt.Errorf("auth: user %q: sessions authenticated before %s were revoked: %w", p.Username, at.Format(time.RFC3339), ErrRevoked)
	}
	return nil
}

// dummyMinted stands in for missing secrets, so that Authenticate always
// tries the same number of candidates.
var dummyMinted = []byte(SecretPrefix + strings.Repeat("a", 32))

var dummyMintedDigest = sha256.Sum256(dummyMinted)

// Authenticate checks a Login that presents a minted secret: plain
// (c.Secret is the secret) or MD5 (AuthType "MD5", c.Key is lower-case hex
// md5(c.Challenge + secret)), for c.Username (case-insensitive). On
// success the Principal carries the minting identity's Subject, Groups and
// Claims, Method MethodMinted, Expires the secret's expiry, SecretID its
// ID and AuthTime now.
//
// Timing: it compares against max(MaxPerUser, secrets held) candidates,
// with dummies for missing ones, in constant time, so its duration does
// not reveal whether or how many secrets a username holds. A plain Login
// whose Secret lacks SecretPrefix fails at once (that depends only on the
// client's input).
//
// Every failure wraps ErrAuthFailed; causes (for logs only) say "not a
// minted secret", "username holds no minted secret", "wrong secret",
// "md5: wrong key", or name the secret ID with ErrExpired or ErrRevoked.
// No error contains a secret or key.
func (m *Minter) Authenticate(ctx context.Context, c Credentials) (Principal, error) {
	if ctx.Err() != nil {
		return failed(context.Cause(ctx))
	}
	if c.Username == "" {
		return failed(errEmptyUsername)
	}
	useMD5 := isMD5(c.AuthType)
	var given [sha256.Size]byte
	switch {
	case useMD5 && c.Challenge == "":
		return failed(errNoChallenge)
	case useMD5 && c.Key == "":
		return failed(errNoKey)
	case !useMD5 && !strings.HasPrefix(c.Secret.Reveal(), SecretPrefix):
		return failed(errNotMinted)
	case !useMD5:
		given = sha256.Sum256([]byte(c.Secret.Reveal()))
	}
	now := m.now()
	folded := asciiLower(c.Username)

	m.mu.RLock()
	entries := m.byUser[folded]
	var found *entry
	var key [2 * md5.Size]byte
	for i := range max(len(entries), m.maxPerUser) {
		var ok bool
		cand := dummyMinted
		if i < len(entries) {
			cand = entries[i].secret
		}
		if useMD5 {
			md5Hex(&key, c.Challenge, cand)
			ok = subtle.ConstantTimeCompare([]byte(c.Key), key[:]) == 1
		} else {
			want := &dummyMintedDigest
			if i < len(entries) {
				want = &entries[i].digest
			}
			ok = subtle.ConstantTimeCompare(given[:], want[:]) == 1
		}
		if ok && i < len(entries) {
			found = entries[i]
		}
	}
	var p Principal
	var cause error
	switch {
	case m.closed:
		cause = ErrMinterClosed
	case found == nil && len(entries) == 0:
		cause = errUserHoldsNone
	case found == nil && useMD5:
		cause = errWrongKey
	case found == nil:
		cause = errWrongSecret
	case !now.Before(found.rec.Expires):
		cause = fmt.Errorf("minted secret %s: %w", found.rec.ID, ErrExpired)
	default:
		if at := m.revoked[folded]; !at.IsZero() && !found.rec.Created.After(at) {
			cause = fmt.Errorf("minted secret %s: %w", found.rec.ID, ErrRevoked)
			break
		}
		r := found.rec
		p = Principal{
			Subject:  r.Subject,
			Username: r.Username,
			Groups:   slices.Clone(r.Groups),
			Method:   MethodMinted,
			Expires:  r.Expires,
			Claims:   r.Claims,
			SecretID: r.ID,
			AuthTime: now,
		}
	}
	m.mu.RUnlock()
	if cause != nil {
		return failed(cause)
	}
	return p, nil
}

// md5Hex writes the lower-case hex of md5(challenge + secret) to dst, the
// key Asterisk expects, without making a string of the secret.
func md5Hex(dst *[2 * md5.Size]byte, challenge string, secret []byte) {
	h := md5.New()
	h.Write([]byte(challenge))
	h.Write(secret)
	var sum [md5.Size]byte
	hex.Encode(dst[:], h.Sum(sum[:0]))
}
