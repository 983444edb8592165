package pbxsim

import (
	"bytes"
	"crypto/md5"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/amiproxy/amiproxy/internal/transcript"
	"github.com/amiproxy/amiproxy/rawman"
)

// The conformance test replays the client side of every tcp-*.txt
// recording of a real Asterisk 22.10.1 against pbxsim, with the recorded
// timing compressed by confScale, and compares what pbxsim sends with what
// Asterisk sent, message by message:
//
//   - the banner byte for byte;
//   - the "synchronous" messages (responses, list items and list
//     completions, WaitEventComplete: everything Asterisk writes as part of
//     an action's reply) in exactly the recorded order;
//   - the queued events between two synchronous messages as a multiset, as
//     their order inside a burst varies from run to run on a real Asterisk;
//   - every message with the same header names in the same order and the
//     same values, except the volatile values listed in volatile;
//   - whether the server closed the connection.
//
// Recordings that need traffic from a connection that was not traced get
// it from scenarios: an admin connection of the harness sends the listed
// actions where the recording's NOTE lines say the lab did.
//
// The allowances, all narrow and all forced by the lab rather than by
// pbxsim:
//
//  1. volatile values (clock, sockets, the lab's call history): see
//     volatile and normValue;
//  2. queued events between two replies form a multiset: a real Asterisk
//     orders a burst differently from run to run (compare
//     tcp-permission-denied.txt with tcp-events-eventmask.txt);
//  3. the items of one list reply form a set: Asterisk lists channels in
//     hash-bucket order of their names, which embed the lab's call
//     counter (README observation 4);
//  4. a valid MD5 Key in a recording is recomputed for the challenge
//     pbxsim issued (a wrong key stays wrong);
//  5. time runs confScale times faster, for the client and for pbxsim
//     (Config.TimeScale and LoginFailDelay).

// confScale compresses recorded time and pbxsim's simulated time alike.
const confScale = 0.25

// volatile lists the headers whose values depend on the clock, the
// history of the lab instance or the sockets. A volatile value must still
// match its pattern; it is then replaced by a placeholder before the
// comparison.
var volatile = map[string]*regexp.Regexp{
	"Timestamp":          regexp.MustCompile(`^\d+\.\d{6}$`),
	"Uptime":             regexp.MustCompile(`^\d+$`),
	"LastReload":         regexp.MustCompile(`^\d+$`),
	"EventTV":            regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}[+-]\d{4}$`),
	"SessionTV":          regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}[+-]\d{4}$`), // except the epoch, see normValue
	"SessionID":          regexp.MustCompile(`^0x[0-9a-f]+$`),
	"LocalAddress":       regexp.MustCompile(`^IPV4/TCP/127\.0\.0\.1/\d+$`),
	"RemoteAddress":      regexp.MustCompile(`^IPV4/TCP/127\.0\.0\.1/\d+$`),
	"Challenge":          regexp.MustCompile(`^\d{1,9}$`),
	"Uniqueid":           reUID,
	"Linkedid":           reUID,
	"UniqueID":           reUID,
	"DestUniqueid":       reUID,
	"DestLinkedid":       reUID,
	"LocalOneUniqueid":   reUID,
	"LocalOneLinkedid":   reUID,
	"LocalTwoUniqueid":   reUID,
	"LocalTwoLinkedid":   reUID,
	"StartTime":          reDateTime,
	"AnswerTime":         reDateTime,
	"EndTime":            reDateTime,
	"CoreStartupDate":    regexp.MustCompile(`^\d{4}-\d\d-\d\d$`),
	"CoreReloadDate":     regexp.MustCompile(`^\d{4}-\d\d-\d\d$`),
	"CoreStartupTime":    regexp.MustCompile(`^\d\d:\d\d:\d\d$`),
	"CoreReloadTime":     regexp.MustCompile(`^\d\d:\d\d:\d\d$`),
	"CoreProcessedCalls": regexp.MustCompile(`^\d+$`),            // calls since the lab started
	"Duration":           regexp.MustCompile(`^\d\d:\d\d:\d\d$`), // CoreShowChannel; Cdr durations are compared
}

