package store

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"sort"

	"gorm.io/gorm"

	"tandem/backend/domain"
	"tandem/backend/wire"
)

// NodeRef names one node of a cluster.
type NodeRef struct {
	Kind        string // wire.KindServer or wire.KindWebServer
	Name        string
	NodeManager string
}

// NodesOfCluster returns the cluster's servers, then its web servers, each by name.
func (s *Store) NodesOfCluster(ctx context.Context, cluster string) ([]NodeRef, error) {
	db := s.read(ctx)
	if _, err := s.cluster(db, cluster); err != nil {
		return nil, err
	}
	servers, err := s.servers(db, cluster)
	if err != nil {
		return nil, err
	}
	webs, err := s.webServers(db, cluster)
	if err != nil {
		return nil, err
	}
	out := make([]NodeRef, 0, len(servers)+len(webs))
	for _, sv := range servers {
		out = append(out, NodeRef{Kind: wire.KindServer, Name: sv.Name, NodeManager: sv.NodeManager})
	}
	for _, w := range webs {
		out = append(out, NodeRef{Kind: wire.KindWebServer, Name: w.Name, NodeManager: w.NodeManager})
	}
	return out, nil
}

// DesiredConfig returns the full desired configuration of the node of that
// kind and name, with Checksum over the whole document (hex SHA-256 of its
// JSON with Checksum empty). Revision is a server's latest revision (0 for
// other kinds). Unknown node: ErrNotFound.
func (s *Store) DesiredConfig(ctx context.Context, kind, name string) (wire.Config, error) {
	var cfg wire.Config
	// No read transaction: BEGIN is immediate (a write lock) on this
	// connection pool. A document built across a concurrent write is
	// superseded by the Changed call that follows that write.
	db := s.read(ctx)
	err := func() error {
		var err error
		switch kind {
		case wire.KindServer:
			cfg, err = s.desiredServer(db, name)
		case wire.KindWebServer:
			cfg, err = s.desiredWebServer(db, name)
		case wire.KindNodeManager:
			cfg, err = s.desiredNodeManager(db, name)
		default:
			err = domain.NotFound("node kind", kind)
		}
		return err
	}()
	if err != nil {
		return wire.Config{}, err
	}
	return seal(cfg)
}

// seal sets cfg.Checksum: the hex SHA-256 of cfg's JSON with Checksum empty.
func seal(cfg wire.Config) (wire.Config, error) {
	cfg.Checksum = ""
	b, err := json.Marshal(cfg)
	if err != nil {
		return wire.Config{}, fmt.Errorf("store: encode desired config: %w", err)
	}
	sum := sha256.Sum256(b)
	cfg.Checksum = hex.EncodeToString(sum[:])
	return cfg, nil
}

func settings(c domain.Cluster) wire.ClusterSettings {
	return wire.ClusterSettings{Name: c.Name, FailoverMode: c.FailoverMode, BackupPolicy: c.BackupPolicy,
		HeartbeatIntervalMS: c.HeartbeatIntervalMS, HeartbeatTimeoutMS: c.HeartbeatTimeoutMS, MemberTLS: c.MemberTLS}
}

// member is sv as the other nodes reach it: at its advertised host, if
// any, with its configured ports.
func member(sv domain.Server) wire.Member {
	return wire.Member{Name: sv.Name, Route: sv.Route, Listen: advertised(sv.Listen, sv.Advertise),
		Internal: advertised(sv.InternalListen, sv.Advertise), Backup: sv.Backup, Host: sv.NodeManager}
}

// selfMember is sv as it sees itself: it binds its configured addresses
// (the others reach it as advertised).
func selfMember(sv domain.Server) wire.Member {
	m := member(sv)
	m.Listen, m.Internal = sv.Listen, sv.InternalListen
	return m
}

// advertised is bind's port on host (bind itself without a host).
func advertised(bind, host string) string {
	_, port, err := net.SplitHostPort(bind)
	if host == "" || err != nil {
		return bind
	}
	return net.JoinHostPort(host, port)
}

func (s *Store) members(db *gorm.DB, cluster string) ([]wire.Member, []domain.Server, error) {
	servers, err := s.servers(db, cluster) // ordered by name
	if err != nil {
		return nil, nil, err
	}
	ms := make([]wire.Member, 0, len(servers))
	for _, sv := range servers {
		ms = append(ms, member(sv))
	}
	return ms, servers, nil
}

