// Package web holds the browser console (vanilla HTML, CSS and JS, no build
// step) and serves it from the binary.
//
// index.html refers to its assets as /assets/<hash>/<name>, where hash is a
// prefix of the file's SHA-256, so those URLs can be cached for a year; the
// page itself and /static/ files are revalidated with ETags.
package web

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"io/fs"
	"mime"
	"net/http"
	"path"
	"strings"
	"time"

	"tandem/static"
)

//go:embed index.html app.js app.css pages.js insight.js vendor/uplot/uPlot.iife.min.js vendor/uplot/uPlot.min.css
var files embed.FS

// assetNames are the files index.html refers to as {{name}}; app.js runs
// first and boots once the others have added their pages.
var assetNames = []string{"app.js", "app.css", "pages.js", "insight.js", "vendor/uplot/uPlot.iife.min.js", "vendor/uplot/uPlot.min.css"}

// asset is one file ready to serve.
type asset struct {
	body  []byte
	ctype string
	etag  string
	hash  string
}

func load(fsys fs.FS, name string) asset {
	b, err := fs.ReadFile(fsys, name)
	if err != nil {
		panic("web: embedded file missing: " + name) // a build defect, caught by any test
	}
	sum := sha256.Sum256(b)
	h := hex.EncodeToString(sum[:])[:16]
	ct := mime.TypeByExtension(path.Ext(name))
	if ct == "" {
		ct = http.DetectContentType(b)
	}
	return asset{body: b, ctype: ct, etag: `"` + h + `"`, hash: h}
}

type console struct {
	index  asset
	assets map[string]asset // by name, served under /assets/<hash>/<name>
	static map[string]asset // by name, served under /static/<name>
}

// Handler serves the console: "/" (and "/index.html") the page,
// "/assets/<hash>/<name>" its scripts and styles, "/static/<name>" the
// as-is files. Other paths answer 404. It never serves /api/.
func Handler() http.Handler {
	c := &console{assets: map[string]asset{}, static: map[string]asset{}}
	page, err := fs.ReadFile(files, "index.html")
	if err != nil {
		panic("web: embedded index.html missing")
	}
	for _, name := range assetNames {
		a := load(files, name)
		c.assets[name] = a
		page = bytes.ReplaceAll(page, []byte("{{"+name+"}}"), []byte("/assets/"+a.hash+"/"+name))
	}
	entries, _ := fs.ReadDir(static.FS, ".")
	for _, e := range entries {
		if !e.IsDir() {
			a := load(static.FS, e.Name())
			c.static[e.Name()] = a
			page = bytes.ReplaceAll(page, []byte("{{static/"+e.Name()+"}}"), []byte("/static/"+e.Name()+"?v="+a.hash))
		}
	}
	sum := sha256.Sum256(page)
	c.index = asset{body: page, ctype: "text/html; charset=utf-8", etag: `"` + hex.EncodeToString(sum[:])[:16] + `"`}
	return c
}

func (c *console) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	p := r.URL.Path
	switch {
	case p == "/" || p == "/index.html":
		h := w.Header()
		h.Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("X-Frame-Options", "DENY")
		serve(w, r, c.index, "no-cache")
	case strings.HasPrefix(p, "/assets/"):
		hash, name, ok := strings.Cut(strings.TrimPrefix(p, "/assets/"), "/")
		a, found := c.assets[name]
		if !ok || !found {
			http.NotFound(w, r)
			return
		}
		if hash != a.hash {
			// An old page asking for an older build: send the current file,
			// but do not let it be cached under the stale URL.
			serve(w, r, a, "no-cache")
			return
		}
		serve(w, r, a, "public, max-age=31536000, immutable")
	case strings.HasPrefix(p, "/static/"):
		a, ok := c.static[strings.TrimPrefix(p, "/static/")]
		if !ok {
			http.NotFound(w, r)
			return
		}
		serve(w, r, a, "public, max-age=3600")
	default:
		http.NotFound(w, r)
	}
}

var modTime = time.Time{}

func serve(w http.ResponseWriter, r *http.Request, a asset, cache string) {
	h := w.Header()
	h.Set("Content-Type", a.ctype)
	h.Set("Cache-Control", cache)
	h.Set("ETag", a.etag)
	h.Set("X-Content-Type-Options", "nosniff")
	http.ServeContent(w, r, "", modTime, bytes.NewReader(a.body))
}
