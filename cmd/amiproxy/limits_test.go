package main

import (
	"strings"
	"testing"
)

func TestLimitsDefaultsOn(t *testing.T) {
	var l Limits
	if errs := l.validate(); len(errs) != 0 {
		t.Fatalf("empty limits: %v", errs)
	}
	login, actions, err := l.build()
	if err != nil || login == nil || actions != nil {
		t.Fatalf("build() = %v, %v, %v; want a login limiter, no action limiter", login, actions, err)
	}
	l.InsecureNoLoginLimits = true
	if login, _, _ := l.build(); login != nil {
		t.Fatal("insecure_no_login_limits left the login limits on")
	}
}

func TestLimitsDecodeAndValidate(t *testing.T) {
	doc := `limits:
  login_per_address: {rate: 5, per: 1m, burst: 10}
  actions:
    Originate: {rate: 1, per: 1s, burst: 5}
`
	f, err := decodeConfig(strings.NewReader(doc))
	if err != nil {
		t.Fatal(err)
	}
	if errs := f.Limits.validate(); len(errs) != 0 {
		t.Fatalf("validate: %v", errs)
	}
	if _, actions, err := f.Limits.build(); err != nil || actions == nil {
		t.Fatalf("build: %v, %v", actions, err)
	}
	if _, err := decodeConfig(strings.NewReader("limits:\n  login_per_adress: {rate: 1}\n")); err == nil {
		t.Fatal("unknown limits key accepted")
	}
	bad := `limits:
  login_per_address: {rate: 5}
  login_failures_per_user: {rate: -1, per: 1m, burst: 1}
  lockout_base: 1h
  lockout_max: 1m
  max_entries: -1
  unauthenticated_per_address: -2
  actions:
    Originate: {rate: 1, per: 1s}
    originate: {rate: 1, per: 1s, burst: 1}
`
	f, err = decodeConfig(strings.NewReader(bad))
	if err != nil {
		t.Fatal(err)
	}
	err = f.Validate()
	if err == nil {
		t.Fatal("bad limits accepted")
	}
	for _, want := range []string{
		"limits.login_per_address.per", "limits.login_per_address.burst",
		"limits.login_failures_per_user.rate", "lockout_max", "max_entries",
		"unauthenticated_per_address", "burst: want at least 1", "duplicate of",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Validate() does not report %q:\n%v", want, err)
		}
	}
}
