package proxy

import (
	"io"
	"sync"

	"github.com/amiproxy/amiproxy/rawman"
)

// lazyReadPrefix is the size of the small buffer an idle session waits on:
// most requests (Ping, a Login, a short action) fit in it whole, so the
// first read after an idle spell costs no extra system call.
const lazyReadPrefix = 512

// lazyReader reads client requests like rawman.NewReader, but holds no
// read buffer while the client is idle. Between requests, when the
// rawman.Reader has nothing buffered, it goes back to a pool shared by all
// sessions; the next Read waits on a lazyReadPrefix-byte buffer, and only
// when bytes arrive does a pooled rawman.Reader (4 KiB window plus its
// message scratch) take them, followed by the rest of the stream.
//
// A rawman.Reader is returned to the pool only in a state where it is
// indistinguishable from a new one: after a message parsed without error
// (which leaves no framing state such as a too-long line behind), with
// nothing buffered and no error seen from the stream. The messages it
// returned never alias its buffers.
//
// A lazyReader is used by one goroutine (readLoop); the pool is safe for
// concurrent use.
type lazyReader struct {
	conn   io.Reader
	prefix []byte // allocated on first use, lazyReadPrefix bytes
	cur    *pooledReader
}

// pooledReader is a rawman.Reader over a source whose stream can be set.
type pooledReader struct {
	src *prefixSource
	r   *rawman.Reader
}

// prefixSource yields pre, then reads from conn. err records whether conn
// ever failed, which keeps the reader (and bufio's sticky error) out of
// the pool.
type prefixSource struct {
	pre  []byte
	conn io.Reader
	err  bool
}

func (s *prefixSource) Read(p []byte) (int, error) {
	if len(s.pre) > 0 {
		n := copy(p, s.pre)
		s.pre = s.pre[n:]
		return n, nil
	}
	n, err := s.conn.Read(p)
	if err != nil {
		s.err = true
	}
	return n, err
}

var requestReaders = sync.Pool{New: func() any {
	s := &prefixSource{}
	return &pooledReader{src: s, r: rawman.NewReader(s)}
}}

// ReadMessage is rawman.Reader.ReadMessage on the client's stream.
func (l *lazyReader) ReadMessage() (rawman.Message, error) {
	if l.cur == nil {
		if l.prefix == nil {
			l.prefix = make([]byte, lazyReadPrefix)
		}
		n, err := l.conn.Read(l.prefix)
		for n == 0 && err == nil {
			n, err = l.conn.Read(l.prefix)
		}
		if n == 0 {
			if err == io.EOF {
				return rawman.Message{}, io.EOF
			}
			return rawman.Message{}, err
		}
		pr := requestReaders.Get().(*pooledReader)
		pr.src.pre, pr.src.conn, pr.src.err = l.prefix[:n], l.conn, false
		if err != nil {
			// Data and an error at once: the error comes after the data,
			// from the stream, and the reader is never pooled again.
			pr.src.conn = errReader{err}
		}
		l.cur = pr
	}
	m, err := l.cur.r.ReadMessage()
	if err == nil && l.cur.r.Buffered() == 0 && len(l.cur.src.pre) == 0 && !l.cur.src.err {
		l.release()
	}
	return m, err
}

// Buffered reports how many bytes were read from the stream and not yet
// consumed: requests the client pipelined.
func (l *lazyReader) Buffered() int {
	if l.cur == nil {
		return 0
	}
	return l.cur.r.Buffered() + len(l.cur.src.pre)
}

// release gives the current rawman.Reader back to the pool when it is
// clean (see lazyReader); otherwise it drops it.
func (l *lazyReader) release() {
	pr := l.cur
	if pr == nil {
		return
	}
	l.cur = nil
	clean := pr.r.Buffered() == 0 && len(pr.src.pre) == 0 && !pr.src.err
	pr.src.pre, pr.src.conn = nil, nil
	if clean {
		requestReaders.Put(pr)
	}
}

// drop lets go of the current rawman.Reader without pooling it: the
// session ended, perhaps after a framing error that leaves state behind.
func (l *lazyReader) drop() {
	if l.cur != nil {
		l.cur.src.pre, l.cur.src.conn = nil, nil
		l.cur = nil
	}
}

// errReader returns err on every Read.
type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }
