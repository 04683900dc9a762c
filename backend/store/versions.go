package store

import (
	"context"
	"fmt"
	"time"

	"gorm.io/gorm"

	"tandem/backend/domain"
)

type appVersionRow struct {
	Application string `gorm:"primaryKey"`
	Version     string `gorm:"primaryKey"`
	SHA256      string `gorm:"column:sha256"`
	Size        int64
	Actor       string
	CreatedAt   time.Time
}

func (appVersionRow) TableName() string { return "app_versions" }

func (r appVersionRow) domain() domain.AppVersion {
	return domain.AppVersion{Application: r.Application, Version: r.Version, SHA256: r.SHA256, Size: r.Size, Actor: r.Actor, CreatedAt: r.CreatedAt}
}

// AppVersions lists an application's versions, newest first.
func (s *Store) AppVersions(ctx context.Context, app string) ([]domain.AppVersion, error) {
	db := s.read(ctx)
	if _, err := s.application(db, app); err != nil {
		return nil, err
	}
	var rows []appVersionRow
	if err := db.Where("application = ?", app).Order("created_at DESC, version DESC").Find(&rows).Error; err != nil {
		return nil, fmt.Errorf("store: versions of %q: %w", app, err)
	}
	out := make([]domain.AppVersion, 0, len(rows))
	for _, r := range rows {
		out = append(out, r.domain())
	}
	return out, nil
}

// AppVersion returns one version of an application.
func (s *Store) AppVersion(ctx context.Context, app, version string) (domain.AppVersion, error) {
	return s.appVersion(s.read(ctx), app, version)
}

func (s *Store) appVersion(db *gorm.DB, app, version string) (domain.AppVersion, error) {
	var r appVersionRow
	if err := db.Where("application = ? AND version = ?", app, version).Take(&r).Error; err != nil {
		return domain.AppVersion{}, translate(err, "version", app+"/"+version)
	}
	return r.domain(), nil
}

// AddAppVersion records an uploaded version. The same version with the
// same archive again changes nothing (created false); with another archive
// it is a conflict.
func (s *Store) AddAppVersion(ctx context.Context, actor string, v domain.AppVersion) (out domain.AppVersion, created bool, err error) {
	err = s.write(ctx, func(db *gorm.DB) error {
		if _, err := s.application(db, v.Application); err != nil {
			return err
		}
		old, err := s.appVersion(db, v.Application, v.Version)
		switch {
		case err == nil && old.SHA256 == v.SHA256:
			out = old
			return nil
		case err == nil:
			return domain.Conflict("version", "version %q of %q exists with other content (sha256 %s); versions never change: upload under a new name", v.Version, v.Application, old.SHA256)
		case !errorsIs(err, domain.ErrNotFound):
			return err
		}
		v.Actor, v.CreatedAt = actor, s.nowUTC()
		row := appVersionRow{Application: v.Application, Version: v.Version, SHA256: v.SHA256, Size: v.Size, Actor: v.Actor, CreatedAt: v.CreatedAt}
		if err := db.Create(&row).Error; err != nil {
			return translate(err, "version", v.Application+"/"+v.Version)
		}
		out, created = v, true
		return s.audit(db, actor, "application.version.add", "application/"+v.Application+"/versions/"+v.Version, nil, v)
	})
	return out, created, err
}

// DeleteAppVersion deletes a version; shared reports whether another
// version still uses its archive (then the archive stays).
func (s *Store) DeleteAppVersion(ctx context.Context, actor, app, version string) (v domain.AppVersion, shared bool, err error) {
	err = s.write(ctx, func(db *gorm.DB) error {
		if v, err = s.appVersion(db, app, version); err != nil {
			return err
		}
		var users []string
		if err := db.Model(&clusterRow{}).Where("application = ? AND app_version = ?", app, version).Order("name").Pluck("name", &users).Error; err != nil {
			return fmt.Errorf("store: clusters running %s@%s: %w", app, version, err)
		}
		if len(users) > 0 {
			return domain.Conflict("version", "cluster(s) %v run %s@%s; deploy another version there first", users, app, version)
		}
		var pinned []string
		if err := db.Model(&serverRow{}).Where("app_pin = ?", app+"@"+version).Order("name").Pluck("name", &pinned).Error; err != nil {
			return fmt.Errorf("store: servers running %s@%s: %w", app, version, err)
		}
		if len(pinned) > 0 {
			return domain.Conflict("version", "server(s) %v run %s@%s (a deploy is moving their cluster)", pinned, app, version)
		}
		if err := db.Delete(&appVersionRow{}, "application = ? AND version = ?", app, version).Error; err != nil {
			return fmt.Errorf("store: delete version: %w", err)
		}
		var n int64
		if err := db.Model(&appVersionRow{}).Where("sha256 = ?", v.SHA256).Count(&n).Error; err != nil {
			return fmt.Errorf("store: count archive users: %w", err)
		}
		shared = n > 0
		return s.audit(db, actor, "application.version.delete", "application/"+app+"/versions/"+version, v, nil)
	})
	return v, shared, err
}

// ArchiveKnown reports whether a version uses the archive with that SHA-256.
func (s *Store) ArchiveKnown(ctx context.Context, sum string) (bool, error) {
	var n int64
	if err := s.read(ctx).Model(&appVersionRow{}).Where("sha256 = ?", sum).Count(&n).Error; err != nil {
		return false, fmt.Errorf("store: archive users: %w", err)
	}
	return n > 0, nil
}
