// Package session is Tandem's HTTP session manager: an http.Handler
// middleware that gives any Go application a session (typed attributes,
// cookie or URL tracking, idle timeout, max sessions) kept by a Store. The
// local MemStore keeps sessions in this process only; the replication
// package's Node keeps them on a primary and one backup server.
//
// Concurrency: a request holds its session exclusively (the Store locks it
// from Get/New until Commit or Abort), so handlers need no locking of their
// own. A *Session must not be used after its request ended.
package session

import (
	"context"
	"errors"
	"sort"
	"strings"
)

// Attribute kinds.
const (
	KindString byte = 1
	KindInt    byte = 2
	KindBytes  byte = 3
)

// Value is one typed attribute value. Bytes are kept in S.
type Value struct {
	Kind byte
	S    string
	I    int64
}

// Record is the stored form of a session, the unit of replication. Epoch
// grows on every ownership change, Version on every write; a copy with a
// larger (Epoch, Version) is newer.
type Record struct {
	ID      string
	Home    string // server that created it (failback target)
	Owner   string // server that serves it (primary)
	Backup  string // server holding its copy; empty if none
	Epoch   uint64
	Version uint64
	Created int64 // unix ms
	Access  int64 // unix ms of the last request
	Attrs   map[string]Value
}

// Clone returns a deep copy of r.
func (r *Record) Clone() *Record {
	c := *r
	c.Attrs = make(map[string]Value, len(r.Attrs))
	for k, v := range r.Attrs {
		c.Attrs[k] = v
	}
	return &c
}

// Newer reports whether (epoch, version) a is after b.
func Newer(aEpoch, aVersion, bEpoch, bVersion uint64) bool {
	if aEpoch != bEpoch {
		return aEpoch > bEpoch
	}
	return aVersion > bVersion
}

// Errors a Store returns.
var (
	// ErrNotFound means no live server holds the session.
	ErrNotFound = errors.New("session: not found")
	// ErrTooManySessions means the server is at max_sessions.
	ErrTooManySessions = errors.New("session: too many sessions")
	// ErrUnavailable means the session exists but cannot be served now
	// (its owner is unreachable but not known dead, or a lease is missing).
	ErrUnavailable = errors.New("session: temporarily unavailable")
	// ErrDraining means the server is stopping and takes no new sessions.
	ErrDraining = errors.New("session: server is stopping")
)

// ForwardError tells the middleware to forward the request to the server
// that owns the session.
type ForwardError struct {
	Server string
	Addr   string // host:port
}

func (e *ForwardError) Error() string { return "session: owned by " + e.Server }

// Result is what a commit reports back to the middleware.
type Result struct {
	Primary  string // route of the owner (this server)
	Backup   string // route of the backup; empty if none
	Degraded bool   // the write is held by this server only
}

// Txn is one request's exclusive hold on a session.
type Txn interface {
	// Record is the session's data; the middleware may change Attrs.
	Record() *Record
	// Commit stores the record (bumping Version when changed) and
	// replicates it as the store's mode says. A *ForwardError means the
	// session moved meanwhile (the write may or may not be in the new
	// owner's copy): the request is answered 503, never redone there.
	Commit(ctx context.Context, changed bool) (Result, error)
	// Abort releases the session unchanged.
	Abort()
	// Routes are the owner's and backup's routes before the commit.
	Routes() (primary, backup string)
}

// Store keeps sessions.
type Store interface {
	// Get opens session v.ID for a request. forwarded is true when a peer
	// already forwarded the request (the store must not forward again).
	Get(ctx context.Context, v Lookup) (Txn, error)
	// New creates a session owned by this server.
	New(ctx context.Context, maxSessions int) (Txn, error)
}

// Lookup names a session as a request carried it.
type Lookup struct {
	ID        string
	Primary   string // route from the cookie, may be empty
	Backup    string // route from the cookie, may be empty
	Forwarded bool   // the request was forwarded by a peer
}

// Session is a request's view of its session, with typed attributes. Only
// calls that change something mark it for a version bump.
type Session struct {
	rec       *Record
	changed   bool
	invalid   bool
	isNew     bool
	committed bool // stored early: the answer is streaming
	max       int  // max_session_bytes; 0: no limit
	encode    func(string) string
}

type ctxKey struct{}

// FromContext returns the request's session, or nil outside the middleware.
func FromContext(ctx context.Context) *Session {
	s, _ := ctx.Value(ctxKey{}).(*Session)
	return s
}

// ID is the session id (32 hex digits).
func (s *Session) ID() string { return s.rec.ID }

// IsNew reports whether the session was created by this request.
func (s *Session) IsNew() bool { return s.isNew }

// Version is the stored version before this request's changes.
func (s *Session) Version() uint64 { return s.rec.Version }

// String returns a string attribute.
func (s *Session) String(key string) (string, bool) {
	v, ok := s.rec.Attrs[key]
	if !ok || v.Kind != KindString {
		return "", false
	}
	return v.S, true
}

// Int returns an integer attribute (0, false when absent or not an int).
func (s *Session) Int(key string) (int64, bool) {
	v, ok := s.rec.Attrs[key]
	if !ok || v.Kind != KindInt {
		return 0, false
	}
	return v.I, true
}

// Bytes returns a copy of a byte attribute.
func (s *Session) Bytes(key string) ([]byte, bool) {
	v, ok := s.rec.Attrs[key]
	if !ok || v.Kind != KindBytes {
		return nil, false
	}
	return []byte(v.S), true
}

func (s *Session) set(key string, v Value) {
	if s.committed {
		return // stored already: changes after the answer started are not kept
	}
	if old, ok := s.rec.Attrs[key]; ok && old == v {
		return
	}
	s.rec.Attrs[key] = v
	s.changed = true
}

// SetString sets a string attribute.
func (s *Session) SetString(key, v string) { s.set(key, Value{Kind: KindString, S: v}) }

// SetInt sets an integer attribute.
func (s *Session) SetInt(key string, v int64) { s.set(key, Value{Kind: KindInt, I: v}) }

// SetBytes sets a byte attribute (copied).
func (s *Session) SetBytes(key string, v []byte) { s.set(key, Value{Kind: KindBytes, S: string(v)}) }

// Delete removes an attribute.
func (s *Session) Delete(key string) {
	if s.committed {
		return
	}
	if _, ok := s.rec.Attrs[key]; ok {
		delete(s.rec.Attrs, key)
		s.changed = true
	}
}

// Keys lists the attribute names, sorted.
func (s *Session) Keys() []string {
	keys := make([]string, 0, len(s.rec.Attrs))
	for k := range s.rec.Attrs {
		if !strings.HasPrefix(k, reservedPrefix) { // reserved for the middleware
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	return keys
}

// Committed reports whether the session was stored already because the
// answer started streaming (a Flush, or a body over the buffer): later
// changes are not kept.
func (s *Session) Committed() bool { return s.committed }

// Invalidate ends the session: its attributes are cleared now and the
// next request starts a new one.
func (s *Session) Invalidate() {
	if s.committed {
		return
	}
	s.invalid = true
	if len(s.rec.Attrs) > 0 {
		s.rec.Attrs = map[string]Value{}
	}
	s.changed = true
}

// EncodeURL adds the session to a URL path when the tracking mode is URL
// rewriting; otherwise it returns path unchanged.
func (s *Session) EncodeURL(path string) string {
	if s.encode == nil {
		return path
	}
	return s.encode(path)
}
