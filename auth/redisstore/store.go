package redisstore

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/amiproxy/amiproxy/auth"
)

// DefaultKeyPrefix starts every key the Store uses, unless
// Options.KeyPrefix says otherwise.
const DefaultKeyPrefix = "amiproxy:"

// Defaults of Options.
const (
	DefaultDialTimeout = 5 * time.Second
	DefaultIOTimeout   = 5 * time.Second
)

// Key names after the prefix.
const (
	keyVersion = "version" // change counter (string integer)
	keyCreated = "created" // Unix milliseconds at which the store was initialised
	keyRecords = "records" // hash: id -> auth.EncodeRecord JSON
	keyOwners  = "owners"  // hash: id -> folded username
	keyRevoked = "revoked" // hash: folded username -> 19-digit Unix nanoseconds
	chanChange = "changed" // Pub/Sub channel announcing every change
)

// versionShift places the initialisation time in a new store's first
// version (Unix milliseconds << 10), so that a Redis that lost its data
// starts above any version its clients knew, not at 0 again; a Minter
// that sees a different version reloads. A collision would need about a
// million changes per second over the old store's whole life. Versions
// stay below 2^53 (Lua's exact integers) until the year 2248.
const versionShift = 10

// Options configure New.
type Options struct {
	// Addr is the Redis server, host:port. Required.
	Addr string
	// Username and Password authenticate (AUTH, Redis 6 ACL users); both
	// empty: no AUTH. Password alone: the default user (requirepass).
	Username string
	Password auth.Secret
	// DB is the database number (SELECT).
	DB int
	// KeyPrefix starts every key and the change channel; DefaultKeyPrefix
	// if empty. Replicas sharing a store use the same prefix; several
	// proxies may share one Redis with different prefixes.
	KeyPrefix string
	// TLS, when set, connects with TLS (ServerName should be set, or
	// derived by the caller from Addr).
	TLS *tls.Config
	// DialTimeout bounds a connect; DefaultDialTimeout if zero.
	DialTimeout time.Duration
	// IOTimeout bounds each read and write on the connection;
	// DefaultIOTimeout if zero. A ctx deadline applies too.
	IOTimeout time.Duration
	// Logger receives a warning when the store is found wiped (Redis
	// restarted without persistence, or the keys were deleted or
	// evicted). Nil: no warnings.
	Logger *slog.Logger
}

// Store is an auth.Store kept in Redis, shared by every proxy replica
// that opens it with the same address, database and key prefix. See the
// package documentation for the layout and the behaviour when Redis
// loses its data.
type Store struct {
	rdb  *redis.Client // reads, Delete, RevokeUser, Watch: retried on network errors
	put  *redis.Client // Put only: never retried (a retried Put could report its own success as ErrRecordExists)
	addr string
	keys []string // version, created, records, owners, revoked
	ch   string   // change channel
	log  *slog.Logger

	mu      sync.Mutex
	created string // last seen creation time; "" before the first read or after a wipe
	seen    bool   // created was read at least once

	closed atomic.Bool
}

var _ auth.Store = (*Store)(nil)

// New connects to Redis, checks that it answers and that the scripts can
// be loaded (the ACL user may run them), and returns the Store. Close it
// when done (after the Minter). The first read of a new (or wiped) store
// creates its version and created keys.
func New(ctx context.Context, o Options) (*Store, error) {
	if o.Addr == "" {
		return nil, errors.New("redisstore: no address")
	}
	if o.DB < 0 {
		return nil, fmt.Errorf("redisstore: negative database number %d", o.DB)
	}
	if o.Username != "" && o.Password == "" {
		return nil, errors.New("redisstore: a username needs a password")
	}
	prefix := o.KeyPrefix
	if prefix == "" {
		prefix = DefaultKeyPrefix
	}
	if o.DialTimeout <= 0 {
		o.DialTimeout = DefaultDialTimeout
	}
	if o.IOTimeout <= 0 {
		o.IOTimeout = DefaultIOTimeout
	}
	opts := func(retries int) *redis.Options {
		return &redis.Options{
			Addr:                  o.Addr,
			Username:              o.Username,
			Password:              o.Password.Reveal(),
			DB:                    o.DB,
			TLSConfig:             o.TLS,
			DialTimeout:           o.DialTimeout,
			ReadTimeout:           o.IOTimeout,
			WriteTimeout:          o.IOTimeout,
			ContextTimeoutEnabled: true,
			Protocol:              2,
			DisableIdentity:       true, // no CLIENT SETINFO (Redis 7.2+)
			MaxRetries:            retries,
		}
	}
	putOpts := opts(-1)
	putOpts.PoolSize = 2
	s := &Store{
		rdb:  redis.NewClient(opts(3)),
		put:  redis.NewClient(putOpts),
		addr: o.Addr,
		keys: []string{prefix + keyVersion, prefix + keyCreated, prefix + keyRecords, prefix + keyOwners, prefix + keyRevoked},
		ch:   prefix + chanChange,
		log:  o.Logger,
	}
	for _, sc := range []*redis.Script{initScript, putScript, deleteScript, revokeScript, loadScript} {
		if err := sc.Load(ctx, s.rdb).Err(); err != nil {
			err = s.wrap("connect and load scripts", err) // before Close, which would make it "closed"
			_ = s.Close()
			return nil, err
		}
	}
	return s, nil
}

