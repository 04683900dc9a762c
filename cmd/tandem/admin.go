package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"time"

	"tandem/backend/admin"
	"tandem/backend/artifacts"
	"tandem/backend/series"
	"tandem/backend/store"
)

// runAdmin runs `tandem admin`. Secrets come from the environment
// (TANDEM_ADMIN_TOKEN, TANDEM_NODE_TOKEN) or the files named by
// TANDEM_ADMIN_TOKEN_FILE / TANDEM_NODE_TOKEN_FILE, never from flags.
func runAdmin(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 {
		switch args[0] {
		case "backup":
			return runAdminBackup(ctx, args[1:], stdout, stderr)
		case "restore":
			return runAdminRestore(ctx, args[1:], stdout, stderr)
		}
	}
	fs := flag.NewFlagSet("tandem admin", flag.ContinueOnError)
	listen := fs.String("listen", admin.DefaultListen, "address of the console, REST API and control channel (host:port)")
	dataDir := fs.String("data-dir", "./data", "data folder: tandem.db and node.token")
	logLevel := fs.String("log-level", "info", "log level: debug, info, warn, error")
	maxArtifact := fs.Int64("max-artifact-bytes", artifacts.DefaultMaxBytes, "largest application version archive (.tar.gz) accepted, in bytes")
	origins := fs.String("trusted-origins", "", "comma-separated origins allowed to send cookie-authenticated writes besides the server's own (console behind a proxy)")
	backupEvery := fs.Duration("backup-every", 0, "write an online backup of the domain database to DATA_DIR/backups this often (0: off)")
	backupKeep := fs.Int("backup-keep", admin.DefaultBackupKeep, "how many periodic backups to keep")
	plainHTTP := fs.Bool("plain-http", false, "serve plain HTTP instead of HTTPS (loopback or a trusted network only: nodes then authenticate with the node token alone)")
	tlsCert := fs.String("tls-cert", "", "PEM certificate (chain) of the console, API and control channel; empty: one issued by the domain CA")
	tlsKey := fs.String("tls-key", "", "PEM private key of --tls-cert")
	certLife := fs.Duration("node-cert-lifetime", 0, "how long a node's certificate lasts (it renews at two thirds); 0: 30 days")
	historyEvery := fs.Duration("history-every", series.DefaultEvery, "how often each server's state and load is sampled for the history charts")
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
		BackupEvery:      *backupEvery,
		BackupKeep:       *backupKeep,
		HistoryEvery:     *historyEvery,
		PlainHTTP:        *plainHTTP,
		TLSCert:          *tlsCert,
		TLSKey:           *tlsKey,
		NodeCertLifetime: *certLife,
	}
	if *certLife < 0 || *certLife > 0 && *certLife < 10*time.Second {
		fmt.Fprintln(stderr, "tandem admin: --node-cert-lifetime must be at least 10s")
		return 2
	}
	if *historyEvery < 100*time.Millisecond {
		fmt.Fprintln(stderr, "tandem admin: --history-every must be at least 100ms")
		return 2
	}
	if *backupEvery < 0 || *backupKeep < 1 {
		fmt.Fprintln(stderr, "tandem admin: --backup-every must not be negative and --backup-keep must be at least 1")
		return 2
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

// runAdminBackup runs `tandem admin backup`: an online, consistent copy of
// the domain database, taken while the admin server runs.
func runAdminBackup(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("tandem admin backup", flag.ContinueOnError)
	dataDir := fs.String("data-dir", "./data", "the admin server's data folder")
	to := fs.String("to", "", "backup file to write (required)")
	if code, ok := parseFlags(fs, args, stderr); !ok {
		return code
	}
	if *to == "" {
		fmt.Fprintln(stderr, "tandem admin backup: --to FILE is required")
		return 2
	}
	start := time.Now()
	if err := store.Backup(ctx, filepath.Join(*dataDir, admin.DBFile), *to); err != nil {
		fmt.Fprintf(stderr, "tandem admin backup: %v\n", err)
		return 1
	}
	fmt.Fprintf(stdout, "backup of %s written to %s in %s\n", filepath.Join(*dataDir, admin.DBFile), *to, time.Since(start).Round(time.Millisecond))
	return 0
}

// runAdminRestore runs `tandem admin restore`: the data folder's database
// is replaced by a checked backup; refused while the admin server runs.
func runAdminRestore(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("tandem admin restore", flag.ContinueOnError)
	dataDir := fs.String("data-dir", "./data", "the admin server's data folder (the admin server must be stopped)")
	from := fs.String("from", "", "backup file to restore (required)")
	if code, ok := parseFlags(fs, args, stderr); !ok {
		return code
	}
	if *from == "" {
		fmt.Fprintln(stderr, "tandem admin restore: --from FILE is required")
		return 2
	}
	kept, err := admin.Restore(ctx, *dataDir, *from)
	if err != nil {
		fmt.Fprintf(stderr, "tandem admin restore: %v\n", err)
		return 1
	}
	fmt.Fprintf(stdout, "restored %s from %s", filepath.Join(*dataDir, admin.DBFile), *from)
	if kept != "" {
		fmt.Fprintf(stdout, "; the replaced database is kept as %s", kept)
	}
	fmt.Fprintln(stdout)
	return 0
}
