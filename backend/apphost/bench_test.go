package apphost_test

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"tandem/backend/apphost"
	"tandem/backend/domain"
	"tandem/backend/session"
	"tandem/backend/testenv"
	"tandem/backend/wire"
)

// BenchmarkProcessSessionWrite measures one session write through the
// session middleware and apphost to a real application process (bench/app's
// procapp), in this process, for profiling:
//
//	go test -run x -bench ProcessSessionWrite -cpuprofile /tmp/cpu.out ./backend/apphost
func BenchmarkProcessSessionWrite(b *testing.B) {
	bin := filepath.Join(b.TempDir(), "procapp")
	build := exec.Command("go", "build", "-o", bin, "./bench/app/procapp")
	build.Dir = testenv.RepoRoot()
	if out, err := build.CombinedOutput(); err != nil {
		b.Fatalf("%v\n%s", err, out)
	}
	host, err := apphost.New(apphost.Config{Server: "ms1", DataDir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	defer host.Close(b.Context())
	go host.Run(b.Context())
	if err := host.Set(&wire.AppSpec{Name: "procapp", Kind: domain.AppProcess, Command: []string{bin}, HealthPath: "/healthz", StartTimeoutSeconds: 20, RequestTimeoutSeconds: 10}); err != nil {
		b.Fatal(err)
	}
	st := session.NewMemStore("ms1", time.Hour, time.Now)
	mgr := session.NewManager(domain.DefaultSessionConfig(), st, slog.New(slog.DiscardHandler))
	srv := httptest.NewServer(mgr.WrapLazy(host))
	defer srv.Close()
	testenv.Eventually(b, 20*time.Second, func() error {
		resp, err := http.Get(srv.URL + "/count")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return io.ErrUnexpectedEOF
		}
		return nil
	})
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		cookie := ""
		for pb.Next() {
			req, _ := http.NewRequest(http.MethodGet, srv.URL+"/count", nil)
			if cookie != "" {
				req.Header.Set("Cookie", cookie)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				b.Error(err)
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			for _, c := range resp.Cookies() {
				cookie = c.Name + "=" + c.Value
			}
		}
	})
}