// String names the store for logs: "redis:" and the address.
func (s *Store) String() string { return "redis:" + s.addr }

// Close closes the connections. Later calls fail with an error wrapping
// auth.ErrStoreClosed. Idempotent.
func (s *Store) Close() error {
	if s.closed.Swap(true) {
		return nil
	}
	return errors.Join(s.rdb.Close(), s.put.Close())
}

// wrap names the operation and the server. go-redis errors carry the
// server's reply or the network error, never the password.
func (s *Store) wrap(op string, err error) error {
	if errors.Is(err, redis.ErrClosed) || s.closed.Load() {
		return fmt.Errorf("redisstore %s: %s: %w", s.addr, op, auth.ErrStoreClosed)
	}
	return fmt.Errorf("redisstore %s: %s: %w", s.addr, op, err)
}

// check fails once the store is closed, or ctx is done.
func (s *Store) check(ctx context.Context, op string) error {
	if s.closed.Load() {
		return fmt.Errorf("redisstore %s: %s: %w", s.addr, op, auth.ErrStoreClosed)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("redisstore %s: %s: %w", s.addr, op, context.Cause(ctx))
	}
	return nil
}

// args are ARGV[1] to ARGV[3] of every script, then extra.
func (s *Store) args(extra ...any) []any {
	now := time.Now().UnixMilli()
	return append([]any{strconv.FormatInt(now<<versionShift, 10), strconv.FormatInt(now, 10), s.ch}, extra...)
}

// Version returns the change counter: one MGET of two keys. A new or
// wiped store is initialised first (one script), so its version is never
// 0 but (Unix milliseconds << 10) at initialisation.
func (s *Store) Version(ctx context.Context) (uint64, error) {
	if err := s.check(ctx, "version"); err != nil {
		return 0, err
	}
	vals, err := s.rdb.MGet(ctx, s.keys[0], s.keys[1]).Result()
	if err != nil {
		return 0, s.wrap("version", err)
	}
	str, ok := vals[0].(string)
	if !ok { // missing: initialise
		s.observe("")
		res, err := initScript.Run(ctx, s.rdb, s.keys, s.args()...).Result()
		if err != nil {
			return 0, s.wrap("version", err)
		}
		v, err := toVersion(res)
		if err != nil {
			return 0, s.wrap("version", err)
		}
		return v, nil
	}
	v, err := strconv.ParseUint(str, 10, 64)
	if err != nil {
		return 0, s.wrap("version", fmt.Errorf("key %s is not a counter", s.keys[0]))
	}
	created, _ := vals[1].(string)
	s.observe(created)
	return v, nil
}

// observe notes the store's creation time and warns when it changed: the
// data was lost (and, if created is set again, re-initialised since).
func (s *Store) observe(created string) {
	s.mu.Lock()
	prev, seen := s.created, s.seen
	s.created, s.seen = created, true
	s.mu.Unlock()
	if seen && prev != "" && created != prev && s.log != nil {
		s.log.Warn("the shared minted-secret store was wiped (Redis restarted without persistence, or its keys were deleted or evicted): every minted secret and every user revocation it held is gone; users must mint new secrets",
			"store", s.String())
	}
}

// Load returns the whole store at one version, read by one script.
func (s *Store) Load(ctx context.Context) (auth.Snapshot, error) {
	if err := s.check(ctx, "load"); err != nil {
		return auth.Snapshot{}, err
	}
	res, err := loadScript.Run(ctx, s.rdb, s.keys, s.args()...).Slice()
	if err != nil {
		return auth.Snapshot{}, s.wrap("load", err)
	}
	snap, created, err := decodeLoad(res)
	if err != nil {
		return auth.Snapshot{}, s.wrap("load", err)
	}
	s.observe(created)
	return snap, nil
}

// decodeLoad checks and converts loadScript's reply. Errors never quote
// record content.
func decodeLoad(res []any) (auth.Snapshot, string, error) {
	if len(res) != 4 {
		return auth.Snapshot{}, "", fmt.Errorf("load script returned %d values, want 4", len(res))
	}
	v, err := toVersion(res[0])
	if err != nil {
		return auth.Snapshot{}, "", err
	}
	created, _ := res[1].(string)
	recs, err := toStrings(res[2])
	if err != nil || len(recs)%2 != 0 {
		return auth.Snapshot{}, "", errors.New("records hash: malformed reply")
	}
	revs, err := toStrings(res[3])
	if err != nil || len(revs)%2 != 0 {
		return auth.Snapshot{}, "", errors.New("revocations hash: malformed reply")
	}
	snap := auth.Snapshot{Version: v, Records: make([]auth.Record, 0, len(recs)/2), Revocations: make(map[string]time.Time, len(revs)/2)}
	order := make([]int, 0, len(recs)/2) // field indexes, sorted by ID
	for i := 0; i < len(recs); i += 2 {
		order = append(order, i)
	}
	slices.SortFunc(order, func(a, b int) int { return cmpString(recs[a], recs[b]) })
	for _, i := range order {
		r, err := auth.DecodeRecord([]byte(recs[i+1]))
		if err != nil {
			return auth.Snapshot{}, "", fmt.Errorf("record %q: %w", safeID(recs[i]), err)
		}
		if r.ID != recs[i] {
			return auth.Snapshot{}, "", fmt.Errorf("record %q holds another ID", safeID(recs[i]))
		}
		snap.Records = append(snap.Records, r)
	}
	for i := 0; i < len(revs); i += 2 {
		user := revs[i]
		at, err := parseTime(revs[i+1])
		if err != nil || user == "" || user != asciiLower(user) {
			return auth.Snapshot{}, "", errors.New("revocations hash: invalid username or time")
		}
		snap.Revocations[user] = at
	}
	return snap, created, nil
}

