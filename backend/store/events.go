package store

import (
	"context"
	"fmt"
	"time"

	"gorm.io/gorm"

	"tandem/backend/domain"
)

// AppendEvent stores e, assigning its ID (and Time when zero), and returns it.
func (s *Store) AppendEvent(ctx context.Context, e domain.Event) (domain.Event, error) {
	if e.Time.IsZero() {
		e.Time = s.nowUTC()
	}
	e.Time = e.Time.UTC()
	row := eventRow{Time: e.Time, Type: e.Type, Cluster: e.Cluster, Server: e.Server, Peer: e.Peer, Sessions: e.Sessions, Message: e.Message}
	err := s.write(ctx, func(db *gorm.DB) error {
		if err := db.Create(&row).Error; err != nil {
			return fmt.Errorf("store: append event %s: %w", e.Type, err)
		}
		return nil
	})
	if err != nil {
		return domain.Event{}, err
	}
	e.ID = row.ID
	return e, nil
}

// Events returns events matching f, always in ascending ID order. With
// f.AfterID > 0 it pages forward: the oldest f.Limit events after AfterID.
// Otherwise it returns the newest f.Limit events (below f.BeforeID when
// set). Limit 0 means no limit.
func (s *Store) Events(ctx context.Context, f domain.EventFilter) ([]domain.Event, error) {
	q := s.read(ctx).Model(&eventRow{})
	if f.AfterID > 0 {
		q = q.Where("id > ?", f.AfterID)
	}
	if f.BeforeID > 0 {
		q = q.Where("id < ?", f.BeforeID)
	}
	if len(f.Types) > 0 {
		q = q.Where("type IN ?", f.Types)
	}
	if f.Cluster != "" {
		q = q.Where("cluster = ?", f.Cluster)
	}
	if f.Server != "" {
		q = q.Where("(server = ? OR peer = ?)", f.Server, f.Server)
	}
	forward := f.AfterID > 0
	if forward {
		q = q.Order("id ASC")
	} else {
		q = q.Order("id DESC")
	}
	if f.Limit > 0 {
		q = q.Limit(f.Limit)
	}
	var rows []eventRow
	if err := q.Find(&rows).Error; err != nil {
		return nil, fmt.Errorf("store: list events: %w", err)
	}
	out := make([]domain.Event, len(rows))
	for i, r := range rows {
		j := i
		if !forward {
			j = len(rows) - 1 - i
		}
		out[j] = r.event()
	}
	return out, nil
}

// PruneEvents deletes events older than maxAge (0: no age bound) and all but
// the newest maxCount (0: no count bound); it returns how many went.
func (s *Store) PruneEvents(ctx context.Context, maxAge time.Duration, maxCount int) (int, error) {
	var total int64
	err := s.write(ctx, func(db *gorm.DB) error {
		if maxAge > 0 {
			r := db.Delete(&eventRow{}, "time < ?", s.nowUTC().Add(-maxAge))
			if r.Error != nil {
				return fmt.Errorf("store: prune events by age: %w", r.Error)
			}
			total += r.RowsAffected
		}
		if maxCount > 0 {
			r := db.Exec("DELETE FROM events WHERE id <= (SELECT id FROM events ORDER BY id DESC LIMIT 1 OFFSET ?)", maxCount)
			if r.Error != nil {
				return fmt.Errorf("store: prune events by count: %w", r.Error)
			}
			total += r.RowsAffected
		}
		return nil
	})
	return int(total), err
}
