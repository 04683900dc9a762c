package web_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"

	"tandem/web"
)

func get(t *testing.T, srv *httptest.Server, path string, hdr map[string]string) (*http.Response, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, srv.URL+path, nil)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

func TestConsoleAssetsAreHashedAndCached(t *testing.T) {
	srv := httptest.NewServer(web.Handler())
	defer srv.Close()

	resp, page := get(t, srv, "/", nil)
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
		t.Fatalf("GET / = %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	if resp.Header.Get("Cache-Control") != "no-cache" || resp.Header.Get("Content-Security-Policy") == "" {
		t.Errorf("index headers: %v", resp.Header)
	}
	if strings.Contains(page, "{{") || strings.Contains(page, "http://") || strings.Contains(page, "https://") {
		t.Errorf("index has unreplaced placeholders or external URLs:\n%s", page)
	}
	refs := regexp.MustCompile(`/assets/([0-9a-f]{16})/(app\.(?:js|css))`).FindAllStringSubmatch(page, -1)
	if len(refs) != 2 {
		t.Fatalf("want 2 hashed asset links, got %v", refs)
	}
	for _, m := range refs {
		resp, body := get(t, srv, m[0], nil)
		if resp.StatusCode != 200 || len(body) < 100 {
			t.Fatalf("GET %s = %d (%d bytes)", m[0], resp.StatusCode, len(body))
		}
		if cc := resp.Header.Get("Cache-Control"); !strings.Contains(cc, "max-age=31536000") || !strings.Contains(cc, "immutable") {
			t.Errorf("%s Cache-Control %q", m[0], cc)
		}
		if m[2] == "app.js" && !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/javascript") {
			t.Errorf("app.js Content-Type %q", resp.Header.Get("Content-Type"))
		}
		// Revalidation with the ETag answers 304.
		resp, _ = get(t, srv, m[0], map[string]string{"If-None-Match": resp.Header.Get("ETag")})
		if resp.StatusCode != http.StatusNotModified {
			t.Errorf("conditional GET %s = %d, want 304", m[0], resp.StatusCode)
		}
		// A stale hash still works but is not cached long.
		resp, _ = get(t, srv, "/assets/0000000000000000/"+m[2], nil)
		if resp.StatusCode != 200 || resp.Header.Get("Cache-Control") != "no-cache" {
			t.Errorf("stale hash: %d %q", resp.StatusCode, resp.Header.Get("Cache-Control"))
		}
	}
	resp, _ = get(t, srv, "/static/favicon.svg", nil)
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "image/svg+xml" || resp.Header.Get("ETag") == "" {
		t.Errorf("favicon: %d %v", resp.StatusCode, resp.Header)
	}
	for _, p := range []string{"/nope", "/assets/x/evil.js", "/static/../web.go", "/static/static.go"} {
		if resp, _ := get(t, srv, p, nil); resp.StatusCode != 404 {
			t.Errorf("GET %s = %d, want 404", p, resp.StatusCode)
		}
	}
}
