package auth

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"time"
	"unicode/utf8"
)

// Record is one minted secret as a Store keeps it. The secret itself is
// only in Sealed, encrypted with AES-256-GCM under the Minter's key; the
// other fields are plaintext, so a Store (and whoever can read it) sees
// who minted what and when, but never a usable secret. Sealed's additional
// data binds every other field, so a record whose fields were altered or
// swapped with another record's cannot be opened.
//
// Records are immutable: a Store inserts and deletes them but never
// updates one. Claims must survive a JSON round trip decoded with
// json.Decoder.UseNumber (as encoding/json's Marshal of the record
// produces and DecodeRecord reads): the sealing covers their JSON.
type Record struct {
	ID       string         `json:"id"`      // public, random; see Info.ID
	Subject  string         `json:"subject"` // the minting identity's Principal.Subject
	Username string         `json:"username"`
	Groups   []string       `json:"groups,omitempty"`
	Claims   map[string]any `json:"claims,omitempty"`
	Label    string         `json:"label,omitempty"`
	Created  time.Time      `json:"created"`
	Expires  time.Time      `json:"expires"`
	Sealed   []byte         `json:"sealed"` // version byte, nonce, AES-256-GCM ciphertext and tag
}

// Snapshot is a Store's whole content at one Version.
type Snapshot struct {
	Version uint64
	Records []Record
	// Revocations maps a username, folded to ASCII lower case, to the
	// time of its latest RevokeUser.
	Revocations map[string]time.Time
}

// Store persists minted-secret records and user revocations for a Minter.
// FileStore keeps them in one file for a single proxy process; a shared
// store (Redis, a database) lets several proxy replicas see each other's
// mints and revocations.
//
// Contract, for implementers:
//   - Every change (Put, a Delete or RevokeUser that changed something)
//     increases the version by exactly one, atomically with the change, so
//     a Minter that sees the version it last knew plus one after its own
//     change knows it missed nothing, and otherwise reloads. Version must
//     be cheap: a Minter polls it about once a second.
//   - Put inserts; it fails with an error wrapping ErrRecordExists when the
//     ID is taken, and never replaces a record.
//   - RevokeUser deletes every record whose Username folds (ASCII case) to
//     username, and records the revocation time max(previous, at), in one
//     atomic step. username is already folded.
//   - Delete and RevokeUser return the IDs they deleted (possibly none) and
//     ignore IDs that do not exist.
//   - Load and every method return copies: the caller may keep or change
//     them. Records must decode exactly as they were put (DecodeRecord
//     and EncodeRecord are the reference codec).
//   - Methods are safe for concurrent use and honour ctx for I/O.
type Store interface {
	Load(ctx context.Context) (Snapshot, error)
	Version(ctx context.Context) (uint64, error)
	Put(ctx context.Context, r Record) (version uint64, err error)
	Delete(ctx context.Context, ids []string) (deleted []string, version uint64, err error)
	RevokeUser(ctx context.Context, username string, at time.Time) (deleted []string, version uint64, err error)
}

// ErrRecordExists is returned, wrapped, by Store.Put for a taken ID.
var ErrRecordExists = errors.New("auth: minted secret record already exists")

// Limits on what a Record may hold, so a store stays small and a record
// read back from it cannot exhaust memory.
const (
	maxIDLen      = 32
	maxLabelLen   = 100
	maxSubjectLen = 1024
	maxGroups     = 256
	maxGroupLen   = 256
	maxClaimsLen  = 16 << 10 // bytes of the claims' JSON
	maxSealedLen  = 1 + 12 + 128 + 16
	maxRecordLen  = 64 << 10 // bytes of one encoded record
)

// EncodeRecord returns r's JSON, the form in which stores keep it.
func EncodeRecord(r Record) ([]byte, error) {
	if err := checkRecord(r); err != nil {
		return nil, err
	}
	b, err := json.Marshal(r)
	if err != nil {
		return nil, fmt.Errorf("auth: minted record %s: encode: %w", r.ID, err)
	}
	if len(b) > maxRecordLen { // DecodeRecord would refuse it
		return nil, fmt.Errorf("auth: minted record %s: %d bytes encoded, more than the limit of %d (too many groups or claims)", r.ID, len(b), maxRecordLen)
	}
	return b, nil
}

