package policy

import (
	"bytes"
	"net/netip"
	"strings"
	"testing"

	"github.com/amiproxy/amiproxy/rawman"
)

// fuzzPBXs are the PBXs of FuzzCompile.
var fuzzPBXs = []PBX{
	{Name: "east", Labels: map[string]string{"site": "paris", "tier": "prod"}},
	{Name: "west", Labels: map[string]string{"site": "lyon"}},
}

// configFromSpec builds a Config from lines "key=value": "role=NAME"
// starts a role; read, write, pbx, label (k:v), allow, deny, filter,
// permit, denynet, ctx, ext, app, och, chan, cmd and file add to it;
// "user=U:ROLE" and "group=G:ROLE" bind roles. An empty value of a list
// key makes the list explicitly empty.
func configFromSpec(spec string) Config {
	var c Config
	var r *Role
	list := func(dst *[]string, v string) {
		if v == "" {
			if *dst == nil {
				*dst = []string{}
			}
			return
		}
		*dst = append(*dst, v)
	}
	for line := range strings.SplitSeq(spec, "\n") {
		k, v, _ := strings.Cut(line, "=")
		if k == "role" {
			c.Roles = append(c.Roles, Role{Name: v})
			r = &c.Roles[len(c.Roles)-1]
			continue
		}
		switch k {
		case "user", "group":
			name, role, _ := strings.Cut(v, ":")
			m := &c.Users
			if k == "group" {
				m = &c.Groups
			}
			if *m == nil {
				*m = map[string][]string{}
			}
			(*m)[name] = append((*m)[name], role)
			continue
		}
		if r == nil {
			continue
		}
		switch k {
		case "read":
			r.Read = v
		case "write":
			r.Write = v
		case "pbx":
			list(&r.PBXs, v)
		case "label":
			lk, lv, _ := strings.Cut(v, ":")
			if r.PBXLabels == nil {
				r.PBXLabels = map[string]string{}
			}
			if lk != "" || lv != "" {
				r.PBXLabels[lk] = lv
			}
		case "allow":
			list(&r.AllowActions, v)
		case "deny":
			list(&r.DenyActions, v)
		case "filter":
			list(&r.EventFilters, v)
		case "permit":
			list(&r.Permit, v)
		case "denynet":
			list(&r.Deny, v)
		case "ctx":
			list(&r.Rules.Contexts, v)
		case "ext":
			list(&r.Rules.Extensions, v)
		case "app":
			list(&r.Rules.Applications, v)
		case "och":
			list(&r.Rules.OriginateChannels, v)
		case "chan":
			list(&r.Rules.Channels, v)
		case "cmd":
			list(&r.Rules.Commands, v)
		case "file":
			list(&r.Rules.ConfigFiles, v)
		}
	}
	return c
}

