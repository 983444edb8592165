package auth

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
)

// GenerateKeyFile writes a new MintKeySize-byte random key to path, base64
// encoded on one line, in a new file of mode 0600. It never overwrites:
// replacing the key would make every stored secret unusable, so an
// existing file is an error.
func GenerateKeyFile(path string) error {
	var key [MintKeySize]byte
	if _, err := rand.Read(key[:]); err != nil {
		return fmt.Errorf("auth: generate key: %w", err)
	}
	defer clear(key[:])
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("auth: generate key: %w", err)
	}
	line := base64.StdEncoding.EncodeToString(key[:]) + "\n"
	if _, err := io.WriteString(f, line); err != nil {
		_ = f.Close()
		_ = os.Remove(path)
		return fmt.Errorf("auth: generate key: %w", err)
	}
	if err := f.Sync(); err != nil {
		_ = f.Close()
		_ = os.Remove(path)
		return fmt.Errorf("auth: generate key: %w", err)
	}
	if err := f.Close(); err != nil {
		_ = os.Remove(path)
		return fmt.Errorf("auth: generate key: %w", err)
	}
	return nil
}

// LoadKey reads the key at path: either exactly MintKeySize raw bytes, or
// their base64 (standard or URL alphabet, padded or not, surrounding
// whitespace ignored), as GenerateKeyFile writes. The file must not be
// accessible to group or others (mode 0600 or 0400): LoadKey refuses it
// otherwise. Errors never quote the file's content.
func LoadKey(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("auth: mint key: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("auth: mint key: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("auth: mint key %s: not a regular file", path)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("auth: mint key %s: mode %04o lets other users read or change it; want 0600 or 0400 (chmod 600 %s)", path, perm, path)
	}
	data, err := io.ReadAll(io.LimitReader(f, 1024))
	if err != nil {
		return nil, fmt.Errorf("auth: mint key %s: %w", path, err)
	}
	defer clear(data)
	if len(data) == MintKeySize {
		return bytes.Clone(data), nil
	}
	key, err := ParseKey(string(data))
	if err != nil {
		return nil, fmt.Errorf("auth: mint key %s: %w", path, err)
	}
	return key, nil
}

// ParseKey decodes a base64 key (standard or URL alphabet, padded or
// not, surrounding whitespace ignored) of MintKeySize bytes, for a key
// given in an environment variable. Errors never quote s.
func ParseKey(s string) ([]byte, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, errors.New("auth: mint key: empty")
	}
	// 64 hex digits: a 32-byte key written by `openssl rand -hex 32`. It
	// cannot be mistaken for base64, whose 32-byte form has 43-44 chars.
	if len(s) == 2*MintKeySize {
		if key, err := hex.DecodeString(s); err == nil {
			return key, nil
		}
	}
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		key, err := enc.DecodeString(s)
		if err != nil {
			continue
		}
		if len(key) != MintKeySize {
			clear(key)
			return nil, fmt.Errorf("auth: mint key: decodes to %d bytes, want %d (make one with 32 random bytes, base64)", len(key), MintKeySize)
		}
		return key, nil
	}
	return nil, fmt.Errorf("auth: mint key: not base64 of %d bytes", MintKeySize)
}
