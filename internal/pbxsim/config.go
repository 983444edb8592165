package pbxsim

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/amiproxy/amiproxy/policy"
)

// Config configures a simulated Asterisk. The zero value is the lab of the
// recordings: Asterisk 22.10.1 (AMI 11.0.0), the four users of
// testdata/transcripts/config/manager.conf, a 1 s delay before a failed
// Login is answered, and real-time call durations.
type Config struct {
	// Banner is the AMI version after "Asterisk Call Manager/". Default
	// "11.0.0" (Asterisk 22).
	Banner string
	// AsteriskVersion is what CoreSettings and "core show version" report.
	// Default "22.10.1".
	AsteriskVersion string
	// SystemName, when set, adds a SystemName header to every queued event
	// and prefixes Uniqueids ("<name>-1795364117.0"), like systemname in
	// asterisk.conf.
	SystemName string
	// Users are the manager.conf users. Nil means DefaultUsers().
	Users []User
	// LoginFailDelay is how long a failed Login waits before its reply
	// (Asterisk's sleep(1)). Zero means 1 s; negative means no delay.
	LoginFailDelay time.Duration
	// LegacyCommandOutput answers Command the Asterisk <= 13 way:
	// "Response: Follows", "Privilege: Command", raw output and
	// "--END COMMAND--".
	LegacyCommandOutput bool
	// TimestampEvents adds "Timestamp: <sec>.<usec>" after Privilege in
	// queued events (manager.conf timestampevents=yes).
	TimestampEvents bool
	// Logger receives diagnostics. Nil discards them.
	Logger *slog.Logger
	// Now is the wall clock. Nil means time.Now.
	Now func() time.Time

	// AuthTimeout closes a session that has not logged in this long after
	// connecting, without a word (authtimeout). Default 30 s.
	AuthTimeout time.Duration
	// AuthLimit is the number of sessions that may be connected but not
	// logged in; a connection beyond it is closed before the banner
	// (authlimit). Default 50.
	AuthLimit int
	// TimeScale multiplies every simulated duration: dialplan Waits, the
	// 500 ms media wait of Answer, queue and dial timeouts, the Timeout of
	// Originate and of WaitEvent. 0.1 runs the lab ten times faster.
	// Durations the PBX reports (Cdr Duration, CoreShowChannel Duration)
	// stay in simulated seconds. Zero means 1.
	TimeScale float64
	// WriteTimeout bounds every write to a client (writetimeout); a client
	// that does not read for this long is disconnected. Default 100 ms,
	// Asterisk's default and minimum.
	WriteTimeout time.Duration
	// MaxQueuedEvents bounds the events waiting for one session while it
	// is busy (a synchronous Originate, WaitEvent, a stalled or slow
	// client). A session that would exceed it is disconnected; Asterisk
	// has no such bound. Default 65536.
	MaxQueuedEvents int
	// OnAction, when set, is called with the session's user ("" before
	// Login) and the Action header of every request a session dispatches,
	// before its reply is written; tests use it to prove what reached the
	// PBX. It runs on the session's goroutine and must not block.
	OnAction func(user, action string)
}

// User is one manager.conf user section.
type User struct {
	Name   string // section name; matched case-insensitively at Login
	Secret string
	Read   string // read= value, parsed like Asterisk's get_perm
	Write  string // write= value
	// EventFilters are the user's eventfilter lines as "key = value", for
	// example "eventfilter = !Channel: Local/200@" or
	// "eventfilter(action(include),name(Hangup)) =".
	EventFilters []string
}

// DefaultUsers returns the users of the recordings' manager.conf
// (testdata/transcripts/config/manager.conf), in file order.
func DefaultUsers() []User {
	return []User{
		{Name: "admin", Secret: "adminpass", Read: "all", Write: "all"},
		{Name: "limited", Secret: "limitedpass", Read: "call", Write: "call"},
		{Name: "filtered", Secret: "filteredpass", Read: "all", Write: "all", EventFilters: []string{
			"eventfilter = Event: Newchannel",
			"eventfilter = Event: Hangup",
			"eventfilter = !Channel: Local/200@",
		}},
		{Name: "filtadv", Secret: "filtadvpass", Read: "all", Write: "all", EventFilters: []string{
			"eventfilter(action(include),name(Newchannel)) =",
			"eventfilter(action(include),name(Hangup)) =",
			"eventfilter(action(exclude),header(Channel),method(starts_with)) = Local/200@",
		}},
	}
}

