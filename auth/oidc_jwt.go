package auth

import (
	"encoding/base64"
	"encoding/json"
	"strings"
)

// maxJWTHeader bounds the decoded JOSE header LooksLikeJWT parses.
const maxJWTHeader = 2048

// LooksLikeJWT reports whether s has the shape of a JWS compact
// serialisation: at most MaxTokenLen bytes, three dot-separated base64url
// segments without padding (the third, the signature, may be empty, so
// that an unsigned "alg: none" token is still recognised and then
// refused by verification), and a header that decodes to a JSON object
// with a non-empty string "alg". It checks shape only, never a signature:
// use it to route a credential, not to trust one.
func LooksLikeJWT(s string) bool {
	if len(s) > MaxTokenLen {
		return false
	}
	h, rest, ok := strings.Cut(s, ".")
	if !ok {
		return false
	}
	p, sig, ok := strings.Cut(rest, ".")
	if !ok || strings.Contains(sig, ".") {
		return false
	}
	if h == "" || p == "" || !isBase64URL(h) || !isBase64URL(p) || !isBase64URL(sig) {
		return false
	}
	if base64.RawURLEncoding.DecodedLen(len(h)) > maxJWTHeader {
		return false
	}
	hdr, err := base64.RawURLEncoding.DecodeString(h)
	if err != nil {
		return false
	}
	// A map, not a struct: struct decoding would match "ALG" too.
	var head map[string]json.RawMessage
	if err := json.Unmarshal(hdr, &head); err != nil {
		return false
	}
	var alg string
	return json.Unmarshal(head["alg"], &alg) == nil && alg != ""
}

// isBase64URL reports whether s uses only the unpadded base64url alphabet
// and has a length such a string can have.
func isBase64URL(s string) bool {
	if len(s)%4 == 1 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'A' <= c && c <= 'Z', 'a' <= c && c <= 'z', '0' <= c && c <= '9', c == '-', c == '_':
		default:
			return false
		}
	}
	return true
}
