package policy

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/amiproxy/amiproxy/rawman"
)

// Rules are the parameter rules of a role: what the headers of an action
// it allows may say. Decide checks them after the action's class or
// allow_actions allowed it. Every list that is absent leaves its headers
// unconstrained, as in Asterisk, except Commands and ConfigFiles: Command
// and the config-file actions are denied to a role that lists none. An
// explicitly empty list ("contexts: []") is a configuration error, because
// it would read as "none" but mean "any".
//
// Patterns are those of the package documentation ("*" matches any run of
// bytes; {{.username}} and {{.claims.NAME}} templates where stated).
//
// The zero value constrains nothing but Command and the config files. A
// Rules is plain data.
type Rules struct {
	// Contexts are the dialplan contexts calls may be sent to (patterns
	// with templates, case-sensitive, as Asterisk's contexts are): the
	// Context of Originate (and the context of a Local/ Channel), of
	// Redirect (and ExtraContext), BlindTransfer and Atxfer. A role that
	// sets Contexts, Extensions or Applications constrains destinations:
	// a dialplan destination must then be in Contexts (absent: none) and
	// in Extensions (absent: any), and an application Originate must be
	// in Applications (absent: none).
	Contexts []string `yaml:"contexts"`
	// Extensions are the extensions (Exten, ExtraExten) of the same
	// actions (patterns with templates, case-sensitive).
	Extensions []string `yaml:"extensions"`
	// Applications are the applications an Originate with an Application
	// header may run (exact names, ASCII case-insensitive as Asterisk's
	// pbx_findapp). The confused-deputy checks still apply.
	Applications []string `yaml:"applications"`
	// OriginateChannels are the dial strings Originate's Channel may be
	// (patterns with templates, ASCII case-insensitive), e.g.
	// "PJSIP/{{.claims.extension}}".
	OriginateChannels []string `yaml:"originate_channels"`
	// Channels are the existing channels the channel actions may act on
	// (patterns with templates, ASCII case-insensitive like Asterisk's
	// channel lookup), e.g. "PJSIP/{{.claims.extension}}-*". The channel
	// actions and the headers checked are listed in ChannelActions. A
	// Hangup or PJSIPHangup Channel "/regex/" and ConfbridgeKick's "all"
	// are allowed only by the pattern "*", and Setvar or Getvar without
	// Channel (a global variable) is refused.
	Channels []string `yaml:"channels"`
	// Commands are the CLI commands Command may run: each a prefix of
	// whole words, matched ASCII case-insensitively ("core show channels"
	// allows "core show channels concise", not "core show channel"). A
	// command holding ! " \ $ ` | & < > or a control character is always
	// refused, whatever is listed, and so is an entry holding one.
	Commands []string `yaml:"commands"`
	// ConfigFiles are the file names GetConfig, GetConfigJSON,
	// ListCategories, CreateConfig (Filename) and UpdateConfig
	// (SrcFilename and DstFilename) may name: exact names or patterns
	// ("extensions*.conf"), case-sensitive, without templates. A name
	// with '/', '\', "..", or a control character is always refused.
	ConfigFiles []string `yaml:"config_files"`
}

// channelHeader is a header of a channel action that names a channel.
type channelHeader struct {
	name string
	// optional headers are checked only when present and non-empty.
	optional bool
	// regex headers treat a value beginning with "/" as a regex over
	// every channel (Hangup, PJSIPHangup).
	regex bool
	// global says that an absent or empty value means a global variable
	// (Setvar, Getvar).
	global bool
	// keywords says that "all" and "participants" mean every participant
	// of a conference (the Confbridge actions).
	keywords bool
}

// channelActions maps the lowercase names of the channel actions to the
// headers Channels constrains.
var channelActions = map[string][]channelHeader{
	"absolutetimeout":             {{name: "Channel"}},
	"agi":                         {{name: "Channel"}},
	"atxfer":                      {{name: "Channel"}},
	"blindtransfer":               {{name: "Channel"}},
	"bridge":                      {{name: "Channel1"}, {name: "Channel2"}},
	"cancelatxfer":                {{name: "Channel"}},
	"confbridgekick":              {{name: "Channel", keywords: true}},
	"confbridgemute":              {{name: "Channel", keywords: true}},
	"confbridgeunmute":            {{name: "Channel", keywords: true}},
	"confbridgesetsinglevideosrc": {{name: "Channel"}},
	"controlplayback":             {{name: "Channel"}},
	"getvar":                      {{name: "Channel", global: true}},
	"hangup":                      {{name: "Channel", regex: true}},
	"localoptimizeaway":           {{name: "Channel"}},
	"mixmonitor":                  {{name: "Channel"}},
	"mixmonitormute":              {{name: "Channel"}},
	"muteaudio":                   {{name: "Channel"}},
	"park":                        {{name: "Channel"}, {name: "TimeoutChannel", optional: true}, {name: "AnnounceChannel", optional: true}},
	"pjsiphangup":                 {{name: "Channel", regex: true}},
	"playdtmf":                    {{name: "Channel"}},
	"playmf":                      {{name: "Channel"}},
	"redirect":                    {{name: "Channel"}, {name: "ExtraChannel", optional: true}},
	"sendflash":                   {{name: "Channel"}},
	"sendtext":                    {{name: "Channel"}},
	"setvar":                      {{name: "Channel", global: true}},
	"stopmixmonitor":              {{name: "Channel"}},
}

