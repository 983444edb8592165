package upstream

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"time"
)

// Defaults applied by NewPool to zero fields of a Config.
const (
	DefaultDialTimeout      = 5 * time.Second
	DefaultHandshakeTimeout = 10 * time.Second
	DefaultPingInterval     = 20 * time.Second
	DefaultPingTimeout      = 5 * time.Second
	DefaultReconnectMin     = 500 * time.Millisecond
	DefaultReconnectMax     = 15 * time.Second
	DefaultSubscriberQueue  = 4096
	DefaultMaxPending       = 10000
	DefaultLateReplyTTL     = time.Minute
	DefaultMaxLateReplies   = 4096
)

// maxReplyBacklog bounds the messages of one reply that may wait for a
// slow Do callback before the action is aborted with ErrReplyTooLarge.
const maxReplyBacklog = 1 << 16

// Secret is a password that never prints: String, GoString and LogValue
// return "REDACTED". Convert it with string(s) only where it is sent.
type Secret string

func (Secret) String() string { return "REDACTED" }

// GoString keeps %#v from printing the secret.
func (Secret) GoString() string { return `"REDACTED"` }

// LogValue keeps slog from printing the secret.
func (Secret) LogValue() slog.Value { return slog.StringValue("REDACTED") }

// MarshalText keeps encoders (JSON, YAML, slog's JSON handler on a whole
// Config) from printing the secret. Decoding a Secret is unaffected.
func (Secret) MarshalText() ([]byte, error) { return []byte("REDACTED"), nil }

// TLS configures TLS towards one PBX. The zero value is plain TCP.
type TLS struct {
	// Enabled turns TLS on (Asterisk's tlsenable port, usually 5039).
	Enabled bool
	// CAFile is a PEM file of CA certificates that sign the PBX
	// certificate. Empty means the system roots.
	CAFile string
	// ServerName is the name checked in the PBX certificate. Empty means
	// the host part of Address.
	ServerName string
	// InsecureSkipVerify disables verification of the PBX certificate.
	// It MUST NOT be used for PBXs reached over networks you do not
	// control: anyone on the path can then read the service account's
	// secret and every call event, and inject actions.
	InsecureSkipVerify bool
}

// Config describes one PBX and the service account the proxy logs in with.
// Zero durations and sizes mean the Default* values; NewPool applies them.
// Validate reports problems without changing anything.
type Config struct {
	// Name identifies the PBX in the pool, in logs and in the messages
	// sent to clients ("PBX east went away: action aborted").
	Name string
	// Address is host:port of the AMI listener, e.g. "10.0.0.5:5038".
	Address string
	// Username and Secret are the proxy's own manager.conf account.
	Username string
	Secret   Secret
	// AuthMD5 logs in with Challenge and an MD5 key instead of sending
	// the secret (which plain TCP would carry in clear text).
	AuthMD5 bool
	TLS     TLS

	// DialTimeout bounds the TCP connect. Default 5 s.
	DialTimeout time.Duration
	// HandshakeTimeout bounds TLS, banner, Login and CoreSettings.
	// Default 10 s.
	HandshakeTimeout time.Duration
	// PingInterval is the time between keepalive Pings. Default 20 s.
	PingInterval time.Duration
	// PingTimeout is how long a Ping may go unanswered before the link is
	// declared dead and torn down. Default 5 s. A stalled PBX is detected
	// within PingInterval+PingTimeout.
	PingTimeout time.Duration
	// ReconnectMin and ReconnectMax bound the reconnect backoff: attempt n
	// waits a uniformly random time in [0, min(ReconnectMax,
	// ReconnectMin·2ⁿ)) ("full jitter"). Defaults 500 ms and 15 s.
	ReconnectMin time.Duration
	ReconnectMax time.Duration
	// SubscriberQueue is how many of this PBX's events may wait in one
	// client's queue. One more and the client is disconnected with
	// ErrSlowConsumer. Default 4096.
	SubscriberQueue int
	// MaxPending bounds the actions waiting for a reply. Default 10000.
	MaxPending int
	// LateReplyTTL is how long, beyond the action's own Timeout, the
	// OriginateResponse of an async Originate is awaited. Default 1 min.
	LateReplyTTL time.Duration
	// MaxLateReplies bounds the async Originates awaiting their
	// OriginateResponse. Default 4096.
	MaxLateReplies int
}

