package redisstore

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// timeDigits is the width of a stored revocation time: Unix nanoseconds,
// zero-padded, so that the scripts compare them as digit strings.
const timeDigits = 19

// formatTime encodes t as timeDigits digits of Unix nanoseconds. Times
// before 1970 (or after 2262) cannot be stored.
func formatTime(t time.Time) (string, error) {
	if !t.After(time.Unix(0, 0)) || t.After(time.Unix(0, math.MaxInt64)) {
		return "", errors.New("time not after 1970 or after 2262")
	}
	n := t.UnixNano()
	s := strconv.FormatInt(n, 10)
	return strings.Repeat("0", timeDigits-len(s)) + s, nil
}

// parseTime decodes formatTime's output, in UTC.
func parseTime(s string) (time.Time, error) {
	if len(s) != timeDigits {
		return time.Time{}, fmt.Errorf("time: want %d digits, got %d characters", timeDigits, len(s))
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return time.Time{}, fmt.Errorf("time: non-digit at offset %d", i)
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n <= 0 {
		return time.Time{}, errors.New("time: out of range")
	}
	return time.Unix(0, n).UTC(), nil
}

// toVersion converts a script's version value (an integer reply).
func toVersion(v any) (uint64, error) {
	switch x := v.(type) {
	case int64:
		if x < 0 {
			return 0, errors.New("negative version")
		}
		return uint64(x), nil
	case string:
		n, err := strconv.ParseUint(x, 10, 64)
		if err != nil {
			return 0, errors.New("version is not a counter")
		}
		return n, nil
	}
	return 0, fmt.Errorf("version has type %T, want an integer", v)
}

// toStrings converts an array reply of bulk strings.
func toStrings(v any) ([]string, error) {
	if v == nil {
		return nil, nil
	}
	arr, ok := v.([]any)
	if !ok {
		return nil, fmt.Errorf("reply has type %T, want an array", v)
	}
	out := make([]string, len(arr))
	for i, e := range arr {
		s, ok := e.(string)
		if !ok {
			return nil, fmt.Errorf("array element %d has type %T, want a string", i, e)
		}
		out[i] = s
	}
	return out, nil
}

// asciiLower folds A-Z only, as auth does for usernames.
func asciiLower(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}

// safeID returns id if it looks like a record ID (a-z, 0-9, at most 32),
// else a placeholder, so that errors never quote arbitrary stored bytes.
func safeID(id string) string {
	if id == "" || len(id) > 32 {
		return "(invalid id)"
	}
	for i := 0; i < len(id); i++ {
		if c := id[i]; !('a' <= c && c <= 'z' || '0' <= c && c <= '9') {
			return "(invalid id)"
		}
	}
	return id
}

func cmpString(a, b string) int { return strings.Compare(a, b) }
