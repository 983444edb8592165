package proxy

import (
	"context"
	"crypto/rand"
	"encoding/base32"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/amiproxy/amiproxy/auth"
	"github.com/amiproxy/amiproxy/policy"
	"github.com/amiproxy/amiproxy/upstream"
)

// Defaults applied by NewGateway to zero fields of a Config.
const (
	DefaultBanner             = "11.0.0" // AMI version of Asterisk 22
	DefaultHandshakeTimeout   = 30 * time.Second
	DefaultMaxUnauthenticated = 50
	DefaultLoginFailDelay     = time.Second
	DefaultClientQueue        = 4096
	DefaultWriteTimeout       = 10 * time.Second
	DefaultRevalidateInterval = 250 * time.Millisecond
	// MaxRevalidateInterval is the longest RevalidateInterval accepted.
	MaxRevalidateInterval = 500 * time.Millisecond
)

const (
	// maxQueueBytes bounds the bytes waiting for one client, whatever
	// ClientQueue says, so a client that pipelines large list actions
	// without reading cannot hold unbounded memory.
	maxQueueBytes = 64 << 20
	// shutdownGrace is how long a session that is being closed (Logoff,
	// failed Login, Gateway.Close) may take to flush what it owes the
	// client before the connection is cut.
	shutdownGrace = 2 * time.Second
	// maxSessionFilters bounds the Filter actions one session may add.
	maxSessionFilters = 128
)

// ErrClosed is returned by ServeAMI and ServeAMITLS after Gateway.Close.
var ErrClosed = errors.New("proxy: gateway closed")

// Authenticator turns the credentials of an AMI Login (or of an HTTP
// bearer request: Credentials.Token) into a Principal. *auth.Local and
// *auth.Chain implement it. Every failure must be an error; its text goes
// to the log only (the client always reads "Authentication failed", or an
// HTTP 401 without detail) and must not hold a secret.
type Authenticator interface {
	Authenticate(ctx context.Context, c auth.Credentials) (auth.Principal, error)
}

var _ Authenticator = (*auth.Local)(nil)

// Config tunes a Gateway. Zero fields take the Default* values.
type Config struct {
	// Banner is the AMI version announced in "Asterisk Call Manager/<v>".
	// Empty means the AMIversion the default PBX reported in CoreSettings
	// at its last login, or DefaultBanner before it ever logged in.
	Banner string
	// DefaultPBX is the session PBX of a user whose policy grants several
	// PBXs and whose Login names none (Server header). Empty, or not
	// granted to the user, means the first granted PBX in sorted order.
	// It is also the PBX whose AMI version the banner repeats.
	DefaultPBX string
	// HandshakeTimeout bounds TLS, banner and Login, measured from accept
	// (Asterisk's authtimeout). A client not logged in by then is closed
	// without a word. Default 30 s.
	HandshakeTimeout time.Duration
	// MaxUnauthenticated is the number of connections that may be open
	// but not logged in (Asterisk's authlimit); one more is closed before
	// the banner. Default 50.
	MaxUnauthenticated int
	// MaxUnauthenticatedPerAddress is how many of those may come from
	// one client address (an IPv4 address or an IPv6 /64); one more is
	// closed before the banner as well. Default 10.
	MaxUnauthenticatedPerAddress int
	// Limits, when set, throttles every Login (native AMI plain and MD5,
	// HTTP manager Login, HTTP Digest) before its credentials are
	// checked: a refused Login is answered like a failed one (after
	// LoginFailDelay, "Authentication failed", connection closed) without
	// calling the Authenticator, and counted in Stats.LoginsThrottled.
	// Nil means no login limits.
	Limits *auth.LoginLimiter
	// ActionLimits, when set, limits how often each user may run some
	// actions. An action over its rate is answered "Response: Error" with
	// "Message: Rate limit exceeded for <Action>, retry later" and the
	// client's ActionID, audited as a deny with rule "rate limit
	// <Action>", and not forwarded. Nil means no action limits.
	ActionLimits *ActionLimiter
	// LoginFailDelay is how long a failed Login waits before its reply,
	// after which the connection is closed (Asterisk sleeps 1 s).
	// Default 1 s; negative means no delay.
	LoginFailDelay time.Duration
	// ClientQueue is how many replies and events may wait in the proxy
	// for one client (at most 64 MiB in all). It is the second stage of
	// the client's outgoing buffer: when it is full, further events wait
	// in the client's upstream queue (upstream.Config.SubscriberQueue per
	// PBX), and when that overflows too the client is disconnected as too
	// slow and counted. Nothing ever blocks the PBX reader or another
	// client. Default 4096.
	ClientQueue int
	// WriteTimeout disconnects a client whose connection accepts no data
	// for this long while the proxy has something to write, as Asterisk's
	// writetimeout does (100 ms there; a proxy serves clients over WANs).
	// Default 10 s.
	WriteTimeout time.Duration
	// Logger receives operational logs; Audit receives one line per Login
	// and per action (see the package documentation). Nil discards.
	// Neither ever receives a secret or an MD5 key.
	Logger, Audit *slog.Logger
	// Now is the clock for timestamps (Ping, audit latencies, FullyBooted
	// uptime) and for credential expiry. Nil means time.Now. Deadlines
	// use the time package.
	Now func() time.Time
	// Validator, when set, is asked on every revalidation (see
	// Gateway.Revalidate) whether the Principal of each live session still
	// holds: an error ends the session with a ProxySessionEnd notice.
	// Nil means the Authenticator, when it implements Validator itself
	// (the auth chain does), else no check beyond Principal.Expires and
	// the policy.
	Validator Validator
	// RevalidateInterval is how often every live session is revalidated
	// even without a notification (Gateway.Revalidate). Default 250 ms;
	// at most 500 ms, so that a revoked or removed user's session ends
	// within a second.
	RevalidateInterval time.Duration
}

