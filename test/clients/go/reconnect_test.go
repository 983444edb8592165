package clientstests

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/heltonmarx/goami/ami"
	"github.com/ivahaev/amigo"
	"github.com/staskobzar/goami2"
)

// TestReconnect is the reconnect flow, run by the conformance kit
// (test/conformance) with AMI_RECONNECT=1: each library logs in and prints
// "READY <library>"; the kit then stops the proxy and starts it again on
// the same port; each library must notice the loss and be logged in again
// (a Ping answered Success) within reconnectTimeout. A library that
// reconnects by itself passes as "auto"; one that does not is given a new
// connection by the flow, as its users must do, and passes as "manual".
// Verdicts print as "PASS|FAIL <library> reconnect: <how>".
func TestReconnect(t *testing.T) {
	if os.Getenv("AMI_RECONNECT") != "1" {
		t.Skip("N/A: the reconnect flow needs an endpoint that is restarted (AMI_RECONNECT=1, set by test/conformance)")
	}
	for _, lib := range []struct {
		name string
		run  func(ctx context.Context, ready func()) (string, error)
	}{
		{"amigo", reconnectAmigo},
		{"goami", reconnectGoami},
		{"goami2", reconnectGoami2},
	} {
		t.Run(lib.name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(context.Background(), reconnectTimeout+30*time.Second)
			defer cancel()
			how, err := lib.run(ctx, func() { fmt.Printf("READY %s\n", lib.name) })
			if err != nil {
				fmt.Printf("FAIL %s reconnect: %v\n", lib.name, err)
				t.Fatal(err)
			}
			fmt.Printf("PASS %s reconnect: %s\n", lib.name, how)
		})
	}
}

// reconnectTimeout bounds the wait for the loss and the new login.
const reconnectTimeout = 45 * time.Second

// retry calls fn every 250 ms until it succeeds or d passes.
func retry(ctx context.Context, d time.Duration, fn func() error) error {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	for {
		err := fn()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("still failing after %v: %w", d, err)
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// amigo reconnects by itself (every ReconnectInterval, forever) and logs
// in again.
func reconnectAmigo(ctx context.Context, ready func()) (string, error) {
	host, port, _ := net.SplitHostPort(endpoint.addr)
	a := amigo.New(&amigo.Settings{Username: endpoint.user, Password: endpoint.secret, Host: host, Port: port,
		ActionTimeout: 3 * time.Second, ReconnectInterval: 500 * time.Millisecond})
	var mu sync.Mutex
	var lost bool
	a.On("error", func(string) { mu.Lock(); lost = true; mu.Unlock() })
	a.Connect()
	defer a.Close()
	ping := func() error {
		r, err := a.Action(map[string]string{"Action": "Ping"})
		if err != nil {
			return err
		}
		if r["Response"] != "Success" {
			return fmt.Errorf("Ping: %v", r)
		}
		return nil
	}
	if err := retry(ctx, 10*time.Second, ping); err != nil {
		return "", fmt.Errorf("first login: %w", err)
	}
	ready()
	if err := retry(ctx, reconnectTimeout, func() error {
		mu.Lock()
		defer mu.Unlock()
		if !lost && a.Connected() {
			return errors.New("the connection was not lost")
		}
		return nil
	}); err != nil {
		return "", err
	}
	if err := retry(ctx, reconnectTimeout, ping); err != nil {
		return "", fmt.Errorf("amigo did not log in again: %w", err)
	}
	return "auto: amigo reconnected and logged in again by itself", nil
}

// heltonmarx/goami has no reconnection: a Recv error tells the loss, and
// the flow dials a new Socket and logs in again.
func reconnectGoami(ctx context.Context, ready func()) (string, error) {
	dial := func() (*ami.Socket, error) {
		c, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		s, err := ami.NewSocket(ctx, endpoint.addr)
		if err != nil {
			return nil, err
		}
		if ok, err := ami.Connect(c, s); !ok {
			_ = s.Close(ctx)
			return nil, fmt.Errorf("banner: %w", err)
		}
		if err := ami.Login(c, s, endpoint.user, endpoint.secret, "Off", "rc-login"); err != nil {
			_ = s.Close(ctx)
			return nil, err
		}
		return s, nil
	}
	s, err := dial()
	if err != nil {
		return "", fmt.Errorf("first login: %w", err)
	}
	ready()
	c, cancel := context.WithTimeout(ctx, reconnectTimeout)
	_, err = s.Recv(c) // blocks until the proxy goes away (Events: Off: nothing else comes)
	timedOut := c.Err() != nil
	cancel()
	_ = s.Close(ctx)
	if err == nil || timedOut {
		return "", fmt.Errorf("the connection was not lost within %v (Recv: %v)", reconnectTimeout, err)
	}
	if err := retry(ctx, reconnectTimeout, func() error {
		s2, err := dial()
		if err != nil {
			return err
		}
		defer s2.Close(ctx)
		pc, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		return ami.Ping(pc, s2, "rc-ping")
	}); err != nil {
		return "", err
	}
	return "manual: goami does not reconnect; a new Socket logged in", nil
}

// goami2 has no reconnection: its Err channel reports the loss, and the
// flow dials and logs in with a new Client.
func reconnectGoami2(ctx context.Context, ready func()) (string, error) {
	dial := func() (*goami2.Client, error) {
		conn, err := net.DialTimeout("tcp", endpoint.addr, 5*time.Second)
		if err != nil {
			return nil, err
		}
		c, err := goami2.NewClientWithContext(ctx, conn, endpoint.user, endpoint.secret)
		if err != nil {
			conn.Close()
			return nil, err
		}
		return c, nil
	}
	pingOn := func(c *goami2.Client) error {
		a := goami2.NewAction("Ping")
		a.AddActionID()
		id := a.ActionID()
		if err := c.MustSend(a.Byte()); err != nil {
			return err
		}
		timeout := time.After(5 * time.Second)
		for {
			select {
			case m, ok := <-c.AllMessages():
				if !ok {
					return errors.New("client closed")
				}
				if m.IsResponse() && m.ActionID() == id {
					if !m.IsSuccess() {
						return fmt.Errorf("Ping: %q", m.String())
					}
					return nil
				}
			case <-timeout:
				return errors.New("no Ping reply within 5s")
			}
		}
	}
	c, err := dial()
	if err != nil {
		return "", fmt.Errorf("first login: %w", err)
	}
	ready()
	lost := false
	deadline := time.After(reconnectTimeout)
	for !lost {
		select {
		case <-c.AllMessages(): // drain events
		case <-c.Err(): // EOF or a network error: the proxy went away
			lost = true
		case <-deadline:
			c.Close()
			return "", fmt.Errorf("the connection was not lost within %v", reconnectTimeout)
		}
	}
	c.Close()
	if err := retry(ctx, reconnectTimeout, func() error {
		c2, err := dial()
		if err != nil {
			return err
		}
		defer c2.Close()
		return pingOn(c2)
	}); err != nil {
		return "", err
	}
	return "manual: goami2 does not reconnect; a new Client logged in", nil
}
