package redisstore

import (
	"context"
	"fmt"
	"testing"
	"time"
)

// BenchmarkVersion is the cost of a Minter's poll (one MGET on loopback).
func BenchmarkVersion(b *testing.B) {
	srv := startRedisB(b)
	s := newStoreB(b, srv, Options{})
	ctx := context.Background()
	for b.Loop() {
		if _, err := s.Version(ctx); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkLoad1000 is a Minter's reload of a store of 1000 records.
func BenchmarkLoad1000(b *testing.B) {
	srv := startRedisB(b)
	s := newStoreB(b, srv, Options{})
	ctx := context.Background()
	now := time.Now()
	for i := range 1000 {
		if _, err := s.Put(ctx, record(fmt.Sprintf("r%d", i), fmt.Sprintf("user%d", i%50), now)); err != nil {
			b.Fatal(err)
		}
	}
	for b.Loop() {
		snap, err := s.Load(ctx)
		if err != nil || len(snap.Records) != 1000 {
			b.Fatal(len(snap.Records), err)
		}
	}
}

// BenchmarkPut is one mint's store write.
func BenchmarkPut(b *testing.B) {
	srv := startRedisB(b)
	s := newStoreB(b, srv, Options{})
	ctx := context.Background()
	now := time.Now()
	i := 0
	for b.Loop() {
		i++
		if _, err := s.Put(ctx, record(fmt.Sprintf("p%d", i), "bench", now)); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRevokeUser1000 revokes a user in a store of 1000 records of
// other users (the script scans the owners hash).
func BenchmarkRevokeUser1000(b *testing.B) {
	srv := startRedisB(b)
	s := newStoreB(b, srv, Options{})
	ctx := context.Background()
	now := time.Now()
	for i := range 1000 {
		if _, err := s.Put(ctx, record(fmt.Sprintf("r%d", i), fmt.Sprintf("user%d", i%50), now)); err != nil {
			b.Fatal(err)
		}
	}
	at := now
	for b.Loop() {
		at = at.Add(time.Millisecond)
		if _, _, err := s.RevokeUser(ctx, "victim", at); err != nil {
			b.Fatal(err)
		}
	}
}
