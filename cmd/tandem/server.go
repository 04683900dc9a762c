package main

import (
	"context"
	"fmt"
	"io"
)

func runServer(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fmt.Fprintln(stderr, "tandem server: not implemented yet")
	return 1
}
