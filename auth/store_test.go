package auth

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

// FuzzDecodeRecord checks the record codec a shared Store relies on:
// DecodeRecord never panics, never quotes its input in an error, and a
// record it accepts re-encodes to JSON that decodes to the same record
// with the same seal binding (so its seal still opens after any number of
// round trips through a Store).
func FuzzDecodeRecord(f *testing.F) {
	r := testRecord("abcd", "alice", time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	r.Claims = map[string]any{"n": 1, "f": 1.5, "big": int64(1) << 60, "s": "<&>", "l": []any{nil, true, "x"}}
	var err error
	if r.Claims, err = normaliseClaims(r.Claims); err != nil {
		f.Fatal(err)
	}
	seed, err := EncodeRecord(r)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(seed)
	f.Add([]byte(`{"id":"a","subject":"","username":"u","created":"2026-01-01T00:00:00Z","expires":"2026-01-02T00:00:00Z","sealed":"AQ=="}`))
	f.Add([]byte(`{"id":"a","username":"u","claims":{"x":1e400},"created":"2026-01-01T00:00:00Z","expires":"2026-01-02T00:00:00Z","sealed":"AQ=="}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := DecodeRecord(data)
		if err != nil {
			if len(data) >= 24 && strings.Contains(err.Error(), string(data[:24])) {
				t.Fatalf("error %q quotes the input", err)
			}
			return
		}
		enc, err := EncodeRecord(r)
		if err != nil {
			return // e.g. a claim JSON cannot re-encode; Mint never makes one
		}
		r2, err := DecodeRecord(enc)
		if err != nil {
			t.Fatalf("DecodeRecord(EncodeRecord(r)) error = %v", err)
		}
		enc2, err := EncodeRecord(r2)
		if err != nil || !bytes.Equal(enc, enc2) {
			t.Fatalf("encoding is not stable:\n%s\n%s (%v)", enc, enc2, err)
		}
		a1, err1 := sealAAD(r)
		a2, err2 := sealAAD(r2)
		if err1 != nil || err2 != nil || !bytes.Equal(a1, a2) {
			t.Fatalf("seal binding changed in the round trip (%v, %v)", err1, err2)
		}
	})
}
