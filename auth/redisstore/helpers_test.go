package redisstore

import (
	"context"
	"net"
	"testing"

	"github.com/amiproxy/amiproxy/internal/redistest"
)

func startRedis(t *testing.T) *redistest.Server {
	t.Helper()
	return redistest.Start(t, redistest.Options{})
}

func startRedisB(b *testing.B) *redistest.Server {
	b.Helper()
	return redistest.Start(b, redistest.Options{})
}

func newStoreB(b *testing.B, srv *redistest.Server, o Options) *Store {
	b.Helper()
	o.Addr = srv.Addr
	s, err := New(context.Background(), o)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = s.Close() })
	return s
}

// newStore opens a Store on addr and closes it when the test ends.
func newStore(t *testing.T, addr string, o Options) *Store {
	t.Helper()
	o.Addr = addr
	s, err := New(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// freeAddr returns a loopback address nobody listens on.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}
