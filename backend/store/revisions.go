package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"gorm.io/gorm"

	"tandem/backend/domain"
)

var errorsIs = errors.Is

func (s *Store) latestRevision(db *gorm.DB, server string) (int64, error) {
	var n *int64
	if err := db.Raw("SELECT MAX(number) FROM revisions WHERE server = ?", server).Row().Scan(&n); err != nil {
		return 0, fmt.Errorf("store: latest revision of %q: %w", server, err)
	}
	if n == nil {
		return 0, nil
	}
	return *n, nil
}

// revise writes revision latest+1 of server's current effective config.
func (s *Store) revise(db *gorm.DB, actor, server, reason string, out *domain.Revision) error {
	sv, err := s.server(db, server)
	if err != nil {
		return err
	}
	o, eff, err := s.effective(db, sv)
	if err != nil {
		return err
	}
	if err := eff.Validate(); err != nil {
		return err
	}
	last, err := s.latestRevision(db, server)
	if err != nil {
		return err
	}
	c, err := s.cluster(db, sv.Cluster)
	if err != nil {
		return err
	}
	_, app, err := s.serverAppSpec(db, server, c)
	if err != nil {
		return err
	}
	cfg, _ := json.Marshal(eff)
	ov, _ := json.Marshal(o)
	row := revisionRow{Server: server, Number: last + 1, Checksum: eff.Checksum(), Config: string(cfg),
		Override: string(ov), Actor: actor, Reason: reason, Application: app, CreatedAt: s.nowUTC()}
	if err := db.Create(&row).Error; err != nil {
		return fmt.Errorf("store: write revision %d of %q: %w", row.Number, server, err)
	}
	if out != nil {
		*out, err = row.domain()
	}
	return err
}

// appRecord is the application as a revision records it: name@version.
func appRecord(c domain.Cluster) string {
	if c.AppVersion == "" {
		return c.Application
	}
	return c.Application + "@" + c.AppVersion
}

// reviseIfChanged writes a revision when the server's effective config
// differs from its latest revision.
func (s *Store) reviseIfChanged(db *gorm.DB, actor, server, reason string) error {
	sv, err := s.server(db, server)
	if err != nil {
		return err
	}
	_, eff, err := s.effective(db, sv)
	if err != nil {
		return err
	}
	c, err := s.cluster(db, sv.Cluster)
	if err != nil {
		return err
	}
	_, app, err := s.serverAppSpec(db, server, c)
	if err != nil {
		return err
	}
	var last revisionRow
	err = db.Where("server = ?", server).Order("number DESC").Take(&last).Error
	if err == nil && last.Checksum == eff.Checksum() && last.Application == app {
		return nil
	}
	if err != nil && !errors.Is(err, gorm.ErrRecordNotFound) {
		return fmt.Errorf("store: latest revision of %q: %w", server, err)
	}
	return s.revise(db, actor, server, reason, nil)
}

// reviseCluster revises every server of the cluster whose effective config changed.
func (s *Store) reviseCluster(db *gorm.DB, actor, cluster, reason string) error {
	servers, err := s.servers(db, cluster)
	if err != nil {
		return err
	}
	for _, sv := range servers {
		if err := s.reviseIfChanged(db, actor, sv.Name, reason); err != nil {
			var inv *domain.InvalidError
			if errors.As(err, &inv) {
				return domain.Invalid(inv.Field, "%s (effective config of server %q)", inv.Message, sv.Name)
			}
			return err
		}
	}
	return nil
}

func (r revisionRow) domain() (domain.Revision, error) {
	rev := domain.Revision{Server: r.Server, Number: r.Number, Checksum: r.Checksum, Actor: r.Actor,
		Reason: r.Reason, Application: r.Application, CreatedAt: r.CreatedAt}
	if err := json.Unmarshal([]byte(r.Config), &rev.Config); err != nil {
		return rev, fmt.Errorf("store: decode revision %d of %q: %w", r.Number, r.Server, err)
	}
	if err := json.Unmarshal([]byte(r.Override), &rev.Override); err != nil {
		return rev, fmt.Errorf("store: decode revision %d of %q: %w", r.Number, r.Server, err)
	}
	return rev, nil
}