// account is a User compiled for use.
type account struct {
	name, secret string
	read, write  policy.Class
	filters      policy.FilterSet
}

// settings is a Config with every default applied.
type settings struct {
	Config
	users []account
}

func (c Config) compile() (settings, error) {
	s := settings{Config: c}
	if s.Banner == "" {
		s.Banner = "11.0.0"
	}
	if s.AsteriskVersion == "" {
		s.AsteriskVersion = "22.10.1"
	}
	switch {
	case s.LoginFailDelay == 0:
		s.LoginFailDelay = time.Second
	case s.LoginFailDelay < 0:
		s.LoginFailDelay = 0
	}
	if s.Logger == nil {
		s.Logger = slog.New(slog.DiscardHandler)
	}
	if s.Now == nil {
		s.Now = time.Now
	}
	if s.AuthTimeout <= 0 {
		s.AuthTimeout = 30 * time.Second
	}
	if s.AuthLimit <= 0 {
		s.AuthLimit = 50
	}
	if s.TimeScale <= 0 {
		s.TimeScale = 1
	}
	if s.WriteTimeout <= 0 {
		s.WriteTimeout = 100 * time.Millisecond
	}
	if s.MaxQueuedEvents <= 0 {
		s.MaxQueuedEvents = 65536
	}
	var errs []error
	for _, v := range []struct{ name, val string }{
		{"Banner", s.Banner}, {"AsteriskVersion", s.AsteriskVersion}, {"SystemName", s.SystemName},
	} {
		if strings.ContainsAny(v.val, "\r\n\x00") {
			errs = append(errs, fmt.Errorf("pbxsim: %s contains CR, LF or NUL", v.name))
		}
	}
	users := s.Users
	if users == nil {
		users = DefaultUsers()
	}
	for i, u := range users {
		if u.Name == "" || strings.EqualFold(u.Name, "general") {
			errs = append(errs, fmt.Errorf("pbxsim: users[%d]: invalid name %q", i, u.Name))
			continue
		}
		a := account{name: u.Name, secret: u.Secret, read: policy.ParsePerm(u.Read), write: policy.ParsePerm(u.Write)}
		var fs []policy.Filter
		for _, line := range u.EventFilters {
			key, value, _ := strings.Cut(line, "=")
			f, err := policy.ParseFilter(strings.TrimSpace(key), strings.TrimSpace(value))
			switch {
			case err == nil:
				fs = append(fs, f)
			case errors.Is(err, policy.ErrFilterUnsupported):
				// Asterisk would accept it, but the simulation could not
				// deliver what Asterisk delivers.
				errs = append(errs, fmt.Errorf("pbxsim: user %s: %w", u.Name, err))
			default:
				// Asterisk logs and skips a filter it refuses, and ignores
				// keys that do not begin with "eventfilter".
				s.Logger.Warn("pbxsim: eventfilter skipped", "user", u.Name, "line", line, "err", err)
			}
		}
		a.filters = policy.NewFilterSet(fs...)
		s.users = append(s.users, a)
	}
	return s, errors.Join(errs...)
}

// scale converts a simulated duration to real time.
func (s *settings) scale(d time.Duration) time.Duration {
	return time.Duration(float64(d) * s.TimeScale)
}

// lookupUser finds a user by name, ignoring case like Asterisk's
// get_manager_by_name_locked.
func (s *settings) lookupUser(name string) *account {
	for i := range s.users {
		if asciiEqualFold(s.users[i].name, name) {
			return &s.users[i]
		}
	}
	return nil
}

func asciiEqualFold(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		x, y := a[i], b[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

func asciiLower(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}
