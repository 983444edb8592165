package pbxsim

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/amiproxy/amiproxy/rawman"
)

// Errors returned by Server methods.
var (
	// ErrServerClosed is returned by Serve, Start and Restart after Close.
	ErrServerClosed = errors.New("pbxsim: server closed")
	// ErrNotListening is returned by Restart when the server has no
	// listener to restart.
	ErrNotListening = errors.New("pbxsim: not listening")
)

// Server is one simulated Asterisk: an AMI listener, its sessions and the
// lab PBX they control.
//
// Create one with New. A Server is safe for concurrent use. Close stops
// every goroutine it started and waits for them; a closed Server cannot
// be reused. Many Servers may run in one process: they share no state.
type Server struct {
	cfg settings
	log *slog.Logger
	pbx *pbx

	mu         sync.Mutex
	ln         net.Listener  // nil while restarting or closed
	lnAddr     net.Addr      // address of the last listener
	lnGen      chan struct{} // closed when ln is replaced
	serving    bool
	restarting bool
	closed     bool
	sessions   map[*session]struct{}
	unauth     int
	stalled    bool
	stallCh    chan struct{} // closed and replaced when stalled changes
	replyDelay time.Duration
	nextID     uint64

	list atomic.Pointer[[]*session] // copy-on-write view of sessions for broadcast

	bmu      sync.Mutex    // orders broadcasts
	eventSeq atomic.Uint64 // events broadcast so far (WaitEvent wakes on any)

	done      chan struct{} // closed by Close
	closeOnce sync.Once
	wg        sync.WaitGroup // every goroutine the server starts
}

// New checks cfg and returns a Server that is not yet listening.
func New(cfg Config) (*Server, error) {
	st, err := cfg.compile()
	if err != nil {
		return nil, err
	}
	s := &Server{
		cfg:      st,
		log:      st.Logger,
		sessions: map[*session]struct{}{},
		stallCh:  make(chan struct{}),
		lnGen:    make(chan struct{}),
		done:     make(chan struct{}),
	}
	s.list.Store(&[]*session{})
	s.pbx = newPBX(s)
	s.wg.Go(s.pbx.runScheduler)
	return s, nil
}

// Serve accepts AMI clients on ln until ln fails or Close is called; it
// returns ErrServerClosed after Close. Restart replaces the listener
// without making Serve return. Only one Serve may run at a time.
func (s *Server) Serve(ln net.Listener) error {
	s.mu.Lock()
	switch {
	case s.closed:
		s.mu.Unlock()
		_ = ln.Close()
		return ErrServerClosed
	case s.serving:
		s.mu.Unlock()
		return errors.New("pbxsim: Serve already running")
	}
	s.serving = true
	s.ln, s.lnAddr = ln, ln.Addr()
	s.mu.Unlock()
	return s.serve()
}

// serve runs the accept loop of Serve; the caller has set s.serving.
func (s *Server) serve() error {
	defer func() {
		s.mu.Lock()
		s.serving = false
		s.mu.Unlock()
	}()
	for {
		s.mu.Lock()
		cur, gen, closed := s.ln, s.lnGen, s.closed
		s.mu.Unlock()
		if closed {
			return ErrServerClosed
		}
		if cur == nil { // Restart in progress
			select {
			case <-gen:
				continue
			case <-s.done:
				return ErrServerClosed
			}
		}
		err := s.acceptLoop(cur)
		s.mu.Lock()
		switch {
		case s.closed:
			s.mu.Unlock()
			return ErrServerClosed
		case s.ln == cur: // closed from outside, or failed for good
			s.ln = nil
			s.mu.Unlock()
			return err
		}
		s.mu.Unlock() // replaced by Restart
	}
}

// acceptLoop accepts until ln fails for good.
func (s *Server) acceptLoop(ln net.Listener) error {
	for {
		conn, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return err
			}
			s.log.Warn("pbxsim: accept", "err", err)
			select {
			case <-time.After(10 * time.Millisecond):
				continue
			case <-s.done:
				return err
			}
		}
		s.startSession(conn)
	}
}

// Start listens on addr ("127.0.0.1:0" picks a free port) and serves in a
// goroutine owned by the server. It returns the address listened on.
func (s *Server) Start(addr string) (net.Addr, error) {
	s.mu.Lock()
	closed, serving := s.closed, s.serving
	s.mu.Unlock()
	if closed {
		return nil, ErrServerClosed
	}
	if serving {
		return nil, errors.New("pbxsim: already serving")
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("pbxsim: %w", err)
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		_ = ln.Close()
		return nil, ErrServerClosed
	}
	// Mark serving now so a second Start fails at once.
	s.serving = true
	s.ln, s.lnAddr = ln, ln.Addr()
	s.wg.Go(s.serveOwned)
	s.mu.Unlock()
	return ln.Addr(), nil
}

// serveOwned is serve for the listener of Start; it ends with the server
// or when the listener fails.
func (s *Server) serveOwned() {
	if err := s.serve(); err != nil && !errors.Is(err, ErrServerClosed) {
		s.log.Warn("pbxsim: serve", "err", err)
	}
}

// Addr returns the address of the listener, or nil before Start or Serve.
// It stays valid while Restart has the listener down.
func (s *Server) Addr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lnAddr
}

// Close stops listening, closes every session, stops calls and traffic,
// and waits for every goroutine of the server. It is idempotent.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		s.closed = true
		ln := s.ln
		s.ln = nil
		close(s.done)
		sessions := make([]*session, 0, len(s.sessions))
		for c := range s.sessions {
			sessions = append(sessions, c)
		}
		s.mu.Unlock()
		if ln != nil {
			_ = ln.Close()
		}
		for _, c := range sessions {
			c.kill()
		}
	})
	s.wg.Wait()
	return nil
}