var (
	reChallenge  = regexp.MustCompile(`Challenge: (\d+)`)
	reKeyLine    = regexp.MustCompile(`(?m)^Key: ([0-9a-f]{32})\r$`)
	reUserLine   = regexp.MustCompile(`(?m)^Username: (\S+)\r$`)
	reUID        = regexp.MustCompile(`^\d+\.\d+$`)
	reDateTime   = regexp.MustCompile(`^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d$`)
	reChanSuffix = regexp.MustCompile(`(Local/[^;\s]*-)[0-9a-f]{8}(;[12])`)
	// A row of "manager show connected": Start, Elapsed and FileDes vary.
	reConnRow = regexp.MustCompile(`^  \S.{14}  .{55}  [0-9 ]{10}  [0-9 ]{10}  [0-9 ]{8}  `)
)

const epochTV = "1970-01-01T00:00:00.000+0000"

// normValue returns the comparable form of one header value.
func normValue(key, value string) string {
	value = reChanSuffix.ReplaceAllString(value, "${1}XXXXXXXX${2}")
	if key == "SessionTV" && value == epochTV {
		return value // a session that never logged in: not volatile
	}
	if re, ok := volatile[key]; ok && re.MatchString(value) {
		return "<" + key + ">"
	}
	if key == "Output" && reConnRow.MatchString(value) {
		return value[:76] + "<start elapsed fd>" + value[110:]
	}
	return value
}

// auxStep is traffic the lab sent from a connection that was not traced.
type auxStep struct {
	note   string  // run right after the NOTE block containing this text...
	at     float64 // ...or at this recorded time (before the first block at or after it)
	action string  // request text (CRLF added); "login" logs the connection in
}

func originate(id, channel, app, data string) string {
	return "Action: Originate\nActionID: " + id + "\nChannel: " + channel + "\nApplication: " + app +
		"\nData: " + data + "\nAsync: true"
}

// scenarios: what the untraced lab connections did, from the NOTE lines.
// Unless a step says "login", the connection logs in (admin, Events off)
// before the replay starts, so its own SuccessfulAuth reaches nobody.
var scenarios = map[string][]auxStep{
	"tcp-permission-denied.txt": {
		{note: "untraced admin session originates", action: originate("o1", "Local/100@lab", "Wait", "1")},
	},
	"tcp-events-eventmask.txt": {
		{note: "while events are off", action: originate("o1", "Local/100@lab", "Wait", "1")},
		{note: "again while events are on", action: originate("o2", "Local/100@lab", "Wait", "1")},
		{note: "originating Local/500@lab", action: originate("o3", "Local/500@lab", "Wait", "2")},
	},
	"tcp-waitevent.txt": {
		{at: 0.702, action: "login"},
		{note: "second connection originates", action: originate("o1", "Local/100@lab", "Wait", "1")},
	},
}

func TestConformance(t *testing.T) {
	files, err := filepath.Glob("../../testdata/transcripts/tcp-*.txt")
	if err != nil || len(files) == 0 {
		t.Fatalf("no recordings: %v", err)
	}
	// The replays mostly wait, so they all run at once (t.Parallel would be
	// capped at GOMAXPROCS); each then gets its own subtest.
	type result struct {
		f    *transcript.File
		got  map[string]*connRec
		errs []string
	}
	results := make([]result, len(files))
	var wg sync.WaitGroup
	for i, path := range files {
		wg.Go(func() {
			f, err := transcript.Load(path)
			if err != nil {
				results[i].errs = []string{err.Error()}
				return
			}
			results[i].f = f
			results[i].got, results[i].errs = replay(f, scenarios[filepath.Base(path)])
		})
	}
	wg.Wait()
	for i, path := range files {
		t.Run(strings.TrimSuffix(filepath.Base(path), ".txt"), func(t *testing.T) {
			r := results[i]
			for _, e := range r.errs {
				t.Error(e)
			}
			if r.f == nil {
				return
			}
			for _, conn := range r.f.Conns() {
				compareConn(t, r.f, conn, r.got[conn])
			}
		})
	}
}

