package console_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	cdpbrowser "github.com/chromedp/cdproto/browser"
	"github.com/chromedp/chromedp"

	"tandem/backend/testenv"
)

// The administration pages of web/pages.js, in a real Chromium against a
// real admin server (and, for the job page, a real node manager running
// real managed servers).

// logIn logs the browser in as admin and waits for the dashboard.
func logIn(b *browser, a *adminProc) {
	b.t.Helper()
	b.do("log in", 30*time.Second,
		chromedp.Navigate(a.URL+"/"),
		fill("#login-name", "admin"), fill("#login-password", a.Token),
		chromedp.Click(chromedp.CSS("#login-submit")),
		chromedp.WaitVisible(chromedp.CSS("#topology")))
}

// bearer sends a request with the given bearer token and returns the
// status and the decoded JSON answer (nil when there is none).
func bearer(t *testing.T, a *adminProc, token, method, path string, in any) (int, map[string]any) {
	t.Helper()
	var body bytes.Buffer
	if in != nil {
		_ = json.NewEncoder(&body).Encode(in)
	}
	req, err := http.NewRequest(method, a.URL+"/api/v1"+path, &body)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	var out map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out
}

// labelled reports whether every input, select and textarea on the page
// has an id and a <label for> naming it.
func labelled(b *browser) bool {
	b.t.Helper()
	return b.eval(`[...document.querySelectorAll('#main input, #main select, #main textarea')].every((el) => el.id && document.querySelector('label[for="' + CSS.escape(el.id) + '"]'))`)
}

// evalString evaluates a JavaScript expression that yields a string.
func evalString(b *browser, expr string) string {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 10*time.Second)
	defer cancel()
	s, err := chromedp.Run(ctx, chromedp.Evaluate[string](expr))
	if err != nil {
		b.t.Fatalf("eval %s: %v", expr, err)
	}
	return s
}

