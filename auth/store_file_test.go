package auth

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// testRecord returns a valid record (its seal is not a real one: the
// store does not open seals).
func testRecord(id, username string, created time.Time) Record {
	return Record{
		ID: id, Subject: "oidc:x#" + username, Username: username, Groups: []string{"g"},
		Claims:  map[string]any{"n": json.Number("7"), "s": "v"},
		Label:   "l",
		Created: created, Expires: created.Add(time.Hour),
		Sealed: bytes.Repeat([]byte{1}, 1+12+36+16),
	}
}

func TestFileStoreOperations(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	s := openMintStore(t, dir)
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)

	if v, _ := s.Version(ctx); v != 0 {
		t.Errorf("Version() of a new store = %d, want 0", v)
	}
	if _, err := os.Stat(filepath.Join(dir, storeFileName)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a new store wrote its file before any change: %v", err)
	}
	r1, r2, r3 := testRecord("aaaa", "Alice", t0), testRecord("bbbb", "alice", t0), testRecord("cccc", "bob", t0)
	for i, r := range []Record{r1, r2, r3} {
		v, err := s.Put(ctx, r)
		if err != nil || v != uint64(i+1) {
			t.Fatalf("Put(%s) = %d, %v, want %d, nil", r.ID, v, err, i+1)
		}
	}
	if _, err := s.Put(ctx, r1); !errors.Is(err, ErrRecordExists) {
		t.Errorf("Put(existing id) error = %v, want ErrRecordExists", err)
	}
	bad := r1
	bad.ID = "UPPER"
	if _, err := s.Put(ctx, bad); err == nil {
		t.Error("Put(invalid id) error = nil, want refusal")
	}
	snap, err := s.Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if snap.Version != 3 || len(snap.Records) != 3 || !reflect.DeepEqual(snap.Records[0], r1) {
		t.Errorf("Load() = version %d, %d records, first %+v; want 3, 3, %+v", snap.Version, len(snap.Records), snap.Records[0], r1)
	}
	snap.Records[0].Groups[0] = "changed" // a copy
	if again, _ := s.Load(ctx); again.Records[0].Groups[0] != "g" {
		t.Error("changing a loaded record changed the store")
	}

	deleted, v, err := s.Delete(ctx, []string{"nope", "cccc", "cccc"})
	if err != nil || !reflect.DeepEqual(deleted, []string{"cccc"}) || v != 4 {
		t.Errorf("Delete() = %v, %d, %v; want [cccc], 4, nil", deleted, v, err)
	}
	deleted, v, err = s.Delete(ctx, []string{"nope"})
	if err != nil || len(deleted) != 0 || v != 4 {
		t.Errorf("Delete(nothing) = %v, %d, %v; want none, 4 (unchanged), nil", deleted, v, err)
	}
	at := t0.Add(time.Minute)
	deleted, v, err = s.RevokeUser(ctx, "alice", at)
	if err != nil || !reflect.DeepEqual(deleted, []string{"aaaa", "bbbb"}) || v != 5 {
		t.Errorf("RevokeUser(alice) = %v, %d, %v; want [aaaa bbbb], 5, nil", deleted, v, err)
	}
	if _, v, _ = s.RevokeUser(ctx, "alice", t0); v != 5 {
		t.Errorf("RevokeUser(earlier time, nothing to delete) changed the version to %d", v)
	}
	if _, _, err := s.RevokeUser(ctx, "Alice", at); err == nil {
		t.Error("RevokeUser(unfolded username) error = nil, want refusal")
	}
	_ = s.Close()
	if _, err := s.Load(ctx); !errors.Is(err, ErrStoreClosed) {
		t.Errorf("Load() after Close error = %v, want ErrStoreClosed", err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close() = %v", err)
	}

	// Reopened: same content, and the version keeps counting.
	s2 := openMintStore(t, dir)
	snap, err = s2.Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if snap.Version != 5 || len(snap.Records) != 0 || !snap.Revocations["alice"].Equal(at) {
		t.Errorf("reopened store: version %d, %d records, revocations %v; want 5, 0, alice at %v", snap.Version, len(snap.Records), snap.Revocations, at)
	}
	if v, err := s2.Put(ctx, r3); err != nil || v != 6 {
		t.Errorf("Put() after reopening = %d, %v, want 6, nil", v, err)
	}
	ctxDone, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := s2.Put(ctxDone, r1); !errors.Is(err, context.Canceled) {
		t.Errorf("Put(cancelled ctx) error = %v, want context.Canceled", err)
	}
}

