package auth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	jose "github.com/go-jose/go-jose/v4"
)

// Limits on what the provider sends.
const (
	maxDiscoveryBody = 256 << 10
	maxJWKSBody      = 1 << 20
	// minKeyRefresh spaces JWKS fetches caused by tokens that no cached
	// key verifies: without it, every forged token would cost the
	// provider one request (go-oidc's RemoteKeySet refetches on every
	// such failure). A key rotated in at the provider is picked up
	// within this time.
	minKeyRefresh = 10 * time.Second
)

// fetchDiscovery reads the provider's discovery document with a bounded
// body and checks that it names issuer exactly.
func fetchDiscovery(ctx context.Context, client *http.Client, issuer string) (*oidc.ProviderConfig, error) {
	u := trimSlash(issuer) + "/.well-known/openid-configuration"
	body, err := getBounded(ctx, client, u, maxDiscoveryBody)
	if err != nil {
		return nil, err
	}
	var pc oidc.ProviderConfig
	if err := json.Unmarshal(body, &pc); err != nil {
		return nil, fmt.Errorf("discovery document is not valid JSON: %w", err)
	}
	if pc.IssuerURL != issuer {
		return nil, fmt.Errorf("discovery document names issuer %q, configured %q (they must match exactly)", pc.IssuerURL, issuer)
	}
	if pc.JWKSURL == "" {
		return nil, errors.New("discovery document has no jwks_uri")
	}
	if err := checkProviderURL(pc.JWKSURL); err != nil {
		return nil, fmt.Errorf("discovery document's jwks_uri %q: %w", pc.JWKSURL, err)
	}
	return &pc, nil
}

func trimSlash(s string) string {
	for len(s) > 0 && s[len(s)-1] == '/' {
		s = s[:len(s)-1]
	}
	return s
}

// getBounded GETs u and returns at most limit bytes of a 200 answer.
func getBounded(ctx context.Context, client *http.Client, u string, limit int64) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", u, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s answered %s", u, resp.Status)
	}
	if int64(len(body)) > limit {
		return nil, fmt.Errorf("%s sent more than %d bytes", u, limit)
	}
	return body, nil
}

// keySet is the oidc.KeySet of an OIDC: the provider's JWKS, fetched on
// first use and again when a token's signature verifies with no cached
// key, at most once per minKeyRefresh. Fetches run in the caller's
// goroutine, bounded by its context and the HTTP client's timeout;
// concurrent callers that need a fetch wait for the one in progress.
type keySet struct {
	url    string
	client *http.Client
	algs   []jose.SignatureAlgorithm
	now    func() time.Time

	keys atomic.Pointer[[]jose.JSONWebKey]

	mu        sync.Mutex // serialises fetches
	lastFetch time.Time  // guarded by mu
}

var _ oidc.KeySet = (*keySet)(nil)

// VerifySignature implements oidc.KeySet: it returns the payload of raw
// if one of the provider's signing keys verifies its single signature.
func (k *keySet) VerifySignature(ctx context.Context, raw string) ([]byte, error) {
	jws, err := jose.ParseSigned(raw, k.algs)
	if err != nil {
		return nil, fmt.Errorf("oidc: malformed jwt: %w", err)
	}
	if len(jws.Signatures) != 1 {
		return nil, errors.New("oidc: jwt must carry exactly one signature")
	}
	if p, ok := verifyWith(jws, k.cached()); ok {
		return p, nil
	}
	keys, err := k.refresh(ctx)
	if err != nil {
		return nil, err
	}
	if p, ok := verifyWith(jws, keys); ok {
		return p, nil
	}
	return nil, errors.New("oidc: signature verifies with none of the provider's keys")
}

func (k *keySet) cached() []jose.JSONWebKey {
	if p := k.keys.Load(); p != nil {
		return *p
	}
	return nil
}

// verifyWith tries the signing keys that match the token's kid (all of
// them when it has none) and alg.
func verifyWith(jws *jose.JSONWebSignature, keys []jose.JSONWebKey) ([]byte, bool) {
	h := jws.Signatures[0].Header
	for i := range keys {
		key := &keys[i]
		if h.KeyID != "" && key.KeyID != h.KeyID {
			continue
		}
		if key.Algorithm != "" && key.Algorithm != h.Algorithm {
			continue
		}
		if p, err := jws.Verify(key); err == nil {
			return p, true
		}
	}
	return nil, false
}

// refresh fetches the JWKS unless a fetch happened within minKeyRefresh,
// and returns the keys now cached.
func (k *keySet) refresh(ctx context.Context) ([]jose.JSONWebKey, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	now := k.now()
	if !k.lastFetch.IsZero() && now.Sub(k.lastFetch) < minKeyRefresh {
		return k.cached(), nil
	}
	k.lastFetch = now
	body, err := getBounded(ctx, k.client, k.url, maxJWKSBody)
	if err != nil {
		return nil, fmt.Errorf("oidc: fetch signing keys: %w", err)
	}
	var set struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(body, &set); err != nil {
		return nil, fmt.Errorf("oidc: signing keys are not a JWK set: %w", err)
	}
	keys := make([]jose.JSONWebKey, 0, len(set.Keys))
	for _, raw := range set.Keys {
		var key jose.JSONWebKey
		if err := json.Unmarshal(raw, &key); err != nil {
			continue // a key type this verifier cannot use
		}
		if key.Use != "" && key.Use != "sig" {
			continue
		}
		if !key.IsPublic() {
			continue // never verify with a symmetric or private key
		}
		keys = append(keys, key)
	}
	k.keys.Store(&keys)
	return keys, nil
}
