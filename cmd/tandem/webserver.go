package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"time"

	"tandem/backend/agent"
	"tandem/backend/webserver"
)

func runWebServer(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("tandem webserver", flag.ContinueOnError)
	name := fs.String("name", "", "web server name as defined in the admin server (required)")
	admin := fs.String("admin", "", "admin server URL, e.g. http://127.0.0.1:9736")
	dataDir := fs.String("data-dir", "", "data folder (cached routing table)")
	tokenFile := fs.String("node-token-file", "", "file holding the node token (or set TANDEM_NODE_TOKEN)")
	listen := fs.String("listen", "", "override the listen address of the routing table")
	adminListen := fs.String("admin-listen", "", "optional second listener for /healthz and /metrics")
	accessLog := fs.Int("access-log-every", 1, "log one request in N (0: no access log)")
	maxBody := fs.Int64("max-body-bytes", 8<<20, "largest request body accepted")
	connectTimeout := fs.Duration("connect-timeout", 2*time.Second, "dial timeout to a member")
	headerTimeout := fs.Duration("response-header-timeout", 30*time.Second, "time to send a request and read the response head")
	idleTimeout := fs.Duration("idle-timeout", 60*time.Second, "idle timeout of client and pooled upstream connections")
	probe := fs.Duration("probe-interval", time.Second, "period of the active health checks")
	loops := fs.Int("event-loops", 0, "event loops forwarding the common request (0: one per two cores, at least one; -1: none, a goroutine per connection)")
	pprofOn := fs.Bool("pprof", false, "serve /debug/pprof/ on the admin listener")
	logLevel := fs.String("log-level", "info", "debug, info, warn or error")
	pin := fs.String("ca-fingerprint", "", "the domain CA's fingerprint for an https --admin (else TANDEM_CA_FINGERPRINT)")
	if code, ok := parseFlags(fs, args, stderr); !ok {
		return code
	}
	if *name == "" {
		fmt.Fprintln(stderr, "tandem webserver: --name is required")
		return 2
	}
	token, err := secret("TANDEM_NODE_TOKEN", *tokenFile)
	if err != nil {
		fmt.Fprintf(stderr, "tandem webserver: %v\n", err)
		return 1
	}
	if *admin != "" && token == "" {
		fmt.Fprintln(stderr, "tandem webserver: node token required with --admin: set TANDEM_NODE_TOKEN or --node-token-file")
		return 2
	}
	if *admin == "" && *dataDir == "" {
		fmt.Fprintln(stderr, "tandem webserver: --admin or --data-dir (with a cached routing table) is required")
		return 2
	}
	logger := newLogger(stderr, "webserver", *name, *logLevel)
	cfg := webserver.Config{
		Name:                  *name,
		AdminURL:              *admin,
		NodeToken:             token,
		CAFingerprint:         agent.PinFrom(*pin),
		DataDir:               *dataDir,
		Listen:                *listen,
		AdminListen:           *adminListen,
		AccessLogEvery:        *accessLog,
		MaxBodyBytes:          *maxBody,
		ConnectTimeout:        *connectTimeout,
		ResponseHeaderTimeout: *headerTimeout,
		IdleTimeout:           *idleTimeout,
		ProbeInterval:         *probe,
		EventLoops:            *loops,
		Pprof:                 *pprofOn,
	}
	if err := webserver.Run(ctx, cfg, logger); err != nil && !errors.Is(err, webserver.ErrNoTable) {
		logger.Error("web server stopped", "err", err)
		return 1
	}
	return 0
}
