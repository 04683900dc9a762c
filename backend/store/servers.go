package store

import (
	"context"
	"fmt"
	"net"

	"gorm.io/gorm"

	"tandem/backend/domain"
)

// Servers returns every managed server, by name; cluster != "" filters.
func (s *Store) Servers(ctx context.Context, cluster string) ([]domain.Server, error) {
	return s.servers(s.read(ctx), cluster)
}

func (s *Store) servers(db *gorm.DB, cluster string) ([]domain.Server, error) {
	var rows []serverRow
	q := db.Order("name")
	if cluster != "" {
		q = q.Where("cluster = ?", cluster)
	}
	if err := q.Find(&rows).Error; err != nil {
		return nil, fmt.Errorf("store: list servers: %w", err)
	}
	out := make([]domain.Server, 0, len(rows))
	for _, r := range rows {
		out = append(out, r.domain())
	}
	return out, nil
}

// Server returns the named managed server.
func (s *Store) Server(ctx context.Context, name string) (domain.Server, error) {
	return s.server(s.read(ctx), name)
}

func (s *Store) server(db *gorm.DB, name string) (domain.Server, error) {
	var r serverRow
	if err := db.Where("name = ?", name).Take(&r).Error; err != nil {
		return domain.Server{}, translate(err, "server", name)
	}
	return r.domain(), nil
}