// Validate reports every problem in c, joined with errors.Join. It does
// not change c and does no I/O (the CA file is read by NewPool).
func (c *Config) Validate() error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("upstream: pbx %q: "+format, append([]any{c.Name}, args...)...))
	}
	if c.Name == "" {
		bad("name is empty")
	} else if strings.ContainsAny(c.Name, "\r\n\x00") {
		bad("name contains CR, LF or NUL")
	}
	if host, port, err := net.SplitHostPort(c.Address); err != nil {
		bad("address %q: want host:port", c.Address)
	} else {
		if host == "" {
			bad("address %q has no host", c.Address)
		}
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			bad("address %q: port must be 1-65535", c.Address)
		}
	}
	if c.Username == "" {
		bad("username is empty")
	} else if strings.ContainsAny(c.Username, "\r\n\x00") {
		bad("username contains CR, LF or NUL")
	}
	if c.Secret == "" {
		bad("secret is empty (Asterisk refuses a user without secret over TCP)")
	} else if strings.ContainsAny(string(c.Secret), "\r\n\x00") {
		bad("secret contains CR, LF or NUL")
	}
	if !c.TLS.Enabled && (c.TLS.CAFile != "" || c.TLS.ServerName != "" || c.TLS.InsecureSkipVerify) {
		bad("tls settings given but tls is not enabled")
	}
	if c.TLS.InsecureSkipVerify && c.TLS.CAFile != "" {
		bad("tls: ca_file and insecure_skip_verify contradict each other")
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{
		{"dial timeout", c.DialTimeout}, {"handshake timeout", c.HandshakeTimeout},
		{"ping interval", c.PingInterval}, {"ping timeout", c.PingTimeout},
		{"reconnect min", c.ReconnectMin}, {"reconnect max", c.ReconnectMax},
		{"late reply ttl", c.LateReplyTTL},
	} {
		if d.v < 0 {
			bad("%s is negative (%v)", d.name, d.v)
		}
	}
	if c.ReconnectMin > 0 && c.ReconnectMax > 0 && c.ReconnectMin > c.ReconnectMax {
		bad("reconnect min %v exceeds reconnect max %v", c.ReconnectMin, c.ReconnectMax)
	}
	for _, n := range []struct {
		name string
		v    int
	}{
		{"subscriber queue", c.SubscriberQueue}, {"max pending", c.MaxPending}, {"max late replies", c.MaxLateReplies},
	} {
		if n.v < 0 {
			bad("%s is negative (%d)", n.name, n.v)
		}
	}
	return errors.Join(errs...)
}

// withDefaults returns a copy of c with zero fields set to the defaults.
func (c Config) withDefaults() Config {
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&c.DialTimeout, DefaultDialTimeout)
	def(&c.HandshakeTimeout, DefaultHandshakeTimeout)
	def(&c.PingInterval, DefaultPingInterval)
	def(&c.PingTimeout, DefaultPingTimeout)
	def(&c.LateReplyTTL, DefaultLateReplyTTL)
	if c.ReconnectMin == 0 {
		// Only a configured ReconnectMax may lower the default minimum;
		// with both unset this once gave a 1 ns minimum, and so a
		// reconnect storm against every PBX that restarted.
		c.ReconnectMin = DefaultReconnectMin
		if c.ReconnectMax > 0 {
			c.ReconnectMin = min(DefaultReconnectMin, c.ReconnectMax)
		}
	}
	if c.ReconnectMax == 0 {
		c.ReconnectMax = max(DefaultReconnectMax, c.ReconnectMin)
	}
	if c.SubscriberQueue == 0 {
		c.SubscriberQueue = DefaultSubscriberQueue
	}
	if c.MaxPending == 0 {
		c.MaxPending = DefaultMaxPending
	}
	if c.MaxLateReplies == 0 {
		c.MaxLateReplies = DefaultMaxLateReplies
	}
	return c
}

// Options carries the dependencies of a Pool. The zero value is ready to
// use: no logging, the real clock, math/rand/v2 jitter and net.Dialer.
type Options struct {
	// Logger receives operational logs (link up/down, slow subscribers,
	// stray replies). Nil discards them. Secrets are never logged.
	Logger *slog.Logger
	// Now is the clock used for late-reply expiry and state timestamps.
	// Nil means time.Now. Timers use the time package, which
	// testing/synctest fakes.
	Now func() time.Time
	// Rand returns a uniformly random int64 in [0, n) for backoff jitter.
	// Nil means math/rand/v2's Int64N. It is called concurrently.
	Rand func(n int64) int64
	// Dial opens the TCP connection to a PBX (before TLS). Nil means a
	// net.Dialer. Tests use it to hand out net.Pipe ends or fail on cue.
	Dial func(ctx context.Context, network, address string) (net.Conn, error)
}

func loggerOrDiscard(l *slog.Logger) *slog.Logger {
	if l != nil {
		return l
	}
	return slog.New(slog.DiscardHandler)
}
