package auth

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// FileStore file names inside its directory.
const (
	storeFileName = "minted.json"
	storeLockName = "minted.lock"
	storeFormat   = "amiproxy-minted-secrets"
	storeVersion  = 1
	maxStoreFile  = 256 << 20 // bytes; far above MaxPerUser x users x maxRecordLen in practice
)

// ErrStoreClosed is returned, wrapped, by a closed FileStore.
var ErrStoreClosed = errors.New("auth: minted store is closed")

// FileStore is a Store kept in one JSON file, minted.json, in a directory
// of its own, for a single proxy process. Several replicas need a shared
// Store instead: FileStore takes an exclusive lock (minted.lock, flock on
// Unix) so that a second process opening the same directory fails rather
// than silently losing the first one's revocations.
//
// Every change rewrites the file atomically: a temporary file in the same
// directory is written, fsynced and renamed over minted.json, and the
// directory is fsynced, so a crash leaves either the old or the new
// content. The file holds no plaintext secret (Record.Sealed is
// encrypted), but it does reveal usernames, groups, claims and labels: the
// directory is created 0700 and the file 0600, and OpenFileStore refuses an
// existing file that its group or others may read or write.
//
// The zero value is not usable; open one with OpenFileStore and Close it
// when done. A FileStore is safe for concurrent use and starts no
// goroutines. Its Version is a counter saved in the file, so it keeps
// increasing across restarts.
type FileStore struct {
	dir  string
	path string
	lock io.Closer // nil where file locking is unsupported

	version atomic.Uint64 // = st.generation, readable without mu
	gone    atomic.Bool   // = closed, readable without mu

	mu     sync.Mutex // guards st and closed, and serialises writes
	st     *fileState // replaced, never changed, on every write
	closed bool
}

// fileState is a FileStore's content. A fileState is never changed once
// published; a change builds a new one.
type fileState struct {
	generation  uint64
	records     map[string]fileRecord // by ID
	revocations map[string]time.Time  // folded username -> revoked at
}

// fileRecord is a record as kept: its JSON, and the folded username that
// RevokeUser matches.
type fileRecord struct {
	user string
	raw  json.RawMessage
}

// storeFile is the JSON layout of minted.json.
type storeFile struct {
	Format      string               `json:"format"`
	Version     int                  `json:"version"`
	Generation  uint64               `json:"generation"`
	Records     []json.RawMessage    `json:"records"`
	Revocations map[string]time.Time `json:"revocations"`
}

var _ Store = (*FileStore)(nil)

// OpenFileStore opens, or creates, the store in dir. dir is created
// (mode 0700) if missing; a missing minted.json is an empty store. An
// existing minted.json must be a regular file of mode 0600 or stricter,
// and must decode completely: a corrupt file is an error, never silently
// replaced by an empty store (that would resurrect nothing but would forget
// revocations). Leftover temporary files from an interrupted write are
// removed.
func OpenFileStore(dir string) (*FileStore, error) {
	if dir == "" {
		return nil, errors.New("auth: minted store: empty directory name")
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("auth: minted store: %w", err)
	}
	lock, err := lockDir(filepath.Join(dir, storeLockName))
	if err != nil {
		return nil, fmt.Errorf("auth: minted store %s: %w", dir, err)
	}
	s := &FileStore{dir: dir, path: filepath.Join(dir, storeFileName), lock: lock}
	st, err := s.read()
	if err != nil {
		if lock != nil {
			_ = lock.Close()
		}
		return nil, err
	}
	s.st = st
	s.version.Store(st.generation)
	if tmps, _ := filepath.Glob(filepath.Join(dir, "."+storeFileName+".*.tmp")); len(tmps) > 0 {
		for _, t := range tmps {
			_ = os.Remove(t)
		}
	}
	return s, nil
}

// read loads minted.json, or an empty state when it does not exist.
func (s *FileStore) read() (*fileState, error) {
	f, err := os.Open(s.path)
	if errors.Is(err, fs.ErrNotExist) {
		return &fileState{records: map[string]fileRecord{}, revocations: map[string]time.Time{}}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("auth: minted store: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("auth: minted store: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("auth: minted store %s: not a regular file", s.path)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("auth: minted store %s: mode %04o lets other users read or change it; want 0600 (chmod 600 %s)", s.path, perm, s.path)
	}
	data, err := io.ReadAll(io.LimitReader(f, maxStoreFile+1))
	if err != nil {
		return nil, fmt.Errorf("auth: minted store: %w", err)
	}
	if len(data) > maxStoreFile {
		return nil, fmt.Errorf("auth: minted store %s: larger than %d bytes", s.path, maxStoreFile)
	}
	st, err := decodeStoreFile(data)
	if err != nil {
		return nil, fmt.Errorf("auth: minted store %s is corrupt (restore it from a backup, or move it aside to start empty, which forgets every minted secret and revocation): %w", s.path, err)
	}
	return st, nil
}

// decodeStoreFile parses minted.json strictly: unknown fields, a wrong
// format or version, duplicate IDs or an invalid record are errors. Errors
// never quote the input.
func decodeStoreFile(data []byte) (*fileState, error) {
	var sf storeFile
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&sf); err != nil {
		return nil, jsonError(err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("trailing data after the JSON object")
	}
	if sf.Format != storeFormat {
		return nil, fmt.Errorf("format is not %q", storeFormat)
	}
	if sf.Version != storeVersion {
		return nil, fmt.Errorf("version %d, want %d", sf.Version, storeVersion)
	}
	st := &fileState{
		generation:  sf.Generation,
		records:     make(map[string]fileRecord, len(sf.Records)),
		revocations: make(map[string]time.Time, len(sf.Revocations)),
	}
	for i, raw := range sf.Records {
		r, err := DecodeRecord(raw)
		if err != nil {
			return nil, fmt.Errorf("records[%d]: %w", i, err)
		}
		if _, dup := st.records[r.ID]; dup {
			return nil, fmt.Errorf("records[%d]: duplicate id %s", i, r.ID)
		}
		compact, err := EncodeRecord(r) // one line, whatever the file's layout
		if err != nil {
			return nil, fmt.Errorf("records[%d]: %w", i, err)
		}
		st.records[r.ID] = fileRecord{user: asciiLower(r.Username), raw: compact}
	}
	for u, at := range sf.Revocations {
		if u == "" || u != asciiLower(u) || checkUsername(u) != nil || at.IsZero() {
			return nil, errors.New("revocations: invalid username or time")
		}
		st.revocations[u] = at
	}
	return st, nil
}

// encode returns st as minted.json: the storeFile layout, with one
// record per line, sorted by ID. The records' JSON is copied as it is
// (it is compact: EncodeRecord made it), so a change costs one copy of
// the file, not a re-encoding of every record.
func (st *fileState) encode() ([]byte, error) {
	rev, err := json.Marshal(st.revocations) // keys sorted
	if err != nil {
		return nil, err
	}
	size := 128 + len(rev)
	for _, r := range st.records {
		size += len(r.raw) + 2
	}
	b := make([]byte, 0, size)
	b = fmt.Appendf(b, "{\"format\":%q,\"version\":%d,\"generation\":%d,\n\"revocations\":%s,\n\"records\":[",
		storeFormat, storeVersion, st.generation, rev)
	for i, id := range sortedIDs(st.records) {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, '\n')
		b = append(b, st.records[id].raw...)
	}
	return append(b, "\n]}\n"...), nil
}

// next returns a copy of st, as the next generation, to change and commit.
func (st *fileState) next() *fileState {
	n := &fileState{
		generation:  st.generation + 1,
		records:     make(map[string]fileRecord, len(st.records)+1),
		revocations: cloneRevocations(st.revocations),
	}
	for id, r := range st.records {
		n.records[id] = r
	}
	return n
}

// commit writes n and publishes it. Called with s.mu held.
func (s *FileStore) commit(n *fileState) error {
	data, err := n.encode()
	if err != nil {
		return fmt.Errorf("auth: minted store: encode: %w", err)
	}
	if err := writeFileAtomic(s.dir, storeFileName, data); err != nil {
		return fmt.Errorf("auth: minted store: %w", err)
	}
	s.st = n
	s.version.Store(n.generation)
	return nil
}

// writeFileAtomic replaces dir/name with data: temporary file (0600),
// fsync, rename, fsync of the directory.
func writeFileAtomic(dir, name string, data []byte) (err error) {
	f, err := os.CreateTemp(dir, "."+name+".*.tmp") // mode 0600
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			_ = f.Close()
			_ = os.Remove(tmp)
		}
	}()
	if err = f.Chmod(0o600); err != nil {
		return err
	}
	if _, err = f.Write(data); err != nil {
		return err
	}
	if err = f.Sync(); err != nil {
		return err
	}
	if err = f.Close(); err != nil {
		return err
	}
	if err = os.Rename(tmp, filepath.Join(dir, name)); err != nil {
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err = d.Sync(); err != nil && !errors.Is(err, errors.ErrUnsupported) {
		return fmt.Errorf("fsync directory: %w", err)
	}
	return nil
}