// checkServerRefs checks, inside the write transaction, what Validate
// cannot: the cluster and node manager exist, and an explicit backup is
// another server of the same cluster.
func (s *Store) checkServerRefs(db *gorm.DB, sv domain.Server) error {
	if _, err := s.cluster(db, sv.Cluster); err != nil {
		if isNotFound(err) {
			return domain.Invalid("cluster", "cluster %q does not exist", sv.Cluster)
		}
		return err
	}
	if err := s.checkNodeManagerRef(db, sv.NodeManager); err != nil {
		return err
	}
	if sv.Backup != "" {
		b, err := s.server(db, sv.Backup)
		if isNotFound(err) || (err == nil && b.Cluster != sv.Cluster) {
			return domain.Invalid("backup", "must be another server of cluster %q", sv.Cluster)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func (s *Store) checkNodeManagerRef(db *gorm.DB, nm string) error {
	if nm == "" {
		return nil
	}
	if _, err := s.nodeManager(db, nm); err != nil {
		if isNotFound(err) {
			return domain.Invalid("node_manager", "node manager %q does not exist", nm)
		}
		return err
	}
	return nil
}

// CreateServer validates and inserts sv and writes its first revision.
func (s *Store) CreateServer(ctx context.Context, actor string, sv domain.Server) (domain.Server, error) {
	sv.ApplyDefaults()
	if err := sv.Validate(); err != nil {
		return domain.Server{}, err
	}
	now := s.nowUTC()
	sv.CreatedAt, sv.UpdatedAt = now, now
	sv.Advertise = "" // the server says it when it connects
	err := s.write(ctx, func(db *gorm.DB) error {
		// Inside the write transaction this check cannot race; it makes a
		// duplicate name the reported conflict, not the derived route.
		if _, err := s.server(db, sv.Name); err == nil {
			return domain.Conflict("name", "server %q already exists", sv.Name)
		} else if !isNotFound(err) {
			return err
		}
		if err := s.checkServerRefs(db, sv); err != nil {
			return err
		}
		row := serverToRow(sv)
		if err := db.Create(&row).Error; err != nil {
			return translate(err, "server", sv.Name)
		}
		if err := s.audit(db, actor, "server.create", "server/"+sv.Name, nil, sv); err != nil {
			return err
		}
		return s.revise(db, actor, sv.Name, "server created", nil)
	})
	if err != nil {
		return domain.Server{}, err
	}
	return sv, nil
}

// UpdateServer replaces the named server's fields with sv's. Moving it to
// another cluster revises its effective config.
func (s *Store) UpdateServer(ctx context.Context, actor string, sv domain.Server) (domain.Server, error) {
	sv.ApplyDefaults()
	if err := sv.Validate(); err != nil {
		return domain.Server{}, err
	}
	err := s.write(ctx, func(db *gorm.DB) error {
		before, err := s.server(db, sv.Name)
		if err != nil {
			return err
		}
		if err := s.checkServerRefs(db, sv); err != nil {
			return err
		}
		if sv.Cluster != before.Cluster {
			var n int64
			if err := db.Model(&serverRow{}).Where("backup = ?", sv.Name).Count(&n).Error; err != nil {
				return fmt.Errorf("store: count backups: %w", err)
			}
			if n > 0 {
				return domain.Conflict("cluster", "server %q is the explicit backup of %d server(s) in cluster %q", sv.Name, n, before.Cluster)
			}
		}
		sv.CreatedAt, sv.UpdatedAt = before.CreatedAt, s.nowUTC()
		sv.Advertise = before.Advertise // the server's own, not the operator's
		row := serverToRow(sv)
		if err := db.Select("*").Save(&row).Error; err != nil {
			return translate(err, "server", sv.Name)
		}
		if err := s.audit(db, actor, "server.update", "server/"+sv.Name, before, sv); err != nil {
			return err
		}
		if sv.Cluster != before.Cluster {
			return s.reviseIfChanged(db, actor, sv.Name, "moved to cluster "+sv.Cluster)
		}
		return nil
	})
	if err != nil {
		return domain.Server{}, err
	}
	return sv, nil
}

// DeleteServer deletes the named server with its override and revisions. A
// server that is another's explicit backup is a conflict.
func (s *Store) DeleteServer(ctx context.Context, actor, name string) error {
	return s.write(ctx, func(db *gorm.DB) error {
		before, err := s.server(db, name)
		if err != nil {
			return err
		}
		var users []string
		if err := db.Model(&serverRow{}).Where("backup = ?", name).Order("name").Pluck("name", &users).Error; err != nil {
			return fmt.Errorf("store: find backup users: %w", err)
		}
		if len(users) > 0 {
			return domain.Conflict("name", "server %q is the explicit backup of %v; change their backup first", name, users)
		}
		if err := db.Delete(&serverRow{}, "name = ?", name).Error; err != nil {
			return translate(err, "server", name)
		}
		if err := s.retireCerts(db, actor, name); err != nil {
			return err
		}
		return s.audit(db, actor, "server.delete", "server/"+name, before, nil)
	})
}

// ServerSessionConfig returns the server's override, its effective config
// and its latest revision number.
func (s *Store) ServerSessionConfig(ctx context.Context, name string) (override domain.SessionOverride, effective domain.SessionConfig, revision int64, err error) {
	db := s.read(ctx)
	sv, err := s.server(db, name)
	if err != nil {
		return override, effective, 0, err
	}
	override, effective, err = s.effective(db, sv)
	if err != nil {
		return override, effective, 0, err
	}
	revision, err = s.latestRevision(db, name)
	return override, effective, revision, err
}

// effective returns the server's override and its merged config.
func (s *Store) effective(db *gorm.DB, sv domain.Server) (domain.SessionOverride, domain.SessionConfig, error) {
	defaults, err := s.clusterDefaults(db, sv.Cluster)
	if err != nil {
		return domain.SessionOverride{}, domain.SessionConfig{}, err
	}
	o, err := s.loadOverride(db, "server_session_overrides", "server", sv.Name)
	if err != nil {
		return domain.SessionOverride{}, domain.SessionConfig{}, err
	}
	return o, domain.Effective(defaults, o), nil
}

// SetServerSessionOverride replaces the server's override (an empty one
// clears it: everything inherits) and writes a new revision.
func (s *Store) SetServerSessionOverride(ctx context.Context, actor, name string, o domain.SessionOverride) (domain.Revision, error) {
	if err := o.Validate(); err != nil {
		return domain.Revision{}, err
	}
	var rev domain.Revision
	err := s.write(ctx, func(db *gorm.DB) error {
		sv, err := s.server(db, name)
		if err != nil {
			return err
		}
		before, _, err := s.effective(db, sv)
		if err != nil {
			return err
		}
		defaults, err := s.clusterDefaults(db, sv.Cluster)
		if err != nil {
			return err
		}
		if err := domain.Effective(defaults, o).Validate(); err != nil {
			return err
		}
		if err := s.saveOverride(db, "server_session_overrides", "server", name, o); err != nil {
			return err
		}
		if err := s.audit(db, actor, "server.session_config", "server/"+name, before, o); err != nil {
			return err
		}
		reason := "server override changed"
		if o.IsEmpty() {
			reason = "server override cleared"
		}
		return s.revise(db, actor, name, reason, &rev)
	})
	return rev, err
}

func isNotFound(err error) bool { return err != nil && errorsIs(err, domain.ErrNotFound) }

// SetAdvertise records the host a managed server is reached at, as it
// connected: said (its --advertise; auto false) or seen (the address its
// control connection came from; auto true, kept only when the server binds
// every address). It reports the server's cluster and whether the host
// changed (the cluster's nodes then need their configs again).
func (s *Store) SetAdvertise(ctx context.Context, name, host string, auto bool) (cluster string, changed bool, err error) {
	if host != "" && !domain.ValidHost(host) {
		return "", false, domain.Invalid("advertise", "must be an IP address or a host name")
	}
	err = s.write(ctx, func(db *gorm.DB) error {
		before, err := s.server(db, name)
		if err != nil {
			return err
		}
		cluster = before.Cluster
		if auto {
			if h, _, err := net.SplitHostPort(before.Listen); err == nil && h != "" && !net.ParseIP(h).IsUnspecified() {
				host = "" // it binds one address: that one is reached
			}
		}
		if host == before.Advertise {
			return nil
		}
		changed = true
		if err := db.Model(&serverRow{}).Where("name = ?", name).Update("advertise", host).Error; err != nil {
			return fmt.Errorf("store: advertise: %w", err)
		}
		after := before
		after.Advertise = host
		return s.audit(db, "node:"+name, "server.advertise", "server/"+name, before, after)
	})
	return cluster, changed, err
}
