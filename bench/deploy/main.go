// Command deploy measures a deploy of the operator's application on the
// demo's four servers under load: `tandem demo` runs the Python example
// cart; v1 and v2 are uploaded, v1 set, then -users users keep adding to
// their carts through the web server while v2 is deployed one server at a
// time, then rolled back. It prints each job's duration, the requests
// served meanwhile and the failed ones.
//
//	go run ./bench/deploy -users 200
package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"tandem/backend/client"
	"tandem/backend/demo"
	"tandem/backend/domain"
	"tandem/backend/testenv"
	"tandem/bench/procs"
)

func main() {
	users := flag.Int("users", 200, "users adding to their carts during the jobs")
	flag.Parse()
	if err := run(*users); err != nil {
		fmt.Fprintln(os.Stderr, "bench/deploy:", err)
		os.Exit(1)
	}
}

func run(users int) error {
	tmp, err := os.MkdirTemp("", "tandem-bench-deploy-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	root := testenv.RepoRoot()
	d, err := procs.StartDemo(tmp)
	if err != nil {
		return err
	}
	defer d.Stop()
	ctx := context.Background()
	api, web := d.API, d.Web
	src, err := os.ReadFile(filepath.Join(root, "examples", "cart-python", "app.py"))
	if err != nil {
		return err
	}
	if _, err := api.CreateApplication(ctx, domain.Application{Name: "cart", Kind: domain.AppProcess, Command: []string{"python3", "app.py"}}); err != nil {
		return err
	}
	for _, v := range []string{"v1", "v2"} {
		if _, err := api.UploadVersion(ctx, "cart", v, bytes.NewReader(tgz(map[string]string{"app.py": string(src), "VERSION": v}))); err != nil {
			return err
		}
	}
	if _, err := api.SetClusterApplicationVersion(ctx, demo.ClusterName, "cart", "v1"); err != nil {
		return err
	}
	if err := waitRunning(ctx, api, "v1"); err != nil {
		return err
	}
	fmt.Printf("# Tandem deploy benchmark: %d CPUs, demo cluster of %d servers, %d users, load average %s\n\n", runtime.NumCPU(), len(demo.ServerNames), users, procs.LoadAverage())
	fmt.Printf("| job | duration | requests during it | failed |\n| --- | ---: | ---: | ---: |\n")
	for _, step := range []struct {
		what string
		do   func() (client.Job, error)
	}{
		{"deploy v1 → v2", func() (client.Job, error) { return api.Deploy(ctx, demo.ClusterName, "cart", "v2", 120) }},
		{"rollback v2 → v1", func() (client.Job, error) { return api.RollbackApplication(ctx, demo.ClusterName) }},
	} {
		var ok, failed atomic.Int64
		stop := make(chan struct{})
		var wg sync.WaitGroup
		tr := &http.Transport{MaxIdleConnsPerHost: 64}
		for w := range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				var hcs []*http.Client
				for i := w; i < users; i += 8 {
					jar, _ := cookiejar.New(nil)
					hcs = append(hcs, &http.Client{Jar: jar, Transport: tr, Timeout: 10 * time.Second})
				}
				for k := 0; ; k++ {
					for _, hc := range hcs {
						select {
						case <-stop:
							return
						default:
						}
						resp, err := hc.Post(web+"/cart/add?item=i"+strconv.Itoa(k), "", nil)
						if err != nil {
							failed.Add(1)
							continue
						}
						_, _ = io.Copy(io.Discard, resp.Body)
						resp.Body.Close()
						if resp.StatusCode != http.StatusOK {
							failed.Add(1)
							continue
						}
						ok.Add(1)
					}
				}
			}()
		}
		job, err := step.do()
		if err != nil {
			close(stop)
			wg.Wait()
			return fmt.Errorf("%s: %w", step.what, err)
		}
		for job.State == "running" {
			time.Sleep(200 * time.Millisecond) // polling the job
			if job, err = api.Job(ctx, job.ID); err != nil {
				return err
			}
		}
		close(stop)
		wg.Wait()
		if job.State != "completed" || job.FinishedAt == nil {
			return fmt.Errorf("%s: job %+v", step.what, job)
		}
		fmt.Printf("| %s | %s | %d | %d |\n", step.what, job.FinishedAt.Sub(job.CreatedAt).Round(time.Millisecond), ok.Load(), failed.Load())
	}
	return nil
}

func waitRunning(ctx context.Context, api *client.Client, version string) error {
	deadline := time.Now().Add(60 * time.Second)
	for {
		topo, err := api.Topology(ctx)
		if err == nil {
			n := 0
			for _, c := range topo.Clusters {
				for _, s := range c.Servers {
					if s.App.Version == version && s.App.State == domain.AppStateRunning {
						n++
					}
				}
			}
			if n == len(demo.ServerNames) {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the servers do not run %s", version)
		}
		time.Sleep(200 * time.Millisecond) // polling the topology
	}
}

func tgz(files map[string]string) []byte {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	for name, body := range files {
		_ = tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(body)), Typeflag: tar.TypeReg})
		_, _ = tw.Write([]byte(body))
	}
	_ = tw.Close()
	_ = zw.Close()
	return buf.Bytes()
}

// freeBase finds 9 consecutive free loopback ports below the ephemeral range.