// Revisions returns the server's revisions, newest first.
func (s *Store) Revisions(ctx context.Context, server string) ([]domain.Revision, error) {
	db := s.read(ctx)
	if _, err := s.server(db, server); err != nil {
		return nil, err
	}
	var rows []revisionRow
	if err := db.Where("server = ?", server).Order("number DESC").Find(&rows).Error; err != nil {
		return nil, fmt.Errorf("store: list revisions of %q: %w", server, err)
	}
	out := make([]domain.Revision, 0, len(rows))
	for _, r := range rows {
		rev, err := r.domain()
		if err != nil {
			return nil, err
		}
		out = append(out, rev)
	}
	return out, nil
}

// Revision returns revision n of the server.
func (s *Store) Revision(ctx context.Context, server string, n int64) (domain.Revision, error) {
	return s.revision(s.read(ctx), server, n)
}

func (s *Store) revision(db *gorm.DB, server string, n int64) (domain.Revision, error) {
	if _, err := s.server(db, server); err != nil {
		return domain.Revision{}, err
	}
	var row revisionRow
	if err := db.Where("server = ? AND number = ?", server, n).Take(&row).Error; err != nil {
		return domain.Revision{}, translate(err, "revision", fmt.Sprintf("%s/%d", server, n))
	}
	return row.domain()
}

// Rollback makes revision n the server's session config again, as a new
// revision (latest+1) whose effective config equals n's. The application is
// the cluster's, for every server: a server's rollback keeps the current
// one (set it with SetClusterApplication). It restores n's override;
// if the cluster defaults changed since, so that the old override no longer
// yields n's config, the override becomes n's full effective config.
func (s *Store) Rollback(ctx context.Context, actor, server string, n int64) (domain.Revision, error) {
	var rev domain.Revision
	err := s.write(ctx, func(db *gorm.DB) error {
		old, err := s.revision(db, server, n)
		if err != nil {
			return err
		}
		sv, err := s.server(db, server)
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
		o := old.Override
		if domain.Effective(defaults, o).Checksum() != old.Checksum {
			o = fullOverride(old.Config)
		}
		if err := s.saveOverride(db, "server_session_overrides", "server", server, o); err != nil {
			return err
		}
		if err := s.audit(db, actor, "server.rollback", "server/"+server, before, o); err != nil {
			return err
		}
		return s.revise(db, actor, server, fmt.Sprintf("rollback to revision %d", n), &rev)
	})
	return rev, err
}

// fullOverride sets every field to c's value.
func fullOverride(c domain.SessionConfig) domain.SessionOverride {
	ck := c.Cookie
	return domain.SessionOverride{
		Shared: &c.Shared, TrackingMode: &c.TrackingMode, TimeoutSeconds: &c.TimeoutSeconds,
		MaxSessions: &c.MaxSessions, Replication: &c.Replication, Failback: &c.Failback, MaxSessionBytes: &c.MaxSessionBytes,
		Cookie: &domain.CookieOverride{Name: &ck.Name, Domain: &ck.Domain, Path: &ck.Path, Secure: &ck.Secure,
			HTTPOnly: &ck.HTTPOnly, SameSite: &ck.SameSite, MaxAgeSeconds: &ck.MaxAgeSeconds},
	}
}

// LatestRevisions returns every server's latest revision number.
func (s *Store) LatestRevisions(ctx context.Context) (map[string]int64, error) {
	rows, err := s.read(ctx).Raw("SELECT server, MAX(number) FROM revisions GROUP BY server").Rows()
	if err != nil {
		return nil, fmt.Errorf("store: latest revisions: %w", err)
	}
	defer rows.Close()
	out := map[string]int64{}
	for rows.Next() {
		var name string
		var n int64
		if err := rows.Scan(&name, &n); err != nil {
			return nil, fmt.Errorf("store: latest revisions: %w", err)
		}
		out[name] = n
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: latest revisions: %w", err)
	}
	return out, nil
}
