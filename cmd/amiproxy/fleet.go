package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/amiproxy/amiproxy/auth"
	"github.com/amiproxy/amiproxy/auth/redisstore"
)

// MintedStore is minted.store: where minted secrets and revocations are
// kept. Empty: a file in minted.state_dir, for one proxy process. With
// redis set, several replicas share them (see README "Running several
// replicas").
type MintedStore struct {
	Redis RedisStore `yaml:"redis"`
}

// Shared reports whether a shared store is configured.
func (s MintedStore) Shared() bool { return s.Redis.Address != "" }

// RedisStore is minted.store.redis.
type RedisStore struct {
	// Address is host:port of the Redis server.
	Address string `yaml:"address"`
	// Username is a Redis 6+ ACL user; empty: the default user.
	Username string `yaml:"username"`
	// Password ({env: NAME} or {file: PATH}); empty: no AUTH.
	Password SecretSource `yaml:"password"`
	// DB is the database number.
	DB int `yaml:"db"`
	// KeyPrefix starts every key; default "amiproxy:". Replicas sharing
	// secrets use the same prefix.
	KeyPrefix string `yaml:"key_prefix"`
	// TLS connects with TLS; required unless Address is on loopback.
	TLS bool `yaml:"tls"`
	// CAFile is a PEM file of extra CAs to trust for Redis's certificate.
	CAFile string `yaml:"ca_file"`
}

// validateStore reports the problems of minted.store (called when the
// minted section is enabled).
func (m Minted) validateStore() []error {
	r := m.Store.Redis
	if !m.Store.Shared() {
		if r.Username != "" || !r.Password.IsZero() || r.DB != 0 || r.KeyPrefix != "" || r.TLS || r.CAFile != "" {
			return []error{errors.New("minted.store.redis: address is required when other redis fields are set")}
		}
		return nil
	}
	var errs []error
	add := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	host, port, err := net.SplitHostPort(r.Address)
	if n, perr := strconv.Atoi(port); err != nil || host == "" || perr != nil || n < 1 || n > 65535 {
		add("minted.store.redis.address: %q: want host:port", r.Address)
	} else if !r.TLS && !loopbackHost(host) {
		add("minted.store.redis: tls is required for the non-loopback address %q (the password and every record would cross the network in clear text)", r.Address)
	}
	if m.StateDir != "" {
		add("minted.state_dir and minted.store.redis: give one (the redis store replaces the state directory)")
	}
	if m.Key.IsZero() {
		add("minted.key: required with minted.store.redis (every replica must use the same key; give it as env or file)")
	}
	if err := r.Password.check("minted.store.redis.password"); err != nil {
		errs = append(errs, err)
	}
	if r.Password.Value != "" {
		add("minted.store.redis.password: give it as env or file, not inline value")
	}
	if r.Username != "" && r.Password.IsZero() {
		add("minted.store.redis.username: needs a password")
	}
	if r.DB < 0 {
		add("minted.store.redis.db: negative")
	}
	if r.CAFile != "" && !r.TLS {
		add("minted.store.redis.ca_file: needs tls: true")
	}
	return errs
}

// secrets resolves the redis password and CA file (for
// buildIdentitySecrets).
func (r RedisStore) secrets(env func(string) (string, bool), readFile func(string) ([]byte, error)) (auth.Secret, *x509.CertPool, []error) {
	var errs []error
	var pw auth.Secret
	if !r.Password.IsZero() {
		v, err := r.Password.resolve(env, readFile)
		if err != nil {
			errs = append(errs, fmt.Errorf("minted.store.redis.password: %w", err))
		}
		pw = auth.Secret(v)
	}
	var roots *x509.CertPool
	if r.CAFile != "" {
		pool, err := x509.SystemCertPool()
		if err != nil || pool == nil {
			pool = x509.NewCertPool()
		}
		pem, err := readFile(r.CAFile)
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("minted.store.redis.ca_file: %w", err))
		case !pool.AppendCertsFromPEM(pem):
			errs = append(errs, fmt.Errorf("minted.store.redis.ca_file %s: no PEM certificate", r.CAFile))
		}
		roots = pool
	}
	return pw, roots, errs
}

