package upstream

import (
	"bytes"
	"crypto/md5"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/amiproxy/amiproxy/internal/transcript"
	"github.com/amiproxy/amiproxy/rawman"
)

// recording holds byte-exact replies cut from the real Asterisk 22.10.1
// recordings in testdata/transcripts. Each keeps the ActionID it was
// recorded with, which fakePBX replaces by the request's.
type recording struct {
	text, id string
}

var recs struct {
	once                                  sync.Once
	err                                   error
	banner                                string
	login, ping, pingNoID, challenge, bye recording
	csc2, csc0, hangup, origAck, origResp recording
	newchannel                            string
}

func loadRecordings(t testing.TB) {
	t.Helper()
	recs.once.Do(func() {
		get := func(file, id string) recording {
			f, err := transcript.Load("../testdata/transcripts/" + file)
			if err != nil {
				recs.err = err
				return recording{}
			}
			for _, b := range f.Blocks {
				if b.FromServer() && bytes.HasPrefix(b.Data, []byte("Response:")) &&
					(id == "" && !bytes.Contains(b.Data, []byte("ActionID")) && bytes.Contains(b.Data, []byte("Ping: Pong")) ||
						id != "" && bytes.Contains(b.Data, []byte("ActionID: "+id+"\r\n"))) {
					return recording{text: string(b.Data), id: id}
				}
			}
			recs.err = errors.New("recording " + file + " has no reply " + id)
			return recording{}
		}
		recs.banner = "Asterisk Call Manager/11.0.0\r\n"
		recs.login = get("tcp-login-ping.txt", "login-1")
		recs.ping = get("tcp-login-ping.txt", "ping-1")
		recs.pingNoID = get("tcp-login-ping.txt", "")
		recs.bye = get("tcp-login-ping.txt", "bye-1")
		recs.challenge = get("tcp-challenge-md5-login.txt", "ch-2")
		recs.csc2 = get("tcp-coreshowchannels.txt", "csc-1")
		recs.csc0 = get("tcp-coreshowchannels.txt", "csc-2")
		recs.hangup = get("tcp-coreshowchannels.txt", "hup-1")
		orig := get("tcp-originate-async-events.txt", "orig-async-1")
		// The recorded block holds the ack and the first events of the
		// call; cut it into messages.
		msgs := strings.SplitAfter(orig.text, "\r\n\r\n")
		recs.origAck = recording{text: msgs[0], id: "orig-async-1"}
		recs.newchannel = msgs[1]
		f, err := transcript.Load("../testdata/transcripts/tcp-originate-async-events.txt")
		if err != nil {
			recs.err = err
			return
		}
		for _, m := range strings.SplitAfter(string(f.Stream("S->C", "")), "\r\n\r\n") {
			if strings.HasPrefix(m, "Event: OriginateResponse\r\n") {
				recs.origResp = recording{text: m, id: "orig-async-1"}
			}
		}
		if recs.origResp.text == "" && recs.err == nil {
			recs.err = errors.New("no OriginateResponse recorded")
		}
	})
	if recs.err != nil {
		t.Fatal(recs.err)
	}
}

// with returns the recording with its ActionID replaced by id, or its
// ActionID lines removed when id is empty, as Asterisk does.
func (r recording) with(id string) string {
	old := "ActionID: " + r.id + "\r\n"
	if id == "" {
		return strings.ReplaceAll(r.text, old, "")
	}
	return strings.ReplaceAll(r.text, old, "ActionID: "+id+"\r\n")
}

// fakePBX is a small scripted Asterisk over real TCP on 127.0.0.1. It
// answers with the recorded bytes of Asterisk 22.10.1 and can be stalled,
// killed and restarted. It serves one request at a time per session, like
// Asterisk's session thread.
type fakePBX struct {
	t        testing.TB
	tlsConf  *tls.Config
	addr     string
	secret   string
	failWait time.Duration // delay before "Authentication failed"

	mu       sync.Mutex
	ln       net.Listener
	sessions map[*fakeSession]struct{}
	stallCh  chan struct{} // non-nil while stalled; closed on unstall
	channels int           // calls up, for CoreShowChannels
	closed   bool
	wg       sync.WaitGroup

	accepts, logins, badLogins, logoffs atomic.Int32
	received                            chan rawman.Message // every request, if non-nil
}

