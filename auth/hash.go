package auth

import (
	"errors"
	"fmt"
	"strings"

	"golang.org/x/crypto/bcrypt"
)

// Bcrypt costs accepted for Account.SecretHash and HashSecret. One
// comparison at the default cost 12 takes roughly 250 ms of one CPU core;
// each step up doubles it.
const (
	MinBcryptCost     = 10
	DefaultBcryptCost = 12
	MaxBcryptCost     = 14
)

// maxBcryptSecret is the number of bytes bcrypt reads; longer secrets would
// be silently truncated.
const maxBcryptSecret = 72

// HashSecret returns the bcrypt hash of secret for Account.SecretHash (the
// `amiproxy hash-secret` subcommand). A cost of 0 selects
// DefaultBcryptCost; otherwise cost must lie in MinBcryptCost..MaxBcryptCost.
//
// HashSecret refuses secrets that a client could never send in a plain AMI
// Login: empty ones, ones longer than bcrypt's 72-byte limit, ones that
// start with a space or control character (Asterisk's header parser skips
// those) and ones containing CR, LF or NUL.
func HashSecret(secret Secret, cost int) (string, error) {
	cost, err := hashCost(cost)
	if err != nil {
		return "", err
	}
	s := secret.Reveal()
	switch {
	case s == "":
		return "", errors.New("auth: empty secret")
	case len(s) > maxBcryptSecret:
		return "", fmt.Errorf("auth: secret is %d bytes, longer than bcrypt's limit of %d", len(s), maxBcryptSecret)
	case s[0] < 0x21:
		return "", errors.New("auth: secret starts with a space or control character, which an AMI header cannot carry")
	case strings.ContainsAny(s, "\r\n\x00"):
		return "", errors.New("auth: secret contains CR, LF or NUL, which an AMI header cannot carry")
	}
	h, err := bcrypt.GenerateFromPassword([]byte(s), cost)
	if err != nil {
		return "", fmt.Errorf("auth: hash secret: %w", err)
	}
	return string(h), nil
}

// hashCost resolves HashSecret's cost argument.
func hashCost(cost int) (int, error) {
	if cost == 0 {
		return DefaultBcryptCost, nil
	}
	if cost < MinBcryptCost || cost > MaxBcryptCost {
		return 0, fmt.Errorf("auth: bcrypt cost %d outside the accepted range %d-%d", cost, MinBcryptCost, MaxBcryptCost)
	}
	return cost, nil
}

// checkHash validates a configured bcrypt hash and returns its cost. Its
// errors never quote the hash: a misplaced plaintext secret must not reach
// the logs.
func checkHash(h string) (int, error) {
	const bcryptLen = 60 // "$2b$12$" + 22 salt + 31 hash characters
	if len(h) != bcryptLen {
		return 0, fmt.Errorf("not a bcrypt hash: %d characters, want %d like \"$2b$12$...\"", len(h), bcryptLen)
	}
	switch h[:4] {
	case "$2a$", "$2b$", "$2y$":
	default:
		return 0, errors.New("not a bcrypt hash: want prefix $2a$, $2b$ or $2y$")
	}
	if h[4] < '0' || h[4] > '9' || h[5] < '0' || h[5] > '9' || h[6] != '$' {
		return 0, errors.New("malformed bcrypt hash: want two cost digits after the prefix, then '$'")
	}
	for i := 7; i < len(h); i++ {
		if !isBcryptBase64(h[i]) {
			return 0, fmt.Errorf("malformed bcrypt hash: invalid character at offset %d", i)
		}
	}
	cost, err := bcrypt.Cost([]byte(h))
	if err != nil {
		return 0, fmt.Errorf("malformed bcrypt hash: %w", err)
	}
	if cost < MinBcryptCost || cost > MaxBcryptCost {
		return 0, fmt.Errorf("bcrypt cost %d outside the accepted range %d-%d", cost, MinBcryptCost, MaxBcryptCost)
	}
	return cost, nil
}

// isBcryptBase64 reports whether c is in bcrypt's base64 alphabet
// "./A-Za-z0-9".
func isBcryptBase64(c byte) bool {
	return c == '.' || c == '/' ||
		('A' <= c && c <= 'Z') || ('a' <= c && c <= 'z') || ('0' <= c && c <= '9')
}

// dummyHashes are bcrypt hashes of random, discarded secrets, one per
// accepted cost. Authenticate compares against one of them whenever it has
// no real hash to compare with (unknown username, account without
// SecretHash), so that every plain Login costs one bcrypt comparison.
var dummyHashes = map[int]string{
	10: "$2a$10$0Gw6PcI5QTuZSQyLUPtnguqeFIJ4H1fhru.zhYpVCgfp8LrjSaUXW",
	11: "$2a$11$IX9aq3PAk5THFyXfaRZA5emyXhTYtNPHggOeg7WYYBSoe4eR5qYeC",
	12: "$2a$12$MvWL9OuS4ABowavh8HyqPOWxrN0F0RnHQq8qWENfnqyv9rEbzkgIe",
	13: "$2a$13$.4KjHrcqRi/ynAH.QSAVzuMHHnOeASw6Sg58oMEFW1f8EMk29CtZ2",
	14: "$2a$14$ndXdVVf1DG/wljWKzgcDQu4PsXoVSM/8dymtwyEAK7XigsHzlMDMK",
}
