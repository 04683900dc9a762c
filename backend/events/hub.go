// Package events records domain events and fans them out live.
//
// A Recorder appends each event to the store (which assigns its ID) and then
// publishes it on a Hub, so the history in SQLite and the live view agree.
// The Hub gives every subscriber a bounded buffer; publishers never block,
// and a subscriber that cannot keep up is dropped: its stream is closed with
// WebSocket status 1008 (policy violation) and a reason naming the last ID it
// was sent, so the client resumes with ?since=ID and loses nothing.
package events

import (
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"tandem/backend/domain"
)

// Defaults for HubConfig fields left zero.
const (
	DefaultBuffer            = 256
	DefaultWriteTimeout      = 10 * time.Second
	DefaultPingInterval      = 15 * time.Second
	DefaultPongTimeout       = 30 * time.Second
	DefaultHeartbeatInterval = 15 * time.Second
	DefaultReplayPage        = 500
)

// HubConfig configures a Hub. Zero fields take the defaults above.
type HubConfig struct {
	// Log answers replay queries for streams opened with since > 0. It may
	// be nil, in which case ServeStream only goes live.
	Log EventLog
	// Buffer is the number of events a subscriber may fall behind before it
	// is dropped.
	Buffer int
	// WriteTimeout bounds each WebSocket write.
	WriteTimeout time.Duration
	// PingInterval is the period of WebSocket pings on every stream.
	PingInterval time.Duration
	// PongTimeout is how long a ping may wait for its pong (which queues
	// behind every frame the client has not read yet).
	PongTimeout time.Duration
	// HeartbeatInterval is how long a stream may stay quiet before a
	// heartbeat frame is sent.
	HeartbeatInterval time.Duration
	// ReplayPage is the page size of replay queries.
	ReplayPage int
	// OriginPatterns are extra origins allowed to open a stream from a
	// browser; the request's own host is always allowed.
	OriginPatterns []string
	// Logger receives stream diagnostics; nil means slog.Default().
	Logger *slog.Logger
}

// Stats are counters of a Hub.
type Stats struct {
	Subscribers int    // current subscriptions
	Published   uint64 // events published
	Dropped     uint64 // subscriptions dropped for being too slow
}

// Hub fans events out to subscribers. All methods may be called
// concurrently. Publish never blocks. Close ends every stream.
type Hub struct {
	cfg HubConfig
	log *slog.Logger

	mu     sync.RWMutex
	subs   map[*Subscription]struct{}
	closed bool
	done   chan struct{}

	lastID    atomic.Int64
	published atomic.Uint64
	dropped   atomic.Uint64
}

// NewHub returns a Hub with cfg (defaults filled in).
func NewHub(cfg HubConfig) *Hub {
	if cfg.Buffer <= 0 {
		cfg.Buffer = DefaultBuffer
	}
	if cfg.WriteTimeout <= 0 {
		cfg.WriteTimeout = DefaultWriteTimeout
	}
	if cfg.PingInterval <= 0 {
		cfg.PingInterval = DefaultPingInterval
	}
	if cfg.PongTimeout <= 0 {
		cfg.PongTimeout = DefaultPongTimeout
	}
	if cfg.HeartbeatInterval <= 0 {
		cfg.HeartbeatInterval = DefaultHeartbeatInterval
	}
	if cfg.ReplayPage <= 0 {
		cfg.ReplayPage = DefaultReplayPage
	}
	lg := cfg.Logger
	if lg == nil {
		lg = slog.Default()
	}
	return &Hub{cfg: cfg, log: lg, subs: make(map[*Subscription]struct{}), done: make(chan struct{})}
}

// Subscription receives the events that match its filter. Its channel C is
// never closed (only the hub writes to it); watch Dropped and Done instead.
type Subscription struct {
	hub     *Hub
	filter  domain.EventFilter
	ch      chan domain.Event
	dropped chan struct{}
	once    sync.Once
}

// C delivers matching events in publish order.
func (s *Subscription) C() <-chan domain.Event { return s.ch }

// Dropped is closed when the subscriber fell more than the buffer behind.
// Events already in C are still valid; later ones were not delivered.
func (s *Subscription) Dropped() <-chan struct{} { return s.dropped }

// Close unsubscribes. It is idempotent.
func (s *Subscription) Close() {
	s.hub.mu.Lock()
	delete(s.hub.subs, s)
	s.hub.mu.Unlock()
}

// Subscribe registers a subscriber for events matching f (IDs and limit in f
// are ignored). The caller must Close it.
func (h *Hub) Subscribe(f domain.EventFilter) *Subscription {
	s := &Subscription{hub: h, filter: f, ch: make(chan domain.Event, h.cfg.Buffer), dropped: make(chan struct{})}
	h.mu.Lock()
	if !h.closed {
		h.subs[s] = struct{}{}
	}
	h.mu.Unlock()
	return s
}

// Publish hands e to every matching subscriber without blocking. A
// subscriber whose buffer is full is dropped. Callers that need delivery in
// ID order must publish in ID order (the Recorder does).
func (h *Hub) Publish(e domain.Event) {
	h.published.Add(1)
	for {
		old := h.lastID.Load()
		if e.ID <= old || h.lastID.CompareAndSwap(old, e.ID) {
			break
		}
	}
	var slow []*Subscription
	h.mu.RLock()
	for s := range h.subs {
		if !s.filter.Match(e) {
			continue
		}
		select {
		case s.ch <- e:
		default:
			slow = append(slow, s)
		}
	}
	h.mu.RUnlock()
	for _, s := range slow {
		s.drop()
	}
}

func (s *Subscription) drop() {
	s.once.Do(func() {
		s.hub.dropped.Add(1)
		close(s.dropped)
		s.Close()
	})
}

// LastID returns the highest event ID published so far (0 if none).
func (h *Hub) LastID() int64 { return h.lastID.Load() }

// Stats returns the hub's counters.
func (h *Hub) Stats() Stats {
	h.mu.RLock()
	n := len(h.subs)
	h.mu.RUnlock()
	return Stats{Subscribers: n, Published: h.published.Load(), Dropped: h.dropped.Load()}
}

// Close ends every stream (status 1001, going away) and refuses new
// subscriptions. It is idempotent; Publish after Close is a no-op for
// delivery.
func (h *Hub) Close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return
	}
	h.closed = true
	close(h.done)
	clear(h.subs)
}
