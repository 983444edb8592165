package proxy

import (
	"bytes"
	"errors"
	"io"
	"testing"

	"github.com/amiproxy/amiproxy/rawman"
)

// chunkReader returns its data in reads of the sizes in sizes (cycled),
// as a TCP peer sending in pieces would.
type chunkReader struct {
	data  []byte
	sizes []byte
	i     int
}

func (c *chunkReader) Read(p []byte) (int, error) {
	if len(c.data) == 0 {
		return 0, io.EOF
	}
	n := len(c.data)
	if len(c.sizes) > 0 {
		n = int(c.sizes[c.i%len(c.sizes)]) + 1
		c.i++
	}
	n = min(n, len(p), len(c.data))
	copy(p, c.data[:n])
	c.data = c.data[n:]
	return n, nil
}

// readAll reads messages until an error other than a FrameError, and
// renders what it got: each message or framing error, then the final
// error.
func readAll(t *testing.T, read func() (rawman.Message, error)) string {
	t.Helper()
	var b bytes.Buffer
	for range 10000 {
		m, err := read()
		var fe *rawman.FrameError
		switch {
		case err == nil:
			out, aerr := rawman.Append(nil, m)
			if aerr != nil {
				b.WriteString("unencodable: " + aerr.Error() + "\n")
			}
			b.WriteString("msg " + string(out) + "\n")
		case errors.As(err, &fe):
			out, _ := rawman.Append(nil, fe.Message)
			b.WriteString("frame " + fe.Err.Error() + " " + string(out) + "\n")
		default:
			if errors.Is(err, io.ErrUnexpectedEOF) {
				b.WriteString("end unexpected EOF\n")
			} else {
				b.WriteString("end " + err.Error() + "\n")
			}
			return b.String()
		}
	}
	t.Fatal("reader never ended")
	return ""
}

// FuzzLazyReader checks that the lazy, pooled request reader sees exactly
// what a plain rawman.Reader sees, whatever the stream and however it is
// cut into reads, and that pooled readers carry nothing from one stream
// to the next (the same pool serves both runs of every input).
func FuzzLazyReader(f *testing.F) {
	f.Add([]byte("Action: Ping\r\nActionID: 1\r\n\r\nAction: Login\r\nUsername: a\r\nSecret: b\r\n\r\n"), []byte{0})
	f.Add([]byte("Action: Ping\r\n\r\n"), []byte{3, 200, 1})
	f.Add(bytes.Repeat([]byte("x"), 3000), []byte{255})
	f.Add(append(bytes.Repeat([]byte("Key: v\r\n"), 140), "\r\nAction: Ping\r\n\r\n"...), []byte{7, 90})
	f.Add([]byte("Action: A\r\nX: \x00\r\n\r\n\r\nAction: B\rC\r\n\r\nAction: C"), []byte{})
	f.Fuzz(func(t *testing.T, data, sizes []byte) {
		want := readAll(t, rawman.NewReader(bytes.NewReader(data)).ReadMessage)
		for range 2 { // the second run uses readers the first put back
			l := &lazyReader{conn: &chunkReader{data: data, sizes: sizes}}
			got := readAll(t, l.ReadMessage)
			l.drop()
			if got != want {
				t.Fatalf("lazy reader got\n%q\nwant\n%q", got, want)
			}
		}
	})
}

// An idle lazyReader holds no rawman.Reader: it goes back to the pool
// once a request is read and nothing more is buffered.
func TestLazyReaderIdleHoldsNoBuffer(t *testing.T) {
	pr, pw := io.Pipe()
	l := &lazyReader{conn: pr}
	go func() {
		_, _ = pw.Write([]byte("Action: Ping\r\n\r\nAction: Events\r\n"))
		_, _ = pw.Write([]byte("EventMask: off\r\n\r\n"))
	}()
	for _, want := range []string{"Ping", "Events"} {
		m, err := l.ReadMessage()
		if err != nil || m.Action() != want {
			t.Fatalf("ReadMessage = %v, %v; want %s", m, err, want)
		}
	}
	if l.cur != nil {
		t.Errorf("idle lazyReader still holds a rawman.Reader")
	}
	_ = pw.Close()
	if _, err := l.ReadMessage(); err != io.EOF {
		t.Errorf("ReadMessage at end = %v, want io.EOF", err)
	}
	// A stream that ends inside a request keeps its reader out of the pool.
	l = &lazyReader{conn: bytes.NewReader([]byte("Action: Pi"))}
	if _, err := l.ReadMessage(); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("ReadMessage of a cut request = %v, want unexpected EOF", err)
	}
	if l.cur == nil || !l.cur.src.err {
		t.Errorf("reader of a failed stream not marked failed")
	}
}
