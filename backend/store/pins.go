package store

import (
	"context"
	"database/sql"
	"fmt"
	"strings"

	"gorm.io/gorm"

	"tandem/backend/domain"
	"tandem/backend/wire"
)

// A server's pin is the application@version it runs while a deploy moves
// its cluster one server at a time; without one it runs the cluster's.

// SetServerApp pins the server to app@version ("" app: the sample app) and
// writes its new revision; the caller pushes it (control.Changed).
func (s *Store) SetServerApp(ctx context.Context, actor, server, app, version string) error {
	return s.write(ctx, func(db *gorm.DB) error {
		if _, err := s.server(db, server); err != nil {
			return err
		}
		if app != "" {
			if _, err := s.application(db, app); err != nil {
				return err
			}
			if version != "" {
				if _, err := s.appVersion(db, app, version); err != nil {
					return err
				}
			}
		}
		pin := app + "@" + version
		if err := db.Exec("UPDATE servers SET app_pin = ? WHERE name = ?", pin, server).Error; err != nil {
			return fmt.Errorf("store: pin %q: %w", server, err)
		}
		return s.revise(db, actor, server, "deploy: "+appLabel(app, version), nil)
	})
}

// FinishDeploy makes app@version the cluster's application and removes
// the pins of its servers, in one transaction (revisions written where
// the config changed; the deployment recorded as kind).
func (s *Store) FinishDeploy(ctx context.Context, actor, cluster, app, version, kind string) error {
	return s.write(ctx, func(db *gorm.DB) error {
		c, err := s.cluster(db, cluster)
		if err != nil {
			return err
		}
		old := c
		c.Application, c.AppVersion, c.UpdatedAt = app, version, s.nowUTC()
		if err := db.Model(&clusterRow{}).Where("name = ?", cluster).
			Updates(map[string]any{"application": nullable(app), "app_version": nullable(version), "updated_at": c.UpdatedAt}).Error; err != nil {
			return fmt.Errorf("store: finish deploy of %q: %w", cluster, err)
		}
		if err := db.Exec("UPDATE servers SET app_pin = NULL WHERE cluster = ?", cluster).Error; err != nil {
			return fmt.Errorf("store: unpin %q: %w", cluster, err)
		}
		if old.Application != app || old.AppVersion != version {
			if err := s.audit(db, actor, "cluster.deploy", "cluster/"+cluster, old, c); err != nil {
				return err
			}
			if err := s.recordDeployment(db, actor, kind, old, c); err != nil {
				return err
			}
		}
		return s.reviseCluster(db, actor, cluster, "deploy: "+appLabel(app, version))
	})
}

// serverPin reads a server's pin: ok false when it has none.
func (s *Store) serverPin(db *gorm.DB, server string) (app, version string, ok bool, err error) {
	var pin sql.NullString
	if err := db.Raw("SELECT app_pin FROM servers WHERE name = ?", server).Row().Scan(&pin); err != nil {
		return "", "", false, fmt.Errorf("store: pin of %q: %w", server, err)
	}
	if !pin.Valid {
		return "", "", false, nil
	}
	app, version, _ = strings.Cut(pin.String, "@")
	return app, version, true, nil
}

// serverAppSpec is what a server runs: its pin, else its cluster's.
func (s *Store) serverAppSpec(db *gorm.DB, server string, c domain.Cluster) (*wire.AppSpec, string, error) {
	app, version, pinned, err := s.serverPin(db, server)
	if err != nil {
		return nil, "", err
	}
	if !pinned {
		spec, err := s.clusterAppSpec(db, c)
		return spec, appRecord(c), err
	}
	pc := c
	pc.Application, pc.AppVersion = app, version
	spec, err := s.clusterAppSpec(db, pc)
	return spec, appRecord(pc), err
}

// ServerPins returns the pins of every pinned server: name → [app, version].
func (s *Store) ServerPins(ctx context.Context) (map[string][2]string, error) {
	rows, err := s.read(ctx).Raw("SELECT name, app_pin FROM servers WHERE app_pin IS NOT NULL").Rows()
	if err != nil {
		return nil, fmt.Errorf("store: pins: %w", err)
	}
	defer rows.Close()
	out := map[string][2]string{}
	for rows.Next() {
		var name, pin string
		if err := rows.Scan(&name, &pin); err != nil {
			return nil, fmt.Errorf("store: pins: %w", err)
		}
		app, version, _ := strings.Cut(pin, "@")
		out[name] = [2]string{app, version}
	}
	return out, rows.Err()
}
