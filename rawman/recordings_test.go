package rawman

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/amiproxy/amiproxy/internal/transcript"
)

// recordingsDir holds the byte-exact captures of a real Asterisk 22.10.1.
const recordingsDir = "../testdata/transcripts"

// loadRecordings loads every recording whose file name starts with prefix.
func loadRecordings(t testing.TB, prefix string) []*transcript.File {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join(recordingsDir, prefix+"*.txt"))
	if err != nil || len(paths) == 0 {
		t.Fatalf("no recordings %s* in %s: %v", prefix, recordingsDir, err)
	}
	var out []*transcript.File
	for _, p := range paths {
		if strings.HasSuffix(p, "http-curl-i-rawman.txt") {
			continue
		}
		f, err := transcript.Load(p)
		if err != nil {
			t.Fatal(err)
		}
		f.Name = filepath.Base(p)
		out = append(out, f)
	}
	return out
}
