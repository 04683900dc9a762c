// Command tandem is the single binary of Tandem: admin server, managed
// server, web server, node manager and the one-command demo.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"syscall"
)

// subcommand runs one role with its arguments and returns the exit code.
type subcommand struct {
	summary string
	run     func(ctx context.Context, args []string, stdout, stderr io.Writer) int
}

var subcommands = map[string]subcommand{
	"admin":       {"run the admin server (console, REST API, control channel, SQLite store); `tandem admin backup|restore` for the domain database", runAdmin},
	"server":      {"run a managed server (sample app, session manager, replication, agent)", runServer},
	"webserver":   {"run a web server that routes by session cookie", runWebServer},
	"nodemanager": {"run a node manager that supervises server processes", runNodeManager},
	"demo":        {"run a whole domain on loopback: admin, node manager, 4 servers, 1 web server", runDemo},
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run does everything main does except exiting, so it can be tested.
func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(stderr)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	sc, ok := subcommands[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "tandem: unknown command %q\n\n", args[0])
		usage(stderr)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return sc.run(ctx, args[1:], stdout, stderr)
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: tandem <command> [flags]\n\ncommands:")
	names := make([]string, 0, len(subcommands))
	for n := range subcommands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-12s %s\n", n, subcommands[n].summary)
	}
	fmt.Fprintln(w, "\nrun 'tandem <command> -h' for its flags")
}