// Stats is a snapshot of a Gateway's counters, for metrics.
type Stats struct {
	Sessions          int    // connections open now
	HTTPSessions      int    // HTTP manager sessions kept now (cookie and digest)
	Unauthenticated   int    // of which not logged in
	Accepted          uint64 // connections accepted and given a session
	Rejected          uint64 // closed before the banner: MaxUnauthenticated or MaxUnauthenticatedPerAddress reached
	RejectedAddress   uint64 // of which for MaxUnauthenticatedPerAddress
	HandshakeFailed   uint64 // TLS handshake or banner write failed
	HandshakeTimeouts uint64 // closed for not logging in within HandshakeTimeout

	LoginsOK     uint64
	LoginsFailed uint64
	// LoginsThrottled counts the failed logins refused by Config.Limits
	// without checking credentials (also counted in LoginsFailed).
	LoginsThrottled uint64

	ActionsAllowed uint64 // forwarded or emulated
	ActionsDenied  uint64 // refused by policy, a rate limit, or before login
	// ActionsThrottled counts the actions refused by Config.ActionLimits
	// (also counted in ActionsDenied).
	ActionsThrottled uint64
	ActionsFailed    uint64 // allowed but could not complete (PBX link down, ...)
	FrameErrors      uint64 // requests refused by the framing rules

	EventsDelivered uint64 // events queued to clients
	EventsFiltered  uint64 // events withheld by the read rule or eventfilters
	EventsDropped   uint64 // items discarded when a slow client was disconnected
	SlowDisconnects uint64 // clients disconnected for not reading (queues full, or WriteTimeout)
	Panics          uint64 // session goroutines that panicked (session closed)

	// Logged-in sessions ended by continuous authorisation, by reason
	// (the Reason of their ProxySessionEnd notice).
	EndedRevoked uint64 // token, minted secret or user revoked (Validator, EndUserSessions)
	EndedExpired uint64 // credentials expired (Principal.Expires)
	EndedRemoved uint64 // user removed, no role left, or no longer allowed from its address
}

type counters struct {
	accepted, rejected, handshakeFailed, handshakeTimeouts atomic.Uint64
	rejectedAddr                                           atomic.Uint64
	loginsOK, loginsFailed, loginsThrottled                atomic.Uint64
	allowed, denied, failed, frameErrors, actionsThrottled atomic.Uint64
	delivered, filtered, dropped, slow, panics             atomic.Uint64
	endedRevoked, endedExpired, endedRemoved               atomic.Uint64
}

