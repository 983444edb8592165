package auth

import (
	"encoding/binary"
	"net/netip"
	"runtime"
	"testing"
	"time"

	"golang.org/x/time/rate"
)

// fakeClock is a settable clock for LimitConfig.Now.
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time          { return c.t }
func (c *fakeClock) advance(d time.Duration) { c.t = c.t.Add(d) }

func newTestLimiter(t *testing.T, cfg LimitConfig) (*LoginLimiter, *fakeClock) {
	t.Helper()
	clk := &fakeClock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	cfg.Now = clk.now
	l, err := NewLoginLimiter(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return l, clk
}

var (
	ip1 = netip.MustParseAddr("192.0.2.1")
	ip2 = netip.MustParseAddr("192.0.2.2")
)

func TestLoginLimiterAddressRateAndBurst(t *testing.T) {
	l, clk := newTestLimiter(t, LimitConfig{PerAddress: rate.Every(time.Second), AddressBurst: 3})
	for i := range 3 {
		if d := l.Allow(ip1, "alice"); !d.OK {
			t.Fatalf("attempt %d refused: %+v", i, d)
		}
	}
	d := l.Allow(ip1, "bob")
	if d.OK || d.Reason != ReasonAddressRate || d.RetryAfter <= 0 || d.RetryAfter > time.Second {
		t.Fatalf("4th attempt: %+v, want address rate refusal within 1s", d)
	}
	if d := l.Allow(ip2, "alice"); !d.OK {
		t.Fatalf("other address refused: %+v", d)
	}
	clk.advance(time.Second)
	if d := l.Allow(ip1, "alice"); !d.OK {
		t.Fatalf("after refill: %+v", d)
	}
	if d := l.Allow(ip1, "alice"); d.OK {
		t.Fatal("only one token should have refilled")
	}
}

func TestLoginLimiterUserRate(t *testing.T) {
	l, clk := newTestLimiter(t, LimitConfig{PerUser: rate.Every(time.Minute), UserBurst: 2, LockoutBase: time.Nanosecond, LockoutMax: time.Nanosecond})
	// Successes never spend the user budget.
	for range 5 {
		if d := l.Allow(netip.MustParseAddr("198.51.100.1"), "svc"); !d.OK {
			t.Fatalf("success path refused: %+v", d)
		}
		l.Succeeded(netip.MustParseAddr("198.51.100.1"), "svc")
	}
	// Failures from two addresses spend it; the username is then refused
	// everywhere, case-insensitively.
	l.Failed(ip1, "Alice")
	l.Failed(ip2, "alice")
	clk.advance(time.Millisecond)
	d := l.Allow(netip.MustParseAddr("203.0.113.9"), "ALICE")
	if d.OK || d.Reason != ReasonUserRate || d.RetryAfter <= 0 {
		t.Fatalf("after the user's failures: %+v", d)
	}
	if d := l.Allow(ip1, "bob"); !d.OK {
		t.Fatalf("other user refused: %+v", d)
	}
	clk.advance(time.Minute)
	if d := l.Allow(ip1, "alice"); !d.OK {
		t.Fatalf("after refill: %+v", d)
	}
}

func TestLoginLimiterGrowingLockout(t *testing.T) {
	l, clk := newTestLimiter(t, LimitConfig{LockoutBase: time.Second, LockoutMax: 10 * time.Second, PerUser: rate.Inf})
	want := []time.Duration{1, 2, 4, 8, 10, 10}
	for i, w := range want {
		l.Failed(ip1, "alice")
		d := l.Allow(ip1, "alice")
		if d.OK || d.Reason != ReasonLockedOut || d.RetryAfter != w*time.Second {
			t.Fatalf("failure %d: %+v, want locked out for %v", i+1, d, w*time.Second)
		}
		if d := l.Allow(ip2, "alice"); !d.OK {
			t.Fatalf("failure %d: lockout leaked to another address: %+v", i+1, d)
		}
		if d := l.Allow(ip1, "bob"); !d.OK {
			t.Fatalf("failure %d: lockout leaked to another user: %+v", i+1, d)
		}
		clk.advance(w*time.Second - time.Millisecond)
		if d := l.Allow(ip1, "alice"); d.OK {
			t.Fatalf("failure %d: allowed before the lockout ended", i+1)
		}
		clk.advance(time.Millisecond)
		if d := l.Allow(ip1, "alice"); !d.OK {
			t.Fatalf("failure %d: still refused after the lockout: %+v", i+1, d)
		}
	}
	// A success resets the doubling.
	l.Succeeded(ip1, "alice")
	l.Failed(ip1, "alice")
	if d := l.Allow(ip1, "alice"); d.RetryAfter != time.Second {
		t.Fatalf("after success and one failure: %+v, want 1s", d)
	}
	// So does a quiet LockoutMax after the lockout.
	l.Failed(ip1, "alice") // 2s
	clk.advance(2*time.Second + 10*time.Second)
	l.Failed(ip1, "alice")
	if d := l.Allow(ip1, "alice"); d.RetryAfter != time.Second {
		t.Fatalf("after a quiet period: %+v, want 1s", d)
	}
}

func TestLoginLimiterIPv6Slash64(t *testing.T) {
	l, _ := newTestLimiter(t, LimitConfig{PerAddress: rate.Every(time.Hour), AddressBurst: 1})
	if d := l.Allow(netip.MustParseAddr("2001:db8:1:2::1"), "a"); !d.OK {
		t.Fatal(d)
	}
	if d := l.Allow(netip.MustParseAddr("2001:db8:1:2:ffff:ffff:ffff:ffff"), "a"); d.OK {
		t.Fatal("same /64 not grouped")
	}
	if d := l.Allow(netip.MustParseAddr("2001:db8:1:3::1"), "a"); !d.OK {
		t.Fatal("another /64 refused")
	}
	// IPv4-mapped IPv6 is the IPv4 address.
	if d := l.Allow(netip.MustParseAddr("192.0.2.7"), "a"); !d.OK {
		t.Fatal(d)
	}
	if d := l.Allow(netip.MustParseAddr("::ffff:192.0.2.7"), "a"); d.OK {
		t.Fatal("mapped address not unmapped")
	}
	if got, want := AddrPrefix(netip.MustParseAddr("fe80::1%eth0")), netip.MustParsePrefix("fe80::/64"); got != want {
		t.Fatalf("AddrPrefix = %v, want %v", got, want)
	}
}

func TestNewLoginLimiterRejectsBadConfig(t *testing.T) {
	for _, cfg := range []LimitConfig{
		{PerAddress: -1}, {UserBurst: -1}, {LockoutBase: -1}, {MaxEntries: -1},
		{LockoutBase: time.Hour, LockoutMax: time.Minute},
	} {
		if _, err := NewLoginLimiter(cfg); err == nil {
			t.Errorf("NewLoginLimiter(%+v) succeeded", cfg)
		}
	}
}

// TestLoginLimiterFlood makes one failed attempt from each of a million
// distinct addresses (half IPv4, half distinct IPv6 /64s) with distinct
// usernames: every table stays at MaxEntries and the heap stays bounded.
// Under -race it runs 200k attempts (see race_on_test.go).
func TestLoginLimiterFlood(t *testing.T) {
	n := 1_000_000
	if raceEnabled {
		n = 200_000
	}
	if testing.Short() {
		n = 50_000
	}
	const maxEntries = 10_000
	l, clk := newTestLimiter(t, LimitConfig{MaxEntries: maxEntries})
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	var b16 [16]byte
	b16[0], b16[1] = 0x20, 0x01
	user := make([]byte, 0, 16)
	for i := range n {
		var a netip.Addr
		if i%2 == 0 {
			var b4 [4]byte
			binary.BigEndian.PutUint32(b4[:], uint32(i)+1<<24)
			a = netip.AddrFrom4(b4)
		} else {
			binary.BigEndian.PutUint32(b16[4:8], uint32(i))
			b16[15] = byte(i) // same /64 whatever the low bits
			a = netip.AddrFrom16(b16)
		}
		user = binary.AppendUvarint(user[:0], uint64(i))
		u := string(user)
		if d := l.Allow(a, u); !d.OK {
			t.Fatalf("attempt %d from a fresh address refused: %+v", i, d)
		}
		l.Failed(a, u)
		if i%4096 == 0 {
			clk.advance(time.Millisecond)
		}
	}
	addrs, users, pairs := l.Len()
	if addrs > maxEntries || users > maxEntries || pairs > maxEntries {
		t.Fatalf("tables grew past %d: addrs %d users %d pairs %d", maxEntries, addrs, users, pairs)
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	growth := int64(after.HeapAlloc) - int64(before.HeapAlloc)
	t.Logf("%d attempts: tables %d/%d/%d, heap growth %.1f MB", n, addrs, users, pairs, float64(growth)/(1<<20))
	if growth > 50<<20 {
		t.Fatalf("heap grew %d bytes; limiter memory is not bounded", growth)
	}
	runtime.KeepAlive(l)
}
