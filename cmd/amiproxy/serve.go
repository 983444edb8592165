package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/amiproxy/amiproxy/auth"
	"github.com/amiproxy/amiproxy/proxy"
	"github.com/amiproxy/amiproxy/upstream"
)

func runServe(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	f, rc, path, err := configFlags("serve", args, stderr)
	if errors.Is(err, flag.ErrHelp) || f == nil && err != nil {
		return err
	}
	if err != nil {
		return fmt.Errorf("serve: %s: invalid configuration (amiproxy check lists every problem):\n%w", path, err)
	}
	logger, audit, closeLogs, err := newLoggers(f.Log, stderr)
	if err != nil {
		return err
	}
	defer closeLogs()
	return serveConfig(ctx, f, rc, serveOptions{logger: logger, audit: audit, stdout: stdout, configPath: path})
}

// newLoggers builds the operational logger (text, on stderr) and the audit
// logger (one JSON line per action).
func newLoggers(l Log, stderr io.Writer) (logger, audit *slog.Logger, closeFn func(), err error) {
	level := slog.LevelInfo
	switch strings.ToLower(l.Level) {
	case "debug":
		level = slog.LevelDebug
	case "warn":
		level = slog.LevelWarn
	case "error":
		level = slog.LevelError
	}
	logger = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	closeFn = func() {}
	var w io.Writer = stderr
	switch l.Audit {
	case "", "stderr":
	case "stdout":
		w = os.Stdout
	default:
		f, err := os.OpenFile(l.Audit, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
		if err != nil {
			return nil, nil, nil, fmt.Errorf("log.audit: %w", err)
		}
		w, closeFn = f, func() { _ = f.Close() }
	}
	bw := newBufferedWriter(w)
	closeFile := closeFn
	closeFn = func() { _ = bw.Close(); closeFile() }
	audit = slog.New(slog.NewJSONHandler(bw, nil))
	return logger, audit, closeFn, nil
}

// linkWait bounds how long serve waits for the PBX links at start.
const linkWait = 5 * time.Second

type serveOptions struct {
	logger, audit *slog.Logger
	stdout        io.Writer
	// tlsConfig, when set, is used instead of building one from f.TLS
	// (the demo brings its own self-signed certificate).
	tlsConfig *tls.Config
	// ready, when set, receives the bound listener addresses by name
	// ("ami", "ami_tls") once every listener is up.
	ready func(map[string]net.Addr)
	// configPath, when set, is the file re-read on SIGHUP (reload.go).
	configPath string
	// reloaded, when set, is told the outcome of each SIGHUP reload;
	// onReloader receives the reloader before ready (tests).
	reloaded   func(error)
	onReloader func(*reloader)
}

// serveConfig runs the proxy until ctx ends, then shuts down in order:
// stop accepting, tell clients and wait for their sessions, log off the PBXs.
func serveConfig(ctx context.Context, f *File, rc *runtimeConfig, o serveOptions) error {
	logger := o.logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	pool, err := upstream.NewPool(rc.pbxs, upstream.Options{Logger: logger.With("part", "upstream")})
	if err != nil {
		return fmt.Errorf("serve: %w", err)
	}
	defer pool.Close()
	local, err := auth.NewLocal(rc.accounts)
	if err != nil {
		return fmt.Errorf("serve: %w", err)
	}
	// The chain validates live sessions too: a local account removed by a
	// reload ends its sessions. It also takes OIDC tokens and minted
	// secrets when configured (identity.go).
	ident, err := newIdentity(ctx, f, rc, local, logger, o.audit)
	if err != nil {
		return fmt.Errorf("serve: %w", err)
	}
	defer ident.Close()
	authn := ident.chain
	gw, err := proxy.NewGateway(proxy.Config{
		Banner:                       f.Proxy.Banner,
		DefaultPBX:                   f.Proxy.DefaultPBX,
		HandshakeTimeout:             time.Duration(f.Proxy.HandshakeTimeout),
		MaxUnauthenticated:           f.Proxy.MaxUnauthenticated,
		MaxUnauthenticatedPerAddress: f.Limits.UnauthenticatedPerAddress,
		Limits:                       rc.limits.login,
		ActionLimits:                 rc.limits.actions,
		LoginFailDelay:               time.Duration(f.Proxy.LoginFailDelay),
		ClientQueue:                  f.Proxy.ClientQueue,
		Logger:                       logger.With("part", "proxy"),
		Audit:                        o.audit,
	}, pool, rc.engine, authn)
	if err != nil {
		return fmt.Errorf("serve: %w", err)
	}
	defer gw.Close()
	ident.attach(gw)

	addrs := map[string]net.Addr{}
	type door struct {
		ln  net.Listener
		tls *tls.Config // nil: plain text
	}
	var doors []door
	closeAll := func() {
		for _, d := range doors {
			_ = d.ln.Close()
		}
	}
	if f.Listen.AMI.Set() {
		ln, err := net.Listen("tcp", f.Listen.AMI.String())
		if err != nil {
			return fmt.Errorf("serve: listen.ami: %w", err)
		}
		doors = append(doors, door{ln: ln})
		addrs["ami"] = ln.Addr()
	}
	tlsCfg := o.tlsConfig
	if tlsCfg == nil && (f.Listen.AMITLS.Set() || f.Listen.HTTPS.Set()) {
		var stop func()
		tlsCfg, stop, err = newTLS(ctx, f.TLS, logger.With("part", "tls"))
		if err != nil {
			closeAll()
			return fmt.Errorf("serve: tls: %w", err)
		}
		defer stop()
	}
	if f.Listen.AMITLS.Set() {
		cfg := tlsCfg
		ln, err := net.Listen("tcp", f.Listen.AMITLS.String())
		if err != nil {
			closeAll()
			return fmt.Errorf("serve: listen.ami_tls: %w", err)
		}
		doors = append(doors, door{ln: ln, tls: cfg})
		addrs["ami_tls"] = ln.Addr()
	}

	// The HTTP manager, in plain text and over TLS.
	var webs []*http.Server
	var hm *proxy.HTTPManager
	if f.Listen.HTTP.Set() || f.Listen.HTTPS.Set() {
		hm, err = gw.NewHTTPManager(proxy.HTTPConfig{
			HTTPTimeout: time.Duration(f.Proxy.HTTPTimeout),
			MaxSessions: f.Proxy.HTTPMaxSessions,
			Digest:      proxy.NewDigestAccounts(rc.accounts),
		})
		if err != nil {
			closeAll()
			return fmt.Errorf("serve: http manager: %w", err)
		}
		defer hm.Close()
		for _, l := range []struct {
			name string
			addr Addr
			tls  bool
		}{{"http", f.Listen.HTTP, false}, {"https", f.Listen.HTTPS, true}} {
			if !l.addr.Set() {
				continue
			}
			ln, err := net.Listen("tcp", l.addr.String())
			if err != nil {
				closeAll()
				return fmt.Errorf("serve: listen.%s: %w", l.name, err)
			}
			addrs[l.name] = ln.Addr()
			if l.tls {
				cfg := tlsCfg.Clone()
				cfg.NextProtos = append(cfg.NextProtos, "http/1.1")
				ln = tls.NewListener(ln, cfg)
			}
			srv := &http.Server{Handler: ident.mount(hm), ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 30 * time.Second,
				ErrorLog: slog.NewLogLogger(logger.Handler(), slog.LevelDebug)}
			webs = append(webs, srv)
			go func() { _ = srv.Serve(ln) }() // ends when Shutdown closes ln
		}
	}

	if o.configPath != "" || o.onReloader != nil {
		// SIGHUP re-reads the configuration file (reload.go).
		rl := &reloader{path: o.configPath, env: osEnv, read: os.ReadFile, logger: logger,
			gw: gw, chain: authn, hm: hm, identity: ident, running: f}
		if o.onReloader != nil {
			o.onReloader(rl)
		}
		if o.configPath != "" {
			hup := make(chan os.Signal, 1)
			signal.Notify(hup, syscall.SIGHUP)
			defer signal.Stop(hup)
			done := make(chan struct{})
			var rwg sync.WaitGroup
			rwg.Go(func() { rl.handleReloads(hup, done, o.reloaded) })
			defer rwg.Wait()
			defer close(done)
		}
	}

	var admin *http.Server
	if f.Listen.Admin.Set() {
		ln, err := net.Listen("tcp", f.Listen.Admin.String())
		if err != nil {
			closeAll()
			return fmt.Errorf("serve: listen.admin: %w", err)
		}
		addrs["admin"] = ln.Addr()
		admin = &http.Server{Handler: adminHandler(gw, pool), ReadHeaderTimeout: 5 * time.Second}
		go func() { _ = admin.Serve(ln) }() // ends when Shutdown closes ln
	}

	serveCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, len(doors))
	var wg sync.WaitGroup
	for _, d := range doors {
		if d.tls != nil {
			wg.Go(func() { errc <- gw.ServeAMITLS(serveCtx, d.ln, d.tls) })
			continue
		}
		wg.Go(func() { errc <- gw.ServeAMI(serveCtx, d.ln) })
	}
	for name, a := range addrs {
		logger.Info("listening", "listener", name, "addr", a.String())
	}
	// The doors already serve; give the PBX links a moment to log in
	// before announcing readiness, so the first client finds them up. A
	// PBX that is down does not hold the proxy back (/readyz reports it).
	wctx, wcancel := context.WithTimeout(serveCtx, linkWait)
	for _, c := range pool.Conns() {
		if err := c.WaitUp(wctx); err != nil {
			logger.Warn("pbx link not up yet", "pbx", c.Stats().PBX, "err", err)
		}
	}
	wcancel()
	if o.ready != nil {
		o.ready(addrs)
	}

	var serveErr error
	select {
	case <-ctx.Done():
	case serveErr = <-errc:
		// A listener failed on its own: shut everything down.
	}
	logger.Info("shutting down")
	cancel()
	closeAll()
	// Close the Gateway first: it answers pending WaitEvents and tells
	// clients, so the HTTP servers then have nothing left to wait for.
	_ = gw.Close()
	sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
	for _, srv := range append(webs, admin) {
		if srv != nil {
			_ = srv.Shutdown(sctx)
		}
	}
	scancel()
	wg.Wait()
	pool.Close()
	if serveErr != nil && !errors.Is(serveErr, net.ErrClosed) && !errors.Is(serveErr, context.Canceled) {
		return fmt.Errorf("serve: %w", serveErr)
	}
	return nil
}
