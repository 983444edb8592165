package transcript

import (
	"path/filepath"
	"testing"
)

func TestLoadAllRecordings(t *testing.T) {
	files, err := filepath.Glob("../../testdata/transcripts/*.txt")
	if err != nil || len(files) < 20 {
		t.Fatalf("Glob = %d files, %v; want the recordings in testdata/transcripts", len(files), err)
	}
	for _, path := range files {
		if filepath.Base(path) == "http-curl-i-rawman.txt" {
			continue // curl -i output, a different format
		}
		f, err := Load(path)
		if err != nil {
			t.Errorf("Load(%s) = %v", path, err)
			continue
		}
		if len(f.Stream("C->S", "")) == 0 || len(f.Stream("S->C", "")) == 0 {
			t.Errorf("Load(%s): a direction is empty", path)
		}
	}
}

func TestParseMarker(t *testing.T) {
	raw := "# title\n\n#### S->C[mon] +0.003s 5 bytes\nab\ncd\n#### NOTE +1.0s hello\n#### C->S +1.5s 0 bytes\n\n#### CLOSE +2.0s Asterisk closed\n"
	f, err := Parse([]byte(raw))
	if err != nil {
		t.Fatal(err)
	}
	if len(f.Blocks) != 4 {
		t.Fatalf("Parse: %d blocks, want 4", len(f.Blocks))
	}
	if b := f.Blocks[0]; b.Dir != "S->C" || b.Conn != "mon" || string(b.Data) != "ab\ncd" || b.Time != 0.003 {
		t.Errorf("block 0 = %+v", b)
	}
	if b := f.Blocks[1]; b.Dir != "NOTE" || string(b.Data) != "+1.0s hello" || b.Time != 1.0 {
		t.Errorf("block 1 = %+v (data %q)", b, b.Data)
	}
	if got := f.Comments; len(got) != 1 || got[0] != "# title" {
		t.Errorf("Comments = %q", got)
	}
	if _, err := Parse([]byte("#### S->C +0s 99 bytes\nshort\n")); err == nil {
		t.Error("Parse accepted a block longer than the file")
	}
}
