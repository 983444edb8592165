package managerconf

import (
	"fmt"
	"strings"
)

// User is one manager.conf user as Asterisk's __init_manager reads it
// (ami-spec.md §2.11): a section other than [general] and other than a
// template, with its lines interpreted. Keys are case-insensitive, except
// the "eventfilter" prefix (Asterisk 22.1 and later).
type User struct {
	Name string
	Num  int // line of the section header
	// Secret is the last secret line; HasSecret tells an empty secret
	// from none (a user without secret cannot log in over TCP).
	Secret    string
	HasSecret bool
	// Read and Write are the last read= and write= values, raw (parse
	// them with policy.ParsePerm, as Asterisk's get_perm does). A missing
	// line means no class.
	Read, Write string
	// EventFilters are the eventfilter lines in order: Key is the whole
	// key ("eventfilter" or "eventfilter(...)").
	EventFilters []Line
	// ACL holds the permit and deny lines, in order.
	ACL []Line
	// NamedACLs are the acl= lines (named ACLs of acl.conf).
	NamedACLs []Line
	// Setvars are the setvar= values.
	Setvars []Line
	// DisplayConnects, AllowMultipleLogin and WriteTimeout are the raw
	// values ("" when absent).
	DisplayConnects, AllowMultipleLogin, WriteTimeout string
	// Other are the lines of keys Asterisk does not know for a user.
	Other []Line
}

// Users returns the users of f in file order, and warnings for what
// Asterisk would ignore or treat in a surprising way: keys spelled
// "EventFilter" (ignored since 22.1), duplicate users (two sections whose
// names differ only in case: Asterisk looks users up case-insensitively, so
// the later section updates the same user; here it replaces it), and
// "+=" lines (their value is appended to the earlier value of the key).
func (f *File) Users() ([]User, []Warning) {
	var users []User
	var warns []Warning
	warn := func(n int, format string, a ...any) {
		warns = append(warns, Warning{Num: n, Msg: fmt.Sprintf(format, a...)})
	}
	index := map[string]int{}
	for _, s := range f.Sections {
		if s.Template || strings.EqualFold(s.Name, "general") {
			continue
		}
		u := User{Name: s.Name, Num: s.Num}
		if s.Name == "" {
			warn(s.Num, "section [] has an empty name, skipped")
			continue
		}
		last := map[string]*string{}
		for _, l := range s.Lines {
			key := strings.ToLower(l.Key)
			if strings.HasPrefix(key, "eventfilter") {
				if !strings.HasPrefix(l.Key, "eventfilter") {
					warn(l.Num, "[%s] %s: Asterisk 22.1 and later ignore keys not spelled \"eventfilter\" in lowercase; skipped", s.Name, l.Key)
					continue
				}
				u.EventFilters = append(u.EventFilters, l)
				continue
			}
			var dst *string
			switch key {
			case "secret":
				dst = &u.Secret
				u.HasSecret = true
			case "read":
				dst = &u.Read
			case "write":
				dst = &u.Write
			case "displayconnects":
				dst = &u.DisplayConnects
			case "allowmultiplelogin":
				dst = &u.AllowMultipleLogin
			case "writetimeout":
				dst = &u.WriteTimeout
			case "permit", "deny":
				u.ACL = append(u.ACL, l)
				continue
			case "acl":
				u.NamedACLs = append(u.NamedACLs, l)
				continue
			case "setvar":
				u.Setvars = append(u.Setvars, l)
				continue
			default:
				u.Other = append(u.Other, l)
				continue
			}
			if l.Append && last[key] != nil {
				*dst += l.Value
			} else {
				*dst = l.Value
			}
			last[key] = dst
		}
		k := strings.ToLower(s.Name)
		if i, dup := index[k]; dup {
			warn(s.Num, "[%s] repeats user [%s] of line %d (user names are case-insensitive); the later section replaces the earlier", s.Name, users[i].Name, users[i].Num)
			users[i] = u
			continue
		}
		index[k] = len(users)
		users = append(users, u)
	}
	return users, warns
}

// General returns the lines of the [general] section (the last one, if
// several), or nil.
func (f *File) General() []Line {
	for i := len(f.Sections) - 1; i >= 0; i-- {
		if strings.EqualFold(f.Sections[i].Name, "general") && !f.Sections[i].Template {
			return f.Sections[i].Lines
		}
	}
	return nil
}