// mintedStore is a Store the identity closes.
type mintedStore interface {
	auth.Store
	Close() error
}

// openMintedStore opens the configured store: Redis when minted.store.redis
// is set, else the file store in minted.state_dir.
// sec holds the password and CA pool resolved by buildIdentitySecrets.
func openMintedStore(ctx context.Context, f *File, sec identitySecrets, logger *slog.Logger) (mintedStore, error) {
	m := f.Minted
	if !m.Store.Shared() {
		return auth.OpenFileStore(m.StateDir)
	}
	r := m.Store.Redis
	routeRedisLogs(logger)
	o := redisstore.Options{Addr: r.Address, Username: r.Username, Password: sec.redisPassword, DB: r.DB, KeyPrefix: r.KeyPrefix,
		Logger: logger.With("part", "minted")}
	if r.TLS {
		host, _, _ := net.SplitHostPort(r.Address)
		o.TLS = &tls.Config{ServerName: host, RootCAs: sec.redisRoots, MinVersion: tls.VersionTLS12}
	}
	sctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	s, err := redisstore.New(sctx, o)
	if err != nil {
		return nil, err
	}
	return &sharedStore{Store: s, logger: logger.With("part", "minted")}, nil
}

// sharedStore is the Redis store plus the watcher that makes the Minter
// see other replicas' changes at once rather than at its next poll.
type sharedStore struct {
	*redisstore.Store
	logger *slog.Logger

	mu     sync.Mutex
	cancel context.CancelFunc
	done   chan struct{}
}

// watch runs Store.Watch, calling minter.Sync on every change, until
// Close; it resubscribes after errors (the Minter's poll covers the gap).
func (s *sharedStore) watch(minter *auth.Minter) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	s.mu.Lock()
	s.cancel, s.done = cancel, done
	s.mu.Unlock()
	go func() {
		defer close(done)
		backoff := 5 * time.Second
		for failures := 0; ctx.Err() == nil; failures++ {
			err := s.Watch(ctx, func() {
				if err := minter.Sync(ctx); err != nil && ctx.Err() == nil && !errors.Is(err, auth.ErrMinterClosed) {
					s.logger.Warn("minted store sync after a change notice", "err", err)
				}
			})
			if err == nil || ctx.Err() != nil {
				return
			}
			// Warn once; retries (5 s doubling to 1 min) log at debug.
			level := slog.LevelDebug
			if failures == 0 {
				level = slog.LevelWarn
			}
			s.logger.Log(ctx, level, "minted store change notices unavailable; replicas see changes by polling (about 1 s)", "store", s.String(), "err", err)
			select {
			case <-ctx.Done():
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, time.Minute)
		}
	}()
}

// Close stops the watcher, then closes the connections.
func (s *sharedStore) Close() error {
	s.mu.Lock()
	cancel, done := s.cancel, s.done
	s.mu.Unlock()
	if cancel != nil {
		cancel()
		<-done
	}
	return s.Store.Close()
}

// startWatch starts the change watcher of a shared store (no-op for the
// file store).
func startWatch(store mintedStore, minter *auth.Minter) {
	if s, ok := store.(*sharedStore); ok {
		s.watch(minter)
	}
}

// redisLogOnce guards go-redis's process-wide logger, which it otherwise
// prints to stderr with the standard log package (reconnects, dropped
// Pub/Sub connections). It is set once, before the first client exists,
// to the first serving logger; go-redis offers no per-client logger.
var redisLogOnce sync.Once

func routeRedisLogs(l *slog.Logger) {
	redisLogOnce.Do(func() { redis.SetLogger(redisLog{l.With("part", "redis")}) })
}

// redisLog adapts slog to go-redis's Logging interface. Its messages name
// addresses and errors, never the password.
type redisLog struct{ l *slog.Logger }

func (r redisLog) Printf(_ context.Context, format string, v ...any) {
	r.l.Warn(strings.TrimPrefix(fmt.Sprintf(format, v...), "redis: "))
}