// connRec is what the harness saw on one connection.
type connRec struct {
	mu     sync.Mutex
	conn   net.Conn
	buf    []byte
	closed bool // EOF from the server
	done   chan struct{}
}

func (c *connRec) readLoop() {
	defer close(c.done)
	b := make([]byte, 64<<10)
	for {
		n, err := c.conn.Read(b)
		c.mu.Lock()
		c.buf = append(c.buf, b[:n]...)
		if err != nil {
			c.closed = err == io.EOF
		}
		c.mu.Unlock()
		if err != nil {
			return
		}
	}
}

// messages counts complete messages received (the banner excluded).
func (c *connRec) messages() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return bytes.Count(c.buf, []byte("\r\n\r\n"))
}

func (c *connRec) bytes() []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]byte(nil), c.buf...)
}

// replayItem is one step of the replay.
type replayItem struct {
	at    float64
	block *transcript.Block
	aux   *auxStep
	want  map[string]int // messages each connection must have received first
}

// replay runs the recording's client side against a fresh pbxsim and
// returns what each connection received.
func replay(f *transcript.File, aux []auxStep) (_ map[string]*connRec, errs []string) {
	srv, err := New(Config{LoginFailDelay: time.Duration(confScale * float64(time.Second)), TimeScale: confScale})
	if err != nil {
		return nil, []string{err.Error()}
	}
	addr, err := srv.Start("127.0.0.1:0")
	if err != nil {
		return nil, []string{err.Error()}
	}
	defer srv.Close()

	items := buildTimeline(f, aux)
	conns := map[string]*connRec{}
	open := func(label string) *connRec {
		nc, err := net.Dial("tcp", addr.String())
		if err != nil {
			errs = append(errs, fmt.Sprintf("dial: %v", err))
			nc, _ = net.Pipe() // a dead end; the comparison reports it
		}
		c := &connRec{conn: nc, done: make(chan struct{})}
		go c.readLoop()
		conns[label] = c
		return c
	}
	defer func() {
		for _, c := range conns {
			_ = c.conn.Close()
			<-c.done
		}
	}()

	// The harness's own admin connection for untraced traffic.
	var auxConn *connRec
	auxLogin := func() {
		auxConn = open("\x00aux")
		_, _ = io.WriteString(auxConn.conn, "Action: Login\r\nActionID: aux\r\nUsername: admin\r\nSecret: adminpass\r\nEvents: off\r\n\r\n")
		waitFor(func() bool { return auxConn.messages() >= 1 }, 3*time.Second)
	}
	if len(aux) > 0 && aux[0].action != "login" {
		auxLogin()
	}

	start := time.Now()
	challenges := map[string]string{} // connection -> recorded challenge
	for _, it := range items {
		if d := time.Until(start.Add(time.Duration(it.at * confScale * float64(time.Second)))); d > 0 {
			time.Sleep(d)
		}
		if it.aux != nil || (it.block != nil && it.block.FromClient()) {
			// Keep the recorded order: what Asterisk had sent before this
			// point must have arrived.
			waitFor(func() bool {
				for label, n := range it.want {
					if c := conns[label]; c == nil || c.messages() < n {
						return false
					}
				}
				return true
			}, 3*time.Second)
		}
		switch {
		case it.aux != nil && it.aux.action == "login":
			auxLogin()
		case it.aux != nil:
			if auxConn == nil {
				return nil, []string{"scenario step without an aux connection"}
			}
			_, _ = io.WriteString(auxConn.conn, strings.ReplaceAll(it.aux.action, "\n", "\r\n")+"\r\n\r\n")
		case it.block.FromServer():
			if conns[it.block.Conn] == nil {
				open(it.block.Conn)
			}
			if m := reChallenge.FindSubmatch(it.block.Data); m != nil {
				challenges[it.block.Conn] = string(m[1])
			}
		case it.block.FromClient():
			c := conns[it.block.Conn]
			if c == nil {
				c = open(it.block.Conn)
			}
			data := rewriteKey(it.block.Data, challenges[it.block.Conn], c)
			if _, err := c.conn.Write(data); err != nil {
				errs = append(errs, fmt.Sprintf("write to %q: %v", it.block.Conn, err))
			}
		}
	}
	// Let the last replies arrive: EOF where Asterisk closed, else all the
	// recorded messages.
	for _, label := range f.Conns() {
		c := conns[label]
		if c == nil {
			continue
		}
		if closedBy(f, label) {
			waitFor(func() bool { c.mu.Lock(); defer c.mu.Unlock(); return c.closed }, 3*time.Second)
			continue
		}
		want := bytes.Count(f.Stream("S->C", label), []byte("\r\n\r\n"))
		waitFor(func() bool { return c.messages() >= want }, 3*time.Second)
	}
	time.Sleep(20 * time.Millisecond)
	out := map[string]*connRec{}
	for label, c := range conns {
		if label != "\x00aux" {
			out[label] = c
		}
	}
	return out, errs
}

