// Package migrations holds Tandem's versioned SQL schema (goose files,
// NNN_name.sql), embedded so the binary carries its own schema. Migrations
// are append-only: never edit a released file, add a new one.
package migrations

import "embed"

// FS holds every migration file.
//
//go:embed *.sql
var FS embed.FS
