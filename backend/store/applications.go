package store

import (
	"context"
	"encoding/json"
	"fmt"

	"gorm.io/gorm"

	"tandem/backend/domain"
	"tandem/backend/wire"
)

func (r applicationRow) domain() (domain.Application, error) {
	a := domain.Application{Name: r.Name, Description: r.Description, Kind: r.Kind, HealthPath: r.HealthPath,
		StartTimeoutSeconds: r.StartTimeoutSeconds, RequestTimeoutSeconds: r.RequestTimeoutSeconds,
		CreatedAt: r.CreatedAt, UpdatedAt: r.UpdatedAt}
	if err := json.Unmarshal([]byte(r.Command), &a.Command); err != nil {
		return a, fmt.Errorf("store: decode command of application %q: %w", r.Name, err)
	}
	if err := json.Unmarshal([]byte(r.Env), &a.Env); err != nil {
		return a, fmt.Errorf("store: decode env of application %q: %w", r.Name, err)
	}
	a.ApplyDefaults() // nil env or command as empty
	return a, nil
}

func applicationToRow(a domain.Application) applicationRow {
	cmd, _ := json.Marshal(a.Command) // strings: cannot fail
	env, _ := json.Marshal(a.Env)
	return applicationRow{Name: a.Name, Description: a.Description, Kind: a.Kind, Command: string(cmd), Env: string(env),
		HealthPath: a.HealthPath, StartTimeoutSeconds: a.StartTimeoutSeconds, RequestTimeoutSeconds: a.RequestTimeoutSeconds,
		CreatedAt: a.CreatedAt, UpdatedAt: a.UpdatedAt}
}

// Applications returns every application, by name.
func (s *Store) Applications(ctx context.Context) ([]domain.Application, error) {
	var rows []applicationRow
	if err := s.read(ctx).Order("name").Find(&rows).Error; err != nil {
		return nil, fmt.Errorf("store: list applications: %w", err)
	}
	out := make([]domain.Application, 0, len(rows))
	for _, r := range rows {
		a, err := r.domain()
		if err != nil {
			return nil, err
		}
		out = append(out, a)
	}
	return out, nil
}

// Application returns the named application.
func (s *Store) Application(ctx context.Context, name string) (domain.Application, error) {
	return s.application(s.read(ctx), name)
}

func (s *Store) application(db *gorm.DB, name string) (domain.Application, error) {
	var r applicationRow
	if err := db.Where("name = ?", name).Take(&r).Error; err != nil {
		return domain.Application{}, translate(err, "application", name)
	}
	return r.domain()
}

// clusterApp returns the cluster's application; nil for the sample app.
func (s *Store) clusterApp(db *gorm.DB, c domain.Cluster) (*domain.Application, error) {
	if c.Application == "" {
		return nil, nil
	}
	a, err := s.application(db, c.Application)
	if err != nil {
		return nil, err
	}
	return &a, nil
}

// clusterAppSpec is what the cluster's servers run: its application at
// its version; nil for the sample app.
func (s *Store) clusterAppSpec(db *gorm.DB, c domain.Cluster) (*wire.AppSpec, error) {
	a, err := s.clusterApp(db, c)
	if err != nil || a == nil {
		return nil, err
	}
	if c.AppVersion == "" {
		return wire.AppSpecOf(a, nil), nil
	}
	v, err := s.appVersion(db, a.Name, c.AppVersion)
	if err != nil {
		return nil, err
	}
	return wire.AppSpecOf(a, &v), nil
}

// CreateApplication validates and inserts a (defaults applied).
func (s *Store) CreateApplication(ctx context.Context, actor string, a domain.Application) (domain.Application, error) {
	a.ApplyDefaults()
	if err := a.Validate(); err != nil {
		return domain.Application{}, err
	}
	now := s.nowUTC()
	a.CreatedAt, a.UpdatedAt = now, now
	err := s.write(ctx, func(db *gorm.DB) error {
		row := applicationToRow(a)
		if err := db.Create(&row).Error; err != nil {
			return translate(err, "application", a.Name)
		}
		return s.audit(db, actor, "application.create", "application/"+a.Name, nil, a)
	})
	if err != nil {
		return domain.Application{}, err
	}
	return a, nil
}

// UpdateApplication replaces the named application's fields with a's (the
// name and creation time are kept). The servers of the clusters that run it
// get a new desired config (not a revision: the revision records the
// application's name).
func (s *Store) UpdateApplication(ctx context.Context, actor string, a domain.Application) (domain.Application, error) {
	a.ApplyDefaults()
	if err := a.Validate(); err != nil {
		return domain.Application{}, err
	}
	err := s.write(ctx, func(db *gorm.DB) error {
		before, err := s.application(db, a.Name)
		if err != nil {
			return err
		}
		a.CreatedAt, a.UpdatedAt = before.CreatedAt, s.nowUTC()
		row := applicationToRow(a)
		if err := db.Select("*").Save(&row).Error; err != nil {
			return translate(err, "application", a.Name)
		}
		return s.audit(db, actor, "application.update", "application/"+a.Name, before, a)
	})
	if err != nil {
		return domain.Application{}, err
	}
	return a, nil
}

