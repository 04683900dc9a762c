// Command standin is a stand-in for a managed server in the proxy
// benchmark while `tandem server` cannot run: the sample app's /counter
// (a per-session counter, session cookie <id>!<route>), /ping, /healthz,
// and the X-Tandem-Server header, on plain net/http.
package main

import (
	"flag"
	"fmt"
	"log"
	"net/http"
	"sync"

	"tandem/backend/route"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "listen address")
	name := flag.String("name", "ms1", "server name")
	rt := flag.String("route", "ms1", "route")
	flag.Parse()
	var mu sync.Mutex
	counts := map[string]int{}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte("ok\n")) })
	mux.HandleFunc("GET /ping", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("X-Tandem-Server", *name)
		w.Write([]byte("pong"))
	})
	mux.HandleFunc("GET /counter", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Tandem-Server", *name)
		id := ""
		if c, err := r.Cookie("JSESSIONID"); err == nil {
			if v, err := route.Parse(c.Value); err == nil {
				id = v.ID
			}
		}
		mu.Lock()
		if _, ok := counts[id]; !ok || id == "" {
			id = route.NewID()
			http.SetCookie(w, &http.Cookie{Name: "JSESSIONID", Value: route.Value{ID: id, Primary: *rt}.String(), Path: "/", HttpOnly: true})
		}
		counts[id]++
		n := counts[id]
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"server":%q,"session":%q,"count":%d}`, *name, id, n)
	})
	log.Fatal(http.ListenAndServe(*listen, mux))
}
