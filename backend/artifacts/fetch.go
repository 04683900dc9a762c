package artifacts

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"time"
)

// ErrCorrupt means a downloaded archive does not have the SHA-256 it was
// fetched for; it is deleted and never unpacked.
var ErrCorrupt = errors.New("artifacts: downloaded archive does not match its SHA-256")

// fetchUnpackedMax bounds what a fetched archive may unpack to (the admin
// server checked it at upload; this guards the node all the same).
const fetchUnpackedMax = 16 << 30

// Fetcher gets archives from the admin server for a node.
type Fetcher struct {
	AdminURL  string
	NodeToken string
	HTTP      *http.Client // nil: a client without an overall timeout (archives may be large)
	// Attempts bounds the downloads of one archive (a cut one resumes
	// where it stopped); 0: 5.
	Attempts int
}

// Dir is where the archive sum of app's version is unpacked under root.
func Dir(root, app, version, sum string) string {
	if len(sum) > 12 {
		sum = sum[:12]
	}
	return filepath.Join(root, app, version+"-"+sum)
}

// Fetch makes sure the archive sum (size bytes) is unpacked at dest: it
// downloads it to dest.part (resuming a cut download with a Range request),
// checks its SHA-256, and unpacks it. An existing dest is used as it is.
func (f *Fetcher) Fetch(ctx context.Context, sum string, size int64, dest string) error {
	if st, err := os.Stat(dest); err == nil && st.IsDir() {
		return nil
	}
	if !shaRE.MatchString(sum) {
		return fmt.Errorf("artifacts: malformed sha256 %q", sum)
	}
	if err := os.MkdirAll(filepath.Dir(dest), 0o755); err != nil {
		return fmt.Errorf("artifacts: %w", err)
	}
	part := dest + ".part"
	attempts := f.Attempts
	if attempts <= 0 {
		attempts = 5
	}
	var err error
	for i := range attempts {
		if err = f.download(ctx, sum, size, part); err == nil {
			break
		}
		if ctx.Err() != nil {
			return fmt.Errorf("artifacts: fetch %s: %w", sum, ctx.Err())
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("artifacts: fetch %s: %w", sum, ctx.Err())
		case <-time.After(time.Duration(200<<i) * time.Millisecond):
		}
	}
	if err != nil {
		return fmt.Errorf("artifacts: fetch %s after %d attempts: %w", sum, attempts, err)
	}
	if err := verify(part, sum); err != nil {
		os.Remove(part)
		return err
	}
	in, err := os.Open(part)
	if err != nil {
		return fmt.Errorf("artifacts: %w", err)
	}
	defer os.Remove(part)
	defer in.Close()
	if err := Unpack(in, dest, fetchUnpackedMax); err != nil {
		return err
	}
	return nil
}

// download appends the rest of the archive to part.
func (f *Fetcher) download(ctx context.Context, sum string, size int64, part string) error {
	out, err := os.OpenFile(part, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer out.Close()
	st, err := out.Stat()
	if err != nil {
		return err
	}
	have := st.Size()
	if size > 0 && have == size {
		return nil
	}
	if size > 0 && have > size {
		if err := out.Truncate(0); err != nil {
			return err
		}
		have = 0
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, f.AdminURL+"/api/v1/nodes/artifacts/"+sum, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+f.NodeToken)
	if have > 0 {
		req.Header.Set("Range", "bytes="+strconv.FormatInt(have, 10)+"-")
	}
	hc := f.HTTP
	if hc == nil {
		hc = &http.Client{}
	}
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusPartialContent:
	case http.StatusOK:
		if err := out.Truncate(0); err != nil { // the whole archive again
			return err
		}
	default:
		return fmt.Errorf("admin server answered %s", resp.Status)
	}
	_, err = io.Copy(out, resp.Body)
	if err != nil {
		return err
	}
	return out.Sync()
}

func verify(path, sum string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("artifacts: %w", err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return fmt.Errorf("artifacts: %w", err)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != sum {
		return fmt.Errorf("%w: got %s, want %s", ErrCorrupt, got, sum)
	}
	return nil
}

// Prune removes unpacked versions in dir beyond the newest keep (by
// modification time), never the one named inUse.
func Prune(dir string, keep int, inUse string) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	type v struct {
		path string
		mod  time.Time
	}
	var vs []v
	for _, e := range ents {
		if !e.IsDir() || e.Name()[0] == '.' {
			continue
		}
		info, err := e.Info()
		if err != nil {
			continue
		}
		vs = append(vs, v{filepath.Join(dir, e.Name()), info.ModTime()})
	}
	sort.Slice(vs, func(i, j int) bool { return vs[i].mod.After(vs[j].mod) })
	for i, x := range vs {
		if i >= keep && x.path != inUse {
			os.RemoveAll(x.path)
		}
	}
}
