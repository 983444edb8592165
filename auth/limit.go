package auth

import (
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"golang.org/x/time/rate"
)

// Defaults applied by NewLoginLimiter to zero fields of a LimitConfig.
const (
	DefaultAddressRate  = rate.Limit(10.0 / 60) // 10 login attempts a minute per address
	DefaultAddressBurst = 20
	DefaultUserRate     = rate.Limit(10.0 / 60) // 10 failed logins a minute per username
	DefaultUserBurst    = 10
	DefaultLockoutBase  = time.Second
	DefaultLockoutMax   = 15 * time.Minute
	DefaultMaxEntries   = 100_000
)

// maxUserKey bounds the bytes of a username kept as a key: Asterisk's
// 1024-byte lines would otherwise let a flood of long usernames cost
// 1 KiB per entry.
const maxUserKey = 128

// LimitConfig tunes a LoginLimiter. Zero fields take the Default* values.
type LimitConfig struct {
	// PerAddress and AddressBurst bound login attempts per client
	// address: an IPv4 address, or the /64 of an IPv6 address. Every
	// attempt counts, successful or not.
	PerAddress   rate.Limit
	AddressBurst int
	// PerUser and UserBurst bound failed logins per username
	// (case-insensitive), from any address. Only failures spend the
	// budget, so a service account that logs in often is never slowed;
	// once it is spent every attempt for the username is refused until
	// it refills.
	PerUser   rate.Limit
	UserBurst int
	// LockoutBase is the lockout after one failure of a username from an
	// address; each further consecutive failure doubles it, up to
	// LockoutMax. A success resets it. A pair's failures are forgotten
	// LockoutMax after its last lockout ends.
	LockoutBase, LockoutMax time.Duration
	// MaxEntries bounds each of the three tables (addresses, usernames,
	// username+address pairs); the least recently used entry is dropped.
	MaxEntries int
	// Now is the clock. Nil means time.Now.
	Now func() time.Time
}

// Decision is the answer of LoginLimiter.Allow.
type Decision struct {
	OK bool
	// RetryAfter is how long until an attempt may succeed (when !OK).
	RetryAfter time.Duration
	// Reason says why an attempt was refused, for logs only: "address
	// rate", "user rate" or "locked out". Never send it to a client.
	Reason string
}

// Reasons reported in Decision.Reason.
const (
	ReasonAddressRate = "address rate"
	ReasonUserRate    = "user rate"
	ReasonLockedOut   = "locked out"
)

// LoginLimiter throttles login attempts before any credential is checked
// (house style §5: Allow, reject and never queue): per client address
// (IPv6 by /64), per username, and with a growing lockout per username
// and address.
//
// Use: call Allow before authenticating; when it refuses, answer as for a
// failed login without checking the credentials. Otherwise authenticate,
// then call Failed or Succeeded. A front door that checks credentials on
// every request (HTTP Digest) calls Check instead of Allow, and Charge
// plus Failed on a failure, so valid requests cost nothing.
//
// Memory is bounded: each table is an LRU of at most MaxEntries, so a
// flood from a million addresses evicts old entries instead of growing
// (an evicted address or username starts again with a full budget).
//
// The zero value is not usable; create one with NewLoginLimiter. A
// LoginLimiter is safe for concurrent use, starts no goroutines and needs
// no Close.
type LoginLimiter struct {
	cfg LimitConfig

	mu    sync.Mutex // guards the limiters' get-or-create and the lockouts
	addrs *lru.Cache[netip.Prefix, *rate.Limiter]
	users *lru.Cache[string, *rate.Limiter]
	locks *lru.Cache[pairKey, *lockout]
}

type pairKey struct {
	prefix netip.Prefix
	user   string
}

// lockout is the consecutive-failure state of one username+address pair.
type lockout struct {
	failures int
	until    time.Time
}

