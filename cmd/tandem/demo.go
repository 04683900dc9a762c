package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strings"

	"tandem/backend/demo"
)

func runDemo(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("tandem demo", flag.ContinueOnError)
	var cfg demo.Config
	var level string
	fs.StringVar(&cfg.DataDir, "data-dir", "./tandem-demo", "data folder (reused by the next run)")
	fs.IntVar(&cfg.PortBase, "port-base", 0, "move every port: admin N, web server N+1, node manager N+4, ms1..ms4 N+5..N+8 (default: admin 9736, web server 8080, node manager 9740, servers 9741..9744)")
	fs.StringVar(&level, "log-level", "info", "log level: debug, info, warn, error")
	app := fs.String("app", "", `the cluster's application as a command line, e.g. "python3 examples/cart-python/app.py" (default: the built-in sample app)`)
	fs.StringVar(&cfg.AppKind, "app-kind", "process", "process (any language, proxied by the servers) or go (a binary built with the sdk package)")
	fs.StringVar(&cfg.AppHealth, "app-health", "/healthz", "the application's health path")
	if code, ok := parseFlags(fs, args, stderr); !ok {
		return code
	}
	cfg.App = strings.Fields(*app)
	cfg.Stdout = stdout
	logger := newLogger(stderr, "demo", "", level)
	if err := demo.Run(ctx, cfg, logger); err != nil {
		fmt.Fprintf(stderr, "tandem demo: %v\n", err)
		return 1
	}
	return 0
}
