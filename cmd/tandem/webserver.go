package main

import (
	"context"
	"fmt"
	"io"
)

func runWebServer(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fmt.Fprintln(stderr, "tandem webserver: not implemented yet")
	return 1
}
