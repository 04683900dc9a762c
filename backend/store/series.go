package store

import (
	"context"
	"fmt"
	"time"

	"gorm.io/gorm"

	"tandem/backend/domain"
)

// Series resolutions (series_samples.res).
const (
	resFull = 0
	resDown = 1
)

// DownsampleStep is the bucket of the downsampled history.
const DownsampleStep = 5 * time.Minute

// AppendSamples stores one round of samples (full resolution).
func (s *Store) AppendSamples(ctx context.Context, ss []domain.Sample) error {
	if len(ss) == 0 {
		return nil
	}
	return s.write(ctx, func(db *gorm.DB) error {
		for _, x := range ss {
			if err := db.Exec(`INSERT OR REPLACE INTO series_samples (res, server, at_ms, cluster, state, sessions, backup_sessions, rps, lag_ms, unprotected)
				VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`, resFull, x.Server, x.Time.UnixMilli(), x.Cluster, x.State, x.Sessions, x.BackupSessions, x.RPS, x.LagMS, x.Unprotected).Error; err != nil {
				return fmt.Errorf("store: append samples: %w", err)
			}
		}
		return nil
	})
}

// CompactSeries folds full-resolution samples older than keepFull into
// DownsampleStep averages (whole buckets only) and deletes downsampled
// ones older than keepDown. It returns how many rows it removed.
func (s *Store) CompactSeries(ctx context.Context, now time.Time, keepFull, keepDown time.Duration) (int64, error) {
	step := DownsampleStep.Milliseconds()
	cut := now.Add(-keepFull).UnixMilli() / step * step
	var removed int64
	err := s.write(ctx, func(db *gorm.DB) error {
		if err := db.Exec(`INSERT OR REPLACE INTO series_samples (res, server, at_ms, cluster, state, sessions, backup_sessions, rps, lag_ms, unprotected)
			SELECT ?, g.server, g.bucket, g.cluster,
			       (SELECT l.state FROM series_samples l WHERE l.res = ? AND l.server = g.server AND l.at_ms = g.last),
			       g.sessions, g.backup_sessions, g.rps, g.lag_ms, g.unprotected
			FROM (SELECT server, (at_ms / ?) * ? AS bucket, MAX(at_ms) AS last, MAX(cluster) AS cluster, AVG(sessions) AS sessions,
			             AVG(backup_sessions) AS backup_sessions, AVG(rps) AS rps, MAX(lag_ms) AS lag_ms, AVG(unprotected) AS unprotected
			      FROM series_samples WHERE res = ? AND at_ms < ? GROUP BY server, bucket) g`,
			resDown, resFull, step, step, resFull, cut).Error; err != nil {
			return fmt.Errorf("store: downsample: %w", err)
		}
		r := db.Exec(`DELETE FROM series_samples WHERE res = ? AND at_ms < ?`, resFull, cut)
		if r.Error != nil {
			return fmt.Errorf("store: prune samples: %w", r.Error)
		}
		removed += r.RowsAffected
		r = db.Exec(`DELETE FROM series_samples WHERE res = ? AND at_ms < ?`, resDown, now.Add(-keepDown).UnixMilli())
		if r.Error != nil {
			return fmt.Errorf("store: prune downsampled: %w", r.Error)
		}
		removed += r.RowsAffected
		return nil
	})
	return removed, err
}

// Samples returns the history q selects, per server, averaged over
// q.Step (at least the resolution stored), oldest first.
func (s *Store) Samples(ctx context.Context, q domain.SeriesQuery) (map[string][]domain.Sample, error) {
	step := max(q.Step.Milliseconds(), 1)
	// A bucket's state is its last sample's.
	where := `at_ms >= ? AND at_ms <= ?`
	args := []any{step, step, q.From.UnixMilli(), q.To.UnixMilli()}
	if q.Cluster != "" {
		where += ` AND cluster = ?`
		args = append(args, q.Cluster)
	}
	if q.Server != "" {
		where += ` AND server = ?`
		args = append(args, q.Server)
	}
	sql := `SELECT g.server, g.bucket, g.last, g.cluster,
		       (SELECT l.state FROM series_samples l WHERE l.server = g.server AND l.at_ms = g.last ORDER BY l.res LIMIT 1),
		       g.sessions, g.backup_sessions, g.rps, g.lag_ms, g.unprotected
		FROM (SELECT server, (at_ms / ?) * ? AS bucket, MAX(at_ms) AS last, MAX(cluster) AS cluster, AVG(sessions) AS sessions,
		             AVG(backup_sessions) AS backup_sessions, AVG(rps) AS rps, MAX(lag_ms) AS lag_ms, AVG(unprotected) AS unprotected
		      FROM series_samples WHERE ` + where + ` GROUP BY server, bucket) g
		ORDER BY g.server, g.bucket`
	rows, err := s.read(ctx).Raw(sql, args...).Rows()
	if err != nil {
		return nil, fmt.Errorf("store: samples: %w", err)
	}
	defer rows.Close()
	out := map[string][]domain.Sample{}
	for rows.Next() {
		var x domain.Sample
		var bucket, last int64
		if err := rows.Scan(&x.Server, &bucket, &last, &x.Cluster, &x.State, &x.Sessions, &x.BackupSessions, &x.RPS, &x.LagMS, &x.Unprotected); err != nil {
			return nil, fmt.Errorf("store: samples: %w", err)
		}
		x.Time = time.UnixMilli(bucket).UTC()
		out[x.Server] = append(out[x.Server], x)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: samples: %w", err)
	}
	return out, nil
}

