package auth

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"log/slog"
	"strings"
	"testing"
)

const plain = "hunter2-Zq9"

func TestSecretFmt(t *testing.T) {
	s := Secret(plain)
	type holder struct {
		Name   string
		Secret Secret
	}
	h := holder{"svc", s}
	tests := []struct {
		format string
		arg    any
		want   string
	}{
		{"%v", s, "REDACTED"},
		{"%+v", s, "REDACTED"},
		{"%#v", s, "REDACTED"},
		{"%s", s, "REDACTED"},
		{"%q", s, `"REDACTED"`},
		{"%x", s, "REDACTED"},
		{"%d", s, "REDACTED"},
		{"%10s", s, "REDACTED"},
		{"%v", h, "{svc REDACTED}"},
		{"%+v", h, "{Name:svc Secret:REDACTED}"},
		{"%#v", h, `auth.holder{Name:"svc", Secret:REDACTED}`},
		{"%v", &h, "&{svc REDACTED}"},
		{"%v", []Secret{s}, "[REDACTED]"},
		{"%v", map[string]Secret{"k": s}, "map[k:REDACTED]"},
		{"%+v", Account{Username: "a", Secret: s}, "{Username:a SecretHash: Secret:REDACTED Groups:[] Permit:[] Deny:[]}"},
		{"%+v", Credentials{Username: "a", Secret: s}, "REDACTED"},
	}
	for _, tt := range tests {
		t.Run(tt.format, func(t *testing.T) {
			got := fmt.Sprintf(tt.format, tt.arg)
			if strings.Contains(got, plain) || !strings.Contains(got, tt.want) {
				t.Errorf("Sprintf(%q, %T) = %q, want %q and no plaintext", tt.format, tt.arg, got, tt.want)
			}
		})
	}
	if got, want := s.String(), "REDACTED"; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
	if got, want := s.GoString(), "REDACTED"; got != want {
		t.Errorf("GoString() = %q, want %q", got, want)
	}
	if got := s.Reveal(); got != plain {
		t.Errorf("Reveal() = %q, want %q", got, plain)
	}
}

func TestSecretSlog(t *testing.T) {
	type holder struct {
		User   string
		Secret Secret
	}
	handlers := []struct {
		name string
		new  func(*bytes.Buffer) slog.Handler
	}{
		{"json", func(b *bytes.Buffer) slog.Handler { return slog.NewJSONHandler(b, nil) }},
		{"text", func(b *bytes.Buffer) slog.Handler { return slog.NewTextHandler(b, nil) }},
	}
	for _, h := range handlers {
		t.Run(h.name, func(t *testing.T) {
			var buf bytes.Buffer
			log := slog.New(h.new(&buf))
			s := Secret(plain)
			log.Info("login", "secret", s, slog.Any("any", s), slog.Any("struct", holder{"svc", s}),
				slog.Any("ptr", &s), slog.Group("g", "secret", s))
			out := buf.String()
			if strings.Contains(out, plain) {
				t.Errorf("%s handler output = %q, contains the plaintext", h.name, out)
			}
			if got, want := strings.Count(out, "REDACTED"), 5; got != want {
				t.Errorf("%s handler output has %d REDACTED, want %d: %s", h.name, got, want, out)
			}
		})
	}
}

func TestSecretMarshal(t *testing.T) {
	v := struct {
		User   string `json:"user" xml:"user"`
		Secret Secret `json:"secret" xml:"secret"`
		Map    map[string]Secret
	}{"svc", Secret(plain), map[string]Secret{"k": Secret(plain)}}

	j, err := json.Marshal(v)
	if err != nil {
		t.Fatalf("json.Marshal: %v", err)
	}
	if got, want := string(j), `{"user":"svc","secret":"REDACTED","Map":{"k":"REDACTED"}}`; got != want {
		t.Errorf("json.Marshal = %s, want %s", got, want)
	}
	x, err := xml.Marshal(struct {
		XMLName xml.Name `xml:"v"`
		Secret  Secret   `xml:"secret"`
		Attr    Secret   `xml:"a,attr"`
	}{Secret: Secret(plain), Attr: Secret(plain)})
	if err != nil {
		t.Fatalf("xml.Marshal: %v", err)
	}
	if got, want := string(x), `<v a="REDACTED"><secret>REDACTED</secret></v>`; got != want {
		t.Errorf("xml.Marshal = %s, want %s", got, want)
	}
	if y, _ := Secret(plain).MarshalYAML(); y != "REDACTED" {
		t.Errorf("MarshalYAML() = %v, want REDACTED", y)
	}
}