// DecodeRecord parses and checks a record encoded by EncodeRecord. Numbers
// in Claims decode as json.Number, so the record re-encodes to the same
// JSON and its seal still opens. Errors never quote the input.
func DecodeRecord(data []byte) (Record, error) {
	if len(data) > maxRecordLen {
		return Record{}, fmt.Errorf("auth: minted record: %d bytes, more than the limit of %d", len(data), maxRecordLen)
	}
	var r Record
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	dec.DisallowUnknownFields()
	if err := dec.Decode(&r); err != nil {
		return Record{}, fmt.Errorf("auth: minted record: %w", jsonError(err))
	}
	if _, err := dec.Token(); err != io.EOF {
		return Record{}, errors.New("auth: minted record: trailing data after the JSON object")
	}
	if err := checkRecord(r); err != nil {
		return Record{}, err
	}
	return r, nil
}

// jsonError keeps the position and kind of a JSON syntax or type error
// but drops any quoted input, which could be a misplaced secret.
func jsonError(err error) error {
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return fmt.Errorf("invalid JSON at byte %d", se.Offset)
	}
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		return fmt.Errorf("field %q has the wrong JSON type (%s)", te.Field, te.Value)
	}
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return errors.New("truncated JSON")
	}
	return errors.New("invalid JSON (unknown field or malformed value)")
}

// checkRecord validates the fields of a record, naming it by ID.
func checkRecord(r Record) error {
	if err := checkID(r.ID); err != nil {
		return fmt.Errorf("auth: minted record: id: %w", err)
	}
	where := "auth: minted record " + r.ID
	if err := checkUsername(r.Username); err != nil {
		return fmt.Errorf("%s: username: %w", where, err)
	}
	if len(r.Username) > maxUsernameLen {
		return fmt.Errorf("%s: username longer than %d bytes", where, maxUsernameLen)
	}
	if !utf8.ValidString(r.Subject) || !utf8.ValidString(r.Username) {
		return fmt.Errorf("%s: subject or username is not valid UTF-8", where)
	}
	if len(r.Subject) > maxSubjectLen {
		return fmt.Errorf("%s: subject longer than %d bytes", where, maxSubjectLen)
	}
	if err := checkLabel(r.Label); err != nil {
		return fmt.Errorf("%s: label: %w", where, err)
	}
	if len(r.Groups) > maxGroups {
		return fmt.Errorf("%s: %d groups, more than %d", where, len(r.Groups), maxGroups)
	}
	for i, g := range r.Groups {
		if g == "" || len(g) > maxGroupLen || !utf8.ValidString(g) {
			return fmt.Errorf("%s: groups[%d]: empty, longer than %d bytes, or not valid UTF-8", where, i, maxGroupLen)
		}
	}
	if r.Created.IsZero() || r.Expires.IsZero() || !r.Expires.After(r.Created) {
		return fmt.Errorf("%s: expiry must be after creation, and both set", where)
	}
	if len(r.Sealed) == 0 || len(r.Sealed) > maxSealedLen {
		return fmt.Errorf("%s: sealed secret is %d bytes, want 1-%d", where, len(r.Sealed), maxSealedLen)
	}
	return nil
}

// maxUsernameLen is the longest AMI username Asterisk stores (char
// username[80] in struct mansession_session).
const maxUsernameLen = 79

// checkID accepts the IDs newID makes and similar ones: 1-32 characters
// from a-z and 0-9.
func checkID(id string) error {
	if id == "" || len(id) > maxIDLen {
		return fmt.Errorf("want 1-%d characters, got %d", maxIDLen, len(id))
	}
	for i := 0; i < len(id); i++ {
		if c := id[i]; !('a' <= c && c <= 'z' || '0' <= c && c <= '9') {
			return fmt.Errorf("invalid character at offset %d (want a-z, 0-9)", i)
		}
	}
	return nil
}

// checkLabel accepts printable UTF-8 of at most maxLabelLen bytes.
func checkLabel(l string) error {
	if len(l) > maxLabelLen {
		return fmt.Errorf("%d bytes, more than %d", len(l), maxLabelLen)
	}
	if !utf8.ValidString(l) {
		return errors.New("not valid UTF-8")
	}
	for i, r := range l {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) {
			return fmt.Errorf("control character at offset %d", i)
		}
	}
	return nil
}

// cloneRevocations copies a revocation map (nil stays an empty map).
func cloneRevocations(m map[string]time.Time) map[string]time.Time {
	out := make(map[string]time.Time, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// sortedIDs returns the keys of m in order, for deterministic output.
func sortedIDs[V any](m map[string]V) []string {
	ids := make([]string, 0, len(m))
	for id := range m {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}
