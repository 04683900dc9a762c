package store

import (
	"context"
	"fmt"
	"time"

	"gorm.io/gorm"

	"tandem/backend/domain"
)

type deploymentRow struct {
	ID              int64 `gorm:"primaryKey"`
	Cluster         string
	FromApplication string
	FromVersion     string
	ToApplication   string
	ToVersion       string
	Kind            string
	Actor           string
	CreatedAt       time.Time
}

func (deploymentRow) TableName() string { return "deployments" }

func (r deploymentRow) domain() domain.Deployment {
	return domain.Deployment{ID: r.ID, Cluster: r.Cluster, FromApplication: r.FromApplication, FromVersion: r.FromVersion,
		ToApplication: r.ToApplication, ToVersion: r.ToVersion, Kind: r.Kind, Actor: r.Actor, CreatedAt: r.CreatedAt}
}

// Deployments lists the cluster's application changes, newest first.
func (s *Store) Deployments(ctx context.Context, cluster string) ([]domain.Deployment, error) {
	db := s.read(ctx)
	if _, err := s.cluster(db, cluster); err != nil {
		return nil, err
	}
	var rows []deploymentRow
	if err := db.Where("cluster = ?", cluster).Order("id DESC").Limit(500).Find(&rows).Error; err != nil {
		return nil, fmt.Errorf("store: deployments of %q: %w", cluster, err)
	}
	out := make([]domain.Deployment, 0, len(rows))
	for _, r := range rows {
		out = append(out, r.domain())
	}
	return out, nil
}

// RollbackTarget is what the cluster ran before its current application:
// the "from" of the newest change that led to it. Nothing to go back to
// is a conflict.
func (s *Store) RollbackTarget(ctx context.Context, cluster string) (app, version string, err error) {
	db := s.read(ctx)
	c, err := s.cluster(db, cluster)
	if err != nil {
		return "", "", err
	}
	var r deploymentRow
	err = db.Where("cluster = ? AND to_application = ? AND to_version = ?", cluster, c.Application, c.AppVersion).Order("id DESC").Take(&r).Error
	if errorsIs(err, gorm.ErrRecordNotFound) {
		return "", "", domain.Conflict("application", "cluster %q has no earlier application to roll back to", cluster)
	}
	if err != nil {
		return "", "", fmt.Errorf("store: rollback target of %q: %w", cluster, err)
	}
	return r.FromApplication, r.FromVersion, nil
}

func (s *Store) recordDeployment(db *gorm.DB, actor, kind string, before, after domain.Cluster) error {
	row := deploymentRow{Cluster: after.Name, FromApplication: before.Application, FromVersion: before.AppVersion,
		ToApplication: after.Application, ToVersion: after.AppVersion, Kind: kind, Actor: actor, CreatedAt: s.nowUTC()}
	if err := db.Create(&row).Error; err != nil {
		return fmt.Errorf("store: record deployment: %w", err)
	}
	return nil
}
