package main

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"golang.org/x/time/rate"

	"github.com/amiproxy/amiproxy/auth"
	"github.com/amiproxy/amiproxy/proxy"
)

// Limits throttles logins and actions. Every field has a safe default:
// an empty (or absent) limits section turns the login limits on with
// the defaults documented on each field. Action limits are off unless
// listed.
type Limits struct {
	// LoginPerAddress bounds login attempts (successful or not) per
	// client address, an IPv4 address or an IPv6 /64, on every door.
	// Default {rate: 10, per: 1m, burst: 20}.
	LoginPerAddress Rate `yaml:"login_per_address"`
	// LoginFailuresPerUser bounds failed logins per username from all
	// addresses; once spent, the username is refused until it refills.
	// Successful logins cost nothing. Default {rate: 10, per: 1m, burst: 10}.
	LoginFailuresPerUser Rate `yaml:"login_failures_per_user"`
	// LockoutBase is the lockout of a username from one address after a
	// failed login, doubled per consecutive failure up to LockoutMax and
	// reset by a success. Defaults 1s and 15m.
	LockoutBase Duration `yaml:"lockout_base"`
	LockoutMax  Duration `yaml:"lockout_max"`
	// MaxEntries bounds each limiter table (addresses, usernames, pairs,
	// user+action); least recently used entries are dropped. Default
	// 100000.
	MaxEntries int `yaml:"max_entries"`
	// UnauthenticatedPerAddress bounds the native AMI connections one
	// address may hold open without logging in (a share of
	// proxy.max_unauthenticated); more are closed before the banner.
	// Default 10.
	UnauthenticatedPerAddress int `yaml:"unauthenticated_per_address"`
	// Actions limits how often each user may run the named actions
	// (case-insensitive), e.g. {Originate: {rate: 1, per: 1s, burst: 5}}.
	// Over the rate the client reads "Rate limit exceeded for <Action>,
	// retry later". Default none.
	Actions map[string]Rate `yaml:"actions"`
	// InsecureNoLoginLimits turns the login limits off (the per-address
	// connection cap stays). It MUST NOT be set on a proxy reachable by
	// untrusted clients: it allows unthrottled password guessing and
	// bcrypt floods.
	InsecureNoLoginLimits bool `yaml:"insecure_no_login_limits"`
}

// Rate is "rate events per period, in bursts of up to burst", e.g.
// {rate: 5, per: 1m, burst: 10}. The zero Rate means the default.
type Rate struct {
	Rate  float64  `yaml:"rate"`
	Per   Duration `yaml:"per"`
	Burst int      `yaml:"burst"`
}

// IsZero reports whether no field is set.
func (r Rate) IsZero() bool { return r == Rate{} }

func (r Rate) validate(where string) []error {
	var errs []error
	if r.Rate <= 0 {
		errs = append(errs, fmt.Errorf("%s.rate: want a positive number, got %v", where, r.Rate))
	}
	if r.Per <= 0 {
		errs = append(errs, fmt.Errorf("%s.per: want a positive duration such as 1s or 1m", where))
	}
	if r.Burst < 1 {
		errs = append(errs, fmt.Errorf("%s.burst: want at least 1, got %d", where, r.Burst))
	}
	return errs
}

// limit is the rate.Limit of r (0 for the zero Rate: the default).
func (r Rate) limit() rate.Limit {
	if r.IsZero() {
		return 0
	}
	return rate.Limit(r.Rate / time.Duration(r.Per).Seconds())
}

func (l *Limits) validate() []error {
	var errs []error
	add := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	if !l.LoginPerAddress.IsZero() {
		errs = append(errs, l.LoginPerAddress.validate("limits.login_per_address")...)
	}
	if !l.LoginFailuresPerUser.IsZero() {
		errs = append(errs, l.LoginFailuresPerUser.validate("limits.login_failures_per_user")...)
	}
	base, lmax := time.Duration(l.LockoutBase), time.Duration(l.LockoutMax)
	if base == 0 {
		base = auth.DefaultLockoutBase
	}
	if lmax == 0 {
		lmax = auth.DefaultLockoutMax
	}
	if lmax < base {
		add("limits.lockout_max (%v) is below limits.lockout_base (%v)", lmax, base)
	}
	if l.MaxEntries < 0 {
		add("limits.max_entries: negative (%d)", l.MaxEntries)
	}
	if l.UnauthenticatedPerAddress < 0 {
		add("limits.unauthenticated_per_address: negative (%d)", l.UnauthenticatedPerAddress)
	}
	seen := map[string]string{}
	for name, r := range l.Actions {
		where := "limits.actions." + name
		if name == "" || strings.ContainsAny(name, " :\r\n\t") {
			add("limits.actions: invalid action name %q", name)
		}
		if prev, dup := seen[strings.ToLower(name)]; dup {
			add("%s: duplicate of %s (action names are case-insensitive)", where, prev)
		}
		seen[strings.ToLower(name)] = name
		errs = append(errs, r.validate(where)...)
	}
	return errs
}

// build makes the runtime limiters: a nil LoginLimiter when login limits
// are off, a nil ActionLimiter when no action is limited.
func (l *Limits) build() (*auth.LoginLimiter, *proxy.ActionLimiter, error) {
	var errs []error
	var login *auth.LoginLimiter
	if !l.InsecureNoLoginLimits {
		var err error
		login, err = auth.NewLoginLimiter(auth.LimitConfig{
			PerAddress:   l.LoginPerAddress.limit(),
			AddressBurst: l.LoginPerAddress.Burst,
			PerUser:      l.LoginFailuresPerUser.limit(),
			UserBurst:    l.LoginFailuresPerUser.Burst,
			LockoutBase:  time.Duration(l.LockoutBase),
			LockoutMax:   time.Duration(l.LockoutMax),
			MaxEntries:   l.MaxEntries,
		})
		if err != nil {
			errs = append(errs, fmt.Errorf("limits: %w", err))
		}
	}
	var actions *proxy.ActionLimiter
	if len(l.Actions) > 0 {
		rates := make(map[string]proxy.ActionRate, len(l.Actions))
		for name, r := range l.Actions {
			rates[name] = proxy.ActionRate{Limit: r.limit(), Burst: r.Burst}
		}
		var err error
		actions, err = proxy.NewActionLimiter(proxy.ActionLimitConfig{Rates: rates, MaxEntries: l.MaxEntries})
		if err != nil {
			errs = append(errs, fmt.Errorf("limits: %w", err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, nil, err
	}
	return login, actions, nil
}