// DeleteApplication deletes the named application; one a cluster runs is a
// conflict.
func (s *Store) DeleteApplication(ctx context.Context, actor, name string) error {
	return s.write(ctx, func(db *gorm.DB) error {
		before, err := s.application(db, name)
		if err != nil {
			return err
		}
		users, err := s.clustersRunning(db, name)
		if err != nil {
			return err
		}
		if len(users) > 0 {
			return domain.Conflict("name", "application %q is the application of cluster(s) %v; set another one there first", name, users)
		}
		var pinned []string
		if err := db.Model(&serverRow{}).Where("app_pin LIKE ?", name+"@%").Order("name").Pluck("name", &pinned).Error; err != nil {
			return fmt.Errorf("store: servers running %q: %w", name, err)
		}
		if len(pinned) > 0 {
			return domain.Conflict("name", "server(s) %v run application %q (a deploy is moving their cluster)", pinned, name)
		}
		if err := db.Delete(&applicationRow{}, "name = ?", name).Error; err != nil {
			return translate(err, "application", name)
		}
		return s.audit(db, actor, "application.delete", "application/"+name, before, nil)
	})
}

func (s *Store) clustersRunning(db *gorm.DB, app string) ([]string, error) {
	var names []string
	if err := db.Model(&clusterRow{}).Where("application = ?", app).Order("name").Pluck("name", &names).Error; err != nil {
		return nil, fmt.Errorf("store: clusters running %q: %w", app, err)
	}
	return names, nil
}

// SetClusterApplication makes app ("" = the sample app) at version (""
// = its command as defined) the cluster's application; every server of
// the cluster gets a new revision in the same transaction. It returns the
// application before and after (nil = the sample app) and the new
// revisions. An unknown application or version is invalid (field
// application or version); setting the current ones again changes nothing.
func (s *Store) SetClusterApplication(ctx context.Context, actor, cluster, app, version string) (before, after *domain.Application, revs []domain.Revision, err error) {
	kind := domain.DeploySet
	err = s.write(ctx, func(db *gorm.DB) error {
		c, err := s.cluster(db, cluster)
		if err != nil {
			return err
		}
		if before, err = s.clusterApp(db, c); err != nil {
			return err
		}
		if app != "" {
			a, err := s.application(db, app)
			if domainIsNotFound(err) {
				return domain.Invalid("application", "no application named %q (create it under /api/v1/applications)", app)
			}
			if err != nil {
				return err
			}
			after = &a
			if version != "" {
				if _, err := s.appVersion(db, app, version); domainIsNotFound(err) {
					return domain.Invalid("version", "application %q has no version %q (upload it to /api/v1/applications/%s/versions/%s)", app, version, app, version)
				} else if err != nil {
					return err
				}
			}
		} else if version != "" {
			return domain.Invalid("version", "the built-in sample app has no versions")
		}
		if c.Application == app && c.AppVersion == version {
			return nil
		}
		old := c
		c.Application, c.AppVersion, c.UpdatedAt = app, version, s.nowUTC()
		if err := db.Model(&clusterRow{}).Where("name = ?", cluster).
			Updates(map[string]any{"application": nullable(app), "app_version": nullable(version), "updated_at": c.UpdatedAt}).Error; err != nil {
			return fmt.Errorf("store: set application of %q: %w", cluster, err)
		}
		if err := s.audit(db, actor, "cluster.application", "cluster/"+cluster, old, c); err != nil {
			return err
		}
		if err := s.recordDeployment(db, actor, kind, old, c); err != nil {
			return err
		}
		servers, err := s.servers(db, cluster)
		if err != nil {
			return err
		}
		reason := fmt.Sprintf("application %s", appLabel(app, version))
		for _, sv := range servers {
			var rev domain.Revision
			if err := s.revise(db, actor, sv.Name, reason, &rev); err != nil {
				return err
			}
			revs = append(revs, rev)
		}
		return nil
	})
	if err != nil {
		return nil, nil, nil, err
	}
	if revs == nil {
		revs = []domain.Revision{}
	}
	return before, after, revs, nil
}

// appLabel names an application at a version, as revisions record it.
func appLabel(app, version string) string {
	switch {
	case app == "":
		return "sample (built-in)"
	case version != "":
		return app + "@" + version
	}
	return app
}

func domainIsNotFound(err error) bool { return errorsIs(err, domain.ErrNotFound) }
