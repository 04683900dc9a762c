package main

import (
	"context"
	"flag"
	"fmt"
	"io"

	"tandem/backend/managed"
)

func runServer(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("tandem server", flag.ContinueOnError)
	name := fs.String("name", "", "this managed server's name, as defined in the admin server")
	admin := fs.String("admin", "http://127.0.0.1:9736", "admin server URL")
	dataDir := fs.String("data-dir", "", "data folder (cached config); default ./tandem-server-NAME")
	tokenFile := fs.String("node-token-file", "", "file holding the node token (else TANDEM_NODE_TOKEN)")
	level := fs.String("log-level", "info", "log level: debug, info, warn, error")
	if code, ok := parseFlags(fs, args, stderr); !ok {
		return code
	}
	if *name == "" {
		fmt.Fprintln(stderr, "tandem server: --name is required")
		return 2
	}
	if *dataDir == "" {
		*dataDir = "tandem-server-" + *name
	}
	token, err := secret("TANDEM_NODE_TOKEN", *tokenFile)
	if err != nil {
		fmt.Fprintf(stderr, "tandem server: %v\n", err)
		return 1
	}
	if token == "" {
		fmt.Fprintln(stderr, "tandem server: node token required: set TANDEM_NODE_TOKEN or --node-token-file")
		return 2
	}
	logger := newLogger(stderr, "server", *name, *level)
	err = managed.Run(ctx, managed.Config{Name: *name, AdminURL: *admin, NodeToken: token, DataDir: *dataDir}, logger)
	if err != nil {
		logger.Error("tandem server failed", "err", err)
		return 1
	}
	return 0
}