// TestConsolePagesTokensAudit: an API token is created in the console, its
// secret shown once and working over real HTTP, then revoked in the
// console (the API refuses it from then on); the audit page's filters find
// both entries.
func TestConsolePagesTokensAudit(t *testing.T) {
	a := startAdmin(t)
	b := newBrowser(t)
	logIn(b, a)

	b.do("create a token", 20*time.Second,
		chromedp.Navigate(a.URL+"/#/tokens"),
		chromedp.WaitVisible(chromedp.CSS("#token-new-name")),
		fill("#token-new-name", "ci-deploy"),
		chromedp.SetValue(chromedp.CSS("#token-new-role"), "operator"),
		chromedp.Click(chromedp.CSS("#token-new-submit")),
		chromedp.WaitVisible(chromedp.CSS("#token-secret-value")),
		chromedp.WaitVisible(chromedp.CSS(`#tokens-table tr[data-token="ci-deploy"][data-role="operator"]`)))
	if !labelled(b) {
		t.Error("a field of the tokens page has no <label for>")
	}
	secret := strings.TrimSpace(b.text("#token-secret-value"))
	if len(secret) < 20 {
		t.Fatalf("token secret shown as %q", secret)
	}
	if got := b.text("#token-secret"); !strings.Contains(got, "only time") {
		t.Fatalf("secret box says %q", got)
	}
	// The Copy button copies, or selects the text to copy by hand.
	b.do("copy the secret", 10*time.Second,
		chromedp.Click(chromedp.CSS("#token-secret-copy")),
		chromedp.WaitVisible(chromedp.CSS("#token-secret-out .notice")))
	b.screenshot("token-created")

	// The secret works over real HTTP, with the token's name and role.
	st, me := bearer(t, a, secret, http.MethodGet, "/me", nil)
	if st != http.StatusOK || me["name"] != "ci-deploy" || me["role"] != "operator" {
		t.Fatalf("GET /me with the new token: %d %v", st, me)
	}
	if st, _ := bearer(t, a, secret, http.MethodPost, "/clusters", map[string]any{"name": "made-by-ci"}); st != http.StatusCreated {
		t.Fatalf("operator token could not create a cluster: %d", st)
	}

	// Shown once: after a reload of the page the secret is nowhere, and
	// the list shows the token's use.
	testenv.Eventually(t, 10*time.Second, func() error {
		var ts []struct {
			Name     string  `json:"name"`
			LastUsed *string `json:"last_used"`
		}
		a.call(t, http.MethodGet, "/tokens", nil, &ts)
		for _, x := range ts {
			if x.Name == "ci-deploy" && x.LastUsed != nil {
				return nil
			}
		}
		return fmt.Errorf("no last_used for ci-deploy yet: %+v", ts)
	})
	b.do("reload the tokens page", 20*time.Second,
		chromedp.Navigate(a.URL+"/#/"),
		chromedp.WaitVisible(chromedp.CSS("#topology")),
		chromedp.Navigate(a.URL+"/#/tokens"),
		chromedp.WaitVisible(chromedp.CSS(`#tokens-table tr[data-token="ci-deploy"]`)))
	if b.count("#token-secret") != 0 || b.eval(fmt.Sprintf("document.documentElement.outerHTML.includes(%q)", secret)) {
		t.Fatal("the token secret is shown again after leaving the page")
	}
	if got := b.text(`#tokens-table tr[data-token="ci-deploy"] td:nth-child(5)`); got == "never" || got == "" {
		t.Errorf("last used shows %q after the token was used", got)
	}

	// Revoke it with the two-step button.
	b.do("revoke the token", 20*time.Second,
		chromedp.Click(chromedp.CSS("#token-revoke-ci-deploy")),
		pollTrue(`document.querySelector('#token-revoke-ci-deploy').textContent === 'Confirm revoke'`),
		chromedp.Click(chromedp.CSS("#token-revoke-ci-deploy")),
		chromedp.WaitVisible(chromedp.CSS("#tokens-msg .notice.ok")),
		pollTrue(`!document.querySelector('#tokens-table tr[data-token="ci-deploy"]')`))
	b.screenshot("token-revoked")
	if st, _ := bearer(t, a, secret, http.MethodGet, "/me", nil); st != http.StatusUnauthorized {
		t.Fatalf("GET /me with the revoked token: %d, want 401", st)
	}

	// The audit page: filtered by resource and actor, the creation and the
	// revocation, by admin, and nothing else.
	b.do("audit page", 20*time.Second,
		chromedp.Navigate(a.URL+"/#/audit"),
		chromedp.WaitVisible(chromedp.CSS("#audit-table tr[data-id]")))
	if !labelled(b) {
		t.Error("a field of the audit page has no <label for>")
	}
	b.do("filter by resource and actor", 20*time.Second,
		fill("#audit-filter-resource", "token/ci-deploy"),
		fill("#audit-filter-actor", "admin"),
		chromedp.Click(chromedp.CSS("#audit-filter-submit")),
		// The unfiltered list has these rows too: wait for the filtered one.
		pollTrue(`/filtered by/.test(document.querySelector('#audit-info').textContent)`),
		chromedp.WaitVisible(chromedp.CSS(`#audit-table tr[data-action="token.create"][data-target="token/ci-deploy"]`)),
		chromedp.WaitVisible(chromedp.CSS(`#audit-table tr[data-action="token.delete"][data-target="token/ci-deploy"]`)))
	if !b.eval(`[...document.querySelectorAll('#audit-table tr[data-id]')].every((tr) => tr.dataset.actor === 'admin' && tr.dataset.target.startsWith('token/ci-deploy'))`) {
		t.Fatalf("filtered audit rows: %s", b.text("#audit-table tbody"))
	}
	if n := b.count("#audit-table tr[data-id]"); n != 2 {
		t.Fatalf("%d audit rows for token/ci-deploy by admin, want 2", n)
	}
	// Newest first: the revocation above the creation.
	if got := evalString(b, `[...document.querySelectorAll('#audit-table tr[data-id]')].map((tr) => tr.dataset.action).join(',')`); got != "token.delete,token.create" {
		t.Fatalf("audit order %q", got)
	}
	// The change is there to read (the token as created; no secret, no hash).
	b.do("open the creation's change", 10*time.Second,
		chromedp.Click(chromedp.CSS(`#audit-table tr[data-action="token.create"] summary`)),
		chromedp.WaitVisible(chromedp.CSS(`#audit-table tr[data-action="token.create"] pre.json`)))
	if got := b.text(`#audit-table tr[data-action="token.create"] details`); !strings.Contains(got, `"role": "operator"`) || strings.Contains(got, secret) {
		t.Fatalf("creation's change shows %q", got)
	}
	b.screenshot("audit-filtered")

	// A time range: since in the future finds nothing; until before since
	// is refused beside the field; clearing shows everything again,
	// including the operator token's own write.
	b.do("since in the future", 20*time.Second,
		chromedp.Evaluate[chromedp.Void](`document.querySelector('#audit-filter-since').value = '2999-01-01T00:00'`),
		chromedp.Click(chromedp.CSS("#audit-filter-submit")),
		chromedp.WaitVisible(chromedp.CSS("#audit-empty")))
	b.do("until before since", 20*time.Second,
		chromedp.Evaluate[chromedp.Void](`document.querySelector('#audit-filter-until').value = '2998-01-01T00:00'`),
		chromedp.Click(chromedp.CSS("#audit-filter-submit")),
		chromedp.WaitVisible(chromedp.CSS("#audit-filter-until-error:not([hidden])")))
	b.do("a range around now", 20*time.Second,
		chromedp.Evaluate[chromedp.Void](`(() => { const p = (d) => new Date(d.getTime() - d.getTimezoneOffset() * 60000).toISOString().slice(0, 16); document.querySelector('#audit-filter-since').value = p(new Date(Date.now() - 3600e3)); document.querySelector('#audit-filter-until').value = p(new Date(Date.now() + 3600e3)); })()`),
		chromedp.Click(chromedp.CSS("#audit-filter-submit")),
		chromedp.WaitVisible(chromedp.CSS(`#audit-table tr[data-action="token.delete"]`)))
	b.do("clear the filters", 20*time.Second,
		chromedp.Click(chromedp.CSS("#audit-filter-clear")),
		chromedp.WaitVisible(chromedp.CSS(`#audit-table tr[data-actor="ci-deploy"][data-target="cluster/made-by-ci"]`)))

	// "Load older" pages back through the whole log.
	for i := range 60 {
		if st := a.call(t, http.MethodPost, "/node-managers", map[string]any{"name": fmt.Sprintf("nm%d", i), "listen": testenv.FreeAddr(t)}, nil); st != http.StatusCreated {
			t.Fatalf("create a node manager: %d", st)
		}
	}
	b.do("reload the audit page", 20*time.Second,
		chromedp.Navigate(a.URL+"/#/"),
		chromedp.WaitVisible(chromedp.CSS("#topology")),
		chromedp.Navigate(a.URL+"/#/audit"),
		chromedp.WaitVisible(chromedp.CSS("#audit-table tr[data-id]")))
	if n := b.count("#audit-table tr[data-id]"); n != 50 {
		t.Fatalf("first audit page: %d rows, want 50", n)
	}
	b.do("load older", 20*time.Second,
		chromedp.Click(chromedp.CSS("#audit-older")),
		pollTrue(`document.querySelector('#audit-older').textContent === 'No older entries'`))
	if !b.eval(`(() => { const ids = [...document.querySelectorAll('#audit-table tr[data-id]')].map((tr) => +tr.dataset.id); return ids.length > 50 && ids.every((v, i) => i === 0 || v < ids[i - 1]) && ids[ids.length - 1] === 1; })()`) {
		t.Fatal("load older did not reach the first entry in order")
	}
	b.checkConsole()
}