func (s *Store) desiredServer(db *gorm.DB, name string) (wire.Config, error) {
	sv, err := s.server(db, name)
	if err != nil {
		return wire.Config{}, err
	}
	c, err := s.cluster(db, sv.Cluster)
	if err != nil {
		return wire.Config{}, err
	}
	ms, _, err := s.members(db, sv.Cluster)
	if err != nil {
		return wire.Config{}, err
	}
	_, eff, err := s.effective(db, sv)
	if err != nil {
		return wire.Config{}, err
	}
	rev, err := s.latestRevision(db, name)
	if err != nil {
		return wire.Config{}, err
	}
	app, _, err := s.serverAppSpec(db, name, c)
	if err != nil {
		return wire.Config{}, err
	}
	return wire.Config{Revision: rev, Server: &wire.ServerConfig{Self: selfMember(sv), Cluster: settings(c), Members: ms, Session: eff, App: app}}, nil
}

func (s *Store) desiredWebServer(db *gorm.DB, name string) (wire.Config, error) {
	w, err := s.webServer(db, name)
	if err != nil {
		return wire.Config{}, err
	}
	wc, err := s.routingTable(db, w.Cluster)
	if err != nil {
		return wire.Config{}, err
	}
	wc.Name, wc.Listen = w.Name, w.Listen
	return wire.Config{WebServer: &wc}, nil
}

// RoutingTable returns what a web server (or an exported HAProxy config) of
// the cluster routes by: its settings, every cookie name in use (the
// cluster default first) and the members. Name and Listen are empty.
func (s *Store) RoutingTable(ctx context.Context, cluster string) (wire.WebServerConfig, error) {
	return s.routingTable(s.read(ctx), cluster)
}

func (s *Store) routingTable(db *gorm.DB, cluster string) (wire.WebServerConfig, error) {
	c, err := s.cluster(db, cluster)
	if err != nil {
		return wire.WebServerConfig{}, err
	}
	ms, servers, err := s.members(db, cluster)
	if err != nil {
		return wire.WebServerConfig{}, err
	}
	defaults, err := s.clusterDefaults(db, cluster)
	if err != nil {
		return wire.WebServerConfig{}, err
	}
	effs := make([]domain.SessionConfig, 0, len(servers))
	for _, sv := range servers {
		_, eff, err := s.effective(db, sv)
		if err != nil {
			return wire.WebServerConfig{}, err
		}
		effs = append(effs, eff)
	}
	return wire.WebServerConfig{Cluster: settings(c), CookieNames: cookieNames(defaults, effs), Members: ms}, nil
}

// cookieNames lists every session cookie name in use in a cluster: the
// cluster default first, then the others of the servers' effective
// configs, sorted.
func cookieNames(defaults domain.SessionOverride, effs []domain.SessionConfig) []string {
	first := domain.Effective(defaults, domain.SessionOverride{}).Cookie.Name
	seen := map[string]bool{first: true}
	var others []string
	for _, eff := range effs {
		if n := eff.Cookie.Name; !seen[n] {
			seen[n] = true
			others = append(others, n)
		}
	}
	sort.Strings(others)
	return append([]string{first}, others...)
}

func (s *Store) desiredNodeManager(db *gorm.DB, name string) (wire.Config, error) {
	if _, err := s.nodeManager(db, name); err != nil {
		return wire.Config{}, err
	}
	var servers []serverRow
	if err := db.Where("node_manager = ?", name).Order("name").Find(&servers).Error; err != nil {
		return wire.Config{}, fmt.Errorf("store: servers of node manager %q: %w", name, err)
	}
	var webs []webServerRow
	if err := db.Where("node_manager = ?", name).Order("name").Find(&webs).Error; err != nil {
		return wire.Config{}, fmt.Errorf("store: webservers of node manager %q: %w", name, err)
	}
	procs := make([]wire.ProcessSpec, 0, len(servers)+len(webs))
	for _, sv := range servers {
		c, err := s.cluster(db, sv.Cluster)
		if err != nil {
			return wire.Config{}, err
		}
		app, _, err := s.serverAppSpec(db, sv.Name, c)
		if err != nil {
			return wire.Config{}, err
		}
		if app != nil && app.Kind != domain.AppGo {
			app = nil // a process application is the managed server's business
		}
		procs = append(procs, wire.ProcessSpec{Name: sv.Name, Kind: wire.KindServer, Listen: sv.Listen, App: app})
	}
	for _, w := range webs {
		procs = append(procs, wire.ProcessSpec{Name: w.Name, Kind: wire.KindWebServer, Listen: w.Listen})
	}
	sort.Slice(procs, func(i, j int) bool { return procs[i].Name < procs[j].Name })
	return wire.Config{NodeManager: &wire.NodeManagerConfig{Name: name, Processes: procs}}, nil
}
