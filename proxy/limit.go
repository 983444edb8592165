package proxy

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"golang.org/x/time/rate"
)

// Defaults for the limits of this file.
const (
	DefaultMaxUnauthenticatedPerAddress = 10
	DefaultActionLimitEntries           = 100_000
)

// ActionRate is the rate one user may run one action at: Limit actions a
// second on average, in bursts of up to Burst.
type ActionRate struct {
	Limit rate.Limit
	Burst int
}

// ActionLimitConfig configures an ActionLimiter.
type ActionLimitConfig struct {
	// Rates maps an action name (matched case-insensitively, as Asterisk
	// matches action names) to the rate each user may run it at.
	// Actions not named are not limited.
	Rates map[string]ActionRate
	// MaxEntries bounds the user+action limiters kept; the least recently
	// used is dropped (and starts again with a full burst). Default
	// 100000.
	MaxEntries int
	// Now is the clock. Nil means time.Now.
	Now func() time.Time
}

// ActionLimiter limits how often each user may run given actions (for
// example Originate). It answers with Allow, never queues.
//
// The zero value is not usable; create one with NewActionLimiter. An
// ActionLimiter is safe for concurrent use, starts no goroutines and needs
// no Close. Its memory is bounded by MaxEntries.
type ActionLimiter struct {
	rates map[string]actionRate // key: lower-case action name
	now   func() time.Time

	mu   sync.Mutex // guards get-or-create in lims
	lims *lru.Cache[actionKey, *rate.Limiter]
}

type actionRate struct {
	name string // as configured, for messages and audit rules
	ActionRate
}

type actionKey struct{ user, action string }

// NewActionLimiter checks cfg and returns a limiter. It reports every
// problem at once.
func NewActionLimiter(cfg ActionLimitConfig) (*ActionLimiter, error) {
	var errs []error
	rates := make(map[string]actionRate, len(cfg.Rates))
	for name, r := range cfg.Rates {
		key := strings.ToLower(name)
		switch {
		case name == "" || strings.ContainsAny(name, " :\r\n\x00"):
			errs = append(errs, fmt.Errorf("proxy: action rate: invalid action name %q", name))
		case r.Limit <= 0 || r.Burst < 1:
			errs = append(errs, fmt.Errorf("proxy: action rate %s: want a positive rate and a burst of at least 1", name))
		}
		if prev, dup := rates[key]; dup {
			errs = append(errs, fmt.Errorf("proxy: action rate %s: duplicate of %s (names are case-insensitive)", name, prev.name))
		}
		rates[key] = actionRate{name: name, ActionRate: r}
	}
	if cfg.MaxEntries < 0 {
		errs = append(errs, fmt.Errorf("proxy: negative action limit entries %d", cfg.MaxEntries))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if cfg.MaxEntries == 0 {
		cfg.MaxEntries = DefaultActionLimitEntries
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	lims, err := lru.New[actionKey, *rate.Limiter](cfg.MaxEntries)
	if err != nil {
		return nil, fmt.Errorf("proxy: action limiter: %w", err)
	}
	return &ActionLimiter{rates: rates, now: cfg.Now, lims: lims}, nil
}

// Allow reports whether user may run action now, spending one token when
// it may. name is the action's configured spelling ("" when the action
// is not limited).
func (l *ActionLimiter) Allow(user, action string) (name string, ok bool) {
	if l == nil || len(l.rates) == 0 {
		return "", true
	}
	key := strings.ToLower(action)
	r, limited := l.rates[key]
	if !limited {
		return "", true
	}
	now := l.now()
	k := actionKey{user: strings.ToLower(user), action: key}
	l.mu.Lock()
	defer l.mu.Unlock()
	lim, found := l.lims.Get(k)
	if !found {
		lim = rate.NewLimiter(r.Limit, r.Burst)
		l.lims.Add(k, lim)
	}
	return r.name, lim.AllowN(now, 1)
}

// Len returns the number of user+action limiters kept.
func (l *ActionLimiter) Len() int { return l.lims.Len() }

// rateLimitMessage is the Message of the "Response: Error" a client gets
// when an action is over its rate; name is the configured spelling.
func rateLimitMessage(name string) string {
	return "Rate limit exceeded for " + name + ", retry later"
}

// addrCounts counts the unauthenticated connections per client address
// (IPv6 by /64, as auth.AddrPrefix). Only addresses with a connection
// open are kept, so it never holds more than MaxUnauthenticated entries:
// the global cap bounds it, no LRU is needed.
type addrCounts struct {
	mu sync.Mutex
	m  map[netip.Prefix]int
}

// acquire counts one connection from p unless p already has max.
func (a *addrCounts) acquire(p netip.Prefix, max int) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.m[p] >= max {
		return false
	}
	if a.m == nil {
		a.m = map[netip.Prefix]int{}
	}
	a.m[p]++
	return true
}

func (a *addrCounts) release(p netip.Prefix) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if n := a.m[p]; n > 1 {
		a.m[p] = n - 1
	} else {
		delete(a.m, p)
	}
}

func (a *addrCounts) len() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.m)
}
