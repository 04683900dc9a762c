package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/mattn/go-sqlite3"
	"gorm.io/gorm"

	"tandem/backend/domain"
)

type drillRow struct {
	ID         int64
	Cluster    string
	Server     string
	Fault      string
	Seconds    int
	Actor      string
	State      string
	Phase      string
	Report     string
	Error      string
	StartedAt  time.Time
	FinishedAt *time.Time
}

func (drillRow) TableName() string { return "drills" }

func (r drillRow) drill() domain.Drill {
	d := domain.Drill{ID: r.ID, Cluster: r.Cluster, Server: r.Server, Fault: r.Fault, Seconds: r.Seconds, Actor: r.Actor,
		State: r.State, Phase: r.Phase, Error: r.Error, StartedAt: r.StartedAt.UTC(), FinishedAt: r.FinishedAt}
	_ = json.Unmarshal([]byte(r.Report), &d.Report) // written by SaveDrill only
	if d.Report.Events == nil {
		d.Report.Events = []domain.Event{}
	}
	return d
}

// CreateDrill stores a new running drill (with an audit entry) and returns
// it with its ID. A cluster runs one drill at a time: another is a
// *domain.ConflictError.
func (s *Store) CreateDrill(ctx context.Context, d domain.Drill) (domain.Drill, error) {
	d.State, d.StartedAt = domain.DrillRunning, s.nowUTC()
	rep, _ := json.Marshal(d.Report)
	row := drillRow{Cluster: d.Cluster, Server: d.Server, Fault: d.Fault, Seconds: d.Seconds, Actor: d.Actor, State: d.State, Phase: d.Phase, Report: string(rep), StartedAt: d.StartedAt}
	err := s.write(ctx, func(db *gorm.DB) error {
		if err := db.Create(&row).Error; err != nil {
			var se sqlite3.Error
			if errors.As(err, &se) && se.ExtendedCode == sqlite3.ErrConstraintUnique {
				return domain.Conflict("cluster", "a drill is already running on cluster %q", d.Cluster)
			}
			return fmt.Errorf("store: create drill: %w", err)
		}
		return s.audit(db, d.Actor, "drill.start", "cluster/"+d.Cluster, nil, map[string]any{"server": d.Server, "fault": d.Fault, "seconds": d.Seconds, "drill": row.ID})
	})
	if err != nil {
		return domain.Drill{}, err
	}
	d.ID = row.ID
	return d, nil
}

// SaveDrill writes a drill's progress, report and (when it ended) outcome.
func (s *Store) SaveDrill(ctx context.Context, d domain.Drill) error {
	rep, err := json.Marshal(d.Report)
	if err != nil {
		return fmt.Errorf("store: drill report: %w", err)
	}
	return s.write(ctx, func(db *gorm.DB) error {
		if err := db.Exec(`UPDATE drills SET state = ?, phase = ?, report = ?, error = ?, finished_at = ? WHERE id = ?`,
			d.State, d.Phase, string(rep), d.Error, d.FinishedAt, d.ID).Error; err != nil {
			return fmt.Errorf("store: save drill %d: %w", d.ID, err)
		}
		return nil
	})
}

// Drill returns one drill.
func (s *Store) Drill(ctx context.Context, id int64) (domain.Drill, error) {
	var row drillRow
	if err := s.read(ctx).First(&row, id).Error; err != nil {
		return domain.Drill{}, translate(err, "drill", strconv.FormatInt(id, 10))
	}
	return row.drill(), nil
}

// Drills returns a cluster's newest drills first.
func (s *Store) Drills(ctx context.Context, cluster string, limit int) ([]domain.Drill, error) {
	var rows []drillRow
	if err := s.read(ctx).Where("cluster = ?", cluster).Order("id DESC").Limit(limit).Find(&rows).Error; err != nil {
		return nil, fmt.Errorf("store: list drills: %w", err)
	}
	out := make([]domain.Drill, len(rows))
	for i, r := range rows {
		out[i] = r.drill()
	}
	return out, nil
}

// EndRunningDrills fails every drill left running (an admin server that
// stopped mid-drill cannot finish measuring it); it returns how many.
func (s *Store) EndRunningDrills(ctx context.Context, why string) (int64, error) {
	var n int64
	err := s.write(ctx, func(db *gorm.DB) error {
		r := db.Exec(`UPDATE drills SET state = ?, error = ?, finished_at = ? WHERE state = ?`, domain.DrillFailed, why, s.nowUTC(), domain.DrillRunning)
		n = r.RowsAffected
		if r.Error != nil {
			return fmt.Errorf("store: end running drills: %w", r.Error)
		}
		return nil
	})
	return n, err
}