// buildTimeline merges the recording's blocks and the aux steps, and
// computes for each step how many messages each connection has received
// by then in the recording.
func buildTimeline(f *transcript.File, aux []auxStep) []replayItem {
	var items []replayItem
	pending := slices.Clone(aux)
	take := func(match func(auxStep) bool) {
		for i := 0; i < len(pending); i++ {
			if match(pending[i]) {
				a := pending[i]
				items = append(items, replayItem{aux: &a})
				pending = slices.Delete(pending, i, i+1)
				i--
			}
		}
	}
	for i := range f.Blocks {
		b := &f.Blocks[i]
		take(func(a auxStep) bool { return a.note == "" && b.Time >= a.at })
		items = append(items, replayItem{at: b.Time, block: b})
		if b.Dir == "NOTE" {
			take(func(a auxStep) bool { return a.note != "" && strings.Contains(string(b.Data), a.note) })
		}
	}
	take(func(auxStep) bool { return true })
	counts := map[string]int{}
	last := 0.0
	for i := range items {
		it := &items[i]
		if it.block != nil {
			last = it.block.Time
		} else if it.aux.note == "" {
			last = max(last, it.aux.at)
		}
		if it.block == nil {
			it.at = last
		}
		it.want = map[string]int{}
		for k, v := range counts {
			it.want[k] = v
		}
		if it.block != nil && it.block.FromServer() {
			counts[it.block.Conn] += bytes.Count(it.block.Data, []byte("\r\n\r\n"))
		}
	}
	return items
}

// rewriteKey replaces a valid MD5 Key (computed from the recorded
// challenge) with the one for the challenge pbxsim issued; a wrong key
// stays wrong.
func rewriteKey(data []byte, recorded string, c *connRec) []byte {
	m := reKeyLine.FindSubmatchIndex(data)
	u := reUserLine.FindSubmatch(data)
	if m == nil || u == nil || recorded == "" {
		return data
	}
	var secret string
	for _, usr := range DefaultUsers() {
		if usr.Name == string(u[1]) {
			secret = usr.Secret
		}
	}
	if string(data[m[2]:m[3]]) != md5hex(recorded+secret) {
		return data
	}
	got := reChallenge.FindAllSubmatch(c.bytes(), -1)
	if len(got) == 0 {
		return data
	}
	key := md5hex(string(got[len(got)-1][1]) + secret)
	return append(append(append([]byte(nil), data[:m[2]]...), key...), data[m[3]:]...)
}

func md5hex(s string) string {
	sum := md5.Sum([]byte(s))
	return hex.EncodeToString(sum[:])
}

func closedBy(f *transcript.File, label string) bool {
	for _, b := range f.Blocks {
		if b.Dir == "CLOSE" && (label == "" && strings.HasPrefix(string(b.Data), "+") ||
			label != "" && strings.Contains(string(b.Data), "Asterisk["+label+"]")) {
			return true
		}
	}
	return false
}

func waitFor(cond func() bool, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(2 * time.Millisecond)
	}
	return true
}

// --- comparison ---

// nmsg is a parsed, normalised message.
type nmsg struct {
	raw  rawman.Message
	hdrs []rawman.Header
	sync bool
}

func (m nmsg) key() string {
	var b strings.Builder
	for _, h := range m.hdrs {
		b.WriteString(h.Key + ": " + h.Value + "\n")
	}
	return b.String()
}

