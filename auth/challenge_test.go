package auth

import (
	"regexp"
	"testing"
)

func TestNewChallenge(t *testing.T) {
	// Asterisk prints a 31-bit value with %ld into char[10]: 1-9 digits,
	// no sign, no leading zeros.
	format := regexp.MustCompile(`^(0|[1-9][0-9]{0,8})$`)
	const n = 5000
	seen := make(map[string]bool, n)
	nine := 0
	for range n {
		c, err := NewChallenge()
		if err != nil {
			t.Fatalf("NewChallenge() error = %v, want nil", err)
		}
		if !format.MatchString(c) {
			t.Fatalf("NewChallenge() = %q, want 1-9 decimal digits without leading zero", c)
		}
		seen[c] = true
		if len(c) == 9 {
			nine++
		}
	}
	// About 2n/2^31 collisions are expected; a handful would already be
	// suspicious, all equal would be broken.
	if got, want := len(seen), n-5; got < want {
		t.Errorf("NewChallenge() gave %d distinct values in %d calls, want at least %d", got, n, want)
	}
	// ~99.5% of 31-bit values have 9 or 10 digits and are cut to 9.
	if got, want := nine, n*9/10; got < want {
		t.Errorf("NewChallenge() gave %d 9-digit values in %d calls, want at least %d", got, n, want)
	}
}