// FuzzCompile builds configurations from fuzz input and checks that
// CompilePBXs never panics, fails exactly when ValidatePBXs does, and that
// the engine it builds decides fuzzed messages without panicking, always
// naming a rule, and never allowing what the parameter rules forbid in
// every configuration (a Command with "!", a config file outside the
// config directory).
func FuzzCompile(f *testing.F) {
	f.Add("role=agent\nwrite=originate,call\nlabel=site:paris\nctx=from-crm\nctx=sales-*\next=1*\noch=PJSIP/{{.claims.extension}}\nchan=PJSIP/{{.claims.extension}}-*\npermit=10.0.0.0/8\ndenynet=10.9.0.0/16\nuser=alice:agent",
		[]byte("Action: Originate\r\nChannel: PJSIP/100\r\nContext: from-crm\r\nExten: 123\r\n\r\n"))
	f.Add("role=cli\nwrite=command\npbx=*\ncmd=core show channels\nuser=bob:cli\ngroup=ops:cli",
		[]byte("Action: Command\r\nCommand: !core show channels\r\n\r\n"))
	f.Add("role=files\nwrite=config\npbx=east\nfile=extensions*.conf\nuser=carol:files",
		[]byte("Action: GetConfig\r\nFilename: ../manager.conf\r\n\r\n"))
	f.Add("role=x\npbx=\nctx=\nlabel=:\npermit=10.1.2.3/8\nuser=x:x\nuser=x:nope",
		[]byte("Action: Hangup\r\nChannel: /.*/\r\n\r\n"))
	f.Add("role=apps\nwrite=originate\npbx=east\napp=Playback\nchan=*\nuser=dave:apps",
		[]byte("Action: Originate\r\nChannel: Local/s@admin/n\r\nApplication: Playback\r\n\r\nAction: Redirect\r\nChannel: x\r\nExtraChannel: y\r\nContext: c\r\n\r\n"))
	f.Add("role=all\nread=all\nwrite=all\npbx=*\nfilter=!Event: VarSet\nfilter=eventfilter(name(Hangup)) =\nfile=*\ncmd=core\nuser=root:all",
		[]byte("Action: UpdateConfig\r\nSrcFilename: a.conf\r\nDstFilename: b.conf\r\nReload: yes\r\n\r\n"))
	f.Fuzz(func(t *testing.T, spec string, raw []byte) {
		c := configFromSpec(spec)
		verr := c.ValidatePBXs(fuzzPBXs)
		e, err := CompilePBXs(c, fuzzPBXs)
		if (err == nil) != (verr == nil) {
			t.Fatalf("CompilePBXs error %v, ValidatePBXs error %v: they must agree", err, verr)
		}
		if err != nil {
			return
		}
		var msgs []rawman.Message
		r := rawman.NewReader(bytes.NewReader(raw))
		for range 3 {
			m, err := r.ReadMessage()
			if err != nil {
				break
			}
			msgs = append(msgs, m)
		}
		claims := map[string]any{"extension": "100", "star": "*"}
		addrs := []netip.Addr{{}, netip.MustParseAddr("10.1.2.3"), netip.MustParseAddr("2001:db8::1")}
		var subjects []*Subject
		for u := range c.Users {
			subjects = append(subjects, e.SubjectFor(Identity{Username: u, Claims: claims}))
			for _, a := range addrs {
				subjects = append(subjects, e.SubjectFor(Identity{Username: u, Groups: []string{"ops"}, Addr: a}))
			}
		}
		subjects = append(subjects, e.Subject("", nil))
		for _, s := range subjects {
			for _, a := range addrs {
				if d := s.AllowsAddr(a); d.Rule == "" {
					t.Fatalf("AllowsAddr(%v) has no rule", a)
				}
			}
			for _, pbx := range []string{"east", "west", "north"} {
				_ = s.MayUse(pbx)
				for _, m := range msgs {
					d := s.Decide(pbx, m)
					if d.Rule == "" || d.Allowed() == (d.Reason != "") {
						t.Fatalf("Decide(%q) = %+v: no rule, or reason and effect disagree", m.String(), d)
					}
					_ = s.DeliverEvent(pbx, m, m.String(), All)
					_ = s.ListCommandsAllowed(pbx, m.Action())
					if !d.Allowed() {
						continue
					}
					if !s.MayUse(pbx).Allowed() {
						t.Fatalf("Decide allowed on a pbx MayUse refuses: %v", d)
					}
					switch asciiLower(m.Action()) {
					case "command":
						if strings.ContainsAny(m.Get("Command"), commandForbidden) {
							t.Fatalf("Command %q allowed: %v", m.Get("Command"), d)
						}
					case "getconfig", "getconfigjson", "createconfig", "listcategories":
						if unsafeFileName(m.Get("Filename")) != "" {
							t.Fatalf("config file %q allowed: %v", m.Get("Filename"), d)
						}
					case "updateconfig":
						if unsafeFileName(m.Get("SrcFilename")) != "" || unsafeFileName(m.Get("DstFilename")) != "" {
							t.Fatalf("UpdateConfig %q allowed: %v", m.String(), d)
						}
					}
				}
			}
		}
	})
}