// startSession runs a session for conn, unless authlimit is reached.
func (s *Server) startSession(conn net.Conn) {
	s.mu.Lock()
	if s.closed || s.restarting {
		s.mu.Unlock()
		_ = conn.Close()
		return
	}
	if s.unauth >= s.cfg.AuthLimit {
		s.mu.Unlock()
		s.log.Warn("pbxsim: authlimit reached, connection closed", "remote", conn.RemoteAddr().String())
		_ = conn.Close()
		return
	}
	s.unauth++
	s.nextID++
	c := newSession(s, conn, s.nextID)
	s.sessions[c] = struct{}{}
	s.publishListLocked()
	s.wg.Go(c.serve)
	s.mu.Unlock()
}

func (s *Server) publishListLocked() {
	l := make([]*session, 0, len(s.sessions))
	for c := range s.sessions {
		l = append(l, c)
	}
	s.list.Store(&l)
}

func (s *Server) removeSession(c *session) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.sessions[c]; !ok {
		return
	}
	delete(s.sessions, c)
	if !c.isAuthed() {
		s.unauth--
	}
	s.publishListLocked()
}

// loggedIn is called when a session authenticates.
func (s *Server) loggedIn() {
	s.mu.Lock()
	s.unauth--
	s.mu.Unlock()
}

// snapshotSessions returns the sessions in connection order.
func (s *Server) snapshotSessions() []*session {
	l := *s.list.Load()
	out := append([]*session(nil), l...)
	sortSessions(out)
	return out
}

// broadcast queues events for every session, in one step so that all
// sessions see them in the same order and WaitEvent collects a whole burst.
func (s *Server) broadcast(evs ...event) {
	if len(evs) == 0 {
		return
	}
	s.bmu.Lock()
	defer s.bmu.Unlock()
	s.eventSeq.Add(uint64(len(evs)))
	for _, c := range *s.list.Load() {
		c.enqueue(evs)
	}
}

// Emit queues ev for every session the way Asterisk delivers a queued
// event: the class is read from its Privilege header, a session gets it if
// its read mask and send mask hold every bit of that class and its
// eventfilters allow the text. Timestamp and SystemName are added when
// configured. Emit never blocks.
func (s *Server) Emit(ev rawman.Message) {
	s.broadcast(s.cfg.encodeEmitted(ev))
}

// Stall stops (on) or resumes (off) reading actions from clients, like a
// hung PBX: actions already sent wait in the socket, nothing is answered,
// while queued events are still written.
func (s *Server) Stall(on bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stalled == on {
		return
	}
	s.stalled = on
	close(s.stallCh)
	s.stallCh = make(chan struct{})
}

func (s *Server) stallState() (bool, <-chan struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stalled, s.stallCh
}

// SetReplyDelay makes every session wait d before running each action it
// reads (0 turns it off). Events wait too, as on a busy Asterisk.
func (s *Server) SetReplyDelay(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.replyDelay = max(d, 0)
}

func (s *Server) getReplyDelay() time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.replyDelay
}

// DropAll closes every client connection without a word, like a crash,
// and waits until the sessions are gone. The listener keeps accepting and
// calls in progress go on.
func (s *Server) DropAll() {
	s.mu.Lock()
	sessions := make([]*session, 0, len(s.sessions))
	for c := range s.sessions {
		sessions = append(sessions, c)
	}
	s.mu.Unlock()
	for _, c := range sessions {
		c.kill()
	}
	for _, c := range sessions {
		<-c.finished
	}
}

// Restart simulates an Asterisk restart: it drops every client, ends every
// call without a word, stops listening for down, then listens again on the
// same address with a fresh PBX (Uptime, Uniqueid and channel counters
// start over; AstDB survives, as on disk). Serve (or Start's goroutine)
// carries on with the new listener. It returns once the server listens
// again.
func (s *Server) Restart(down time.Duration) error {
	s.mu.Lock()
	switch {
	case s.closed:
		s.mu.Unlock()
		return ErrServerClosed
	case s.restarting:
		s.mu.Unlock()
		return errors.New("pbxsim: Restart already in progress")
	case s.ln == nil || s.lnAddr == nil:
		s.mu.Unlock()
		return ErrNotListening
	}
	s.restarting = true
	ln, addr := s.ln, s.lnAddr
	s.ln = nil
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.restarting = false
		s.mu.Unlock()
	}()

	_ = ln.Close()
	s.pbx.setDown(true)
	s.DropAll()
	s.pbx.reset()
	defer s.pbx.setDown(false)
	if err := s.sleep(context.Background(), down); err != nil {
		return err
	}
	var nl net.Listener
	var err error
	for range 100 { // the port may take a moment to be free again
		nl, err = net.Listen(addr.Network(), addr.String())
		if err == nil {
			break
		}
		if err := s.sleep(context.Background(), 10*time.Millisecond); err != nil {
			return err
		}
	}
	if err != nil {
		return fmt.Errorf("pbxsim: restart: %w", err)
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		_ = nl.Close()
		return ErrServerClosed
	}
	s.ln, s.lnAddr = nl, nl.Addr()
	close(s.lnGen)
	s.lnGen = make(chan struct{})
	s.mu.Unlock()
	return nil
}

// Sessions returns the number of connected clients, logged in or not.
func (s *Server) Sessions() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.sessions)
}

// sleep waits d, or returns ErrServerClosed when the server closes first
// or ctx.Err() when ctx ends.
func (s *Server) sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-s.done:
		return ErrServerClosed
	case <-ctx.Done():
		return ctx.Err()
	}
}

// uptime is the time since the server was created, for FullyBooted and
// CoreStatus.
func (s *Server) uptime() time.Duration { return s.cfg.Now().Sub(s.pbx.bootTime()) }