// ChannelActions returns the channel actions whose channel headers
// Rules.Channels constrains, each with those headers: e.g. "Redirect":
// ["Channel", "ExtraChannel"]. The map is a new copy; names are lowercase.
func ChannelActions() map[string][]string {
	out := make(map[string][]string, len(channelActions))
	for k, hs := range channelActions {
		for _, h := range hs {
			out[k] = append(out[k], h.name)
		}
	}
	return out
}

// destinationActions maps the lowercase names of the actions that send a
// call into the dialplan to their context/extension headers; extra pairs
// apply when the header named by when is non-empty.
var destinationActions = map[string][]destHeaders{
	"originate":     {{context: "Context", exten: "Exten"}},
	"redirect":      {{context: "Context", exten: "Exten"}, {context: "ExtraContext", exten: "ExtraExten", when: "ExtraChannel"}},
	"blindtransfer": {{context: "Context", exten: "Exten"}},
	"atxfer":        {{context: "Context", exten: "Exten"}},
}

type destHeaders struct{ context, exten, when string }

// configFileActions maps the config-file actions to their file headers.
var configFileActions = map[string][]string{
	"getconfig":      {"Filename"},
	"getconfigjson":  {"Filename"},
	"listcategories": {"Filename"},
	"createconfig":   {"Filename"},
	"updateconfig":   {"SrcFilename", "DstFilename"},
}

// commandForbidden are the bytes a Command may never hold. The CLI has no
// shell, but "!" runs one on Asterisk's console, and quotes and backslashes
// make Asterisk's word splitting differ from ours.
const commandForbidden = "!\"\\$`|&<>"

// compiledRules is Rules compiled once for the Engine.
type compiledRules struct {
	contexts, extensions, origChannels, channels []pattern
	applications                                 map[string]string // lowercase -> as written
	hasApplications                              bool
	commands                                     [][]string // lowercase words
	commandSrc                                   []string   // quoted, for rules
	configFiles                                  []*glob
	destinations                                 bool // contexts, extensions or applications set
	vars                                         bool // some pattern has a template
}

// validateRules reports every problem of r, prefixed with where.
func validateRules(where string, r *Rules) []error {
	_, errs := compileRules(where, r)
	return errs
}

func compileRules(where string, r *Rules) (*compiledRules, []error) {
	var errs []error
	c := &compiledRules{}
	explicitEmpty := func(name string, l []string) {
		if l != nil && len(l) == 0 {
			errs = append(errs, fmt.Errorf("%s: rules.%s: empty list; remove the key to leave it unconstrained, or list what is allowed", where, name))
		}
	}
	patterns := func(name string, l []string, templates bool) []pattern {
		explicitEmpty(name, l)
		var out []pattern
		for i, s := range l {
			p, err := compilePattern(s, templates)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: rules.%s[%d]: %w", where, name, i, err))
				continue
			}
			c.vars = c.vars || p.vars
			out = append(out, p)
		}
		return out
	}
	c.contexts = patterns("contexts", r.Contexts, true)
	c.extensions = patterns("extensions", r.Extensions, true)
	c.origChannels = patterns("originate_channels", r.OriginateChannels, true)
	c.channels = patterns("channels", r.Channels, true)

	explicitEmpty("applications", r.Applications)
	if r.Applications != nil {
		c.applications = map[string]string{}
		c.hasApplications = true
	}
	for i, a := range r.Applications {
		if !validActionName(a) || strings.ContainsAny(a, "(),") {
			errs = append(errs, fmt.Errorf("%s: rules.applications[%d]: invalid application name %q", where, i, a))
			continue
		}
		c.applications[asciiLower(a)] = a
	}
	c.destinations = r.Contexts != nil || r.Extensions != nil || r.Applications != nil

	explicitEmpty("commands", r.Commands)
	for i, cmd := range r.Commands {
		words := cliWords(cmd)
		switch {
		case len(words) == 0:
			errs = append(errs, fmt.Errorf("%s: rules.commands[%d]: empty command", where, i))
		case strings.ContainsAny(cmd, commandForbidden) || strings.ContainsFunc(cmd, isControl):
			errs = append(errs, fmt.Errorf("%s: rules.commands[%d]: %q holds one of %s or a control character; such commands are always refused", where, i, cmd, commandForbidden))
		default:
			for j := range words {
				words[j] = asciiLower(words[j])
			}
			c.commands = append(c.commands, words)
			c.commandSrc = append(c.commandSrc, strconv.Quote(strings.Join(words, " ")))
		}
	}

	explicitEmpty("config_files", r.ConfigFiles)
	for i, f := range r.ConfigFiles {
		if reason := unsafeFileName(f); reason != "" {
			errs = append(errs, fmt.Errorf("%s: rules.config_files[%d]: %q %s", where, i, f, reason))
			continue
		}
		p, err := compilePattern(f, false)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: rules.config_files[%d]: %w", where, i, err))
			continue
		}
		c.configFiles = append(c.configFiles, p.expand("", nil, false))
	}
	return c, errs
}

