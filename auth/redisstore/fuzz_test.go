package redisstore

import (
	"strings"
	"testing"
	"time"
)

// FuzzParseTime: parseTime accepts exactly what formatTime makes, and
// round-trips it.
func FuzzParseTime(f *testing.F) {
	for _, s := range []string{"1763805600000000000", "0000000000000000001", "0000000000000000000", "9223372036854775807", "9223372036854775808", "-000000000000000001", "176380560000000000", "17638056000000000x0", "+763805600000000000"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		at, err := parseTime(s)
		if err != nil {
			return
		}
		back, err := formatTime(at)
		if err != nil || back != s {
			t.Fatalf("parseTime(%q) = %v, formats back as %q, %v", s, at, back, err)
		}
	})
}

// FuzzDecodeLoad: any reply of the load script, with fuzzed record and
// revocation fields, decodes or fails without a panic, and its errors
// never quote record content.
func FuzzDecodeLoad(f *testing.F) {
	good := `{"id":"abc","subject":"s","username":"U","created":"2026-01-01T00:00:00Z","expires":"2026-01-02T00:00:00Z","sealed":"AQIDBAUGBwgJCgsMDQ4PEA=="}`
	f.Add("abc", good, "u", "1763805600000000000", int64(5))
	f.Add("abd", good, "U", "1763805600000000000", int64(5))
	f.Add("abc", `{"id":"abc","secret":"amp_zzzzz"}`, "", "x", int64(-1))
	f.Add("ab c", "{", "u\x00", "0000000000000000000", int64(0))
	f.Fuzz(func(t *testing.T, id, rec, user, at string, version int64) {
		res := []any{version, "1", []any{id, rec}, []any{user, at}}
		snap, _, err := decodeLoad(res)
		if err != nil {
			if strings.Contains(rec, "amp_") && strings.Contains(err.Error(), "amp_") {
				t.Fatalf("error quotes the record: %v", err)
			}
			return
		}
		if len(snap.Records) != 1 || snap.Records[0].ID != id || uint64(version) != snap.Version {
			t.Fatalf("decoded %+v from id %q", snap, id)
		}
		if got := snap.Revocations[user]; got.IsZero() || got.Location() != time.UTC {
			t.Fatalf("revocation of %q = %v", user, got)
		}
	})
}
