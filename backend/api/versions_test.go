package api_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"testing"

	"tandem/backend/api"
	"tandem/backend/artifacts"
	"tandem/backend/domain"
)

// tgz builds a gzipped tar of name → content; a content starting with
// "->" makes a symbolic link to the rest.
func tgz(t *testing.T, files ...string) string {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	for i := 0; i+1 < len(files); i += 2 {
		hd := &tar.Header{Name: files[i], Mode: 0o644, Typeflag: tar.TypeReg, Size: int64(len(files[i+1]))}
		if len(files[i+1]) > 2 && files[i+1][:2] == "->" {
			hd.Typeflag, hd.Linkname, hd.Size = tar.TypeSymlink, files[i+1][2:], 0
		}
		if err := tw.WriteHeader(hd); err != nil {
			t.Fatal(err)
		}
		if hd.Typeflag == tar.TypeReg {
			tw.Write([]byte(files[i+1]))
		}
	}
	tw.Close()
	zw.Close()
	return buf.String()
}

func TestApplicationVersionsUploadAndDownload(t *testing.T) {
	var arts *artifacts.Store
	e := newEnv(t, func(c *api.Config) {
		var err error
		if arts, err = artifacts.Open(filepath.Join(t.TempDir(), "artifacts"), 4096); err != nil {
			t.Fatal(err)
		}
		c.Artifacts = arts
	})
	e.must(201, "POST", "/api/v1/applications", e.operator, map[string]any{"name": "cart", "kind": "process", "command": []string{"python3", "app.py"}})
	gz := []string{"Content-Type", "application/gzip"}
	v1 := tgz(t, "app.py", "print('v1')", "static/logo.svg", "<svg/>")
	sum := sha256.Sum256([]byte(v1))
	r := e.do("PUT", "/api/v1/applications/cart/versions/v1", e.operator, v1, gz...)
	var v domain.AppVersion
	r.decode(t, &v)
	if r.Status != 201 || v.SHA256 != hex.EncodeToString(sum[:]) || v.Size != int64(len(v1)) || v.Version != "v1" {
		t.Fatalf("upload v1: %d %s", r.Status, r.Body)
	}
	if r := e.do("PUT", "/api/v1/applications/cart/versions/v1", e.operator, v1, gz...); r.Status != 200 {
		t.Fatalf("same bytes again: %d %s, want 200", r.Status, r.Body)
	}
	stored := func() []string {
		ents, _ := os.ReadDir(filepath.Dir(arts.Path(v.SHA256)))
		var out []string
		for _, e := range ents {
			out = append(out, e.Name())
		}
		return out
	}
	if got := stored(); len(got) != 1 {
		t.Fatalf("artifacts folder: %v", got)
	}

	before, files := e.dump(), stored()
	refused := []struct {
		what, version, body string
		status              int
		hdr                 []string
	}{
		{"other bytes under v1", "v1", tgz(t, "app.py", "print('other')"), 409, gz},
		{"not gzip", "v2", "this is not an archive", 400, gz},
		{"path traversal", "v2", tgz(t, "app.py", "x", "../../evil", "x"), 400, gz},
		{"absolute path", "v2", tgz(t, "app.py", "x", "/etc/cron.d/evil", "x"), 400, gz},
		{"symlink out", "v2", tgz(t, "app.py", "x", "lib/link", "->../../../etc/passwd"), 400, gz},
		{"command file missing", "v2", tgz(t, "main.py", "x"), 400, gz},
		{"too large", "v2", tgz(t, "app.py", randomish(6000)), 400, gz},
		{"JSON content type", "v2", v1, 400, []string{"Content-Type", "application/json"}},
		{"bad version name", "../v2", v1, 404, gz},
		{"bad version name", "v 2", v1, 422, gz},
	}
	for _, c := range refused {
		r := e.do("PUT", "/api/v1/applications/cart/versions/"+c.version, e.operator, c.body, c.hdr...)
		if r.Status != c.status {
			t.Errorf("%s: %d %s, want %d", c.what, r.Status, r.Body, c.status)
		}
		e.unchanged(before, c.what)
		if got := stored(); len(got) != len(files) {
			t.Errorf("%s: artifacts folder now %v", c.what, got)
		}
	}
	if r := e.do("PUT", "/api/v1/applications/cart/versions/v3", e.viewer, v1, gz...); r.Status != 403 {
		t.Fatalf("viewer upload: %d", r.Status)
	}
	if r := e.do("PUT", "/api/v1/applications/nope/versions/v1", e.operator, v1, gz...); r.Status != 404 {
		t.Fatalf("unknown application: %d", r.Status)
	}
	var list []domain.AppVersion
	e.must(200, "GET", "/api/v1/applications/cart/versions", e.viewer, nil).decode(t, &list)
	if len(list) != 1 || list[0].Version != "v1" {
		t.Fatalf("versions %+v", list)
	}

	// Nodes download with the node token; ranges resume a cut download.
	node := nodeTokenOf(t, e)
	if r := e.do("GET", "/api/v1/nodes/artifacts/"+v.SHA256, node, nil); r.Status != 200 || string(r.Body) != v1 {
		t.Fatalf("node download: %d, %d bytes", r.Status, len(r.Body))
	}
	if r := e.do("GET", "/api/v1/nodes/artifacts/"+v.SHA256, node, nil, "Range", "bytes=10-"); r.Status != 206 || string(r.Body) != v1[10:] {
		t.Fatalf("ranged download: %d, %d bytes", r.Status, len(r.Body))
	}
	for _, tok := range []string{"", e.operator} {
		if r := e.do("GET", "/api/v1/nodes/artifacts/"+v.SHA256, tok, nil); r.Status != 401 {
			t.Fatalf("download with %q: %d, want 401", tok, r.Status)
		}
	}
	if r := e.do("GET", "/api/v1/nodes/artifacts/"+hex.EncodeToString(make([]byte, 32)), node, nil); r.Status != 404 {
		t.Fatalf("unknown archive: %d", r.Status)
	}

	e.must(204, "DELETE", "/api/v1/applications/cart/versions/v1", e.operator, nil)
	if got := stored(); len(got) != 0 {
		t.Fatalf("archive of the deleted version kept: %v", got)
	}
	if r := e.do("GET", "/api/v1/nodes/artifacts/"+v.SHA256, node, nil); r.Status != 404 {
		t.Fatalf("deleted archive: %d", r.Status)
	}
}

// randomish returns n bytes gzip cannot shrink much.
func randomish(n int) string {
	b := make([]byte, n)
	x := uint32(7)
	for i := range b {
		x = x*1664525 + 1013904223
		b[i] = byte(x >> 24)
	}
	return string(b)
}