// unsafeFileName says why name could leave Asterisk's config directory, or
// returns "".
func unsafeFileName(name string) string {
	switch {
	case name == "":
		return "is empty"
	case strings.ContainsAny(name, "/\\"):
		return "holds a path separator"
	case strings.Contains(name, ".."):
		return "holds \"..\""
	case name == ".":
		return "is \".\""
	case strings.ContainsFunc(name, isControl):
		return "holds a control character"
	}
	return ""
}

// boundRules are the rules of one role expanded for one subject.
type boundRules struct {
	c                                            *compiledRules
	contexts, extensions, origChannels, channels globs
}

func (c *compiledRules) bind(username string, claims map[string]any) *boundRules {
	b := &boundRules{c: c}
	expand := func(ps []pattern, fold bool) globs {
		if ps == nil {
			return nil
		}
		out := make(globs, 0, len(ps))
		for i := range ps {
			if g := ps[i].expand(username, claims, fold); g != nil {
				out = append(out, g)
			}
		}
		return out
	}
	b.contexts = expand(c.contexts, false)
	b.extensions = expand(c.extensions, false)
	b.origChannels = expand(c.origChannels, true)
	b.channels = expand(c.channels, true)
	return b
}

// check applies the rules to the action a (key: its lowercase name). It
// returns the names of the rules that applied (for an allow) or a refusal.
func (b *boundRules) check(key string, a rawman.Message) (applied []string, refusal string) {
	c := b.c
	switch key {
	case "command":
		cmd := a.Get("Command")
		if strings.ContainsAny(cmd, commandForbidden) || strings.ContainsFunc(cmd, isControl) {
			return nil, "rules.commands: Command holds a forbidden character"
		}
		words := cliWords(cmd)
		if len(words) == 0 {
			return nil, "rules.commands: empty Command"
		}
		if len(c.commands) == 0 {
			return nil, "rules.commands: none listed, Command is denied"
		}
	next:
		for i, allowed := range c.commands {
			if len(words) < len(allowed) {
				continue
			}
			for j, w := range allowed {
				if asciiLower(words[j]) != w {
					continue next
				}
			}
			return []string{"commands " + c.commandSrc[i]}, ""
		}
		return nil, "rules.commands: " + clip(cmd) + " is not listed"
	}
	if headers, ok := configFileActions[key]; ok {
		if len(c.configFiles) == 0 {
			return nil, "rules.config_files: none listed, config files are denied"
		}
		var used []string
		for _, h := range headers {
			v := a.Get(h)
			if reason := unsafeFileName(v); reason != "" {
				return nil, "rules.config_files: " + h + " " + clip(v) + " " + reason
			}
			g := globs(c.configFiles).match(v)
			if g == nil {
				return nil, "rules.config_files: " + h + " " + clip(v) + " is not listed"
			}
			used = append(used, g.quote)
		}
		return []string{"config_files " + strings.Join(used, ", ")}, ""
	}

	if key == "originate" && b.origChannels != nil {
		ch := a.Get("Channel")
		g := b.origChannels.match(ch)
		if g == nil {
			return nil, "rules.originate_channels: Channel " + clip(ch) + " does not match"
		}
		applied = append(applied, "originate_channels "+g.quote)
	}
	if headers, ok := channelActions[key]; ok && b.c.channels != nil {
		for _, h := range headers {
			v := a.Get(h.name)
			switch {
			case h.optional && v == "":
				continue
			case h.global && v == "":
				return nil, "rules.channels: " + h.name + " is missing (a global variable)"
			case h.regex && strings.HasPrefix(v, "/"):
				if !b.channels.all() {
					return nil, "rules.channels: " + h.name + " regex " + clip(v) + " needs the pattern \"*\""
				}
			}
			if h.keywords && (asciiEqualFold(v, "all") || asciiEqualFold(v, "participants")) && !b.channels.all() {
				return nil, "rules.channels: " + h.name + " " + clip(v) + " (every participant) needs the pattern \"*\""
			}
			g := b.channels.match(v)
			if g == nil {
				return nil, "rules.channels: " + h.name + " " + clip(v) + " does not match"
			}
		}
		applied = append(applied, "channels")
	}
	if dests, ok := destinationActions[key]; ok && c.destinations {
		if key == "originate" {
			// A Local channel runs dialplan in the context it names,
			// whatever the Originate runs on the other leg.
			if ctxs, ok := localContexts(a.Get("Channel")); ok {
				for _, ctx := range ctxs {
					if b.contexts == nil {
						return nil, "rules.contexts: none listed, Local channel into " + clip(ctx) + " is denied"
					}
					if b.contexts.match(ctx) == nil {
						return nil, "rules.contexts: Local channel context " + clip(ctx) + " is not listed"
					}
				}
			}
			if app := a.Get("Application"); app != "" {
				if !c.hasApplications {
					return nil, "rules.applications: none listed, Originate Application is denied"
				}
				if _, ok := c.applications[asciiLower(app)]; !ok {
					return nil, "rules.applications: " + clip(app) + " is not listed"
				}
				return append(applied, "applications "+c.applications[asciiLower(app)]), ""
			}
		}
		for _, d := range dests {
			if d.when != "" && a.Get(d.when) == "" {
				continue
			}
			ctx := a.Get(d.context)
			if b.contexts == nil {
				return nil, "rules.contexts: none listed, " + d.context + " " + clip(ctx) + " is denied"
			}
			if b.contexts.match(ctx) == nil {
				return nil, "rules.contexts: " + d.context + " " + clip(ctx) + " is not listed"
			}
			if b.extensions != nil {
				ext := a.Get(d.exten)
				if b.extensions.match(ext) == nil {
					return nil, "rules.extensions: " + d.exten + " " + clip(ext) + " is not listed"
				}
			}
		}
		applied = append(applied, "contexts")
	}
	return applied, ""
}

