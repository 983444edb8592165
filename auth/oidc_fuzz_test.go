package auth

import (
	"encoding/base64"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
)

// refLooksLikeJWT is a plain reference for LooksLikeJWT: split, decode
// every segment strictly as unpadded base64url, read the header as a map.
func refLooksLikeJWT(s string) bool {
	if len(s) > MaxTokenLen {
		return false
	}
	parts := strings.Split(s, ".")
	if len(parts) != 3 || parts[0] == "" || parts[1] == "" {
		return false
	}
	var hdr []byte
	for i, p := range parts {
		if strings.ContainsAny(p, "=+/\r\n") {
			return false
		}
		b, err := base64.RawURLEncoding.DecodeString(p)
		if err != nil {
			return false
		}
		if i == 0 {
			hdr = b
		}
	}
	if len(hdr) > maxJWTHeader {
		return false
	}
	var m map[string]any
	if json.Unmarshal(hdr, &m) != nil {
		return false
	}
	alg, ok := m["alg"].(string)
	return ok && alg != ""
}

func FuzzLooksLikeJWT(f *testing.F) {
	for _, s := range []string{
		"eyJhbGciOiJSUzI1NiJ9.e30.c2ln",
		"eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.",
		"eyJBTEciOiJSUzI1NiJ9.e30.c2ln", // {"ALG":...}
		"eyJhbGciOm51bGx9.e30.c2ln",     // alg null
		"a.b.c", "...", "e30.e30.e30", "hunter2",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, want := LooksLikeJWT(s), refLooksLikeJWT(s)
		if got != want {
			t.Fatalf("LooksLikeJWT(%q) = %v, reference says %v", s, got, want)
		}
	})
}

// FuzzClaims feeds arbitrary payloads to the claim extraction: it must
// not panic, must find a username only when the claim is a clean string,
// and its deep copy must equal the original and share nothing with it.
func FuzzClaims(f *testing.F) {
	for _, s := range []string{
		`{"preferred_username":"alice","groups":["a","b"],"n":1e400}`,
		`{"preferred_username":"al\u0000ice","groups":"ops"}`,
		`{"preferred_username":7,"groups":[1]}`,
		`{"groups":{"a":[{"b":null}]}}`,
		`[]`, `null`, `{"a":1}{"b":2}`,
	} {
		f.Add([]byte(s))
	}
	o := &OIDC{cfg: OIDCConfig{UsernameClaim: DefaultUsernameClaim, GroupsClaim: DefaultGroupsClaim}}
	f.Fuzz(func(t *testing.T, payload []byte) {
		claims, err := decodeClaims(payload)
		if err != nil {
			return
		}
		cp := copyJSON(claims).(map[string]any)
		if !reflect.DeepEqual(cp, claims) {
			t.Fatalf("copyJSON changed the claims: %v vs %v", cp, claims)
		}
		ref := copyJSON(claims)
		clobber(cp)
		if !reflect.DeepEqual(ref, claims) {
			t.Fatalf("changing a copy changed the original: %v", claims)
		}
		user, groups, err := o.identity(claims)
		if err != nil {
			return
		}
		if user == "" || checkUsername(user) != nil || claims[DefaultUsernameClaim] != user {
			t.Fatalf("identity accepted username %q", user)
		}
		for _, g := range groups {
			if g == "" {
				t.Fatalf("identity returned an empty group from %v", claims[DefaultGroupsClaim])
			}
		}
	})
}

// clobber overwrites every element of maps and slices, recursively.
func clobber(v any) {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			clobber(e)
			x[k] = "clobbered"
		}
	case []any:
		for i, e := range x {
			clobber(e)
			x[i] = "clobbered"
		}
	}
}

func BenchmarkLooksLikeJWT(b *testing.B) {
	s := "eyJhbGciOiJSUzI1NiIsImtpZCI6InJzYTEiLCJ0eXAiOiJKV1QifQ." + strings.Repeat("e30", 200) + ".c2ln"
	for b.Loop() {
		if !LooksLikeJWT(s) {
			b.Fatal("not a JWT")
		}
	}
}
