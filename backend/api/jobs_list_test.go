package api_test

import (
	"encoding/json"
	"testing"
	"time"

	"tandem/backend/api"
)

// listedJob is the part of a job GET /jobs shows that the test checks.
type listedJob struct {
	ID      int64    `json:"id"`
	Type    string   `json:"type"`
	Cluster string   `json:"cluster"`
	State   string   `json:"state"`
	Actor   string   `json:"actor"`
	Order   []string `json:"order"`
	Steps   []struct {
		Server string `json:"server"`
		State  string `json:"state"`
	} `json:"steps"`
	Deploy *struct {
		Application string `json:"application"`
	} `json:"deploy"`
	CreatedAt time.Time `json:"created_at"`
}

// TestJobsList: GET /jobs lists the jobs table newest first, pages
// with before and limit, answers a viewer, and refuses bad page
// parameters with 400. (The jobs are rows as backend/rolling writes them;
// the list needs no Roller.)
func TestJobsList(t *testing.T) {
	e := newEnv(t)
	var none []listedJob
	e.must(200, "GET", "/api/v1/jobs", e.viewer, nil).decode(t, &none)
	if none == nil || len(none) != 0 {
		t.Fatalf("no jobs: %v, want []", none)
	}
	now := time.Now().UnixMilli()
	for i, j := range []struct{ typ, cluster, state, steps, deploy string }{
		{"rolling-restart", "c1", "completed", `[{"server":"ms1","state":"done","sessions_before":0,"sessions_after":0},{"server":"ms2","state":"done","sessions_before":0,"sessions_after":0}]`, ""},
		{"deploy", "c2", "failed", `[{"server":"ms3","state":"failed","error":"timed out","sessions_before":0,"sessions_after":0}]`, `{"application":"cart","version":"v2","kind":"process"}`},
		{"rolling-restart", "c1", "running", `[{"server":"ms1","state":"done","sessions_before":0,"sessions_after":0},{"server":"ms2","state":"stopping","sessions_before":0,"sessions_after":0}]`, ""},
	} {
		_, err := e.st.SQL().ExecContext(t.Context(),
			`INSERT INTO jobs (type, cluster, state, actor, step_timeout_ms, steps, current, error, created_at, updated_at, deploy)
			 VALUES (?, ?, ?, 'alice', 120000, ?, '', '', ?, ?, ?)`,
			j.typ, j.cluster, j.state, j.steps, now+int64(i), now+int64(i), j.deploy)
		if err != nil {
			t.Fatal(err)
		}
	}
	var jobs []listedJob
	e.must(200, "GET", "/api/v1/jobs", e.viewer, nil).decode(t, &jobs)
	if len(jobs) != 3 || jobs[0].ID != 3 || jobs[1].ID != 2 || jobs[2].ID != 1 {
		t.Fatalf("jobs: %+v, want ids 3, 2, 1", jobs)
	}
	if j := jobs[0]; j.State != "running" || j.Cluster != "c1" || j.Actor != "alice" || len(j.Steps) != 2 || len(j.Order) != 2 || j.Order[1] != "ms2" {
		t.Fatalf("job 3: %+v", j)
	}
	if j := jobs[1]; j.Type != "deploy" || j.Deploy == nil || j.Deploy.Application != "cart" || j.Steps[0].State != "failed" {
		t.Fatalf("job 2: %+v", j)
	}
	if jobs[2].CreatedAt.UnixMilli() != now {
		t.Fatalf("job 1 created %s, want %d ms", jobs[2].CreatedAt, now)
	}
	// The list shows each job as GET /jobs/{id} would, with the same fields.
	var raw []map[string]json.RawMessage
	e.must(200, "GET", "/api/v1/jobs?limit=1", e.viewer, nil).decode(t, &raw)
	if len(raw) != 1 {
		t.Fatalf("limit=1: %d jobs", len(raw))
	}
	for _, k := range []string{"id", "type", "cluster", "state", "actor", "order", "step", "steps", "created_at", "updated_at"} {
		if _, ok := raw[0][k]; !ok {
			t.Errorf("listed job lacks %q: %v", k, raw[0])
		}
	}
	e.must(200, "GET", "/api/v1/jobs?limit=2&before=3", e.viewer, nil).decode(t, &jobs)
	if len(jobs) != 2 || jobs[0].ID != 2 || jobs[1].ID != 1 {
		t.Fatalf("before=3: %+v", jobs)
	}
	for _, q := range []string{"limit=0", "limit=1001", "limit=x", "before=-2"} {
		r := e.do("GET", "/api/v1/jobs?"+q, e.viewer, nil)
		if r.Status != 400 || r.err(t).Code != api.CodeBadRequest {
			t.Fatalf("jobs?%s: %d %s, want 400", q, r.Status, r.Body)
		}
	}
	if r := e.do("GET", "/api/v1/jobs", "", nil); r.Status != 401 {
		t.Fatalf("jobs without a credential: %d", r.Status)
	}
}