func TestOpenFileStoreRefuses(t *testing.T) {
	valid := func(t *testing.T) []byte {
		dir := t.TempDir()
		s := openMintStore(t, dir)
		if _, err := s.Put(context.Background(), testRecord("abcd", "alice", time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))); err != nil {
			t.Fatal(err)
		}
		_ = s.Close()
		data, err := os.ReadFile(filepath.Join(dir, storeFileName))
		if err != nil {
			t.Fatal(err)
		}
		return data
	}(t)
	replace := func(old, new string) []byte {
		if !bytes.Contains(valid, []byte(old)) {
			t.Fatalf("test bug: %q not in the store file", old)
		}
		return bytes.Replace(valid, []byte(old), []byte(new), 1)
	}
	tests := []struct {
		name string
		data []byte
		want string
	}{
		{"garbage", []byte("hello"), "invalid JSON"},
		{"empty file", nil, "truncated JSON"},
		{"truncated", valid[:len(valid)/2], "JSON"},
		{"trailing data", append(bytes.Clone(valid), "{}"...), "trailing data"},
		{"wrong format", replace(storeFormat, "something-else"), "format"},
		{"future version", replace(`"version":1`, `"version":2`), "version 2"},
		{"unknown field", replace(`"generation"`, `"extra":1,"generation"`), "unknown field"},
		{"record with unknown field", replace(`"id"`, `"secret": "x", "id"`), "records[0]"},
		{"invalid id", replace(`"abcd"`, `"ab/cd"`), "records[0]: auth: minted record: id"},
		{"expiry before creation", replace(`"expires":"2026-01-01T01:00:00Z"`, `"expires":"2025-01-01T01:00:00Z"`), "expiry"},
		{"duplicate id", replace(`"records":[`, `"records":[{"id":"abcd","subject":"s","username":"u","created":"2026-01-01T00:00:00Z","expires":"2026-01-02T00:00:00Z","sealed":"AQ=="},`), "duplicate id"},
		{"bad revocation", replace(`"revocations":{}`, `"revocations":{"Alice":"2026-01-01T00:00:00Z"}`), "revocations"},
		{"wrong type", replace(`"generation":1`, `"generation":"1"`), "wrong JSON type"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, storeFileName), tt.data, 0o600); err != nil {
				t.Fatal(err)
			}
			s, err := OpenFileStore(dir)
			if err == nil {
				_ = s.Close()
				t.Fatalf("OpenFileStore(%s) error = nil, want refusal", tt.name)
			}
			if !strings.Contains(err.Error(), "is corrupt") || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("OpenFileStore(%s) error = %v, want it to say the file is corrupt and %q", tt.name, err, tt.want)
			}
			// The file is left as it was, for the operator to inspect.
			if got, _ := os.ReadFile(filepath.Join(dir, storeFileName)); !bytes.Equal(got, tt.data) {
				t.Error("OpenFileStore changed a corrupt file")
			}
			// The lock was released: a fixed file opens.
			if err := os.WriteFile(filepath.Join(dir, storeFileName), valid, 0o600); err != nil {
				t.Fatal(err)
			}
			openMintStore(t, dir)
		})
	}

	t.Run("group-readable file", func(t *testing.T) {
		dir := t.TempDir()
		path := filepath.Join(dir, storeFileName)
		if err := os.WriteFile(path, valid, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(path, 0o640); err != nil {
			t.Fatal(err)
		}
		s, err := OpenFileStore(dir)
		if err == nil {
			_ = s.Close()
			t.Fatal("OpenFileStore(mode 0640) error = nil, want refusal")
		}
		if !strings.Contains(err.Error(), "chmod 600") {
			t.Errorf("OpenFileStore(mode 0640) error = %v, want the fix named", err)
		}
	})

	t.Run("not a regular file", func(t *testing.T) {
		dir := t.TempDir()
		if err := os.Mkdir(filepath.Join(dir, storeFileName), 0o700); err != nil {
			t.Fatal(err)
		}
		if s, err := OpenFileStore(dir); err == nil {
			_ = s.Close()
			t.Fatal("OpenFileStore(minted.json is a directory) error = nil, want refusal")
		}
	})

	t.Run("leftover temporary file removed", func(t *testing.T) {
		dir := t.TempDir()
		tmp := filepath.Join(dir, "."+storeFileName+".123.tmp")
		if err := os.WriteFile(tmp, []byte("partial"), 0o600); err != nil {
			t.Fatal(err)
		}
		openMintStore(t, dir)
		if _, err := os.Stat(tmp); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("leftover %s still there: %v", filepath.Base(tmp), err)
		}
	})
}

