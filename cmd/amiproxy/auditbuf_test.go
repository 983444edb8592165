package main

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

// lockedBuffer is a bytes.Buffer safe for the flusher goroutine.
type lockedBuffer struct {
	mu     sync.Mutex
	b      bytes.Buffer
	writes int
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.writes++
	return l.b.Write(p)
}

func (l *lockedBuffer) snapshot() (string, int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String(), l.writes
}

func TestBufferedWriterBatchesAndFlushes(t *testing.T) {
	var dst lockedBuffer
	w := newBufferedWriter(&dst)
	var want strings.Builder
	for i := range 1000 {
		line := fmt.Sprintf("{\"msg\":\"ami.action\",\"n\":%d}\n", i)
		want.WriteString(line)
		if _, err := w.Write([]byte(line)); err != nil {
			t.Fatal(err)
		}
	}
	// Lines reach the file by themselves, without Close, and batched.
	deadline := time.Now().Add(10 * time.Second)
	for {
		got, writes := dst.snapshot()
		if got == want.String() {
			if writes > 10 {
				t.Errorf("1000 lines took %d writes, want a few", writes)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 10 s the file holds %d of %d bytes", len(got), want.Len())
		}
		time.Sleep(20 * time.Millisecond)
	}
	// A line bigger than the buffer is written whole, in order.
	big := strings.Repeat("x", auditBufferSize+10) + "\n"
	_, _ = w.Write([]byte("a\n"))
	_, _ = w.Write([]byte(big))
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if got, _ := dst.snapshot(); !strings.HasSuffix(got, "a\n"+big) {
		t.Error("the lines written before Close are not all there, in order")
	}
	if err := w.Close(); err != nil { // idempotent
		t.Fatal(err)
	}
}

type failingWriter struct{}

func (failingWriter) Write([]byte) (int, error) { return 0, errors.New("disk full") }

func TestBufferedWriterReportsErrors(t *testing.T) {
	w := newBufferedWriter(failingWriter{})
	_, _ = w.Write([]byte("line\n"))
	if err := w.Close(); err == nil || !strings.Contains(err.Error(), "disk full") {
		t.Errorf("Close() = %v, want the write error", err)
	}
	if _, err := w.Write([]byte("more\n")); err == nil {
		t.Error("Write after a failed flush succeeded")
	}
}
