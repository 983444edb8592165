package dextest

import (
	"context"
	"errors"
	"fmt"
	"html"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
)

// This file scripts the human side of Dex's HTML pages with plain HTTP, so
// tests can run the authorization-code flow and the device flow without a
// browser: pick the password connector, fill in the login form, enter a
// device user code. Dex must run with skipApprovalScreen (Start does).

// maxPage bounds how much of one Dex page is read.
const maxPage = 1 << 20

var (
	formRe      = regexp.MustCompile(`(?is)<form[^>]*\baction="([^"]*)"`)
	connectorRe = regexp.MustCompile(`(?is)<a[^>]*\bhref="([^"]*/auth/[^"/?]+[^"]*)"`)
	loginRe     = regexp.MustCompile(`(?i)\bname="login"`)
	userCodeRe  = regexp.MustCompile(`(?i)\bname="user_code"`)
)

// page is one HTML page read from Dex.
type page struct {
	url  *url.URL
	body string
}

func readPage(resp *http.Response) (page, error) {
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxPage))
	if err != nil {
		return page{}, fmt.Errorf("dextest: read %s: %w", resp.Request.URL.Redacted(), err)
	}
	if resp.StatusCode != http.StatusOK {
		return page{}, fmt.Errorf("dextest: %s answered %s: %.300s", resp.Request.URL.Redacted(), resp.Status, b)
	}
	return page{url: resp.Request.URL, body: string(b)}, nil
}

// formAction resolves the first form's action against the page URL.
func (p page) formAction() (string, error) {
	m := formRe.FindStringSubmatch(p.body)
	if m == nil {
		return "", fmt.Errorf("dextest: no form on %s", p.url.Redacted())
	}
	u, err := p.url.Parse(html.UnescapeString(m[1]))
	if err != nil {
		return "", fmt.Errorf("dextest: form action on %s: %w", p.url.Redacted(), err)
	}
	return u.String(), nil
}

// get fetches u with c and reads the page it ends on.
func get(ctx context.Context, c *http.Client, u string) (page, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return page{}, fmt.Errorf("dextest: %w", err)
	}
	resp, err := c.Do(req)
	if err != nil {
		return page{}, fmt.Errorf("dextest: get: %w", err)
	}
	return readPage(resp)
}

func post(ctx context.Context, c *http.Client, u string, form url.Values) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, strings.NewReader(form.Encode()))
	if err != nil {
		return nil, fmt.Errorf("dextest: %w", err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := c.Do(req)
	if err != nil {
		return nil, fmt.Errorf("dextest: post: %w", err)
	}
	return resp, nil
}

// toPasswordForm walks from a Dex page to its password login form: if p is
// the connector chooser, it follows the first connector link.
func toPasswordForm(ctx context.Context, c *http.Client, p page) (page, error) {
	if loginRe.MatchString(p.body) {
		return p, nil
	}
	m := connectorRe.FindStringSubmatch(p.body)
	if m == nil {
		return page{}, fmt.Errorf("dextest: %s is neither a login form nor a connector chooser", p.url.Redacted())
	}
	u, err := p.url.Parse(html.UnescapeString(m[1]))
	if err != nil {
		return page{}, fmt.Errorf("dextest: connector link: %w", err)
	}
	np, err := get(ctx, c, u.String())
	if err != nil {
		return page{}, err
	}
	if !loginRe.MatchString(np.body) {
		return page{}, fmt.Errorf("dextest: %s shows no login form", np.url.Redacted())
	}
	return np, nil
}

// ErrBadPassword is returned when Dex shows its login form again after the
// credentials were submitted.
var ErrBadPassword = errors.New("dextest: dex refused the username or password")

// SubmitLogin signs in on the Dex page that resp shows (the login form, or
// the connector chooser in front of it) and returns the response the
// client ends on after Dex redirects back to the relying party. c must
// keep cookies and decides, through its CheckRedirect, how far redirects
// are followed; the returned response is the caller's to close. resp's
// body is consumed and closed.
func SubmitLogin(ctx context.Context, c *http.Client, resp *http.Response, username, password string) (*http.Response, error) {
	p, err := readPage(resp)
	if err != nil {
		return nil, err
	}
	if p, err = toPasswordForm(ctx, c, p); err != nil {
		return nil, err
	}
	action, err := p.formAction()
	if err != nil {
		return nil, err
	}
	out, err := post(ctx, c, action, url.Values{"login": {username}, "password": {password}})
	if err != nil {
		return nil, err
	}
	if out.StatusCode/100 != 3 && strings.Contains(out.Request.URL.Path, "/auth/") {
		// Still on Dex's connector pages: the form came back (Dex answers
		// 401 with the form again for bad credentials).
		b, _ := io.ReadAll(io.LimitReader(out.Body, maxPage))
		out.Body.Close()
		if loginRe.Match(b) {
			return nil, ErrBadPassword
		}
		return nil, fmt.Errorf("dextest: unexpected page after login at %s: %.300s", out.Request.URL.Redacted(), b)
	}
	return out, nil
}

// ApproveDevice plays the user of the device authorization grant: it opens
// verificationURI in a fresh cookie jar, enters userCode, signs in as
// username and checks that Dex reports success. It uses c's Transport only.
func ApproveDevice(ctx context.Context, c *http.Client, verificationURI, userCode, username, password string) error {
	jar, err := newJar()
	if err != nil {
		return err
	}
	hc := &http.Client{Transport: c.Transport, Jar: jar, Timeout: c.Timeout}
	p, err := get(ctx, hc, verificationURI)
	if err != nil {
		return err
	}
	if !userCodeRe.MatchString(p.body) {
		return fmt.Errorf("dextest: %s shows no user code form", p.url.Redacted())
	}
	action, err := p.formAction()
	if err != nil {
		return err
	}
	resp, err := post(ctx, hc, action, url.Values{"user_code": {userCode}})
	if err != nil {
		return err
	}
	out, err := SubmitLogin(ctx, hc, resp, username, password)
	if err != nil {
		return err
	}
	done, err := readPage(out)
	if err != nil {
		return err
	}
	if !strings.Contains(done.body, "Login Successful") {
		return fmt.Errorf("dextest: device approval ended on %s without success: %.300s", done.url.Redacted(), done.body)
	}
	return nil
}

func newJar() (http.CookieJar, error) {
	jar, err := cookiejar.New(nil)
	if err != nil {
		return nil, fmt.Errorf("dextest: cookie jar: %w", err)
	}
	return jar, nil
}