// Failures lists, per server, its server.down events after the last one an
// operator acknowledged, newest first.
func (s *Store) Failures(ctx context.Context) ([]domain.Failure, error) {
	rows, err := s.read(ctx).Raw(`SELECT e.server, e.cluster, MAX(e.id), e.time, e.message, COUNT(*)
		FROM events e LEFT JOIN failure_acks a ON a.server = e.server
		WHERE e.type = ? AND e.id > COALESCE(a.event_id, 0)
		GROUP BY e.server ORDER BY MAX(e.id) DESC`, domain.EventServerDown).Rows()
	if err != nil {
		return nil, fmt.Errorf("store: failures: %w", err)
	}
	defer rows.Close()
	out := []domain.Failure{}
	for rows.Next() {
		var f domain.Failure
		if err := rows.Scan(&f.Server, &f.Cluster, &f.EventID, &f.Time, &f.Message, &f.Count); err != nil {
			return nil, fmt.Errorf("store: failures: %w", err)
		}
		out = append(out, f)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: failures: %w", err)
	}
	return out, nil
}

// AcknowledgeFailures marks the server's failures up to now as seen by
// actor; it returns how many it acknowledged (0: none was open).
func (s *Store) AcknowledgeFailures(ctx context.Context, actor, server string) (int, error) {
	var n int
	err := s.write(ctx, func(db *gorm.DB) error {
		var last struct {
			ID    int64
			Count int
		}
		if err := db.Raw(`SELECT COALESCE(MAX(id), 0) AS id, COUNT(*) AS count FROM events WHERE type = ? AND server = ?
			AND id > COALESCE((SELECT event_id FROM failure_acks WHERE server = ?), 0)`, domain.EventServerDown, server, server).Scan(&last).Error; err != nil {
			return fmt.Errorf("store: acknowledge: %w", err)
		}
		if last.Count == 0 {
			return nil
		}
		n = last.Count
		if err := db.Exec(`INSERT INTO failure_acks (server, event_id, actor, at) VALUES (?, ?, ?, ?)
			ON CONFLICT (server) DO UPDATE SET event_id = excluded.event_id, actor = excluded.actor, at = excluded.at`, server, last.ID, actor, s.nowUTC()).Error; err != nil {
			return fmt.Errorf("store: acknowledge: %w", err)
		}
		return s.audit(db, actor, "server.acknowledge_failures", "server/"+server, nil, map[string]any{"failures": n, "up_to_event": last.ID})
	})
	return n, err
}

// EventsBetween is Events limited to a time range, oldest first (the
// newest f.Limit when more match).
func (s *Store) EventsBetween(ctx context.Context, f domain.EventFilter, from, to time.Time) ([]domain.Event, error) {
	q := s.read(ctx).Model(&eventRow{}).Where("time >= ? AND time <= ?", from.UTC(), to.UTC())
	if len(f.Types) > 0 {
		q = q.Where("type IN ?", f.Types)
	}
	if f.Cluster != "" {
		q = q.Where("cluster = ?", f.Cluster)
	}
	if f.Server != "" {
		q = q.Where("(server = ? OR peer = ?)", f.Server, f.Server)
	}
	if f.Limit > 0 {
		q = q.Limit(f.Limit)
	}
	var rows []eventRow
	if err := q.Order("id DESC").Find(&rows).Error; err != nil {
		return nil, fmt.Errorf("store: events between: %w", err)
	}
	out := make([]domain.Event, len(rows))
	for i, r := range rows {
		out[len(rows)-1-i] = r.event()
	}
	return out, nil
}
