package main

import (
	"context"
	"io"

	"tandem/backend/sampleapp"
	"tandem/sdk"
)

// runServer is `tandem server`: the sdk's managed server with the built-in
// sample app as its embedded application.
func runServer(ctx context.Context, args []string, _, stderr io.Writer) int {
	return sdk.Serve(ctx, args, stderr, sampleapp.Mount, "")
}
