package auth

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"testing"

	"golang.org/x/crypto/bcrypt"
)

// permitLocal has accounts with address rules, with fast hashes.
//
//	lan:    permit 10.0.0.0/8 and 2001:db8:1::/48, deny 10.9.0.0/16; hash and plaintext
//	nolab:  deny 192.0.2.0/24 and 2001:db8:bad::/48 only; plaintext
//	single: permit one address, 198.51.100.7; plaintext
//	open:   no rules; plaintext
func permitLocal(t *testing.T) *Local {
	t.Helper()
	l, err := NewLocal([]Account{
		{Username: "lan", SecretHash: adminHash, Secret: adminPass,
			Permit: []string{"10.0.0.0/8", "2001:db8:1::/48"}, Deny: []string{"10.9.0.0/16"}},
		{Username: "nolab", Secret: svcPass, Deny: []string{"192.0.2.0/24", "2001:db8:bad::/48"}},
		{Username: "single", Secret: svcPass, Permit: []string{"198.51.100.7"}},
		{Username: "open", Secret: svcPass},
	})
	if err != nil {
		t.Fatalf("NewLocal() error = %v", err)
	}
	fast := fastHashes()
	for _, a := range l.users {
		if a.hash != nil {
			a.hash = fast[string(a.hash)]
		}
	}
	l.dummyHash = fast[string(l.dummyHash)]
	return l
}

func TestLocalPermitDeny(t *testing.T) {
	l := permitLocal(t)
	ap := netip.MustParseAddrPort
	tests := []struct {
		name   string
		user   string
		secret Secret
		remote netip.AddrPort
		ok     bool
	}{
		{"permitted v4", "lan", adminPass, ap("10.1.2.3:5038"), true},
		{"permitted v6", "lan", adminPass, ap("[2001:db8:1::5]:5038"), true},
		{"permitted v6 with zone", "lan", adminPass, ap("[2001:db8:1::5%eth0]:5038"), true},
		{"v4-mapped matches the v4 rule", "lan", adminPass, ap("[::ffff:10.1.2.3]:5038"), true},
		{"deny wins over permit", "lan", adminPass, ap("10.9.8.7:5038"), false},
		{"v4-mapped deny", "lan", adminPass, ap("[::ffff:10.9.8.7]:5038"), false},
		{"outside permit", "lan", adminPass, ap("192.168.1.1:5038"), false},
		{"v6 outside permit", "lan", adminPass, ap("[2001:db8:2::5]:5038"), false},
		{"unknown address with rules", "lan", adminPass, netip.AddrPort{}, false},
		{"deny-only: other address", "nolab", svcPass, ap("203.0.113.9:1"), true},
		{"deny-only: v6 other address", "nolab", svcPass, ap("[2001:db8:1::1]:1"), true},
		{"deny-only: denied v4", "nolab", svcPass, ap("192.0.2.200:1"), false},
		{"deny-only: denied v6", "nolab", svcPass, ap("[2001:db8:bad::1]:1"), false},
		{"deny-only: unknown address", "nolab", svcPass, netip.AddrPort{}, false},
		{"single address permitted", "single", svcPass, ap("198.51.100.7:1"), true},
		{"single address: neighbour refused", "single", svcPass, ap("198.51.100.8:1"), false},
		{"single address: IPv6 refused", "single", svcPass, ap("[2001:db8::7]:1"), false},
		{"no rules: any address", "open", svcPass, ap("192.0.2.1:1"), true},
		{"no rules: unknown address", "open", svcPass, netip.AddrPort{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, md5 := range []bool{false, true} {
				c := Credentials{Username: tt.user, Secret: tt.secret, Remote: tt.remote}
				if md5 {
					c = Credentials{Username: tt.user, AuthType: "MD5", Challenge: "42", Key: md5Key("42", tt.secret), Remote: tt.remote}
				}
				p, err := l.Authenticate(context.Background(), c)
				if tt.ok {
					if err != nil || p.Username != tt.user {
						t.Errorf("Authenticate(%s, md5=%v) = %q, %v, want success", tt.name, md5, p.Username, err)
					}
					continue
				}
				if !errors.Is(err, ErrAuthFailed) || !errors.Is(err, errNotPermitted) {
					t.Errorf("Authenticate(%s, md5=%v) error = %v, want ErrAuthFailed wrapping %q", tt.name, md5, err, errNotPermitted)
					continue
				}
				if !strings.Contains(err.Error(), "address not permitted") {
					t.Errorf("error text %q does not say %q", err, "address not permitted")
				}
				assertNoCredentials(t, err.Error(), c)
			}
		})
	}
}