func (m nmsg) name() string {
	if m.raw.IsEvent() {
		return "Event " + m.raw.Event()
	}
	if m.raw.IsResponse() {
		return "Response " + m.raw.Response() + " (ActionID " + m.raw.ActionID() + ")"
	}
	return "message"
}

// parseStream splits a server stream into its banner and messages.
func parseStream(b []byte) (string, []nmsg, error) {
	r := rawman.NewReplyReader(bytes.NewReader(b))
	banner, err := r.ReadBanner()
	if err != nil {
		return "", nil, err
	}
	var out []nmsg
	open := map[string]bool{}
	for {
		m, err := r.ReadMessage()
		if err == io.EOF {
			return banner, out, nil
		}
		if err != nil {
			return banner, out, err
		}
		n := nmsg{raw: m}
		for _, h := range m.All() {
			n.hdrs = append(n.hdrs, rawman.Header{Key: h.Key, Value: normValue(h.Key, h.Value)})
		}
		_, hasPriv := m.Lookup("Privilege")
		switch {
		case m.IsResponse():
			n.sync = true
			if m.IsListStart() {
				open[m.ActionID()] = true
			}
		case m.IsEvent() && !hasPriv:
			n.sync = true
			if m.IsListComplete() {
				delete(open, m.ActionID())
			}
		case m.IsEvent() && open[m.ActionID()] && m.Event() != "OriginateResponse":
			n.sync = true // list items with a Privilege header (Status)
		case !m.IsEvent():
			n.sync = true
		}
		out = append(out, n)
	}
}

// segments splits messages into the synchronous ones and, before each of
// them and after the last, the queued events in between.
func segments(ms []nmsg) (syncs []nmsg, segs [][]nmsg) {
	segs = [][]nmsg{nil}
	for _, m := range ms {
		if m.sync {
			syncs = append(syncs, m)
			segs = append(segs, nil)
			continue
		}
		segs[len(segs)-1] = append(segs[len(segs)-1], m)
	}
	return syncs, segs
}

// sortListItems puts the items of every list reply in a canonical order.
// Asterisk lists channels in the order of its hash containers, which
// depends on the channel names and so on the lab's history (README,
// observation 4): the recorded order cannot be reproduced by a fresh
// server, so items are compared as a set. pbxsim does use Asterisk's
// bucket order (see pbx.listOrder).
func sortListItems(ms []nmsg) {
	for i := 0; i < len(ms); i++ {
		if !ms[i].raw.IsListStart() {
			continue
		}
		id := ms[i].raw.ActionID()
		j := i + 1
		for j < len(ms) && ms[j].raw.IsEvent() && !ms[j].raw.IsListComplete() && ms[j].raw.ActionID() == id {
			j++
		}
		slices.SortStableFunc(ms[i+1:j], func(a, b nmsg) int { return strings.Compare(a.key(), b.key()) })
		i = j - 1
	}
}

