// Package domain holds Tandem's domain types (clusters, servers, session
// configuration, events), their I/O-free validation and the sentinel errors
// every other package maps to statuses or codes.
package domain

import (
	"errors"
	"fmt"
)

// Sentinel errors. Match them with errors.Is; the API maps them to statuses.
var (
	// ErrNotFound means the named resource does not exist (404).
	ErrNotFound = errors.New("not found")
	// ErrConflict means the change collides with existing state (409).
	ErrConflict = errors.New("conflict")
	// ErrUnauthorized means no or an unknown credential (401).
	ErrUnauthorized = errors.New("unauthorized")
	// ErrForbidden means the credential's role may not do this (403).
	ErrForbidden = errors.New("forbidden")
	// ErrUnavailable means a dependency (node, node manager) cannot be reached (503).
	ErrUnavailable = errors.New("unavailable")
)

// InvalidError reports bad input and names the offending field (422).
type InvalidError struct {
	Field   string
	Message string
}

func (e *InvalidError) Error() string {
	if e.Field == "" {
		return "invalid: " + e.Message
	}
	return fmt.Sprintf("invalid %s: %s", e.Field, e.Message)
}

// Invalid returns an *InvalidError for field with a formatted message.
func Invalid(field, format string, args ...any) error {
	return &InvalidError{Field: field, Message: fmt.Sprintf(format, args...)}
}

// ConflictError is an ErrConflict that names the field and says why.
type ConflictError struct {
	Field   string
	Message string
}

func (e *ConflictError) Error() string { return "conflict: " + e.Message }

// Unwrap makes errors.Is(err, ErrConflict) true.
func (e *ConflictError) Unwrap() error { return ErrConflict }

// Conflict returns a *ConflictError for field.
func Conflict(field, format string, args ...any) error {
	return &ConflictError{Field: field, Message: fmt.Sprintf(format, args...)}
}

// NotFoundError is an ErrNotFound that says what was missing.
type NotFoundError struct {
	Kind string // "cluster", "server", ...
	Name string
}

func (e *NotFoundError) Error() string { return fmt.Sprintf("%s %q not found", e.Kind, e.Name) }

// Unwrap makes errors.Is(err, ErrNotFound) true.
func (e *NotFoundError) Unwrap() error { return ErrNotFound }

// NotFound returns a *NotFoundError.
func NotFound(kind, name string) error { return &NotFoundError{Kind: kind, Name: name} }