// TestLocalPermitBeforeSecret checks the order Asterisk uses: a refused
// address fails whatever the secret (so a wrong secret is not what is
// reported), and it costs exactly the bcrypt comparison of an unknown
// username, against the dummy hash, never the account's own hash.
func TestLocalPermitBeforeSecret(t *testing.T) {
	l := permitLocal(t)
	var calls [][]byte
	l.compare = func(hash, secret []byte) error {
		calls = append(calls, hash)
		return bcrypt.CompareHashAndPassword(hash, secret)
	}
	remote := netip.MustParseAddrPort("10.9.0.1:5038") // denied for lan
	for _, secret := range []Secret{adminPass, "wrong"} {
		calls = nil
		_, err := l.Authenticate(context.Background(), Credentials{Username: "lan", Secret: secret, Remote: remote})
		if !errors.Is(err, errNotPermitted) {
			t.Errorf("Authenticate(denied address) error = %v, want %q", err, errNotPermitted)
		}
		if len(calls) != 1 || string(calls[0]) != string(l.dummyHash) {
			t.Errorf("denied Login ran %d bcrypt comparisons (first against the dummy: %v), want exactly 1 against the dummy", len(calls), len(calls) > 0 && string(calls[0]) == string(l.dummyHash))
		}
	}
	// An unknown username is reported as such, before any address rule.
	_, err := l.Authenticate(context.Background(), Credentials{Username: "ghost", Secret: "x", Remote: remote})
	if !errors.Is(err, errUnknownUser) {
		t.Errorf("Authenticate(unknown user) error = %v, want %q", err, errUnknownUser)
	}
}

func TestNewLocalPermitValidation(t *testing.T) {
	tests := []struct {
		name    string
		permit  []string
		deny    []string
		wantErr string // "" for valid
	}{
		{"v4 and v6 prefixes", []string{"10.0.0.0/8", "2001:db8::/32"}, []string{"10.1.0.0/16"}, ""},
		{"single addresses", []string{"192.0.2.1", "2001:db8::1"}, nil, ""},
		{"everything", []string{"0.0.0.0/0", "::/0"}, nil, ""},
		{"host bits set", []string{"10.1.2.3/8"}, nil, "did you mean 10.0.0.0/8?"},
		{"not an address", []string{"example.com"}, nil, "is not an IP address or CIDR prefix"},
		{"netmask form", []string{"10.0.0.0/255.0.0.0"}, nil, "is not a CIDR prefix"},
		{"prefix too long", nil, []string{"10.0.0.0/33"}, "deny[0]"},
		{"v4-mapped", []string{"::ffff:10.0.0.0/104"}, nil, "IPv4-mapped"},
		{"zone", []string{"fe80::1%eth0"}, nil, "is not an IP address"},
		{"empty entry", []string{""}, nil, "permit[0]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := NewLocal([]Account{{Username: "u", Secret: "s", Permit: tt.permit, Deny: tt.deny}})
			if tt.wantErr == "" {
				if err != nil {
					t.Errorf("NewLocal(%s) error = %v, want nil", tt.name, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("NewLocal(%s) error = %v, want one containing %q", tt.name, err, tt.wantErr)
			}
		})
	}

	t.Run("every problem reported", func(t *testing.T) {
		_, err := NewLocal([]Account{{Username: "u", Secret: "s", Permit: []string{"x", "10.0.0.0/8"}, Deny: []string{"y"}}})
		if err == nil || !strings.Contains(err.Error(), "permit[0]") || !strings.Contains(err.Error(), "deny[0]") {
			t.Errorf("NewLocal() error = %v, want both permit[0] and deny[0] named", err)
		}
	})
}
