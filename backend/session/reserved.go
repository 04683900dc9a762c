package session

import "strings"

// Reserved reports whether an attribute name is one the middleware keeps
// for itself (the last replies for retried requests), not the application's.
func Reserved(name string) bool { return strings.HasPrefix(name, reservedPrefix) }
