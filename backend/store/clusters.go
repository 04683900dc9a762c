package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"gorm.io/gorm"

	"tandem/backend/domain"
)

// Clusters returns every cluster, by name.
func (s *Store) Clusters(ctx context.Context) ([]domain.Cluster, error) {
	var rows []clusterRow
	if err := s.read(ctx).Order("name").Find(&rows).Error; err != nil {
		return nil, fmt.Errorf("store: list clusters: %w", err)
	}
	out := make([]domain.Cluster, 0, len(rows))
	for _, r := range rows {
		out = append(out, r.domain())
	}
	return out, nil
}

// Cluster returns the named cluster.
func (s *Store) Cluster(ctx context.Context, name string) (domain.Cluster, error) {
	return s.cluster(s.read(ctx), name)
}

func (s *Store) cluster(db *gorm.DB, name string) (domain.Cluster, error) {
	var r clusterRow
	if err := db.Where("name = ?", name).Take(&r).Error; err != nil {
		return domain.Cluster{}, translate(err, "cluster", name)
	}
	return r.domain(), nil
}

// CreateCluster validates and inserts c (defaults applied).
func (s *Store) CreateCluster(ctx context.Context, actor string, c domain.Cluster) (domain.Cluster, error) {
	c.ApplyDefaults()
	if err := c.Validate(); err != nil {
		return domain.Cluster{}, err
	}
	if c.Application != "" || c.AppVersion != "" {
		return domain.Cluster{}, domain.Invalid("application", "is set with PUT /api/v1/clusters/%s/application once the cluster exists", c.Name)
	}
	now := s.nowUTC()
	c.CreatedAt, c.UpdatedAt = now, now
	err := s.write(ctx, func(db *gorm.DB) error {
		row := clusterToRow(c)
		if err := db.Create(&row).Error; err != nil {
			return translate(err, "cluster", c.Name)
		}
		return s.audit(db, actor, "cluster.create", "cluster/"+c.Name, nil, c)
	})
	if err != nil {
		return domain.Cluster{}, err
	}
	return c, nil
}

// UpdateCluster replaces the named cluster's fields with c's (the name and
// creation time are kept).
func (s *Store) UpdateCluster(ctx context.Context, actor string, c domain.Cluster) (domain.Cluster, error) {
	c.ApplyDefaults()
	if err := c.Validate(); err != nil {
		return domain.Cluster{}, err
	}
	err := s.write(ctx, func(db *gorm.DB) error {
		before, err := s.cluster(db, c.Name)
		if err != nil {
			return err
		}
		if c.Application != "" && c.Application != before.Application {
			return domain.Invalid("application", "is set with PUT /api/v1/clusters/%s/application (it makes a revision for every server)", c.Name)
		}
		if c.AppVersion != "" && c.AppVersion != before.AppVersion {
			return domain.Invalid("app_version", "is set with PUT /api/v1/clusters/%s/application", c.Name)
		}
		c.Application, c.AppVersion = before.Application, before.AppVersion
		c.CreatedAt, c.UpdatedAt = before.CreatedAt, s.nowUTC()
		row := clusterToRow(c)
		if err := db.Select("*").Save(&row).Error; err != nil {
			return translate(err, "cluster", c.Name)
		}
		return s.audit(db, actor, "cluster.update", "cluster/"+c.Name, before, c)
	})
	if err != nil {
		return domain.Cluster{}, err
	}
	return c, nil
}

// DeleteCluster deletes the named cluster; a cluster that still has servers
// or web servers is a conflict.
func (s *Store) DeleteCluster(ctx context.Context, actor, name string) error {
	return s.write(ctx, func(db *gorm.DB) error {
		before, err := s.cluster(db, name)
		if err != nil {
			return err
		}
		var n int64
		if err := db.Model(&serverRow{}).Where("cluster = ?", name).Count(&n).Error; err != nil {
			return fmt.Errorf("store: count servers: %w", err)
		}
		if n > 0 {
			return domain.Conflict("name", "cluster %q still has %d server(s); delete or move them first", name, n)
		}
		if err := db.Model(&webServerRow{}).Where("cluster = ?", name).Count(&n).Error; err != nil {
			return fmt.Errorf("store: count webservers: %w", err)
		}
		if n > 0 {
			return domain.Conflict("name", "cluster %q still has %d web server(s); delete or move them first", name, n)
		}
		if err := db.Delete(&clusterRow{}, "name = ?", name).Error; err != nil {
			return translate(err, "cluster", name)
		}
		return s.audit(db, actor, "cluster.delete", "cluster/"+name, before, nil)
	})
}

// ClusterSessionDefaults returns the cluster's session defaults (a partial
// override of the built-in defaults).
func (s *Store) ClusterSessionDefaults(ctx context.Context, name string) (domain.SessionOverride, error) {
	db := s.read(ctx)
	if _, err := s.cluster(db, name); err != nil {
		return domain.SessionOverride{}, err
	}
	return s.clusterDefaults(db, name)
}

func (s *Store) clusterDefaults(db *gorm.DB, cluster string) (domain.SessionOverride, error) {
	return s.loadOverride(db, "cluster_session_defaults", "cluster", cluster)
}

func (s *Store) loadOverride(db *gorm.DB, table, key, name string) (domain.SessionOverride, error) {
	var o domain.SessionOverride
	var raw string
	err := db.Raw("SELECT override FROM "+table+" WHERE "+key+" = ?", name).Row().Scan(&raw)
	if errors.Is(err, errNoRows) {
		return o, nil
	}
	if err != nil {
		return o, fmt.Errorf("store: read %s of %q: %w", table, name, err)
	}
	if err := json.Unmarshal([]byte(raw), &o); err != nil {
		return o, fmt.Errorf("store: decode %s of %q: %w", table, name, err)
	}
	return o, nil
}

func (s *Store) saveOverride(db *gorm.DB, table, key, name string, o domain.SessionOverride) error {
	b, err := json.Marshal(o)
	if err != nil {
		return fmt.Errorf("store: encode override: %w", err)
	}
	err = db.Exec("INSERT INTO "+table+" ("+key+", override, updated_at) VALUES (?, ?, ?) "+
		"ON CONFLICT("+key+") DO UPDATE SET override = excluded.override, updated_at = excluded.updated_at",
		name, string(b), s.nowUTC()).Error
	if err != nil {
		return fmt.Errorf("store: save %s of %q: %w", table, name, err)
	}
	return nil
}

// SetClusterSessionDefaults replaces the cluster's session defaults. Every
// server of the cluster whose effective config changes gets a new revision
// in the same transaction. An effective config that would be invalid (for
// example SameSite=None without Secure) is refused.
func (s *Store) SetClusterSessionDefaults(ctx context.Context, actor, name string, o domain.SessionOverride) (domain.SessionOverride, error) {
	if err := o.Validate(); err != nil {
		return domain.SessionOverride{}, err
	}
	if err := domain.Merge(domain.DefaultSessionConfig(), o).Validate(); err != nil {
		return domain.SessionOverride{}, err
	}
	err := s.write(ctx, func(db *gorm.DB) error {
		if _, err := s.cluster(db, name); err != nil {
			return err
		}
		before, err := s.clusterDefaults(db, name)
		if err != nil {
			return err
		}
		if err := s.saveOverride(db, "cluster_session_defaults", "cluster", name, o); err != nil {
			return err
		}
		if err := s.audit(db, actor, "cluster.session_config", "cluster/"+name, before, o); err != nil {
			return err
		}
		return s.reviseCluster(db, actor, name, "cluster session defaults changed")
	})
	if err != nil {
		return domain.SessionOverride{}, err
	}
	return o, nil
}