// TestConsolePagesRollingJob: a rolling restart of two managed servers run
// by a real node manager, followed on its job page to the end.
func TestConsolePagesRollingJob(t *testing.T) {
	a := startAdmin(t)
	nmAddr := testenv.FreeAddr(t)
	for _, c := range []struct {
		path string
		body map[string]any
	}{
		{"/clusters", map[string]any{"name": "c1", "description": "rolling"}},
		{"/node-managers", map[string]any{"name": "nm1", "listen": nmAddr}},
		{"/servers", map[string]any{"name": "ms1", "cluster": "c1", "listen": testenv.FreeAddr(t), "node_manager": "nm1"}},
		{"/servers", map[string]any{"name": "ms2", "cluster": "c1", "listen": testenv.FreeAddr(t), "node_manager": "nm1"}},
	} {
		if st := a.call(t, http.MethodPost, c.path, c.body, nil); st != http.StatusCreated {
			t.Fatalf("POST %s: %d", c.path, st)
		}
	}
	testenv.Start(t, "nm1", a.env, "nodemanager", "--name", "nm1", "--admin", a.URL, "--data-dir", t.TempDir(),
		"--listen", nmAddr, "--stop-processes-on-exit", "--restart-delay", "100ms")
	// The node manager starts the servers once it is connected (503 until then).
	for _, name := range []string{"ms1", "ms2"} {
		testenv.Eventually(t, 60*time.Second, func() error {
			if st := a.call(t, http.MethodPost, "/servers/"+name+"/start", nil, nil); st != http.StatusOK {
				return fmt.Errorf("start %s: %d", name, st)
			}
			return nil
		})
	}
	testenv.Eventually(t, 60*time.Second, func() error {
		var topo struct {
			Clusters []struct {
				Servers []struct {
					Name  string `json:"name"`
					State string `json:"state"`
				} `json:"servers"`
			} `json:"clusters"`
		}
		a.call(t, http.MethodGet, "/topology", nil, &topo)
		running := 0
		for _, c := range topo.Clusters {
			for _, s := range c.Servers {
				if s.State == "running" {
					running++
				}
			}
		}
		if running != 2 {
			return fmt.Errorf("%d of 2 servers running: %+v", running, topo)
		}
		return nil
	})

	b := newBrowser(t)
	logIn(b, a)
	b.do("no jobs yet", 20*time.Second,
		chromedp.Navigate(a.URL+"/#/jobs"),
		chromedp.WaitVisible(chromedp.CSS("#jobs-table-empty")))

	var job struct {
		ID    int64  `json:"id"`
		State string `json:"state"`
	}
	if st := a.call(t, http.MethodPost, "/clusters/c1/rolling-restart", nil, &job); st != http.StatusAccepted || job.ID == 0 {
		t.Fatalf("rolling restart: %d %+v", st, job)
	}
	t.Cleanup(func() {
		if t.Failed() {
			var j json.RawMessage
			a.call(t, http.MethodGet, fmt.Sprintf("/jobs/%d", job.ID), nil, &j)
			t.Logf("job %d: %s", job.ID, j)
		}
	})
	// The job list (open before the job started) shows it live.
	b.do("the job appears in the list", 20*time.Second,
		chromedp.WaitVisible(chromedp.CSS(fmt.Sprintf(`#jobs-table tr[data-job="%d"]`, job.ID))))

	b.do("open the job page", 20*time.Second,
		chromedp.Navigate(fmt.Sprintf("%s/#/jobs/%d", a.URL, job.ID)),
		chromedp.WaitVisible(chromedp.CSS("#job-bar")))
	first := evalString(b, `document.querySelector('#job-state').dataset.state`)
	t.Logf("job page first showed the job %s", first)
	if got := b.text("#job-kind"); got != "Rolling restart" {
		t.Errorf("job kind %q", got)
	}
	if got := b.text("#job-cluster"); got != "c1" {
		t.Errorf("job cluster %q", got)
	}
	if !b.eval(`!!document.querySelector('label[for="job-bar"]')`) {
		t.Error("the progress bar has no label")
	}
	b.waitJS("job completed with the progress bar full", `(() => {
		const st = document.querySelector('#job-state'); const bar = document.querySelector('#job-bar');
		return st && st.dataset.state === 'completed' && bar.max === 2 && bar.value === 2;
	})()`, 180*time.Second)
	if n := b.count(`#job-steps tr[data-step="done"]`); n != 2 {
		t.Fatalf("%d steps done, want 2: %s", n, b.text("#job-steps"))
	}
	if got := b.text("#job-bar-text"); !strings.Contains(got, "2 of 2") || !strings.Contains(got, "completed") {
		t.Errorf("progress text %q", got)
	}
	b.waitJS("the job's events", `!!document.querySelector('#job-events li[data-type="rolling.completed"]') && !!document.querySelector('#job-events li[data-type="rolling.step"]')`, 20*time.Second)
	b.screenshot("job-completed")

	b.do("the list shows it completed", 20*time.Second,
		chromedp.Navigate(a.URL+"/#/jobs"),
		chromedp.WaitVisible(chromedp.CSS(fmt.Sprintf(`#jobs-table tr[data-job="%d"][data-state="completed"]`, job.ID))))
	b.screenshot("jobs")
	b.checkConsole()
}

