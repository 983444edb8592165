package auth

import (
	"bytes"
	"html/template"
	"net/http"
)

// pageData is what the one page of Web shows.
type pageData struct {
	SignedIn    bool
	User        string
	Subject     string
	Groups      []string
	Roles       []string
	PBXs        []string
	CSRF        string
	SessionEnds string
	DefaultTTL  string
	Secrets     []SecretView
	New         *MintResult // the secret just minted, shown once
	Error       string
}

// pageTemplate is the whole UI: plain HTML, no script, no style, so the
// Content-Security-Policy can stay at default-src 'self'.
var pageTemplate = template.Must(template.New("page").Parse(`<!DOCTYPE html>
<html lang="en">
<head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>amiproxy: AMI access</title></head>
<body>
<h1>amiproxy</h1>
{{if .Error}}<p id="error" role="alert">{{.Error}}</p>
<p><a href="/me">Back</a></p>
{{else if not .SignedIn}}<p>You are not signed in.</p>
<p><a id="signin" href="/login">Sign in</a></p>
{{else}}
<h2>Who you are</h2>
<dl>
<dt>User</dt><dd id="user">{{.User}}</dd>
<dt>Subject</dt><dd id="subject">{{.Subject}}</dd>
<dt>Groups</dt><dd id="groups">{{range $i, $g := .Groups}}{{if $i}}, {{end}}{{$g}}{{else}}none{{end}}</dd>
<dt>Roles</dt><dd id="roles">{{range $i, $r := .Roles}}{{if $i}}, {{end}}{{$r}}{{else}}none{{end}}</dd>
<dt>PBXs</dt><dd id="pbxs">{{range $i, $p := .PBXs}}{{if $i}}, {{end}}{{$p}}{{else}}none{{end}}</dd>
<dt>Session ends</dt><dd>{{.SessionEnds}}</dd>
</dl>
{{with .New}}
<h2>Your new AMI secret</h2>
<p><strong>Copy it now: it is shown only once.</strong> Use it as Username/Secret in an AMI Login (plain or MD5).</p>
<dl>
<dt>Username</dt><dd><code id="new-username">{{.Username}}</code></dd>
<dt>Secret</dt><dd><code id="new-secret">{{.Secret}}</code></dd>
<dt>Expires</dt><dd id="new-expires">{{.Expires.UTC.Format "2006-01-02T15:04:05Z07:00"}}</dd>
</dl>
{{end}}
<h2>Mint an AMI secret</h2>
<form id="mint" method="post" action="/me/secrets">
<input type="hidden" name="csrf" value="{{.CSRF}}">
<label>Lifetime <input name="ttl" value="{{.DefaultTTL}}" size="6"></label>
<label>Label <input name="label" maxlength="100"></label>
<button id="mint-button" type="submit">Mint secret</button>
</form>
<h2>Your AMI secrets</h2>
{{if .Secrets}}<table id="secrets">
<tr><th>ID</th><th>Label</th><th>Created</th><th>Expires</th><th></th></tr>
{{range .Secrets}}<tr><td>{{.ID}}</td><td>{{.Label}}</td><td>{{.Created.UTC.Format "2006-01-02 15:04:05Z"}}</td><td>{{.Expires.UTC.Format "2006-01-02 15:04:05Z"}}</td>
<td><form method="post" action="/me/secrets/{{.ID}}/revoke"><input type="hidden" name="csrf" value="{{$.CSRF}}"><button type="submit">Revoke</button></form></td></tr>
{{end}}</table>
{{else}}<p id="no-secrets">None.</p>{{end}}
<form id="logout" method="post" action="/logout"><input type="hidden" name="csrf" value="{{.CSRF}}"><button type="submit">Sign out</button></form>
{{end}}
</body>
</html>
`))

func (w *Web) render(rw http.ResponseWriter, status int, d pageData) {
	var b bytes.Buffer
	if err := pageTemplate.Execute(&b, d); err != nil {
		w.log.Error("web: render page", "err", err)
		http.Error(rw, "internal error", http.StatusInternalServerError)
		return
	}
	rw.Header().Set("Content-Type", "text/html; charset=utf-8")
	rw.WriteHeader(status)
	_, _ = rw.Write(b.Bytes())
}

func (w *Web) renderError(rw http.ResponseWriter, status int, msg string) {
	w.render(rw, status, pageData{Error: msg})
}

// continueHTML ends a sign-in: it moves to /me in a new, same-site
// navigation (meta refresh; no script), with a link as a fallback.
const continueHTML = `<!DOCTYPE html>
<html lang="en">
<head><meta charset="utf-8"><meta http-equiv="refresh" content="0;url=/me">
<title>amiproxy: signed in</title></head>
<body><p id="signed-in">Signed in. <a id="continue" href="/me">Continue</a></p></body>
</html>
`

func (w *Web) renderContinue(rw http.ResponseWriter) {
	rw.Header().Set("Content-Type", "text/html; charset=utf-8")
	rw.WriteHeader(http.StatusOK)
	_, _ = rw.Write([]byte(continueHTML))
}
