// Package static holds assets served as-is by the console under /static/
// (icons and other files that need no processing).
package static

import "embed"

// FS holds the files of this folder (Go files excluded).
//
//go:embed *.svg
var FS embed.FS
