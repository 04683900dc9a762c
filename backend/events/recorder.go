package events

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"tandem/backend/domain"
)

// Appender stores an event and assigns its ID (and Time if zero).
type Appender interface {
	AppendEvent(ctx context.Context, e domain.Event) (domain.Event, error)
}

// Pruner deletes old events.
type Pruner interface {
	// PruneEvents deletes events older than maxAge and all but the newest
	// maxCount (a zero limit is no limit), returning how many it deleted.
	PruneEvents(ctx context.Context, maxAge time.Duration, maxCount int) (int, error)
}

// Recorder stores events and then publishes them, so history and the live
// view agree. Record may be called concurrently: appends and publishes are
// serialised so the hub sees IDs in increasing order.
type Recorder struct {
	store Appender
	hub   *Hub
	mu    sync.Mutex
}

// NewRecorder returns a Recorder writing to store and publishing on hub.
func NewRecorder(store Appender, hub *Hub) *Recorder {
	return &Recorder{store: store, hub: hub}
}

// Record appends e to the store and publishes the stored event (with its
// ID). An event the store refused is not published.
func (r *Recorder) Record(ctx context.Context, e domain.Event) (domain.Event, error) {
	if e.Type == "" {
		return domain.Event{}, domain.Invalid("type", "must not be empty")
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	stored, err := r.store.AppendEvent(ctx, e)
	if err != nil {
		return domain.Event{}, fmt.Errorf("events: record %s: %w", e.Type, err)
	}
	r.hub.Publish(stored)
	return stored, nil
}

// Retention limits how many events are kept.
type Retention struct {
	MaxAge   time.Duration // delete events older than this; 0: no age limit
	MaxCount int           // keep at most this many; 0: no count limit
	Interval time.Duration // how often to prune; 0: every minute
}

// DefaultRetention keeps a week and at most 100000 events.
var DefaultRetention = Retention{MaxAge: 7 * 24 * time.Hour, MaxCount: 100000, Interval: time.Minute}

// RunRetention prunes p once at start and then every r.Interval until ctx
// ends, when it returns nil. Failures are logged and retried next time.
func RunRetention(ctx context.Context, p Pruner, r Retention, logger *slog.Logger) error {
	if logger == nil {
		logger = slog.Default()
	}
	if r.Interval <= 0 {
		r.Interval = time.Minute
	}
	if r.MaxAge <= 0 && r.MaxCount <= 0 {
		<-ctx.Done()
		return nil
	}
	t := time.NewTicker(r.Interval)
	defer t.Stop()
	for {
		n, err := p.PruneEvents(ctx, r.MaxAge, r.MaxCount)
		switch {
		case err != nil && !errors.Is(err, context.Canceled):
			logger.Warn("events: prune failed", "err", err)
		case n > 0:
			logger.Info("events: pruned", "deleted", n, "max_age", r.MaxAge, "max_count", r.MaxCount)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}
