package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"

	"gorm.io/gorm"

	"tandem/backend/domain"
	"tandem/backend/wire"
)

// NodeConfig is one node's desired config.
type NodeConfig struct {
	NodeRef
	Config wire.Config
}

// ClusterConfigs returns the desired config of every server and web server
// of the cluster, in NodesOfCluster's order: for each node the document
// DesiredConfig returns (same Revision, same Checksum). It builds them in
// one pass: the cluster, its session defaults, its servers (each with its
// override and latest revision), its application and its web servers are
// read once, in five queries whatever the cluster's size, where DesiredConfig reads the whole
// member list again for every server. The configs share one Members slice
// (and the web servers one CookieNames slice): callers must not modify
// them. Unknown cluster: ErrNotFound.
func (s *Store) ClusterConfigs(ctx context.Context, cluster string) ([]NodeConfig, error) {
	// No read transaction, as in DesiredConfig: a document built across
	// a concurrent write is superseded by the Changed call after it.
	db := s.read(ctx)
	c, err := s.cluster(db, cluster)
	if err != nil {
		return nil, err
	}
	defaults, err := s.clusterDefaults(db, cluster)
	if err != nil {
		return nil, err
	}
	servers, err := s.clusterServers(db, cluster)
	if err != nil {
		return nil, err
	}
	webs, err := s.webServers(db, cluster)
	if err != nil {
		return nil, err
	}
	spec, err := s.clusterAppSpec(db, c)
	if err != nil {
		return nil, err
	}
	pinned := map[string]*wire.AppSpec{} // servers a deploy has moved
	for _, sv := range servers {
		if sv.pinned {
			if pinned[sv.Name], _, err = s.serverAppSpec(db, sv.Name, c); err != nil {
				return nil, err
			}
		}
	}

	cs := settings(c)
	ms := make([]wire.Member, len(servers))
	effs := make([]domain.SessionConfig, len(servers))
	for i, sv := range servers {
		ms[i] = member(sv.Server)
		effs[i] = domain.Effective(defaults, sv.override)
	}
	out := make([]NodeConfig, 0, len(servers)+len(webs))
	for i, sv := range servers {
		app := spec
		if sv.pinned {
			app = pinned[sv.Name]
		}
		cfg, err := seal(wire.Config{Revision: sv.revision,
			Server: &wire.ServerConfig{Self: selfMember(sv.Server), Cluster: cs, Members: ms, Session: effs[i], App: app}})
		if err != nil {
			return nil, err
		}
		out = append(out, NodeConfig{NodeRef: NodeRef{Kind: wire.KindServer, Name: sv.Name, NodeManager: sv.NodeManager}, Config: cfg})
	}
	names := cookieNames(defaults, effs)
	for _, w := range webs {
		cfg, err := seal(wire.Config{WebServer: &wire.WebServerConfig{Name: w.Name, Listen: w.Listen,
			Cluster: cs, CookieNames: names, Members: ms}})
		if err != nil {
			return nil, err
		}
		out = append(out, NodeConfig{NodeRef: NodeRef{Kind: wire.KindWebServer, Name: w.Name, NodeManager: w.NodeManager}, Config: cfg})
	}
	return out, nil
}

// clusterServer is a server with what its desired config needs besides
// the cluster: its own override and latest revision number.
type clusterServer struct {
	domain.Server // without CreatedAt, UpdatedAt
	override      domain.SessionOverride
	revision      int64
	pinned        bool // a deploy moved it: its application is its own (serverAppSpec)
}

// clusterServers reads the cluster's servers by name, each with its
// override and latest revision, in one query. It scans only the columns
// a config needs (no timestamps to parse).
func (s *Store) clusterServers(db *gorm.DB, cluster string) ([]clusterServer, error) {
	rows, err := db.Raw(`SELECT s.name, s.listen, s.internal_listen, s.advertise, s.route, s.node_manager, s.backup, s.app_pin IS NOT NULL, o.override,
		(SELECT MAX(r.number) FROM revisions r WHERE r.server = s.name)
		FROM servers s LEFT JOIN server_session_overrides o ON o.server = s.name
		WHERE s.cluster = ? ORDER BY s.name`, cluster).Rows()
	if err != nil {
		return nil, fmt.Errorf("store: servers of cluster %q: %w", cluster, err)
	}
	defer rows.Close()
	var out []clusterServer
	for rows.Next() {
		var (
			sv           clusterServer
			nm, backup   sql.NullString
			override     sql.NullString
			lastRevision sql.NullInt64
		)
		if err := rows.Scan(&sv.Name, &sv.Listen, &sv.InternalListen, &sv.Advertise, &sv.Route, &nm, &backup, &sv.pinned, &override, &lastRevision); err != nil {
			return nil, fmt.Errorf("store: servers of cluster %q: %w", cluster, err)
		}
		sv.Cluster, sv.NodeManager, sv.Backup, sv.revision = cluster, nm.String, backup.String, lastRevision.Int64
		sv.ApplyDefaults() // internal_listen of a server defined before it existed
		if override.Valid {
			if err := json.Unmarshal([]byte(override.String), &sv.override); err != nil {
				return nil, fmt.Errorf("store: decode server_session_overrides of %q: %w", sv.Name, err)
			}
		}
		out = append(out, sv)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: servers of cluster %q: %w", cluster, err)
	}
	return out, nil
}

// EffectiveSessionConfigs returns the effective session config of every
// server of the cluster, by name, read in one pass (as ClusterConfigs).
func (s *Store) EffectiveSessionConfigs(ctx context.Context, cluster string) (map[string]domain.SessionConfig, error) {
	db := s.read(ctx)
	defaults, err := s.clusterDefaults(db, cluster)
	if err != nil {
		return nil, err
	}
	servers, err := s.clusterServers(db, cluster)
	if err != nil {
		return nil, err
	}
	out := make(map[string]domain.SessionConfig, len(servers))
	for _, sv := range servers {
		out[sv.Name] = domain.Effective(defaults, sv.override)
	}
	return out, nil
}
