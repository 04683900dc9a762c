package main

import (
	"context"
	"flag"
	"fmt"
	"io"

	"tandem/backend/agent"
	"tandem/backend/domain"
	"tandem/backend/nodemanager"
	"tandem/backend/supervise"
)

func runNodeManager(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("tandem nodemanager", flag.ContinueOnError)
	def := supervise.DefaultPolicy()
	var cfg nodemanager.Config
	var tokenFile, level string
	fs.StringVar(&cfg.Name, "name", "", "node manager name as defined in the admin server (required)")
	fs.StringVar(&cfg.AdminURL, "admin", "http://127.0.0.1:9736", "admin server base URL")
	fs.StringVar(&cfg.DataDir, "data-dir", "./nodemanager-data", "data folder: pid files, each process's folder and log")
	fs.StringVar(&cfg.Listen, "listen", "127.0.0.1:9740", "host:port for /healthz and /metrics (empty: none)")
	fs.StringVar(&tokenFile, "node-token-file", "", "file holding the node token (else TANDEM_NODE_TOKEN)")
	pin := fs.String("ca-fingerprint", "", "the domain CA's fingerprint for an https --admin (else TANDEM_CA_FINGERPRINT); passed on to the processes it starts")
	fs.StringVar(&cfg.Advertise, "advertise", "", "this machine's host (IP or name) as the other machines reach it; passed to the managed servers it starts (their --advertise)")
	fs.StringVar(&level, "log-level", "info", "log level: debug, info, warn, error")
	fs.IntVar(&cfg.Policy.MaxRestarts, "restart-max", def.MaxRestarts, "automatic restarts of a crashed process allowed within --restart-interval (0: none)")
	fs.DurationVar(&cfg.Policy.Interval, "restart-interval", def.Interval, "window --restart-max counts in")
	fs.DurationVar(&cfg.Policy.Delay, "restart-delay", def.Delay, "wait before the first automatic restart; doubles with each further one")
	fs.DurationVar(&cfg.Policy.MaxDelay, "restart-max-delay", def.MaxDelay, "cap of the restart backoff")
	fs.DurationVar(&cfg.StopTimeout, "stop-timeout", 0, "graceful stop before SIGKILL (default 30s)")
	fs.Int64Var(&cfg.LogMaxBytes, "log-max-bytes", 10<<20, "rotate a process's log at this size")
	fs.IntVar(&cfg.LogKeep, "log-keep", 3, "rotated logs kept per process")
	fs.BoolVar(&cfg.StopProcessesOnExit, "stop-processes-on-exit", false, "stop the supervised processes when the node manager stops (default: leave them running for the next node manager to re-adopt)")
	if code, ok := parseFlags(fs, args, stderr); !ok {
		return code
	}
	if cfg.Name == "" {
		fmt.Fprintln(stderr, "tandem nodemanager: --name is required")
		return 2
	}
	if err := cfg.Policy.Validate(); err != nil {
		fmt.Fprintf(stderr, "tandem nodemanager: %v\n", err)
		return 2
	}
	tok, err := secret("TANDEM_NODE_TOKEN", tokenFile)
	if err != nil {
		fmt.Fprintf(stderr, "tandem nodemanager: %v\n", err)
		return 2
	}
	cfg.NodeToken = tok
	cfg.CAFingerprint = agent.PinFrom(*pin)
	if cfg.Advertise != "" && !domain.ValidHost(cfg.Advertise) {
		fmt.Fprintf(stderr, "tandem nodemanager: --advertise %q: want an IP address or a host name\n", cfg.Advertise)
		return 2
	}
	logger := newLogger(stderr, "nodemanager", cfg.Name, level)
	if err := nodemanager.Run(ctx, cfg, logger); err != nil {
		logger.Error("node manager ended", "err", err)
		return 1
	}
	return 0
}
