// Package metrics gives each process its own Prometheus registry (no global
// state, so one test binary can host several roles) and the two public
// endpoints every process answers without a token: /metrics and /healthz.
package metrics

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Registry is one process's metric registry.
type Registry struct {
	*prometheus.Registry
}

// New returns a registry with the Go and process collectors registered.
func New() *Registry {
	r := prometheus.NewRegistry()
	r.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return &Registry{r}
}

// Handler serves the registry in the Prometheus text format.
func (r *Registry) Handler() http.Handler {
	return promhttp.HandlerFor(r.Registry, promhttp.HandlerOpts{})
}

// Healthz answers 200 "ok" while ready() is nil, else 503 with a short
// reason; it never reveals secrets.
func Healthz(ready func() error) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		if ready != nil {
			if err := ready(); err != nil {
				w.WriteHeader(http.StatusServiceUnavailable)
				_, _ = w.Write([]byte("not ready: " + err.Error() + "\n"))
				return
			}
		}
		_, _ = w.Write([]byte("ok\n"))
	})
}

// Mount registers /metrics and /healthz on mux.
func (r *Registry) Mount(mux *http.ServeMux, ready func() error) {
	mux.Handle("GET /metrics", r.Handler())
	mux.Handle("GET /healthz", Healthz(ready))
}
