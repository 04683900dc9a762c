package api_test

import (
	"net/url"
	"strings"
	"testing"
	"time"

	"tandem/backend/api"
	"tandem/backend/domain"
)

// auditPage GETs /api/v1/audit with the query q and returns the entries.
func auditPage(t *testing.T, e *env, token string, q url.Values) []domain.AuditEntry {
	t.Helper()
	var out []domain.AuditEntry
	e.must(200, "GET", "/api/v1/audit?"+q.Encode(), token, nil).decode(t, &out)
	for i := 1; i < len(out); i++ {
		if out[i].ID >= out[i-1].ID {
			t.Fatalf("audit %v not newest first: %d after %d", q, out[i].ID, out[i-1].ID)
		}
	}
	return out
}

// TestAuditFilters: GET /audit filters by actor (exact), resource (a
// case-sensitive prefix of the target, no wildcards), since and until
// (inclusive), pages within a filter, and refuses malformed filters with
// 400 naming the parameter.
func TestAuditFilters(t *testing.T) {
	e := newEnv(t)
	// Writes by two actors: the bootstrap admin token ("bootstrap") and
	// the operator token ("operator-token").
	e.must(201, "POST", "/api/v1/tokens", adminToken, map[string]any{"name": "ci", "role": "viewer"})
	e.must(201, "POST", "/api/v1/tokens", adminToken, map[string]any{"name": "ci2", "role": "viewer"})
	e.must(201, "POST", "/api/v1/users", adminToken, map[string]any{"name": "alice", "role": "operator", "password": "correct horse battery"})
	e.must(201, "POST", "/api/v1/clusters", e.operator, map[string]any{"name": "c1"})
	e.must(201, "POST", "/api/v1/clusters", e.operator, map[string]any{"name": "c2"})
	e.must(204, "DELETE", "/api/v1/tokens/ci", adminToken, nil)
	e.must(204, "DELETE", "/api/v1/clusters/c2", e.operator, nil)

	all := auditPage(t, e, e.viewer, url.Values{"limit": {"1000"}}) // a viewer may read the audit log
	if len(all) < 9 {
		t.Fatalf("only %d audit entries: %+v", len(all), all)
	}
	// want is what a filter must return: the entries of all that match, in order.
	want := func(match func(domain.AuditEntry) bool) []int64 {
		var ids []int64
		for _, a := range all {
			if match(a) {
				ids = append(ids, a.ID)
			}
		}
		return ids
	}
	ids := func(as []domain.AuditEntry) []int64 {
		var out []int64
		for _, a := range as {
			out = append(out, a.ID)
		}
		return out
	}
	same := func(what string, got []domain.AuditEntry, w []int64) {
		t.Helper()
		g := ids(got)
		if len(g) != len(w) {
			t.Fatalf("%s: ids %v, want %v", what, g, w)
		}
		for i := range g {
			if g[i] != w[i] {
				t.Fatalf("%s: ids %v, want %v", what, g, w)
			}
		}
	}

	// Actor: exact.
	got := auditPage(t, e, e.viewer, url.Values{"actor": {"operator-token"}})
	same("actor=operator-token", got, want(func(a domain.AuditEntry) bool { return a.Actor == "operator-token" }))
	if len(got) != 3 {
		t.Fatalf("actor=operator-token: %d entries, want 3 (2 creates, 1 delete): %+v", len(got), got)
	}
	same("actor=operator (no prefix match)", auditPage(t, e, e.viewer, url.Values{"actor": {"operator"}}), nil)

	// Resource: a prefix of the target.
	got = auditPage(t, e, e.viewer, url.Values{"resource": {"token/"}})
	same("resource=token/", got, want(func(a domain.AuditEntry) bool { return strings.HasPrefix(a.Target, "token/") }))
	got = auditPage(t, e, e.viewer, url.Values{"resource": {"token/ci"}})
	same("resource=token/ci", got, want(func(a domain.AuditEntry) bool { return strings.HasPrefix(a.Target, "token/ci") }))
	var actions []string
	for _, a := range got {
		if a.Target == "token/ci" {
			actions = append(actions, a.Action)
		}
	}
	if strings.Join(actions, ",") != "token.delete,token.create" {
		t.Fatalf("token/ci entries: %v, want the delete then the create", actions)
	}
	// Wildcards and quotes are plain characters; case counts.
	for _, r := range []string{"token/c%", "token/c_", "TOKEN/", "' OR 1=1 --"} {
		same("resource="+r, auditPage(t, e, e.viewer, url.Values{"resource": {r}}), nil)
	}
	// Both, and paging within the filter.
	got = auditPage(t, e, e.viewer, url.Values{"actor": {"bootstrap"}, "resource": {"token/"}})
	w := want(func(a domain.AuditEntry) bool { return a.Actor == "bootstrap" && strings.HasPrefix(a.Target, "token/") })
	same("actor=bootstrap&resource=token/", got, w)
	if len(w) != 4 { // its own creation at bootstrap, ci, ci2, ci's deletion
		t.Fatalf("bootstrap's token entries: %v, want 4", w)
	}
	page1 := auditPage(t, e, e.viewer, url.Values{"resource": {"token/"}, "actor": {"bootstrap"}, "limit": {"3"}})
	same("first page", page1, w[:3])
	page2 := auditPage(t, e, e.viewer, url.Values{"resource": {"token/"}, "actor": {"bootstrap"}, "limit": {"3"}, "before": {itoa(page1[2].ID)}})
	same("second page", page2, w[3:])

	// Time range: inclusive bounds, any offset.
	mid := all[len(all)/2]
	since := mid.Time.Format(time.RFC3339Nano)
	got = auditPage(t, e, e.viewer, url.Values{"since": {since}})
	same("since=mid", got, want(func(a domain.AuditEntry) bool { return !a.Time.Before(mid.Time) }))
	got = auditPage(t, e, e.viewer, url.Values{"until": {since}})
	same("until=mid", got, want(func(a domain.AuditEntry) bool { return !a.Time.After(mid.Time) }))
	got = auditPage(t, e, e.viewer, url.Values{"since": {since}, "until": {since}})
	same("since=until=mid", got, want(func(a domain.AuditEntry) bool { return a.Time.Equal(mid.Time) }))
	// The same instant at another offset.
	east := mid.Time.In(time.FixedZone("east", 5*3600+30*60)).Format(time.RFC3339Nano)
	same("since=mid (+05:30)", auditPage(t, e, e.viewer, url.Values{"since": {east}}), want(func(a domain.AuditEntry) bool { return !a.Time.Before(mid.Time) }))
	// Whole seconds around everything, and a range in the future.
	first, last := all[len(all)-1].Time, all[0].Time
	got = auditPage(t, e, e.viewer, url.Values{"since": {first.Truncate(time.Second).Format(time.RFC3339)}, "until": {last.Add(time.Second).Format(time.RFC3339)}, "limit": {"1000"}})
	same("whole range", got, ids(all))
	same("future", auditPage(t, e, e.viewer, url.Values{"since": {last.Add(time.Hour).Format(time.RFC3339)}}), nil)

	// Malformed filters: 400 naming the parameter, nothing else said.
	long := strings.Repeat("a", 201)
	for _, c := range []struct{ q, field string }{
		{"since=yesterday", "since"},
		{"until=2026-13-01T00:00:00Z", "until"},
		{"since=2026-01-02", "since"},
		{"since=2026-01-02T10:00:00Z&until=2026-01-02T09:59:59Z", "until"},
		{"actor=" + long, "actor"},
		{"resource=" + long, "resource"},
		{"resource=token%2F%0A", "resource"},
		{"actor=%FF", "actor"},
		{"limit=0", "limit"},
		{"before=-1", "before"},
	} {
		r := e.do("GET", "/api/v1/audit?"+c.q, e.viewer, nil)
		if r.Status != 400 {
			t.Fatalf("audit?%s: status %d, want 400: %s", c.q, r.Status, r.Body)
		}
		if d := r.err(t); d.Code != api.CodeBadRequest || d.Field != c.field || d.Message == "" {
			t.Fatalf("audit?%s: error %+v, want bad_request on %s", c.q, d, c.field)
		}
	}
	// Without a credential: 401.
	if r := e.do("GET", "/api/v1/audit?actor=admin", "", nil); r.Status != 401 {
		t.Fatalf("audit without a credential: %d", r.Status)
	}
}