// Gateway is the client side of amiproxy: it authenticates AMI clients,
// applies the policy to every action and event, and forwards what is
// allowed to the PBXs of an upstream.Pool. Both front doors use it.
//
// Create one with NewGateway; the zero value is not usable. A Gateway is
// safe for concurrent use. Serve clients with ServeAMI or ServeAMITLS (any
// number of listeners). Close shuts every session down and waits for its
// goroutines; it is idempotent. The Gateway does not own the Pool: close
// the Pool after the Gateway.
type Gateway struct {
	cfg    Config
	pool   *upstream.Pool
	engine atomic.Pointer[policy.Engine]
	authn  atomic.Pointer[authnHolder]
	log    *slog.Logger
	audit  *slog.Logger
	start  time.Time
	pbxs   map[string]bool // names of the pool's PBXs

	nextID      atomic.Uint64
	unauth      atomic.Int64
	unauthAddrs addrCounts // per-address share of unauth
	stats       counters

	mu        sync.Mutex
	closed    bool
	listeners map[net.Listener]struct{}
	conns     map[*amiConn]struct{}
	managers  map[*HTTPManager]struct{} // HTTP manager doors, closed by Close
	live      map[*session]struct{}     // logged-in sessions, for Revalidate
	sweeping  bool                      // the revalidation sweeper runs
	done      chan struct{}             // closed by Close: the sweeper exits
	wg        sync.WaitGroup            // every session goroutine (amiConn.serve), the sweeper
	closeOnce sync.Once

	revalMu sync.Mutex // serializes Revalidate
}

