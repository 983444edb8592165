package pbxsim

import (
	"slices"
	"strings"

	"github.com/amiproxy/amiproxy/rawman"
)

// AstDB actions (main/db.c). The database lives in memory, one per Server.

// dbArgs reads Family and Key and answers a missing one as Asterisk does:
// DBGet and DBDel end those messages with a dot, DBPut does not. ok is
// false when it has answered (or the write failed: the session then ends
// on its next write).
func (c *session) dbArgs(m rawman.Message, dot string) (id, family, key string, ok bool) {
	id = m.ActionID()
	family, key = m.Get("Family"), m.Get("Key")
	switch {
	case family == "":
		_ = c.writeRaw(ack("Error", id, "No family specified"+dot))
		return id, family, key, false
	case key == "":
		_ = c.writeRaw(ack("Error", id, "No key specified"+dot))
		return id, family, key, false
	}
	return id, family, key, true
}

func (c *session) actDBPut(m rawman.Message) bool {
	id, family, key, ok := c.dbArgs(m, "")
	if !ok {
		return true
	}
	p := c.srv.pbx
	p.lock()
	p.db[family+"/"+key] = m.Get("Val")
	p.unlock()
	return c.writeRaw(ack("Success", id, "Updated database successfully")) == nil
}

func (c *session) actDBGet(m rawman.Message) bool {
	id, family, key, ok := c.dbArgs(m, ".")
	if !ok {
		return true
	}
	p := c.srv.pbx
	p.lock()
	val, ok := p.db[family+"/"+key]
	p.unlock()
	if !ok {
		return c.writeRaw(ack("Error", id, "Database entry not found")) == nil
	}
	f := listAck(id, "Result will follow")
	f.add("Event", "DBGetResponse").add("Family", family).add("Key", key).add("Val", val).id(id).end()
	f.listComplete("DBGetComplete", id, 1).end()
	return c.writeRaw(f.b) == nil
}

func (c *session) actDBDel(m rawman.Message) bool {
	id, family, key, ok := c.dbArgs(m, ".")
	if !ok {
		return true
	}
	p := c.srv.pbx
	p.lock()
	_, ok = p.db[family+"/"+key]
	delete(p.db, family+"/"+key)
	p.unlock()
	if !ok {
		return c.writeRaw(ack("Error", id, "Database entry not found")) == nil
	}
	return c.writeRaw(ack("Success", id, "Key deleted successfully")) == nil
}

func (c *session) actDBDelTree(m rawman.Message) bool {
	id := m.ActionID()
	family, key := m.Get("Family"), m.Get("Key")
	if family == "" {
		return c.writeRaw(ack("Error", id, "No family specified.")) == nil
	}
	prefix := family + "/"
	if key != "" {
		prefix += key
	}
	p := c.srv.pbx
	p.lock()
	n := 0
	for k := range p.db {
		if k == strings.TrimSuffix(prefix, "/") || strings.HasPrefix(k, prefix) {
			delete(p.db, k)
			n++
		}
	}
	p.unlock()
	if n == 0 {
		return c.writeRaw(ack("Error", id, "Database entry not found")) == nil
	}
	return c.writeRaw(ack("Success", id, "Key tree deleted successfully")) == nil
}

func (c *session) actDBGetTree(m rawman.Message) bool {
	id := m.ActionID()
	family, key := m.Get("Family"), m.Get("Key")
	prefix := ""
	if family != "" {
		prefix = family + "/"
		if key != "" {
			prefix += key
		}
	}
	p := c.srv.pbx
	p.lock()
	var keys []string
	for k := range p.db {
		if strings.HasPrefix(k, prefix) {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	vals := make([]string, len(keys))
	for i, k := range keys {
		vals[i] = p.db[k]
	}
	p.unlock()
	if len(keys) == 0 {
		return c.writeRaw(ack("Error", id, "Database entry not found")) == nil
	}
	f := listAck(id, "Result will follow")
	for i, k := range keys {
		fam, rest, _ := strings.Cut(k, "/")
		f.add("Event", "DBGetTreeResponse").add("Family", fam).add("Key", rest).add("Val", vals[i]).id(id).end()
	}
	f.listComplete("DBGetTreeComplete", id, len(keys)).end()
	return c.writeRaw(f.b) == nil
}

// dbShow is "database show [family]" output.
func (p *pbx) dbShow(prefix string) string {
	var keys []string
	for k := range p.db {
		if strings.HasPrefix("/"+k, prefix) {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	var b strings.Builder
	for _, k := range keys {
		name := "/" + k
		b.WriteString(name)
		if n := 25 - len(name); n > 0 {
			b.WriteString(strings.Repeat(" ", n))
		}
		b.WriteString(": " + p.db[k] + "\n")
	}
	if len(keys) == 1 {
		b.WriteString("1 result found.\n")
	} else {
		b.WriteString(itoa(len(keys)) + " results found.\n")
	}
	return b.String()
}
