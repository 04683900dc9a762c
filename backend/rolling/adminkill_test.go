package rolling_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"testing"
	"time"

	"tandem/backend/client"
	"tandem/backend/domain"
	"tandem/backend/rolling"
	"tandem/backend/testenv"
)

// TestRollingRestartSurvivesAdminKill SIGKILLs the real `tandem admin` in
// the middle of a rolling restart of a real domain (a node manager, three
// managed servers, a web server) under load, while the job is stopping
// ms2, and starts it again on the same data folder. The job must resume
// from its step (rolling.resumed), bring ms2 back, restart ms3 and
// complete; every server runs again, and no session lost anything.
func TestRollingRestartSurvivesAdminKill(t *testing.T) {
	ctx := context.Background()
	a := testenv.StartAdmin(t, "")
	servers, names, wsAddr := startDomain(t, a, nil)
	before := pids(a.WaitCluster("c1", 60*time.Second, testenv.Settled))
	testenv.WaitHTTP(t, "http://"+wsAddr+"/_tandem/healthz", 30*time.Second)

	l, stopLoad := startLoad(t, "http://"+wsAddr, 60)
	defer stopLoad()

	job, err := a.API.RollingRestart(ctx, "c1", 60*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	// SIGKILL the admin once ms2's step has sent its stop.
	testenv.Eventually(t, 90*time.Second, func() error {
		j, err := a.API.Job(ctx, job.ID)
		if err != nil {
			return err
		}
		if j.State != rolling.JobRunning {
			t.Fatalf("job ended before the kill: %+v", j)
		}
		if j.Steps[1].State != rolling.StepStopping {
			return fmt.Errorf("job at %s, steps %+v", j.Current, j.Steps)
		}
		return nil
	})
	a.Proc.Kill()
	killed := time.Now()
	t.Log("admin SIGKILLed while the job stops ms2")
	// The node manager finishes the stop on its own: with the admin dead,
	// nobody would start ms2 again. Traffic goes on meanwhile.
	ms2 := "http://" + servers[1].Listen + "/healthz"
	testenv.Eventually(t, 30*time.Second, func() error {
		if err := get(ms2); err == nil {
			return errors.New("ms2 still answers")
		}
		return nil
	})
	l.Check(t, "admin dead, ms2 down")

	a.Restart()
	t.Logf("admin back %s after the kill", time.Since(killed).Round(time.Millisecond))
	// As GET /api/v1/jobs/{id} shows it (fields the typed client does not know).
	done := waitJob(t, func(ctx context.Context, id int64) (rolling.Job, error) {
		var j rolling.Job
		return j, getJSON(ctx, a, fmt.Sprintf("/api/v1/jobs/%d", id), &j)
	}, job.ID)
	if done.State != rolling.JobCompleted || done.Step != 3 || done.Resumes != 1 {
		t.Fatalf("job %+v", done)
	}
	for _, s := range done.Steps {
		if s.State != rolling.StepDone || s.PID == 0 || s.PID == before[s.Server] {
			t.Fatalf("step %+v (pid before the job %d)", s, before[s.Server])
		}
	}
	t.Logf("ms2's step: %+v", done.Steps[1])
	evs, err := a.API.Events(ctx, client.EventQuery{Cluster: "c1", Limit: 1000, Types: []string{domain.EventRollingStarted,
		domain.EventRollingStep, domain.EventRollingCompleted, domain.EventRollingFailed, domain.EventRollingResumed}})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"rolling.started ", "rolling.step ms1", "rolling.resumed ms2", "rolling.step ms2", "rolling.step ms3", "rolling.completed "}
	if got := testenv.EventNames(evs); !slices.Equal(got, want) {
		t.Fatalf("events %q, want %q", got, want)
	}
	after := pids(a.WaitCluster("c1", 60*time.Second, testenv.Settled))
	for _, n := range names {
		if after[n] == before[n] {
			t.Fatalf("%s not restarted: pid %d", n, after[n])
		}
	}
	l.Check(t, "rolling restart resumed")
	stopLoad()
	l.Check(t, "end")
}

// startDomain defines and starts, on a real admin server, node manager nm1,
// cluster c1 with three servers and web server ws1; define, when set, runs
// before the processes start.
func startDomain(t *testing.T, a *testenv.Admin, define func()) (servers []domain.Server, names []string, wsAddr string) {
	t.Helper()
	ctx := context.Background()
	var nmAddr string
	nmAddr, wsAddr = testenv.FreeAddr(t), testenv.FreeAddr(t)
	if _, err := a.API.CreateNodeManager(ctx, domain.NodeManager{Name: "nm1", Listen: nmAddr}); err != nil {
		t.Fatal(err)
	}
	servers = a.DefineCluster(domain.Cluster{Name: "c1", HeartbeatIntervalMS: 200, HeartbeatTimeoutMS: 1000}, 3, "nm1")
	if _, err := a.API.CreateWebServer(ctx, domain.WebServer{Name: "ws1", Cluster: "c1", Listen: wsAddr}); err != nil {
		t.Fatal(err)
	}
	if define != nil {
		define()
	}
	for _, s := range servers {
		names = append(names, s.Name)
	}
	startNodeManager(t, a.NodeEnv(), a.URL(), t.TempDir(), nmAddr, names)
	testenv.Eventually(t, 30*time.Second, func() error {
		for _, n := range names {
			if _, err := a.API.StartServer(ctx, n); err != nil {
				return fmt.Errorf("start %s: %w", n, err)
			}
		}
		return nil
	})
	testenv.Start(t, "ws1", a.NodeEnv(), "webserver", "--name", "ws1", "--admin", a.URL(), "--data-dir", t.TempDir())
	return servers, names, wsAddr
}

func pids(c domain.TopologyCluster) map[string]int {
	out := map[string]int{}
	for _, s := range c.Servers {
		out[s.Name] = s.PID
	}
	return out
}

func get(url string) error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: status %d", url, resp.StatusCode)
	}
	return nil
}

// getJSON decodes an admin API answer.
func getJSON(ctx context.Context, a *testenv.Admin, path string, out any) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, a.URL()+path, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+a.Token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: status %d", path, resp.StatusCode)
	}
	return json.NewDecoder(resp.Body).Decode(out)
}