// FuzzDecodeStoreFile checks that the store file decoder never panics,
// that whatever it accepts re-encodes to a file it decodes to the same
// state, and that its errors never quote the input.
func FuzzDecodeStoreFile(f *testing.F) {
	seed := &fileState{generation: 3, records: map[string]fileRecord{}, revocations: map[string]time.Time{"alice": time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}}
	raw, err := EncodeRecord(testRecord("abcd", "alice", time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)))
	if err != nil {
		f.Fatal(err)
	}
	seed.records["abcd"] = fileRecord{user: "alice", raw: raw}
	data, err := seed.encode()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(data)
	f.Add([]byte(`{"format":"amiproxy-minted-secrets","version":1,"generation":0,"records":[],"revocations":{}}`))
	f.Add([]byte(`{"format":"amiproxy-minted-secrets","version":1,"records":null}`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		st, err := decodeStoreFile(data)
		if err != nil {
			if len(data) >= 24 && strings.Contains(err.Error(), string(data[:24])) {
				t.Fatalf("error %q quotes the input", err)
			}
			return
		}
		out, err := st.encode()
		if err != nil {
			t.Fatalf("encode(decoded) error = %v", err)
		}
		st2, err := decodeStoreFile(out)
		if err != nil {
			t.Fatalf("decode(encode(decoded)) error = %v", err)
		}
		if st2.generation != st.generation || len(st2.records) != len(st.records) || len(st2.revocations) != len(st.revocations) {
			t.Fatalf("round trip changed the state")
		}
		for id, r := range st.records {
			r2, ok := st2.records[id]
			if !ok || r2.user != r.user {
				t.Fatalf("round trip lost record %s", id)
			}
			a, errA := DecodeRecord(r.raw)
			b, errB := DecodeRecord(r2.raw)
			if errA != nil || errB != nil {
				t.Fatalf("stored record does not decode: %v, %v", errA, errB)
			}
			ea, _ := EncodeRecord(a)
			eb, _ := EncodeRecord(b)
			if !bytes.Equal(ea, eb) {
				t.Fatalf("record %s changed in the round trip:\n%s\n%s", id, ea, eb)
			}
			if aad1, _ := sealAAD(a); true {
				if aad2, _ := sealAAD(b); !bytes.Equal(aad1, aad2) {
					t.Fatalf("record %s: seal binding changed in the round trip", id)
				}
			}
		}
		for u, at := range st.revocations {
			if !st2.revocations[u].Equal(at) {
				t.Fatalf("round trip changed the revocation of %q", u)
			}
		}
	})
}
