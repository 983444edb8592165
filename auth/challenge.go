package auth

import (
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"strconv"
)

// maxChallengeLen is the length Asterisk's challenge buffer allows
// (char challenge[10] in struct mansession_session, minus the NUL).
const maxChallengeLen = 9

// NewChallenge returns a fresh MD5 challenge in exactly Asterisk's format
// (action_challenge): a non-negative 31-bit random number in decimal, with
// no leading zeros, truncated to at most 9 digits. The randomness comes from
// crypto/rand, where Asterisk uses ast_random. Like Asterisk, the caller
// should issue one challenge per session and repeat it on later Challenge
// actions of that session.
//
// The challenge carries about 30 bits, as in Asterisk; it is not secret,
// only unpredictable, so a captured Key cannot be replayed on another
// session.
func NewChallenge() (string, error) {
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("auth: challenge: %w", err)
	}
	n := binary.BigEndian.Uint32(b[:]) & 0x7fffffff // ast_random() is 0..2^31-1
	s := strconv.FormatUint(uint64(n), 10)
	if len(s) > maxChallengeLen {
		s = s[:maxChallengeLen]
	}
	return s, nil
}