type fakeSession struct {
	nc     net.Conn
	wmu    sync.Mutex
	authed atomic.Bool
	chal   string
}

func newFakePBX(t testing.TB) *fakePBX {
	t.Helper()
	loadRecordings(t)
	f := &fakePBX{t: t, secret: "adminpass", sessions: map[*fakeSession]struct{}{}, channels: 2}
	return f
}

// start listens on 127.0.0.1 (on addr if set, for restarts).
func (f *fakePBX) start() {
	f.t.Helper()
	addr := f.addr
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	var ln net.Listener
	var err error
	for range 100 {
		if ln, err = net.Listen("tcp", addr); err == nil {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err != nil {
		f.t.Fatal(err)
	}
	if f.tlsConf != nil {
		ln = tls.NewListener(ln, f.tlsConf)
	}
	f.mu.Lock()
	f.ln, f.addr = ln, ln.Addr().String()
	f.mu.Unlock()
	f.wg.Go(func() { f.acceptLoop(ln) })
}

func (f *fakePBX) acceptLoop(ln net.Listener) {
	for {
		nc, err := ln.Accept()
		if err != nil {
			return
		}
		f.accepts.Add(1)
		s := &fakeSession{nc: nc}
		f.mu.Lock()
		if f.closed {
			f.mu.Unlock()
			_ = nc.Close()
			return
		}
		f.sessions[s] = struct{}{}
		f.mu.Unlock()
		f.wg.Go(func() { f.serve(s) })
	}
}

// close stops the fake and waits for its goroutines.
func (f *fakePBX) close() {
	f.mu.Lock()
	f.closed = true
	ln := f.ln
	f.mu.Unlock()
	if ln != nil {
		_ = ln.Close()
	}
	f.stall(false)
	f.dropAll()
	f.wg.Wait()
}

// dropAll closes every session without a word, like a crash.
func (f *fakePBX) dropAll() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for s := range f.sessions {
		_ = s.nc.Close()
	}
}

// restart stops listening and drops every session, stays down for down,
// then listens again on the same address.
func (f *fakePBX) restart(down time.Duration) {
	f.mu.Lock()
	ln := f.ln
	f.mu.Unlock()
	_ = ln.Close()
	f.dropAll()
	time.Sleep(down)
	f.start()
}

func (f *fakePBX) stall(on bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	switch {
	case on && f.stallCh == nil:
		f.stallCh = make(chan struct{})
	case !on && f.stallCh != nil:
		close(f.stallCh)
		f.stallCh = nil
	}
}

func (f *fakePBX) setChannels(n int) {
	f.mu.Lock()
	f.channels = n
	f.mu.Unlock()
}

func (f *fakePBX) sessionCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.sessions)
}

// emit writes text (one or more complete messages) to every logged-in
// session, the way Asterisk broadcasts a queued event.
func (f *fakePBX) emit(text string) {
	f.mu.Lock()
	list := make([]*fakeSession, 0, len(f.sessions))
	for s := range f.sessions {
		if s.authed.Load() {
			list = append(list, s)
		}
	}
	f.mu.Unlock()
	for _, s := range list {
		_ = s.write(text)
	}
}

func (s *fakeSession) write(text string) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	_, err := io.WriteString(s.nc, text)
	return err
}

func (f *fakePBX) serve(s *fakeSession) {
	defer func() {
		_ = s.nc.Close()
		f.mu.Lock()
		delete(f.sessions, s)
		f.mu.Unlock()
	}()
	if s.write(recs.banner) != nil {
		return
	}
	r := rawman.NewReader(s.nc)
	for {
		m, err := r.ReadMessage()
		if err != nil {
			return
		}
		f.mu.Lock()
		stallCh := f.stallCh
		f.mu.Unlock()
		if stallCh != nil {
			<-stallCh
		}
		if f.received != nil {
			select {
			case f.received <- m:
			default:
			}
		}
		if !f.handle(s, m) {
			return
		}
	}
}

