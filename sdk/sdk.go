// Package sdk makes a Go web application a Tandem managed server: the
// operator's binary embeds the session manager, its replication to a
// backup server and the agent that talks to the admin server, and reads
// the same flags and environment as `tandem server`.
//
//	func main() {
//		mux := http.NewServeMux()
//		mux.HandleFunc("POST /cart", func(w http.ResponseWriter, r *http.Request) {
//			s := sdk.FromRequest(r)
//			var cart []string
//			_, _ = s.Get("cart", &cart)
//			if err := s.Set("cart", append(cart, r.FormValue("item"))); err != nil {
//				http.Error(w, err.Error(), http.StatusRequestEntityTooLarge)
//				return
//			}
//			fmt.Fprintln(w, len(cart)+1)
//		})
//		sdk.Main(mux)
//	}
//
// Define the application in the admin server with kind "go" and the
// binary as its command: the node manager then starts the binary instead
// of `tandem server`, with the flags --name, --admin and --data-dir and the
// node token in TANDEM_NODE_TOKEN. Started by hand, it takes the same.
//
// Session values are JSON: Get decodes into any Go value, Set encodes one.
// A request holds its session exclusively, so handlers need no locking.
// The answer is held until the session is stored (and, in sync mode,
// copied to the backup); an answer that flushes or grows past 64 KiB
// streams, and the session is stored at that moment: later changes return
// ErrCommitted.
package sdk

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"runtime/pprof"
	"strings"
	"syscall"

	"tandem/backend/agent"
	"tandem/backend/domain"
	"tandem/backend/managed"
	"tandem/backend/session"
)

// Errors of the session API.
var (
	// ErrTooLarge: the change would pass the cluster's max_session_bytes;
	// the session is unchanged.
	ErrTooLarge = session.ErrTooLarge
	// ErrCommitted: the answer is streaming, the session is stored already.
	ErrCommitted = session.ErrCommitted
	// ErrBadKey: an empty name, over 256 bytes, or one starting with
	// "_tandem." (reserved).
	ErrBadKey = session.ErrBadPatch
)

// Session is a request's session.
type Session struct{ s *session.Session }

// FromRequest returns the request's session; nil outside the session
// middleware (routes mounted without it by MainMount).
func FromRequest(r *http.Request) *Session {
	s := session.FromContext(r.Context())
	if s == nil {
		return nil
	}
	return &Session{s: s}
}

// ID is the session id (32 hex digits, 128 random bits).
func (s *Session) ID() string { return s.s.ID() }

// IsNew reports whether this request started the session. A new session
// the handler leaves empty is not stored and sets no cookie.
func (s *Session) IsNew() bool { return s.s.IsNew() }

// Get decodes attribute key into v; false when it is absent.
func (s *Session) Get(key string, v any) (bool, error) {
	raw, ok := s.s.JSON(key)
	if !ok {
		return false, nil
	}
	if err := json.Unmarshal(raw, v); err != nil {
		return true, fmt.Errorf("sdk: session attribute %q: %w", key, err)
	}
	return true, nil
}

// Set stores v (encoded as JSON) under key; a nil v deletes it.
func (s *Session) Set(key string, v any) error {
	raw, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("sdk: session attribute %q: %w", key, err)
	}
	return s.s.ApplyPatch(map[string]json.RawMessage{key: raw})
}

// Delete removes attribute key.
func (s *Session) Delete(key string) error {
	return s.s.ApplyPatch(map[string]json.RawMessage{key: json.RawMessage("null")})
}

// Keys lists the attribute names, sorted.
func (s *Session) Keys() []string { return s.s.Keys() }

// Invalidate ends the session: the next request starts a new one.
func (s *Session) Invalidate() { s.s.Invalidate() }

// EncodeURL adds the session to a path when the cluster tracks sessions
// by URL rewriting; otherwise it returns path unchanged.
func (s *Session) EncodeURL(path string) string { return s.s.EncodeURL(path) }

type serverKey struct{}

// ServerName is the name of the managed server serving r.
func ServerName(r *http.Request) string {
	n, _ := r.Context().Value(serverKey{}).(string)
	return n
}

// Mount builds an application whose routes choose whether they use the
// session: withSession wraps those that do (a health check, static files
// or a ping may stay outside and cost no session lookup).
type Mount func(withSession func(http.Handler) http.Handler) http.Handler

// Main runs h as a managed server until SIGINT or SIGTERM, then stops
// gracefully (every session copied to its backup first) and exits: 0 after
// a clean stop, 1 on failure, 2 on bad flags.
func Main(h http.Handler) {
	MainMount(func(ws func(http.Handler) http.Handler) http.Handler { return ws(h) })
}

