package auth

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// writeBenchStore writes, in a new directory, a store file holding users
// x perUser sealed secrets (written at once: minting them one by one
// would rewrite the file users x perUser times) and returns the directory
// and the secrets.
func writeBenchStore(b *testing.B, clock *mintClock, users, perUser int) (string, [][]Secret) {
	b.Helper()
	sealer := newTestMinter(b, openMintStore(b, b.TempDir()), clock)
	st := &fileState{generation: 1, records: map[string]fileRecord{}, revocations: map[string]time.Time{}}
	secrets := make([][]Secret, users)
	for u := range users {
		username := fmt.Sprintf("user%04d", u)
		for range perUser {
			secret, err := newSecret()
			if err != nil {
				b.Fatal(err)
			}
			rec := Record{
				Subject: "oidc:bench#" + username, Username: username, Groups: []string{"ops"},
				Claims:  map[string]any{"extension": fmt.Sprint(1000 + u)},
				Created: clock.now(), Expires: clock.now().Add(DefaultMintTTL),
			}
			if rec.ID, err = newID(); err != nil {
				b.Fatal(err)
			}
			if rec.Claims, err = normaliseClaims(rec.Claims); err != nil {
				b.Fatal(err)
			}
			if rec.Sealed, err = sealer.seal(rec, secret); err != nil {
				b.Fatal(err)
			}
			raw, err := EncodeRecord(rec)
			if err != nil {
				b.Fatal(err)
			}
			st.records[rec.ID] = fileRecord{user: asciiLower(username), raw: raw}
			secrets[u] = append(secrets[u], Secret(secret))
		}
	}
	data, err := st.encode()
	if err != nil {
		b.Fatal(err)
	}
	dir := b.TempDir()
	if err := os.WriteFile(filepath.Join(dir, storeFileName), data, 0o600); err != nil {
		b.Fatal(err)
	}
	return dir, secrets
}

// BenchmarkMinterAuthenticate logs in against a Minter holding 1,000
// users x 5 secrets. Every Login tries max(MaxPerUser, 5) = 20
// candidates, so success, failure and unknown users cost the same.
func BenchmarkMinterAuthenticate(b *testing.B) {
	const users, perUser = 1000, 5
	clock := newMintClock()
	dir, secrets := writeBenchStore(b, clock, users, perUser)
	m := newTestMinter(b, openMintStore(b, dir), clock)
	ctx := context.Background()
	wrong := Secret(SecretPrefix + "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa")
	cases := []struct {
		name string
		cred func(i int) Credentials
		ok   bool
	}{
		{"plain", func(i int) Credentials {
			u := i % users
			return plainLogin(fmt.Sprintf("user%04d", u), secrets[u][i%perUser])
		}, true},
		{"md5", func(i int) Credentials {
			u := i % users
			return md5Login(fmt.Sprintf("user%04d", u), "123456789", secrets[u][i%perUser])
		}, true},
		{"plain-wrong", func(i int) Credentials { return plainLogin(fmt.Sprintf("user%04d", i%users), wrong) }, false},
		{"md5-unknown-user", func(i int) Credentials { return md5Login("nobody", "123456789", wrong) }, false},
	}
	for _, tc := range cases {
		b.Run(tc.name, func(b *testing.B) {
			creds := make([]Credentials, 4096)
			for i := range creds {
				creds[i] = tc.cred(i * 7)
			}
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				_, err := m.Authenticate(ctx, creds[i%len(creds)])
				if (err == nil) != tc.ok {
					b.Fatalf("Authenticate(%s) error = %v", tc.name, err)
				}
				i++
			}
		})
	}
}

// BenchmarkNewMinter measures a start-up with 5,000 stored secrets: read
// and check the file, decrypt every secret.
func BenchmarkNewMinter(b *testing.B) {
	clock := newMintClock()
	dir, _ := writeBenchStore(b, clock, 1000, 5)
	for b.Loop() {
		s, err := OpenFileStore(dir)
		if err != nil {
			b.Fatal(err)
		}
		m, err := NewMinter(MinterConfig{Store: s, Key: mintKey, Now: clock.now, PollInterval: -1})
		if err != nil {
			b.Fatal(err)
		}
		_ = m.Close()
		_ = s.Close()
	}
}

// BenchmarkMintFileStore measures Mint on a FileStore that already holds
// 5,000 secrets: each Mint rewrites and fsyncs the whole file.
func BenchmarkMintFileStore(b *testing.B) {
	clock := newMintClock()
	dir, _ := writeBenchStore(b, clock, 1000, 5)
	m := newTestMinter(b, openMintStore(b, dir), clock)
	p := alice(clock)
	i := 0
	for b.Loop() {
		p.Username = fmt.Sprintf("new%d", i)
		if _, err := m.Mint(context.Background(), p, 0, "bench"); err != nil {
			b.Fatal(err)
		}
		i++
	}
}
