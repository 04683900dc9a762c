// Command cart is the Go example of a Tandem application: a shopping cart
// in the session, built with the sdk package, so the binary is a managed
// server itself. Define it in the admin server with kind "go" and this
// binary as its command; the node manager starts it with the same flags as
// `tandem server`.
//
//	GET  /healthz             200 (outside the session)
//	GET  /cart                the cart
//	POST /cart/add?item=NAME  appends NAME to the cart
//	POST /logout              ends the session
package main

import (
	"encoding/json"
	"net/http"
	"os"

	"tandem/sdk"
)

// version is what the answers say they run (APP_VERSION; default v1).
var version = envOr("APP_VERSION", "v1")

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

type answer struct {
	Server  string   `json:"server"`
	App     string   `json:"app"`
	Version string   `json:"version"`
	Session string   `json:"session"`
	Cart    []string `json:"cart"`
}

func main() {
	sdk.MainMount(func(withSession func(http.Handler) http.Handler) http.Handler {
		app := http.NewServeMux()
		app.HandleFunc("GET /cart", func(w http.ResponseWriter, r *http.Request) {
			reply(w, r, cart(r))
		})
		app.HandleFunc("POST /cart/add", func(w http.ResponseWriter, r *http.Request) {
			items := append(cart(r), r.URL.Query().Get("item"))
			if err := sdk.FromRequest(r).Set("cart", items); err != nil {
				http.Error(w, "cart not saved: "+err.Error(), http.StatusRequestEntityTooLarge)
				return
			}
			reply(w, r, items)
		})
		app.HandleFunc("POST /logout", func(w http.ResponseWriter, r *http.Request) {
			sdk.FromRequest(r).Invalidate()
			w.WriteHeader(http.StatusNoContent)
		})
		root := http.NewServeMux()
		root.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok")) })
		root.Handle("/", withSession(app))
		return root
	})
}

func cart(r *http.Request) []string {
	items := []string{}
	_, _ = sdk.FromRequest(r).Get("cart", &items)
	return items
}

func reply(w http.ResponseWriter, r *http.Request, items []string) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(answer{Server: sdk.ServerName(r), App: "cart-go", Version: version, Session: sdk.FromRequest(r).ID(), Cart: items})
}