// state returns the current state, or an error when the store is closed
// or ctx is done. Called with s.mu held.
func (s *FileStore) state(ctx context.Context) (*fileState, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("auth: minted store: %w", context.Cause(ctx))
	}
	if s.closed {
		return nil, ErrStoreClosed
	}
	return s.st, nil
}

// Load returns the whole content of the store.
func (s *FileStore) Load(ctx context.Context) (Snapshot, error) {
	s.mu.Lock()
	st, err := s.state(ctx)
	s.mu.Unlock()
	if err != nil {
		return Snapshot{}, err
	}
	snap := Snapshot{
		Version:     st.generation,
		Records:     make([]Record, 0, len(st.records)),
		Revocations: cloneRevocations(st.revocations),
	}
	for _, id := range sortedIDs(st.records) {
		r, err := DecodeRecord(st.records[id].raw)
		if err != nil { // cannot happen: records are checked when put or read
			return Snapshot{}, fmt.Errorf("auth: minted store: %w", err)
		}
		snap.Records = append(snap.Records, r)
	}
	return snap, nil
}

// Version returns the store's change counter. It takes no lock.
func (s *FileStore) Version(ctx context.Context) (uint64, error) {
	if err := ctx.Err(); err != nil {
		return 0, fmt.Errorf("auth: minted store: %w", context.Cause(ctx))
	}
	if s.gone.Load() {
		return 0, ErrStoreClosed
	}
	return s.version.Load(), nil
}

// Put inserts r and saves the file.
func (s *FileStore) Put(ctx context.Context, r Record) (uint64, error) {
	raw, err := EncodeRecord(r)
	if err != nil {
		return 0, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	st, err := s.state(ctx)
	if err != nil {
		return 0, err
	}
	if _, dup := st.records[r.ID]; dup {
		return 0, fmt.Errorf("%w: id %s", ErrRecordExists, r.ID)
	}
	n := st.next()
	n.records[r.ID] = fileRecord{user: asciiLower(r.Username), raw: raw}
	if err := s.commit(n); err != nil {
		return 0, err
	}
	return n.generation, nil
}

// Delete removes the records with the given IDs and saves the file if
// any existed.
func (s *FileStore) Delete(ctx context.Context, ids []string) ([]string, uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st, err := s.state(ctx)
	if err != nil {
		return nil, 0, err
	}
	var deleted []string
	for _, id := range ids {
		if _, ok := st.records[id]; ok && !slices.Contains(deleted, id) {
			deleted = append(deleted, id)
		}
	}
	if len(deleted) == 0 {
		return nil, st.generation, nil
	}
	n := st.next()
	for _, id := range deleted {
		delete(n.records, id)
	}
	if err := s.commit(n); err != nil {
		return nil, 0, err
	}
	return deleted, n.generation, nil
}

// RevokeUser deletes every record of username (already folded) and
// records the revocation time, in one write.
func (s *FileStore) RevokeUser(ctx context.Context, username string, at time.Time) ([]string, uint64, error) {
	if username == "" || username != asciiLower(username) || at.IsZero() {
		return nil, 0, errors.New("auth: minted store: revoke user: want a folded username and a time")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	st, err := s.state(ctx)
	if err != nil {
		return nil, 0, err
	}
	n := st.next()
	var deleted []string
	for _, id := range sortedIDs(st.records) {
		if st.records[id].user == username {
			deleted = append(deleted, id)
			delete(n.records, id)
		}
	}
	if prev, ok := n.revocations[username]; !ok || at.After(prev) {
		n.revocations[username] = at.UTC()
	} else if len(deleted) == 0 {
		return nil, st.generation, nil // nothing changes
	}
	if err := s.commit(n); err != nil {
		return nil, 0, err
	}
	return deleted, n.generation, nil
}

// Close releases the directory lock. Later calls fail with ErrStoreClosed.
// Close is idempotent.
func (s *FileStore) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	s.gone.Store(true)
	if s.lock != nil {
		return s.lock.Close()
	}
	return nil
}

// String names the store's file, for logs.
func (s *FileStore) String() string { return "file:" + s.path }
