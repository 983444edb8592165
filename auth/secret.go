package auth

import (
	"fmt"
	"log/slog"
	"strconv"
)

// redacted is what every printing or encoding path of a Secret yields.
const redacted = "REDACTED"

// Secret is a credential that never prints. String, GoString, Format (every
// fmt verb), LogValue (log/slog), MarshalText (encoding/xml, encoding/gob,
// YAML libraries, slog's text handler), MarshalJSON and MarshalYAML all
// yield "REDACTED", so a Secret can sit in structs that are logged or
// dumped. Reveal is the only way to read it, and should be called only where
// the plaintext is needed (a comparison, a Login sent to a PBX).
//
// Redaction relies on the methods above, so it covers exported fields and
// values passed directly; fmt cannot call methods on unexported struct
// fields and prints those verbatim. Keep Secret fields exported, or never
// print the struct. encoding/json writes map keys of string kind verbatim,
// so never use a Secret as a map key. Converting a Secret to string also
// bypasses redaction.
//
// The zero value is the empty secret. A Secret is an immutable string and
// safe for concurrent use.
type Secret string

// Reveal returns the plaintext.
func (s Secret) Reveal() string { return string(s) }

// String returns "REDACTED".
func (Secret) String() string { return redacted }

// GoString returns "REDACTED", for %#v.
func (Secret) GoString() string { return redacted }

// Format writes "REDACTED" for every verb; %q writes it quoted.
func (Secret) Format(f fmt.State, verb rune) {
	if verb == 'q' {
		_, _ = f.Write([]byte(strconv.Quote(redacted)))
		return
	}
	_, _ = f.Write([]byte(redacted))
}

// LogValue returns "REDACTED" for log/slog.
func (Secret) LogValue() slog.Value { return slog.StringValue(redacted) }

// MarshalText returns "REDACTED".
func (Secret) MarshalText() ([]byte, error) { return []byte(redacted), nil }

// MarshalJSON returns the JSON string "REDACTED".
func (Secret) MarshalJSON() ([]byte, error) { return []byte(`"` + redacted + `"`), nil }

// MarshalYAML returns "REDACTED" (the yaml.v3 Marshaler interface, which
// needs no import).
func (Secret) MarshalYAML() (any, error) { return redacted, nil }

var (
	_ fmt.Stringer   = Secret("")
	_ fmt.GoStringer = Secret("")
	_ fmt.Formatter  = Secret("")
	_ slog.LogValuer = Secret("")
)
