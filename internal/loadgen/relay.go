package loadgen

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
)

// ServeRelay accepts connections on ln and relays each one, byte for byte,
// to a fresh TCP connection to target. It parses nothing. It runs until ctx
// ends or ln fails, closes ln and every relayed connection, and returns
// only after all of its goroutines have exited. A relayed pair ends when
// either side closes.
func ServeRelay(ctx context.Context, ln net.Listener, target string) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(ctx, func() { _ = ln.Close() })
	defer stop()
	var wg sync.WaitGroup
	defer wg.Wait()
	var d net.Dialer
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return nil
			}
			return fmt.Errorf("loadgen: relay: accept: %w", err)
		}
		wg.Go(func() { relayPair(ctx, &d, c, target) })
	}
}

// relayPair copies between c and a new connection to target until either
// side closes or ctx ends.
func relayPair(ctx context.Context, d *net.Dialer, c net.Conn, target string) {
	defer c.Close()
	u, err := d.DialContext(ctx, "tcp", target)
	if err != nil {
		return
	}
	defer u.Close()
	stop := context.AfterFunc(ctx, func() { _ = c.Close(); _ = u.Close() })
	defer stop()
	done := make(chan struct{})
	go func() { // relayUp: exits when c or u closes; waited for below
		defer close(done)
		_, _ = io.Copy(u, c)
		_ = u.Close()
	}()
	_, _ = io.Copy(c, u)
	_ = c.Close()
	<-done
}