// NewGateway checks cfg, applies its defaults and returns a Gateway that
// serves the PBXs of pool under the policy engine, authenticating clients
// with authn. It starts no goroutine; the revalidation sweeper starts with
// the first logged-in session and ends at Close.
func NewGateway(cfg Config, pool *upstream.Pool, engine *policy.Engine, authn Authenticator) (*Gateway, error) {
	var errs []error
	if pool == nil {
		errs = append(errs, errors.New("proxy: nil upstream pool"))
	}
	if engine == nil {
		errs = append(errs, errors.New("proxy: nil policy engine"))
	}
	if authn == nil {
		errs = append(errs, errors.New("proxy: nil authenticator"))
	}
	if cfg.HandshakeTimeout < 0 {
		errs = append(errs, fmt.Errorf("proxy: negative handshake timeout %v", cfg.HandshakeTimeout))
	}
	if cfg.MaxUnauthenticated < 0 {
		errs = append(errs, fmt.Errorf("proxy: negative max unauthenticated %d", cfg.MaxUnauthenticated))
	}
	if cfg.MaxUnauthenticatedPerAddress < 0 {
		errs = append(errs, fmt.Errorf("proxy: negative max unauthenticated per address %d", cfg.MaxUnauthenticatedPerAddress))
	}
	if cfg.WriteTimeout < 0 {
		errs = append(errs, fmt.Errorf("proxy: negative write timeout %v", cfg.WriteTimeout))
	}
	if cfg.ClientQueue < 0 {
		errs = append(errs, fmt.Errorf("proxy: negative client queue %d", cfg.ClientQueue))
	}
	if cfg.RevalidateInterval < 0 || cfg.RevalidateInterval > MaxRevalidateInterval {
		errs = append(errs, fmt.Errorf("proxy: revalidate interval %v outside (0, %v]", cfg.RevalidateInterval, MaxRevalidateInterval))
	}
	if strings.ContainsAny(cfg.Banner, "\r\n\x00") {
		errs = append(errs, errors.New("proxy: banner contains CR, LF or NUL"))
	}
	pbxs := map[string]bool{}
	if pool != nil {
		for _, c := range pool.Conns() {
			pbxs[c.Name()] = true
		}
		if len(pbxs) == 0 {
			errs = append(errs, errors.New("proxy: upstream pool has no PBX"))
		}
		if cfg.DefaultPBX != "" && !pbxs[cfg.DefaultPBX] {
			errs = append(errs, fmt.Errorf("proxy: default pbx %q is not in the upstream pool", cfg.DefaultPBX))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if cfg.HandshakeTimeout == 0 {
		cfg.HandshakeTimeout = DefaultHandshakeTimeout
	}
	if cfg.MaxUnauthenticated == 0 {
		cfg.MaxUnauthenticated = DefaultMaxUnauthenticated
	}
	if cfg.MaxUnauthenticatedPerAddress == 0 {
		cfg.MaxUnauthenticatedPerAddress = DefaultMaxUnauthenticatedPerAddress
	}
	if cfg.LoginFailDelay == 0 {
		cfg.LoginFailDelay = DefaultLoginFailDelay
	}
	if cfg.ClientQueue == 0 {
		cfg.ClientQueue = DefaultClientQueue
	}
	if cfg.WriteTimeout == 0 {
		cfg.WriteTimeout = DefaultWriteTimeout
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.RevalidateInterval == 0 {
		cfg.RevalidateInterval = DefaultRevalidateInterval
	}
	g := &Gateway{
		cfg:       cfg,
		pool:      pool,
		log:       loggerOrDiscard(cfg.Logger),
		audit:     loggerOrDiscard(cfg.Audit),
		pbxs:      pbxs,
		listeners: map[net.Listener]struct{}{},
		conns:     map[*amiConn]struct{}{},
		managers:  map[*HTTPManager]struct{}{},
		live:      map[*session]struct{}{},
		done:      make(chan struct{}),
	}
	g.engine.Store(engine)
	g.authn.Store(&authnHolder{authn})
	g.start = g.now()
	return g, nil
}

func loggerOrDiscard(l *slog.Logger) *slog.Logger {
	if l != nil {
		return l
	}
	return slog.New(slog.DiscardHandler)
}

func (g *Gateway) now() time.Time { return g.cfg.Now() }

// banner returns the AMI version announced to a new client.
func (g *Gateway) banner() string {
	if g.cfg.Banner != "" {
		return g.cfg.Banner
	}
	var c *upstream.Conn
	if g.cfg.DefaultPBX != "" {
		c, _ = g.pool.Get(g.cfg.DefaultPBX)
	} else if cs := g.pool.Conns(); len(cs) > 0 {
		c = cs[0]
	}
	if c != nil {
		if _, ami := c.Versions(); ami != "" && !strings.ContainsAny(ami, "\r\n\x00") {
			return ami
		}
	}
	return DefaultBanner
}

// Close stops every listener of ServeAMI and ServeAMITLS, tells every
// logged-in client that may read system events "Event: Shutdown"
// (Asterisk's own shutdown event), gives each session up to 2 s to flush,
// closes them and waits for all their goroutines. It also closes every
// HTTPManager made by NewHTTPManager (pending WaitEvents end). It is
// idempotent and always returns nil.
func (g *Gateway) Close() error {
	g.closeOnce.Do(func() {
		g.mu.Lock()
		g.closed = true
		close(g.done)
		lns := make([]net.Listener, 0, len(g.listeners))
		for ln := range g.listeners {
			lns = append(lns, ln)
		}
		conns := make([]*amiConn, 0, len(g.conns))
		for c := range g.conns {
			conns = append(conns, c)
		}
		mgrs := make([]*HTTPManager, 0, len(g.managers))
		for m := range g.managers {
			mgrs = append(mgrs, m)
		}
		g.mu.Unlock()
		for _, ln := range lns {
			_ = ln.Close()
		}
		for _, c := range conns {
			c.shutdown()
		}
		for _, m := range mgrs {
			_ = m.Close()
		}
	})
	g.wg.Wait()
	return nil
}

// Stats returns a snapshot of the Gateway's counters.
func (g *Gateway) Stats() Stats {
	g.mu.Lock()
	n := len(g.conns)
	mgrs := make([]*HTTPManager, 0, len(g.managers))
	for m := range g.managers {
		mgrs = append(mgrs, m)
	}
	g.mu.Unlock()
	hn := 0
	for _, m := range mgrs {
		hn += m.sessions.Len()
	}
	s := &g.stats
	return Stats{
		Sessions:          n,
		HTTPSessions:      hn,
		Unauthenticated:   int(max(g.unauth.Load(), 0)),
		Accepted:          s.accepted.Load(),
		Rejected:          s.rejected.Load(),
		RejectedAddress:   s.rejectedAddr.Load(),
		HandshakeFailed:   s.handshakeFailed.Load(),
		HandshakeTimeouts: s.handshakeTimeouts.Load(),
		LoginsOK:          s.loginsOK.Load(),
		LoginsFailed:      s.loginsFailed.Load(),
		LoginsThrottled:   s.loginsThrottled.Load(),
		ActionsAllowed:    s.allowed.Load(),
		ActionsDenied:     s.denied.Load(),
		ActionsThrottled:  s.actionsThrottled.Load(),
		ActionsFailed:     s.failed.Load(),
		FrameErrors:       s.frameErrors.Load(),
		EventsDelivered:   s.delivered.Load(),
		EventsFiltered:    s.filtered.Load(),
		EventsDropped:     s.dropped.Load(),
		SlowDisconnects:   s.slow.Load(),
		Panics:            s.panics.Load(),
		EndedRevoked:      s.endedRevoked.Load(),
		EndedExpired:      s.endedExpired.Load(),
		EndedRemoved:      s.endedRemoved.Load(),
	}
}

// refEncoding is lower-case base32 without padding: refs read well aloud.
var refEncoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// newRef returns a short random reference that ties a refusal or failure
// seen by a client to its log line (house style C4).
func newRef() string {
	var b [5]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24+)
	return refEncoding.EncodeToString(b[:])
}
