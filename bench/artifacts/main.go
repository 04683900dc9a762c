// Command artifacts measures application versions on their way to a node,
// against cp of the same file in the same run: the upload to a real
// `tandem admin` (streamed, checked entry by entry, hashed, kept), and a
// node's fetch (download with the node token, SHA-256 check, unpack).
//
//	go run ./bench/artifacts -mib 256
package main

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"crypto/rand"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"syscall"
	"tandem/bench/procs"
	"time"

	"tandem/backend/artifacts"
	"tandem/backend/client"
	"tandem/backend/domain"
)

func main() {
	mib := flag.Int("mib", 256, "archive size in MiB (random content: gzip cannot shrink it)")
	flag.Parse()
	if err := run(*mib); err != nil {
		fmt.Fprintln(os.Stderr, "bench/artifacts:", err)
		os.Exit(1)
	}
}

func run(mib int) error {
	tmp, err := os.MkdirTemp("", "tandem-bench-artifacts-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	_, file, _, _ := runtime.Caller(0)
	bin := filepath.Join(tmp, "tandem")
	build := exec.Command("go", "build", "-o", bin, "./cmd/tandem")
	build.Dir = filepath.Join(filepath.Dir(file), "..", "..")
	if out, err := build.CombinedOutput(); err != nil {
		return fmt.Errorf("go build: %w\n%s", err, out)
	}
	archive := filepath.Join(tmp, "app.tar.gz")
	if err := makeArchive(archive, mib); err != nil {
		return err
	}
	st, _ := os.Stat(archive)
	size := st.Size()
	fmt.Printf("# Tandem artifacts benchmark: %d CPUs, a %d MiB archive (%d bytes), load average %s\n\n", runtime.NumCPU(), mib, size, procs.LoadAverage())

	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := ln.Addr().String()
	ln.Close()
	adminTok, nodeTok := "bench-admin-token-0123456789", "bench-node-token-0123456789"
	cmd := exec.Command(bin, "admin", "--listen", addr, "--data-dir", filepath.Join(tmp, "admin"), "--plain-http", "--log-level", "error", "--max-artifact-bytes", fmt.Sprint(size*2))
	cmd.Env = append(os.Environ(), "TANDEM_ADMIN_TOKEN="+adminTok, "TANDEM_NODE_TOKEN="+nodeTok)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return err
	}
	defer func() { _ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL); _ = cmd.Wait() }()
	base := "http://" + addr
	if err := procs.WaitHTTP(base + "/healthz"); err != nil {
		return err
	}
	ctx := context.Background()
	api := client.New(base, adminTok)
	api.HTTP = &http.Client{}
	if _, err := api.CreateApplication(ctx, domain.Application{Name: "bench", Kind: domain.AppProcess, Command: []string{"./app/run"}}); err != nil {
		return err
	}

	cpTime, err := timeIt(func() error {
		return exec.Command("cp", archive, filepath.Join(tmp, "copy.tar.gz")).Run()
	})
	if err != nil {
		return err
	}
	var v domain.AppVersion
	upTime, err := timeIt(func() error {
		f, err := os.Open(archive)
		if err != nil {
			return err
		}
		defer f.Close()
		v, err = api.UploadVersion(ctx, "bench", "v1", f)
		return err
	})
	if err != nil {
		return err
	}
	fetcher := &artifacts.Fetcher{AdminURL: base, NodeToken: nodeTok}
	dest := artifacts.Dir(filepath.Join(tmp, "node", "apps"), "bench", "v1", v.SHA256)
	fetchTime, err := timeIt(func() error { return fetcher.Fetch(ctx, v.SHA256, v.Size, dest) })
	if err != nil {
		return err
	}
	rate := func(d time.Duration) string {
		return fmt.Sprintf("%.0f MiB/s", float64(size)/(1<<20)/d.Seconds())
	}
	fmt.Printf("| what | time | throughput | vs cp |\n| --- | ---: | ---: | ---: |\n")
	fmt.Printf("| cp of the archive | %s | %s | 1.00x |\n", cpTime.Round(time.Millisecond), rate(cpTime))
	fmt.Printf("| upload to the admin server (stream, check, hash, keep) | %s | %s | %.2fx |\n", upTime.Round(time.Millisecond), rate(upTime), cpTime.Seconds()/upTime.Seconds())
	fmt.Printf("| node fetch (download, SHA-256, unpack) | %s | %s | %.2fx |\n", fetchTime.Round(time.Millisecond), rate(fetchTime), cpTime.Seconds()/fetchTime.Seconds())
	return nil
}

// makeArchive writes a .tar.gz of mib MiB of random bytes in 8 files, plus
// the program app/run.
func makeArchive(path string, mib int) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	zw, _ := gzip.NewWriterLevel(f, gzip.BestSpeed)
	tw := tar.NewWriter(zw)
	if err := tw.WriteHeader(&tar.Header{Name: "app/run", Mode: 0o755, Size: 10, Typeflag: tar.TypeReg}); err != nil {
		return err
	}
	tw.Write([]byte("#!/bin/sh\n"))
	per := int64(mib) << 20 / 8
	for i := range 8 {
		if err := tw.WriteHeader(&tar.Header{Name: fmt.Sprintf("app/data/%d.bin", i), Mode: 0o644, Size: per, Typeflag: tar.TypeReg}); err != nil {
			return err
		}
		if _, err := io.CopyN(tw, rand.Reader, per); err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	return zw.Close()
}

func timeIt(fn func() error) (time.Duration, error) {
	start := time.Now()
	err := fn()
	return time.Since(start), err
}
