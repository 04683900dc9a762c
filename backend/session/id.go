package session

import "tandem/backend/route"

func newID() string { return route.NewID() }

// NewID returns a fresh 128-bit session id.
func NewID() string { return route.NewID() }
