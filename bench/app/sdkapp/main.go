// Command sdkapp is the embedded-mode application of bench/app: the same
// session counter as procapp, built with the sdk package.
package main

import (
	"net/http"
	"strconv"

	"tandem/sdk"
)

func main() {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /count", func(w http.ResponseWriter, r *http.Request) {
		s := sdk.FromRequest(r)
		var n int64
		_, _ = s.Get("count", &n)
		n++
		if err := s.Set("count", n); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"count":` + strconv.FormatInt(n, 10) + "}"))
	})
	sdk.Main(mux)
}
