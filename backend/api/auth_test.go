package api_test

import (
	"io"
	"net/http"
	"net/http/cookiejar"
	"strings"
	"testing"

	"tandem/backend/api"
	"tandem/backend/auth"
	"tandem/backend/domain"
)

// browser is a cookie-carrying client.
type browser struct {
	e      *env
	client *http.Client
}

func newBrowser(t *testing.T, e *env) *browser {
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	return &browser{e: e, client: &http.Client{Jar: jar}}
}

func (b *browser) do(method, path, body string, hdr ...string) result {
	b.e.t.Helper()
	req, err := http.NewRequest(method, b.e.srv.URL+path, strings.NewReader(body))
	if err != nil {
		b.e.t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := b.client.Do(req)
	if err != nil {
		b.e.t.Fatal(err)
	}
	defer resp.Body.Close()
	body2, _ := io.ReadAll(resp.Body)
	return result{Status: resp.StatusCode, Body: body2, Header: resp.Header}
}

func TestLoginCSRFLogout(t *testing.T) {
	e := newEnv(t)
	b := newBrowser(t, e)
	// Wrong password, unknown user: 401 and no cookie.
	for _, body := range []string{`{"name":"admin","password":"wrong password"}`, `{"name":"nobody","password":"whatever123"}`} {
		r := b.do("POST", "/api/v1/login", body)
		if r.Status != 401 || r.Header.Get("Set-Cookie") != "" {
			t.Fatalf("bad login: %d %s", r.Status, r.Header.Get("Set-Cookie"))
		}
	}
	// The bootstrap token is user admin's first password.
	r := b.do("POST", "/api/v1/login", `{"name":"admin","password":"`+adminToken+`"}`)
	if r.Status != 200 {
		t.Fatalf("login: %d %s", r.Status, r.Body)
	}
	var me api.Me
	r.decode(t, &me)
	if me.Name != "admin" || me.Role != domain.RoleAdmin || me.CSRFToken == "" {
		t.Fatalf("login answer: %+v", me)
	}
	sc := r.Header.Get("Set-Cookie")
	for _, attr := range []string{auth.CookieName + "=", "HttpOnly", "SameSite=Strict", "Path=/"} {
		if !strings.Contains(sc, attr) {
			t.Errorf("cookie %q lacks %s", sc, attr)
		}
	}
	if strings.Contains(sc, "Secure") {
		t.Errorf("cookie over plain HTTP marked Secure: %s", sc)
	}
	// GET /me returns the same CSRF token.
	var me2 api.Me
	b.do("GET", "/api/v1/me", "").decode(t, &me2)
	if me2.CSRFToken != me.CSRFToken || me2.Auth != "session" {
		t.Fatalf("me: %+v", me2)
	}
	before := e.dump()
	// Cookie without the CSRF header, or with a wrong one: 403.
	for _, hdr := range [][]string{nil, {auth.CSRFHeader, "nope"}} {
		r := b.do("POST", "/api/v1/clusters", `{"name":"c1"}`, hdr...)
		if r.Status != 403 || r.err(t).Code != api.CodeForbidden {
			t.Fatalf("write without CSRF %v: %d %s", hdr, r.Status, r.Body)
		}
	}
	// Right token but a cross-site browser request: 403.
	r = b.do("POST", "/api/v1/clusters", `{"name":"c1"}`, auth.CSRFHeader, me.CSRFToken, "Sec-Fetch-Site", "cross-site", "Origin", "https://evil.example")
	if r.Status != 403 {
		t.Fatalf("cross-site write: %d %s", r.Status, r.Body)
	}
	e.unchanged(before, "refused cookie writes")
	// Right token, same origin: accepted, audited with the user's name.
	r = b.do("POST", "/api/v1/clusters", `{"name":"c1"}`, auth.CSRFHeader, me.CSRFToken, "Sec-Fetch-Site", "same-origin")
	if r.Status != 201 {
		t.Fatalf("write with CSRF: %d %s", r.Status, r.Body)
	}
	audit, _ := e.st.Audit(t.Context(), 0, 1)
	if audit[0].Actor != "admin" {
		t.Fatalf("audit actor %q", audit[0].Actor)
	}
	// Logout needs CSRF too, then the cookie no longer works.
	if r := b.do("POST", "/api/v1/logout", ""); r.Status != 403 {
		t.Fatalf("logout without CSRF: %d", r.Status)
	}
	if r := b.do("POST", "/api/v1/logout", "", auth.CSRFHeader, me.CSRFToken); r.Status != 204 {
		t.Fatalf("logout: %d %s", r.Status, r.Body)
	}
	if r := b.do("GET", "/api/v1/me", ""); r.Status != 401 {
		t.Fatalf("after logout: %d", r.Status)
	}
	// A token in the query string is never a credential.
	if r := e.do("GET", "/api/v1/clusters?token="+adminToken, "", nil); r.Status != 401 {
		t.Fatalf("query-string token: %d", r.Status)
	}
	// Bearer requests skip CSRF.
	e.must(201, "POST", "/api/v1/clusters", adminToken, map[string]any{"name": "c2"})
}

func TestUsersAndTokens(t *testing.T) {
	e := newEnv(t)
	// A token's secret is shown once; listing never shows secrets.
	var nt api.NewToken
	e.must(201, "POST", "/api/v1/tokens", adminToken, map[string]any{"name": "ci", "role": "operator"}).decode(t, &nt)
	if len(nt.Secret) != 64 || nt.Role != "operator" {
		t.Fatalf("new token: %+v", nt)
	}
	list := e.must(200, "GET", "/api/v1/tokens", adminToken, nil)
	if strings.Contains(string(list.Body), nt.Secret) || strings.Contains(string(list.Body), auth.HashSecret(nt.Secret)) {
		t.Fatal("token list shows a secret or its hash")
	}
	if r := e.do("POST", "/api/v1/tokens", adminToken, map[string]any{"name": "ci", "role": "viewer"}); r.Status != 409 {
		t.Fatalf("duplicate token: %d", r.Status)
	}
	e.must(201, "POST", "/api/v1/clusters", nt.Secret, map[string]any{"name": "c1"})
	var me api.Me
	e.must(200, "GET", "/api/v1/me", nt.Secret, nil).decode(t, &me)
	if me.Name != "ci" || me.Role != "operator" || me.Auth != "token" || me.CSRFToken != "" {
		t.Fatalf("me by token: %+v", me)
	}
	e.must(204, "DELETE", "/api/v1/tokens/ci", adminToken, nil)
	if r := e.do("GET", "/api/v1/clusters", nt.Secret, nil); r.Status != 401 {
		t.Fatalf("deleted token still works: %d", r.Status)
	}

	// Users: create, log in, change role and password, delete.
	e.must(201, "POST", "/api/v1/users", adminToken, map[string]any{"name": "bob", "role": "viewer", "password": "bobs password"})
	if r := e.do("POST", "/api/v1/users", adminToken, map[string]any{"name": "bob", "role": "viewer", "password": "bobs password"}); r.Status != 409 {
		t.Fatalf("duplicate user: %d", r.Status)
	}
	b := newBrowser(t, e)
	var bm api.Me
	r := b.do("POST", "/api/v1/login", `{"name":"bob","password":"bobs password"}`)
	r.decode(t, &bm)
	if r.Status != 200 || bm.Role != "viewer" {
		t.Fatalf("bob login: %d %s", r.Status, r.Body)
	}
	if r := b.do("POST", "/api/v1/clusters", `{"name":"c9"}`, auth.CSRFHeader, bm.CSRFToken); r.Status != 403 {
		t.Fatalf("viewer write by cookie: %d", r.Status)
	}
	e.must(200, "PUT", "/api/v1/users/bob", adminToken, map[string]any{"role": "operator", "password": "new password!"})
	// A password change ends bob's sessions.
	if r := b.do("GET", "/api/v1/me", ""); r.Status != 401 {
		t.Fatalf("session after password change: %d", r.Status)
	}
	var u domain.User
	e.must(200, "GET", "/api/v1/users/bob", adminToken, nil).decode(t, &u)
	if u.Role != "operator" {
		t.Fatalf("bob: %+v", u)
	}
	// The last admin stays.
	if r := e.do("DELETE", "/api/v1/users/admin", adminToken, nil); r.Status != 409 {
		t.Fatalf("delete last admin: %d", r.Status)
	}
	if r := e.do("PUT", "/api/v1/users/admin", adminToken, map[string]any{"role": "viewer"}); r.Status != 409 {
		t.Fatalf("demote last admin: %d", r.Status)
	}
	e.must(204, "DELETE", "/api/v1/users/bob", adminToken, nil)
	if r := e.do("GET", "/api/v1/users/bob", adminToken, nil); r.Status != 404 {
		t.Fatalf("deleted user: %d", r.Status)
	}
	var users []domain.User
	e.must(200, "GET", "/api/v1/users", adminToken, nil).decode(t, &users)
	if len(users) != 1 || users[0].Name != "admin" {
		t.Fatalf("users: %+v", users)
	}
}