// localContexts returns the contexts a Local channel dial string
// "Local/exten@context/options" may run dialplan in, or ok false for
// other technologies. Asterisk's readings differ between versions and code
// paths (the first or the last "/" starts the options, the patch
// "core_local: Fix local channel parsing with slashes", 2022; device state
// looks for "@" first), so every reading is returned, and the caller
// requires all of them to be allowed. Without "@" the context is
// "default".
func localContexts(channel string) (ctxs []string, ok bool) {
	const tech = "local/"
	if len(channel) < len(tech) || !asciiEqualFold(channel[:len(tech)], tech) {
		return nil, false
	}
	rest := channel[len(tech):]
	add := func(ctx string) {
		if !slices.Contains(ctxs, ctx) {
			ctxs = append(ctxs, ctx)
		}
	}
	ats := func(s string) []int { return []int{strings.IndexByte(s, '@'), strings.LastIndexByte(s, '@')} }
	// Options first, then the context.
	parts := []string{rest}
	if i := strings.IndexByte(rest, '/'); i >= 0 {
		parts = []string{rest[:i], rest[:strings.LastIndexByte(rest, '/')]}
	}
	for _, part := range parts {
		for _, at := range ats(part) {
			if at < 0 {
				add("default")
			} else {
				add(part[at+1:])
			}
		}
	}
	// The context first, then its options.
	for _, at := range ats(rest) {
		if at < 0 {
			continue
		}
		ctx := rest[at+1:]
		if i := strings.IndexByte(ctx, '/'); i >= 0 {
			add(ctx[:i])
			add(ctx[:strings.LastIndexByte(ctx, '/')])
		} else {
			add(ctx)
		}
	}
	return ctxs, true
}

// bareRefusal is check for an action name without headers (ListCommands):
// only the rules that deny an action whatever its headers apply.
func (c *compiledRules) bareRefusal(key string) string {
	if key == "command" && len(c.commands) == 0 {
		return "rules.commands: none listed, Command is denied"
	}
	if _, ok := configFileActions[key]; ok && len(c.configFiles) == 0 {
		return "rules.config_files: none listed, config files are denied"
	}
	return ""
}

// cliWords splits a CLI command into words at ASCII whitespace, as
// Asterisk's parse_args does (isspace in the C locale). Quotes and
// backslashes, which parse_args also interprets, never reach here: they
// are refused first.
func cliWords(cmd string) []string {
	return strings.FieldsFunc(cmd, func(r rune) bool {
		return r == ' ' || '\t' <= r && r <= '\r'
	})
}