func reply(r, id string, kv ...string) string {
	var b strings.Builder
	b.WriteString("Response: " + r + "\r\n")
	if id != "" {
		b.WriteString("ActionID: " + id + "\r\n")
	}
	for i := 0; i+1 < len(kv); i += 2 {
		b.WriteString(kv[i] + ": " + kv[i+1] + "\r\n")
	}
	return b.String() + "\r\n"
}

// handle answers one request; false ends the session.
func (f *fakePBX) handle(s *fakeSession, m rawman.Message) bool {
	id := m.ActionID()
	action := strings.ToLower(m.Action())
	if !s.authed.Load() && action != "login" && action != "challenge" && action != "logoff" {
		return s.write(reply("Error", id, "Message", "Permission denied")) == nil
	}
	switch action {
	case "login":
		ok := strings.EqualFold(m.Get("Username"), "admin")
		if strings.EqualFold(m.Get("AuthType"), "MD5") {
			sum := md5.Sum([]byte(s.chal + f.secret))
			ok = ok && s.chal != "" && m.Get("Key") == hex.EncodeToString(sum[:])
		} else {
			ok = ok && m.Get("Secret") == f.secret
		}
		if !ok {
			f.badLogins.Add(1)
			time.Sleep(f.failWait)
			_ = s.write(reply("Error", id, "Message", "Authentication failed"))
			return false
		}
		f.logins.Add(1)
		s.authed.Store(true)
		return s.write(recs.login.with(id)) == nil
	case "challenge":
		s.chal = "357042681"
		return s.write(recs.challenge.with(id)) == nil
	case "logoff":
		f.logoffs.Add(1)
		_ = s.write(recs.bye.with(id))
		return false
	case "ping":
		if id == "" {
			return s.write(recs.pingNoID.text) == nil
		}
		return s.write(recs.ping.with(id)) == nil
	case "coresettings":
		return s.write(reply("Success", id, "AMIversion", "11.0.0", "AsteriskVersion", "22.10.1",
			"SystemName", "", "CoreMaxCalls", "0")) == nil
	case "getvar":
		return s.write(reply("Success", id, "Variable", m.Get("Variable"), "Value", "v-"+m.Get("Variable"))) == nil
	case "coreshowchannels":
		f.mu.Lock()
		n := f.channels
		f.mu.Unlock()
		if n > 0 {
			return s.write(recs.csc2.with(id)) == nil
		}
		return s.write(recs.csc0.with(id)) == nil
	case "hangup":
		return s.write(recs.hangup.with(id)) == nil
	case "originate":
		if !astTrue(m.Get("Async")) {
			// A synchronous Originate blocks the session until the call
			// is answered; the proxy must never send one.
			time.Sleep(200 * time.Millisecond)
			return s.write(recs.origAck.with(id)) == nil
		}
		if err := s.write(recs.origAck.with(id)); err != nil {
			return false
		}
		// The call progresses: events, then OriginateResponse broadcast to
		// every session, as Asterisk does.
		f.emit(recs.newchannel)
		resp := recs.origResp.with(id)
		if m.Get("Exten") == "999" {
			resp = strings.Replace(resp, "Response: Success", "Response: Failure", 1)
		}
		f.emit(resp)
		return true
	case "moduleload":
		if m.Get("LoadType") == "" {
			return s.write(reply("Error", id, "Message", "Incomplete ModuleLoad action.")+
				reply("Error", id, "Message", "Need module name")) == nil
		}
		return s.write(reply("Success", id, "Message", "Module loaded.")) == nil
	case "hold":
		return true // never answered
	default:
		return s.write(reply("Error", id, "Message",
			"Invalid/unknown command: "+m.Action()+". Use Action: ListCommands to show available commands.")) == nil
	}
}
