package auth_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/amiproxy/amiproxy/auth"
)

// FuzzWebAPI feeds arbitrary bodies to the JSON API's mint and admin
// revoke endpoints. Bearer verification is replaced by a fixed identity
// (the token is not what is fuzzed); the Minter and its store are real.
// Invariants: no 5xx, no panic, a 201 only for a body whose ttl is empty
// or a positive duration within the maximum, and only JSON answers.
func FuzzWebAPI(f *testing.F) {
	for _, seed := range []string{
		``, `{}`, `{"ttl":"8h"}`, `{"ttl":"30m","label":"x"}`, `{"ttl":"-1h"}`, `{"ttl":"1000h"}`,
		`{"ttl":"1h","label":"` + strings.Repeat("a", 200) + `"}`, `{"bogus":1}`, `{"ttl":8}`, `[]`, `null`,
		`{"user":"admin"}`, `{"user":" x"}`, `{"user":"a\u0000b"}`, `{"user":""}`, "{\"ttl\":\"1h\"}{}",
	} {
		f.Add([]byte(seed), false)
		f.Add([]byte(seed), true)
	}
	store, err := auth.OpenFileStore(f.TempDir())
	if err != nil {
		f.Fatal(err)
	}
	defer store.Close()
	const maxTTL = 24 * time.Hour
	m, err := auth.NewMinter(auth.MinterConfig{Store: store, Key: bytes.Repeat([]byte{3}, auth.MintKeySize),
		MaxTTL: maxTTL, MaxPerUser: auth.MaxMaxPerUser, PollInterval: -1})
	if err != nil {
		f.Fatal(err)
	}
	defer m.Close()
	who := auth.Principal{Subject: "oidc:fuzz", Username: "fuzz", Groups: []string{"ami-admins"}, Method: auth.MethodOIDC}
	w, err := auth.NewWeb(auth.WebConfig{
		VerifyIDToken: func(context.Context, string, string) (auth.Principal, error) {
			return auth.Principal{}, errors.New("unused")
		},
		VerifyBearer: func(ctx context.Context, raw string) (auth.Principal, error) {
			p := who
			p.AuthTime = time.Now()
			return p, nil
		},
		Minter: m, AdminGroups: []string{"ami-admins"},
		RevokeUser: func(ctx context.Context, u string) (int, int, error) {
			n, err := m.RevokeUser(ctx, u)
			return n, 0, err
		},
	})
	if err != nil {
		f.Fatal(err)
	}
	defer w.Close()
	f.Fuzz(func(t *testing.T, body []byte, admin bool) {
		path := "/api/v1/secrets"
		if admin {
			path = "/api/v1/admin/revoke"
		}
		req := httptest.NewRequest(http.MethodPost, path, bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer x.y.z")
		rec := httptest.NewRecorder()
		w.ServeHTTP(rec, req)
		if rec.Code >= 500 {
			t.Fatalf("POST %s %q: %d %s", path, body, rec.Code, rec.Body)
		}
		if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
			t.Fatalf("POST %s: Content-Type %q", path, ct)
		}
		if admin || rec.Code != http.StatusCreated {
			return
		}
		var in struct{ TTL string }
		_ = json.Unmarshal(body, &in)
		if in.TTL != "" {
			d, err := time.ParseDuration(in.TTL)
			if err != nil || d <= 0 || d > maxTTL {
				t.Fatalf("minted with ttl %q", in.TTL)
			}
		}
		var res auth.MintResult
		if err := json.Unmarshal(rec.Body.Bytes(), &res); err != nil || !strings.HasPrefix(res.Secret, auth.SecretPrefix) {
			t.Fatalf("201 with %q: %v", rec.Body, err)
		}
		// Keep the store small: revoke what was minted.
		if err := m.Revoke(context.Background(), "fuzz", res.ID); err != nil {
			t.Fatal(err)
		}
	})
}
