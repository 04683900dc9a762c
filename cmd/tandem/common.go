package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
)

// newLogger returns the process logger: text to stderr, tagged with the
// role and node name so the logs of several processes can be told apart.
func newLogger(stderr io.Writer, role, name, level string) *slog.Logger {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(level)); err != nil {
		lvl = slog.LevelInfo
	}
	h := slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: lvl})
	l := slog.New(h).With("role", role)
	if name != "" {
		l = l.With("name", name)
	}
	return l
}

// secret reads a secret from the environment variable env, or from the file
// named by flagFile (a flag value) or by env+"_FILE". Secrets never come
// from a flag value itself: flags show in ps.
func secret(env, flagFile string) (string, error) {
	if v := os.Getenv(env); v != "" {
		return strings.TrimSpace(v), nil
	}
	file := flagFile
	if file == "" {
		file = os.Getenv(env + "_FILE")
	}
	if file == "" {
		return "", nil
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return "", fmt.Errorf("read secret file: %w", err)
	}
	return strings.TrimSpace(string(b)), nil
}

// parseFlags parses args with fs, printing errors to stderr. It returns the
// exit code to use when parsing ended the command (help or error).
func parseFlags(fs *flag.FlagSet, args []string, stderr io.Writer) (int, bool) {
	fs.SetOutput(stderr)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0, false
		}
		return 2, false
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "%s: unexpected argument %q\n", fs.Name(), fs.Arg(0))
		return 2, false
	}
	return 0, true
}
