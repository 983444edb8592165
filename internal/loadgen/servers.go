package loadgen

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
)

// Banner is the banner ServeEcho and ServeBlast send.
const Banner = "Asterisk Call Manager/11.0.0\r\n"

// ServeEcho is the driver's ceiling for actions: a server that answers
// every request with "Response: Success" and its ActionID, parsing only
// the ActionID line, so that a driver can show it does far more than the
// paths it measures. It serves until ctx ends or ln fails and returns
// after every connection goroutine has exited.
func ServeEcho(ctx context.Context, ln net.Listener) error {
	return serveEach(ctx, ln, echoConn)
}

// ServeBlast is the driver's ceiling for events: each connection gets the
// banner, a successful reply to its Login, then event written count times
// as fast as the client reads, and is then held open until ctx ends.
func ServeBlast(ctx context.Context, ln net.Listener, event []byte, count int) error {
	return serveEach(ctx, ln, func(ctx context.Context, c net.Conn) { blastConn(ctx, c, event, count) })
}

// serveEach accepts connections and runs fn on each in its own goroutine
// until ctx ends or ln fails; it waits for every fn.
func serveEach(ctx context.Context, ln net.Listener, fn func(context.Context, net.Conn)) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(ctx, func() { _ = ln.Close() })
	defer stop()
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return nil
			}
			return fmt.Errorf("loadgen: accept: %w", err)
		}
		wg.Go(func() {
			defer c.Close()
			stop := context.AfterFunc(ctx, func() { _ = c.Close() })
			defer stop()
			fn(ctx, c)
		})
	}
}

// echoConn answers every message read from c until c closes.
func echoConn(_ context.Context, c net.Conn) {
	br := bufio.NewReaderSize(c, 64<<10)
	bw := bufio.NewWriterSize(c, 64<<10)
	if _, err := bw.WriteString(Banner); err != nil || bw.Flush() != nil {
		return
	}
	var id []byte
	inMsg := false
	for {
		line, err := br.ReadSlice('\n')
		if err != nil {
			return
		}
		if len(line) <= 2 && (len(line) == 1 || line[0] == '\r') {
			if !inMsg {
				continue
			}
			bw.WriteString("Response: Success\r\nActionID: ")
			bw.Write(id)
			bw.WriteString("\r\nPing: Pong\r\nMessage: Authentication accepted\r\n\r\n")
			inMsg, id = false, id[:0]
			if br.Buffered() == 0 && bw.Flush() != nil {
				return
			}
			continue
		}
		inMsg = true
		if v, ok := headerValue(line, "ActionID"); ok {
			id = append(id[:0], v...)
		}
	}
}

// blastConn answers the Login, then writes event count times.
func blastConn(ctx context.Context, c net.Conn, event []byte, count int) {
	br := bufio.NewReader(c)
	if _, err := c.Write([]byte(Banner)); err != nil {
		return
	}
	for { // the Login request, up to its blank line
		line, err := br.ReadSlice('\n')
		if err != nil {
			return
		}
		if len(bytes.TrimRight(line, "\r\n")) == 0 {
			break
		}
	}
	if _, err := c.Write([]byte("Response: Success\r\nActionID: login\r\nMessage: Authentication accepted\r\n\r\n")); err != nil {
		return
	}
	const chunk = 64
	batch := bytes.Repeat(event, chunk)
	for n := 0; n < count; {
		k := min(chunk, count-n)
		if _, err := c.Write(batch[:k*len(event)]); err != nil {
			return
		}
		n += k
	}
	<-ctx.Done()
}