func compareConn(t *testing.T, f *transcript.File, label string, c *connRec) {
	t.Helper()
	where := "connection"
	if label != "" {
		where = "connection [" + label + "]"
	}
	if c == nil {
		t.Errorf("%s: never opened", where)
		return
	}
	wantBanner, want, err := parseStream(f.Stream("S->C", label))
	if err != nil {
		t.Fatalf("%s: recording does not parse: %v", where, err)
	}
	gotBytes := c.bytes()
	gotBanner, got, err := parseStream(gotBytes)
	if err != nil && err != io.ErrUnexpectedEOF {
		t.Errorf("%s: pbxsim stream does not parse: %v", where, err)
	}
	if gotBanner != wantBanner {
		t.Errorf("%s: banner = %q, want %q", where, gotBanner, wantBanner)
	}
	wantSync, wantSegs := segments(want)
	gotSync, gotSegs := segments(got)
	sortListItems(wantSync)
	sortListItems(gotSync)
	for i := 0; i < max(len(wantSync), len(gotSync)); i++ {
		if i >= len(gotSync) {
			t.Errorf("%s: reply #%d missing: want\n%s\n(pbxsim sent %d replies; stream:\n%s)", where, i+1, wantSync[i].key(), len(gotSync), tail(gotBytes))
			return
		}
		if i >= len(wantSync) {
			t.Errorf("%s: unexpected reply #%d:\n%s", where, i+1, gotSync[i].key())
			return
		}
		if wantSync[i].key() != gotSync[i].key() {
			t.Errorf("%s: reply #%d (%s) differs:\n%s", where, i+1, wantSync[i].name(), diffMsg(wantSync[i], gotSync[i]))
			return
		}
	}
	nev := 0
	for _, seg := range wantSegs {
		nev += len(seg)
	}
	t.Logf("%s: %d replies and %d queued events compared", where, len(wantSync), nev)
	for i := range wantSegs {
		after := "the banner"
		if i > 0 {
			after = wantSync[i-1].name()
		}
		compareEvents(t, fmt.Sprintf("%s: events after %s", where, after), wantSegs[i], gotSegs[i])
	}
	wantClosed := closedBy(f, label)
	c.mu.Lock()
	gotClosed := c.closed
	c.mu.Unlock()
	if wantClosed != gotClosed {
		t.Errorf("%s: closed by server = %v, want %v", where, gotClosed, wantClosed)
	}
}

// compareEvents compares two bursts of queued events as multisets.
func compareEvents(t *testing.T, where string, want, got []nmsg) {
	t.Helper()
	left := slices.Clone(got)
	var missing []nmsg
	for _, w := range want {
		i := slices.IndexFunc(left, func(g nmsg) bool { return g.key() == w.key() })
		if i < 0 {
			missing = append(missing, w)
			continue
		}
		left = slices.Delete(left, i, i+1)
	}
	if len(missing) == 0 && len(left) == 0 {
		return
	}
	names := func(ms []nmsg) string {
		var s []string
		for _, m := range ms {
			s = append(s, m.raw.Event())
		}
		return strings.Join(s, ", ")
	}
	msg := fmt.Sprintf("%s:\n  missing: [%s]\n  unexpected: [%s]", where, names(missing), names(left))
	if len(missing) > 0 {
		w := missing[0]
		best := -1
		for i, g := range left {
			if g.raw.Event() == w.raw.Event() && (best < 0 || similarity(w, g) > similarity(w, left[best])) {
				best = i
			}
		}
		if best >= 0 {
			msg += "\n  first missing vs closest unexpected:\n" + diffMsg(w, left[best])
		} else {
			msg += "\n  first missing:\n" + w.key()
		}
	}
	t.Error(msg)
}

func similarity(a, b nmsg) int {
	n := 0
	for i := 0; i < min(len(a.hdrs), len(b.hdrs)); i++ {
		if a.hdrs[i] == b.hdrs[i] {
			n++
		}
	}
	return n
}

// diffMsg shows want and got line by line: "  " same, "- " recorded only,
// "+ " pbxsim only.
func diffMsg(want, got nmsg) string {
	var b strings.Builder
	w, g := want.hdrs, got.hdrs
	i, j := 0, 0
	for i < len(w) || j < len(g) {
		switch {
		case i < len(w) && j < len(g) && w[i] == g[j]:
			fmt.Fprintf(&b, "    %s: %s\n", w[i].Key, w[i].Value)
			i, j = i+1, j+1
		case i < len(w) && j < len(g) && w[i].Key == g[j].Key:
			fmt.Fprintf(&b, "  - %s: %s\n  + %s: %s\n", w[i].Key, w[i].Value, g[j].Key, g[j].Value)
			i, j = i+1, j+1
		case i < len(w) && (j >= len(g) || !slices.ContainsFunc(g[j:], func(h rawman.Header) bool { return h.Key == w[i].Key })):
			fmt.Fprintf(&b, "  - %s: %s\n", w[i].Key, w[i].Value)
			i++
		default:
			fmt.Fprintf(&b, "  + %s: %s\n", g[j].Key, g[j].Value)
			j++
		}
	}
	return b.String()
}

func tail(b []byte) string {
	if len(b) > 1500 {
		b = b[len(b)-1500:]
	}
	return string(b)
}
