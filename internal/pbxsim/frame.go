package pbxsim

import (
	"strconv"
	"strings"
	"time"

	"github.com/amiproxy/amiproxy/policy"
	"github.com/amiproxy/amiproxy/rawman"
)

// frame builds AMI text the way Asterisk's astman_append does: "Key: Value"
// lines joined by CRLF, with no validation. Values come from parsed client
// lines, so they hold no LF; a bare CR a client sent is echoed as Asterisk
// echoes it.
type frame struct{ b []byte }

func (f *frame) add(k, v string) *frame {
	f.b = append(f.b, k...)
	f.b = append(f.b, ':', ' ')
	f.b = append(f.b, v...)
	f.b = append(f.b, '\r', '\n')
	return f
}

func (f *frame) addInt(k string, v int) *frame { return f.add(k, strconv.Itoa(v)) }

// id adds "ActionID: id" if id is not empty, as astman_send_response_full.
func (f *frame) id(id string) *frame {
	if id != "" {
		f.add("ActionID", id)
	}
	return f
}

// raw appends a pre-formatted line without its CRLF.
func (f *frame) raw(line string) *frame {
	f.b = append(f.b, line...)
	f.b = append(f.b, '\r', '\n')
	return f
}

// end terminates the message with a blank line.
func (f *frame) end() *frame {
	f.b = append(f.b, '\r', '\n')
	return f
}

// response starts "Response: <r>" with the request's ActionID.
func response(r, actionID string) *frame {
	f := &frame{b: make([]byte, 0, 128)}
	f.add("Response", r)
	f.id(actionID)
	return f
}

// ack is astman_send_ack / astman_send_error: Response, ActionID, Message.
func ack(r, actionID, msg string) []byte {
	return response(r, actionID).add("Message", msg).end().b
}

// listAck is astman_send_listack.
func listAck(actionID, msg string) *frame {
	return response("Success", actionID).add("EventList", "start").add("Message", msg).end()
}

// listComplete is astman_send_list_complete_start/end.
func (f *frame) listComplete(event, actionID string, n int) *frame {
	f.add("Event", event)
	f.id(actionID)
	f.add("EventList", "Complete")
	f.addInt("ListItems", n)
	return f
}

// event is one queued event: its class and its complete text, shared by
// every session it is delivered to.
type event struct {
	class policy.Class
	text  string
}

// eventBuilder builds one event with the headers every queued event
// starts with (ami-spec.md §4.5).
type eventBuilder struct {
	frame
	class policy.Class
}

// newEvent starts "Event: name", "Privilege: ...", then Timestamp and
// SystemName when configured.
func (s *settings) newEvent(name string, class policy.Class) *eventBuilder {
	e := &eventBuilder{class: class}
	e.b = make([]byte, 0, 512)
	e.add("Event", name)
	e.add("Privilege", class.String())
	s.eventExtras(&e.frame)
	return e
}

func (s *settings) eventExtras(f *frame) {
	if s.TimestampEvents {
		f.add("Timestamp", epochMicro(s.Now()))
	}
	if s.SystemName != "" {
		f.add("SystemName", s.SystemName)
	}
}

func (e *eventBuilder) done() event {
	e.end()
	return event{class: e.class, text: string(e.b)}
}

// encodeEmitted turns a message given to Server.Emit into an event. The
// class comes from its Privilege header (policy.ParsePrivilege); an event
// without one has class 0, which Asterisk's subset test delivers to every
// logged-in session. Timestamp and SystemName are added after Privilege
// when configured and absent.
func (s *settings) encodeEmitted(m rawman.Message) event {
	var f frame
	class := policy.Class(0)
	priv, hasPriv := m.Lookup("Privilege")
	if hasPriv {
		class = policy.ParsePrivilege(priv)
	}
	_, hasTS := m.Lookup("Timestamp")
	_, hasSN := m.Lookup("SystemName")
	extras := func() {
		if s.TimestampEvents && !hasTS {
			f.add("Timestamp", epochMicro(s.Now()))
		}
		if s.SystemName != "" && !hasSN {
			f.add("SystemName", s.SystemName)
		}
	}
	placed := false
	for i, h := range m.All() {
		if h.Bare() {
			f.raw(stripLineBreaks(h.Value))
		} else {
			f.add(h.Key, stripLineBreaks(h.Value))
		}
		if !placed && ((hasPriv && asciiEqualFold(h.Key, "Privilege")) || (!hasPriv && i == 0)) {
			extras()
			placed = true
		}
	}
	if !placed {
		extras()
	}
	f.end()
	return event{class: class, text: string(f.b)}
}

func stripLineBreaks(s string) string {
	if strings.ContainsAny(s, "\r\n") {
		return strings.NewReplacer("\r", " ", "\n", " ").Replace(s)
	}
	return s
}

// epochMicro formats t as Asterisk's "%ld.%06lu" timestamps.
func epochMicro(t time.Time) string {
	us := t.UnixMicro()
	sec, frac := us/1e6, us%1e6
	s := strconv.FormatInt(frac, 10)
	return strconv.FormatInt(sec, 10) + "." + strings.Repeat("0", 6-len(s)) + s
}

// securityTV formats a time like the EventTV of security events:
// "2026-11-22T16:25:57.123+0000".
func securityTV(t time.Time) string {
	return t.Format("2006-01-02T15:04:05.000-0700")
}
