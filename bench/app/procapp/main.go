// Command procapp is the process-mode application of bench/app: a session
// counter speaking Tandem's header contract (Tandem-Session in,
// Tandem-Session-Set out), on the loopback port in PORT.
package main

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"os"
	"strconv"
)

func main() {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok")) })
	mux.HandleFunc("GET /count", func(w http.ResponseWriter, r *http.Request) {
		var s struct {
			Count int64 `json:"count"`
		}
		if raw, err := base64.RawURLEncoding.DecodeString(r.Header.Get("Tandem-Session")); err == nil && len(raw) > 0 {
			_ = json.Unmarshal(raw, &s)
		}
		s.Count++
		patch, _ := json.Marshal(s)
		w.Header().Set("Tandem-Session-Set", base64.RawURLEncoding.EncodeToString(patch))
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"count":` + strconv.FormatInt(s.Count, 10) + "}"))
	})
	srv := &http.Server{Addr: "127.0.0.1:" + os.Getenv("PORT"), Handler: mux}
	if err := srv.ListenAndServe(); err != nil {
		os.Stderr.WriteString(err.Error() + "\n")
		os.Exit(1)
	}
}
