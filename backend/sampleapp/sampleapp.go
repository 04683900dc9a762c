// Package sampleapp is the managed server's built-in demo application and
// the first user of the sdk package: GET /counter counts requests per
// session, GET /ping answers without a session, GET / is a small page.
package sampleapp

import (
	"encoding/json"
	"html/template"
	"net/http"

	"tandem/sdk"
)

// HeaderServer names the server that answered.
const HeaderServer = "X-Tandem-Server"

// Counter is the /counter answer.
type Counter struct {
	Server  string `json:"server"`
	Session string `json:"session"`
	Count   int64  `json:"count"`
}

// Mount builds the app; /ping stays outside the session.
func Mount(withSession func(http.Handler) http.Handler) http.Handler {
	inner := http.NewServeMux()
	inner.HandleFunc("GET /counter", func(w http.ResponseWriter, r *http.Request) {
		n, ok := count(w, r)
		if !ok {
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		_ = json.NewEncoder(w).Encode(Counter{Server: sdk.ServerName(r), Session: sdk.FromRequest(r).ID(), Count: n})
	})
	inner.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		n, ok := count(w, r)
		if !ok {
			return
		}
		s := sdk.FromRequest(r)
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		_ = page.Execute(w, map[string]any{"Server": sdk.ServerName(r), "Session": s.ID(), "Count": n, "Link": s.EncodeURL("/")})
	})
	outer := http.NewServeMux()
	outer.HandleFunc("GET /ping", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set(HeaderServer, sdk.ServerName(r))
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("pong"))
	})
	outer.Handle("/", withSession(inner))
	return outer
}

// count adds one to the session's counter and returns it.
func count(w http.ResponseWriter, r *http.Request) (int64, bool) {
	w.Header().Set(HeaderServer, sdk.ServerName(r))
	s := sdk.FromRequest(r)
	var n int64
	if _, err := s.Get("count", &n); err != nil {
		n = 0 // not a number: start again
	}
	n++
	if err := s.Set("count", n); err != nil {
		http.Error(w, "session: "+err.Error(), http.StatusInternalServerError)
		return 0, false
	}
	return n, true
}

var page = template.Must(template.New("page").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Tandem sample app</title>
<style>body{font-family:system-ui,sans-serif;margin:3rem;color:#222}b{font-size:2rem}</style></head>
<body><h1>Tandem sample app</h1>
<p>Served by <code>{{.Server}}</code>. You have visited this page <b>{{.Count}}</b> times in session <code>{{.Session}}</code>.</p>
<p><a href="{{.Link}}">Count again</a></p>
</body></html>
`))