// MainMount is Main for an application that keeps some routes outside the
// session.
func MainMount(m Mount) {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := Serve(ctx, os.Args[1:], os.Stderr, m, domain.AppGo)
	stop()
	os.Exit(code)
}

// Serve parses the `tandem server` flags in args, runs the managed server
// with the application m until ctx ends, and returns the exit code.
// binary is domain.AppGo for an SDK binary, "" for `tandem server`.
func Serve(ctx context.Context, args []string, stderr io.Writer, m Mount, binary string) int {
	cfg, logger, code, ok := ParseFlags(args, stderr)
	if !ok {
		return code
	}
	name := cfg.Name
	cfg.App = func(ws func(http.Handler) http.Handler) http.Handler {
		h := m(ws)
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			h.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), serverKey{}, name)))
		})
	}
	cfg.Binary = binary
	if path := os.Getenv("TANDEM_CPU_PROFILE"); path != "" {
		// A debugging aid: a CPU profile of the whole run, for go tool pprof.
		f, err := os.Create(path)
		if err == nil && pprof.StartCPUProfile(f) == nil {
			defer func() { pprof.StopCPUProfile(); f.Close() }()
		} else {
			logger.Warn("no CPU profile", "path", path, "err", err)
		}
	}
	if err := managed.Run(ctx, cfg, logger); err != nil {
		logger.Error("managed server failed", "err", err)
		return 1
	}
	return 0
}

// ParseFlags reads the managed server's flags (--name, --admin,
// --data-dir, --node-token-file, --log-level; a leading "server" word is
// allowed) and the node token from TANDEM_NODE_TOKEN or the token file.
// ok is false when the caller must exit with code (help, or bad input,
// reported on stderr).
func ParseFlags(args []string, stderr io.Writer) (cfg managed.Config, logger *slog.Logger, code int, ok bool) {
	if len(args) > 0 && args[0] == "server" {
		args = args[1:]
	}
	fs := flag.NewFlagSet("tandem server", flag.ContinueOnError)
	fs.SetOutput(stderr)
	name := fs.String("name", "", "this managed server's name, as defined in the admin server")
	admin := fs.String("admin", "http://127.0.0.1:9736", "admin server URL")
	dataDir := fs.String("data-dir", "", "data folder (cached config, application log); default ./tandem-server-NAME")
	tokenFile := fs.String("node-token-file", "", "file holding the node token (else TANDEM_NODE_TOKEN)")
	level := fs.String("log-level", "info", "log level: debug, info, warn, error")
	pin := fs.String("ca-fingerprint", "", "the domain CA's fingerprint for an https --admin (else TANDEM_CA_FINGERPRINT)")
	advertise := fs.String("advertise", os.Getenv("TANDEM_ADVERTISE"), "the host (IP or name) other machines reach this server at, when it binds every address or sits behind NAT; the ports stay the configured ones (else TANDEM_ADVERTISE; default: the address its connection to the admin server comes from)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return cfg, nil, 0, false
		}
		return cfg, nil, 2, false
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "tandem server: unexpected argument %q\n", fs.Arg(0))
		return cfg, nil, 2, false
	}
	if *name == "" {
		fmt.Fprintln(stderr, "tandem server: --name is required")
		return cfg, nil, 2, false
	}
	if *dataDir == "" {
		*dataDir = "tandem-server-" + *name
	}
	token, err := nodeToken(*tokenFile)
	if err != nil {
		fmt.Fprintf(stderr, "tandem server: %v\n", err)
		return cfg, nil, 1, false
	}
	if token == "" {
		fmt.Fprintln(stderr, "tandem server: node token required: set TANDEM_NODE_TOKEN or --node-token-file")
		return cfg, nil, 2, false
	}
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(*level)); err != nil {
		lvl = slog.LevelInfo
	}
	logger = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: lvl})).With("role", "server", "name", *name)
	return managed.Config{Name: *name, AdminURL: *admin, NodeToken: token, DataDir: *dataDir, CAFingerprint: agent.PinFrom(*pin), Advertise: strings.TrimSpace(*advertise)}, logger, 0, true
}

// nodeToken reads TANDEM_NODE_TOKEN, else the file named by the flag or by
// TANDEM_NODE_TOKEN_FILE. Never a flag value: flags show in ps.
func nodeToken(flagFile string) (string, error) {
	if v := os.Getenv("TANDEM_NODE_TOKEN"); v != "" {
		return strings.TrimSpace(v), nil
	}
	file := flagFile
	if file == "" {
		file = os.Getenv("TANDEM_NODE_TOKEN_FILE")
	}
	if file == "" {
		return "", nil
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return "", fmt.Errorf("read node token file: %w", err)
	}
	return strings.TrimSpace(string(b)), nil
}
