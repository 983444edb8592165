package redisstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/amiproxy/amiproxy/auth"
)

// record returns a valid record; Sealed is opaque to a Store.
func record(id, user string, created time.Time) auth.Record {
	return auth.Record{
		ID: id, Subject: "sub-" + user, Username: user, Groups: []string{"ops"},
		Claims: map[string]any{"extension": "1001"}, Label: "label " + id,
		Created: created.UTC(), Expires: created.Add(time.Hour).UTC(),
		Sealed: bytes.Repeat([]byte{1}, 1+12+20+16),
	}
}

func encoded(t *testing.T, r auth.Record) string {
	t.Helper()
	b, err := auth.EncodeRecord(r)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// testContract checks the auth.Store contract on a new, empty store.
func testContract(t *testing.T, open func(t *testing.T) auth.Store) {
	ctx := context.Background()
	t0 := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)

	t.Run("PutLoadDelete", func(t *testing.T) {
		s := open(t)
		v0, err := s.Version(ctx)
		if err != nil {
			t.Fatal(err)
		}
		snap, err := s.Load(ctx)
		if err != nil || snap.Version != v0 || len(snap.Records) != 0 || len(snap.Revocations) != 0 {
			t.Fatalf("empty Load = %+v, %v; want version %d and nothing", snap, err, v0)
		}
		a, b := record("aaaa", "Alice", t0), record("bbbb", "bob", t0)
		a.Claims = map[string]any{"n": 1, "nested": map[string]any{"x": []any{"y", true}}}
		v, err := s.Put(ctx, a)
		if err != nil || v != v0+1 {
			t.Fatalf("Put = %d, %v; want %d", v, err, v0+1)
		}
		if v, err = s.Put(ctx, b); err != nil || v != v0+2 {
			t.Fatalf("Put = %d, %v; want %d", v, err, v0+2)
		}
		dup := record("aaaa", "carol", t0)
		if _, err := s.Put(ctx, dup); !errors.Is(err, auth.ErrRecordExists) {
			t.Fatalf("Put of a taken ID = %v, want ErrRecordExists", err)
		}
		if v, _ := s.Version(ctx); v != v0+2 {
			t.Fatalf("version after a refused Put = %d, want %d", v, v0+2)
		}
		snap, err = s.Load(ctx)
		if err != nil || snap.Version != v0+2 || len(snap.Records) != 2 {
			t.Fatalf("Load = %+v, %v", snap, err)
		}
		for i, want := range []auth.Record{a, b} { // sorted by ID
			if got := encoded(t, snap.Records[i]); got != encoded(t, want) {
				t.Errorf("record %d = %s, want %s", i, got, encoded(t, want))
			}
		}
		// Copies: changing a snapshot changes nothing stored.
		snap.Records[0].Groups[0] = "changed"
		snap.Revocations["x"] = t0
		again, _ := s.Load(ctx)
		if again.Records[0].Groups[0] != "ops" || len(again.Revocations) != 0 {
			t.Fatal("Load returned shared state")
		}
		del, v, err := s.Delete(ctx, []string{"zzzz", "aaaa", "aaaa"})
		if err != nil || !slices.Equal(del, []string{"aaaa"}) || v != v0+3 {
			t.Fatalf("Delete = %v, %d, %v; want [aaaa], %d", del, v, err, v0+3)
		}
		del, v, err = s.Delete(ctx, []string{"aaaa", "nope"})
		if err != nil || len(del) != 0 || v != v0+3 {
			t.Fatalf("Delete of missing IDs = %v, %d, %v; want none, unchanged %d", del, v, err, v0+3)
		}
		// A deleted ID may be put again (IDs are random; the Minter never does).
		if v, err = s.Put(ctx, a); err != nil || v != v0+4 {
			t.Fatalf("Put after Delete = %d, %v", v, err)
		}
	})

	t.Run("RevokeUser", func(t *testing.T) {
		s := open(t)
		v0, _ := s.Version(ctx)
		for _, r := range []auth.Record{record("a1", "Alice", t0), record("a2", "alice", t0), record("a3", "ALICE2", t0), record("b1", "bob", t0)} {
			if _, err := s.Put(ctx, r); err != nil {
				t.Fatal(err)
			}
		}
		at := t0.Add(time.Minute)
		del, v, err := s.RevokeUser(ctx, "alice", at)
		if err != nil || !slices.Equal(del, []string{"a1", "a2"}) || v != v0+5 {
			t.Fatalf("RevokeUser = %v, %d, %v; want [a1 a2], %d", del, v, err, v0+5)
		}
		// An earlier time with nothing to delete changes nothing.
		del, v, err = s.RevokeUser(ctx, "alice", t0)
		if err != nil || len(del) != 0 || v != v0+5 {
			t.Fatalf("earlier RevokeUser = %v, %d, %v; want no change", del, v, err)
		}
		// The same time changes nothing either.
		if _, v, _ = s.RevokeUser(ctx, "alice", at); v != v0+5 {
			t.Fatalf("same-time RevokeUser bumped the version to %d", v)
		}
		// A user with no records: the revocation alone is a change.
		if del, v, err = s.RevokeUser(ctx, "nobody", at); err != nil || len(del) != 0 || v != v0+6 {
			t.Fatalf("RevokeUser(nobody) = %v, %d, %v; want none, %d", del, v, err, v0+6)
		}
		later := at.Add(time.Nanosecond) // nanosecond precision survives
		if _, v, _ = s.RevokeUser(ctx, "alice", later); v != v0+7 {
			t.Fatalf("later RevokeUser: version %d, want %d", v, v0+7)
		}
		snap, err := s.Load(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if got := snap.Revocations["alice"]; !got.Equal(later) {
			t.Errorf("alice revoked at %v, want %v", got, later)
		}
		if got := snap.Revocations["nobody"]; !got.Equal(at) {
			t.Errorf("nobody revoked at %v, want %v", got, at)
		}
		var ids []string
		for _, r := range snap.Records {
			ids = append(ids, r.ID)
		}
		if !slices.Equal(ids, []string{"a3", "b1"}) {
			t.Errorf("records left = %v, want [a3 b1]", ids)
		}
		for _, bad := range []struct {
			user string
			at   time.Time
		}{{"", at}, {"Alice", at}, {"alice", time.Time{}}} {
			if _, _, err := s.RevokeUser(ctx, bad.user, bad.at); err == nil {
				t.Errorf("RevokeUser(%q, %v) succeeded", bad.user, bad.at)
			}
		}
	})

	t.Run("Concurrent", func(t *testing.T) {
		s := open(t)
		v0, _ := s.Version(ctx)
		const n = 40
		var wg sync.WaitGroup
		versions := make([]uint64, n)
		errs := make([]error, n)
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				var err error
				if i%4 == 3 { // every fourth revokes a user of its own
					_, versions[i], err = s.RevokeUser(ctx, fmt.Sprintf("u%d", i), t0)
				} else {
					versions[i], err = s.Put(ctx, record(fmt.Sprintf("r%d", i), fmt.Sprintf("u%d", i), t0))
				}
				errs[i] = err
			}()
		}
		wg.Wait()
		if err := errors.Join(errs...); err != nil {
			t.Fatal(err)
		}
		slices.Sort(versions)
		for i, v := range versions {
			if v != v0+uint64(i)+1 {
				t.Fatalf("versions returned = %v, want each of %d..%d once", versions, v0+1, v0+n)
			}
		}
		snap, err := s.Load(ctx)
		if err != nil || snap.Version != v0+n || len(snap.Records) != n*3/4 || len(snap.Revocations) != n/4 {
			t.Fatalf("Load: version %d, %d records, %d revocations, %v", snap.Version, len(snap.Records), len(snap.Revocations), err)
		}
	})

	t.Run("Cancelled", func(t *testing.T) {
		s := open(t)
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		if _, err := s.Load(cctx); !errors.Is(err, context.Canceled) {
			t.Errorf("Load with a cancelled ctx = %v", err)
		}
		if _, err := s.Put(cctx, record("cc", "u", t0)); !errors.Is(err, context.Canceled) {
			t.Errorf("Put with a cancelled ctx = %v", err)
		}
		if snap, _ := s.Load(ctx); len(snap.Records) != 0 {
			t.Error("a cancelled Put stored its record")
		}
	})
}

func TestContractFileStore(t *testing.T) {
	testContract(t, func(t *testing.T) auth.Store {
		s, err := auth.OpenFileStore(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = s.Close() })
		return s
	})
}

func TestContractRedis(t *testing.T) {
	srv := startRedis(t)
	n := 0
	testContract(t, func(t *testing.T) auth.Store {
		n++ // each subtest its own prefix: an empty store in the same Redis
		return newStore(t, srv.Addr, Options{KeyPrefix: fmt.Sprintf("test%d:", n)})
	})
}
