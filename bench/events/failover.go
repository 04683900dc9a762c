package main

import (
	"context"
	"errors"
)

// benchFailover measures SIGKILL → failover event latency. It needs the
// admin server and managed servers; see BENCHMARKS.md.
func benchFailover(ctx context.Context, kills int) error {
	return errors.New("failover latency: not implemented yet")
}
