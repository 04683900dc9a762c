package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strings"

	"tandem/backend/admin"
	"tandem/backend/artifacts"
)

// runAdmin runs `tandem admin`. Secrets come from the environment
// (TANDEM_ADMIN_TOKEN, TANDEM_NODE_TOKEN) or the files named by
// TANDEM_ADMIN_TOKEN_FILE / TANDEM_NODE_TOKEN_FILE, never from flags.
func runAdmin(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("tandem admin", flag.ContinueOnError)
	listen := fs.String("listen", admin.DefaultListen, "address of the console, REST API and control channel (host:port)")
	dataDir := fs.String("data-dir", "./data", "data folder: tandem.db and node.token")
	logLevel := fs.String("log-level", "info", "log level: debug, info, warn, error")
	maxArtifact := fs.Int64("max-artifact-bytes", artifacts.DefaultMaxBytes, "largest application version archive (.tar.gz) accepted, in bytes")
	origins := fs.String("trusted-origins", "", "comma-separated origins allowed to send cookie-authenticated writes besides the server's own (console behind a proxy)")
	if code, ok := parseFlags(fs, args, stderr); !ok {
		return code
	}
	logger := newLogger(stderr, "admin", "", *logLevel)
	adminToken, err := secret("TANDEM_ADMIN_TOKEN", "")
	if err != nil {
		fmt.Fprintf(stderr, "tandem admin: TANDEM_ADMIN_TOKEN: %v\n", err)
		return 1
	}
	nodeToken, err := secret("TANDEM_NODE_TOKEN", "")
	if err != nil {
		fmt.Fprintf(stderr, "tandem admin: TANDEM_NODE_TOKEN: %v\n", err)
		return 1
	}
	cfg := admin.Config{
		Listen:     *listen,
		DataDir:    *dataDir,
		AdminToken: adminToken,
		NodeToken:  nodeToken,
		Stdout:     stdout,

		MaxArtifactBytes: *maxArtifact,
	}
	if *maxArtifact <= 0 {
		fmt.Fprintln(stderr, "tandem admin: --max-artifact-bytes must be positive")
		return 2
	}
	for _, o := range strings.Split(*origins, ",") {
		if o = strings.TrimSpace(o); o != "" {
			cfg.TrustedOrigins = append(cfg.TrustedOrigins, o)
		}
	}
	if err := admin.Run(ctx, cfg, logger); err != nil {
		logger.Error("tandem admin failed", "err", err)
		return 1
	}
	return 0
}