// Put inserts r, or fails with an error wrapping auth.ErrRecordExists.
func (s *Store) Put(ctx context.Context, r auth.Record) (uint64, error) {
	raw, err := auth.EncodeRecord(r)
	if err != nil {
		return 0, err
	}
	if err := s.check(ctx, "put"); err != nil {
		return 0, err
	}
	res, err := putScript.Run(ctx, s.put, s.keys, s.args(r.ID, raw, asciiLower(r.Username))...).Slice()
	if err != nil {
		return 0, s.wrap("put record "+r.ID, err)
	}
	if len(res) == 1 {
		return 0, fmt.Errorf("%w: id %s", auth.ErrRecordExists, r.ID)
	}
	if len(res) != 2 {
		return 0, s.wrap("put record "+r.ID, errors.New("malformed script reply"))
	}
	v, err := toVersion(res[1])
	if err != nil {
		return 0, s.wrap("put record "+r.ID, err)
	}
	return v, nil
}

// Delete removes the records with the given IDs.
func (s *Store) Delete(ctx context.Context, ids []string) ([]string, uint64, error) {
	if err := s.check(ctx, "delete"); err != nil {
		return nil, 0, err
	}
	extra := make([]any, len(ids))
	for i, id := range ids {
		extra[i] = id
	}
	res, err := deleteScript.Run(ctx, s.rdb, s.keys, s.args(extra...)...).Slice()
	if err != nil {
		return nil, 0, s.wrap("delete records", err)
	}
	return s.changeReply("delete records", res)
}

// RevokeUser deletes every record of username (already folded) and
// records the revocation time max(previous, at), in one script.
func (s *Store) RevokeUser(ctx context.Context, username string, at time.Time) ([]string, uint64, error) {
	if username == "" || username != asciiLower(username) || at.IsZero() {
		return nil, 0, errors.New("redisstore: revoke user: want a folded username and a time")
	}
	stamp, err := formatTime(at)
	if err != nil {
		return nil, 0, fmt.Errorf("redisstore: revoke user: %w", err)
	}
	if err := s.check(ctx, "revoke user"); err != nil {
		return nil, 0, err
	}
	res, err := revokeScript.Run(ctx, s.rdb, s.keys, s.args(username, stamp)...).Slice()
	if err != nil {
		return nil, 0, s.wrap("revoke user", err)
	}
	return s.changeReply("revoke user", res)
}

// changeReply decodes {version, {deleted ids}}.
func (s *Store) changeReply(op string, res []any) ([]string, uint64, error) {
	if len(res) != 2 {
		return nil, 0, s.wrap(op, errors.New("malformed script reply"))
	}
	v, err := toVersion(res[0])
	if err != nil {
		return nil, 0, s.wrap(op, err)
	}
	deleted, err := toStrings(res[1])
	if err != nil {
		return nil, 0, s.wrap(op, err)
	}
	if len(deleted) == 0 {
		deleted = nil
	}
	slices.Sort(deleted)
	return deleted, v, nil
}

// Watch calls fn after every change any replica makes to the store, as
// announced on its Pub/Sub channel, until ctx ends (then it returns nil).
// A burst of changes may be reported by one call. It fails at once if
// the subscription cannot be made; once subscribed, it reconnects by
// itself, and changes made while it was disconnected are not reported
// (a Minter's poll still sees them). fn runs on Watch's goroutine, one
// call at a time; a Minter's Sync is the intended fn.
func (s *Store) Watch(ctx context.Context, fn func()) error {
	if err := s.check(ctx, "watch"); err != nil {
		return err
	}
	ps := s.rdb.Subscribe(ctx, s.ch)
	defer ps.Close()
	if _, err := ps.Receive(ctx); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return s.wrap("subscribe", err)
	}
	msgs := ps.Channel()
	for {
		select {
		case <-ctx.Done():
			return nil
		case _, ok := <-msgs:
			if !ok {
				return s.wrap("watch", errors.New("subscription closed"))
			}
		}
	drain:
		for {
			select {
			case <-msgs:
			default:
				break drain
			}
		}
		fn()
	}
}
