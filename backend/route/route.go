// Package route encodes and decodes the session cookie value that lets a web
// server route without shared state: the session id followed by the routes of
// the session's primary and backup servers, as WebLogic carries
// primary!secondary:
//
//	<id>!<primary>[!<backup>]
//
// id is 32 lower-case hex digits (128 random bits); routes match
// [a-z0-9][a-z0-9-]{0,15}. The same value appears in URL-rewriting mode as a
// path parameter: /path;jsessionid=<value>. Everything here is pure and
// fuzzed: a malformed value is an error, never a panic.
package route

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"strings"
)

// URLParam is the path parameter name used in URL-rewriting mode.
const URLParam = "jsessionid"

// MaxValueLen bounds an encoded value: 32 + 2*(1+16).
const MaxValueLen = 66

// ErrMalformed is returned for any value that is not a valid encoding.
var ErrMalformed = errors.New("route: malformed session value")

// Value is a decoded session cookie value.
type Value struct {
	ID      string // 32 hex digits
	Primary string // route of the server that owns the session
	Backup  string // route of the server holding its copy; may be empty
}

// NewID returns a fresh 128-bit random session id in hex.
func NewID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24+)
	return hex.EncodeToString(b[:])
}

// ValidID reports whether s is 32 lower-case hex digits.
func ValidID(s string) bool {
	if len(s) != 32 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// ValidRoute reports whether s matches [a-z0-9][a-z0-9-]{0,15}.
func ValidRoute(s string) bool {
	if len(s) == 0 || len(s) > 16 || s[0] == '-' {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c == '-') {
			return false
		}
	}
	return true
}

// String encodes v. It does not validate; use Parse on input from outside.
func (v Value) String() string {
	if v.Primary == "" {
		return v.ID
	}
	if v.Backup == "" {
		return v.ID + "!" + v.Primary
	}
	return v.ID + "!" + v.Primary + "!" + v.Backup
}

// Parse decodes s. A bare id (no routes) is accepted with empty routes, so a
// session survives a front tier that strips routes; anything else malformed
// is ErrMalformed.
func Parse(s string) (Value, error) {
	if len(s) > MaxValueLen {
		return Value{}, ErrMalformed
	}
	id, rest, hasRoutes := strings.Cut(s, "!")
	if !ValidID(id) {
		return Value{}, ErrMalformed
	}
	v := Value{ID: id}
	if !hasRoutes {
		return v, nil
	}
	primary, backup, hasBackup := strings.Cut(rest, "!")
	if !ValidRoute(primary) {
		return Value{}, ErrMalformed
	}
	v.Primary = primary
	if hasBackup {
		if backup != "" && (!ValidRoute(backup) || backup == primary) {
			return Value{}, ErrMalformed
		}
		v.Backup = backup
	}
	return v, nil
}

// FromPath finds a ;jsessionid= path parameter in an URL path. It returns the
// raw value, the path without the parameter, and whether one was present.
// The parameter ends at the next ';', '/' or the end of the path.
func FromPath(path string) (value, stripped string, ok bool) {
	const key = ";" + URLParam + "="
	i := strings.Index(path, key)
	if i < 0 {
		return "", path, false
	}
	rest := path[i+len(key):]
	end := strings.IndexAny(rest, ";/")
	if end < 0 {
		end = len(rest)
	}
	return rest[:end], path[:i] + rest[end:], true
}

// AddToPath returns path with ;jsessionid=value appended to its last segment,
// replacing one that is already there.
func AddToPath(path, value string) string {
	_, stripped, _ := FromPath(path)
	return stripped + ";" + URLParam + "=" + value
}
