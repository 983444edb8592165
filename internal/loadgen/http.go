package loadgen

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
)

// HTTPSession is one logged-in HTTP manager session (/rawman with a
// mansession_id cookie). Create one with HTTPLogin; it belongs to one
// goroutine at a time.
type HTTPSession struct {
	hc     *http.Client
	base   string // http://host:port
	cookie string // mansession_id value
	buf    bytes.Buffer
}

// HTTPLogin logs in at base (e.g. "http://127.0.0.1:8088") through
// /rawman and keeps the session cookie.
func HTTPLogin(ctx context.Context, hc *http.Client, base string, l Login) (*HTTPSession, error) {
	s := &HTTPSession{hc: hc, base: base}
	q := url.Values{"action": {"login"}, "username": {l.User}, "secret": {l.Secret}}
	resp, body, err := s.get(ctx, q)
	if err != nil {
		return nil, fmt.Errorf("loadgen: http login: %w", err)
	}
	if resp.StatusCode != http.StatusOK || !bytes.Contains(body, []byte("Response: Success")) {
		return nil, fmt.Errorf("loadgen: http login: refused (status %d)", resp.StatusCode)
	}
	for _, c := range resp.Cookies() {
		if strings.EqualFold(c.Name, "mansession_id") {
			s.cookie = c.Value
		}
	}
	if s.cookie == "" {
		return nil, errors.New("loadgen: http login: no mansession_id cookie")
	}
	return s, nil
}

// get runs one GET of /rawman with q and reads the whole body into s.buf.
func (s *HTTPSession) get(ctx context.Context, q url.Values) (*http.Response, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.base+"/rawman?"+q.Encode(), nil)
	if err != nil {
		return nil, nil, err
	}
	if s.cookie != "" {
		req.Header.Set("Cookie", `mansession_id="`+s.cookie+`"`)
	}
	resp, err := s.hc.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	s.buf.Reset()
	if _, err := s.buf.ReadFrom(resp.Body); err != nil {
		return resp, nil, err
	}
	return resp, s.buf.Bytes(), nil
}

// WaitResult is what one WaitEvent returned.
type WaitResult struct {
	Events  int64 // occurrences of the marker
	Dropped int64 // sum of "Dropped:" in ProxyEventsDropped notices
}

// WaitEvent runs one WaitEvent with the given timeout in seconds and
// counts the events in its reply by marker (e.g. "Event: UserEvent\r\n").
func (s *HTTPSession) WaitEvent(ctx context.Context, timeoutSec int, marker []byte) (WaitResult, error) {
	q := url.Values{"action": {"waitevent"}, "timeout": {strconv.Itoa(timeoutSec)}}
	resp, body, err := s.get(ctx, q)
	if err != nil {
		return WaitResult{}, fmt.Errorf("loadgen: waitevent: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return WaitResult{}, fmt.Errorf("loadgen: waitevent: status %d", resp.StatusCode)
	}
	return CountWaitEvent(body, marker), nil
}

// CountWaitEvent counts marker in a WaitEvent reply and sums the Dropped
// headers of its ProxyEventsDropped notices.
func CountWaitEvent(body, marker []byte) WaitResult {
	r := WaitResult{Events: int64(bytes.Count(body, marker))}
	const notice = "Event: ProxyEventsDropped"
	for rest := body; ; {
		i := bytes.Index(rest, []byte(notice))
		if i < 0 {
			break
		}
		rest = rest[i+len(notice):]
		end := bytes.Index(rest, []byte("\r\n\r\n"))
		msg := rest
		if end >= 0 {
			msg = rest[:end]
		}
		for line := range bytes.Lines(msg) {
			if v, ok := headerValue(line, "Dropped"); ok {
				if n, err := strconv.ParseInt(string(v), 10, 64); err == nil && n > 0 {
					r.Dropped += n
				}
			}
		}
	}
	return r
}

// Discard reads and discards an HTTP response body; for callers that
// reuse connections.
func Discard(r io.ReadCloser) {
	_, _ = io.Copy(io.Discard, r)
	_ = r.Close()
}

// WithClient returns a copy of s that sends its requests through hc.
func (s *HTTPSession) WithClient(hc *http.Client) *HTTPSession {
	return &HTTPSession{hc: hc, base: s.base, cookie: s.cookie}
}
