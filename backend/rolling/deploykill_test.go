package rolling_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"tandem/backend/client"
	"tandem/backend/domain"
	"tandem/backend/rolling"
	"tandem/backend/testenv"
)

// counterApp is a Python application speaking Tandem's header contract:
// GET /counter counts in the session as the sample app does; VERSION says
// which version it is.
const counterApp = `import base64, json, os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
VERSION = open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "VERSION")).read().strip()
class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *a): pass
    def do_GET(self):
        if self.path == "/healthz":
            body, hdrs = b"ok", {}
        else:
            raw = self.headers.get("Tandem-Session", "")
            s = json.loads(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4))) if raw else {}
            n = s.get("count", 0) + 1
            patch = base64.urlsafe_b64encode(json.dumps({"count": n}).encode()).rstrip(b"=").decode()
            body = json.dumps({"server": os.environ["TANDEM_SERVER"], "session": self.headers["Tandem-Session-Id"], "count": n, "version": VERSION}).encode()
            hdrs = {"Tandem-Session-Set": patch, "Content-Type": "application/json"}
        self.send_response(200)
        for k, v in hdrs.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
ThreadingHTTPServer.daemon_threads = True
ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), H).serve_forever()
`

func counterArchive(t *testing.T, version string) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	for name, body := range map[string]string{"app.py": counterApp, "VERSION": version} {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(body)), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		tw.Write([]byte(body))
	}
	tw.Close()
	zw.Close()
	return buf.Bytes()
}

// TestDeploySurvivesAdminKill SIGKILLs the real `tandem admin` in the
// middle of a deploy (v1 → v2 of a Python application, three servers, a
// web server, sessions clicking all along) and starts it again: the job
// resumes (deploy.resumed), every server ends on v2, and no session lost
// or repeated a count.
func TestDeploySurvivesAdminKill(t *testing.T) {
	ctx := context.Background()
	a := testenv.StartAdmin(t, "")
	must := func(_ any, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	_, names, wsAddr := startDomain(t, a, func() {
		must(a.API.CreateApplication(ctx, domain.Application{Name: "counter", Kind: domain.AppProcess, Command: []string{"python3", "app.py"}}))
		for _, v := range []string{"v1", "v2"} {
			must(a.API.UploadVersion(ctx, "counter", v, bytes.NewReader(counterArchive(t, v))))
		}
		must(a.API.SetClusterApplicationVersion(ctx, "c1", "counter", "v1"))
	})
	runs := func(version string) func(domain.TopologyCluster) error {
		return func(c domain.TopologyCluster) error {
			if err := testenv.Settled(c); err != nil {
				return err
			}
			for _, s := range c.Servers {
				if s.App.Version != version || s.App.State != domain.AppStateRunning {
					return fmt.Errorf("%s runs %+v, want counter@%s", s.Name, s.App, version)
				}
			}
			return nil
		}
	}
	a.WaitCluster("c1", 60*time.Second, runs("v1"))
	testenv.WaitHTTP(t, "http://"+wsAddr+"/_tandem/healthz", 30*time.Second)
	l, stopLoad := startLoad(t, "http://"+wsAddr, 60)
	defer stopLoad()

	job, err := a.API.Deploy(ctx, "c1", "counter", "v2", 60)
	if err != nil {
		t.Fatal(err)
	}
	// SIGKILL the admin while the second server's step is in progress.
	testenv.Eventually(t, 90*time.Second, func() error {
		j, err := a.API.Job(ctx, job.ID)
		if err != nil {
			return err
		}
		if j.State != rolling.JobRunning {
			t.Fatalf("job ended before the kill: %+v", j)
		}
		if j.Step != 2 {
			return fmt.Errorf("job at step %d", j.Step)
		}
		return nil
	})
	a.Proc.Kill()
	t.Log("admin SIGKILLed during the deploy's second step")
	l.Check(t, "admin dead")
	a.Restart()
	done := waitJob(t, func(ctx context.Context, id int64) (rolling.Job, error) {
		var j rolling.Job
		return j, getJSON(ctx, a, fmt.Sprintf("/api/v1/jobs/%d", id), &j)
	}, job.ID)
	if done.State != rolling.JobCompleted || done.Resumes != 1 || done.Type != rolling.TypeDeploy {
		t.Fatalf("job %+v", done)
	}
	a.WaitCluster("c1", 60*time.Second, runs("v2"))
	if cl, _ := a.API.Cluster(ctx, "c1"); cl.AppVersion != "v2" {
		t.Fatalf("cluster %+v", cl)
	}
	evs, err := a.API.Events(ctx, client.EventQuery{Cluster: "c1", Limit: 1000, Types: []string{domain.EventDeployStarted,
		domain.EventDeployStep, domain.EventDeployCompleted, domain.EventDeployFailed, domain.EventDeployResumed}})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"deploy.started ", "deploy.step " + names[0], "deploy.resumed " + names[1], "deploy.step " + names[1], "deploy.step " + names[2], "deploy.completed "}
	if got := testenv.EventNames(evs); !slices.Equal(got, want) {
		t.Fatalf("events %q, want %q", got, want)
	}
	l.Check(t, "deploy resumed")
	stopLoad()
	l.Check(t, "end")
}
