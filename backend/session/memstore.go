package session

import (
	"context"
	"sync"
	"time"
)

// MemStore keeps sessions in this process only (shared=false, or an
// application without a cluster). Expired sessions are removed by Expire.
type MemStore struct {
	self    string // route written into cookies
	now     func() time.Time
	mu      sync.Mutex
	timeout time.Duration
	entries map[string]*memEntry
}

type memEntry struct {
	mu  sync.Mutex
	rec *Record
}

// NewMemStore returns an empty store; now may be nil (time.Now).
func NewMemStore(selfRoute string, timeout time.Duration, now func() time.Time) *MemStore {
	if now == nil {
		now = time.Now
	}
	return &MemStore{self: selfRoute, now: now, timeout: timeout, entries: map[string]*memEntry{}}
}

// SetTimeout changes the idle timeout.
func (m *MemStore) SetTimeout(d time.Duration) {
	m.mu.Lock()
	m.timeout = d
	m.mu.Unlock()
}

// Len is the number of sessions held.
func (m *MemStore) Len() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.entries)
}

// Get implements Store.
func (m *MemStore) Get(_ context.Context, l Lookup) (Txn, error) {
	m.mu.Lock()
	e, ok := m.entries[l.ID]
	timeout := m.timeout
	m.mu.Unlock()
	if !ok {
		return nil, ErrNotFound
	}
	e.mu.Lock()
	if e.rec == nil || Expired(e.rec.Access, timeout, m.now()) {
		e.mu.Unlock()
		m.remove(l.ID, e)
		return nil, ErrNotFound
	}
	return &memTxn{m: m, e: e, work: e.rec.Clone()}, nil
}

// New implements Store.
func (m *MemStore) New(_ context.Context, maxSessions int) (Txn, error) {
	now := m.now().UnixMilli()
	rec := &Record{ID: newID(), Home: m.self, Owner: m.self, Created: now, Access: now, Attrs: map[string]Value{}}
	e := &memEntry{}
	e.mu.Lock()
	m.mu.Lock()
	if maxSessions > 0 && len(m.entries) >= maxSessions {
		m.mu.Unlock()
		return nil, ErrTooManySessions
	}
	m.entries[rec.ID] = e
	m.mu.Unlock()
	return &memTxn{m: m, e: e, work: rec, isNew: true}, nil
}

func (m *MemStore) remove(id string, e *memEntry) {
	m.mu.Lock()
	if m.entries[id] == e {
		delete(m.entries, id)
	}
	m.mu.Unlock()
}

// Expire removes every session idle longer than the timeout and returns
// how many it removed.
func (m *MemStore) Expire() int {
	m.mu.Lock()
	timeout := m.timeout
	var ids []string
	var es []*memEntry
	for id, e := range m.entries {
		ids, es = append(ids, id), append(es, e)
	}
	m.mu.Unlock()
	n := 0
	now := m.now()
	for i, e := range es {
		if !e.mu.TryLock() {
			continue // in use, so not idle
		}
		if e.rec != nil && Expired(e.rec.Access, timeout, now) {
			e.rec = nil
			m.remove(ids[i], e)
			n++
		}
		e.mu.Unlock()
	}
	return n
}

// Expired reports whether a session last used at accessMS is past its idle
// timeout at now. A zero timeout never expires.
func Expired(accessMS int64, timeout time.Duration, now time.Time) bool {
	return timeout > 0 && now.UnixMilli()-accessMS >= timeout.Milliseconds()
}

type memTxn struct {
	m     *MemStore
	e     *memEntry
	work  *Record
	isNew bool
	done  bool
}

func (t *memTxn) Record() *Record                  { return t.work }
func (t *memTxn) Routes() (primary, backup string) { return t.m.self, "" }

func (t *memTxn) Commit(_ context.Context, changed bool) (Result, error) {
	if changed {
		t.work.Version++
	}
	t.work.Access = t.m.now().UnixMilli()
	t.e.rec = t.work
	t.finish()
	return Result{Primary: t.m.self}, nil
}

func (t *memTxn) Abort() {
	if t.isNew && !t.done {
		t.e.rec = nil
		t.m.remove(t.work.ID, t.e)
	}
	t.finish()
}

func (t *memTxn) finish() {
	if !t.done {
		t.done = true
		t.e.mu.Unlock()
	}
}