// NewLoginLimiter checks cfg, applies its defaults and returns a limiter.
func NewLoginLimiter(cfg LimitConfig) (*LoginLimiter, error) {
	var errs []error
	if cfg.PerAddress < 0 || cfg.PerUser < 0 {
		errs = append(errs, errors.New("auth: negative login rate"))
	}
	if cfg.AddressBurst < 0 || cfg.UserBurst < 0 {
		errs = append(errs, errors.New("auth: negative login burst"))
	}
	if cfg.LockoutBase < 0 || cfg.LockoutMax < 0 {
		errs = append(errs, errors.New("auth: negative lockout"))
	}
	if cfg.MaxEntries < 0 {
		errs = append(errs, fmt.Errorf("auth: negative max entries %d", cfg.MaxEntries))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if cfg.PerAddress == 0 {
		cfg.PerAddress = DefaultAddressRate
	}
	if cfg.AddressBurst == 0 {
		cfg.AddressBurst = DefaultAddressBurst
	}
	if cfg.PerUser == 0 {
		cfg.PerUser = DefaultUserRate
	}
	if cfg.UserBurst == 0 {
		cfg.UserBurst = DefaultUserBurst
	}
	if cfg.LockoutBase == 0 {
		cfg.LockoutBase = DefaultLockoutBase
	}
	if cfg.LockoutMax == 0 {
		cfg.LockoutMax = DefaultLockoutMax
	}
	if cfg.LockoutMax < cfg.LockoutBase {
		return nil, fmt.Errorf("auth: lockout max %v is below lockout base %v", cfg.LockoutMax, cfg.LockoutBase)
	}
	if cfg.MaxEntries == 0 {
		cfg.MaxEntries = DefaultMaxEntries
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	l := &LoginLimiter{cfg: cfg}
	var err error
	if l.addrs, err = lru.New[netip.Prefix, *rate.Limiter](cfg.MaxEntries); err != nil {
		return nil, fmt.Errorf("auth: address table: %w", err)
	}
	if l.users, err = lru.New[string, *rate.Limiter](cfg.MaxEntries); err != nil {
		return nil, fmt.Errorf("auth: user table: %w", err)
	}
	if l.locks, err = lru.New[pairKey, *lockout](cfg.MaxEntries); err != nil {
		return nil, fmt.Errorf("auth: lockout table: %w", err)
	}
	return l, nil
}

// AddrPrefix is the key a client address is limited by: an IPv4 address
// (IPv4-mapped IPv6 unmapped) as a /32, an IPv6 address by its /64. An
// invalid address maps to the zero Prefix, which all invalid addresses
// share.
func AddrPrefix(a netip.Addr) netip.Prefix {
	a = a.Unmap()
	switch {
	case a.Is4():
		return netip.PrefixFrom(a, 32)
	case a.Is6():
		p, _ := a.WithZone("").Prefix(64)
		return p
	}
	return netip.Prefix{}
}

func userKey(u string) string {
	u = asciiLower(u)
	if len(u) > maxUserKey {
		u = u[:maxUserKey]
	}
	return u
}

// Allow reports whether a login by username from remote may be checked
// now, and counts it against remote's budget. Call it before verifying
// any credential; when it refuses, do not verify.
func (l *LoginLimiter) Allow(remote netip.Addr, username string) Decision {
	return l.decide(remote, username, true)
}

// Check is Allow without spending remote's budget, for front doors that
// verify credentials on every request (HTTP Digest). Such a door calls
// Charge and Failed when a check fails.
func (l *LoginLimiter) Check(remote netip.Addr, username string) Decision {
	return l.decide(remote, username, false)
}

func (l *LoginLimiter) decide(remote netip.Addr, username string, spend bool) Decision {
	now := l.cfg.Now()
	p, u := AddrPrefix(remote), userKey(username)
	l.mu.Lock()
	defer l.mu.Unlock()
	if lk, ok := l.locks.Get(pairKey{p, u}); ok && now.Before(lk.until) {
		return Decision{RetryAfter: lk.until.Sub(now), Reason: ReasonLockedOut}
	}
	if ul, ok := l.users.Get(u); ok && ul.TokensAt(now) < 1 {
		return Decision{RetryAfter: delay(ul, now), Reason: ReasonUserRate}
	}
	al := l.addrLimiterLocked(p)
	if spend {
		if !al.AllowN(now, 1) {
			return Decision{RetryAfter: delay(al, now), Reason: ReasonAddressRate}
		}
	} else if al.TokensAt(now) < 1 {
		return Decision{RetryAfter: delay(al, now), Reason: ReasonAddressRate}
	}
	return Decision{OK: true}
}

// delay is how long until lim has a token at now.
func delay(lim *rate.Limiter, now time.Time) time.Duration {
	t := 1 - lim.TokensAt(now)
	if t <= 0 || lim.Limit() <= 0 {
		return 0
	}
	return time.Duration(t / float64(lim.Limit()) * float64(time.Second))
}

func (l *LoginLimiter) addrLimiterLocked(p netip.Prefix) *rate.Limiter {
	al, ok := l.addrs.Get(p)
	if !ok {
		al = rate.NewLimiter(l.cfg.PerAddress, l.cfg.AddressBurst)
		l.addrs.Add(p, al)
	}
	return al
}

// Charge spends one attempt of remote's budget (see Check).
func (l *LoginLimiter) Charge(remote netip.Addr) {
	now := l.cfg.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	l.addrLimiterLocked(AddrPrefix(remote)).AllowN(now, 1)
}

// Failed records a failed login by username from remote: it spends one of
// the username's failures and locks the pair out for LockoutBase doubled
// per consecutive failure, at most LockoutMax.
func (l *LoginLimiter) Failed(remote netip.Addr, username string) {
	now := l.cfg.Now()
	p, u := AddrPrefix(remote), userKey(username)
	l.mu.Lock()
	defer l.mu.Unlock()
	ul, ok := l.users.Get(u)
	if !ok {
		ul = rate.NewLimiter(l.cfg.PerUser, l.cfg.UserBurst)
		l.users.Add(u, ul)
	}
	ul.AllowN(now, 1)
	k := pairKey{p, u}
	lk, ok := l.locks.Get(k)
	if !ok || !now.Before(lk.until.Add(l.cfg.LockoutMax)) {
		lk = &lockout{}
		l.locks.Add(k, lk)
	}
	lk.failures++
	d := l.cfg.LockoutBase
	for i := 1; i < lk.failures && d < l.cfg.LockoutMax; i++ {
		d *= 2
	}
	lk.until = now.Add(min(d, l.cfg.LockoutMax))
}

// Succeeded records a successful login by username from remote: the
// pair's lockout is reset. Budgets already spent are not returned.
func (l *LoginLimiter) Succeeded(remote netip.Addr, username string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.locks.Remove(pairKey{AddrPrefix(remote), userKey(username)})
}

// Len returns the entries of the address, username and pair tables, for
// metrics and tests; each is at most MaxEntries.
func (l *LoginLimiter) Len() (addrs, users, pairs int) {
	return l.addrs.Len(), l.users.Len(), l.locks.Len()
}
