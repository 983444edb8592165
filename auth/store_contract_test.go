package auth

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"
)

// testStoreContract checks that a Store keeps the contract documented on
// Store, which the Minter relies on. open returns a new, empty store that
// the test may use from several goroutines; two calls must return
// independent stores. A shared store (Redis) should pass it too: call it
// from that store's test with its own open function.
func testStoreContract(t *testing.T, open func(t *testing.T) Store) {
	ctx := context.Background()
	t0 := time.Date(2026, 5, 1, 12, 0, 0, 42, time.UTC)

	t.Run("empty", func(t *testing.T) {
		s := open(t)
		snap, err := s.Load(ctx)
		if err != nil || len(snap.Records) != 0 || len(snap.Revocations) != 0 {
			t.Fatalf("Load(empty) = %+v, %v", snap, err)
		}
		v, err := s.Version(ctx)
		if err != nil || v != snap.Version {
			t.Errorf("Version() = %d, %v, want %d (Load's)", v, err, snap.Version)
		}
	})

	t.Run("put, exactly one version per change", func(t *testing.T) {
		s := open(t)
		v0, _ := s.Version(ctx)
		r := testRecord("put1", "Alice", t0)
		v, err := s.Put(ctx, r)
		if err != nil || v != v0+1 {
			t.Fatalf("Put() = %d, %v, want %d, nil", v, err, v0+1)
		}
		if _, err := s.Put(ctx, testRecord("put1", "bob", t0)); !errors.Is(err, ErrRecordExists) {
			t.Errorf("Put(taken id) error = %v, want ErrRecordExists", err)
		}
		if now, _ := s.Version(ctx); now != v {
			t.Errorf("a refused Put changed the version from %d to %d", v, now)
		}
		snap, _ := s.Load(ctx)
		if len(snap.Records) != 1 {
			t.Fatalf("Load() = %d records, want 1", len(snap.Records))
		}
		// Exactly as put: the seal binding depends on it.
		want, _ := EncodeRecord(r)
		got, _ := EncodeRecord(snap.Records[0])
		if !bytes.Equal(got, want) {
			t.Errorf("record changed in the store:\n got %s\nwant %s", got, want)
		}
		snap.Records[0].Groups[0] = "changed"
		snap.Records[0].Claims["s"] = "changed"
		snap.Revocations["x"] = t0
		again, _ := s.Load(ctx)
		if again.Records[0].Groups[0] != "g" || again.Records[0].Claims["s"] != "v" || len(again.Revocations) != 0 {
			t.Error("changing a loaded snapshot changed the store")
		}
	})

	t.Run("delete", func(t *testing.T) {
		s := open(t)
		for _, id := range []string{"d1", "d2", "d3"} {
			if _, err := s.Put(ctx, testRecord(id, "u", t0)); err != nil {
				t.Fatal(err)
			}
		}
		v0, _ := s.Version(ctx)
		deleted, v, err := s.Delete(ctx, []string{"d3", "none", "d1"})
		slices.Sort(deleted)
		if err != nil || !slices.Equal(deleted, []string{"d1", "d3"}) || v != v0+1 {
			t.Errorf("Delete() = %v, %d, %v, want [d1 d3], %d, nil", deleted, v, err, v0+1)
		}
		deleted, v, err = s.Delete(ctx, []string{"none"})
		if err != nil || len(deleted) != 0 || v != v0+1 {
			t.Errorf("Delete(missing) = %v, %d, %v, want none, %d (unchanged), nil", deleted, v, err, v0+1)
		}
		snap, _ := s.Load(ctx)
		if len(snap.Records) != 1 || snap.Records[0].ID != "d2" {
			t.Errorf("after Delete: %d records, want only d2", len(snap.Records))
		}
	})

	t.Run("revoke user", func(t *testing.T) {
		s := open(t)
		for id, u := range map[string]string{"r1": "Alice", "r2": "ALICE", "r3": "alicE2", "r4": "bob"} {
			if _, err := s.Put(ctx, testRecord(id, u, t0)); err != nil {
				t.Fatal(err)
			}
		}
		v0, _ := s.Version(ctx)
		at := t0.Add(time.Hour)
		deleted, v, err := s.RevokeUser(ctx, "alice", at)
		slices.Sort(deleted)
		if err != nil || !slices.Equal(deleted, []string{"r1", "r2"}) || v != v0+1 {
			t.Errorf("RevokeUser(alice) = %v, %d, %v, want [r1 r2], %d, nil", deleted, v, err, v0+1)
		}
		if _, v2, _ := s.RevokeUser(ctx, "alice", t0); v2 != v {
			t.Errorf("RevokeUser(earlier time, nothing to delete) changed the version to %d", v2)
		}
		if _, v3, _ := s.RevokeUser(ctx, "carol", t0); v3 != v+1 {
			t.Errorf("RevokeUser(new user) version = %d, want %d", v3, v+1)
		}
		snap, _ := s.Load(ctx)
		if !snap.Revocations["alice"].Equal(at) || !snap.Revocations["carol"].Equal(t0) || len(snap.Records) != 2 {
			t.Errorf("after RevokeUser: revocations %v, %d records; want alice at %v, carol at %v, 2 records", snap.Revocations, len(snap.Records), at, t0)
		}
	})

	t.Run("concurrent changes", func(t *testing.T) {
		s := open(t)
		v0, _ := s.Version(ctx)
		const n = 16
		var wg sync.WaitGroup
		versions := make(chan uint64, n)
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				v, err := s.Put(ctx, testRecord(fmt.Sprintf("c%d", i), fmt.Sprintf("u%d", i%3), t0))
				if err != nil {
					t.Error(err)
				}
				versions <- v
			}()
		}
		wg.Wait()
		close(versions)
		var got []uint64
		for v := range versions {
			got = append(got, v)
		}
		slices.Sort(got)
		for i, v := range got {
			if v != v0+uint64(i)+1 {
				t.Fatalf("versions returned by concurrent Puts = %v, want %d..%d, each once", got, v0+1, v0+n)
			}
		}
		snap, _ := s.Load(ctx)
		if len(snap.Records) != n || snap.Version != v0+n {
			t.Errorf("after %d concurrent Puts: %d records, version %d", n, len(snap.Records), snap.Version)
		}
	})
}

func TestFileStoreContract(t *testing.T) {
	testStoreContract(t, func(t *testing.T) Store { return openMintStore(t, t.TempDir()) })
}