// TestConsolePagesResources: users, node managers and web servers are
// created, edited and deleted through the console's forms; the HAProxy
// export shows a cluster's configuration.
func TestConsolePagesResources(t *testing.T) {
	a := startAdmin(t)
	if st := a.call(t, http.MethodPost, "/clusters", map[string]any{"name": "c1"}, nil); st != http.StatusCreated {
		t.Fatalf("create c1: %d", st)
	}
	for _, s := range []string{"ms1", "ms2"} {
		if st := a.call(t, http.MethodPost, "/servers", map[string]any{"name": s, "cluster": "c1", "listen": testenv.FreeAddr(t)}, nil); st != http.StatusCreated {
			t.Fatalf("create %s: %d", s, st)
		}
	}
	b := newBrowser(t)
	logIn(b, a)

	// ---- a user: created, its role changed, its password reset, deleted.
	b.do("create a user", 20*time.Second,
		chromedp.Navigate(a.URL+"/#/users"),
		fill("#user-new-name", "alice"),
		chromedp.SetValue(chromedp.CSS("#user-new-role"), "operator"),
		fill("#user-new-password", "short"),
		chromedp.Click(chromedp.CSS("#user-new-submit")),
		chromedp.WaitVisible(chromedp.CSS("#user-new-password-error:not([hidden])")))
	if !labelled(b) {
		t.Error("a field of the users page has no <label for>")
	}
	b.do("create a user with a good password", 20*time.Second,
		fill("#user-new-password", "alice-password-1"),
		chromedp.Click(chromedp.CSS("#user-new-submit")),
		chromedp.WaitVisible(chromedp.CSS(`#users-table tr[data-user="alice"][data-role="operator"]`)),
		chromedp.WaitVisible(chromedp.CSS("#users-msg .notice.ok")))
	b.screenshot("users")
	if st, _ := bearer(t, a, "", http.MethodPost, "/login", map[string]any{"name": "alice", "password": "alice-password-1"}); st != http.StatusOK {
		t.Fatalf("alice cannot log in: %d", st)
	}
	b.do("change alice's role", 20*time.Second,
		chromedp.Click(chromedp.CSS(`#users-table tr[data-user="alice"] a`)),
		chromedp.WaitVisible(chromedp.CSS("#user-role-role")),
		chromedp.SetValue(chromedp.CSS("#user-role-role"), "viewer"),
		chromedp.Click(chromedp.CSS("#user-role-submit")),
		chromedp.WaitVisible(chromedp.CSS("#user-msg .notice.ok")))
	var alice struct {
		Role string `json:"role"`
	}
	if a.call(t, http.MethodGet, "/users/alice", nil, &alice); alice.Role != "viewer" {
		t.Fatalf("alice's role %q after the change, want viewer", alice.Role)
	}
	b.do("reset alice's password: the two differ", 20*time.Second,
		fill("#user-password-password", "alice-password-2"),
		fill("#user-password-confirm", "alice-password-3"),
		chromedp.Click(chromedp.CSS("#user-password-submit")),
		chromedp.WaitVisible(chromedp.CSS("#user-password-confirm-error:not([hidden])")))
	b.do("reset alice's password", 20*time.Second,
		fill("#user-password-confirm", "alice-password-2"),
		chromedp.Click(chromedp.CSS("#user-password-submit")),
		pollTrue(`/Password of alice reset/.test(document.querySelector('#user-msg').textContent)`))
	b.screenshot("user-alice")
	if st, _ := bearer(t, a, "", http.MethodPost, "/login", map[string]any{"name": "alice", "password": "alice-password-2"}); st != http.StatusOK {
		t.Fatalf("alice cannot log in with the new password: %d", st)
	}
	if a.call(t, http.MethodGet, "/users/alice", nil, &alice); alice.Role != "viewer" {
		t.Fatalf("the password reset changed alice's role to %q", alice.Role)
	}
	b.do("delete alice", 20*time.Second,
		chromedp.Click(chromedp.CSS("#user-delete")),
		chromedp.Click(chromedp.CSS("#user-delete")),
		chromedp.WaitVisible(chromedp.CSS("#users-table")),
		pollTrue(`!document.querySelector('#users-table tr[data-user="alice"]')`))
	if st := a.call(t, http.MethodGet, "/users/alice", nil, nil); st != http.StatusNotFound {
		t.Fatalf("GET alice after the delete: %d", st)
	}

	// ---- a node manager: created, edited.
	nmAddr, nmAddr2 := testenv.FreeAddr(t), testenv.FreeAddr(t)
	b.do("create a node manager", 20*time.Second,
		chromedp.Navigate(a.URL+"/#/node-managers"),
		fill("#nm-new-name", "nm1"),
		fill("#nm-new-listen", nmAddr),
		chromedp.Click(chromedp.CSS("#nm-new-submit")),
		chromedp.WaitVisible(chromedp.CSS("#nm-edit-listen")))
	b.do("edit the node manager", 20*time.Second,
		fill("#nm-edit-listen", "not an address"),
		chromedp.Click(chromedp.CSS("#nm-edit-submit")),
		chromedp.WaitVisible(chromedp.CSS("#nm-edit-listen-error:not([hidden])")),
		fill("#nm-edit-listen", nmAddr2),
		chromedp.Click(chromedp.CSS("#nm-edit-submit")),
		chromedp.WaitVisible(chromedp.CSS("#nm-saved .notice.ok")))
	var nm struct {
		Listen string `json:"listen"`
	}
	if a.call(t, http.MethodGet, "/node-managers/nm1", nil, &nm); nm.Listen != nmAddr2 {
		t.Fatalf("nm1 listens on %q after the edit, want %s", nm.Listen, nmAddr2)
	}

	// ---- web servers: two created, one edited, one deleted.
	for _, ws := range []string{"ws1", "ws2"} {
		b.do("create web server "+ws, 20*time.Second,
			chromedp.Navigate(a.URL+"/#/webservers"),
			chromedp.WaitVisible(chromedp.CSS("#webserver-new-name")),
			fill("#webserver-new-name", ws),
			fill("#webserver-new-listen", testenv.FreeAddr(t)),
			chromedp.SetValue(chromedp.CSS("#webserver-new-node_manager"), "nm1"),
			chromedp.Click(chromedp.CSS("#webserver-new-submit")),
			chromedp.WaitVisible(chromedp.CSS("#webserver-edit-listen")))
	}
	if !labelled(b) {
		t.Error("a field of the web server page has no <label for>")
	}
	wsAddr := testenv.FreeAddr(t)
	b.do("edit ws2", 20*time.Second,
		fill("#webserver-edit-listen", wsAddr),
		chromedp.Click(chromedp.CSS("#webserver-edit-submit")),
		chromedp.WaitVisible(chromedp.CSS("#webserver-saved .notice.ok")))
	var ws2 struct {
		Listen      string `json:"listen"`
		NodeManager string `json:"node_manager"`
		Cluster     string `json:"cluster"`
	}
	if a.call(t, http.MethodGet, "/webservers/ws2", nil, &ws2); ws2.Listen != wsAddr || ws2.NodeManager != "nm1" || ws2.Cluster != "c1" {
		t.Fatalf("ws2 after the edit: %+v", ws2)
	}
	// Its node manager is not running: the start button says why.
	b.do("start ws2 without a running node manager", 20*time.Second,
		chromedp.Click(chromedp.CSS("#webserver-start-ws2")),
		chromedp.WaitVisible(chromedp.CSS("#webserver-action-out .form-error")))
	b.screenshot("webserver-ws2")
	b.do("delete ws1", 20*time.Second,
		chromedp.Navigate(a.URL+"/#/webservers/ws1"),
		chromedp.WaitVisible(chromedp.CSS("#webserver-edit")),
		chromedp.Click(chromedp.CSS("#webserver-edit button.danger")),
		chromedp.Click(chromedp.CSS("#webserver-edit button.danger")),
		chromedp.WaitVisible(chromedp.CSS("#webservers-table")),
		chromedp.WaitVisible(chromedp.CSS(`#webservers-table tr[data-webserver="ws2"] .state`)))
	if b.count(`#webservers-table tr[data-webserver="ws1"]`) != 0 {
		t.Fatal("ws1 still listed after its delete")
	}
	if st := a.call(t, http.MethodGet, "/webservers/ws1", nil, nil); st != http.StatusNotFound {
		t.Fatalf("GET ws1 after the delete: %d", st)
	}
	if got := evalString(b, `document.querySelector('#webservers-table tr[data-webserver="ws2"] .state').dataset.state`); got != "stopped" {
		t.Errorf("ws2's live state %q, want stopped", got)
	}
	b.screenshot("webservers")

	// The node manager list names what it runs; deleting it while ws2
	// uses it is refused, with the reason shown.
	b.do("node managers list", 20*time.Second,
		chromedp.Navigate(a.URL+"/#/node-managers"),
		chromedp.WaitVisible(chromedp.CSS(`#node-managers-table tr[data-node-manager="nm1"]`)))
	if got := b.text(`#node-managers-table tr[data-node-manager="nm1"]`); !strings.Contains(got, "ws2") || !strings.Contains(got, nmAddr2) {
		t.Errorf("nm1's row: %q", got)
	}
	b.screenshot("node-managers")
	b.do("delete nm1 while ws2 uses it", 20*time.Second,
		chromedp.Navigate(a.URL+"/#/node-managers/nm1"),
		chromedp.WaitVisible(chromedp.CSS("#nm-edit")),
		chromedp.Click(chromedp.CSS("#nm-edit button.danger")),
		chromedp.Click(chromedp.CSS("#nm-edit button.danger")),
		chromedp.WaitVisible(chromedp.CSS("#main .field-error:not([hidden]), #main .form-error:not([hidden])")))
	if st := a.call(t, http.MethodGet, "/node-managers/nm1", nil, nil); st != http.StatusOK {
		t.Fatalf("nm1 after the refused delete: %d", st)
	}

	// ---- the HAProxy export of c1.
	b.do("HAProxy export", 20*time.Second,
		chromedp.Navigate(a.URL+"/#/haproxy"),
		chromedp.WaitVisible(chromedp.CSS("#haproxy-cluster")),
		chromedp.SetValue(chromedp.CSS("#haproxy-cluster"), "c1"),
		chromedp.Click(chromedp.CSS("#haproxy-show")),
		chromedp.WaitVisible(chromedp.CSS("#haproxy-cfg")))
	// The <pre> shows before the configuration arrives.
	b.waitJS("the configuration shown", `document.querySelector('#haproxy-cfg').textContent.includes('backend')`, 20*time.Second)
	if !labelled(b) {
		t.Error("a field of the HAProxy page has no <label for>")
	}
	// Read in the page, not by node: the page may redraw the <pre> (a
	// topology event) between finding it and reading it.
	cfg := evalString(b, `document.querySelector('#haproxy-cfg').textContent`)
	if !strings.Contains(cfg, "backend") || !strings.Contains(cfg, "ms1") || !strings.Contains(cfg, wsAddr) {
		t.Fatalf("HAProxy configuration:\n%s", cfg)
	}
	if got := evalString(b, `document.querySelector('#haproxy-download').getAttribute('download') + ' ' + document.querySelector('#haproxy-download').href.slice(0, 5)`); got != "haproxy-c1.cfg blob:" {
		t.Fatalf("download link: %q", got)
	}
	// The download saves the same text as haproxy-c1.cfg.
	dl := t.TempDir()
	b.do("download the configuration", 20*time.Second,
		chromedp.Func(func(ctx context.Context, _ *chromedp.Target) error {
			_, err := chromedp.Call(ctx, cdpbrowser.SetDownloadBehavior, cdpbrowser.SetDownloadBehaviorParams{
				Behavior: cdpbrowser.SetDownloadBehaviorBehaviorAllow, DownloadPath: dl,
			})
			return err
		}),
		chromedp.Click(chromedp.CSS("#haproxy-download")))
	testenv.Eventually(t, 20*time.Second, func() error {
		saved, err := os.ReadFile(filepath.Join(dl, "haproxy-c1.cfg"))
		if err != nil {
			return err
		}
		if strings.TrimSpace(string(saved)) != strings.TrimSpace(cfg) {
			return fmt.Errorf("downloaded file differs from the shown text:\n%s", saved)
		}
		return nil
	})
	b.do("copy the configuration", 10*time.Second,
		chromedp.Click(chromedp.CSS("#haproxy-copy")),
		chromedp.WaitVisible(chromedp.CSS("#haproxy-copy-out .notice")))
	// A frontend address of our own.
	b.do("HAProxy export with a listen address", 20*time.Second,
		fill("#haproxy-listen", "0.0.0.0:8443"),
		chromedp.Click(chromedp.CSS("#haproxy-show")),
		pollTrue(`(document.querySelector('#haproxy-cfg') || {}).textContent.includes('0.0.0.0:8443')`))
	b.screenshot("haproxy")
	b.do("HAProxy export with a bad listen address", 20*time.Second,
		fill("#haproxy-listen", "nonsense"),
		chromedp.Click(chromedp.CSS("#haproxy-show")),
		chromedp.WaitVisible(chromedp.CSS("#haproxy-msg .form-error")))

	// The keyboard alone reaches and uses the HAProxy page's controls.
	b.do("keyboard", 20*time.Second,
		chromedp.Navigate(a.URL+"/#/"),
		chromedp.WaitVisible(chromedp.CSS("#topology")),
		chromedp.Navigate(a.URL+"/#/haproxy/c1"),
		chromedp.WaitVisible(chromedp.CSS("#haproxy-cfg")),
		chromedp.Focus(chromedp.CSS("#haproxy-listen")),
		chromedp.KeyEvent("\t"),
		pollTrue(`document.activeElement && document.activeElement.id === 'haproxy-show'`),
		chromedp.KeyEvent("\t"),
		pollTrue(`document.activeElement && document.activeElement.id === 'haproxy-copy'`),
		chromedp.KeyEvent("\t"),
		pollTrue(`document.activeElement && document.activeElement.id === 'haproxy-download'`))

	// A viewer: no users or tokens in the navigation, the web server read
	// only, no actions, the audit log readable.
	if st := a.call(t, http.MethodPost, "/users", map[string]any{"name": "vera", "role": "viewer", "password": "vera-password-1"}, nil); st != http.StatusCreated {
		t.Fatalf("create vera: %d", st)
	}
	b.do("log in as a viewer", 20*time.Second,
		chromedp.Navigate(a.URL+"/#/"),
		chromedp.WaitVisible(chromedp.CSS("#logout")),
		chromedp.Click(chromedp.CSS("#logout")),
		fill("#login-name", "vera"), fill("#login-password", "vera-password-1"),
		chromedp.Click(chromedp.CSS("#login-submit")),
		chromedp.WaitVisible(chromedp.CSS("#topology")))
	if got := evalString(b, `[...document.querySelectorAll('.nav a')].map((a) => a.getAttribute('href')).join(' ')`); strings.Contains(got, "#/users") || strings.Contains(got, "#/tokens") || !strings.Contains(got, "#/audit") || !strings.Contains(got, "#/jobs") {
		t.Fatalf("a viewer's navigation: %s", got)
	}
	b.do("a web server as a viewer", 20*time.Second,
		chromedp.Navigate(a.URL+"/#/webservers/ws2"),
		chromedp.WaitVisible(chromedp.CSS("#webserver-edit-listen")))
	if !b.eval(`document.querySelector('#webserver-edit-listen').disabled && document.querySelector('#webserver-edit .actions').offsetParent === null && !document.querySelector('#webserver-start-ws2') && !/\bnull\b/.test(document.querySelector('#main').textContent)`) {
		t.Fatal("a viewer's web server page is not read only")
	}
	b.do("web servers as a viewer", 20*time.Second,
		chromedp.Navigate(a.URL+"/#/webservers"),
		chromedp.WaitVisible(chromedp.CSS(`#webservers-table tr[data-webserver="ws2"]`)))
	if b.count("#webserver-new-name")+b.count("#webservers-table button") != 0 {
		t.Fatal("a viewer sees the web server form or its actions")
	}
	b.do("audit as a viewer", 20*time.Second,
		chromedp.Navigate(a.URL+"/#/audit"),
		chromedp.WaitVisible(chromedp.CSS(`#audit-table tr[data-target="user/vera"]`)))
	b.screenshot("viewer-audit")
	b.checkConsole()
}
