// Package sampleapp is the managed server's demo application, the first
// user of the session middleware: GET /counter counts requests per session,
// GET /ping answers without a session, GET / is a small page.
package sampleapp

import (
	"encoding/json"
	"html/template"
	"net/http"

	"tandem/backend/session"
)

// HeaderServer names the server that answered.
const HeaderServer = "X-Tandem-Server"

// Counter is the /counter answer.
type Counter struct {
	Server  string `json:"server"`
	Session string `json:"session"`
	Count   int64  `json:"count"`
}

// Mount registers the app's routes on mux (the caller wraps them with the session middleware).
func Mount(mux *http.ServeMux, name string) {
	tag := func(h http.HandlerFunc) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set(HeaderServer, name)
			h(w, r)
		})
	}
	mux.Handle("GET /ping", tag(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("pong"))
	}))
	mux.Handle("GET /counter", tag(func(w http.ResponseWriter, r *http.Request) {
		s := session.FromContext(r.Context())
		n, _ := s.Int("count")
		n++
		s.SetInt("count", n)
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		_ = json.NewEncoder(w).Encode(Counter{Server: name, Session: s.ID(), Count: n})
	}))
	mux.Handle("GET /{$}", tag(func(w http.ResponseWriter, r *http.Request) {
		s := session.FromContext(r.Context())
		n, _ := s.Int("count")
		n++
		s.SetInt("count", n)
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		_ = page.Execute(w, map[string]any{"Server": name, "Session": s.ID(), "Count": n, "Link": s.EncodeURL("/")})
	}))

}

// Handler returns the app with the session middleware applied.
func Handler(name string, wrap func(http.Handler) http.Handler) http.Handler {
	inner := http.NewServeMux()
	Mount(inner, name)
	outer := http.NewServeMux()
	outer.Handle("GET /ping", inner)
	outer.Handle("/", wrap(inner))
	return outer
}

var page = template.Must(template.New("page").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Tandem sample app</title>
<style>body{font-family:system-ui,sans-serif;margin:3rem;color:#222}b{font-size:2rem}</style></head>
<body><h1>Tandem sample app</h1>
<p>Served by <code>{{.Server}}</code>. You have visited this page <b>{{.Count}}</b> times in session <code>{{.Session}}</code>.</p>
<p><a href="{{.Link}}">Count again</a></p>
</body></html>
`))
