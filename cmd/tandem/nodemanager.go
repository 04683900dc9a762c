package main

import (
	"context"
	"fmt"
	"io"
)

func runNodeManager(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fmt.Fprintln(stderr, "tandem nodemanager: not implemented yet")
	return 1
}
