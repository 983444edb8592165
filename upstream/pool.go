package upstream

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/base32"
	"errors"
	"fmt"
	randv2 "math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Pool keeps one managed AMI connection per configured PBX.
//
// The zero value is not usable; create one with NewPool, which starts one
// manager goroutine per PBX. A Pool is safe for concurrent use. Close
// sends Logoff to every PBX, stops all background goroutines and blocks
// until they have exited; a closed Pool cannot be reused.
type Pool struct {
	conns  []*Conn
	byName map[string]*Conn
	cancel context.CancelCauseFunc
	wg     sync.WaitGroup // one manager per Conn

	closeOnce sync.Once
	mu        sync.Mutex
	closed    bool
	clients   map[*Client]struct{}
}

// NewPool validates every Config, applies the defaults and starts
// connecting to every PBX in the background. It reports every invalid
// Config (errors.Join), duplicate names, and unreadable CA files.
func NewPool(cfgs []Config, opts Options) (*Pool, error) {
	var errs []error
	seen := make(map[string]bool)
	for i := range cfgs {
		if err := cfgs[i].Validate(); err != nil {
			errs = append(errs, err)
		}
		key := strings.ToLower(cfgs[i].Name)
		if seen[key] {
			errs = append(errs, fmt.Errorf("upstream: pbx %q: duplicate name", cfgs[i].Name))
		}
		seen[key] = true
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}

	log := loggerOrDiscard(opts.Logger)
	now := opts.Now
	if now == nil {
		now = time.Now
	}
	rnd := opts.Rand
	if rnd == nil {
		rnd = randv2.Int64N
	}
	dial := opts.Dial
	if dial == nil {
		var d net.Dialer
		dial = d.DialContext
	}
	nonce, err := newNonce()
	if err != nil {
		return nil, err
	}

	p := &Pool{byName: make(map[string]*Conn), clients: make(map[*Client]struct{})}
	for i, cfg := range cfgs {
		cfg = cfg.withDefaults()
		tc, err := tlsConfig(cfg)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		c := &Conn{
			cfg: cfg, name: cfg.Name, log: log, now: now, rand: rnd, dial: dial, tls: tc,
			idPrefix: nonce + "." + strconv.FormatInt(int64(i), 36) + ".",
			done:     make(chan struct{}),
			state:    StateConnecting, since: now(),
			upCh:    make(chan struct{}),
			waiters: make(map[string]*waiter),
			late:    make(map[string]lateEntry),
		}
		p.conns = append(p.conns, c)
		p.byName[c.name] = c
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancelCause(context.Background())
	p.cancel = cancel
	for _, c := range p.conns {
		p.wg.Go(func() { c.manage(ctx) })
	}
	return p, nil
}

// newNonce returns 8 random base32 characters that make this pool's
// ActionIDs distinct from those of other proxies and AMI clients sharing
// the PBX account (they all see each other's OriginateResponse events).
func newNonce() (string, error) {
	var b [5]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("upstream: nonce: %w", err)
	}
	return strings.ToLower(base32.StdEncoding.EncodeToString(b[:])), nil
}

func tlsConfig(cfg Config) (*tls.Config, error) {
	if !cfg.TLS.Enabled {
		return nil, nil
	}
	tc := &tls.Config{
		MinVersion:         tls.VersionTLS12,
		ServerName:         cfg.TLS.ServerName,
		InsecureSkipVerify: cfg.TLS.InsecureSkipVerify,
	}
	if tc.ServerName == "" {
		tc.ServerName, _, _ = net.SplitHostPort(cfg.Address)
	}
	if cfg.TLS.CAFile != "" {
		pem, err := os.ReadFile(cfg.TLS.CAFile)
		if err != nil {
			return nil, fmt.Errorf("upstream: pbx %q: tls ca file: %w", cfg.Name, err)
		}
		roots := x509.NewCertPool()
		if !roots.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("upstream: pbx %q: tls ca file %s: no PEM certificates", cfg.Name, cfg.TLS.CAFile)
		}
		tc.RootCAs = roots
	}
	return tc, nil
}

// Get returns the Conn of the named PBX.
func (p *Pool) Get(name string) (*Conn, bool) {
	c, ok := p.byName[name]
	return c, ok
}

// Conns returns every Conn, in configuration order.
func (p *Pool) Conns() []*Conn {
	return append([]*Conn(nil), p.conns...)
}

// Stats returns a snapshot of every Conn, in configuration order.
func (p *Pool) Stats() []Stats {
	out := make([]Stats, len(p.conns))
	for i, c := range p.conns {
		out[i] = c.Stats()
	}
	return out
}

// NewClient returns a new subscriber handle with an empty queue, not yet
// subscribed to any PBX. After Close it returns a closed client.
func (p *Pool) NewClient() *Client {
	cl := newClient(p)
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		cl.closed, cl.err = true, ErrClosed
		close(cl.done)
		return cl
	}
	p.clients[cl] = struct{}{}
	return cl
}

func (p *Pool) forget(cl *Client) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.clients, cl)
}

// Close logs off from every PBX (waiting at most each PingTimeout), fails
// pending actions, stops every goroutine and waits for them, then closes
// every Client with ErrClosed (queued events stay readable). It is
// idempotent and always returns nil.
func (p *Pool) Close() error {
	p.closeOnce.Do(func() {
		p.mu.Lock()
		p.closed = true
		p.mu.Unlock()
		p.cancel(ErrClosed)
		p.wg.Wait()
		p.mu.Lock()
		clients := make([]*Client, 0, len(p.clients))
		for cl := range p.clients {
			clients = append(clients, cl)
		}
		p.mu.Unlock()
		for _, cl := range clients {
			cl.closeWith(ErrClosed)
		}
	})
	return nil
}
