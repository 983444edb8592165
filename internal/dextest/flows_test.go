package dextest_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/amiproxy/amiproxy/internal/dextest"
)

// TestDeviceFlow runs the device authorization grant with the public CLI
// client, approving it with ApproveDevice, and checks that the polling
// client gets an ID token.
func TestDeviceFlow(t *testing.T) {
	d := dextest.Start(t, dextest.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	oc := oauth2.Config{ClientID: d.CLIClientID, Scopes: dextest.DefaultScopes,
		Endpoint: oauth2.Endpoint{DeviceAuthURL: d.Issuer() + "/device/code", TokenURL: d.Issuer() + "/token"}}
	da, err := oc.DeviceAuth(ctx)
	if err != nil {
		t.Fatalf("DeviceAuth: %v", err)
	}
	if err := dextest.ApproveDevice(ctx, http.DefaultClient, da.VerificationURI, "WRONG-CODE", dextest.Admin.Email, dextest.Password); err == nil {
		t.Fatal("ApproveDevice with a wrong user code succeeded")
	}
	errc := make(chan error, 1)
	go func() {
		errc <- dextest.ApproveDevice(ctx, http.DefaultClient, da.VerificationURI, da.UserCode, dextest.Admin.Email, dextest.Password)
	}()
	tok, err := oc.DeviceAccessToken(ctx, da)
	if err != nil {
		t.Fatalf("DeviceAccessToken: %v", err)
	}
	if err := <-errc; err != nil {
		t.Fatalf("ApproveDevice: %v", err)
	}
	if id, _ := tok.Extra("id_token").(string); strings.Count(id, ".") != 2 {
		t.Fatalf("device flow id_token = %q, want a JWT", id)
	}
}

// TestSubmitLogin runs the authorization-code flow with a relying party on
// httptest and SubmitLogin, with a right and a wrong password.
func TestSubmitLogin(t *testing.T) {
	codes := make(chan string, 4)
	rp := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		codes <- r.URL.Query().Get("code")
		_, _ = w.Write([]byte("back at the relying party"))
	}))
	rp.Start()
	defer rp.Close()
	d := dextest.Start(t, dextest.Options{RedirectURIs: []string{rp.URL + "/callback"}})
	oc := oauth2.Config{ClientID: d.ClientID, ClientSecret: d.ClientSecret, RedirectURL: rp.URL + "/callback",
		Scopes: dextest.DefaultScopes, Endpoint: oauth2.Endpoint{AuthURL: d.Issuer() + "/auth", TokenURL: d.Issuer() + "/token"}}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	for _, tc := range []struct {
		name, password string
		wantErr        error
	}{
		{"wrong password", "nope", dextest.ErrBadPassword},
		{"right password", dextest.Password, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			jar, _ := cookiejar.New(nil)
			c := &http.Client{Jar: jar, Timeout: 20 * time.Second}
			verifier := oauth2.GenerateVerifier()
			resp, err := c.Get(oc.AuthCodeURL("st", oauth2.S256ChallengeOption(verifier)))
			if err != nil {
				t.Fatal(err)
			}
			out, err := dextest.SubmitLogin(ctx, c, resp, dextest.Operator.Email, tc.password)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("SubmitLogin error = %v, want %v", err, tc.wantErr)
			}
			if err != nil {
				return
			}
			out.Body.Close()
			code := <-codes
			tok, err := oc.Exchange(ctx, code, oauth2.VerifierOption(verifier))
			if err != nil {
				t.Fatalf("Exchange: %v", err)
			}
			if id, _ := tok.Extra("id_token").(string); id == "" {
				t.Fatal("no id_token")
			}
		})
	}
}
